/* store_cache: the decoded resources of config files, kept from one store_load_cached to
 * the next so that a reload parses only the files that changed.
 *
 * A file is known by its path and by what stat() says of it: device, inode, size,
 * modification and change times (nanoseconds). egressctl and the kubelet replace a file by
 * renaming a new one over it (a new inode); an editor that writes in place changes the
 * times and usually the size. A file whose identity is unchanged is not read again: its
 * resources, decoded once, are handed out again (borrowed: store_contents_free leaves
 * them). Only files that decoded with no diagnostic at all and hold no Secret are kept, so
 * every reload repeats the errors and warnings of the files that have some, and no key
 * material stays in the cache between builds. A file written in the last 50 ms when it
 * was read is "racy" (the kernel's file times are coarse: a same-size rewrite in place
 * within one tick would look unchanged, as git's racily clean entries): it is kept with
 * a hash of the bytes decoded, and handed out again only when its bytes, read again,
 * hash the same, until a load finds its times older than that. (The watcher reads 5 ms
 * after a change, so the file just changed is always racy at first.)
 *
 * One thread uses a cache at a time (egressgw's load thread; the first build before it). */
#ifndef EGRESS_CONFIG_STORE_CACHE_H
#define EGRESS_CONFIG_STORE_CACHE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <sys/stat.h>

#include "config/config.h"

struct store_cache;

/* What the last load did with config files. */
struct store_cache_stats {
	size_t files;      /* config files seen */
	size_t parsed;     /* read and decoded (new, changed, or not cacheable) */
	size_t reused;     /* unchanged: their resources came from the cache */
	size_t dropped;    /* in the cache before, gone (or changed) now */
};

struct store_cache *store_cache_new(void);
void store_cache_free(struct store_cache *c);

/* Begins a load: every file is unseen until store_cache_get or store_cache_put sees it. */
void store_cache_begin(struct store_cache *c);
/* Whether path's record, for the file st identifies, is racy: its bytes must be hashed
 * (hash_bytes) and the sum given to store_cache_get. */
bool store_cache_racy(const struct store_cache *c, const char *path, const struct stat *st);
/* The resources of path when st identifies the file the cache holds and, for a racy
 * record, sum (NULL: not read) is the hash of what it decoded (the file is then seen);
 * *v and *n borrowed, *cpath the cache's copy of the path. recent: store_recent(st) (a
 * racy record verified while not recent any more is racy no more). Returns false when
 * the file is not cached or changed (a changed file's record is dropped). */
bool store_cache_get(struct store_cache *c, const char *path, const struct stat *st,
                     const uint64_t *sum, bool recent,
                     const struct resource **v, size_t *n, const char **cpath);
/* Keeps v[0..n) (moved in: the cache owns them now) as the resources of path as st
 * describes it, decoded from bytes whose hash is sum; racy: store_recent(st). path is
 * moved in too (the record's own; v's resources may borrow it: res_decode_lent), and
 * returned. */
const char *store_cache_put(struct store_cache *c, char *path, const struct stat *st,
                            bool racy, uint64_t sum,
                            struct resource *v, size_t n, const struct resource **kept);
/* Ends a load: records of files not seen in it are dropped (the contents of this load
 * borrow only files seen in it; those of an earlier load must be freed before the next
 * load begins). */
void store_cache_end(struct store_cache *c);
void store_cache_stats(const struct store_cache *c, struct store_cache_stats *out);
/* A file counted as parsed (not cacheable) by the loader. */
void store_cache_note_parsed(struct store_cache *c);

/* The plan: the config files the last full walk (store_load_cached) read, in its order,
 * for a reload that takes the changed names from the watcher (store_load_changed) and
 * replays the walk without it. Reset as a full walk begins; spoiled by what a replay could
 * not reproduce or see changed (a link, a type the file system does not say, a path the
 * walk warned of). */
void store_cache_plan_reset(struct store_cache *c);
void store_cache_plan_add(struct store_cache *c, const char *dir, const char *name);
void store_cache_plan_spoil(struct store_cache *c);
/* Whether there is a plan (not spoiled); its n entries as (directory, name). */
bool store_cache_plan(const struct store_cache *c, size_t *n);
void store_cache_plan_at(const struct store_cache *c, size_t i, const char **dir,
                         const char **name);
/* The resources of path when the cache holds them, without a stat (the watcher said the
 * file did not change); the file is then seen. *mtime its modification time. */
bool store_cache_reuse(struct store_cache *c, const char *path, const struct resource **v,
                       size_t *n, const char **cpath, time_t *mtime);

#endif
