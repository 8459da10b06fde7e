/* store_index_own: the store index told what this process wrote, so that the next
 * `egressctl apply` does not list the directory the last one wrote into.
 *
 * Why: the index knows a directory by its change time. A write (a new file renamed into
 * place) changes it, so the next open sees a changed directory and lists it again, one
 * fstatat() per entry: 10,000 at 10,000 hosts, about 40% of an apply's CPU. The writer
 * knows what it changed, but "what I changed" is not enough to record the directory's new
 * time: a foreign writer (kubectl cp, an editor, another egressctl) may have changed the
 * directory too, and recording the time after both would hide that change for good. So a
 * write is recorded only when these hold, checked in this order:
 *  1. before the write (store_index_will_write): the directory's stat() equals its record
 *     in the index, and that record is not racy: nothing changed it since it was listed
 *     (or since the last own write recorded);
 *  2. after the write (store_index_wrote): the coarse clock has passed the directory's
 *     change time when it is stat()ed (waiting up to a few ms, no CPU): any later change,
 *     by anyone, gets a later time and is seen by the next open (the reason the index
 *     otherwise treats a directory changed in the last 50 ms as racy);
 *  3. the directory is listed without stat() (names, types and inode numbers from
 *     getdents, about 1 ms at 10,000 entries), after that stat(): it holds exactly the
 *     files and subdirectories of its record, the written file under its new inode, and
 *     no symlink or entry of unknown type. A file added, removed or renamed over by anyone
 *     between 1 and 3 fails this, and the write is not recorded (the next open lists the
 *     directory as before).
 * Not seen: a file deleted and made again under the same name, reusing the same inode
 * number (ext4 does), inside the write itself (between the stat of 1 and the rename,
 * under a millisecond; the fsync of the new file is the longest part). That needs two
 * operations by another writer inside that window; a change to the same file after it
 * is seen (it changes the directory's time after 2).
 *
 * The records (the file's F and R lines, then the directory's W line) are appended to the
 * index file under an flock() of it, only when the file is still the one this process
 * read (same inode and size: no other writer saved or appended since) and nothing else
 * changed in the index since it was read; otherwise the whole index is saved, or nothing
 * (the cost is a listing at the next open, never a wrong answer). A reader applies an
 * appended directory record only when the whole line is there; a torn one (a crash while
 * appending) is ignored and the index rewritten. After SIDX_SAVE_AFTER appended records
 * the index is rewritten whole. */
#include "config/store_index.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config/store_index_int.h"
#include "config/store_int.h"
#include "core/util.h"

/* The directory record (live) whose path under config/ is rel, or SIDX_NONE. */
static size_t own_dir_at(const struct store_index *ix, const char *rel)
{
	for (size_t d = 0; d < ix->ndirs; d++)
		if (!ix->dirs[d].gone && strcmp(ix->dirs[d].rel, rel) == 0)
			return d;
	return SIDX_NONE;
}

/* Splits path (a file under config/) into its directory's record and its name. */
static size_t own_split(const struct store_index *ix, const char *path, const char **name)
{
	size_t clen = strlen(ix->cdir);
	const char *rest, *slash;
	char *rel;
	size_t d;

	if (strncmp(path, ix->cdir, clen) != 0 || path[clen] != '/')
		return SIDX_NONE;
	rest = path + clen + 1;
	slash = strrchr(rest, '/');
	*name = slash ? slash + 1 : rest;
	if (!**name || !sidx_config_name(*name) || str_has_prefix(*name, ".."))
		return SIDX_NONE;
	rel = slash ? xstrndup(rest, (size_t)(slash - rest)) : xstrdup(".");
	d = strstr(rel, "//") || strstr(rel, "./") || str_has_prefix(rel, "../") ? SIDX_NONE
	                                                                        : own_dir_at(ix, rel);
	free(rel);
	return d;
}

static bool own_same_dir(const struct sidx_dir *d, const struct stat *st)
{
	return d->dev == (uint64_t)st->st_dev && d->ino == (uint64_t)st->st_ino &&
	       d->ct_s == (int64_t)st->st_ctim.tv_sec && d->ct_ns == (int64_t)st->st_ctim.tv_nsec;
}

void store_index_will_write(struct store_index *ix, const char *path)
{
	const char *name;
	size_t d, f;
	char *dpath;
	struct stat st;
	int rc;

	ix->own_dir = SIDX_NONE;
	if (ix->unsure || ix->unsaveable)
		return;
	d = own_split(ix, path, &name);
	if (d == SIDX_NONE || ix->dirs[d].racy)
		return;
	sidx_fhash(ix);
	f = ix->fhash[sidx_fslot(ix, d, name)];
	if (f != SIDX_NONE && ix->files[f].link)
		return;
	dpath = sidx_dir_path(ix, d);
	rc = stat(dpath, &st);
	free(dpath);
	if (rc == 0 && own_same_dir(&ix->dirs[d], &st))
		ix->own_dir = d;
}

/* Waits (sleeping, at most ~100 ms) until the coarse clock the kernel stamps files with
 * has passed the change time in *st, stat()ing path again each time. Returns 0 with *st
 * the last stat, or -1 (a file system stamping whole seconds, or the clock not moving). */
