/* HTTP/2 sessions (src/http/h2.c).
 *
 * Three kinds of tests:
 *   - pair_*: our client session against our server session in one process, bytes piped
 *     between them (basics, back-pressure, h1<->h2 round trips, abort, a micro-benchmark);
 *   - py_*: our server session against real peers written with python3-h2 (and raw
 *     hyperframe frames for abuse), one per limit; and our client session against a
 *     python3-h2 server. tests/unit/h2_peer.py holds the peers; the C side drives the
 *     session over a socketpair with a small poll loop;
 *   - tool_*: our server session against nghttp2's own client tools (nghttp, h2load);
 *   - h1/h2 head translation helpers on their own.
 * The python peers use socketpairs; the nghttp2 tools (nghttp, h2load) connect to a
 * listener on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"
#include "http/h2_req.h"

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct h2_str S(const char *s)
{
	return (struct h2_str){ s, strlen(s) };
}

static bool str_is(struct h2_str a, const char *b)
{
	return a.len == strlen(b) && memcmp(a.p, b, a.len) == 0;
}

/* ================================================================== server app
 * Paths: /hello (200 "hello", x-authority), /echo (streams the body back, consuming only
 * what was queued: the proxy's pattern), /bytes/N (N bytes, byte i = i & 255), /hold
 * (answered when hold_until requests are held), /trailers (echo + trailers), /drain
 * (shutdown notice, GOAWAY(NO_ERROR) a few ticks later, then the answer), /h1 (records the
 * request converted to HTTP/1.1). */

enum akind { K_HELLO, K_ECHO, K_BYTES, K_HOLD, K_TRAILERS, K_DRAIN, K_H1, K_CONTINUE };

struct app;

struct astream {
	struct app *a;
	int32_t id;
	enum akind kind;
	uint64_t to_send, sent;
	uint8_t *pend;
	size_t plen, pcap;
	bool req_end, resp_end, answered;
	char authority[128];
};

#define MAXLIVE 1024

struct app {
	struct h2_session *s;
	size_t budget_per_tick, budget;  /* echo forwarding per tick; 0 = unlimited */
	int hold_until;
	int drain_ticks;
	struct astream *live[MAXLIVE];
	int nlive;
	int requests, closes, end_streams, trailers_in, writable_calls, nheld;
	int codes[16];
	int other_codes;
	size_t max_pend;
	uint64_t bytes_in;
	bool upper_name_seen;
	bool forbidden_seen;             /* a field h2_submit_* must have dropped */
	struct sbuf h1;                  /* /h1: the last request as HTTP/1.1 */
	bool h1_ok;
};

static void app_respond_hello(struct app *a, struct astream *as)
{
	struct h2_header h[] = {
		{ S("content-type"), S("text/plain") },
		{ S("X-Authority"), { as->authority, strlen(as->authority) } },
	};
	struct h2_response rs = { .status = 200, .headers = h, .nheaders = 2 };

	assert_int_equal(h2_submit_response(a->s, as->id, &rs), 0);
	assert_int_equal(h2_send_data(a->s, as->id, "hello", 5, true), 5);
	as->answered = as->resp_end = true;
}

/* The head the request path gets for rq (h2_request_msg), written out as request line and
 * fields for the test to compare. */
static int app_head_text(const struct h2_request *rq, struct sbuf *out)
{
	char *buf = malloc(h2_request_msg_size(rq) + 1);
	struct h1_msg *m = malloc(sizeof(*m));
	const char *reason;
	int rc = h2_request_msg(rq, buf, m, &reason);

	sbuf_reset(out);
	if (rc == 0) {
		sbuf_add(out, buf + m->method.off, m->method.len);
		sbuf_addc(out, ' ');
		sbuf_add(out, buf + m->target.off, m->target.len);
		sbuf_adds(out, " HTTP/1.1\r\n");
		for (unsigned i = 0; i < m->nheaders; i++) {
			sbuf_add(out, buf + m->headers[i].name.off, m->headers[i].name.len);
			sbuf_adds(out, ": ");
			sbuf_add(out, buf + m->headers[i].value.off, m->headers[i].value.len);
			sbuf_adds(out, "\r\n");
		}
	}
	free(m);
	free(buf);
	return rc;
}

static void app_pump(struct app *a, struct astream *as)
{
	if (!as->answered)
		return;
	if (as->kind == K_ECHO || as->kind == K_TRAILERS) {
		while (as->plen > 0) {
			size_t allow = as->plen;
			ssize_t n;

			if (a->budget_per_tick && allow > a->budget)
				allow = a->budget;
			if (allow == 0)
				break;
			n = h2_send_data(a->s, as->id, as->pend, allow, false);
			if (n <= 0)
				break;
			memmove(as->pend, as->pend + n, as->plen - (size_t)n);
			as->plen -= (size_t)n;
			assert_int_equal(h2_consume(a->s, as->id, (size_t)n), 0);
			if (a->budget_per_tick)
				a->budget -= (size_t)n;
			if ((size_t)n < allow)
				break;
		}
		if (as->plen == 0 && as->req_end && !as->resp_end) {
			if (as->kind == K_ECHO) {
				assert_int_equal(h2_send_data(a->s, as->id, NULL, 0, true), 0);
			} else {
				struct h2_header t[] = { { S("x-checksum"), S("42") },
					                 { S("X-Upper-Trailer"), S("v") } };

				assert_int_equal(h2_submit_trailers(a->s, as->id, t, 2), 0);
			}
			as->resp_end = true;
		}
	} else if (as->kind == K_BYTES) {
		uint8_t buf[16384];

		while (as->sent < as->to_send) {
			size_t chunk = as->to_send - as->sent;
			ssize_t n;

			if (chunk > sizeof(buf))
				chunk = sizeof(buf);
			for (size_t i = 0; i < chunk; i++)
				buf[i] = (uint8_t)(as->sent + i);
			n = h2_send_data(a->s, as->id, buf, chunk, as->sent + chunk == as->to_send);
			assert_true(n >= 0);
			as->sent += (uint64_t)n;
			if ((size_t)n < chunk)
				break;
		}
		as->resp_end = as->sent == as->to_send;
	}
}

static void app_on_request(struct h2_session *s, void *user, int32_t id,
                           const struct h2_request *rq)
{
	struct app *a = user;
	struct astream *as = xcalloc(1, sizeof(*as));
	char path[256];

	a->requests++;
	as->a = a;
	as->id = id;
	snprintf(as->authority, sizeof(as->authority), "%.*s", (int)rq->authority.len,
	         rq->authority.p);
	snprintf(path, sizeof(path), "%.*s", (int)rq->path.len, rq->path.p);
	for (size_t i = 0; i < rq->nheaders; i++) {
		struct h2_str n = rq->headers[i].name;

		for (size_t k = 0; k < n.len; k++)
			if (n.p[k] >= 'A' && n.p[k] <= 'Z')
				a->upper_name_seen = true;
		if (str_is(n, "connection") || str_is(n, "transfer-encoding") ||
		    str_is(n, "x-fake") || (str_is(n, "te")))
			a->forbidden_seen = true;
	}
	assert_int_equal(h2_stream_set_user(s, id, as), 0);
	assert_ptr_equal(h2_stream_user(s, id), as);
	assert_true(a->nlive < MAXLIVE);
	a->live[a->nlive++] = as;
	if (strcmp(path, "/echo") == 0)
		as->kind = K_ECHO;
	else if (strncmp(path, "/bytes/", 7) == 0)
		as->kind = K_BYTES, as->to_send = strtoull(path + 7, NULL, 10);
	else if (strcmp(path, "/hold") == 0)
		as->kind = K_HOLD;
	else if (strcmp(path, "/trailers") == 0)
		as->kind = K_TRAILERS;
	else if (strcmp(path, "/drain") == 0)
		as->kind = K_DRAIN;
	else if (strncmp(path, "/h1", 3) == 0)
		as->kind = K_H1;
	else if (strcmp(path, "/continue") == 0)
		as->kind = K_CONTINUE;
	else
		as->kind = K_HELLO;

	switch (as->kind) {
	case K_HELLO:
		app_respond_hello(a, as);
		break;
	case K_CONTINUE: {
		struct h2_response r100 = { .status = 100 }, r101 = { .status = 101 };

		assert_int_equal(h2_submit_response(s, id, &r101), -1);
		assert_int_equal(h2_submit_response(s, id, &r100), 0);
		app_respond_hello(a, as);
		break;
	}
	case K_H1:
		a->h1_ok = app_head_text(rq, &a->h1) == 0;
		app_respond_hello(a, as);
		break;
	case K_ECHO:
	case K_TRAILERS: {
		struct h2_response rs = { .status = 200 };

		assert_int_equal(h2_submit_response(s, id, &rs), 0);
		as->answered = true;
		break;
	}
	case K_BYTES: {
		char cl[24];
		struct h2_header h[] = { { S("content-length"), { cl, 0 } } };
		struct h2_response rs = { .status = 200, .headers = h, .nheaders = 1 };

		h[0].value.len = (size_t)snprintf(cl, sizeof(cl), "%llu",
		                                  (unsigned long long)as->to_send);
		if (as->to_send == 0)
			rs.end_stream = true;
		assert_int_equal(h2_submit_response(s, id, &rs), 0);
		as->answered = true;
		as->resp_end = as->to_send == 0;
		app_pump(a, as);
		break;
	}
	case K_HOLD:
		a->nheld++;
		if (a->hold_until && a->nheld == a->hold_until)
			for (int i = 0; i < a->nlive; i++)
				if (a->live[i]->kind == K_HOLD && !a->live[i]->answered)
					app_respond_hello(a, a->live[i]);
		break;
	case K_DRAIN:
		assert_int_equal(h2_shutdown_notice(s), 0);
		a->drain_ticks = 30;
		break;
	}
}

