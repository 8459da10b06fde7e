/* lifecycle: signals, the drain, readiness and log reopening (see lifecycle.h).
 *
 * The drain runs on the main loop rather than in a blocking wait after it, so that the
 * admin endpoint (on the same loop) keeps answering /ready with 503 for as long as the
 * process lives: a load balancer that health-checks it sees "not ready" during the whole
 * drain instead of a refused connection. */
#include "cmd/egressgw/lifecycle.h"

#include "core/log.h"
#include "proxy/worker.h"
#include "net/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* How often the drain checks whether the workers are done. */
#define LC_DRAIN_POLL_MS 20
/* How often certificates are checked for expiry (they are also checked at each reload). */
#define LC_CERT_CHECK_MS 10000

/* Not SIGQUIT: its meaning stays "quit with a core dump" (for debugging with
 * --allow-core-dumps; without it the process is not dumpable and leaves none). */
static const int lc_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 };

static uint64_t lc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void lc_sigset(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof(lc_signals) / sizeof(lc_signals[0]); i++)
		sigaddset(set, lc_signals[i]);
}

void lc_block_signals(void)
{
	sigset_t set;

	lc_sigset(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

bool lc_draining(const struct lc *lc)
{
	return lc->state >= LC_DRAINING;
}

/* The listeners close and the workers drain; the timer polls them until they are done
 * or --drain-timeout has passed. */
static void lc_drain_now(struct lc *lc)
{
	int64_t t = lc->proxy->drain_timeout_ms > 0 ? lc->proxy->drain_timeout_ms : 5000;

	lc->state = LC_DRAINING;
	lc->drain_deadline_ms = lc_now_ms() + (uint64_t)t;
	log_info("main", "draining: listeners closed; requests in flight have %lld ms "
	         "(--drain-timeout)", (long long)t);
	proxy_drain_begin(lc->proxy);
	loop_timer_arm(lc->loop, &lc->timer, LC_DRAIN_POLL_MS);
}

static void lc_on_timer(struct loop *loop, struct loop_timer *t)
{
	struct lc *lc = (struct lc *)((char *)t - offsetof(struct lc, timer));

	if (lc->state == LC_ANNOUNCING) {
		lc_drain_now(lc);
		return;
	}
	if (lc->state != LC_DRAINING)
		return;
	if (!proxy_drained(lc->proxy) && lc_now_ms() < lc->drain_deadline_ms) {
		loop_timer_arm(loop, t, LC_DRAIN_POLL_MS);
		return;
	}
	if (!proxy_drained(lc->proxy))
		log_warn("main", "drain: --drain-timeout passed with requests still in flight; "
		         "they are abandoned");
	else
		log_info("main", "drain: every connection is closed");
	lc->state = LC_DRAINED;
	if (lc->exit_after_drain)
		loop_stop(loop);
}

/* SIGTERM, SIGINT. */
static void lc_on_stop_signal(struct lc *lc, unsigned signo)
{
	lc->exit_after_drain = true;
	switch (lc->state) {
	case LC_LIVE:
		lc->state = LC_ANNOUNCING;
		log_info("main", "signal %u: draining: /ready answers 503; listeners keep accepting "
		         "for %lld ms (--drain-announce)", signo, (long long)lc->announce_ms);
		loop_timer_arm(lc->loop, &lc->timer, lc->announce_ms > 0 ? (uint64_t)lc->announce_ms : 0);
		break;
	case LC_ANNOUNCING:
		log_info("main", "signal %u again: announce period cut short", signo);
		loop_timer_cancel(lc->loop, &lc->timer);
		lc_drain_now(lc);
		break;
	case LC_DRAINING:
		log_info("main", "signal %u: already draining", signo);
		break;
	case LC_DRAINED:
		/* Drained by /drain_listeners: nothing is left to wait for. */
		log_info("main", "signal %u: drained; exiting", signo);
		loop_stop(lc->loop);
		break;
	}
}

static void lc_on_signal(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct lc *lc = (struct lc *)((char *)io - offsetof(struct lc, sig_io));
	struct signalfd_siginfo si;

	(void)loop;
	(void)ev;
	while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			lc_on_stop_signal(lc, si.ssi_signo);
			break;
		case SIGHUP:
			log_info("main", "signal %u (SIGHUP): reloading the configuration, reopening "
			         "the access log", si.ssi_signo);
			lc_reopen_logs(lc);
			if (lc_draining(lc))
				log_info("main", "draining: the configuration is not reloaded");
			else
				lc->reload(lc->arg);
			break;
		case SIGUSR1:
			log_info("main", "signal %u (SIGUSR1): reopening the access log", si.ssi_signo);
			lc_reopen_logs(lc);
			break;
		default:
			log_warn("main", "signal %u ignored (SIGTERM drains and exits, SIGHUP reloads, "
			         "SIGUSR1 reopens the access log)", si.ssi_signo);
			break;
		}
	}
}

