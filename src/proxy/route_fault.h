/* route_fault: what a route answers or holds back by itself, compiled from a VirtualService
 * http rule: fault injection (fault.delay, fault.abort), directResponse, and the parts of
 * redirect that Envoy's RedirectAction takes beyond the path and host (scheme, port,
 * derivePort). One pointer in struct route (route.h), NULL when the rule has none of
 * these, so a route without them costs the request path one NULL test.
 *
 * As Envoy runs them for Istio: the fault filter comes before the router, so a delay
 * (fixedDelay, flag DI) holds the request before anything else happens (the route's
 * timeout starts after it), then an abort answers it (httpStatus, or grpcStatus: HTTP 200
 * with grpc-status; flag FI, details "fault_filter_abort"). Each is decided per request
 * with the worker's random source, against a percentage kept in millionths as Istio hands
 * it to Envoy (percentage.value * 10000 of FractionalPercent MILLION; the deprecated
 * integer percent likewise); no percentage at all is 0%, Istio's "if left unspecified, no
 * request will be delayed / aborted". The request path's hooks are in fwd_core.c
 * (st_fault_delay, st_fault_abort, st_direct, st_redirect); proxy-config shows them
 * (snap_json.c snap_json_route_fault). */
#ifndef EGRESS_PROXY_ROUTE_FAULT_H
#define EGRESS_PROXY_ROUTE_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct route_req;
struct sbuf;
struct vs_http_route;

#define ROUTE_FAULT_PPM 1000000u   /* percentages are kept in millionths */

struct route_fault {
	/* fault.delay: 0 ms means no delay configured. */
	int64_t delay_ms;
	uint32_t delay_ppm;
	/* fault.abort: abort_http 0 means no abort configured. With grpcStatus, abort_http is
	 * 200 (Envoy's Code::OK) and abort_grpc the status's code; else abort_grpc is -1. */
	int abort_http;
	int abort_grpc;
	uint32_t abort_ppm;
	/* directResponse: status 0 means none; body (len bytes, may hold NULs) or NULL. */
	int direct_status;
	char *direct_body;
	size_t direct_len;
	/* redirect: scheme (NULL: the request's), port (0: none), or derivePort
	 * FROM_REQUEST_PORT (the port the request was routed on, as Istio compiles it). */
	char *redir_scheme;
	uint16_t redir_port;
	bool redir_port_from_request;
};

/* The compiled form of hr's fault, directResponse and redirect scheme/port, or NULL when it
 * has none of them. hr was validated (res_validate.c). */
struct route_fault *route_fault_compile(const struct vs_http_route *hr);
void route_fault_free(struct route_fault *f);

/* True when a request whose random value is rnd falls within ppm millionths (Envoy's
 * featureEnabled with a FractionalPercent: rnd % 1,000,000 < numerator). */
static inline bool route_fault_hit(uint32_t ppm, uint32_t rnd)
{
	return ppm >= ROUTE_FAULT_PPM || rnd % ROUTE_FAULT_PPM < ppm;
}

/* The gRPC status code of a name ("UNAVAILABLE" -> 14), or -1. */
int route_fault_grpc_code(const char *name);
/* Its name, or NULL for a code out of range. */
const char *route_fault_grpc_name(int code);
/* The gRPC status Envoy gives a local reply of HTTP status http on a gRPC request
 * (Grpc::Utility::httpToGrpcStatus). */
int route_fault_http_to_grpc(int http);
/* True when the content-type value (len bytes) makes the request gRPC, as Envoy's
 * Grpc::Common::isGrpcRequestHeaders: "application/grpc", or it followed by '+' or ';'. */
bool route_fault_is_grpc(const char *ct, size_t len);

/* Appends to out the Location of a redirect of the request rq (its scheme, authority with
 * port, path, and the port it was routed on; Envoy's Http::Utility::newUri) to authority
 * (NULL: the request's) and uri (NULL: the request's path and query), with f's scheme and
 * port (f may be NULL):
 * scheme://host[:port]path. A port of the scheme's default (80 for http, 443 for https)
 * is left out, as Istio compiles it; the request host's own port is dropped when a port
 * is given, or when the scheme changes and it was the old scheme's default. */
void route_fault_location(const struct route_fault *f, const char *authority, const char *uri,
                          const struct route_req *rq, struct sbuf *out);

#endif
