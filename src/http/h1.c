/* h1: HTTP/1.1 head parser, chunked decoder, helpers. See h1.h for the contract, the
 * strictness decisions and the cost model. */
#include "http/h1.h"

#include <string.h>

/* Character classes, one bit each, for table-driven loops. */
enum {
	C_TOKEN  = 1u << 0, /* tchar (RFC 9110 §5.6.2) */
	C_VALUE  = 1u << 1, /* field-vchar, SP, HTAB: HTAB, 0x20-0x7e, 0x80-0xff */
	C_TARGET = 1u << 2, /* VCHAR 0x21-0x7e: request-target bytes */
	C_HEX    = 1u << 3,
	C_DIGIT  = 1u << 4,
	C_HOST   = 1u << 5, /* unreserved, sub-delims except ',', '%', ':', '[', ']' */
	C_SCHEME = 1u << 6, /* ALPHA DIGIT + - . */
	C_QDTEXT = 1u << 7, /* HTAB SP 0x21 0x23-0x5b 0x5d-0x7e obs-text */
};

static const uint8_t cls[256] = {
	/* 00 */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x82, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	/* 10 */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	/* 20 */ 0x82, 0xa7, 0x06, 0x87, 0xa7, 0xa7, 0xa7, 0xa7, 0xa6, 0xa6, 0xa7, 0xe7, 0x86, 0xe7, 0xe7, 0x86,
	/* 30 */ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xa6, 0xa6, 0x86, 0xa6, 0x86, 0x86,
	/* 40 */ 0x86, 0xef, 0xef, 0xef, 0xef, 0xef, 0xef, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7,
	/* 50 */ 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xa6, 0x06, 0xa6, 0x87, 0xa7,
	/* 60 */ 0x87, 0xef, 0xef, 0xef, 0xef, 0xef, 0xef, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7,
	/* 70 */ 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0xe7, 0x86, 0x87, 0x86, 0xa7, 0x00,
	/* 80 */ 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82,
	/* 90 */ 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82,
	/* a0 */ 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82,
	/* b0 */ 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82,
	/* c0 */ 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82,
	/* d0 */ 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82,
	/* e0 */ 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82,
	/* f0 */ 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82, 0x82,
};

#define IS(c, k) (cls[(unsigned char)(c)] & (k))
#define IS_WS(c) ((c) == ' ' || (c) == '\t')

static inline unsigned char lower(unsigned char c)
{
	return (unsigned char)(c - 'A') < 26u ? (unsigned char)(c | 0x20) : c;
}

static inline struct h1_span span(uint32_t off, uint32_t len)
{
	struct h1_span s = { off, len };
	return s;
}

/* Eight bytes at a time (SWAR) for the long runs: field values and request-targets.
 * Each test is exact about whether SOME byte of the word matches, which is all the
 * loops need: on a hit they fall back to the byte loop to find which one. */
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t load64(const char *p)
{
	uint64_t w;
	memcpy(&w, p, sizeof(w));
	return w;
}

/* Some byte < n (n <= 0x80)? */
static inline uint64_t has_less(uint64_t x, unsigned n)
{
	return (x - ONES * n) & ~x & HIGHS;
}

/* Some byte == 0x7f (DEL)? */
static inline uint64_t has_del(uint64_t x)
{
	uint64_t y = x ^ (ONES * 0x7f);
	return (y - ONES) & ~y & HIGHS;
}

/* Skips field-value bytes (SP, VCHAR, obs-text; HTAB is left to the byte loop) in
 * buf[pos .. end) eight at a time; returns where the byte loop should take over. */
static inline uint32_t skip_value8(const char *buf, uint32_t pos, uint32_t end)
{
	while (end - pos >= 8) {
		uint64_t w = load64(buf + pos);
		if (has_less(w, 0x20) | has_del(w))
			break;
		pos += 8;
	}
	return pos;
}

/* Same for request-target bytes (VCHAR 0x21-0x7e only). */
static inline uint32_t skip_target8(const char *buf, uint32_t pos, uint32_t end)
{
	while (end - pos >= 8) {
		uint64_t w = load64(buf + pos);
		if (has_less(w, 0x21) | has_del(w) | (w & HIGHS))
			break;
		pos += 8;
	}
	return pos;
}

/* s[0..n) equals lit (lowercase) ignoring ASCII case. */
static bool eq_lit(const char *s, size_t n, const char *lit, size_t litlen)
{
	if (n != litlen)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)s[i]) != (unsigned char)lit[i])
			return false;
	return true;
}
#define EQ_LIT(s, n, lit) eq_lit((s), (n), lit, sizeof(lit) - 1)

/* ---------------------------------------------------------------- helpers */

bool h1_name_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}

static const uint16_t hdr_flags[H1_H_COUNT] = {
	[H1_H_CONNECTION]        = H1_HF_HOP_BY_HOP,
	[H1_H_CONTENT_LENGTH]    = H1_HF_FRAMING,
	[H1_H_TRANSFER_ENCODING] = H1_HF_HOP_BY_HOP | H1_HF_FRAMING,
	[H1_H_UPGRADE]           = H1_HF_HOP_BY_HOP,
	[H1_H_TE]                = H1_HF_HOP_BY_HOP,
	[H1_H_KEEP_ALIVE]        = H1_HF_HOP_BY_HOP,
	[H1_H_PROXY_CONNECTION]  = H1_HF_HOP_BY_HOP,
};

