/* overload: the heap budget (overload.h). The main thread samples, workers read one
 * atomic word of action bits.
 *
 * Why "allocated" and not RSS or the heap's size: the budget must fall when the memory
 * is given back, or the gateway would refuse requests for ever after one burst. glibc
 * keeps freed blocks in its arenas (mallinfo2's fordblks) and returns them only when
 * trimmed; what the allocator has handed out (uordblks, plus hblkhd for blocks mmapped
 * on their own) is what connections hold now. RSS is that plus the free blocks not yet
 * trimmed, which the shrink_heap action hands back.
 *
 * mallinfo2 walks every arena's free lists under that arena's lock; at the default
 * 250 ms that is a few microseconds of each worker's allocator every quarter second.
 * Under AddressSanitizer, whose allocator glibc does not see, its own count is read. */
#include "proxy/overload.h"
#include "proxy/snap.h"
#include "proxy/worker.h"
#include "core/log.h"
#include "core/util.h"
#include "net/loop.h"

#include <malloc.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define OVL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OVL_ASAN 1
#endif
#endif
#ifdef OVL_ASAN
/* <sanitizer/allocator_interface.h>, which gcc 12 does not install; both compilers'
 * runtimes export these. */
size_t __sanitizer_get_current_allocated_bytes(void);
size_t __sanitizer_get_heap_size(void);
#endif

/* shrink_heap trims at most this often while it is active (Envoy: every 10 s; malloc_trim
 * locks each arena in turn, so not at every sample either). */
#define OVL_TRIM_INTERVAL_MS 1000

static const struct {
	unsigned bit;
	const char *name;               /* after "envoy.overload_actions." */
} ovl_actions[] = {
	{ OVL_SHRINK_HEAP, "shrink_heap" },
	{ OVL_STOP_REQUESTS, "stop_accepting_requests" },
	{ OVL_REJECT_CONNECTIONS, "reject_incoming_connections" },
};

static struct {
	struct ovl_config c;
	bool on;
	struct loop_timer timer;
	uint64_t last_trim_ms;
	/* Written by the main thread's sampler, read by workers and the admin endpoint. */
	_Atomic unsigned actions;
	_Atomic uint64_t used, heap_size, pressure_pct;
	_Atomic uint64_t shrink_count;
	/* Written by workers when they refuse (rare: only under overload). */
	_Atomic uint64_t cx_rejected, rq_refused;
	/* The HTTP/2 stream budget: limits (fixed at start), streams in flight (workers),
	 * refusals; the main thread's trim timer and the peak it saw since its last trim. */
	uint64_t h2_max_streams, h2_half, h2_low;
	_Atomic uint64_t h2_streams, h2_refused, h2_trims;
	/* Window shrinking (overload.h): set past h2_half streams, cleared at h2_low. */
	_Atomic bool h2_shrunk;
	_Atomic uint64_t h2_shrinks;
	struct loop_timer h2_timer;
	bool h2_timer_on;
	uint64_t h2_peak;
	struct proxy *proxy;            /* its workers shed their caches after a burst */
	void (*shed)(struct worker *w);
	/* The upstream connection budget's refusals and the idle connections it closed. */
	_Atomic uint64_t up_refused, up_shed;
} ovl;

void ovl_config_default(struct ovl_config *c)
{
	memset(c, 0, sizeof(*c));
	c->shrink_heap = 0.90;
	c->stop_requests = 0.95;
	c->reject_connections = 0.98;
	c->refresh_ms = 250;
	c->max_h2_streams = UINT64_MAX;
	c->max_h2_buffer = OVL_H2_BUFFER_DEFAULT;
}

int ovl_parse_bytes(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {
		{ "", 1 }, { "K", 1000 }, { "M", 1000000 }, { "G", 1000000000 },
		{ "Ki", 1ull << 10 }, { "Mi", 1ull << 20 }, { "Gi", 1ull << 30 },
	};
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	v = strtoull(s, &end, 10);
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(end, units[i].suffix) != 0)
			continue;
		if (v > UINT64_MAX / units[i].mult)
			return -1;
		*out = v * units[i].mult;
		return 0;
	}
	return -1;
}

