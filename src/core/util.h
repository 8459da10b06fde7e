/* util: allocation wrappers and small string helpers shared by every module.
 *
 * x*alloc never return NULL: on allocation failure they print a message and abort().
 * Callers therefore never check their result. */
#ifndef EGRESS_CORE_UTIL_H
#define EGRESS_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* The struct that embeds member, from a pointer to that member (intrusive lists, loop
 * callbacks that hand back the embedded loop_io / loop_timer / loop_task). */
#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool str_has_prefix(const char *s, const char *prefix);
/* Copies src into dst[size] (size > 0), cut to fit and always NUL-terminated; returns the
 * length copied. snprintf(dst, size, "%s", src) without printf's cost (request path). */
size_t str_copy(char *dst, size_t size, const char *src);
bool str_has_suffix(const char *s, const char *suffix);

/* A 64-bit hash of p[0 .. n), for the in-memory hash tables of keys the process makes up
 * itself (pool keys, cluster and host names), eight bytes per step; hash_bytes_lower(s, n)
 * equals hash_bytes of s's ASCII lower case. Never stored: values depend on byte order. */
/* Wall-clock time in milliseconds since the epoch (access-log START_TIME). */
int64_t wall_ms(void);

uint64_t hash_bytes(const void *p, size_t n);
uint64_t hash_bytes_lower(const void *p, size_t n);

/* Reads a whole file into a NUL-terminated buffer. Returns 0 and sets *out and *len, or -1
 * with errno set. The caller frees *out. */
int file_read_all(const char *path, char **out, size_t *len);
/* file_read_all of name relative to the directory dfd (AT_FDCWD: the working directory),
 * of a regular file whose size the caller knows from stat (size, or -1 to fstat it). */
int file_read_at(int dfd, const char *name, long long size, char **out, size_t *len);

/* Writes data to path atomically: a temporary file in the same directory, fsync, rename.
 * mode is applied to the new file. Returns 0, or -1 with errno set. */
int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode);

/* mkdir -p with the given mode for the directories it creates. Returns 0 or -1/errno. */
int mkdir_p(const char *path, unsigned mode);

#endif
