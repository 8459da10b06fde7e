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
struct proxy;
struct worker;
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
	/* The HTTP/2 stream budget (below): streams in flight on downstream HTTP/2
	 * connections, all together; and the response bytes they may hold, as a whole. */
	uint64_t max_h2_streams;        /* 0: no limit by count */
	uint64_t max_h2_buffer;         /* bytes; 0: no limit by bytes */
};

/* The command-line options (getopt_long entries, for the caller's table) and their
 * values. */
enum {
	OVL_OPT_MAX_HEAP = 0x4f00, OVL_OPT_SHRINK_HEAP, OVL_OPT_STOP_REQUESTS,
	OVL_OPT_REJECT_CONNECTIONS, OVL_OPT_REFRESH, OVL_OPT_MAX_H2_STREAMS, OVL_OPT_MAX_H2_BUFFER,
};
#define OVL_OPTIONS \
	{ "overload-max-heap", required_argument, NULL, OVL_OPT_MAX_HEAP }, \
	{ "overload-shrink-heap", required_argument, NULL, OVL_OPT_SHRINK_HEAP }, \
	{ "overload-stop-requests", required_argument, NULL, OVL_OPT_STOP_REQUESTS }, \
	{ "overload-reject-connections", required_argument, NULL, OVL_OPT_REJECT_CONNECTIONS }, \
	{ "overload-refresh-interval", required_argument, NULL, OVL_OPT_REFRESH }, \
	{ "max-h2-streams", required_argument, NULL, OVL_OPT_MAX_H2_STREAMS }, \
	{ "max-h2-buffer", required_argument, NULL, OVL_OPT_MAX_H2_BUFFER }
/* Sets what option opt (OVL_OPT_*) says. Returns 0, or -1 with the problem in err. */
int ovl_option(struct ovl_config *c, int opt, const char *arg, struct sbuf *err);

/* Envoy's defaults for what egressgw does not take from a bootstrap: 0.90, 0.95, 0.98 of
 * the budget, sampled every 250 ms. HTTP/2: max_h2_buffer OVL_H2_BUFFER_DEFAULT,
 * max_h2_streams UINT64_MAX ("not given": the caller sets it from --max-connections). */
void ovl_config_default(struct ovl_config *c);
/* "64Mi", "512M", "1073741824", "2Gi", "100Ki", "100K" (K/M/G are powers of 1000, Ki/Mi/Gi
 * of 1024, as Kubernetes quantities). Returns 0, or -1 when s is not one. */
int ovl_parse_bytes(const char *s, uint64_t *out);
/* A threshold: a number in (0, 1]. Returns 0 or -1. */
int ovl_parse_ratio(const char *s, double *out);
/* The actions a heap of used bytes sets under c (OVL_* bits). */
unsigned ovl_actions_for(const struct ovl_config *c, uint64_t used);

/* Main thread: samples now and then every c->refresh_ms on loop (a copy of c is kept);
 * no sampling when c->max_heap is 0. Sets the HTTP/2 stream budget and starts its timer,
 * which, after a burst, has each of p's workers (p started, NULL: none) call shed on its
 * own thread (it frees the worker's caches: passed in, because what fwd.c keeps is
 * fwd.c's, which calls into this file) and trim the heap. */
void ovl_start(struct loop *loop, const struct ovl_config *c, struct proxy *p,
               void (*shed)(struct worker *w));
/* Main thread: stops sampling (before the loop is freed). */
void ovl_stop(struct loop *loop);

/* Workers. True when new connections are to be refused now: then fd (just accepted) is
 * closed and the refusal counted. */
bool ovl_reject_connection(int fd);
/* True when a new request is to be answered 503 OM now (counts it). */
bool ovl_refuse_request(void);

