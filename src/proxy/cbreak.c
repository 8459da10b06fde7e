#include "proxy/cbreak.h"
#include "proxy/snap.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

struct cb_table {
	struct cb_cluster **slots;      /* open addressing, linear probing */
	size_t mask;
	size_t count;
	size_t gc_at;                   /* collect when count reaches this */
	struct hstats *pub;             /* where outlier state is mirrored (cb_table_publish) */
};

struct cb_table *cb_table_new(void)
{
	struct cb_table *t = xcalloc(1, sizeof(*t));

	t->mask = 15;
	t->slots = xcalloc(t->mask + 1, sizeof(*t->slots));
	t->gc_at = 8;
	return t;
}

void cb_table_publish(struct cb_table *t, struct hstats *pub)
{
	t->pub = pub;
}

static void cb_entry_free(struct cb_cluster *c)
{
	od_set_fini(&c->od);
	free(c->name);
	free(c);
}

void cb_table_free(struct cb_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i <= t->mask; i++)
		if (t->slots[i])
			cb_entry_free(t->slots[i]);
	free(t->slots);
	free(t);
}

static void cb_insert(struct cb_cluster **slots, size_t mask, struct cb_cluster *c)
{
	size_t i = c->hash & mask;

	while (slots[i])
		i = (i + 1) & mask;
	slots[i] = c;
}

/* Rebuilds the table without the entries nothing uses whose cluster is gone from the
 * current snapshot, at a size fit for what is left. */
static void cb_rebuild(struct cb_table *t, const struct snap *cur)
{
	struct cb_cluster **old = t->slots;
	size_t oldsize = t->mask + 1, keep = 0, size = 16;

	for (size_t i = 0; i < oldsize; i++) {
		struct cb_cluster *c = old[i];

		if (!c)
			continue;
		if (c->refs == 0 && (!cur || !snap_cluster_find(cur, c->name))) {
			cb_entry_free(c);
			old[i] = NULL;
			continue;
		}
		keep++;
	}
	while (size < (keep + 1) * 2)
		size *= 2;
	t->slots = xcalloc(size, sizeof(*t->slots));
	t->mask = size - 1;
	for (size_t i = 0; i < oldsize; i++)
		if (old[i])
			cb_insert(t->slots, t->mask, old[i]);
	free(old);
	t->count = keep;
	t->gc_at = keep * 2 > 8 ? keep * 2 : 8;
}

struct cb_cluster *cb_get(struct cb_table *t, const char *name, const struct snap *cur)
{
	uint64_t h = hash_bytes(name, strlen(name));
	size_t i = h & t->mask;
	struct cb_cluster *c;

	for (; (c = t->slots[i]) != NULL; i = (i + 1) & t->mask) {
		if (c->hash == h && strcmp(c->name, name) == 0) {
			c->refs++;
			return c;
		}
	}
	if (t->count + 1 >= t->gc_at || (t->count + 1) * 2 > t->mask + 1)
		cb_rebuild(t, cur);
	c = xcalloc(1, sizeof(*c));
	c->name = xstrdup(name);
	c->hash = h;
	cb_list_init(&c->queue);
	cb_list_init(&c->idle);
	c->refs = 1;
	c->od.pub = t->pub;
	c->od.pub_cluster = c->name;
	cb_insert(t->slots, t->mask, c);
	t->count++;
	return c;
}

void cb_ref(struct cb_cluster *c)
{
	c->refs++;
}

void cb_unref(struct cb_cluster *c)
{
	c->refs--;
}

size_t cb_count(const struct cb_table *t)
{
	return t->count;
}
