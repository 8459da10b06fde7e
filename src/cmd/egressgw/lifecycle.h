/* lifecycle: how egressgw starts, is operated and stops, the way operators drive Envoy
 * under Istio and daemons under systemd and logrotate.
 *
 * Signals (read on the main thread's signalfd):
 *   SIGUSR1            reopen the access log (logrotate's postrotate)
 *   SIGHUP             reload the configuration from the store, and reopen the access log
 *   SIGTERM SIGINT     drain: /ready answers 503 at once while the listeners keep
 *                      accepting for --drain-announce (Istio's terminationDrainDuration,
 *                      so load balancers and endpoints controllers stop sending), then
 *                      the listeners close, requests in flight finish within
 *                      --drain-timeout, and the process exits 0. A second such signal
 *                      cuts the announce period short, never the drain.
 *   SIGUSR2            ignored (logged): no signal an operator sends to ask for
 *                      something ends the process without a drain. SIGQUIT keeps its
 *                      meaning (quit with a core dump; none unless --allow-core-dumps).
 * The admin endpoint stays up for the whole drain.
 *
 * Admin endpoints (mutations are POST only, as in Envoy; GET answers 405; keep the admin
 * port on loopback, and give probes the read-only --status port):
 *   GET  /ready              200 LIVE, or 503 DRAINING / HEALTH_CHECK_FAILED
 *   POST /healthcheck/fail   /ready answers 503 until POST /healthcheck/ok
 *   POST /healthcheck/ok
 *   POST /drain_listeners    close the listeners and drain now (the process stays up,
 *                            the admin endpoint with it; SIGTERM then exits)
 *   POST /reopen_logs        as SIGUSR1
 *
 * And a periodic look at the certificates in use, for the ones close to expiry. */
#ifndef EGRESS_CMD_EGRESSGW_LIFECYCLE_H
#define EGRESS_CMD_EGRESSGW_LIFECYCLE_H

#include <stdbool.h>
#include <stdint.h>

#include "admin/admin.h"
#include "core/sbuf.h"
#include "net/loop.h"
#include "proxy/snap.h"
#include "proxy/worker.h"
#include "secrets/secret.h"

#include <pthread.h>

enum lc_state { LC_LIVE, LC_ANNOUNCING, LC_DRAINING, LC_DRAINED };

struct lc {
	struct loop *loop;              /* the main thread's */
	struct proxy *proxy;
	const char *alog_path;          /* --access-log, NULL or "-" for none to reopen */
	int64_t announce_ms;            /* --drain-announce */
	bool exit_after_drain;          /* a signal asked to exit (not /drain_listeners) */
	bool healthcheck_failed;        /* POST /healthcheck/fail */
	enum lc_state state;
	uint64_t drain_deadline_ms;
	struct loop_timer timer;        /* the announce period, then the drain poll */
	int sig_fd;
	struct loop_io sig_io;
	void (*reload)(void *arg);      /* SIGHUP: reload the store */
	void *arg;
	/* Certificates in use: checked every LC_CERT_CHECK_MS for expiry, warned about in
	 * the log (secret_cache_check_expiry). */
	struct secret_cache *secrets;
	pthread_mutex_t *secrets_mu;    /* held around it: a reload builds on a thread (load.h) */
	struct loop_timer cert_timer;
	/* --status: the read-only port for probes and scrapers; /stats/prometheus is
	 * answered by the admin handler. */
	struct admin *status;
	admin_handler admin;
	void *admin_arg;
};

/* Blocks the signals the lifecycle handles (before any thread starts, so that only the
 * main thread's signalfd sees them). */
void lc_block_signals(void);
/* Starts reading signals on loop. Returns 0, or -1 with errno. */
int lc_start(struct lc *lc, struct loop *loop, struct proxy *proxy);
void lc_fini(struct lc *lc);
/* True once the drain has begun (no snapshot may be published any more). */
bool lc_draining(const struct lc *lc);
/* Answers the endpoints above. Returns the status, or 0 when path is not one of them. */
int lc_admin(struct lc *lc, const char *method, const char *path, struct sbuf *body);
/* Prometheus lines: egressgw_server_state (Envoy's server.state: 0 live, 1 draining) and
 * egressgw_healthcheck_failed. */
void lc_prom(const struct lc *lc, struct sbuf *body);
/* Reopens the access log at its path: the workers' descriptor then names the new file
 * (dup3 swaps it atomically; lines written meanwhile go to one file or the other, never
 * lost). Returns 0, or -1 after logging why (the old file keeps receiving lines). */
int lc_reopen_logs(struct lc *lc);

/* Starts the status port (--status): GET /healthz/ready (as /ready, Istio's port 15021
 * path), GET /healthz/live (200 while the process runs, for a liveness probe: it stays
 * 200 during a drain and with /healthcheck/fail), GET /stats/prometheus; nothing that
 * changes state, so it may listen on the pod's address where the admin port must not.
 * Returns 0, or -1 with errno. */
int lc_status_start(struct lc *lc, const struct sock_addr *addr);

/* Refuses listeners another process already holds: each listener of s (and the sidecar's
 * --outbound) is probed with sock_addr_in_use before the workers bind them with
 * SO_REUSEPORT, which would otherwise share the port silently. Returns 0, or -1 after
 * printing to stderr the address and what the listener is for. */
int lc_check_listeners(const struct snap *s, const struct proxy *p);

#endif
