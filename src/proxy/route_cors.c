/* route_cors: VirtualService corsPolicy compiled per route and applied on the request path
 * (see route_cors.h for the behaviour, which is Envoy's CORS filter's). */
#include "proxy/route_cors.h"
#include "proxy/fwd_int.h"
#include "proxy/fwd_io.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A list joined with "," as Istio hands it to Envoy; NULL for an empty one. */
static char *join(const struct res_strlist *l)
{
	struct sbuf b = SBUF_INIT;

	if (!l->n)
		return NULL;
	for (size_t i = 0; i < l->n; i++) {
		if (i)
			sbuf_adds(&b, ",");
		sbuf_adds(&b, l->v[i]);
	}
	return sbuf_steal(&b);
}

static int origin_add(struct route_cors *c, enum strmatch_kind kind, const char *s, char *err,
                      size_t errlen)
{
	struct strmatch *m = &c->origins[c->norigins];

	memset(m, 0, sizeof(*m));
	m->kind = kind;
	m->s = xstrdup(s);
	m->len = strlen(s);
	if (strmatch_compile(m, err, errlen) < 0) {
		strmatch_free(m);
		return -1;
	}
	c->norigins++;
	if (strmatch_eval(m, "*", 1))
		c->any_origin = true;
	return 0;
}

int rcors_compile(struct route *out, const struct vs_http_route *hr, char *err, size_t errlen)
{
	const struct vs_cors *in = hr->cors;
	struct route_cors *c;

	if (!in)
		return 0;
	c = xcalloc(1, sizeof(*c));
	c->origins = xcalloc(in->allow_origins.n + in->allow_origin.n + 1, sizeof(*c->origins));
	/* Istio: allowOrigins when given, else the deprecated allowOrigin as exact matches. */
	for (size_t i = 0; i < in->allow_origins.n; i++) {
		const struct vs_string_match *m = &in->allow_origins.v[i];
		int rc = 0;

		if (m->exact)
			rc = origin_add(c, SM_EXACT, m->exact, err, errlen);
		else if (m->prefix)
			rc = origin_add(c, SM_PREFIX, m->prefix, err, errlen);
		else if (m->regex)
			rc = origin_add(c, SM_REGEX, m->regex, err, errlen);
		if (rc < 0)
			goto fail;
	}
	for (size_t i = 0; !in->allow_origins.n && i < in->allow_origin.n; i++)
		if (origin_add(c, SM_EXACT, in->allow_origin.v[i], err, errlen) < 0)
			goto fail;
	c->allow_methods = join(&in->allow_methods);
	c->allow_headers = join(&in->allow_headers);
	c->expose_headers = join(&in->expose_headers);
	if (in->max_age_ms > 0) {
		char b[32];

		snprintf(b, sizeof(b), "%lld", (long long)(in->max_age_ms / 1000));
		c->max_age = xstrdup(b);
	}
	c->allow_credentials = in->allow_credentials;
	c->forward_unmatched = in->unmatched_preflights != VS_CORS_IGNORE;
	out->cors = c;
	return 0;
fail:
	route_cors_free(c);
	return -1;
}

bool rcors_origin_allowed(const struct route_cors *c, const char *origin, size_t len)
{
	if (c->any_origin)
		return true;
	for (size_t i = 0; i < c->norigins; i++)
		if (strmatch_eval(&c->origins[i], origin, len))
			return true;
	return false;
}

/* The value of st's request field name, or NULL; *len its length. */
static const char *req_field(const struct stream *st, const char *name, size_t *len)
{
	int i = h1_header_find(&st->req, st->d->in, name, 0);

	if (i < 0)
		return NULL;
	*len = st->req.headers[i].value.len;
	return st->d->in + st->req.headers[i].value.off;
}

/* The preflight's answer: 200, no body, the fields f[0 .. n); the caller finishes the
 * exchange (st_finish). */
static void preflight_reply(struct stream *st, const struct fwd_field *f, size_t n)
{
	st->code = 200;
	st->details = "cors_response";
	if (!st->req_done || !st->req.keep_alive)
		st->resp_close = true;
	fwd_down->reply_head(st, 200, f, n, 0);
	st->resp_done = true;
}

