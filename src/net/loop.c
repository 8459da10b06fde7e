#include "net/loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

/* Events fetched per epoll_wait. Enough to amortise the syscall under load; more would
 * only make a single iteration (and so the timer resolution) coarser. */
#define LOOP_BATCH 256

struct loop_post_item {
	void (*fn)(struct loop *loop, void *arg);
	void *arg;
	struct loop_post_item *next;
};

struct loop {
	int epfd;
	uint64_t now_ms;
	atomic_bool stop;

	/* The batch being dispatched: loop_io_del() clears later entries that point to the
	 * io it removes. cur is the index being dispatched, nevents the batch size. */
	struct epoll_event events[LOOP_BATCH];
	int nevents, cur;
	size_t nios;

	struct loop_timer **heap;
	size_t nheap, capheap;

	/* Posted tasks: a circular list through this sentinel (never run itself). */
	struct loop_task tasks;
	size_t ntasks;

	/* Cross-thread wake-up and post queue. */
	struct loop_io wake_io;
	pthread_mutex_t post_lock;
	struct loop_post_item *post_head, *post_tail;
};

static uint64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t loop_now_ms(const struct loop *loop)
{
	return loop->now_ms;
}

void loop_update_time(struct loop *loop)
{
	loop->now_ms = clock_ms();
}

/* ---- timers: binary min-heap on when, each timer knows its index ---- */

static void heap_set(struct loop *loop, size_t i, struct loop_timer *t)
{
	loop->heap[i] = t;
	t->heap_idx = i;
}

static void heap_up(struct loop *loop, size_t i)
{
	struct loop_timer *t = loop->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (loop->heap[parent]->when <= t->when)
			break;
		heap_set(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_set(loop, i, t);
}

static void heap_down(struct loop *loop, size_t i)
{
	struct loop_timer *t = loop->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m;

		if (l >= loop->nheap)
			break;
		m = (r < loop->nheap && loop->heap[r]->when < loop->heap[l]->when) ? r : l;
		if (t->when <= loop->heap[m]->when)
			break;
		heap_set(loop, i, loop->heap[m]);
		i = m;
	}
	heap_set(loop, i, t);
}

static void heap_remove(struct loop *loop, struct loop_timer *t)
{
	size_t i = t->heap_idx;
	struct loop_timer *last = loop->heap[--loop->nheap];

	t->heap_idx = SIZE_MAX;
	if (last == t)
		return;
	heap_set(loop, i, last);
	/* The moved element may need to go either way. */
	if (i > 0 && loop->heap[(i - 1) / 2]->when > last->when)
		heap_up(loop, i);
	else
		heap_down(loop, i);
}

void loop_timer_init(struct loop_timer *t, void (*cb)(struct loop *loop, struct loop_timer *t))
{
	t->when = 0;
	t->heap_idx = SIZE_MAX;
	t->cb = cb;
}

bool loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_idx != SIZE_MAX;
}

void loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t after_ms)
{
	uint64_t when = loop->now_ms + after_ms;

	if (when < loop->now_ms)          /* saturate instead of wrapping into the past */
		when = UINT64_MAX;
	if (loop_timer_armed(t)) {
		uint64_t old = t->when;

		t->when = when;
		if (when < old)
			heap_up(loop, t->heap_idx);
		else if (when > old)
			heap_down(loop, t->heap_idx);
		return;
	}
	if (loop->nheap == loop->capheap) {
		loop->capheap = loop->capheap ? loop->capheap * 2 : 64;
		loop->heap = xrealloc(loop->heap, loop->capheap * sizeof(*loop->heap));
	}
	t->when = when;
	heap_set(loop, loop->nheap++, t);
	heap_up(loop, t->heap_idx);
}

void loop_timer_cancel(struct loop *loop, struct loop_timer *t)
{
	if (loop_timer_armed(t))
		heap_remove(loop, t);
}

size_t loop_timer_count(const struct loop *loop)
{
	return loop->nheap;
}

/* Runs expired timers. At most as many callbacks as there were armed timers when the pass
 * began, so a callback that re-arms itself with 0 ms cannot starve I/O: the rest waits
 * for the next iteration (whose epoll_wait then does not block). */
static void run_timers(struct loop *loop)
{
	size_t budget = loop->nheap;

	while (budget-- > 0 && loop->nheap > 0 && loop->heap[0]->when <= loop->now_ms) {
		struct loop_timer *t = loop->heap[0];

		heap_remove(loop, t);
		t->cb(loop, t);
	}
}

/* ---- deferred work ---- */

void loop_task_init(struct loop_task *t, void (*cb)(struct loop *loop, struct loop_task *t))
{
	t->next = t->prev = NULL;
	t->posted = false;
	t->cb = cb;
}

void loop_task_post(struct loop *loop, struct loop_task *t)
{
	if (t->posted)
		return;
	t->posted = true;
	t->next = &loop->tasks;
	t->prev = loop->tasks.prev;
	loop->tasks.prev->next = t;
	loop->tasks.prev = t;
	loop->ntasks++;
}

