/* hstats: per-endpoint counters and outlier state (see hstats.h).
 *
 * Open addressing with linear probing over twice the bound, as istats.c's tables: probes
 * stay short, and an entry never moves, so a reader on another thread sees either an
 * unused slot or a complete key. */
#include "proxy/hstats.h"
#include "proxy/alog.h"
#include "proxy/cluster.h"
#include "proxy/worker.h"
#include "core/log.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#define HSTATS_SLOTS (2 * HSTATS_MAX)

struct hstats {
	struct hstats_host h[HSTATS_SLOTS];
	_Atomic size_t n;               /* entries in use (the worker writes, readers compare) */
	bool warned;
	/* The worker's last entry (worker thread only): a worker's requests mostly go to the
	 * endpoint it used last, and comparing the two strings costs a fraction of hashing
	 * them (scenario 1 of make bench: about 410 fewer instructions per request). */
	struct hstats_host *last;
};

struct hstats *hstats_new(void)
{
	/* About 1.2 MiB of address space; pages stay zero until an endpoint is counted. */
	return xcalloc(1, sizeof(struct hstats));
}

void hstats_free(struct hstats *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < HSTATS_SLOTS; i++)
		free(s->h[i].cluster);
	free(s);
}

static uint64_t hstats_hash(const char *cluster, const char *addr)
{
	return (hash_bytes(cluster, strlen(cluster)) * 0x100000001b3ULL) ^
	       hash_bytes(addr, strlen(addr));
}

/* The slot holding (cluster, addr), or the free slot where it would go. */
static size_t hstats_slot(const struct hstats *s, const char *cluster, const char *addr,
                          uint64_t h, bool *found)
{
	size_t i = h & (HSTATS_SLOTS - 1);

	for (;; i = (i + 1) & (HSTATS_SLOTS - 1)) {
		const struct hstats_host *e = &s->h[i];

		if (!atomic_load_explicit(&e->used, memory_order_acquire)) {
			*found = false;
			return i;
		}
		if (e->hash == h && strcmp(e->addr, addr) == 0 && strcmp(e->cluster, cluster) == 0) {
			*found = true;
			return i;
		}
	}
}

struct hstats_host *hstats_get(struct hstats *s, const char *cluster, const char *addr)
{
	uint64_t h;
	bool found;
	size_t i;
	struct hstats_host *e;

	if (!s || !cluster || !addr || !addr[0])
		return NULL;
	e = s->last;
	if (e && strcmp(e->addr, addr) == 0 && strcmp(e->cluster, cluster) == 0)
		return e;
	h = hstats_hash(cluster, addr);
	i = hstats_slot(s, cluster, addr, h, &found);
	if (found)
		return s->last = &s->h[i];
	if (atomic_load_explicit(&s->n, memory_order_relaxed) >= HSTATS_MAX) {
		if (!s->warned)
			log_warn("fwd", "per-endpoint counters: more than %d endpoints on this worker; "
			         "%s of %s and further ones are not counted in /clusters",
			         HSTATS_MAX, addr, cluster);
		s->warned = true;
		return NULL;
	}
	e = &s->h[i];
	e->hash = h;
	e->cluster = xstrdup(cluster);
	str_copy(e->addr, sizeof(e->addr), addr);
	atomic_store_explicit(&s->n, atomic_load_explicit(&s->n, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
	atomic_store_explicit(&e->used, true, memory_order_release);
	return s->last = e;
}

const struct hstats_host *hstats_find(const struct hstats *s, const char *cluster,
                                      const char *addr)
{
	bool found;
	size_t i;

	if (!s || !cluster || !addr || !addr[0])
		return NULL;
	i = hstats_slot(s, cluster, addr, hstats_hash(cluster, addr), &found);
	return found ? &s->h[i] : NULL;
}

/* Clusters whose endpoints are not theirs to list (hstats.h). */
static bool hstats_counted(const struct cluster *cl)
{
	return cl && cl->discovery != CLUSTER_ORIGINAL_DST;
}

struct hstats_host *hstats_cx_open(struct hstats *s, const struct cluster *cl, const char *ep)
{
	struct hstats_host *h = hstats_counted(cl) ? hstats_get(s, cl->name, ep) : NULL;

	if (h) {
		STAT_INC(h->cx_total);
		STAT_INC(h->cx_active);
	}
	return h;
}

struct hstats_host *hstats_cx_open_addr(struct hstats *s, const char *cluster,
                                        const struct sock_addr *ep)
{
	char a[SOCK_ADDR_STRLEN];
	struct hstats_host *h = cluster ? hstats_get(s, cluster, sock_addr_str(ep, a, sizeof(a)))
	                                : NULL;

	if (h) {
		STAT_INC(h->cx_total);
		STAT_INC(h->cx_active);
	}
	return h;
}

void hstats_cx_close(struct hstats_host *h)
{
	if (h)
		STAT_DEC(h->cx_active);
}

void hstats_rq(struct hstats *s, const struct cluster *cl, const char *ep, int code,
               unsigned flags)
{
	struct hstats_host *h = hstats_counted(cl) ? hstats_get(s, cl->name, ep) : NULL;

	if (!h)
		return;
	STAT_INC(h->rq_total);
	if (code == 0 || code >= 500)
		STAT_INC(h->rq_error);
	else
		STAT_INC(h->rq_success);
	if (flags & ALOG_F_UT)
		STAT_INC(h->rq_timeout);
}

void hstats_add(const struct hstats *s, const char *cluster, const char *addr,
                struct hstats_sum *out)
{
	const struct hstats_host *h = hstats_find(s, cluster, addr);

	out->workers++;
	if (!h) {
		if (s && atomic_load_explicit(&s->n, memory_order_relaxed) >= HSTATS_MAX)
			out->untracked = true;
		return;
	}
	out->cx_total += STAT_GET(h->cx_total);
	out->cx_active += STAT_GET(h->cx_active);
	out->rq_total += STAT_GET(h->rq_total);
	out->rq_success += STAT_GET(h->rq_success);
	out->rq_error += STAT_GET(h->rq_error);
	out->rq_timeout += STAT_GET(h->rq_timeout);
	out->ejected_workers += atomic_load_explicit(&h->ejected, memory_order_relaxed);
}