int rcors_request(struct stream *st)
{
	const struct route_cors *c = st->route->cors;
	const char *origin, *acrm, *acrh = NULL;
	size_t olen = 0, mlen = 0, hlen = 0;
	bool preflight, allowed;
	/* NUL-terminated copies for the reply's fields (fwd_field), bounded by the head. */
	char o[1024], m[64], h[1024];
	struct fwd_field f[FWD_REPLY_FIELDS];
	size_t n = 0;

	origin = req_field(st, "origin", &olen);
	if (!origin || !olen)
		return 0;
	acrm = req_field(st, "access-control-request-method", &mlen);
	preflight = st->req.method_id == H1_M_OPTIONS && acrm && mlen;
	allowed = rcors_origin_allowed(c, origin, olen);
	if (allowed)
		STAT_INC(st->d->w->st.cors_valid);
	else
		STAT_INC(st->d->w->st.cors_invalid);
	if (!preflight) {
		if (allowed) {
			st->cors_origin = xmalloc(olen + 1);
			memcpy(st->cors_origin, origin, olen);
			st->cors_origin[olen] = '\0';
		}
		return 0;
	}
	if (!allowed && c->forward_unmatched)
		return 0;
	/* Answered here. Envoy's answer to a preflight it does not forward from an origin it
	 * does not allow (IGNORE) has the policy's other fields but no allow-origin. */
	if (allowed) {
		snprintf(o, sizeof(o), "%.*s", (int)olen, origin);
		f[n++] = (struct fwd_field){ "access-control-allow-origin", o };
	}
	if (c->allow_credentials)
		f[n++] = (struct fwd_field){ "access-control-allow-credentials", "true" };
	if (c->allow_methods && strcmp(c->allow_methods, "*") == 0) {
		snprintf(m, sizeof(m), "%.*s", (int)mlen, acrm);
		f[n++] = (struct fwd_field){ "access-control-allow-methods", m };
	} else if (c->allow_methods) {
		f[n++] = (struct fwd_field){ "access-control-allow-methods", c->allow_methods };
	}
	if (c->allow_headers && strcmp(c->allow_headers, "*") == 0) {
		/* The request's list, empty when it has none (Envoy sets what it finds). */
		acrh = req_field(st, "access-control-request-headers", &hlen);
		snprintf(h, sizeof(h), "%.*s", acrh ? (int)hlen : 0, acrh ? acrh : "");
		f[n++] = (struct fwd_field){ "access-control-allow-headers", h };
	} else if (c->allow_headers) {
		f[n++] = (struct fwd_field){ "access-control-allow-headers", c->allow_headers };
	}
	if (c->max_age)
		f[n++] = (struct fwd_field){ "access-control-max-age", c->max_age };
	preflight_reply(st, f, n);
	return 1;
}

const struct rcors_edit *rcors_edit_for(const struct stream *st, struct rcors_edit *e)
{
	e->rh = rhdr_resp(rhdr_resp_for(st->hdrs, st->route));
	e->origin = st->cors_origin;
	e->cors = e->origin ? st->route->cors : NULL;
	return e->rh || e->origin ? e : NULL;
}

static bool cors_owns(const struct rcors_edit *e, const char *name, size_t len)
{
	if (!e->origin)
		return false;
	return h1_name_eq(name, len, "access-control-allow-origin", 27) ||
	       (e->cors->allow_credentials &&
	        h1_name_eq(name, len, "access-control-allow-credentials", 32)) ||
	       (e->cors->expose_headers &&
	        h1_name_eq(name, len, "access-control-expose-headers", 29));
}

bool rcors_edit_dropped(const struct rcors_edit *e, const char *name, size_t len)
{
	return rhdr_dropped(e->rh, name, len) || cors_owns(e, name, len);
}

/* The CORS filter runs after the router's header operations on a response (it is before
 * the router in the filter chain): its fields replace any of the same name they added. */
static size_t cors_fields(const struct rcors_edit *e, struct h2_header *f)
{
	size_t n = 0;

	if (!e->origin)
		return 0;
	f[n++] = (struct h2_header){ { "access-control-allow-origin", 27 },
	                             { e->origin, strlen(e->origin) } };
	if (e->cors->allow_credentials)
		f[n++] = (struct h2_header){ { "access-control-allow-credentials", 32 },
		                             { "true", 4 } };
	if (e->cors->expose_headers)
		f[n++] = (struct h2_header){ { "access-control-expose-headers", 29 },
		                             { e->cors->expose_headers,
		                               strlen(e->cors->expose_headers) } };
	return n;
}

void rcors_edit_write_h1(struct iobuf *o, const struct rcors_edit *e)
{
	struct h2_header f[RCORS_MAX_FIELDS];
	size_t n;

	for (size_t i = 0; e->rh && i < e->rh->nemit; i++)
		if (!cors_owns(e, e->rh->emit[i].name, e->rh->emit[i].nlen))
			iob_field(o, e->rh->emit[i].name, e->rh->emit[i].nlen, e->rh->emit[i].value,
			          e->rh->emit[i].vlen);
	n = cors_fields(e, f);
	for (size_t i = 0; i < n; i++)
		iob_field(o, f[i].name.p, f[i].name.len, f[i].value.p, f[i].value.len);
}

void rcors_h2(struct h2_header *h, size_t *n, size_t room, const struct rcors_edit *e)
{
	struct h2_header f[RCORS_MAX_FIELDS];
	size_t k;

	if (!e)
		return;
	for (size_t i = 0; e->rh && i < e->rh->nemit && *n < room; i++)
		if (!cors_owns(e, e->rh->emit[i].name, e->rh->emit[i].nlen))
			h[(*n)++] = (struct h2_header){ { e->rh->emit[i].name, e->rh->emit[i].nlen },
			                                { e->rh->emit[i].value, e->rh->emit[i].vlen } };
	k = cors_fields(e, f);
	for (size_t i = 0; i < k && *n < room; i++)
		h[(*n)++] = f[i];
}
