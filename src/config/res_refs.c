/* res_refs: warnings about references between resources that do not resolve.
 *
 * Kubernetes accepts objects in any order, so a VirtualService naming a Gateway that
 * does not exist yet is not an error; but it is usually a typo, and the user should hear
 * about it where the name is written. All checks here only add warnings. */
#include "config/res_internal.h"
#include "core/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct refctx {
	struct resource *const *all;
	size_t n;
	struct diags *d;
	const struct resource *r;    /* the resource being checked */
	char path[512];
};

static void rwarn(struct refctx *x, struct srcpos pos, const char *suffix, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

/* A warning about the field at x->path + suffix. */
static void rwarn(struct refctx *x, struct srcpos pos, const char *suffix, const char *fmt,
                  ...)
{
	struct sbuf msg = SBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	sbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	diag_warn(x->d, pos.file ? pos.file : x->r->file, pos.line, pos.col, "%s: %s%s: %s",
	          res_describe(x->r), x->path, suffix, sbuf_str(&msg));
	sbuf_free(&msg);
}

/* "reviews" in namespace ns -> "reviews.ns.svc.cluster.local", as Istio reads short names */
static void norm_host(const char *host, const char *ns, char *out, size_t outsz)
{
	if (strchr(host, '.') || strcmp(host, "*") == 0)
		snprintf(out, outsz, "%s", host);
	else
		snprintf(out, outsz, "%s.%s.svc.cluster.local", host, ns);
}

static const struct resource *find_named(struct refctx *x, enum res_kind kind, const char *ns,
                                         const char *name)
{
	for (size_t i = 0; i < x->n; i++) {
		const struct resource *o = x->all[i];

		if (o->kind == kind && strcmp(o->name, name) == 0 && (!ns || strcmp(o->namespace, ns) == 0))
			return o;
	}
	return NULL;
}

/* ---- VirtualService -> Gateway ---- */

static void check_gateway_ref(struct refctx *x, const char *ref, struct srcpos pos)
{
	char ns[256], name[256];
	const char *slash, *dot;

	if (!ref || strcmp(ref, "mesh") == 0)
		return;
	if ((slash = strchr(ref, '/'))) {
		snprintf(ns, sizeof(ns), "%.*s", (int)(slash - ref), ref);
		snprintf(name, sizeof(name), "%s", slash + 1);
	} else if ((dot = strchr(ref, '.'))) {
		/* legacy "name.namespace[.svc.cluster.local]" */
		const char *dot2 = strchr(dot + 1, '.');

		snprintf(name, sizeof(name), "%.*s", (int)(dot - ref), ref);
		snprintf(ns, sizeof(ns), "%.*s", (int)(dot2 ? dot2 - dot - 1 : (long)strlen(dot + 1)),
		         dot + 1);
	} else {
		snprintf(ns, sizeof(ns), "%s", x->r->namespace);
		snprintf(name, sizeof(name), "%s", ref);
	}
	if (!find_named(x, RES_GATEWAY, ns, name))
		rwarn(x, pos, "", "Gateway \"%s/%s\" not found", ns, name);
}

static void check_gateway_list(struct refctx *x, const struct res_strlist *l, const char *base)
{
	for (size_t i = 0; i < l->n; i++) {
		snprintf(x->path, sizeof(x->path), "%s[%zu]", base, i);
		check_gateway_ref(x, l->v[i], l->pos[i]);
	}
}

/* ---- destinations -> DestinationRule subsets, ServiceEntry ports ---- */

static bool dr_defines_subset(const struct destinationrule *dr, const char *subset)
{
	for (size_t i = 0; i < dr->subsets.n; i++)
		if (dr->subsets.v[i].name && strcmp(dr->subsets.v[i].name, subset) == 0)
			return true;
	return false;
}

static void check_subset(struct refctx *x, const struct vs_destination *d, const char *host)
{
	for (size_t i = 0; i < x->n; i++) {
		const struct resource *o = x->all[i];
		char drhost[300];

		if (o->kind != RES_DESTINATION_RULE || !o->u.dr->host)
			continue;
		norm_host(o->u.dr->host, o->namespace, drhost, sizeof(drhost));
		if (res_host_matches(drhost, host) && dr_defines_subset(o->u.dr, d->subset))
			return;
	}
	rwarn(x, d->pos, ".subset", "subset \"%s\" of host \"%s\" is not defined by any "
	      "DestinationRule", d->subset, d->host);
}

static void check_port(struct refctx *x, const struct vs_destination *d, const char *host)
{
	struct sbuf declared = SBUF_INIT;
	const struct resource *first = NULL;

	for (size_t i = 0; i < x->n; i++) {
		const struct resource *o = x->all[i];

		if (o->kind != RES_SERVICE_ENTRY)
			continue;
		for (size_t h = 0; h < o->u.se->hosts.n; h++) {
			char sehost[300];

			if (!o->u.se->hosts.v[h])
				continue;
			norm_host(o->u.se->hosts.v[h], o->namespace, sehost, sizeof(sehost));
			if (!res_host_matches(sehost, host))
				continue;
			for (size_t p = 0; p < o->u.se->ports.n; p++) {
				if (o->u.se->ports.v[p].number == d->port)
					goto out;
				sbuf_addf(&declared, "%s%u", declared.len ? ", " : "",
				          o->u.se->ports.v[p].number);
			}
			if (!first)
				first = o;
			break;
		}
	}
	if (first)
		rwarn(x, d->pos, ".port.number", "port %u is not declared by the ServiceEntry for "
		      "host \"%s\" (%s declares %s)", d->port, d->host, res_describe(first),
		      sbuf_str(&declared));
out:
	sbuf_free(&declared);
}

static void check_destination(struct refctx *x, const struct vs_destination *d)
{
	char host[300];

	if (!d || !d->host)
		return;
	norm_host(d->host, x->r->namespace, host, sizeof(host));
	if (d->subset)
		check_subset(x, d, host);
	if (d->port)
		check_port(x, d, host);
}

static void check_vs(struct refctx *x, const struct virtualservice *vs)
{
	check_gateway_list(x, &vs->gateways, "spec.gateways");
	for (size_t i = 0; i < vs->http.n; i++) {
		const struct vs_http_route *h = &vs->http.v[i];
		char base[96];

		for (size_t m = 0; m < h->match.n; m++) {
			snprintf(base, sizeof(base), "spec.http[%zu].match[%zu].gateways", i, m);
			check_gateway_list(x, &h->match.v[m].gateways, base);
		}
		for (size_t r = 0; r < h->route.n; r++) {
			snprintf(x->path, sizeof(x->path), "spec.http[%zu].route[%zu].destination", i, r);
			check_destination(x, h->route.v[r].destination);
		}
		snprintf(x->path, sizeof(x->path), "spec.http[%zu].mirror", i);
		check_destination(x, h->mirror);
		for (size_t m = 0; m < h->mirrors.n; m++) {
			snprintf(x->path, sizeof(x->path), "spec.http[%zu].mirrors[%zu].destination", i, m);
			check_destination(x, h->mirrors.v[m].destination);
		}
	}
	for (size_t i = 0; i < vs->tls.n; i++) {
		const struct vs_tls_route *t = &vs->tls.v[i];
		char base[96];

		for (size_t m = 0; m < t->match.n; m++) {
			snprintf(base, sizeof(base), "spec.tls[%zu].match[%zu].gateways", i, m);
			check_gateway_list(x, &t->match.v[m].gateways, base);
		}
		for (size_t r = 0; r < t->route.n; r++) {
			snprintf(x->path, sizeof(x->path), "spec.tls[%zu].route[%zu].destination", i, r);
			check_destination(x, t->route.v[r].destination);
		}
	}
	for (size_t i = 0; i < vs->tcp.n; i++) {
		const struct vs_tcp_route *t = &vs->tcp.v[i];
		char base[96];

		for (size_t m = 0; m < t->match.n; m++) {
			snprintf(base, sizeof(base), "spec.tcp[%zu].match[%zu].gateways", i, m);
			check_gateway_list(x, &t->match.v[m].gateways, base);
		}
		for (size_t r = 0; r < t->route.n; r++) {
			snprintf(x->path, sizeof(x->path), "spec.tcp[%zu].route[%zu].destination", i, r);
			check_destination(x, t->route.v[r].destination);
		}
	}
}

/* ---- credentialName -> Secret ---- */

static void check_credential(struct refctx *x, const char *cred, struct srcpos pos)
{
	const char *name = cred;

	if (!cred)
		return;
	if (strncmp(cred, "kubernetes://", 13) == 0)
		name = cred + 13;
	else if (strstr(cred, "://"))
		return;   /* other credential sources are not ours to check */
	if (!find_named(x, RES_SECRET, NULL, name))
		rwarn(x, pos, "", "no Secret named \"%s\" in any namespace (the proxy reads it from its "
		      "own namespace)", name);
}

static void check_dr_policy(struct refctx *x, const struct dr_traffic_policy *tp,
                            const char *base)
{
	if (!tp)
		return;
	if (tp->tls) {
		snprintf(x->path, sizeof(x->path), "%s.tls.credentialName", base);
		check_credential(x, tp->tls->credential_name, tp->tls->pos);
	}
	for (size_t i = 0; i < tp->port_level_settings.n; i++) {
		const struct dr_tls *t = tp->port_level_settings.v[i].tls;

		if (!t)
			continue;
		snprintf(x->path, sizeof(x->path), "%s.portLevelSettings[%zu].tls.credentialName",
		         base, i);
		check_credential(x, t->credential_name, t->pos);
	}
}

static void check_dr(struct refctx *x, const struct destinationrule *dr)
{
	check_dr_policy(x, dr->traffic_policy, "spec.trafficPolicy");
	for (size_t i = 0; i < dr->subsets.n; i++) {
		char base[96];

		snprintf(base, sizeof(base), "spec.subsets[%zu].trafficPolicy", i);
		check_dr_policy(x, dr->subsets.v[i].traffic_policy, base);
	}
}

static void check_gw(struct refctx *x, const struct gateway *gw)
{
	for (size_t i = 0; i < gw->servers.n; i++) {
		const struct gw_tls *t = gw->servers.v[i].tls;

		if (!t)
			continue;
		snprintf(x->path, sizeof(x->path), "spec.servers[%zu].tls.credentialName", i);
		check_credential(x, t->credential_name, t->pos);
	}
}

void res_norm_host(const char *host, const char *ns, char *out, size_t outsz)
{
	norm_host(host, ns, out, outsz);
}

void res_hosts_unlisted(const char *const *se_hosts, size_t nse, const char *const *hosts,
                        size_t n, bool *unknown)
{
	const char **keys, **set;
	size_t *first, mask = 63, left = 0;

	/* A host a ServiceEntry lists exactly is known: when every host is, the sort below
	 * (the cost of checking one DestinationRule against 10,000 ServiceEntries) is not
	 * needed. A set of the ServiceEntry hosts, open addressing, ASCII case-insensitive. */
	while (mask + 1 < 2 * nse + 2)
		mask = mask * 2 + 1;
	set = xcalloc(mask + 1, sizeof(*set));
	for (size_t i = 0; i < nse; i++) {
		size_t k = hash_bytes_lower(se_hosts[i], strlen(se_hosts[i])) & mask;

		while (set[k] && strcasecmp(set[k], se_hosts[i]) != 0)
			k = (k + 1) & mask;
		set[k] = se_hosts[i];
	}
	for (size_t j = 0; j < n; j++) {
		size_t k = hash_bytes_lower(hosts[j], strlen(hosts[j])) & mask;

		while (set[k] && strcasecmp(set[k], hosts[j]) != 0)
			k = (k + 1) & mask;
		unknown[j] = false;
		if (!set[k] && !str_has_suffix(hosts[j], ".cluster.local") && strcmp(hosts[j], "*") != 0)
			left++;
	}
	free(set);
	if (!left)
		return;
	keys = xcalloc(nse + n + 1, sizeof(*keys));
	first = xcalloc(nse + n + 1, sizeof(*first));
	/* ServiceEntry hosts first: an overlap's earliest index is then a ServiceEntry's
	 * whenever one overlaps. */
	for (size_t i = 0; i < nse; i++)
		keys[i] = se_hosts[i];
	for (size_t j = 0; j < n; j++)
		keys[nse + j] = hosts[j];
	res_hosts_first_overlap(keys, nse + n, first);
	for (size_t j = 0; j < n; j++)
		unknown[j] = (first[nse + j] == SIZE_MAX || first[nse + j] >= nse) &&
		             !str_has_suffix(hosts[j], ".cluster.local") && strcmp(hosts[j], "*") != 0;
	free(keys);
	free(first);
}

void res_dr_unknown_hosts(const struct resource *const *all, size_t n, bool *unknown)
{
	char **se = xcalloc(n + 1, sizeof(*se)), **dr = xcalloc(n + 1, sizeof(*dr));
	size_t *owner = xcalloc(n + 1, sizeof(*owner)), nse = 0, ndr = 0, cap = n + 1;
	bool *unk = xcalloc(n + 1, sizeof(*unk));

	for (size_t i = 0; i < n; i++) {
		const struct resource *r = all[i];
		char h[300];

		unknown[i] = false;
		if (r->kind == RES_SERVICE_ENTRY) {
			for (size_t k = 0; k < r->u.se->hosts.n; k++) {
				if (nse == cap) {
					cap *= 2;
					se = xrealloc(se, cap * sizeof(*se));
				}
				norm_host(r->u.se->hosts.v[k], r->namespace, h, sizeof(h));
				se[nse++] = xstrdup(h);
			}
		} else if (r->kind == RES_DESTINATION_RULE && r->u.dr->host) {
			norm_host(r->u.dr->host, r->namespace, h, sizeof(h));
			owner[ndr] = i;
			dr[ndr++] = xstrdup(h);
		}
	}
	res_hosts_unlisted((const char *const *)se, nse, (const char *const *)dr, ndr, unk);
	for (size_t j = 0; j < ndr; j++)
		if (unk[j])
			unknown[owner[j]] = true;
	for (size_t i = 0; i < nse; i++)
		free(se[i]);
	for (size_t j = 0; j < ndr; j++)
		free(dr[j]);
	free(se);
	free(dr);
	free(owner);
	free(unk);
}

/* IST0174's finding, at the DestinationRule's host. */
static void check_dr_hosts(struct refctx *x)
{
	bool *unknown = xcalloc(x->n + 1, sizeof(*unknown));

	res_dr_unknown_hosts((const struct resource *const *)x->all, x->n, unknown);
	for (size_t i = 0; i < x->n; i++) {
		if (!unknown[i])
			continue;
		x->r = x->all[i];
		snprintf(x->path, sizeof(x->path), "spec.host");
		rwarn(x, x->r->u.dr->pos, "", "no ServiceEntry has host \"%s\" (IST0174): its "
		      "traffic policy applies to nothing", x->r->u.dr->host);
	}
	free(unknown);
}

void res_check_refs(struct resource *const *all, size_t n, struct diags *d)
{
	struct refctx x = { all, n, d, NULL, "" };

	check_dr_hosts(&x);

	for (size_t i = 0; i < n; i++) {
		x.r = all[i];
		switch (all[i]->kind) {
		case RES_VIRTUAL_SERVICE:
			check_vs(&x, all[i]->u.vs);
			break;
		case RES_DESTINATION_RULE:
			check_dr(&x, all[i]->u.dr);
			break;
		case RES_GATEWAY:
			check_gw(&x, all[i]->u.gw);
			break;
		default:
			break;
		}
	}
}
