/* route_rerw: rewrite.uriRegexRewrite, as Envoy's RouteAction regex_rewrite that Istio
 * makes of it: the RE2 pattern `match` is searched in the request's path (without the
 * query string and fragment, which are kept as they are) and every non-overlapping match
 * is replaced by `rewrite`, with \0..\9 standing for the match and its groups
 * (RE2::GlobalReplace, core/re.h). The upstream gets the new path; the original goes in
 * x-envoy-original-path as for rewrite.uri (st_send_head).
 *
 * Compiled once per snapshot into route->rerw (NULL when the route has none, so a route
 * without it costs one NULL test in st_begin); applied by st_rewrite. */
#ifndef EGRESS_PROXY_ROUTE_RERW_H
#define EGRESS_PROXY_ROUTE_RERW_H

#include <stddef.h>

#include "config/resource.h"
#include "proxy/route.h"

struct sbuf;

struct route_rerw {
	struct re *re;
	char *match;               /* the pattern, for proxy-config */
	char *rewrite;             /* the substitution */
};

/* Sets out->rerw from hr->rewrite->uri_regex_rewrite (left NULL when absent). Returns 0,
 * or -1 with a message in err when the pattern or the substitution is not valid (the
 * decoder refuses both first; this is the proxy's own check). */
int rerw_compile(struct route *out, const struct vs_http_route *hr, char *err, size_t errlen);
/* Appends to out the request target path (len bytes, origin-form) rewritten. */
void rerw_apply(const struct route_rerw *rw, const char *path, size_t len, struct sbuf *out);
void rerw_free(struct route_rerw *rw);

#endif
