#include "proxy/worker.h"
#include "proxy/fwd.h"
#include "http/h2_mem.h"
#include "proxy/up_h2.h"
#include "proxy/cbreak.h"
#include "proxy/pool.h"
#include "proxy/overload.h"
#include "proxy/tunnel.h"
#include "proxy/l4tls.h"
#include "proxy/linger.h"
#include "core/log.h"
#include "core/util.h"
#include "net/dns.h"
#include "net/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKER_TICK_MS 50

/* Warnings about refused connections, at most one per worker per this many ms: a flood
 * of them would cost more than the connections. */
#define FD_WARN_INTERVAL_MS 10000

static void wl_warn_refused(struct worker *w, struct wlistener *l, const char *why)
{
	uint64_t now = loop_now_ms(w->loop);

	w->fd_warn_dropped++;
	if (w->fd_warn_ms && now - w->fd_warn_ms < FD_WARN_INTERVAL_MS)
		return;
	log_warn("worker", "port %u: %s; new connections are closed at once (%llu since the "
	         "last warning)", l->port, why, (unsigned long long)w->fd_warn_dropped);
	w->fd_warn_ms = now;
	w->fd_warn_dropped = 0;
}

/* Counts one more downstream connection against --max-connections. Returns false (and
 * counts nothing) when the limit is reached. */
static bool worker_dcx_take(struct worker *w)
{
	struct proxy *p = w->proxy;
	uint64_t n = atomic_fetch_add_explicit(&p->dcx_open, 1, memory_order_relaxed);

	if (p->max_dcx && n >= p->max_dcx) {
		atomic_fetch_sub_explicit(&p->dcx_open, 1, memory_order_relaxed);
		return false;
	}
	return true;
}


/* accept() failed for want of a descriptor (EMFILE, ENFILE) or of kernel memory. The
 * listener stays readable, and epoll is level-triggered: returning without accepting
 * would wake the loop again at once, forever. So the pending connection is accepted on
 * the spare descriptor and closed (the client learns at once instead of hanging in the
 * backlog); when even that is impossible the listener's interest is removed until the
 * next tick (worker_tick), which also reopens the spare. Returns true when the caller
 * may go on accepting. */
static bool wl_out_of_fds(struct worker *w, struct wlistener *l, int err)
{
	int rc = (err == EMFILE || err == ENFILE) ? sock_accept_drop(l->fd, &w->spare_fd) : -1;

	if (rc == 0) {
		STAT_INC(w->st.dcx_no_fd);
		wl_warn_refused(w, l, strerror(err));
		return true;
	}
	if (rc == 1)
		return false;         /* nothing pending any more: not readable */
	loop_io_mod(w->loop, &l->io, 0);
	l->paused = true;
	wl_warn_refused(w, l, strerror(err));
	return false;
}

static void wl_on_accept(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct wlistener *l = (struct wlistener *)io;
	struct worker *w = l->w;

	(void)loop;
	(void)ev;
	for (int i = 0; i < 64; i++) {
		struct sock_addr peer;
		int fd = sock_accept(l->fd, &peer);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == ECONNABORTED || errno == EPROTO || errno == EINTR)
				continue;
			if (sock_err_no_resources(errno)) {
				/* A connection quiet for long gives its descriptor to the next. */
				if ((errno == EMFILE || errno == ENFILE) && fwd_evict(w, NULL))
					continue;
				if (wl_out_of_fds(w, l, errno))
					continue;
				return;
			}
			/* Anything else (EPERM from a firewall hook...) is about one connection. */
			log_warn("worker", "accept on port %u: %s", l->port, strerror(errno));
			continue;
		}
		if (ovl_reject_connection(fd))          /* overload.h: over the heap budget */
			continue;
		if (!worker_dcx_take(w) && !(fwd_evict(w, &peer) && worker_dcx_take(w))) {
			/* Past --max-connections: accepted and closed, as Envoy's overload manager
			 * does. Leaving it in the backlog instead would not refuse it: the client
			 * would wait, and once the backlog filled, its SYNs would be dropped and
			 * retried for minutes. One accept and one close per refused connection is
			 * bounded work, and the listener is no longer readable afterwards. */
			close(fd);
			STAT_INC(w->st.dcx_overflow);
			wl_warn_refused(w, l, "--max-connections reached");
			continue;
		}
		fwd_accept(w, l, fd, &peer);
	}
}

