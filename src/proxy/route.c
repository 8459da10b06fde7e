#include "proxy/route.h"
#include "proxy/retry.h"
#include "proxy/route_fault.h"
#include "proxy/route_cors.h"
#include "proxy/route_hdrs.h"
#include "proxy/route_rerw.h"
#include "core/re.h"
#include "proxy/mirror.h"
#include "core/sbuf.h"
#include "core/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct route_slot {
	const char *domain;        /* NULL: empty */
	size_t len;
	struct route_vhost *vh;
};

struct route_wild {
	const char *suffix;        /* ".cnn.com" for "*.cnn.com" */
	size_t len;
	struct route_vhost *vh;
};

int strmatch_compile(struct strmatch *m, char *err, size_t errlen)
{
	if (m->kind != SM_REGEX)
		return 0;
	/* RE2 as Envoy's safe_regex (core/re.h); evaluated as a full match. */
	/* ignoreUriCase is not applied to a regex: Istio applies it to exact and prefix
	 * only (HTTPMatchRequest); "(?i)" says it in the pattern. */
	m->re = re_compile(m->s, 0, err, errlen);
	return m->re ? 0 : -1;
}

bool strmatch_eval(const struct strmatch *m, const char *s, size_t len)
{
	switch (m->kind) {
	case SM_ANY:
		return true;
	case SM_EXACT:
		if (len != m->len)
			return false;
		return m->icase ? strncasecmp(s, m->s, len) == 0 : memcmp(s, m->s, len) == 0;
	case SM_PREFIX:
		if (len < m->len)
			return false;
		return m->icase ? strncasecmp(s, m->s, m->len) == 0 : memcmp(s, m->s, m->len) == 0;
	case SM_REGEX:
		return m->re && re_full_match(m->re, s, len);
	}
	return false;
}

void strmatch_free(struct strmatch *m)
{
	re_free(m->re);
	free(m->s);
	memset(m, 0, sizeof(*m));
}

void route_cors_free(struct route_cors *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->norigins; i++)
		strmatch_free(&c->origins[i]);
	free(c->origins);
	free(c->allow_methods);
	free(c->allow_headers);
	free(c->expose_headers);
	free(c->max_age);
	free(c);
}

static int route_wild_cmp(const void *a, const void *b)
{
	const struct route_wild *x = a, *y = b;

	return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

void route_table_finalize(struct route_table *t)
{
	size_t nexact = 0, size = 8;

	for (size_t i = 0; i < t->nvhosts; i++)
		for (size_t j = 0; j < t->vhosts[i].ndomains; j++)
			nexact++;
	while (size < nexact * 2)
		size *= 2;
	t->hash = xcalloc(size, sizeof(*t->hash));
	t->hash_mask = size - 1;
	t->wild = xcalloc(nexact ? nexact : 1, sizeof(*t->wild));
	t->nwild = 0;
	t->any = NULL;

	for (size_t i = 0; i < t->nvhosts; i++) {
		struct route_vhost *vh = &t->vhosts[i];

		for (size_t j = 0; j < vh->ndomains; j++) {
			const char *d = vh->domains[j];
			size_t len = strlen(d);

			if (strcmp(d, "*") == 0) {
				if (!t->any)
					t->any = vh;
			} else if (d[0] == '*') {
				t->wild[t->nwild].suffix = d + 1;
				t->wild[t->nwild].len = len - 1;
				t->wild[t->nwild].vh = vh;
				t->nwild++;
			} else {
				size_t k = hash_bytes_lower(d, len) & t->hash_mask;

				while (t->hash[k].domain) {
					if (t->hash[k].len == len && strncasecmp(t->hash[k].domain, d, len) == 0)
						break;
					k = (k + 1) & t->hash_mask;
				}
				if (!t->hash[k].domain) {
					t->hash[k].domain = d;
					t->hash[k].len = len;
					t->hash[k].vh = vh;
				}
			}
		}
	}
	/* Envoy prefers the longest wildcard suffix; stable order keeps the first vhost on ties. */
	qsort(t->wild, t->nwild, sizeof(*t->wild), route_wild_cmp);
}

const struct route_vhost *route_vhost_find(const struct route_table *t, const char *host,
                                           size_t len)
{
	size_t k;

	if (!t->hash)
		return NULL;
	k = hash_bytes_lower(host, len) & t->hash_mask;
	while (t->hash[k].domain) {
		if (t->hash[k].len == len && strncasecmp(t->hash[k].domain, host, len) == 0)
			return t->hash[k].vh;
		k = (k + 1) & t->hash_mask;
	}
	for (size_t i = 0; i < t->nwild; i++) {
		const struct route_wild *w = &t->wild[i];

		/* "*.cnn.com" matches "a.cnn.com" and "a.b.cnn.com", not "cnn.com". */
		if (len > w->len && strncasecmp(host + len - w->len, w->suffix, w->len) == 0)
			return w->vh;
	}
	return t->any;
}

static bool route_query_param(const char *path, size_t len, const char *name,
                              const char **v, size_t *vlen)
{
	const char *q = memchr(path, '?', len), *end = path + len;
	size_t nlen = strlen(name);

	if (!q)
		return false;
	for (const char *p = q + 1; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		const char *kend = eq ? eq : stop;

		if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
			*v = eq ? eq + 1 : stop;
			*vlen = (size_t)(stop - *v);
			return true;
		}
		p = stop + 1;
	}
	return false;
}

