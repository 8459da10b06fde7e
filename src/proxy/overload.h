/* overload: a global memory budget, as Envoy's overload manager keeps one.
 *
 * One resource monitor, Envoy's envoy.resource_monitors.fixed_heap: the bytes the
 * allocator has handed out and not got back (glibc's mallinfo2 uordblks + hblkhd; under
 * AddressSanitizer its allocator's own count), against --overload-max-heap. The main
 * thread samples it on a timer (--overload-refresh-interval), off the request path, and
 * sets three of Envoy's actions by threshold, each a fraction of the budget:
 *
 *   envoy.overload_actions.shrink_heap                 malloc_trim, at most once a second
 *   envoy.overload_actions.stop_accepting_requests     new requests: 503 "envoy overloaded",
 *                                                      response flag OM, details overload
 *   envoy.overload_actions.reject_incoming_connections new connections accepted and closed
 *
 * Workers read the actions with one relaxed atomic load per accepted connection and per
 * new request (ovl_reject_connection, ovl_refuse_request); nothing else on the request
 * path changes. The state is process-wide: there is one heap per process. Without
 * --overload-max-heap nothing is sampled and both answer false. */
#ifndef EGRESS_PROXY_OVERLOAD_H
#define EGRESS_PROXY_OVERLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/sbuf.h"

struct loop;
struct snap_json;

enum ovl_action {
	OVL_SHRINK_HEAP = 1u << 0,
	OVL_STOP_REQUESTS = 1u << 1,
	OVL_REJECT_CONNECTIONS = 1u << 2,
};

struct ovl_config {
	uint64_t max_heap;              /* bytes; 0: no budget, nothing sampled */
	double shrink_heap;             /* thresholds: fractions of max_heap, in (0, 1] */
	double stop_requests;
	double reject_connections;
	uint64_t refresh_ms;
};

/* The command-line options (getopt_long entries, for the caller's table) and their
 * values. */
enum {
	OVL_OPT_MAX_HEAP = 0x4f00, OVL_OPT_SHRINK_HEAP, OVL_OPT_STOP_REQUESTS,
	OVL_OPT_REJECT_CONNECTIONS, OVL_OPT_REFRESH,
};
#define OVL_OPTIONS \
	{ "overload-max-heap", required_argument, NULL, OVL_OPT_MAX_HEAP }, \
	{ "overload-shrink-heap", required_argument, NULL, OVL_OPT_SHRINK_HEAP }, \
	{ "overload-stop-requests", required_argument, NULL, OVL_OPT_STOP_REQUESTS }, \
	{ "overload-reject-connections", required_argument, NULL, OVL_OPT_REJECT_CONNECTIONS }, \
	{ "overload-refresh-interval", required_argument, NULL, OVL_OPT_REFRESH }
/* Sets what option opt (OVL_OPT_*) says. Returns 0, or -1 with the problem in err. */
int ovl_option(struct ovl_config *c, int opt, const char *arg, struct sbuf *err);

/* Envoy's defaults for what egressgw does not take from a bootstrap: 0.90, 0.95, 0.98 of
 * the budget, sampled every 250 ms. */
void ovl_config_default(struct ovl_config *c);
/* "64Mi", "512M", "1073741824", "2Gi", "100Ki", "100K" (K/M/G are powers of 1000, Ki/Mi/Gi
 * of 1024, as Kubernetes quantities). Returns 0, or -1 when s is not one. */
int ovl_parse_bytes(const char *s, uint64_t *out);
/* A threshold: a number in (0, 1]. Returns 0 or -1. */
int ovl_parse_ratio(const char *s, double *out);
/* The actions a heap of used bytes sets under c (OVL_* bits). */
unsigned ovl_actions_for(const struct ovl_config *c, uint64_t used);

/* Main thread: samples now and then every c->refresh_ms on loop (a copy of c is kept).
 * Does nothing when c->max_heap is 0. */
void ovl_start(struct loop *loop, const struct ovl_config *c);
/* Main thread: stops sampling (before the loop is freed). */
void ovl_stop(struct loop *loop);

/* Workers. True when new connections are to be refused now: then fd (just accepted) is
 * closed and the refusal counted. */
bool ovl_reject_connection(int fd);
/* True when a new request is to be answered 503 OM now (counts it). */
bool ovl_refuse_request(void);

/* Admin (main thread): the series of /stats/prometheus, under Envoy's names
 * (envoy_overload_*, envoy_server_memory_*) and egressgw's refusal counters. */
void ovl_prom(struct sbuf *out);
/* /stats: one envoy_overload_* or envoy_server_* sample line (its name nlen bytes long)
 * as Envoy's dotted name ("overload.envoy.overload_actions.shrink_heap.active: 1").
 * Returns false when the line is not one of ovl_prom's. */
bool ovl_stat_name(const char *line, size_t nlen, const char *value, struct sbuf *out);
/* /server_info: "overload_manager": the budget, thresholds and current state. */
void ovl_json(struct snap_json *j);

#endif
