#include "proxy/pool.h"
#include "core/util.h"

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