void loop_task_cancel(struct loop *loop, struct loop_task *t)
{
	if (!t->posted)
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = t->prev = NULL;
	t->posted = false;
	loop->ntasks--;
}

bool loop_task_posted(const struct loop_task *t)
{
	return t->posted;
}

size_t loop_task_count(const struct loop *loop)
{
	return loop->ntasks;
}

/* Runs the tasks posted so far. They are moved to a list of their own first, so that one
 * posted by a callback waits for the next iteration; a cancel unlinks a task from
 * whichever list holds it. */
static void run_tasks(struct loop *loop)
{
	struct loop_task batch;

	if (loop->tasks.next == &loop->tasks)
		return;
	batch.next = loop->tasks.next;
	batch.prev = loop->tasks.prev;
	batch.next->prev = &batch;
	batch.prev->next = &batch;
	loop->tasks.next = loop->tasks.prev = &loop->tasks;
	while (batch.next != &batch) {
		struct loop_task *t = batch.next;

		t->prev->next = t->next;
		t->next->prev = t->prev;
		t->next = t->prev = NULL;
		t->posted = false;
		loop->ntasks--;
		t->cb(loop, t);
	}
}

static int next_timeout(const struct loop *loop, int timeout_ms)
{
	uint64_t d;

	if (loop->ntasks > 0)
		return 0;
	if (loop->nheap == 0)
		return timeout_ms;
	if (loop->heap[0]->when <= loop->now_ms)
		return 0;
	d = loop->heap[0]->when - loop->now_ms;
	if (d > INT_MAX)
		d = INT_MAX;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < d)
		return timeout_ms;
	return (int)d;
}

/* ---- I/O ---- */

static uint32_t to_epoll(unsigned interest)
{
	uint32_t ev = 0;

	if (interest & LOOP_READ)
		ev |= EPOLLIN;
	if (interest & LOOP_WRITE)
		ev |= EPOLLOUT;
	if (interest & LOOP_EDGE)
		ev |= EPOLLET;
	if (interest & LOOP_RDHUP)
		ev |= EPOLLRDHUP;
	return ev;
}

void loop_io_init(struct loop_io *io, int fd,
                  void (*cb)(struct loop *loop, struct loop_io *io, unsigned revents))
{
	io->fd = fd;
	io->interest = 0;
	io->registered = false;
	io->cb = cb;
}

int loop_io_add(struct loop *loop, struct loop_io *io, unsigned interest)
{
	struct epoll_event ev;

	if (io->registered) {
		errno = EEXIST;
		return -1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = to_epoll(interest);
	ev.data.ptr = io;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
		return -1;
	io->interest = interest;
	io->registered = true;
	loop->nios++;
	return 0;
}

int loop_io_mod(struct loop *loop, struct loop_io *io, unsigned interest)
{
	struct epoll_event ev;

	if (!io->registered) {
		errno = ENOENT;
		return -1;
	}
	if (io->interest == interest)
		return 0;
	memset(&ev, 0, sizeof(ev));
	ev.events = to_epoll(interest);
	ev.data.ptr = io;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -1;
	io->interest = interest;
	return 0;
}

/* Points the events of this batch still waiting for io at to (NULL: dropped). */
static void retarget(struct loop *loop, const struct loop_io *io, struct loop_io *to)
{
	for (int i = loop->cur + 1; i < loop->nevents; i++)
		if (loop->events[i].data.ptr == io)
			loop->events[i].data.ptr = to;
}

void loop_io_forget(struct loop *loop, struct loop_io *io)
{
	if (!io->registered)
		return;
	io->registered = false;
	io->interest = 0;
	loop->nios--;
	retarget(loop, io, NULL);
}

int loop_io_del(struct loop *loop, struct loop_io *io)
{
	int rc = 0;

	if (!io->registered)
		return 0;
	/* The event argument is ignored for DEL since Linux 2.6.9. */
	if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0)
		rc = -1;
	loop_io_forget(loop, io);
	return rc;
}

int loop_io_move(struct loop *loop, struct loop_io *from, struct loop_io *to, unsigned interest)
{
	struct epoll_event ev;

	if (!from->registered || to->registered) {
		errno = from->registered ? EEXIST : ENOENT;
		return -1;
	}
	to->fd = from->fd;
	memset(&ev, 0, sizeof(ev));
	ev.events = to_epoll(interest);
	ev.data.ptr = to;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, to->fd, &ev) < 0) {
		int e = errno;

		loop_io_del(loop, from);
		to->fd = -1;
		errno = e;
		return -1;
	}
	from->registered = false;
	from->interest = 0;
	from->fd = -1;
	to->registered = true;
	to->interest = interest;
	retarget(loop, from, to);
	return 0;
}

size_t loop_io_count(const struct loop *loop)
{
	return loop->nios;
}

/* ---- wake-up and posts ---- */

