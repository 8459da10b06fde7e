/* h2head: decoded HTTP/2 header blocks kept as records, read back as struct h1_msg (see
 * h2head.h for the design).
 *
 * Record layout in the caller's sbuf (every record a multiple of 8 bytes, so each one
 * starts aligned in malloc'ed storage):
 *     struct rec          size, status, counts, content_length, end_stream
 *     struct rec_field[n] name and value lengths
 *     bytes               reason phrase, then name0 value0 name1 value1 ...
 * The bytes are exactly what the spans of h2head_fill cover, no separators: nothing in
 * them is ever parsed again. */
#include "http/h2head.h"

#include <string.h>

struct rec {
	uint32_t size;          /* whole record, padded to 8 */
	int32_t status;
	uint32_t nfields;
	uint32_t nbytes;        /* reason + names + values */
	int64_t content_length; /* -1: none */
	uint32_t reason_len;
	uint32_t end_stream;
};

struct rec_field {
	uint32_t nlen, vlen;
};

/* RFC 9110 5.6.2 tchar, one bit per byte value: "!#$%&'*+-.^_`|~", digits, letters. */
static const uint32_t tchar_map[8] = {
	0x00000000, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff, 0, 0, 0, 0,
};

static bool name_ok(struct h2_str n)
{
	if (n.len == 0)
		return false;
	for (size_t i = 0; i < n.len; i++) {
		unsigned char c = (unsigned char)n.p[i];

		if (!(tchar_map[c >> 5] & (1u << (c & 31))))
			return false;
	}
	return true;
}

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* h1_parse's field-value rule: HTAB, SP, VCHAR, obs-text; no other control, no DEL.
 * Eight bytes per step: a word with no byte below 0x20 and none equal to 0x7f passes
 * at once (the has-less-than and has-zero bit tricks); a word with one (an HTAB, or a
 * byte to refuse) is looked at byte by byte. */
static bool value_ok(struct h2_str v)
{
	size_t i = 0;

	for (; i + 8 <= v.len; i += 8) {
		uint64_t x, del;

		memcpy(&x, v.p + i, 8);
		del = x ^ (0x7f * ONES);
		if ((((x - 0x20 * ONES) & ~x) | ((del - ONES) & ~del)) & HIGHS)
			break;
	}
	for (; i < v.len; i++) {
		unsigned char c = (unsigned char)v.p[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

bool h2head_fields_ok(const struct h2_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!name_ok(h[i].name) || !value_ok(h[i].value))
			return false;
	return true;
}

int h2head_pack(struct sbuf *sb, const struct h2_response *rs)
{
	const char *reason = rs->status ? h1_status_reason(rs->status) : "";
	size_t rlen = strlen(reason), nbytes = rlen, size;
	struct rec r;
	char *p, *f, *b;

	if (rs->status != 0 && (rs->status < 100 || rs->status > 599))
		return -1;
	if (rs->nheaders > H1_MAX_HEADERS)
		return -1;
	for (size_t i = 0; i < rs->nheaders; i++)
		nbytes += rs->headers[i].name.len + rs->headers[i].value.len;
	if (nbytes > H1_MAX_HEAD)
		return -1;
	size = sizeof(r) + rs->nheaders * sizeof(struct rec_field) + nbytes;
	size = (size + 7) & ~(size_t)7;
	memset(&r, 0, sizeof(r));
	r.size = (uint32_t)size;
	r.status = rs->status;
	r.nfields = (uint32_t)rs->nheaders;
	r.nbytes = (uint32_t)nbytes;
	r.content_length = rs->content_length;
	r.reason_len = (uint32_t)rlen;
	r.end_stream = rs->end_stream;
	/* Assembled in place: one size check for the whole record. */
	p = sbuf_extend(sb, size);
	memcpy(p, &r, sizeof(r));
	f = p + sizeof(r);
	b = f + rs->nheaders * sizeof(struct rec_field);
	memcpy(b, reason, rlen);
	b += rlen;
	for (size_t i = 0; i < rs->nheaders; i++) {
		const struct h2_header *h = &rs->headers[i];
		struct rec_field rf = { (uint32_t)h->name.len, (uint32_t)h->value.len };

		memcpy(f + i * sizeof(rf), &rf, sizeof(rf));
		memcpy(b, h->name.p, h->name.len);
		b += h->name.len;
		if (h->value.len)
			memcpy(b, h->value.p, h->value.len);
		b += h->value.len;
	}
	memset(b, 0, (size_t)(p + size - b));
	return 0;
}

size_t h2head_size(const void *rec)
{
	return ((const struct rec *)rec)->size;
}

int h2head_status(const void *rec)
{
	return ((const struct rec *)rec)->status;
}

const char *h2head_data(const void *rec, size_t *len)
{
	const struct rec *r = rec;

	*len = r->nbytes;
	return (const char *)rec + sizeof(*r) + r->nfields * sizeof(struct rec_field);
}

/* m->body and m->content_length from the status, the request and the stream's framing. */
static void fill_framing(const struct rec *r, int req_method, struct h1_msg *m)
{
	m->content_length = r->content_length >= 0 ? (uint64_t)r->content_length : 0;
	if (r->status < 200 || r->status == 204 || r->status == 304 || req_method == H1_M_HEAD)
		m->body = H1_BODY_NONE;
	else if (r->content_length >= 0 || r->end_stream)
		m->body = H1_BODY_LENGTH;
	else
		m->body = H1_BODY_CHUNKED;     /* until END_STREAM */
}

void h2head_fill(const void *rec, int req_method, struct h1_msg *m)
{
	const struct rec *r = rec;
	const struct rec_field *f = (const struct rec_field *)(r + 1);
	size_t len;
	const char *b = h2head_data(rec, &len);
	uint32_t off = r->reason_len;

	m->method = m->target = m->scheme = m->authority = m->path = (struct h1_span){ 0, 0 };
	m->method_id = req_method;
	m->target_form = H1_TF_ORIGIN;
	m->status = r->status;
	m->reason = (struct h1_span){ 0, r->reason_len };
	m->version_minor = 1;
	m->nheaders = r->nfields;
	for (uint32_t i = 0; i < r->nfields; i++) {
		struct h1_header *h = &m->headers[i];

		h->name = (struct h1_span){ off, f[i].nlen };
		h->value = (struct h1_span){ off + f[i].nlen, f[i].vlen };
		h->id = (uint16_t)h1_header_id(b + off, f[i].nlen);
		h->flags = (uint16_t)h1_header_flags(b + off, f[i].nlen);
		off += f[i].nlen + f[i].vlen;
	}
	fill_framing(r, req_method, m);
	m->keep_alive = true;
	m->expect_continue = false;
	m->upgrade = false;
	m->has_te_trailers = false;
	m->host_idx = -1;
	m->upgrade_idx = -1;
	m->head_len = r->nbytes;
}
