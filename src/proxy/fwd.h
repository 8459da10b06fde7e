/* fwd: the request path's entry points for the worker (worker.c): connections accepted
 * on a listener start here, and the worker's drain, eviction, shutdown and pool upkeep
 * reach the connections through these. Each module declares its own functions: what
 * the request path's files share is in fwd_int.h (see the file list there); struct worker and
 * friends are in worker.h. */
#ifndef EGRESS_PROXY_FWD_H
#define EGRESS_PROXY_FWD_H

#include <stdbool.h>
#include <stddef.h>

struct worker;
struct wlistener;
struct sock_addr;

/* Connects the request path's parts (codecs and core, fwd_int.h): once, before any
 * worker runs (proxy_start). */
void fwd_init(void);
void fwd_accept(struct worker *w, struct wlistener *l, int fd, const struct sock_addr *peer);
void fwd_drain(struct worker *w);
/* Closes every downstream connection still open, its request abandoned (logged DC), so
 * that what it holds (snapshot, stream, upstream) is freed. Only after the worker's
 * thread has stopped (proxy_stop, past --drain-timeout). */
void fwd_close_all(struct worker *w);
/* Under connection or descriptor pressure: closes the connection that can best give way
 * to a new one from peer (NULL: not yet known). Returns true if one was closed. */
bool fwd_evict(struct worker *w, const struct sock_addr *peer);
/* Closes every idle upstream connection (at drain and shutdown). */
void fwd_pool_close_all(struct worker *w);
/* Closes up to n of w's idle pooled upstream connections (the upstream connection budget,
 * overload.h); returns how many it closed. */
size_t fwd_pool_shed(struct worker *w, size_t n);
/* After w->live changed: closes idle connections made under settings or to endpoints
 * that are gone, and marks busy ones draining (closed when their request ends). */
void fwd_pool_sweep(struct worker *w);
/* The calling worker thread keeps a cache of I/O buffers from now on / frees it and stops
 * (around its loop: buffers given back after stop are freed). */
void fwd_buf_cache_start(void);
void fwd_buf_cache_stop(void);
/* A buffer of cap bytes from the calling thread's cache (2 KiB .. 64 KiB, powers of two;
 * other sizes are malloc's), and its return (NULL allowed), for the worker's other I/O
 * (tunnel.c's relay buffers). */
void *fwd_buf_get(size_t cap);
void fwd_buf_put(void *p, size_t cap);
/* Frees the worker's spare request streams (at shutdown). */
void fwd_streams_free(struct worker *w);

#endif