int ovl_parse_ratio(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !*s)
		return -1;
	v = strtod(s, &end);
	if (*end || !isfinite(v) || v <= 0 || v > 1)
		return -1;
	*out = v;
	return 0;
}

int ovl_option(struct ovl_config *c, int opt, const char *arg, struct sbuf *err)
{
	char *end;
	double ms;

	switch (opt) {
	case OVL_OPT_MAX_HEAP:
		if (ovl_parse_bytes(arg, &c->max_heap) == 0)
			return 0;
		sbuf_addf(err, "--overload-max-heap: want bytes (e.g. 512Mi, 1G, 0 for none), got "
		          "\"%s\"", arg);
		return -1;
	case OVL_OPT_SHRINK_HEAP:
	case OVL_OPT_STOP_REQUESTS:
	case OVL_OPT_REJECT_CONNECTIONS:
		if (ovl_parse_ratio(arg, opt == OVL_OPT_SHRINK_HEAP ? &c->shrink_heap :
		                    opt == OVL_OPT_STOP_REQUESTS ? &c->stop_requests :
		                    &c->reject_connections) == 0)
			return 0;
		sbuf_addf(err, "--overload-%s: want a fraction of --overload-max-heap in (0, 1], "
		          "got \"%s\"", opt == OVL_OPT_SHRINK_HEAP ? "shrink-heap" :
		          opt == OVL_OPT_STOP_REQUESTS ? "stop-requests" : "reject-connections", arg);
		return -1;
	case OVL_OPT_MAX_H2_STREAMS:
		if (*arg >= '0' && *arg <= '9') {
			unsigned long long v = strtoull(arg, &end, 10);

			if (!*end && v < UINT64_MAX) {
				c->max_h2_streams = v;
				return 0;
			}
		}
		sbuf_addf(err, "--max-h2-streams: want a number of streams (0 for no limit), got "
		          "\"%s\"", arg);
		return -1;
	case OVL_OPT_MAX_H2_BUFFER:
		if (ovl_parse_bytes(arg, &c->max_h2_buffer) == 0)
			return 0;
		sbuf_addf(err, "--max-h2-buffer: want bytes (e.g. 64Mi, 0 for no limit), got "
		          "\"%s\"", arg);
		return -1;
	case OVL_OPT_REFRESH:
		ms = strtod(arg, &end);
		if (end != arg && strcmp(end, "s") == 0)
			ms *= 1000;
		else if (end == arg || strcmp(end, "ms") != 0)
			ms = -1;
		if (ms >= 10 && ms <= 60000) {
			c->refresh_ms = (uint64_t)ms;
			return 0;
		}
		sbuf_addf(err, "--overload-refresh-interval: want 10ms..60s, got \"%s\"", arg);
		return -1;
	}
	sbuf_addf(err, "unknown overload option");
	return -1;
}

unsigned ovl_actions_for(const struct ovl_config *c, uint64_t used)
{
	unsigned a = 0;
	double p;

	if (!c->max_heap)
		return 0;
	p = (double)used / (double)c->max_heap;
	if (p >= c->shrink_heap)
		a |= OVL_SHRINK_HEAP;
	if (p >= c->stop_requests)
		a |= OVL_STOP_REQUESTS;
	if (p >= c->reject_connections)
		a |= OVL_REJECT_CONNECTIONS;
	return a;
}

/* What the allocator has handed out, and what it holds from the system. */
static void ovl_heap(uint64_t *used, uint64_t *heap_size)
{
#ifdef OVL_ASAN
	*used = __sanitizer_get_current_allocated_bytes();
	*heap_size = __sanitizer_get_heap_size();
#else
	struct mallinfo2 mi = mallinfo2();

	*used = mi.uordblks + mi.hblkhd;
	*heap_size = mi.arena + mi.hblkhd;
#endif
}

