/* explain: how this proxy would handle one request, without sending it (the admin's
 * /explain, egressctl explain-request).
 *
 * It walks the same tables and functions the data path uses (fwd_core.c st_begin): the
 * gateway's listener for the port and the server chosen by SNI, or the sidecar's outbound
 * route table for the port; route_vhost_find and route_select for the virtual host and
 * the route (with the VirtualService and file:line of the rule); the weighted
 * destinations and their cluster: TLS origination (mode, SNI, SubjectAltNames, the
 * credential and whether it loaded), endpoints and load balancing; or the refusal a
 * request would get (404 NR, 503 NC/UH/UF/DF, the sidecar's PassthroughCluster or
 * BlackHoleCluster under ALLOW_ANY / REGISTRY_ONLY), with Envoy's response flag. */
#ifndef EGRESS_PROXY_EXPLAIN_H
#define EGRESS_PROXY_EXPLAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"
#include "proxy/snap.h"

struct proxy;

struct explain_req {
	const char *method;             /* "GET" when NULL */
	const char *url;                /* http://host[:port]/path?query or https://... */
	const char *const *headers;     /* "Name: value" */
	size_t nheaders;
	bool registry_only;             /* the sidecar's --outbound-policy */
	/* The running proxy, for outlier detection's state (hstats.h); NULL: not known, the
	 * endpoints are shown as if none were ejected. */
	const struct proxy *proxy;
};

/* Appends the answer to out as JSON. Returns 0, or -1 when the URL cannot be read (a
 * reason in err). Reads only immutable snapshot data and endpoint sets: safe on the
 * control thread while workers run. */
int explain_request(const struct snap *s, const struct explain_req *q, struct sbuf *out,
                    struct sbuf *err);

#endif
