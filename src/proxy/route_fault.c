/* route_fault: fault injection, direct responses and redirect scheme/port compiled from a
 * VirtualService http rule (see route_fault.h); the request path's use of them is in
 * fwd_core.c. */
#include "proxy/route_fault.h"
#include "config/resource.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "proxy/route.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Index = code, as google.rpc.Code; the names Istio's validation accepts. */
static const char *const grpc_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

int route_fault_grpc_code(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(grpc_names); i++)
		if (strcmp(grpc_names[i], name) == 0)
			return (int)i;
	return -1;
}

const char *route_fault_grpc_name(int code)
{
	return code >= 0 && (size_t)code < ARRAY_SIZE(grpc_names) ? grpc_names[code] : NULL;
}

int route_fault_http_to_grpc(int http)
{
	switch (http) {
	case 400: return 13;    /* INTERNAL */
	case 401: return 16;    /* UNAUTHENTICATED */
	case 403: return 7;     /* PERMISSION_DENIED */
	case 404: return 12;    /* UNIMPLEMENTED */
	case 429:
	case 502:
	case 503:
	case 504: return 14;    /* UNAVAILABLE */
	default: return 2;      /* UNKNOWN */
	}
}

bool route_fault_is_grpc(const char *ct, size_t len)
{
	return len >= 16 && strncasecmp(ct, "application/grpc", 16) == 0 &&
	       (len == 16 || ct[16] == '+' || ct[16] == ';');
}

/* Istio's percentage.value (a double in [0, 100]) as FractionalPercent MILLION. */
static uint32_t pct_ppm(const struct res_percent *p, int32_t percent)
{
	double v = p ? p->value * 10000.0 : (double)percent * 10000.0;

	if (v <= 0)
		return 0;
	return v >= ROUTE_FAULT_PPM ? ROUTE_FAULT_PPM : (uint32_t)v;
}

struct route_fault *route_fault_compile(const struct vs_http_route *hr)
{
	const struct vs_fault *vf = hr->fault;
	const struct vs_direct_response *dr = hr->direct_response;
	const struct vs_redirect *rd = hr->redirect;
	bool redir = rd && (rd->scheme || rd->port ||
	                    rd->derive_port == VS_REDIRECT_FROM_REQUEST_PORT);
	struct route_fault *f;

	if (!vf && !dr && !redir)
		return NULL;
	f = xcalloc(1, sizeof(*f));
	f->abort_grpc = -1;
	if (vf && vf->delay && vf->delay->fixed_delay_ms > 0) {
		f->delay_ms = vf->delay->fixed_delay_ms;
		f->delay_ppm = pct_ppm(vf->delay->percentage, vf->delay->percent);
	}
	if (vf && vf->abort) {
		int g = route_fault_grpc_code(vf->abort->grpc_status);

		if (g >= 0) {
			f->abort_http = 200;
			f->abort_grpc = g;
		} else if (vf->abort->http_status >= 200) {
			f->abort_http = vf->abort->http_status;
		}
		f->abort_ppm = pct_ppm(vf->abort->percentage, 0);
	}
	if (dr) {
		const struct vs_http_body *b = dr->body;

		f->direct_status = (int)dr->status;
		if (b && b->string) {
			f->direct_len = strlen(b->string);
			f->direct_body = xstrdup(b->string);
		} else if (b && b->bytes) {
			f->direct_len = b->bytes_len;
			f->direct_body = xmalloc(b->bytes_len + 1);
			memcpy(f->direct_body, b->bytes, b->bytes_len + 1);
		}
	}
	if (redir) {
		f->redir_scheme = rd->scheme ? xstrdup(rd->scheme) : NULL;
		f->redir_port = (uint16_t)rd->port;
		f->redir_port_from_request = !rd->port &&
		                             rd->derive_port == VS_REDIRECT_FROM_REQUEST_PORT;
	}
	return f;
}

void route_fault_free(struct route_fault *f)
{
	if (!f)
		return;
	free(f->direct_body);
	free(f->redir_scheme);
	free(f);
}

/* Where the port of an authority starts (its ':'), or len when it has none; an IPv6
 * literal's colons are inside its brackets. */
static size_t authority_port_at(const char *h, size_t len)
{
	size_t i = len;

	while (i > 0 && h[i - 1] >= '0' && h[i - 1] <= '9')
		i--;
	if (i == 0 || i == len || h[i - 1] != ':')
		return len;
	i--;
	if (h[0] == '[')
		return i > 0 && h[i - 1] == ']' ? i : len;
	return memchr(h, ':', i) ? len : i;   /* a bare IPv6 address has no port */
}

/* True when the scheme s (len bytes) is name. */
static bool scheme_is(const char *s, size_t len, const char *name)
{
	return len == strlen(name) && memcmp(s, name, len) == 0;
}

void route_fault_location(const struct route_fault *f, const char *authority, const char *uri,
                          const struct route_req *rq, struct sbuf *out)
{
	const char *scheme = f && f->redir_scheme ? f->redir_scheme : NULL;
	size_t slen = scheme ? strlen(scheme) : rq->scheme_len;
	unsigned port = !f ? 0 : f->redir_port ? f->redir_port
	                : f->redir_port_from_request ? rq->port : 0;

	if (!scheme)
		scheme = rq->scheme;
	/* Istio leaves out a port that is its scheme's default. */
	if ((port == 80 && scheme_is(scheme, slen, "http")) ||
	    (port == 443 && scheme_is(scheme, slen, "https")))
		port = 0;
	sbuf_add(out, scheme, slen);
	sbuf_add(out, "://", 3);
	if (authority) {
		sbuf_adds(out, authority);
	} else {
		/* Envoy's processRequestHost: the request's own port goes when a port is
		 * given, or when the scheme changes and it was the old scheme's default. */
		size_t at = authority_port_at(rq->authority, rq->authority_len);
		size_t n = rq->authority_len;

		if (at < n) {
			const char *p = rq->authority + at;
			size_t pl = n - at;
			bool drop = port != 0;

			if (slen != rq->scheme_len || memcmp(scheme, rq->scheme, slen) != 0)
				drop |= (scheme_is(rq->scheme, rq->scheme_len, "https") && pl == 4 &&
				         memcmp(p, ":443", 4) == 0) ||
				        (scheme_is(rq->scheme, rq->scheme_len, "http") && pl == 3 &&
				         memcmp(p, ":80", 3) == 0);
			if (drop)
				n = at;
		}
		sbuf_add(out, rq->authority, n);
	}
	if (port)
		sbuf_addf(out, ":%u", port);
	if (uri) {
		if (uri[0] != '/')
			sbuf_addc(out, '/');
		sbuf_adds(out, uri);
	} else {
		if (!rq->path_len || rq->path[0] != '/')
			sbuf_addc(out, '/');
		sbuf_add(out, rq->path, rq->path_len);
	}
}
