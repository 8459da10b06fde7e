/* HTTP/1.1 codec: head parsing (strictness, each rule with its status), resumability,
 * pipelining, chunked decoding at every split, trailers, helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/h1.h"

/* ------------------------------------------------------------------ helpers */

struct ecase {
	const char *s;
	size_t len;
	int status;  /* expected p.status; 0 = expect H1_OK */
};
#define E(str, st) { str, sizeof(str) - 1, st }

static int parse_n(const char *s, size_t n, bool req, int method, struct h1_parser *p,
                   struct h1_msg *m)
{
	h1_parser_init(p, req, method);
	return h1_parse(p, s, n, m);
}

static int parse_req(const char *s, struct h1_parser *p, struct h1_msg *m)
{
	return parse_n(s, strlen(s), true, 0, p, m);
}

static int parse_resp(const char *s, int method, struct h1_parser *p, struct h1_msg *m)
{
	return parse_n(s, strlen(s), false, method, p, m);
}

/* Runs a table of cases, reporting every mismatch before failing. */
static void run_cases(const struct ecase *c, size_t n, bool req, int method)
{
	static struct h1_msg m;
	struct h1_parser p;
	int bad = 0;

	for (size_t i = 0; i < n; i++) {
		int rc = parse_n(c[i].s, c[i].len, req, method, &p, &m);
		int want_rc = c[i].status ? H1_ERROR : H1_OK;
		int got = rc == H1_ERROR ? p.status : 0;

		if (rc != want_rc || got != c[i].status) {
			print_error("case %zu: %.*s\n  want %d, got rc=%d status=%d (%s)\n", i,
			            (int)c[i].len, c[i].s, c[i].status, rc, got,
			            rc == H1_ERROR ? p.reason : "-");
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}
#define RUN_REQ(t) run_cases((t), sizeof(t) / sizeof((t)[0]), true, 0)
#define RUN_RESP(t, meth) run_cases((t), sizeof(t) / sizeof((t)[0]), false, (meth))

static void assert_span(const char *buf, struct h1_span s, const char *want)
{
	if (s.len != strlen(want) || memcmp(buf + s.off, want, s.len) != 0)
		fail_msg("span \"%.*s\" != \"%s\"", (int)s.len, buf + s.off, want);
}

static bool msg_equal(const struct h1_msg *a, const struct h1_msg *b)
{
#define SPEQ(x) (a->x.off == b->x.off && a->x.len == b->x.len)
	if (!SPEQ(method) || !SPEQ(target) || !SPEQ(scheme) || !SPEQ(authority) ||
	    !SPEQ(path) || !SPEQ(reason))
		return false;
	if (a->method_id != b->method_id || a->target_form != b->target_form ||
	    a->status != b->status || a->version_minor != b->version_minor ||
	    a->nheaders != b->nheaders || a->body != b->body ||
	    a->content_length != b->content_length || a->keep_alive != b->keep_alive ||
	    a->expect_continue != b->expect_continue || a->upgrade != b->upgrade ||
	    a->has_te_trailers != b->has_te_trailers || a->host_idx != b->host_idx ||
	    a->upgrade_idx != b->upgrade_idx || a->head_len != b->head_len)
		return false;
	for (unsigned i = 0; i < a->nheaders; i++)
		if (!SPEQ(headers[i].name) || !SPEQ(headers[i].value) ||
		    a->headers[i].id != b->headers[i].id ||
		    a->headers[i].flags != b->headers[i].flags)
			return false;
	return true;
#undef SPEQ
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ------------------------------------------------------------------ requests: valid */

static void request_simple(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;
	const char *s = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n"
	                "User-Agent: curl/7.64.0\r\nAccept: */*\r\n\r\n";

	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.method_id, H1_M_GET);
	assert_span(s, m.method, "GET");
	assert_span(s, m.target, "/index.html?q=1");
	assert_span(s, m.path, "/index.html?q=1");
	assert_int_equal(m.target_form, H1_TF_ORIGIN);
	assert_int_equal(m.version_minor, 1);
	assert_int_equal(m.nheaders, 3);
	assert_span(s, m.headers[0].name, "Host");
	assert_span(s, m.headers[0].value, "example.com");
	assert_int_equal(m.headers[0].id, H1_H_HOST);
	assert_int_equal(m.host_idx, 0);
	assert_span(s, m.headers[2].value, "*/*");
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_true(m.keep_alive);
	assert_false(m.expect_continue);
	assert_false(m.upgrade);
	assert_int_equal(m.head_len, strlen(s));
}

static void request_http10(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;

	assert_int_equal(parse_req("GET / HTTP/1.0\r\n\r\n", &p, &m), H1_OK);
	assert_int_equal(m.version_minor, 0);
	assert_false(m.keep_alive);
	assert_int_equal(m.host_idx, -1);
	assert_int_equal(m.nheaders, 0);

	assert_int_equal(parse_req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &p, &m),
	                 H1_OK);
	assert_true(m.keep_alive);
	assert_true(m.headers[0].flags & H1_HF_HOP_BY_HOP);

	/* 100-continue and Upgrade are ignored in HTTP/1.0 (RFC 9110 §10.1.1, §7.8) */
	assert_int_equal(parse_req("POST / HTTP/1.0\r\nExpect: 100-continue\r\nUpgrade: x\r\n"
	                           "Connection: upgrade\r\nContent-Length: 1\r\n\r\n", &p, &m),
	                 H1_OK);
	assert_false(m.expect_continue);
	assert_false(m.upgrade);
	assert_false(m.keep_alive);
}

static void request_connection_close(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;

	assert_int_equal(parse_req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &p, &m),
	                 H1_OK);
	assert_false(m.keep_alive);
	assert_int_equal(parse_req("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n",
	                           &p, &m), H1_OK);
	assert_false(m.keep_alive);
	/* empty list elements are ignored (RFC 9110 §5.6.1) */
	assert_int_equal(parse_req("GET / HTTP/1.1\r\nHost: a\r\nConnection: ,, close ,\r\n\r\n",
	                           &p, &m), H1_OK);
	assert_false(m.keep_alive);
}

