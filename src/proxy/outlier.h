/* outlier: passive outlier detection (DestinationRule trafficPolicy.outlierDetection),
 * per worker, as Envoy's consecutive-error detectors do it for Istio.
 *
 * What is counted, per endpoint (by its address string):
 *   - consecutive 5xx: every response with a 5xx status, and every local failure (connect
 *     or TLS failure, reset before the response: counted as 503; route timeout: 504) unless
 *     splitExternalLocalOriginErrors is set. Any other status resets the count.
 *   - consecutive gateway errors: the same for 502, 503 and 504 only (any other 5xx resets
 *     it too, as Envoy does).
 *   - consecutive local-origin failures (only with splitExternalLocalOriginErrors): connect
 *     and TLS failures, resets and timeouts; a connection made ready resets it. In split
 *     mode those failures are not counted as 5xx.
 * When a count reaches its threshold the endpoint is ejected at once (Envoy ejects on the
 * event, not at the sweep), unless the ejection would take the share of ejected endpoints
 * above maxEjectionPercent: 100 * (ejected + 1) / endpoints must be <= the percent, else
 * the ejection "overflows" and nothing happens. Either way that count restarts from 0.
 *
 * An ejected endpoint stays out for baseEjectionTime x (number of times it was ejected in a
 * row), at most max(300 s, baseEjectionTime), and comes back at the first sweep (every
 * `interval`, from when this worker first saw the cluster) after that time. Each sweep in
 * which an endpoint is in service and was brought back at least one interval ago lowers
 * its multiplier by one. Sweeps are evaluated lazily when the cluster is used, so an idle
 * cluster costs no timer; the result is the same as a timer's.
 *
 * Istio's field mapping (applyOutlierDetection): the block present turns detection on;
 * consecutive5xxErrors unset means 5 (Envoy's default), 0 disables it; the deprecated
 * consecutiveErrors means gateway errors only (and turns consecutive 5xx off);
 * consecutiveGatewayErrors unset or 0 means off; interval 10 s, baseEjectionTime 30 s,
 * maxEjectionPercent 10 by default; minHealthPercent is the panic threshold (default 0:
 * no panic), see od_excluded. Success-rate detection is off in Istio and not done here.
 *
 * State is per worker and per cluster (a worker's requests only see its own endpoint
 * results, as each Envoy sees only its own): no locks. Each host's ejection is mirrored
 * into the worker's per-endpoint counters (od_set.pub, hstats.h) with a relaxed store,
 * so that the admin thread can show it (/clusters, egressctl proxy-config endpoint). */
#ifndef EGRESS_PROXY_OUTLIER_H
#define EGRESS_PROXY_OUTLIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/sock.h"

struct cluster_eps;
struct hstats;
struct hstats_host;

/* The compiled outlierDetection of a cluster (immutable, in struct cluster). */
struct od_config {
	bool on;                        /* the DestinationRule has an outlierDetection block */
	bool split;                     /* splitExternalLocalOriginErrors */
	uint32_t consecutive_5xx;       /* 0: not enforced */
	uint32_t consecutive_gateway;   /* 0: not enforced */
	uint32_t consecutive_local;     /* split only; 0: not enforced */
	uint64_t interval_ms;
	uint64_t base_ejection_ms;
	uint64_t max_ejection_ms;       /* max(300 s, base) as Envoy defaults it */
	uint32_t max_ejection_percent;
	uint32_t min_health_percent;    /* panic threshold */
};

#define OD_DEFAULT_CONSECUTIVE_5XX   5
#define OD_DEFAULT_INTERVAL_MS       10000
#define OD_DEFAULT_BASE_EJECTION_MS  30000
#define OD_DEFAULT_MAX_EJECTION_MS   300000
#define OD_DEFAULT_MAX_EJECTION_PCT  10

/* What happened to a request on an endpoint. */
enum od_result {
	OD_HTTP,                        /* the endpoint answered with a status */
	OD_CONNECT_OK,                  /* a connection to it was ready for the request */
	OD_CONNECT_FAIL,                /* connect/TLS failure, reset or protocol error before
	                                 * the response (Envoy's LocalOriginConnectFailed) */
	OD_TIMEOUT,                     /* the route timeout expired waiting for it */
};

/* What od_report did. */
enum od_event {
	OD_EV_NONE,
	OD_EV_EJECTED,
	OD_EV_OVERFLOW,                 /* a threshold was reached; maxEjectionPercent said no */
};

struct od_host {
	char addr[SOCK_ADDR_STRLEN];
	uint32_t c5xx, cgw, clocal;     /* consecutive counts */
	uint32_t backoff;               /* ejection time multiplier */
	uint32_t nejections;
	bool ejected;
	uint64_t ejected_at;            /* loop ms */
	uint64_t unejected_at;          /* loop ms; 0: never brought back */
	struct hstats_host *pub;        /* its mirror (NULL: none) */
};

/* One cluster's endpoints on one worker. Zero-initialised is empty; od_set_fini frees. */
struct od_set {
	struct od_host *h;
	size_t n, cap;
	size_t nejected;
	uint64_t swept;                 /* time of the last sweep done (the first use sets the
	                                 * sweep phase); 0: not started */
	const struct cluster_eps *eps;  /* the endpoint set the hosts were last synced with */
	size_t eps_n;
	uint8_t *excl;                  /* od_excluded's answer, eps_n entries */
	/* Where ejections are mirrored (NULL: nowhere), under the cluster's name. */
	struct hstats *pub;
	const char *pub_cluster;
};

/* Frees s; its ejected hosts are shown back in service (their mirrors). */
void od_set_fini(struct od_set *s);

/* Records a result for the endpoint addr of a cluster with nhosts endpoints now (code:
 * the status for OD_HTTP). Returns what it did. */
enum od_event od_report(struct od_set *s, const struct od_config *c, const char *addr,
                        size_t nhosts, enum od_result r, int code, uint64_t now);

/* Runs the sweeps due by now and forgets endpoints no longer in eps. Returns how many
 * endpoints came back into service (or were forgotten while ejected). */
size_t od_sweep(struct od_set *s, const struct od_config *c, const struct cluster_eps *eps,
                uint64_t now);

/* After od_sweep: NULL when every endpoint of eps may be picked (nothing ejected, or the
 * cluster is in panic: the share of endpoints in service is below minHealthPercent, in
 * which case Envoy balances over all of them); else eps->n flags, non-zero = ejected.
 * All flagged (no panic, minHealthPercent 0) means no endpoint can be used: 503 UH. */
const uint8_t *od_excluded(struct od_set *s, const struct od_config *c,
                           const struct cluster_eps *eps);

/* The state of addr (NULL if unknown), for tests and status. */
const struct od_host *od_host_find(const struct od_set *s, const char *addr);

#endif