static void app_on_data(struct h2_session *s, void *user, int32_t id, void *su,
                        const uint8_t *data, size_t len)
{
	struct app *a = user;
	struct astream *as = su;

	assert_non_null(as);
	a->bytes_in += len;
	if (as->plen + len > as->pcap) {
		as->pcap = (as->plen + len) * 2;
		as->pend = xrealloc(as->pend, as->pcap);
	}
	memcpy(as->pend + as->plen, data, len);
	as->plen += len;
	if (as->plen > a->max_pend)
		a->max_pend = as->plen;
	if (as->kind != K_ECHO && as->kind != K_TRAILERS) {
		h2_consume(s, id, as->plen);   /* nobody forwards these bodies */
		as->plen = 0;
	}
	app_pump(a, as);
}

static void app_on_end(struct h2_session *s, void *user, int32_t id, void *su)
{
	struct app *a = user;
	struct astream *as = su;

	a->end_streams++;
	as->req_end = true;
	app_pump(a, as);
}

static void app_on_trailers(struct h2_session *s, void *user, int32_t id, void *su,
                            const struct h2_header *h, size_t n)
{
	struct app *a = user;

	a->trailers_in++;
	assert_int_equal(n, 1);
	assert_true(str_is(h[0].name, "x-req-trailer"));
}

static void app_on_writable(struct h2_session *s, void *user, int32_t id, void *su)
{
	struct app *a = user;

	a->writable_calls++;
	app_pump(a, su);
}

static void app_on_close(struct h2_session *s, void *user, int32_t id, void *su,
                         uint32_t code)
{
	struct app *a = user;
	struct astream *as = su;

	a->closes++;
	if (code < 16)
		a->codes[code]++;
	else
		a->other_codes++;
	for (int i = 0; i < a->nlive; i++)
		if (a->live[i] == as) {
			a->live[i] = a->live[--a->nlive];
			break;
		}
	free(as->pend);
	free(as);
}

static const struct h2_callbacks app_cb = {
	.on_request = app_on_request,
	.on_data = app_on_data,
	.on_trailers = app_on_trailers,
	.on_end_stream = app_on_end,
	.on_stream_close = app_on_close,
	.on_writable = app_on_writable,
};

static void app_tick(void *arg)
{
	struct app *a = arg;

	a->budget = a->budget_per_tick;
	if (a->drain_ticks > 0 && --a->drain_ticks == 15)
		assert_int_equal(h2_goaway(a->s, H2_NO_ERROR), 0);
	for (int i = 0; i < a->nlive; i++) {
		struct astream *as = a->live[i];

		if (as->kind == K_DRAIN && a->drain_ticks == 0 && !as->answered)
			app_respond_hello(a, as);
		app_pump(a, as);
	}
}

static void app_init(struct app *a, const struct h2_limits *lim)
{
	memset(a, 0, sizeof(*a));
	a->s = h2_session_new(H2_SERVER, lim, &app_cb, a);
	assert_non_null(a->s);
}

static void app_fini(struct app *a)
{
	h2_abort(a->s);
	h2_session_free(a->s);
	sbuf_free(&a->h1);
}

/* ================================================================== client app */

enum ckind { C_OTHER, C_BYTES, C_ECHO };

struct creq {
	int32_t id;
	enum ckind kind;
	int status, n1xx;
	uint64_t got, want;
	bool pattern_ok, ended, closed;
	uint32_t code;
	uint8_t *up;
	size_t up_len, up_sent;
	struct h2_header *up_trailers;
	size_t up_ntrailers;
	uint64_t hash_rx, hash_up;
	size_t unconsumed, max_unconsumed;
	int trailers;
	char checksum[16];
	char xnames[256], xcookie[128], xauthority[64];
};

struct capp {
	struct h2_session *s;
	struct creq req[128];
	int n;
	bool no_verify;                  /* benchmark: count bytes only */
	size_t budget_per_tick;
	int closed, goaways, writable;
	uint32_t goaway_code;
	int32_t goaway_last;
};

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void copy_hdr(const struct h2_response *rs, const char *name, char *dst, size_t cap)
{
	for (size_t i = 0; i < rs->nheaders; i++)
		if (str_is(rs->headers[i].name, name))
			snprintf(dst, cap, "%.*s", (int)rs->headers[i].value.len,
			         rs->headers[i].value.p);
}

static void c_on_response(struct h2_session *s, void *user, int32_t id, void *su,
                          const struct h2_response *rs)
{
	struct creq *r = su;

	if (rs->status < 200) {
		r->n1xx++;
		return;
	}
	r->status = rs->status;
	copy_hdr(rs, "x-names", r->xnames, sizeof(r->xnames));
	copy_hdr(rs, "x-cookie", r->xcookie, sizeof(r->xcookie));
	copy_hdr(rs, "x-authority", r->xauthority, sizeof(r->xauthority));
	if (r->kind == C_BYTES)
		assert_int_equal(rs->content_length, (int64_t)r->want);
}

static void c_on_data(struct h2_session *s, void *user, int32_t id, void *su,
                      const uint8_t *data, size_t len)
{
	struct capp *c = user;
	struct creq *r = su;

	if (r->kind == C_BYTES && !c->no_verify)
		for (size_t i = 0; i < len; i++)
			if (data[i] != (uint8_t)(r->got + i))
				r->pattern_ok = false;
	if (!c->no_verify)
		r->hash_rx = fnv(r->hash_rx, data, len);
	r->got += len;
	r->unconsumed += len;
	if (r->unconsumed > r->max_unconsumed)
		r->max_unconsumed = r->unconsumed;
	if (!c->budget_per_tick) {
		assert_int_equal(h2_consume(s, id, r->unconsumed), 0);
		r->unconsumed = 0;
	}
}

static void c_on_trailers(struct h2_session *s, void *user, int32_t id, void *su,
                          const struct h2_header *h, size_t n)
{
	struct creq *r = su;

	r->trailers++;
	for (size_t i = 0; i < n; i++)
		if (str_is(h[i].name, "x-checksum"))
			snprintf(r->checksum, sizeof(r->checksum), "%.*s", (int)h[i].value.len,
			         h[i].value.p);
}

static void c_on_end(struct h2_session *s, void *user, int32_t id, void *su)
{
	struct creq *r = su;

	r->ended = true;
}

