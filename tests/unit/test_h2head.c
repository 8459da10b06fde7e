/* h2head: an HTTP/2 response head kept as a record and read back as struct h1_msg, the
 * parsed head the request path writes downstream: the same ids, flags and framing that
 * h1_parse gives the HTTP/1.1 text of the same response (checked side by side), fields
 * kept exactly (order, repetitions, empty values, obs-text, Host and Cookie untouched),
 * what h1_parse would refuse refused, several records in one buffer, trailer sections. */
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
#include "http/h2head.h"

#define HS(n, v) { { n, sizeof(n) - 1 }, { v, sizeof(v) - 1 } }

static struct h1_msg m1, m2;

static void span_is(const char *b, struct h1_span s, const char *want)
{
	assert_int_equal(s.len, strlen(want));
	assert_memory_equal(b + s.off, want, s.len);
}

/* Packs rs, fills m1 from the record; returns the record's data. */
static const char *pack_fill(struct sbuf *sb, const struct h2_response *rs, int method)
{
	size_t len;

	sbuf_reset(sb);
	assert_int_equal(h2head_pack(sb, rs), 0);
	assert_int_equal(h2head_size(sb->s), sb->len);
	assert_int_equal(sb->len % 8, 0);
	h2head_fill(sb->s, method, &m1);
	return h2head_data(sb->s, &len);
}

/* What h1_parse makes of the same head as HTTP/1.1 text (framing fields added the way a
 * server would send them). */
static const char *parse_text(const char *text, int method)
{
	struct h1_parser p;

	h1_parser_init(&p, false, method);
	assert_int_equal(h1_parse(&p, text, strlen(text), &m2), H1_OK);
	return text;
}

static void fields_equal(const char *b1, const char *b2)
{
	assert_int_equal(m1.status, m2.status);
	assert_int_equal(m1.nheaders, m2.nheaders);
	for (unsigned i = 0; i < m1.nheaders; i++) {
		assert_int_equal(m1.headers[i].name.len, m2.headers[i].name.len);
		assert_memory_equal(b1 + m1.headers[i].name.off, b2 + m2.headers[i].name.off,
		                    m1.headers[i].name.len);
		assert_int_equal(m1.headers[i].value.len, m2.headers[i].value.len);
		assert_memory_equal(b1 + m1.headers[i].value.off, b2 + m2.headers[i].value.off,
		                    m1.headers[i].value.len);
		assert_int_equal(m1.headers[i].id, m2.headers[i].id);
		assert_int_equal(m1.headers[i].flags, m2.headers[i].flags);
	}
	assert_int_equal(m1.body, m2.body);
	assert_int_equal(m1.content_length, m2.content_length);
}

static void same_as_h1_parse(void **state)
{
	struct sbuf sb = SBUF_INIT;
	struct h2_header h[] = {
		HS("content-type", "text/plain"), HS("set-cookie", "a=1"), HS("set-cookie", "b=2"),
		HS("content-length", "12"), HS("x-empty", ""), HS("trailer", "grpc-status"),
		HS("x-obs", "caf\xc3\xa9 \t tab"),
	};
	struct h2_response rs = { 200, h, 7, 12, false };
	const char *b = pack_fill(&sb, &rs, H1_M_GET);
	const char *t = parse_text("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
	                           "set-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 12\r\n"
	                           "x-empty: \r\ntrailer: grpc-status\r\n"
	                           "x-obs: caf\xc3\xa9 \t tab\r\n\r\n", H1_M_GET);

	(void)state;
	fields_equal(b, t);
	span_is(b, m1.reason, "OK");
	assert_int_equal(m1.body, H1_BODY_LENGTH);
	assert_int_equal(m1.headers[3].id, H1_H_CONTENT_LENGTH);
	assert_true(m1.headers[3].flags & H1_HF_FRAMING);
	assert_true(m1.keep_alive);
	assert_int_equal(m1.version_minor, 1);
	assert_int_equal(m1.host_idx, -1);
	sbuf_free(&sb);
}

/* The text rendering dropped a response's Host field and joined Cookie fields: kept as
 * they came now (the receiver of m decides). */
