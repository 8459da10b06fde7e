/* sidecar: classification of first bytes, authorities, outbound route
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
