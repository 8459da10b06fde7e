/* sidecar: classification of first bytes, ClientHello SNI, authorities, outbound route
 * and cluster lookup, and the special clusters (see sidecar.h). */
#include "proxy/sidecar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

struct cluster sidecar_passthrough_cluster = {
	.name = "PassthroughCluster",
	.host = "",
	.subset = "",
	.discovery = CLUSTER_ORIGINAL_DST,
	.lb = CLUSTER_LB_PASSTHROUGH,
	.tls_mode = CLUSTER_TLS_DISABLE,
	.connect_timeout_ms = 10000,
	.idle_timeout_ms = 3600 * 1000,
};

struct cluster sidecar_blackhole_cluster = {
	.name = "BlackHoleCluster",
	.host = "",
	.subset = "",
	.discovery = CLUSTER_STATIC,
	.tls_mode = CLUSTER_TLS_DISABLE,
};

const struct route sidecar_allow_any_route = { .name = "allow_any" };
const struct route sidecar_block_all_route = { .name = "block_all" };

/* ---- classification ---- */

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

enum sidecar_proto sidecar_classify(const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t i = 0, start;

	if (len == 0)
		return SIDECAR_NEED_MORE;
	if (p[0] == 0x16)
		return SIDECAR_PROTO_TLS;
	/* Empty lines may precede a request (RFC 9112 section 2.2); a few are enough to
	 * tell, a stream of them is not HTTP. */
	while (i < len && i < 8 && (p[i] == '\r' || p[i] == '\n'))
		i++;
	if (i == len)
		return i < 8 ? SIDECAR_NEED_MORE : SIDECAR_PROTO_OPAQUE;
	start = i;
	/* The longest registered method is 17 characters (UPDATEREDIRECTREF). */
	for (; i < len && i - start <= 24; i++) {
		if (p[i] == ' ')
			return i > start ? SIDECAR_PROTO_HTTP : SIDECAR_PROTO_OPAQUE;
		if (!is_tchar(p[i]))
			return SIDECAR_PROTO_OPAQUE;
	}
	return i - start > 24 ? SIDECAR_PROTO_OPAQUE : SIDECAR_NEED_MORE;
}

/* ---- ClientHello ---- */

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

static bool rd_skip(struct hs_rd *r, size_t n)
{
	if (!rd_need(r, n))
		return false;
	r->pos += n;
	return true;
}

/* Copies a server name if it looks like a host name (LDH labels, '_' tolerated). */
static void sni_copy(const unsigned char *name, size_t len, char *out, size_t n)
{
	out[0] = '\0';
	if (len == 0 || len >= n || len > 253)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = name[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + 32);
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == '_')) {
			out[0] = '\0';
			return;
		}
		out[i] = (char)c;
	}
	out[len] = '\0';
	if (out[len - 1] == '.')
		out[len - 1] = '\0';
}

/* Walks a complete ClientHello body (after the 4-byte handshake header). */
static int hello_sni(const unsigned char *body, size_t len, char *sni, size_t n)
{
	struct hs_rd r = { body, len, 0, false };
	size_t ext_end;

	rd_skip(&r, 2 + 32);                 /* legacy_version, random */
	rd_skip(&r, rd_u8(&r));              /* legacy_session_id */
	rd_skip(&r, rd_u16(&r));             /* cipher_suites */
	rd_skip(&r, rd_u8(&r));              /* legacy_compression_methods */
	if (r.short_read)
		return -1;
	if (r.pos == len)
		return 0;                        /* no extensions (old clients) */
	ext_end = rd_u16(&r);
	if (r.short_read || ext_end > len - r.pos)
		return -1;
	ext_end += r.pos;
	while (r.pos + 4 <= ext_end) {
		unsigned type = rd_u16(&r), elen = rd_u16(&r);
		size_t next = r.pos + elen;

		if (next > ext_end)
			return -1;
		if (type == 0) {                 /* server_name */
			size_t list = rd_u16(&r), lend = r.pos + list;

			if (r.short_read || lend > next)
				return -1;
			while (r.pos + 3 <= lend) {
				unsigned nt = rd_u8(&r), nl = rd_u16(&r);

				if (r.pos + nl > lend)
					return -1;
				if (nt == 0) {
					sni_copy(body + r.pos, nl, sni, n);
					return 0;
				}
				r.pos += nl;
			}
			return 0;
		}
		r.pos = next;
	}
	return 0;
}

