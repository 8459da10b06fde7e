/* Tests for net/loop: timers (order, re-arm, cancel, heap stress, no starvation), deferred
 * tasks (order, idempotent post, cancel from a callback, re-post waits an iteration, after
 * the I/O batch), I/O
 * registration (level/edge, removal during dispatch, forget before close, hand-over to
 * another io, the peer's half-close), cross-thread post/stop/wakeup. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/loop.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* ---- timers ---- */

struct rec_timer {
	struct loop_timer t;
	int id;
	int *log;
	int *nlog;
	uint64_t fired_at;
};

static void rec_cb(struct loop *loop, struct loop_timer *t)
{
	struct rec_timer *r = container_of(t, struct rec_timer, t);

	r->log[(*r->nlog)++] = r->id;
	r->fired_at = loop_now_ms(loop);
}

static void run_until_no_timers(struct loop *loop, int max_iter)
{
	while (loop_timer_count(loop) > 0 && max_iter-- > 0)
		assert_true(loop_run_once(loop, 1000) >= 0);
	assert_int_equal(loop_timer_count(loop), 0);
}

static void test_timer_order(void **state)
{
	struct loop *loop = loop_new();
	int log[8], nlog = 0;
	struct rec_timer a = { .id = 30, .log = log, .nlog = &nlog };
	struct rec_timer b = { .id = 10, .log = log, .nlog = &nlog };
	struct rec_timer c = { .id = 20, .log = log, .nlog = &nlog };
	uint64_t start;

	(void)state;
	assert_non_null(loop);
	start = loop_now_ms(loop);
	loop_timer_init(&a.t, rec_cb);
	loop_timer_init(&b.t, rec_cb);
	loop_timer_init(&c.t, rec_cb);
	assert_false(loop_timer_armed(&a.t));
	loop_timer_arm(loop, &a.t, 30);
	loop_timer_arm(loop, &b.t, 10);
	loop_timer_arm(loop, &c.t, 20);
	assert_true(loop_timer_armed(&a.t));
	assert_int_equal(loop_timer_count(loop), 3);
	run_until_no_timers(loop, 100);
	assert_int_equal(nlog, 3);
	assert_int_equal(log[0], 10);
	assert_int_equal(log[1], 20);
	assert_int_equal(log[2], 30);
	assert_true(b.fired_at - start >= 10);
	assert_true(a.fired_at - start >= 30);
	assert_false(loop_timer_armed(&a.t));
	loop_free(loop);
}

static void test_timer_rearm_cancel(void **state)
{
	struct loop *loop = loop_new();
	int log[8], nlog = 0;
	struct rec_timer a = { .id = 1, .log = log, .nlog = &nlog };
	struct rec_timer b = { .id = 2, .log = log, .nlog = &nlog };
	struct rec_timer c = { .id = 3, .log = log, .nlog = &nlog };

	(void)state;
	loop_timer_init(&a.t, rec_cb);
	loop_timer_init(&b.t, rec_cb);
	loop_timer_init(&c.t, rec_cb);
	loop_timer_arm(loop, &a.t, 5);
	loop_timer_arm(loop, &b.t, 10);
	loop_timer_arm(loop, &c.t, 15);
	loop_timer_arm(loop, &a.t, 40);      /* moves a after the others */
	loop_timer_cancel(loop, &b.t);
	loop_timer_cancel(loop, &b.t);       /* no-op */
	assert_int_equal(loop_timer_count(loop), 2);
	run_until_no_timers(loop, 100);
	assert_int_equal(nlog, 2);
	assert_int_equal(log[0], 3);
	assert_int_equal(log[1], 1);
	loop_free(loop);
}

/* Many timers, random delays, half cancelled: the rest fire in deadline order. */
struct stress_timer {
	struct loop_timer t;
	uint64_t *last;
	int *fired;
	bool *bad;
};

static void stress_cb(struct loop *loop, struct loop_timer *t)
{
	struct stress_timer *s = container_of(t, struct stress_timer, t);

	(void)loop;
	if (t->when < *s->last)
		*s->bad = true;
	*s->last = t->when;
	(*s->fired)++;
}

