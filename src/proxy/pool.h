/* pool: a worker's idle upstream connections, by key.
 *
 * The key says what a connection can be reused for: the TLS context (by id, so a rotated
 * credential or a new snapshot never reuses a connection made with the old one), the
 * endpoint address, the SNI sent and the name verified. Two requests may share a
 * connection only if every one of those is the same.
 *
 * Connections embed a struct pool_link; the pool never allocates per connection. Taking
 * returns the most recently used connection (LIFO), which is the one least likely to have
 * been closed by the server's idle timeout. Per worker, no locks. */
#ifndef EGRESS_PROXY_POOL_H
#define EGRESS_PROXY_POOL_H

#include <stddef.h>
#include <stdint.h>

struct pool;
struct pool_bucket;

struct pool_link {
	struct pool_link *next, *prev;
	struct pool_bucket *bucket;     /* NULL when not in the pool */
};

struct pool *pool_new(void);
/* Frees the pool's buckets; the connections still in it are the caller's to close first
 * (pool_each). */
void pool_free(struct pool *p);
/* Takes an idle connection for key, or NULL. */
struct pool_link *pool_take(struct pool *p, const char *key, size_t keylen);
/* Puts an idle connection in the pool under key. */
void pool_put(struct pool *p, const char *key, size_t keylen, struct pool_link *l);
/* Removes a connection from the pool (no-op if it is not in it). */
void pool_remove(struct pool *p, struct pool_link *l);
/* Number of idle connections. */
size_t pool_count(const struct pool *p);
/* Calls fn on every idle connection (fn may pool_remove it). */
void pool_each(struct pool *p, void (*fn)(struct pool_link *l, void *arg), void *arg);

#endif
