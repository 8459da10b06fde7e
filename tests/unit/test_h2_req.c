/* h2_request_msg: an HTTP/2 request head made into the parsed head the request path
 * works on, without HTTP/1.1 text in between. Each test checks the spans byte for byte
 * against what was sent, and each refusal its status (the answers h1_parse gave the
 * rendered text before, where they still apply). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/h1.h"
#include "http/h2.h"
#include "http/h2_req.h"

#define S(lit) { lit, sizeof(lit) - 1 }

/* The storage h2_request_msg writes into, with a guard after the size it asked for. */
struct fill {
	char *buf;
	size_t need;
	struct h1_msg m;
	const char *reason;
	int rc;
};

static void fill(struct fill *f, const struct h2_request *rq)
{
	f->need = h2_request_msg_size(rq);
	f->buf = malloc(f->need + 64);
	memset(f->buf, 0x5a, f->need + 64);
	f->reason = NULL;
	memset(&f->m, 0xff, sizeof(f->m));   /* a reused stream's old head: all overwritten */
	f->rc = h2_request_msg(rq, f->buf, &f->m, &f->reason);
	for (size_t i = f->need; i < f->need + 64; i++)
		assert_int_equal((unsigned char)f->buf[i], 0x5a);   /* nothing past the size */
	if (f->rc == 0)
		assert_true(f->m.head_len <= f->need);
	else
		assert_non_null(f->reason);
}

static void fill_free(struct fill *f)
{
	free(f->buf);
	f->buf = NULL;
}

static void span_is(const struct fill *f, struct h1_span s, const char *want, size_t len)
{
	assert_int_equal(s.len, len);
	assert_true(s.off + s.len <= f->m.head_len);
	assert_memory_equal(f->buf + s.off, want, len);
}
#define SPAN_IS(f, s, lit) span_is((f), (s), (lit), sizeof(lit) - 1)

static void field_is(const struct fill *f, unsigned i, const char *n, size_t nl, const char *v,
                     size_t vl)
{
	assert_true(i < f->m.nheaders);
	span_is(f, f->m.headers[i].name, n, nl);
	span_is(f, f->m.headers[i].value, v, vl);
}
#define FIELD_IS(f, i, n, v) field_is((f), (i), (n), sizeof(n) - 1, (v), sizeof(v) - 1)

static struct h2_request get(const char *path, const char *auth)
{
	struct h2_request rq = { .method = S("GET"), .scheme = S("https"),
		                 .content_length = -1, .end_stream = true };

	rq.path = (struct h2_str){ path, strlen(path) };
	rq.authority = (struct h2_str){ auth, strlen(auth) };
	return rq;
}

/* Fields in order, host first, cookie crumbs joined into the first crumb's place,
 * content-length left to the framing, ids and flags from h1's tables. */