static void c_on_close(struct h2_session *s, void *user, int32_t id, void *su,
                       uint32_t code)
{
	struct capp *c = user;
	struct creq *r = su;

	assert_false(r->closed);
	r->closed = true;
	r->code = code;
	c->closed++;
}

static void c_pump(struct capp *c, struct creq *r)
{
	while (r->up && r->up_sent < r->up_len) {
		bool end = r->up_trailers == NULL;
		ssize_t n = h2_send_data(c->s, r->id, r->up + r->up_sent, r->up_len - r->up_sent,
		                         end);

		assert_true(n >= 0);
		r->up_sent += (size_t)n;
		if (n == 0)
			break;
		if (r->up_sent == r->up_len && r->up_trailers)
			assert_int_equal(h2_submit_trailers(c->s, r->id, r->up_trailers,
			                                    r->up_ntrailers), 0);
	}
}

static void c_on_writable(struct h2_session *s, void *user, int32_t id, void *su)
{
	struct capp *c = user;

	c->writable++;
	c_pump(c, su);
}

static void c_on_goaway(struct h2_session *s, void *user, uint32_t code, int32_t last)
{
	struct capp *c = user;

	c->goaways++;
	c->goaway_code = code;
	c->goaway_last = last;
}

static const struct h2_callbacks capp_cb = {
	.on_response = c_on_response,
	.on_data = c_on_data,
	.on_trailers = c_on_trailers,
	.on_end_stream = c_on_end,
	.on_stream_close = c_on_close,
	.on_writable = c_on_writable,
	.on_goaway = c_on_goaway,
};

static void capp_init(struct capp *c, const struct h2_limits *lim)
{
	memset(c, 0, sizeof(*c));
	c->s = h2_session_new(H2_CLIENT, lim, &capp_cb, c);
	assert_non_null(c->s);
}

static void capp_fini(struct capp *c)
{
	h2_abort(c->s);
	h2_session_free(c->s);
	for (int i = 0; i < c->n; i++)
		free(c->req[i].up);
}

static struct creq *capp_req_tr(struct capp *c, const char *method, const char *path,
                                const struct h2_header *h, size_t nh, size_t up_len,
                                struct h2_header *tr, size_t ntr)
{
	struct creq *r = &c->req[c->n++];
	struct h2_request rq = {
		.method = S(method), .scheme = S("http"), .authority = S("test.local"),
		.path = S(path), .headers = h, .nheaders = nh, .end_stream = up_len == 0,
	};

	assert_true(c->n <= (int)ARRAY_SIZE(c->req));
	free(r->up);
	memset(r, 0, sizeof(*r));
	r->pattern_ok = true;
	r->hash_rx = r->hash_up = 0xcbf29ce484222325ull;
	if (strncmp(path, "/bytes/", 7) == 0)
		r->kind = C_BYTES, r->want = strtoull(path + 7, NULL, 10);
	else if (strcmp(path, "/echo") == 0)
		r->kind = C_ECHO;
	else
		r->kind = C_OTHER;
	if (up_len) {
		r->up = xmalloc(up_len);
		for (size_t i = 0; i < up_len; i++)
			r->up[i] = (uint8_t)(rand() >> 7);
		r->up_len = up_len;
		r->hash_up = fnv(r->hash_up, r->up, up_len);
	}
	r->up_trailers = tr;
	r->up_ntrailers = ntr;
	r->id = h2_submit_request(c->s, &rq, r);
	assert_true(r->id > 0);
	assert_ptr_equal(h2_stream_user(c->s, r->id), r);
	if (up_len)
		c_pump(c, r);
	return r;
}

static struct creq *capp_req(struct capp *c, const char *method, const char *path,
                             const struct h2_header *h, size_t nh, size_t up_len)
{
	return capp_req_tr(c, method, path, h, nh, up_len, NULL, 0);
}

static void capp_tick(void *arg)
{
	struct capp *c = arg;
	size_t budget = c->budget_per_tick;

	if (!budget)
		return;
	for (int i = 0; i < c->n && budget; i++) {
		struct creq *r = &c->req[i];
		size_t n = r->unconsumed < budget ? r->unconsumed : budget;

		if (!n)
			continue;
		assert_int_equal(h2_consume(c->s, r->id, n), 0);
		r->unconsumed -= n;
		budget -= n;
	}
}

/* ================================================================== in-process pair */

static void pair_pump(struct h2_session *a, struct h2_session *b, void (*tick)(void *),
                      void *ta, void (*tick2)(void *), void *tb)
{
	int idle = 0;

	/* Stops after 50 rounds without a byte moving: ticks that consume slowly need a few
	 * rounds before a WINDOW_UPDATE is due. */
	for (int i = 0; i < 10000000 && idle < 50; i++) {
		const uint8_t *p;
		size_t n;
		bool moved = false;

		if ((n = h2_pending_output(a, &p)) > 0) {
			assert_int_equal(h2_feed(b, p, n), 0);
			h2_output_consumed(a, n);
			moved = true;
		}
		if ((n = h2_pending_output(b, &p)) > 0) {
			assert_int_equal(h2_feed(a, p, n), 0);
			h2_output_consumed(b, n);
			moved = true;
		}
		if (tick)
			tick(ta);
		if (tick2)
			tick2(tb);
		idle = moved ? 0 : idle + 1;
	}
}

static void test_pair_basic(void **state)
{
	struct app a;
	struct capp c;
	/* the last five are dropped by h2_submit_request (else the server would reset) */
	struct h2_header h[] = {
		{ S("X-Mixed-Case"), S("v") }, { S("cookie"), S("a=1") }, { S("cookie"), S("b=2") },
		{ S("authorization"), S("Bearer x") }, { S("Connection"), S("close") },
		{ S("transfer-encoding"), S("chunked") }, { S("TE"), S("gzip") },
		{ S("Host"), S("other.example") }, { S(":x-fake"), S("1") },
	};
	struct h2_header tr[] = { { S("X-Req-Trailer"), S("1") } };  /* sent lower-cased */
	struct creq *hello, *echo, *trl, *bytes0, *cont;

	app_init(&a, NULL);
	capp_init(&c, NULL);
	hello = capp_req(&c, "GET", "/hello", h, ARRAY_SIZE(h), 0);
	echo = capp_req(&c, "POST", "/echo", NULL, 0, 300000);
	trl = capp_req_tr(&c, "POST", "/trailers", NULL, 0, 1000, tr, 1);
	bytes0 = capp_req(&c, "GET", "/bytes/0", NULL, 0, 0);
	cont = capp_req(&c, "GET", "/continue", NULL, 0, 0);
	pair_pump(c.s, a.s, NULL, NULL, NULL, NULL);

	assert_int_equal(hello->status, 200);
	assert_string_equal(hello->xauthority, "test.local");
	assert_int_equal(hello->got, 5);
	assert_true(hello->ended && hello->closed && hello->code == 0);
	assert_int_equal(echo->status, 200);
	assert_int_equal(echo->got, 300000);
	assert_true(echo->hash_rx == echo->hash_up);
	assert_true(echo->ended && echo->closed && echo->code == 0);
	assert_int_equal(trl->trailers, 1);
	assert_string_equal(trl->checksum, "42");
	assert_int_equal(a.trailers_in, 1);
	assert_int_equal(bytes0->status, 200);
	assert_true(bytes0->ended && bytes0->got == 0);
	assert_int_equal(cont->n1xx, 1);
	assert_int_equal(cont->status, 200);
	assert_false(a.upper_name_seen);     /* names lower-cased on the way out */
	assert_false(a.forbidden_seen);
	assert_int_equal(a.requests, 5);
	assert_int_equal(a.closes, 5);
	assert_int_equal(a.codes[0], 5);
	assert_int_equal(c.closed, 5);
	assert_int_equal(h2_stats(c.s)->streams, 5);
	assert_int_equal(h2_stats(a.s)->streams, 5);
	/* closed streams are unknown to every call */
	assert_null(h2_stream_user(c.s, hello->id));
	assert_int_equal(h2_send_data(c.s, hello->id, "x", 1, true), -1);
	assert_int_equal(h2_reset_stream(c.s, hello->id, H2_CANCEL), -1);
	assert_int_equal(h2_consume(c.s, hello->id, 10), 0);
	assert_false(h2_done(a.s));
	assert_false(h2_done(c.s));

	/* graceful end from the client: GOAWAY(NO_ERROR), both sides done */
	assert_int_equal(h2_goaway(c.s, H2_NO_ERROR), 0);
	pair_pump(c.s, a.s, NULL, NULL, NULL, NULL);
	assert_true(h2_done(c.s));
	assert_true(h2_done(a.s));
	assert_true(h2_stats(a.s)->goaway_recv);
	assert_int_equal(h2_submit_request(c.s, &(struct h2_request){ .method = S("GET") }, NULL),
	                 -1);
	capp_fini(&c);
	app_fini(&a);
}

