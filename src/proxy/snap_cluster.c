/* snap_cluster: clusters (outbound|PORT|SUBSET|HOST) from ServiceEntries and
 * DestinationRules, with their upstream TLS contexts.
 *
 * Which clusters: every destination a route names, plus one per ServiceEntry host x
 * port (Istio makes those whether or not a route uses them). A destination naming a
 * subset that no applicable DestinationRule defines gets no cluster (Istio's 503 NC).
 *
 * Discovery: the ServiceEntry listing the host exactly decides (DNS, DNS_ROUND_ROBIN,
 * STATIC, NONE -> original destination); a host without one is resolved by DNS (or used
 * as is when it is an IP literal). A subset cluster keeps the ServiceEntry endpoints whose
 * labels carry every label of the subset (res_labels_select); the hosts' own addresses
 * (DNS without endpoints) have no labels. Endpoint ports: the endpoint's `ports[PORT-NAME]`,
 * else the port's targetPort, else its number (Istio's order).
 *
 * DestinationRule: the proxy's namespace first, then the host's namespace (the
 * namespace label of NAME.NS.svc.cluster.local, else the ServiceEntry's namespace), then
 * the root namespace istio-system; exportTo limits what is visible; within a namespace
 * the most specific host wins (exact, then the longest wildcard), then a rule with a
 * matching workloadSelector, then (namespace, name) order. Policy for port P and subset
 * S, as Istio's MergeSubsetTrafficPolicy: the rule's portLevelSettings entry for P when
 * there is one (it replaces the rule's top level entirely: unset fields take defaults,
 * not the top level's), else its top level; then the same for the subset, whose groups
 * (loadBalancer, connectionPool, outlierDetection, tls: each a whole block) override the
 * rule's when set, all four when the subset has a port-level entry for P.
 *
 * A credential that is missing or incomplete, or certificate files that do not load, are
 * not errors (Istio serves the rest of the configuration): the cluster records the
 * reason in tls_ctx_error and a warning goes to the diagnostics. Credentials come from the
 * secret cache (secrets/secret.h), so a credential whose new version does not load keeps
 * its previous one; a client context is reused from earlier snapshots as long as its key
 * (settings, credential version digest, file contents digests) is unchanged. */
#include "proxy/snap_int.h"
#include "proxy/lbhash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"

/* ---- wanted clusters ---- */

const char *snap_want_cluster(struct snap_b *b, const char *host, const char *subset,
                              uint16_t port)
{
	char *name = xasprintf("outbound|%u|%s|%s", port, subset ? subset : "", host);
	struct snap_ckey *k;
	size_t i;

	snap_lower(name + strlen(name) - strlen(host));
	if (!b->key_idx.v)
		snap_map_init(&b->key_idx, false);
	i = snap_map_get(&b->key_idx, name);
	if (i != SIZE_MAX) {
		free(name);
		return b->keys[i].name;
	}
	if (b->nkeys == b->capkeys) {
		b->capkeys = b->capkeys ? b->capkeys * 2 : 16;
		b->keys = xrealloc(b->keys, b->capkeys * sizeof(*b->keys));
	}
	k = &b->keys[b->nkeys];
	k->name = name;
	k->host = xstrdup(host);
	snap_lower(k->host);
	k->subset = xstrdup(subset ? subset : "");
	k->port = port;
	snap_map_put(&b->key_idx, k->name, b->nkeys++);
	return k->name;
}

/* ---- credentials ---- */

int snap_cred_load(struct snap_b *b, const char *name, unsigned flags, struct snap_cred *out,
                   struct sbuf *err)
{
	memset(out, 0, sizeof(*out));
	out->v = secret_cache_credential(b->secrets, b->contents, b->p->store_root, b->ns, name,
	                                 flags, err);
	snprintf(out->cert_label, sizeof(out->cert_label), "kubernetes://%s", name);
	snprintf(out->ca_label, sizeof(out->ca_label), "kubernetes://%s-cacert", name);
	snprintf(out->crl_label, sizeof(out->crl_label), "kubernetes://%s-cacert", name);
	return out->v ? 0 : -1;
}

static void snap_want_dr_tls(struct snap_b *b, const struct dr_tls *t)
{
	if (!t || !t->credential_name)
		return;
	if (t->mode == DR_TLS_MUTUAL)
		secret_cache_want(b->secrets, b->ns, t->credential_name,
		                  SECRET_USE_CERT | SECRET_USE_CA);
	else if (t->mode == DR_TLS_SIMPLE)
		secret_cache_want(b->secrets, b->ns, t->credential_name,
		                  SECRET_USE_CA | SECRET_NEED_CA);
}

static void snap_want_policy(struct snap_b *b, const struct dr_traffic_policy *tp)
{
	if (!tp)
		return;
	snap_want_dr_tls(b, tp->tls);
	for (size_t i = 0; i < tp->port_level_settings.n; i++)
		snap_want_dr_tls(b, tp->port_level_settings.v[i].tls);
}

