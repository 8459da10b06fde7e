/* snap_route: VirtualService http routes to route tables.
 *
 * Gateway role: one table per listener ("http.PORT"). A VirtualService contributes to it
 * when its `gateways` (resolved: "name" -> the VirtualService's namespace, "ns/name" as
 * is) name the Gateway of one of the listener's servers; its hosts are intersected with
 * that server's hosts (the more specific of two matching names is the vhost domain; a
 * server host "ns/h" only admits VirtualServices of namespace ns, "./h" those of the
 * Gateway's namespace).
 *
 * Sidecar role: one table per port ("80"), for VirtualServices bound to "mesh" (no
 * `gateways` means "mesh"), plus a default vhost per ServiceEntry host and port that no
 * VirtualService covers, routing to outbound|PORT||HOST.
 *
 * In both, each http route is kept in order with the matches that apply here: a match
 * listing `gateways` applies only to those, a match with `port` only to that port, and
 * `sourceLabels` / `sourceNamespace` are checked against this proxy. A route whose every
 * match was filtered out is dropped. Several VirtualServices for one host are merged in
 * (namespace, name) order (Istio uses creation time, which the store does not keep). */
#include "proxy/snap_int.h"
#include "proxy/retry.h"
#include "proxy/route_fault.h"
#include "proxy/route_cors.h"
#include "proxy/route_hdrs.h"
#include "proxy/route_rerw.h"
#include "proxy/mirror.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* A vhost being assembled. */
struct snap_vhb {
	char *domain;
	struct route *routes;
	size_t nroutes, cap;
	/* (VirtualService, gateway) pairs already added: a VirtualService reaching one
	 * domain through two servers of the same Gateway is added once. */
	struct { const struct resource *vs; const char *gw; } *seen;
	size_t nseen;
};

struct snap_tb {
	struct snap_vhb *v;
	size_t n, cap;
	struct snap_map idx;     /* domain -> index in v */
	size_t *wild, nwild;     /* indexes of the wildcard domains */
};

/* What a VirtualService is being compiled for. */
struct snap_rctx {
	const char *gw;          /* "ns/name" of the Gateway, or "mesh" */
	uint16_t port;           /* listener port (gateway) or table port (sidecar) */
};

static struct snap_vhb *snap_tb_get(struct snap_tb *tb, const char *domain)
{
	struct snap_vhb *vh;
	size_t i;

	if (!tb->idx.v)
		snap_map_init(&tb->idx, true);
	i = snap_map_get(&tb->idx, domain);
	if (i != SIZE_MAX)
		return &tb->v[i];
	if (tb->n == tb->cap) {
		tb->cap = tb->cap ? tb->cap * 2 : 8;
		tb->v = xrealloc(tb->v, tb->cap * sizeof(*tb->v));
		tb->wild = xrealloc(tb->wild, tb->cap * sizeof(*tb->wild));
	}
	vh = &tb->v[tb->n];
	memset(vh, 0, sizeof(*vh));
	vh->domain = xstrdup(domain);
	snap_lower(vh->domain);
	if (vh->domain[0] == '*')
		tb->wild[tb->nwild++] = tb->n;
	snap_map_put(&tb->idx, vh->domain, tb->n++);
	return vh;
}

/* True (and records the pair) if vs has not been added to vh for gw yet. */
static bool snap_vhb_first(struct snap_vhb *vh, const struct resource *vs, const char *gw)
{
	for (size_t i = 0; i < vh->nseen; i++)
		if (vh->seen[i].vs == vs && strcmp(vh->seen[i].gw, gw) == 0)
			return false;
	vh->seen = xrealloc(vh->seen, (vh->nseen + 1) * sizeof(*vh->seen));
	vh->seen[vh->nseen].vs = vs;
	vh->seen[vh->nseen].gw = gw;
	vh->nseen++;
	return true;
}

static struct route *snap_vhb_add(struct snap_vhb *vh)
{
	if (vh->nroutes == vh->cap) {
		vh->cap = vh->cap ? vh->cap * 2 : 4;
		vh->routes = xrealloc(vh->routes, vh->cap * sizeof(*vh->routes));
	}
	memset(&vh->routes[vh->nroutes], 0, sizeof(struct route));
	return &vh->routes[vh->nroutes++];
}