/* A slow consumer on each side: windows bound what is outstanding, short h2_send_data
 * calls are resumed by on_writable, nothing is lost. */
static void test_pair_backpressure(void **state)
{
	struct h2_limits lim;
	struct app a;
	struct capp c;
	struct creq *dl, *up;

	h2_limits_default(&lim);
	lim.stream_window = 65535;
	lim.connection_window = 100000;
	lim.stream_send_buffer = 32768;
	app_init(&a, &lim);
	capp_init(&c, &lim);
	a.budget_per_tick = 7000;
	c.budget_per_tick = 9000;
	dl = capp_req(&c, "GET", "/bytes/3000000", NULL, 0, 0);
	up = capp_req(&c, "POST", "/echo", NULL, 0, 2000000);
	pair_pump(c.s, a.s, capp_tick, &c, app_tick, &a);

	assert_int_equal(dl->got, 3000000);
	assert_true(dl->pattern_ok && dl->ended && dl->closed && dl->code == 0);
	assert_int_equal(up->got, 2000000);
	assert_true(up->hash_rx == up->hash_up);
	assert_true(dl->max_unconsumed <= 65535);
	assert_true(up->max_unconsumed <= 65535);
	assert_true(a.max_pend <= 65535);
	assert_true(a.writable_calls > 10);
	assert_true(c.writable > 10);
	capp_fini(&c);
	app_fini(&a);
}

/* Resets before the request left, owner resets mid-body, and h2_abort. */
static void test_pair_reset_abort(void **state)
{
	struct app a;
	struct capp c;
	struct creq *r1, *r2, *h1, *h2s, *up;

	app_init(&a, NULL);
	capp_init(&c, NULL);
	r1 = capp_req(&c, "GET", "/hold", NULL, 0, 0);
	assert_int_equal(h2_reset_stream(c.s, r1->id, H2_CANCEL), 0);   /* not sent yet */
	r2 = capp_req(&c, "GET", "/bytes/5000000", NULL, 0, 0);
	h1 = capp_req(&c, "GET", "/hold", NULL, 0, 0);
	h2s = capp_req(&c, "GET", "/hold", NULL, 0, 0);
	up = capp_req(&c, "POST", "/hold", NULL, 0, 100000);
	c.budget_per_tick = 1;   /* r2 stalls on its window */
	pair_pump(c.s, a.s, capp_tick, &c, NULL, NULL);
	assert_true(r1->closed);
	assert_int_equal(r1->code, H2_CANCEL);
	assert_int_equal(r2->status, 200);
	assert_false(r2->closed);
	assert_int_equal(h2_reset_stream(c.s, r2->id, H2_CANCEL), 0);
	pair_pump(c.s, a.s, NULL, NULL, NULL, NULL);
	assert_true(r2->closed);
	assert_int_equal(r2->code, H2_CANCEL);
	assert_int_equal(a.codes[H2_CANCEL], 1);   /* the server saw r2's reset */
	assert_int_equal(a.nheld, 3);              /* r1 never reached it */

	/* the connection window is not leaked by r2's unconsumed bytes: more data flows */
	c.budget_per_tick = 0;
	{
		struct creq *more = capp_req(&c, "GET", "/bytes/5000000", NULL, 0, 0);

		pair_pump(c.s, a.s, NULL, NULL, NULL, NULL);
		assert_int_equal(more->got, 5000000);
	}

	h2_abort(c.s);
	assert_true(h1->closed && h2s->closed && up->closed);
	assert_int_equal(h1->code, H2_E_SESSION_GONE);
	assert_int_equal(up->code, H2_E_SESSION_GONE);
	assert_int_equal(h2_submit_request(c.s, &(struct h2_request){ .method = S("GET") }, NULL),
	                 -1);
	assert_int_equal(h2_feed(c.s, "x", 1), -1);
	assert_true(h2_done(c.s));
	h2_abort(a.s);
	assert_int_equal(a.closes, 5);   /* r2, more, and the three held streams */
	assert_int_equal(a.nlive, 0);
	capp_fini(&c);
	h2_session_free(a.s);
	sbuf_free(&a.h1);
}

/* HTTP/1.1 request head -> h2 (client) -> h2 (server) -> HTTP/1.1 head. */
static void test_pair_h1_roundtrip(void **state)
{
	static const char req[] =
		"POST /h1/path?q=1 HTTP/1.1\r\n"
		"Host: Example.COM:8080\r\n"
		"Connection: keep-alive, X-Hop\r\n"
		"X-Hop: secret\r\n"
		"Keep-Alive: timeout=5\r\n"
		"TE: trailers\r\n"
		"Cookie: a=1\r\n"
		"User-Agent: curl/8\r\n"
		"Cookie: b=2\r\n"
		"Content-Length: 3\r\n"
		"\r\n";
	struct h1_parser p;
	struct h1_msg m;
	struct h2_from_h1 conv;
	struct app a;
	struct capp c;
	int32_t id;

	h1_parser_init(&p, true, 0);
	assert_int_equal(h1_parse(&p, req, sizeof(req) - 1, &m), H1_OK);
	assert_int_equal(h2_request_from_h1(&m, req, "https", &conv), 0);
	assert_false(conv.rq.end_stream);
	app_init(&a, NULL);
	capp_init(&c, NULL);
	c.req[0].pattern_ok = true;
	c.req[0].kind = C_OTHER;
	c.n = 1;
	id = h2_submit_request(c.s, &conv.rq, &c.req[0]);
	assert_true(id > 0);
	c.req[0].id = id;
	assert_int_equal(h2_send_data(c.s, id, "abc", 3, true), 3);
	h2_from_h1_fini(&conv);
	pair_pump(c.s, a.s, NULL, NULL, NULL, NULL);
	assert_true(a.h1_ok);
	assert_string_equal(sbuf_str(&a.h1),
	                    "POST /h1/path?q=1 HTTP/1.1\r\n"
	                    "host: Example.COM:8080\r\n"
	                    "cookie: a=1; b=2\r\n"
	                    "user-agent: curl/8\r\n");
	assert_int_equal(c.req[0].status, 200);
	capp_fini(&c);
	app_fini(&a);
}

/* Micro-benchmark: per-request cost of a small GET through both sessions (client and
 * server work together, no I/O), and bulk DATA throughput. Printed, not asserted. */
static void test_pair_bench(void **state)
{
	struct app a;
	struct capp c;
	const int rounds = 200, batch = 100;
	uint64_t t0, t1, t2;
	struct h2_header h[] = { { S("user-agent"), S("bench/1.0") }, { S("accept"), S("*/*") } };

	app_init(&a, NULL);
	capp_init(&c, NULL);
	t0 = mono_us();
	for (int r = 0; r < rounds; r++) {
		c.n = 0;
		for (int i = 0; i < batch; i++) {
			struct creq *q = &c.req[c.n++];
			struct h2_request rq = {
				.method = S("GET"), .scheme = S("https"), .authority = S("test.local"),
				.path = S("/hello"), .headers = h, .nheaders = 2, .end_stream = true,
			};

			memset(q, 0, sizeof(*q));
			q->id = h2_submit_request(c.s, &rq, q);
			assert_true(q->id > 0);
		}
		pair_pump(c.s, a.s, NULL, NULL, NULL, NULL);
		assert_int_equal(c.req[batch - 1].status, 200);
	}
	t1 = mono_us();
	c.n = 0;
	c.no_verify = true;
	{
		struct creq *big = capp_req(&c, "GET", "/bytes/67108864", NULL, 0, 0);

		pair_pump(c.s, a.s, NULL, NULL, NULL, NULL);
		assert_int_equal(big->got, 67108864);
	}
	t2 = mono_us();
	print_message("h2 bench: %d GET requests (both sessions, in-process): %.2f us/request; "
	              "64 MiB response body: %.0f MB/s\n",
	              rounds * batch, (double)(t1 - t0) / (rounds * batch),
	              67108864.0 / (double)(t2 - t1));
	capp_fini(&c);
	app_fini(&a);
}