int h1_header_id(const char *s, size_t n)
{
	/* Dispatch on length first: most fields have a length no known name has. */
	switch (n) {
	case 2:
		return EQ_LIT(s, n, "te") ? H1_H_TE : H1_H_OTHER;
	case 4:
		return EQ_LIT(s, n, "host") ? H1_H_HOST : H1_H_OTHER;
	case 6:
		return EQ_LIT(s, n, "expect") ? H1_H_EXPECT : H1_H_OTHER;
	case 7:
		if (EQ_LIT(s, n, "upgrade"))
			return H1_H_UPGRADE;
		return EQ_LIT(s, n, "trailer") ? H1_H_TRAILER : H1_H_OTHER;
	case 10:
		if (EQ_LIT(s, n, "connection"))
			return H1_H_CONNECTION;
		return EQ_LIT(s, n, "keep-alive") ? H1_H_KEEP_ALIVE : H1_H_OTHER;
	case 14:
		return EQ_LIT(s, n, "content-length") ? H1_H_CONTENT_LENGTH : H1_H_OTHER;
	case 16:
		return EQ_LIT(s, n, "proxy-connection") ? H1_H_PROXY_CONNECTION : H1_H_OTHER;
	case 17:
		return EQ_LIT(s, n, "transfer-encoding") ? H1_H_TRANSFER_ENCODING : H1_H_OTHER;
	default:
		return H1_H_OTHER;
	}
}

unsigned h1_header_flags(const char *name, size_t len)
{
	return hdr_flags[h1_header_id(name, len)];
}

bool h1_is_hop_by_hop(const char *name, size_t len)
{
	return (h1_header_flags(name, len) & H1_HF_HOP_BY_HOP) != 0;
}

int h1_header_find(const struct h1_msg *m, const char *buf, const char *name, unsigned from)
{
	size_t n = strlen(name);
	for (unsigned i = from; i < m->nheaders; i++) {
		const struct h1_header *h = &m->headers[i];
		if (h1_name_eq(buf + h->name.off, h->name.len, name, n))
			return (int)i;
	}
	return -1;
}

static const char *const method_names[H1_M_COUNT] = {
	[H1_M_GET] = "GET",         [H1_M_HEAD] = "HEAD",   [H1_M_POST] = "POST",
	[H1_M_PUT] = "PUT",         [H1_M_DELETE] = "DELETE", [H1_M_CONNECT] = "CONNECT",
	[H1_M_OPTIONS] = "OPTIONS", [H1_M_TRACE] = "TRACE", [H1_M_PATCH] = "PATCH",
};

int h1_method_lookup(const char *s, size_t len)
{
#define M(lit, id) (memcmp(s, lit, len) == 0 ? (id) : H1_M_OTHER)
	switch (len) {
	case 3:
		if (s[0] == 'G')
			return M("GET", H1_M_GET);
		return M("PUT", H1_M_PUT);
	case 4:
		if (s[0] == 'H')
			return M("HEAD", H1_M_HEAD);
		return M("POST", H1_M_POST);
	case 5:
		if (s[0] == 'T')
			return M("TRACE", H1_M_TRACE);
		return M("PATCH", H1_M_PATCH);
	case 6:
		return M("DELETE", H1_M_DELETE);
	case 7:
		if (s[0] == 'C')
			return M("CONNECT", H1_M_CONNECT);
		return M("OPTIONS", H1_M_OPTIONS);
	default:
		return H1_M_OTHER;
	}
#undef M
}

const char *h1_method_name(int id)
{
	if (id <= H1_M_OTHER || id >= H1_M_COUNT)
		return NULL;
	return method_names[id];
}

const char *h1_status_reason(int code)
{
	switch (code) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 103: return "Early Hints";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default:  return "";
	}
}

/* ---------------------------------------------------------------- field lines */

/* Why a field name starting at s and stopped at pos (buf[pos] is not a token char) is
 * not followed by ':'. n: fields already parsed. */
static const char *name_error(const char *buf, uint32_t s, uint32_t pos, unsigned n)
{
	char c = buf[pos];
	if (pos == s) {
		if (IS_WS(c))
			return n ? "obsolete line folding (line starts with whitespace)"
			         : "whitespace before the first header field";
		if (c == ':')
			return "empty header field name";
		return "invalid character in header field name";
	}
	if (IS_WS(c))
		return "whitespace between header field name and colon";
	if (c == '\r')
		return "header line without a colon";
	return "invalid character in header field name";
}

/* Parses field lines from buf[pos] up to and including the empty line that ends them,
 * and sets *endp just past that line. Precondition, which makes the unchecked inner loops
 * safe: the section was scanned and ends with an empty line (CRLF) that is at pos or
 * preceded by CRLF, so every loop stops at a CR and the byte after any CR is readable.
 * len is the end of the section (only the eight-byte loops need it). Stores at most max
 * fields in h (h may be NULL: validate only). Returns NULL, or a reason with *status set
 * (400, or 431 for more than max fields). */