static void request_bodies(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;

	assert_int_equal(parse_req("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
	                           &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_LENGTH);
	assert_int_equal(m.content_length, 5);
	assert_true(m.headers[1].flags & H1_HF_FRAMING);
	assert_false(m.headers[1].flags & H1_HF_HOP_BY_HOP);
	assert_int_equal(m.head_len, strlen("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"));

	assert_int_equal(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &p, &m),
	                 H1_OK);
	assert_int_equal(m.body, H1_BODY_LENGTH);
	assert_int_equal(m.content_length, 0);

	/* identical duplicates accepted (RFC 9110 §8.6), as a list or as repeated lines */
	assert_int_equal(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", &p, &m),
	                 H1_OK);
	assert_int_equal(m.content_length, 5);
	assert_int_equal(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
	                           "Content-Length: 5\r\n\r\n", &p, &m), H1_OK);
	assert_int_equal(m.content_length, 5);
	assert_int_equal(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000000000000000007\r\n\r\n",
	                           &p, &m), H1_OK);
	assert_int_equal(m.content_length, 7);
	assert_int_equal(parse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n",
	                           &p, &m), H1_OK);
	assert_true(m.content_length == 999999999999999999ull);

	assert_int_equal(parse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
	                           &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_CHUNKED);
	assert_true(m.headers[1].flags & H1_HF_FRAMING);
	assert_true(m.headers[1].flags & H1_HF_HOP_BY_HOP);
	/* codings are case-insensitive; OWS around the value is not part of it */
	assert_int_equal(parse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \t\r\n\r\n",
	                           &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_CHUNKED);

	/* no CL and no TE: no body, whatever the method */
	assert_int_equal(parse_req("POST / HTTP/1.1\r\nHost: a\r\n\r\n", &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
}

static void request_target_forms(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;
	const char *s;

	s = "GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.target_form, H1_TF_ABSOLUTE);
	assert_span(s, m.scheme, "http");
	assert_span(s, m.authority, "example.com:8080");
	assert_span(s, m.path, "/p/q?x=1");

	s = "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_span(s, m.authority, "example.com");
	assert_span(s, m.path, "");

	s = "GET https://[::1]:443?x HTTP/1.1\r\nHost: [::1]:443\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_span(s, m.scheme, "https");
	assert_span(s, m.authority, "[::1]:443");
	assert_span(s, m.path, "?x");

	s = "CONNECT edition.cnn.com:443 HTTP/1.1\r\nHost: edition.cnn.com:443\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.method_id, H1_M_CONNECT);
	assert_int_equal(m.target_form, H1_TF_AUTHORITY);
	assert_span(s, m.authority, "edition.cnn.com:443");
	assert_int_equal(m.body, H1_BODY_NONE);

	s = "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.target_form, H1_TF_AUTHORITY);

	s = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.target_form, H1_TF_ASTERISK);
	assert_int_equal(m.method_id, H1_M_OPTIONS);

	s = "OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.target_form, H1_TF_ORIGIN);

	/* Unknown method tokens are valid: the proxy decides */
	s = "PROPFIND /dav HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.method_id, H1_M_OTHER);
	assert_span(s, m.method, "PROPFIND");
}

static void request_fields(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Ows: \t v a l \t \r\n"
	                "X-Tab: a\tb\r\nX-Obs: caf\xc3\xa9\r\nX-Quote: \"a, b\"\r\n\r\n";

	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.nheaders, 6);
	assert_span(s, m.headers[1].name, "X-Empty");
	assert_span(s, m.headers[1].value, "");
	assert_span(s, m.headers[2].value, "v a l");
	assert_span(s, m.headers[3].value, "a\tb");
	assert_span(s, m.headers[4].value, "caf\xc3\xa9");
	assert_span(s, m.headers[5].value, "\"a, b\"");
	assert_int_equal(h1_header_find(&m, s, "x-ows", 0), 2);
	assert_int_equal(h1_header_find(&m, s, "x-ows", 3), -1);
	assert_int_equal(h1_header_find(&m, s, "nope", 0), -1);
}

static void request_leading_crlf(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;
	const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";

	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_span(s, m.method, "GET");
	assert_int_equal(m.head_len, strlen(s));
}

static void request_expect_upgrade_te(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;
	const char *s;

	assert_int_equal(parse_req("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
	                           "Content-Length: 3\r\n\r\n", &p, &m), H1_OK);
	assert_true(m.expect_continue);

	s = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_true(m.upgrade);
	assert_int_equal(m.upgrade_idx, 1);
	assert_true(m.headers[1].flags & H1_HF_HOP_BY_HOP);

	/* Upgrade without the "upgrade" connection option is not an upgrade */
	assert_int_equal(parse_req("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n", &p, &m), H1_OK);
	assert_false(m.upgrade);

	assert_int_equal(parse_req("POST /svc/M HTTP/1.1\r\nHost: a\r\nTE: gzip;q=0.5, trailers\r\n\r\n",
	                           &p, &m), H1_OK);
	assert_true(m.has_te_trailers);
	assert_true(m.headers[1].flags & H1_HF_HOP_BY_HOP);
	assert_int_equal(parse_req("GET / HTTP/1.1\r\nHost: a\r\nTE: deflate\r\n\r\n", &p, &m), H1_OK);
	assert_false(m.has_te_trailers);
}

static void request_connection_listed(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Secret: 1\r\nConnection: x-secret, Keep-Alive\r\n"
	                "Keep-Alive: timeout=5\r\nX-Other: 2\r\nx-SECRET: 3\r\n\r\n";

	assert_int_equal(parse_req(s, &p, &m), H1_OK);
	assert_int_equal(m.nheaders, 6);
	assert_false(h1_conn_listed(&m, 0));           /* Host */
	assert_true(h1_conn_listed(&m, 1));            /* X-Secret */
	assert_false(h1_conn_listed(&m, 2));           /* Connection itself: hop-by-hop */
	assert_true(m.headers[2].flags & H1_HF_HOP_BY_HOP);
	assert_true(h1_conn_listed(&m, 3));            /* Keep-Alive */
	assert_false(h1_conn_listed(&m, 4));           /* X-Other */
	assert_true(h1_conn_listed(&m, 5));            /* x-SECRET, other case */
	assert_false(h1_conn_listed(&m, 99));
	for (unsigned i = 0; i < m.nheaders; i++)
		assert_int_equal((m.headers[i].flags & H1_HF_DROP) != 0, i == 1 || i == 2 || i == 3 || i == 5);
}

