/* snap_json: the snapshot's config_dump (written with snap_jsonw.c's JSON writer).
 *
 * config_dump is made once per snapshot, served verbatim by the admin endpoint and read
 * by `egressctl proxy-config cluster|route|listener`, so its shape is a contract:
 *
 *   { "version": N, "role": "gateway" | "sidecar",
 *     "listeners": [ { "name", "address", "port", "tls", "route_config",
 *                      "servers": [ { "gateway", "port_name", "tls_mode", "hosts",
 *                                     "allowed_sans", "https_redirect", "tls_source" } ] } ],
 *     "route_configs": [ { "name", "virtual_hosts": [ { "name", "domains",
 *          "routes": [ { "name", "virtual_service", "source", "match": [ {...} ],
 *                        "route": [ { "cluster", "weight", "cluster_missing"? } ],
 *                        "timeout_ms", "redirect"?, "rewrite"?, "fault"?,
 *                        "direct_response"?,
 *                        "retry_policy": null | { "retry_on", "num_retries",
 *                             "retriable_status_codes", "per_try_timeout_ms",
 *                             "backoff_base_ms", "backoff_max_ms", "previous_hosts",
 *                             "host_selection_retry_max_attempts" } } ] } ] } ],
 *     "clusters": [ { "name", "host", "subset", "port", "discovery", "lb",
 *                     "ring_hash_lb_config" | "maglev_lb_config"?, "hash_policy"?,
 *                     "service_entry", "destination_rule", "dns_names" | "endpoints",
 *                     "tls": { "mode", "sni", "sans", "verify_host_auto",
 *                              "insecure_skip_verify", "credential", "ca", "client_cert",
 *                              "crl", "error" },
 *                     "connect_timeout_ms", "idle_timeout_ms",
 *                     "max_requests_per_connection", "max_connections",
 *                     "max_pending_requests", "max_requests", "max_retries", "h2_upgrade",
 *                     "outlier_detection"?: { "consecutive_5xx", "consecutive_gateway_errors",
 *                          "split_external_local_origin_errors",
 *                          "consecutive_local_origin_failures", "interval_ms",
 *                          "base_ejection_time_ms", "max_ejection_time_ms",
 *                          "max_ejection_percent", "min_health_percent" } } ] }
 *
 * Lists keep the snapshot's order (listeners by port, clusters by name, routes in match
 * order), keys a fixed order: the same configuration always dumps the same bytes (but
 * "version"). Match conditions appear only when set. No key material, ever: sources are
 * named ("kubernetes://NAME", "file:PATH"), never their contents. */
#include "proxy/authz.h"
#include "proxy/snap_int.h"
#include "proxy/l4route.h"
#include "proxy/retry.h"
#include "proxy/route_fault.h"
#include "proxy/lbhash.h"
#include "proxy/route_cors.h"
#include "proxy/mirror.h"
#include "proxy/route_hdrs.h"
#include "proxy/route_rerw.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static void snap_json_strv(struct snap_json *j, const char *key, char *const *v, size_t n)
{
	snap_json_arr_begin(j, key);
	for (size_t i = 0; i < n; i++)
		snap_json_str(j, NULL, v[i]);
	snap_json_arr_end(j);
}

/* ---- dump ---- */

static const char *snap_srv_tls_name(enum snap_server_tls t)
{
	switch (t) {
	case SNAP_SRV_PLAIN:
		return "PLAIN";
	case SNAP_SRV_SIMPLE:
		return "SIMPLE";
	case SNAP_SRV_MUTUAL:
		return "MUTUAL";
	case SNAP_SRV_ISTIO_MUTUAL:
		return "ISTIO_MUTUAL";
	case SNAP_SRV_PASSTHROUGH:
		return "PASSTHROUGH";
	case SNAP_SRV_TCP:
		return "TCP";
	}
	return "?";
}

static const char *snap_discovery_name(enum cluster_discovery d)
{
	switch (d) {
	case CLUSTER_DNS:
		return "STRICT_DNS";
	case CLUSTER_DNS_ROUND_ROBIN:
		return "LOGICAL_DNS";
	case CLUSTER_STATIC:
		return "STATIC";
	case CLUSTER_ORIGINAL_DST:
		return "ORIGINAL_DST";
	}
	return "?";
}