static void worker_close_listener(struct worker *w, struct wlistener *l)
{
	loop_io_del(w->loop, &l->io);
	close(l->fd);
	free(l);
}

/* Makes the worker's listening sockets match the snapshot's listeners. */
static void worker_sync_listeners(struct worker *w)
{
	struct wlistener **pp, *l;
	bool retry = false;

	for (l = w->listeners; l; l = l->next)
		l->seen = l->sidecar_outbound;
	for (size_t i = 0; i < w->snap->nlisteners; i++) {
		const struct snap_listener *sl = &w->snap->listeners[i];
		int fd;

		for (l = w->listeners; l; l = l->next)
			if (!l->sidecar_outbound && sock_addr_equal(&l->addr, &sl->addr))
				break;
		if (l) {
			l->seen = true;
			continue;
		}
		fd = sock_listen(&sl->addr, 0, SOCK_REUSEPORT);
		if (fd < 0) {
			/* Out of descriptors is temporary: worker_tick tries again. Logged once
			 * per streak of failures. */
			if (!w->listen_retry)
				log_error("worker", "listener %s: %s", sl->name, strerror(errno));
			if (sock_err_no_resources(errno))
				retry = true;
			continue;
		}
		l = xcalloc(1, sizeof(*l));
		l->w = w;
		l->fd = fd;
		l->addr = sl->addr;
		l->port = sl->port;
		l->seen = true;
		loop_io_init(&l->io, fd, wl_on_accept);
		loop_io_add(w->loop, &l->io, w->draining ? 0 : LOOP_READ);
		l->next = w->listeners;
		w->listeners = l;
	}
	for (pp = &w->listeners; (l = *pp);) {
		if (!l->seen) {
			*pp = l->next;
			worker_close_listener(w, l);
		} else {
			pp = &l->next;
		}
	}
	w->listen_retry = retry;
}

/* The sidecar's capture listener (--outbound): one SO_REUSEPORT socket per worker, like
 * the Gateway listeners, but not tied to the snapshot (worker_sync_listeners keeps it).
 * Returns 0, or -1 with errno. */
static int worker_add_outbound(struct worker *w)
{
	struct wlistener *l;
	int fd = sock_listen(&w->proxy->outbound, 0, SOCK_REUSEPORT);

	if (fd < 0)
		return -1;
	l = xcalloc(1, sizeof(*l));
	l->w = w;
	l->fd = fd;
	l->addr = w->proxy->outbound;
	l->port = sock_addr_port(&l->addr);
	l->seen = true;
	l->sidecar_outbound = true;
	loop_io_init(&l->io, fd, wl_on_accept);
	loop_io_add(w->loop, &l->io, LOOP_READ);
	l->next = w->listeners;
	w->listeners = l;
	return 0;
}

/* Upstream connections follow what made them (pool.h): the live set is rebuilt from the
 * current snapshot and endpoint sets, and what no longer matches drains. The generation
 * is read first: an endpoint swap after it is seen at the next tick. */
static void worker_pool_refresh(struct worker *w)
{
	w->eps_gen_seen = atomic_load_explicit(&w->proxy->eps_gen, memory_order_acquire);
	pool_live_build(w->live, w->snap);
	fwd_pool_sweep(w);
}

static void worker_adopt(struct worker *w, struct snap *s)
{
	struct snap *old = w->snap;

	w->snap = s;
	if (s->nclusters > w->nrr) {
		w->rr = xrealloc(w->rr, s->nclusters * sizeof(*w->rr));
		memset(w->rr + w->nrr, 0, (s->nclusters - w->nrr) * sizeof(*w->rr));
		w->nrr = s->nclusters;
	}
	worker_sync_listeners(w);
	worker_pool_refresh(w);
	atomic_store_explicit(&w->adopted, s->version, memory_order_release);
	if (old)
		snap_unref(old);
}

