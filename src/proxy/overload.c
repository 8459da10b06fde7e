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
} ovl;

void ovl_config_default(struct ovl_config *c)
{
	memset(c, 0, sizeof(*c));
	c->shrink_heap = 0.90;
	c->stop_requests = 0.95;
	c->reject_connections = 0.98;
	c->refresh_ms = 250;
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

void ovl_start(struct loop *loop, const struct ovl_config *c)
{
	ovl.c = *c;
	if (!c->max_heap)
		return;
	ovl.on = true;
	loop_timer_init(&ovl.timer, ovl_on_timer);
	ovl_on_timer(loop, &ovl.timer);
}

void ovl_stop(struct loop *loop)
{
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
