/* envoy_admin: Envoy's admin endpoints, same names and meaning (see envoy_admin.h).
 *
 * What egressgw has and Envoy's pages show differently:
 * - /clusters: endpoints with hostname, weight and Envoy's per-host counters (cx_active,
 *   cx_total, rq_error, rq_success, rq_timeout, rq_total: summed over the workers,
 *   proxy/hstats.h; cx_connect_fail and rq_active are not kept per host and not
 *   printed), the cluster's circuit breaker thresholds. Outlier ejection is decided per
 *   worker (outlier.h): a host ejected on any worker has health_flags
 *   /failed_outlier_check, and egressgw adds on how many workers
 *   (outlier_ejected_workers::N/WORKERS; in JSON, outlier_detection.ejected_workers).
 * - /logging: one process-wide level; Envoy's per-logger levels are refused (400).
 *   Envoy's trace and critical map to debug and error.
 * - /stats: the counters and gauges of /stats/prometheus (not Istio's label-heavy
 *   families), named as Envoy names them (cluster.NAME.upstream_rq_total).
 * And one of egressgw's own, answered here as well: /explain?url=URL[&method=M][&h=N:V...]
 * (proxy/explain.h), for egressctl explain-request. */
#include "cmd/egressgw/envoy_admin.h"
#include "cmd/egressgw/lifecycle.h"
#include "core/log.h"
#include "core/re.h"
#include "core/util.h"
#include "proxy/cluster.h"
#include "proxy/explain.h"
#include "proxy/overload.h"
#include "proxy/hstats.h"
#include "proxy/snap.h"

#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef EGRESSGW_VERSION
#define EGRESSGW_VERSION "dev"
#endif

/* The value of query parameter key in path ("?a=b&c=d"), copied into buf; NULL if absent. */
static const char *query_param(const char *path, const char *key, char *buf, size_t n)
{
	const char *q = strchr(path, '?');
	size_t klen = strlen(key);

	while (q) {
		const char *p = q + 1, *end = p + strcspn(p, "&");

		if ((size_t)(end - p) >= klen && strncmp(p, key, klen) == 0 &&
		    (p[klen] == '=' || p + klen == end)) {
			const char *v = p[klen] == '=' ? p + klen + 1 : end;
			size_t vlen = (size_t)(end - v), o = 0;

			/* %XX and + decoding, as a browser or curl --data-urlencode sends it. */
			for (size_t i = 0; i < vlen && o + 1 < n; i++) {
				if (v[i] == '%' && i + 2 < vlen) {
					char hex[3] = { v[i + 1], v[i + 2], 0 };

					buf[o++] = (char)strtol(hex, NULL, 16);
					i += 2;
				} else {
					buf[o++] = v[i] == '+' ? ' ' : v[i];
				}
			}
			buf[o] = '\0';
			return buf;
		}
		q = *end ? end : NULL;
	}
	return NULL;
}

static bool json_format(const char *path)
{
	char v[16];

	return query_param(path, "format", v, sizeof(v)) && strcmp(v, "json") == 0;
}

/* ---- /server_info ---- */

static int server_info(const struct envoy_admin *ea, struct sbuf *body)
{
	struct snap_json j;
	struct timespec ts;
	int64_t up;
	char buf[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	up = ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - ea->start_ms) / 1000;
	snap_json_init(&j, body);
	snap_json_obj_begin(&j, NULL);
	snap_json_str(&j, "version", "egressgw/" EGRESSGW_VERSION "/Clean/RELEASE/OpenSSL");
	snap_json_str(&j, "state", lc_draining(ea->lc) ? "DRAINING" : *ea->snap ? "LIVE" : "INITIALIZING");
	snap_json_str(&j, "hot_restart_version", "disabled");
	snap_json_obj_begin(&j, "command_line_options");
	snap_json_int(&j, "concurrency", ea->workers);
	snap_json_str(&j, "log_level", log_min_level == LOG_DEBUG ? "debug" :
	              log_min_level == LOG_INFO ? "info" : log_min_level == LOG_WARN ? "warning" :
	              "error");
	snap_json_str(&j, "admin_address", ea->admin_addr);
	snap_json_arr_begin(&j, "argv");
	for (int i = 0; i < ea->argc; i++)
		snap_json_str(&j, NULL, ea->argv[i]);
	snap_json_arr_end(&j);
	snap_json_obj_end(&j);
	snprintf(buf, sizeof(buf), "%llds", (long long)up);
	snap_json_str(&j, "uptime_current_epoch", buf);
	snap_json_str(&j, "uptime_all_epochs", buf);
	snap_json_int(&j, "config_version", *ea->snap ? (long long)(*ea->snap)->version : 0);
	ovl_json(&j);                   /* --overload-max-heap (proxy/overload.h) */
	snap_json_obj_end(&j);
	sbuf_addc(body, '\n');
	return 200;
}