void snap_cred_want(struct snap_b *b)
{
	for (size_t i = 0; i < b->ndr; i++) {
		const struct destinationrule *dr = b->dr[i]->u.dr;

		snap_want_policy(b, dr->traffic_policy);
		for (size_t j = 0; j < dr->subsets.n; j++)
			snap_want_policy(b, dr->subsets.v[j].traffic_policy);
	}
	if (b->p->role != SNAP_ROLE_GATEWAY)
		return;
	for (size_t i = 0; i < b->ngw; i++) {
		const struct gateway *gw = b->gw[i]->u.gw;

		for (size_t j = 0; j < gw->servers.n; j++) {
			const struct gw_tls *t = gw->servers.v[j].tls;

			if (!t || !t->credential_name)
				continue;
			if (t->mode == GW_TLS_SIMPLE)
				secret_cache_want(b->secrets, b->ns, t->credential_name, SECRET_USE_CERT);
			else if (t->mode == GW_TLS_MUTUAL || t->mode == GW_TLS_OPTIONAL_MUTUAL)
				secret_cache_want(b->secrets, b->ns, t->credential_name,
				                  SECRET_USE_CERT | SECRET_USE_CA | SECRET_NEED_CA);
		}
	}
}

/* ---- DestinationRule lookup and policy ---- */

/* Whether a DestinationRule may apply to this proxy: one with a workloadSelector only
 * to the matching workloads of its own namespace. */
static bool snap_dr_applies(const struct snap_b *b, const struct resource *drr)
{
	const struct dr_workload_selector *ws = drr->u.dr->workload_selector;

	return !ws || (strcmp(drr->namespace, b->ns) == 0 &&
	               snap_labels_match(b, &ws->match_labels));
}

/* The rule of namespace ns for host: an exact host first, then the longest wildcard;
 * among equals a rule with a workloadSelector, then (namespace, name) order. */
static const struct resource *snap_dr_in_ns(const struct snap_b *b, const char *ns,
                                            const char *host)
{
	const struct resource *best = NULL;
	const struct snap_ref *refs;
	char *key = xasprintf("%s/%s", ns, host);
	size_t n, best_len = 0;

	refs = snap_refs_find(b->dr_refs, b->ndr_refs, key, &n);
	free(key);
	for (size_t i = 0; i < n; i++) {
		const struct resource *drr = b->dr[refs[i].idx];

		if (!snap_dr_applies(b, drr))
			continue;
		if (!best || (drr->u.dr->workload_selector && !best->u.dr->workload_selector))
			best = drr;
	}
	if (best)
		return best;
	for (size_t i = 0; i < b->ndr_wild; i++) {
		const struct resource *drr = b->dr[b->dr_wild[i].idx];
		size_t len = strlen(b->dr_wild[i].key);

		if (strcmp(drr->namespace, ns) != 0 || !snap_dr_applies(b, drr) ||
		    !res_host_matches(b->dr_wild[i].key, host))
			continue;
		if (!best || len > best_len ||
		    (len == best_len && drr->u.dr->workload_selector &&
		     !best->u.dr->workload_selector)) {
			best = drr;
			best_len = len;
		}
	}
	return best;
}

static const struct resource *snap_dr_find(const struct snap_b *b, const char *host)
{
	const struct resource *drr;
	char hostns[256];
	const char *hns = snap_host_ns(b, host, hostns, sizeof(hostns));

	drr = snap_dr_in_ns(b, b->ns, host);
	if (!drr && hns && strcmp(hns, b->ns) != 0)
		drr = snap_dr_in_ns(b, hns, host);
	if (!drr && strcmp(b->ns, SNAP_ROOT_NS) != 0 && (!hns || strcmp(hns, SNAP_ROOT_NS) != 0))
		drr = snap_dr_in_ns(b, SNAP_ROOT_NS, host);
	return drr;
}

struct snap_pol {
	const struct dr_load_balancer *lb;
	const struct dr_connection_pool *pool;
	const struct dr_outlier_detection *od;
	const struct dr_tls *tls;
};

/* The policy of one level (rule or subset) for port; true if a port-level entry hit. */
static bool snap_pol_level(const struct dr_traffic_policy *tp, uint16_t port,
                           struct snap_pol *out)
{
	memset(out, 0, sizeof(*out));
	if (!tp)
		return false;
	for (size_t i = 0; i < tp->port_level_settings.n; i++) {
		const struct dr_port_policy *pp = &tp->port_level_settings.v[i];

		if (pp->port == port) {
			out->lb = pp->load_balancer;
			out->pool = pp->connection_pool;
			out->od = pp->outlier_detection;
			out->tls = pp->tls;
			return true;
		}
	}
	out->lb = tp->load_balancer;
	out->pool = tp->connection_pool;
	out->od = tp->outlier_detection;
	out->tls = tp->tls;
	return false;
}

static void snap_pol_merge(const struct destinationrule *dr, const struct dr_subset *sub,
                           uint16_t port, struct snap_pol *out)
{
	struct snap_pol sp;
	bool pl;

	snap_pol_level(dr ? dr->traffic_policy : NULL, port, out);
	if (!sub || !sub->traffic_policy)
		return;
	pl = snap_pol_level(sub->traffic_policy, port, &sp);
	if (sp.lb || pl)
		out->lb = sp.lb;
	if (sp.pool || pl)
		out->pool = sp.pool;
	if (sp.od || pl)
		out->od = sp.od;
	if (sp.tls || pl)
		out->tls = sp.tls;
}

/* ---- discovery ---- */

static const struct se_port *snap_se_port(const struct serviceentry *se, uint16_t port)
{
	for (size_t i = 0; i < se->ports.n; i++)
		if (se->ports.v[i].number == port)
			return &se->ports.v[i];
	return NULL;
}

