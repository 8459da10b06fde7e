/* outlier: see outlier.h for the semantics (Envoy's consecutive-error detectors, per
 * worker, with Istio's defaults). */
#include "proxy/outlier.h"
#include "proxy/cluster.h"
#include "proxy/hstats.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sweeps to evaluate at most when a cluster was idle for long: enough for any multiplier
 * to run down (it grows to at most (max + base) / base), and the skipped ones changed
 * nothing that matters any more. */
#define OD_MAX_SWEEPS 64

/* Sets h's state and its mirror for the admin thread. */
static void od_mark(struct od_host *h, bool ejected)
{
	h->ejected = ejected;
	if (h->pub)
		atomic_store_explicit(&h->pub->ejected, ejected, memory_order_relaxed);
}

void od_set_fini(struct od_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->h[i].ejected)
			od_mark(&s->h[i], false);
	free(s->h);
	free(s->excl);
	memset(s, 0, sizeof(*s));
}

static struct od_host *od_find(struct od_set *s, const char *addr)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->h[i].addr, addr) == 0)
			return &s->h[i];
	return NULL;
}

const struct od_host *od_host_find(const struct od_set *s, const char *addr)
{
	return od_find((struct od_set *)s, addr);
}

static struct od_host *od_add(struct od_set *s, const char *addr)
{
	struct od_host *h;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4;
		s->h = xrealloc(s->h, s->cap * sizeof(*s->h));
	}
	h = &s->h[s->n++];
	memset(h, 0, sizeof(*h));
	snprintf(h->addr, sizeof(h->addr), "%s", addr);
	h->pub = s->pub && s->pub_cluster ? hstats_get(s->pub, s->pub_cluster, addr) : NULL;
	return h;
}

/* The first use of the set starts its sweep phase. */
static void od_start(struct od_set *s, uint64_t now)
{
	if (!s->swept)
		s->swept = now ? now : 1;
}

/* How long the host's current ejection lasts. */
static uint64_t od_eject_ms(const struct od_config *c, const struct od_host *h)
{
	uint64_t t = c->base_ejection_ms * (h->backoff ? h->backoff : 1);

	return t < c->max_ejection_ms ? t : c->max_ejection_ms;
}

/* Envoy's ejectHost: the share check, then the ejection and its multiplier. */
static enum od_event od_eject(struct od_set *s, const struct od_config *c, struct od_host *h,
                              size_t nhosts, uint64_t now)
{
	if (nhosts == 0 || 100 * (s->nejected + 1) > (size_t)c->max_ejection_percent * nhosts)
		return OD_EV_OVERFLOW;
	od_mark(h, true);
	h->ejected_at = now;
	h->nejections++;
	s->nejected++;
	if (h->backoff * c->base_ejection_ms < c->max_ejection_ms + c->base_ejection_ms)
		h->backoff++;
	return OD_EV_EJECTED;
}

/* A threshold was reached (count already reset by the caller). An endpoint already out
 * is left as it is, as Envoy's onConsecutiveErrorWorker does. */
static enum od_event od_trip(struct od_set *s, const struct od_config *c, struct od_host *h,
                             size_t nhosts, uint64_t now)
{
	if (h->ejected)
		return OD_EV_NONE;
	return od_eject(s, c, h, nhosts, now);
}

static enum od_event od_http(struct od_set *s, const struct od_config *c, struct od_host *h,
                             size_t nhosts, int code, uint64_t now)
{
	enum od_event ev = OD_EV_NONE, e2;

	if (code < 500 || code > 599) {
		h->c5xx = h->cgw = 0;
		return OD_EV_NONE;
	}
	if (code == 502 || code == 503 || code == 504) {
		if (c->consecutive_gateway && ++h->cgw == c->consecutive_gateway) {
			h->cgw = 0;
			ev = od_trip(s, c, h, nhosts, now);
		}
	} else {
		h->cgw = 0;
	}
	if (c->consecutive_5xx && ++h->c5xx == c->consecutive_5xx) {
		h->c5xx = 0;
		e2 = od_trip(s, c, h, nhosts, now);
		if (ev == OD_EV_NONE)
			ev = e2;
	}
	return ev;
}

