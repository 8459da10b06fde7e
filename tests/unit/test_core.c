/* Tests for the request core (proxy/fwd_core.c, proxy/fwd_conn.c) and the parsed head it
 * works on, over the HTTP/1.1 codecs.
 *
 * The environment (core_harness.h): a real worker whose loop the test turns, its client
 * on the Gateway listener and its upstream server on 127.0.0.1, the snapshot built from
 * Istio YAML (Gateway, ServiceEntry, DestinationRule, VirtualService), the recording
 * codec tables.
 *
 * Cases: 503 UF (connection refused, not retried), the one retry (a pooled connection the
 * server closed), 503 UO (maxConnections / http1MaxPendingRequests), 504 UT (route
 * timeout), the client gone while its request waits (0 DC, no 504 later), pipelining (one
 * request at a time, answered in order), back-pressure (the upstream read paused past
 * FWD_HIGH_WATER, resumed when the client reads), and the message model: the same request
 * through h1_parse and h2_request_msg gives the same head. */
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
#include "config/store.h"
#include "core/diag.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"
#include "http/h2_req.h"
#include "net/loop.h"
#include "net/sock.h"
#include "proxy/alog.h"
#include "proxy/fwd.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/snap.h"
#include "proxy/worker.h"

static const char cfg_fmt[] =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: Gateway\n"
	"metadata: {name: gw, namespace: istio-system}\n"
	"spec:\n"
	"  selector: {istio: egressgateway}\n"
	"  servers:\n"
	"  - port: {number: %u, name: http, protocol: HTTP}\n"
	"    hosts: [\"*\"]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: up, namespace: istio-system}\n"
	"spec:\n"
	"  hosts: [up.test, cb.test]\n"
	"  ports: [{number: %u, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints: [{address: 127.0.0.1}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: down, namespace: istio-system}\n"
	"spec:\n"
	"  hosts: [down.test]\n"
	"  ports: [{number: %u, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints: [{address: 127.0.0.1}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: cb, namespace: istio-system}\n"
	"spec:\n"
	"  host: cb.test\n"
	"  trafficPolicy:\n"
	"    connectionPool:\n"
	"      tcp: {maxConnections: 1}\n"
	"      http: {http1MaxPendingRequests: 1}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: up, namespace: istio-system}\n"
	"spec:\n"
	"  hosts: [up.test]\n"
	"  gateways: [gw]\n"
	"  http:\n"
	"  - name: slow\n"
	"    match: [{uri: {prefix: /slow}}]\n"
	"    timeout: 0.2s\n"
	"    route: [{destination: {host: up.test, port: {number: %u}}}]\n"
	"  - name: up\n"
	"    route: [{destination: {host: up.test, port: {number: %u}}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: cb, namespace: istio-system}\n"
	"spec:\n"
	"  hosts: [cb.test]\n"
	"  gateways: [gw]\n"
	"  http:\n"
	"  - route: [{destination: {host: cb.test, port: {number: %u}}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: down, namespace: istio-system}\n"
	"spec:\n"
	"  hosts: [down.test]\n"
	"  gateways: [gw]\n"
	"  http:\n"
	"  - {retries: {attempts: 0}, route: [{destination: {host: down.test, port: {number: %u}}}]}\n";

static int env_setup(void **state)
{
	struct env *e = core_env_new();
	char *yaml = xasprintf(cfg_fmt, e->gw_port, e->up_port, e->dead_port, e->up_port,
	                       e->up_port, e->up_port, e->dead_port);
	int rc = core_env_start(e, SNAP_ROLE_GATEWAY, yaml);

	free(yaml);
	*state = e;
	return rc;
}

static int env_teardown(void **state)
{
	return core_env_free(*state);
}

/* ---- 503 UF, and the retry ---- */

/* The endpoint refuses the connection: 503 UF with Envoy's details and the errno as the
 * transport failure reason. A failed connect is not retried (only a request that met a
 * pooled connection the server had closed is, below): one attempt. */
