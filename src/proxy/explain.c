/* explain: one request through the router, on paper (see explain.h).
 *
 * The order of decisions is fwd_core.c's st_begin (and st_sidecar_connect for CONNECT): keep
 * them in step when the data path changes. */
#include "proxy/explain.h"
#include "proxy/lbhash.h"
#include "proxy/hstats.h"
#include "proxy/istats.h"
#include "proxy/route_fault.h"
#include "proxy/sidecar.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ex_hdrs {
	const struct explain_req *q;
};

static bool ex_header(void *ctx, const char *name, const char **v, size_t *vlen)
{
	const struct explain_req *q = ((struct ex_hdrs *)ctx)->q;
	size_t n = strlen(name);

	for (size_t i = 0; i < q->nheaders; i++) {
		const char *h = q->headers[i];

		if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
			*v = h + n + 1;
			while (**v == ' ' || **v == '\t')
				(*v)++;
			*vlen = strlen(*v);
			return true;
		}
	}
	return false;
}

static const char *const cluster_tls_names[] = { "DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL" };
static const char *const server_tls_names[] = { "PLAIN", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL",
                                                "PASSTHROUGH" };
static const char *const lb_names[] = { "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH" };

/* The verdict: what the client gets when the proxy cannot forward. */
static void ex_refuse(struct snap_json *j, int code, const char *flags, const char *details,
                      const char *reason)
{
	snap_json_str(j, "result", "refused");
	snap_json_int(j, "response_code", code);
	snap_json_str(j, "response_flags", flags);
	snap_json_str(j, "response_code_details", details);
	snap_json_str(j, "reason", reason);
}

static void ex_route(struct snap_json *j, const struct route *r)
{
	snap_json_obj_begin(j, "route");
	snap_json_str(j, "name", r->name);
	snap_json_str(j, "virtual_service", r->vs);
	snap_json_route_source(j, r);
	if (r->timeout_ms)
		snap_json_int(j, "timeout_ms", r->timeout_ms);
	snap_json_obj_end(j);
}

/* The cluster's TLS origination, as "tls". host: the request's (the SNI when none is set). */
static void ex_cluster_tls(struct snap_json *j, const struct cluster *cl, const char *host)
{
	char sni[300];

	snap_json_obj_begin(j, "tls");
	snap_json_str(j, "mode", cluster_tls_names[cl->tls_mode]);
	if (cl->tls_mode != CLUSTER_TLS_DISABLE) {
		snprintf(sni, sizeof(sni), "%s", cl->sni ? cl->sni : host);
		snap_json_str(j, "sni", sni);
		snap_json_arr_begin(j, "subject_alt_names");
		for (size_t i = 0; i < cl->nsans; i++)
			snap_json_str(j, NULL, cl->sans[i]);
		snap_json_arr_end(j);
		snap_json_bool(j, "verify_host", cl->verify_host_auto);
		snap_json_bool(j, "insecure_skip_verify", cl->insecure_skip_verify);
		snap_json_str(j, "credential", cl->credential);
		snap_json_bool(j, "http2", cl->h2_alpn);
		snap_json_str(j, "error", cl->tls_ctx_error);
	}
	snap_json_obj_end(j);
}

/* Outlier detection's state, as the workers mirror it (hstats.h), as "ejected_endpoints".
 * Sets *first_in to the first endpoint still in service on some worker (eps->n when none
 * is) and *out_everywhere to how many are ejected on every worker. */
static void ex_cluster_ejected(struct snap_json *j, const struct proxy *p,
                               const struct cluster *cl, const struct cluster_eps *eps,
                               size_t *first_in, size_t *out_everywhere)
{
	*first_in = eps->n;
	snap_json_arr_begin(j, "ejected_endpoints");
	for (size_t i = 0; i < eps->n; i++) {
		struct hstats_sum hs;

		istats_host_sum(p, cl->name, eps->v[i].str, &hs);
		if (hs.ejected_workers < hs.workers && *first_in == eps->n)
			*first_in = i;
		if (!hs.ejected_workers)
			continue;
		*out_everywhere += hs.ejected_workers >= hs.workers;
		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "endpoint", eps->v[i].str);
		snap_json_int(j, "ejected_workers", hs.ejected_workers);
		snap_json_int(j, "workers", hs.workers);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
}

/* The verdict for a cluster with endpoints eps, the first in service first_in, and
 * out_everywhere of them ejected on every worker: refused as the request path would, or forwarded. */