static void test_timer_heap_stress(void **state)
{
	enum { N = 2000 };
	struct loop *loop = loop_new();
	struct stress_timer *ts = calloc(N, sizeof(*ts));
	uint64_t last = 0;
	int fired = 0, expect = 0;
	bool bad = false;

	(void)state;
	srand(12345);
	for (int i = 0; i < N; i++) {
		ts[i].last = &last;
		ts[i].fired = &fired;
		ts[i].bad = &bad;
		loop_timer_init(&ts[i].t, stress_cb);
		loop_timer_arm(loop, &ts[i].t, (uint64_t)(rand() % 40));
	}
	for (int i = 0; i < N; i++) {
		if (i % 2)
			loop_timer_cancel(loop, &ts[i].t);
		else if (i % 3 == 0)
			loop_timer_arm(loop, &ts[i].t, (uint64_t)(rand() % 40));
	}
	for (int i = 0; i < N; i++)
		expect += loop_timer_armed(&ts[i].t);
	assert_int_equal(expect, N / 2);
	run_until_no_timers(loop, 1000);
	assert_int_equal(fired, expect);
	assert_false(bad);
	free(ts);
	loop_free(loop);
}

/* A timer that re-arms itself with 0 ms runs once per iteration, not forever. */
struct self_timer {
	struct loop_timer t;
	int n;
};

static void self_cb(struct loop *loop, struct loop_timer *t)
{
	struct self_timer *s = container_of(t, struct self_timer, t);

	s->n++;
	loop_timer_arm(loop, t, 0);
}

