/* Shared by the h1 fuzz harnesses: invariant checks and result comparison.
 * Every check aborts (so libFuzzer records a crash) rather than returning. */
#ifndef EGRESS_TESTS_FUZZ_H1_FUZZ_UTIL_H
#define EGRESS_TESTS_FUZZ_H1_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

#define FZ_CHECK(cond)                                                              \
	do {                                                                        \
		if (!(cond)) {                                                      \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
			        #cond);                                             \
			abort();                                                    \
		}                                                                   \
	} while (0)

/* A small deterministic generator seeded from the input, for split points. */
static inline uint64_t fz_seed(const uint8_t *d, size_t n)
{
	uint64_t h = 1469598103934665603ull ^ n;
	for (size_t i = 0; i < n && i < 64; i++)
		h = (h ^ d[i]) * 1099511628211ull;
	return h | 1;
}

static inline uint64_t fz_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static inline void fz_span_in(struct h1_span s, uint32_t limit)
{
	FZ_CHECK(s.off <= limit && s.len <= limit - s.off);
}

/* Invariants of a head parsed OK from buf[0 .. len). */
static inline void fz_check_msg(const char *buf, size_t len, const struct h1_msg *m, bool req)
{
	FZ_CHECK(m->head_len >= 4 && m->head_len <= len && m->head_len <= H1_MAX_HEAD);
	FZ_CHECK(memcmp(buf + m->head_len - 4, "\r\n\r\n", 4) == 0 ||
	         (m->head_len == 4 && memcmp(buf, "\r\n\r\n", 4) == 0));
	FZ_CHECK(m->nheaders <= H1_MAX_HEADERS);
	FZ_CHECK(m->version_minor == 0 || m->version_minor == 1);
	fz_span_in(m->method, m->head_len);
	fz_span_in(m->target, m->head_len);
	fz_span_in(m->scheme, m->head_len);
	fz_span_in(m->authority, m->head_len);
	fz_span_in(m->path, m->head_len);
	fz_span_in(m->reason, m->head_len);
	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *h = &m->headers[i];
		fz_span_in(h->name, m->head_len);
		fz_span_in(h->value, m->head_len);
		FZ_CHECK(h->name.len > 0);
		FZ_CHECK(buf[h->name.off + h->name.len] == ':');
		for (uint32_t k = 0; k < h->value.len; k++) {
			unsigned char c = (unsigned char)buf[h->value.off + k];
			FZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
		}
		if (h->value.len) {
			FZ_CHECK(buf[h->value.off] != ' ' && buf[h->value.off] != '\t');
			FZ_CHECK(buf[h->value.off + h->value.len - 1] != ' ' &&
			         buf[h->value.off + h->value.len - 1] != '\t');
		}
		FZ_CHECK(h->id == h1_header_id(buf + h->name.off, h->name.len));
	}
	FZ_CHECK(m->host_idx >= -1 && m->host_idx < (int)m->nheaders);
	FZ_CHECK(m->upgrade_idx >= -1 && m->upgrade_idx < (int)m->nheaders);
	if (req) {
		FZ_CHECK(m->method.len > 0 && m->target.len > 0);
		FZ_CHECK(m->body != H1_BODY_UNTIL_CLOSE);
		FZ_CHECK(m->version_minor == 0 || m->host_idx >= 0);
		if (m->method_id == H1_M_CONNECT)
			FZ_CHECK(m->target_form == H1_TF_AUTHORITY && m->body != H1_BODY_CHUNKED);
		for (uint32_t k = 0; k < m->target.len; k++) {
			unsigned char c = (unsigned char)buf[m->target.off + k];
			FZ_CHECK(c > 0x20 && c < 0x7f);
		}
	} else {
		FZ_CHECK(m->status >= 100 && m->status <= 599);
		if (m->body == H1_BODY_UNTIL_CLOSE)
			FZ_CHECK(!m->keep_alive);
	}
	if (m->body == H1_BODY_CHUNKED)
		FZ_CHECK(m->version_minor == 1);
}

static inline bool fz_span_eq(struct h1_span a, struct h1_span b)
{
	return a.off == b.off && a.len == b.len;
}