static const char *snap_lb_name(enum cluster_lb lb)
{
	switch (lb) {
	case CLUSTER_LB_ROUND_ROBIN:
		return "ROUND_ROBIN";
	case CLUSTER_LB_LEAST_REQUEST:
		return "LEAST_REQUEST";
	case CLUSTER_LB_RANDOM:
		return "RANDOM";
	case CLUSTER_LB_PASSTHROUGH:
		return "PASSTHROUGH";
	}
	return "?";
}

static const char *snap_ctls_name(enum cluster_tls_mode m)
{
	switch (m) {
	case CLUSTER_TLS_DISABLE:
		return "DISABLE";
	case CLUSTER_TLS_SIMPLE:
		return "SIMPLE";
	case CLUSTER_TLS_MUTUAL:
		return "MUTUAL";
	case CLUSTER_TLS_ISTIO_MUTUAL:
		return "ISTIO_MUTUAL";
	}
	return "?";
}

/* {"exact": "..."} and friends; nothing for SM_ANY unless present_key. */
static void snap_dump_strmatch(struct snap_json *j, const char *key, const struct strmatch *m)
{
	if (m->kind == SM_ANY)
		return;
	snap_json_obj_begin(j, key);
	snap_json_str(j, m->kind == SM_EXACT ? "exact" : m->kind == SM_PREFIX ? "prefix" : "regex",
	              m->s);
	if (m->icase)
		snap_json_bool(j, "ignore_case", true);
	snap_json_obj_end(j);
}

static void snap_dump_hdrs(struct snap_json *j, const char *key, const struct route_hdr_match *h,
                           size_t n)
{
	if (n == 0)
		return;
	snap_json_arr_begin(j, key);
	for (size_t i = 0; i < n; i++) {
		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "name", h[i].name);
		if (h[i].m.kind == SM_ANY)
			snap_json_bool(j, "present", true);
		else
			snap_json_str(j, h[i].m.kind == SM_EXACT ? "exact" :
			              h[i].m.kind == SM_PREFIX ? "prefix" : "regex", h[i].m.s);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
}

/* A route's weighted destinations ("route"), as both kinds of route have them. */
static void snap_dump_dests(struct snap_json *j, const struct route_dest *d, size_t n)
{
	snap_json_arr_begin(j, "route");
	for (size_t i = 0; i < n; i++) {
		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "cluster", d[i].cluster_name);
		snap_json_int(j, "weight", d[i].weight);
		if (!d[i].cluster)
			snap_json_bool(j, "cluster_missing", true);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
}

/* A route's retry policy (retry.h), as Envoy's route.retry_policy; "retry_policy": null
 * when the route never retries (attempts: 0). */
static void snap_dump_retry(struct snap_json *j, const struct retry_policy *p)
{
	char on[256];

	if (!p) {
		snap_json_null(j, "retry_policy");
		return;
	}
	retry_on_str(p, on, sizeof(on));
	snap_json_obj_begin(j, "retry_policy");
	snap_json_str(j, "retry_on", on);
	snap_json_int(j, "num_retries", p->num_retries);
	snap_json_arr_begin(j, "retriable_status_codes");
	for (size_t i = 0; i < p->ncodes; i++)
		snap_json_int(j, NULL, p->codes[i]);
	snap_json_arr_end(j);
	snap_json_int(j, "per_try_timeout_ms", p->per_try_ms);
	snap_json_int(j, "backoff_base_ms", p->base_ms);
	snap_json_int(j, "backoff_max_ms", p->max_ms);
	snap_json_bool(j, "previous_hosts", p->prev_hosts);
	snap_json_int(j, "host_selection_retry_max_attempts", p->host_attempts);
	snap_json_obj_end(j);
}

/* ---- a route's fault, directResponse, redirect scheme/port (route_fault.h) ---- */

