/* worker: the per-thread half of the proxy.
 *
 * Each worker thread owns an event loop, its own SO_REUSEPORT listening sockets (the kernel
 * spreads new connections across workers), its downstream and upstream connections, its
 * upstream connection pool, TLS session cache, load-balancer cursors and stats counters.
 * Nothing on the request path is shared between workers except read-only data: the
 * configuration snapshot and cluster endpoint sets.
 *
 * Configuration changes reach a worker as a posted callback carrying a new snapshot
 * (worker_publish): the worker adopts it for new connections and new requests, adds and
 * removes listening sockets to match, and drops its reference to the old snapshot; a
 * connection in the middle of a request keeps its own reference until the request ends.
 *
 * Quiescent points: every worker bumps `qs` from a periodic timer, which runs between
 * events, never inside a request callback. Memory that workers may have read without a
 * reference (old endpoint sets) is freed by the main thread only after every worker's qs
 * has moved past the value seen when the memory was retired (proxy_retire). */
#ifndef EGRESS_PROXY_WORKER_H
#define EGRESS_PROXY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "net/loop.h"
#include "net/sock.h"
#include "proxy/alog.h"
#include "proxy/istats.h"
#include "proxy/snap.h"

struct tls_sess_cache;
struct pool;
struct uh2_table;
struct proxy;
struct dns;
struct cb_table;
struct pool_live;

/* Counters are written by one worker and read by the admin thread: a relaxed load/store
 * pair (no lock prefix) is enough and costs what a plain increment costs. */
typedef _Atomic uint64_t stat_t;
#define STAT_INC(c)    atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + 1, memory_order_relaxed)
#define STAT_ADD(c, n) atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (n), memory_order_relaxed)
#define STAT_DEC(c)    atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) - 1, memory_order_relaxed)
#define STAT_GET(c)    atomic_load_explicit(&(c), memory_order_relaxed)

/* TLS failure categories counted separately (net/tls.h TLS_CAT_*); index 0 is "other". */
#define STATS_TLS_CATS 24

struct wstats {
	stat_t dcx_total, dcx_active, dcx_tls_fail;
	stat_t rq_total, rq_active;
	stat_t resp[6];                 /* by class: [1]=1xx ... [5]=5xx, [0]=no response */
	stat_t ucx_total, ucx_active, ucx_connect_fail, ucx_connect_timeout;
	stat_t ucx_tls_full, ucx_tls_resumed;
	stat_t ucx_tls_fail[STATS_TLS_CATS];
	stat_t urq_total, urq_retry, urq_reused, urq_timeout;
	stat_t pool_idle;
	stat_t no_route, no_healthy, dns_fail;
	stat_t cors_valid, cors_invalid;   /* route_cors.c: Envoy's cors.origin_valid/_invalid */
	stat_t bytes_in, bytes_out;
	/* Sidecar: opaque tunnels (TLS passthrough, CONNECT, unknown protocols) and the
	 * outbound traffic policy's special clusters. Gateway: downstream connections whose
	 * client presented a SPIFFE identity (ISTIO_MUTUAL peers). */
	stat_t tun_total, tun_active;
	stat_t passthrough, blackhole;
	/* Connections routed by tls:/tcp: routes, and refused by them (l4fwd.c). */
	stat_t l4_routed, l4_refused;
	stat_t dcx_peer_identity;
	/* Upstream HTTP/2 (up_h2.c): connections that negotiated h2, and those whose server
	 * chose HTTP/1.1 instead. */
	stat_t ucx_h2, ucx_h2_fallback;
	/* Circuit breaking (DestinationRule connectionPool) and outlier detection, as Envoy
	 * names them; per worker, summed (the limits are per worker, see fwd_conn.c). */
	stat_t ucx_overflow, urq_pending_overflow, urq_pending_total, urq_pending_active;
	stat_t od_ejections_enforced, od_ejections_active, od_ejections_overflow;
	/* consistentHash (fwd_hash.c): requests without their key (a random endpoint), and
	 * cookies made up (Set-Cookie). */
	stat_t lbh_no_key, lbh_cookie_set;
	/* Connections accepted and closed at once: past --max-connections (Envoy's
	 * downstream_cx_overflow), or with no descriptor left for them (accept EMFILE). */
	stat_t dcx_overflow, dcx_no_fd;
	/* Connections serving nothing closed to make room for a new one (fwd_evict). */
	stat_t dcx_evicted;
	/* AuthorizationPolicy decisions, as Envoy's RBAC filter counts them (only while
	 * policies apply to the proxy); shadow: istio.io/dry-run policies. */
	stat_t rbac_allowed, rbac_denied, rbac_shadow_allowed, rbac_shadow_denied;
	/* VirtualService fault injection (route_fault.h), Envoy's fault.delays_injected and
	 * fault.aborts_injected. */
	stat_t fault_delays, fault_aborts;
	/* VirtualService mirror policies (fwd_mirror.c): shadows sent, answered (any
	 * status), failed (no whole response: connect failure, reset, timeout, cancelled),
	 * not sent (body over MIRROR_BODY_MAX, MIRROR_MAX_ACTIVE in flight, the request
	 * ended before its body was whole), in flight. */
	stat_t mirror_sent, mirror_answered, mirror_failed, mirror_skip_body, mirror_skip_busy;
	stat_t mirror_skip_unfinished;
	stat_t mirror_active;
};

