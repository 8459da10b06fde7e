/* loop: one epoll event loop per worker thread, with timers and cross-thread posts.
 *
 * Threading model: a struct loop belongs to the thread that calls loop_run() on it. Every
 * function here must be called on that thread, except loop_post(), loop_wakeup() and
 * loop_stop(), which any thread may call. Nothing on the per-event path takes a lock.
 *
 * File descriptors: the caller embeds a struct loop_io in its own struct, sets it up with
 * loop_io_init(), and registers it with loop_io_add(). The loop never owns or closes fds.
 * Call loop_io_del() before close(fd) (or before freeing the struct that embeds the
 * loop_io): it also forgets events of the current batch that are still waiting for that
 * io, so freeing a connection from inside another connection's callback is safe.
 * loop_io_forget() does the same without the epoll_ctl, for an fd closed right after that
 * nothing else shares (close() then removes it from the epoll set, as nginx relies on).
 *
 * Level- versus edge-triggered: level-triggered by default. A proxy keeps LOOP_READ on for
 * as long as it wants input and turns LOOP_WRITE on only when a write would block, so in
 * the common case (request in, response out, nothing blocks) no epoll_ctl happens after
 * the first one, and level-triggering forgives a callback that stops reading early (for
 * fairness or back-pressure) without losing the wake-up. A caller that wants the
 * nginx-style "register both directions once" model passes LOOP_EDGE: epoll then reports
 * each transition once and the callback MUST read (or write) until it gets EAGAIN -- for
 * TLS, until tls_read() says WANT_READ, which also covers records OpenSSL has already
 * buffered -- or it will never be woken for the remaining data.
 *
 * Time: loop_now_ms() is CLOCK_MONOTONIC in milliseconds, read once per iteration (after
 * epoll_wait returns), so timers armed in one batch of events all share one "now".
 *
 * Timers: a binary min-heap; arm, re-arm and cancel are O(log n), finding the next expiry
 * is O(1). A struct loop_timer is embedded in the caller's struct like a loop_io. A timer
 * callback may re-arm its own timer or arm/cancel any other.
 *
 * Deferred work (nginx's ngx_post_event, HAProxy's tasklet_wakeup): a struct loop_task,
 * embedded like a timer, is posted to run "after this event" -- once the current batch of
 * I/O events and the expired timers have been dispatched, in the same iteration. Posting
 * and cancelling are O(1) (an intrusive doubly linked list, no heap, no allocation), and
 * posting a task that is already posted does nothing, so a handler may post freely. A task
 * posted while the queue is being run (also by its own callback) runs in the next
 * iteration, whose epoll_wait then does not block: work that re-posts itself (a reader
 * stopping after a burst, for fairness) lets the other connections' events in between.
 * This is what zero-delay timers were used for before; a timer costs O(log n) heap work
 * per arm and cancel. */
#ifndef EGRESS_NET_LOOP_H
#define EGRESS_NET_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

/* Interest and event bits (not epoll's values: loop.c translates). */
#define LOOP_READ  0x01u   /* readable, or peer closed its side (read returns 0) */
#define LOOP_WRITE 0x02u   /* writable, or a nonblocking connect finished (check SO_ERROR) */
#define LOOP_ERROR 0x04u   /* revents only: EPOLLERR or EPOLLHUP; read/write to learn why */
#define LOOP_EDGE  0x08u   /* interest only: edge-triggered (see the file comment) */
/* Interest: also report that the peer has shut its writing side (EPOLLRDHUP). Revents:
 * it has -- comes with LOOP_READ; once the receive queue is drained (a read returned less
 * than asked), the stream has ended and a read that would return 0 can be skipped, as
 * HAProxy does. */
#define LOOP_RDHUP 0x10u

struct loop_io {
	int fd;
	unsigned interest;     /* LOOP_READ | LOOP_WRITE | LOOP_EDGE | LOOP_RDHUP, as registered */
	bool registered;       /* between loop_io_add and loop_io_del */
	/* revents: LOOP_READ / LOOP_WRITE / LOOP_ERROR / LOOP_RDHUP. LOOP_ERROR comes with the
	 * interested directions so that a callback that only looks at READ or WRITE still
	 * runs its read/write and learns the error from it. */
	void (*cb)(struct loop *loop, struct loop_io *io, unsigned revents);
};

struct loop_timer {
	uint64_t when;         /* absolute loop_now_ms() deadline while armed */
	size_t heap_idx;       /* position in the heap; SIZE_MAX when not armed */
	void (*cb)(struct loop *loop, struct loop_timer *t);
};

struct loop_task {
	struct loop_task *next, *prev;  /* in the loop's queue while posted */
	bool posted;
	void (*cb)(struct loop *loop, struct loop_task *t);
};