/* ---- /clusters ---- */

static unsigned long long limit(uint32_t v)
{
	return v ? v : 4294967295ULL;       /* Istio's "no limit" */
}

/* Envoy's per-host stats, in the order /clusters prints them (counters and gauges by
 * name; cx_connect_fail and rq_active are not kept per host). */
static const struct {
	const char *name;
	bool gauge;
	size_t off;
} host_stats[] = {
	{ "cx_active", true, offsetof(struct hstats_sum, cx_active) },
	{ "cx_total", false, offsetof(struct hstats_sum, cx_total) },
	{ "rq_error", false, offsetof(struct hstats_sum, rq_error) },
	{ "rq_success", false, offsetof(struct hstats_sum, rq_success) },
	{ "rq_timeout", false, offsetof(struct hstats_sum, rq_timeout) },
	{ "rq_total", false, offsetof(struct hstats_sum, rq_total) },
};

static unsigned long long host_stat(const struct hstats_sum *h, size_t i)
{
	return *(const uint64_t *)(const void *)((const char *)h + host_stats[i].off);
}

static void clusters_text(const struct envoy_admin *ea, struct sbuf *b)
{
	const struct snap *s = *ea->snap;

	for (size_t i = 0; s && i < s->nclusters; i++) {
		const struct cluster *cl = s->clusters[i];
		const struct cluster_eps *eps = cluster_eps_load(cl);

		sbuf_addf(b, "%s::observability_name::%s\n", cl->name, cl->name);
		sbuf_addf(b, "%s::default_priority::max_connections::%llu\n", cl->name,
		          limit(cl->max_connections));
		sbuf_addf(b, "%s::default_priority::max_pending_requests::%llu\n", cl->name,
		          limit(cl->max_pending));
		sbuf_addf(b, "%s::default_priority::max_requests::%llu\n", cl->name,
		          limit(cl->max_requests));
		sbuf_addf(b, "%s::added_via_api::true\n", cl->name);
		for (size_t k = 0; eps && k < eps->n; k++) {
			const char *ep = eps->v[k].str;
			struct hstats_sum hs;

			istats_host_sum(ea->proxy, cl->name, ep, &hs);
			for (size_t n = 0; n < ARRAY_SIZE(host_stats); n++)
				sbuf_addf(b, "%s::%s::%s::%llu\n", cl->name, ep, host_stats[n].name,
				          host_stat(&hs, n));
			sbuf_addf(b, "%s::%s::hostname::%s\n", cl->name, ep, cl->host);
			/* Ejected on any worker: Envoy's flag, and on how many of them. */
			sbuf_addf(b, "%s::%s::health_flags::%s\n", cl->name, ep,
			          hs.ejected_workers ? "/failed_outlier_check" : "healthy");
			if (hs.ejected_workers)
				sbuf_addf(b, "%s::%s::outlier_ejected_workers::%d/%d\n", cl->name, ep,
				          hs.ejected_workers, hs.workers);
			sbuf_addf(b, "%s::%s::weight::%u\n", cl->name, ep, eps->v[k].weight ? eps->v[k].weight : 1);
			sbuf_addf(b, "%s::%s::region::\n%s::%s::zone::\n%s::%s::sub_zone::\n", cl->name, ep,
			          cl->name, ep, cl->name, ep);
			sbuf_addf(b, "%s::%s::canary::false\n%s::%s::priority::0\n", cl->name, ep, cl->name, ep);
		}
	}
}