static const char *parse_fields(const char *buf, uint32_t pos, uint32_t len,
                                struct h1_header *h, unsigned max, unsigned *np,
                                uint32_t *endp, int *status)
{
	unsigned n = 0;

	*status = 400;
	for (;;) {
		uint32_t s = pos, colon, vs, ve;

		if (buf[pos] == '\r') {
			if (buf[pos + 1] == '\n')
				break;
			return "bare CR in header section";
		}
		while (IS(buf[pos], C_TOKEN))
			pos++;
		if (buf[pos] != ':' || pos == s)
			return name_error(buf, s, pos, n);
		if (n == max) {
			*status = 431;
			return "too many header fields";
		}
		colon = pos++;
		while (IS_WS(buf[pos]))
			pos++;
		vs = pos;
		pos = skip_value8(buf, pos, len);
		while (IS(buf[pos], C_VALUE))
			pos++;
		if (buf[pos] != '\r')
			return "invalid character in header field value";
		if (buf[pos + 1] != '\n')
			return "bare CR in header field value";
		ve = pos;
		while (ve > vs && IS_WS(buf[ve - 1]))
			ve--;
		if (h) {
			h[n].name = span(s, colon - s);
			h[n].value = span(vs, ve - vs);
			h[n].id = (uint16_t)h1_header_id(buf + s, colon - s);
			h[n].flags = hdr_flags[h[n].id];
		}
		n++;
		pos += 2;
	}
	*np = n;
	*endp = pos + 2;
	return NULL;
}

int h1_parse_trailers(const char *buf, size_t len, struct h1_header *out, unsigned max,
                      unsigned *n)
{
	uint32_t end;
	int status;

	*n = 0;
	/* Check the shape parse_fields relies on: the section is "\r\n" or ends with
	 * "\r\n\r\n"; then it must end exactly at len. */
	if (len < 2 || len > H1_MAX_TRAILERS || buf[len - 2] != '\r' || buf[len - 1] != '\n')
		return -1;
	if (len > 2 && (len < 4 || buf[len - 4] != '\r' || buf[len - 3] != '\n'))
		return -1;
	if (parse_fields(buf, 0, (uint32_t)len, out, max, n, &end, &status) != NULL || end != len)
		return -1;
	return 0;
}

/* ---------------------------------------------------------------- head parser */

enum { P_SCAN = 0, P_PARSE, P_ERROR };

void h1_parser_init(struct h1_parser *p, bool is_request, int request_method)
{
	memset(p, 0, sizeof(*p));
	p->is_request = is_request;
	p->req_method = is_request ? H1_M_OTHER : request_method;
	p->state = P_SCAN;
}

/* Records an error. Every response error is the proxy's 502, whatever the cause. */
static int fail(struct h1_parser *p, int status, const char *reason)
{
	p->state = P_ERROR;
	p->status = p->is_request ? status : 502;
	p->reason = reason;
	return H1_ERROR;
}

/* Pass 1: finds the end of the head, checking line endings and limits on the way, from
 * where the previous call stopped. Returns H1_OK once the final empty line is seen. */
static int scan_head(struct h1_parser *p, const char *buf, size_t len)
{
	size_t limit = len < H1_MAX_HEAD ? len : H1_MAX_HEAD;
	size_t i = p->scan;

	while (i < limit) {
		const char *lf = memchr(buf + i, '\n', limit - i);
		size_t at, linelen;

		if (!lf) {
			i = limit;
			break;
		}
		at = (size_t)(lf - buf);
		/* The start-line limit is checked before the CR so that the verdict does not
		 * depend on how the bytes were split across calls (see the check below). */
		if (p->nlines == 0 && at - p->line_start > (size_t)H1_MAX_START_LINE + 1)
			return fail(p, 414, p->is_request ? "request line longer than 8 KiB"
			                                  : "status line longer than 8 KiB");
		if (at == p->line_start || buf[at - 1] != '\r')
			return fail(p, 400, "bare LF line ending (CRLF required)");
		linelen = at - 1 - p->line_start;
		i = at + 1;
		if (linelen == 0) {
			if (p->nlines == 0) {
				/* RFC 9112 §2.2: a server SHOULD ignore empty lines before a
				 * request line. A response has no such allowance. */
				if (!p->is_request)
					return fail(p, 502, "empty line before the status line");
				p->start = p->line_start = (uint32_t)i;
				continue;
			}
			p->scan = (uint32_t)i;
			p->head_len = (uint32_t)i;
			return H1_OK;
		}
		if (p->nlines == 0)
			p->first_lf = (uint32_t)at;
		else if (p->nlines > H1_MAX_HEADERS) {
			return fail(p, 431, "more than 100 header fields");
		}
		p->nlines++;
		p->line_start = (uint32_t)i;
	}
	p->scan = (uint32_t)i;
	/* Limits while the head is incomplete, so that a peer cannot make us buffer more
	 * than necessary before we answer. The last byte may be the line's CR, hence +1. */
	if (p->nlines == 0 && len - p->line_start > (size_t)H1_MAX_START_LINE + 1)
		return fail(p, 414, p->is_request ? "request line longer than 8 KiB"
		                                  : "status line longer than 8 KiB");
	if (len >= H1_MAX_HEAD)
		return fail(p, 431, "header section larger than 60 KiB");
	return H1_AGAIN;
}