static void snap_json_pct(struct snap_json *j, uint32_t ppm)
{
	/* As Istio hands it to Envoy: FractionalPercent with denominator MILLION. */
	snap_json_obj_begin(j, "percentage");
	snap_json_int(j, "numerator", ppm);
	snap_json_str(j, "denominator", "MILLION");
	snap_json_obj_end(j);
}

void snap_json_route_fault(struct snap_json *j, const struct route_fault *f)
{
	bool text = true;

	if (f->delay_ms || f->abort_http) {
		snap_json_obj_begin(j, "fault");
		if (f->delay_ms) {
			snap_json_obj_begin(j, "delay");
			snap_json_int(j, "fixed_delay_ms", f->delay_ms);
			snap_json_pct(j, f->delay_ppm);
			snap_json_obj_end(j);
		}
		if (f->abort_http) {
			snap_json_obj_begin(j, "abort");
			snap_json_int(j, "http_status", f->abort_http);
			if (f->abort_grpc >= 0)
				snap_json_str(j, "grpc_status", route_fault_grpc_name(f->abort_grpc));
			snap_json_pct(j, f->abort_ppm);
			snap_json_obj_end(j);
		}
		snap_json_obj_end(j);
	}
	if (f->direct_status) {
		snap_json_obj_begin(j, "direct_response");
		snap_json_int(j, "status", f->direct_status);
		snap_json_int(j, "body_bytes", (long long)f->direct_len);
		/* The body as text when it is ASCII without NULs (the writer copies bytes as they
		 * are, so other bytes could make the dump invalid UTF-8). */
		for (size_t i = 0; i < f->direct_len && text; i++)
			text = f->direct_body[i] != 0 && (unsigned char)f->direct_body[i] < 0x80;
		if (f->direct_body && text)
			snap_json_str(j, "body", f->direct_body);
		snap_json_obj_end(j);
	}
}

void snap_json_route_redirect(struct snap_json *j, const struct route_fault *f)
{
	if (f->redir_scheme)
		snap_json_str(j, "scheme", f->redir_scheme);
	if (f->redir_port)
		snap_json_int(j, "port", f->redir_port);
	if (f->redir_port_from_request)
		snap_json_str(j, "derive_port", "FROM_REQUEST_PORT");
}

void snap_json_route_source(struct snap_json *j, const struct route *r)
{
	if (r->file) {
		char src[4200];

		snprintf(src, sizeof(src), "%s:%d", r->file, r->line);
		snap_json_str(j, "source", src);
	} else {
		snap_json_null(j, "source");
	}
}

/* A compiled header operation list (route_hdrs.h): the names whose fields are removed,
 * then the fields written. */
static void snap_dump_rhdr_list(struct snap_json *j, const char *key, const struct rhdr_list *l)
{
	snap_json_obj_begin(j, key);
	snap_json_arr_begin(j, "remove");
	for (size_t i = 0; i < l->ndrop; i++)
		snap_json_str(j, NULL, l->drop[i].name);
	snap_json_arr_end(j);
	snap_json_arr_begin(j, "add");
	for (size_t i = 0; i < l->nemit; i++) {
		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "name", l->emit[i].name);
		snap_json_str(j, "value", l->emit[i].value);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_json_obj_end(j);
}

static void snap_dump_rhdr(struct snap_json *j, const struct route *r)
{
	const struct rhdr_route *h = r->hdrs;

	if (!h)
		return;
	snap_json_obj_begin(j, "headers");
	snap_dump_rhdr_list(j, "request", &h->route.req);
	snap_dump_rhdr_list(j, "response", &h->route.resp);
	/* Per destination: its level then the route's, as a request routed there gets. */
	snap_json_arr_begin(j, "destinations");
	for (size_t i = 0; i < h->ndest; i++) {
		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "cluster", r->dests[i].cluster_name);
		snap_dump_rhdr_list(j, "request", &h->dest[i].req);
		snap_dump_rhdr_list(j, "response", &h->dest[i].resp);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_json_obj_end(j);
}