static void fields_and_cookies(void **state)
{
	static const char obs[] = "caf\xc3\xa9 \x80\xff\tx:y";  /* obs-text, HTAB, colon */
	struct h2_header h[] = {
		{ S("cookie"), S("a=1") }, { S("accept"), S("*/*") }, { S("cookie"), S("b=2") },
		{ S("content-length"), S("3") }, { S("x-obs"), { obs, sizeof(obs) - 1 } },
		{ S("close"), S("not a connection option") }, { S("cookie"), S("c=3") },
		{ S("x-dup"), S("1") }, { S("x-dup"), S("2") }, { S("expect"), S("100-continue") },
		{ S("trailer"), S("grpc-status") },
	};
	struct h2_request rq = get("/p?q=%20&r", "a.example:8443");
	struct fill f;

	(void)state;
	rq.method = (struct h2_str)S("POST");
	rq.headers = h;
	rq.nheaders = sizeof(h) / sizeof(h[0]);
	rq.content_length = 3;
	rq.end_stream = false;
	rq.te_trailers = true;
	fill(&f, &rq);
	assert_int_equal(f.rc, 0);
	SPAN_IS(&f, f.m.method, "POST");
	assert_int_equal(f.m.method_id, H1_M_POST);
	SPAN_IS(&f, f.m.target, "/p?q=%20&r");
	SPAN_IS(&f, f.m.path, "/p?q=%20&r");
	assert_int_equal(f.m.target_form, H1_TF_ORIGIN);
	assert_int_equal(f.m.scheme.len, 0);
	assert_int_equal(f.m.authority.len, 0);
	assert_int_equal(f.m.host_idx, 0);
	FIELD_IS(&f, 0, "host", "a.example:8443");
	assert_int_equal(f.m.headers[0].id, H1_H_HOST);
	assert_int_equal(f.m.headers[0].flags, 0);
	FIELD_IS(&f, 1, "cookie", "a=1; b=2; c=3");
	FIELD_IS(&f, 2, "accept", "*/*");
	field_is(&f, 3, "x-obs", 5, obs, sizeof(obs) - 1);
	FIELD_IS(&f, 4, "close", "not a connection option");
	assert_int_equal(f.m.headers[4].flags, 0);   /* forwarded: no "connection: close" */
	FIELD_IS(&f, 5, "x-dup", "1");
	FIELD_IS(&f, 6, "x-dup", "2");
	FIELD_IS(&f, 7, "expect", "100-continue");
	assert_int_equal(f.m.headers[7].id, H1_H_EXPECT);
	FIELD_IS(&f, 8, "trailer", "grpc-status");
	assert_int_equal(f.m.headers[8].id, H1_H_TRAILER);
	assert_int_equal(f.m.headers[8].flags, 0);
	assert_int_equal(f.m.nheaders, 9);
	assert_int_equal(f.m.body, H1_BODY_LENGTH);
	assert_int_equal(f.m.content_length, 3);
	assert_true(f.m.has_te_trailers);
	assert_false(f.m.keep_alive);
	assert_false(f.m.expect_continue);
	assert_false(f.m.upgrade);
	assert_int_equal(f.m.upgrade_idx, -1);
	assert_int_equal(f.m.version_minor, 1);
	/* What h1's helpers find in it. */
	assert_int_equal(h1_header_find(&f.m, f.buf, "X-Dup", 0), 6 - 1);
	assert_int_equal(h1_header_find(&f.m, f.buf, "content-length", 0), -1);
	fill_free(&f);
}

/* Framing from END_STREAM and content-length; the head does not depend on them. */
static void body_framing(void **state)
{
	struct h2_request rq = get("/", "a");
	struct fill f;

	(void)state;
	fill(&f, &rq);
	assert_int_equal(f.rc, 0);
	assert_int_equal(f.m.body, H1_BODY_NONE);
	assert_int_equal(f.m.content_length, 0);
	fill_free(&f);
	rq.end_stream = false;
	fill(&f, &rq);
	assert_int_equal(f.m.body, H1_BODY_CHUNKED);
	fill_free(&f);
	rq.content_length = 0;
	fill(&f, &rq);
	assert_int_equal(f.m.body, H1_BODY_LENGTH);
	assert_int_equal(f.m.content_length, 0);
	fill_free(&f);
	/* content-length with END_STREAM (nghttp2 checked it against the DATA: 0) */
	rq.end_stream = true;
	fill(&f, &rq);
	assert_int_equal(f.m.body, H1_BODY_NONE);
	fill_free(&f);
}

/* :authority as Host must be: uri-host [":" port]; the target's forms. */
static void authority_and_target(void **state)
{
	static const struct {
		const char *method, *path, *auth;
		int rc;
		int form;
	} c[] = {
		{ "GET", "/", "a.example", 0, H1_TF_ORIGIN },
		{ "GET", "/", "[::1]:8080", 0, H1_TF_ORIGIN },
		{ "GET", "/", "10.0.0.1:1", 0, H1_TF_ORIGIN },
		{ "GET", "/", "", 400, 0 },
		{ "GET", "/", "user@a.example", 400, 0 },
		{ "GET", "/", "a.example,b.example", 400, 0 },
		{ "GET", "/", "a.example:99999", 400, 0 },
		{ "GET", "/", "a.example:", 400, 0 },
		{ "OPTIONS", "*", "a", 0, H1_TF_ASTERISK },
		{ "GET", "*", "a", 400, 0 },
		{ "GET", "http://b.example/x", "a", 400, 0 },   /* no absolute-form in HTTP/2 */
		{ "GET", "x", "a", 400, 0 },
		{ "GET", "/a b", "a", 400, 0 },
		{ "GET", "/caf\xc3\xa9", "a", 400, 0 },
		{ "GET", "/a\x7f", "a", 400, 0 },
		{ "PROPFIND", "/d/", "a", 0, H1_TF_ORIGIN },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct h2_request rq = get(c[i].path, c[i].auth);
		struct fill f;

		rq.method = (struct h2_str){ c[i].method, strlen(c[i].method) };
		fill(&f, &rq);
		if (f.rc != c[i].rc)
			fail_msg("case %zu (%s %s, %s): %d, want %d", i, c[i].method, c[i].path,
			         c[i].auth, f.rc, c[i].rc);
		if (f.rc == 0) {
			assert_int_equal(f.m.target_form, c[i].form);
			span_is(&f, f.m.target, c[i].path, strlen(c[i].path));
			span_is(&f, f.m.headers[0].value, c[i].auth, strlen(c[i].auth));
			assert_int_equal(f.m.method_id, h1_method_lookup(c[i].method,
			                                                 strlen(c[i].method)));
		}
		fill_free(&f);
	}
}

