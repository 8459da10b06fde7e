/* load: store_load on a thread of its own (see load.h). A reload of 40,000 hosts in one
 * VirtualService, or of a store of 10,000 hosts, kept the main thread (and with it /ready)
 * silent for as long as the read took; now only the compile step runs there. */
#include "cmd/egressgw/load.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static uint64_t load_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *load_main(void *arg)
{
	struct gw_load *l = arg;
	uint64_t t0 = load_now_ms(), one = 1;

	l->rc = store_load(l->root, l->default_ns, &l->contents, &l->diags);
	l->ms = load_now_ms() - t0;
	/* The write is the hand-over: the main thread reads the results only after it. */
	while (write(l->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	return NULL;
}

int gw_load_init(struct gw_load *l)
{
	memset(l, 0, sizeof(*l));
	l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return l->efd < 0 ? -1 : 0;
}

int gw_load_start(struct gw_load *l, const char *root, const char *default_ns)
{
	int err;

	l->root = root;
	l->default_ns = default_ns;
	memset(&l->contents, 0, sizeof(l->contents));
	memset(&l->diags, 0, sizeof(l->diags));
	l->ms = 0;
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

void gw_load_fini(struct gw_load *l)
{
	if (l->running) {
		gw_load_finish(l);
		store_contents_free(&l->contents);
		diags_free(&l->diags);
	}
	if (l->efd >= 0)
		close(l->efd);
	l->efd = -1;
}
