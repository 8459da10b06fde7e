/* core_harness: the request core's test environment (see core_harness.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core_harness.h"
#include "core/util.h"
#include "net/loop.h"
#include "net/sock.h"
#include "proxy/alog.h"
#include "proxy/fwd.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"

/* ---- the recording codec tables ---- */

struct core_rec rec;

static void rec_local_reply(struct stream *st, int code, unsigned flags, const char *details,
                            const char *body)
{
	struct rec_reply *r = rec.nlocal < REC_MAX ? &rec.local[rec.nlocal++] : NULL;

	fwd_down_h1_ops.local_reply(st, code, flags, details, body);
	if (r) {
		r->code = code;
		r->flags = flags;
		r->st_flags = st->flags;
		snprintf(r->details, sizeof(r->details), "%s", details ? details : "");
	}
}

static void rec_resp_head(struct stream *st)
{
	if (rec.nresp < REC_MAX)
		rec.resp[rec.nresp++] = st->resp->status;
	fwd_down_h1_ops.resp_head(st);
}

static void rec_send(struct dconn *d, const void *p, size_t n)
{
	rec.sent += n;
	fwd_down_h1_ops.send(d, p, n);
}

static void rec_send_head(struct stream *st)
{
	rec.send_head++;
	fwd_up_h1_ops.send_head(st);
}

static struct fwd_down_ops rec_down;
static struct fwd_up_ops rec_up;

static void rec_install(void)
{
	rec_down = fwd_down_h1_ops;
	rec_down.local_reply = rec_local_reply;
	rec_down.resp_head = rec_resp_head;
	rec_down.send = rec_send;
	rec_up = fwd_up_h1_ops;
	rec_up.send_head = rec_send_head;
	fwd_down = &rec_down;
	fwd_up = &rec_up;
	memset(&rec, 0, sizeof(rec));
}

/* ---- the environment: store, snapshot, one worker, the peers' ports ---- */

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A listening socket on 127.0.0.1, any port (*port set). */
int listen_any(uint16_t *port)
{
	struct sock_addr a;
	int fd;

	assert_int_equal(sock_addr_from_ip("127.0.0.1", 0, &a), 0);
	fd = sock_listen(&a, 0, 0);
	assert_true(fd >= 0);
	assert_int_equal(sock_local_addr(fd, &a), 0);
	*port = sock_addr_port(&a);
	return fd;
}

struct env *core_env_new(void)
{
	struct env *e = xcalloc(1, sizeof(*e));
	int fd;

	snprintf(e->root, sizeof(e->root), "/tmp/test_core.XXXXXX");
	assert_non_null(mkdtemp(e->root));
	e->alog[0] = e->alog[1] = -1;
	e->up_lfd = listen_any(&e->up_port);
	fd = listen_any(&e->dead_port);       /* closed again: nobody listens there */
	close(fd);
	fd = listen_any(&e->gw_port);         /* the worker listens there instead */
	close(fd);
	return e;
}

int core_env_start(struct env *e, enum snap_role role, const char *yaml)
{
	static const char *gw_labels[] = { "app=istio-egressgateway", "istio=egressgateway",
	                                   NULL };
	static const char *sc_labels[] = { "app=client", NULL };
	struct snap_params sp;
	char *path = xasprintf("%s/config/core.yaml", e->root);

	*strrchr(path, '/') = '\0';
	assert_int_equal(mkdir_p(path, 0700), 0);
	path[strlen(path)] = '/';
	assert_int_equal(file_write_atomic(path, yaml, strlen(yaml), 0600), 0);
	free(path);

	if (store_load(e->root, "default", &e->contents, &e->d) < 0) {
		diags_print(&e->d, stderr);
		return -1;
	}
	memset(&sp, 0, sizeof(sp));
	sp.role = role;
	sp.namespace = role == SNAP_ROLE_GATEWAY ? "istio-system" : "default";
	sp.labels = role == SNAP_ROLE_GATEWAY ? gw_labels : sc_labels;
	sp.listen_address = "127.0.0.1";
	sp.store_root = e->root;
	sp.http2 = e->http2;
	e->s = snap_build(&e->contents, &sp, &e->d);
	if (!e->s) {
		diags_print(&e->d, stderr);
		return -1;
	}

	e->p.role = role;
	if (role == SNAP_ROLE_SIDECAR) {
		/* The capture listener, reached directly (not redirected): routed by the
		 * request's authority. */
		assert_int_equal(sock_addr_from_ip("127.0.0.1", e->gw_port, &e->p.outbound), 0);
		e->p.outbound_addr = "127.0.0.1";
		e->p.outbound_on = true;
		e->p.outbound_policy = PROXY_REGISTRY_ONLY;
	}
	if (pipe(e->alog) < 0 || sock_set_nonblock(e->alog[0]) < 0)
		return -1;
	e->p.alog_on = true;
	e->p.alog_fd = e->alog[1];
	e->p.alog_format = ALOG_TEXT;
	e->p.worker_stuck_ms = 10000;
	e->p.header_timeout_ms = 10000;
	e->p.idle_timeout_ms = 60000;
	if (proxy_start(&e->p, 1, e->s) < 0)
		return -1;
	e->w = &e->p.workers[0];
	rec_install();   /* after proxy_start: fwd_init set the codecs' tables */
	return 0;
}

