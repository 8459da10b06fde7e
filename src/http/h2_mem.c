/* h2_mem: a size-class cache under nghttp2's allocations (see h2_mem.h for why).
 *
 * Every block carries a 16-byte header (keeping malloc's alignment) with its class, or
 * H2M_BIG and its size for blocks above the largest class; the caller's pointer follows
 * it. A cached block keeps its header; the free blocks are listed in per-class arrays
 * (not linked through their own bytes, which stay poisoned under ASan). */
#include "http/h2_mem.h"
#include "core/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define H2M_MIN_SHIFT 5                 /* 32 bytes */
#define H2M_CLASSES   8                 /* 32 B .. 4 KiB */
#define H2M_SLOTS     512               /* blocks kept per class */
#define H2M_BIG       0xffffffffu

#if defined(__SANITIZE_ADDRESS__)
#define H2M_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H2M_ASAN 1
#endif
#endif
#ifdef H2M_ASAN
#include <sanitizer/asan_interface.h>
#define h2m_poison(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define h2m_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define h2m_poison(p, n)   ((void)(p), (void)(n))
#define h2m_unpoison(p, n) ((void)(p), (void)(n))
#endif

struct h2m_hdr {
	uint32_t cls;                   /* size class, or H2M_BIG */
	uint32_t pad;
	size_t size;                    /* H2M_BIG: the size asked for */
};

_Static_assert(sizeof(struct h2m_hdr) == 16, "the header keeps malloc's 16-byte alignment");

static _Thread_local struct {
	struct h2m_hdr *free[H2M_CLASSES][H2M_SLOTS];
	unsigned n[H2M_CLASSES];
	size_t bytes;
	bool on;
} cache;

static size_t cls_size(uint32_t c)
{
	return (size_t)1 << (c + H2M_MIN_SHIFT);
}

/* The class of a block of size bytes, or H2M_BIG. */
static uint32_t cls_of(size_t size)
{
	uint32_t c = 0;

	if (size > cls_size(H2M_CLASSES - 1))
		return H2M_BIG;
	while (cls_size(c) < size)
		c++;
	return c;
}

/* Room for the caller in the block whose header is h. */
static size_t usable(const struct h2m_hdr *h)
{
	return h->cls == H2M_BIG ? h->size : cls_size(h->cls);
}

static void *h2m_malloc(size_t size, void *ud)
{
	uint32_t c = cls_of(size);
	struct h2m_hdr *h;

	(void)ud;
	if (c != H2M_BIG && cache.n[c]) {
		h = cache.free[c][--cache.n[c]];
		cache.bytes -= cls_size(c);
		h2m_unpoison(h + 1, cls_size(c));
		return h + 1;
	}
	h = xmalloc(sizeof(*h) + (c == H2M_BIG ? size : cls_size(c)));
	h->cls = c;
	h->pad = 0;
	h->size = size;
	return h + 1;
}

static void h2m_free(void *p, void *ud)
{
	struct h2m_hdr *h;

	(void)ud;
	if (!p)
		return;
	h = (struct h2m_hdr *)p - 1;
	if (h->cls == H2M_BIG || !cache.on || cache.n[h->cls] >= H2M_SLOTS ||
	    cache.bytes + cls_size(h->cls) > H2_MEM_CACHE_BYTES) {
		free(h);
		return;
	}
	h2m_poison(p, cls_size(h->cls));
	cache.free[h->cls][cache.n[h->cls]++] = h;
	cache.bytes += cls_size(h->cls);
}

static void *h2m_calloc(size_t n, size_t size, void *ud)
{
	void *p;

	if (size && n > SIZE_MAX / size)
		return NULL;
	p = h2m_malloc(n * size, ud);
	memset(p, 0, n * size);
	return p;
}

static void *h2m_realloc(void *p, size_t size, void *ud)
{
	struct h2m_hdr *h;
	void *np;

	if (!p)
		return h2m_malloc(size, ud);
	h = (struct h2m_hdr *)p - 1;
	if (size <= usable(h) && h->cls != H2M_BIG)
		return p;
	np = h2m_malloc(size, ud);
	memcpy(np, p, usable(h) < size ? usable(h) : size);
	h2m_free(p, ud);
	return np;
}

static nghttp2_mem mem = {
	.mem_user_data = NULL,
	.malloc = h2m_malloc,
	.free = h2m_free,
	.calloc = h2m_calloc,
	.realloc = h2m_realloc,
};

nghttp2_mem *h2_mem(void)
{
	return &mem;
}

void h2_mem_cache_start(void)
{
	cache.on = true;
}

void h2_mem_cache_stop(void)
{
	for (uint32_t c = 0; c < H2M_CLASSES; c++) {
		while (cache.n[c]) {
			struct h2m_hdr *h = cache.free[c][--cache.n[c]];

			h2m_unpoison(h + 1, cls_size(c));
			free(h);
		}
	}
	cache.bytes = 0;
	cache.on = false;
}