static void nothing_rewritten(void **state)
{
	struct sbuf sb = SBUF_INIT;
	struct h2_header h[] = { HS("host", "h.example"), HS("cookie", "x=1"), HS("cookie", "y=2") };
	struct h2_response rs = { 404, h, 3, -1, true };
	const char *b = pack_fill(&sb, &rs, H1_M_GET);

	(void)state;
	assert_int_equal(m1.nheaders, 3);
	span_is(b, m1.headers[0].name, "host");
	assert_int_equal(m1.headers[0].id, H1_H_HOST);
	span_is(b, m1.headers[1].value, "x=1");
	span_is(b, m1.headers[2].value, "y=2");
	span_is(b, m1.reason, "Not Found");
	/* Ended with the head, no length: length 0. */
	assert_int_equal(m1.body, H1_BODY_LENGTH);
	assert_int_equal(m1.content_length, 0);
	assert_int_equal(m1.head_len, strlen("Not Found") + 4 + 9 + 6 + 3 + 6 + 3);
	sbuf_free(&sb);
}

static void framing(void **state)
{
	struct sbuf sb = SBUF_INIT;
	struct h2_header cl[] = { HS("content-length", "1234") };
	struct h2_response rs;

	(void)state;
	/* HEAD, 204, 304: no body, the length still known for the HEAD. */
	rs = (struct h2_response){ 200, cl, 1, 1234, true };
	pack_fill(&sb, &rs, H1_M_HEAD);
	assert_int_equal(m1.body, H1_BODY_NONE);
	assert_int_equal(m1.content_length, 1234);
	rs = (struct h2_response){ 204, NULL, 0, -1, true };
	pack_fill(&sb, &rs, H1_M_GET);
	assert_int_equal(m1.body, H1_BODY_NONE);
	assert_int_equal(m1.nheaders, 0);
	rs = (struct h2_response){ 304, NULL, 0, -1, false };
	pack_fill(&sb, &rs, H1_M_GET);
	assert_int_equal(m1.body, H1_BODY_NONE);
	/* Interim: no body. */
	rs = (struct h2_response){ 103, NULL, 0, -1, false };
	pack_fill(&sb, &rs, H1_M_GET);
	assert_int_equal(m1.body, H1_BODY_NONE);
	assert_int_equal(m1.status, 103);
	/* No length, the stream goes on: until END_STREAM (chunked downstream). */
	rs = (struct h2_response){ 200, NULL, 0, -1, false };
	pack_fill(&sb, &rs, H1_M_POST);
	assert_int_equal(m1.body, H1_BODY_CHUNKED);
	/* A length with the stream going on. */
	rs = (struct h2_response){ 200, cl, 1, 1234, false };
	pack_fill(&sb, &rs, H1_M_GET);
	assert_int_equal(m1.body, H1_BODY_LENGTH);
	assert_int_equal(m1.content_length, 1234);
	sbuf_free(&sb);
}

static void refused_like_h1_parse(void **state)
{
	struct sbuf sb = SBUF_INIT;
	struct h2_header ctl[] = { HS("x-a", "bad\x01value") };
	struct h2_header del[] = { HS("x-a", "bad\x7fvalue") };
	struct h2_header name[] = { HS("x(a)", "v") };
	struct h2_header empty[] = { HS("", "v") };
	struct h2_header many[H1_MAX_HEADERS + 1];
	struct h2_response rs;

	(void)state;
	for (size_t i = 0; i < H1_MAX_HEADERS + 1; i++)
		many[i] = (struct h2_header)HS("x-n", "1");
	sbuf_adds(&sb, "keep");
	/* Characters: h2head_fields_ok's (h2head_pack trusts its caller's check). */
	assert_false(h2head_fields_ok(ctl, 1));
	assert_false(h2head_fields_ok(del, 1));
	assert_false(h2head_fields_ok(name, 1));
	assert_false(h2head_fields_ok(empty, 1));
	assert_true(h2head_fields_ok(many, H1_MAX_HEADERS + 1));
	rs = (struct h2_response){ 200, many, H1_MAX_HEADERS + 1, -1, true };
	assert_int_equal(h2head_pack(&sb, &rs), -1);
	rs.nheaders = H1_MAX_HEADERS;
	rs.status = 600;
	assert_int_equal(h2head_pack(&sb, &rs), -1);
	rs.status = 99;
	assert_int_equal(h2head_pack(&sb, &rs), -1);
	assert_int_equal(sb.len, 4);    /* unchanged by a refusal */
	rs.status = 599;
	assert_int_equal(h2head_pack(&sb, &rs), 0);
	sbuf_free(&sb);
}

/* The value check looks at eight bytes per step: a bad byte at every position of a long
 * value is found, HTAB and obs-text anywhere pass. */