static bool route_match_hit(const struct route_match *m, const struct route_req *rq)
{
	size_t plen = rq->path_len;
	const char *qm = memchr(rq->path, '?', rq->path_len);

	/* Istio's uri match is on the path without the query string. */
	if (qm)
		plen = (size_t)(qm - rq->path);
	if (m->port && m->port != rq->port)
		return false;
	if (!strmatch_eval(&m->method, rq->method, rq->method_len))
		return false;
	if (!strmatch_eval(&m->uri, rq->path, plen))
		return false;
	if (!strmatch_eval(&m->authority, rq->authority, rq->authority_len))
		return false;
	if (!strmatch_eval(&m->scheme, rq->scheme, rq->scheme_len))
		return false;
	for (size_t i = 0; i < m->nheaders; i++) {
		const char *v;
		size_t vlen;

		if (!rq->header || !rq->header(rq->header_ctx, m->headers[i].name, &v, &vlen))
			return false;
		if (!strmatch_eval(&m->headers[i].m, v, vlen))
			return false;
	}
	for (size_t i = 0; i < m->nwithout; i++) {
		const char *v;
		size_t vlen;

		if (rq->header && rq->header(rq->header_ctx, m->without[i].name, &v, &vlen) &&
		    strmatch_eval(&m->without[i].m, v, vlen))
			return false;
	}
	for (size_t i = 0; i < m->nquery; i++) {
		const char *v;
		size_t vlen;

		if (!route_query_param(rq->path, rq->path_len, m->query[i].name, &v, &vlen))
			return false;
		if (!strmatch_eval(&m->query[i].m, v, vlen))
			return false;
	}
	return true;
}

const struct route *route_select_hit(const struct route_vhost *vh, const struct route_req *req,
                                     const struct route_match **hit)
{
	*hit = NULL;
	for (size_t i = 0; i < vh->nroutes; i++) {
		const struct route *r = &vh->routes[i];

		if (r->nmatches == 0)
			return r;
		for (size_t j = 0; j < r->nmatches; j++)
			if (route_match_hit(&r->matches[j], req)) {
				*hit = &r->matches[j];
				return r;
			}
	}
	return NULL;
}

const struct route *route_select(const struct route_vhost *vh, const struct route_req *req)
{
	const struct route_match *hit;

	return route_select_hit(vh, req, &hit);
}

void route_rewrite_path(const char *rewrite, const struct route_match *hit, const char *path,
                        size_t len, struct sbuf *out)
{
	const char *qm = memchr(path, '?', len);
	size_t plen = qm ? (size_t)(qm - path) : len;
	size_t cut;

	/* An absolute-form target may have no path at all ("http://h" or "http://h?q"). */
	if (plen == 0) {
		sbuf_adds(out, rewrite);
		sbuf_add(out, path, len);
		return;
	}
	if (!hit || hit->uri.kind == SM_ANY)
		cut = path[0] == '/' ? 1 : 0;      /* Istio's catch-all match is prefix "/" */
	else if (hit->uri.kind == SM_PREFIX)
		cut = hit->uri.len <= plen ? hit->uri.len : plen;
	else
		cut = plen;                        /* exact and regex: the whole path */
	sbuf_adds(out, rewrite);
	sbuf_add(out, path + cut, len - cut);
}

const struct route_dest *route_pick_weighted(const struct route_dest *d, size_t n,
                                             uint32_t total, uint32_t rnd)
{
	uint32_t x;

	if (n == 0)
		return NULL;
	if (n == 1 || total == 0)
		return &d[0];
	x = rnd % total;
	for (size_t i = 0; i < n; i++) {
		if (x < d[i].weight)
			return &d[i];
		x -= d[i].weight;
	}
	return &d[n - 1];
}

const struct route_dest *route_pick_dest(const struct route *r, uint32_t rnd)
{
	return route_pick_weighted(r->dests, r->ndests, r->total_weight, rnd);
}

static void route_hdrs_free(struct route_hdr_match *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		strmatch_free(&h[i].m);
	}
	free(h);
}

static void route_free(struct route *r)
{
	for (size_t i = 0; i < r->nmatches; i++) {
		struct route_match *m = &r->matches[i];

		free(m->name);
		strmatch_free(&m->uri);
		strmatch_free(&m->scheme);
		strmatch_free(&m->method);
		strmatch_free(&m->authority);
		route_hdrs_free(m->headers, m->nheaders);
		route_hdrs_free(m->without, m->nwithout);
		route_hdrs_free(m->query, m->nquery);
	}
	free(r->matches);
	for (size_t i = 0; i < r->ndests; i++)
		if (!r->dests[i].name_borrowed)
			free(r->dests[i].cluster_name);
	free(r->dests);
	free(r->name);
	if (!r->strs_borrowed) {
		free(r->vs);
		free(r->file);
	}
	free(r->redirect_uri);
	free(r->redirect_authority);
	free(r->rewrite_uri);
	free(r->rewrite_authority);
	retry_free(r->retry);
	route_fault_free(r->fault);
	rhdr_free(r->hdrs);
	route_cors_free(r->cors);
	rerw_free(r->rerw);
	route_mirror_free(r->mirror);
}

void route_table_free(struct route_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nvhosts; i++) {
		struct route_vhost *vh = &t->vhosts[i];

		for (size_t j = 0; j < vh->nroutes; j++)
			route_free(&vh->routes[j]);
		free(vh->routes);
		for (size_t j = 0; j < vh->ndomains; j++)
			free(vh->domains[j]);
		free(vh->domains);
		free(vh->name);
	}
	free(t->vhosts);
	free(t->hash);
	free(t->wild);
	free(t->name);
	free(t);
}