static void ex_cluster_verdict(struct snap_json *j, const struct proxy *p,
                               const struct cluster *cl, const struct cluster_eps *eps,
                               size_t first_in, size_t out_everywhere)
{
	if (cl->tls_mode != CLUSTER_TLS_DISABLE && !cl->tls_ctx) {
		ex_refuse(j, 503, "UF", "upstream_reset_before_response_started{connection_failure}",
		          cl->tls_ctx_error ? cl->tls_ctx_error : "no TLS context");
		return;
	}
	if (!eps || eps->n == 0) {
		if (atomic_load_explicit(&cl->dns_failed, memory_order_relaxed))
			ex_refuse(j, 503, "DF", "dns_resolution_failure",
			          cl->dns_error ? cl->dns_error : "name resolution failed");
		else
			ex_refuse(j, 503, "UH", "no_healthy_upstream", "the cluster has no endpoints");
		return;
	}
	if (out_everywhere == eps->n && cl->od.min_health_percent == 0) {
		/* fwd_core.c st_pick_endpoint: every endpoint excluded and no panic threshold: 503 UH on every worker. */
		ex_refuse(j, 503, "UH", "no_healthy_upstream", "every endpoint is ejected by outlier "
		          "detection on every worker");
		return;
	}
	if (first_in >= eps->n)
		first_in = 0;           /* panic (minHealthPercent): all of them are used */
	snap_json_str(j, "result", "forward");
	snap_json_str(j, "endpoint", eps->v[first_in].str);
	if (eps->n > 1) {
		char how[300], key[160];

		if (cl->hash)   /* consistentHash: the request's key decides (fwd_hash.c) */
			snprintf(how, sizeof(how), "%s by %s over %zu endpoints, the same on every "
			         "worker (endpoint is the first of them%s, not the key's)",
			         lbh_algo_name(cl->hash), lbh_key_desc(cl->hash, key, sizeof(key)),
			         eps->n, cl->od.on && p ? " in service" : "");
		else
			snprintf(how, sizeof(how), "%s over %zu endpoints, per worker (endpoint is the "
			         "first of them%s)", lb_names[cl->lb], eps->n,
			         cl->od.on && p ? " in service" : "");
		snap_json_str(j, "endpoint_pick", how);
	} else {
		snap_json_str(j, "endpoint_pick", "the only endpoint");
	}
	if (cl->od.on)
		snap_json_str(j, "outlier_detection", "on: an endpoint ejected on a worker is skipped "
		              "there (ejected_endpoints: on how many workers)");
}

/* The cluster, its TLS origination and endpoints; then the verdict. host: the request's
 * (auto SNI, passthrough destination). */
static void ex_cluster(struct snap_json *j, const struct proxy *p, const struct cluster *cl,
                       const char *host, uint16_t port)
{
	const struct cluster_eps *eps = cluster_eps_load(cl);
	size_t first_in = 0, out_everywhere = 0;

	snap_json_obj_begin(j, "cluster");
	snap_json_str(j, "name", cl->name);
	snap_json_str(j, "load_balancer", cl->hash ? lbh_algo_name(cl->hash) : lb_names[cl->lb]);
	ex_cluster_tls(j, cl, host);
	snap_json_arr_begin(j, "endpoints");
	for (size_t i = 0; eps && i < eps->n; i++)
		snap_json_str(j, NULL, eps->v[i].str);
	snap_json_arr_end(j);
	if (cl->od.on && p && eps)
		ex_cluster_ejected(j, p, cl, eps, &first_in, &out_everywhere);
	snap_json_obj_end(j);

	if (cl == &sidecar_blackhole_cluster) {
		ex_refuse(j, 502, "-", "direct_response", "no route for the host on this port and "
		          "the outbound traffic policy is REGISTRY_ONLY (BlackHoleCluster)");
		return;
	}
	if (cl == &sidecar_passthrough_cluster || cl->discovery == CLUSTER_ORIGINAL_DST) {
		char ep[320];

		snprintf(ep, sizeof(ep), "%s:%u", host, port);
		snap_json_str(j, "result", "forward");
		snap_json_str(j, "endpoint", ep);
		snap_json_str(j, "endpoint_pick", "the original destination (PassthroughCluster), "
		              "resolved on the worker");
		return;
	}
	ex_cluster_verdict(j, p, cl, eps, first_in, out_everywhere);
}