static void snap_dump_cors(struct snap_json *j, const struct route_cors *c)
{
	if (!c)
		return;
	snap_json_obj_begin(j, "cors");
	snap_json_arr_begin(j, "allow_origins");
	for (size_t i = 0; i < c->norigins; i++)
		snap_dump_strmatch(j, NULL, &c->origins[i]);
	snap_json_arr_end(j);
	snap_json_str(j, "allow_methods", c->allow_methods);
	snap_json_str(j, "allow_headers", c->allow_headers);
	snap_json_str(j, "expose_headers", c->expose_headers);
	snap_json_str(j, "max_age", c->max_age);
	snap_json_bool(j, "allow_credentials", c->allow_credentials);
	snap_json_bool(j, "forward_not_matching_preflights", c->forward_unmatched);
	snap_json_obj_end(j);
}

/* mirror/mirrors (mirror.h) as Envoy's RouteAction.request_mirror_policies. */
static void snap_dump_mirror(struct snap_json *j, const struct route_mirror *m)
{
	if (!m)
		return;
	snap_json_arr_begin(j, "request_mirror_policies");
	for (size_t i = 0; i < m->n; i++) {
		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "cluster", m->p[i].cluster_name);
		snap_json_obj_begin(j, "runtime_fraction");
		snap_json_obj_begin(j, "default_value");
		snap_json_int(j, "numerator", m->p[i].ppm);
		snap_json_str(j, "denominator", "MILLION");
		snap_json_obj_end(j);
		snap_json_obj_end(j);
		snap_json_bool(j, "trace_sampled", false);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
}