/* "HTTP/" DIGIT "." DIGIT in exactly n bytes. Returns the minor version for 1.0/1.1,
 * -1 if malformed, -2 if well-formed but another version. */
static int parse_version(const char *v, size_t n)
{
	if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !IS(v[5], C_DIGIT) || v[6] != '.' ||
	    !IS(v[7], C_DIGIT))
		return -1;
	if (v[5] == '1' && (v[7] == '0' || v[7] == '1'))
		return v[7] - '0';
	return -2;
}

/* uri-host [ ":" port ] (RFC 3986 host: reg-name, IPv4, or an IPv6 literal in brackets).
 * Port, if present, is 1-5 digits <= 65535; need_port requires it. No userinfo, no
 * comma, no whitespace. */
static bool authority_ok(const char *s, size_t n, bool need_port)
{
	size_t i = 0, p0;
	unsigned port = 0;

	if (n == 0)
		return false;
	if (s[0] == '[') {
		for (i = 1; i < n && s[i] != ']'; i++)
			if (!IS(s[i], C_HEX) && s[i] != ':' && s[i] != '.')
				return false;
		if (i == n || i == 1)
			return false;
		i++;
	} else {
		for (; i < n && s[i] != ':'; i++)
			if (!IS(s[i], C_HOST) || s[i] == '[' || s[i] == ']')
				return false;
		if (i == 0)
			return false;
	}
	if (i == n)
		return !need_port;
	if (s[i] != ':')
		return false;
	p0 = ++i;
	for (; i < n; i++) {
		if (!IS(s[i], C_DIGIT) || i - p0 >= 5)
			return false;
		port = port * 10 + (unsigned)(s[i] - '0');
	}
	return i > p0 && port <= 65535;
}

bool h1_authority_ok(const char *s, size_t n, bool need_port)
{
	return authority_ok(s, n, need_port);
}

/* Classifies the request-target (already checked to be VCHARs) into its four forms. */
static int parse_target(struct h1_parser *p, const char *buf, struct h1_msg *m)
{
	const char *t = buf + m->target.off;
	uint32_t n = m->target.len, i, a;

	if (m->method_id == H1_M_CONNECT) {
		if (!authority_ok(t, n, true))
			return fail(p, 400, "CONNECT target is not host:port");
		m->target_form = H1_TF_AUTHORITY;
		m->authority = m->target;
		return 0;
	}
	if (t[0] == '/') {
		m->target_form = H1_TF_ORIGIN;
		m->path = m->target;
		return 0;
	}
	if (n == 1 && t[0] == '*') {
		if (m->method_id != H1_M_OPTIONS)
			return fail(p, 400, "asterisk-form target with a method other than OPTIONS");
		m->target_form = H1_TF_ASTERISK;
		return 0;
	}
	/* absolute-form: scheme "://" authority [ path-abempty ] [ "?" query ] */
	if ((unsigned char)(lower((unsigned char)t[0]) - 'a') >= 26u)
		return fail(p, 400, "request-target is not origin-, absolute-, authority- or asterisk-form");
	for (i = 1; i < n && IS(t[i], C_SCHEME); i++)
		;
	if (n - i < 3 || t[i] != ':' || t[i + 1] != '/' || t[i + 2] != '/')
		return fail(p, 400, "request-target is not origin-, absolute-, authority- or asterisk-form");
	m->scheme = span(m->target.off, i);
	a = i + 3;
	for (i = a; i < n && t[i] != '/' && t[i] != '?'; i++)
		;
	if (!authority_ok(t + a, i - a, false))
		return fail(p, 400, "invalid authority in absolute-form target");
	m->authority = span(m->target.off + a, i - a);
	m->path = span(m->target.off + i, n - i);
	m->target_form = H1_TF_ABSOLUTE;
	return 0;
}

/* method SP request-target SP HTTP-version, in buf[p->start .. p->first_lf - 1). */
static int parse_request_line(struct h1_parser *p, const char *buf, struct h1_msg *m)
{
	uint32_t s = p->start, e = p->first_lf - 1, i = s, t;
	int v;

	while (IS(buf[i], C_TOKEN))
		i++;
	if (i == s)
		return fail(p, 400, "request line does not start with a method token");
	if (buf[i] != ' ')
		return fail(p, 400, "invalid character in method");
	m->method = span(s, i - s);
	m->method_id = h1_method_lookup(buf + s, i - s);
	t = ++i;
	i = skip_target8(buf, i, e);
	while (IS(buf[i], C_TARGET))
		i++;
	if (i == t)
		return fail(p, 400, buf[i] == ' ' ? "more than one space after the method"
		                                  : "empty request-target");
	if (buf[i] != ' ')
		return fail(p, 400, i == e ? "request line without an HTTP version"
		                           : "invalid character in request-target");
	m->target = span(t, i - t);
	i++;
	v = parse_version(buf + i, e - i);
	if (v == -1)
		return fail(p, 400, "malformed HTTP version in request line");
	if (v == -2)
		return fail(p, 505, "HTTP version other than 1.0 and 1.1");
	m->version_minor = v;
	return parse_target(p, buf, m);
}