/* Splits the URL. Returns 0 or -1. */
static int ex_url(const char *url, bool *https, char *host, size_t hn, uint16_t *port,
                  const char **path, struct sbuf *err)
{
	const char *a;
	size_t alen;

	if (strncmp(url, "http://", 7) == 0) {
		*https = false;
		a = url + 7;
	} else if (strncmp(url, "https://", 8) == 0) {
		*https = true;
		a = url + 8;
	} else {
		sbuf_addf(err, "the URL must start with http:// or https://: \"%s\"", url);
		return -1;
	}
	alen = strcspn(a, "/?#");
	*path = a[alen] == '/' ? a + alen : "/";
	if (sidecar_split_authority(a, alen, host, hn, port, *https ? 443 : 80) < 0) {
		sbuf_addf(err, "bad host or port in \"%s\"", url);
		return -1;
	}
	return 0;
}

/* The gateway server of listener l that takes SNI host (its hosts, as the SNI dispatch
 * matches them); NULL when none. */
static const struct snap_server *ex_server(const struct snap_listener *l, const char *host)
{
	for (size_t i = 0; i < l->nservers; i++)
		for (size_t k = 0; k < l->servers[i].nhosts; k++)
			if (strcmp(l->servers[i].hosts[k], "*") == 0 ||
			    tls_host_match(l->servers[i].hosts[k], host))
				return &l->servers[i];
	return NULL;
}

/* Gateway role: the listener on port and the server taking host, written to j. Returns
 * the route table to look in (*https: the listener terminates TLS), or NULL with *done
 * set when the answer (refused, redirected) is written already. */
static const struct route_table *ex_gw_listener(struct snap_json *j, const struct snap *s,
                                                const char *host, uint16_t port,
                                                bool *https, bool *done)
{
	const struct snap_listener *l = NULL;
	const struct snap_server *srv;

	*done = true;
	for (size_t i = 0; i < s->nlisteners && !l; i++)
		if (s->listeners[i].port == port)
			l = &s->listeners[i];
	if (!l) {
		char why[120];

		snprintf(why, sizeof(why), "no Gateway server listens on port %u", port);
		snap_json_null(j, "listener");
		ex_refuse(j, 0, "-", "connection_refused", why);
		return NULL;
	}
	srv = ex_server(l, host);
	snap_json_obj_begin(j, "listener");
	snap_json_str(j, "name", l->name);
	snap_json_bool(j, "tls", l->tls);
	if (srv) {
		snap_json_str(j, "gateway", srv->gateway);
		snap_json_str(j, "server_tls", server_tls_names[srv->tls]);
		snap_json_str(j, "server_certificate", srv->tls_source);
		snap_json_arr_begin(j, "allowed_client_sans");
		for (size_t i = 0; i < srv->nallowed_sans; i++)
			snap_json_str(j, NULL, srv->allowed_sans[i]);
		snap_json_arr_end(j);
	}
	snap_json_obj_end(j);
	if (l->tls && !srv) {
		ex_refuse(j, 0, "-", "tls_handshake_refused", "no server of the listener takes "
		          "this host as SNI (unrecognized_name)");
		return NULL;
	}
	if (srv && srv->https_redirect && !l->tls) {
		snap_json_str(j, "result", "redirect");
		snap_json_int(j, "response_code", 301);
		snap_json_str(j, "reason", "the Gateway server has tls.httpsRedirect");
		return NULL;
	}
	snap_json_str(j, "route_table", l->routes ? l->routes->name : NULL);
	*https = l->tls;
	*done = false;
	return l->routes;
}

/* No virtual host for the host: the sidecar's outbound traffic policy, the gateway's 404. */
static void ex_no_vhost(struct snap_json *j, const struct explain_req *q, bool sidecar,
                        const char *host, uint16_t port)
{
	snap_json_null(j, "virtual_host");
	if (!sidecar) {
		ex_refuse(j, 404, "NR", "route_not_found", "no virtual host of the listener's route "
		          "table matches the host");
		return;
	}
	snap_json_obj_begin(j, "route");
	snap_json_str(j, "name", q->registry_only ? "block_all" : "allow_any");
	snap_json_str(j, "reason", "no VirtualService or ServiceEntry for this host and "
	              "port: the outbound traffic policy");
	snap_json_obj_end(j);
	ex_cluster(j, q->proxy, q->registry_only ? &sidecar_blackhole_cluster
	                                         : &sidecar_passthrough_cluster, host, port);
}

/* The virtual host's route for the request, and what it does: redirect, direct response,
 * or its destinations and the first one's cluster. */
