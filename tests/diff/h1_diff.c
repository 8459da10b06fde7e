/* h1_diff: differential test of egressgw's request-head parser (src/http/h1.c) against
 * Debian's http-parser (libhttp-parser-dev, 2.9.x, built with HTTP_PARSER_STRICT=0).
 *
 * Usage: h1_diff [FILE...]
 * Runs every FILE (one request, or more pipelined, per file: only the first head is
 * compared) and then the crafted cases below through both parsers and prints one line
 * per case, tab-separated:
 *
 *     NAME  OURS  THEIRS  DIFF
 *
 * where OURS and THEIRS are "accept method=M target=T version=1.x headers=N body=B"
 * (B: none, length:N, chunked), "reject" (ours adds ":STATUS") or "incomplete", and DIFF
 * is "-" when the two agree, else a comma-separated list of what differs (verdict,
 * method, target, version, headers, body). tests/integration/test_h1_differential.py
 * compares the DIFF column against tests/diff/h1_diff_expected.txt, where every known
 * disagreement is explained.
 *
 * Only the head is compared: http-parser is paused in its on_headers_complete callback
 * and then given exactly one more byte, the head's final LF, which runs its end-of-head
 * checks (Transfer-Encoding without chunked last, for instance, is refused there, after
 * the callback) but no body byte; ours never looks past the head either. */
#include <http_parser.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

#define MAX_CASE (256 * 1024)

enum verdict { V_ACCEPT, V_REJECT, V_INCOMPLETE };

/* What one parser made of one input. */
struct view {
	enum verdict v;
	int status;                   /* ours: 400/414/431/505 on reject */
	char method[32];
	char target[512];
	int major, minor;
	unsigned headers;
	char body[48];
};

/* ---- ours ---- */

static void copy_span(char *dst, size_t n, const char *buf, struct h1_span s)
{
	size_t len = s.len < n - 1 ? s.len : n - 1;

	memcpy(dst, buf + s.off, len);
	dst[len] = '\0';
}

static void run_ours(const char *buf, size_t len, struct view *out)
{
	static struct h1_msg m;       /* 100 headers: keep it off the stack */
	struct h1_parser p;
	int rc;

	memset(out, 0, sizeof(*out));
	h1_parser_init(&p, true, 0);
	rc = h1_parse(&p, buf, len, &m);
	if (rc == H1_AGAIN) {
		out->v = V_INCOMPLETE;
		return;
	}
	if (rc == H1_ERROR) {
		out->v = V_REJECT;
		out->status = p.status;
		return;
	}
	out->v = V_ACCEPT;
	copy_span(out->method, sizeof(out->method), buf, m.method);
	copy_span(out->target, sizeof(out->target), buf, m.target);
	out->major = 1;
	out->minor = m.version_minor;
	out->headers = m.nheaders;
	switch (m.body) {
	case H1_BODY_LENGTH:
		snprintf(out->body, sizeof(out->body), "length:%llu",
		         (unsigned long long)m.content_length);
		break;
	case H1_BODY_CHUNKED:
		snprintf(out->body, sizeof(out->body), "chunked");
		break;
	default:
		snprintf(out->body, sizeof(out->body), "none");
		break;
	}
}

/* ---- http-parser ---- */

struct hp_state {
	struct view *out;
	size_t target_len;
	bool in_field;                /* the last callback was on_header_field */
	bool complete;
};

static int hp_on_url(http_parser *p, const char *at, size_t n)
{
	struct hp_state *s = p->data;
	size_t room = sizeof(s->out->target) - 1 - s->target_len;

	if (n > room)
		n = room;
	memcpy(s->out->target + s->target_len, at, n);
	s->target_len += n;
	s->out->target[s->target_len] = '\0';
	return 0;
}

static int hp_on_header_field(http_parser *p, const char *at, size_t n)
{
	struct hp_state *s = p->data;

	(void)at;
	(void)n;
	/* A field name may arrive in pieces; count it once. */
	if (!s->in_field)
		s->out->headers++;
	s->in_field = true;
	return 0;
}

static int hp_on_header_value(http_parser *p, const char *at, size_t n)
{
	struct hp_state *s = p->data;

	(void)at;
	(void)n;
	s->in_field = false;
	return 0;
}

