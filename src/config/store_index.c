/* store_index: the on-disk index of where each resource of config/ lives (see
 * store_index.h for what it records and why it is checked rather than trusted).
 *
 * In memory: directories, files and resources in three arrays. A file's resources are a
 * contiguous range of the resource array (a file is parsed whole, its resources appended
 * together); dropping a file marks it and its range gone, and saving leaves gone records
 * out. Strings read from the index point into the file's buffer, which lives as long as
 * the index; strings made later are kept in a list of owned strings. A hash table over the
 * live resources (kind, namespace, name; chained through res.next so that an object
 * defined twice is found in both files) is rebuilt after any change, before a look-up.
 * The records are declared in store_index_int.h; the file's format is store_index_file.c. */
#include "config/store_index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/resource.h"
#include "config/store_index_int.h"
#include "config/store_int.h"
#include "core/sbuf.h"
#include "core/util.h"

/* ---- records ---- */

const char *sidx_own(struct store_index *ix, const char *s)
{
	char *c = xstrdup(s);

	if (strpbrk(c, " \n\r\t"))
		ix->unsaveable = true;
	if (ix->nowned == ix->owned_cap) {
		ix->owned_cap = ix->owned_cap ? ix->owned_cap * 2 : 64;
		ix->owned = xrealloc(ix->owned, ix->owned_cap * sizeof(*ix->owned));
	}
	ix->owned[ix->nowned++] = c;
	return c;
}

size_t sidx_add_dir(struct store_index *ix, const char *rel)
{
	struct sidx_dir *d;

	if (ix->ndirs == ix->dirs_cap) {
		ix->dirs_cap = ix->dirs_cap ? ix->dirs_cap * 2 : 16;
		ix->dirs = xrealloc(ix->dirs, ix->dirs_cap * sizeof(*ix->dirs));
	}
	d = &ix->dirs[ix->ndirs];
	memset(d, 0, sizeof(*d));
	d->rel = rel;
	return ix->ndirs++;
}

size_t sidx_add_file(struct store_index *ix, size_t dir, const char *name)
{
	struct sidx_file *f;

	if (ix->nfiles == ix->files_cap) {
		ix->files_cap = ix->files_cap ? ix->files_cap * 2 : 256;
		ix->files = xrealloc(ix->files, ix->files_cap * sizeof(*ix->files));
	}
	f = &ix->files[ix->nfiles];
	memset(f, 0, sizeof(*f));
	f->dir = dir;
	f->name = name;
	f->r0 = ix->nres;
	return ix->nfiles++;
}

struct sidx_res *sidx_add_res(struct store_index *ix, size_t file)
{
	struct sidx_res *r;

	if (ix->nres == ix->res_cap) {
		ix->res_cap = ix->res_cap ? ix->res_cap * 2 : 256;
		ix->res = xrealloc(ix->res, ix->res_cap * sizeof(*ix->res));
	}
	r = &ix->res[ix->nres++];
	memset(r, 0, sizeof(*r));
	r->file = file;
	r->next = SIDX_NONE;
	ix->files[file].nr++;
	return r;
}

void sidx_drop_file(struct store_index *ix, size_t f)
{
	struct sidx_file *fp = &ix->files[f];

	fp->gone = true;
	for (size_t i = fp->r0; i < fp->r0 + fp->nr; i++)
		ix->res[i].gone = true;
	ix->changes++;
	ix->hash_ok = false;
}

/* Drops directory d, everything under it and their files. */
static void sidx_drop_tree(struct store_index *ix, size_t d)
{
	const char *rel = ix->dirs[d].rel;
	size_t len = strlen(rel);

	for (size_t i = 0; i < ix->ndirs; i++) {
		const char *r = ix->dirs[i].rel;

		if (ix->dirs[i].gone || !(strcmp(r, rel) == 0 ||
		                          (strncmp(r, rel, len) == 0 && r[len] == '/')))
			continue;
		ix->dirs[i].gone = true;
		for (size_t f = 0; f < ix->nfiles; f++)
			if (!ix->files[f].gone && ix->files[f].dir == i)
				sidx_drop_file(ix, f);
	}
	ix->changes++;
}

char *sidx_dir_path(const struct store_index *ix, size_t d)
{
	const char *rel = ix->dirs[d].rel;

	return strcmp(rel, ".") == 0 ? xstrdup(ix->cdir) : xasprintf("%s/%s", ix->cdir, rel);
}

