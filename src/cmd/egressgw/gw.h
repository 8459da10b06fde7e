/* gw: the egressgw process's state (struct gw) and how the files of src/cmd/egressgw/
 * share it. Everything here runs on the main thread unless a comment says otherwise.
 *
 *   main.c        arguments, --help, process hygiene (dumpable, --user), start-up, exit
 *   gw_dns.c      DNS re-resolution of the clusters' endpoints, retired endpoint sets
 *   gw_reload.c   the store watcher (inotify), reloads (load.c builds, this publishes)
 *   gw_admin.c    the admin endpoint's own pages and /stats/prometheus
 *   lifecycle.c   signals, drain, readiness; envoy_admin.c Envoy's admin pages;
 *   load.c        the build on a thread of its own */
#ifndef EGRESS_CMD_EGRESSGW_GW_H
#define EGRESS_CMD_EGRESSGW_GW_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "admin/admin.h"
#include "cmd/egressgw/envoy_admin.h"
#include "cmd/egressgw/lifecycle.h"
#include "cmd/egressgw/load.h"
#include "core/diag.h"
#include "core/log.h"
#include "net/dns.h"
#include "net/loop.h"
#include "proxy/snap.h"
#include "proxy/worker.h"

/* The watcher reads the store RELOAD_SETTLE_MS after the last change it saw (one write of
 * egressctl or a kubelet swap is a few events within a millisecond), at most
 * RELOAD_DEBOUNCE_MS after the first of a burst; while a writer's STORE_APPLY_MARK is
 * present, once it is gone, or after RELOAD_APPLY_WAIT_MS of quiet (a dead writer). */
#define RELOAD_SETTLE_MS 5
/* More changed config files than this in one burst: the build walks the store rather than
 * replaying the last walk with their names (store_load_changed). */
#define RELOAD_CHANGED_MAX 4096
#define RELOAD_DEBOUNCE_MS 100
#define RELOAD_APPLY_WAIT_MS 2000
#define RELOAD_WRITING_MAX 64

/* A few files of the store by (inotify watch, name): the watcher's files being written
 * and writers' markers. A full set counts as holding one more (overflow). */
struct watch_names {
	struct { int wd; char name[256]; } v[RELOAD_WRITING_MAX];
	size_t n;
	bool overflow;
};
/* DNS jobs restarted per millisecond after a reload (dns_jobs_start). */
#define DNS_RESTART_BATCH  256
/* OpenSSL's secure heap for private keys: a power of two, within the usual 8 MiB
 * RLIMIT_MEMLOCK; room for about a thousand RSA-2048 credentials (a buddy allocator:
 * ~2 KiB for the cached PEM, ~2 KiB of BIGNUMs) and the temporaries of private-key
 * operations. */
#define SECURE_HEAP_SIZE (4 * 1024 * 1024)
#define DNS_MIN_REFRESH_MS 1000
#define DNS_DEFAULT_REFRESH_MS 5000
#define DNS_MAX_REFRESH_MS 300000
/* Failures of a first round logged one by one at warning level; the rest at debug. */
#define DNS_FIRST_FAILED_LOGGED 10
/* A reload needs a few descriptors (the inotify instance, directories, files, TLS files);
 * when the connections have taken them all it waits and tries again. */
#define RELOAD_FDS_NEEDED 8
#define RELOAD_RETRY_MS 1000

struct retired {
	struct cluster_eps *eps;
	uint64_t epoch;
	struct retired *next;
};

/* One DNS-discovered cluster's resolution state, rebuilt with each snapshot. */
struct dns_job {
	struct gw *gw;
	struct snap *snap;              /* the snapshot the cluster belongs to (borrowed) */
	struct cluster *cl;
	size_t pending;                 /* names still resolving in this round */
	struct dns_addr *addrs;         /* collected in this round, with per-name ports */
	uint16_t *ports;
	uint32_t *weights;              /* the ServiceEntry endpoint's weight, per address */
	size_t naddrs;
	uint32_t min_ttl;
	bool failed;
	bool first_done;                /* the snapshot's first round has finished */
	bool queried;                   /* its last round asked the DNS (not only local names) */
	/* Why the last round failed, or NULL: on the heap only then, not 200 bytes in each of
	 * 10,000 jobs. */
	char *reason;
	struct loop_timer timer;
	struct dns_query **queries;
	/* Callback arguments, one per name: owned by the job, so a query cancelled by
	 * dns_jobs_stop (whose callback never runs) leaks nothing. */
	struct dns_cb_arg *args;
	size_t nqueries;
};

