/* Tests for the request core (proxy/fwd_core.c, proxy/fwd_conn.c) behind an HTTP/2
 * downstream: the server session and its streams' virtual connections (fwd_h2.c,
 * fwd_vconn.c), driven by a real nghttp2 client session in the test.
 *
 * The environment is core_harness.h's, in the sidecar role: the client speaks HTTP/2 with
 * prior knowledge to the capture listener (the same fwd_h2.c session and virtual
 * connections as the gateway's ALPN h2 streams, without TLS in the test), the requests
 * are routed on their :authority (port 80 of ServiceEntries whose endpoint ports map to
 * the test's loopback server) and go upstream over HTTP/1.1, which the test serves by
 * hand. The recording tables show what the core asked of the codecs.
 *
 * Cases: 503 UF (connection refused), 504 UT (route timeout), 503 UO (maxConnections /
 * http1MaxPendingRequests, streams of one connection), an upstream reset mid-response
 * (the stream is reset, the connection and its other streams live on), trailers crossing
 * both ways (request trailers into a chunked upstream body, the upstream's chunked
 * trailer section out as a trailing HEADERS frame), back-pressure (a client that does not
 * open its stream window pauses the upstream read; reading resumes it), and many
 * concurrent streams answered out of order, each getting its own response. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "core_harness.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "net/sock.h"
#include "proxy/alog.h"
#include "proxy/fwd_int.h"
#include "proxy/snap.h"
#include "proxy/worker.h"

static const char cfg_fmt[] =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: up, namespace: default}\n"
	"spec:\n"
	"  hosts: [up.test, cb.test]\n"
	"  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints: [{address: 127.0.0.1, ports: {http: %u}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: down, namespace: default}\n"
	"spec:\n"
	"  hosts: [down.test]\n"
	"  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints: [{address: 127.0.0.1, ports: {http: %u}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: cb, namespace: default}\n"
	"spec:\n"
	"  host: cb.test\n"
	"  trafficPolicy:\n"
	"    connectionPool:\n"
	"      tcp: {maxConnections: 1}\n"
	"      http: {http1MaxPendingRequests: 1}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: up, namespace: default}\n"
	"spec:\n"
	"  hosts: [up.test]\n"
	"  http:\n"
	"  - name: slow\n"
	"    match: [{uri: {prefix: /slow}}]\n"
	"    timeout: 0.2s\n"
	"    route: [{destination: {host: up.test}}]\n"
	"  - name: up\n"
	"    route: [{destination: {host: up.test}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: down, namespace: default}\n"
	"spec:\n"
	"  hosts: [down.test]\n"
	"  http:\n"
	/* One attempt: the UF case is about the failure, not Istio's default retries. */
	"  - {retries: {attempts: 0}, route: [{destination: {host: down.test}}]}\n";

static int env_setup(void **state)
{
	struct env *e = core_env_new();
	char *yaml = xasprintf(cfg_fmt, e->up_port, e->dead_port);
	int rc = core_env_start(e, SNAP_ROLE_SIDECAR, yaml);

	free(yaml);
	*state = e;
	return rc;
}

static int env_teardown(void **state)
{
	return core_env_free(*state);
}

/* ---- the HTTP/2 client: nghttp2's own session over a socket ---- */

#define MAXS 32

struct cs {                           /* one stream as the client saw it */
	int32_t id;
	int status;
	struct sbuf body;
	struct sbuf trailers;         /* "name: value\n" of a trailing HEADERS */
	bool closed;
	uint32_t err;                 /* RST_STREAM's code (0: closed cleanly) */
	/* The request body and trailers the client sends. */
	const char *req_body;
	size_t req_len, req_off;
	bool req_trailers;
};

struct h2cl {
	nghttp2_session *s;
	int fd;
	struct cs st[MAXS];
	int n;
	bool eof;
};

static struct cs *cs_of(nghttp2_session *s, int32_t id)
{
	return nghttp2_session_get_stream_user_data(s, id);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
	struct cs *c = cs_of(s, f->hd.stream_id);