int sidecar_sniff_sni(const unsigned char *buf, size_t len, char *sni, size_t n)
{
	unsigned char hs[SIDECAR_SNIFF_MAX];
	size_t hlen = 0, pos = 0, need = 0;

	if (n)
		sni[0] = '\0';
	/* Gather handshake bytes from consecutive handshake records until the whole
	 * ClientHello is there: a client may split it (large key shares). */
	for (;;) {
		size_t rlen;

		if (len - pos < 5)
			return pos >= SIDECAR_SNIFF_MAX ? -1 : 1;
		if (buf[pos] != 0x16 || buf[pos + 1] != 3 || buf[pos + 2] > 4)
			return -1;
		rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
		if (rlen == 0 || rlen > 16384 + 2048)
			return -1;
		if (len - pos - 5 < rlen) {
			/* Take what this record has so far: the hello may already be complete. */
			rlen = len - pos - 5;
			if (hlen + rlen > sizeof(hs))
				return -1;
			memcpy(hs + hlen, buf + pos + 5, rlen);
			hlen += rlen;
			pos = len;
		} else {
			if (hlen + rlen > sizeof(hs))
				return -1;
			memcpy(hs + hlen, buf + pos + 5, rlen);
			hlen += rlen;
			pos += 5 + rlen;
		}
		if (hlen >= 4) {
			if (hs[0] != 1)          /* ClientHello */
				return -1;
			need = 4 + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
			if (need > sizeof(hs))
				return -1;
			if (hlen >= need)
				return hello_sni(hs + 4, need - 4, sni, n);
		}
		if (pos >= len)
			return 1;
	}
}

/* ---- authorities ---- */

int sidecar_split_authority(const char *a, size_t len, char *host, size_t n, uint16_t *port,
                            uint16_t dflt)
{
	const char *h = a, *rest;
	size_t hl;

	if (len == 0)
		return -1;
	if (a[0] == '[') {
		const char *close = memchr(a, ']', len);

		if (!close)
			return -1;
		h = a + 1;
		hl = (size_t)(close - h);
		rest = close + 1;
	} else {
		const char *colon = memchr(a, ':', len);

		hl = colon ? (size_t)(colon - a) : len;
		rest = a + hl;
	}
	if (hl == 0 || hl >= n)
		return -1;
	for (size_t i = 0; i < hl; i++)
		host[i] = (h[i] >= 'A' && h[i] <= 'Z') ? (char)(h[i] + 32) : h[i];
	host[hl] = '\0';
	*port = dflt;
	if (rest < a + len) {
		unsigned long v = 0;
		size_t digits = 0;

		if (*rest != ':')
			return -1;
		for (rest++; rest < a + len; rest++, digits++) {
			if (*rest < '0' || *rest > '9' || digits >= 5)
				return -1;
			v = v * 10 + (unsigned long)(*rest - '0');
		}
		if (digits == 0)
			return 0;        /* "host:" means the default port (RFC 3986) */
		if (v == 0 || v > 65535)
			return -1;
		*port = (uint16_t)v;
	}
	return 0;
}

/* ---- lookups ---- */

const struct route_table *sidecar_table(const struct snap *s, uint16_t port)
{
	char name[8];

	/* The compiler names the sidecar's tables by port ("80"), as Envoy's RDS does. */
	snprintf(name, sizeof(name), "%u", port);
	for (size_t i = 0; i < s->noutbound; i++)
		if (strcmp(s->outbound[i]->name, name) == 0)
			return s->outbound[i];
	return NULL;
}

struct cluster *sidecar_tcp_cluster(const struct snap *s, const char *host, uint16_t port)
{
	char name[320];
	struct cluster *c;

	if (!host || !host[0])
		return NULL;
	snprintf(name, sizeof(name), "outbound|%u||%s", port, host);
	c = snap_cluster_find(s, name);
	if (c)
		return c;
	for (size_t i = 0; i < s->nclusters; i++) {
		c = s->clusters[i];
		if (c->port == port && c->host[0] == '*' && c->subset[0] == '\0' &&
		    tls_host_match(c->host, host))
			return c;
	}
	return NULL;
}
