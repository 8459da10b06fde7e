#include "proxy/cluster.h"
#include "proxy/lbhash.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

struct cluster_eps *cluster_eps_new(size_t n)
{
	struct cluster_eps *e = xcalloc(1, sizeof(*e) + n * sizeof(e->v[0]));

	e->n = n;
	return e;
}

void cluster_eps_weigh(struct cluster_eps *eps)
{
	uint64_t sum = 0;
	bool differ = false;

	for (size_t i = 0; i < eps->n; i++) {
		sum += eps->v[i].weight;
		differ |= eps->v[i].weight != eps->v[0].weight;
	}
	eps->total_weight = differ && sum <= UINT32_MAX ? (uint32_t)sum : 0;
}

/* The endpoint whose stretch of the weight line [0, total_weight) holds x. */
static size_t cluster_weighted(const struct cluster_eps *eps, uint32_t x)
{
	for (size_t i = 0; i < eps->n; i++) {
		if (x < eps->v[i].weight)
			return i;
		x -= eps->v[i].weight;
	}
	return eps->n - 1;
}

void cluster_eps_free(struct cluster_eps *eps)
{
	if (!eps)
		return;
	lbh_free(eps->lbh);
	free(eps);
}

void cluster_eps_hash(const struct cluster *c, struct cluster_eps *eps)
{
	if (c->hash && eps && !eps->lbh)
		eps->lbh = lbh_build(c->hash, eps);
}

bool cluster_eps_equal(const struct cluster_eps *a, const struct cluster_eps *b)
{
	if (!a || !b)
		return a == b;
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!sock_addr_equal(&a->v[i].addr, &b->v[i].addr) || a->v[i].weight != b->v[i].weight)
			return false;
	return true;
}

const struct cluster_ep *cluster_pick(const struct cluster *c, const struct cluster_eps *eps,
                                      uint32_t *rr, const uint32_t *active, uint32_t rnd)
{
	return cluster_pick_ex(c, eps, rr, active, rnd, NULL);
}

/* The first endpoint at or after i (cyclically) that is not excluded (excluded NULL: i
 * itself); n if none. */
static size_t cluster_next_ok(const struct cluster_eps *eps, size_t i, const uint8_t *excluded)
{
	for (size_t k = 0; k < eps->n; k++, i = (i + 1) % eps->n)
		if (!excluded || !excluded[i])
			return i;
	return eps->n;
}

const struct cluster_ep *cluster_pick_ex(const struct cluster *c, const struct cluster_eps *eps,
                                         uint32_t *rr, const uint32_t *active, uint32_t rnd,
                                         const uint8_t *excluded)
{
	size_t a, b;

	if (!eps || eps->n == 0)
		return NULL;
	if (eps->n == 1 && !excluded)
		return &eps->v[0];
	if (eps->total_weight && !excluded) {
		/* Weighted (ServiceEntry endpoint weights). With endpoints ejected the plain
		 * policies below apply: the weights no longer describe who is in service. */
		uint32_t t = eps->total_weight;

		switch (c->lb) {
		case CLUSTER_LB_RANDOM:
			return &eps->v[cluster_weighted(eps, rnd % t)];
		case CLUSTER_LB_LEAST_REQUEST:
			a = cluster_weighted(eps, rnd % t);
			b = cluster_weighted(eps, (uint32_t)(((uint64_t)rnd * 2654435761u) >> 32) % t);
			return &eps->v[active && active[b] < active[a] ? b : a];
		default:
			return &eps->v[cluster_weighted(eps, (*rr)++ % t)];
		}
	}
	/* With endpoints out (outlier ejection), each policy picks as it would and moves on
	 * to the next endpoint in service. */
	switch (c->lb) {
	case CLUSTER_LB_RANDOM:
		a = cluster_next_ok(eps, rnd % eps->n, excluded);
		break;
	case CLUSTER_LB_LEAST_REQUEST:
		a = cluster_next_ok(eps, rnd % eps->n, excluded);
		b = cluster_next_ok(eps, (rnd >> 16) % eps->n, excluded);
		if (a < eps->n && active && active[b] < active[a])
			a = b;
		break;
	case CLUSTER_LB_ROUND_ROBIN:
	case CLUSTER_LB_PASSTHROUGH:
	default:
		if (!excluded)
			return &eps->v[(*rr)++ % eps->n];
		a = cluster_next_ok(eps, *rr % eps->n, excluded);
		if (a < eps->n)
			*rr = (uint32_t)(a + 1);
		break;
	}
	return a < eps->n ? &eps->v[a] : NULL;
}

void cluster_free(struct cluster *c)
{
	if (!c)
		return;
	cluster_eps_free(atomic_load(&c->eps));
	lbh_cfg_free(c->hash);
	for (size_t i = 0; i < c->nnames; i++)
		free(c->names[i].host);
	free(c->names);
	if (c->tls_ctx)
		tls_ctx_unref(c->tls_ctx);
	for (size_t i = 0; i < c->nsans; i++)
		free(c->sans[i]);
	free(c->sans);
	free(c->name);
	free(c->host);
	free(c->subset);
	free(c->dns_error);
	free(c->tls_ctx_error);
	free(c->sni);
	free(c->credential);
	free(c->src_se);
	free(c->src_dr);
	free(c->src_ca);
	free(c->src_cert);
	free(c->src_crl);
	free(c);
}