static char *sidx_file_path(const struct store_index *ix, size_t f)
{
	const char *rel = ix->dirs[ix->files[f].dir].rel;

	return strcmp(rel, ".") == 0 ? xasprintf("%s/%s", ix->cdir, ix->files[f].name)
	                             : xasprintf("%s/%s/%s", ix->cdir, rel, ix->files[f].name);
}

/* ---- scanning ---- */

/* Parses a config file and records its resources (what store_load would find in it;
 * diagnostics are the loader's business, not the index's). */
void sidx_parse(struct store_index *ix, size_t f)
{
	char *path = sidx_file_path(ix, f);
	struct ystream s;
	struct diags d = DIAGS_INIT;

	ix->st.files_parsed++;
	memset(&s, 0, sizeof(s));
	if (ydoc_parse_file(path, &s, &d) == 0) {
		for (size_t i = 0; i < s.ndocs; i++) {
			struct resource r;
			struct sidx_res *x;

			if (!s.docs[i].root || res_decode(&s, &s.docs[i], ix->default_ns, &r, &d) < 0)
				continue;
			x = sidx_add_res(ix, f);
			x->kind = r.kind;
			x->ns = sidx_own(ix, r.namespace);
			x->name = sidx_own(ix, r.name);
			if (r.kind == RES_SERVICE_ENTRY && r.u.se->hosts.n) {
				x->hosts = xcalloc(r.u.se->hosts.n, sizeof(*x->hosts));
				for (size_t k = 0; k < r.u.se->hosts.n; k++) {
					char h[300];

					res_norm_host(r.u.se->hosts.v[k], r.namespace, h, sizeof(h));
					x->hosts[x->nhosts++] = sidx_own(ix, h);
				}
			}
			res_free(&r);
		}
		store_cleanse_stream(&s);
		ystream_free(&s);
	}
	diags_free(&d);
	free(path);
	ix->changes++;
	ix->hash_ok = false;
}

void sidx_set_times(struct sidx_dir *d, const struct stat *st)
{
	d->dev = (uint64_t)st->st_dev;
	d->ino = (uint64_t)st->st_ino;
	d->ct_s = (int64_t)st->st_ctim.tv_sec;
	d->ct_ns = (int64_t)st->st_ctim.tv_nsec;
	d->racy = store_recent(st);
}

static bool sidx_same_dir(const struct sidx_dir *d, const struct stat *st)
{
	return d->dev == (uint64_t)st->st_dev && d->ino == (uint64_t)st->st_ino &&
	       d->ct_s == (int64_t)st->st_ctim.tv_sec && d->ct_ns == (int64_t)st->st_ctim.tv_nsec;
}

/* A file as stat() (following links) sees it now. A change time too recent to know the
 * file by (an edit in place within the same clock tick would keep it) is recorded as 0,
 * which no file has: the next full check parses it again. */
void sidx_record(struct store_index *ix, size_t f, const struct stat *st, bool link)
{
	struct sidx_file *x = &ix->files[f];
	bool recent = store_recent(st);

	x->link = link;
	x->ino = (uint64_t)st->st_ino;
	x->ct_s = recent ? 0 : (int64_t)st->st_ctim.tv_sec;
	x->ct_ns = recent ? 0 : (int64_t)st->st_ctim.tv_nsec;
}

static bool sidx_same_file(const struct sidx_file *x, const struct stat *st)
{
	return x->ino == (uint64_t)st->st_ino && x->ct_s == (int64_t)st->st_ctim.tv_sec &&
	       x->ct_ns == (int64_t)st->st_ctim.tv_nsec;
}

bool sidx_config_name(const char *name)
{
	return str_has_suffix(name, ".yaml") || str_has_suffix(name, ".yml") ||
	       str_has_suffix(name, ".json");
}

/* Whether a directory of identity st is d or one of its ancestors (a symlink loop). */
static bool sidx_loop(const struct store_index *ix, size_t d, const struct stat *st)
{
	char *rel = xstrdup(ix->dirs[d].rel);
	bool loop = false;
	int depth = 0;

	for (;;) {
		for (size_t i = 0; i < ix->ndirs && !loop; i++)
			if (!ix->dirs[i].gone && strcmp(ix->dirs[i].rel, rel) == 0)
				loop = ix->dirs[i].dev == (uint64_t)st->st_dev &&
				       ix->dirs[i].ino == (uint64_t)st->st_ino;
		depth++;
		char *slash = strrchr(rel, '/');

		if (loop || strcmp(rel, ".") == 0)
			break;
		if (slash)
			*slash = '\0';
		else
			strcpy(rel, ".");
	}
	free(rel);
	return loop || depth >= SIDX_MAX_DEPTH;
}

