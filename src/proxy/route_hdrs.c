/* route_hdrs: VirtualService header operations compiled per route (see route_hdrs.h for the
 * semantics and where they are applied).
 *
 * Compiling runs Envoy's evaluation over a symbolic message: the fields it already has are
 * unknown, so a remove or a set of name N records N in `drop` (all of the message's N
 * fields go) and deletes the fields named N emitted so far; a set then emits its field;
 * an add emits its field. What is left is exact for any message: its fields minus those
 * named in drop, then emit. Per request nothing is allocated or evaluated but the
 * lookups in drop (lists of a few names). */
#include "proxy/route_hdrs.h"
#include "proxy/route.h"
#include "proxy/fwd_io.h"
#include "core/util.h"
#include "http/h2.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool rhdr_drop(const struct rhdr_list *l, const char *name, size_t len)
{
	for (size_t i = 0; i < l->ndrop; i++)
		if (l->drop[i].nlen == len && strncasecmp(l->drop[i].name, name, len) == 0)
			return true;
	return false;
}

void rhdr_emit_h1(struct iobuf *o, const struct rhdr_list *l)
{
	for (size_t i = 0; i < l->nemit; i++)
		iob_field(o, l->emit[i].name, l->emit[i].nlen, l->emit[i].value, l->emit[i].vlen);
}

size_t rhdr_h2(struct h2_header *h, size_t *n, size_t room, const struct rhdr_list *l)
{
	size_t i;

	for (i = 0; l && i < l->nemit && *n < room; i++)
		h[(*n)++] = (struct h2_header){ { l->emit[i].name, l->emit[i].nlen },
		                                { l->emit[i].value, l->emit[i].vlen } };
	return l ? l->nemit - i : 0;
}

/* A list being compiled: room for every operation of the levels it runs. */
struct rhdr_b {
	struct rhdr_field *drop, *emit;
	size_t ndrop, nemit, cap;
};