static int hp_on_headers_complete(http_parser *p)
{
	struct hp_state *s = p->data;
	struct view *o = s->out;

	s->complete = true;
	snprintf(o->method, sizeof(o->method), "%s", http_method_str((enum http_method)p->method));
	o->major = p->http_major;
	o->minor = p->http_minor;
	if (p->flags & F_CHUNKED)
		snprintf(o->body, sizeof(o->body), "chunked");
	else if (p->content_length != ULLONG_MAX)
		snprintf(o->body, sizeof(o->body), "length:%llu", (unsigned long long)p->content_length);
	else
		snprintf(o->body, sizeof(o->body), "none");
	/* Stop here: the body is not part of the comparison. */
	http_parser_pause(p, 1);
	return 0;
}

static void run_theirs(const char *buf, size_t len, struct view *out)
{
	http_parser p;
	http_parser_settings cb;
	struct hp_state s;
	enum http_errno e;
	size_t used;

	memset(out, 0, sizeof(*out));
	memset(&s, 0, sizeof(s));
	memset(&cb, 0, sizeof(cb));
	s.out = out;
	cb.on_url = hp_on_url;
	cb.on_header_field = hp_on_header_field;
	cb.on_header_value = hp_on_header_value;
	cb.on_headers_complete = hp_on_headers_complete;
	http_parser_init(&p, HTTP_REQUEST);
	p.data = &s;
	used = http_parser_execute(&p, &cb, buf, len);
	e = HTTP_PARSER_ERRNO(&p);
	if (e == HPE_PAUSED && used < len) {
		/* Paused on the head's last LF, not consumed yet: feed it alone. */
		http_parser_pause(&p, 0);
		http_parser_execute(&p, &cb, buf + used, 1);
		e = HTTP_PARSER_ERRNO(&p);
	}
	if (s.complete && (e == HPE_OK || e == HPE_PAUSED))
		out->v = V_ACCEPT;
	else if (e != HPE_OK)
		out->v = V_REJECT;
	else
		out->v = V_INCOMPLETE;
}

/* ---- comparison and output ---- */