struct gw {
	struct loop *loop;
	struct proxy proxy;
	struct snap *snap;
	struct snap_params params;
	const char *store;
	const char *default_ns;
	struct dns *dns;
	struct admin *admin;
	int inotify_fd;
	struct loop_io inotify_io;
	struct loop_timer reload_timer;
	struct loop_timer retire_timer;
	struct lc lc;                   /* signals, drain, readiness (lifecycle.c) */
	struct retired *retired;
	struct dns_job *jobs;
	size_t njobs;
	/* The first round of a snapshot's resolutions, summarised in one log line when the
	 * last finishes (per cluster only at debug level: 10,000 clusters are 10,000 lines). */
	size_t dns_first_pending, dns_first_ok, dns_first_failed;
	size_t dns_first_kept;          /* clusters that kept their namesake's refresh */
	bool dns_first_logged;          /* the first round's summary is out */
	uint64_t dns_first_start_ms;
	/* A reload's store read runs on a thread (load.h); a change seen meanwhile starts
	 * another read when this one is done. */
	struct gw_load load;
	struct loop_io load_io;
	pthread_mutex_t secrets_mu;     /* the secret cache: builds and /certs */
	bool reload_pending;
	/* The inotify watch set must be walked again: a directory appeared, moved or went,
	 * a kubelet "..data" link was swapped, the queue overflowed, or SIGHUP. Other
	 * changes (files) leave it as it is: walking a store of 30,000 files on the main
	 * thread for every change held /ready for up to 125 ms. */
	bool watch_dirty;
	uint64_t burst_ms;              /* when the first change of this burst was seen, or 0 */
	/* STORE_APPLY_MARKs created while watched and not removed yet, by name: a stale
	 * marker (there before, or forgotten) removed by hand does not end a live one. */
	struct watch_names marks;
	uint64_t last_event_ms;         /* when the watcher last saw a change (loop ms) */
	/* Files modified in this burst and not closed yet: a writer in place (truncate,
	 * then write) is waited for, up to RELOAD_DEBOUNCE_MS into the burst. */
	struct watch_names writing;
	/* The config files seen changed since the last build began (full paths), for a
	 * reload that reads only those (store_load_changed); chg_full: something changed
	 * that has no such name (a directory, an overflow, SIGHUP, too many names). */
	char **chg;
	size_t nchg;
	bool chg_full;
	char **wd_dir;                  /* the config directory of each inotify watch, by wd */
	size_t nwd_dir;
	struct envoy_admin ea;          /* Envoy's admin endpoints (envoy_admin.c) */
};

/* gw_dns.c */
/* Starts resolution for every DNS cluster of snapshot s, seeding each with the endpoints
 * its namesake had in old (may be NULL) so that a reload never empties a cluster. */
void gw_dns_start(struct gw *g, struct snap *s, struct snap *old);
void gw_dns_stop(struct gw *g);
/* A reload: gw_dns_start for s, where a cluster whose namesake in old resolved the same
 * names (and needs a query for one) keeps its endpoints and its refresh time instead of
 * being resolved again; then the old jobs are stopped. */
void gw_dns_restart(struct gw *g, struct snap *s, struct snap *old);
/* Frees retired endpoint sets every worker has passed a quiescent point since (all: every
 * one, at exit). */
void gw_retire_collect(struct gw *g, bool all);
void gw_on_retire_timer(struct loop *loop, struct loop_timer *t);

/* gw_reload.c */
void gw_log_applied(const struct snap *s, const struct gw_build_stats *st);
void gw_log_diags(const struct diags *d, enum log_level lvl_err);
/* SIGHUP: the store read again now, as if it had changed. */
void gw_reload_now(void *arg);
/* Watches the store, its directories and the identity directory (a new inotify
 * instance). */
void gw_watch_rebuild(struct gw *g);
void gw_on_reload_timer(struct loop *loop, struct loop_timer *t);
/* Frees what the watcher keeps of changed names and watched directories. */
void gw_watch_fini(struct gw *g);
void gw_on_load_done(struct loop *loop, struct loop_io *io, unsigned ev);

/* gw_admin.c */
void gw_prom_render(void *arg, struct sbuf *body);
int gw_admin_handle(void *arg, const char *method, const char *path, struct sbuf *body,
                    const char **ctype);

/* main.c */
/* Warns about listeners of s not in old that need privileges the process dropped. */
void gw_hyg_check_new_listeners(const struct snap *old, const struct snap *s);

#endif