static char *lower_dup(const char *s)
{
	char *d = xstrdup(s);

	for (char *p = d; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return d;
}

/* The value as sent: Envoy's format string with "%%" as "%" (the decoder refused any
 * %VARIABLE%). */
static char *value_dup(const char *s)
{
	char *d = xstrdup(s), *o = d;

	for (const char *p = s; *p; p++) {
		*o++ = *p;
		if (p[0] == '%' && p[1] == '%')
			p++;
	}
	*o = '\0';
	return d;
}

static void b_remove(struct rhdr_b *b, const char *name)
{
	size_t len = strlen(name), k = 0;

	for (size_t i = 0; i < b->nemit; i++) {
		if (b->emit[i].nlen == len && strcasecmp(b->emit[i].name, name) == 0) {
			free(b->emit[i].name);
			free(b->emit[i].value);
			continue;
		}
		b->emit[k++] = b->emit[i];
	}
	b->nemit = k;
	if (rhdr_drop(&(struct rhdr_list){ .drop = b->drop, .ndrop = b->ndrop }, name, len))
		return;
	b->drop[b->ndrop++] = (struct rhdr_field){ lower_dup(name), len, NULL, 0 };
}

static void b_emit(struct rhdr_b *b, const char *name, const char *value)
{
	char *v = value_dup(value);

	b->emit[b->nemit++] = (struct rhdr_field){ lower_dup(name), strlen(name), v, strlen(v) };
}

static int cmp_entry(const void *a, const void *b)
{
	const struct res_strmap_entry *const *x = a, *const *y = b;

	return strcmp((*x)->key, (*y)->key);
}

/* m's entries in Istio's order (sorted by name, stably: Go's sort.Stable over a map's
 * keys, which are distinct), in sorted[0 .. m->n). */
static void sorted_entries(const struct res_strmap *m, const struct res_strmap_entry **sorted)
{
	for (size_t i = 0; i < m->n; i++)
		sorted[i] = &m->v[i];
	qsort(sorted, m->n, sizeof(*sorted), cmp_entry);
}

static bool is_authority(const char *k)
{
	return strcasecmp(k, ":authority") == 0 || strcasecmp(k, "host") == 0;
}

/* One level's operations, as Envoy evaluates them: removes, then the set fields, then the
 * add fields. Host and :authority (route level, request) are the route's host rewrite,
 * not fields. An empty value adds nothing and removes nothing (keep_empty_value false). */
static void b_level(struct rhdr_b *b, const struct vs_header_ops *ops)
{
	const struct res_strmap_entry *sorted[VS_HEADER_OPS_MAX];

	if (!ops)
		return;
	for (size_t i = 0; i < ops->remove.n; i++)
		b_remove(b, ops->remove.v[i]);
	for (int pass = 0; pass < 2; pass++) {
		const struct res_strmap *m = pass == 0 ? &ops->set : &ops->add;

		if (m->n > VS_HEADER_OPS_MAX)   /* refused by the decoder */
			continue;
		sorted_entries(m, sorted);
		for (size_t i = 0; i < m->n; i++) {
			const struct res_strmap_entry *e = sorted[i];

			if (!e->value || !*e->value || is_authority(e->key))
				continue;
			if (pass == 0)
				b_remove(b, e->key);
			b_emit(b, e->key, e->value);
		}
	}
}

static size_t ops_count(const struct vs_header_ops *ops)
{
	return ops ? ops->remove.n + ops->set.n + ops->add.n : 0;
}

/* The list of one direction for levels outer (the destination's, or NULL) then inner (the
 * route's). */
static void list_build(struct rhdr_list *out, const struct vs_header_ops *dest,
                       const struct vs_header_ops *route)
{
	struct rhdr_b b = { 0 };

	b.cap = ops_count(dest) + ops_count(route);
	memset(out, 0, sizeof(*out));
	if (!b.cap)
		return;
	b.drop = xcalloc(b.cap, sizeof(*b.drop));
	b.emit = xcalloc(b.cap, sizeof(*b.emit));
	b_level(&b, dest);
	b_level(&b, route);
	out->drop = b.drop;
	out->ndrop = b.ndrop;
	out->emit = b.emit;
	out->nemit = b.nemit;
}

static void set_build(struct rhdr *out, const struct vs_headers *dest,
                      const struct vs_headers *route)
{
	list_build(&out->req, dest ? dest->request : NULL, route ? route->request : NULL);
	list_build(&out->resp, dest ? dest->response : NULL, route ? route->response : NULL);
}

static bool headers_any(const struct vs_headers *h)
{
	return h && (ops_count(h->request) || ops_count(h->response));
}

void rhdr_compile(struct route *out, const struct vs_http_route *hr)
{
	const struct vs_header_ops *rq = hr->headers ? hr->headers->request : NULL;
	bool any = headers_any(hr->headers);
	struct rhdr_route *h;

	/* Istio: the route's request set/add of host or :authority is its host rewrite. */
	for (int pass = 0; rq && pass < 2; pass++) {
		const struct res_strmap *m = pass == 0 ? &rq->set : &rq->add;

		for (size_t i = 0; i < m->n; i++)
			if (m->v[i].value && is_authority(m->v[i].key) && !out->rewrite_authority)
				out->rewrite_authority = xstrdup(m->v[i].value);
	}
	for (size_t i = 0; i < hr->route.n && !any; i++)
		any = headers_any(hr->route.v[i].headers);
	if (!any)
		return;
	h = xcalloc(1, sizeof(*h));
	set_build(&h->route, NULL, hr->headers);
	/* out->dests holds hr->route's destinations in order (snap_route_build). */
	h->ndest = out->ndests;
	h->dest = h->ndest ? xcalloc(h->ndest, sizeof(*h->dest)) : NULL;
	for (size_t i = 0; i < h->ndest && i < hr->route.n; i++)
		set_build(&h->dest[i], hr->route.v[i].headers, hr->headers);
	out->hdrs = h;
}

static void list_free(struct rhdr_list *l)
{
	for (size_t i = 0; i < l->ndrop; i++)
		free(l->drop[i].name);
	for (size_t i = 0; i < l->nemit; i++) {
		free(l->emit[i].name);
		free(l->emit[i].value);
	}
	free(l->drop);
	free(l->emit);
}

static void set_free(struct rhdr *s)
{
	list_free(&s->req);
	list_free(&s->resp);
}

void rhdr_free(struct rhdr_route *h)
{
	if (!h)
		return;
	set_free(&h->route);
	for (size_t i = 0; i < h->ndest; i++)
		set_free(&h->dest[i]);
	free(h->dest);
	free(h);
}