/* Turns the assembled vhosts into a finalized table; tb is emptied. */
static struct route_table *snap_tb_finish(struct snap_tb *tb, const char *name, uint16_t port)
{
	struct route_table *t = xcalloc(1, sizeof(*t));

	t->name = xstrdup(name);
	t->vhosts = xcalloc(tb->n + 1, sizeof(*t->vhosts));
	for (size_t i = 0; i < tb->n; i++) {
		struct route_vhost *vh;

		/* Every route filtered out: no vhost, as Istio (the request gets 404 NR). */
		if (tb->v[i].nroutes == 0) {
			free(tb->v[i].domain);
			free(tb->v[i].routes);
			free(tb->v[i].seen);
			continue;
		}
		vh = &t->vhosts[t->nvhosts++];
		vh->name = xasprintf("%s:%u", tb->v[i].domain, port);
		vh->domains = xcalloc(1, sizeof(*vh->domains));
		vh->domains[0] = tb->v[i].domain;
		vh->ndomains = 1;
		/* Grown by doubling while the table was assembled: the spare half of each
		 * vhost's array was most of a host's route memory (10,000 hosts of two routes:
		 * room for four). */
		vh->routes = xrealloc(tb->v[i].routes, tb->v[i].nroutes * sizeof(*vh->routes));
		vh->nroutes = tb->v[i].nroutes;
		free(tb->v[i].seen);
	}
	free(tb->v);
	free(tb->wild);
	snap_map_fini(&tb->idx);
	memset(tb, 0, sizeof(*tb));
	route_table_finalize(t);
	return t;
}

bool snap_gw_list_has(const struct res_strlist *l, const char *vs_ns, const char *gw)
{
	char ref[300];

	for (size_t i = 0; i < l->n; i++) {
		snap_gw_ref(l->v[i], vs_ns, ref, sizeof(ref));
		if (strcmp(ref, gw) == 0)
			return true;
	}
	return false;
}

/* Whether the VirtualService is bound to gw ("ns/name" or "mesh"). */
bool snap_vs_bound(const struct resource *vsr, const char *gw)
{
	const struct virtualservice *vs = vsr->u.vs;

	if (vs->gateways.n == 0)
		return strcmp(gw, SNAP_MESH) == 0;
	return snap_gw_list_has(&vs->gateways, vsr->namespace, gw);
}

static bool snap_match_applies(const struct snap_b *b, const struct resource *vsr,
                               const struct vs_http_match *m, const struct snap_rctx *rc)
{
	if (m->gateways.n && !snap_gw_list_has(&m->gateways, vsr->namespace, rc->gw))
		return false;
	if (m->port && m->port != rc->port)
		return false;
	if (m->source_labels.n && !snap_labels_match(b, &m->source_labels))
		return false;
	if (m->source_namespace && strcmp(m->source_namespace, b->ns) != 0)
		return false;
	return true;
}

static void snap_strmatch(struct snap_b *b, const struct resource *vsr, struct strmatch *out,
                          const struct vs_string_match *in, bool icase)
{
	char err[256];

	memset(out, 0, sizeof(*out));
	out->icase = icase;
	if (!in)
		return;
	if (in->exact) {
		out->kind = SM_EXACT;
		out->s = xstrdup(in->exact);
	} else if (in->prefix) {
		out->kind = SM_PREFIX;
		out->s = xstrdup(in->prefix);
	} else if (in->regex) {
		out->kind = SM_REGEX;
		out->s = xstrdup(in->regex);
	} else {
		return;
	}
	out->len = strlen(out->s);
	if (strmatch_compile(out, err, sizeof(err)) < 0) {
		char id[300];

		/* The decoder refuses a regex that does not compile (chk_re2); one that still
		 * fails here never matches, said here. */
		diag_warn(b->d, in->pos.file, in->pos.line, in->pos.col,
		          "VirtualService %s: regex \"%s\" does not compile (%s); it never matches",
		          snap_res_id(vsr, id, sizeof(id)), in->regex, err);
	}
}