struct wlistener {
	struct loop_io io;
	struct worker *w;
	int fd;
	struct sock_addr addr;
	uint16_t port;
	bool seen;                      /* mark for listener sync */
	bool sidecar_outbound;          /* the sidecar's capture listener */
	bool paused;                    /* out of descriptors: interest 0 until the next tick */
	struct wlistener *next;
};

struct worker {
	struct proxy *proxy;
	int id;
	pthread_t thread;
	struct loop *loop;
	struct snap *snap;              /* the current snapshot (own reference) */
	struct wlistener *listeners;
	struct pool *pool;
	/* What upstream connections must still match (pool.h): rebuilt when the snapshot
	 * or an endpoint set changes (proxy.eps_gen moved past eps_gen_seen). */
	struct pool_live *live;
	uint64_t eps_gen_seen;
	void *uconns;                   /* the request path's upstream connections with a socket */
	struct uh2_table *uh2;          /* HTTP/2 upstream connections (up_h2.h) */
	struct tls_sess_cache *sess;
	uint32_t *rr;                   /* round-robin cursor per cluster index */
	size_t nrr;
	uint64_t rnd;                   /* xorshift state */
	struct sbuf alog;               /* access log lines waiting for the flush */
	struct loop_timer tick;         /* quiescent point, access log flush, drain check */
	_Atomic uint64_t qs;
	_Atomic uint64_t adopted;       /* version of the snapshot it serves */
	/* The newest snapshot published to it and not taken yet (a reference), or NULL: one
	 * slot, not a message per reload, so that a worker that takes none for a while (stuck)
	 * holds the newest only, not every snapshot published meanwhile. */
	struct snap *_Atomic next_snap;
	/* Main thread only: the version this worker failed to take within
	 * proxy.worker_stuck_ms (0: not stuck); see proxy_wait_reload. */
	uint64_t stuck_at;
	size_t nconns;                  /* downstream connections open */
	bool draining;
	_Atomic bool done;              /* drained and stopped */
	struct wstats st;
	struct istats *istats;          /* Istio's and per-cluster series (istats.h) */
	/* Intrusive lists of downstream connections (for drain and idle close). */
	void *dconns;
	void *tunnels;                  /* tunnel.c's relays (sidecar) */
	void *mirrors;                  /* fwd_mirror.c's shadows in flight, and how many */
	unsigned nmirrors;
	void *l4tls;                    /* l4tls.c's TLS layers under tunnels */
	void *lingering;                /* linger.c's closing sockets, and how many */
	unsigned nlinger;
	bool loop_done;                 /* its loop has returned (sockets closed by proxy_stop) */
	void *st_free;                  /* the request path's free streams, and how many */
	unsigned nst_free;
	void *resp_free;                /* its free response heads (fwd_core.c st_resp) */
	unsigned nresp_free;
	void *vc_free;                  /* its free virtual (HTTP/2 stream) connections, */
	unsigned nvc_free;
	void *vu_free;                  /* downstream and upstream */
	unsigned nvu_free;
	struct dns *dns;                /* sidecar: names of passthrough destinations */
	struct cb_table *cb;            /* per-cluster circuit breakers, outlier state */
	/* Out of descriptors (wl_on_accept): a descriptor kept in reserve to accept and close
	 * a pending connection, and when the condition was last logged. */
	int spare_fd;
	uint64_t fd_warn_ms;
	uint64_t fd_warn_dropped;       /* connections dropped since the last warning */
	bool listen_retry;              /* a listener could not be opened for want of fds */
	uint64_t listen_retry_ms;
};

#define PROXY_MAX_SELF 4

