/* fwd_hash: the request side of consistent hashing, as Envoy's route hash_policy that
 * Istio makes of a DestinationRule's consistentHash:
 *
 *   httpHeaderName          the value of the request's first such field;
 *   httpCookie              the value of the cookie (surrounding quotes removed, as
 *                           Envoy's parseCookieValue does); when the request has none, a
 *                           cookie is made up for the client to keep: its value the
 *                           hex of a hash of the connection's remote and local addresses
 *                           (Envoy: one value per connection, so that its concurrent
 *                           requests agree), the key the hash of that value, and a
 *                           `Set-Cookie: NAME="VALUE"; Max-Age=TTL; Path=PATH; HttpOnly`
 *                           on the response (no Max-Age for ttl 0s: a session cookie);
 *   useSourceIp             the client's IP address (the downstream connection's peer);
 *   httpQueryParameterName  the value of the first NAME= (or bare NAME) parameter of the
 *                           request target's query, as sent (not decoded).
 *
 * A request without its key goes to a random endpoint, as in Envoy. The key hashes with
 * hash_bytes. Nothing here allocates but the one Set-Cookie value of a made-up cookie. */
#include "proxy/fwd_hash.h"
#include "proxy/fwd_int.h"
#include "proxy/lbhash.h"
#include "proxy/worker.h"
#include "core/util.h"
#include "http/h1.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of cookie name in the request's Cookie fields, or false. */
static bool fwd_hash_cookie(const struct stream *st, const char *name, const char **v,
                            size_t *vlen)
{
	const char *b = st->d->in;
	size_t nlen = strlen(name);
	int i = -1;

	while ((i = h1_header_find(&st->req, b, "cookie", (unsigned)(i + 1))) >= 0) {
		const char *p = b + st->req.headers[i].value.off;
		const char *end = p + st->req.headers[i].value.len;

		while (p < end) {
			const char *semi = memchr(p, ';', (size_t)(end - p));
			const char *e = semi ? semi : end;

			while (p < e && (*p == ' ' || *p == '\t'))
				p++;
			if ((size_t)(e - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
				p += nlen + 1;
				while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
					e--;
				if (e - p >= 2 && *p == '"' && e[-1] == '"') {
					p++;
					e--;
				}
				*v = p;
				*vlen = (size_t)(e - p);
				return true;
			}
			p = semi ? semi + 1 : end;
		}
	}
	return false;
}

/* The value of query parameter name in the request target, or false. */
static bool fwd_hash_query(const struct stream *st, const char *name, const char **v,
                           size_t *vlen)
{
	const char *b = st->d->in;
	struct h1_span t = st->req.target_form == H1_TF_ABSOLUTE ? st->req.path : st->req.target;
	const char *p = memchr(b + t.off, '?', t.len), *end = b + t.off + t.len;
	size_t nlen = strlen(name);

	if (!p)
		return false;
	for (const char *h = memchr(p, '#', (size_t)(end - p)); h; h = NULL)
		end = h;
	for (p++; p <= end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp ? amp : end;

		if ((size_t)(e - p) >= nlen && memcmp(p, name, nlen) == 0 &&
		    ((size_t)(e - p) == nlen || p[nlen] == '=')) {
			*v = (size_t)(e - p) == nlen ? e : p + nlen + 1;
			*vlen = (size_t)(e - *v);
			return true;
		}
		if (!amp)
			break;
		p = amp + 1;
	}
	return false;
}

/* The request's key for cfg into *h; false when it has none. */
static bool fwd_hash_key(struct stream *st, const struct lbh_cfg *cfg, uint64_t *h)
{
	struct dconn *d = st->d;
	const char *v = NULL;
	size_t vlen = 0;
	int i;

	switch (cfg->key) {
	case LBH_KEY_HEADER:
		i = h1_header_find(&st->req, d->in, cfg->name, 0);
		if (i < 0)
			return false;
		v = d->in + st->req.headers[i].value.off;
		vlen = st->req.headers[i].value.len;
		break;
	case LBH_KEY_COOKIE:
		if (!fwd_hash_cookie(st, cfg->name, &v, &vlen)) {
			/* Envoy's router (addDownstreamSetCookie): made up per connection. */
			char val[17], both[2 * SOCK_ADDR_STRLEN];
			int n = snprintf(both, sizeof(both), "%s%s", d->remote_s, d->local_s);

			snprintf(val, sizeof(val), "%016llx",
			         (unsigned long long)hash_bytes(both, n > 0 ? (size_t)n : 0));
			free(st->set_cookie);
			if (cfg->cookie_ttl_s > 0)
				st->set_cookie = xasprintf("%s=\"%s\"; Max-Age=%lld%s%s; HttpOnly", cfg->name,
				                           val, (long long)cfg->cookie_ttl_s,
				                           cfg->cookie_path ? "; Path=" : "",
				                           cfg->cookie_path ? cfg->cookie_path : "");
			else
				st->set_cookie = xasprintf("%s=\"%s\"%s%s; HttpOnly", cfg->name, val,
				                           cfg->cookie_path ? "; Path=" : "",
				                           cfg->cookie_path ? cfg->cookie_path : "");
			*h = hash_bytes(val, 16);
			STAT_INC(d->w->st.lbh_cookie_set);
			return true;
		}
		break;
	case LBH_KEY_SOURCE_IP:
		v = d->remote_ip;
		vlen = strlen(v);
		if (!vlen)
			return false;
		break;
	case LBH_KEY_QUERY:
		if (!fwd_hash_query(st, cfg->name, &v, &vlen))
			return false;
		break;
	case LBH_KEY_NONE:
	default:
		return false;
	}
	*h = hash_bytes(v, vlen);
	return true;
}

const struct cluster_ep *fwd_hash_pick(struct stream *st, const struct cluster_eps *eps,
                                       const uint8_t *excluded)
{
	uint64_t h;
	size_t i;

	if (!eps || !eps->lbh)
		return NULL;
	if (!fwd_hash_key(st, st->cl->hash, &h)) {
		struct worker *w = st->d->w;

		STAT_INC(w->st.lbh_no_key);
		h = (uint64_t)worker_rand(w) << 32 | worker_rand(w);
	}
	i = lbh_pick(eps->lbh, h, excluded);
	return i < eps->n ? &eps->v[i] : NULL;
}

const char *fwd_hash_set_cookie(const struct dconn *d)
{
	return d && d->st ? d->st->set_cookie : NULL;
}
