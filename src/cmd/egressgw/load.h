/* load: a configuration build (store read, YAML, decoding, validation, snap_build) on a
 * thread of its own, so that the main thread keeps serving the admin endpoint (/ready,
 * /stats) while a large or hostile configuration is read and compiled. The thread touches
 * its struct gw_load, the read-only snap_params and, holding *secrets_mu, the secret cache
 * (which the main thread reads for /certs under the same mutex).
 *
 * Use: gw_load_start; when load->efd turns readable, gw_load_finish, then take load->snap
 * (may be NULL: rejected) and load->diags. gw_load_build does the same build on the
 * calling thread (at start, before the admin endpoint exists). */
#ifndef EGRESS_CMD_EGRESSGW_LOAD_H
#define EGRESS_CMD_EGRESSGW_LOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/diag.h"
#include "proxy/snap.h"

/* What a build read and how long its phases took, for the one summary line. */
struct gw_build_stats {
	size_t resources, files;
	size_t parsed, reused;          /* config files read and decoded / taken from the cache */
	bool walked;                    /* the store's directories walked (else: the changed
	                                 * names the watcher gave, store_load_changed) */
	uint64_t read_ms, compile_ms, free_ms;
	uint64_t read_cpu_ms, compile_cpu_ms;   /* of the building thread (a loaded machine
	                                         * stretches the wall times, not these) */
	uint64_t done_ms;               /* monotonic ms when the build ended (publish time) */
};

struct gw_load {
	int efd;                        /* eventfd, readable when the thread is done; -1 none */
	bool running;                   /* started and not yet finished */
	pthread_t thread;
	/* Borrowed; they outlive every load. */
	const char *root, *default_ns;
	const struct snap_params *params;
	pthread_mutex_t *secrets_mu;
	/* The decoded config files of the last build (config/store_cache.h): a reload reads
	 * only the files that changed. Used by one build at a time. */
	struct store_cache *cache;
	/* Set before a build: the config files changed since the last one, as the watcher
	 * saw them (owned; freed by the build), or changed_full for a full walk. */
	char **changed;
	size_t nchanged;
	bool changed_full;
	/* Results, valid after gw_load_finish (or gw_load_build). */
	struct snap *snap;              /* NULL: the configuration was rejected */
	struct diags diags;
	struct gw_build_stats stats;
};

/* Sets up l and its eventfd. Returns 0, or -1 with errno set (l then builds only on the
 * calling thread, efd -1). */
int gw_load_init(struct gw_load *l, const char *root, const char *default_ns,
                 const struct snap_params *params, pthread_mutex_t *secrets_mu);
/* The build on the calling thread: fills l->snap, l->diags, l->stats. */
void gw_load_build(struct gw_load *l);
/* Starts the build on a new thread. Returns 0, or -1 with errno set (nothing started). */
int gw_load_start(struct gw_load *l);
/* Waits for the thread (at once when efd was readable) and resets efd. */
void gw_load_finish(struct gw_load *l);
/* Waits for a running build, drops its results and closes efd. */
void gw_load_fini(struct gw_load *l);

/* Drops the main thread's reference to a replaced snapshot on a short thread of its own:
 * freeing 10,000 clusters and their route tables took 17-57 ms of the main thread (and
 * of /ready) after each reload. On the calling thread when no thread can be made. */
void gw_snap_release(struct snap *s);
/* Waits until every gw_snap_release has finished (before the process tears down what a
 * snapshot's free touches). */
void gw_snap_release_wait(void);

#endif
