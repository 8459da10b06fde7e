/* l4route: tls: and tcp: route lookup (see l4route.h). */
#include "proxy/l4route.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

int l4_cidr_parse(const char *s, struct l4_cidr *out)
{
	char ip[64];
	const char *slash = strchr(s, '/');
	size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max;

	memset(out, 0, sizeof(*out));
	if (iplen == 0 || iplen >= sizeof(ip))
		return -1;
	memcpy(ip, s, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->bits = max;
	if (slash) {
		char *end;
		unsigned long v = strtoul(slash + 1, &end, 10);

		if (!slash[1] || *end || v > max)
			return -1;
		out->bits = (unsigned)v;
	}
	return 0;
}

bool l4_cidr_contains(const struct l4_cidr *c, const struct sock_addr *a)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const unsigned char *p;
	unsigned full, rest;
	int fam = sock_addr_family(a);

	p = fam == AF_INET ? (const unsigned char *)&a->u.in4.sin_addr
	                   : (const unsigned char *)&a->u.in6.sin6_addr;
	/* A dual-stack listener (IPV6_V6ONLY off) sees IPv4 peers as ::ffff:a.b.c.d: they are
	 * matched as the IPv4 addresses they are, as authz's addresses are. */
	if (fam == AF_INET6 && c->family == AF_INET && memcmp(p, v4mapped, 12) == 0) {
		p += 12;
		fam = AF_INET;
	}
	if (fam != c->family)
		return false;
	full = c->bits / 8;
	rest = c->bits % 8;
	if (memcmp(p, c->addr, full) != 0)
		return false;
	if (rest) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));

		if ((p[full] & mask) != (c->addr[full] & mask))
			return false;
	}
	return true;
}

int l4_auto_sni_parse(const char *sni, uint16_t *port, char *subset, size_t subset_sz,
                      char *host, size_t host_sz)
{
	const char *p, *sub, *h;
	unsigned long v = 0;

	if (!sni || strncmp(sni, "outbound_.", 10) != 0)
		return -1;
	p = sni + 10;
	for (; isdigit((unsigned char)*p) && v <= 65535; p++)
		v = v * 10 + (unsigned long)(*p - '0');
	if (p == sni + 10 || v == 0 || v > 65535 || strncmp(p, "_.", 2) != 0)
		return -1;
	sub = p + 2;
	h = strstr(sub, "_.");
	if (!h || (size_t)(h - sub) >= subset_sz || strlen(h + 2) >= host_sz || !h[2])
		return -1;
	memcpy(subset, sub, (size_t)(h - sub));
	subset[h - sub] = '\0';
	for (size_t i = 0; h[2 + i]; i++)
		host[i] = (char)tolower((unsigned char)h[2 + i]);
	host[strlen(h + 2)] = '\0';
	*port = (uint16_t)v;
	return 0;
}

static bool l4_hosts_hit(const struct l4_match *m, const char *name)
{
	if (m->nhosts == 0)
		return true;
	if (!name || !name[0])
		return false;
	for (size_t i = 0; i < m->nhosts; i++)
		if (tls_host_match(m->hosts[i], name))
			return true;
	return false;
}

static bool l4_match_hit(const struct l4_route *r, const struct l4_match *m,
                         const struct l4_req *req)
{
	if (m->port && m->port != req->port)
		return false;
	if (!l4_hosts_hit(m, r->tls ? req->sni : req->host))
		return false;
	if (m->has_src && (!req->src || !l4_cidr_contains(&m->src, req->src)))
		return false;
	if (m->nsubnets) {
		if (!req->dst)
			return false;
		for (size_t i = 0; i < m->nsubnets; i++)
			if (l4_cidr_contains(&m->subnets[i], req->dst))
				return true;
		return false;
	}
	return true;
}

static bool l4_route_hit(const struct l4_route *r, const struct l4_req *req)
{
	if (r->tls && !req->sni)
		return false;
	if (r->nmatches == 0)
		return true;
	for (size_t i = 0; i < r->nmatches; i++)
		if (l4_match_hit(r, &r->matches[i], req))
			return true;
	return false;
}

const struct l4_route *l4_lookup(const struct l4_table *t, const struct l4_req *req)
{
	if (!t)
		return NULL;
	/* Two passes: a route on the server name is more specific than one without. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < t->nroutes; i++) {
			const struct l4_route *r = &t->routes[i];

			if (r->tls == (pass == 0) && l4_route_hit(r, req))
				return r;
		}
	return NULL;
}

bool l4_table_has_port(const struct l4_table *t, uint16_t port)
{
	for (size_t i = 0; t && i < t->nroutes; i++) {
		const struct l4_route *r = &t->routes[i];

		if (r->nmatches == 0 || port == 0)
			return true;
		for (size_t j = 0; j < r->nmatches; j++)
			if (r->matches[j].port == 0 || r->matches[j].port == port)
				return true;
	}
	return false;
}

void l4_route_fini(struct l4_route *r)
{
	for (size_t i = 0; i < r->nmatches; i++) {
		struct l4_match *m = &r->matches[i];

		for (size_t j = 0; j < m->nhosts; j++)
			free(m->hosts[j]);
		free(m->hosts);
		free(m->subnets);
	}
	free(r->matches);
	for (size_t i = 0; i < r->ndests; i++)
		free(r->dests[i].cluster_name);
	free(r->dests);
	free(r->vs);
	free(r->refuse);
	free(r->file);
	memset(r, 0, sizeof(*r));
}

void l4_table_free(struct l4_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nroutes; i++)
		l4_route_fini(&t->routes[i]);
	free(t->routes);
	free(t->name);
	free(t);
}