	if (!c || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		c->status = atoi((const char *)value);
	} else if (f->headers.cat == NGHTTP2_HCAT_HEADERS && c->status) {
		sbuf_add(&c->trailers, name, namelen);
		sbuf_add(&c->trailers, ": ", 2);
		sbuf_add(&c->trailers, value, valuelen);
		sbuf_add(&c->trailers, "\n", 1);
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d,
                   size_t len, void *user)
{
	struct cs *c = cs_of(s, id);

	if (c)
		sbuf_add(&c->body, d, len);
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t err, void *user)
{
	struct cs *c = cs_of(s, id);

	if (c) {
		c->closed = true;
		c->err = err;
	}
	return 0;
}

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct cs *c = src->ptr;
	size_t n = c->req_len - c->req_off < len ? c->req_len - c->req_off : len;

	memcpy(buf, c->req_body + c->req_off, n);
	c->req_off += n;
	if (c->req_off == c->req_len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (c->req_trailers) {
			static const nghttp2_nv t[] = {
				{ (uint8_t *)"x-req-trailer", (uint8_t *)"yes", 13, 3, 0 },
			};

			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			assert_int_equal(nghttp2_submit_trailer(s, id, t, 1), 0);
		}
	}
	return (ssize_t)n;
}

/* Connects to the capture listener; manual_window: the client opens its stream windows
 * only when h2cl_consume says so (NGHTTP2_OPT_NO_AUTO_WINDOW_UPDATE). */
static struct h2cl *h2cl_new(struct env *e, bool manual_window)
{
	struct h2cl *c = xcalloc(1, sizeof(*c));
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;

	c->fd = client(e, 0);
	assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
	assert_int_equal(nghttp2_option_new(&opt), 0);
	if (manual_window)
		nghttp2_option_set_no_auto_window_update(opt, 1);
	assert_int_equal(nghttp2_session_client_new2(&c->s, cbs, c, opt), 0);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	assert_int_equal(nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
	return c;
}

static void h2cl_free(struct h2cl *c)
{
	nghttp2_session_del(c->s);
	close(c->fd);
	for (int i = 0; i < c->n; i++) {
		sbuf_free(&c->st[i].body);
		sbuf_free(&c->st[i].trailers);
	}
	free(c);
}

/* A request; body (len bytes) and trailers optional. Returns its stream. */
static struct cs *h2cl_req(struct h2cl *c, const char *method, const char *host,
                           const char *path, const char *body, size_t len, bool trailers)
{
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
		{ (uint8_t *)":authority", (uint8_t *)host, 10, strlen(host), 0 },
		{ (uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0 },
		{ (uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0 },
	};
	struct cs *s;
	nghttp2_data_provider prd;

	assert_true(c->n < MAXS);
	s = &c->st[c->n++];
	s->req_body = body;
	s->req_len = len;
	s->req_trailers = trailers;
	prd.source.ptr = s;
	prd.read_callback = body_read;
	s->id = nghttp2_submit_request(c->s, NULL, nv, 5, body ? &prd : NULL, s);
	assert_true(s->id > 0);
	return s;
}

/* Writes what the session has queued, turns the worker's loop once, feeds what came. */
static void h2cl_step(struct env *e, struct h2cl *c)
{
	const uint8_t *p;
	char buf[65536];
	ssize_t n;

	while ((n = nghttp2_session_mem_send(c->s, &p)) > 0)
		put_bytes(c->fd, p, (size_t)n);
	assert_true(n == 0);
	turn(e);
	while ((n = read(c->fd, buf, sizeof(buf))) > 0)
		assert_int_equal(nghttp2_session_mem_recv(c->s, (const uint8_t *)buf, (size_t)n), n);
	if (n == 0)
		c->eof = true;
	else
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static void h2cl_wait_closed(struct env *e, struct h2cl *c, struct cs *s)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (!s->closed) {
		if (now_ms() > end)
			fail_msg("stream %d not closed (status %d, %zu body bytes)", s->id, s->status,
			         s->body.len);
		h2cl_step(e, c);
	}
}

/* Opens the stream's and the connection's windows for what the client has read. */
static void h2cl_consume(struct h2cl *c, struct cs *s, size_t n)
{
	assert_int_equal(nghttp2_session_consume(c->s, s->id, n), 0);
}

/* The upstream connection's next request head, read while the client's session moves. */
static int h2_up_accept(struct env *e, struct h2cl *c)
{
	uint64_t end = now_ms() + WAIT_MS;

	for (;;) {
		int fd = sock_accept(e->up_lfd, NULL);

		if (fd >= 0)
			return fd;
		if (now_ms() > end)
			fail_msg("the worker made no upstream connection");
		h2cl_step(e, c);
	}
}

/* ---- local replies: 503 UF, 504 UT, 503 UO ---- */

static void uf_refused(void **state)
{
	struct env *e = *state;
	struct h2cl *c = h2cl_new(e, false);
	struct cs *s = h2cl_req(c, "GET", "down.test", "/x", NULL, 0, false);
	struct sbuf lg = SBUF_INIT;

	h2cl_wait_closed(e, c, s);
	assert_int_equal(s->err, 0);
	assert_int_equal(s->status, 503);
	assert_true(contains(s->body.s, s->body.len, "reset reason: connection failure"));
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].code, 503);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UF);
	assert_string_equal(rec.local[0].details,
	                    "upstream_reset_before_response_started{connection_failure}");
	assert_int_equal(STAT_GET(e->w->st.urq_total), 1);
	assert_int_equal(STAT_GET(e->w->st.ucx_connect_fail), 1);
	alog_take(e, &lg);
	assert_non_null(strstr(lg.s, "\"GET /x HTTP/2\" 503 UF "
	                             "upstream_reset_before_response_started{connection_failure}"));
	sbuf_free(&lg);
	h2cl_free(c);
}

