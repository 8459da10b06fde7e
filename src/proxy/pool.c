/* pool: idle upstream connections by key, and the set of (settings, endpoint) pairs a
 * connection must still match to be used (see pool.h). */
#include "proxy/pool.h"
#include "proxy/snap.h"
#include "core/sbuf.h"
#include "core/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct pool_bucket {
	char *key;
	size_t keylen;
	uint64_t hash;
	struct pool_link head;          /* circular list sentinel */
};

struct pool {
	struct pool_bucket **slots;     /* open addressing; buckets are never removed */
	size_t mask;
	size_t nbuckets;
	size_t count;
};

struct pool *pool_new(void)
{
	struct pool *p = xcalloc(1, sizeof(*p));

	p->mask = 63;
	p->slots = xcalloc(p->mask + 1, sizeof(*p->slots));
	return p;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i <= p->mask; i++) {
		if (p->slots[i]) {
			free(p->slots[i]->key);
			free(p->slots[i]);
		}
	}
	free(p->slots);
	free(p);
}

static struct pool_bucket **pool_slot(struct pool *p, const char *key, size_t keylen,
                                      uint64_t h)
{
	size_t i = h & p->mask;

	while (p->slots[i]) {
		struct pool_bucket *b = p->slots[i];

		if (b->hash == h && b->keylen == keylen && memcmp(b->key, key, keylen) == 0)
			break;
		i = (i + 1) & p->mask;
	}
	return &p->slots[i];
}

static void pool_grow(struct pool *p)
{
	struct pool_bucket **old = p->slots;
	size_t oldsize = p->mask + 1;

	p->mask = oldsize * 2 - 1;
	p->slots = xcalloc(p->mask + 1, sizeof(*p->slots));
	for (size_t i = 0; i < oldsize; i++) {
		if (old[i]) {
			size_t j = old[i]->hash & p->mask;

			while (p->slots[j])
				j = (j + 1) & p->mask;
			p->slots[j] = old[i];
		}
	}
	free(old);
}

struct pool_link *pool_take(struct pool *p, const char *key, size_t keylen)
{
	struct pool_bucket *b = *pool_slot(p, key, keylen, hash_bytes(key, keylen));
	struct pool_link *l;

	if (!b || b->head.next == &b->head)
		return NULL;
	l = b->head.next;
	pool_remove(p, l);
	return l;
}

void pool_put(struct pool *p, const char *key, size_t keylen, struct pool_link *l)
{
	uint64_t h = hash_bytes(key, keylen);
	struct pool_bucket **slot = pool_slot(p, key, keylen, h), *b = *slot;

	if (!b) {
		if ((p->nbuckets + 1) * 2 > p->mask + 1) {
			pool_grow(p);
			slot = pool_slot(p, key, keylen, h);
		}
		b = xcalloc(1, sizeof(*b));
		b->key = xstrndup(key, keylen);
		b->keylen = keylen;
		b->hash = h;
		b->head.next = b->head.prev = &b->head;
		*slot = b;
		p->nbuckets++;
	}
	/* LIFO: newest first. */
	l->next = b->head.next;
	l->prev = &b->head;
	b->head.next->prev = l;
	b->head.next = l;
	l->bucket = b;
	p->count++;
}

void pool_remove(struct pool *p, struct pool_link *l)
{
	if (!l->bucket)
		return;
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->next = l->prev = NULL;
	l->bucket = NULL;
	p->count--;
}

size_t pool_count(const struct pool *p)
{
	return p->count;
}

void pool_each(struct pool *p, void (*fn)(struct pool_link *l, void *arg), void *arg)
{
	for (size_t i = 0; i <= p->mask; i++) {
		struct pool_bucket *b = p->slots[i];

		if (!b)
			continue;
		for (struct pool_link *l = b->head.next, *n; l != &b->head; l = n) {
			n = l->next;
			fn(l, arg);
		}
	}
}

/* ---- live connection identities ---- */

struct pool_live {
	uint64_t *v;                    /* open addressing; 0 = empty */
	size_t mask, n;
};

static uint64_t ident_mix(uint64_t conn_id, const char *s, size_t n)
{
	uint64_t h = hash_bytes(s, n) ^ (conn_id * 0x9e3779b97f4a7c15ULL);

	h ^= h >> 29;
	return h ? h : 1;
}

uint64_t pool_ident(uint64_t conn_id, const char *ep_str)
{
	return ident_mix(conn_id, ep_str, strlen(ep_str));
}