enum od_event od_report(struct od_set *s, const struct od_config *c, const char *addr,
                        size_t nhosts, enum od_result r, int code, uint64_t now)
{
	struct od_host *h;

	if (!c->on || !addr || !addr[0])
		return OD_EV_NONE;
	h = od_find(s, addr);
	if (!h)
		h = od_add(s, addr);
	od_start(s, now);
	switch (r) {
	case OD_HTTP:
		return od_http(s, c, h, nhosts, code, now);
	case OD_CONNECT_OK:
		if (c->split)
			h->clocal = 0;
		return OD_EV_NONE;
	case OD_CONNECT_FAIL:
	case OD_TIMEOUT:
	default:
		if (!c->split)
			return od_http(s, c, h, nhosts, r == OD_TIMEOUT ? 504 : 503, now);
		if (c->consecutive_local && ++h->clocal == c->consecutive_local) {
			h->clocal = 0;
			return od_trip(s, c, h, nhosts, now);
		}
		return OD_EV_NONE;
	}
}

/* One sweep at time t: bring back what served its time, run multipliers down. */
static size_t od_sweep_at(struct od_set *s, const struct od_config *c, uint64_t t)
{
	size_t back = 0;

	for (size_t i = 0; i < s->n; i++) {
		struct od_host *h = &s->h[i];

		if (h->ejected) {
			if (t - h->ejected_at >= od_eject_ms(c, h)) {
				od_mark(h, false);
				h->unejected_at = t;
				/* So that a few new errors do not eject it again at once. */
				h->c5xx = h->cgw = h->clocal = 0;
				s->nejected--;
				back++;
			}
		} else if (h->unejected_at && t - h->unejected_at >= c->interval_ms && h->backoff) {
			h->backoff--;
		}
	}
	return back;
}

/* Forgets hosts that are not in eps (endpoints gone with a DNS change). */
static size_t od_prune(struct od_set *s, const struct cluster_eps *eps)
{
	size_t back = 0, j = 0;

	for (size_t i = 0; i < s->n; i++) {
		bool keep = false;

		for (size_t k = 0; eps && k < eps->n && !keep; k++)
			keep = strcmp(s->h[i].addr, eps->v[k].str) == 0;
		if (!keep) {
			if (s->h[i].ejected) {
				od_mark(&s->h[i], false);
				s->nejected--;
				back++;
			}
			continue;
		}
		if (j != i)
			s->h[j] = s->h[i];
		j++;
	}
	s->n = j;
	return back;
}

size_t od_sweep(struct od_set *s, const struct od_config *c, const struct cluster_eps *eps,
                uint64_t now)
{
	size_t back = 0;
	uint64_t iv = c->interval_ms ? c->interval_ms : OD_DEFAULT_INTERVAL_MS;

	if (!c->on)
		return 0;
	od_start(s, now);
	if (eps != s->eps || (eps ? eps->n : 0) != s->eps_n) {
		back += od_prune(s, eps);
		s->eps = eps;
		s->eps_n = eps ? eps->n : 0;
	}
	if (now >= s->swept + iv) {
		uint64_t due = (now - s->swept) / iv;
		uint64_t t = s->swept;

		if (due > OD_MAX_SWEEPS)
			t += (due - OD_MAX_SWEEPS) * iv;
		while (t + iv <= now) {
			t += iv;
			back += od_sweep_at(s, c, t);
		}
		s->swept = t;
	}
	return back;
}

const uint8_t *od_excluded(struct od_set *s, const struct od_config *c,
                           const struct cluster_eps *eps)
{
	size_t out = 0;

	if (!c->on || s->nejected == 0 || !eps || eps->n == 0)
		return NULL;
	s->excl = xrealloc(s->excl, eps->n);
	for (size_t i = 0; i < eps->n; i++) {
		const struct od_host *h = od_find(s, eps->v[i].str);

		s->excl[i] = h && h->ejected;
		out += s->excl[i];
	}
	if (out == 0)
		return NULL;
	/* Panic: too few endpoints in service; Envoy then balances over all of them. */
	if (100 * (eps->n - out) < (size_t)c->min_health_percent * eps->n)
		return NULL;
	return s->excl;
}
