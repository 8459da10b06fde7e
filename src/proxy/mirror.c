/* mirror: a route's mirror policies compiled from its VirtualService http rule (see
 * mirror.h); what a request does with them is fwd_mirror.c's. */
#include "proxy/mirror.h"
#include "proxy/route_fault.h"
#include "config/resource.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

/* Istio's percentage.value (a double in [0, 100]) as FractionalPercent MILLION; an absent
 * percentage is 100%, as Istio programs a mirror without one. */
static uint32_t mirror_ppm(const struct res_percent *pct, const struct res_u32opt *old)
{
	double v;

	if (pct)
		v = pct->value * 10000.0;
	else if (old && old->set)
		v = (double)old->value * 10000.0;
	else
		return ROUTE_FAULT_PPM;
	if (v <= 0)
		return 0;
	return v >= ROUTE_FAULT_PPM ? ROUTE_FAULT_PPM : (uint32_t)v;
}

static void mirror_add(struct route_mirror *m, const struct vs_destination *dst, uint32_t ppm,
                       route_mirror_dest_fn dest, void *ctx)
{
	struct route_mirror_policy *p;

	if (!dst || !dst->host || ppm == 0)
		return;
	p = &m->p[m->n++];
	dest(ctx, dst, p);
	p->ppm = ppm;
}

struct route_mirror *route_mirror_compile(const struct vs_http_route *hr,
                                          route_mirror_dest_fn dest, void *ctx)
{
	struct route_mirror *m;

	if (!hr->mirror && hr->mirrors.n == 0)
		return NULL;
	m = xcalloc(1, sizeof(*m));
	m->p = xcalloc(hr->mirrors.n + 1, sizeof(*m->p));
	if (hr->mirror)
		mirror_add(m, hr->mirror, mirror_ppm(hr->mirror_percentage, &hr->mirror_percent),
		           dest, ctx);
	for (size_t i = 0; i < hr->mirrors.n; i++)
		mirror_add(m, hr->mirrors.v[i].destination,
		           mirror_ppm(hr->mirrors.v[i].percentage, NULL), dest, ctx);
	if (m->n == 0) {
		route_mirror_free(m);
		return NULL;
	}
	return m;
}

void route_mirror_free(struct route_mirror *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->p[i].cluster_name);
		free(m->p[i].host);
	}
	free(m->p);
	free(m);
}
