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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool;
struct pool_bucket;
struct snap;
struct sbuf;

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

/* ---- what a connection was made under ----
 *
 * A connection outlives the snapshot it was made for only while what made it is still
 * configured: the cluster's connection settings (cluster.conn_id: TLS context, mode, SNI,
 * subjectAltNames, skip-verify, ALPN) and its endpoint. A worker keeps the set of
 * (conn_id, endpoint) pairs of its current snapshot and endpoint sets (rebuilt when either
 * changes); a connection whose pair is not in it drains: an idle one closes at once, a
 * busy one finishes its request and closes, and none is taken for a new request (its pool
 * key names the old conn_id, which no request builds any more). conn_id 0 (the sidecar's
 * PassthroughCluster) is always live; clusters without an endpoint set of their own
 * (resolution NONE) are live for any endpoint. */

struct pool_live;

/* A connection's identity: conn_id and the endpoint as sock_addr_str formats it. */
uint64_t pool_ident(uint64_t conn_id, const char *ep_str);
struct pool_live *pool_live_new(void);
void pool_live_free(struct pool_live *l);
/* Rebuilds l from s's clusters and their current endpoint sets (worker side: the sets
 * are read before the worker's next quiescent point). */
void pool_live_build(struct pool_live *l, const struct snap *s);
/* True if a connection made under conn_id with identity ident may still be used. */
bool pool_live_ok(const struct pool_live *l, uint64_t conn_id, uint64_t ident);

/* Per-cluster gauge of draining connections (busy when their settings went away), for
 * /stats/prometheus. Changed when a connection starts and ends draining (configuration
 * and endpoint changes, not requests): a mutex, no per-request cost. */
void pool_draining_add(const char *cluster, int delta);
/* Appends egressgw_cluster_upstream_cx_draining{cluster_name="..."} lines: every name
 * in names (n of them, the current clusters: 0 when none drains) and every other name
 * that has draining connections. */
void pool_draining_prom(struct sbuf *out, const char *const *names, size_t n);

#endif