static struct route_hdr_match *snap_hdrs(struct snap_b *b, const struct resource *vsr,
                                         const struct vs_named_match *v, size_t n,
                                         bool lower)
{
	struct route_hdr_match *h;

	/* Most matches have no header, absent-header or query condition: no array (three
	 * allocations per match, 10,000 hosts: 3.8 MB). */
	if (!n)
		return NULL;
	h = xcalloc(n, sizeof(*h));
	for (size_t i = 0; i < n; i++) {
		h[i].name = xstrdup(v[i].name);
		if (lower)
			snap_lower(h[i].name);
		snap_strmatch(b, vsr, &h[i].m, &v[i].m, false);
	}
	return h;
}

static void snap_match_build(struct snap_b *b, const struct resource *vsr,
                             const struct vs_http_match *m, struct route_match *out)
{
	memset(out, 0, sizeof(*out));
	out->name = m->name ? xstrdup(m->name) : NULL;
	snap_strmatch(b, vsr, &out->uri, m->uri, m->ignore_uri_case);
	snap_strmatch(b, vsr, &out->scheme, m->scheme, false);
	snap_strmatch(b, vsr, &out->method, m->method, false);
	snap_strmatch(b, vsr, &out->authority, m->authority, false);
	out->port = (uint16_t)m->port;
	out->headers = snap_hdrs(b, vsr, m->headers.v, m->headers.n, true);
	out->nheaders = m->headers.n;
	out->without = snap_hdrs(b, vsr, m->without_headers.v, m->without_headers.n, true);
	out->nwithout = m->without_headers.n;
	out->query = snap_hdrs(b, vsr, m->query_params.v, m->query_params.n, false);
	out->nquery = m->query_params.n;
}

/* The service port a destination without port.number goes to: the ServiceEntry's only
 * port, else the listener (table) port, as Istio's GetDestinationCluster. */
uint16_t snap_dest_port(const struct snap_b *b, const char *host, uint32_t port,
                               uint16_t dflt)
{
	const struct resource *se;

	if (port)
		return (uint16_t)port;
	se = snap_se_for_host(b, host);
	if (se && se->u.se->ports.n == 1)
		return (uint16_t)se->u.se->ports.v[0].number;
	return dflt;
}

/* A mirror's destination (mirror.h route_mirror_dest_fn): host, cluster and port as a
 * route destination's. */
struct snap_mctx {
	struct snap_b *b;
	const struct resource *vsr;
	uint16_t port;
};

static void snap_mirror_dest(void *ctx, const struct vs_destination *d,
                             struct route_mirror_policy *p)
{
	struct snap_mctx *m = ctx;

	p->host = snap_fqdn(d->host, m->vsr->namespace);
	p->port = snap_dest_port(m->b, p->host, d->port, m->port);
	p->cluster_name = xstrdup(snap_want_cluster(m->b, p->host, d->subset, p->port));
}

/* Compiles one http route for rc into out. Returns false when no match applies here. */
static bool snap_route_build(struct snap_b *b, const struct resource *vsr,
                             const struct vs_http_route *hr, const struct snap_rctx *rc,
                             struct route *out)
{
	size_t kept = 0;
	char id[300], err[256];

	for (size_t i = 0; i < hr->match.n; i++)
		if (snap_match_applies(b, vsr, &hr->match.v[i], rc))
			kept++;
	if (hr->match.n && !kept)
		return false;

	/* Exactly kept: one spare struct route_match each was 336 bytes per route. */
	out->matches = kept ? xcalloc(kept, sizeof(*out->matches)) : NULL;
	for (size_t i = 0; i < hr->match.n; i++)
		if (snap_match_applies(b, vsr, &hr->match.v[i], rc))
			snap_match_build(b, vsr, &hr->match.v[i], &out->matches[out->nmatches++]);

