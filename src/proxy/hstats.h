/* hstats: per-endpoint counters and outlier state, per worker, for Envoy's /clusters
 * (per-host cx_total, cx_active, rq_total, rq_success, rq_error, rq_timeout and the
 * /failed_outlier_check health flag) and `egressctl proxy-config endpoint`.
 *
 * Why a table of its own: Envoy keeps these counters on each host; here a host is a
 * (cluster name, endpoint address) pair that outlives endpoint sets and snapshots, and the
 * request path must take no lock and share no cache line. So each worker owns an hstats
 * (reached through its istats, istats_hosts), an open-addressed table allocated once: an
 * entry is filled by its worker, published with a release store of `used`, and never moved
 * or freed while the proxy runs. Its worker writes the counters with relaxed stores
 * (STAT_INC); the admin thread finds the entries of every worker and sums them
 * (istats_host_sum). The table is bounded (HSTATS_MAX entries per worker); endpoints past the
 * bound are not counted, which the worker logs once and istats_host_sum reports (`untracked`).
 *
 * Outlier detection stays per worker (outlier.h: each worker sees only its own results,
 * as each Envoy does); outlier.c mirrors each host's ejection into `ejected` here, so the
 * admin thread can show an endpoint ejected on any worker, with how many. */
#ifndef EGRESS_PROXY_HSTATS_H
#define EGRESS_PROXY_HSTATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/sock.h"

struct cluster;
struct proxy;

#define HSTATS_MAX 4096

/* One endpoint of one cluster on one worker. */
struct hstats_host {
	_Atomic uint64_t cx_total, cx_active;
	_Atomic uint64_t rq_total, rq_success, rq_error, rq_timeout;
	_Atomic bool ejected;           /* ejected by outlier detection on this worker */
	/* The key, set before publication. */
	_Atomic bool used;
	uint64_t hash;
	char *cluster;
	char addr[SOCK_ADDR_STRLEN];
};

struct hstats;

struct hstats *hstats_new(void);
void hstats_free(struct hstats *s);

/* Worker thread only: the entry of (cluster, addr), created on first use; NULL past the
 * bound or for an empty addr. */
struct hstats_host *hstats_get(struct hstats *s, const char *cluster, const char *addr);

/* What the request path (fwd_*.c, up_h2.c) reports. A cluster without endpoints of its
 * own (the sidecar's PassthroughCluster and BlackHoleCluster, resolution NONE) is not
 * counted: its
 * "endpoints" are whatever addresses applications connect to, and /clusters has no host
 * to show them under. */
/* A new upstream connection to ep: cx_total and cx_active; the entry to give to
 * hstats_cx_close when it closes (NULL: not counted). */
struct hstats_host *hstats_cx_open(struct hstats *s, const struct cluster *cl, const char *ep);
/* The same for a connection of cluster name to address ep (up_h2.c: its clusters have
 * endpoints of their own). */
struct hstats_host *hstats_cx_open_addr(struct hstats *s, const char *cluster,
                                        const struct sock_addr *ep);
void hstats_cx_close(struct hstats_host *h);
/* A request that ended on ep with status code (0: no response) and access log flags
 * (alog.h): rq_total, then rq_error for 5xx and no response (as Envoy's router counts a
 * host's rq_error), else rq_success; rq_timeout for the route timeout (UT). */
void hstats_rq(struct hstats *s, const struct cluster *cl, const char *ep, int code,
               unsigned flags);

/* Any thread: the published entry of (cluster, addr) in s, or NULL. */
const struct hstats_host *hstats_find(const struct hstats *s, const char *cluster,
                                      const char *addr);

/* An endpoint's counters summed over workers (istats_host_sum adds every worker's table). */
struct hstats_sum {
	uint64_t cx_total, cx_active, rq_total, rq_success, rq_error, rq_timeout;
	int ejected_workers;            /* workers on which outlier detection ejected it */
	int workers;
	bool untracked;                 /* some worker's table was full before it was seen */
};

/* Adds one worker's counters of (cluster, addr) in s (NULL: a worker without a table) to
 * out, and counts the worker. */
void hstats_add(const struct hstats *s, const char *cluster, const char *addr,
                struct hstats_sum *out);

#endif