static void worker_on_publish(struct loop *loop, void *arg)
{
	struct worker *w = arg;
	struct snap *s = atomic_exchange_explicit(&w->next_snap, NULL, memory_order_acq_rel);

	(void)loop;
	if (s)
		worker_adopt(w, s);
}

static void worker_on_drain(struct loop *loop, void *arg)
{
	struct worker *w = arg;

	(void)loop;
	w->draining = true;
	/* Stop accepting: close the listening sockets so the kernel sends new connections
	 * elsewhere (another process may already be listening with SO_REUSEPORT). */
	while (w->listeners) {
		struct wlistener *l = w->listeners;

		w->listeners = l->next;
		worker_close_listener(w, l);
	}
	fwd_drain(w);
	fwd_pool_close_all(w);
}

static void worker_tick(struct loop *loop, struct loop_timer *t)
{
	struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, tick));

	atomic_fetch_add_explicit(&w->qs, 1, memory_order_release);
	if (w->alog.len)
		worker_alog_flush(w);
	/* Accepts paused for want of descriptors resume here, at most once per tick: a
	 * listener that is still short of them pauses again after one accept(). */
	if (w->spare_fd < 0)
		w->spare_fd = sock_spare_open();
	if (atomic_load_explicit(&w->proxy->eps_gen, memory_order_acquire) != w->eps_gen_seen)
		worker_pool_refresh(w);
	if (w->sess)
		tls_sess_cache_sweep(w->sess);
	/* The upstream connection budget is used up: idle pooled connections give way. */
	if (ovl_up_full(w->proxy))
		fwd_pool_shed(w, 16);
	if (w->listen_retry && !w->draining && loop_now_ms(loop) - w->listen_retry_ms >= 1000) {
		w->listen_retry_ms = loop_now_ms(loop);
		worker_sync_listeners(w);
	}
	if (!w->draining)
		for (struct wlistener *l = w->listeners; l; l = l->next)
			if (l->paused) {
				l->paused = false;
				loop_io_mod(loop, &l->io, LOOP_READ);
			}
	if (w->draining && w->nconns == 0) {
		atomic_store(&w->done, true);
		loop_stop(loop);
		return;
	}
	loop_timer_arm(loop, &w->tick, WORKER_TICK_MS);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	loop_timer_init(&w->tick, worker_tick);
	loop_timer_arm(w->loop, &w->tick, WORKER_TICK_MS);
	fwd_buf_cache_start();
	h2_mem_cache_start();
	loop_run(w->loop);
	w->loop_done = true;     /* what closes after this closes at once (linger.c) */
	h2_mem_cache_stop();
	fwd_buf_cache_stop();
	if (w->alog.len)
		worker_alog_flush(w);
	return NULL;
}

int proxy_start(struct proxy *p, int n, struct snap *s)
{
	fwd_init();
	p->workers = xcalloc((size_t)n, sizeof(*p->workers));
	p->nworkers = n;
	for (int i = 0; i < n; i++) {
		struct worker *w = &p->workers[i];

		w->proxy = p;
		w->id = i;
		w->loop = loop_new();
		if (!w->loop)
			return -1;
		w->pool = pool_new();
		w->live = pool_live_new();
		w->uh2 = uh2_table_new(w);
		w->spare_fd = sock_spare_open();
		w->sess = tls_sess_cache_new(1024);
		w->cb = cb_table_new();
		w->istats = istats_new();
		cb_table_publish(w->cb, istats_hosts(w->istats));   /* outlier state for /clusters */
		w->rnd = ((uint64_t)time(NULL) << 20) ^ ((uint64_t)getpid() << 8) ^ (uint64_t)(i + 1) ^
		         0x9e3779b97f4a7c15ULL;
		worker_adopt(w, snap_ref(s));
		if (p->outbound_on && worker_add_outbound(w) < 0)
			return -1;
		if (p->role == SNAP_ROLE_SIDECAR) {
			/* Passthrough destinations are named by the application (a proxy request's
			 * authority): each worker resolves them on its own loop. */
			struct dns_opts o;
			struct sbuf err = SBUF_INIT;

			memset(&o, 0, sizeof(o));
			o.hosts_file = p->hosts_file;
			o.servers = p->dns_servers;
			w->dns = dns_new(w->loop, &o, &err);
			if (!w->dns) {
				log_error("worker", "resolver: %s", sbuf_str(&err));
				sbuf_free(&err);
				errno = EINVAL;
				return -1;
			}
			sbuf_free(&err);
		}
	}
	return 0;
}

