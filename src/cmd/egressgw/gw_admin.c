/* gw_admin: the admin endpoint's pages that are the gateway's own (see gw.h):
 * /ready, /stats/prometheus (the workers' counters summed, the lifecycle, certificate and
 * Istio families), /config_dump (rendered from the snapshot when asked), /certs; Envoy's
 * admin pages are in envoy_admin.c. */
#include "cmd/egressgw/gw.h"

#include "admin/admin.h"
#include "cmd/egressgw/lifecycle.h"
#include "cmd/egressgw/load.h"
#include "cmd/egressgw/envoy_admin.h"
#include "config/store.h"
#include "core/diag.h"
#include "core/log.h"
#include "core/util.h"
#include "core/version.h"
#include "net/dns.h"
#include "net/loop.h"
#include "net/sock.h"
#include "net/tls.h"
#include "net/tls_mem.h"
#include "proxy/pool.h"
#include "proxy/overload.h"
#include "proxy/snap.h"
#include "proxy/worker.h"
#include "secrets/secret.h"

#include <ares.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <yaml.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- admin ---- */

/* /stats/prometheus: the workers' counters (struct wstats, summed), one family each, in
 * this order; the labelled families and the process's own values are written around
 * them in gw_prom_render, then Istio's standard metrics and the per-cluster series
 * (proxy/istats.c). Counters end in _total, as Prometheus names them. */
#define WSTAT(field) (offsetof(struct wstats, field) / sizeof(stat_t))

struct prom_stat {
	const char *name;               /* after "egressgw_" */
	bool gauge;
	size_t idx;                     /* in struct wstats_sum */
	const char *help;
};

static const struct prom_stat prom_downstream[] = {
	{ "downstream_cx_total", false, WSTAT(dcx_total), "Downstream connections accepted." },
	{ "downstream_cx_active", true, WSTAT(dcx_active), "Downstream connections open." },
	{ "downstream_cx_ssl_handshake_failed_total", false, WSTAT(dcx_tls_fail),
	  "Downstream TLS handshakes that failed." },
	{ "downstream_rq_total", false, WSTAT(rq_total), "Downstream requests." },
	{ "downstream_rq_active", true, WSTAT(rq_active), "Downstream requests in progress." },
};

static const struct prom_stat prom_upstream[] = {
	{ "upstream_cx_total", false, WSTAT(ucx_total), "Upstream connections opened." },
	{ "upstream_cx_active", true, WSTAT(ucx_active), "Upstream connections open." },
	{ "upstream_cx_connect_fail_total", false, WSTAT(ucx_connect_fail),
	  "Upstream connections that failed to connect." },
	{ "upstream_cx_connect_timeout_total", false, WSTAT(ucx_connect_timeout),
	  "Upstream connections that timed out connecting." },
	{ "upstream_rq_total", false, WSTAT(urq_total), "Upstream requests (attempts)." },
	{ "upstream_rq_retry_total", false, WSTAT(urq_retry), "Upstream requests retried." },
	{ "upstream_rq_reused_total", false, WSTAT(urq_reused),
	  "Upstream requests sent on a pooled connection." },
	{ "upstream_rq_timeout_total", false, WSTAT(urq_timeout), "Requests that timed out (UT)." },
	{ "upstream_pool_idle", true, WSTAT(pool_idle), "Idle upstream connections in the pools." },
	{ "no_route_total", false, WSTAT(no_route), "Requests without a route (NR)." },
	{ "no_healthy_upstream_total", false, WSTAT(no_healthy),
	  "Requests whose cluster had no endpoint (UH)." },
	{ "dns_failure_total", false, WSTAT(dns_fail), "Requests failed by name resolution (DF)." },
	{ "lb_hash_no_key_total", false, WSTAT(lbh_no_key),
	  "Requests to a consistentHash cluster without their hash key (random endpoint)." },
	{ "lb_hash_cookie_generated_total", false, WSTAT(lbh_cookie_set),
	  "consistentHash cookies made up for requests without one (Set-Cookie)." },
	{ "cors_origin_valid_total", false, WSTAT(cors_valid),
	  "Requests with an Origin their route's corsPolicy allows." },
	{ "cors_origin_invalid_total", false, WSTAT(cors_invalid),
	  "Requests with an Origin their route's corsPolicy does not allow." },
	{ "upstream_cx_http2_total", false, WSTAT(ucx_h2),
	  "Upstream connections that negotiated HTTP/2." },
	{ "upstream_cx_http2_fallback_total", false, WSTAT(ucx_h2_fallback),
	  "Upstream connections offered h2 whose server chose HTTP/1.1." },
};

