/* store_cache: decoded config files kept between loads (see store_cache.h).
 *
 * Records live in one array, indexed by a hash of the path (open addressing, slot =
 * record + 1, 0 = empty). A record whose file changed or went away is emptied at once
 * and stays in the array, dead, so that the same path finds it again; once half the
 * records are dead the array is compacted and the index rebuilt, which keeps both linear
 * in the number of files. */
#include "config/store_cache.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct store_cache_rec {
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	struct resource *res;
	size_t nres;
	unsigned gen;          /* the load that last saw it */
	bool live;
	bool racy;             /* written just before it was read: its bytes are checked */
	uint64_t sum;          /* hash_bytes of the bytes decoded (racy records) */
};

struct store_cache {
	struct store_cache_rec *v;
	size_t n, cap, ndead;
	size_t *index;
	size_t mask;
	unsigned gen;
	struct store_cache_stats stats;
	/* The plan (store_cache.h): directories in walk order, each once per run of files;
	 * files as (directory number, name). */
	char **pdirs;
	size_t npdirs, pdirs_cap;
	/* Names in one buffer and 8 bytes a file: the plan of 10,000 hosts was 1.5 MB of
	 * RSS with a struct of pointers and a malloc per name, 0.7 MB so. */
	struct { uint32_t dir, name; } *pfiles;
	size_t npfiles, pfiles_cap;
	char *pnames;
	size_t pnames_len, pnames_cap;
	bool plan_ok;
};

struct store_cache *store_cache_new(void)
{
	return xcalloc(1, sizeof(struct store_cache));
}

static void store_cache_empty(struct store_cache_rec *r)
{
	for (size_t i = 0; i < r->nres; i++)
		res_free(&r->res[i]);
	free(r->res);
	r->res = NULL;
	r->nres = 0;
}

static struct store_cache_rec *store_cache_find(const struct store_cache *c, const char *path);

void store_cache_plan_reset(struct store_cache *c)
{
	for (size_t i = 0; i < c->npdirs; i++)
		free(c->pdirs[i]);
	c->npdirs = c->npfiles = c->pnames_len = 0;
	c->plan_ok = true;
}

void store_cache_plan_add(struct store_cache *c, const char *dir, const char *name)
{
	if (!c->npdirs || strcmp(c->pdirs[c->npdirs - 1], dir) != 0) {
		if (c->npdirs == c->pdirs_cap) {
			c->pdirs_cap = c->pdirs_cap ? c->pdirs_cap * 2 : 16;
			c->pdirs = xrealloc(c->pdirs, c->pdirs_cap * sizeof(*c->pdirs));
		}
		c->pdirs[c->npdirs++] = xstrdup(dir);
	}
	size_t len = strlen(name) + 1;

	if (c->npfiles == c->pfiles_cap) {
		c->pfiles_cap = c->pfiles_cap ? c->pfiles_cap * 2 : 256;
		c->pfiles = xrealloc(c->pfiles, c->pfiles_cap * sizeof(*c->pfiles));
	}
	if (c->pnames_len + len > c->pnames_cap) {
		while (c->pnames_len + len > c->pnames_cap)
			c->pnames_cap = c->pnames_cap ? c->pnames_cap * 2 : 4096;
		c->pnames = xrealloc(c->pnames, c->pnames_cap);
	}
	/* Offsets of 32 bits: a plan past 4 GB of names (or files) is no plan. */
	if (c->npdirs > UINT32_MAX || c->pnames_len > UINT32_MAX - len) {
		c->plan_ok = false;
		return;
	}
	memcpy(c->pnames + c->pnames_len, name, len);
	c->pfiles[c->npfiles].dir = (uint32_t)(c->npdirs - 1);
	c->pfiles[c->npfiles++].name = (uint32_t)c->pnames_len;
	c->pnames_len += len;
}

void store_cache_plan_spoil(struct store_cache *c)
{
	c->plan_ok = false;
}

bool store_cache_plan(const struct store_cache *c, size_t *n)
{
	*n = c->npfiles;
	return c->plan_ok;
}

void store_cache_plan_at(const struct store_cache *c, size_t i, const char **dir,
                         const char **name)
{
	*dir = c->pdirs[c->pfiles[i].dir];
	*name = c->pnames + c->pfiles[i].name;
}

bool store_cache_reuse(struct store_cache *c, const char *path, const struct resource **v,
                       size_t *n, const char **cpath, time_t *mtime)
{
	struct store_cache_rec *r = store_cache_find(c, path);

	if (!r || !r->live)
		return false;
	c->stats.files++;
	c->stats.reused++;
	r->gen = c->gen;
	*v = r->res;
	*n = r->nres;
	*cpath = r->path;
	*mtime = r->mtime.tv_sec;
	return true;
}

void store_cache_free(struct store_cache *c)
{
	if (!c)
		return;
	store_cache_plan_reset(c);
	free(c->pdirs);
	free(c->pfiles);
	free(c->pnames);
	for (size_t i = 0; i < c->n; i++) {
		store_cache_empty(&c->v[i]);
		free(c->v[i].path);
	}
	free(c->v);
	free(c->index);
	free(c);
}