/* ================================================================== real peers */

struct peer {
	pid_t pid;
	int fd;
	int outfd;
	char res[4096];
	int status;
};

struct run {
	bool eof, feed_err, timeout, done;
};

static void peer_start(struct peer *p, const char *scenario)
{
	int sv[2], po[2];
	char script[512], fdarg[16];
	const char *slash = strrchr(__FILE__, '/');

	/* tests run from the repository root; __FILE__ is tests/unit/test_h2.c */
	snprintf(script, sizeof(script), "%.*s/h2_peer.py", (int)(slash - __FILE__), __FILE__);
	memset(p, 0, sizeof(*p));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pipe(po), 0);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(po[1], 1);
		close(po[0]);
		close(po[1]);
		close(sv[0]);
		snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
		execl("/usr/bin/python3", "python3", script, scenario, fdarg, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	close(po[1]);
	p->fd = sv[0];
	p->outfd = po[0];
	fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
}

/* Closes our end, collects the peer's report and exit status. */
static void peer_finish(struct peer *p)
{
	size_t len = 0;
	ssize_t n;

	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	while ((n = read(p->outfd, p->res + len, sizeof(p->res) - 1 - len)) > 0)
		len += (size_t)n;
	p->res[len] = '\0';
	close(p->outfd);
	waitpid(p->pid, &p->status, 0);
	if (!WIFEXITED(p->status) || WEXITSTATUS(p->status) != 0)
		print_error("peer failed (status %d):\n%s\n", p->status, p->res);
}

static bool peer_ok(const struct peer *p)
{
	return WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0;
}

static const char *res_find(const struct peer *p, const char *key)
{
	size_t kl = strlen(key);

	for (const char *l = p->res; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (strncmp(l, key, kl) == 0 && l[kl] == '=')
			return l + kl + 1;
	return NULL;
}

static long res_num(const struct peer *p, const char *key)
{
	const char *v = res_find(p, key);

	if (!v) {
		print_error("peer did not report %s:\n%s\n", key, p->res);
		return -999;
	}
	if (strncmp(v, "None", 4) == 0)
		return -1;
	return strtol(v, NULL, 10);
}

static bool res_is(const struct peer *p, const char *key, const char *want)
{
	const char *v = res_find(p, key);
	size_t wl = strlen(want);

	return v && strncmp(v, want, wl) == 0 && (v[wl] == '\n' || v[wl] == '\0');
}

static void flush_out(struct h2_session *s, int fd)
{
	const uint8_t *p;
	size_t n;

	while ((n = h2_pending_output(s, &p)) > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			break;
		h2_output_consumed(s, (size_t)w);
	}
}

/* The event loop: poll, read -> h2_feed, flush, tick, until the session is done, the peer
 * closes, h2_feed fails or the time is up. */
static void drive(struct h2_session *s, int fd, void (*tick)(void *), void *arg,
                  int timeout_ms, struct run *r)
{
	static uint8_t buf[65536];
	uint64_t end = mono_us() + (uint64_t)timeout_ms * 1000;

	memset(r, 0, sizeof(*r));
	for (;;) {
		struct pollfd pfd = { fd, 0, 0 };

		flush_out(s, fd);
		if (h2_done(s)) {
			r->done = true;
			break;
		}
		if (h2_want_read(s))
			pfd.events |= POLLIN;
		if (h2_want_write(s))
			pfd.events |= POLLOUT;
		poll(&pfd, 1, 2);
		if (tick)
			tick(arg);
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				r->eof = true;
				break;
			}
			if (n > 0 && h2_feed(s, buf, (size_t)n) < 0) {
				r->feed_err = true;
				break;
			}
		}
		if (mono_us() > end) {
			r->timeout = true;
			break;
		}
	}
}

/* Runs scenario against a server app; returns with the peer finished. */
static void run_server(struct app *a, struct peer *p, const char *scenario, int timeout_ms,
                       struct run *r)
{
	peer_start(p, scenario);
	drive(a->s, p->fd, app_tick, a, timeout_ms, r);
	peer_finish(p);
}

static void test_py_concurrent(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "concurrent", 30000, &r);
	assert_true(peer_ok(&p));
	assert_int_equal(res_num(&p, "streams"), 100);
	assert_int_equal(a.requests, 100);
	assert_int_equal(a.codes[0], 100);
	assert_false(r.timeout);
	app_fini(&a);
}

/* 5 MiB each way; the server forwards (and so consumes) at most 24 KiB per 2 ms tick
 * through 64 KiB windows: the peer can never have more than a window in flight. */
static void test_py_bigbody(void **state)
{
	struct h2_limits lim;
	struct app a;
	struct peer p;
	struct run r;

	h2_limits_default(&lim);
	lim.stream_window = 65535;
	lim.connection_window = 131072;
	app_init(&a, &lim);
	a.budget_per_tick = 24576;
	run_server(&a, &p, "bigbody", 60000, &r);
	assert_true(peer_ok(&p));
	assert_int_equal(res_num(&p, "echoed"), 5 * 1024 * 1024);
	assert_int_equal(res_num(&p, "downloaded"), 5 * 1024 * 1024);
	assert_int_equal(a.bytes_in, 5 * 1024 * 1024);
	assert_true(a.max_pend > 0 && a.max_pend <= 65535);
	assert_true(a.writable_calls > 0);
	app_fini(&a);
}

static void test_py_reset(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "reset", 30000, &r);
	assert_true(peer_ok(&p));
	assert_int_equal(res_num(&p, "completed"), 9);
	assert_int_equal(a.codes[H2_CANCEL], 1);
	assert_int_equal(a.codes[0], 9);
	assert_false(h2_stats(a.s)->goaway_sent);
	app_fini(&a);
}

static void expect_calm(struct app *a, const struct peer *p, const char *why)
{
	assert_true(peer_ok(p));
	assert_int_equal(res_num(p, "goaway"), H2_ENHANCE_YOUR_CALM);
	assert_true(h2_stats(a->s)->goaway_sent);
	assert_int_equal(h2_stats(a->s)->goaway_code, H2_ENHANCE_YOUR_CALM);
	if (!strstr(h2_error(a->s), why))
		print_error("h2_error: %s\n", h2_error(a->s));
	assert_non_null(strstr(h2_error(a->s), why));
}

static void test_py_rapid_reset(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "rapid_reset", 30000, &r);
	expect_calm(&a, &p, "Rapid Reset");
	assert_true(r.done || r.eof);
	assert_true(h2_stats(a.s)->resets_recv >= 1000);
	print_message("rapid reset: GOAWAY after %llu resets (peer sent %ld)\n",
	              (unsigned long long)h2_stats(a.s)->resets_recv, res_num(&p, "sent"));
	app_fini(&a);
}

static void expect_flood_drop(struct app *a, const struct peer *p, const struct run *r)
{
	assert_true(peer_ok(p));
	assert_int_equal(res_num(p, "closed"), 1);
	assert_true(r->feed_err);
	assert_non_null(strstr(h2_error(a->s), "flood"));
}

static void test_py_settings_flood(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "settings_flood", 30000, &r);
	expect_flood_drop(&a, &p, &r);
	app_fini(&a);
}