static void ovl_trim(uint64_t now)
{
	malloc_trim(0);
	ovl.last_trim_ms = now;
	atomic_fetch_add_explicit(&ovl.shrink_count, 1, memory_order_relaxed);
}

static void ovl_log_change(unsigned old, unsigned now, uint64_t used)
{
	struct sbuf on = SBUF_INIT, off = SBUF_INIT;

	for (size_t i = 0; i < ARRAY_SIZE(ovl_actions); i++) {
		if ((now & ovl_actions[i].bit) && !(old & ovl_actions[i].bit))
			sbuf_addf(&on, " %s", ovl_actions[i].name);
		if (!(now & ovl_actions[i].bit) && (old & ovl_actions[i].bit))
			sbuf_addf(&off, " %s", ovl_actions[i].name);
	}
	log_msg(now > old ? LOG_WARN : LOG_INFO, "overload",
	        "heap %llu KiB of %llu KiB (--overload-max-heap, %llu%%):%s%s%s%s",
	        (unsigned long long)(used >> 10), (unsigned long long)(ovl.c.max_heap >> 10),
	        (unsigned long long)atomic_load(&ovl.pressure_pct), on.len ? " active:" : "",
	        sbuf_str(&on), off.len ? " no longer active:" : "", sbuf_str(&off));
	sbuf_free(&on);
	sbuf_free(&off);
}

static void ovl_sample(struct loop *loop)
{
	uint64_t used, heap_size, now = loop_now_ms(loop);
	unsigned old = atomic_load_explicit(&ovl.actions, memory_order_relaxed), a;

	ovl_heap(&used, &heap_size);
	a = ovl_actions_for(&ovl.c, used);
	atomic_store_explicit(&ovl.used, used, memory_order_relaxed);
	atomic_store_explicit(&ovl.heap_size, heap_size, memory_order_relaxed);
	atomic_store_explicit(&ovl.pressure_pct, used >= ovl.c.max_heap ? 100 :
	                      used * 100 / ovl.c.max_heap, memory_order_relaxed);
	atomic_store_explicit(&ovl.actions, a, memory_order_relaxed);
	if (a != old)
		ovl_log_change(old, a, used);
	/* While the heap is near its budget, hand free blocks back now and then; once the
	 * pressure is gone, once more, so that what a burst left in the arenas goes back to
	 * the system instead of staying in RSS. */
	if ((a & OVL_SHRINK_HEAP) && now - ovl.last_trim_ms >= OVL_TRIM_INTERVAL_MS)
		ovl_trim(now);
	else if ((old & OVL_SHRINK_HEAP) && !(a & OVL_SHRINK_HEAP))
		ovl_trim(now);
}

static void ovl_on_timer(struct loop *loop, struct loop_timer *t)
{
	ovl_sample(loop);
	loop_timer_arm(loop, t, ovl.c.refresh_ms);
}

/* ---- the HTTP/2 stream budget (overload.h) ---- */

/* The effective stream limit: the smaller of the count and what the buffer budget
 * reserves for (0: none). */
static uint64_t ovl_h2_limit(const struct ovl_config *c)
{
	uint64_t by_count = c->max_h2_streams == UINT64_MAX ? 0 : c->max_h2_streams;
	uint64_t by_bytes = c->max_h2_buffer ? c->max_h2_buffer / OVL_H2_STREAM_RESERVE : 0;

	if (c->max_h2_buffer && by_bytes == 0)
		by_bytes = 1;
	if (!by_count)
		return by_bytes;
	return by_bytes && by_bytes < by_count ? by_bytes : by_count;
}

/* Window shrinking ends (the count is at or below h2_low). */
static void ovl_h2_stream_clear(void)
{
	if (atomic_load_explicit(&ovl.h2_shrunk, memory_order_relaxed) &&
	    atomic_exchange_explicit(&ovl.h2_shrunk, false, memory_order_relaxed))
		log_info("overload", "HTTP/2 streams in flight: %llu: downstream connections get "
		         "their stream window back", (unsigned long long)atomic_load_explicit(
		         &ovl.h2_streams, memory_order_relaxed));
}

