/* linger: lingering close of downstream connections; see linger.h for why. */
#include "proxy/linger.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "net/loop.h"
#include "proxy/worker.h"

struct lingerer {
	struct loop_io io;
	struct loop_timer timer;
	struct worker *w;
	struct lingerer *prev, *next;
};

static void lg_free(struct lingerer *l)
{
	struct worker *w = l->w;

	loop_io_del(w->loop, &l->io);
	loop_timer_cancel(w->loop, &l->timer);
	close(l->io.fd);
	worker_dcx_closed(w);
	if (l->prev)
		l->prev->next = l->next;
	else
		w->lingering = l->next;
	if (l->next)
		l->next->prev = l->prev;
	w->nlinger--;
	free(l);
}

/* Reads and drops what the client still sends. A few reads per wake-up, so a client that
 * sends fast cannot keep the worker here; the timer bounds the whole linger. */
static void lg_on_io(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct lingerer *l = container_of(io, struct lingerer, io);
	char buf[16384];

	(void)loop;
	(void)ev;
	for (int i = 0; i < 4; i++) {
		ssize_t n = recv(io->fd, buf, sizeof(buf), 0);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		lg_free(l);      /* the client closed its end (or reset): done */
		return;
	}
}

static void lg_on_timer(struct loop *loop, struct loop_timer *t)
{
	(void)loop;
	lg_free(container_of(t, struct lingerer, timer));
}

/* 1: the client has sent bytes we have not read; 0: nothing queued; -1: it has closed
 * its end or the socket failed (no reason to wait). */
static int lg_peek(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n > 0)
		return 1;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	return -1;
}

/* Near --max-connections a descriptor is worth more than a courteous close: the slot goes
 * back at once (a connection closed to make room, fwd_evict, must free it). Nor does a
 * socket linger once the worker's loop has returned (proxy_stop closing what is left):
 * nothing would drain it. */
static bool lg_pressure(const struct worker *w)
{
	const struct proxy *p = w->proxy;
	uint64_t open = atomic_load_explicit(&p->dcx_open, memory_order_relaxed);

	return p->max_dcx && open * 8 >= p->max_dcx * 7;
}

void linger_close(struct worker *w, int fd, bool may_send)
{
	int q = lg_peek(fd);
	struct lingerer *l;

	if (w->loop_done || q < 0 || (q == 0 && !may_send) || w->nlinger >= LINGER_MAX ||
	    lg_pressure(w) || shutdown(fd, SHUT_WR) != 0)
		goto now;
	l = xcalloc(1, sizeof(*l));
	l->w = w;
	loop_io_init(&l->io, fd, lg_on_io);
	if (loop_io_add(w->loop, &l->io, LOOP_READ) != 0) {
		free(l);
		goto now;
	}
	loop_timer_init(&l->timer, lg_on_timer);
	loop_timer_arm(w->loop, &l->timer, LINGER_MS);
	l->next = w->lingering;
	if (l->next)
		l->next->prev = l;
	w->lingering = l;
	w->nlinger++;
	return;
now:
	close(fd);
	worker_dcx_closed(w);
}

void linger_close_all(struct worker *w)
{
	while (w->lingering)
		lg_free(w->lingering);
}
