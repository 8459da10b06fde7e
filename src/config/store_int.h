/* store_int: what the files of the store (store.c, store_secret_write.c) share, and no one
 * else uses. */
#ifndef EGRESS_CONFIG_STORE_INT_H
#define EGRESS_CONFIG_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/types.h>
#include <time.h>

#include "config/store.h"
#include "core/diag.h"

struct stat;

/* a/b, newly allocated. */
char *store_join(const char *a, const char *b);
/* Removes path and everything under it (not following links). Returns 0 or -1. */
int store_rm_tree(const char *path);
/* The names in dir (without "." and ".." and "..*" entries), sorted; free them with
 * store_free_names. Returns 0, or -1 with errno set. */
int store_list(const char *dir, char ***out, size_t *nout);
void store_free_names(char **names, size_t n);
/* store_list, with each name's d_type in *types (caller frees; DT_UNKNOWN when the file
 * system does not say). */
int store_list_typed(const char *dir, char ***out, unsigned char **types, size_t *nout);
/* Creates the directories above path (mode), with an error in d when it cannot. */
int store_mkdir_parent(const char *path, unsigned mode, struct diags *d);

/* Whether a file's times (modification or change) are too recent to know it by them: the
 * kernel stamps with a coarse clock, so a change within the same tick keeps them (within
 * 50 ms; 2 s on a file system that stamps whole seconds). */
bool store_recent(const struct stat *st);

/* Reading config/ and secrets/ (store.c), shared with store_changed.c. */
#define STORE_MAX_DEPTH    32
struct store_loader {
	struct store_contents *out;
	const char *default_ns;
	struct diags *d;
	struct store_cache *cache;  /* store_load_cached: streams are dropped after decoding */
	bool drop_streams;
	struct { dev_t dev; ino_t ino; } stack[STORE_MAX_DEPTH];
	int depth;
};

void store_loader_init(struct store_loader *l, struct store_contents *out,
                       const char *default_ns, struct diags *d);
/* Adds a decoded resource (see store.c); borrowed: r and path belong to a store_cache. */
void store_add(struct store_loader *l, const struct resource *r, const char *path,
               struct ystream *s, size_t doc, time_t mtime, bool secret_dir, bool borrowed);
/* Reads config file name of directory dfd (path its full name, st its stat) through the
 * loader's cache. */
void store_load_file_cached(struct store_loader *l, const char *path, int dfd,
                            const char *name, const struct stat *st);
void store_load_secrets(struct store_loader *l, const char *sdir);

#endif
