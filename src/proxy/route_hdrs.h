/* route_hdrs: VirtualService `headers` (HTTPRoute.headers and HTTPRouteDestination.headers),
 * compiled per route into what the head serializers need, applied there.
 *
 * Istio gives Envoy each level's operations as request/response_headers_to_remove and
 * _to_add (set: OVERWRITE_IF_EXISTS_OR_ADD, add: APPEND_IF_EXISTS_OR_ADD, each list sorted
 * by name, set before add); Envoy evaluates the chosen destination's (weighted cluster)
 * level first, then the route's (most_specific_header_mutations_wins false: the less
 * specific level wins), and within a level removes before it adds. An empty value adds
 * nothing (keep_empty_value false). route_hdrs.c runs that sequence once, at compile
 * time, for the route alone and for each destination with the route, and keeps its
 * outcome as two lists per direction:
 *   drop: names whose fields in the message (the peer's and the proxy's own, such as
 *         x-forwarded-for or x-request-id) are left out;
 *   emit: fields written after the kept ones, in order.
 * Every head writer (HTTP/1.1 and HTTP/2 upstream request, HTTP/1.1 and HTTP/2 downstream
 * response, replies made here) asks rhdr_drop() of each field and writes emit: the same
 * two calls in each codec. An unconfigured route has no struct rhdr_route (NULL): the cost
 * is one test per head.
 *
 * Names are lower-case (HTTP/2 requires it); values are as written, "%%" as "%". The
 * decoder refuses hop-by-hop and framing names, pseudo-headers, Host outside the route's
 * request set/add (which Istio makes the route's host rewrite: rhdr_compile sets
 * rewrite_authority), and %VARIABLE% values (res_validate.c). */
#ifndef EGRESS_PROXY_ROUTE_HDRS_H
#define EGRESS_PROXY_ROUTE_HDRS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/resource.h"
#include "proxy/route.h"
#include "proxy/route_fault.h"

/* The most fields a compiled list emits: two levels of VS_HEADER_OPS_MAX each. */
#define RHDR_MAX_EMIT (2 * VS_HEADER_OPS_MAX)

struct rhdr_field {
	char *name;        /* lower-case */
	size_t nlen;
	char *value;       /* NULL in drop lists */
	size_t vlen;
};

struct rhdr_list {
	struct rhdr_field *drop;
	size_t ndrop;
	struct rhdr_field *emit;    /* at most RHDR_MAX_EMIT */
	size_t nemit;
};

/* What applies to one request: its request and its response head. */
struct rhdr {
	struct rhdr_list req, resp;
};

/* A route's: the route level alone (replies made before a destination is picked), and per
 * destination (route->dests[i]) its level then the route's. */
struct rhdr_route {
	struct rhdr route;
	struct rhdr *dest;          /* [route->ndests] */
	size_t ndest;
};

/* Compiles hr's headers (and its destinations') into out->hdrs; leaves it NULL when none
 * has an operation. A route-level request set/add of host or :authority becomes
 * out->rewrite_authority (Istio's host_rewrite_literal; the decoder refused it together
 * with rewrite.authority). Call after out->dests is filled. */
void rhdr_compile(struct route *out, const struct vs_http_route *hr);
void rhdr_free(struct rhdr_route *h);

/* What applies to a request routed to r (dest: the picked destination, or NULL before
 * one is picked). NULL when r has no header operations. */
static inline const struct rhdr *rhdr_for(const struct rhdr_route *h, size_t dest_idx,
                                          bool picked)
{
	if (!h)
		return NULL;
	return picked && dest_idx < h->ndest ? &h->dest[dest_idx] : &h->route;
}

/* What applies to a response: the picked destination's (picked), else for a redirect or
 * a direct response the route's own level; nothing for a reply made before a destination
 * was picked (r may be NULL: not routed). Envoy's router applies the route entry's
 * response_headers_to_add to the replies it makes (503 UF/UH, 504 UT, a redirect, a direct
 * response) as to upstream responses; the replies of filters before the router (a CORS
 * preflight, a fault's abort) get none. */
static inline const struct rhdr *rhdr_resp_for(const struct rhdr *picked, const struct route *r)
{
	if (picked)
		return picked;
	/* The router's own answers without a destination: a redirect, a direct response. */
	return r && r->hdrs && (r->redirect_code || (r->fault && r->fault->direct_status))
	       ? &r->hdrs->route : NULL;
}

/* True when a field named name (len bytes, any case) is left out of the message. */
bool rhdr_drop(const struct rhdr_list *l, const char *name, size_t len);

/* The codecs' two questions, with l NULL when nothing applies (one test per field):
 * is this field left out? (rhdr_dropped), and the fields to write after the kept ones
 * (rhdr_write_h1 as HTTP/1.1 text, rhdr_h2 into an HTTP/2 field array). */
static inline const struct rhdr_list *rhdr_req(const struct rhdr *h)
{
	return h && (h->req.ndrop || h->req.nemit) ? &h->req : NULL;
}

static inline const struct rhdr_list *rhdr_resp(const struct rhdr *h)
{
	return h && (h->resp.ndrop || h->resp.nemit) ? &h->resp : NULL;
}

static inline bool rhdr_dropped(const struct rhdr_list *l, const char *name, size_t len)
{
	return l && l->ndrop && rhdr_drop(l, name, len);
}

struct iobuf;
struct h2_header;
void rhdr_emit_h1(struct iobuf *o, const struct rhdr_list *l);
static inline void rhdr_write_h1(struct iobuf *o, const struct rhdr_list *l)
{
	if (l)
		rhdr_emit_h1(o, l);
}
/* Appends l's fields to h[*n ..], at most room in all; returns how many did not fit (0:
 * the arrays sized with RHDR_MAX_EMIT always fit). */
size_t rhdr_h2(struct h2_header *h, size_t *n, size_t room, const struct rhdr_list *l);

#endif
