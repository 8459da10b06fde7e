/* lbhash: ring hash and maglev tables (see lbhash.h for where they live and why).
 *
 * Ring hash, as Envoy's RingHashLoadBalancer builds it: every endpoint gets entries in
 * proportion to its weight, scaled so the least-weighted one has a whole number of them
 * and the ring holds at least the minimum ring size (at most 8M) entries; entry i of an
 * endpoint sits at hash("ADDR_i"). A key goes to the first entry at or after its hash,
 * wrapping to the first. Removing an endpoint removes only its entries: only the keys
 * that landed on it move, each to the next endpoint along the ring.
 *
 * Maglev, as Envoy's MaglevTable: a prime-sized table filled in rounds, each endpoint
 * taking its next free slot along its own permutation (offset, skip from two hashes of
 * its address), an endpoint of weight w/max taking part in a share w/max of the rounds.
 * A key goes to slot hash % size.
 *
 * Ejected endpoints (outlier detection) are skipped by walking on from the key's entry or
 * slot to the next one whose endpoint is in service, so keys of endpoints in service do
 * not move. Envoy rebuilds the table without them instead; for the ring the result is
 * the same, for maglev the ejected endpoint's keys spread differently. */
#include "proxy/lbhash.h"
#include "proxy/cluster.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lbh_ent {
	uint64_t h;
	uint32_t ep;
};

struct lbh_table {
	enum lbh_algo algo;
	size_t nep;                   /* endpoints in the set */
	size_t n;                     /* ring entries or maglev slots */
	struct lbh_ent *ring;         /* ring: n entries sorted by h */
	uint32_t *bucket;             /* ring: 2^bits + 1 starts, by the hash's top bits */
	unsigned shift;               /* ring: 64 - bits */
	uint32_t *slot;               /* maglev: n endpoint indexes */
};

static uint32_t lbh_weight(const struct cluster_eps *eps, size_t i)
{
	return eps->v[i].weight ? eps->v[i].weight : 1;
}

/* hash("ADDR_i"): key holds "ADDR_" (plen bytes) and room for the digits. Called up to 8M
 * times for a big ring: no printf. */
static uint64_t lbh_key_at(char *key, size_t plen, size_t i)
{
	char d[24];
	size_t n = 0;

	do {
		d[n++] = (char)('0' + i % 10);
		i /= 10;
	} while (i);
	for (size_t k = 0; k < n; k++)
		key[plen + k] = d[n - 1 - k];
	return hash_bytes(key, plen + n);
}

static uint64_t lbh_key_hash(const char *addr, size_t i)
{
	char key[SOCK_ADDR_STRLEN + 24];
	int plen = snprintf(key, sizeof(key), "%s_", addr);

	return lbh_key_at(key, plen > 0 ? (size_t)plen : 0, i);
}

static int lbh_ent_cmp(const void *a, const void *b)
{
	const struct lbh_ent *x = a, *y = b;

	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	return x->ep < y->ep ? -1 : x->ep > y->ep;
}

/* Sorts the ring by hash, keeping the endpoint order of equal hashes (lbh_ent_cmp's
 * order): qsort for small rings, an LSD radix sort (four 16-bit digits, stable) for big
 * ones, where qsort's calls dominated the build (8M entries: seconds). */