static void clusters_json(const struct envoy_admin *ea, struct sbuf *body)
{
	const struct snap *s = *ea->snap;
	struct snap_json j;

	snap_json_init(&j, body);
	snap_json_obj_begin(&j, NULL);
	snap_json_arr_begin(&j, "cluster_statuses");
	for (size_t i = 0; s && i < s->nclusters; i++) {
		const struct cluster *cl = s->clusters[i];
		const struct cluster_eps *eps = cluster_eps_load(cl);

		snap_json_obj_begin(&j, NULL);
		snap_json_str(&j, "name", cl->name);
		snap_json_bool(&j, "added_via_api", true);
		snap_json_obj_begin(&j, "circuit_breakers");
		snap_json_arr_begin(&j, "thresholds");
		snap_json_obj_begin(&j, NULL);
		snap_json_int(&j, "max_connections", (long long)limit(cl->max_connections));
		snap_json_int(&j, "max_pending_requests", (long long)limit(cl->max_pending));
		snap_json_int(&j, "max_requests", (long long)limit(cl->max_requests));
		snap_json_obj_end(&j);
		snap_json_arr_end(&j);
		snap_json_obj_end(&j);
		snap_json_arr_begin(&j, "host_statuses");
		for (size_t k = 0; eps && k < eps->n; k++) {
			char ip[SOCK_ADDR_STRLEN], v[24];
			struct hstats_sum hs;

			istats_host_sum(ea->proxy, cl->name, eps->v[k].str, &hs);
			snap_json_obj_begin(&j, NULL);
			snap_json_obj_begin(&j, "address");
			snap_json_obj_begin(&j, "socket_address");
			snap_json_str(&j, "address", sock_addr_ip_str(&eps->v[k].addr, ip, sizeof(ip)));
			snap_json_int(&j, "port_value", sock_addr_port(&eps->v[k].addr));
			snap_json_obj_end(&j);
			snap_json_obj_end(&j);
			/* Counters first, then gauges, values as strings (uint64 in proto JSON). */
			snap_json_arr_begin(&j, "stats");
			for (int gauge = 0; gauge < 2; gauge++) {
				for (size_t n = 0; n < ARRAY_SIZE(host_stats); n++) {
					if (host_stats[n].gauge != (bool)gauge)
						continue;
					snprintf(v, sizeof(v), "%llu", host_stat(&hs, n));
					snap_json_obj_begin(&j, NULL);
					snap_json_str(&j, "name", host_stats[n].name);
					snap_json_str(&j, "value", v);
					if (gauge)
						snap_json_str(&j, "type", "GAUGE");
					snap_json_obj_end(&j);
				}
			}
			snap_json_arr_end(&j);
			snap_json_str(&j, "hostname", cl->host);
			snap_json_int(&j, "weight", eps->v[k].weight ? eps->v[k].weight : 1);
			snap_json_obj_begin(&j, "health_status");
			/* No active health checking: every endpoint is HEALTHY as far as discovery
			 * goes; passive outlier detection may have taken it out of service. */
			snap_json_str(&j, "eds_health_status", "HEALTHY");
			if (hs.ejected_workers)
				snap_json_bool(&j, "failed_outlier_check", true);
			snap_json_obj_end(&j);
			/* egressgw's own: outlier detection is per worker (outlier.h). */
			if (cl->od.on) {
				snap_json_obj_begin(&j, "outlier_detection");
				snap_json_int(&j, "ejected_workers", hs.ejected_workers);
				snap_json_int(&j, "workers", hs.workers);
				snap_json_obj_end(&j);
			}
			if (hs.untracked)
				snap_json_bool(&j, "counters_untracked", true);
			snap_json_obj_end(&j);
		}
		snap_json_arr_end(&j);
		snap_json_str(&j, "observability_name", cl->name);
		snap_json_obj_end(&j);
	}
	snap_json_arr_end(&j);
	snap_json_obj_end(&j);
	sbuf_addc(body, '\n');
}

/* ---- /listeners ---- */

static void listeners(const struct envoy_admin *ea, bool json, struct sbuf *body)
{
	const struct snap *s = *ea->snap;
	const struct proxy *p = ea->proxy;
	struct snap_json j;
	char a[SOCK_ADDR_STRLEN], ip[SOCK_ADDR_STRLEN];

	if (json) {
		snap_json_init(&j, body);
		snap_json_obj_begin(&j, NULL);
		snap_json_arr_begin(&j, "listener_statuses");
	}
	/* The sidecar's capture listener has Istio's name for port 15001. */
	for (size_t i = 0; i < (s ? s->nlisteners : 0) + (p->outbound_on ? 1 : 0); i++) {
		const struct sock_addr *addr = i < (s ? s->nlisteners : 0) ? &s->listeners[i].addr
		                                                          : &p->outbound;
		const char *name = i < (s ? s->nlisteners : 0) ? s->listeners[i].name : "virtualOutbound";

		if (!json) {
			sbuf_addf(body, "%s::%s\n", name, sock_addr_str(addr, a, sizeof(a)));
			continue;
		}
		snap_json_obj_begin(&j, NULL);
		snap_json_str(&j, "name", name);
		snap_json_obj_begin(&j, "local_address");
		snap_json_obj_begin(&j, "socket_address");
		snap_json_str(&j, "address", sock_addr_ip_str(addr, ip, sizeof(ip)));
		snap_json_int(&j, "port_value", sock_addr_port(addr));
		snap_json_obj_end(&j);
		snap_json_obj_end(&j);
		snap_json_obj_end(&j);
	}
	if (json) {
		snap_json_arr_end(&j);
		snap_json_obj_end(&j);
		sbuf_addc(body, '\n');
	}
}

