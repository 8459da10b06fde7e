/* snap_l4: VirtualService tls: and tcp: routes to l4_tables (l4route.h).
 *
 * Istio's rules, as applied here:
 *  - a route is considered where its VirtualService is bound (gateways, "mesh" when
 *    none); a match's own gateways override that per match;
 *  - gateway role: tls: routes serve PASSTHROUGH servers, tcp: routes serve TCP servers,
 *    of the Gateways the VirtualService names, when the VirtualService's hosts intersect
 *    the server's hosts (with the "ns/" rules of HTTP routes); a match's port must be
 *    the listener's;
 *  - sidecar role ("mesh"): tls: routes match the SNI against sniHosts, tcp: routes the
 *    destination's name against the VirtualService's hosts; the port is the
 *    destination's;
 *  - sourceLabels and sourceNamespace are compared with this proxy's own labels and
 *    namespace when compiling (a match that does not apply to this proxy is left out);
 *  - a destination without port.number goes to the ServiceEntry's only port, else the
 *    match's or the listener's port; when none is known the route is refused;
 *  - a tcp: match's sourceSubnet is matched against the connection's source address
 *    (l4route.h); a match whose address does not parse (decoding checks it, so only a
 *    hand-made snapshot) refuses the connections its route would take. */
#include "proxy/snap_int.h"
#include "proxy/l4route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "net/tls.h"

/* A tls: or tcp: match seen through the fields both kinds share. */
struct snap_l4m {
	const struct res_strlist *sni;       /* tls only */
	const struct res_strlist *subnets;
	uint32_t port;
	const struct res_strmap *labels;
	const struct res_strlist *gateways;
	const char *src_ns;
	const char *src_subnet;              /* tcp only */
};

/* What one compilation is for: the sidecar ("mesh", port 0: any) or a listener. */
struct snap_l4ctx {
	const char *gw;
	uint16_t port;
	bool mesh;
};

static void snap_l4m_tls(const struct vs_tls_match *m, struct snap_l4m *out)
{
	memset(out, 0, sizeof(*out));
	out->sni = &m->sni_hosts;
	out->subnets = &m->destination_subnets;
	out->port = m->port;
	out->labels = &m->source_labels;
	out->gateways = &m->gateways;
	out->src_ns = m->source_namespace;
}

static void snap_l4m_tcp(const struct vs_l4_match *m, struct snap_l4m *out)
{
	memset(out, 0, sizeof(*out));
	out->subnets = &m->destination_subnets;
	out->port = m->port;
	out->labels = &m->source_labels;
	out->gateways = &m->gateways;
	out->src_ns = m->source_namespace;
	out->src_subnet = m->source_subnet;
}

static bool snap_l4m_applies(const struct snap_b *b, const struct resource *vsr,
                             const struct snap_l4m *m, const struct snap_l4ctx *cx)
{
	/* A match's gateways replace the VirtualService's (Istio's match.gateways). */
	if (m->gateways->n ? !snap_gw_list_has(m->gateways, vsr->namespace, cx->gw)
	                   : !snap_vs_bound(vsr, cx->gw))
		return false;
	if (cx->port && m->port && m->port != cx->port)
		return false;
	if (m->labels->n && !snap_labels_match(b, m->labels))
		return false;
	if (m->src_ns && strcmp(m->src_ns, b->ns) != 0)
		return false;
	return true;
}

static void snap_l4_hosts(struct l4_match *out, const struct res_strlist *l, const char *ns,
                          bool fqdn)
{
	out->hosts = xcalloc(l->n + 1, sizeof(*out->hosts));
	for (size_t i = 0; i < l->n; i++) {
		char *h = fqdn ? snap_fqdn(l->v[i], ns) : xstrdup(l->v[i]);

		snap_lower(h);
		out->hosts[out->nhosts++] = h;
	}
}

static void snap_l4_refuse(struct l4_route *r, const char *why)
{
	if (!r->refuse)
		r->refuse = xstrdup(why);
}

/* Fills out's match from m. */
static void snap_l4_match(const struct resource *vsr, bool tls, const struct snap_l4m *m,
                          const struct snap_l4ctx *cx, struct l4_route *r, struct l4_match *out)
{
	const struct virtualservice *vs = vsr->u.vs;

	if (tls)
		snap_l4_hosts(out, m->sni, vsr->namespace, false);
	else if (cx->mesh)
		snap_l4_hosts(out, &vs->hosts, vsr->namespace, true);
	out->port = (uint16_t)m->port;
	out->subnets = xcalloc(m->subnets->n + 1, sizeof(*out->subnets));
	for (size_t i = 0; i < m->subnets->n; i++) {
		if (l4_cidr_parse(m->subnets->v[i], &out->subnets[out->nsubnets]) == 0)
			out->nsubnets++;
		else
			snap_l4_refuse(r, "match.destinationSubnets entry is not an address");
	}
	if (m->src_subnet) {
		if (l4_cidr_parse(m->src_subnet, &out->src) == 0)
			out->has_src = true;
		else
			snap_l4_refuse(r, "match.sourceSubnet is not an address");
	}
}