static int own_settle(const char *path, struct stat *st)
{
	for (int i = 0; i < 100; i++) {
		struct timespec now, nap = { 0, 1000000 };

		if (stat(path, st) < 0 || st->st_ctim.tv_nsec == 0)
			return -1;
		clock_gettime(CLOCK_REALTIME_COARSE, &now);
		if (now.tv_sec > st->st_ctim.tv_sec ||
		    (now.tv_sec == st->st_ctim.tv_sec && now.tv_nsec > st->st_ctim.tv_nsec))
			return 0;
		nanosleep(&nap, NULL);
	}
	return -1;
}

/* Whether directory d (at dpath) holds exactly what its record says, with name as the
 * file of inode ino. Names and inode numbers only (getdents), as store_index_own's 3. */
static bool own_listed_same(struct store_index *ix, size_t d, const char *dpath,
                            const char *name, uint64_t ino)
{
	const char *drel = ix->dirs[d].rel;
	bool top = strcmp(drel, ".") == 0, ok = true;
	size_t want_files = 0, want_subs = 0, seen_files = 0, seen_subs = 0;
	DIR *dp;
	struct dirent *de;

	sidx_fhash(ix);
	for (size_t f = 0; f < ix->nfiles; f++)
		want_files += !ix->files[f].gone && ix->files[f].dir == d;
	for (size_t i = 0; i < ix->ndirs; i++) {
		const char *r = ix->dirs[i].rel, *slash = strrchr(r, '/');

		want_subs += !ix->dirs[i].gone && i != d &&
		             (top ? !slash && strcmp(r, ".") != 0
		                  : slash && (size_t)(slash - r) == strlen(drel) &&
		                    strncmp(r, drel, strlen(drel)) == 0);
	}
	dp = opendir(dpath);
	if (!dp)
		return false;
	while (ok && (de = readdir(dp)) != NULL) {
		const char *n = de->d_name;

		if (strcmp(n, ".") == 0 || str_has_prefix(n, ".."))
			continue;
		if (de->d_type == DT_REG) {
			size_t f;

			if (!sidx_config_name(n))
				continue;
			f = ix->fhash[sidx_fslot(ix, d, n)];
			if (strcmp(n, name) == 0) {
				ok = (uint64_t)de->d_ino == ino && (f == SIDX_NONE || !ix->files[f].link);
				seen_files += f != SIDX_NONE;
			} else {
				ok = f != SIDX_NONE && !ix->files[f].link &&
				     ix->files[f].ino == (uint64_t)de->d_ino;
				seen_files++;
			}
		} else if (de->d_type == DT_DIR) {
			char *rel = top ? xstrdup(n) : xasprintf("%s/%s", drel, n);
			size_t k = own_dir_at(ix, rel);

			free(rel);
			ok = k != SIDX_NONE && ix->dirs[k].ino == (uint64_t)de->d_ino;
			seen_subs++;
		} else {
			ok = false;   /* a link or an unknown type: what it is takes a stat */
		}
	}
	closedir(dp);
	return ok && seen_files == want_files && seen_subs == want_subs;
}

void store_index_wrote(struct store_index *ix, const char *path, bool written)
{
	size_t d = ix->own_dir, f, c0 = ix->changes;
	const char *name;
	char *dpath = NULL;
	struct stat fst, dst;

	ix->own_dir = SIDX_NONE;
	if (!written || d == SIDX_NONE || own_split(ix, path, &name) != d)
		return;
	dpath = sidx_dir_path(ix, d);
	if (lstat(path, &fst) < 0 || !S_ISREG(fst.st_mode) || own_settle(dpath, &dst) < 0 ||
	    ix->dirs[d].dev != (uint64_t)dst.st_dev || ix->dirs[d].ino != (uint64_t)dst.st_ino ||
	    !own_listed_same(ix, d, dpath, name, (uint64_t)fst.st_ino))
		goto out;
	sidx_fhash(ix);
	f = ix->fhash[sidx_fslot(ix, d, name)];
	if (f != SIDX_NONE)
		sidx_drop_file(ix, f);
	f = sidx_add_file(ix, d, sidx_own(ix, name));
	sidx_record(ix, f, &fst, false);
	sidx_parse(ix, f);
	sidx_set_times(&ix->dirs[d], &dst);
	ix->dirs[d].racy = false;   /* settled: see 2 above */
	ix->own_files = xrealloc(ix->own_files, (ix->nown_files + 1) * sizeof(*ix->own_files));
	ix->own_files[ix->nown_files++] = f;
	{
		size_t i;

		for (i = 0; i < ix->nown_dirs && ix->own_dirs[i] != d; i++)
			;
		if (i == ix->nown_dirs) {
			ix->own_dirs = xrealloc(ix->own_dirs, (ix->nown_dirs + 1) * sizeof(*ix->own_dirs));
			ix->own_dirs[ix->nown_dirs++] = d;
		}
	}
	ix->own_changes += ix->changes - c0;
out:
	free(dpath);
}