static const struct prom_stat prom_mesh[] = {
	{ "downstream_cx_peer_identity_total", false, WSTAT(dcx_peer_identity),
	  "Downstream connections whose client presented a SPIFFE identity." },
	{ "tunnel_total", false, WSTAT(tun_total), "Opaque TCP tunnels (sidecar)." },
	{ "tunnel_active", true, WSTAT(tun_active), "Opaque TCP tunnels open (sidecar)." },
	{ "passthrough_total", false, WSTAT(passthrough), "Requests and tunnels to PassthroughCluster." },
	{ "blackhole_total", false, WSTAT(blackhole), "Requests and tunnels to BlackHoleCluster." },
	/* tls:/tcp: routes (l4fwd.c): connections they sent on, and those refused (no
	 * route at a gateway port, a route that cannot be served). */
	{ "l4_route_total", false, WSTAT(l4_routed), "Connections tls:/tcp: routes sent on." },
	{ "l4_refused_total", false, WSTAT(l4_refused),
	  "Connections refused by tls:/tcp: routing (no route, or one that cannot be served)." },
	/* Circuit breakers and outlier detection (Envoy's names). */
	{ "upstream_cx_overflow_total", false, WSTAT(ucx_overflow),
	  "Times the maxConnections circuit breaker made a request wait." },
	{ "upstream_rq_pending_overflow_total", false, WSTAT(urq_pending_overflow),
	  "Requests refused by the pending requests circuit breaker (UO)." },
	{ "upstream_rq_pending_total", false, WSTAT(urq_pending_total),
	  "Requests that waited for a connection." },
	{ "upstream_rq_pending_active", true, WSTAT(urq_pending_active),
	  "Requests waiting for a connection." },
	{ "outlier_detection_ejections_enforced_total", false, WSTAT(od_ejections_enforced),
	  "Endpoints ejected by outlier detection." },
	{ "outlier_detection_ejections_active", true, WSTAT(od_ejections_active),
	  "Endpoints ejected now." },
	{ "outlier_detection_ejections_overflow_total", false, WSTAT(od_ejections_overflow),
	  "Ejections not made because maxEjectionPercent was reached." },
};

/* Refused connections: past --max-connections, or no descriptor left. */
static const struct prom_stat prom_refused[] = {
	{ "downstream_cx_overflow_total", false, WSTAT(dcx_overflow),
	  "Connections closed at once because --max-connections were open." },
	{ "downstream_cx_no_fd_total", false, WSTAT(dcx_no_fd),
	  "Connections closed at once for want of a file descriptor." },
	{ "downstream_cx_evicted_total", false, WSTAT(dcx_evicted),
	  "Connections serving nothing closed to make room for a new one." },
};

/* AuthorizationPolicy decisions (Envoy's RBAC filter: rbac.allowed, rbac.denied,
 * rbac.shadow_allowed, rbac.shadow_denied). */
static const struct prom_stat prom_rbac[] = {
	{ "rbac_allowed_total", false, WSTAT(rbac_allowed), "Requests AuthorizationPolicy allowed." },
	{ "rbac_denied_total", false, WSTAT(rbac_denied), "Requests AuthorizationPolicy denied." },
	{ "rbac_shadow_allowed_total", false, WSTAT(rbac_shadow_allowed),
	  "Requests dry-run AuthorizationPolicies would allow." },
	{ "rbac_shadow_denied_total", false, WSTAT(rbac_shadow_denied),
	  "Requests dry-run AuthorizationPolicies would deny." },
};