static void ut_route_timeout(void **state)
{
	struct env *e = *state;
	struct h2cl *c = h2cl_new(e, false);
	uint64_t t0 = now_ms(), took;
	struct cs *s = h2cl_req(c, "GET", "up.test", "/slow/1", NULL, 0, false);
	struct sbuf u = SBUF_INIT, lg = SBUF_INIT;
	int up = h2_up_accept(e, c);

	up_heads(e, up, &u, 1);
	h2cl_wait_closed(e, c, s);
	took = now_ms() - t0;
	assert_int_equal(s->status, 504);
	assert_int_equal(s->err, 0);
	assert_true(took >= 190 && took < 2000);
	assert_true(contains(s->body.s, s->body.len, "upstream request timeout"));
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UT);
	assert_string_equal(rec.local[0].details, "response_timeout");
	assert_int_equal(STAT_GET(e->w->st.urq_timeout), 1);
	alog_take(e, &lg);
	assert_non_null(strstr(lg.s, "\"GET /slow/1 HTTP/2\" 504 UT response_timeout "));
	up_eof(e, up);                       /* closed, not pooled */
	close(up);
	sbuf_free(&u);
	sbuf_free(&lg);
	h2cl_free(c);
}

/* Three streams of one connection to cb.test (maxConnections 1, one pending): the first
 * has the connection, the second waits, the third is refused 503 UO; the waiting one goes
 * out once the first is answered. */
static void uo_overflow(void **state)
{
	struct env *e = *state;
	struct h2cl *c = h2cl_new(e, false);
	struct cs *a = h2cl_req(c, "GET", "cb.test", "/a", NULL, 0, false), *b, *x;
	struct sbuf u = SBUF_INIT;
	int up = h2_up_accept(e, c);
	uint64_t end;

	up_heads(e, up, &u, 1);
	b = h2cl_req(c, "GET", "cb.test", "/b", NULL, 0, false);
	for (end = now_ms() + WAIT_MS; STAT_GET(e->w->st.urq_pending_active) < 1;) {
		if (now_ms() > end)
			fail_msg("the second stream did not queue");
		h2cl_step(e, c);
	}
	x = h2cl_req(c, "GET", "cb.test", "/c", NULL, 0, false);
	h2cl_wait_closed(e, c, x);
	assert_int_equal(x->status, 503);
	assert_true(contains(x->body.s, x->body.len, "reset reason: overflow"));
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UO);
	assert_string_equal(rec.local[0].details, "upstream_reset_before_response_started{overflow}");
	assert_false(b->closed);
	assert_int_equal(b->status, 0);

	put_all(up, "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na");
	h2cl_wait_closed(e, c, a);
	assert_int_equal(a->status, 200);
	up_heads(e, up, &u, 2);
	assert_true(contains(u.s, u.len, "GET /b "));
	put_all(up, "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb");
	h2cl_wait_closed(e, c, b);
	assert_int_equal(b->status, 200);
	assert_int_equal(b->body.len, 1);
	assert_memory_equal(b->body.s, "b", 1);
	assert_int_equal(STAT_GET(e->w->st.ucx_total), 1);
	close(up);
	sbuf_free(&u);
	h2cl_free(c);
}