bool ovl_h2_stream_refused(unsigned conn_streams)
{
	uint64_t n = atomic_load_explicit(&ovl.h2_streams, memory_order_relaxed);

	if (ovl.h2_max_streams &&
	    (n >= ovl.h2_max_streams || (n >= ovl.h2_half && conn_streams >= OVL_H2_FAIR_STREAMS))) {
		atomic_fetch_add_explicit(&ovl.h2_refused, 1, memory_order_relaxed);
		return true;
	}
	/* Two workers may both pass the check at the limit: the count may end one stream
	 * per worker over it, never more. */
	n = atomic_fetch_add_explicit(&ovl.h2_streams, 1, memory_order_relaxed) + 1;
	if (ovl.h2_max_streams && n >= ovl.h2_half &&
	    !atomic_load_explicit(&ovl.h2_shrunk, memory_order_relaxed) &&
	    !atomic_exchange_explicit(&ovl.h2_shrunk, true, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&ovl.h2_shrinks, 1, memory_order_relaxed);
		log_info("overload", "HTTP/2 streams in flight: %llu of %llu: new and open "
		         "downstream connections get a stream window of %u bytes until they fall "
		         "to %llu", (unsigned long long)n, (unsigned long long)ovl.h2_max_streams,
		         OVL_H2_WINDOW_SHRUNK, (unsigned long long)ovl.h2_low);
		/* Streams that closed meanwhile may have passed their clear before this set:
		 * look at the count again, so no flag stays set with nothing in flight. */
		if (atomic_load_explicit(&ovl.h2_streams, memory_order_relaxed) <= ovl.h2_low)
			ovl_h2_stream_clear();
	}
	return false;
}

bool ovl_up_full(const struct proxy *p)
{
	uint64_t n = 0;

	if (!p->max_dcx)
		return false;
	for (int i = 0; i < p->nworkers; i++)
		n += STAT_GET(p->workers[i].st.ucx_active);
	return n >= p->max_dcx;
}

void ovl_up_refused(void)
{
	atomic_fetch_add_explicit(&ovl.up_refused, 1, memory_order_relaxed);
}

void ovl_up_shed(uint64_t n)
{
	if (n)
		atomic_fetch_add_explicit(&ovl.up_shed, n, memory_order_relaxed);
}

void ovl_h2_stream_closed(void)
{
	uint64_t n = atomic_fetch_sub_explicit(&ovl.h2_streams, 1, memory_order_relaxed) - 1;

	if (n <= ovl.h2_low)
		ovl_h2_stream_clear();
}

uint32_t ovl_h2_window_cap(void)
{
	return atomic_load_explicit(&ovl.h2_shrunk, memory_order_relaxed) ? OVL_H2_WINDOW_SHRUNK
	                                                                   : UINT32_MAX;
}

/* Every second: once the streams of a burst are gone (under a quarter of the peak seen
 * since the last trim, a peak worth OVL_H2_TRIM_MIN of reserve), what they held goes
 * back to the system. Without it glibc keeps the freed blocks in the workers' arenas:
 * eight rounds of the stalled-streams attack left 610 MB resident. */
#define OVL_H2_TIMER_MS 1000
#define OVL_H2_TRIM_MIN (8u << 20)

/* On a worker's thread: the caller's shed (ovl_start) frees the worker's caches, then the
 * heap is trimmed. */
static void ovl_on_shed(struct loop *loop, void *arg)
{
	(void)loop;
	if (ovl.shed)
		ovl.shed(arg);
	malloc_trim(0);
}