	out->dests = hr->route.n ? xcalloc(hr->route.n, sizeof(*out->dests)) : NULL;
	for (size_t i = 0; i < hr->route.n; i++) {
		const struct vs_http_route_destination *rd = &hr->route.v[i];
		const struct vs_destination *dst = rd->destination;
		struct route_dest *dd = &out->dests[out->ndests++];
		char *host = snap_fqdn(dst->host, vsr->namespace);
		uint16_t port = snap_dest_port(b, host, dst->port, rc->port);

		dd->cluster_name = xstrdup(snap_want_cluster(b, host, dst->subset, port));
		dd->weight = rd->weight > 0 ? (uint32_t)rd->weight : 0;
		if (hr->route.n == 1 && dd->weight == 0)
			dd->weight = 100;
		out->total_weight += dd->weight;
		free(host);
	}
	out->name = hr->name ? xstrdup(hr->name) : NULL;
	out->vs = xstrdup(snap_res_id(vsr, id, sizeof(id)));
	out->timeout_ms = hr->timeout_ms > 0 ? hr->timeout_ms : 0;
	out->retry = retry_compile(hr->retries);
	if (hr->redirect) {
		out->redirect_code = hr->redirect->redirect_code ? (int)hr->redirect->redirect_code
		                                                 : 301;
		out->redirect_uri = hr->redirect->uri ? xstrdup(hr->redirect->uri) : NULL;
		out->redirect_authority = hr->redirect->authority ? xstrdup(hr->redirect->authority)
		                                                  : NULL;
	}
	if (hr->rewrite) {
		out->rewrite_uri = hr->rewrite->uri ? xstrdup(hr->rewrite->uri) : NULL;
		out->rewrite_authority = hr->rewrite->authority ? xstrdup(hr->rewrite->authority)
		                                                : NULL;
	}
	out->fault = route_fault_compile(hr);
	rhdr_compile(out, hr);
	if (rerw_compile(out, hr, err, sizeof(err)) < 0)
		/* The decoder refuses both first; so this is only the proxy's own check. */
		diag_warn(b->d, hr->rewrite->pos.file, hr->rewrite->pos.line, hr->rewrite->pos.col,
		          "VirtualService %s: uriRegexRewrite not applied: %s",
		          snap_res_id(vsr, id, sizeof(id)), err);
	out->mirror = route_mirror_compile(hr, snap_mirror_dest,
	                                   &(struct snap_mctx){ b, vsr, rc->port });
	if (rcors_compile(out, hr, err, sizeof(err)) < 0)
		/* The decoder refuses a regex that does not compile (chk_re2); one it still
		 * cannot compile leaves the route without CORS, said here. */
		diag_warn(b->d, hr->cors->pos.file, hr->cors->pos.line, hr->cors->pos.col,
		          "VirtualService %s: corsPolicy not applied: origin regex: %s",
		          snap_res_id(vsr, id, sizeof(id)), err);
	out->file = hr->pos.file ? xstrdup(hr->pos.file) : (vsr->file ? xstrdup(vsr->file) : NULL);
	out->line = hr->pos.file ? hr->pos.line : vsr->line;
	return true;
}

static void snap_vs_into(struct snap_b *b, const struct resource *vsr, const struct snap_rctx *rc,
                         struct snap_vhb *vh)
{
	const struct virtualservice *vs = vsr->u.vs;

	const char *vs_id = NULL, *file = NULL;

	if (!snap_vhb_first(vh, vsr, rc->gw))
		return;
	for (size_t i = 0; i < vs->http.n; i++) {
		struct route *r = snap_vhb_add(vh);

		if (!snap_route_build(b, vsr, &vs->http.v[i], rc, r)) {
			vh->nroutes--;
			continue;
		}
		/* The VirtualService's id and file once per vhost (route.h: strs_borrowed); the
		 * vhost's routes array may move as it grows, the strings do not. */
		if (vs_id && r->file && file && strcmp(r->file, file) == 0) {
			free(r->vs);
			free(r->file);
			r->vs = (char *)vs_id;
			r->file = (char *)file;
			r->strs_borrowed = true;
		} else if (!vs_id) {
			vs_id = r->vs;
			file = r->file;
		}
	}
}

/* ---- gateway role ---- */

/* The vhost domain for VirtualService host vh under server host sh, or NULL if they do
 * not intersect: the more specific of the two. */
const char *snap_host_intersect(const char *vh, const char *sh)
{
	if (res_host_matches(sh, vh))
		return vh;
	if (res_host_matches(vh, sh))
		return sh;
	return NULL;
}

/* Whether server host entry raw ("[ns/]host") admits a VirtualService of namespace vs_ns;
 * *host is set to the host part. */
bool snap_srv_host_admits(const char *raw, const char *gw_ns, const char *vs_ns,
                                 const char **host)
{
	const char *slash = strchr(raw, '/');
	size_t nslen;

	if (!slash) {
		*host = raw;
		return true;
	}
	*host = slash + 1;
	nslen = (size_t)(slash - raw);
	if (nslen == 1 && raw[0] == '*')
		return true;
	if (nslen == 1 && raw[0] == '.')
		return strcmp(gw_ns, vs_ns) == 0;
	return strlen(vs_ns) == nslen && strncmp(raw, vs_ns, nslen) == 0;
}