static void lbh_sort(struct lbh_ent *a, size_t n)
{
	struct lbh_ent *tmp, *src = a, *dst;
	size_t *cnt;

	if (n < 65536) {
		qsort(a, n, sizeof(*a), lbh_ent_cmp);
		return;
	}
	tmp = xmalloc(n * sizeof(*tmp));
	cnt = xmalloc(65536 * sizeof(*cnt));
	dst = tmp;
	for (unsigned shift = 0; shift < 64; shift += 16) {
		size_t sum = 0;

		memset(cnt, 0, 65536 * sizeof(*cnt));
		for (size_t i = 0; i < n; i++)
			cnt[(src[i].h >> shift) & 0xffff]++;
		for (size_t d = 0; d < 65536; d++) {
			size_t c = cnt[d];

			cnt[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[cnt[(src[i].h >> shift) & 0xffff]++] = src[i];
		src = dst;
		dst = src == a ? tmp : a;
	}
	/* Four passes: the result is back in a. */
	free(cnt);
	free(tmp);
}

static void lbh_build_ring(struct lbh_table *t, const struct lbh_cfg *cfg,
                           const struct cluster_eps *eps)
{
	uint64_t sum = 0, wmin = UINT32_MAX;
	double min_norm, scale, target = 0;
	size_t cap, n = 0, bits = 1;
	uint32_t min_ring = cfg->size ? cfg->size : LBH_RING_MIN_DEFAULT;

	for (size_t i = 0; i < eps->n; i++) {
		sum += lbh_weight(eps, i);
		if (lbh_weight(eps, i) < wmin)
			wmin = lbh_weight(eps, i);
	}
	/* Envoy: the least-weighted endpoint gets ceil(its share x minimum) entries, the
	 * others as many in proportion, the whole ring capped at the maximum. */
	min_norm = (double)wmin / (double)sum;
	scale = ceil(min_norm * min_ring) / min_norm;
	if (scale > LBH_RING_MAX)
		scale = LBH_RING_MAX;
	cap = (size_t)ceil(scale) + eps->n + 1;
	t->ring = xmalloc(cap * sizeof(*t->ring));
	for (size_t i = 0; i < eps->n; i++) {
		char key[SOCK_ADDR_STRLEN + 24];
		int plen = snprintf(key, sizeof(key), "%s_", eps->v[i].str);

		target += scale * (double)lbh_weight(eps, i) / (double)sum;
		for (size_t k = 0; (double)n < target && n < cap; k++, n++) {
			t->ring[n].h = lbh_key_at(key, plen > 0 ? (size_t)plen : 0, k);
			t->ring[n].ep = (uint32_t)i;
		}
	}
	lbh_sort(t->ring, n);
	t->n = n;
	/* Buckets by the hash's top bits, about one entry each: a lookup scans one bucket. */
	while (bits < 24 && ((size_t)1 << bits) < n)
		bits++;
	t->shift = (unsigned)(64 - bits);
	t->bucket = xmalloc((((size_t)1 << bits) + 1) * sizeof(*t->bucket));
	for (size_t b = 0, i = 0; b <= ((size_t)1 << bits); b++) {
		while (i < n && (t->ring[i].h >> t->shift) < b)
			i++;
		t->bucket[b] = (uint32_t)i;
	}
}

static void lbh_build_maglev(struct lbh_table *t, const struct lbh_cfg *cfg,
                             const struct cluster_eps *eps)
{
	size_t m = cfg->size ? cfg->size : LBH_MAGLEV_DEFAULT, filled = 0;
	uint64_t *off = xcalloc(eps->n, sizeof(*off)), *skip = xcalloc(eps->n, sizeof(*skip));
	uint64_t *next = xcalloc(eps->n, sizeof(*next)), *target = xcalloc(eps->n, sizeof(*target));
	uint64_t wmax = 0;

	t->n = m;
	t->slot = xmalloc(m * sizeof(*t->slot));
	for (size_t s = 0; s < m; s++)
		t->slot[s] = UINT32_MAX;
	for (size_t i = 0; i < eps->n; i++) {
		off[i] = lbh_key_hash(eps->v[i].str, 0) % m;
		skip[i] = m > 1 ? lbh_key_hash(eps->v[i].str, 1) % (m - 1) + 1 : 1;
		if (lbh_weight(eps, i) > wmax)
			wmax = lbh_weight(eps, i);
	}
	for (uint64_t round = 1; filled < m; round++) {
		for (size_t i = 0; i < eps->n && filled < m; i++) {
			uint64_t c;

			/* An endpoint of weight w takes part in w/wmax of the rounds. */
			if (round * lbh_weight(eps, i) < target[i])
				continue;
			target[i] += wmax;
			do {
				c = (off[i] + skip[i] * (next[i] % m)) % m;
				next[i]++;
			} while (t->slot[c] != UINT32_MAX);
			t->slot[c] = (uint32_t)i;
			filled++;
		}
	}
	free(off);
	free(skip);
	free(next);
	free(target);
}

struct lbh_table *lbh_build(const struct lbh_cfg *cfg, const struct cluster_eps *eps)
{
	struct lbh_table *t;

	if (!eps || eps->n == 0)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->algo = cfg->algo;
	t->nep = eps->n;
	if (cfg->algo == LBH_MAGLEV)
		lbh_build_maglev(t, cfg, eps);
	else
		lbh_build_ring(t, cfg, eps);
	return t;
}

void lbh_free(struct lbh_table *t)
{
	if (!t)
		return;
	free(t->ring);
	free(t->bucket);
	free(t->slot);
	free(t);
}

size_t lbh_size(const struct lbh_table *t)
{
	return t ? t->n : 0;
}

static uint32_t lbh_at(const struct lbh_table *t, size_t i)
{
	return t->algo == LBH_MAGLEV ? t->slot[i] : t->ring[i].ep;
}

size_t lbh_pick(const struct lbh_table *t, uint64_t h, const uint8_t *excluded)
{
	size_t i;

	if (!t || t->n == 0)
		return SIZE_MAX;
	if (t->algo == LBH_MAGLEV) {
		i = (size_t)(h % t->n);
	} else {
		size_t b = (size_t)(h >> t->shift), end = t->bucket[b + 1];

		for (i = t->bucket[b]; i < end && t->ring[i].h < h; i++)
			;
		if (i == t->n)
			i = 0;
	}
	if (!excluded)
		return lbh_at(t, i);
	/* Walk on past ejected endpoints; give up when none is in service. */
	for (size_t k = 0; k < t->nep; k++)
		if (!excluded[k])
			break;
		else if (k + 1 == t->nep)
			return SIZE_MAX;
	while (excluded[lbh_at(t, i)])
		i = i + 1 == t->n ? 0 : i + 1;
	return lbh_at(t, i);
}

void lbh_cfg_free(struct lbh_cfg *cfg)
{
	if (!cfg)
		return;
	free(cfg->name);
	free(cfg->cookie_path);
	free(cfg);
}

const char *lbh_algo_name(const struct lbh_cfg *cfg)
{
	return cfg->algo == LBH_MAGLEV ? "MAGLEV" : "RING_HASH";
}

const char *lbh_key_desc(const struct lbh_cfg *cfg, char *buf, size_t size)
{
	static const char *const what[] = { "no key (random)", "header", "cookie", "source IP",
	                                    "query parameter" };

	if (cfg->name)
		snprintf(buf, size, "%s %s", what[cfg->key], cfg->name);
	else
		snprintf(buf, size, "%s", what[cfg->key]);
	return buf;
}