static void test_timer_no_starvation(void **state)
{
	struct loop *loop = loop_new();
	struct self_timer s = { .n = 0 };

	(void)state;
	loop_timer_init(&s.t, self_cb);
	loop_timer_arm(loop, &s.t, 0);
	assert_int_equal(loop_run_once(loop, 0), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(loop_run_once(loop, 0), 0);
	assert_int_equal(s.n, 2);
	loop_timer_cancel(loop, &s.t);
	loop_free(loop);
}

static void test_now_advances(void **state)
{
	struct loop *loop = loop_new();
	uint64_t t0 = loop_now_ms(loop);
	struct timespec ts = { 0, 20 * 1000000 };

	(void)state;
	nanosleep(&ts, NULL);
	assert_int_equal(loop_now_ms(loop), t0);     /* cached */
	loop_update_time(loop);
	assert_true(loop_now_ms(loop) >= t0 + 20);
	loop_free(loop);
}

/* ---- I/O ---- */

struct pipe_io {
	struct loop_io io;
	int wfd;
	int calls;
	unsigned last;
	int read_per_call;    /* bytes to consume per callback */
	struct pipe_io *other; /* deleted (and closed) by the first to run */
};

static void pipe_cb(struct loop *loop, struct loop_io *io, unsigned revents)
{
	struct pipe_io *p = container_of(io, struct pipe_io, io);
	char buf[64];

	p->calls++;
	p->last = revents;
	if (p->read_per_call > 0)
		assert_int_equal(read(io->fd, buf, (size_t)p->read_per_call), p->read_per_call);
	if (p->other) {
		assert_int_equal(loop_io_del(loop, &p->other->io), 0);
		p->other->other = NULL;
		p->other = NULL;
	}
}

static void make_pipe(struct pipe_io *p)
{
	int fds[2];

	memset(p, 0, sizeof(*p));
	assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	loop_io_init(&p->io, fds[0], pipe_cb);
	p->wfd = fds[1];
}

static void close_pipe(struct loop *loop, struct pipe_io *p)
{
	loop_io_del(loop, &p->io);
	close(p->io.fd);
	close(p->wfd);
}

static void test_io_level(void **state)
{
	struct loop *loop = loop_new();
	struct pipe_io p;

	(void)state;
	make_pipe(&p);
	p.read_per_call = 1;
	assert_int_equal(loop_io_add(loop, &p.io, LOOP_READ), 0);
	assert_int_equal(loop_io_add(loop, &p.io, LOOP_READ), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(loop_io_count(loop), 1);
	assert_int_equal(loop_run_once(loop, 0), 0);
	assert_int_equal(p.calls, 0);
	assert_int_equal(write(p.wfd, "ab", 2), 2);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(p.calls, 1);
	assert_true(p.last & LOOP_READ);
	/* Level-triggered: one byte left, so it is reported again. */
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(p.calls, 2);
	/* Interest 0: nothing reported. Unchanged interest: no syscall, still fine. */
	assert_int_equal(write(p.wfd, "c", 1), 1);
	assert_int_equal(loop_io_mod(loop, &p.io, 0), 0);
	assert_int_equal(loop_io_mod(loop, &p.io, 0), 0);
	assert_int_equal(loop_run_once(loop, 20), 0);
	assert_int_equal(p.calls, 2);
	assert_int_equal(loop_io_mod(loop, &p.io, LOOP_READ), 0);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(p.calls, 3);
	close_pipe(loop, &p);
	assert_int_equal(loop_io_count(loop), 0);
	loop_free(loop);
}

static void test_io_edge(void **state)
{
	struct loop *loop = loop_new();
	struct pipe_io p;

	(void)state;
	make_pipe(&p);
	p.read_per_call = 1;
	assert_int_equal(loop_io_add(loop, &p.io, LOOP_READ | LOOP_EDGE), 0);
	assert_int_equal(write(p.wfd, "ab", 2), 2);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(p.calls, 1);
	/* Edge-triggered: the byte left over is not reported again... */
	assert_int_equal(loop_run_once(loop, 20), 0);
	assert_int_equal(p.calls, 1);
	/* ...until new data arrives. */
	assert_int_equal(write(p.wfd, "c", 1), 1);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(p.calls, 2);
	close_pipe(loop, &p);
	loop_free(loop);
}

static void test_io_write_and_hup(void **state)
{
	struct loop *loop = loop_new();
	struct pipe_io p, w;

	(void)state;
	make_pipe(&p);
	/* The write end of an empty pipe is writable at once. */
	memset(&w, 0, sizeof(w));
	loop_io_init(&w.io, p.wfd, pipe_cb);
	assert_int_equal(loop_io_add(loop, &w.io, LOOP_WRITE), 0);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(w.calls, 1);
	assert_true(w.last & LOOP_WRITE);
	assert_int_equal(loop_io_del(loop, &w.io), 0);
	assert_int_equal(loop_io_del(loop, &w.io), 0);   /* not registered: no-op */
	/* Closing the write end: the reader is woken (EOF, with HUP). */
	assert_int_equal(loop_io_add(loop, &p.io, LOOP_READ), 0);
	close(p.wfd);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(p.calls, 1);
	assert_true(p.last & LOOP_READ);
	loop_io_del(loop, &p.io);
	close(p.io.fd);
	loop_free(loop);
}

/* Whichever of two ready ios runs first unregisters the other: the other's event, already
 * fetched in the same batch, must not be delivered. */
static void test_io_del_during_dispatch(void **state)
{
	struct loop *loop = loop_new();
	struct pipe_io a, b;

	(void)state;
	make_pipe(&a);
	make_pipe(&b);
	a.other = &b;
	b.other = &a;
	assert_int_equal(loop_io_add(loop, &a.io, LOOP_READ), 0);
	assert_int_equal(loop_io_add(loop, &b.io, LOOP_READ), 0);
	assert_int_equal(write(a.wfd, "x", 1), 1);
	assert_int_equal(write(b.wfd, "x", 1), 1);
	/* Make sure both are ready before the single epoll_wait. */
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(a.calls + b.calls, 1);
	close_pipe(loop, &a);
	close_pipe(loop, &b);
	loop_free(loop);
}

/* loop_io_forget + close from another io's callback: the forgotten io's event of the same
 * batch is dropped, and close() took the fd out of the epoll set (a new registration of
 * the same descriptor number is accepted and works). */
struct forget_io {
	struct loop_io io;
	int calls;
	struct forget_io *other;
};

static void forget_cb(struct loop *loop, struct loop_io *io, unsigned revents)
{
	struct forget_io *f = container_of(io, struct forget_io, io);

	(void)revents;
	f->calls++;
	if (f->other) {
		loop_io_forget(loop, &f->other->io);
		close(f->other->io.fd);
		f->other->io.fd = -1;
		f->other->other = NULL;
		f->other = NULL;
	}
}

static void test_io_forget_before_close(void **state)
{
	struct loop *loop = loop_new();
	struct forget_io a, b;
	struct pipe_io c;
	int pa[2], pb[2], a_rd, b_rd;

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	assert_int_equal(pipe2(pa, O_NONBLOCK | O_CLOEXEC), 0);
	assert_int_equal(pipe2(pb, O_NONBLOCK | O_CLOEXEC), 0);
	a_rd = pa[0];
	b_rd = pb[0];
	loop_io_init(&a.io, a_rd, forget_cb);
	loop_io_init(&b.io, b_rd, forget_cb);
	a.other = &b;
	b.other = &a;
	assert_int_equal(loop_io_add(loop, &a.io, LOOP_READ), 0);
	assert_int_equal(loop_io_add(loop, &b.io, LOOP_READ), 0);
	assert_int_equal(write(pa[1], "x", 1), 1);
	assert_int_equal(write(pb[1], "x", 1), 1);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(a.calls + b.calls, 1);
	assert_int_equal(loop_io_count(loop), 1);
	/* The closed one's number comes back with the next descriptor; registering it is
	 * an ADD that succeeds (nothing stale left in the epoll set) and reports its own. */
	{
		int closed = a.calls ? b_rd : a_rd;
		struct forget_io *alive = a.calls ? &a : &b;

		make_pipe(&c);
		assert_int_equal(c.io.fd, closed);
		assert_int_equal(loop_io_add(loop, &c.io, LOOP_READ), 0);
		assert_int_equal(write(c.wfd, "y", 1), 1);
		c.read_per_call = 1;
		assert_int_equal(loop_run_once(loop, 1000), 2);   /* c, and the live one's byte */
		assert_int_equal(c.calls, 1);
		assert_int_equal(alive->calls, 2);
		close_pipe(loop, &c);
		loop_io_forget(loop, &alive->io);
		close(alive->io.fd);
	}
	close(pa[1]);
	close(pb[1]);
	assert_int_equal(loop_io_count(loop), 0);
	loop_free(loop);
}

/* loop_io_move: the registration changes owner (callback, interest) with the fd; the old
 * io is left unregistered with fd -1; an event of the same batch still waiting for the old
 * io goes to the new one. */
struct move_io {
	struct loop_io io;
	int calls;
	unsigned last;
	struct loop_io *from, *to;     /* moved by this one's callback */
};

static void move_cb(struct loop *loop, struct loop_io *io, unsigned revents)
{
	struct move_io *m = container_of(io, struct move_io, io);
	char buf[8];

	m->calls++;
	m->last = revents;
	while (read(io->fd, buf, sizeof(buf)) > 0)
		;
	if (m->from) {
		assert_int_equal(loop_io_move(loop, m->from, m->to, LOOP_READ | LOOP_EDGE), 0);
		m->from = NULL;
	}
}

static void test_io_move(void **state)
{
	struct loop *loop = loop_new();
	struct move_io a, b, c, x;
	int pa[2], pb[2];

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	memset(&x, 0, sizeof(x));
	assert_int_equal(pipe2(pa, O_NONBLOCK | O_CLOEXEC), 0);
	assert_int_equal(pipe2(pb, O_NONBLOCK | O_CLOEXEC), 0);
	loop_io_init(&a.io, pa[0], move_cb);
	loop_io_init(&b.io, pb[0], move_cb);
	loop_io_init(&c.io, -1, move_cb);
	loop_io_init(&x.io, -1, move_cb);
	/* Nothing to move from an unregistered io. */
	assert_int_equal(loop_io_move(loop, &c.io, &x.io, LOOP_READ), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(loop_io_add(loop, &a.io, LOOP_READ), 0);
	assert_int_equal(loop_io_add(loop, &b.io, LOOP_READ), 0);
	/* Whichever runs first moves the other's registration to c, the other's event of
	 * this batch included. */
	a.from = &b.io;
	a.to = &c.io;
	b.from = &a.io;
	b.to = &c.io;
	assert_int_equal(write(pa[1], "x", 1), 1);
	assert_int_equal(write(pb[1], "x", 1), 1);
	assert_int_equal(loop_run_once(loop, 1000), 2);
	assert_int_equal(a.calls + b.calls, 1);
	assert_int_equal(c.calls, 1);
	{
		struct move_io *first = a.calls ? &a : &b, *moved = a.calls ? &b : &a;
		int moved_w = a.calls ? pb[1] : pa[1];

		assert_false(moved->io.registered);
		assert_int_equal(moved->io.fd, -1);
		assert_true(c.io.registered);
		assert_int_equal(c.io.interest, LOOP_READ | LOOP_EDGE);
		assert_int_equal(loop_io_count(loop), 2);
		/* The fd now reports to c, edge-triggered. */
		assert_int_equal(write(moved_w, "y", 1), 1);
		assert_int_equal(loop_run_once(loop, 1000), 1);
		assert_int_equal(c.calls, 2);
		assert_int_equal(moved->calls, 0);
		/* A move onto a registered io is refused. */
		assert_int_equal(loop_io_move(loop, &first->io, &c.io, LOOP_READ), -1);
		assert_int_equal(errno, EEXIST);
		loop_io_del(loop, &first->io);
		close(first->io.fd);
	}
	loop_io_forget(loop, &c.io);
	close(c.io.fd);
	close(pa[1]);
	close(pb[1]);
	assert_int_equal(loop_io_count(loop), 0);
	loop_free(loop);
}

/* LOOP_RDHUP: asked for, the peer's shutdown(SHUT_WR) is reported as such (with READ);
 * not asked for, only READ. */
static void test_io_rdhup(void **state)
{
	struct loop *loop = loop_new();
	struct move_io a, b;
	int sa[2], sb[2];

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sa), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sb), 0);
	loop_io_init(&a.io, sa[0], move_cb);
	loop_io_init(&b.io, sb[0], move_cb);
	assert_int_equal(loop_io_add(loop, &a.io, LOOP_READ | LOOP_EDGE | LOOP_RDHUP), 0);
	assert_int_equal(loop_io_add(loop, &b.io, LOOP_READ | LOOP_EDGE), 0);
	assert_int_equal(write(sa[1], "z", 1), 1);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(a.last, LOOP_READ);
	assert_int_equal(shutdown(sa[1], SHUT_WR), 0);
	assert_int_equal(shutdown(sb[1], SHUT_WR), 0);
	assert_int_equal(loop_run_once(loop, 1000), 2);
	assert_int_equal(a.last, LOOP_READ | LOOP_RDHUP);
	assert_int_equal(b.last & LOOP_RDHUP, 0);
	assert_true(b.last & LOOP_READ);
	loop_io_forget(loop, &a.io);
	loop_io_forget(loop, &b.io);
	close(sa[0]);
	close(sa[1]);
	close(sb[0]);
	close(sb[1]);
	loop_free(loop);
}