static void snap_dump_route(struct snap_json *j, const struct route *r)
{
	snap_json_obj_begin(j, NULL);
	snap_json_str(j, "name", r->name);
	snap_json_str(j, "virtual_service", r->vs);
	snap_json_route_source(j, r);
	snap_json_arr_begin(j, "match");
	for (size_t i = 0; i < r->nmatches; i++) {
		const struct route_match *m = &r->matches[i];

		snap_json_obj_begin(j, NULL);
		if (m->name)
			snap_json_str(j, "name", m->name);
		snap_dump_strmatch(j, "uri", &m->uri);
		snap_dump_strmatch(j, "scheme", &m->scheme);
		snap_dump_strmatch(j, "method", &m->method);
		snap_dump_strmatch(j, "authority", &m->authority);
		if (m->port)
			snap_json_int(j, "port", m->port);
		snap_dump_hdrs(j, "headers", m->headers, m->nheaders);
		snap_dump_hdrs(j, "without_headers", m->without, m->nwithout);
		snap_dump_hdrs(j, "query_params", m->query, m->nquery);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_dump_dests(j, r->dests, r->ndests);
	snap_json_int(j, "timeout_ms", r->timeout_ms);
	if (r->redirect_code) {
		snap_json_obj_begin(j, "redirect");
		snap_json_int(j, "code", r->redirect_code);
		snap_json_str(j, "uri", r->redirect_uri);
		snap_json_str(j, "authority", r->redirect_authority);
		if (r->fault)
			snap_json_route_redirect(j, r->fault);
		snap_json_obj_end(j);
	}
	if (r->rewrite_uri || r->rewrite_authority || r->rerw) {
		snap_json_obj_begin(j, "rewrite");
		snap_json_str(j, "uri", r->rewrite_uri);
		snap_json_str(j, "authority", r->rewrite_authority);
		if (r->rerw) {
			/* Envoy's regex_rewrite {pattern, substitution}, under Istio's names. */
			snap_json_obj_begin(j, "uri_regex_rewrite");
			snap_json_str(j, "match", r->rerw->match);
			snap_json_str(j, "rewrite", r->rerw->rewrite);
			snap_json_obj_end(j);
		}
		snap_json_obj_end(j);
	}
	snap_dump_retry(j, r->retry);
	if (r->fault)
		snap_json_route_fault(j, r->fault);
	snap_dump_rhdr(j, r);
	snap_dump_cors(j, r->cors);
	snap_dump_mirror(j, r->mirror);
	snap_json_obj_end(j);
}

static void snap_dump_table(struct snap_json *j, const struct route_table *t)
{
	snap_json_obj_begin(j, NULL);
	snap_json_str(j, "name", t->name);
	snap_json_arr_begin(j, "virtual_hosts");
	for (size_t i = 0; i < t->nvhosts; i++) {
		const struct route_vhost *vh = &t->vhosts[i];

		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "name", vh->name);
		snap_json_strv(j, "domains", vh->domains, vh->ndomains);
		snap_json_arr_begin(j, "routes");
		for (size_t k = 0; k < vh->nroutes; k++)
			snap_dump_route(j, &vh->routes[k]);
		snap_json_arr_end(j);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_json_obj_end(j);
}

/* "10.0.0.0/8" into buf. */
static const char *snap_json_cidr(const struct l4_cidr *c, char *buf, size_t n)
{
	char ip[INET6_ADDRSTRLEN];

	inet_ntop(c->family, c->addr, ip, sizeof(ip));
	snprintf(buf, n, "%s/%u", ip, c->bits);
	return buf;
}

/* tls:/tcp: routes, in lookup order, with what each match needs. */
static void snap_dump_l4(struct snap_json *j, const char *key, const struct l4_table *t)
{
	snap_json_arr_begin(j, key);
	for (size_t i = 0; t && i < t->nroutes; i++) {
		const struct l4_route *r = &t->routes[i];

		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "kind", r->tls ? "tls" : "tcp");
		snap_json_str(j, "virtual_service", r->vs);
		snap_json_int(j, "index", (long long)r->index);
		snap_json_arr_begin(j, "matches");
		for (size_t k = 0; k < r->nmatches; k++) {
			const struct l4_match *m = &r->matches[k];

			snap_json_obj_begin(j, NULL);
			snap_json_strv(j, r->tls ? "sni_hosts" : "hosts", m->hosts, m->nhosts);
			if (m->port)
				snap_json_int(j, "port", m->port);
			snap_json_arr_begin(j, "destination_subnets");
			for (size_t c = 0; c < m->nsubnets; c++) {
				char buf[INET6_ADDRSTRLEN + 8];

				snap_json_str(j, NULL, snap_json_cidr(&m->subnets[c], buf, sizeof(buf)));
			}
			snap_json_arr_end(j);
			if (m->has_src) {
				char buf[INET6_ADDRSTRLEN + 8];

				snap_json_str(j, "source_subnet", snap_json_cidr(&m->src, buf, sizeof(buf)));
			}
			snap_json_obj_end(j);
		}
		snap_json_arr_end(j);
		snap_dump_dests(j, r->dests, r->ndests);
		if (r->refuse)
			snap_json_str(j, "refused", r->refuse);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
}

static void snap_dump_listener(struct snap_json *j, const struct snap_listener *l)
{
	char addr[SOCK_ADDR_STRLEN];

	snap_json_obj_begin(j, NULL);
	snap_json_str(j, "name", l->name);
	snap_json_str(j, "address", sock_addr_str(&l->addr, addr, sizeof(addr)));
	snap_json_int(j, "port", l->port);
	snap_json_bool(j, "tls", l->tls);
	snap_json_str(j, "route_config", l->routes ? l->routes->name : NULL);
	snap_json_arr_begin(j, "servers");
	for (size_t i = 0; i < l->nservers; i++) {
		const struct snap_server *sv = &l->servers[i];

		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "gateway", sv->gateway);
		snap_json_str(j, "port_name", sv->port_name);
		snap_json_str(j, "tls_mode",
		              sv->auto_sni ? "AUTO_PASSTHROUGH" : snap_srv_tls_name(sv->tls));
		snap_json_strv(j, "hosts", sv->hosts, sv->nhosts);
		snap_json_strv(j, "allowed_sans", sv->allowed_sans, sv->nallowed_sans);
		snap_json_bool(j, "https_redirect", sv->https_redirect);
		snap_json_str(j, "tls_source", sv->tls_source);
		if (sv->term_l4)
			snap_json_bool(j, "routes_inside_by_tls_tcp", true);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	if (l->l4_mode != SNAP_L4_NONE)
		snap_json_str(j, "l4_mode", l->l4_mode == SNAP_L4_SNI    ? "SNI"
		                            : l->l4_mode == SNAP_L4_PEEK ? "SNI_PEEK"
		                                                         : "TCP");
	/* Also a terminating listener's, when a protocol TLS server routes what is inside. */
	if (l->l4_mode != SNAP_L4_NONE || l->l4)
		snap_dump_l4(j, "l4_routes", l->l4);
	snap_json_obj_end(j);
}

/* consistentHash in Envoy's terms: the cluster's lb config and the route's hash_policy
 * (here the cluster's, as Istio derives it from the cluster's DestinationRule), and
 * the entries of the current endpoint set's ring or table. */
static void snap_dump_lbhash(struct snap_json *j, const struct cluster *c,
                             const struct cluster_eps *eps)
{
	const struct lbh_cfg *h = c->hash;

	if (h->algo == LBH_MAGLEV) {
		snap_json_obj_begin(j, "maglev_lb_config");
		snap_json_int(j, "table_size", h->size);
	} else {
		snap_json_obj_begin(j, "ring_hash_lb_config");
		snap_json_int(j, "minimum_ring_size", h->size);
		snap_json_int(j, "maximum_ring_size", LBH_RING_MAX);
	}
	snap_json_int(j, "entries", (long long)lbh_size(eps ? eps->lbh : NULL));
	snap_json_obj_end(j);
	snap_json_arr_begin(j, "hash_policy");
	snap_json_obj_begin(j, NULL);
	switch (h->key) {
	case LBH_KEY_HEADER:
		snap_json_obj_begin(j, "header");
		snap_json_str(j, "header_name", h->name);
		break;
	case LBH_KEY_COOKIE:
		snap_json_obj_begin(j, "cookie");
		snap_json_str(j, "name", h->name);
		snap_json_str(j, "path", h->cookie_path);
		snap_json_int(j, "ttl_s", h->cookie_ttl_s);
		break;
	case LBH_KEY_SOURCE_IP:
		snap_json_obj_begin(j, "connection_properties");
		snap_json_bool(j, "source_ip", true);
		break;
	case LBH_KEY_QUERY:
		snap_json_obj_begin(j, "query_parameter");
		snap_json_str(j, "name", h->name);
		break;
	case LBH_KEY_NONE:
	default:
		snap_json_obj_begin(j, "none");
		break;
	}
	snap_json_obj_end(j);
	snap_json_obj_end(j);
	snap_json_arr_end(j);
}

static void snap_dump_cluster(struct snap_json *j, const struct cluster *c)
{
	const struct cluster_eps *eps = atomic_load(&((struct cluster *)c)->eps);

	snap_json_obj_begin(j, NULL);
	snap_json_str(j, "name", c->name);
	snap_json_str(j, "host", c->host);
	snap_json_str(j, "subset", c->subset);
	snap_json_int(j, "port", c->port);
	snap_json_str(j, "discovery", snap_discovery_name(c->discovery));
	snap_json_str(j, "lb", c->hash ? lbh_algo_name(c->hash) : snap_lb_name(c->lb));
	if (c->hash)
		snap_dump_lbhash(j, c, eps);
	snap_json_str(j, "service_entry", c->src_se);
	snap_json_str(j, "destination_rule", c->src_dr);
	if (c->discovery == CLUSTER_DNS || c->discovery == CLUSTER_DNS_ROUND_ROBIN) {
		snap_json_arr_begin(j, "dns_names");
		for (size_t i = 0; i < c->nnames; i++) {
			snap_json_obj_begin(j, NULL);
			snap_json_str(j, "host", c->names[i].host);
			snap_json_int(j, "port", c->names[i].port);
			snap_json_int(j, "weight", c->names[i].weight);
			snap_json_obj_end(j);
		}
		snap_json_arr_end(j);
	} else if (c->discovery == CLUSTER_STATIC) {
		snap_json_arr_begin(j, "endpoints");
		for (size_t i = 0; eps && i < eps->n; i++) {
			snap_json_obj_begin(j, NULL);
			snap_json_str(j, "address", eps->v[i].str);
			snap_json_int(j, "weight", eps->v[i].weight);
			snap_json_obj_end(j);
		}
		snap_json_arr_end(j);
	}
	snap_json_obj_begin(j, "tls");
	snap_json_str(j, "mode", snap_ctls_name(c->tls_mode));
	if (c->tls_mode != CLUSTER_TLS_DISABLE) {
		snap_json_str(j, "sni", c->sni);
		snap_json_strv(j, "sans", c->sans, c->nsans);
		snap_json_bool(j, "verify_host_auto", c->verify_host_auto);
		snap_json_bool(j, "insecure_skip_verify", c->insecure_skip_verify);
		snap_json_str(j, "credential", c->credential);
		snap_json_str(j, "ca", c->src_ca);
		snap_json_str(j, "client_cert", c->src_cert);
		snap_json_str(j, "crl", c->src_crl);
		snap_json_str(j, "error", c->tls_ctx_error);
	}
	snap_json_obj_end(j);
	snap_json_int(j, "connect_timeout_ms", c->connect_timeout_ms);
	snap_json_int(j, "idle_timeout_ms", c->idle_timeout_ms);
	snap_json_int(j, "max_requests_per_connection", c->max_requests_per_conn);
	snap_json_int(j, "max_connections", c->max_connections);
	snap_json_int(j, "max_pending_requests", c->max_pending);
	snap_json_int(j, "max_requests", c->max_requests);
	snap_json_int(j, "max_retries", c->max_retries);
	snap_json_bool(j, "h2_upgrade", c->h2_upstream);
	if (c->od.on) {
		/* The values in force, Istio's and Envoy's defaults applied (outlier.h). */
		snap_json_obj_begin(j, "outlier_detection");
		snap_json_int(j, "consecutive_5xx", c->od.consecutive_5xx);
		snap_json_int(j, "consecutive_gateway_errors", c->od.consecutive_gateway);
		snap_json_bool(j, "split_external_local_origin_errors", c->od.split);
		snap_json_int(j, "consecutive_local_origin_failures", c->od.consecutive_local);
		snap_json_int(j, "interval_ms", (long long)c->od.interval_ms);
		snap_json_int(j, "base_ejection_time_ms", (long long)c->od.base_ejection_ms);
		snap_json_int(j, "max_ejection_time_ms", (long long)c->od.max_ejection_ms);
		snap_json_int(j, "max_ejection_percent", c->od.max_ejection_percent);
		snap_json_int(j, "min_health_percent", c->od.min_health_percent);
		snap_json_obj_end(j);
	}
	snap_json_obj_end(j);
}

void snap_config_dump(const struct snap *s, struct sbuf *out)
{
	struct snap_json j;

	snap_json_init(&j, out);
	snap_json_obj_begin(&j, NULL);
	snap_json_int(&j, "version", (long long)s->version);
	snap_json_str(&j, "role", s->role == SNAP_ROLE_GATEWAY ? "gateway" : "sidecar");
	snap_json_arr_begin(&j, "listeners");
	for (size_t i = 0; i < s->nlisteners; i++)
		snap_dump_listener(&j, &s->listeners[i]);
	snap_json_arr_end(&j);
	if (s->mesh_l4)
		snap_dump_l4(&j, "mesh_l4_routes", s->mesh_l4);
	snap_json_arr_begin(&j, "route_configs");
	for (size_t i = 0; i < s->nlisteners; i++)
		if (s->listeners[i].routes)
			snap_dump_table(&j, s->listeners[i].routes);
	for (size_t i = 0; i < s->noutbound; i++)
		snap_dump_table(&j, s->outbound[i]);
	snap_json_arr_end(&j);
	snap_json_arr_begin(&j, "clusters");
	for (size_t i = 0; i < s->nclusters; i++)
		snap_dump_cluster(&j, s->clusters[i]);
	snap_json_arr_end(&j);
	authz_json(s->authz, &j);
	snap_json_obj_end(&j);
	sbuf_addc(out, '\n');
}