int proxy_run(struct proxy *p)
{
	for (int i = 0; i < p->nworkers; i++) {
		if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0)
			return -1;
	}
	return 0;
}

void proxy_publish(struct proxy *p, struct snap *s)
{
	for (int i = 0; i < p->nworkers; i++) {
		struct worker *w = &p->workers[i];
		struct snap *old = atomic_exchange_explicit(&w->next_snap, snap_ref(s),
		                                            memory_order_acq_rel);

		/* A slot that was empty: the worker is told. One that was not: the message
		 * already on its way takes the newest, and the one replaced is let go (a
		 * worker behind by more than one reload: stuck, or slow for a moment). */
		if (old)
			snap_unref(old);
		else
			loop_post(w->loop, worker_on_publish, w);
	}
}

static int64_t worker_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int proxy_workers_stuck(struct proxy *p, struct sbuf *ids)
{
	int n = 0;

	for (int i = 0; i < p->nworkers; i++) {
		struct worker *w = &p->workers[i];
		uint64_t v = atomic_load_explicit(&w->adopted, memory_order_acquire);

		if (!w->stuck_at)
			continue;
		if (v >= w->stuck_at) {
			log_info("config", "worker %d runs again: it serves configuration version %llu "
			         "(it was stuck before version %llu)", w->id, (unsigned long long)v,
			         (unsigned long long)w->stuck_at);
			w->stuck_at = 0;
			continue;
		}
		if (ids)
			sbuf_addf(ids, "%s%d", n ? ", " : "", w->id);
		n++;
	}
	return n;
}

/* True while worker w is to be waited for: running, behind version, and not known stuck
 * (or known stuck but running again: it has taken the version it was stuck before, so it
 * will take this one within milliseconds too). */
static bool worker_pending(struct worker *w, uint64_t version)
{
	uint64_t v = atomic_load_explicit(&w->adopted, memory_order_acquire);

	return !atomic_load(&w->done) && (!w->stuck_at || v >= w->stuck_at) && v < version;
}

int proxy_wait_reload(struct proxy *p, uint64_t version)
{
	/* A worker takes a posted snapshot between two batches of events: within
	 * milliseconds unless one batch runs for seconds. The main thread polls (0.2 ms
	 * sleeps), and says every second that it still waits. */
	struct timespec tick = { 0, 200 * 1000 };
	int64_t start = worker_mono_ms(), said = 0, now;
	int pending, missed = 0;

	proxy_workers_stuck(p, NULL);       /* the ones that caught up since are waited for */
	for (;;) {
		pending = 0;
		for (int i = 0; i < p->nworkers; i++)
			pending += worker_pending(&p->workers[i], version);
		if (!pending)
			break;
		now = worker_mono_ms();
		if (now - start >= p->worker_stuck_ms)
			break;
		if (now - start >= said + 1000) {
			said = (now - start) / 1000 * 1000;
			log_warn("config", "version %llu: not every worker has taken it after %lld ms; "
			         "not applied until they have (at most --worker-stuck-timeout %lld ms)",
			         (unsigned long long)version, (long long)said,
			         (long long)p->worker_stuck_ms);
		}
		nanosleep(&tick, NULL);
	}
	/* A stuck worker that ran again during the wait is no longer stuck (and logged so):
	 * one that is behind this version now is stuck anew, not "stuck before" it. */
	proxy_workers_stuck(p, NULL);
	for (int i = 0; i < p->nworkers; i++) {
		struct worker *w = &p->workers[i];

		if (atomic_load(&w->done) ||
		    atomic_load_explicit(&w->adopted, memory_order_acquire) >= version)
			continue;
		missed++;
		if (w->stuck_at) {
			log_error("config", "configuration version %llu NOT applied by worker %d: it "
			          "is stuck (it has not taken version %llu either); the other workers "
			          "serve it", (unsigned long long)version, w->id,
			          (unsigned long long)w->stuck_at);
			continue;
		}
		w->stuck_at = version;
		atomic_fetch_add(&p->worker_stuck_total, 1);
		log_error("config", "configuration version %llu NOT applied by worker %d: it has "
		          "not taken it in %lld ms (--worker-stuck-timeout); it is stuck, its "
		          "connections are served with version %llu or not at all; /ready and "
		          "/healthz/live answer 503 until it runs again, later reloads do not "
		          "wait for it", (unsigned long long)version, w->id,
		          (long long)p->worker_stuck_ms,
		          (unsigned long long)atomic_load(&w->adopted));
	}
	return missed;
}