/* HTTP-version SP 3DIGIT [SP reason-phrase], in buf[p->start .. p->first_lf - 1). */
static int parse_status_line(struct h1_parser *p, const char *buf, struct h1_msg *m)
{
	uint32_t s = p->start, e = p->first_lf - 1, i;
	const char *c = buf + s;
	int v;

	if (e - s < 12 || c[8] != ' ')
		return fail(p, 502, "malformed status line");
	v = parse_version(c, 8);
	if (v == -1)
		return fail(p, 502, "malformed HTTP version in status line");
	if (v == -2)
		return fail(p, 502, "HTTP version other than 1.0 and 1.1 in status line");
	m->version_minor = v;
	if (!IS(c[9], C_DIGIT) || !IS(c[10], C_DIGIT) || !IS(c[11], C_DIGIT) ||
	    (e - s > 12 && c[12] != ' '))
		return fail(p, 502, "status code is not 3 digits");
	m->status = (c[9] - '0') * 100 + (c[10] - '0') * 10 + (c[11] - '0');
	if (m->status < 100 || m->status > 599)
		return fail(p, 502, "status code outside 100..599");
	i = e - s > 12 ? s + 13 : e;
	m->reason = span(i, e - i);
	while (IS(buf[i], C_VALUE))
		i++;
	if (i != e)
		return fail(p, 502, "invalid character in reason phrase");
	return 0;
}

/* Next non-empty element of a comma-separated list s[0..n) (RFC 9110 §5.6.1), from *pos.
 * Returns false at the end. The element is trimmed of OWS. */
static bool list_next(const char *s, uint32_t n, uint32_t *pos, uint32_t *eoff, uint32_t *elen)
{
	uint32_t i = *pos, b, e;

	for (;;) {
		while (i < n && (IS_WS(s[i]) || s[i] == ','))
			i++;
		if (i == n) {
			*pos = i;
			return false;
		}
		b = i;
		while (i < n && s[i] != ',')
			i++;
		e = i;
		while (e > b && IS_WS(s[e - 1]))
			e--;
		*pos = i;
		*eoff = b;
		*elen = e - b;
		return true;
	}
}

/* Content-Length: 1*DIGIT, or a list of identical ones; no empty elements. */
static bool parse_content_length(const char *s, uint32_t n, uint64_t *out)
{
	uint64_t first = 0;
	uint32_t i = 0;
	bool have = false;

	for (;;) {
		uint64_t v = 0;
		uint32_t d0 = i;

		while (i < n && IS(s[i], C_DIGIT)) {
			if (i - d0 == 18)
				return false;
			v = v * 10 + (uint64_t)(s[i] - '0');
			i++;
		}
		if (i == d0 || (have && v != first))
			return false;
		first = v;
		have = true;
		while (i < n && IS_WS(s[i]))
			i++;
		if (i == n)
			break;
		if (s[i] != ',')
			return false;
		i++;
		while (i < n && IS_WS(s[i]))
			i++;
	}
	*out = first;
	return true;
}

/* What the semantic pass collects before deciding framing and persistence. */
struct head_facts {
	unsigned ncl, nte, nhost, nopts;
	int te_idx;
	bool conn_close, conn_keep_alive, conn_upgrade, expect_100;
};

/* Connection options: set the close/keep-alive/upgrade facts and mark every field the
 * options name with H1_HF_CONN_LISTED (RFC 9110 §7.6.1). */
static int connection_options(struct h1_parser *p, const char *buf, struct h1_msg *m,
                              const struct h1_header *h, struct head_facts *f)
{
	const char *v = buf + h->value.off;
	uint32_t pos = 0, eo, el;

	while (list_next(v, h->value.len, &pos, &eo, &el)) {
		const char *o = v + eo;

		for (uint32_t k = 0; k < el; k++)
			if (!IS(o[k], C_TOKEN))
				return fail(p, 400, "Connection option is not a token");
		if (++f->nopts > H1_MAX_CONN_OPTIONS)
			return fail(p, 400, "more than 64 Connection options");
		if (EQ_LIT(o, el, "close"))
			f->conn_close = true;
		else if (EQ_LIT(o, el, "keep-alive"))
			f->conn_keep_alive = true;
		else if (EQ_LIT(o, el, "upgrade"))
			f->conn_upgrade = true;
		for (unsigned j = 0; j < m->nheaders; j++) {
			struct h1_header *x = &m->headers[j];
			if (x->name.len == el && h1_name_eq(buf + x->name.off, el, o, el))
				x->flags |= H1_HF_CONN_LISTED;
		}
	}
	return 0;
}

/* True if some element of the list value equals lit (case-insensitive). */
static bool list_has(const char *buf, struct h1_span val, const char *lit, size_t litlen)
{
	uint32_t pos = 0, eo, el;

	while (list_next(buf + val.off, val.len, &pos, &eo, &el))
		if (eq_lit(buf + val.off + eo, el, lit, litlen))
			return true;
	return false;
}

/* Pass over the (already split) fields: framing, Host, Connection, Expect, TE. */
static int collect_facts(struct h1_parser *p, const char *buf, struct h1_msg *m,
                         struct head_facts *f)
{
	memset(f, 0, sizeof(*f));
	f->te_idx = -1;
	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *h = &m->headers[i];
		const char *v = buf + h->value.off;
		uint64_t cl;

