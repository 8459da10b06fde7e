/* Istio's standard metrics (proxy/istats.c): label sets summed across workers, Istio's
 * labels and buckets, the bound on series, Envoy's per-cluster series. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/istats.h"
#include "proxy/worker.h"

#define PEER "spiffe://cluster.local/ns/default/sa/sleep"

static struct proxy two_workers(void)
{
	struct proxy p;

	memset(&p, 0, sizeof(p));
	p.nworkers = 2;
	p.workers = calloc(2, sizeof(*p.workers));
	p.workers[0].istats = istats_new();
	p.workers[1].istats = istats_new();
	return p;
}

static void free_workers(struct proxy *p)
{
	for (int i = 0; i < p->nworkers; i++)
		istats_free(p->workers[i].istats);
	free(p->workers);
}

static struct istats_http_rec rec(int code, uint64_t ms, uint64_t resp_bytes)
{
	struct istats_http_rec r = {
		.peer = PEER, .dst_service = "edition.cnn.com", .code = code, .grpc_status = -1,
		.duration_ms = ms, .resp_bytes = resp_bytes,
	};

	return r;
}

/* The value of the sample whose line starts with prefix (up to the value). */
static long long sample(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while ((p = strstr(p, prefix))) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return atoll(p + n + 1);
		p += n;
	}
	return -1;
}

static void buckets_are_envoys_defaults(void **state)
{
	(void)state;
	assert_int_equal(istats_bucket(0), 0);          /* le="0.5" */
	assert_int_equal(istats_bucket(1), 1);          /* le="1" */
	assert_int_equal(istats_bucket(2), 2);          /* le="5" */
	assert_int_equal(istats_bucket(250), 7);
	assert_int_equal(istats_bucket(251), 8);
	assert_int_equal(istats_bucket(3600000), 18);
	assert_int_equal(istats_bucket(3600001), 19);   /* +Inf */
}

static const char GW_LABELS[] =
	"reporter=\"source\",source_workload=\"unknown\",source_canonical_service=\"unknown\","
	"source_canonical_revision=\"unknown\",source_workload_namespace=\"default\","
	"source_principal=\"" PEER "\",source_app=\"unknown\",source_version=\"unknown\","
	"source_cluster=\"unknown\",destination_workload=\"unknown\","
	"destination_workload_namespace=\"unknown\",destination_principal=\"unknown\","
	"destination_app=\"unknown\",destination_version=\"unknown\","
	"destination_service=\"edition.cnn.com\",destination_canonical_service=\"unknown\","
	"destination_canonical_revision=\"unknown\",destination_service_name=\"edition.cnn.com\","
	"destination_service_namespace=\"unknown\",destination_cluster=\"unknown\","
	"request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\","
	"response_flags=\"-\",connection_security_policy=\"mutual_tls\"";

/* "istio_requests_total{GW_LABELS}" for destination service svc and response code. */
static const char *gw_series(char *buf, size_t size, const char *svc, int code)
{
	char labels[sizeof(GW_LABELS) + 64];
	const char *p = GW_LABELS, *q;
	size_t n = 0;

	/* GW_LABELS with each "edition.cnn.com" replaced by svc and the code by code. */
	while ((q = strstr(p, "edition.cnn.com"))) {
		n += (size_t)snprintf(labels + n, sizeof(labels) - n, "%.*s%s", (int)(q - p), p, svc);
		p = q + strlen("edition.cnn.com");
	}
	snprintf(labels + n, sizeof(labels) - n, "%s", p);
	q = strstr(labels, "response_code=\"200\"");
	snprintf(buf, size, "istio_requests_total{%.*sresponse_code=\"%d\"%s}", (int)(q - labels),
	         labels, code, q + strlen("response_code=\"200\""));
	return buf;
}

static void gateway_series_sum_workers_with_istio_labels(void **state)
{
	struct proxy p = two_workers();
	struct istats_self self;
	struct istats_http_rec r;
	struct sbuf out = SBUF_INIT;
	char name[2048];

	(void)state;
	istats_self_init(&self, true, "istio-system", NULL, NULL);
	r = rec(200, 3, 100);
	istats_http(p.workers[0].istats, &r);
	r = rec(200, 30, 1000);
	istats_http(p.workers[1].istats, &r);
	r = rec(503, 1, 0);
	r.flags = ALOG_F_UF | ALOG_F_URX;
	istats_http(p.workers[1].istats, &r);
	istats_prometheus(&p, &self, &out);

	assert_non_null(strstr(out.s, "# HELP istio_requests_total "));
	assert_non_null(strstr(out.s, "# TYPE istio_requests_total counter\n"));
	assert_non_null(strstr(out.s, "# TYPE istio_request_duration_milliseconds histogram\n"));
	snprintf(name, sizeof(name), "istio_requests_total{%s}", GW_LABELS);
	assert_int_equal(sample(out.s, name), 2);
	snprintf(name, sizeof(name), "istio_request_duration_milliseconds_bucket{%s,le=\"5\"}",
	         GW_LABELS);
	assert_int_equal(sample(out.s, name), 1);
	snprintf(name, sizeof(name), "istio_request_duration_milliseconds_bucket{%s,le=\"50\"}",
	         GW_LABELS);
	assert_int_equal(sample(out.s, name), 2);
	snprintf(name, sizeof(name), "istio_request_duration_milliseconds_bucket{%s,le=\"+Inf\"}",
	         GW_LABELS);
	assert_int_equal(sample(out.s, name), 2);
	snprintf(name, sizeof(name), "istio_request_duration_milliseconds_sum{%s}", GW_LABELS);
	assert_int_equal(sample(out.s, name), 33);
	snprintf(name, sizeof(name), "istio_response_bytes_sum{%s}", GW_LABELS);
	assert_int_equal(sample(out.s, name), 1100);
	snprintf(name, sizeof(name), "istio_response_bytes_count{%s}", GW_LABELS);
	assert_int_equal(sample(out.s, name), 2);
	assert_non_null(strstr(out.s, "response_code=\"503\",grpc_response_status=\"\","
	                              "response_flags=\"UF,URX\""));
	sbuf_free(&out);
	free_workers(&p);
}

