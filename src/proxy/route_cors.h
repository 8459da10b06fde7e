/* route_cors: VirtualService corsPolicy, as Envoy's CORS filter applies what Istio makes
 * of it (allow_origin_string_match, allow_methods / allow_headers / expose_headers joined
 * with ",", max_age in seconds, allow_credentials, forward_not_matching_preflights from
 * unmatchedPreflights).
 *
 * On a request whose route has a policy and that carries a non-empty Origin:
 *   - the origin is allowed when a matcher matches it, or matches "*" itself (Envoy's
 *     isOriginAllowed: exact "*" allows every origin);
 *   - allowed, OPTIONS with a non-empty Access-Control-Request-Method (a preflight): the
 *     proxy answers 200 with access-control-allow-origin (the request's Origin),
 *     -allow-credentials "true" when allowCredentials, -allow-methods (the request's
 *     method when allowMethods is "*"), -allow-headers (the request's
 *     Access-Control-Request-Headers when "*"), -max-age; the upstream sees nothing;
 *   - allowed, anything else: forwarded; its response (and a reply the proxy makes for
 *     it) gets access-control-allow-origin, -allow-credentials, -expose-headers, each
 *     replacing the upstream's;
 *   - not allowed: untouched, except a preflight under unmatchedPreflights IGNORE, which
 *     is answered 200 with the policy's fields but no access-control-allow-origin (as
 *     Envoy's filter answers it).
 * Called from st_begin once the route is chosen (rcors_request), and by the response
 * head writers through struct rcors_edit, which carries the route's header operations
 * (route_hdrs.h) and the CORS fields together. */
#ifndef EGRESS_PROXY_ROUTE_CORS_H
#define EGRESS_PROXY_ROUTE_CORS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/resource.h"
#include "proxy/route.h"
#include "proxy/route_hdrs.h"

struct route_cors {
	struct strmatch *origins;
	size_t norigins;
	bool any_origin;              /* a matcher matches "*" itself */
	char *allow_methods;          /* NULL: none */
	char *allow_headers;
	char *expose_headers;
	char *max_age;                /* seconds, decimal */
	bool allow_credentials;
	bool forward_unmatched;       /* unmatchedPreflights FORWARD (the default) */
};

/* The fields CORS adds to a response, at most. */
#define RCORS_MAX_FIELDS 3

/* Compiles hr->cors into out->cors (NULL when the route has none). Returns 0, or -1 with
 * a message in err when an origin regex does not compile (the decoder checked it). */
int rcors_compile(struct route *out, const struct vs_http_route *hr, char *err, size_t errlen);
/* Frees c (NULL: nothing). In route.c with the rest of a route's freeing, so that the
 * router does not call back into this file (which uses its strmatch). */
void route_cors_free(struct route_cors *c);
bool rcors_origin_allowed(const struct route_cors *c, const char *origin, size_t len);

struct stream;
/* The policy of st's route on its request: 1 when the proxy answered it (a preflight; the
 * caller then ends the exchange with st_finish), else 0 (st->cors_origin set when its
 * response gets CORS fields). */
int rcors_request(struct stream *st);

/* What the proxy changes in a response head: the route's header operations (rh, NULL:
 * none) and the CORS fields (origin NULL: none). The head writers ask rcors_dropped of
 * each field and write the rest with rcors_write_h1 / rcors_h2. */
struct rcors_edit {
	const struct rhdr_list *rh;
	const struct route_cors *cors;
	const char *origin;
};

/* The edit for st's response, or NULL when nothing changes (e is the storage). */
const struct rcors_edit *rcors_edit_for(const struct stream *st, struct rcors_edit *e);
/* The head writers' calls, inline for the NULL test: a response without an edit costs
 * one test per field and no call. */
bool rcors_edit_dropped(const struct rcors_edit *e, const char *name, size_t len);
static inline bool rcors_dropped(const struct rcors_edit *e, const char *name, size_t len)
{
	return e && rcors_edit_dropped(e, name, len);
}

struct iobuf;
void rcors_edit_write_h1(struct iobuf *o, const struct rcors_edit *e);
static inline void rcors_write_h1(struct iobuf *o, const struct rcors_edit *e)
{
	if (e)
		rcors_edit_write_h1(o, e);
}

/* Appends to h[*n ..] (room entries in all: RHDR_MAX_EMIT + RCORS_MAX_FIELDS beyond the
 * message's fields always fit). */
void rcors_h2(struct h2_header *h, size_t *n, size_t room, const struct rcors_edit *e);

#endif