/* ---- /memory ---- */

static void memory(struct sbuf *body)
{
	struct mallinfo2 mi = mallinfo2();
	unsigned long long rss = 0, pages = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (f) {
		if (fscanf(f, "%llu %llu", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	/* Envoy's fields (tcmalloc's names), from glibc's malloc: allocated = in use,
	 * heap_size = obtained from the system, pageheap_free = free in the heap. */
	sbuf_addf(body,
	          "{\n \"allocated\": \"%zu\",\n \"heap_size\": \"%zu\",\n"
	          " \"pageheap_unmapped\": \"0\",\n \"pageheap_free\": \"%zu\",\n"
	          " \"total_thread_cache\": \"0\",\n \"total_physical_bytes\": \"%llu\"\n}\n",
	          mi.uordblks + mi.hblkhd, mi.arena + mi.hblkhd, mi.fordblks,
	          rss * (unsigned long long)sysconf(_SC_PAGESIZE));
}

/* ---- /logging ---- */

static const char *const loggers[] = {
	"admin", "config", "dns", "fwd", "main", "secret", "sidecar", "tls", "tunnel", "upstream",
};

static void logging_list(struct sbuf *body)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };

	sbuf_adds(body, "active loggers:\n");
	for (size_t i = 0; i < ARRAY_SIZE(loggers); i++)
		sbuf_addf(body, "  %s: %s\n", loggers[i], names[log_min_level]);
}

static int logging(const char *method, const char *path, struct sbuf *body)
{
	char v[32];
	enum log_level lvl;

	if (!strchr(path, '?')) {
		logging_list(body);
		return 200;
	}
	if (strcmp(method, "POST") != 0) {
		sbuf_adds(body, "This endpoint requires POST: curl -X POST 'ADMIN/logging?level=debug'\n");
		return 405;
	}
	if (!query_param(path, "level", v, sizeof(v))) {
		/* ?paths= and ?LOGGER=LEVEL set levels per logger, which egressgw does not have. */
		sbuf_adds(body, "egressgw has one log level for the whole process: use "
		          "/logging?level=LEVEL (trace, debug, info, warning, error, critical)\n");
		return 400;
	}
	if (strcmp(v, "trace") == 0)
		strcpy(v, "debug");
	else if (strcmp(v, "warning") == 0)
		strcpy(v, "warn");
	else if (strcmp(v, "critical") == 0)
		strcpy(v, "error");
	if (log_level_parse(v, &lvl) < 0) {
		sbuf_addf(body, "unknown level; want trace, debug, info, warning, error, critical\n");
		return 400;
	}
	/* Workers read the level without synchronization before each debug line; a stale
	 * value for a moment is harmless. */
	__atomic_store_n(&log_min_level, lvl, __ATOMIC_RELAXED);
	log_info("admin", "log level set to %s", v);
	logging_list(body);
	return 200;
}

/* ---- /stats ---- */

/* envoy_cluster_* in Prometheus -> Envoy's own stat name after "cluster.NAME.". */
static const struct {
	const char *prom, *envoy;
} cluster_names[] = {
	{ "envoy_cluster_upstream_rq_total", "upstream_rq_total" },
	{ "envoy_cluster_upstream_rq_retry_total", "upstream_rq_retry" },
	{ "envoy_cluster_upstream_rq_retry_success_total", "upstream_rq_retry_success" },
	{ "envoy_cluster_upstream_rq_retry_overflow_total", "upstream_rq_retry_overflow" },
	{ "envoy_cluster_upstream_rq_retry_limit_exceeded_total", "upstream_rq_retry_limit_exceeded" },
	{ "envoy_cluster_upstream_rq_timeout_total", "upstream_rq_timeout" },
	{ "envoy_cluster_upstream_rq_pending_overflow_total", "upstream_rq_pending_overflow" },
	{ "envoy_cluster_upstream_cx_total", "upstream_cx_total" },
	{ "envoy_cluster_upstream_cx_connect_fail_total", "upstream_cx_connect_fail" },
	{ "envoy_cluster_upstream_cx_overflow_total", "upstream_cx_overflow" },
	{ "envoy_cluster_ssl_handshake_total", "ssl.handshake" },
	{ "envoy_cluster_ssl_connection_error_total", "ssl.connection_error" },
	{ "envoy_cluster_outlier_detection_ejections_enforced_total",
	  "outlier_detection.ejections_enforced_total" },
	{ "envoy_cluster_upstream_rq_xx_total", "upstream_rq_" },
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The value of label key in a sample's label text, into buf; NULL when absent. */
static const char *label(const char *labels, const char *key, char *buf, size_t n)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "%s=\"", key);
	p = strstr(labels, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	e = strchr(p, '"');
	snprintf(buf, n, "%.*s", e ? (int)(e - p) : 0, p);
	return buf;
}

/* One Prometheus sample line -> "name: value" in Envoy's naming, or "" to skip. */
static void stat_name(const char *line, struct sbuf *out)
{
	size_t nlen = strcspn(line, "{ ");
	const char *labels = line[nlen] == '{' ? line + nlen : "";
	const char *value = strrchr(line, ' ');
	char c[512], v[64];

	if (!value || strncmp(line, "istio_", 6) == 0)
		return;
	value++;
	if (strncmp(line, "envoy_cluster_", 14) == 0) {
		for (size_t i = 0; i < ARRAY_SIZE(cluster_names); i++) {
			size_t pl = strlen(cluster_names[i].prom);

			if (pl != nlen || strncmp(line, cluster_names[i].prom, pl) != 0)
				continue;
			if (!label(labels, "cluster_name", c, sizeof(c)))
				return;
			sbuf_addf(out, "cluster.%s.%s", c, cluster_names[i].envoy);
			if (label(labels, "response_code_class", v, sizeof(v)))
				sbuf_addf(out, "%sxx", v);
			else if (label(labels, "reason", v, sizeof(v)))
				sbuf_addf(out, ".%s", v);
			sbuf_addf(out, ":%s", value);
			return;
		}
		return;
	}
	if (ovl_stat_name(line, nlen, value, out))
		return;         /* envoy_overload_*, envoy_server_memory_* (proxy/overload.h) */
	/* egressgw_NAME{k="v"} -> egressgw.NAME.v */
	sbuf_adds(out, "egressgw.");
	sbuf_add(out, line + 9, nlen - 9);
	for (const char *p = labels; (p = strstr(p, "=\"")); ) {
		const char *e = strchr(p + 2, '"');

		if (!e)
			break;
		sbuf_addc(out, '.');
		sbuf_add(out, p + 2, (size_t)(e - p - 2));
		p = e;
	}
	sbuf_addf(out, ":%s", value);
}

static int stats(const struct envoy_admin *ea, const char *path, struct sbuf *body,
                 const char **ctype)
{
	struct sbuf prom = SBUF_INIT, line = SBUF_INIT;
	char **v = NULL, filter[256], err[256];
	size_t n = 0, cap = 0;
	struct re *re = NULL;
	bool use_re = query_param(path, "filter", filter, sizeof(filter)) != NULL;
	bool json = json_format(path);
	int rc = 200;

	/* RE2, searched anywhere in the name, as Envoy's filter (core/re.h). */
	if (use_re && !(re = re_compile(filter, 0, err, sizeof(err)))) {
		sbuf_addf(body, "Invalid regex: \"%s\": %s\n", filter, err);
		return 400;
	}
	ea->prometheus(ea->arg, &prom);
	for (char *p = prom.s; p && *p; ) {
		char *e = strchr(p, '\n');

		if (e)
			*e = '\0';
		sbuf_reset(&line);
		if (*p != '#')
			stat_name(p, &line);
		if (line.len && (!use_re || re_search(re, line.s, line.len, 0, NULL, 0, NULL))) {
			if (n == cap) {
				cap = cap ? 2 * cap : 256;
				v = xrealloc(v, cap * sizeof(*v));
			}
			v[n++] = xstrdup(line.s);
		}
		p = e ? e + 1 : NULL;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_str);   /* v is NULL when nothing matched */
	if (json) {
		struct snap_json j;

		*ctype = "application/json";
		snap_json_init(&j, body);
		snap_json_obj_begin(&j, NULL);
		snap_json_arr_begin(&j, "stats");
		for (size_t i = 0; i < n; i++) {
			char *colon = strrchr(v[i], ':');

			*colon = '\0';
			snap_json_obj_begin(&j, NULL);
			snap_json_str(&j, "name", v[i]);
			snap_json_int(&j, "value", strtoll(colon + 1, NULL, 10));
			snap_json_obj_end(&j);
		}
		snap_json_arr_end(&j);
		snap_json_obj_end(&j);
		sbuf_addc(body, '\n');
	} else {
		for (size_t i = 0; i < n; i++) {
			char *colon = strrchr(v[i], ':');

			sbuf_add(body, v[i], (size_t)(colon - v[i]));
			sbuf_addf(body, ": %s\n", colon + 1);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	re_free(re);
	sbuf_free(&prom);
	sbuf_free(&line);
	return rc;
}

/* /explain: every h= parameter is a header "Name: value". */
static int explain(const struct envoy_admin *ea, const char *path, struct sbuf *body,
                   const char **ctype)
{
	char url[2048], method[32], hbuf[16][512];
	const char *headers[16];
	struct explain_req q = { 0 };
	struct sbuf err = SBUF_INIT;
	const char *p = strchr(path, '?');
	int rc = 200;

	if (!query_param(path, "url", url, sizeof(url))) {
		sbuf_adds(body, "want /explain?url=http://HOST/PATH[&method=GET][&h=Name:%20value]\n");
		return 400;
	}
	q.url = url;
	q.method = query_param(path, "method", method, sizeof(method));
	/* Each "h=" in turn: query_param finds the first after the position given. */
	while (p && q.nheaders < ARRAY_SIZE(headers)) {
		const char *h = strstr(p, "&h=");

		if (!h && strncmp(p, "?h=", 3) == 0)
			h = p;
		if (!h)
			break;
		{
			char sub[600];

			snprintf(sub, sizeof(sub), "?%.*s", (int)strcspn(h + 1, "&"), h + 1);
			if (query_param(sub, "h", hbuf[q.nheaders], sizeof(hbuf[0])))
				headers[q.nheaders] = hbuf[q.nheaders], q.nheaders++;
		}
		p = h + 3;
	}
	q.headers = headers;
	q.registry_only = ea->proxy->outbound_policy == PROXY_REGISTRY_ONLY;
	q.proxy = ea->proxy;
	if (!*ea->snap) {
		sbuf_adds(body, "no configuration loaded yet\n");
		return 503;
	}
	if (explain_request(*ea->snap, &q, body, &err) < 0) {
		sbuf_addf(body, "%s\n", sbuf_str(&err));
		rc = 400;
	} else {
		*ctype = "application/json";
	}
	sbuf_free(&err);
	return rc;
}

int envoy_admin_handle(const struct envoy_admin *ea, const char *method, const char *path,
                       struct sbuf *body, const char **ctype)
{
	size_t qlen = strcspn(path, "?");
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

#define IS(p) (qlen == strlen(p) && strncmp(path, p, qlen) == 0)
	if (IS("/logging")) {
		if (!get && strcmp(method, "POST") != 0)
			goto not_allowed;
		return logging(method, path, body);
	}
	if (!IS("/server_info") && !IS("/clusters") && !IS("/listeners") && !IS("/memory") &&
	    !IS("/stats") && !IS("/explain"))
		return 0;
	if (!get)
		goto not_allowed;
	if (IS("/explain"))
		return explain(ea, path, body, ctype);
	if (IS("/server_info")) {
		*ctype = "application/json";
		return server_info(ea, body);
	}
	if (IS("/clusters")) {
		if (json_format(path)) {
			*ctype = "application/json";
			clusters_json(ea, body);
		} else {
			clusters_text(ea, body);
		}
		return 200;
	}
	if (IS("/listeners")) {
		if (json_format(path))
			*ctype = "application/json";
		listeners(ea, json_format(path), body);
		return 200;
	}
	if (IS("/memory")) {
		*ctype = "application/json";
		memory(body);
		return 200;
	}
	return stats(ea, path, body, ctype);
#undef IS
not_allowed:
	sbuf_adds(body, "method not allowed\n");
	return 405;
}
