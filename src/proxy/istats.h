/* istats: Istio's standard metrics and Envoy-style per-cluster upstream series, per
 * worker, for /stats/prometheus.
 *
 * Istio's families (istio.io "Istio Standard Metrics"): istio_requests_total,
 * istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes (HTTP, one
 * series per label set, histograms with Envoy's default buckets, which Istio keeps), and
 * istio_tcp_connections_opened_total, istio_tcp_connections_closed_total,
 * istio_tcp_sent_bytes_total, istio_tcp_received_bytes_total (TCP). Labels are Istio's,
 * in the order Envoy prints them; values are what this proxy knows (see istats.c).
 * Envoy's per-cluster series (envoy_cluster_*{cluster_name="outbound|443||host"}) count
 * requests, connections, TLS handshakes and failures by reason, circuit breaker overflows
 * and outlier ejections.
 *
 * Why per worker and fixed-size: the request path must take no lock and share no cache
 * line. Each worker owns an istats whose tables are open-addressed arrays allocated once:
 * an entry is filled by its worker, then published (a release store of `used`); it is
 * never moved or freed while the proxy runs, so the admin thread reads the tables while
 * workers write, and sums equal label sets across workers at scrape time. The number of
 * series is bounded (ISTATS_*_MAX per worker); label sets past the bound are counted in
 * one series whose labels are "unknown" and in egressgw_istio_series_overflow_total.
 *
 * Feeding it: HTTP requests call istats_http once, when the request ends (fwd_core.c, with
 * what the access log line has). A connection-level proxy (tunnel.c; TCP proxying)
 * calls istats_tcp_open when the upstream connection is set up and istats_tcp_close
 * with the byte counts when it ends: that is all the TCP families need. */
#ifndef EGRESS_PROXY_ISTATS_H
#define EGRESS_PROXY_ISTATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "proxy/hstats.h"

struct proxy;

/* TLS failure categories per cluster: the same indexes as wstats.ucx_tls_fail. */
#define ISTATS_TLS_CATS 24

/* One cluster's Envoy-style counters on one worker. Written by that worker only
 * (STAT_INC); read by the admin thread. */
struct istats_cluster {
	_Atomic uint64_t rq_total, rq_xx[6];   /* [0]: no response, [2]: 2xx, ... */
	_Atomic uint64_t rq_retry, rq_timeout, rq_pending_overflow;
	_Atomic uint64_t rq_retry_success, rq_retry_overflow, rq_retry_limit_exceeded;
	_Atomic uint64_t cx_total, cx_connect_fail, cx_overflow;
	_Atomic uint64_t ssl_handshake, ssl_fail[ISTATS_TLS_CATS];
	_Atomic uint64_t od_ejections_enforced;
	/* The key, set before publication. */
	_Atomic bool used;
	uint64_t hash;
	char *name;
};

/* Who this proxy is, for the labels that describe it (set before the workers start,
 * read-only after). Strings are borrowed; NULL prints "unknown". */
struct istats_self {
	bool gateway;                   /* role: the gateway reports its downstream peer as the source */
	const char *workload, *ns, *principal, *app, *version;
	const char *canonical_service, *canonical_revision;
	char principal_buf[512];
};

/* Fills self from the proxy's role, namespace, labels ("K=V", NULL-terminated; app,
 * version, service.istio.io/canonical-name and canonical-revision are read, borrowed)
 * and the URI SAN of identity_dir/cert-chain.pem (when readable). */
void istats_self_init(struct istats_self *self, bool gateway, const char *ns,
                      const char *const *labels, const char *identity_dir);

/* One finished HTTP request. Strings are borrowed for the call. */
struct istats_http_rec {
	const char *peer;               /* downstream SPIFFE identity (mutual TLS), or NULL */
	const char *dst_service;        /* the cluster's host (or the request's, passthrough) */
	const char *dst_name;           /* destination_service_name when not derived from it
	                                 * (PassthroughCluster, BlackHoleCluster), or NULL */
	int code;                       /* 0: no response */
	unsigned flags;                 /* alog.h ALOG_F_* */
	bool grpc;                      /* request content-type application/grpc* */
	int grpc_status;                /* -1: none */
	uint64_t duration_ms, req_bytes, resp_bytes;
};

/* One TCP connection's label set. */
struct istats_tcp_rec {
	const char *peer, *dst_service, *dst_name;
	unsigned flags;
};

struct istats;

struct istats *istats_new(void);
void istats_free(struct istats *s);
/* The worker's per-endpoint counters (hstats.h), owned by s. */
struct hstats *istats_hosts(const struct istats *s);
/* Any thread: the counters of endpoint addr of cluster summed over the workers of p. */
void istats_host_sum(const struct proxy *p, const char *cluster, const char *addr,
                     struct hstats_sum *out);

/* Worker thread only. */
void istats_http(struct istats *s, const struct istats_http_rec *r);
void istats_tcp_open(struct istats *s, const struct istats_tcp_rec *r);
void istats_tcp_close(struct istats *s, const struct istats_tcp_rec *r, uint64_t sent,
                      uint64_t received);
/* The worker's counters of cluster name (created on first use; never NULL: past the
 * bound, a shared "unknown" entry). */
struct istats_cluster *istats_cluster(struct istats *s, const char *name);

/* Appends every family above, summed over the workers of p, in Prometheus text format
 * (with # HELP and # TYPE). Admin thread. */
void istats_prometheus(const struct proxy *p, const struct istats_self *self, struct sbuf *out);

/* The bucket index of v in the histograms (tests). */
int istats_bucket(uint64_t v);

#endif