/* The port an endpoint (NULL: the host itself) serves service port sp on. */
static uint16_t snap_ep_port(const struct se_endpoint *ep, const struct se_port *sp,
                             uint16_t port)
{
	if (ep && sp && sp->name)
		for (size_t i = 0; i < ep->ports.n; i++)
			if (strcmp(ep->ports.v[i].name, sp->name) == 0 && ep->ports.v[i].number)
				return (uint16_t)ep->ports.v[i].number;
	if (sp && sp->target_port)
		return (uint16_t)sp->target_port;
	return port;
}

static void snap_static_one(struct cluster *c, const char *ip, uint16_t port)
{
	struct cluster_eps *eps = cluster_eps_new(1);

	sock_addr_from_ip(ip, port, &eps->v[0].addr);
	sock_addr_str(&eps->v[0].addr, eps->v[0].str, sizeof(eps->v[0].str));
	eps->v[0].weight = 1;
	atomic_store(&c->eps, eps);
}

/* True when the ServiceEntry endpoint belongs to the subset (no subset: every one). */
static bool snap_ep_in(const struct se_endpoint *ep, const struct dr_subset *sub)
{
	return !sub || res_labels_select(&sub->labels, &ep->labels);
}

/* resolution STATIC: the subset's endpoints, by address. */
static void snap_discovery_static(struct snap_b *b, struct cluster *c,
                                  const struct resource *ser, const struct se_port *sp,
                                  const struct dr_subset *sub)
{
	const struct serviceentry *se = ser->u.se;
	struct cluster_eps *eps = cluster_eps_new(se->endpoints.n);
	size_t n = 0;
	char id[300];

	c->discovery = CLUSTER_STATIC;
	for (size_t i = 0; i < se->endpoints.n; i++) {
		const struct se_endpoint *ep = &se->endpoints.v[i];
		struct cluster_ep *e = &eps->v[n];

		if (!snap_ep_in(ep, sub))
			continue;
		if (sock_addr_from_ip(ep->address, snap_ep_port(ep, sp, c->port), &e->addr) < 0) {
			diag_warn(b->d, ep->pos.file, ep->pos.line, ep->pos.col,
			          "ServiceEntry %s: endpoint \"%s\" is not an IP address; skipped "
			          "(resolution STATIC)", snap_res_id(ser, id, sizeof(id)),
			          ep->address);
			continue;
		}
		sock_addr_str(&e->addr, e->str, sizeof(e->str));
		e->weight = ep->weight ? ep->weight : 1;
		n++;
	}
	eps->n = n;
	cluster_eps_weigh(eps);
	atomic_store(&c->eps, eps);
}

/* resolution DNS / DNS_ROUND_ROBIN: the names to resolve (the subset's endpoints, or the
 * host itself). */
static void snap_discovery_dns(struct cluster *c, const struct serviceentry *se,
                               const struct se_port *sp, const struct dr_subset *sub)
{
	c->discovery = se->resolution == SE_RESOLUTION_DNS_ROUND_ROBIN ?
	               CLUSTER_DNS_ROUND_ROBIN : CLUSTER_DNS;
	if (se->endpoints.n) {
		size_t n = 0;

		c->names = xcalloc(se->endpoints.n, sizeof(*c->names));
		for (size_t i = 0; i < se->endpoints.n; i++) {
			const struct se_endpoint *ep = &se->endpoints.v[i];

			if (!snap_ep_in(ep, sub))
				continue;
			c->names[n].host = xstrdup(ep->address);
			c->names[n].port = snap_ep_port(ep, sp, c->port);
			c->names[n].weight = ep->weight ? ep->weight : 1;
			n++;
		}
		c->nnames = n;
	} else if (sub && sub->labels.n) {
		/* The hosts' own addresses carry no labels: a subset that selects by
		 * labels has no endpoint (503 UH), as in Istio. */
		c->nnames = 0;
	} else {
		c->names = xcalloc(1, sizeof(*c->names));
		c->names[0].host = xstrdup(c->host);
		c->names[0].port = snap_ep_port(NULL, sp, c->port);
		c->names[0].weight = 1;
		c->nnames = 1;
	}
	if (c->nnames == 0) {
		/* Nothing to resolve: a cluster without endpoints. */
		free(c->names);
		c->names = NULL;
		c->discovery = CLUSTER_STATIC;
		atomic_store(&c->eps, cluster_eps_new(0));
	}
}

static void snap_cluster_discovery(struct snap_b *b, struct cluster *c,
                                   const struct resource *ser, const struct dr_subset *sub)
{
	const struct serviceentry *se = ser ? ser->u.se : NULL;
	const struct se_port *sp;
	char id[300];

	if (!se) {
		if (sock_is_ip_literal(c->host)) {
			c->discovery = CLUSTER_STATIC;
			snap_static_one(c, c->host, c->port);
			return;
		}
		c->discovery = CLUSTER_DNS;
		c->names = xcalloc(1, sizeof(*c->names));
		c->names[0].host = xstrdup(c->host);
		c->names[0].port = c->port;
		c->names[0].weight = 1;
		c->nnames = 1;
		return;
	}
	sp = snap_se_port(se, c->port);
	if (!sp)
		diag_warn(b->d, se->pos.file, se->pos.line, se->pos.col,
		          "ServiceEntry %s has no port %u (cluster %s); using port %u",
		          snap_res_id(ser, id, sizeof(id)), c->port, c->name, c->port);
	switch (se->resolution) {
	case SE_RESOLUTION_NONE:
		c->discovery = CLUSTER_ORIGINAL_DST;
		c->lb = CLUSTER_LB_PASSTHROUGH;
		return;
	case SE_RESOLUTION_STATIC:
		snap_discovery_static(b, c, ser, sp, sub);
		return;
	case SE_RESOLUTION_DNS:
	case SE_RESOLUTION_DNS_ROUND_ROBIN:
	default:
		snap_discovery_dns(c, se, sp, sub);
		return;
	}
}