/* Compiles one route for cx into out. Returns false when none of its matches applies. */
static bool snap_l4_route(struct snap_b *b, const struct resource *vsr, bool tls, size_t index,
                          const struct snap_l4m *ms, size_t nm,
                          const struct vs_route_destination *rd, size_t nrd,
                          const struct srcpos *pos, const struct snap_l4ctx *cx,
                          struct l4_route *out)
{
	const struct virtualservice *vs = vsr->u.vs;
	size_t kept = 0;
	uint16_t dflt = cx->port;
	char id[300];

	memset(out, 0, sizeof(*out));
	if (nm == 0 && !snap_vs_bound(vsr, cx->gw))
		return false;
	for (size_t i = 0; i < nm; i++)
		if (snap_l4m_applies(b, vsr, &ms[i], cx))
			kept++;
	if (nm && !kept)
		return false;
	out->tls = tls;
	out->index = index;
	out->vs = xstrdup(snap_res_id(vsr, id, sizeof(id)));
	out->file = pos->file ? xstrdup(pos->file) : (vsr->file ? xstrdup(vsr->file) : NULL);
	out->line = pos->file ? pos->line : vsr->line;
	/* No match: tls routes still need a name (the VirtualService's hosts); a sidecar tcp
	 * route matches its hosts; a gateway tcp route takes everything. */
	if (nm == 0 && (tls || cx->mesh)) {
		out->matches = xcalloc(1, sizeof(*out->matches));
		snap_l4_hosts(&out->matches[0], &vs->hosts, vsr->namespace, !tls);
		out->nmatches = 1;
	} else if (nm) {
		out->matches = xcalloc(kept, sizeof(*out->matches));
		for (size_t i = 0; i < nm; i++) {
			if (!snap_l4m_applies(b, vsr, &ms[i], cx))
				continue;
			snap_l4_match(vsr, tls, &ms[i], cx, out, &out->matches[out->nmatches++]);
			if (!dflt && ms[i].port)
				dflt = (uint16_t)ms[i].port;
		}
	}
	out->dests = xcalloc(nrd + 1, sizeof(*out->dests));
	for (size_t i = 0; i < nrd; i++) {
		const struct vs_destination *dst = rd[i].destination;
		struct route_dest *dd = &out->dests[out->ndests];
		char *host = snap_fqdn(dst->host, vsr->namespace);
		uint16_t port = snap_dest_port(b, host, dst->port, dflt);

		if (port == 0) {
			snap_l4_refuse(out, "route[].destination.port.number is needed: the "
			                    "destination has no single port and the match gives none");
			free(host);
			continue;
		}
		dd->cluster_name = xstrdup(snap_want_cluster(b, host, dst->subset ? dst->subset : "",
		                                             port));
		dd->weight = rd[i].weight > 0 ? (uint32_t)rd[i].weight : 0;
		if (nrd == 1 && dd->weight == 0)
			dd->weight = 100;
		out->total_weight += dd->weight;
		out->ndests++;
		free(host);
	}
	if (out->ndests == 0)
		snap_l4_refuse(out, "no destination");
	if (out->refuse)
		diag_warn(b->d, pos->file ? pos->file : vsr->file, pos->file ? pos->line : vsr->line,
		          pos->file ? pos->col : 0,
		          "VirtualService %s: %s[%zu]: %s; connections this route takes are refused "
		          "(never sent elsewhere)", out->vs, tls ? "tls" : "tcp", index, out->refuse);
	return true;
}

