/* retry: a VirtualService HTTPRetry compiled as Istio hands it to Envoy's router
 * (route.RetryPolicy, pilot's retry.ConvertPolicy), and the decisions made from it.
 *
 *   `retries` absent   Istio's default policy (retry_default): 2 retries on
 *                      "connect-failure,refused-stream,unavailable,cancelled,
 *                      retriable-status-codes" with 503, previous_hosts, 5 host
 *                      selection attempts; also the default route of a ServiceEntry host
 *   attempts: 0        no policy (struct route's pointer stays NULL): never retried
 *   attempts: N        N retries (N+1 tries at most); retryOn replaces the default list
 *                      (numbers are retriable status codes, "retriable-status-codes" implied);
 *                      perTryTimeout, backoff (Envoy's base interval; max 10 x base)
 *
 * Pure functions only: the request path (fwd_conn.c, "retries") owns the state of a
 * request being retried. A policy belongs to its route (route_free -> retry_free). */
#ifndef EGRESS_PROXY_RETRY_H
#define EGRESS_PROXY_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vs_retries;

/* The retryOn conditions (Envoy's x-envoy-retry-on names). */
enum {
	RETRY_ON_5XX          = 1u << 0,   /* any 5xx, and no response at all */
	RETRY_ON_GATEWAY      = 1u << 1,   /* 502, 503, 504, and no response at all */
	RETRY_ON_RESET        = 1u << 2,   /* disconnect, reset, per-try timeout */
	RETRY_ON_CONNECT      = 1u << 3,   /* connect failure or timeout */
	RETRY_ON_REFUSED      = 1u << 4,   /* HTTP/2 REFUSED_STREAM */
	RETRY_ON_4XX          = 1u << 5,   /* retriable-4xx: 409 */
	RETRY_ON_CODES        = 1u << 6,   /* retriable-status-codes */
	RETRY_ON_RATELIMITED  = 1u << 7,   /* envoy-ratelimited: x-envoy-ratelimited present */
	RETRY_ON_BEFORE_REQ   = 1u << 8,   /* reset-before-request: nothing of it was sent */
	/* gRPC (grpc-status in the response head): */
	RETRY_ON_CANCELLED    = 1u << 9,   /* 1 */
	RETRY_ON_DEADLINE     = 1u << 10,  /* 4 */
	RETRY_ON_RESOURCE     = 1u << 11,  /* 8 */
	RETRY_ON_INTERNAL     = 1u << 12,  /* 13 */
	RETRY_ON_UNAVAILABLE  = 1u << 13,  /* 14 */
};

#define RETRY_CODES_MAX 16
#define RETRY_BASE_MS 25         /* Envoy's default backoff base interval */
/* A request body is kept for a replay up to this many bytes (as received, framing
 * included); a longer one is streamed and its request is not retried (Envoy: "retry is
 * not attempted if the request body exceeded the buffer limit"). */
#define RETRY_BODY_MAX (64 * 1024)
/* Envoy's retry budget, used when DestinationRule maxRetries is unset: retries in
 * progress at most 20 % of the cluster's active requests, and at least 3. */
#define RETRY_BUDGET_PERCENT 20
#define RETRY_BUDGET_MIN 3

struct retry_policy {
	uint32_t num_retries;        /* retries after the first try */
	unsigned on;                 /* RETRY_ON_* */
	uint16_t codes[RETRY_CODES_MAX];
	size_t ncodes;
	int64_t per_try_ms;          /* 0: none */
	int64_t base_ms, max_ms;     /* backoff: full jitter, exponential, capped */
	bool prev_hosts;             /* previous_hosts: a retry avoids the endpoints tried */
	uint32_t host_attempts;      /* host_selection_retry_max_attempts */
};

/* How an attempt failed without a response. */
enum retry_fail {
	RETRY_F_CONNECT,             /* no connection (refused, timeout, TLS handshake) */
	RETRY_F_RESET,               /* connection closed or reset before the response */
	RETRY_F_REFUSED,             /* HTTP/2 REFUSED_STREAM */
	RETRY_F_TIMEOUT,             /* perTryTimeout */
};

extern const struct retry_policy retry_default;

/* The policy for a route's `retries` (NULL: absent): retry_default, NULL for attempts 0,
 * or a new one (retry_free). */
const struct retry_policy *retry_compile(const struct vs_retries *in);
void retry_free(const struct retry_policy *p);

/* Whether a final response head with status code (grpc: its grpc-status, -1 none;
 * ratelimited: x-envoy-ratelimited present) is retriable under p. */
bool retry_on_status(const struct retry_policy *p, int code, int grpc, bool ratelimited);
/* Whether an attempt that failed as f is retriable under p. */
bool retry_on_fail(const struct retry_policy *p, enum retry_fail f);
/* The wait before retry number n (1-based), rnd a random number: Envoy's jittered
 * exponential backoff, rnd % ((2^n - 1) x base), at most max. */
uint64_t retry_backoff_ms(const struct retry_policy *p, unsigned n, uint32_t rnd);
/* How many retries may be in progress at once for a cluster with active requests:
 * maxRetries when set (max_retries > 0), else Envoy's retry budget. */
uint32_t retry_budget(uint32_t max_retries, uint32_t active);
/* The retryOn conditions of p as Envoy's comma-separated names, into buf. */
void retry_on_str(const struct retry_policy *p, char *buf, size_t size);

#endif