static void ovl_on_h2_timer(struct loop *loop, struct loop_timer *t)
{
	uint64_t n = atomic_load_explicit(&ovl.h2_streams, memory_order_relaxed);

	if (n > ovl.h2_peak)
		ovl.h2_peak = n;
	if (ovl.h2_peak * OVL_H2_STREAM_RESERVE >= OVL_H2_TRIM_MIN && n <= ovl.h2_peak / 4) {
		log_debug("overload", "HTTP/2 streams in flight: %llu, down from %llu: trimming the heap",
		          (unsigned long long)n, (unsigned long long)ovl.h2_peak);
		for (int i = 0; ovl.proxy && i < ovl.proxy->nworkers; i++)
			loop_post(ovl.proxy->workers[i].loop, ovl_on_shed, &ovl.proxy->workers[i]);
		malloc_trim(0);
		atomic_fetch_add_explicit(&ovl.h2_trims, 1, memory_order_relaxed);
		ovl.h2_peak = n;
	}
	loop_timer_arm(loop, t, OVL_H2_TIMER_MS);
}

void ovl_start(struct loop *loop, const struct ovl_config *c, struct proxy *p,
               void (*shed)(struct worker *w))
{
	ovl.c = *c;
	ovl.proxy = p;
	ovl.shed = shed;
	ovl.h2_max_streams = ovl_h2_limit(c);
	ovl.h2_half = ovl.h2_max_streams / 2;
	ovl.h2_low = ovl.h2_max_streams / 4;
	if (ovl.h2_max_streams)
		log_info("overload", "HTTP/2 stream budget: %llu streams in flight (--max-h2-streams "
		         "%llu, --max-h2-buffer %llu KiB at %u KiB a stream)",
		         (unsigned long long)ovl.h2_max_streams,
		         (unsigned long long)(c->max_h2_streams == UINT64_MAX ? 0 : c->max_h2_streams),
		         (unsigned long long)(c->max_h2_buffer >> 10), OVL_H2_STREAM_RESERVE >> 10);
	loop_timer_init(&ovl.h2_timer, ovl_on_h2_timer);
	loop_timer_arm(loop, &ovl.h2_timer, OVL_H2_TIMER_MS);
	ovl.h2_timer_on = true;
	if (!c->max_heap)
		return;
	ovl.on = true;
	loop_timer_init(&ovl.timer, ovl_on_timer);
	ovl_on_timer(loop, &ovl.timer);
}

void ovl_stop(struct loop *loop)
{
	if (ovl.h2_timer_on)
		loop_timer_cancel(loop, &ovl.h2_timer);
	ovl.h2_timer_on = false;
	ovl.proxy = NULL;
	if (ovl.on)
		loop_timer_cancel(loop, &ovl.timer);
	ovl.on = false;
	atomic_store(&ovl.actions, 0);
}

bool ovl_reject_connection(int fd)
{
	if (!(atomic_load_explicit(&ovl.actions, memory_order_relaxed) & OVL_REJECT_CONNECTIONS))
		return false;
	/* Accepted and closed, as past --max-connections (worker.c says why not left in
	 * the backlog): Envoy's reject_incoming_connections. */
	close(fd);
	atomic_fetch_add_explicit(&ovl.cx_rejected, 1, memory_order_relaxed);
	return true;
}

bool ovl_refuse_request(void)
{
	if (!(atomic_load_explicit(&ovl.actions, memory_order_relaxed) & OVL_STOP_REQUESTS))
		return false;
	atomic_fetch_add_explicit(&ovl.rq_refused, 1, memory_order_relaxed);
	return true;
}

/* ---- admin ---- */

static void prom(struct sbuf *out, const char *name, bool gauge, const char *help,
                 unsigned long long v)
{
	sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name,
	          gauge ? "gauge" : "counter", name, v);
}