static void request_limits_exact(void **state)
{
	static struct h1_msg m;
	static char buf[70000];
	struct h1_parser p;
	size_t n;

	/* request line of exactly 8192 bytes: accepted */
	n = (size_t)sprintf(buf, "GET /");
	memset(buf + n, 'a', 8192 - 9 - n);
	n = 8192 - 9;
	n += (size_t)sprintf(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(parse_n(buf, n, true, 0, &p, &m), H1_OK);
	assert_int_equal(m.target.len + 4 + 9, 8192);

	/* one more byte: 414 */
	n = (size_t)sprintf(buf, "GET /");
	memset(buf + n, 'a', 8193 - 9 - n);
	n = 8193 - 9;
	n += (size_t)sprintf(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(parse_n(buf, n, true, 0, &p, &m), H1_ERROR);
	assert_int_equal(p.status, 414);

	/* 414 is reported before the line ends: 9000 bytes and no LF yet */
	n = (size_t)sprintf(buf, "GET /");
	memset(buf + n, 'a', 9000 - n);
	assert_int_equal(parse_n(buf, 8193, true, 0, &p, &m), H1_AGAIN);
	assert_int_equal(h1_parse(&p, buf, 9000, &m), H1_ERROR);
	assert_int_equal(p.status, 414);

	/* exactly 100 fields: accepted; 101: 431 */
	n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 1; i < 100; i++)
		n += (size_t)sprintf(buf + n, "X-%d: v\r\n", i);
	memcpy(buf + n, "\r\n", 2);
	assert_int_equal(parse_n(buf, n + 2, true, 0, &p, &m), H1_OK);
	assert_int_equal(m.nheaders, 100);
	n += (size_t)sprintf(buf + n, "X-last: v\r\n\r\n");
	assert_int_equal(parse_n(buf, n, true, 0, &p, &m), H1_ERROR);
	assert_int_equal(p.status, 431);

	/* a head of exactly 60 KiB: accepted; one byte more: 431 */
	n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
	memset(buf + n, 'b', H1_MAX_HEAD - n - 4);
	n = H1_MAX_HEAD - 4;
	memcpy(buf + n, "\r\n\r\n", 4);
	assert_int_equal(parse_n(buf, H1_MAX_HEAD, true, 0, &p, &m), H1_OK);
	assert_int_equal(m.head_len, H1_MAX_HEAD);
	buf[n] = 'b';
	memcpy(buf + n + 1, "\r\n\r\n", 4);
	assert_int_equal(parse_n(buf, H1_MAX_HEAD + 1, true, 0, &p, &m), H1_ERROR);
	assert_int_equal(p.status, 431);

	/* 431 is reported as soon as 60 KiB arrived without the end of the head */
	assert_int_equal(parse_n(buf, 30000, true, 0, &p, &m), H1_AGAIN);
	assert_int_equal(h1_parse(&p, buf, H1_MAX_HEAD, &m), H1_ERROR);
	assert_int_equal(p.status, 431);
}

/* The value and target loops go eight bytes at a time: a bad byte at any position of a
 * long run, and the allowed oddities (HTAB, obs-text), must be judged as byte by byte. */
static void long_runs_every_position(void **state)
{
	static struct h1_msg m;
	static const char bad[] = { 0x00, 0x01, 0x0b, 0x1f, 0x7f, '\n' };
	struct h1_parser p;
	char buf[256];

	for (int pos = 0; pos < 40; pos++) {
		for (size_t b = 0; b < sizeof(bad); b++) {
			int n = sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
			memset(buf + n, 'v', 40);
			buf[n + pos] = bad[b];
			memcpy(buf + n + 40, "\r\n\r\n", 4);
			assert_int_equal(parse_n(buf, (size_t)n + 44, true, 0, &p, &m), H1_ERROR);
			assert_int_equal(p.status, 400);

			n = sprintf(buf, "GET /");
			memset(buf + n, 't', 40);
			buf[n + pos] = bad[b];
			n += 40;
			n += sprintf(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
			assert_int_equal(parse_n(buf, (size_t)n, true, 0, &p, &m), H1_ERROR);
			assert_int_equal(p.status, 400);
		}
		/* allowed in values: HTAB, SP, obs-text; in targets: none of these */
		for (int good = 0; good < 3; good++) {
			static const char ok[] = { '\t', ' ', (char)0xe9 };
			int n = sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
			memset(buf + n, 'v', 40);
			buf[n + pos] = ok[good];
			memcpy(buf + n + 40, "\r\n\r\n", 4);
			assert_int_equal(parse_n(buf, (size_t)n + 44, true, 0, &p, &m), H1_OK);
			assert_int_equal(m.headers[1].value.len, (pos == 0 || pos == 39) && good < 2 ? 39 : 40);

			n = sprintf(buf, "GET /");
			memset(buf + n, 't', 40);
			buf[n + pos] = ok[good];
			n += 40;
			n += sprintf(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
			assert_int_equal(parse_n(buf, (size_t)n, true, 0, &p, &m), H1_ERROR);
		}
	}
}

/* ------------------------------------------------------------------ requests: errors */

static const struct ecase framing_errors[] = {
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0c" "chunked\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
	E("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789012345\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551621\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,,5\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,5\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \"5\"\r\n\r\n", 400),
	E("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\n\r\n", 400),
	E("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
	E("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 0\r\n\r\n", 0),
};

static void request_framing_errors(void **state)
{
	RUN_REQ(framing_errors);
}

static const struct ecase field_errors[] = {
	/* obs-fold and whitespace at line start */
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
	/* whitespace between name and colon */
	E("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX-Foo\t: a\r\n\r\n", 400),
	/* names must be tokens and non-empty */
	E("GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX(y): a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX@y: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX\"y: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX y: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
	/* control characters */
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1f\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\x0b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", 400),
	/* HTAB is allowed in values */
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n", 0),
	/* bare CR / bare LF */
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\n\rX: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\nHost: a\n\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: b\nY: c\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
	E("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	/* Host */
	E("GET / HTTP/1.1\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: \t \r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a:65535\r\n\r\n", 0),
	E("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0),
	E("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 0),
	E("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
	/* Connection options must be tokens, at most 64 of them */
	E("GET / HTTP/1.1\r\nHost: a\r\nConnection: close;x\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nConnection: \"close\"\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n", 400),
};

static void request_field_errors(void **state)
{
	RUN_REQ(field_errors);
}

static void request_connection_option_bound(void **state)
{
	static struct h1_msg m;
	static char buf[4096];
	struct h1_parser p;
	size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nConnection: o0");

	for (int i = 1; i < 64; i++)
		n += (size_t)sprintf(buf + n, ",o%d", i);
	memcpy(buf + n, "\r\n\r\n", 4);
	assert_int_equal(parse_n(buf, n + 4, true, 0, &p, &m), H1_OK);
	n += (size_t)sprintf(buf + n, ",o64\r\n\r\n");
	assert_int_equal(parse_n(buf, n, true, 0, &p, &m), H1_ERROR);
	assert_int_equal(p.status, 400);
}

static const struct ecase line_errors[] = {
	E("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
	E(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET /\r\nHost: a\r\n\r\n", 400),
	E("GET / \r\nHost: a\r\n\r\n", 400),
	E("GET\r\nHost: a\r\n\r\n", 400),
	E("/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET / http/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
	E("GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
	E("GET / HTTP/1.\r\nHost: a\r\n\r\n", 400),
	E("GET / HTTP/11\r\nHost: a\r\n\r\n", 400),
	E("GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET / HTTP/a.b\r\nHost: a\r\n\r\n", 400),
	E("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GE\x7fT / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	/* versions: well-formed but unsupported */
	E("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
	E("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
	E("GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
	E("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
	E("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
	/* targets */
	E("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET /a\x01" "b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET host:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET http://a:b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("CONNECT a: HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("CONNECT http://a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("CONNECT * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	E("GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n", 0),
	E("GET /%20?a=b&c=%2F HTTP/1.1\r\nHost: a\r\n\r\n", 0),
};

static void request_line_errors(void **state)
{
	RUN_REQ(line_errors);
}

/* ------------------------------------------------------------------ responses */

static void response_valid(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;
	const char *s;

	s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
	assert_int_equal(parse_resp(s, H1_M_GET, &p, &m), H1_OK);
	assert_int_equal(m.status, 200);
	assert_span(s, m.reason, "OK");
	assert_int_equal(m.body, H1_BODY_LENGTH);
	assert_int_equal(m.content_length, 5);
	assert_true(m.keep_alive);
	assert_int_equal(m.method_id, H1_M_GET);
	assert_int_equal(m.head_len, strlen(s) - 5);

	s = "HTTP/1.1 404 Not  Found\t(really)\r\nTransfer-Encoding: chunked\r\n\r\n";
	assert_int_equal(parse_resp(s, H1_M_GET, &p, &m), H1_OK);
	assert_span(s, m.reason, "Not  Found\t(really)");
	assert_int_equal(m.body, H1_BODY_CHUNKED);

	/* neither CL nor chunked: read until close */
	assert_int_equal(parse_resp("HTTP/1.1 200 OK\r\n\r\n", H1_M_GET, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_UNTIL_CLOSE);
	assert_false(m.keep_alive);

	/* status line without reason, with and without the SP */
	assert_int_equal(parse_resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", H1_M_GET, &p, &m), H1_OK);
	assert_int_equal(m.reason.len, 0);
	assert_int_equal(parse_resp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", H1_M_GET, &p, &m), H1_OK);
	assert_int_equal(m.reason.len, 0);

	/* obs-text in reason */
	assert_int_equal(parse_resp("HTTP/1.1 200 \xc3\x89t\xc3\xa9\r\nContent-Length: 0\r\n\r\n",
	                            H1_M_GET, &p, &m), H1_OK);

	/* HTTP/1.0 */
	assert_int_equal(parse_resp("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", H1_M_GET, &p, &m), H1_OK);
	assert_false(m.keep_alive);
	assert_int_equal(parse_resp("HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
	                            H1_M_GET, &p, &m), H1_OK);
	assert_true(m.keep_alive);
	assert_int_equal(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
	                            H1_M_GET, &p, &m), H1_OK);
	assert_false(m.keep_alive);
}

static void response_no_body(void **state)
{
	static struct h1_msg m;
	struct h1_parser p;

	/* HEAD: Content-Length describes the GET body, there is none here */
	assert_int_equal(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", H1_M_HEAD, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_int_equal(m.content_length, 100);
	assert_true(m.keep_alive);
	assert_int_equal(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H1_M_HEAD, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_int_equal(parse_resp("HTTP/1.1 200 OK\r\n\r\n", H1_M_HEAD, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_true(m.keep_alive);

	assert_int_equal(parse_resp("HTTP/1.1 204 No Content\r\n\r\n", H1_M_GET, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_true(m.keep_alive);
	assert_int_equal(parse_resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", H1_M_GET, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_int_equal(parse_resp("HTTP/1.1 100 Continue\r\n\r\n", H1_M_POST, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_false(m.upgrade);
	assert_int_equal(parse_resp("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", H1_M_GET, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);

	assert_int_equal(parse_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	                            "Connection: Upgrade\r\n\r\n", H1_M_GET, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_true(m.upgrade);

	/* 2xx to CONNECT: the tunnel starts, no body; a failed CONNECT has one */
	assert_int_equal(parse_resp("HTTP/1.1 200 Connection established\r\n\r\n", H1_M_CONNECT, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_NONE);
	assert_int_equal(parse_resp("HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\n", H1_M_CONNECT, &p, &m), H1_OK);
	assert_int_equal(m.body, H1_BODY_LENGTH);
}

static const struct ecase response_errors[] = {
	E("HTTP/1.1 20 OK\r\n\r\n", 502),
	E("HTTP/1.1 2000 OK\r\n\r\n", 502),
	E("HTTP/1.1 abc OK\r\n\r\n", 502),
	E("HTTP/1.1 2x0 OK\r\n\r\n", 502),
	E("HTTP/1.1 099 X\r\n\r\n", 502),
	E("HTTP/1.1 600 X\r\n\r\n", 502),
	E("HTTP/1.1  200 OK\r\n\r\n", 502),
	E("HTTP/1.1\t200 OK\r\n\r\n", 502),
	E("HTTP/1.1 200\tOK\r\n\r\n", 502),
	E("HTTP/1.1\r\n\r\n", 502),
	E("HTTP/1.1 \r\n\r\n", 502),
	E("HTTP/2 200 OK\r\n\r\n", 502),
	E("HTTP/2.0 200 OK\r\n\r\n", 502),
	E("HTTP/1.2 200 OK\r\n\r\n", 502),
	E("http/1.1 200 OK\r\n\r\n", 502),
	E("ICY 200 OK\r\n\r\n", 502),
	E("HTTP/1.1 200 O\x01K\r\n\r\n", 502),
	E("HTTP/1.1 200 O\x7fK\r\n\r\n", 502),
	E("\r\nHTTP/1.1 200 OK\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\nContent-Length: 0\n\n", 502),
	E("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 502),
	E("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", 502),
	E("HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n", 502),
	E("HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
};

static void response_error_cases(void **state)
{
	RUN_RESP(response_errors, H1_M_GET);
}

static void response_oversize(void **state)
{
	static struct h1_msg m;
	static char buf[70000];
	struct h1_parser p;
	size_t n = (size_t)sprintf(buf, "HTTP/1.1 200 OK\r\n");

	for (int i = 0; i < 101; i++)
		n += (size_t)sprintf(buf + n, "X-%d: v\r\n", i);
	n += (size_t)sprintf(buf + n, "\r\n");
	assert_int_equal(parse_n(buf, n, false, H1_M_GET, &p, &m), H1_ERROR);
	assert_int_equal(p.status, 502);

	n = (size_t)sprintf(buf, "HTTP/1.1 200 OK\r\nX: ");
	memset(buf + n, 'x', sizeof(buf) - n);
	assert_int_equal(parse_n(buf, sizeof(buf), false, H1_M_GET, &p, &m), H1_ERROR);
	assert_int_equal(p.status, 502);

	memcpy(buf, "HTTP/1.1 200 ", 13);
	memset(buf + 13, 'x', 9000);
	assert_int_equal(parse_n(buf, 9000, false, H1_M_GET, &p, &m), H1_ERROR);
	assert_int_equal(p.status, 502);
}

/* ------------------------------------------------------------------ resumability */

static const struct ecase resumable_msgs[] = {
	E("GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n", 0),
	E("\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: x, close\r\nX: 1\r\n\r\nhello", 0),
	E("GET http://a.example:81/p?q HTTP/1.1\r\nHost: a\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n", 0),
	E("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n5\r\nhello\r\n", 0),
	E("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
	E("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
	E("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
	E("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
};

static const struct ecase resumable_resps[] = {
	E("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello", 0),
	E("HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0),
	E("HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", 0),
	E("HTTP/1.1 2000 OK\r\n\r\n", 502),
};

/* Parses c in one call, byte by byte, and in random pieces: same verdict, same msg. */
static void check_resumable(const struct ecase *c, bool req)
{
	static struct h1_msg whole, part;
	struct h1_parser p1, p2;
	int rc1, rc2 = H1_AGAIN;

	rc1 = parse_n(c->s, c->len, req, H1_M_GET, &p1, &whole);
	assert_int_equal(rc1, c->status ? H1_ERROR : H1_OK);
	if (rc1 == H1_ERROR)
		assert_int_equal(p1.status, c->status);

	/* one byte at a time */
	h1_parser_init(&p2, req, H1_M_GET);
	for (size_t k = 0; k <= c->len && rc2 == H1_AGAIN; k++)
		rc2 = h1_parse(&p2, c->s, k, &part);
	assert_int_equal(rc2, rc1);
	if (rc1 == H1_OK)
		assert_true(msg_equal(&whole, &part));
	else {
		assert_int_equal(p2.status, p1.status);
		assert_string_equal(p2.reason, p1.reason);
	}

	/* random splits */
	for (int round = 0; round < 200; round++) {
		size_t k = 0;
		h1_parser_init(&p2, req, H1_M_GET);
		rc2 = H1_AGAIN;
		while (rc2 == H1_AGAIN && k < c->len) {
			k += 1 + rng() % 17;
			if (k > c->len)
				k = c->len;
			rc2 = h1_parse(&p2, c->s, k, &part);
		}
		assert_int_equal(rc2, rc1);
		if (rc1 == H1_OK)
			assert_true(msg_equal(&whole, &part));
		else
			assert_int_equal(p2.status, p1.status);
	}
}

static void resumable_requests(void **state)
{
	for (size_t i = 0; i < sizeof(resumable_msgs) / sizeof(resumable_msgs[0]); i++)
		check_resumable(&resumable_msgs[i], true);
	for (size_t i = 0; i < sizeof(framing_errors) / sizeof(framing_errors[0]); i++)
		check_resumable(&framing_errors[i], true);
	for (size_t i = 0; i < sizeof(line_errors) / sizeof(line_errors[0]); i++)
		check_resumable(&line_errors[i], true);
}

static void resumable_responses(void **state)
{
	for (size_t i = 0; i < sizeof(resumable_resps) / sizeof(resumable_resps[0]); i++)
		check_resumable(&resumable_resps[i], false);
}

static void resumable_no_rescan(void **state)
{
	static struct h1_msg m;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789\r\n\r\n";
	struct h1_parser p;

	h1_parser_init(&p, true, 0);
	assert_int_equal(h1_parse(&p, s, 30, &m), H1_AGAIN);
	assert_int_equal(p.scan, 30);   /* next call starts where this one stopped */
	assert_int_equal(h1_parse(&p, s, 30, &m), H1_AGAIN);
	assert_int_equal(h1_parse(&p, s, strlen(s), &m), H1_OK);
	/* after OK the same head parses again; after ERROR errors stick */
	assert_int_equal(h1_parse(&p, s, strlen(s), &m), H1_OK);
	assert_int_equal(parse_req("GET / HTTP/1.1\n", &p, &m), H1_ERROR);
	assert_int_equal(h1_parse(&p, s, strlen(s), &m), H1_ERROR);
	/* a shrinking buffer is a caller bug, reported rather than misparsed */
	h1_parser_init(&p, true, 0);
	assert_int_equal(h1_parse(&p, s, 30, &m), H1_AGAIN);
	assert_int_equal(h1_parse(&p, s, 10, &m), H1_ERROR);
}

static void pipelined_requests(void **state)
{
	static struct h1_msg m;
	const char *s = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	                "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
	                "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	size_t len = strlen(s), off = 0;
	struct h1_parser p;
	const char *want[] = { "/a", "/b", "/c" };

	for (int i = 0; i < 3; i++) {
		h1_parser_init(&p, true, 0);
		assert_int_equal(h1_parse(&p, s + off, len - off, &m), H1_OK);
		assert_span(s + off, m.target, want[i]);
		off += m.head_len;
		if (m.body == H1_BODY_LENGTH)
			off += m.content_length;
	}
	assert_int_equal(off, len);
	assert_false(m.keep_alive);
}

/* ------------------------------------------------------------------ chunked */

struct ck_result {
	int rc;
	size_t consumed;
	const char *reason;
	char payload[16384];
	size_t plen;
	char trailers[2048];
	size_t tlen;
	unsigned ndata;
};

/* Feeds in[0..len) to a decoder as a caller would: the k-th read makes in[0..cuts[k])
 * available; unconsumed bytes are presented again with the next read. */
static void ck_run(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                   struct ck_result *r)
{
	struct h1_chunked c;
	size_t base = 0;

	memset(r, 0, sizeof(*r));
	h1_chunked_init(&c);
	for (size_t k = 0; k < ncuts; k++) {
		size_t end = cuts[k] < len ? cuts[k] : len;

		for (;;) {
			struct h1_span d, t;
			size_t used;
			int rc = h1_chunked_feed(&c, in + base, end - base, &used, &d, &t);

			assert_true(used <= end - base);
			if (rc == H1_DATA) {
				assert_true(d.len > 0 && d.off + d.len <= used);
				assert_true(r->plen + d.len <= sizeof(r->payload));
				memcpy(r->payload + r->plen, in + base + d.off, d.len);
				r->plen += d.len;
				r->ndata++;
			} else {
				assert_int_equal(d.len, 0);
			}
			if (rc == H1_OK) {
				assert_true(t.len >= 2 && t.off + t.len == used);
				memcpy(r->trailers, in + base + t.off, t.len);
				r->tlen = t.len;
			}
			base += used;
			if (rc == H1_DATA)
				continue;
			if (rc != H1_AGAIN) {
				r->rc = rc;
				r->consumed = base;
				r->reason = c.reason;
				return;
			}
			break;
		}
	}
	r->rc = H1_AGAIN;
	r->consumed = base;
}

static void ck_whole(const char *in, size_t len, struct ck_result *r)
{
	size_t cut = len;
	ck_run(in, len, &cut, 1, r);
}

static void ck_same(const struct ck_result *a, const struct ck_result *b)
{
	assert_int_equal(a->rc, b->rc);
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->plen, b->plen);
	assert_memory_equal(a->payload, b->payload, a->plen);
	assert_int_equal(a->tlen, b->tlen);
	assert_memory_equal(a->trailers, b->trailers, a->tlen);
	if (a->rc == H1_ERROR)
		assert_string_equal(a->reason, b->reason);
}

static const char ck_body[] =
	"5\r\nhello\r\n"
	"6;ext=1\r\n world\r\n"
	"A ; name = \"q\\\"v\" ;flag\r\n0123456789\r\n"
	"00000000000000f\r\n, fifteen bytes\r\n"
	"0;last\r\n"
	"X-Checksum: abc\r\n"
	"grpc-status: 0\r\n"
	"\r\n"
	"NEXT";

static void chunked_basic(void **state)
{
	static struct ck_result r;
	struct h1_header f[4];
	unsigned n;
	size_t len = sizeof(ck_body) - 1;

	ck_whole(ck_body, len, &r);
	assert_int_equal(r.rc, H1_OK);
	assert_int_equal(r.consumed, len - 4);  /* stops before the next message */
	assert_int_equal(r.plen, 36);
	assert_memory_equal(r.payload, "hello world0123456789, fifteen bytes", 36);
	assert_int_equal(r.tlen, strlen("X-Checksum: abc\r\ngrpc-status: 0\r\n\r\n"));
	assert_int_equal(h1_parse_trailers(r.trailers, r.tlen, f, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_span(r.trailers, f[0].name, "X-Checksum");
	assert_span(r.trailers, f[1].value, "0");
	assert_int_equal(h1_parse_trailers(r.trailers, r.tlen, f, 1, &n), -1);

	ck_whole("0\r\n\r\n", 5, &r);
	assert_int_equal(r.rc, H1_OK);
	assert_int_equal(r.consumed, 5);
	assert_int_equal(r.tlen, 2);
	assert_int_equal(h1_parse_trailers("\r\n", 2, f, 4, &n), 0);
	assert_int_equal(n, 0);

	/* after the end, the decoder says so again and consumes nothing */
	{
		struct h1_chunked c;
		struct h1_span d;
		size_t used;
		h1_chunked_init(&c);
		assert_int_equal(h1_chunked_feed(&c, "0\r\n\r\nX", 6, &used, &d, NULL), H1_OK);
		assert_int_equal(used, 5);
		assert_int_equal(h1_chunked_feed(&c, "X", 1, &used, &d, NULL), H1_OK);
		assert_int_equal(used, 0);
		assert_int_equal(c.payload, 0);
	}
}

static void chunked_every_split(void **state)
{
	static struct ck_result whole, part;
	size_t len = sizeof(ck_body) - 1;

	ck_whole(ck_body, len, &whole);
	/* two reads, split at every position */
	for (size_t k = 0; k <= len; k++) {
		size_t cuts[2] = { k, len };
		ck_run(ck_body, len, cuts, 2, &part);
		ck_same(&whole, &part);
	}
	/* one byte per read */
	{
		size_t cuts[sizeof(ck_body)];
		for (size_t k = 0; k < len; k++)
			cuts[k] = k + 1;
		ck_run(ck_body, len, cuts, len, &part);
		ck_same(&whole, &part);
		assert_int_equal(part.ndata, 36);
	}
	/* random reads */
	for (int round = 0; round < 300; round++) {
		size_t cuts[sizeof(ck_body)], n = 0, k = 0;
		while (k < len) {
			k += 1 + rng() % 9;
			cuts[n++] = k < len ? k : len;
		}
		ck_run(ck_body, len, cuts, n, &part);
		ck_same(&whole, &part);
	}
}

struct ck_case {
	const char *s;
	size_t len;
	int rc;
};
#define K(str, rc) { str, sizeof(str) - 1, rc }

static const struct ck_case ck_cases[] = {
	K("-1\r\n", H1_ERROR),
	K("0x5\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5 5\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5 \r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("+5\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K(" 5\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("g\r\n", H1_ERROR),
	K("00000000000000005\r\nhello\r\n0\r\n\r\n", H1_ERROR),   /* 17 digits */
	K("10000000000000000\r\n", H1_ERROR),
	K("0000000000000005\r\nhello\r\n0\r\n\r\n", H1_OK),      /* 16 digits */
	K("5\r\nhelloX\r\n0\r\n\r\n", H1_ERROR),                 /* missing CRLF after data */
	K("5\r\nhello\r0\r\n\r\n", H1_ERROR),
	K("5\r\nhello0\r\n\r\n", H1_ERROR),
	K("5\nhello\r\n0\r\n\r\n", H1_ERROR),                    /* bare LF */
	K("5\r\nhello\n0\r\n\r\n", H1_ERROR),
	K("5\rhello\r\n0\r\n\r\n", H1_ERROR),                    /* bare CR */
	K("5\r\nhello\r\n0\n\r\n", H1_ERROR),
	K("5\r\nhello\r\n0\r\n\n", H1_ERROR),
	K("5;\r\nhello\r\n0\r\n\r\n", H1_ERROR),                 /* extension grammar */
	K("5;=x\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5;a=\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5;a=b c\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5;a b\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5;a=\"b\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5;a=b \r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5;a\0\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n", H1_ERROR),
	K("5 ; a ; b = c ;c=\"x y\\\\\"\r\nhello\r\n0\r\n\r\n", H1_OK),
	K("5;a\t=\t\"\"\r\nhello\r\n0\r\n\r\n", H1_OK),
	K("0\r\nX: 1\r\n b\r\n\r\n", H1_ERROR),                  /* trailer obs-fold */
	K("0\r\nX : 1\r\n\r\n", H1_ERROR),
	K("0\r\nNoColon\r\n\r\n", H1_ERROR),
	K("0\r\nX: 1\nY: 2\r\n\r\n", H1_ERROR),
	K("0\r\nX: a\0b\r\n\r\n", H1_ERROR),
	K("0\r\nX: a\rb\r\n\r\n", H1_ERROR),
	K("0\r\n\r\n", H1_OK),
	K("0000\r\n\r\n", H1_OK),
	K("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n", H1_OK),
	K("5\r\nhello\r\n", H1_AGAIN),
	K("5\r\nhello\r\n0\r\nX: 1\r\n", H1_AGAIN),
};

static void chunked_cases(void **state)
{
	static struct ck_result r;
	int bad = 0;

	for (size_t i = 0; i < sizeof(ck_cases) / sizeof(ck_cases[0]); i++) {
		ck_whole(ck_cases[i].s, ck_cases[i].len, &r);
		if (r.rc != ck_cases[i].rc) {
			print_error("chunk case %zu: want %d got %d (%s)\n", i, ck_cases[i].rc, r.rc,
			            r.rc == H1_ERROR ? r.reason : "-");
			bad++;
		}
		/* every case gives the same result fed one byte at a time */
		{
			static struct ck_result b;
			size_t cuts[128];
			assert_true(ck_cases[i].len <= 128);
			for (size_t k = 0; k < ck_cases[i].len; k++)
				cuts[k] = k + 1;
			ck_run(ck_cases[i].s, ck_cases[i].len, cuts, ck_cases[i].len, &b);
			ck_same(&r, &b);
		}
	}
	assert_int_equal(bad, 0);
}

static void chunked_bounds(void **state)
{
	static char buf[40000];
	static struct ck_result r;
	size_t n;

	/* chunk-size line of exactly 4096 bytes (without CRLF) with an extension: OK */
	n = (size_t)sprintf(buf, "5;x=");
	memset(buf + n, 'v', 4096 - n);
	n = 4096;
	n += (size_t)sprintf(buf + n, "\r\nhello\r\n0\r\n\r\n");
	ck_whole(buf, n, &r);
	assert_int_equal(r.rc, H1_OK);
	/* 4097: error */
	n = (size_t)sprintf(buf, "5;x=");
	memset(buf + n, 'v', 4097 - n);
	n = 4097;
	n += (size_t)sprintf(buf + n, "\r\nhello\r\n0\r\n\r\n");
	ck_whole(buf, n, &r);
	assert_int_equal(r.rc, H1_ERROR);
	/* ... detected without waiting for the end of the line */
	ck_whole(buf, 4200, &r);
	assert_int_equal(r.rc, H1_ERROR);

	/* 100 trailer fields OK, 101 error */
	n = (size_t)sprintf(buf, "0\r\n");
	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(buf + n, "T-%d: v\r\n", i);
	memcpy(buf + n, "\r\n", 2);
	ck_whole(buf, n + 2, &r);
	assert_int_equal(r.rc, H1_OK);
	n += (size_t)sprintf(buf + n, "T-last: v\r\n\r\n");
	ck_whole(buf, n, &r);
	assert_int_equal(r.rc, H1_ERROR);

	/* trailer section over 16 KiB: error as soon as that much arrived */
	n = (size_t)sprintf(buf, "0\r\nBig: ");
	memset(buf + n, 'x', 20000);
	ck_whole(buf, n + 20000, &r);
	assert_int_equal(r.rc, H1_ERROR);

	/* huge chunk: the decoder hands out what it has and waits for the rest */
	{
		struct h1_chunked c;
		struct h1_span d;
		size_t used;
		h1_chunked_init(&c);
		assert_int_equal(h1_chunked_feed(&c, "ffffffffffffffff\r\nab", 20, &used, &d, NULL), H1_DATA);
		assert_int_equal(used, 20);
		assert_int_equal(d.off, 18);
		assert_int_equal(d.len, 2);
		assert_int_equal(h1_chunked_feed(&c, "", 0, &used, &d, NULL), H1_AGAIN);
		assert_true(c.payload == 2);
	}
}

static void trailers_parse_rejects_garbage(void **state)
{
	struct h1_header f[4];
	unsigned n;

	assert_int_equal(h1_parse_trailers("", 0, f, 4, &n), -1);
	assert_int_equal(h1_parse_trailers("X: 1\r\n", 6, f, 4, &n), -1);
	assert_int_equal(h1_parse_trailers("X: 1\r\n\r\nY: 2\r\n\r\n", 16, f, 4, &n), -1);
	assert_int_equal(h1_parse_trailers("\n\r\n\r\n", 5, f, 4, &n), -1);
	assert_int_equal(h1_parse_trailers("Content-Length: 1\r\n\r\n", 21, f, 4, &n), 0);
	assert_true(f[0].flags & H1_HF_FRAMING);
}

/* ------------------------------------------------------------------ helpers */

static void helpers(void **state)
{
	assert_true(h1_name_eq("Content-Length", 14, "content-LENGTH", 14));
	assert_false(h1_name_eq("Content-Length", 14, "Content-Lengt", 13));
	assert_false(h1_name_eq("a@", 2, "a`", 2));

	assert_true(h1_is_hop_by_hop("Connection", 10));
	assert_true(h1_is_hop_by_hop("proxy-connection", 16));
	assert_true(h1_is_hop_by_hop("KEEP-ALIVE", 10));
	assert_true(h1_is_hop_by_hop("TE", 2));
	assert_true(h1_is_hop_by_hop("Transfer-Encoding", 17));
	assert_true(h1_is_hop_by_hop("Upgrade", 7));
	assert_false(h1_is_hop_by_hop("Trailer", 7));
	assert_false(h1_is_hop_by_hop("Proxy-Authorization", 19));
	assert_false(h1_is_hop_by_hop("Content-Length", 14));
	assert_false(h1_is_hop_by_hop("Host", 4));
	assert_false(h1_is_hop_by_hop("Connectio", 9));
	assert_int_equal(h1_header_flags("content-length", 14), H1_HF_FRAMING);
	assert_int_equal(h1_header_id("Trailer", 7), H1_H_TRAILER);
	assert_int_equal(h1_header_id("Expect", 6), H1_H_EXPECT);
	assert_int_equal(h1_header_id("X-Other", 7), H1_H_OTHER);

	assert_int_equal(h1_method_lookup("GET", 3), H1_M_GET);
	assert_int_equal(h1_method_lookup("get", 3), H1_M_OTHER);   /* case-sensitive */
	assert_int_equal(h1_method_lookup("CONNECT", 7), H1_M_CONNECT);
	assert_int_equal(h1_method_lookup("PATCH", 5), H1_M_PATCH);
	assert_int_equal(h1_method_lookup("PROPFIND", 8), H1_M_OTHER);
	for (int id = H1_M_GET; id < H1_M_COUNT; id++) {
		const char *name = h1_method_name(id);
		assert_non_null(name);
		assert_int_equal(h1_method_lookup(name, strlen(name)), id);
	}
	assert_null(h1_method_name(H1_M_OTHER));
	assert_null(h1_method_name(H1_M_COUNT));

	assert_string_equal(h1_status_reason(200), "OK");
	assert_string_equal(h1_status_reason(404), "Not Found");
	assert_string_equal(h1_status_reason(431), "Request Header Fields Too Large");
	assert_string_equal(h1_status_reason(502), "Bad Gateway");
	assert_string_equal(h1_status_reason(299), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(request_simple),
		cmocka_unit_test(request_http10),
		cmocka_unit_test(request_connection_close),
		cmocka_unit_test(request_bodies),
		cmocka_unit_test(request_target_forms),
		cmocka_unit_test(request_fields),
		cmocka_unit_test(request_leading_crlf),
		cmocka_unit_test(request_expect_upgrade_te),
		cmocka_unit_test(request_connection_listed),
		cmocka_unit_test(request_limits_exact),
		cmocka_unit_test(long_runs_every_position),
		cmocka_unit_test(request_framing_errors),
		cmocka_unit_test(request_field_errors),
		cmocka_unit_test(request_connection_option_bound),
		cmocka_unit_test(request_line_errors),
		cmocka_unit_test(response_valid),
		cmocka_unit_test(response_no_body),
		cmocka_unit_test(response_error_cases),
		cmocka_unit_test(response_oversize),
		cmocka_unit_test(resumable_requests),
		cmocka_unit_test(resumable_responses),
		cmocka_unit_test(resumable_no_rescan),
		cmocka_unit_test(pipelined_requests),
		cmocka_unit_test(chunked_basic),
		cmocka_unit_test(chunked_every_split),
		cmocka_unit_test(chunked_cases),
		cmocka_unit_test(chunked_bounds),
		cmocka_unit_test(trailers_parse_rejects_garbage),
		cmocka_unit_test(helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