static void sidecar_labels_describe_itself(void **state)
{
	struct proxy p = two_workers();
	struct istats_self self;
	const char *labels[] = { "app=sleep", "version=v1", NULL };
	struct istats_http_rec r = rec(200, 1, 1);
	struct sbuf out = SBUF_INIT;

	(void)state;
	istats_self_init(&self, false, "default", labels, NULL);
	r.peer = NULL;
	r.dst_service = "istio-egressgateway.istio-system.svc.cluster.local";
	istats_http(p.workers[0].istats, &r);
	istats_prometheus(&p, &self, &out);
	assert_non_null(strstr(out.s, "{reporter=\"source\",source_workload=\"sleep\","
	                              "source_canonical_service=\"sleep\","
	                              "source_canonical_revision=\"v1\","
	                              "source_workload_namespace=\"default\","
	                              "source_principal=\"unknown\",source_app=\"sleep\","
	                              "source_version=\"v1\","));
	assert_non_null(strstr(out.s, "destination_service=\"istio-egressgateway.istio-system.svc.cluster.local\","));
	assert_non_null(strstr(out.s, "destination_service_name=\"istio-egressgateway\","
	                              "destination_service_namespace=\"istio-system\","));
	assert_non_null(strstr(out.s, "connection_security_policy=\"unknown\"}"));
	sbuf_free(&out);
	free_workers(&p);
}

static void series_are_bounded(void **state)
{
	struct proxy p = two_workers();
	struct istats_self self;
	struct sbuf out = SBUF_INIT;
	char svc[64];
	size_t n = 0;

	(void)state;
	istats_self_init(&self, true, "istio-system", NULL, NULL);
	for (int i = 0; i < 1500; i++) {
		struct istats_http_rec r = rec(200, 1, 1);

		snprintf(svc, sizeof(svc), "h%d.example", i);
		r.dst_service = svc;
		istats_http(p.workers[0].istats, &r);
	}
	istats_prometheus(&p, &self, &out);
	for (const char *s = out.s; (s = strstr(s, "\nistio_requests_total{")); s++)
		n++;
	assert_int_equal(n, 1024 + 1);     /* the bound, plus the "unknown" series */
	assert_int_equal(sample(out.s, "egressgw_istio_series_overflow_total"), 1500 - 1024);
	sbuf_free(&out);
	free_workers(&p);
}

static void tcp_and_cluster_series(void **state)
{
	struct proxy p = two_workers();
	struct istats_self self;
	struct istats_tcp_rec t = { .dst_service = "edition.cnn.com" };
	struct istats_cluster *c0, *c1;
	struct sbuf out = SBUF_INIT;

	(void)state;
	istats_self_init(&self, false, "default", NULL, NULL);
	istats_tcp_open(p.workers[0].istats, &t);
	istats_tcp_close(p.workers[0].istats, &t, 500, 80);
	istats_tcp_open(p.workers[1].istats, &t);
	istats_tcp_close(p.workers[1].istats, &t, 1500, 20);
	c0 = istats_cluster(p.workers[0].istats, "outbound|443||edition.cnn.com");
	c1 = istats_cluster(p.workers[1].istats, "outbound|443||edition.cnn.com");
	assert_ptr_equal(c0, istats_cluster(p.workers[0].istats, "outbound|443||edition.cnn.com"));
	STAT_INC(c0->rq_total);
	STAT_INC(c1->rq_total);
	STAT_INC(c1->rq_xx[5]);
	STAT_INC(c1->ssl_fail[stats_tls_cat_index("san_mismatch")]);
	istats_prometheus(&p, &self, &out);
	assert_non_null(strstr(out.s, "# TYPE istio_tcp_sent_bytes_total counter\n"));
	assert_non_null(strstr(out.s, "request_protocol=\"tcp\",response_flags=\"-\","
	                              "connection_security_policy=\"unknown\"} 2\n"));
	assert_non_null(strstr(out.s, "connection_security_policy=\"unknown\"} 2000\n"));
	assert_non_null(strstr(out.s, "connection_security_policy=\"unknown\"} 100\n"));
	assert_int_equal(sample(out.s, "envoy_cluster_upstream_rq_total{cluster_name=\"outbound|443||edition.cnn.com\"}"), 2);
	assert_int_equal(sample(out.s, "envoy_cluster_upstream_rq_xx_total{cluster_name=\"outbound|443||edition.cnn.com\",response_code_class=\"5\"}"), 1);
	assert_int_equal(sample(out.s, "envoy_cluster_ssl_connection_error_total{cluster_name=\"outbound|443||edition.cnn.com\",reason=\"san_mismatch\"}"), 1);
	sbuf_free(&out);
	free_workers(&p);
}

