/* h2_req: an HTTP/2 request head made into the request path's parsed head, decoded once
 * (see h2_req.h for what is checked where).
 *
 * One pass over the fields sizes the storage (h2_request_msg_size), one copies them
 * (h2_request_msg): each string is copied exactly once, into the caller's buffer, and
 * the spans are set as it goes. No allocation. The cookie crumbs are joined while they
 * are copied: the first crumb's field gets every crumb's value, the later crumbs are
 * skipped (the O(n^2) walk over n fields happens only for requests that have cookies,
 * and n is at most H1_MAX_HEADERS by then). */
#include "http/h2_req.h"

#include <string.h>

static bool name_is(const struct h2_str n, const char *lit, size_t len)
{
	return n.len == len && memcmp(n.p, lit, len) == 0;   /* h2 names are lower-case */
}

#define IS_COOKIE(n)  name_is((n), "cookie", 6)
#define IS_CL(n)      name_is((n), "content-length", 14)

size_t h2_request_msg_size(const struct h2_request *rq)
{
	size_t n = rq->method.len + rq->path.len + 4 + rq->authority.len;

	for (size_t i = 0; i < rq->nheaders; i++)
		n += rq->headers[i].name.len + rq->headers[i].value.len + 2;   /* "; " */
	return n;
}

/* Appends s at *at; returns its span. */
static struct h1_span put(char *buf, uint32_t *at, const char *s, size_t n)
{
	struct h1_span sp = { *at, (uint32_t)n };

	if (n)
		memcpy(buf + *at, s, n);
	*at += (uint32_t)n;
	return sp;
}

/* The request-target: bytes 0x21-0x7e only, as h1_parse allows in a request line. */
static bool target_chars_ok(struct h2_str t)
{
	for (size_t i = 0; i < t.len; i++) {
		unsigned char c = (unsigned char)t.p[i];

		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	return true;
}

/* Method, target and its form into m. Returns 0 or the status (400/414). */
static int start_line(const struct h2_request *rq, char *buf, uint32_t *at,
                      struct h1_msg *m, const char **reason)
{
	bool connect;
	struct h2_str t;

	m->method_id = h1_method_lookup(rq->method.p, rq->method.len);
	connect = m->method_id == H1_M_CONNECT;
	t = connect ? rq->authority : rq->path;
	if (rq->method.len + 1 + t.len + 9 > H1_MAX_START_LINE) {
		*reason = "request line too long";
		return 414;
	}
	if (!connect && (t.len == 0 || !target_chars_ok(t))) {
		*reason = "invalid :path";
		return 400;
	}
	m->method = put(buf, at, rq->method.p, rq->method.len);
	if (connect) {
		if (!h1_authority_ok(t.p, t.len, true)) {
			*reason = "CONNECT :authority is not host:port";
			return 400;
		}
		m->target_form = H1_TF_AUTHORITY;
		return 0;   /* the target is the authority, set with Host */
	}
	m->target = put(buf, at, t.p, t.len);
	if (t.p[0] == '/') {
		m->target_form = H1_TF_ORIGIN;
		m->path = m->target;
	} else if (t.len == 1 && t.p[0] == '*' && m->method_id == H1_M_OPTIONS) {
		m->target_form = H1_TF_ASTERISK;
	} else {
		*reason = t.p[0] == '*' ? "asterisk-form :path with a method other than OPTIONS"
		                        : ":path is not origin-form";
		return 400;
	}
	return 0;
}

/* The first cookie crumb's field with every crumb's value, "; "-joined. */
static void put_cookie(const struct h2_request *rq, size_t first, char *buf, uint32_t *at,
                       struct h1_header *h)
{
	const struct h2_header *f = rq->headers;
	uint32_t v0;

	h->name = put(buf, at, f[first].name.p, f[first].name.len);
	v0 = *at;
	put(buf, at, f[first].value.p, f[first].value.len);
	for (size_t k = first + 1; k < rq->nheaders; k++) {
		if (!IS_COOKIE(f[k].name))
			continue;
		put(buf, at, "; ", 2);
		put(buf, at, f[k].value.p, f[k].value.len);
	}
	h->value = (struct h1_span){ v0, *at - v0 };
}

int h2_request_msg(const struct h2_request *rq, char *buf, struct h1_msg *m,
                   const char **reason)
{
	uint32_t at = 0;
	bool cookie_done = false;
	int rc;

	/* Everything but the headers array (filled up to nheaders below). */
	memset(m, 0, offsetof(struct h1_msg, headers));
	memset(&m->nheaders, 0, sizeof(*m) - offsetof(struct h1_msg, nheaders));
	m->version_minor = 1;
	m->upgrade_idx = -1;
	m->host_idx = -1;
	rc = start_line(rq, buf, &at, m, reason);
	if (rc)
		return rc;
	if (rq->authority.len == 0 || !h1_authority_ok(rq->authority.p, rq->authority.len,
	                                               false)) {
		*reason = rq->authority.len ? "invalid :authority" : "no :authority or Host";
		return 400;
	}
	m->headers[0].name = put(buf, &at, "host", 4);
	m->headers[0].value = put(buf, &at, rq->authority.p, rq->authority.len);
	m->headers[0].id = H1_H_HOST;
	m->headers[0].flags = 0;
	m->host_idx = 0;
	m->nheaders = 1;
	if (m->target_form == H1_TF_AUTHORITY)
		m->target = m->authority = m->headers[0].value;
	for (size_t i = 0; i < rq->nheaders; i++) {
		const struct h2_header *f = &rq->headers[i];
		struct h1_header *h;

		if (IS_CL(f->name) || (IS_COOKIE(f->name) && cookie_done))
			continue;
		if (m->nheaders == H1_MAX_HEADERS) {
			*reason = "too many header fields";
			return 431;
		}
		h = &m->headers[m->nheaders++];
		if (IS_COOKIE(f->name)) {
			cookie_done = true;
			put_cookie(rq, i, buf, &at, h);
		} else {
			h->name = put(buf, &at, f->name.p, f->name.len);
			h->value = put(buf, &at, f->value.p, f->value.len);
		}
		h->id = (uint16_t)h1_header_id(f->name.p, f->name.len);
		h->flags = (uint16_t)h1_header_flags(f->name.p, f->name.len);
	}
	m->has_te_trailers = rq->te_trailers;
	if (!rq->end_stream) {
		if (rq->content_length >= 0) {
			m->body = H1_BODY_LENGTH;
			m->content_length = (uint64_t)rq->content_length;
		} else {
			m->body = H1_BODY_CHUNKED;
		}
	}
	m->head_len = at;
	return 0;
}