static void uf_refused(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT;
	size_t off = 0, blen;
	const char *body;
	int c = client(e, 0);

	put_all(c, "GET /x HTTP/1.1\r\nhost: down.test\r\n\r\n");
	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 503);
	assert_true(contains(body, blen, "reset reason: connection failure"));
	assert_true(contains(body, blen, "Connection refused"));
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].code, 503);
	assert_int_equal(rec.local[0].flags, ALOG_F_UF);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UF);
	assert_string_equal(rec.local[0].details,
	                    "upstream_reset_before_response_started{connection_failure}");
	assert_int_equal(STAT_GET(e->w->st.urq_total), 1);   /* attempts */
	assert_int_equal(STAT_GET(e->w->st.urq_retry), 0);
	assert_int_equal(STAT_GET(e->w->st.ucx_connect_fail), 1);
	assert_int_equal(rec.nresp, 0);
	/* What the access log line says (Envoy's text format). */
	sbuf_reset(&b);
	alog_take(e, &b);
	assert_non_null(strstr(b.s, "\"GET /x HTTP/1.1\" 503 UF "
	                            "upstream_reset_before_response_started{connection_failure} - "
	                            "\"delayed connect error: Connection refused\""));
	{
		char cl[64];

		snprintf(cl, sizeof(cl), " outbound|%u||down.test ", e->dead_port);
		assert_non_null(strstr(b.s, cl));
	}
	close(c);
	sbuf_free(&b);
}

/* A keep-alive request, then a second one on the same client connection meets the pooled
 * upstream connection, which the server closes without answering: the core tries once
 * more on a fresh connection, and the client sees only the 200. */
static void retry_pooled_closed(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, u1 = SBUF_INIT, u2 = SBUF_INIT;
	size_t off = 0, blen;
	const char *body;
	int c = client(e, 0), s1, s2;

	put_all(c, "GET /r1 HTTP/1.1\r\nhost: up.test\r\n\r\n");
	s1 = up_accept(e);
	up_heads(e, s1, &u1, 1);
	put_all(s1, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nr1");
	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 200);
	assert_memory_equal(body, "r1", 2);

	put_all(c, "GET /r2 HTTP/1.1\r\nhost: up.test\r\n\r\n");
	up_heads(e, s1, &u1, 2);            /* on the pooled connection */
	assert_true(contains(u1.s, u1.len, "GET /r2 "));
	close(s1);                          /* closed before any response */
	s2 = up_accept(e);
	up_heads(e, s2, &u2, 1);
	assert_true(contains(u2.s, u2.len, "GET /r2 "));
	put_all(s2, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nr2!");
	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 200);
	assert_memory_equal(body, "r2!", 3);

	assert_int_equal(rec.nlocal, 0);
	assert_int_equal(rec.send_head, 3);   /* r1, r2 on the pooled one, r2 again */
	assert_int_equal(STAT_GET(e->w->st.urq_total), 3);
	assert_int_equal(STAT_GET(e->w->st.urq_retry), 1);
	assert_int_equal(STAT_GET(e->w->st.urq_reused), 1);
	close(s2);
	close(c);
	sbuf_free(&b);
	sbuf_free(&u1);
	sbuf_free(&u2);
}

/* ---- 503 UO ---- */

/* maxConnections 1, http1MaxPendingRequests 1: the first request has the connection, the
 * second waits for it, the third overflows (503 UO). Then the waiting one goes out on the
 * first one's connection once it is back in the pool. */