int core_env_free(struct env *e)
{
	char cmd[128];

	/* proxy_stop without the thread: what it does after the join. */
	if (e->w) {
		fwd_close_all(e->w);
		fwd_pool_close_all(e->w);
		proxy_free(&e->p);
	}
	if (e->s)
		snap_unref(e->s);
	store_contents_free(&e->contents);
	diags_free(&e->d);
	close(e->up_lfd);
	if (e->alog[0] >= 0) {
		close(e->alog[0]);
		close(e->alog[1]);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->root);
	free(e);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- turning the loop, and the peers ---- */

void turn(struct env *e)
{
	assert_true(loop_run_once(e->w->loop, 2) >= 0);
}

/* A client connected to the worker's Gateway listener (the connect completes in the
 * kernel's backlog; the worker accepts at its next turn). */
int client(struct env *e, int rcvbuf)
{
	struct sock_addr a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	if (rcvbuf)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	assert_int_equal(sock_addr_from_ip("127.0.0.1", e->gw_port, &a), 0);
	assert_int_equal(connect(fd, &a.u.sa, a.len), 0);
	assert_int_equal(sock_set_nonblock(fd), 0);
	return fd;
}

void put_all(int fd, const char *s)
{
	size_t len = strlen(s), off = 0;

	while (off < len) {
		ssize_t n = write(fd, s + off, len - off);

		assert_true(n > 0);
		off += (size_t)n;
	}
}

void put_bytes(int fd, const void *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(fd, (const char *)p + off, len - off);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		assert_true(n > 0);
		off += (size_t)n;
	}
}

/* Reads what fd has now into b; returns false once the peer closed. */
bool take(int fd, struct sbuf *b)
{
	char buf[65536];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n > 0) {
			sbuf_add(b, buf, (size_t)n);
			continue;
		}
		if (n == 0)
			return false;
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET);
		return errno != ECONNRESET;
	}
}

/* A whole response at b->s + *off (head with content-length, and its body): its status,
 * body in *body (pointer into b) and *blen; *off moves past it. 0 when not whole yet. */
int resp_at(const struct sbuf *b, size_t *off, const char **body, size_t *blen)
{
	const char *p = b->s ? b->s + *off : NULL;
	const char *end, *cl;
	size_t hl, len = 0;
	int status;

	if (!p || !(end = strstr(p, "\r\n\r\n")))
		return 0;
	hl = (size_t)(end - p) + 4;
	assert_int_equal(sscanf(p, "HTTP/1.1 %d", &status), 1);
	cl = strstr(p, "content-length: ");
	if (cl && cl < end)
		len = strtoull(cl + 16, NULL, 10);
	if (b->len - *off < hl + len)
		return 0;
	*body = p + hl;
	*blen = len;
	*off += hl + len;
	return status;
}

/* Turns the loop until the client on fd has a whole response after *off. */
int await_resp(struct env *e, int fd, struct sbuf *b, size_t *off, const char **body,
                      size_t *blen)
{
	uint64_t end = now_ms() + WAIT_MS;
	int status;

	for (;;) {
		take(fd, b);
		if ((status = resp_at(b, off, body, blen)) != 0)
			return status;
		if (now_ms() > end)
			fail_msg("no response; client has %zu bytes", b->len);
		turn(e);
	}
}

/* The upstream server accepts the worker's next connection. */
int up_accept(struct env *e)
{
	uint64_t end = now_ms() + WAIT_MS;

	for (;;) {
		int fd = sock_accept(e->up_lfd, NULL);

		if (fd >= 0)
			return fd;
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		if (now_ms() > end)
			fail_msg("the worker made no upstream connection");
		turn(e);
	}
}

/* Turns the loop until b (what the upstream fd received) holds n request heads. */
void up_heads(struct env *e, int fd, struct sbuf *b, int n)
{
	uint64_t end = now_ms() + WAIT_MS;

	for (;;) {
		int seen = 0;

		take(fd, b);
		for (const char *p = b->s; p && (p = strstr(p, "\r\n\r\n")); p += 4)
			seen++;
		if (seen >= n)
			return;
		if (now_ms() > end)
			fail_msg("upstream has %d of %d request heads", seen, n);
		turn(e);
	}
}

/* Turns the loop until the worker closes its end of the upstream connection s. */
void up_eof(struct env *e, int s)
{
	uint64_t end = now_ms() + WAIT_MS;
	ssize_t n;
	char x;

	while ((n = read(s, &x, 1)) < 0 && errno == EAGAIN && now_ms() < end)
		turn(e);
	assert_int_equal(n, 0);
}

void turn_for(struct env *e, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end)
		turn(e);
}

bool contains(const char *p, size_t n, const char *s)
{
	return p && memmem(p, n, s, strlen(s)) != NULL;   /* an empty sbuf's p is NULL */
}

/* The access log lines written so far (NUL-terminated in b). */
void alog_take(struct env *e, struct sbuf *b)
{
	worker_alog_flush(e->w);
	take(e->alog[0], b);
	sbuf_add(b, "", 1);
}

