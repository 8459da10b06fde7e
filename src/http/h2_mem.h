/* h2_mem: the allocator nghttp2 uses for this project's HTTP/2 sessions (nghttp2_mem).
 *
 * nghttp2 allocates per stream and per header field (its stream and outbound-item structs,
 * the reference-counted buffers of each decoded name and value, copies of submitted header
 * lists): measured at about nine malloc/free pairs per request on the gateway's HTTP/2
 * listener, most of what an HTTP/2 request cost in heap calls. A worker thread that called
 * h2_mem_cache_start keeps the blocks nghttp2 frees, by size class (32 B to 4 KiB, powers
 * of two), up to H2_MEM_CACHE_BYTES, and hands them out again: in the steady state those
 * allocations cost a pointer pop instead of malloc. Larger blocks go straight to malloc.
 * The cache is thread-local (a session lives on one worker thread; nghttp2 calls the
 * allocator with no other context than the session), as fwd_io.c's buffer cache is; a thread
 * that never started it (the main thread freeing sessions at shutdown) frees as malloc
 * does. Under AddressSanitizer a cached block is poisoned, so a use after nghttp2 freed it
 * is still reported. */
#ifndef EGRESS_HTTP_H2_MEM_H
#define EGRESS_HTTP_H2_MEM_H

#include <nghttp2/nghttp2.h>

#define H2_MEM_CACHE_BYTES (512 * 1024)

/* The allocator to pass to nghttp2_session_*_new3 (static, never freed). */
nghttp2_mem *h2_mem(void);
/* The calling thread caches freed blocks from now on / frees its cache and stops. */
void h2_mem_cache_start(void);
void h2_mem_cache_stop(void);

#endif