void ovl_prom(struct sbuf *out)
{
	unsigned a = atomic_load(&ovl.actions);
	char name[160];

	/* Envoy's stat names with dots as underscores (its Prometheus exporter's rule);
	 * counters end in _total, as every counter egressgw exports does. */
	prom(out, "envoy_overload_envoy_resource_monitors_fixed_heap_pressure", true,
	     "Heap allocated as a percent of --overload-max-heap (0 without it).",
	     atomic_load(&ovl.pressure_pct));
	for (size_t i = 0; i < ARRAY_SIZE(ovl_actions); i++) {
		bool on = a & ovl_actions[i].bit;

		snprintf(name, sizeof(name), "envoy_overload_envoy_overload_actions_%s_active",
		         ovl_actions[i].name);
		prom(out, name, true, "1 while the overload action is active.", on);
		snprintf(name, sizeof(name), "envoy_overload_envoy_overload_actions_%s_scale_percent",
		         ovl_actions[i].name);
		prom(out, name, true, "100 while the overload action is active (threshold trigger).",
		     on ? 100 : 0);
	}
	prom(out, "envoy_overload_envoy_overload_actions_shrink_heap_shrink_count_total", false,
	     "Times the shrink_heap action returned free heap to the system (malloc_trim).",
	     atomic_load(&ovl.shrink_count));
	prom(out, "envoy_server_memory_allocated", true,
	     "Heap bytes allocated, at the last overload sample (0 without --overload-max-heap).",
	     atomic_load(&ovl.used));
	prom(out, "envoy_server_memory_heap_size", true,
	     "Heap bytes held from the system, at the last overload sample.",
	     atomic_load(&ovl.heap_size));
	prom(out, "egressgw_overload_max_heap_bytes", true,
	     "--overload-max-heap (0: no heap budget).", ovl.c.max_heap);
	prom(out, "egressgw_downstream_cx_overload_reject_total", false,
	     "Connections accepted and closed by reject_incoming_connections.",
	     atomic_load(&ovl.cx_rejected));
	prom(out, "egressgw_downstream_rq_overload_refused_total", false,
	     "Requests answered 503 OM by stop_accepting_requests.", atomic_load(&ovl.rq_refused));
	prom(out, "egressgw_overload_max_h2_streams", true,
	     "HTTP/2 downstream streams admitted at once, all connections together: the smaller of "
	     "--max-h2-streams and --max-h2-buffer / 128 KiB (0: no limit).", ovl.h2_max_streams);
	prom(out, "egressgw_overload_max_h2_buffer_bytes", true,
	     "--max-h2-buffer: response bytes HTTP/2 streams may hold, all together (0: no limit).",
	     ovl.c.max_h2_buffer);
	prom(out, "egressgw_overload_h2_streams", true,
	     "HTTP/2 downstream streams in flight.", atomic_load(&ovl.h2_streams));
	prom(out, "egressgw_overload_h2_buffer_reserved_bytes", true,
	     "Response bytes reserved by the HTTP/2 streams in flight (128 KiB each).",
	     atomic_load(&ovl.h2_streams) * OVL_H2_STREAM_RESERVE);
	prom(out, "egressgw_downstream_rq_h2_refused_total", false,
	     "HTTP/2 streams refused (RST_STREAM REFUSED_STREAM) by the stream budget.",
	     atomic_load(&ovl.h2_refused));
	prom(out, "egressgw_overload_max_upstream_connections", true,
	     "Upstream connections open at once, all workers together (--max-connections; "
	     "0: no limit).", ovl.proxy ? ovl.proxy->max_dcx : 0);
	prom(out, "egressgw_upstream_cx_budget_overflow_total", false,
	     "Requests answered 503 UO because the upstream connection budget was used up and "
	     "no idle pooled connection could give way.", atomic_load(&ovl.up_refused));
	prom(out, "egressgw_upstream_cx_budget_shed_total", false,
	     "Idle pooled upstream connections closed to stay within the upstream connection "
	     "budget.", atomic_load(&ovl.up_shed));
	prom(out, "egressgw_overload_h2_window_shrunk", true,
	     "1 while downstream HTTP/2 connections advertise a shrunk stream window (streams "
	     "in flight past half the budget, until a quarter).",
	     atomic_load(&ovl.h2_shrunk));
	prom(out, "egressgw_overload_h2_window_shrink_total", false,
	     "Times the downstream HTTP/2 stream window was shrunk.",
	     atomic_load(&ovl.h2_shrinks));
	prom(out, "egressgw_overload_h2_heap_trim_total", false,
	     "Times the heap was handed back to the system after a burst of HTTP/2 streams.",
	     atomic_load(&ovl.h2_trims));
}

