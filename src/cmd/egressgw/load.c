/* load: the configuration build on a thread of its own (see load.h). A reload of 40,000
 * hosts in one VirtualService, or of a store of 10,000 hosts, kept the main thread (and
 * with it /ready) silent for as long as it took; now the main thread only publishes. */
#include "cmd/egressgw/load.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "config/store.h"
#include "config/store_cache.h"
#include "core/util.h"
#include "secrets/secret.h"

static uint64_t load_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t load_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Hands free heap back to the system only when most of the heap is free: after the first
 * build (its YAML streams) or a configuration much smaller than the last. A reload of one
 * changed file frees the replaced snapshot and the next build needs as much again:
 * trimming then made every build fault its heap back in (10,000 hosts, ten reloads at
 * load 6-8: median compile CPU 241/244 ms with a trim after each build and release,
 * 202/190 ms without; RSS a second after, 98-101 MB either way). */
static void load_trim_if_shrunk(void)
{
	struct mallinfo2 mi = mallinfo2();

	if (mi.fordblks > mi.uordblks)
		malloc_trim(0);
}

void gw_load_build(struct gw_load *l)
{
	struct store_contents c = STORE_CONTENTS_INIT;
	struct store_cache_stats cs;
	uint64_t t0 = load_now_ms(), t1, t2, c0 = load_cpu_ms(), c1;
	int rc;

	memset(&l->diags, 0, sizeof(l->diags));
	l->snap = NULL;
	if (!l->cache)
		l->cache = store_cache_new();
	/* Streams are dropped as each file is decoded, so the build never holds the YAML of
	 * the whole store (10,000 hosts: 30,000 streams), and unchanged files are not read. */
	if (l->changed_full || !l->nchanged) {
		rc = store_load_cached(l->root, l->default_ns, l->cache, &c, &l->diags);
		l->stats.walked = true;
	} else {
		rc = store_load_changed(l->root, l->default_ns, l->cache, l->changed, l->nchanged,
		                        &c, &l->diags, &l->stats.walked);
	}
	for (size_t i = 0; i < l->nchanged; i++)
		free(l->changed[i]);
	free(l->changed);
	l->changed = NULL;
	l->nchanged = 0;
	l->changed_full = true;
	store_cache_stats(l->cache, &cs);
	t1 = load_now_ms();
	c1 = load_cpu_ms();
	pthread_mutex_lock(l->secrets_mu);
	/* A Secret directory that cannot be read does not stop the rest of the
	 * configuration: the secret cache keeps that Secret's last good version. */
	if (rc == 0 || !diags_has_errors(&l->diags) ||
	    secret_store_errors_only(&l->diags, l->root))
		l->snap = snap_build(&c, l->params, &l->diags);
	/* Its events are logged by the main thread once the workers serve the result
	 * (gw_reload), so that "in use" is true when it is said. */
	secret_cache_check_expiry(l->params->secrets, time(NULL));
	pthread_mutex_unlock(l->secrets_mu);
	t2 = load_now_ms();
	l->stats.read_cpu_ms = c1 - c0;
	l->stats.compile_cpu_ms = load_cpu_ms() - c1;
	l->stats.resources = c.n;
	l->stats.files = cs.files;
	l->stats.parsed = cs.parsed;
	l->stats.reused = cs.reused;
	store_contents_free(&c);
	/* The streams of a large store were most of the memory in use during the build, in
	 * blocks too small for glibc to give back on its own (10,000 hosts: 250 -> 73 MB). */
	load_trim_if_shrunk();
	l->stats.read_ms = t1 - t0;
	l->stats.compile_ms = t2 - t1;
	l->stats.done_ms = load_now_ms();
	l->stats.free_ms = l->stats.done_ms - t2;
}

static void *load_main(void *arg)
{
	struct gw_load *l = arg;
	uint64_t one = 1;

	gw_load_build(l);
	/* The write is the hand-over: the main thread reads the results only after it. */
	while (write(l->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	return NULL;
}

int gw_load_init(struct gw_load *l, const char *root, const char *default_ns,
                 const struct snap_params *params, pthread_mutex_t *secrets_mu)
{
	memset(l, 0, sizeof(*l));
	l->root = root;
	l->default_ns = default_ns;
	l->params = params;
	l->secrets_mu = secrets_mu;
	l->changed_full = true;
	l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return l->efd < 0 ? -1 : 0;
}

int gw_load_start(struct gw_load *l)
{
	int err;

	if (l->efd < 0) {
		errno = EBADF;
		return -1;
	}
	err = pthread_create(&l->thread, NULL, load_main, l);
	if (err) {
		errno = err;
		return -1;
	}
	l->running = true;
	return 0;
}

void gw_load_finish(struct gw_load *l)
{
	uint64_t v;

	if (!l->running)
		return;
	pthread_join(l->thread, NULL);
	l->running = false;
	while (read(l->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

static atomic_uint release_running;

static void *release_main(void *arg)
{
	snap_unref(arg);
	/* The build's own trim ran while this snapshot was still in use: without this one a
	 * much larger configuration replaced stayed resident. */
	load_trim_if_shrunk();
	atomic_fetch_sub(&release_running, 1);
	return NULL;
}

void gw_snap_release(struct snap *s)
{
	pthread_attr_t a;
	pthread_t t;
	int err;

	if (!s)
		return;
	atomic_fetch_add(&release_running, 1);
	if (pthread_attr_init(&a) != 0) {
		release_main(s);
		return;
	}
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&t, &a, release_main, s);
	pthread_attr_destroy(&a);
	if (err)
		release_main(s);
}

void gw_snap_release_wait(void)
{
	struct timespec tick = { 0, 1000 * 1000 };

	while (atomic_load(&release_running))
		nanosleep(&tick, NULL);
}

void gw_load_fini(struct gw_load *l)
{
	if (l->running) {
		gw_load_finish(l);
		if (l->snap)
			snap_unref(l->snap);
		diags_free(&l->diags);
	}
	if (l->efd >= 0)
		close(l->efd);
	l->efd = -1;
	store_cache_free(l->cache);
	l->cache = NULL;
	for (size_t i = 0; i < l->nchanged; i++)
		free(l->changed[i]);
	free(l->changed);
	l->changed = NULL;
	l->nchanged = 0;
}