static void ex_vhost(struct snap_json *j, const struct explain_req *q,
                     const struct route_vhost *vh, const char *method, const char *path,
                     const char *host, uint16_t port, bool https)
{
	struct ex_hdrs hc = { q };
	struct route_req rq;
	const struct route *r;
	const char *auth = strstr(q->url, "://") + 3;

	snap_json_str(j, "virtual_host", vh->name);
	memset(&rq, 0, sizeof(rq));
	rq.method = method;
	rq.method_len = strlen(method);
	rq.path = path;
	rq.path_len = strlen(path);
	rq.host = host;
	rq.host_len = strlen(host);
	rq.authority = auth;
	rq.authority_len = strcspn(auth, "/?#");
	rq.scheme = https ? "https" : "http";
	rq.scheme_len = strlen(rq.scheme);
	rq.port = port;
	rq.header = ex_header;
	rq.header_ctx = &hc;
	r = route_select(vh, &rq);
	if (!r) {
		ex_refuse(j, 404, "NR", "route_not_found", "no route of the virtual host matches "
		          "(method, path, headers)");
		return;
	}
	ex_route(j, r);
	if (r->fault)   /* fault injection, decided per request: said, not decided here */
		snap_json_route_fault(j, r->fault);
	if (r->redirect_code) {
		struct sbuf loc = SBUF_INIT;

		route_fault_location(r->fault, r->redirect_authority, r->redirect_uri, &rq, &loc);
		snap_json_str(j, "result", "redirect");
		snap_json_int(j, "response_code", r->redirect_code);
		snap_json_str(j, "location", sbuf_str(&loc));
		sbuf_free(&loc);
		return;
	}
	if (r->fault && r->fault->direct_status) {
		snap_json_str(j, "result", "direct_response");
		snap_json_int(j, "response_code", r->fault->direct_status);
		return;
	}
	snap_json_arr_begin(j, "destinations");
	for (size_t i = 0; i < r->ndests; i++) {
		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "cluster", r->dests[i].cluster_name);
		snap_json_int(j, "weight", r->dests[i].weight);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	if (r->ndests == 0 || !r->dests[0].cluster) {
		ex_refuse(j, 503, "NC", "cluster_not_found", "the route's destination has no cluster");
		return;
	}
	/* With several weighted destinations, the first is shown; each request picks by
	 * weight. */
	ex_cluster(j, q->proxy, r->dests[0].cluster, host, port);
}

int explain_request(const struct snap *s, const struct explain_req *q, struct sbuf *out,
                    struct sbuf *err)
{
	struct snap_json j;
	const struct route_table *t = NULL;
	const struct route_vhost *vh;
	const char *method = q->method ? q->method : "GET", *path;
	char host[256];
	uint16_t port;
	bool https, done = false, sidecar = s->role == SNAP_ROLE_SIDECAR;

	if (ex_url(q->url, &https, host, sizeof(host), &port, &path, err) < 0)
		return -1;
	snap_json_init(&j, out);
	snap_json_obj_begin(&j, NULL);
	snap_json_obj_begin(&j, "request");
	snap_json_str(&j, "method", method);
	snap_json_str(&j, "url", q->url);
	snap_json_str(&j, "host", host);
	snap_json_int(&j, "port", port);
	snap_json_str(&j, "path", path);
	snap_json_obj_end(&j);
	snap_json_str(&j, "proxy", sidecar ? "sidecar" : "gateway");
	snap_json_int(&j, "config_version", (long long)s->version);

	if (sidecar && https) {
		/* An https URL reaches the sidecar as CONNECT host:443 (HTTP proxy) or as a TLS
		 * ClientHello with that SNI (iptables): an opaque tunnel, never terminated. */
		struct cluster *cl = sidecar_tcp_cluster(s, host, port);

		snap_json_str(&j, "listener", "virtualOutbound");
		snap_json_str(&j, "handling", "TCP tunnel (CONNECT, or TLS passed through by SNI); "
		              "routed by host and port, the TLS is the application's");
		if (!cl)
			cl = q->registry_only ? &sidecar_blackhole_cluster : &sidecar_passthrough_cluster;
		ex_cluster(&j, q->proxy, cl, host, port);
	} else if (sidecar) {
		t = sidecar_table(s, port);
		snap_json_str(&j, "listener", "virtualOutbound");
		snap_json_str(&j, "route_table", t ? t->name : NULL);
	} else {
		t = ex_gw_listener(&j, s, host, port, &https, &done);
	}
	if (!(sidecar && https) && !done) {
		vh = t ? route_vhost_find(t, host, strlen(host)) : NULL;
		if (vh)
			ex_vhost(&j, q, vh, method, path, host, port, https);
		else
			ex_no_vhost(&j, q, sidecar, host, port);
	}
	snap_json_obj_end(&j);
	sbuf_addc(out, '\n');
	return 0;
}