static void test_py_ping_flood(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "ping_flood", 30000, &r);
	expect_flood_drop(&a, &p, &r);
	app_fini(&a);
}

/* A peer that sends requests and never reads: responses and refusals pile up in
 * nghttp2's queue until max_outbound_frames (lowered here, and the reset limiter raised,
 * so that this bound is the one that acts). */
static void test_py_outbound_queue(void **state)
{
	struct h2_limits lim;
	struct app a;
	struct peer p;
	struct run r;

	h2_limits_default(&lim);
	lim.max_outbound_frames = 200;
	lim.reset_burst = 1000000;
	lim.reset_rate = 1000000;
	app_init(&a, &lim);
	run_server(&a, &p, "no_read", 60000, &r);
	assert_true(peer_ok(&p));
	assert_true(r.feed_err);
	assert_non_null(strstr(h2_error(a.s), "outbound frame queue"));
	app_fini(&a);
}

static void test_py_empty_data(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "empty_data", 20000, &r);
	expect_calm(&a, &p, "consecutive");
	app_fini(&a);
}

static void test_py_empty_spread(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "empty_spread", 30000, &r);
	expect_calm(&a, &p, "session rate");
	assert_true(h2_stats(a.s)->empty_frames > 1000);
	app_fini(&a);
}

static void test_py_continuation_flood(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "continuation_flood", 20000, &r);
	assert_true(peer_ok(&p));
	assert_true(h2_stats(a.s)->goaway_sent);
	assert_int_not_equal(h2_stats(a.s)->goaway_code, H2_NO_ERROR);
	assert_int_equal(res_num(&p, "goaway"), (long)h2_stats(a.s)->goaway_code);
	assert_int_equal(a.requests, 0);
	print_message("continuation flood: GOAWAY code %u (%s)\n", h2_stats(a.s)->goaway_code,
	              h2_error(a.s));
	app_fini(&a);
}

static void test_py_too_many_streams_preack(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	a.hold_until = 100;
	run_server(&a, &p, "too_many_preack", 30000, &r);
	assert_true(peer_ok(&p));
	assert_int_equal(res_num(&p, "refused"), 10);
	assert_int_equal(res_num(&p, "answered"), 100);
	assert_int_equal(a.requests, 100);
	app_fini(&a);
}

static void test_py_too_many_streams_postack(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "too_many_postack", 30000, &r);
	/* nghttp2 makes a peer that exceeds the limit it has acknowledged a connection error
	 * (RFC 9113 5.1.2 also allows a stream error); the first 100 streams were delivered. */
	assert_true(peer_ok(&p));
	assert_int_equal(a.requests, 100);
	assert_int_equal(res_num(&p, "refused"), 0);
	assert_int_equal(res_num(&p, "goaway"), H2_PROTOCOL_ERROR);
	assert_int_equal(h2_stats(a.s)->goaway_code, H2_PROTOCOL_ERROR);
	app_fini(&a);
}

static void test_py_big_headers(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "big_headers", 20000, &r);
	assert_true(peer_ok(&p));
	assert_int_equal(res_num(&p, "big"), 431);
	assert_int_equal(res_num(&p, "bomb"), 431);
	assert_int_equal(res_num(&p, "after"), 200);
	assert_int_equal(res_num(&p, "big_body"), 431);
	assert_int_equal(res_num(&p, "big_body_rst"), H2_NO_ERROR);
	assert_int_equal(a.requests, 1);    /* the 431s never reached the owner */
	app_fini(&a);
}

static void test_py_bad_headers(void **state)
{
	static const char *const reset[] = {
		"upper", "lead_ws", "connection", "keep_alive", "proxy_connection",
		"transfer_encoding", "upgrade", "te_gzip", "host_mismatch", "no_path",
		"pseudo_after",
	};
	static const char *const fine[] = { "te_trailers", "host_same_case", "plain", "host_only" };
	struct app a;
	struct peer p;
	struct run r;
	int bad = 0;

	app_init(&a, NULL);
	run_server(&a, &p, "bad_headers", 20000, &r);
	assert_true(peer_ok(&p));
	for (size_t i = 0; i < ARRAY_SIZE(reset); i++)
		if (res_num(&p, reset[i]) != H2_PROTOCOL_ERROR) {
			print_error("%s: want RST_STREAM(PROTOCOL_ERROR), got %ld\n", reset[i],
			            res_num(&p, reset[i]));
			bad++;
		}
	for (size_t i = 0; i < ARRAY_SIZE(fine); i++)
		if (res_num(&p, fine[i]) != 0) {
			print_error("%s: want 200, got %ld\n", fine[i], res_num(&p, fine[i]));
			bad++;
		}
	assert_int_equal(bad, 0);
	assert_true(res_is(&p, "host_only_authority", "h.example"));
	assert_int_equal(a.requests, (int)ARRAY_SIZE(fine));
	app_fini(&a);
}

static void test_py_content_length(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "content_length", 20000, &r);
	assert_true(peer_ok(&p));
	assert_int_equal(res_num(&p, "short"), H2_PROTOCOL_ERROR);
	assert_int_equal(res_num(&p, "long"), H2_PROTOCOL_ERROR);
	assert_int_equal(res_num(&p, "ok"), 200);
	assert_int_equal(a.codes[H2_PROTOCOL_ERROR], 2);   /* the owner learns of both */
	app_fini(&a);
}

static void test_py_trailers(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "trailers", 20000, &r);
	assert_true(peer_ok(&p));
	assert_true(res_is(&p, "resp_trailer", "42"));
	assert_true(res_is(&p, "upper_trailer", "v"));
	assert_int_equal(a.trailers_in, 1);
	app_fini(&a);
}

static void test_py_drain(void **state)
{
	struct app a;
	struct peer p;
	struct run r;

	app_init(&a, NULL);
	run_server(&a, &p, "drain", 20000, &r);
	assert_true(peer_ok(&p));
	assert_int_equal(res_num(&p, "status"), 200);
	assert_true(res_is(&p, "goaways", "2147483647:0,1:0"));
	assert_int_equal(res_num(&p, "closed"), 1);
	assert_true(r.done);
	assert_int_equal(h2_stats(a.s)->goaway_code, H2_NO_ERROR);
	app_fini(&a);
}

/* Our client against a python3-h2 server. */
static void test_py_client(void **state)
{
	struct h2_limits lim;
	struct capp c;
	struct peer p;
	struct run r;
	struct creq *bytes[30], *echo[5], *trl, *rst, *big, *info, *cont;
	struct h2_header tr[] = { { S("x-client-trailer"), S("1") } };
	struct h2_header ih[] = { { S("Cookie"), S("a=1") }, { S("X-Mixed"), S("v") },
		                  { S("cookie"), S("b=2") } };

	h2_limits_default(&lim);
	lim.stream_window = 65535;
	lim.stream_send_buffer = 16384;
	capp_init(&c, &lim);
	c.budget_per_tick = 65536;
	for (int i = 0; i < 30; i++) {
		char path[32];

		snprintf(path, sizeof(path), "/bytes/%d", i * 30011);
		bytes[i] = capp_req(&c, "GET", path, NULL, 0, 0);
	}
	for (int i = 0; i < 5; i++)
		echo[i] = capp_req(&c, "POST", "/echo", NULL, 0, 300000 + (size_t)i);
	trl = capp_req_tr(&c, "POST", "/trailers", NULL, 0, 3, tr, 1);
	rst = capp_req(&c, "GET", "/reset", NULL, 0, 0);
	big = capp_req(&c, "GET", "/bighead", NULL, 0, 0);
	info = capp_req(&c, "GET", "/info", ih, ARRAY_SIZE(ih), 0);
	cont = capp_req(&c, "GET", "/continue", NULL, 0, 0);

	peer_start(&p, "server");
	{
		uint64_t end = mono_us() + 30000000;

		while (c.closed < c.n && mono_us() < end) {
			drive(c.s, p.fd, capp_tick, &c, 200, &r);
			if (r.eof || r.feed_err)
				break;
		}
	}
	assert_int_equal(c.closed, c.n);
	assert_int_equal(h2_goaway(c.s, H2_NO_ERROR), 0);
	flush_out(c.s, p.fd);
	peer_finish(&p);
	assert_true(peer_ok(&p));
	assert_int_equal(res_num(&p, "client_goaway"), 0);

	for (int i = 0; i < 30; i++) {
		assert_int_equal(bytes[i]->status, 200);
		assert_int_equal(bytes[i]->got, bytes[i]->want);
		assert_true(bytes[i]->pattern_ok && bytes[i]->ended && bytes[i]->code == 0);
		assert_true(bytes[i]->max_unconsumed <= 65535);
	}
	for (int i = 0; i < 5; i++) {
		assert_int_equal(echo[i]->got, echo[i]->up_len);
		assert_true(echo[i]->hash_rx == echo[i]->hash_up);
	}
	assert_true(c.writable > 0);
	assert_int_equal(trl->trailers, 1);
	assert_string_equal(trl->checksum, "42");
	assert_true(rst->closed);
	assert_int_equal(rst->code, H2_CANCEL);
	assert_true(big->closed);
	assert_int_equal(big->code, H2_E_HEADERS_TOO_LARGE);
	assert_int_equal(info->status, 200);
	/* python3-h2 joins cookie crumbs itself (RFC 9113 8.2.3) */
	assert_string_equal(info->xcookie, "a=1; b=2");
	print_message("names as the server saw them: %s\n", info->xnames);
	assert_string_equal(info->xnames, "x-mixed,cookie");
	assert_int_equal(cont->n1xx, 1);
	assert_int_equal(cont->status, 200);
	assert_int_equal(cont->got, 4);
	capp_fini(&c);
}