/* CONNECT: authority-form, the target is the :authority, host:port required. */
static void connect_target(void **state)
{
	struct h2_request rq = { .method = S("CONNECT"), .authority = S("a.example:443"),
		                 .content_length = -1 };
	struct fill f;

	(void)state;
	fill(&f, &rq);
	assert_int_equal(f.rc, 0);
	assert_int_equal(f.m.method_id, H1_M_CONNECT);
	assert_int_equal(f.m.target_form, H1_TF_AUTHORITY);
	SPAN_IS(&f, f.m.target, "a.example:443");
	SPAN_IS(&f, f.m.authority, "a.example:443");
	FIELD_IS(&f, 0, "host", "a.example:443");
	assert_int_equal(f.m.body, H1_BODY_CHUNKED);   /* the tunnel's bytes: refused later */
	fill_free(&f);
	rq.authority = (struct h2_str)S("a.example");
	fill(&f, &rq);
	assert_int_equal(f.rc, 400);
	fill_free(&f);
}

/* The limits h1_parse put on the rendered text: 414 for the request line, 431 past
 * H1_MAX_HEADERS fields (host included, cookies counted once). */
static void limits(void **state)
{
	static struct h2_header h[H1_MAX_HEADERS + 2];
	static char names[H1_MAX_HEADERS + 2][8];
	char *path = malloc(H1_MAX_START_LINE + 1);
	struct h2_request rq = get("/", "a");
	struct fill f;
	size_t plen;

	(void)state;
	for (size_t i = 0; i < H1_MAX_HEADERS + 2; i++) {
		snprintf(names[i], sizeof(names[i]), "x-%zu", i);
		h[i].name = (struct h2_str){ names[i], strlen(names[i]) };
		h[i].value = (struct h2_str)S("v");
	}
	rq.headers = h;
	rq.nheaders = H1_MAX_HEADERS - 1;   /* + host: exactly the limit */
	fill(&f, &rq);
	assert_int_equal(f.rc, 0);
	assert_int_equal(f.m.nheaders, H1_MAX_HEADERS);
	FIELD_IS(&f, H1_MAX_HEADERS - 1, "x-98", "v");
	fill_free(&f);
	rq.nheaders = H1_MAX_HEADERS;
	fill(&f, &rq);
	assert_int_equal(f.rc, 431);
	fill_free(&f);
	/* three crumbs count once */
	h[0].name = h[1].name = h[2].name = (struct h2_str)S("cookie");
	rq.nheaders = H1_MAX_HEADERS + 1;
	fill(&f, &rq);
	assert_int_equal(f.rc, 0);
	FIELD_IS(&f, 1, "cookie", "v; v; v");
	fill_free(&f);
	/* "GET " + path + " HTTP/1.1" at H1_MAX_START_LINE bytes, then one more */
	rq.nheaders = 0;
	plen = H1_MAX_START_LINE - 4 - 9;
	memset(path, 'a', plen);
	path[0] = '/';
	rq.path = (struct h2_str){ path, plen };
	fill(&f, &rq);
	assert_int_equal(f.rc, 0);
	assert_int_equal(f.m.target.len, plen);
	fill_free(&f);
	rq.path.len = plen + 1;
	path[plen] = 'a';
	fill(&f, &rq);
	assert_int_equal(f.rc, 414);
	fill_free(&f);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fields_and_cookies),
		cmocka_unit_test(body_framing),
		cmocka_unit_test(authority_and_target),
		cmocka_unit_test(connect_target),
		cmocka_unit_test(limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