/* VirtualService fault injection (Envoy's fault.delays_injected, fault.aborts_injected). */
static const struct prom_stat prom_fault[] = {
	{ "fault_delays_injected_total", false, WSTAT(fault_delays),
	  "Requests delayed by VirtualService fault injection (DI)." },
	{ "fault_aborts_injected_total", false, WSTAT(fault_aborts),
	  "Requests aborted by VirtualService fault injection (FI)." },
};

/* VirtualService mirror policies (fwd_mirror.c); per mirror, the mirror cluster's own
 * upstream_rq_* series (Envoy counts shadows there too). */
static const struct prom_stat prom_mirror[] = {
	{ "mirror_requests_total", false, WSTAT(mirror_sent),
	  "Shadow requests sent to a mirror (VirtualService mirror/mirrors)." },
	{ "mirror_responses_total", false, WSTAT(mirror_answered),
	  "Shadow requests whose whole response came back (any status; discarded)." },
	{ "mirror_failed_total", false, WSTAT(mirror_failed),
	  "Shadow requests without a whole response (connect failure, reset, timeout)." },
	{ "mirror_skipped_body_total", false, WSTAT(mirror_skip_body),
	  "Requests not mirrored: body over the 64 KiB mirror bound." },
	{ "mirror_skipped_overflow_total", false, WSTAT(mirror_skip_busy),
	  "Shadows not sent: 1,000 in flight on the worker." },
	{ "mirror_skipped_unfinished_total", false, WSTAT(mirror_skip_unfinished),
	  "Requests not mirrored: they ended before their body was whole." },
	{ "mirror_active", true, WSTAT(mirror_active), "Shadow requests in flight." },
};

static void prom_family(struct sbuf *body, const char *name, bool gauge, const char *help)
{
	sbuf_addf(body, "# HELP egressgw_%s %s\n# TYPE egressgw_%s %s\n", name, help, name,
	          gauge ? "gauge" : "counter");
}

static void prom_line(struct sbuf *body, const char *name, bool gauge, const char *help,
                      unsigned long long v)
{
	prom_family(body, name, gauge, help);
	sbuf_addf(body, "egressgw_%s %llu\n", name, v);
}

static void prom_lines(struct sbuf *body, const struct wstats_sum *sum,
                       const struct prom_stat *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		prom_line(body, t[i].name, t[i].gauge, t[i].help, (unsigned long long)sum->v[t[i].idx]);
}

static void admin_draining(struct gw *g, struct sbuf *body);