static void snap_cluster_policy(struct cluster *c, const struct snap_pol *pol)
{
	const struct dr_pool_tcp *tcp = pol->pool ? pol->pool->tcp : NULL;
	const struct dr_pool_http *http = pol->pool ? pol->pool->http : NULL;

	if (pol->lb) {
		switch (pol->lb->simple) {
		case DR_LB_LEAST_CONN:
		case DR_LB_LEAST_REQUEST:
			c->lb = CLUSTER_LB_LEAST_REQUEST;
			break;
		case DR_LB_RANDOM:
			c->lb = CLUSTER_LB_RANDOM;
			break;
		case DR_LB_PASSTHROUGH:
			/* Istio turns the cluster into an original-destination one. */
			c->lb = CLUSTER_LB_PASSTHROUGH;
			c->discovery = CLUSTER_ORIGINAL_DST;
			for (size_t i = 0; i < c->nnames; i++)
				free(c->names[i].host);
			free(c->names);
			c->names = NULL;
			c->nnames = 0;
			cluster_eps_free(atomic_exchange(&c->eps, NULL));
			break;
		case DR_LB_ROUND_ROBIN:
		case DR_LB_UNSPECIFIED:
		default:
			break;
		}
	}
	c->connect_timeout_ms = tcp && tcp->connect_timeout_ms > 0 ? tcp->connect_timeout_ms
	                                                           : SNAP_CONNECT_TIMEOUT_MS;
	c->max_connections = tcp && tcp->max_connections > 0 ? (uint32_t)tcp->max_connections : 0;
	c->idle_timeout_ms = SNAP_IDLE_TIMEOUT_MS;
	if (http && http->idle_timeout_ms)
		c->idle_timeout_ms = http->idle_timeout_ms > 0 ? http->idle_timeout_ms : 0;
	if (http) {
		c->max_requests_per_conn = http->max_requests_per_connection > 0 ?
		                           (uint32_t)http->max_requests_per_connection : 0;
		c->max_pending = http->http1_max_pending_requests > 0 ?
		                 (uint32_t)http->http1_max_pending_requests : 0;
		c->max_requests = http->http2_max_requests > 0 ? (uint32_t)http->http2_max_requests : 0;
		c->max_retries = http->max_retries > 0 ? (uint32_t)http->max_retries : 0;
		c->h2_upstream = http->h2_upgrade_policy == DR_H2_UPGRADE;
		c->h2_no_upgrade = http->h2_upgrade_policy == DR_H2_DO_NOT_UPGRADE;
	}
}

/* loadBalancer.consistentHash as Istio's ApplyRingHashLoadBalancer and hash policy make
 * it: maglev when set (tableSize, default 65537), else a ring (ringHash.minimumRingSize,
 * else the deprecated minimumRingSize, else 1024). An original-destination cluster has
 * no endpoints to hash over (Istio leaves it CLUSTER_PROVIDED): said, not applied. STATIC
 * sets get their table here; DNS ones when the resolver publishes them (gw_dns.c). */