static void print_view(const struct view *v, bool ours)
{
	if (v->v == V_INCOMPLETE) {
		fputs("incomplete", stdout);
	} else if (v->v == V_REJECT) {
		if (ours)
			printf("reject:%d", v->status);
		else
			fputs("reject", stdout);
	} else {
		fputs("accept method=", stdout);
		/* Control bytes would break the line format: print them escaped. */
		for (const char *p = v->method; *p; p++)
			printf((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e ? "\\x%02x" : "%c",
			       (unsigned char)*p);
		fputs(" target=", stdout);
		for (const char *p = v->target; *p; p++)
			printf((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e ? "\\x%02x" : "%c",
			       (unsigned char)*p);
		printf(" version=%d.%d headers=%u body=%s", v->major, v->minor, v->headers, v->body);
	}
}

static void compare(const char *name, const char *buf, size_t len)
{
	struct view a, b;
	char diff[96] = "";

	run_ours(buf, len, &a);
	run_theirs(buf, len, &b);
#define ADD(what) snprintf(diff + strlen(diff), sizeof(diff) - strlen(diff), "%s%s", \
                           diff[0] ? "," : "", what)
	if (a.v != b.v) {
		ADD("verdict");
	} else if (a.v == V_ACCEPT) {
		if (strcmp(a.method, b.method) != 0)
			ADD("method");
		if (strcmp(a.target, b.target) != 0)
			ADD("target");
		if (a.major != b.major || a.minor != b.minor)
			ADD("version");
		if (a.headers != b.headers)
			ADD("headers");
		if (strcmp(a.body, b.body) != 0)
			ADD("body");
	}
#undef ADD
	printf("%s\t", name);
	print_view(&a, true);
	putchar('\t');
	print_view(&b, false);
	printf("\t%s\n", diff[0] ? diff : "-");
}

/* ---- crafted cases ---- */

struct crafted {
	const char *name;
	const char *data;
	size_t len;                   /* 0: strlen(data) (cases with NUL bytes set it) */
};

#define HOST "Host: a.test\r\n"
#define C(name, data) { name, data, 0 }
#define CN(name, data) { name, data, sizeof(data) - 1 }

static const struct crafted crafted[] = {
	/* well-formed */
	C("get", "GET / HTTP/1.1\r\n" HOST "\r\n"),
	C("get_http10_no_host", "GET / HTTP/1.0\r\n\r\n"),
	C("post_length", "POST /p HTTP/1.1\r\n" HOST "Content-Length: 5\r\n\r\nhello"),
	C("post_length_zero", "POST /p HTTP/1.1\r\n" HOST "Content-Length: 0\r\n\r\n"),
	C("post_chunked", "POST /p HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
	C("te_chunked_uppercase", "POST /p HTTP/1.1\r\n" HOST "Transfer-Encoding: CHUNKED\r\n\r\n"),
	C("cl_same_twice", "POST /p HTTP/1.1\r\n" HOST "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
	C("cl_same_list", "POST /p HTTP/1.1\r\n" HOST "Content-Length: 5, 5\r\n\r\nhello"),
	C("leading_crlf", "\r\n\r\nGET / HTTP/1.1\r\n" HOST "\r\n"),
	C("absolute_form", "GET http://a.test/x?y HTTP/1.1\r\n" HOST "\r\n"),
	C("connect", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n"),
	C("options_asterisk", "OPTIONS * HTTP/1.1\r\n" HOST "\r\n"),
	C("unknown_method", "PROPFIND / HTTP/1.1\r\n" HOST "\r\n"),
	C("custom_method", "FOO / HTTP/1.1\r\n" HOST "\r\n"),
	C("empty_value", "GET / HTTP/1.1\r\n" HOST "X-Empty:\r\n\r\n"),
	C("ows_around_value", "GET / HTTP/1.1\r\n" HOST "X-A: \t a \t\r\n\r\n"),
	C("obs_text_value", "GET / HTTP/1.1\r\n" HOST "X-A: caf\xc3\xa9\r\n\r\n"),
	C("fragment_in_target", "GET /a#frag HTTP/1.1\r\n" HOST "\r\n"),
	C("host_with_port", "GET / HTTP/1.1\r\nHost: a.test:8080\r\n\r\n"),
	C("incomplete_head", "GET / HTTP/1.1\r\n" HOST),
	/* framing */
	C("cl_and_te", "POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
	C("te_and_cl", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
	C("te_chunked_chunked", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, chunked\r\n\r\n"),
	C("te_chunked_twice", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
	C("te_gzip", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\n\r\n"),
	C("te_gzip_chunked", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip, chunked\r\n\r\n"),
	C("te_chunked_gzip", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, gzip\r\n\r\n"),
	C("te_identity", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: identity\r\n\r\n"),
	C("te_empty", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding:\r\n\r\n"),
	C("te_xchunked", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: xchunked\r\n\r\n"),
	C("te_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
	C("cl_two_different", "POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
	C("cl_list_different", "POST / HTTP/1.1\r\n" HOST "Content-Length: 5, 6\r\n\r\n"),
	C("cl_plus", "POST / HTTP/1.1\r\n" HOST "Content-Length: +5\r\n\r\n"),
	C("cl_hex", "POST / HTTP/1.1\r\n" HOST "Content-Length: 0x5\r\n\r\n"),
	C("cl_two_numbers", "POST / HTTP/1.1\r\n" HOST "Content-Length: 5 5\r\n\r\n"),
	C("cl_25_digits", "POST / HTTP/1.1\r\n" HOST "Content-Length: 1111111111111111111111111\r\n\r\n"),
	C("cl_19_digits", "POST / HTTP/1.1\r\n" HOST "Content-Length: 1000000000000000000\r\n\r\n"),
	C("cl_negative", "POST / HTTP/1.1\r\n" HOST "Content-Length: -1\r\n\r\n"),
	C("cl_empty", "POST / HTTP/1.1\r\n" HOST "Content-Length:\r\n\r\n"),
	C("cl_leading_zeros", "POST / HTTP/1.1\r\n" HOST "Content-Length: 005\r\n\r\n"),
	/* field lines */
	C("obs_fold", "GET / HTTP/1.1\r\n" HOST "X-A: a\r\n b\r\n\r\n"),
	C("space_before_first_field", "GET / HTTP/1.1\r\n " HOST "\r\n"),
	C("space_before_colon", "GET / HTTP/1.1\r\n" HOST "X-A : a\r\n\r\n"),
	C("space_before_colon_te", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding : chunked\r\n\r\n"),
	CN("nul_in_name", "GET / HTTP/1.1\r\n" HOST "X-\0A: a\r\n\r\n"),
	CN("nul_in_value", "GET / HTTP/1.1\r\n" HOST "X-A: a\0b\r\n\r\n"),
	C("ctl_in_value", "GET / HTTP/1.1\r\n" HOST "X-A: a\x01" "b\r\n\r\n"),
	C("del_in_value", "GET / HTTP/1.1\r\n" HOST "X-A: a\x7f" "b\r\n\r\n"),
	C("cr_in_value", "GET / HTTP/1.1\r\n" HOST "X-A: a\rb\r\n\r\n"),
	C("empty_name", "GET / HTTP/1.1\r\n" HOST ": a\r\n\r\n"),
	C("no_colon", "GET / HTTP/1.1\r\n" HOST "X-A a\r\n\r\n"),
	C("bare_lf", "GET / HTTP/1.1\n" "Host: a.test\n\n"),
	C("bare_lf_one_field", "GET / HTTP/1.1\r\n" HOST "X-A: a\n\r\n"),
	C("bare_cr", "GET / HTTP/1.1\r" "Host: a.test\r\n\r\n"),
	/* Host */
	C("no_host_http11", "GET / HTTP/1.1\r\n\r\n"),
	C("empty_host", "GET / HTTP/1.1\r\nHost:\r\n\r\n"),
	C("two_hosts", "GET / HTTP/1.1\r\n" HOST HOST "\r\n"),
	C("host_userinfo", "GET / HTTP/1.1\r\nHost: u@a.test\r\n\r\n"),
	/* request line */
	C("double_space", "GET  / HTTP/1.1\r\n" HOST "\r\n"),
	C("tab_separator", "GET\t/ HTTP/1.1\r\n" HOST "\r\n"),
	C("trailing_space", "GET / HTTP/1.1 \r\n" HOST "\r\n"),
	C("leading_space", " GET / HTTP/1.1\r\n" HOST "\r\n"),
	C("missing_version", "GET /\r\n" HOST "\r\n"),
	C("lowercase_version", "GET / http/1.1\r\n" HOST "\r\n"),
	C("lowercase_method", "get / HTTP/1.1\r\n" HOST "\r\n"),
	C("version_1_2", "GET / HTTP/1.2\r\n" HOST "\r\n"),
	C("version_2_0", "GET / HTTP/2.0\r\n" HOST "\r\n"),
	C("version_0_9", "GET / HTTP/0.9\r\n" HOST "\r\n"),
	C("version_two_digits", "GET / HTTP/1.10\r\n" HOST "\r\n"),
	C("space_in_target", "GET /a b HTTP/1.1\r\n" HOST "\r\n"),
	C("high_byte_in_target", "GET /a\xff" "b HTTP/1.1\r\n" HOST "\r\n"),
	C("method_not_token", "G(T / HTTP/1.1\r\n" HOST "\r\n"),
	C("absolute_userinfo", "GET http://u@a.test/ HTTP/1.1\r\n" HOST "\r\n"),
	C("authority_form_get", "GET a.test:80 HTTP/1.1\r\n" HOST "\r\n"),
	C("asterisk_get", "GET * HTTP/1.1\r\n" HOST "\r\n"),
	C("connect_with_body", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nContent-Length: 5\r\n\r\n"),
	C("h2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
	/* Connection options */
	C("connection_bad_token", "GET / HTTP/1.1\r\n" HOST "Connection: a b\r\n\r\n"),
	C("connection_lists_host", "GET / HTTP/1.1\r\n" HOST "Connection: host\r\n\r\n"),
};

static size_t read_file(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		perror(path);
		exit(2);
	}
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	static char buf[MAX_CASE];

	for (int i = 1; i < argc; i++) {
		const char *base = strrchr(argv[i], '/');
		char name[300];
		size_t n = read_file(argv[i], buf, sizeof(buf));

		snprintf(name, sizeof(name), "corpus/%s", base ? base + 1 : argv[i]);
		compare(name, buf, n);
	}
	for (size_t i = 0; i < sizeof(crafted) / sizeof(crafted[0]); i++) {
		const struct crafted *c = &crafted[i];
		char name[300];

		snprintf(name, sizeof(name), "crafted/%s", c->name);
		compare(name, c->data, c->len ? c->len : strlen(c->data));
	}
	/* Limits: made here rather than written out. */
	{
		size_t n = 0;

		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "GET /");
		memset(buf + n, 'a', 8300);
		n += 8300;
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, " HTTP/1.1\r\n" HOST "\r\n");
		compare("crafted/request_line_over_8k", buf, n);

		n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n" HOST);
		for (int i = 0; i < 100; i++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-H%d: v\r\n", i);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
		compare("crafted/101_fields", buf, n);

		n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n" HOST);
		for (int i = 0; i < 62; i++) {
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-F%d: ", i);
			memset(buf + n, 'v', 1000);
			n += 1000;
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
		}
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
		compare("crafted/head_over_60k", buf, n);

		n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n" HOST);
		for (int i = 0; i < 82; i++) {
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-F%d: ", i);
			memset(buf + n, 'v', 1000);
			n += 1000;
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
		}
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
		compare("crafted/head_over_80k", buf, n);
	}
	return 0;
}
