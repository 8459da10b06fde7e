#include "admin/admin.h"
#include "core/util.h"
#include "http/h1.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ADMIN_HEAD_MAX 8192
#define ADMIN_TIMEOUT_MS 10000
#define ADMIN_RESUME_MS 100

struct admin {
	struct loop_io io;
	struct loop *loop;
	admin_handler handler;
	void *arg;
	/* Out of descriptors: the spare one (sock_accept_drop) and the timer that resumes a
	 * listener paused because not even the spare helped. */
	int spare_fd;
	struct loop_timer resume;
	/* Open connections, closed by admin_stop: a health checker's may be open at exit. */
	struct admin_conn *conns;
};

struct admin_conn {
	struct loop_io io;
	struct loop_timer timer;
	struct admin *a;
	char in[ADMIN_HEAD_MAX];
	size_t in_len;
	struct h1_parser p;
	struct sbuf out;
	size_t out_off;
	bool responding;
	struct admin_conn *next, *prev;
};

static void admin_conn_close(struct admin_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	loop_timer_cancel(c->a->loop, &c->timer);
	loop_io_del(c->a->loop, &c->io);
	close(c->io.fd);
	sbuf_free(&c->out);
	free(c);
}

static void admin_conn_flush(struct admin_conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = write(c->io.fd, c->out.s + c->out_off, c->out.len - c->out_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			loop_io_mod(c->a->loop, &c->io, LOOP_WRITE);
			return;
		}
		if (n <= 0)
			break;
		c->out_off += (size_t)n;
	}
	admin_conn_close(c);
}

static void admin_respond(struct admin_conn *c, int status, const char *ctype,
                          const struct sbuf *body)
{
	sbuf_addf(&c->out, "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
	          "cache-control: no-cache, max-age=0\r\nx-content-type-options: nosniff\r\n"
	          "connection: close\r\n\r\n",
	          status, h1_status_reason(status), ctype, body ? body->len : 0);
	if (body && body->len)
		sbuf_add(&c->out, body->s, body->len);
	c->responding = true;
	admin_conn_flush(c);
}

static void admin_conn_read(struct admin_conn *c)
{
	struct h1_msg *m;
	ssize_t n;
	int rc;

	n = read(c->io.fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		admin_conn_close(c);
		return;
	}
	c->in_len += (size_t)n;
	m = xmalloc(sizeof(*m));
	rc = h1_parse(&c->p, c->in, c->in_len, m);
	if (rc == H1_AGAIN && c->in_len < sizeof(c->in)) {
		free(m);
		return;
	}
	if (rc != H1_OK) {
		struct sbuf body = SBUF_INIT;

		sbuf_addf(&body, "%s\n", c->p.reason ? c->p.reason : "request head too large");
		admin_respond(c, rc == H1_ERROR ? c->p.status : 431, "text/plain", &body);
		sbuf_free(&body);
		free(m);
		return;
	}
	{
		char method[16], *path;
		struct sbuf body = SBUF_INIT;
		const char *ctype = "text/plain; charset=UTF-8";
		int status;

		snprintf(method, sizeof(method), "%.*s", (int)m->method.len, c->in + m->method.off);
		path = xstrndup(c->in + m->target.off, m->target.len);
		status = c->a->handler(c->a->arg, method, path, &body, &ctype);
		admin_respond(c, status, ctype, &body);
		sbuf_free(&body);
		free(path);
	}
	free(m);
}

static void admin_conn_on_io(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct admin_conn *c = (struct admin_conn *)io;

	(void)loop;
	(void)ev;
	if (c->responding)
		admin_conn_flush(c);
	else
		admin_conn_read(c);
}

static void admin_conn_on_timer(struct loop *loop, struct loop_timer *t)
{
	struct admin_conn *c = (struct admin_conn *)((char *)t - offsetof(struct admin_conn, timer));

	(void)loop;
	admin_conn_close(c);
}

/* accept() found no descriptor (or no memory) for a pending connection. The listener
 * stays readable and epoll is level-triggered, so returning would spin the control
 * thread: the connection is dropped on the spare descriptor, or when that fails the
 * listener's interest is removed for ADMIN_RESUME_MS. Returns true when accepting may
 * go on. */
static bool admin_out_of_fds(struct admin *a, int err)
{
	int rc = (err == EMFILE || err == ENFILE) ? sock_accept_drop(a->io.fd, &a->spare_fd) : -1;

	if (rc == 0)
		return true;
	if (rc == 1)
		return false;
	loop_io_mod(a->loop, &a->io, 0);
	loop_timer_arm(a->loop, &a->resume, ADMIN_RESUME_MS);
	return false;
}

static void admin_on_resume(struct loop *loop, struct loop_timer *t)
{
	struct admin *a = (struct admin *)((char *)t - offsetof(struct admin, resume));

	if (a->spare_fd < 0)
		a->spare_fd = sock_spare_open();
	loop_io_mod(loop, &a->io, LOOP_READ);
}

static void admin_on_accept(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct admin *a = (struct admin *)io;

	(void)ev;
	for (int i = 0; i < 64; i++) {
		struct admin_conn *c;
		int fd = sock_accept(a->io.fd, NULL);

		if (fd < 0) {
			if (errno == ECONNABORTED || errno == EPROTO || errno == EINTR)
				continue;
			if (sock_err_no_resources(errno) && admin_out_of_fds(a, errno))
				continue;
			return;
		}
		c = xcalloc(1, sizeof(*c));
		c->a = a;
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		h1_parser_init(&c->p, true, 0);
		loop_io_init(&c->io, fd, admin_conn_on_io);
		loop_timer_init(&c->timer, admin_conn_on_timer);
		loop_io_add(loop, &c->io, LOOP_READ);
		loop_timer_arm(loop, &c->timer, ADMIN_TIMEOUT_MS);
	}
}

struct admin *admin_start(struct loop *loop, const struct sock_addr *addr, admin_handler h,
                          void *arg)
{
	struct admin *a;
	int fd = sock_listen(addr, 64, 0);

	if (fd < 0)
		return NULL;
	a = xcalloc(1, sizeof(*a));
	a->loop = loop;
	a->handler = h;
	a->arg = arg;
	a->spare_fd = sock_spare_open();
	loop_timer_init(&a->resume, admin_on_resume);
	loop_io_init(&a->io, fd, admin_on_accept);
	loop_io_add(loop, &a->io, LOOP_READ);
	return a;
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	/* A client still connected at exit (one that connected and has not yet been read). */
	while (a->conns)
		admin_conn_close(a->conns);
	loop_io_del(a->loop, &a->io);
	loop_timer_cancel(a->loop, &a->resume);
	close(a->io.fd);
	if (a->spare_fd >= 0)
		close(a->spare_fd);
	free(a);
}