/* The identity that stands for "any endpoint" of conn_id. */
static uint64_t ident_any(uint64_t conn_id)
{
	return ident_mix(conn_id, "*", 1);
}

struct pool_live *pool_live_new(void)
{
	struct pool_live *l = xcalloc(1, sizeof(*l));

	l->mask = 63;
	l->v = xcalloc(l->mask + 1, sizeof(*l->v));
	return l;
}

void pool_live_free(struct pool_live *l)
{
	if (!l)
		return;
	free(l->v);
	free(l);
}

static void live_add(struct pool_live *l, uint64_t h)
{
	size_t i;

	if ((l->n + 1) * 2 > l->mask + 1) {
		uint64_t *old = l->v;
		size_t oldsize = l->mask + 1;

		l->mask = oldsize * 2 - 1;
		l->v = xcalloc(l->mask + 1, sizeof(*l->v));
		l->n = 0;
		for (size_t k = 0; k < oldsize; k++)
			if (old[k])
				live_add(l, old[k]);
		free(old);
	}
	for (i = h & l->mask; l->v[i]; i = (i + 1) & l->mask)
		if (l->v[i] == h)
			return;
	l->v[i] = h;
	l->n++;
}

static bool live_has(const struct pool_live *l, uint64_t h)
{
	for (size_t i = h & l->mask; l->v[i]; i = (i + 1) & l->mask)
		if (l->v[i] == h)
			return true;
	return false;
}

void pool_live_build(struct pool_live *l, const struct snap *s)
{
	memset(l->v, 0, (l->mask + 1) * sizeof(*l->v));
	l->n = 0;
	for (size_t i = 0; i < s->nclusters; i++) {
		const struct cluster *c = s->clusters[i];
		const struct cluster_eps *eps;

		if (c->discovery == CLUSTER_ORIGINAL_DST) {
			live_add(l, ident_any(c->conn_id));
			continue;
		}
		eps = cluster_eps_load(c);
		for (size_t k = 0; eps && k < eps->n; k++)
			live_add(l, pool_ident(c->conn_id, eps->v[k].str));
	}
}

bool pool_live_ok(const struct pool_live *l, uint64_t conn_id, uint64_t ident)
{
	return conn_id == 0 || live_has(l, ident) || live_has(l, ident_any(conn_id));
}

/* ---- draining gauge ---- */

struct drain_entry {
	char *name;
	long n;
	struct drain_entry *next;
};

static pthread_mutex_t drain_mu = PTHREAD_MUTEX_INITIALIZER;
static struct drain_entry *drain_list;

void pool_draining_add(const char *cluster, int delta)
{
	struct drain_entry **pp, *e;

	pthread_mutex_lock(&drain_mu);
	for (pp = &drain_list; (e = *pp) != NULL; pp = &e->next)
		if (strcmp(e->name, cluster) == 0)
			break;
	if (!e) {
		e = xcalloc(1, sizeof(*e));
		e->name = xstrdup(cluster);
		*pp = e;
	}
	e->n += delta;
	if (e->n <= 0) {
		/* Back to none: forgotten, so that names of long-gone clusters do not pile up. */
		*pp = e->next;
		free(e->name);
		free(e);
	}
	pthread_mutex_unlock(&drain_mu);
}

static void drain_line(struct sbuf *out, const char *name, long n)
{
	sbuf_adds(out, "egressgw_cluster_upstream_cx_draining{cluster_name=\"");
	sbuf_adds(out, name);
	sbuf_addf(out, "\"} %ld\n", n);
}

void pool_draining_prom(struct sbuf *out, const char *const *names, size_t n)
{
	pthread_mutex_lock(&drain_mu);
	sbuf_adds(out, "# HELP egressgw_cluster_upstream_cx_draining Upstream connections made "
	          "under settings or to endpoints that are gone, closing when their request ends.\n"
	          "# TYPE egressgw_cluster_upstream_cx_draining gauge\n");
	for (size_t i = 0; i < n; i++) {
		long v = 0;

		for (struct drain_entry *e = drain_list; e; e = e->next)
			if (strcmp(e->name, names[i]) == 0)
				v = e->n;
		drain_line(out, names[i], v);
	}
	for (struct drain_entry *e = drain_list; e; e = e->next) {
		bool listed = false;

		for (size_t i = 0; i < n && !listed; i++)
			listed = strcmp(e->name, names[i]) == 0;
		if (!listed)
			drain_line(out, e->name, e->n);
	}
	pthread_mutex_unlock(&drain_mu);
}