static void uo_overflow(void **state)
{
	struct env *e = *state;
	struct sbuf ba = SBUF_INIT, bb = SBUF_INIT, bc = SBUF_INIT, u = SBUF_INIT, lg = SBUF_INIT;
	size_t oa = 0, ob = 0, oc = 0, blen;
	const char *body;
	int ca = client(e, 0), cb, cc, s;

	put_all(ca, "GET /a HTTP/1.1\r\nhost: cb.test\r\n\r\n");
	s = up_accept(e);
	up_heads(e, s, &u, 1);      /* connected and sent: no longer pending */

	cb = client(e, 0);
	put_all(cb, "GET /b HTTP/1.1\r\nhost: cb.test\r\n\r\n");
	for (uint64_t end = now_ms() + WAIT_MS; STAT_GET(e->w->st.urq_pending_active) < 1;) {
		if (now_ms() > end)
			fail_msg("the second request did not queue");
		turn(e);
	}
	assert_int_equal(STAT_GET(e->w->st.ucx_overflow), 1);

	cc = client(e, 0);
	put_all(cc, "GET /c HTTP/1.1\r\nhost: cb.test\r\n\r\n");
	assert_int_equal(await_resp(e, cc, &bc, &oc, &body, &blen), 503);
	assert_true(contains(body, blen, "reset reason: overflow"));
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].code, 503);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UO);
	assert_string_equal(rec.local[0].details, "upstream_reset_before_response_started{overflow}");
	assert_int_equal(STAT_GET(e->w->st.urq_pending_overflow), 1);
	alog_take(e, &lg);
	assert_non_null(strstr(lg.s, "\"GET /c HTTP/1.1\" 503 UO "
	                             "upstream_reset_before_response_started{overflow} "));

	/* The waiting request has not been answered, and has no connection of its own. */
	take(cb, &bb);
	assert_int_equal(bb.len, 0);
	put_all(s, "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na");
	assert_int_equal(await_resp(e, ca, &ba, &oa, &body, &blen), 200);
	up_heads(e, s, &u, 2);
	assert_true(contains(u.s, u.len, "GET /b "));
	put_all(s, "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb");
	assert_int_equal(await_resp(e, cb, &bb, &ob, &body, &blen), 200);
	assert_memory_equal(body, "b", 1);
	assert_int_equal(STAT_GET(e->w->st.ucx_total), 1);
	assert_int_equal(rec.nlocal, 1);
	close(s);
	close(ca);
	close(cb);
	close(cc);
	sbuf_free(&ba);
	sbuf_free(&bb);
	sbuf_free(&bc);
	sbuf_free(&u);
	sbuf_free(&lg);
}

/* ---- 504 UT ---- */

/* The route's timeout (0.2s) with an upstream that accepts and never answers. */
static void ut_route_timeout(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, u = SBUF_INIT;
	size_t off = 0, blen;
	const char *body;
	int c = client(e, 0), s;
	uint64_t t0 = now_ms(), took;

	put_all(c, "GET /slow/1 HTTP/1.1\r\nhost: up.test\r\n\r\n");
	s = up_accept(e);
	up_heads(e, s, &u, 1);
	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 504);
	took = now_ms() - t0;
	assert_true(took >= 190);
	assert_true(took < 2000);
	assert_true(contains(body, blen, "upstream request timeout"));
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UT);
	assert_string_equal(rec.local[0].details, "response_timeout");
	assert_int_equal(STAT_GET(e->w->st.urq_timeout), 1);
	sbuf_reset(&u);
	alog_take(e, &u);
	assert_non_null(strstr(u.s, "\"GET /slow/1 HTTP/1.1\" 504 UT response_timeout "));
	up_eof(e, s);                       /* closed, not pooled */
	close(s);
	close(c);
	sbuf_free(&b);
	sbuf_free(&u);
}

/* The client goes away while its request waits for the upstream: logged 0 DC, the
 * upstream connection closed, and the route's timer gone with the request (no 504 UT). */