static int sidx_cmp_file_name(const void *a, const void *b, void *arg)
{
	const struct store_index *ix = arg;

	return strcmp(ix->files[*(const size_t *)a].name, ix->files[*(const size_t *)b].name);
}

static void sidx_list(struct store_index *ix, size_t d);

/* An entry of directory d could not be stat()ed (err): it is not in the index, and the
 * cause may clear without d changing (a link's target appears, permissions come back),
 * so d is listed again at every open while it lasts. A failure other than absence also
 * makes the index unsure (not saved; loads read the whole store). */
static void sidx_unreadable(struct store_index *ix, size_t d, int err)
{
	ix->dirs[d].racy = true;
	if (err != ENOENT && err != ENOTDIR)
		ix->unsure = true;
}

/* Records directory rel (identity st) and lists it. */
static void sidx_scan(struct store_index *ix, const char *rel, const struct stat *st)
{
	size_t d = sidx_add_dir(ix, rel);

	sidx_set_times(&ix->dirs[d], st);
	ix->changes++;
	sidx_list(ix, d);
}

/* Lists directory d again and brings its files and subdirectories up to date. The stat
 * that recorded its identity came before this listing (see store_index.h). */
static void sidx_list(struct store_index *ix, size_t d)
{
	char *dpath = sidx_dir_path(ix, d);
	size_t *mine = NULL, nmine = 0, *subs = NULL, nsubs = 0;
	bool *seen_file = NULL, *seen_sub = NULL;
	const char *drel = ix->dirs[d].rel;
	bool top = strcmp(drel, ".") == 0;
	DIR *dp;
	struct dirent *de;

	ix->st.dirs_listed++;
	dp = opendir(dpath);
	if (!dp) {
		/* Gone: what it held is gone too. Unreadable (EACCES, EMFILE): it may still hold
		 * objects a full read finds, so nothing is dropped and the index is not trusted. */
		if (errno == ENOENT || errno == ENOTDIR)
			sidx_drop_tree(ix, d);
		else
			ix->unsure = true;
		free(dpath);
		return;
	}
	/* What the index holds for d: its files (sorted by name, for the look-ups below) and
	 * its subdirectories. */
	for (size_t f = 0; f < ix->nfiles; f++)
		if (!ix->files[f].gone && ix->files[f].dir == d) {
			mine = xrealloc(mine, (nmine + 1) * sizeof(*mine));
			mine[nmine++] = f;
		}
	if (nmine)
		qsort_r(mine, nmine, sizeof(*mine), sidx_cmp_file_name, ix);
	for (size_t i = 0; i < ix->ndirs; i++) {
		const char *r = ix->dirs[i].rel, *slash = strrchr(r, '/');
		bool child = !ix->dirs[i].gone && i != d &&
		             (top ? !slash && strcmp(r, ".") != 0
		                  : slash && (size_t)(slash - r) == strlen(drel) &&
		                    strncmp(r, drel, strlen(drel)) == 0);

		if (child) {
			subs = xrealloc(subs, (nsubs + 1) * sizeof(*subs));
			subs[nsubs++] = i;
		}
	}
	seen_file = xcalloc(nmine + 1, sizeof(*seen_file));
	seen_sub = xcalloc(nsubs + 1, sizeof(*seen_sub));
	while ((de = readdir(dp)) != NULL) {
		const char *name = de->d_name;
		char *sub = NULL;
		struct stat st;
		bool isdir = de->d_type == DT_DIR, isreg = de->d_type == DT_REG, link = false;

		if (strcmp(name, ".") == 0 || str_has_prefix(name, ".."))
			continue;
		if (!isdir && !isreg) {
			/* A symlink (a ConfigMap mount is symlinks all the way down) or a file
			 * system that does not say: what it points at decides. */
			sub = xasprintf("%s/%s", dpath, name);
			if (stat(sub, &st) < 0) {
				/* A link whose target does not exist yet (a ConfigMap's ..data swap
				 * in progress) or cannot be reached: the target may appear without
				 * this directory changing, so it is listed again at every open. */
				sidx_unreadable(ix, d, errno);
				free(sub);
				continue;
			}
			isdir = S_ISDIR(st.st_mode);
			isreg = S_ISREG(st.st_mode);
			link = true;
		}
		if (isreg && sidx_config_name(name)) {
			size_t lo = 0, hi = nmine, f;

			while (lo < hi) {
				size_t mid = (lo + hi) / 2;

				if (strcmp(ix->files[mine[mid]].name, name) < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			/* A regular file by its inode and change time, as sidx_stat_all: an
			 * inode number alone is reused (ext4) by a file deleted and made again. */
			if (!link && fstatat(dirfd(dp), name, &st, 0) < 0) {
				sidx_unreadable(ix, d, errno);
				if (lo < nmine && strcmp(ix->files[mine[lo]].name, name) == 0)
					seen_file[lo] = errno != ENOENT && errno != ENOTDIR;
				free(sub);
				continue;
			}
			if (lo < nmine && strcmp(ix->files[mine[lo]].name, name) == 0) {
				const struct sidx_file *o = &ix->files[mine[lo]];
				bool same = o->link == link && sidx_same_file(o, &st);

				seen_file[lo] = true;
				if (same) {
					free(sub);
					continue;
				}
				sidx_drop_file(ix, mine[lo]);
			}
			f = sidx_add_file(ix, d, sidx_own(ix, name));
			sidx_record(ix, f, &st, link);
			sidx_parse(ix, f);
		} else if (isdir) {
			char *rel = top ? xstrdup(name) : xasprintf("%s/%s", drel, name);
			size_t k;

			if (!sub) {
				sub = xasprintf("%s/%s", dpath, name);
				if (stat(sub, &st) < 0) {
					sidx_unreadable(ix, d, errno);
					free(rel);
					free(sub);
					continue;
				}
			}
			for (k = 0; k < nsubs; k++)
				if (strcmp(ix->dirs[subs[k]].rel, rel) == 0)
					break;
			if (k < nsubs) {
				seen_sub[k] = true;
				/* Another directory under the same name (a swapped link): anew. */
				if (ix->dirs[subs[k]].dev != (uint64_t)st.st_dev ||
				    ix->dirs[subs[k]].ino != (uint64_t)st.st_ino) {
					sidx_drop_tree(ix, subs[k]);
					if (!sidx_loop(ix, d, &st))
						sidx_scan(ix, sidx_own(ix, rel), &st);
				}
			} else if (!sidx_loop(ix, d, &st)) {
				sidx_scan(ix, sidx_own(ix, rel), &st);
			}
			free(rel);
		}
		free(sub);
	}
	closedir(dp);
	for (size_t i = 0; i < nmine; i++)
		if (!seen_file[i])
			sidx_drop_file(ix, mine[i]);
	for (size_t k = 0; k < nsubs; k++)
		if (!seen_sub[k])
			sidx_drop_tree(ix, subs[k]);
	free(seen_file);
	free(seen_sub);
	free(mine);
	free(subs);
	free(dpath);
}

/* Every file stat()ed, and one whose inode or change time differs from its record parsed
 * again: an edit in place keeps the inode and its directory's times, not its own change
 * time. 30,000 fstatat() calls, about 15 ms. Directory by directory, one descriptor open
 * at a time (one per directory until the end ran out of descriptors at 1,024 directories
 * under `ulimit -n 1024`). A file that is gone is dropped; one that cannot be stat()ed for
 * another reason (the directory cannot be opened: EMFILE, EACCES) is kept and the index
 * is unsure: dropping it would lose its objects for good, as its directory's times do not
 * change. */
static void sidx_stat_all(struct store_index *ix)
{
	size_t n = ix->nfiles, ndirs = ix->ndirs;
	size_t *start = xcalloc(ndirs + 2, sizeof(*start)), *order = xcalloc(n + 1, sizeof(*order));
	size_t *pos;

	ix->st.full_checks++;
	/* The live files grouped by directory (a counting sort, in file order within one). */
	for (size_t f = 0; f < n; f++)
		if (!ix->files[f].gone)
			start[ix->files[f].dir + 1]++;
	for (size_t d = 0; d < ndirs; d++)
		start[d + 1] += start[d];
	pos = xcalloc(ndirs + 1, sizeof(*pos));
	memcpy(pos, start, ndirs * sizeof(*pos));
	for (size_t f = 0; f < n; f++)
		if (!ix->files[f].gone)
			order[pos[ix->files[f].dir]++] = f;
	free(pos);
	for (size_t d = 0; d < ndirs; d++) {
		char *p;
		int fd, err;

		if (start[d] == start[d + 1])
			continue;
		p = sidx_dir_path(ix, d);
		fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		err = errno;
		free(p);
		if (fd < 0) {
			if (err != ENOENT && err != ENOTDIR) {
				ix->unsure = true;
				continue;
			}
		}
		for (size_t i = start[d]; i < start[d + 1]; i++) {
			size_t f = order[i];
			struct stat st;

			if (fd < 0 || fstatat(fd, ix->files[f].name, &st, 0) < 0) {
				err = fd < 0 ? err : errno;
				if (err != ENOENT && err != ENOTDIR) {
					ix->unsure = true;
					continue;
				}
				/* Gone (a link's target may come back: its directory is listed
				 * again at every open meanwhile). */
				if (ix->files[f].link)
					ix->dirs[d].racy = true;
				sidx_drop_file(ix, f);
				continue;
			}
			if (!S_ISREG(st.st_mode)) {
				sidx_drop_file(ix, f);
				continue;
			}
			if (sidx_same_file(&ix->files[f], &st))
				continue;
			const char *name = ix->files[f].name;
			bool link = ix->files[f].link;
			size_t nf;

			sidx_drop_file(ix, f);
			nf = sidx_add_file(ix, d, name);
			sidx_record(ix, nf, &st, link);
			sidx_parse(ix, nf);
		}
		if (fd >= 0)
			close(fd);
	}
	free(order);
	free(start);
}

void sidx_clear(struct store_index *ix)
{
	for (size_t i = 0; i < ix->nres; i++)
		free(ix->res[i].hosts);
	ix->ndirs = ix->nfiles = ix->nres = 0;
	ix->hash_ok = false;
}

/* From scratch: config/ and everything under it. */
static void sidx_rebuild(struct store_index *ix)
{
	struct stat st;

	sidx_clear(ix);
	ix->st.rebuilds++;
	ix->must_save = true;
	ix->unsure = false;
	if (stat(ix->cdir, &st) == 0 && S_ISDIR(st.st_mode))
		sidx_scan(ix, ".", &st);
}

/* Every directory stat()ed; those changed (or recorded too soon) listed again. A directory
 * that is gone or no longer one makes a rebuild (its parent changed too, unless the index
 * is wrong). */
static void sidx_check(struct store_index *ix)
{
	size_t n = ix->ndirs;

	for (size_t d = 0; d < n; d++) {
		char *path;
		struct stat st;
		int rc;

		if (ix->dirs[d].gone)
			continue;
		path = sidx_dir_path(ix, d);
		rc = stat(path, &st);
		free(path);
		if (rc < 0 || !S_ISDIR(st.st_mode) || ix->dirs[d].dev != (uint64_t)st.st_dev ||
		    ix->dirs[d].ino != (uint64_t)st.st_ino) {
			sidx_rebuild(ix);
			return;
		}
		if (sidx_same_dir(&ix->dirs[d], &st) && !ix->dirs[d].racy)
			continue;
		bool was_racy = ix->dirs[d].racy;

		sidx_set_times(&ix->dirs[d], &st);
		sidx_list(ix, d);
		/* Known by its times now: saved so, or every later open lists it again (each
		 * entry fstatat()ed: 10,000 at 10,000 hosts). */
		if (was_racy && !ix->dirs[d].racy)
			ix->must_save = true;
	}
	/* config/ created since an empty index was saved. */
	if (ix->ndirs == 0) {
		struct stat st;

		if (stat(ix->cdir, &st) == 0 && S_ISDIR(st.st_mode))
			sidx_rebuild(ix);
	}
}

/* ---- look-ups ---- */

static uint64_t sidx_key_hash(enum res_kind kind, const char *ns, const char *name)
{
	return (hash_bytes(ns, strlen(ns)) * 31 + hash_bytes(name, strlen(name))) * 131 +
	       (uint64_t)kind;
}

static bool sidx_res_is(const struct sidx_res *r, enum res_kind kind, const char *ns,
                        const char *name)
{
	return r->kind == kind && strcmp(r->name, name) == 0 && strcmp(r->ns, ns) == 0;
}

/* The slot of a key: the one whose chain holds it, or the empty one where it would go. */
static size_t sidx_slot(const struct store_index *ix, enum res_kind kind, const char *ns,
                        const char *name)
{
	size_t k = sidx_key_hash(kind, ns, name) & ix->hash_mask;

	while (ix->hash[k] != SIDX_NONE && !sidx_res_is(&ix->res[ix->hash[k]], kind, ns, name))
		k = (k + 1) & ix->hash_mask;
	return k;
}

size_t sidx_fslot(const struct store_index *ix, size_t dir, const char *name)
{
	size_t k = (hash_bytes(name, strlen(name)) * 31 + dir) & ix->fhash_mask;

	while (ix->fhash[k] != SIDX_NONE && (ix->files[ix->fhash[k]].dir != dir ||
	                                     strcmp(ix->files[ix->fhash[k]].name, name) != 0))
		k = (k + 1) & ix->fhash_mask;
	return k;
}

static void sidx_hash(struct store_index *ix)
{
	size_t want = 64;

	if (ix->hash_ok)
		return;
	while (want < ix->nres * 2 + 2)
		want *= 2;
	free(ix->hash);
	ix->hash = xmalloc(want * sizeof(*ix->hash));
	ix->hash_mask = want - 1;
	for (size_t i = 0; i < want; i++)
		ix->hash[i] = SIDX_NONE;
	/* Backwards, so that each chain is in file order. */
	for (size_t i = ix->nres; i-- > 0;) {
		struct sidx_res *r = &ix->res[i];
		size_t k;

		if (r->gone)
			continue;
		k = sidx_slot(ix, r->kind, r->ns, r->name);
		r->next = ix->hash[k];
		ix->hash[k] = i;
	}
	ix->hash_ok = true;
	ix->fhash_ok = false;
}

/* The table of files by (directory, name), built when first needed after a change. */
void sidx_fhash(struct store_index *ix)
{
	size_t want;

	if (ix->fhash_ok && ix->hash_ok)
		return;
	sidx_hash(ix);
	want = 64;
	while (want < ix->nfiles * 2 + 2)
		want *= 2;
	free(ix->fhash);
	ix->fhash = xmalloc(want * sizeof(*ix->fhash));
	ix->fhash_mask = want - 1;
	for (size_t i = 0; i < want; i++)
		ix->fhash[i] = SIDX_NONE;
	for (size_t f = 0; f < ix->nfiles; f++) {
		const struct sidx_file *x = &ix->files[f];
		size_t k;

		if (x->gone)
			continue;
		k = sidx_fslot(ix, x->dir, x->name);
		if (ix->fhash[k] == SIDX_NONE)
			ix->fhash[k] = f;
	}
	ix->fhash_ok = true;
}

static size_t sidx_find(struct store_index *ix, enum res_kind kind, const char *ns,
                        const char *name)
{
	sidx_hash(ix);
	return ix->hash[sidx_slot(ix, kind, ns, name)];
}

/* ---- the interface ---- */

struct store_index *store_index_open(const char *root, const char *default_ns)
{
	struct store_index *ix = xcalloc(1, sizeof(*ix));

	ix->root = xstrdup(root);
	ix->cdir = xasprintf("%s/%s", root, STORE_CONFIG_DIR);
	ix->default_ns = xstrdup(default_ns);
	ix->path = xasprintf("%s/%s", root, STORE_INDEX_NAME);
	ix->own_dir = SIDX_NONE;
	if (strpbrk(default_ns, " \n\r\t"))
		ix->unsaveable = true;
	if (sidx_read(ix) < 0)
		sidx_rebuild(ix);
	else
		sidx_check(ix);
	return ix;
}

void store_index_sync(struct store_index *ix)
{
	sidx_check(ix);
}

/* A file to load: its path and its record in the index (SIDX_NONE: one it does not know). */
struct sidx_want {
	char *path;
	size_t file;
};

static int sidx_cmp_want(const void *a, const void *b)
{
	const struct sidx_want *x = a, *y = b;
	int c = strcmp(x->path, y->path);

	/* Of two entries for one path, the one the index knows first. */
	return c ? c : (x->file == SIDX_NONE) - (y->file == SIDX_NONE);
}

static int sidx_cmp_path(const void *key, const void *elem)
{
	return strcmp(key, ((const struct sidx_want *)elem)->path);
}

/* The index's record of the file at rel/name under config/, or SIDX_NONE. */
static size_t sidx_file_at(struct store_index *ix, const char *rel, const char *name)
{
	sidx_fhash(ix);
	for (size_t d = 0; d < ix->ndirs; d++)
		if (!ix->dirs[d].gone && strcmp(ix->dirs[d].rel, rel) == 0)
			return ix->fhash[sidx_fslot(ix, d, name)];
	return SIDX_NONE;
}

/* Whether the files loaded hold exactly what the index says of them, and every key the
 * index places in a file was found. */
static bool sidx_verify(struct store_index *ix, const struct sidx_want *w, size_t nw,
                        const struct store_key *keys, size_t n,
                        const struct store_contents *out)
{
	size_t want = 0, have = 0;

	for (size_t i = 0; i < n; i++)
		if (sidx_find(ix, keys[i].kind, keys[i].ns, keys[i].name) != SIDX_NONE &&
		    !store_find(out, keys[i].kind, keys[i].ns, keys[i].name))
			return false;
	for (size_t p = 0; p < nw; p++)
		if (w[p].file != SIDX_NONE)
			want += ix->files[w[p].file].nr;
	for (size_t i = 0; i < out->n; i++) {
		const struct store_entry *e = &out->v[i];
		const struct sidx_want *x;
		const struct sidx_file *f;
		bool found = false;

		if (e->in_secret_dir)
			continue;
		x = bsearch(e->path, w, nw, sizeof(*w), sidx_cmp_path);
		/* A resource in a file the index does not know (the file an object would be
		 * created in, made behind its back and not yet seen): stale. */
		if (!x || x->file == SIDX_NONE)
			return false;
		f = &ix->files[x->file];
		for (size_t r = f->r0; r < f->r0 + f->nr && !found; r++)
			found = sidx_res_is(&ix->res[r], e->res.kind, e->res.namespace, e->res.name);
		if (!found)
			return false;
		have++;
	}
	return have == want;
}

int store_index_load(struct store_index *ix, const struct store_key *keys, size_t n,
                     struct store_contents *out, struct diags *d)
{
	size_t clen = strlen(ix->cdir);

	/* An object the index does not know is about to be created: first make sure no file
	 * was edited in place to define it. */
	for (size_t i = 0; i < n; i++)
		if (sidx_find(ix, keys[i].kind, keys[i].ns, keys[i].name) == SIDX_NONE) {
			sidx_stat_all(ix);
			break;
		}
	for (int attempt = 0;; attempt++) {
		struct sidx_want *w = NULL;
		char **paths;
		const char **sns = xcalloc(n + 1, sizeof(*sns));
		const char **snames = xcalloc(n + 1, sizeof(*snames));
		size_t nw = 0, cap = 0, ns = 0, k = 0;
		struct diags tmp = DIAGS_INIT;
		bool ok;
		int rc;

		for (size_t i = 0; i < n; i++) {
			size_t r = sidx_find(ix, keys[i].kind, keys[i].ns, keys[i].name);
			char *c = NULL;

			if (keys[i].kind == RES_SECRET) {
				sns[ns] = keys[i].ns;
				snames[ns++] = keys[i].name;
			} else {
				struct stat st;

				c = store_config_path(ix->root, keys[i].kind, keys[i].ns, keys[i].name);
				if (stat(c, &st) < 0) {
					free(c);
					c = NULL;
				}
			}
			size_t first = nw;

			for (;; r = ix->res[r].next) {
				if (nw + 1 >= cap) {
					cap = cap ? cap * 2 : 16;
					w = xrealloc(w, cap * sizeof(*w));
				}
				if (r == SIDX_NONE)
					break;
				w[nw].path = sidx_file_path(ix, ix->res[r].file);
				w[nw++].file = ix->res[r].file;
			}
			if (c) {
				/* config/REL/NAME: which record of the index it is, if any. */
				char *rel = xstrdup(c + clen + 1), *slash = strrchr(rel, '/');

				*slash = '\0';
				w[nw].file = SIDX_NONE;
				/* Usually the file the index placed the object in. */
				for (size_t q = first; q < nw && w[nw].file == SIDX_NONE; q++)
					if (strcmp(w[q].path, c) == 0)
						w[nw].file = w[q].file;
				if (w[nw].file == SIDX_NONE)
					w[nw].file = sidx_file_at(ix, rel, slash + 1);
				w[nw++].path = c;
				free(rel);
			}
		}
		/* In the loader's order (sorted paths), each once. */
		if (nw)
			qsort(w, nw, sizeof(*w), sidx_cmp_want);
		for (size_t i = 0; i < nw; i++) {
			if (k && strcmp(w[k - 1].path, w[i].path) == 0)
				free(w[i].path);
			else
				w[k++] = w[i];
		}
		nw = k;
		paths = xcalloc(nw + 1, sizeof(*paths));
		for (size_t i = 0; i < nw; i++)
			paths[i] = w[i].path;
		if (ix->unsure)
			rc = store_load(ix->root, ix->default_ns, out, &tmp);
		else
			rc = store_load_files(ix->root, ix->default_ns, paths, nw, sns, snames, ns,
			                      out, &tmp);
		ok = attempt > 0 || ix->unsure || sidx_verify(ix, w, nw, keys, n, out);
		for (size_t i = 0; i < nw; i++)
			free(w[i].path);
		free(w);
		free(paths);
		free(sns);
		free(snames);
		if (ok) {
			diags_merge(d, &tmp);
			diags_free(&tmp);
			return rc;
		}
		/* The files do not hold what the index says (edited in place, or the index is
		 * wrong): from scratch, and once more. */
		diags_free(&tmp);
		store_contents_free(out);
		sidx_rebuild(ix);
	}
}

/* store_index_se_hosts from the whole store read (the index is unsure). */
static const char *const *sidx_se_hosts_full(struct store_index *ix, size_t *n)
{
	struct store_contents c = STORE_CONTENTS_INIT;
	struct diags d = DIAGS_INIT;
	size_t k = 0;

	store_load(ix->root, ix->default_ns, &c, &d);
	for (size_t i = 0; i < c.n; i++)
		if (c.v[i].res.kind == RES_SERVICE_ENTRY)
			k += c.v[i].res.u.se->hosts.n;
	ix->se_hosts = xcalloc(k + 1, sizeof(*ix->se_hosts));
	k = 0;
	for (size_t i = 0; i < c.n; i++) {
		const struct resource *r = &c.v[i].res;

		for (size_t h = 0; r->kind == RES_SERVICE_ENTRY && h < r->u.se->hosts.n; h++) {
			char norm[300];

			res_norm_host(r->u.se->hosts.v[h], r->namespace, norm, sizeof(norm));
			ix->se_hosts[k++] = sidx_own(ix, norm);
		}
	}
	store_contents_free(&c);
	diags_free(&d);
	*n = k;
	return ix->se_hosts;
}

const char *const *store_index_se_hosts(struct store_index *ix, size_t *n)
{
	size_t k = 0;

	free(ix->se_hosts);
	ix->se_hosts = NULL;
	/* What the index holds may be short of the store: the store itself answers. */
	if (ix->unsure)
		return sidx_se_hosts_full(ix, n);
	for (size_t i = 0; i < ix->nres; i++)
		if (!ix->res[i].gone)
			k += ix->res[i].nhosts;
	ix->se_hosts = xcalloc(k + 1, sizeof(*ix->se_hosts));
	k = 0;
	for (size_t i = 0; i < ix->nres; i++)
		for (size_t h = 0; !ix->res[i].gone && h < ix->res[i].nhosts; h++)
			ix->se_hosts[k++] = ix->res[i].hosts[h];
	*n = k;
	return ix->se_hosts;
}

void store_index_get_stats(const struct store_index *ix, struct store_index_stats *out)
{
	*out = ix->st;
	out->dirs = out->files = out->resources = 0;
	for (size_t i = 0; i < ix->ndirs; i++)
		out->dirs += !ix->dirs[i].gone;
	for (size_t i = 0; i < ix->nfiles; i++)
		out->files += !ix->files[i].gone;
	for (size_t i = 0; i < ix->nres; i++)
		out->resources += !ix->res[i].gone;
}

void store_index_close(struct store_index *ix, bool save)
{
	struct store_index_stats st;

	if (!ix)
		return;
	store_index_get_stats(ix, &st);
	/* Own writes recorded (store_index_own.c): appended when nothing else changed since
	 * the index was read, else saved whole. A torn append, or many, make it saved whole. */
	if (ix->torn || ix->blocks >= SIDX_SAVE_AFTER)
		ix->must_save = true;
	if (save && ix->nown_files && !ix->unsaveable && !ix->unsure) {
		if (!ix->must_save && ix->changes == ix->own_changes && sidx_append(ix) == 0)
			save = false;
		else
			ix->must_save = true;
	}
	/* A few changes are not worth rewriting 30,000 records for: the next open finds them
	 * again (their directories' times changed) at the cost of parsing those files. */
	if (save && (ix->must_save || ix->changes > SIDX_SAVE_AFTER) && !ix->unsaveable &&
	    !ix->unsure &&
	    (st.files >= SIDX_MIN_FILES || ix->had_file))
		sidx_save(ix);
	sidx_clear(ix);
	free(ix->dirs);
	free(ix->files);
	free(ix->res);
	for (size_t i = 0; i < ix->nowned; i++)
		free(ix->owned[i]);
	free(ix->owned);
	free(ix->hash);
	free(ix->fhash);
	free(ix->se_hosts);
	free(ix->own_files);
	free(ix->own_dirs);
	free(ix->buf);
	free(ix->root);
	free(ix->cdir);
	free(ix->default_ns);
	free(ix->path);
	free(ix);
}