/* Process-wide state shared (read-only after start) by the workers. */
struct proxy {
	struct worker *workers;
	int nworkers;
	enum snap_role role;
	int alog_fd;                    /* -1: off */
	enum alog_format alog_format;
	bool alog_on;
	const char *outbound_addr;      /* sidecar: capture listener, as given */
	struct sock_addr outbound;      /* sidecar: capture listener (--outbound) */
	bool outbound_on;
	enum { PROXY_ALLOW_ANY, PROXY_REGISTRY_ONLY } outbound_policy;
	const char *hosts_file;         /* sidecar workers' resolvers (--hosts-file) */
	const char *dns_servers;        /* and --dns-servers */
	int64_t drain_timeout_ms;
	int64_t header_timeout_ms;      /* downstream request head must arrive within this */
	int64_t idle_timeout_ms;        /* downstream keep-alive idle */
	_Atomic uint64_t config_reloads, config_rejects;
	/* --worker-stuck-timeout: how long a reload waits for a worker to take it before that
	 * worker is reported stuck (proxy_wait_reload); and how many times one was. */
	int64_t worker_stuck_ms;
	_Atomic uint64_t worker_stuck_total;
	/* Bumped by the main thread after it swaps a cluster's endpoint set: workers then
	 * drain connections to endpoints that are gone (worker_tick). */
	_Atomic uint64_t eps_gen;
	/* --max-connections: downstream connections open across all workers (accepted
	 * sockets, HTTP/1.1, HTTP/2 and tunnels; not HTTP/2 streams); 0 = no limit. dcx_open
	 * is the one counter every worker writes, once per connection opened and closed. */
	uint64_t max_dcx;
	_Atomic uint64_t dcx_open;
	/* The process's own sockets (the capture listener, the admin endpoint), which no
	 * upstream connection may reach (proxy/self.c), and the host's addresses. */
	struct sock_addr self[PROXY_MAX_SELF];
	size_t nself;
	struct sock_addr *local_ips;
	size_t nlocal_ips;
	struct istats_self istats_self;       /* the labels that describe this proxy (istats.h) */
};

/* Makes n workers, each with its loop and listening sockets, for snapshot s (a reference
 * is taken per worker); their threads start with proxy_run, so that nothing is accepted
 * before (the privilege drop). Returns 0, or -1 with errno. */
int proxy_start(struct proxy *p, int n, struct snap *s);
/* Starts the workers' threads: they accept from now on. Returns 0, or -1. */
int proxy_run(struct proxy *p);
/* Adds one of the process's own sockets (before proxy_start): upstream connections to an
 * address that reaches it are refused (proxy/self.c). */
void proxy_self_add(struct proxy *p, const struct sock_addr *a);
/* True if a connection to a would reach one of them. */
bool proxy_is_self(const struct proxy *p, const struct sock_addr *a);
/* Hands a new snapshot to every worker (each takes its own reference). */
void proxy_publish(struct proxy *p, struct snap *s);
/* Main thread, after proxy_publish(version): waits until every worker serves version,
 * logging every second that it waits, for at most p->worker_stuck_ms. A worker still
 * behind then (a bug, a debugger) is stuck: an error line with its id says the version
 * is NOT applied by it, worker_stuck_total counts it, and later reloads do not wait for
 * it (so they go on for the healthy workers, each reported not applied by it) until it
 * serves a published version again. A worker that has stopped (drained) is not waited
 * for either. Returns the number of running workers that do not serve version. */
int proxy_wait_reload(struct proxy *p, uint64_t version);
/* Main thread: the workers stuck now (found stuck by proxy_wait_reload and still behind
 * the version they missed), their ids in ids (", "-separated; may be NULL). A worker
 * that has caught up is logged as such and no longer counted. */
int proxy_workers_stuck(struct proxy *p, struct sbuf *ids);
/* Starts the drain and returns at once: each worker closes its listening sockets, closes
 * idle connections and lets the others finish their request, then stops its loop. The
 * caller polls proxy_drained, and calls proxy_stop when it is true or its deadline
 * (drain_timeout_ms) has passed. After the drain begins, nothing may be published. */
void proxy_drain_begin(struct proxy *p);
/* True once every worker has drained (no connection left) and stopped its loop. */
bool proxy_drained(const struct proxy *p);
/* Stops the workers' loops and joins their threads; connections still open are
 * abandoned with the process. */
void proxy_stop(struct proxy *p);
/* Frees the workers after proxy_stop (their connections must be closed). */
void proxy_free(struct proxy *p);
/* Sums the workers' counters into out (plain numbers). */
struct wstats_sum {
	uint64_t v[sizeof(struct wstats) / sizeof(stat_t)];
};
void proxy_stats(const struct proxy *p, struct wstats_sum *out);
/* Index of a TLS category in wstats.ucx_tls_fail, and its name. */
int stats_tls_cat_index(const char *cat);
const char *stats_tls_cat_name(int i);
/* The lowest quiescent counter among workers: memory retired before every worker moved
 * past it may be freed. */
uint64_t proxy_quiescent(const struct proxy *p);

/* Internal to the proxy module. */
void worker_alog(struct worker *w, const struct alog_entry *e);
/* Writes the worker's batched access log lines now (worker_util.c). */
void worker_alog_flush(struct worker *w);
/* A downstream socket accepted by wl_on_accept was closed (linger.c, tunnel.c). Inline:
 * the modules that close sockets need not call back into the worker (no call cycle). */
static inline void worker_dcx_closed(struct worker *w)
{
	atomic_fetch_sub_explicit(&w->proxy->dcx_open, 1, memory_order_relaxed);
}
uint32_t worker_rand(struct worker *w);

#endif