static void value_check_every_position(void **state)
{
	struct sbuf sb = SBUF_INIT;
	char v[40];
	struct h2_header h[1] = { { { "x-v", 3 }, { v, sizeof(v) } } };
	struct h2_response rs = { 200, h, 1, -1, true };
	static const unsigned char bad[] = { 0x00, 0x01, 0x0a, 0x0d, 0x1f, 0x7f };
	static const unsigned char good[] = { '\t', ' ', '~', 0x80, 0xff, 0x20 };

	(void)state;
	for (size_t pos = 0; pos < sizeof(v); pos++) {
		for (size_t k = 0; k < sizeof(bad); k++) {
			memset(v, 'a', sizeof(v));
			v[pos] = (char)bad[k];
			assert_false(h2head_fields_ok(h, 1));
		}
		for (size_t k = 0; k < sizeof(good); k++) {
			memset(v, 'a', sizeof(v));
			v[pos] = (char)good[k];
			sbuf_reset(&sb);
			assert_true(h2head_fields_ok(h, 1));
			assert_int_equal(h2head_pack(&sb, &rs), 0);
		}
	}
	sbuf_free(&sb);
}

/* A field list over H1_MAX_HEAD bytes is refused; one just under it is exact. */
static void sizes(void **state)
{
	struct sbuf sb = SBUF_INIT;
	static char big[H1_MAX_HEAD];
	struct h2_header h[1];
	struct h2_response rs = { 200, h, 1, -1, false };
	size_t len;
	const char *b;

	(void)state;
	memset(big, 'v', sizeof(big));
	h[0] = (struct h2_header){ { "x-big", 5 }, { big, H1_MAX_HEAD - 5 - 2 } };
	assert_int_equal(h2head_pack(&sb, &rs), 0);
	h2head_fill(sb.s, H1_M_GET, &m1);
	b = h2head_data(sb.s, &len);
	assert_int_equal(len, H1_MAX_HEAD);
	assert_int_equal(m1.headers[0].value.len, H1_MAX_HEAD - 7);
	assert_memory_equal(b + m1.headers[0].value.off, big, H1_MAX_HEAD - 7);
	sbuf_reset(&sb);
	h[0].value.len = H1_MAX_HEAD - 6;
	assert_int_equal(h2head_pack(&sb, &rs), -1);
	sbuf_free(&sb);
}

/* Interim heads, the final head and a trailer section one after another in one buffer,
 * read back in order. */
static void records_in_sequence(void **state)
{
	struct sbuf sb = SBUF_INIT;
	struct h2_header link[] = { HS("link", "</a.css>; rel=preload") };
	struct h2_header tr[] = { HS("grpc-status", "0"), HS("grpc-message", "") };
	struct h2_response r103 = { 103, link, 1, -1, false };
	struct h2_response r100 = { 100, NULL, 0, -1, false };
	struct h2_response r200 = { 200, NULL, 0, -1, false };
	struct h2_response rtr = { 0, tr, 2, -1, true };
	size_t off = 0, len;
	const char *b;

	(void)state;
	assert_int_equal(h2head_pack(&sb, &r103), 0);
	assert_int_equal(h2head_pack(&sb, &r100), 0);
	assert_int_equal(h2head_pack(&sb, &r200), 0);
	assert_int_equal(h2head_pack(&sb, &rtr), 0);
	assert_int_equal(h2head_status(sb.s + off), 103);
	h2head_fill(sb.s + off, H1_M_GET, &m1);
	b = h2head_data(sb.s + off, &len);
	span_is(b, m1.reason, "Early Hints");
	span_is(b, m1.headers[0].value, "</a.css>; rel=preload");
	off += h2head_size(sb.s + off);
	assert_int_equal(h2head_status(sb.s + off), 100);
	off += h2head_size(sb.s + off);
	h2head_fill(sb.s + off, H1_M_GET, &m1);
	assert_int_equal(m1.status, 200);
	assert_int_equal(m1.body, H1_BODY_CHUNKED);
	off += h2head_size(sb.s + off);
	assert_int_equal(h2head_status(sb.s + off), 0);
	h2head_fill(sb.s + off, H1_M_GET, &m1);
	b = h2head_data(sb.s + off, &len);
	assert_int_equal(m1.nheaders, 2);
	span_is(b, m1.headers[0].name, "grpc-status");
	span_is(b, m1.headers[1].name, "grpc-message");
	assert_int_equal(m1.headers[1].value.len, 0);
	assert_int_equal(m1.reason.len, 0);
	off += h2head_size(sb.s + off);
	assert_int_equal(off, sb.len);
	sbuf_free(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(same_as_h1_parse),
		cmocka_unit_test(nothing_rewritten),
		cmocka_unit_test(framing),
		cmocka_unit_test(refused_like_h1_parse),
		cmocka_unit_test(sizes),
		cmocka_unit_test(value_check_every_position),
		cmocka_unit_test(records_in_sequence),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