		switch (h->id) {
		case H1_H_CONTENT_LENGTH:
			if (!parse_content_length(v, h->value.len, &cl))
				return fail(p, 400, "invalid Content-Length");
			if (f->ncl++ && cl != m->content_length)
				return fail(p, 400, "conflicting Content-Length values");
			m->content_length = cl;
			break;
		case H1_H_TRANSFER_ENCODING:
			f->nte++;
			f->te_idx = (int)i;
			break;
		case H1_H_HOST:
			if (f->nhost++ == 0)
				m->host_idx = (int)i;
			break;
		case H1_H_CONNECTION:
			if (connection_options(p, buf, m, h, f) < 0)
				return -1;
			break;
		case H1_H_EXPECT:
			if (list_has(buf, h->value, "100-continue", 12))
				f->expect_100 = true;
			break;
		case H1_H_UPGRADE:
			if (m->upgrade_idx < 0)
				m->upgrade_idx = (int)i;
			break;
		case H1_H_TE:
			if (list_has(buf, h->value, "trailers", 8))
				m->has_te_trailers = true;
			break;
		default:
			break;
		}
	}
	return 0;
}

/* Shared framing checks: CL+TE, TE rules. Returns 0 or fails. */
static int check_framing(struct h1_parser *p, const char *buf, struct h1_msg *m,
                         const struct head_facts *f)
{
	const struct h1_header *te;

	if (f->nte == 0)
		return 0;
	if (f->ncl)
		return fail(p, 400, "both Content-Length and Transfer-Encoding");
	if (m->version_minor == 0)
		return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
	te = &m->headers[f->te_idx];
	if (f->nte > 1 || !EQ_LIT(buf + te->value.off, te->value.len, "chunked"))
		return fail(p, 400, "Transfer-Encoding other than exactly \"chunked\"");
	return 0;
}

static int finish_request(struct h1_parser *p, const char *buf, struct h1_msg *m,
                          const struct head_facts *f)
{
	if (check_framing(p, buf, m, f) < 0)
		return -1;
	if (f->nhost > 1)
		return fail(p, 400, "more than one Host header field");
	if (f->nhost == 1) {
		const struct h1_header *h = &m->headers[m->host_idx];
		if (h->value.len == 0)
			return fail(p, 400, "empty Host header field");
		if (!authority_ok(buf + h->value.off, h->value.len, false))
			return fail(p, 400, "invalid Host header field");
	} else if (m->version_minor == 1) {
		return fail(p, 400, "HTTP/1.1 request without Host");
	}
	if (f->nte)
		m->body = H1_BODY_CHUNKED;
	else if (f->ncl)
		m->body = H1_BODY_LENGTH;
	if (m->method_id == H1_M_CONNECT && (f->nte || m->content_length))
		return fail(p, 400, "CONNECT request with a body");
	if (m->version_minor == 1) {
		m->keep_alive = !f->conn_close;
		m->expect_continue = f->expect_100;  /* RFC 9110 §10.1.1: ignored in 1.0 */
		m->upgrade = f->conn_upgrade && m->upgrade_idx >= 0;
	} else {
		m->keep_alive = f->conn_keep_alive && !f->conn_close;
	}
	return 0;
}

static int finish_response(struct h1_parser *p, const char *buf, struct h1_msg *m,
                           const struct head_facts *f)
{
	int st = m->status;

	if (check_framing(p, buf, m, f) < 0)
		return -1;
	m->method_id = p->req_method;
	if (m->version_minor == 1)
		m->keep_alive = !f->conn_close;
	else
		m->keep_alive = f->conn_keep_alive && !f->conn_close;
	/* RFC 9112 §6.3: the order of these rules matters. */
	if (p->req_method == H1_M_HEAD || st < 200 || st == 204 || st == 304 ||
	    (p->req_method == H1_M_CONNECT && st < 300))
		m->body = H1_BODY_NONE;
	else if (f->nte)
		m->body = H1_BODY_CHUNKED;
	else if (f->ncl)
		m->body = H1_BODY_LENGTH;
	else {
		m->body = H1_BODY_UNTIL_CLOSE;
		m->keep_alive = false;
	}
	m->upgrade = st == 101;
	return 0;
}

static void msg_reset(struct h1_msg *m)
{
	static const struct h1_span none;

	m->method = m->target = m->scheme = m->authority = m->path = m->reason = none;
	m->method_id = H1_M_OTHER;
	m->target_form = H1_TF_ORIGIN;
	m->status = 0;
	m->version_minor = 1;
	m->nheaders = 0;
	m->body = H1_BODY_NONE;
	m->content_length = 0;
	m->keep_alive = m->expect_continue = m->upgrade = m->has_te_trailers = false;
	m->host_idx = m->upgrade_idx = -1;
	m->head_len = 0;
}