static void dc_client_gone(void **state)
{
	struct env *e = *state;
	struct sbuf u = SBUF_INIT, lg = SBUF_INIT;
	int c = client(e, 0), s;

	put_all(c, "GET /slow/2 HTTP/1.1\r\nhost: up.test\r\n\r\n");
	s = up_accept(e);
	up_heads(e, s, &u, 1);
	close(c);
	up_eof(e, s);
	turn_for(e, 300);                   /* past the route's 0.2s timeout */
	assert_int_equal(STAT_GET(e->w->st.urq_timeout), 0);
	assert_int_equal(rec.nlocal, 0);
	assert_null(e->w->dconns);
	alog_take(e, &lg);
	assert_non_null(strstr(lg.s, "\"GET /slow/2 HTTP/1.1\" 0 DC downstream_remote_disconnect "));
	close(s);
	sbuf_free(&u);
	sbuf_free(&lg);
}

/* ---- pipelining ---- */

/* Two requests in one write: the second goes upstream only once the first is answered,
 * on the same (pooled) upstream connection, and the answers come back in order. */
static void pipelined_in_order(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, u = SBUF_INIT;
	size_t off = 0, blen;
	const char *body;
	int c = client(e, 0), s;

	put_all(c, "GET /p1 HTTP/1.1\r\nhost: up.test\r\n\r\n"
	           "GET /p2 HTTP/1.1\r\nhost: up.test\r\n\r\n");
	s = up_accept(e);
	up_heads(e, s, &u, 1);
	turn_for(e, 50);
	take(s, &u);
	assert_true(contains(u.s, u.len, "GET /p1 "));
	assert_false(contains(u.s, u.len, "GET /p2 "));
	put_all(s, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none");
	up_heads(e, s, &u, 2);
	assert_true(contains(u.s, u.len, "GET /p2 "));
	put_all(s, "HTTP/1.1 201 Created\r\ncontent-length: 3\r\n\r\ntwo");

	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 200);
	assert_memory_equal(body, "one", 3);
	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 201);
	assert_memory_equal(body, "two", 3);
	assert_int_equal(rec.nresp, 2);
	assert_int_equal(rec.resp[0], 200);
	assert_int_equal(rec.resp[1], 201);
	assert_int_equal(rec.sent, 6);        /* the bodies, through fwd_down->send */
	assert_int_equal(STAT_GET(e->w->st.ucx_total), 1);
	close(s);
	close(c);
	sbuf_free(&b);
	sbuf_free(&u);
}

/* ---- back-pressure ---- */

#define BIG (16u << 20)

/* The upstream server writes what the proxy takes of the body left after *sent. */
static void up_feed(int s, size_t *sent)
{
	static char chunk[65536];
	size_t want = BIG - *sent < sizeof(chunk) ? BIG - *sent : sizeof(chunk);
	ssize_t n;

	if (!want)
		return;
	memset(chunk, 'x', sizeof(chunk));
	n = write(s, chunk, want);
	if (n > 0)
		*sent += (size_t)n;
}

/* The upstream sends faster than the client reads: the core stops reading the upstream
 * once the downstream output passes FWD_HIGH_WATER (the output stays bounded: at most one
 * read past the mark), and resumes as the client reads: every byte arrives. */