/* Appends the tls: (tls) or tcp: routes of one VirtualService for cx. */
static void snap_l4_vs_into(struct snap_b *b, const struct resource *vsr, bool tls,
                            const struct snap_l4ctx *cx, struct l4_table *t, size_t *cap)
{
	const struct virtualservice *vs = vsr->u.vs;
	size_t n = tls ? vs->tls.n : vs->tcp.n;

	for (size_t i = 0; i < n; i++) {
		size_t nm = tls ? vs->tls.v[i].match.n : vs->tcp.v[i].match.n;
		struct snap_l4m *ms = xcalloc(nm + 1, sizeof(*ms));
		const struct vs_route_destination *rd = tls ? vs->tls.v[i].route.v : vs->tcp.v[i].route.v;
		size_t nrd = tls ? vs->tls.v[i].route.n : vs->tcp.v[i].route.n;
		const struct srcpos *pos = tls ? &vs->tls.v[i].pos : &vs->tcp.v[i].pos;

		for (size_t j = 0; j < nm; j++) {
			if (tls)
				snap_l4m_tls(&vs->tls.v[i].match.v[j], &ms[j]);
			else
				snap_l4m_tcp(&vs->tcp.v[i].match.v[j], &ms[j]);
		}
		if (t->nroutes == *cap) {
			*cap = *cap ? 2 * *cap : 8;
			t->routes = xrealloc(t->routes, *cap * sizeof(*t->routes));
		}
		if (snap_l4_route(b, vsr, tls, i, ms, nm, rd, nrd, pos, cx,
		                  &t->routes[t->nroutes]))
			t->nroutes++;
		free(ms);
	}
}

/* Whether the VirtualService's hosts intersect one of the server's. */
static bool snap_l4_hosts_meet(const struct resource *vsr, const struct resource *gwr,
                               const struct gw_server *srv)
{
	const struct virtualservice *vs = vsr->u.vs;
	bool hit = false;

	for (size_t h = 0; h < vs->hosts.n && !hit; h++) {
		char *vhost = snap_fqdn(vs->hosts.v[h], vsr->namespace);

		for (size_t k = 0; k < srv->hosts.n && !hit; k++) {
			const char *shost;

			if (snap_srv_host_admits(srv->hosts.v[k], gwr->namespace, vsr->namespace, &shost))
				hit = snap_host_intersect(vhost, shost) != NULL;
		}
		free(vhost);
	}
	return hit;
}

/* Whether one of the VirtualService's tls: or tcp: routes has a match for cx (or none). */
static bool snap_l4_vs_applies(const struct snap_b *b, const struct resource *vsr,
                               const struct snap_l4ctx *cx)
{
	const struct virtualservice *vs = vsr->u.vs;
	struct snap_l4m m;

	for (size_t i = 0; i < vs->tls.n; i++)
		for (size_t j = 0; j < vs->tls.v[i].match.n; j++) {
			snap_l4m_tls(&vs->tls.v[i].match.v[j], &m);
			if (snap_l4m_applies(b, vsr, &m, cx))
				return true;
		}
	for (size_t i = 0; i < vs->tcp.n; i++) {
		if (vs->tcp.v[i].match.n == 0 && snap_vs_bound(vsr, cx->gw))
			return true;
		for (size_t j = 0; j < vs->tcp.v[i].match.n; j++) {
			snap_l4m_tcp(&vs->tcp.v[i].match.v[j], &m);
			if (snap_l4m_applies(b, vsr, &m, cx))
				return true;
		}
	}
	return false;
}

/* tls:/tcp: routes aimed at a TLS-terminating server of protocol HTTPS (whose bytes are
 * HTTP, as in Istio; a protocol TLS one serves them, snap_server.term_l4) are not
 * served: said, once per VirtualService and listener, rather than ignored. */
static void snap_l4_warn_terminated(struct snap_b *b, const struct snap_listener *l,
                                    const struct resource *const *srv_gw,
                                    const struct gw_server *const *srv)
{
	for (size_t v = 0; v < b->nvs; v++) {
		const struct resource *vsr = b->vs[v];
		char id[300];

		if (vsr->u.vs->tls.n == 0 && vsr->u.vs->tcp.n == 0)
			continue;
		for (size_t i = 0; i < l->nservers; i++) {
			struct snap_l4ctx cx = { l->servers[i].gateway, l->port, false };

			if (!l->servers[i].ctx || l->servers[i].term_l4 ||
			    !snap_l4_hosts_meet(vsr, srv_gw[i], srv[i]) ||
			    !snap_l4_vs_applies(b, vsr, &cx))
				continue;
			diag_warn(b->d, vsr->u.vs->pos.file, vsr->u.vs->pos.line, vsr->u.vs->pos.col,
			          "VirtualService %s: tls/tcp routes for Gateway %s port %u are not "
			          "served: that server terminates TLS (%s), and the bytes inside are "
			          "served as HTTP here", snap_res_id(vsr, id, sizeof(id)), cx.gw,
			          l->port, l->servers[i].tls == SNAP_SRV_ISTIO_MUTUAL ? "ISTIO_MUTUAL"
			          : l->servers[i].tls == SNAP_SRV_MUTUAL ? "MUTUAL" : "SIMPLE");
			break;
		}
	}
}

/* AUTO_PASSTHROUGH servers name clusters by SNI (outbound_.PORT_.SUBSET_.HOST): the
 * ServiceEntry host x port clusters exist anyway; the subsets' are wanted here, for every
 * DestinationRule subset of a registry host one of the server's hosts admits. */