void loop_wakeup(struct loop *loop)
{
	uint64_t one = 1;
	ssize_t r;

	/* EAGAIN means the counter is already non-zero: a wake-up is pending anyway. */
	do
		r = write(loop->wake_io.fd, &one, sizeof(one));
	while (r < 0 && errno == EINTR);
}

void loop_stop(struct loop *loop)
{
	atomic_store(&loop->stop, true);
	loop_wakeup(loop);
}

void loop_post(struct loop *loop, void (*fn)(struct loop *loop, void *arg), void *arg)
{
	struct loop_post_item *it = xmalloc(sizeof(*it));
	bool was_empty;

	it->fn = fn;
	it->arg = arg;
	it->next = NULL;
	pthread_mutex_lock(&loop->post_lock);
	was_empty = loop->post_head == NULL;
	if (loop->post_tail)
		loop->post_tail->next = it;
	else
		loop->post_head = it;
	loop->post_tail = it;
	pthread_mutex_unlock(&loop->post_lock);
	/* A non-empty queue already has a wake-up in flight (see wake_cb for the order). */
	if (was_empty)
		loop_wakeup(loop);
}

static void wake_cb(struct loop *loop, struct loop_io *io, unsigned revents)
{
	struct loop_post_item *it, *next;
	uint64_t v;

	/* Read the counter before taking the queue: a post that lands after the swap then
	 * finds an empty queue and writes the eventfd again, so nothing is stranded. */
	while (read(io->fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&loop->post_lock);
	it = loop->post_head;
	loop->post_head = loop->post_tail = NULL;
	pthread_mutex_unlock(&loop->post_lock);
	for (; it; it = next) {
		next = it->next;
		it->fn(loop, it->arg);
		free(it);
	}
}

/* ---- life cycle and dispatch ---- */

struct loop *loop_new(void)
{
	struct loop *loop = xcalloc(1, sizeof(*loop));
	int efd;

	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		goto fail_free;
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		goto fail_epoll;
	pthread_mutex_init(&loop->post_lock, NULL);
	atomic_init(&loop->stop, false);
	loop->cur = -1;
	loop->now_ms = clock_ms();
	loop->tasks.next = loop->tasks.prev = &loop->tasks;
	loop_io_init(&loop->wake_io, efd, wake_cb);
	if (loop_io_add(loop, &loop->wake_io, LOOP_READ) < 0)
		goto fail_efd;
	loop->nios = 0;    /* the internal eventfd is not counted */
	return loop;
fail_efd:
	{
		int e = errno;

		pthread_mutex_destroy(&loop->post_lock);
		close(efd);
		errno = e;
	}
fail_epoll:
	{
		int e = errno;

		close(loop->epfd);
		errno = e;
	}
fail_free:
	{
		int e = errno;

		free(loop);
		errno = e;
	}
	return NULL;
}

void loop_free(struct loop *loop)
{
	struct loop_post_item *it, *next;

	if (!loop)
		return;
	for (it = loop->post_head; it; it = next) {
		next = it->next;
		free(it);
	}
	for (size_t i = 0; i < loop->nheap; i++)
		loop->heap[i]->heap_idx = SIZE_MAX;
	while (loop->tasks.next != &loop->tasks)
		loop_task_cancel(loop, loop->tasks.next);
	free(loop->heap);
	pthread_mutex_destroy(&loop->post_lock);
	close(loop->wake_io.fd);
	close(loop->epfd);
	free(loop);
}

int loop_run_once(struct loop *loop, int timeout_ms)
{
	int n, dispatched = 0;

	n = epoll_wait(loop->epfd, loop->events, LOOP_BATCH, next_timeout(loop, timeout_ms));
	if (n < 0) {
		if (errno != EINTR)
			return -1;
		n = 0;
	}
	loop->now_ms = clock_ms();
	loop->nevents = n;
	for (loop->cur = 0; loop->cur < n; loop->cur++) {
		struct epoll_event *ev = &loop->events[loop->cur];
		struct loop_io *io = ev->data.ptr;
		unsigned revents = 0;

		if (!io)               /* unregistered earlier in this batch */
			continue;
		if (ev->events & EPOLLIN)
			revents |= LOOP_READ;
		if (ev->events & EPOLLOUT)
			revents |= LOOP_WRITE;
		if (ev->events & EPOLLRDHUP)
			revents |= LOOP_RDHUP | (io->interest & LOOP_READ);
		if (ev->events & (EPOLLERR | EPOLLHUP))
			revents |= LOOP_ERROR | (io->interest & (LOOP_READ | LOOP_WRITE));
		io->cb(loop, io, revents);
		if (io != &loop->wake_io)
			dispatched++;
	}
	loop->cur = -1;
	loop->nevents = 0;
	run_timers(loop);
	run_tasks(loop);
	return dispatched;
}

int loop_run(struct loop *loop)
{
	while (!atomic_load_explicit(&loop->stop, memory_order_relaxed)) {
		if (loop_run_once(loop, -1) < 0)
			return -1;
	}
	atomic_store(&loop->stop, false);
	return 0;
}