static void lc_on_cert_timer(struct loop *loop, struct loop_timer *t)
{
	struct lc *lc = (struct lc *)((char *)t - offsetof(struct lc, cert_timer));

	pthread_mutex_lock(lc->secrets_mu);
	secret_cache_check_expiry(lc->secrets, time(NULL));
	secret_cache_log_events(lc->secrets);
	pthread_mutex_unlock(lc->secrets_mu);
	loop_timer_arm(loop, t, LC_CERT_CHECK_MS);
}

int lc_start(struct lc *lc, struct loop *loop, struct proxy *proxy)
{
	sigset_t set;

	lc->loop = loop;
	lc->proxy = proxy;
	lc->state = LC_LIVE;
	loop_timer_init(&lc->timer, lc_on_timer);
	loop_timer_init(&lc->cert_timer, lc_on_cert_timer);
	if (lc->secrets)
		loop_timer_arm(loop, &lc->cert_timer, LC_CERT_CHECK_MS);
	lc_sigset(&set);
	lc->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (lc->sig_fd < 0)
		return -1;
	loop_io_init(&lc->sig_io, lc->sig_fd, lc_on_signal);
	loop_io_add(loop, &lc->sig_io, LOOP_READ);
	return 0;
}

static bool lc_path_is(const char *path, const char *want);

/* A worker that did not take a reload within --worker-stuck-timeout serves nothing (or
 * an old configuration) for good: a liveness problem, as Envoy's watchdog sees one, so
 * both probes fail until it runs again (proxy_wait_reload). */
static bool lc_stuck(struct lc *lc, struct sbuf *body)
{
	struct sbuf ids = SBUF_INIT;
	bool stuck = lc->proxy && proxy_workers_stuck(lc->proxy, &ids) > 0;

	if (stuck)
		sbuf_addf(body, "WORKER_STUCK: worker %s\n", sbuf_str(&ids));
	sbuf_free(&ids);
	return stuck;
}

static int lc_status_handle(void *arg, const char *method, const char *path,
                            struct sbuf *body, const char **ctype)
{
	struct lc *lc = arg;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		sbuf_adds(body, "method not allowed: the status port is read-only\n");
		return 405;
	}
	if (lc_path_is(path, "/healthz/ready") || lc_path_is(path, "/ready"))
		return lc_admin(lc, method, "/ready", body);
	if (lc_path_is(path, "/healthz/live")) {
		if (lc_stuck(lc, body))
			return 503;
		sbuf_adds(body, "LIVE\n");
		return 200;
	}
	if (lc_path_is(path, "/stats/prometheus"))
		return lc->admin(lc->admin_arg, method, path, body, ctype);
	sbuf_adds(body, "not found; the status port serves /healthz/ready, /healthz/live, "
	          "/stats/prometheus\n");
	return 404;
}

int lc_status_start(struct lc *lc, const struct sock_addr *addr)
{
	lc->status = admin_start(lc->loop, addr, lc_status_handle, lc);
	return lc->status ? 0 : -1;
}

void lc_fini(struct lc *lc)
{
	admin_stop(lc->status);
	lc->status = NULL;
	loop_timer_cancel(lc->loop, &lc->timer);
	loop_timer_cancel(lc->loop, &lc->cert_timer);
	if (lc->sig_fd >= 0) {
		loop_io_del(lc->loop, &lc->sig_io);
		close(lc->sig_fd);
		lc->sig_fd = -1;
	}
}

