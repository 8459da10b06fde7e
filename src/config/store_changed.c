/* store_changed: a reload that reads only the config files the watcher saw change.
 *
 * Why: at 10,000 hosts a reload of one changed DestinationRule spent 200-250 ms reading,
 * nearly all of it the walk (30,000 fstatat(), the directories listed) that finds the one
 * changed file among unchanged ones. egressgw's watcher (gw_reload.c) knows which names
 * changed; this replays the last full walk (the plan store.c's walk leaves in the cache)
 * in its order, so that the contents, their order and the "already defined" diagnostics
 * are those of a full walk: a changed file is stat()ed and read, any other one comes from
 * the cache untouched. Anything the plan cannot answer (a name not in it: a file made;
 * one that is not a regular file now: removed, replaced by a directory or a link) makes
 * it the full walk, as does a plan spoiled by the walk that made it (store.c). Secrets are
 * read whole as in every load (they are never cached). */
#include "config/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/store_cache.h"
#include "config/store_int.h"
#include "core/util.h"

static int changed_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether every changed path is a plan entry's and a regular file now. */
static bool changed_all_known(const struct store_cache *cache, char *const *sorted, size_t n)
{
	size_t np, found = 0;

	if (!store_cache_plan(cache, &np))
		return false;
	for (size_t i = 0; i < np; i++) {
		const char *dir, *name;
		char buf[PATH_MAX], *path = buf;

		store_cache_plan_at(cache, i, &dir, &name);
		/* On the stack: 30,000 of them at 10,000 hosts. */
		if ((size_t)snprintf(buf, sizeof(buf), "%s/%s", dir, name) >= sizeof(buf))
			return false;
		found += bsearch(&path, sorted, n, sizeof(*sorted), changed_cmp) != NULL;
	}
	if (found != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		struct stat st;

		if (stat(sorted[i], &st) < 0 || !S_ISREG(st.st_mode))
			return false;
	}
	return true;
}

int store_load_changed(const char *root, const char *default_ns, struct store_cache *cache,
                       char *const *changed, size_t n, struct store_contents *out,
                       struct diags *d, bool *full)
{
	struct store_loader l;
	struct diags mine = DIAGS_INIT;
	char **sorted = NULL, *sdir, *dpath = NULL;
	size_t np, m = 0;
	int dfd = -1, ret;

	*full = true;
	if (!cache || !n)
		return store_load_cached(root, default_ns, cache, out, d);
	/* Sorted and without repeats, for the look-ups below. */
	sorted = xmalloc(n * sizeof(*sorted));
	memcpy(sorted, changed, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), changed_cmp);
	for (size_t i = 0; i < n; i++)
		if (!m || strcmp(sorted[m - 1], sorted[i]) != 0)
			sorted[m++] = sorted[i];
	if (!changed_all_known(cache, sorted, m)) {
		free(sorted);
		return store_load_cached(root, default_ns, cache, out, d);
	}
	*full = false;
	store_loader_init(&l, out, default_ns, &mine);
	l.cache = cache;
	l.drop_streams = true;
	store_cache_begin(cache);
	store_cache_plan(cache, &np);
	for (size_t i = 0; i < np; i++) {
		const struct resource *kept;
		const char *dir, *name, *cpath;
		char buf[PATH_MAX], *path;
		size_t nk;
		time_t mtime;
		struct stat st;

		store_cache_plan_at(cache, i, &dir, &name);
		/* changed_all_known saw every path fit. */
		snprintf(buf, sizeof(buf), "%s/%s", dir, name);
		path = buf;
		if (!bsearch(&path, sorted, m, sizeof(*sorted), changed_cmp) &&
		    store_cache_reuse(cache, buf, &kept, &nk, &cpath, &mtime)) {
			for (size_t k = 0; k < nk; k++)
				store_add(&l, &kept[k], cpath, NULL, k, mtime, false, true);
			continue;
		}
		path = xstrdup(buf);
		/* Changed, or not cached (it had diagnostics, or a Secret): read as the walk
		 * reads it, relative to its directory. */
		if (!dpath || strcmp(dpath, dir) != 0) {
			if (dfd >= 0)
				close(dfd);
			free(dpath);
			dpath = xstrdup(dir);
			dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		}
		if ((dfd >= 0 ? fstatat(dfd, name, &st, 0) : stat(path, &st)) < 0)
			diag_warn(l.d, path, 0, 0, "skipped: %s", strerror(errno));
		else if (S_ISREG(st.st_mode))
			store_load_file_cached(&l, path, dfd, name, &st);
		free(path);
	}
	if (dfd >= 0)
		close(dfd);
	free(dpath);
	sdir = store_join(root, STORE_SECRETS_DIR);
	store_load_secrets(&l, sdir);
	free(sdir);
	store_cache_end(cache);
	ret = diags_has_errors(&mine) ? -1 : 0;
	diags_merge(d, &mine);
	diags_free(&mine);
	free(sorted);
	return ret;
}