static void backpressure(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, u = SBUF_INIT;
	size_t sent = 0, max_out = 0, got = 0;
	bool paused = false;
	char head[128], buf[65536];
	const char *end_head;
	int c = client(e, 4096), s, status;
	uint64_t end;

	put_all(c, "GET /big HTTP/1.1\r\nhost: up.test\r\n\r\n");
	s = up_accept(e);
	up_heads(e, s, &u, 1);
	snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\ncontent-length: %u\r\n\r\n", BIG);
	put_all(s, head);
	/* The proxy's socket to the client gets a fixed small send buffer: left to autotune
	 * (up to tcp_wmem's 4 MiB), it could take the proxy's output as fast as it is made
	 * on a loaded machine, and the buffer this test watches would never fill. */
	{
		int sb = 4096;

		assert_non_null(e->w->dconns);
		assert_int_equal(setsockopt(((struct dconn *)e->w->dconns)->io.fd, SOL_SOCKET,
		                            SO_SNDBUF, &sb, sizeof(sb)), 0);
	}

	/* The client does not read: until the upstream read is paused, and 50 turns more. */
	end = now_ms() + WAIT_MS;
	for (int more = 50; now_ms() < end && more > 0; more -= paused) {
		struct dconn *d = e->w->dconns;
		struct uconn *uc = e->w->uconns;

		up_feed(s, &sent);
		turn(e);
		if (d && iob_used(&d->out) > max_out)
			max_out = iob_used(&d->out);
		if (uc && uc->read_paused)
			paused = true;
	}
	assert_true(paused);
	assert_true(max_out > FWD_HIGH_WATER);
	assert_true(max_out <= FWD_HIGH_WATER + FWD_BUF_INIT * 4);

	/* The client reads (with a larger buffer now, for speed): the head, then every byte
	 * of the body. */
	{
		int rcv = 256 * 1024;

		assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)), 0);
	}
	end = now_ms() + 30000;
	for (end_head = NULL; !end_head || got < BIG;) {
		ssize_t n;

		up_feed(s, &sent);
		turn(e);
		if (now_ms() > end)
			fail_msg("client has %zu of %u body bytes", got, BIG);
		if (end_head) {
			while ((n = read(c, buf, sizeof(buf))) > 0)
				got += (size_t)n;
			continue;
		}
		take(c, &b);
		if (b.s && (end_head = strstr(b.s, "\r\n\r\n")) != NULL) {
			assert_int_equal(sscanf(b.s, "HTTP/1.1 %d", &status), 1);
			assert_int_equal(status, 200);
			got = b.len - (size_t)(end_head + 4 - b.s);
		}
	}
	assert_int_equal(got, BIG);
	assert_int_equal(rec.nresp, 1);
	assert_int_equal(rec.sent, BIG);
	close(s);
	close(c);
	sbuf_free(&b);
	sbuf_free(&u);
}

/* ---- the message model: one request, either codec ---- */

#define S(lit) { lit, sizeof(lit) - 1 }

/* h1's fields that an HTTP/2 request carries elsewhere: the framing (content-length,
 * transfer-encoding: m.body) and TE (h2_request's te_trailers). */
static bool h1_only(const char *b, const struct h1_header *h)
{
	return h1_name_eq(b + h->name.off, h->name.len, "content-length", 14) ||
	       h1_name_eq(b + h->name.off, h->name.len, "transfer-encoding", 17) ||
	       h1_name_eq(b + h->name.off, h->name.len, "te", 2);
}

static void span_same(const char *b1, struct h1_span s1, const char *b2, struct h1_span s2)
{
	assert_int_equal(s1.len, s2.len);
	assert_memory_equal(b1 + s1.off, b2 + s2.off, s1.len);
}

/* The request as text through h1_parse and as decoded HEADERS through h2_request_msg:
 * what the core reads of a head (method, target and its form, path, Host, fields with
 * their ids and flags, body framing, TE trailers) is the same. */
static void same_head(const char *text, const struct h2_request *rq)
{
	struct h1_parser p;
	struct h1_msg *m1 = calloc(1, sizeof(*m1)), *m2 = calloc(1, sizeof(*m2));
	char *b2 = malloc(h2_request_msg_size(rq));
	const char *reason = NULL;
	unsigned j = 0;

	h1_parser_init(&p, true, 0);
	assert_int_equal(h1_parse(&p, text, strlen(text), m1), H1_OK);
	assert_int_equal(h2_request_msg(rq, b2, m2, &reason), 0);

	span_same(text, m1->method, b2, m2->method);
	assert_int_equal(m1->method_id, m2->method_id);
	span_same(text, m1->target, b2, m2->target);
	assert_int_equal(m1->target_form, m2->target_form);
	span_same(text, m1->path, b2, m2->path);
	assert_true(m1->host_idx >= 0);
	span_same(text, m1->headers[m1->host_idx].value, b2, m2->headers[m2->host_idx].value);
	for (unsigned i = 0; i < m1->nheaders; i++) {
		const struct h1_header *h1 = &m1->headers[i];

		if (h1_only(text, h1))
			continue;
		assert_true(j < m2->nheaders);
		span_same(text, h1->name, b2, m2->headers[j].name);
		span_same(text, h1->value, b2, m2->headers[j].value);
		assert_int_equal(h1->id, m2->headers[j].id);
		assert_int_equal(h1->flags, m2->headers[j].flags);
		j++;
	}
	assert_int_equal(j, m2->nheaders);
	assert_int_equal(m1->body, m2->body);
	assert_int_equal(m1->content_length, m2->content_length);
	assert_int_equal(m1->has_te_trailers, m2->has_te_trailers);
	assert_int_equal(m1->version_minor, m2->version_minor);
	free(b2);
	free(m1);
	free(m2);
}