void snap_gw_routes(struct snap_b *b, struct snap_listener *l,
                    const struct resource *const *srv_gw, const struct gw_server *const *srv)
{
	struct snap_tb tb;
	char name[32];

	memset(&tb, 0, sizeof(tb));
	for (size_t i = 0; i < l->nservers; i++) {
		struct snap_rctx rc = { l->servers[i].gateway, l->port };

		if (l->servers[i].tls == SNAP_SRV_PASSTHROUGH || l->servers[i].tls == SNAP_SRV_TCP)
			continue;
		for (size_t v = 0; v < b->nvs; v++) {
			const struct resource *vsr = b->vs[v];
			const struct virtualservice *vs = vsr->u.vs;

			if (!snap_vs_bound(vsr, rc.gw))
				continue;
			for (size_t h = 0; h < vs->hosts.n; h++) {
				char *vhost = snap_fqdn(vs->hosts.v[h], vsr->namespace);

				for (size_t k = 0; k < srv[i]->hosts.n; k++) {
					const char *shost, *dom;

					if (!snap_srv_host_admits(srv[i]->hosts.v[k], srv_gw[i]->namespace,
					                          vsr->namespace, &shost))
						continue;
					dom = snap_host_intersect(vhost, shost);
					if (dom)
						snap_vs_into(b, vsr, &rc, snap_tb_get(&tb, dom));
				}
				free(vhost);
			}
		}
	}
	snprintf(name, sizeof(name), "http.%u", l->port);
	l->routes = snap_tb_finish(&tb, name, l->port);
}

/* ---- sidecar role ---- */

static int snap_port_cmp(const void *a, const void *b)
{
	uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;

	return x < y ? -1 : x > y;
}

static void snap_port_add(uint16_t **v, size_t *n, uint32_t port)
{
	for (size_t i = 0; i < *n; i++)
		if ((*v)[i] == port)
			return;
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = (uint16_t)port;
}

/* Whether a mesh VirtualService host belongs in the table of port: the ports of the
 * ServiceEntries it names, every port when it names none, and the ports its own matches
 * ask for. */
static bool snap_se_has_port(const struct serviceentry *se, uint16_t port)
{
	for (size_t j = 0; j < se->ports.n; j++)
		if (se->ports.v[j].number == port)
			return true;
	return false;
}

static bool snap_vs_host_on_port(const struct snap_b *b, const struct resource *vsr,
                                 const char *host, uint16_t port)
{
	const struct virtualservice *vs = vsr->u.vs;
	bool named = false;

	if (host[0] == '*') {
		/* A wildcard host may name any ServiceEntry. */
		for (size_t i = 0; i < b->nse; i++) {
			const struct serviceentry *se = b->se[i]->u.se;
			bool hit = false;

			for (size_t j = 0; j < se->hosts.n && !hit; j++)
				hit = res_host_matches(host, se->hosts.v[j]) ||
				      res_host_matches(se->hosts.v[j], host);
			if (!hit)
				continue;
			named = true;
			if (snap_se_has_port(se, port))
				return true;
		}
	} else {
		size_t n;
		const struct snap_ref *r = snap_refs_find(b->se_refs, b->nse_refs, host, &n);

		for (size_t i = 0; i < n; i++) {
			named = true;
			if (snap_se_has_port(b->se[r[i].idx]->u.se, port))
				return true;
		}
		for (size_t i = 0; i < b->nse_wild; i++) {
			const struct serviceentry *se = b->se[b->se_wild[i]]->u.se;
			bool hit = false;

			for (size_t j = 0; j < se->hosts.n && !hit; j++)
				hit = res_host_matches(se->hosts.v[j], host);
			if (!hit)
				continue;
			named = true;
			if (snap_se_has_port(se, port))
				return true;
		}
	}
	if (!named)
		return true;
	for (size_t i = 0; i < vs->http.n; i++)
		for (size_t j = 0; j < vs->http.v[i].match.n; j++)
			if (vs->http.v[i].match.v[j].port == port)
				return true;
	return false;
}