/* Creates a loop (epoll fd + eventfd for wake-ups). Returns NULL with errno set. */
struct loop *loop_new(void);
/* Frees the loop. ios and timers still registered are simply forgotten (the caller owns
 * them); callbacks still queued by loop_post are freed without being called. */
void loop_free(struct loop *loop);

/* Runs until loop_stop(). Returns 0 after a stop, -1 with errno if epoll_wait fails. */
int loop_run(struct loop *loop);
/* One iteration: waits at most timeout_ms (-1: until an event or the next timer; 0: poll),
 * dispatches I/O events, expired timers and posted callbacks. Returns the number of I/O
 * events dispatched, or -1 with errno. For tests and for draining at shutdown. */
int loop_run_once(struct loop *loop, int timeout_ms);
/* Makes loop_run() return after the current iteration. Any thread. */
void loop_stop(struct loop *loop);
/* Interrupts a blocking epoll_wait (eventfd write). Any thread; async-signal-safe. */
void loop_wakeup(struct loop *loop);
/* Queues fn(loop, arg) to run on the loop's thread, in order of posting, during the next
 * iteration. Any thread. Only the queue is locked: this is for control-plane work (a new
 * config snapshot, a shutdown), not for per-request messages. Always succeeds. */
void loop_post(struct loop *loop, void (*fn)(struct loop *loop, void *arg), void *arg);

/* Cached monotonic time in milliseconds (see the file comment). */
uint64_t loop_now_ms(const struct loop *loop);
/* Re-reads the clock now, for code that ran long inside one iteration. */
void loop_update_time(struct loop *loop);

/* I/O registration. interest is a mask of LOOP_READ, LOOP_WRITE and LOOP_EDGE; an io may
 * be registered with interest 0 (nothing reported except errors). */
void loop_io_init(struct loop_io *io, int fd,
                  void (*cb)(struct loop *loop, struct loop_io *io, unsigned revents));
/* Returns 0 or -1 with errno (EEXIST if already registered, or epoll_ctl's errno). */
int loop_io_add(struct loop *loop, struct loop_io *io, unsigned interest);
/* Changes the interest; does nothing (no syscall) when it is unchanged. 0 or -1/errno. */
int loop_io_mod(struct loop *loop, struct loop_io *io, unsigned interest);
/* Unregisters (no-op if not registered) and drops its pending events of this iteration.
 * Call it before close(io->fd). Returns 0 or -1/errno (the io is forgotten either way). */
int loop_io_del(struct loop *loop, struct loop_io *io);
/* loop_io_del without the EPOLL_CTL_DEL, for an io whose fd the caller closes right
 * after (nginx's NGX_CLOSE_EVENT): close() takes the fd out of the epoll set when it is
 * the last descriptor of its open file, so this is only for fds that were never dup()ed
 * nor inherited by a child (sockets of the proxy's own; the proxy does not fork). Its
 * pending events of this iteration are dropped as loop_io_del drops them, so a stale
 * event never reaches the freed struct. A system call per socket saved. */
void loop_io_forget(struct loop *loop, struct loop_io *io);
/* Hands from's registration (and its fd) over to to, which gets the callback given to
 * loop_io_init and the interest here: one EPOLL_CTL_MOD instead of a DEL and an ADD, for
 * a connection that changes owner (an HTTP connection becoming a tunnel). from is left
 * unregistered with fd -1; its pending events of this iteration go to to. 0 or -1/errno
 * (then to is unregistered and from still holds the fd, unregistered). */
int loop_io_move(struct loop *loop, struct loop_io *from, struct loop_io *to, unsigned interest);

/* Timers. after_ms is relative to loop_now_ms(); arming an armed timer moves it. */
void loop_timer_init(struct loop_timer *t, void (*cb)(struct loop *loop, struct loop_timer *t));
void loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t after_ms);
void loop_timer_cancel(struct loop *loop, struct loop_timer *t);  /* no-op if not armed */
bool loop_timer_armed(const struct loop_timer *t);
/* Deferred work (see the file comment). A task must be cancelled before the struct that
 * embeds it is freed (loop_task_cancel is a no-op when it is not posted). */
void loop_task_init(struct loop_task *t, void (*cb)(struct loop *loop, struct loop_task *t));
void loop_task_post(struct loop *loop, struct loop_task *t);
void loop_task_cancel(struct loop *loop, struct loop_task *t);
bool loop_task_posted(const struct loop_task *t);
/* Number of armed timers, posted tasks and registered ios: for leak checks in tests and
 * admin stats. */
size_t loop_timer_count(const struct loop *loop);
size_t loop_task_count(const struct loop *loop);
size_t loop_io_count(const struct loop *loop);

#endif