/* ---- cross-thread ---- */

struct post_state {
	struct loop *loop;
	int seen[100];
	int nseen;
	pthread_t main;
	bool wrong_thread;
};

struct post_arg {
	struct post_state *st;
	int v;
};

static struct post_arg post_args[100];

static void post_fn(struct loop *loop, void *arg)
{
	struct post_arg *a = arg;

	(void)loop;
	if (!pthread_equal(pthread_self(), a->st->main))
		a->st->wrong_thread = true;
	a->st->seen[a->st->nseen++] = a->v;
}

static void stop_fn(struct loop *loop, void *arg)
{
	(void)arg;
	loop_stop(loop);
}

static void *poster(void *arg)
{
	struct post_state *st = arg;
	struct timespec ts = { 0, 5 * 1000000 };

	for (int i = 0; i < 100; i++) {
		post_args[i].st = st;
		post_args[i].v = i;
		loop_post(st->loop, post_fn, &post_args[i]);
		if (i % 25 == 0)
			nanosleep(&ts, NULL);
	}
	loop_post(st->loop, stop_fn, NULL);
	return NULL;
}

static void test_post_from_thread(void **state)
{
	struct post_state st;
	pthread_t th;

	(void)state;
	memset(&st, 0, sizeof(st));
	st.loop = loop_new();
	st.main = pthread_self();
	assert_int_equal(pthread_create(&th, NULL, poster, &st), 0);
	assert_int_equal(loop_run(st.loop), 0);
	pthread_join(th, NULL);
	assert_int_equal(st.nseen, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(st.seen[i], i);
	assert_false(st.wrong_thread);
	loop_free(st.loop);
}

static void *stopper(void *arg)
{
	struct timespec ts = { 0, 30 * 1000000 };

	nanosleep(&ts, NULL);
	loop_stop(arg);
	return NULL;
}

static void test_stop_from_thread(void **state)
{
	struct loop *loop = loop_new();
	pthread_t th;
	uint64_t t0 = loop_now_ms(loop);

	(void)state;
	assert_int_equal(pthread_create(&th, NULL, stopper, loop), 0);
	/* Nothing registered, no timer: only the wake-up can end this. */
	assert_int_equal(loop_run(loop), 0);
	pthread_join(th, NULL);
	assert_true(loop_now_ms(loop) - t0 >= 25);
	/* The loop can run again after a stop. */
	loop_post(loop, stop_fn, NULL);
	assert_int_equal(loop_run(loop), 0);
	loop_free(loop);
}

static void test_free_with_pending_posts(void **state)
{
	struct loop *loop = loop_new();
	struct post_state st;

	(void)state;
	memset(&st, 0, sizeof(st));
	post_args[0].st = &st;
	loop_post(loop, post_fn, &post_args[0]);
	loop_free(loop);          /* freed without running: ASan checks the leak */
	assert_int_equal(st.nseen, 0);
}

/* ---- deferred tasks ---- */

struct rec_task {
	struct loop_task t;
	int id;
	int *log;
	int *nlog;
	int repost;               /* times the callback posts itself again */
	struct loop_task *cancel; /* cancelled by the callback */
};

static void task_cb(struct loop *loop, struct loop_task *t)
{
	struct rec_task *r = container_of(t, struct rec_task, t);

	r->log[(*r->nlog)++] = r->id;
	if (r->cancel)
		loop_task_cancel(loop, r->cancel);
	if (r->repost > 0) {
		r->repost--;
		loop_task_post(loop, t);
	}
}

static void test_task_order_and_cancel(void **state)
{
	struct loop *loop = loop_new();
	int log[16], nlog = 0;
	struct rec_task a = { .id = 1, .log = log, .nlog = &nlog };
	struct rec_task b = { .id = 2, .log = log, .nlog = &nlog };
	struct rec_task c = { .id = 3, .log = log, .nlog = &nlog };
	struct rec_task d = { .id = 4, .log = log, .nlog = &nlog };

	(void)state;
	loop_task_init(&a.t, task_cb);
	loop_task_init(&b.t, task_cb);
	loop_task_init(&c.t, task_cb);
	loop_task_init(&d.t, task_cb);
	assert_false(loop_task_posted(&a.t));
	loop_task_post(loop, &b.t);
	loop_task_post(loop, &a.t);
	loop_task_post(loop, &b.t);          /* already posted: no second run */
	loop_task_post(loop, &c.t);
	loop_task_post(loop, &d.t);
	a.cancel = &c.t;                      /* a runs before c and cancels it */
	loop_task_cancel(loop, &d.t);
	assert_true(loop_task_posted(&b.t));
	assert_false(loop_task_posted(&d.t));
	assert_int_equal(loop_task_count(loop), 3);
	/* Posted tasks make the iteration not block (1 s timeout, no fds ready). */
	{
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(loop_run_once(loop, 1000), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 500);
	}
	assert_int_equal(nlog, 2);
	assert_int_equal(log[0], 2);
	assert_int_equal(log[1], 1);
	assert_int_equal(loop_task_count(loop), 0);
	assert_false(loop_task_posted(&c.t));
	loop_free(loop);
}

static void test_task_repost_waits_an_iteration(void **state)
{
	struct loop *loop = loop_new();
	int log[16], nlog = 0;
	struct rec_task a = { .id = 1, .log = log, .nlog = &nlog, .repost = 2 };

	(void)state;
	loop_task_init(&a.t, task_cb);
	loop_task_post(loop, &a.t);
	assert_true(loop_run_once(loop, 1000) >= 0);
	assert_int_equal(nlog, 1);            /* not run again in the same drain */
	assert_true(loop_task_posted(&a.t));
	assert_true(loop_run_once(loop, 1000) >= 0);
	assert_true(loop_run_once(loop, 1000) >= 0);
	assert_int_equal(nlog, 3);
	assert_false(loop_task_posted(&a.t));
	/* Freeing the loop forgets a task still posted. */
	loop_task_post(loop, &a.t);
	loop_free(loop);
	assert_false(loop_task_posted(&a.t));
}

/* A task posted by an I/O callback runs in the same iteration, after the batch. */
struct io_task {
	struct loop_io io;
	struct loop_task t;
	int nio, ntask, nio_at_task;
};

static void io_task_io(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct io_task *x = container_of(io, struct io_task, io);
	char buf[16];

	(void)ev;
	x->nio++;
	assert_true(read(io->fd, buf, sizeof(buf)) > 0);
	loop_task_post(loop, &x->t);
}

static void io_task_task(struct loop *loop, struct loop_task *t)
{
	struct io_task *x = container_of(t, struct io_task, t);

	(void)loop;
	x->ntask++;
	x->nio_at_task = x->nio;
}

static void test_task_after_io_batch(void **state)
{
	struct loop *loop = loop_new();
	struct io_task x;
	int p[2];

	(void)state;
	memset(&x, 0, sizeof(x));
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	loop_io_init(&x.io, p[0], io_task_io);
	loop_task_init(&x.t, io_task_task);
	assert_int_equal(loop_io_add(loop, &x.io, LOOP_READ), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(loop_run_once(loop, 1000), 1);
	assert_int_equal(x.nio, 1);
	assert_int_equal(x.ntask, 1);
	assert_int_equal(x.nio_at_task, 1);
	loop_io_del(loop, &x.io);
	close(p[0]);
	close(p[1]);
	loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_timer_rearm_cancel),
		cmocka_unit_test(test_timer_heap_stress),
		cmocka_unit_test(test_timer_no_starvation),
		cmocka_unit_test(test_now_advances),
		cmocka_unit_test(test_io_level),
		cmocka_unit_test(test_io_edge),
		cmocka_unit_test(test_io_write_and_hup),
		cmocka_unit_test(test_io_del_during_dispatch),
		cmocka_unit_test(test_io_forget_before_close),
		cmocka_unit_test(test_io_move),
		cmocka_unit_test(test_io_rdhup),
		cmocka_unit_test(test_post_from_thread),
		cmocka_unit_test(test_stop_from_thread),
		cmocka_unit_test(test_free_with_pending_posts),
		cmocka_unit_test(test_task_order_and_cancel),
		cmocka_unit_test(test_task_repost_waits_an_iteration),
		cmocka_unit_test(test_task_after_io_batch),
	};

	return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