/* Whether a vhost with routes already serves host (exactly or by a wildcard). */
static bool snap_tb_covers(const struct snap_tb *tb, const char *host)
{
	size_t i = tb->idx.v ? snap_map_get(&tb->idx, host) : SIZE_MAX;

	if (i != SIZE_MAX && tb->v[i].nroutes)
		return true;
	for (size_t k = 0; k < tb->nwild; k++) {
		const struct snap_vhb *vh = &tb->v[tb->wild[k]];

		if (vh->nroutes && res_host_matches(vh->domain, host))
			return true;
	}
	return false;
}

static void snap_default_route(struct snap_b *b, const struct resource *ser, const char *host,
                               uint16_t port, struct snap_vhb *vh)
{
	struct route *r = snap_vhb_add(vh);

	r->name = xstrdup("default");
	r->vs = NULL;
	r->dests = xcalloc(1, sizeof(*r->dests));
	r->dests[0].cluster_name = xstrdup(snap_want_cluster(b, host, "", port));
	r->dests[0].weight = 100;
	r->ndests = 1;
	r->total_weight = 100;
	r->retry = retry_compile(NULL);     /* Istio's default policy, as on any route */
	r->file = ser->file ? xstrdup(ser->file) : NULL;
	r->line = ser->line;
}

void snap_sidecar_routes(struct snap_b *b)
{
	struct snap *s = b->s;
	uint16_t *ports = NULL;
	size_t nports = 0;

	for (size_t i = 0; i < b->nse; i++) {
		const struct serviceentry *se = b->se[i]->u.se;

		for (size_t j = 0; j < se->ports.n; j++)
			if (res_protocol_is_http(se->ports.v[j].protocol) ||
			    se->ports.v[j].protocol == RES_PROTO_UNSET)
				snap_port_add(&ports, &nports, se->ports.v[j].number);
	}
	for (size_t v = 0; v < b->nvs; v++) {
		const struct virtualservice *vs = b->vs[v]->u.vs;

		if (!snap_vs_bound(b->vs[v], SNAP_MESH))
			continue;
		for (size_t i = 0; i < vs->http.n; i++)
			for (size_t j = 0; j < vs->http.v[i].match.n; j++) {
				const struct vs_http_match *m = &vs->http.v[i].match.v[j];

				if (m->port && (m->gateways.n == 0 ||
				                snap_gw_list_has(&m->gateways, b->vs[v]->namespace,
				                                 SNAP_MESH)))
					snap_port_add(&ports, &nports, m->port);
			}
	}
	if (nports)
		qsort(ports, nports, sizeof(*ports), snap_port_cmp);

	s->outbound = xcalloc(nports + 1, sizeof(*s->outbound));
	for (size_t pi = 0; pi < nports; pi++) {
		struct snap_tb tb;
		struct snap_rctx rc = { SNAP_MESH, ports[pi] };
		char name[16];

		memset(&tb, 0, sizeof(tb));
		for (size_t v = 0; v < b->nvs; v++) {
			const struct resource *vsr = b->vs[v];
			const struct virtualservice *vs = vsr->u.vs;

			if (!snap_vs_bound(vsr, SNAP_MESH))
				continue;
			for (size_t h = 0; h < vs->hosts.n; h++) {
				char *host = snap_fqdn(vs->hosts.v[h], vsr->namespace);

				if (snap_vs_host_on_port(b, vsr, host, rc.port))
					snap_vs_into(b, vsr, &rc, snap_tb_get(&tb, host));
				free(host);
			}
		}
		for (size_t i = 0; i < b->nse; i++) {
			const struct serviceentry *se = b->se[i]->u.se;

			for (size_t j = 0; j < se->ports.n; j++) {
				if (se->ports.v[j].number != rc.port)
					continue;
				for (size_t h = 0; h < se->hosts.n; h++) {
					struct snap_vhb *vh;

					if (snap_tb_covers(&tb, se->hosts.v[h]))
						continue;
					vh = snap_tb_get(&tb, se->hosts.v[h]);
					if (vh->nroutes == 0)
						snap_default_route(b, b->se[i], vh->domain, rc.port, vh);
				}
			}
		}
		snprintf(name, sizeof(name), "%u", rc.port);
		s->outbound[s->noutbound++] = snap_tb_finish(&tb, name, rc.port);
	}
	free(ports);
}
