/* sni: ClientHello server_name reader (see sni.h).
 *
 * Layout read (RFC 8446 section 4.1.2, RFC 6066 section 3):
 *   record:      type 0x16, version 3.x, length (<= 2^14 + 2048), fragment
 *   handshake:   type 1 (ClientHello), 24-bit length, body (possibly over several records)
 *   body:        version(2) random(32) session_id<0..32> cipher_suites<2..> compression<1..>
 *                extensions<0..2^16-1>: type(2) length(2) data
 *   server_name: list<2>: name_type(1) host_name<2>
 * Every length is checked against what encloses it before it is used. */
#include "net/sni.h"

#include <stdbool.h>
#include <string.h>

/* A reader over the handshake bytes gathered from the records. */
struct hs_rd {
	const unsigned char *p;
	size_t len, pos;
	bool short_read;
};

static bool rd_need(struct hs_rd *r, size_t n)
{
	if (r->len - r->pos < n) {
		r->short_read = true;
		return false;
	}
	return true;
}

static unsigned rd_u8(struct hs_rd *r)
{
	return rd_need(r, 1) ? r->p[r->pos++] : 0;
}

static unsigned rd_u16(struct hs_rd *r)
{
	unsigned v;

	if (!rd_need(r, 2))
		return 0;
	v = (unsigned)r->p[r->pos] << 8 | r->p[r->pos + 1];
	r->pos += 2;
	return v;
}

static void rd_skip(struct hs_rd *r, size_t n)
{
	if (rd_need(r, n))
		r->pos += n;
}

/* Copies a server name if it looks like a host name (LDH labels, '_' tolerated). */
static enum sni_status sni_copy(const unsigned char *name, size_t len, char *out, size_t n)
{
	if (len == 0 || len >= n || len > 253)
		return SNI_BAD_NAME;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = name[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + 32);
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == '_')) {
			out[0] = '\0';
			return SNI_BAD_NAME;
		}
		out[i] = (char)c;
	}
	out[len] = '\0';
	if (out[len - 1] == '.')
		out[len - 1] = '\0';
	if (!out[0])
		return SNI_BAD_NAME;
	return SNI_OK;
}

/* Walks a complete ClientHello body (after the 4-byte handshake header). */
static enum sni_status hello_sni(const unsigned char *body, size_t len, char *sni, size_t n)
{
	struct hs_rd r = { body, len, 0, false };
	size_t ext_end;

	rd_skip(&r, 2 + 32);                 /* legacy_version, random */
	rd_skip(&r, rd_u8(&r));              /* legacy_session_id */
	rd_skip(&r, rd_u16(&r));             /* cipher_suites */
	rd_skip(&r, rd_u8(&r));              /* legacy_compression_methods */
	if (r.short_read)
		return SNI_MALFORMED;
	if (r.pos == len)
		return SNI_NO_NAME;              /* no extensions (old clients) */
	ext_end = rd_u16(&r);
	if (r.short_read || ext_end > len - r.pos)
		return SNI_MALFORMED;
	ext_end += r.pos;
	while (r.pos + 4 <= ext_end) {
		unsigned type = rd_u16(&r), elen = rd_u16(&r);
		size_t next = r.pos + elen;

		if (next > ext_end)
			return SNI_MALFORMED;
		if (type == 0) {                 /* server_name */
			size_t list = rd_u16(&r), lend = r.pos + list;

			if (r.short_read || lend > next)
				return SNI_MALFORMED;
			while (r.pos + 3 <= lend) {
				unsigned nt = rd_u8(&r), nl = rd_u16(&r);

				if (r.pos + nl > lend)
					return SNI_MALFORMED;
				if (nt == 0)
					return sni_copy(body + r.pos, nl, sni, n);
				r.pos += nl;
			}
			return SNI_NO_NAME;
		}
		r.pos = next;
	}
	return SNI_NO_NAME;
}

enum sni_status sni_read(const unsigned char *buf, size_t len, char *sni, size_t n)
{
	unsigned char hs[SNI_HELLO_MAX];
	size_t hlen = 0, pos = 0, need;
	enum sni_status st;

	if (n)
		sni[0] = '\0';
	/* Gather handshake bytes from consecutive handshake records until the whole
	 * ClientHello is there. */
	for (;;) {
		size_t rlen, take;

		if (len - pos < 5) {
			/* What there is of the next record header must still look like one. */
			if (pos < len && buf[pos] != 0x16)
				return SNI_NOT_TLS;
			if (len - pos >= 2 && buf[pos + 1] != 3)
				return SNI_NOT_TLS;
			return pos >= SNI_HELLO_MAX ? SNI_TOO_LONG : SNI_NEED_MORE;
		}
		if (buf[pos] != 0x16 || buf[pos + 1] != 3 || buf[pos + 2] > 4)
			return SNI_NOT_TLS;
		rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
		if (rlen == 0 || rlen > 16384 + 2048)
			return SNI_MALFORMED;
		/* Take what this record has so far: the hello may already be complete. */
		take = len - pos - 5 < rlen ? len - pos - 5 : rlen;
		if (hlen + take > sizeof(hs))
			return SNI_TOO_LONG;
		memcpy(hs + hlen, buf + pos + 5, take);
		hlen += take;
		pos += 5 + take;
		if (hlen >= 1 && hs[0] != 1)     /* not a ClientHello */
			return SNI_NOT_TLS;
		if (hlen >= 4) {
			need = 4 + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
			if (need > sizeof(hs))
				return SNI_TOO_LONG;
			if (hlen >= need) {
				st = hello_sni(hs + 4, need - 4, sni, n);
				if (st != SNI_OK && n)
					sni[0] = '\0';
				return st;
			}
		}
		if (take < rlen || pos >= len)
			return SNI_NEED_MORE;
	}
}

const char *sni_status_name(enum sni_status s)
{
	static const char *const names[] = { "ok", "need_more", "no_name", "bad_name",
	                                      "not_tls", "malformed", "too_long" };

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}
