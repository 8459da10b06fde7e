/* res_hosts: which hosts of a list overlap an earlier one, in O(n log n).
 *
 * Istio rejects a VirtualService whose hosts overlap: two hosts a, b overlap when
 * res_host_matches(a, b) or res_host_matches(b, a) (equal names, a wildcard "*.x" covering
 * a name or a narrower wildcard under x, or "*"). Comparing every pair cost 8 s for 40,000
 * hosts (and a hostile 400,000 never finished); this answers the same question with two
 * sorted indexes:
 *   names:    every host as written, to find equal hosts and, as "*" + suffix, the
 *             wildcards that cover a host;
 *   suffixes: every ".x.y" that ends a host at a dot (for "*.b.x": ".b.x", ".x"), to find
 *             the hosts a wildcard covers.
 * Keys compare without case (host names), and within equal keys by index, so the first of
 * a run is the earliest host with that key. */
#include "config/res_internal.h"
#include "config/resource.h"
#include "core/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct hkey {
	const char *key;     /* into the host or into a copy ("*" + suffix is looked up, not kept) */
	size_t idx;
};

static int hkey_cmp(const void *a, const void *b)
{
	const struct hkey *x = a, *y = b;
	int c = strcasecmp(x->key, y->key);

	return c ? c : x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The earliest index with key, or SIZE_MAX. */
static size_t hkey_first(const struct hkey *v, size_t n, const char *key)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcasecmp(v[mid].key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && strcasecmp(v[lo].key, key) == 0 ? v[lo].idx : SIZE_MAX;
}

/* The part of a host that suffixes are taken from: "*.b.x" -> ".b.x", "a.b.x" -> "a.b.x". */
static const char *host_body(const char *h)
{
	return h[0] == '*' ? h + 1 : h;
}

void res_hosts_first_overlap(const char *const *hosts, size_t n, size_t *first)
{
	struct hkey *names = xcalloc(n + 1, sizeof(*names)), *sfx;
	size_t nsfx = 0, cap = n + 1, star;
	char *buf = NULL;
	size_t bufcap = 0;

	sfx = xcalloc(cap, sizeof(*sfx));
	for (size_t i = 0; i < n; i++) {
		const char *b = host_body(hosts[i]);

		names[i].key = hosts[i];
		names[i].idx = i;
		for (const char *p = b; *p; p++) {
			/* A dot that starts a proper suffix: not the first byte of a plain name. */
			if (*p != '.' || (p == b && b == hosts[i]))
				continue;
			if (nsfx == cap) {
				cap *= 2;
				sfx = xrealloc(sfx, cap * sizeof(*sfx));
			}
			sfx[nsfx].key = p;
			sfx[nsfx].idx = i;
			nsfx++;
		}
	}
	qsort(names, n, sizeof(*names), hkey_cmp);
	if (nsfx)
		qsort(sfx, nsfx, sizeof(*sfx), hkey_cmp);
	star = hkey_first(names, n, "*");
	for (size_t j = 0; j < n; j++) {
		const char *h = hosts[j], *b = host_body(h);
		size_t best = SIZE_MAX, k;

		first[j] = SIZE_MAX;
		if (strcmp(h, "*") == 0) {
			/* "*" overlaps everything. */
			if (j > 0)
				first[j] = 0;
			continue;
		}
		if (star < j)
			best = star;
		/* An equal host. */
		if ((k = hkey_first(names, n, h)) < j && k < best)
			best = k;
		/* Earlier wildcards covering h: "*" + each proper dot suffix of its body. */
		for (const char *p = b; *p; p++) {
			size_t len;

			if (*p != '.' || p == b)
				continue;
			len = strlen(p);
			if (len + 2 > bufcap) {
				bufcap = len + 2;
				buf = xrealloc(buf, bufcap);
			}
			buf[0] = '*';
			memcpy(buf + 1, p, len + 1);
			if ((k = hkey_first(names, n, buf)) < j && k < best)
				best = k;
		}
		/* Earlier hosts that the wildcard h covers: those with its body as a suffix. */
		if (h[0] == '*' && (k = hkey_first(sfx, nsfx, b)) < j && k < best)
			best = k;
		first[j] = best;
	}
	free(buf);
	free(sfx);
	free(names);
}