void gw_prom_render(void *arg, struct sbuf *body)
{
	struct gw *g = arg;
	struct wstats_sum sum;

	proxy_stats(&g->proxy, &sum);
	prom_lines(body, &sum, prom_downstream, ARRAY_SIZE(prom_downstream));
	prom_family(body, "downstream_rq_xx_total", false,
	            "Downstream responses by status class (\"none\": no response).");
	for (int c = 1; c <= 5; c++)
		sbuf_addf(body, "egressgw_downstream_rq_xx_total{response_code_class=\"%dxx\"} %llu\n", c,
		          (unsigned long long)sum.v[WSTAT(resp) + (size_t)c]);
	sbuf_addf(body, "egressgw_downstream_rq_xx_total{response_code_class=\"none\"} %llu\n",
	          (unsigned long long)sum.v[WSTAT(resp)]);
	prom_lines(body, &sum, prom_upstream, ARRAY_SIZE(prom_upstream));
	prom_family(body, "upstream_tls_handshake_total", false,
	            "Upstream TLS handshakes completed, full or resumed.");
	sbuf_addf(body,
	          "egressgw_upstream_tls_handshake_total{resumed=\"false\"} %llu\n"
	          "egressgw_upstream_tls_handshake_total{resumed=\"true\"} %llu\n",
	          (unsigned long long)sum.v[WSTAT(ucx_tls_full)],
	          (unsigned long long)sum.v[WSTAT(ucx_tls_resumed)]);
	prom_lines(body, &sum, prom_mesh, ARRAY_SIZE(prom_mesh));
	prom_family(body, "upstream_tls_failure_total", false,
	            "Upstream TLS handshakes that failed, by reason.");
	for (int i = 0; i < STATS_TLS_CATS; i++)
		sbuf_addf(body, "egressgw_upstream_tls_failure_total{reason=\"%s\"} %llu\n",
		          stats_tls_cat_name(i), (unsigned long long)sum.v[WSTAT(ucx_tls_fail) + (size_t)i]);
	prom_line(body, "config_reloads_total", false, "Configurations loaded and applied.",
	          (unsigned long long)atomic_load(&g->proxy.config_reloads));
	prom_line(body, "config_rejects_total", false,
	          "Configurations rejected (the previous one kept serving).",
	          (unsigned long long)atomic_load(&g->proxy.config_rejects));
	prom_line(body, "config_version", true, "Version of the configuration serving.",
	          (unsigned long long)(g->snap ? g->snap->version : 0));
	prom_lines(body, &sum, prom_refused, ARRAY_SIZE(prom_refused));
	prom_line(body, "downstream_cx_max", true, "--max-connections (0: no limit).",
	          (unsigned long long)g->proxy.max_dcx);
	lc_prom(&g->lc, body);
	pthread_mutex_lock(&g->secrets_mu);
	secret_cache_prom(g->params.secrets, time(NULL), body);
	pthread_mutex_unlock(&g->secrets_mu);
	admin_draining(g, body);
	prom_lines(body, &sum, prom_rbac, ARRAY_SIZE(prom_rbac));
	prom_lines(body, &sum, prom_fault, ARRAY_SIZE(prom_fault));
	prom_lines(body, &sum, prom_mirror, ARRAY_SIZE(prom_mirror));
	istats_prometheus(&g->proxy, &g->proxy.istats_self, body);
	ovl_prom(body);
}

/* egressgw_cluster_upstream_cx_draining: per cluster of the running snapshot, and for
 * clusters gone from it whose connections still drain. */
static void admin_draining(struct gw *g, struct sbuf *body)
{
	const char **names = NULL;
	size_t n = g->snap ? g->snap->nclusters : 0;

	if (n)
		names = xcalloc(n, sizeof(*names));
	for (size_t i = 0; i < n; i++)
		names[i] = g->snap->clusters[i]->name;
	pool_draining_prom(body, names, n);
	free(names);
}

int gw_admin_handle(void *arg, const char *method, const char *path, struct sbuf *body,
                        const char **ctype)
{
	struct gw *g = arg;
	size_t qlen = strcspn(path, "?");
	int st = lc_admin(&g->lc, method, path, body);

	if (st)
		return st;   /* lifecycle.c: /ready, /healthcheck/fail and ok, /drain_listeners, /reopen_logs */
	st = envoy_admin_handle(&g->ea, method, path, body, ctype);
	if (st)
		return st;   /* envoy_admin.c: /clusters, /server_info, /stats, /listeners, ... */
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		sbuf_adds(body, "method not allowed\n");
		return 405;
	}
	if (qlen == 12 && strncmp(path, "/config_dump", 12) == 0) {
		*ctype = "application/json";
		if (g->snap)
			snap_config_dump(g->snap, body);
		else
			sbuf_adds(body, "{}\n");
		return 200;
	}
	if (qlen == 6 && strncmp(path, "/certs", 6) == 0) {
		/* The credentials in use (never key material), for proxy-config secret. */
		*ctype = "application/json";
		pthread_mutex_lock(&g->secrets_mu);
		secret_cache_json(g->params.secrets, body);
		pthread_mutex_unlock(&g->secrets_mu);
		return 200;
	}
	if (qlen == 17 && strncmp(path, "/stats/prometheus", 17) == 0) {
		*ctype = "text/plain; version=0.0.4";
		gw_prom_render(g, body);
		return 200;
	}
	sbuf_adds(body, "not found; try /ready, /stats/prometheus, /config_dump, /certs\n");
	return 404;
}
