/* snap_addr: ServiceEntry `addresses` (IPs and CIDRs) as the sidecar matches them.
 *
 * Istio gives each ServiceEntry address x port a listener of its own (an IP, or a CIDR as
 * a filter chain's destination range), so a connection to that IP and port reaches the
 * ServiceEntry's cluster whatever its host name says: the "Using an External HTTPS
 * Proxy" task names the proxy only by `addresses: [IP/32]` (its host is ignored). Here
 * the snapshot keeps one entry per address x port, longest prefix first, and the sidecar
 * asks for the cluster of a destination IP:port when the name did not find one: for a
 * CONNECT to an IP literal, and for a transparently redirected connection that is not
 * HTTP (its SO_ORIGINAL_DST); a redirected connection to an address whose port is TCP
 * (or TLS, ...) is tunnelled without looking for HTTP, as Istio's TCP listener does (the
 * external proxy's clients send CONNECT on it). The cluster is "outbound|PORT||HOST" of the entry's first
 * host: resolution NONE makes it an original-destination cluster (the connection goes
 * where the application sent it), STATIC/DNS send it to the endpoints.
 *
 * Cost: a scan of the entries, in the order of the ServiceEntries' addresses, only for
 * connections the name lookup did not route. */
#include "proxy/snap_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Parses "IP" or "IP/LEN" into out (family, network bytes, prefix). Returns 0, or -1. */
static int snap_addr_parse(const char *s, struct snap_addr *out)
{
	char ip[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max;

	if (n >= sizeof(ip))
		return -1;
	memcpy(ip, s, n);
	ip[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, out->net) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, ip, out->net) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->prefix = max;
	if (slash) {
		char *end;
		unsigned long v = strtoul(slash + 1, &end, 10);

		if (!slash[1] || *end || v > max)
			return -1;
		out->prefix = (unsigned)v;
	}
	return 0;
}

static bool snap_addr_covers(const struct snap_addr *a, int family, const uint8_t *ip)
{
	unsigned full = a->prefix / 8, rest = a->prefix % 8;

	if (a->family != family || memcmp(a->net, ip, full) != 0)
		return false;
	return !rest || ((a->net[full] ^ ip[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static int snap_addr_cmp(const void *x, const void *y)
{
	const struct snap_addr *a = x, *b = y;

	if (a->prefix != b->prefix)
		return a->prefix > b->prefix ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

void snap_addrs(struct snap_b *b)
{
	struct snap *s = b->s;
	size_t n = 0, cap = 0;
	char id[300];

	for (size_t i = 0; i < b->nse; i++) {
		const struct serviceentry *se = b->se[i]->u.se;

		for (size_t a = 0; a < se->addresses.n; a++) {
			struct snap_addr sa;

			if (snap_addr_parse(se->addresses.v[a], &sa) < 0) {
				diag_warn(b->d, se->addresses.pos[a].file, se->addresses.pos[a].line,
				          se->addresses.pos[a].col, "ServiceEntry %s: address \"%s\" is not "
				          "an IP or CIDR; not matched", snap_res_id(b->se[i], id, sizeof(id)),
				          se->addresses.v[a]);
				continue;
			}
			for (size_t p = 0; p < se->ports.n && se->hosts.n; p++) {
				char *name = xasprintf("outbound|%u||%s", se->ports.v[p].number,
				                       se->hosts.v[0]);

				snap_lower(name);
				enum res_protocol pr = se->ports.v[p].protocol;

				sa.port = (uint16_t)se->ports.v[p].number;
				sa.opaque = pr != RES_PROTO_UNSET && !res_protocol_is_http(pr);
				sa.cl = snap_cluster_find(s, name);
				free(name);
				if (!sa.cl)
					continue;
				if (n == cap) {
					cap = cap ? cap * 2 : 8;
					s->addrs = xrealloc(s->addrs, cap * sizeof(*s->addrs));
				}
				sa.order = n;
				s->addrs[n++] = sa;
			}
		}
	}
	if (n)
		qsort(s->addrs, n, sizeof(*s->addrs), snap_addr_cmp);
	s->naddrs = n;
}

const struct snap_addr *snap_addr_find(const struct snap *s, const struct sock_addr *dst)
{
	const uint8_t *ip;
	int family = dst->u.sa.sa_family;
	uint16_t port = sock_addr_port(dst);

	if (family == AF_INET)
		ip = (const uint8_t *)&dst->u.in4.sin_addr;
	else if (family == AF_INET6)
		ip = dst->u.in6.sin6_addr.s6_addr;
	else
		return NULL;
	for (size_t i = 0; i < s->naddrs; i++)
		if (s->addrs[i].port == port && snap_addr_covers(&s->addrs[i], family, ip))
			return &s->addrs[i];
	return NULL;
}