static inline void fz_check_same_msg(const struct h1_msg *a, const struct h1_msg *b)
{
	FZ_CHECK(fz_span_eq(a->method, b->method) && fz_span_eq(a->target, b->target));
	FZ_CHECK(fz_span_eq(a->scheme, b->scheme) && fz_span_eq(a->authority, b->authority));
	FZ_CHECK(fz_span_eq(a->path, b->path) && fz_span_eq(a->reason, b->reason));
	FZ_CHECK(a->method_id == b->method_id && a->target_form == b->target_form);
	FZ_CHECK(a->status == b->status && a->version_minor == b->version_minor);
	FZ_CHECK(a->nheaders == b->nheaders && a->body == b->body);
	FZ_CHECK(a->content_length == b->content_length && a->keep_alive == b->keep_alive);
	FZ_CHECK(a->expect_continue == b->expect_continue && a->upgrade == b->upgrade);
	FZ_CHECK(a->has_te_trailers == b->has_te_trailers && a->host_idx == b->host_idx);
	FZ_CHECK(a->upgrade_idx == b->upgrade_idx && a->head_len == b->head_len);
	for (unsigned i = 0; i < a->nheaders; i++) {
		FZ_CHECK(fz_span_eq(a->headers[i].name, b->headers[i].name));
		FZ_CHECK(fz_span_eq(a->headers[i].value, b->headers[i].value));
		FZ_CHECK(a->headers[i].id == b->headers[i].id);
		FZ_CHECK(a->headers[i].flags == b->headers[i].flags);
	}
}

/* Parses data[0..size) in one call, then again in pieces, each call seeing an exact-size
 * heap copy of the prefix (so ASan catches any read past len), and checks both agree.
 * Returns the one-shot rc; *m holds the one-shot message. */
static inline int fz_parse_both_ways(const uint8_t *data, size_t size, bool req, int method,
                                     struct h1_msg *m, struct h1_msg *m2)
{
	struct h1_parser p, p2;
	char *buf = malloc(size ? size : 1);
	uint64_t rs = fz_seed(data, size);
	size_t k = 0;
	int rc, rc2 = H1_AGAIN;

	memcpy(buf, data, size);
	h1_parser_init(&p, req, method);
	rc = h1_parse(&p, buf, size, m);
	FZ_CHECK(rc == H1_OK || rc == H1_AGAIN || rc == H1_ERROR);
	if (rc == H1_OK)
		fz_check_msg(buf, size, m, req);
	if (rc == H1_AGAIN)
		FZ_CHECK(size < H1_MAX_HEAD);
	if (rc == H1_ERROR) {
		FZ_CHECK(p.reason != NULL);
		if (req)
			FZ_CHECK(p.status == 400 || p.status == 414 || p.status == 431 ||
			         p.status == 505);
		else
			FZ_CHECK(p.status == 502);
	}
	free(buf);

	h1_parser_init(&p2, req, method);
	while (rc2 == H1_AGAIN && k < size) {
		char *piece;
		k += 1 + fz_next(&rs) % (size / 8 + 2);
		if (k > size)
			k = size;
		piece = malloc(k);
		memcpy(piece, data, k);
		rc2 = h1_parse(&p2, piece, k, m2);
		if (rc2 == H1_OK)
			fz_check_msg(piece, k, m2, req);
		free(piece);
	}
	if (size == 0) {
		rc2 = h1_parse(&p2, (const char *)data, 0, m2);
	}
	FZ_CHECK(rc2 == rc);
	if (rc == H1_OK)
		fz_check_same_msg(m, m2);
	if (rc == H1_ERROR) {
		FZ_CHECK(p2.status == p.status);
		FZ_CHECK(strcmp(p2.reason, p.reason) == 0);
	}
	return rc;
}

/* Decodes a chunked body at in[0..len) in one call sequence; returns the final rc and
 * sets *consumed. Checks span invariants. */
static inline int fz_chunked_all(const char *in, size_t len, size_t *consumed, uint64_t *payload,
                                 uint64_t *hash)
{
	struct h1_chunked c;
	size_t off = 0;
	int rc;

	h1_chunked_init(&c);
	*payload = 0;
	for (;;) {
		struct h1_span d, t;
		size_t used;

		rc = h1_chunked_feed(&c, in + off, len - off, &used, &d, &t);
		FZ_CHECK(used <= len - off);
		if (rc == H1_DATA) {
			FZ_CHECK(d.len > 0 && d.off + d.len == used);
			for (uint32_t i = 0; i < d.len; i++)
				*hash = (*hash ^ (unsigned char)in[off + d.off + i]) * 1099511628211ull;
			*payload += d.len;
		} else {
			FZ_CHECK(d.len == 0);
		}
		if (rc == H1_OK) {
			struct h1_header f[H1_MAX_HEADERS];
			unsigned nf;
			FZ_CHECK(t.len >= 2 && t.off + t.len == used);
			FZ_CHECK(h1_parse_trailers(in + off + t.off, t.len, f, H1_MAX_HEADERS, &nf) == 0);
			for (unsigned i = 0; i < nf; i++) {
				fz_span_in(f[i].name, t.len);
				fz_span_in(f[i].value, t.len);
				*hash = (*hash ^ f[i].name.len ^ ((uint64_t)f[i].value.len << 20)) *
				        1099511628211ull;
			}
		}
		if (rc == H1_ERROR)
			FZ_CHECK(c.reason != NULL);
		off += used;
		if (rc != H1_DATA)
			break;
	}
	FZ_CHECK(c.payload == *payload);
	*consumed = off;
	return rc;
}

#endif
