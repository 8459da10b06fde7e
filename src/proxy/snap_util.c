/* snap_util: the snapshot compiler's shared helpers (see snap_int.h): name maps, the
 * sorted reference lists, labels, exportTo, host names and the cluster look-up. They call
 * nothing else of the compiler, so every snap_*.c file can use them without a call cycle:
 * snap.c (the driver) calls the step files (snap_gw, snap_route, snap_l4, snap_cluster,
 * snap_addr), those call one another only downwards (gw -> route, l4 -> cluster), and all
 * of them call down to these. */
#include "proxy/snap.h"
#include "proxy/snap_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"

void snap_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* ---- string map ---- */

static uint64_t snap_hash(const char *s, bool icase)
{
	size_t n = strlen(s);

	return icase ? hash_bytes_lower(s, n) : hash_bytes(s, n);
}

void snap_map_init(struct snap_map *m, bool icase)
{
	m->mask = 63;
	m->v = xcalloc(m->mask + 1, sizeof(*m->v));
	m->n = 0;
	m->icase = icase;
}

static size_t snap_map_slot(const struct snap_map *m, const char *key)
{
	size_t k = snap_hash(key, m->icase) & m->mask;

	while (m->v[k].key && (m->icase ? strcasecmp(m->v[k].key, key)
	                                : strcmp(m->v[k].key, key)) != 0)
		k = (k + 1) & m->mask;
	return k;
}

size_t snap_map_get(const struct snap_map *m, const char *key)
{
	size_t k;

	if (!m->v)
		return SIZE_MAX;
	k = snap_map_slot(m, key);
	return m->v[k].key ? m->v[k].val : SIZE_MAX;
}

void snap_map_put(struct snap_map *m, const char *key, size_t val)
{
	size_t k;

	if (!m->v)
		snap_map_init(m, false);
	if ((m->n + 1) * 2 > m->mask + 1) {
		struct snap_map old = *m;

		m->mask = m->mask * 2 + 1;
		m->v = xcalloc(m->mask + 1, sizeof(*m->v));
		for (size_t i = 0; i <= old.mask; i++)
			if (old.v[i].key)
				m->v[snap_map_slot(m, old.v[i].key)] = old.v[i];
		free(old.v);
	}
	k = snap_map_slot(m, key);
	if (m->v[k].key)
		return;
	m->v[k].key = key;
	m->v[k].val = val;
	m->n++;
}

void snap_map_fini(struct snap_map *m)
{
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* ---- sorted references ---- */

int snap_ref_cmp(const void *a, const void *b)
{
	const struct snap_ref *x = a, *y = b;
	int c = strcasecmp(x->key, y->key);

	return c ? c : x->idx < y->idx ? -1 : x->idx > y->idx;
}

const struct snap_ref *snap_refs_find(const struct snap_ref *v, size_t n, const char *key,
                                      size_t *nfound)
{
	size_t lo = 0, hi = n, end;

	/* The first ref not below key. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcasecmp(v[mid].key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (end = lo; end < n && strcasecmp(v[end].key, key) == 0; end++)
		;
	*nfound = end - lo;
	return *nfound ? &v[lo] : NULL;
}

const char *snap_label(const struct snap_b *b, const char *key)
{
	size_t klen = strlen(key);

	if (!b->p->labels)
		return NULL;
	for (const char **l = b->p->labels; *l; l++)
		if (strncmp(*l, key, klen) == 0 && (*l)[klen] == '=')
			return *l + klen + 1;
	return NULL;
}

bool snap_labels_match(const struct snap_b *b, const struct res_strmap *sel)
{
	for (size_t i = 0; i < sel->n; i++) {
		const char *v = snap_label(b, sel->v[i].key);

		if (!v || strcmp(v, sel->v[i].value ? sel->v[i].value : "") != 0)
			return false;
	}
	return true;
}

bool snap_visible(const struct res_strlist *export_to, const char *res_ns, const char *ns)
{
	if (export_to->n == 0)
		return true;
	for (size_t i = 0; i < export_to->n; i++) {
		const char *e = export_to->v[i];

		if (strcmp(e, "*") == 0 || strcmp(e, ns) == 0)
			return true;
		if (strcmp(e, ".") == 0 && strcmp(res_ns, ns) == 0)
			return true;
	}
	return false;
}

char *snap_fqdn(const char *host, const char *ns)
{
	char *out;

	if (strchr(host, '.') || strcmp(host, "*") == 0)
		out = xstrdup(host);
	else
		out = xasprintf("%s.%s" SNAP_KUBE_SUFFIX, host, ns);
	snap_lower(out);
	return out;
}

void snap_gw_ref(const char *ref, const char *vs_ns, char *out, size_t n)
{
	const char *dot;

	if (strcmp(ref, SNAP_MESH) == 0 || strchr(ref, '/')) {
		snprintf(out, n, "%s", ref);
		return;
	}
	/* Legacy form "name.ns.svc.cluster.local" (or "name.ns"). */
	dot = strchr(ref, '.');
	if (dot) {
		const char *ns = dot + 1, *end = strchr(ns, '.');
		int nslen = (int)(end ? (size_t)(end - ns) : strlen(ns));

		snprintf(out, n, "%.*s/%.*s", nslen, ns, (int)(dot - ref), ref);
		return;
	}
	snprintf(out, n, "%s/%s", vs_ns, ref);
}

const char *snap_res_id(const struct resource *r, char *out, size_t n)
{
	snprintf(out, n, "%s/%s", r->namespace, r->name);
	return out;
}

const struct resource *snap_se_for_host(const struct snap_b *b, const char *host)
{
	size_t n;
	const struct snap_ref *r = snap_refs_find(b->se_refs, b->nse_refs, host, &n);

	return r ? b->se[r->idx] : NULL;
}

const char *snap_host_ns(const struct snap_b *b, const char *host, char *out, size_t n)
{
	const struct resource *se;

	if (str_has_suffix(host, SNAP_KUBE_SUFFIX)) {
		const char *dot = strchr(host, '.');
		const char *end = host + strlen(host) - strlen(SNAP_KUBE_SUFFIX);

		if (dot && dot < end) {
			snprintf(out, n, "%.*s", (int)(end - dot - 1), dot + 1);
			if (!strchr(out, '.'))
				return out;
		}
	}
	se = snap_se_for_host(b, host);
	if (se) {
		snprintf(out, n, "%s", se->namespace);
		return out;
	}
	return NULL;
}

struct cluster *snap_cluster_find(const struct snap *s, const char *name)
{
	size_t lo = 0, hi = s->nclusters;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->clusters[mid]->name, name);

		if (c == 0)
			return s->clusters[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}