static void msg_get(void **state)
{
	struct h2_header h[] = {
		{ S("accept"), S("*/*") }, { S("user-agent"), S("curl/8") },
		{ S("x-dup"), S("1") }, { S("x-dup"), S("2") }, { S("x-request-id"), S("abc") },
		{ S("cookie"), S("a=1") },
	};
	struct h2_request rq = { .method = S("GET"), .scheme = S("http"),
		.authority = S("up.test:8080"), .path = S("/p/q?x=1&y=%20"),
		.headers = h, .nheaders = sizeof(h) / sizeof(h[0]),
		.content_length = -1, .end_stream = true };

	(void)state;
	same_head("GET /p/q?x=1&y=%20 HTTP/1.1\r\nhost: up.test:8080\r\naccept: */*\r\n"
	          "user-agent: curl/8\r\nx-dup: 1\r\nx-dup: 2\r\nx-request-id: abc\r\n"
	          "cookie: a=1\r\n\r\n", &rq);
}

static void msg_post_length_te(void **state)
{
	struct h2_header h[] = {
		{ S("content-type"), S("application/grpc") }, { S("grpc-timeout"), S("1S") },
		{ S("trailer"), S("grpc-status") },
	};
	struct h2_request rq = { .method = S("POST"), .scheme = S("http"),
		.authority = S("svc.test"), .path = S("/pkg.Svc/Call"),
		.headers = h, .nheaders = sizeof(h) / sizeof(h[0]),
		.content_length = 5, .te_trailers = true, .end_stream = false };

	(void)state;
	same_head("POST /pkg.Svc/Call HTTP/1.1\r\nhost: svc.test\r\n"
	          "content-type: application/grpc\r\ncontent-length: 5\r\ngrpc-timeout: 1S\r\n"
	          "te: trailers\r\ntrailer: grpc-status\r\n\r\n", &rq);
}

static void msg_chunked_and_options(void **state)
{
	struct h2_header h[] = { { S("x-a"), S("b") } };
	struct h2_request put = { .method = S("PUT"), .scheme = S("http"),
		.authority = S("up.test"), .path = S("/up"), .headers = h, .nheaders = 1,
		.content_length = -1, .end_stream = false };
	struct h2_request opt = { .method = S("OPTIONS"), .scheme = S("http"),
		.authority = S("up.test"), .path = S("*"), .content_length = -1,
		.end_stream = true };

	(void)state;
	same_head("PUT /up HTTP/1.1\r\nhost: up.test\r\ntransfer-encoding: chunked\r\n"
	          "x-a: b\r\n\r\n", &put);
	same_head("OPTIONS * HTTP/1.1\r\nhost: up.test\r\n\r\n", &opt);
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(uf_refused),
		T(retry_pooled_closed),
		T(uo_overflow),
		T(ut_route_timeout),
		T(dc_client_gone),
		T(pipelined_in_order),
		T(backpressure),
		cmocka_unit_test(msg_get),
		cmocka_unit_test(msg_post_length_te),
		cmocka_unit_test(msg_chunked_and_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