static void snap_l4_auto_subsets(struct snap_b *b, const struct snap_server *sv)
{
	for (size_t d = 0; d < b->ndr; d++) {
		const struct destinationrule *dr = b->dr[d]->u.dr;
		char *host;
		const struct resource *se;
		bool admitted = false;

		if (dr->subsets.n == 0)
			continue;
		host = snap_fqdn(dr->host, b->dr[d]->namespace);
		for (size_t k = 0; k < sv->nhosts && !admitted; k++)
			admitted = tls_host_match(sv->hosts[k], host);
		se = admitted ? snap_se_for_host(b, host) : NULL;
		for (size_t p = 0; se && p < se->u.se->ports.n; p++)
			for (size_t s = 0; s < dr->subsets.n; s++)
				snap_want_cluster(b, host, dr->subsets.v[s].name,
				                  (uint16_t)se->u.se->ports.v[p].number);
		free(host);
	}
}

void snap_l4_gw(struct snap_b *b, struct snap_listener *l,
                const struct resource *const *srv_gw, const struct gw_server *const *srv)
{
	struct l4_table *t;
	size_t cap = 0;
	bool term_l4 = false;

	if (l->tls)
		snap_l4_warn_terminated(b, l, srv_gw, srv);
	for (size_t i = 0; i < l->nservers; i++)
		term_l4 |= l->servers[i].term_l4;
	if (l->l4_mode == SNAP_L4_NONE && !term_l4)
		return;
	for (size_t i = 0; i < l->nservers; i++)
		if (l->servers[i].auto_sni)
			snap_l4_auto_subsets(b, &l->servers[i]);
	t = xcalloc(1, sizeof(*t));
	t->name = xstrdup(l->name);
	for (size_t v = 0; v < b->nvs; v++) {
		const struct resource *vsr = b->vs[v];

		/* Once per (VirtualService, Gateway): two servers of one Gateway on this port
		 * would otherwise list its routes twice. */
		for (size_t i = 0; i < l->nservers; i++) {
			struct snap_l4ctx cx = { l->servers[i].gateway, l->port, false };
			bool seen = false;

			for (size_t k = 0; k < i && !seen; k++)
				seen = strcmp(l->servers[k].gateway, cx.gw) == 0 &&
				       snap_l4_hosts_meet(vsr, srv_gw[k], srv[k]);
			/* Terminating servers are served by http: routes, except protocol TLS
			 * ones, whose inner bytes go by tls: (on the outer SNI) and tcp: routes. */
			if (l->servers[i].tls != SNAP_SRV_PASSTHROUGH &&
			    l->servers[i].tls != SNAP_SRV_TCP && !l->servers[i].term_l4)
				continue;
			if (seen || !snap_l4_hosts_meet(vsr, srv_gw[i], srv[i]))
				continue;
			if (l->servers[i].term_l4) {
				snap_l4_vs_into(b, vsr, true, &cx, t, &cap);
				snap_l4_vs_into(b, vsr, false, &cx, t, &cap);
			} else {
				snap_l4_vs_into(b, vsr, l->l4_mode != SNAP_L4_TCP, &cx, t, &cap);
			}
		}
	}
	l->l4 = t;
}

void snap_l4_mesh(struct snap_b *b)
{
	struct snap_l4ctx cx = { SNAP_MESH, 0, true };
	struct l4_table *t = xcalloc(1, sizeof(*t));
	size_t cap = 0;

	t->name = xstrdup(SNAP_MESH);
	/* All tls: routes, then all tcp: routes: l4_lookup tries them in that order anyway,
	 * and config_dump shows them so. */
	for (int tls = 1; tls >= 0; tls--)
		for (size_t v = 0; v < b->nvs; v++)
			snap_l4_vs_into(b, b->vs[v], tls, &cx, t, &cap);
	b->s->mesh_l4 = t;
}

/* Links one table: destinations to their clusters (a cluster whose DestinationRule
 * originates TLS is spoken by the tunnel, l4tls.c). */
static void snap_l4_link_table(struct snap_b *b, struct l4_table *t)
{
	for (size_t i = 0; t && i < t->nroutes; i++) {
		struct l4_route *r = &t->routes[i];

		for (size_t k = 0; k < r->ndests; k++) {
			struct cluster *c = snap_cluster_find(b->s, r->dests[k].cluster_name);

			r->dests[k].cluster = c;
		}
	}
}

void snap_l4_link(struct snap_b *b)
{
	for (size_t i = 0; i < b->s->nlisteners; i++)
		snap_l4_link_table(b, b->s->listeners[i].l4);
	snap_l4_link_table(b, b->s->mesh_l4);
}