/* Pass 2: the head is complete in buf[0 .. p->head_len). */
static int parse_head(struct h1_parser *p, const char *buf, struct h1_msg *m)
{
	struct head_facts f;
	const char *why;
	uint32_t end;
	int status;

	msg_reset(m);
	m->head_len = p->head_len;
	if ((p->is_request ? parse_request_line(p, buf, m) : parse_status_line(p, buf, m)) < 0)
		return H1_ERROR;
	why = parse_fields(buf, p->first_lf + 1, p->head_len, m->headers, H1_MAX_HEADERS,
	                   &m->nheaders, &end, &status);
	if (why)
		return fail(p, status, why);
	if (collect_facts(p, buf, m, &f) < 0)
		return H1_ERROR;
	if ((p->is_request ? finish_request(p, buf, m, &f) : finish_response(p, buf, m, &f)) < 0)
		return H1_ERROR;
	return H1_OK;
}

int h1_parse(struct h1_parser *p, const char *buf, size_t len, struct h1_msg *m)
{
	if (p->state == P_ERROR)
		return H1_ERROR;
	if (p->state == P_SCAN) {
		int rc;

		if (len < p->scan)
			return fail(p, 400, "buffer shorter than on the previous call");
		rc = scan_head(p, buf, len);
		if (rc != H1_OK)
			return rc;
		p->state = P_PARSE;
	}
	return parse_head(p, buf, m);
}

/* ---------------------------------------------------------------- chunked decoder */

enum {
	K_SIZE0 = 0,   /* first hex digit of a chunk size */
	K_SIZE,        /* more digits, ';', BWS or CR */
	K_EXT_WS,      /* BWS before ';' (CR not allowed: "5 \r\n" is not a chunk line) */
	K_EXT_NAME0,   /* after ';': BWS, then the first char of the name */
	K_EXT_NAME,    /* name chars, then '=', ';', BWS or CR */
	K_EXT_AFTER,   /* BWS after a name: '=' or ';' */
	K_EXT_VAL0,    /* after '=': BWS, then token or '"' */
	K_EXT_TOKEN,   /* token value */
	K_EXT_QUOTED,  /* inside a quoted-string */
	K_EXT_QESC,    /* after a backslash in a quoted-string */
	K_EXT_QEND,    /* after the closing quote */
	K_SIZE_LF,     /* CR seen, LF expected */
	K_DATA,        /* size bytes of payload left */
	K_DATA_CR,
	K_DATA_LF,
	K_TRAILERS,    /* scanning the trailer section */
	K_DONE,
	K_ERROR,
};

void h1_chunked_init(struct h1_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = K_SIZE0;
}

static int chunk_fail(struct h1_chunked *c, const char *reason)
{
	c->state = K_ERROR;
	c->reason = reason;
	return H1_ERROR;
}

/* Scans the trailer section at s[0 .. n) from c->tscan. Returns H1_OK with *tlen = its
 * length (final CRLF included), H1_AGAIN or H1_ERROR. Same line rules as a head. */
static int scan_trailers(struct h1_chunked *c, const char *s, size_t n, size_t *tlen)
{
	size_t limit = n < H1_MAX_TRAILERS ? n : H1_MAX_TRAILERS;
	size_t i = c->tscan;

	while (i < limit) {
		const char *lf = memchr(s + i, '\n', limit - i);
		size_t at;

		if (!lf) {
			i = limit;
			break;
		}
		at = (size_t)(lf - s);
		if (at == c->tline || s[at - 1] != '\r')
			return chunk_fail(c, "bare LF in trailer section");
		i = at + 1;
		if (at - 1 == c->tline) {
			*tlen = i;
			return H1_OK;
		}
		if (++c->tlines > H1_MAX_HEADERS)
			return chunk_fail(c, "more than 100 trailer fields");
		c->tline = (uint32_t)i;
	}
	c->tscan = (uint32_t)i;
	if (n >= H1_MAX_TRAILERS)
		return chunk_fail(c, "trailer section larger than 16 KiB");
	return H1_AGAIN;
}