static size_t store_cache_slot(const struct store_cache *c, const char *path)
{
	size_t k = hash_bytes(path, strlen(path)) & c->mask;

	for (;; k = (k + 1) & c->mask)
		if (!c->index[k] || strcmp(c->v[c->index[k] - 1].path, path) == 0)
			return k;
}

static void store_cache_reindex(struct store_cache *c)
{
	size_t want = 64;

	while (want < (c->n + 1) * 2)
		want *= 2;
	free(c->index);
	c->mask = want - 1;
	c->index = xcalloc(want, sizeof(*c->index));
	for (size_t i = 0; i < c->n; i++)
		c->index[store_cache_slot(c, c->v[i].path)] = i + 1;
}

static struct store_cache_rec *store_cache_find(const struct store_cache *c, const char *path)
{
	size_t k;

	if (!c->index)
		return NULL;
	k = store_cache_slot(c, path);
	return c->index[k] ? &c->v[c->index[k] - 1] : NULL;
}

void store_cache_begin(struct store_cache *c)
{
	c->gen++;
	memset(&c->stats, 0, sizeof(c->stats));
}

static bool store_cache_same(const struct store_cache_rec *r, const struct stat *st)
{
	return r->dev == st->st_dev && r->ino == st->st_ino && r->size == st->st_size &&
	       r->mtime.tv_sec == st->st_mtim.tv_sec && r->mtime.tv_nsec == st->st_mtim.tv_nsec &&
	       r->ctime.tv_sec == st->st_ctim.tv_sec && r->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

bool store_cache_racy(const struct store_cache *c, const char *path, const struct stat *st)
{
	const struct store_cache_rec *r = store_cache_find(c, path);

	return r && r->live && r->racy && store_cache_same(r, st);
}

bool store_cache_get(struct store_cache *c, const char *path, const struct stat *st,
                     const uint64_t *sum, bool recent,
                     const struct resource **v, size_t *n, const char **cpath)
{
	struct store_cache_rec *r = store_cache_find(c, path);

	c->stats.files++;
	if (!r || !r->live)
		return false;
	if (!store_cache_same(r, st) || (r->racy && (!sum || *sum != r->sum))) {
		store_cache_empty(r);
		r->live = false;
		c->ndead++;
		c->stats.dropped++;
		return false;
	}
	if (r->racy && !recent)
		r->racy = false;
	r->gen = c->gen;
	*v = r->res;
	*n = r->nres;
	*cpath = r->path;
	c->stats.reused++;
	return true;
}

const char *store_cache_put(struct store_cache *c, char *path, const struct stat *st,
                            bool racy, uint64_t sum,
                            struct resource *v, size_t n, const struct resource **kept)
{
	struct store_cache_rec *r = store_cache_find(c, path);

	c->stats.parsed++;
	if (r) {
		if (r->live)
			store_cache_empty(r);
		else
			c->ndead--;
		/* The same name: the index, which hashes it, stays right. */
		free(r->path);
		r->path = path;
	} else {
		if (c->n == c->cap) {
			c->cap = c->cap ? c->cap * 2 : 64;
			c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
		}
		r = &c->v[c->n++];
		memset(r, 0, sizeof(*r));
		r->path = path;
		if (!c->index || (c->n + 1) * 2 > c->mask + 1)
			store_cache_reindex(c);
		else
			c->index[store_cache_slot(c, path)] = c->n;
	}
	r->dev = st->st_dev;
	r->ino = st->st_ino;
	r->size = st->st_size;
	r->mtime = st->st_mtim;
	r->ctime = st->st_ctim;
	r->res = n ? xmalloc(n * sizeof(*r->res)) : NULL;
	if (n)
		memcpy(r->res, v, n * sizeof(*r->res));
	r->nres = n;
	r->gen = c->gen;
	r->live = true;
	r->racy = racy;
	r->sum = sum;
	*kept = r->res;
	return r->path;
}

void store_cache_note_parsed(struct store_cache *c)
{
	c->stats.parsed++;
}

void store_cache_end(struct store_cache *c)
{
	size_t j = 0;

	/* The plan to its size: kept until the next full walk, grown by doubling. */
	if (c->npfiles && c->pfiles_cap > c->npfiles + c->npfiles / 4) {
		c->pfiles_cap = c->npfiles;
		c->pfiles = xrealloc(c->pfiles, c->pfiles_cap * sizeof(*c->pfiles));
	}
	if (c->pnames_len && c->pnames_cap > c->pnames_len + c->pnames_len / 4) {
		c->pnames_cap = c->pnames_len;
		c->pnames = xrealloc(c->pnames, c->pnames_cap);
	}

	for (size_t i = 0; i < c->n; i++) {
		struct store_cache_rec *r = &c->v[i];

		if (r->live && r->gen != c->gen) {
			store_cache_empty(r);
			r->live = false;
			c->ndead++;
			c->stats.dropped++;
		}
	}
	if (c->ndead * 2 <= c->n)
		return;
	for (size_t i = 0; i < c->n; i++) {
		if (c->v[i].live)
			c->v[j++] = c->v[i];
		else
			free(c->v[i].path);
	}
	c->n = j;
	c->ndead = 0;
	store_cache_reindex(c);
}

void store_cache_stats(const struct store_cache *c, struct store_cache_stats *out)
{
	*out = c->stats;
}