void proxy_drain_begin(struct proxy *p)
{
	for (int i = 0; i < p->nworkers; i++)
		loop_post(p->workers[i].loop, worker_on_drain, &p->workers[i]);
}

bool proxy_drained(const struct proxy *p)
{
	for (int i = 0; i < p->nworkers; i++)
		if (!atomic_load(&p->workers[i].done))
			return false;
	return true;
}

void proxy_stop(struct proxy *p)
{
	for (int i = 0; i < p->nworkers; i++)
		loop_stop(p->workers[i].loop);
	for (int i = 0; i < p->nworkers; i++) {
		struct worker *w = &p->workers[i];

		pthread_join(w->thread, NULL);
		/* Connections still open after the deadline are abandoned: closed here, with
		 * their requests, so that nothing they hold outlives the workers. */
		fwd_close_all(w);
		fwd_pool_close_all(w);
	}
}

void proxy_stats(const struct proxy *p, struct wstats_sum *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < p->nworkers; i++) {
		const stat_t *v = (const stat_t *)&p->workers[i].st;

		for (size_t k = 0; k < sizeof(out->v) / sizeof(out->v[0]); k++)
			out->v[k] += atomic_load_explicit(&v[k], memory_order_relaxed);
	}
}

uint64_t proxy_quiescent(const struct proxy *p)
{
	uint64_t min = UINT64_MAX;

	for (int i = 0; i < p->nworkers; i++) {
		uint64_t q = atomic_load_explicit(&p->workers[i].qs, memory_order_acquire);

		if (q < min)
			min = q;
	}
	return min;
}

void proxy_free(struct proxy *p)
{
	for (int i = 0; i < p->nworkers; i++) {
		struct worker *w = &p->workers[i];

		while (w->listeners) {
			struct wlistener *l = w->listeners;

			w->listeners = l->next;
			worker_close_listener(w, l);
		}
		fwd_pool_close_all(w);
		uh2_table_free(w->uh2);
		fwd_streams_free(w);
		tun_close_all(w);
		l4tls_close_all(w);
		linger_close_all(w);
		if (w->snap)
			snap_unref(w->snap);
		{
			struct snap *n = atomic_exchange(&w->next_snap, NULL);

			if (n)
				snap_unref(n);  /* published, never taken (its message dropped below) */
		}
		pool_free(w->pool);
		pool_live_free(w->live);
		dns_free(w->dns);
		cb_table_free(w->cb);
		istats_free(w->istats);
		tls_sess_cache_free(w->sess);
		loop_free(w->loop);
		free(w->rr);
		sbuf_free(&w->alog);
		if (w->spare_fd >= 0)
			close(w->spare_fd);
	}
	free(p->workers);
	free(p->local_ips);
	p->local_ips = NULL;
	p->workers = NULL;
	p->nworkers = 0;
}
