/* mirror: VirtualService `mirror` / `mirrors` / `mirrorPercentage` (and the deprecated
 * integer `mirrorPercent`), compiled for one route as Istio hands them to Envoy: the
 * route's request_mirror_policies, each a cluster and a runtime_fraction in millionths.
 *
 *   mirror + mirrorPercentage   one policy; no percentage at all is 100% (Istio's
 *                               MirrorPercent default); an explicit 0 is no policy
 *   mirrors[]                   one policy each, its own percentage (absent: 100%, 0: none)
 * Istio refuses mirror together with mirrors (res_validate.c, at apply).
 *
 * The compiled policies hang off struct route (route.h: `mirror`, NULL when the route
 * mirrors nothing, so the request path pays one NULL test). What a request does with
 * them is fwd_mirror.c's: a shadow copy per policy the request's random draw selects,
 * sent fire-and-forget with "-shadow" appended to the authority's host. */
#ifndef EGRESS_PROXY_MIRROR_H
#define EGRESS_PROXY_MIRROR_H

#include <stddef.h>
#include <stdint.h>

struct vs_destination;
struct vs_http_route;

/* A shadow's request body is kept up to this many bytes (as framed by the client: a
 * chunked body's chunk lines count); a request with a longer body is not mirrored
 * (counted). The same bound as a retry's replay (retry.h RETRY_BODY_MAX). */
#define MIRROR_BODY_MAX (64 * 1024)
/* Shadows in flight per worker; past it a shadow is not sent (counted), so mirroring
 * to a slow or dead destination cannot use up the proxy's descriptors. */
#define MIRROR_MAX_ACTIVE 1000
/* A shadow's timeout when its route has none (Istio's default route timeout is none;
 * a shadow must not hold a descriptor forever): Envoy's own default route timeout. */
#define MIRROR_DEFAULT_TIMEOUT_MS 15000

struct route_mirror_policy {
	char *cluster_name;        /* outbound|port|subset|host */
	char *host;                /* the destination's host (fully qualified) */
	uint16_t port;             /* the destination's service port */
	uint32_t ppm;              /* requests mirrored, in millionths (1..1,000,000) */
};

struct route_mirror {
	size_t n;
	struct route_mirror_policy *p;
};

/* What the snapshot builder makes of a mirror's destination, as of a route's (snap_route.c):
 * sets p->host (allocated, fully qualified), p->cluster_name (allocated) and p->port. */
typedef void (*route_mirror_dest_fn)(void *ctx, const struct vs_destination *d,
                                     struct route_mirror_policy *p);

/* The mirror policies of hr, or NULL when it mirrors nothing (no mirror, or every
 * percentage 0). */
struct route_mirror *route_mirror_compile(const struct vs_http_route *hr,
                                          route_mirror_dest_fn dest, void *ctx);
void route_mirror_free(struct route_mirror *m);

#endif