static void label_values_are_escaped(void **state)
{
	struct proxy p = two_workers();
	struct istats_self self;
	struct istats_http_rec r = rec(200, 1, 1);
	struct sbuf out = SBUF_INIT;

	(void)state;
	istats_self_init(&self, true, "istio-system", NULL, NULL);
	r.peer = "spiffe://td/ns/a\"b/sa/x\\y";
	istats_http(p.workers[0].istats, &r);
	istats_prometheus(&p, &self, &out);
	assert_non_null(strstr(out.s, "source_workload_namespace=\"a\\\"b\""));
	assert_non_null(strstr(out.s, "source_principal=\"spiffe://td/ns/a\\\"b/sa/x\\\\y\""));
	sbuf_free(&out);
	free_workers(&p);
}

/* Each worker keeps the entry its last request found: a request whose key differs only in
 * contents (the same buffer rewritten, as a stream's endpoint string is) or that alternates
 * with another key must still land in its own series, cluster and endpoint. */
static void last_entry_cache_follows_the_key(void **state)
{
	struct proxy p = two_workers();
	struct istats *s = p.workers[0].istats;
	struct hstats *hs = istats_hosts(s);
	struct istats_self self;
	struct istats_http_rec r = rec(200, 1, 1);
	struct istats_cluster *ca, *cb;
	struct hstats_host *ha, *hb, *hc;
	struct sbuf out = SBUF_INIT;
	char name[64], addr[64], svc[64], want[4096];

	(void)state;
	istats_self_init(&self, true, "istio-system", NULL, NULL);
	snprintf(name, sizeof(name), "outbound|443||a.example.com");
	ca = istats_cluster(s, name);
	snprintf(name, sizeof(name), "outbound|443||b.example.com");
	cb = istats_cluster(s, name);
	assert_ptr_not_equal(ca, cb);
	assert_ptr_equal(istats_cluster(s, "outbound|443||a.example.com"), ca);
	assert_ptr_equal(istats_cluster(s, name), cb);

	snprintf(addr, sizeof(addr), "10.0.0.1:443");
	ha = hstats_get(hs, "c1", addr);
	snprintf(addr, sizeof(addr), "10.0.0.2:443");
	hb = hstats_get(hs, "c1", addr);
	hc = hstats_get(hs, "c2", addr);
	assert_non_null(ha);
	assert_ptr_not_equal(ha, hb);
	assert_ptr_not_equal(hb, hc);
	assert_ptr_equal(hstats_get(hs, "c1", "10.0.0.1:443"), ha);
	assert_ptr_equal(hstats_get(hs, "c1", addr), hb);
	assert_ptr_equal(hstats_find(hs, "c2", "10.0.0.2:443"), hc);

	/* Two label sets from one rewritten buffer, then a code change: three series. */
	r.dst_service = svc;
	snprintf(svc, sizeof(svc), "a.example.com");
	istats_http(s, &r);
	istats_http(s, &r);
	snprintf(svc, sizeof(svc), "b.example.com");
	istats_http(s, &r);
	r.code = 404;
	istats_http(s, &r);
	istats_prometheus(&p, &self, &out);
	assert_int_equal(sample(out.s, "egressgw_istio_series_overflow_total"), 0);
	assert_int_equal(sample(out.s, gw_series(want, sizeof(want), "a.example.com", 200)), 2);
	assert_int_equal(sample(out.s, gw_series(want, sizeof(want), "b.example.com", 200)), 1);
	assert_int_equal(sample(out.s, gw_series(want, sizeof(want), "b.example.com", 404)), 1);
	sbuf_free(&out);
	free_workers(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(buckets_are_envoys_defaults),
		cmocka_unit_test(gateway_series_sum_workers_with_istio_labels),
		cmocka_unit_test(sidecar_labels_describe_itself),
		cmocka_unit_test(series_are_bounded),
		cmocka_unit_test(tcp_and_cluster_series),
		cmocka_unit_test(label_values_are_escaped),
		cmocka_unit_test(last_entry_cache_follows_the_key),
	};
	return cmocka_run_group_tests_name("istats", tests, NULL, NULL);
}
