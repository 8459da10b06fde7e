/* store_int: what the files of the store (store.c, store_secret_write.c) share, and no one
 * else uses. */
#ifndef EGRESS_CONFIG_STORE_INT_H
#define EGRESS_CONFIG_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>

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
/* Creates the directories above path (mode), with an error in d when it cannot. */
int store_mkdir_parent(const char *path, unsigned mode, struct diags *d);

/* Whether a file's times (modification or change) are too recent to know it by them: the
 * kernel stamps with a coarse clock, so a change within the same tick keeps them (within
 * 50 ms; 2 s on a file system that stamps whole seconds). */
bool store_recent(const struct stat *st);

#endif