bool ovl_stat_name(const char *line, size_t nlen, const char *value, struct sbuf *out)
{
	size_t skip;

	if (nlen > 15 && strncmp(line, "envoy_overload_", 15) == 0)
		skip = 15;
	else if (nlen > 20 && strncmp(line, "envoy_server_memory_", 20) == 0)
		skip = 6;
	else
		return false;
	if (nlen >= 6 && strncmp(line + nlen - 6, "_total", 6) == 0)
		nlen -= 6;
	/* The dotted name back: envoy_overload_envoy_overload_actions_NAME_active ->
	 * overload.envoy.overload_actions.NAME.active; the action and monitor names keep
	 * their underscores. */
	if (skip == 6) {
		sbuf_adds(out, "server.");
		sbuf_add(out, line + 13, nlen - 13);
	} else {
		const char *rest = line + skip;
		size_t rlen = nlen - skip, pl;

		if (rlen > 23 && strncmp(rest, "envoy_overload_actions_", 23) == 0) {
			pl = 23;
			sbuf_adds(out, "overload.envoy.overload_actions.");
		} else if (rlen > 24 && strncmp(rest, "envoy_resource_monitors_", 24) == 0) {
			pl = 24;
			sbuf_adds(out, "overload.envoy.resource_monitors.");
		} else {
			return false;
		}
		rest += pl;
		rlen -= pl;
		for (size_t i = 0; i < ARRAY_SIZE(ovl_actions) + 1; i++) {
			const char *n = i < ARRAY_SIZE(ovl_actions) ? ovl_actions[i].name : "fixed_heap";
			size_t l = strlen(n);

			if (rlen > l + 1 && strncmp(rest, n, l) == 0 && rest[l] == '_') {
				sbuf_add(out, rest, l);
				sbuf_addc(out, '.');
				sbuf_add(out, rest + l + 1, rlen - l - 1);
				break;
			}
		}
	}
	sbuf_addf(out, ":%s", value);
	return true;
}

void ovl_json(struct snap_json *j)
{
	unsigned a = atomic_load(&ovl.actions);
	char v[96];

	snap_json_obj_begin(j, "overload_manager");
	snprintf(v, sizeof(v), "%.3fs", (double)ovl.c.refresh_ms / 1000);
	snap_json_str(j, "refresh_interval", ovl.on ? v : NULL);
	snap_json_arr_begin(j, "resource_monitors");
	if (ovl.on) {
		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "name", "envoy.resource_monitors.fixed_heap");
		snap_json_int(j, "max_heap_size_bytes", (long long)ovl.c.max_heap);
		snap_json_int(j, "allocated_bytes", (long long)atomic_load(&ovl.used));
		snap_json_int(j, "pressure_percent", (long long)atomic_load(&ovl.pressure_pct));
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_json_arr_begin(j, "actions");
	for (size_t i = 0; ovl.on && i < ARRAY_SIZE(ovl_actions); i++) {
		double th = ovl_actions[i].bit == OVL_SHRINK_HEAP ? ovl.c.shrink_heap
		          : ovl_actions[i].bit == OVL_STOP_REQUESTS ? ovl.c.stop_requests
		          : ovl.c.reject_connections;

		snap_json_obj_begin(j, NULL);
		snprintf(v, sizeof(v), "envoy.overload_actions.%s", ovl_actions[i].name);
		snap_json_str(j, "name", v);
		snprintf(v, sizeof(v), "%g", th);
		snap_json_str(j, "threshold", v);
		snap_json_bool(j, "active", a & ovl_actions[i].bit);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_json_obj_end(j);
}