int lc_reopen_logs(struct lc *lc)
{
	int fd;

	if (!lc->alog_path || strcmp(lc->alog_path, "-") == 0 || lc->proxy->alog_fd < 0)
		return 0;
	fd = open(lc->alog_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_error("main", "reopening the access log %s: %s; still writing to the file it "
		          "was", lc->alog_path, strerror(errno));
		return -1;
	}
	/* The workers keep writing to the same descriptor number: dup3 makes it name the new
	 * file in one step. */
	if (dup3(fd, lc->proxy->alog_fd, O_CLOEXEC) < 0) {
		log_error("main", "reopening the access log %s: dup3: %s", lc->alog_path,
		          strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	log_info("main", "access log %s reopened", lc->alog_path);
	return 0;
}

static bool lc_path_is(const char *path, const char *want)
{
	size_t n = strcspn(path, "?");

	return n == strlen(want) && strncmp(path, want, n) == 0;
}

/* A mutation asked for with GET (a browser, a crawler, a curl without -X POST) does
 * nothing: 405, as Envoy answers. */
static int lc_post_only(const char *method, struct sbuf *body)
{
	if (strcmp(method, "POST") == 0)
		return 0;
	sbuf_adds(body, "method not allowed: this endpoint changes state; use POST\n");
	return 405;
}

int lc_admin(struct lc *lc, const char *method, const char *path, struct sbuf *body)
{
	int st;

	if (lc_path_is(path, "/ready")) {
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
			sbuf_adds(body, "method not allowed\n");
			return 405;
		}
		if (lc->state != LC_LIVE) {
			sbuf_adds(body, "DRAINING\n");
			return 503;
		}
		if (lc->healthcheck_failed) {
			sbuf_adds(body, "HEALTH_CHECK_FAILED\n");
			return 503;
		}
		if (lc_stuck(lc, body))
			return 503;
		sbuf_adds(body, "LIVE\n");
		return 200;
	}
	if (lc_path_is(path, "/healthcheck/fail")) {
		if ((st = lc_post_only(method, body)))
			return st;
		if (!lc->healthcheck_failed)
			log_info("admin", "POST /healthcheck/fail: /ready answers 503 until POST "
			         "/healthcheck/ok");
		lc->healthcheck_failed = true;
		sbuf_adds(body, "OK\n");
		return 200;
	}
	if (lc_path_is(path, "/healthcheck/ok")) {
		if ((st = lc_post_only(method, body)))
			return st;
		if (lc->healthcheck_failed)
			log_info("admin", "POST /healthcheck/ok: /ready answers 200 again");
		lc->healthcheck_failed = false;
		sbuf_adds(body, "OK\n");
		return 200;
	}
	if (lc_path_is(path, "/drain_listeners")) {
		if ((st = lc_post_only(method, body)))
			return st;
		if (lc->state == LC_LIVE || lc->state == LC_ANNOUNCING) {
			log_info("admin", "POST /drain_listeners");
			loop_timer_cancel(lc->loop, &lc->timer);
			lc_drain_now(lc);
		}
		sbuf_adds(body, "OK\n");
		return 200;
	}
	if (lc_path_is(path, "/reopen_logs")) {
		if ((st = lc_post_only(method, body)))
			return st;
		if (lc_reopen_logs(lc) < 0) {
			sbuf_addf(body, "reopening %s failed; see the log\n", lc->alog_path);
			return 500;
		}
		sbuf_adds(body, "OK\n");
		return 200;
	}
	return 0;
}

void lc_prom(const struct lc *lc, struct sbuf *body)
{
	sbuf_addf(body, "# HELP egressgw_server_state 0 live, 1 draining (SIGTERM, /drain_listeners).\n"
	          "# TYPE egressgw_server_state gauge\negressgw_server_state %d\n"
	          "# HELP egressgw_healthcheck_failed 1 after POST /healthcheck/fail (/ready answers "
	          "503).\n"
	          "# TYPE egressgw_healthcheck_failed gauge\negressgw_healthcheck_failed %d\n",
	          lc->state == LC_LIVE ? 0 : 1, lc->healthcheck_failed ? 1 : 0);
	if (lc->proxy)
		sbuf_addf(body, "# HELP egressgw_worker_stuck Workers that did not take a reload "
		          "within --worker-stuck-timeout and still have not (/ready answers 503).\n"
		          "# TYPE egressgw_worker_stuck gauge\negressgw_worker_stuck %d\n"
		          "# HELP egressgw_worker_stuck_total Times a worker was found stuck at a "
		          "reload.\n# TYPE egressgw_worker_stuck_total counter\n"
		          "egressgw_worker_stuck_total %llu\n",
		          proxy_workers_stuck(lc->proxy, NULL),
		          (unsigned long long)atomic_load(&lc->proxy->worker_stuck_total));
}

static int lc_check_one(const struct sock_addr *a, const char *what)
{
	char buf[SOCK_ADDR_STRLEN];
	int rc = sock_addr_in_use(a);

	/* Other failures (EACCES on a privileged port, EADDRNOTAVAIL) are left to the
	 * worker's bind, which reports them as before. */
	if (rc != 1)
		return 0;
	sock_addr_str(a, buf, sizeof(buf));
	fprintf(stderr, "egressgw: %s %s: address already in use by another process; refusing "
	        "to share it (SO_REUSEPORT would split the connections between the two): stop "
	        "the other process or choose another address\n", what, buf);
	return -1;
}

int lc_check_listeners(const struct snap *s, const struct proxy *p)
{
	int rc = 0;

	for (size_t i = 0; i < s->nlisteners; i++) {
		const struct snap_listener *l = &s->listeners[i];
		char what[512];

		snprintf(what, sizeof(what), "gateway listener %s (Gateway %s, server %s)", l->name,
		         l->nservers ? l->servers[0].gateway : "-",
		         l->nservers && l->servers[0].port_name ? l->servers[0].port_name : "-");
		if (lc_check_one(&l->addr, what) < 0)
			rc = -1;
	}
	if (p->outbound_on && lc_check_one(&p->outbound, "sidecar capture listener --outbound") < 0)
		rc = -1;
	return rc;
}