static void snap_cluster_hash(struct snap_b *b, struct cluster *c,
                              const struct dr_load_balancer *lb)
{
	const struct dr_lb_consistent_hash *h = lb ? lb->consistent_hash : NULL;
	struct lbh_cfg *cfg;

	if (!h)
		return;
	if (c->discovery == CLUSTER_ORIGINAL_DST) {
		diag_warn(b->d, h->pos.file, h->pos.line, h->pos.col,
		          "consistentHash not applied to cluster %s: an original-destination "
		          "cluster (resolution NONE or simple PASSTHROUGH) has no endpoints to hash "
		          "over", c->name);
		return;
	}
	cfg = xcalloc(1, sizeof(*cfg));
	if (h->maglev) {
		cfg->algo = LBH_MAGLEV;
		cfg->size = h->maglev->table_size ? h->maglev->table_size : LBH_MAGLEV_DEFAULT;
	} else {
		cfg->algo = LBH_RING_HASH;
		cfg->size = h->ring_hash ? h->ring_hash->minimum_ring_size : h->minimum_ring_size;
		if (!cfg->size)
			cfg->size = LBH_RING_MIN_DEFAULT;
	}
	if (h->http_header_name) {
		cfg->key = LBH_KEY_HEADER;
		cfg->name = xstrdup(h->http_header_name);
		for (char *p = cfg->name; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	} else if (h->http_cookie) {
		cfg->key = LBH_KEY_COOKIE;
		cfg->name = xstrdup(h->http_cookie->name);
		cfg->cookie_path = h->http_cookie->path && h->http_cookie->path[0] ?
		                   xstrdup(h->http_cookie->path) : NULL;
		/* Envoy's max_age in whole seconds; "0s" (stored as -1) a session cookie. */
		cfg->cookie_ttl_s = h->http_cookie->ttl_ms > 0 ? h->http_cookie->ttl_ms / 1000 : 0;
	} else if (h->use_source_ip) {
		cfg->key = LBH_KEY_SOURCE_IP;
	} else if (h->http_query_parameter_name) {
		cfg->key = LBH_KEY_QUERY;
		cfg->name = xstrdup(h->http_query_parameter_name);
	}
	c->hash = cfg;
	cluster_eps_hash(c, atomic_load(&c->eps));
}

/* outlierDetection as Istio's applyOutlierDetection hands it to Envoy, with Envoy's
 * defaults for what it leaves unset (semantics: outlier.h). */
static void snap_cluster_outlier(struct cluster *c, const struct dr_outlier_detection *od)
{
	struct od_config *o = &c->od;

	memset(o, 0, sizeof(*o));
	if (!od)
		return;
	o->on = true;
	o->consecutive_5xx = OD_DEFAULT_CONSECUTIVE_5XX;
	if (od->consecutive_errors > 0) {
		/* Deprecated: gateway errors only (istio/api#617). */
		o->consecutive_gateway = (uint32_t)od->consecutive_errors;
		o->consecutive_5xx = 0;
	}
	if (od->consecutive_5xx_errors.set)
		o->consecutive_5xx = od->consecutive_5xx_errors.value;
	if (od->consecutive_gateway_errors.set)
		o->consecutive_gateway = od->consecutive_gateway_errors.value;
	o->split = od->split_external_local_origin_errors;
	if (o->split)
		o->consecutive_local = od->consecutive_local_origin_failures.value;
	o->interval_ms = od->interval_ms > 0 ? (uint64_t)od->interval_ms : OD_DEFAULT_INTERVAL_MS;
	o->base_ejection_ms = od->base_ejection_time_ms > 0 ? (uint64_t)od->base_ejection_time_ms
	                                                    : OD_DEFAULT_BASE_EJECTION_MS;
	o->max_ejection_ms = o->base_ejection_ms > OD_DEFAULT_MAX_EJECTION_MS ? o->base_ejection_ms
	                                                                      : OD_DEFAULT_MAX_EJECTION_MS;
	o->max_ejection_percent = od->max_ejection_percent > 0 ? (uint32_t)od->max_ejection_percent
	                                                       : OD_DEFAULT_MAX_EJECTION_PCT;
	o->min_health_percent = od->min_health_percent > 0 ? (uint32_t)od->min_health_percent : 0;
}

/* ---- upstream TLS ---- */

/* A part of a credential version (absent parts are left unset). */
static void snap_pem_data(struct tls_pem *pem, const unsigned char *data, size_t len,
                          const char *label)
{
	if (!data)
		return;
	pem->data = (const char *)data;
	pem->len = len;
	pem->label = label;
}

/* A file, named in the context key with the digest of its contents (when known), so that
 * a changed file gets a new context. */
static void snap_pem_file(struct tls_pem *pem, const char *file, const char *digest,
                          struct sbuf *key, const char *what)
{
	pem->file = file;
	if (file)
		sbuf_addf(key, "|%s=file:%s@%s", what, file, digest ? digest : "-");
}

/* A context for params keyed by key: shared with an earlier cluster of this snapshot
 * that has the same settings, else the one an earlier snapshot built with the same key
 * (key names every input by digest: same key, same context, same id; pooled upstream
 * connections and TLS sessions stay valid across an unrelated reload), else built.
 * Returns a new reference or NULL with err. */
static struct tls_ctx *snap_client_ctx(struct snap_b *b, const char *key,
                                       const struct tls_client_params *cp, struct sbuf *err)
{
	struct snap_ctxent *e;
	size_t i = snap_map_get(&b->ctx_idx, key);

	/* Hashed: a snapshot of 10,000 clusters may have as many distinct contexts. */
	if (i != SIZE_MAX) {
		if (!b->ctxs[i].ctx)
			sbuf_adds(err, b->ctxs[i].err);
		return b->ctxs[i].ctx ? tls_ctx_ref(b->ctxs[i].ctx) : NULL;
	}
	if (b->nctxs == b->ctxs_cap) {
		b->ctxs_cap = b->ctxs_cap ? b->ctxs_cap * 2 : 16;
		b->ctxs = xrealloc(b->ctxs, b->ctxs_cap * sizeof(*b->ctxs));
	}
	e = &b->ctxs[b->nctxs];
	e->key = xstrdup(key);
	snap_map_put(&b->ctx_idx, e->key, b->nctxs++);
	e->err = NULL;
	e->ctx = secret_cache_ctx_get(b->secrets, key);
	if (!e->ctx) {
		e->ctx = tls_client_ctx_new(cp, err);
		if (e->ctx)
			secret_cache_ctx_put(b->secrets, key, e->ctx);
	}
	if (!e->ctx)
		e->err = xstrdup(sbuf_str(err));
	return e->ctx ? tls_ctx_ref(e->ctx) : NULL;
}

static char **snap_strv_dup(const struct res_strlist *l, size_t *n)
{
	char **v = xcalloc(l->n + 1, sizeof(*v));

	for (size_t i = 0; i < l->n; i++)
		v[i] = xstrdup(l->v[i]);
	*n = l->n;
	return v;
}

/* Fills the TLS parameters; returns 0, or -1 with the reason in err. */
static int snap_tls_params(struct snap_b *b, const struct dr_tls *t,
                           struct snap_bcluster *bc, struct tls_client_params *cp,
                           struct tls_identity_files *idf, struct snap_cred *cred,
                           struct sbuf *key, struct sbuf *err)
{
	sbuf_addf(key, "%s", dr_tls_mode_names[t->mode]);
	if (t->mode == DR_TLS_ISTIO_MUTUAL) {
		if (!b->p->identity_dir) {
			sbuf_adds(err, "ISTIO_MUTUAL needs the workload identity (--identity)");
			return -1;
		}
		tls_identity_files(b->p->identity_dir, idf, &cp->cert, &cp->key, &cp->ca);
		sbuf_addf(key, "|identity=%s@%s@%s", b->p->identity_dir, b->id_digest,
		          b->root_digest);
		bc->ca_src = xasprintf("identity:%s/root-cert.pem", b->p->identity_dir);
		bc->cert_src = xasprintf("identity:%s/cert-chain.pem", b->p->identity_dir);
		return 0;
	}
	if (t->credential_name) {
		bool mutual = t->mode == DR_TLS_MUTUAL;
		const struct secret_version *v;

		/* SIMPLE takes only the CA from the credential, and needs one. */
		if (snap_cred_load(b, t->credential_name,
		                   mutual ? SECRET_USE_CERT | SECRET_USE_CA
		                          : SECRET_USE_CA | SECRET_NEED_CA, cred, err) < 0)
			return -1;
		v = cred->v;
		sbuf_addf(key, "|cred=%s@%s", cred->cert_label, v->digest);
		if (mutual) {
			snap_pem_data(&cp->cert, v->cert, v->cert_len, cred->cert_label);
			snap_pem_data(&cp->key, v->key, v->key_len, cred->cert_label);
			bc->cert_src = xstrdup(cred->cert_label);
		}
		if (v->ca) {
			snap_pem_data(&cp->ca, v->ca, v->ca_len, cred->ca_label);
			bc->ca_src = xstrdup(cred->ca_label);
		}
		if (v->crl) {
			snap_pem_data(&cp->crl, v->crl, v->crl_len, cred->crl_label);
			bc->crl_src = xstrdup(cred->crl_label);
		}
		return 0;
	}
	if (t->ca_certificates) {
		char digest[SECRET_DIGEST_HEX], *res = xasprintf("file-root:%s", t->ca_certificates);

		secret_cache_file(b->secrets, res, true, t->ca_certificates, NULL, digest);
		snap_pem_file(&cp->ca, t->ca_certificates, digest, key, "ca");
		bc->ca_src = xasprintf("file:%s", t->ca_certificates);
		free(res);
	}
	if (t->ca_crl) {
		char digest[SECRET_DIGEST_HEX];

		secret_file_digest(t->ca_crl, digest);
		snap_pem_file(&cp->crl, t->ca_crl, digest, key, "crl");
		bc->crl_src = xasprintf("file:%s", t->ca_crl);
	}
	if (t->mode == DR_TLS_MUTUAL) {
		char digest[SECRET_DIGEST_HEX], *res;

		if (!t->client_certificate || !t->private_key) {
			sbuf_adds(err, "MUTUAL needs clientCertificate and privateKey, or credentialName");
			return -1;
		}
		res = xasprintf("file-cert:%s~%s", t->client_certificate, t->private_key);
		secret_cache_file(b->secrets, res, false, t->client_certificate, t->private_key,
		                  digest);
		snap_pem_file(&cp->cert, t->client_certificate, digest, key, "cert");
		snap_pem_file(&cp->key, t->private_key, NULL, key, "key");
		bc->cert_src = xasprintf("file:%s", t->client_certificate);
		free(res);
	}
	return 0;
}

static void snap_cluster_tls(struct snap_b *b, struct cluster *c, const struct dr_tls *t,
                             const struct resource *ser, const struct resource *drr,
                             struct snap_bcluster *bc)
{
	struct tls_client_params cp;
	struct tls_identity_files idf;
	struct snap_cred cred;
	struct sbuf key = SBUF_INIT, err = SBUF_INIT;
	const struct res_strlist *sans;

	if (!t || t->mode == DR_TLS_DISABLE) {
		c->tls_mode = CLUSTER_TLS_DISABLE;
		return;
	}
	c->tls_mode = t->mode == DR_TLS_SIMPLE ? CLUSTER_TLS_SIMPLE :
	              t->mode == DR_TLS_MUTUAL ? CLUSTER_TLS_MUTUAL : CLUSTER_TLS_ISTIO_MUTUAL;
	c->insecure_skip_verify = t->insecure_skip_verify;
	sans = &t->subject_alt_names;
	/* ISTIO_MUTUAL without subjectAltNames checks the ServiceEntry's, as Istio does. */
	if (t->mode == DR_TLS_ISTIO_MUTUAL && sans->n == 0 && ser)
		sans = &ser->u.se->subject_alt_names;
	c->sans = snap_strv_dup(sans, &c->nsans);
	if (t->sni)
		c->sni = xstrdup(t->sni);
	else if (t->mode == DR_TLS_ISTIO_MUTUAL)
		c->sni = xasprintf("outbound_.%u_.%s_.%s", c->port, c->subset, c->host);
	c->verify_host_auto = !c->sni && c->nsans == 0;
	if (t->credential_name)
		c->credential = xstrdup(t->credential_name);

	memset(&cp, 0, sizeof(cp));
	cp.min_version = TLS_V1_2;
	cp.max_version = TLS_V1_3;
	cp.insecure_skip_verify = t->insecure_skip_verify;
	/* HTTP/2 upstream is negotiated by ALPN (up_h2.c falls back to HTTP/1.1 when the
	 * server picks it): on the mesh hop as Istio's sidecars do, elsewhere only when the
	 * DestinationRule asks for it. */
	c->h2_alpn = b->p->http2 && (t->mode == DR_TLS_ISTIO_MUTUAL ? !c->h2_no_upgrade
	                                                            : c->h2_upstream);
	if (c->h2_alpn) {
		static const char *const alpn_h2[] = { "h2", "http/1.1" };

		cp.alpn = alpn_h2;
		cp.nalpn = 2;
	}
	if (snap_tls_params(b, t, bc, &cp, &idf, &cred, &key, &err) == 0) {
		if (!bc->ca_src) {
			/* The system trust store: a changed bundle makes a new context too. */
			bc->ca_src = xstrdup("system");
			if (!b->sys_digest[0])
				secret_system_ca_digest(b->sys_digest);
			sbuf_addf(&key, "|system@%s", b->sys_digest);
		}
		sbuf_addf(&key, "|insecure=%d|h2=%d", (int)cp.insecure_skip_verify, (int)c->h2_alpn);
		c->tls_ctx = snap_client_ctx(b, key.s, &cp, &err);
	}
	if (!c->tls_ctx) {
		char id[300];

		c->tls_ctx_error = xstrdup(sbuf_str(&err));
		diag_warn(b->d, t->pos.file, t->pos.line, t->pos.col,
		          "DestinationRule %s: cluster %s: no TLS context: %s (requests to it fail "
		          "with UF)", snap_res_id(drr, id, sizeof(id)), c->name, c->tls_ctx_error);
	}
	sbuf_free(&key);
	sbuf_free(&err);
}

/* What a connection of c is made under (cluster.h conn_id): every setting that shapes
 * its handshake or what it verifies. The TLS context's id already stands for the CA, the
 * client credential's version, the protocol range and ALPN list; the names verified per
 * connection are added here, and maxRequestsPerConnection (a connection made under
 * another limit would keep counting against it after a change). Never 0 (0 is the
 * PassthroughCluster's). */
static uint64_t snap_conn_id(const struct cluster *c)
{
	struct sbuf k = SBUF_INIT;
	uint64_t h;

	sbuf_addf(&k, "%d|%llu|%d|%d|%d|%u|%s|", (int)c->tls_mode,
	          (unsigned long long)(c->tls_ctx ? tls_ctx_id(c->tls_ctx) : 0),
	          (int)c->verify_host_auto, (int)c->insecure_skip_verify, (int)c->h2_alpn,
	          (unsigned)c->max_requests_per_conn, c->sni ? c->sni : "\x01");
	for (size_t i = 0; i < c->nsans; i++) {
		sbuf_adds(&k, c->sans[i]);
		sbuf_addc(&k, '\0');
	}
	h = hash_bytes(k.s ? k.s : "", k.len);
	sbuf_free(&k);
	return h ? h : 1;
}

/* ---- clusters ---- */

/* Automatic mutual TLS (Istio's enableAutoMtls): is the cluster's destination a mesh
 * workload? Istio knows it from the endpoints' security.istio.io/tlsMode=istio label
 * (the injector puts it on every pod with a sidecar). Without a Kubernetes registry the
 * signs are: the host is one of the proxy's mesh hosts (the egress gateway's service,
 * --mesh-hosts), its ServiceEntry says location MESH_INTERNAL, or every endpoint the
 * cluster selects carries the tlsMode label. */
static bool snap_mesh_dest(const struct snap_b *b, const struct cluster *c,
                           const struct resource *ser, const struct dr_subset *sub)
{
	const struct serviceentry *se = ser ? ser->u.se : NULL;
	size_t n = 0;

	for (const char **h = b->p->mesh_hosts; h && *h; h++)
		if (strcasecmp(*h, c->host) == 0)
			return true;
	if (!se)
		return false;
	if (se->location == SE_LOCATION_MESH_INTERNAL)
		return true;
	for (size_t i = 0; i < se->endpoints.n; i++) {
		const struct se_endpoint *ep = &se->endpoints.v[i];
		const char *mode;

		if (!snap_ep_in(ep, sub))
			continue;
		mode = res_strmap_get(&ep->labels, "security.istio.io/tlsMode");
		if (!mode || strcmp(mode, "istio") != 0)
			return false;
		n++;
	}
	return n > 0;
}

static const struct dr_subset *snap_subset(const struct resource *drr, const char *name)
{
	if (!drr)
		return NULL;
	for (size_t i = 0; i < drr->u.dr->subsets.n; i++)
		if (strcmp(drr->u.dr->subsets.v[i].name, name) == 0)
			return &drr->u.dr->subsets.v[i];
	return NULL;
}

static struct cluster *snap_cluster_build(struct snap_b *b, const struct snap_ckey *k,
                                          struct snap_bcluster *bc)
{
	const struct resource *ser = snap_se_for_host(b, k->host);
	const struct resource *drr = snap_dr_find(b, k->host);
	const struct dr_subset *sub = NULL;
	struct snap_pol pol;
	struct cluster *c;
	char id[300];

	memset(bc, 0, sizeof(*bc));
	if (k->subset[0]) {
		sub = snap_subset(drr, k->subset);
		if (!sub) {
			diag_warn(b->d, drr ? drr->file : NULL, drr ? drr->line : 0, 0,
			          "cluster %s not created: no DestinationRule visible to this proxy "
			          "defines subset \"%s\" for %s (routes to it get 503 NC)", k->name,
			          k->subset, k->host);
			return NULL;
		}
	}
	snap_pol_merge(drr ? drr->u.dr : NULL, sub, k->port, &pol);

	c = xcalloc(1, sizeof(*c));
	c->name = xstrdup(k->name);
	c->host = xstrdup(k->host);
	c->subset = xstrdup(k->subset);
	c->port = k->port;
	c->lb = CLUSTER_LB_ROUND_ROBIN;
	atomic_init(&c->eps, NULL);
	atomic_init(&c->dns_failed, false);
	snap_cluster_discovery(b, c, ser, sub);
	snap_cluster_policy(c, &pol);
	snap_cluster_hash(b, c, pol.lb);
	snap_cluster_outlier(c, pol.od);
	if (!pol.tls && c->discovery != CLUSTER_ORIGINAL_DST && snap_mesh_dest(b, c, ser, sub)) {
		/* No DestinationRule sets tls toward a mesh workload: ISTIO_MUTUAL, as Istio's
		 * automatic mutual TLS (default SNI, the ServiceEntry's subjectAltNames). */
		static const struct dr_tls auto_mtls = { .mode = DR_TLS_ISTIO_MUTUAL };

		c->auto_mtls = true;
		snap_cluster_tls(b, c, &auto_mtls, ser, drr, bc);
	} else {
		snap_cluster_tls(b, c, pol.tls, ser, drr, bc);
	}
	c->conn_id = snap_conn_id(c);

	bc->c = c;
	if (drr)
		bc->dr = xstrdup(snap_res_id(drr, id, sizeof(id)));
	if (ser)
		bc->se = xstrdup(snap_res_id(ser, id, sizeof(id)));
	return c;
}

void snap_bcluster_fini(struct snap_bcluster *bc)
{
	free(bc->dr);
	free(bc->se);
	free(bc->ca_src);
	free(bc->cert_src);
	free(bc->crl_src);
}

static int snap_bc_cmp(const void *a, const void *b)
{
	const struct snap_bcluster *x = a, *y = b;

	return strcmp(x->c->name, y->c->name);
}

static void snap_link_table(struct snap *s, struct route_table *t)
{
	for (size_t i = 0; t && i < t->nvhosts; i++)
		for (size_t j = 0; j < t->vhosts[i].nroutes; j++) {
			struct route *r = &t->vhosts[i].routes[j];

			for (size_t k = 0; k < r->ndests; k++) {
				struct route_dest *dd = &r->dests[k];

				dd->cluster = snap_cluster_find(s, dd->cluster_name);
				/* The cluster's own name from here on, not a copy per route (the
				 * snapshot frees both together). */
				if (dd->cluster && !dd->name_borrowed) {
					free(dd->cluster_name);
					dd->cluster_name = dd->cluster->name;
					dd->name_borrowed = true;
				}
			}
		}
}

void snap_clusters(struct snap_b *b)
{
	struct snap *s = b->s;

	for (size_t i = 0; i < b->nse; i++) {
		const struct serviceentry *se = b->se[i]->u.se;

		for (size_t h = 0; h < se->hosts.n; h++)
			for (size_t j = 0; j < se->ports.n; j++)
				snap_want_cluster(b, se->hosts.v[h], "", (uint16_t)se->ports.v[j].number);
	}
	b->bc = xcalloc(b->nkeys + 1, sizeof(*b->bc));
	for (size_t i = 0; i < b->nkeys; i++)
		if (snap_cluster_build(b, &b->keys[i], &b->bc[b->nbc]))
			b->nbc++;
	qsort(b->bc, b->nbc, sizeof(*b->bc), snap_bc_cmp);
	s->clusters = xcalloc(b->nbc + 1, sizeof(*s->clusters));
	for (size_t i = 0; i < b->nbc; i++) {
		struct snap_bcluster *bc = &b->bc[i];
		struct cluster *c = bc->c;

		s->clusters[i] = c;
		c->index = i;
		/* config_dump is rendered from the snapshot when asked for (10,000 hosts: 21 MB
		 * of JSON no longer held by every snapshot), so the sources move into it. */
		c->src_se = bc->se;
		c->src_dr = bc->dr;
		c->src_ca = bc->ca_src;
		c->src_cert = bc->cert_src;
		c->src_crl = bc->crl_src;
		bc->se = bc->dr = bc->ca_src = bc->cert_src = bc->crl_src = NULL;
	}
	s->nclusters = b->nbc;
	for (size_t i = 0; i < s->nlisteners; i++)
		snap_link_table(s, s->listeners[i].routes);
	for (size_t i = 0; i < s->noutbound; i++)
		snap_link_table(s, s->outbound[i]);
}