/* ---- a reset mid-response ---- */

/* The upstream closes after part of a content-length body: the stream, whose head has
 * gone out, can only be reset (not ended as if whole); the connection and a second
 * stream on it go on. */
static void reset_mid_response(void **state)
{
	struct env *e = *state;
	struct h2cl *c = h2cl_new(e, false);
	struct cs *s = h2cl_req(c, "GET", "up.test", "/cut", NULL, 0, false), *s2;
	struct sbuf u = SBUF_INIT, lg = SBUF_INIT;
	int up = h2_up_accept(e, c), up2;

	up_heads(e, up, &u, 1);
	put_all(up, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789");
	while (s->body.len < 10)
		h2cl_step(e, c);
	assert_int_equal(s->status, 200);
	assert_false(s->closed);
	close(up);
	h2cl_wait_closed(e, c, s);
	/* The proxy's RST_STREAM (INTERNAL_ERROR), not END_STREAM (nghttp2 here would answer
	 * a short content-length body with PROTOCOL_ERROR of its own). */
	assert_int_equal(s->err, NGHTTP2_INTERNAL_ERROR);
	assert_int_equal(s->body.len, 10);
	assert_int_equal(rec.nresp, 1);
	alog_take(e, &lg);
	assert_non_null(strstr(lg.s, "\"GET /cut HTTP/2\" 200 UC "));

	s2 = h2cl_req(c, "GET", "up.test", "/after", NULL, 0, false);
	up2 = h2_up_accept(e, c);
	sbuf_reset(&u);
	up_heads(e, up2, &u, 1);
	put_all(up2, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
	h2cl_wait_closed(e, c, s2);
	assert_int_equal(s2->err, 0);
	assert_int_equal(s2->status, 200);
	assert_false(c->eof);
	close(up2);
	sbuf_free(&u);
	sbuf_free(&lg);
	h2cl_free(c);
}

/* ---- trailers ---- */

/* gRPC's shape: the request's DATA then trailers go upstream as a chunked body (the
 * trailing HEADERS end it); the upstream's chunked trailer section comes back as a
 * trailing HEADERS frame ending the stream. */
static void trailers_cross(void **state)
{
	struct env *e = *state;
	struct h2cl *c = h2cl_new(e, false);
	struct cs *s = h2cl_req(c, "POST", "up.test", "/pkg.Svc/Call", "hello", 5, true);
	struct sbuf u = SBUF_INIT;
	int up = h2_up_accept(e, c);
	uint64_t end;

	up_heads(e, up, &u, 1);
	assert_true(contains(u.s, u.len, "te: trailers\r\n"));
	assert_true(contains(u.s, u.len, "transfer-encoding: chunked\r\n"));
	/* The client's trailers end the chunked body; their fields are dropped toward an
	 * HTTP/1.1 upstream (as Envoy's HTTP/1 codec does; fwd_up_h1.c). */
	for (end = now_ms() + WAIT_MS; !contains(u.s, u.len, "\r\n0\r\n\r\n");) {
		if (now_ms() > end)
			fail_msg("the request body did not end upstream: %.*s", (int)u.len, u.s);
		h2cl_step(e, c);
		take(up, &u);
	}
	assert_true(contains(u.s, u.len, "\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
	assert_false(contains(u.s, u.len, "x-req-trailer"));

	put_all(up, "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n"
	            "transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
	            "grpc-status: 0\r\ngrpc-message: fine\r\n\r\n");
	h2cl_wait_closed(e, c, s);
	assert_int_equal(s->err, 0);
	assert_int_equal(s->status, 200);
	assert_int_equal(s->body.len, 3);
	assert_memory_equal(s->body.s, "abc", 3);
	sbuf_add(&s->trailers, "", 1);
	assert_string_equal(s->trailers.s, "grpc-status: 0\ngrpc-message: fine\n");
	close(up);
	sbuf_free(&u);
	h2cl_free(c);
}

/* ---- back-pressure ---- */

#define BIG (4u << 20)

/* The client does not open its stream window (64 KiB): what the upstream sends piles up
 * in the stream's virtual connection until the core stops reading the upstream (past
 * FWD_HIGH_WATER); the client consuming what it got resumes it, and every byte
 * arrives. */
static void backpressure(void **state)
{
	struct env *e = *state;
	struct h2cl *c = h2cl_new(e, true);
	struct cs *s = h2cl_req(c, "GET", "up.test", "/big", NULL, 0, false);
	struct sbuf u = SBUF_INIT;
	static char chunk[65536];
	char head[128];
	size_t sent = 0, consumed = 0;
	bool paused = false;
	int up = h2_up_accept(e, c);
	uint64_t end;

	up_heads(e, up, &u, 1);
	snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\ncontent-length: %u\r\n\r\n", BIG);
	put_all(up, head);
	assert_int_equal(sock_set_nonblock(up), 0);
	memset(chunk, 'x', sizeof(chunk));
	for (end = now_ms() + WAIT_MS; !paused && now_ms() < end;) {
		struct uconn *uc = e->w->uconns;
		ssize_t n = write(up, chunk, BIG - sent < sizeof(chunk) ? BIG - sent : sizeof(chunk));

		if (n > 0)
			sent += (size_t)n;
		h2cl_step(e, c);
		paused = uc && uc->read_paused;
	}
	assert_true(paused);
	assert_true(sent < BIG);
	/* At most one stream window with the client. */
	assert_true(s->body.len <= 65535);
	turn_for(e, 50);
	assert_true(e->w->uconns && ((struct uconn *)e->w->uconns)->read_paused);

	for (end = now_ms() + 30000; !s->closed;) {
		ssize_t n = sent < BIG ? write(up, chunk, BIG - sent < sizeof(chunk) ? BIG - sent
		                                                                      : sizeof(chunk))
		                       : 0;

		if (n > 0)
			sent += (size_t)n;
		if (s->body.len > consumed) {
			h2cl_consume(c, s, s->body.len - consumed);
			consumed = s->body.len;
		}
		h2cl_step(e, c);
		if (now_ms() > end)
			fail_msg("client has %zu of %u body bytes", s->body.len, BIG);
	}
	assert_int_equal(s->err, 0);
	assert_int_equal(s->body.len, BIG);
	assert_int_equal(rec.nresp, 1);
	close(up);
	sbuf_free(&u);
	h2cl_free(c);
}

/* ---- many concurrent streams ---- */

#define NSTREAMS 20

/* Twenty streams at once: each its own upstream connection (HTTP/1.1, no pipelining),
 * answered in reverse order with a body that names the request's path: each stream gets
 * its own answer, whole. */
static void many_streams(void **state)
{
	struct env *e = *state;
	struct h2cl *c = h2cl_new(e, false);
	struct cs *s[NSTREAMS];
	int up[NSTREAMS];
	char path[NSTREAMS][32];

	for (int i = 0; i < NSTREAMS; i++) {
		snprintf(path[i], sizeof(path[i]), "/many/%02d", i);
		s[i] = h2cl_req(c, "GET", "up.test", path[i], NULL, 0, false);
	}
	for (int i = 0; i < NSTREAMS; i++)
		up[i] = h2_up_accept(e, c);
	for (int i = NSTREAMS - 1; i >= 0; i--) {
		struct sbuf u = SBUF_INIT;
		const char *p;
		char resp[128];

		up_heads(e, up[i], &u, 1);
		sbuf_add(&u, "", 1);
		assert_non_null(p = strstr(u.s, "GET /many/"));
		snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n%.8s",
		         p + 4);
		put_all(up[i], resp);
		sbuf_free(&u);
	}
	for (int i = 0; i < NSTREAMS; i++) {
		h2cl_wait_closed(e, c, s[i]);
		assert_int_equal(s[i]->err, 0);
		assert_int_equal(s[i]->status, 200);
		assert_int_equal(s[i]->body.len, 8);
		assert_memory_equal(s[i]->body.s, path[i], 8);
	}
	assert_int_equal(rec.nresp, NSTREAMS <= REC_MAX ? NSTREAMS : REC_MAX);
	assert_int_equal(STAT_GET(e->w->st.urq_total), NSTREAMS);
	for (int i = 0; i < NSTREAMS; i++)
		close(up[i]);
	h2cl_free(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(uf_refused),
		T(ut_route_timeout),
		T(uo_overflow),
		T(reset_mid_response),
		T(trailers_cross),
		T(backpressure),
		T(many_streams),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