/* ---- the HTTP/2 stream budget ----
 *
 * A downstream HTTP/2 connection carries up to 100 streams, and each stream in flight
 * holds an upstream connection (a descriptor; --max-connections counts one per downstream
 * connection) and the response bytes its client has not taken yet. A client that opens
 * streams with a zero window and asks for large responses makes the gateway hold all of
 * it. Three bounds, from the stream to the whole process:
 *
 *   - per stream, back-pressure: the gateway stops reading from a stream's upstream once
 *     OVL_H2_STREAM_HIGH_WATER bytes wait behind the stream's send queue (h2.h
 *     stream_send_buffer, 64 KiB), until the client takes them (fwd.c): about
 *     OVL_H2_STREAM_RESERVE bytes of response per stream (the read that crosses the mark
 *     may add up to 64 KiB more);
*   - as a whole: a new stream is admitted only while the streams in flight stay under
 *     --max-h2-streams (the descriptors: default --max-connections) and their reserve
 *     (OVL_H2_STREAM_RESERVE each) under --max-h2-buffer; past either, RST_STREAM
 *     (REFUSED_STREAM), which tells the client the request was not processed and may be
 *     retried (RFC 9113 8.7);
 *   - fairness before the budget is reached: from half of either budget on, a connection
 *     that already has OVL_H2_FAIR_STREAMS streams in flight gets no more, so that one
 *     client's connections cannot take what is left from the others.
 *
 * The budget is reserved, not sampled: a stream takes its reserve when admitted, so the
 * bytes held can never exceed --max-h2-buffer, even in the burst of a hundred HEADERS
 * frames read at once, before any upstream has answered. When the streams of a burst are
 * gone, the main thread hands the freed heap back to the system (malloc_trim; glibc keeps
 * it in the workers' arenas otherwise). Workers pay two relaxed atomic operations per
 * stream. */
#define OVL_H2_STREAM_HIGH_WATER  (16 * 1024)
#define OVL_H2_STREAM_RESERVE     (128 * 1024)
#define OVL_H2_FAIR_STREAMS       10
#define OVL_H2_BUFFER_DEFAULT     (256ull << 20)

/* Window shrinking, back-pressure before the budget is reached: while the streams in
 * flight are past the high-water mark (half the budget, where fairness starts) and until
 * they fall to the low-water mark (a quarter), downstream connections advertise
 * SETTINGS_INITIAL_WINDOW_SIZE OVL_H2_WINDOW_SHRUNK instead of their own (256 KiB), the
 * ones open already too (h2_cap_stream_window at their next read), so that a burst of
 * uploads cannot make every stream buffer a full window of request body. */
#define OVL_H2_WINDOW_SHRUNK      (16 * 1024)

/* Workers: the cap on a downstream connection's stream window now: OVL_H2_WINDOW_SHRUNK
 * under pressure, else UINT32_MAX (none). One relaxed atomic load. */
uint32_t ovl_h2_window_cap(void);

/* Workers: a new stream on a connection that has conn_streams in flight. True: refused
 * (counted), send RST_STREAM(REFUSED_STREAM); false: admitted, and
 * ovl_h2_stream_closed must follow when it ends. */
bool ovl_h2_stream_refused(unsigned conn_streams);
void ovl_h2_stream_closed(void);

/* ---- the upstream connection budget ----
 *
 * --max-connections bounds downstream connections and, by default, is half of what the
 * descriptor limit leaves after a reserve, the other half being for upstream connections:
 * a busy HTTP/1.1 downstream connection holds one. Idle pooled upstream connections are
 * held beyond that (an upstream's keep-alive lasts up to the DestinationRule's idleTimeout,
 * 1 h by default), so waves of requests to different upstreams used to run the process
 * out of descriptors (test_upstream_budget.py at `ulimit -n 1024`: accepts without a
 * descriptor, 503 UF "Too many open files", a second client served 36% of the time).
 * Upstream connections of every kind (every worker's ucx_active: HTTP/1.1, HTTP/2,
 * tunnels) are budgeted to --max-connections as a whole: a new HTTP/1.1 upstream
 * connection past it first closes an idle pooled one of its worker (fwd_pool_shed), and
 * with none is answered 503 UO (details upstream_reset_before_response_started{overflow},
 * counted in egressgw_upstream_cx_budget_overflow_total) instead of a connect that may
 * find no descriptor; each worker's tick closes idle pooled connections while the budget
 * is used up, so another worker's idle ones give way too. HTTP/2 upstream connections and
 * tunnels are counted but not refused here (HTTP/2 streams have their own budget above).
 * Without a connection limit (--max-connections 0) there is none. */

/* Workers: true when the process's upstream connections have reached the budget
 * (p->max_dcx; false when it is 0). Reads one counter per worker. */
bool ovl_up_full(const struct proxy *p);
/* Workers: counts a new upstream connection refused by the budget, or n idle pooled
 * connections closed for it. */
void ovl_up_refused(void);
void ovl_up_shed(uint64_t n);

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