/* GOAWAY from the server: streams above its last id close REFUSED_STREAM (retryable). */
static void test_py_client_goaway(void **state)
{
	struct capp c;
	struct peer p;
	struct run r;
	struct creq *g, *h[3];

	capp_init(&c, NULL);
	assert_true(h2_streams_available(c.s) > 0);
	g = capp_req(&c, "GET", "/goaway", NULL, 0, 0);
	for (int i = 0; i < 3; i++)
		h[i] = capp_req(&c, "GET", "/hold", NULL, 0, 0);
	peer_start(&p, "server");
	drive(c.s, p.fd, NULL, NULL, 20000, &r);
	assert_true(r.done);
	assert_int_equal(c.goaways, 1);
	assert_int_equal(c.goaway_code, 0);
	assert_int_equal(c.goaway_last, g->id);
	assert_int_equal(g->status, 200);
	assert_true(g->closed && g->code == 0);
	for (int i = 0; i < 3; i++) {
		assert_true(h[i]->closed);
		assert_int_equal(h[i]->code, H2_REFUSED_STREAM);
	}
	assert_int_equal(h2_streams_available(c.s), 0);
	assert_int_equal(h2_submit_request(c.s, &(struct h2_request){ .method = S("GET") }, NULL),
	                 -1);
	peer_finish(&p);
	assert_true(peer_ok(&p));
	capp_fini(&c);
}

/* ================================================================== nghttp2 tools */

/* Runs argv (with "URL" arguments ending in a path, "%s" replaced by the base URL) against
 * one connection to the server app on 127.0.0.1; returns the tool's exit status and its
 * stdout in out. */