/* One byte of a chunk-size line (size, extensions, CR LF). Returns 0 or H1_ERROR. */
static int chunk_line_byte(struct h1_chunked *c, unsigned char ch)
{
	/* States before K_SIZE_LF are the size line proper; its CR is not counted. */
	if (c->state < K_SIZE_LF && ch != '\r' && ++c->line_len > H1_MAX_CHUNK_LINE)
		return chunk_fail(c, "chunk size line longer than 4 KiB (extensions)");
	switch (c->state) {
	case K_SIZE0:
	case K_SIZE:
		if (IS(ch, C_HEX)) {
			if (++c->ndigits > H1_MAX_CHUNK_DIGITS)
				return chunk_fail(c, "chunk size longer than 16 hex digits");
			c->size = (c->size << 4) |
			          (uint64_t)(IS(ch, C_DIGIT) ? ch - '0' : lower(ch) - 'a' + 10);
			c->state = K_SIZE;
			return 0;
		}
		if (c->state == K_SIZE0)
			return chunk_fail(c, "chunk size is not a hex number");
		if (ch == '\r')
			c->state = K_SIZE_LF;
		else if (ch == ';')
			c->state = K_EXT_NAME0;
		else if (IS_WS(ch))
			c->state = K_EXT_WS;
		else
			return chunk_fail(c, "invalid character after chunk size");
		return 0;
	case K_EXT_WS:
		if (ch == ';')
			c->state = K_EXT_NAME0;
		else if (!IS_WS(ch))
			return chunk_fail(c, "invalid chunk extension (expected ';')");
		return 0;
	case K_EXT_NAME0:
		if (IS(ch, C_TOKEN))
			c->state = K_EXT_NAME;
		else if (!IS_WS(ch))
			return chunk_fail(c, "invalid chunk extension name");
		return 0;
	case K_EXT_NAME:
		if (IS(ch, C_TOKEN))
			return 0;
		if (ch == '=')
			c->state = K_EXT_VAL0;
		else if (ch == ';')
			c->state = K_EXT_NAME0;
		else if (ch == '\r')
			c->state = K_SIZE_LF;
		else if (IS_WS(ch))
			c->state = K_EXT_AFTER;
		else
			return chunk_fail(c, "invalid character in chunk extension name");
		return 0;
	case K_EXT_AFTER:
		if (ch == '=')
			c->state = K_EXT_VAL0;
		else if (ch == ';')
			c->state = K_EXT_NAME0;
		else if (!IS_WS(ch))
			return chunk_fail(c, "invalid chunk extension");
		return 0;
	case K_EXT_VAL0:
		if (ch == '"')
			c->state = K_EXT_QUOTED;
		else if (IS(ch, C_TOKEN))
			c->state = K_EXT_TOKEN;
		else if (!IS_WS(ch))
			return chunk_fail(c, "invalid chunk extension value");
		return 0;
	case K_EXT_TOKEN:
	case K_EXT_QEND:
		if (c->state == K_EXT_TOKEN && IS(ch, C_TOKEN))
			return 0;
		if (ch == ';')
			c->state = K_EXT_NAME0;
		else if (ch == '\r')
			c->state = K_SIZE_LF;
		else if (IS_WS(ch))
			c->state = K_EXT_WS;
		else
			return chunk_fail(c, "invalid character in chunk extension value");
		return 0;
	case K_EXT_QUOTED:
		if (ch == '"')
			c->state = K_EXT_QEND;
		else if (ch == '\\')
			c->state = K_EXT_QESC;
		else if (!IS(ch, C_QDTEXT))
			return chunk_fail(c, "invalid character in chunk extension quoted-string");
		return 0;
	case K_EXT_QESC:
		if (!IS(ch, C_VALUE))
			return chunk_fail(c, "invalid quoted-pair in chunk extension");
		c->state = K_EXT_QUOTED;
		return 0;
	case K_SIZE_LF:
		if (ch != '\n')
			return chunk_fail(c, "chunk size line not ended by CRLF");
		if (c->size == 0) {
			c->state = K_TRAILERS;
			c->tscan = c->tline = c->tlines = 0;
		} else {
			c->state = K_DATA;
		}
		return 0;
	case K_DATA_CR:
		if (ch != '\r')
			return chunk_fail(c, "chunk data not followed by CRLF");
		c->state = K_DATA_LF;
		return 0;
	case K_DATA_LF:
		if (ch != '\n')
			return chunk_fail(c, "chunk data not followed by CRLF");
		c->state = K_SIZE0;
		c->size = 0;
		c->ndigits = 0;
		c->line_len = 0;
		return 0;
	default:
		return chunk_fail(c, "chunked decoder used after an error");
	}
}

int h1_chunked_feed(struct h1_chunked *c, const char *in, size_t len, size_t *consumed,
                    struct h1_span *data, struct h1_span *trailers)
{
	size_t i = 0;
	int rc = H1_AGAIN;

	*data = span(0, 0);
	if (trailers)
		*trailers = span(0, 0);
	if (c->state == K_DONE) {
		*consumed = 0;
		return H1_OK;
	}
	if (c->state == K_ERROR) {
		*consumed = 0;
		return H1_ERROR;
	}
	/* Offsets are 32-bit: look at no more than that per call. */
	if (len > UINT32_MAX)
		len = UINT32_MAX;
	while (i < len) {
		if (c->state == K_DATA) {
			size_t n = len - i;
			if (n > c->size)
				n = (size_t)c->size;
			*data = span((uint32_t)i, (uint32_t)n);
			i += n;
			c->size -= n;
			c->payload += n;
			if (c->size == 0)
				c->state = K_DATA_CR;
			rc = H1_DATA;
			break;
		}
		if (c->state == K_TRAILERS) {
			size_t tlen = 0;

			rc = scan_trailers(c, in + i, len - i, &tlen);
			if (rc == H1_OK) {
				unsigned nf;
				uint32_t end;
				int status;

				/* Field-line syntax, as for a head (validate only). */
				const char *why = parse_fields(in + i, 0, (uint32_t)tlen, NULL,
				                               H1_MAX_HEADERS, &nf, &end, &status);
				if (why) {
					rc = chunk_fail(c, why);
					break;
				}
				if (trailers)
					*trailers = span((uint32_t)i, (uint32_t)tlen);
				i += tlen;
				c->state = K_DONE;
			}
			break;  /* H1_AGAIN: the section stays unconsumed until complete */
		}
		if (chunk_line_byte(c, (unsigned char)in[i]) < 0) {
			rc = H1_ERROR;
			break;
		}
		i++;
	}
	*consumed = i;
	return rc;
}