static int run_tool(struct app *a, const char *const *argv_tpl, char *out, size_t cap)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sin);
	char base[64], argbuf[8][160];
	const char *argv[9];
	int ls, fd, po[2], status;
	struct pollfd pfd;
	struct run r;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	if (access(argv_tpl[0], X_OK) != 0) {
		print_error("%s missing: install nghttp2-client (scripts/deps.sh)\n", argv_tpl[0]);
		fail();
	}
	ls = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(ls >= 0);
	assert_int_equal(bind(ls, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(ls, 4), 0);
	assert_int_equal(getsockname(ls, (struct sockaddr *)&sin, &sl), 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", ntohs(sin.sin_port));
	for (int i = 0; argv_tpl[i]; i++) {
		assert_true(i < 8);
		snprintf(argbuf[i], sizeof(argbuf[i]), argv_tpl[i], base);
		argv[i] = argbuf[i];
		argv[i + 1] = NULL;
	}
	assert_int_equal(pipe(po), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(po[1], 1);
		close(po[0]);
		close(po[1]);
		close(ls);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(po[1]);
	pfd = (struct pollfd){ ls, POLLIN, 0 };
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	fd = accept(ls, NULL, NULL);
	assert_true(fd >= 0);
	close(ls);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	drive(a->s, fd, app_tick, a, 60000, &r);
	close(fd);
	while ((n = read(po[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(po[0]);
	waitpid(pid, &status, 0);
	assert_false(r.timeout);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_tool_nghttp(void **state)
{
	static const char *const argv[] = { "/usr/bin/nghttp", "-n", "-m", "20",
		                            "%s/bytes/100000", "%s/hello", NULL };
	static char out[65536];
	struct app a;

	app_init(&a, NULL);
	assert_int_equal(run_tool(&a, argv, out, sizeof(out)), 0);
	assert_int_equal(a.requests, 40);
	assert_int_equal(a.codes[0], 40);
	app_fini(&a);
}

/* h2load over one connection, 100 streams at a time: per-request cost with real I/O. */
static void test_tool_h2load(void **state)
{
	static const char *const argv[] = { "/usr/bin/h2load", "-n", "20000", "-c", "1", "-m",
		                            "100", "%s/hello", NULL };
	static char out[65536];
	struct app a;
	const char *line, *rps;

	app_init(&a, NULL);
	assert_int_equal(run_tool(&a, argv, out, sizeof(out)), 0);
	line = strstr(out, "requests: ");
	assert_non_null(line);
	assert_non_null(strstr(line, "20000 succeeded"));
	assert_int_equal(a.requests, 20000);
	rps = strstr(out, "finished in");
	if (rps)
		print_message("h2load -c 1 -m 100 against the server session: %.*s\n",
		              (int)strcspn(rps, "\n"), rps);
	app_fini(&a);
}

/* ================================================================== translation */

static int parse(const char *s, bool req, int method, struct h1_msg *m)
{
	struct h1_parser p;

	h1_parser_init(&p, req, method);
	return h1_parse(&p, s, strlen(s), m);
}

static bool has_field(const struct h2_header *h, size_t n, const char *name, const char *val)
{
	for (size_t i = 0; i < n; i++)
		if (h1_name_eq(h[i].name.p, h[i].name.len, name, strlen(name)) &&
		    str_is(h[i].value, val))
			return true;
	return false;
}

static bool has_name(const struct h2_header *h, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (h1_name_eq(h[i].name.p, h[i].name.len, name, strlen(name)))
			return true;
	return false;
}

static void test_from_h1(void **state)
{
	static struct h1_msg m;
	struct h2_from_h1 c;
	const char *s;

	s = "POST http://example.com?x=1 HTTP/1.1\r\nHost: example.com\r\n"
	    "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\n"
	    "Proxy-Connection: x\r\nUpgrade: h2c\r\nContent-Length: 5\r\nCookie: a=1\r\n"
	    "X-Custom: v\r\n\r\n";
	assert_int_equal(parse(s, true, 0, &m), H1_OK);
	assert_int_equal(h2_request_from_h1(&m, s, "https", &c), 0);
	assert_true(str_is(c.rq.method, "POST"));
	assert_true(str_is(c.rq.scheme, "http"));
	assert_true(str_is(c.rq.authority, "example.com"));
	assert_true(str_is(c.rq.path, "/?x=1"));
	assert_int_equal(c.rq.nheaders, 4);
	assert_true(has_field(c.rq.headers, c.rq.nheaders, "cookie", "a=1"));
	assert_true(has_field(c.rq.headers, c.rq.nheaders, "x-custom", "v"));
	assert_true(has_field(c.rq.headers, c.rq.nheaders, "te", "trailers"));
	assert_true(has_field(c.rq.headers, c.rq.nheaders, "content-length", "5"));
	assert_false(c.rq.end_stream);
	assert_int_equal(c.rq.content_length, 5);
	h2_from_h1_fini(&c);

	s = "GET /a/b HTTP/1.1\r\nhost: h.example:81\r\nTransfer-Encoding: chunked\r\n\r\n";
	assert_int_equal(parse(s, true, 0, &m), H1_OK);
	assert_int_equal(h2_request_from_h1(&m, s, NULL, &c), 0);
	assert_true(str_is(c.rq.scheme, "http"));
	assert_true(str_is(c.rq.authority, "h.example:81"));
	assert_true(str_is(c.rq.path, "/a/b"));
	assert_false(c.rq.end_stream);                /* chunked body */
	assert_int_equal(c.rq.nheaders, 0);
	h2_from_h1_fini(&c);

	s = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
	assert_int_equal(parse(s, true, 0, &m), H1_OK);
	assert_int_equal(h2_request_from_h1(&m, s, "http", &c), 0);
	assert_true(str_is(c.rq.authority, "example.com:443"));
	assert_int_equal(c.rq.scheme.len, 0);
	assert_int_equal(c.rq.path.len, 0);
	assert_true(c.rq.end_stream);
	h2_from_h1_fini(&c);

	s = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_int_equal(parse(s, true, 0, &m), H1_OK);
	assert_int_equal(h2_request_from_h1(&m, s, "http", &c), 0);
	assert_true(str_is(c.rq.path, "*"));
	h2_from_h1_fini(&c);

	s = "GET http://example.com HTTP/1.1\r\nHost: other\r\n\r\n";
	assert_int_equal(parse(s, true, 0, &m), H1_OK);
	assert_int_equal(h2_request_from_h1(&m, s, "http", &c), 0);
	assert_true(str_is(c.rq.path, "/"));
	assert_true(str_is(c.rq.authority, "example.com"));
	assert_false(has_name(c.rq.headers, c.rq.nheaders, "host"));
	h2_from_h1_fini(&c);

	s = "GET / HTTP/1.0\r\n\r\n";
	assert_int_equal(parse(s, true, 0, &m), H1_OK);
	assert_int_equal(h2_request_from_h1(&m, s, "http", &c), -1);

	s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\nKeep-Alive: 5\r\n"
	    "Connection: close\r\n\r\n";
	assert_int_equal(parse(s, false, H1_M_GET, &m), H1_OK);
	assert_int_equal(h2_response_from_h1(&m, s, &c), 0);
	assert_int_equal(c.rs.status, 200);
	assert_int_equal(c.rs.nheaders, 1);
	assert_true(has_field(c.rs.headers, 1, "x-a", "b"));
	assert_false(c.rs.end_stream);
	assert_int_equal(c.rs.content_length, -1);

	s = "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n";
	assert_int_equal(parse(s, false, H1_M_HEAD, &m), H1_OK);
	assert_int_equal(h2_response_from_h1(&m, s, &c), 0);
	assert_true(c.rs.end_stream);
	assert_true(has_field(c.rs.headers, c.rs.nheaders, "content-length", "42"));

	s = "HTTP/1.1 204 No Content\r\n\r\n";
	assert_int_equal(parse(s, false, H1_M_GET, &m), H1_OK);
	assert_int_equal(h2_response_from_h1(&m, s, &c), 0);
	assert_true(c.rs.end_stream);
	assert_int_equal(c.rs.nheaders, 0);

	s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
	assert_int_equal(parse(s, false, H1_M_GET, &m), H1_OK);
	assert_int_equal(h2_response_from_h1(&m, s, &c), -1);
}

/* A response head to HTTP/1.1 text (up_h2.c); requests are decoded by h2_request_msg
 * (test_h2_req.c), never rendered as text. */
static void test_to_h1(void **state)
{
	struct sbuf b = SBUF_INIT;
	struct h2_header h[] = { { S("accept"), S("*/*") } };
	struct h2_response rs = { .status = 404, .headers = h, .nheaders = 1 };
	struct h2_header evil[] = { { S("x"), S("a\r\nInjected: 1") } };

	assert_int_equal(h2_response_to_h1(&rs, &b), 0);
	assert_string_equal(sbuf_str(&b), "HTTP/1.1 404 Not Found\r\naccept: */*\r\n");

	/* nothing appended when anything would break HTTP/1.1 framing */
	sbuf_reset(&b);
	sbuf_adds(&b, "keep");
	rs.headers = evil;
	assert_int_equal(h2_response_to_h1(&rs, &b), -1);
	assert_string_equal(sbuf_str(&b), "keep");
	sbuf_free(&b);
}

static void test_dup_preface(void **state)
{
	struct h2_header h[] = { { S("a"), S("1") }, { S("bb"), S("22") } };
	struct h2_request rq = { .method = S("GET"), .scheme = S("http"), .authority = S("x"),
		                 .path = S("/"), .headers = h, .nheaders = 2,
		                 .content_length = 7, .end_stream = true };
	struct h2_response rs = { .status = 201, .headers = h, .nheaders = 2 };
	struct h2_request *c = h2_request_dup(&rq);
	struct h2_response *d = h2_response_dup(&rs);

	assert_true(str_is(c->method, "GET") && str_is(c->authority, "x") && str_is(c->path, "/"));
	assert_int_equal(c->nheaders, 2);
	assert_true(str_is(c->headers[1].name, "bb") && str_is(c->headers[1].value, "22"));
	assert_true(c->headers[1].name.p != h[1].name.p);
	assert_int_equal(c->content_length, 7);
	assert_true(c->end_stream);
	assert_int_equal(d->status, 201);
	assert_true(str_is(d->headers[0].value, "1"));
	free(c);
	free(d);

	assert_int_equal(h2_preface_check("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nxyz", 27),
	                 H2_PREFACE_YES);
	assert_int_equal(h2_preface_check("PRI * HTTP/2", 12), H2_PREFACE_MORE);
	assert_int_equal(h2_preface_check("GET / HTTP/1.1\r\n", 16), H2_PREFACE_NO);
	assert_int_equal(h2_preface_check("", 0), H2_PREFACE_MORE);
}

/* A server fed HTTP/1.1 fails cleanly; input after death is refused. */
static void test_bad_preface(void **state)
{
	struct app a;
	const char *h1 = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	app_init(&a, NULL);
	assert_int_equal(h2_feed(a.s, h1, strlen(h1)), -1);
	assert_non_null(strstr(h2_error(a.s), "preface"));
	assert_true(h2_done(a.s));
	assert_int_equal(h2_feed(a.s, "x", 1), -1);
	app_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from_h1),
		cmocka_unit_test(test_to_h1),
		cmocka_unit_test(test_dup_preface),
		cmocka_unit_test(test_bad_preface),
		cmocka_unit_test(test_pair_basic),
		cmocka_unit_test(test_pair_backpressure),
		cmocka_unit_test(test_pair_reset_abort),
		cmocka_unit_test(test_pair_h1_roundtrip),
		cmocka_unit_test(test_pair_bench),
		cmocka_unit_test(test_py_concurrent),
		cmocka_unit_test(test_py_bigbody),
		cmocka_unit_test(test_py_reset),
		cmocka_unit_test(test_py_rapid_reset),
		cmocka_unit_test(test_py_settings_flood),
		cmocka_unit_test(test_py_ping_flood),
		cmocka_unit_test(test_py_outbound_queue),
		cmocka_unit_test(test_py_empty_data),
		cmocka_unit_test(test_py_empty_spread),
		cmocka_unit_test(test_py_continuation_flood),
		cmocka_unit_test(test_py_too_many_streams_preack),
		cmocka_unit_test(test_py_too_many_streams_postack),
		cmocka_unit_test(test_py_big_headers),
		cmocka_unit_test(test_py_bad_headers),
		cmocka_unit_test(test_py_content_length),
		cmocka_unit_test(test_py_trailers),
		cmocka_unit_test(test_py_drain),
		cmocka_unit_test(test_py_client),
		cmocka_unit_test(test_py_client_goaway),
		cmocka_unit_test(test_tool_nghttp),
		cmocka_unit_test(test_tool_h2load),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
