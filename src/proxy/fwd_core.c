/* fwd_core: the exchange core of the request path (part of the fwd module, see fwd_int.h).
 *
 * A request, once its head is parsed by a downstream codec (fwd_down_h1.c, or an HTTP/2
 * stream's virtual connection, fwd_vconn.c), is a struct stream. This file takes it from
 * there and back:
 *   st_begin: overload refusal, route (route_vhost_find, route_select), rewrite, authz
 *     (st_authz), a destination and cluster, then an endpoint (st_pick_endpoint) and the
 *     connection (fwd_conn.c st_connect; the sidecar's destinations in fwd_sidecar.c);
 *   st_on_timeout / st_upstream_failed: the route's timeout, 503 UF/UO/UT with retries;
 *   st_finish: access log line (st_log), Istio's metrics (st_istats), the upstream
 *     connection back to the pool, and the next pipelined request on the downstream.
 * Streams come from the worker's free list (st_get / st_put): about 3.4 KiB with the parsed
 * request head, only while a request is in progress; the parsed response head (2 KiB) from
 * another (st_resp), only once the response starts: a request queued for its upstream, or
 * an HTTP/2 stream waiting for its response, does not hold one. */
#include "proxy/fwd_core.h"
#include "proxy/fwd_sidecar.h"
#include "proxy/fwd_hash.h"
#include "proxy/fwd_conn.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/route_cors.h"
#include "proxy/route_rerw.h"
#include "proxy/fwd_mirror.h"
#include "proxy/authz.h"
#include "proxy/worker.h"
#include "proxy/cbreak.h"
#include "proxy/pool.h"
#include "proxy/overload.h"
#include "proxy/route_fault.h"
#include "proxy/sidecar.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"
#include "net/dns.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void st_on_timeout(struct loop *loop, struct loop_timer *t);


/* A free response head: the head's memory, or the link of the worker's free list. */
union st_resp_slot {
	union st_resp_slot *next;
	struct h1_msg m;
};

struct h1_msg *st_resp(struct stream *st)
{
	struct worker *w = st->d->w;
	union st_resp_slot *s = w->resp_free;

	if (st->resp)
		return st->resp;
	if (s) {
		w->resp_free = s->next;
		w->nresp_free--;
	} else {
		s = xmalloc(sizeof(*s));
	}
	memset(&s->m, 0, offsetof(struct h1_msg, headers));
	st->resp = &s->m;
	return st->resp;
}

/* st's response head back to the worker's free list (as many as it keeps streams). */
static void st_resp_put(struct worker *w, struct stream *st)
{
	union st_resp_slot *s = (union st_resp_slot *)st->resp;

	if (!s)
		return;
	st->resp = NULL;
	if (w->nresp_free >= FWD_ST_FREE_MAX) {
		free(s);
		return;
	}
	s->next = w->resp_free;
	w->resp_free = s;
	w->nresp_free++;
}

void st_resp_free_all(struct worker *w)
{
	while (w->resp_free) {
		union st_resp_slot *s = w->resp_free;

		w->resp_free = s->next;
		free(s);
	}
	w->nresp_free = 0;
}

/* Clears the per-request part of st (everything from route on) for a new request. */
void st_reset(struct stream *st)
{
	free(st->rw_path);
	free(st->rw_auth);
	free(st->cors_origin);
	st->rw_path = st->rw_auth = st->cors_origin = NULL;
	free(st->set_cookie);
	st->set_cookie = NULL;
	if (st->mir)
		fmir_pend_drop(st);
	st_resp_put(st->d->w, st);
	memset(&st->route, 0, sizeof(*st) - offsetof(struct stream, route));
	loop_timer_init(&st->timeout, st_on_timeout);
	loop_timer_init(&st->rt_timer, st_on_rt_timer);
	loop_task_init(&st->cb_wake, st_on_wake);
}

/* A stream for d's requests, from the worker's free list when it has one: ready for
 * h1_parse (parser reset, no upstream, no snapshot, not active). */
struct stream *st_get(struct dconn *d)
{
	struct worker *w = d->w;
	struct stream *st = w->st_free;

	if (st) {
		w->st_free = st->next_free;
		w->nst_free--;
	} else {
		st = xmalloc(sizeof(*st));
	}
	/* Everything but the request head (h1_parse fills it) starts zeroed. */
	memset(st, 0, offsetof(struct stream, req));
	st->d = d;
	h1_parser_init(&st->rp, true, 0);
	st_reset(st);
	return st;
}

/* Gives d's stream back (d is idle or closing: nothing refers to the stream any more). */
void st_put(struct dconn *d)
{
	struct worker *w = d->w;
	struct stream *st = d->st;

	if (!st)
		return;
	d->st = NULL;
	free(st->rw_path);
	free(st->rw_auth);
	free(st->cors_origin);
	st->rw_path = st->rw_auth = st->cors_origin = NULL;
	free(st->set_cookie);
	st->set_cookie = NULL;
	if (st->mir)
		fmir_pend_drop(st);
	st_resp_put(w, st);
	if (w->nst_free >= FWD_ST_FREE_MAX) {
		free(st);
		return;
	}
	st->next_free = w->st_free;
	w->st_free = st;
	w->nst_free++;
}

/* ---- Istio's metrics (istats.h) ---- */

/* One finished request into Istio's HTTP families and its cluster's counters. */
static void st_istats(struct stream *st)
{
	struct dconn *d = st->d;
	const struct cluster *cl = st->cl;
	struct istats_http_rec r = {
		.peer = d->peer_id, .code = st->code, .flags = st->flags, .grpc_status = -1,
		.duration_ms = loop_now_ms(d->w->loop) - st->start_ms,
		.req_bytes = st->bytes_in, .resp_bytes = st->bytes_out,
	};
	struct alog_str ct = req_header(st, "content-type");

	if (cl == &sidecar_passthrough_cluster || cl == &sidecar_blackhole_cluster) {
		r.dst_service = st->host;
		r.dst_name = cl->name;
	} else if (cl) {
		r.dst_service = cl->host;
	}
	/* grpc_response_status stays "": the status travels in trailers, which are not kept. */
	r.grpc = ct.len >= 16 && strncasecmp(ct.p, "application/grpc", 16) == 0;
	istats_http(d->w->istats, &r);
	if (cl) {
		struct istats_cluster *cs = cl_stats(d->w, cl);

		STAT_INC(cs->rq_total);
		STAT_INC(cs->rq_xx[st->code >= 100 && st->code < 600 ? st->code / 100 : 0]);
		hstats_rq(istats_hosts(d->w->istats), cl, st->ep_str, st->code, st->flags);
	}
}

/* ---- access log ---- */

void st_log(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct alog_entry e;
	struct alog_str xff = req_header(st, "x-forwarded-for");
	char xffbuf[1024];

	if (d->mirror) {     /* a shadow (fwd_mirror.c): counted, never logged */
		fmir_done(st);
		return;
	}
	STAT_INC(w->st.resp[st->code >= 100 && st->code < 600 ? st->code / 100 : 0]);
	st_istats(st);
	if (!w->proxy->alog_on)
		return;
	memset(&e, 0, sizeof(e));
	e.start_ms = st->start_wall_ms;
	e.method = span_str(d->in, st->req.method);
	e.path = span_str(d->in, st->req.target_form == H1_TF_ABSOLUTE ? st->req.path : st->req.target);
	e.protocol = cstr(d->h2s ? "HTTP/2" : st->req.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
	e.response_code = st->code;
	e.flags = st->flags;
	e.details = cstr(st->details);
	e.tls_failure = cstr(st->tls_reason[0] ? st->tls_reason : NULL);
	e.bytes_received = st->bytes_in;
	e.bytes_sent = st->bytes_out;
	e.duration_ms = (int64_t)(loop_now_ms(w->loop) - st->start_ms);
	e.upstream_service_time = st->ust;
	/* The gateway appends the peer to x-forwarded-for, as Envoy does with
	 * use_remote_address; the log shows the value as forwarded. */
	if (w->proxy->role == SNAP_ROLE_GATEWAY) {
		if (xff.len) {
			snprintf(xffbuf, sizeof(xffbuf), "%.*s,%s", (int)xff.len, xff.p, d->remote_ip);
			e.xff = cstr(xffbuf);
		} else {
			e.xff = cstr(d->remote_ip);
		}
	} else {
		e.xff = xff;
	}
	e.user_agent = req_header(st, "user-agent");
	e.request_id = cstr(st->reqid);
	/* Envoy's host_rewrite changes the request's :authority, which the log shows; a
	 * path rewrite keeps the original path there (X-ENVOY-ORIGINAL-PATH). */
	e.authority = st->rw_auth ? cstr(st->rw_auth)
	              : st->req.host_idx >= 0 && st->req.target_form != H1_TF_ABSOLUTE
	              ? span_str(d->in, st->req.headers[st->req.host_idx].value)
	              : span_str(d->in, st->req.authority);
	e.upstream_host = cstr(st->ep_str[0] ? st->ep_str : NULL);
	e.upstream_cluster = cstr(st->cl ? st->cl->name : NULL);
	e.upstream_local = cstr(st->up_local[0] ? st->up_local : NULL);
	e.downstream_local = cstr(d->local_s);
	e.downstream_remote = cstr(d->remote_s);
	e.sni = cstr(d->sni);
	e.route_name = cstr(st->route ? st->route->name : NULL);
	worker_alog(w, &e);
}

/* ---- stream lifecycle ---- */

static void st_on_timeout(struct loop *loop, struct loop_timer *t)
{
	struct stream *st = container_of(t, struct stream, timeout);

	(void)loop;
	STAT_INC(st->d->w->st.urq_timeout);
	if (st->cl)
		STAT_INC(cl_stats(st->d->w, st->cl)->rq_timeout);
	if (st->u) {
		struct uconn *u = st->u;

		st_od(st, OD_TIMEOUT, 504);

		st->u = NULL;
		u->st = NULL;
		fwd_up->close(u);
	}
	st->resp_close = true;
	fwd_down->local_reply(st, 504, ALOG_F_UT, "response_timeout", "upstream request timeout");
	fwd_down->settle(st->d);
}

/* Copies the host (without port) into st->hostbuf. */
static void st_set_host(struct stream *st)
{
	const char *b = st->d->in;
	struct h1_span a;
	size_t n;

	if (st->req.host_idx >= 0 && st->req.target_form != H1_TF_ABSOLUTE)
		a = st->req.headers[st->req.host_idx].value;
	else
		a = st->req.authority;
	n = a.len;
	if (n && b[a.off] == '[') {
		const char *close = memchr(b + a.off, ']', n);

		if (close)
			n = (size_t)(close - (b + a.off)) + 1;
	} else {
		const char *colon = memchr(b + a.off, ':', n);

		if (colon)
			n = (size_t)(colon - (b + a.off));
	}
	if (n >= sizeof(st->hostbuf))
		n = sizeof(st->hostbuf) - 1;
	for (size_t i = 0; i < n; i++) {
		char c = b[a.off + i];

		st->hostbuf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	st->hostbuf[n] = '\0';
	st->host = st->hostbuf;
}

/* AuthorizationPolicy (proxy/authz.h) for an HTTP request: true when it was refused
 * here (403 "RBAC: access denied", or 400 for a path not in normal form while path
 * policies are in force). */
static bool st_authz(struct stream *st, uint16_t port)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	const struct authz *a = st->snap->authz;
	struct req_hdr_ctx hc = { &st->req, d->in };
	struct authz_req rq;
	struct h1_span auth, p;
	const char *q, *details;

	if (!a)
		return false;
	auth = st->req.host_idx >= 0 && st->req.target_form != H1_TF_ABSOLUTE
	       ? st->req.headers[st->req.host_idx].value : st->req.authority;
	p = st->req.target_form == H1_TF_ABSOLUTE ? st->req.path : st->req.target;
	if (st->req.method_id == H1_M_CONNECT) {
		/* CONNECT host:port has no path; its authority is the target. */
		auth = st->req.target;
		p.len = 0;
	}
	memset(&rq, 0, sizeof(rq));
	rq.principal = d_principal(d);
	rq.source = &d->remote;
	rq.dest = d->redirected ? &d->odst : &d->local;
	rq.port = port;
	rq.sni = d->sni;
	rq.host = d->in + auth.off;
	rq.host_len = auth.len;
	rq.method = d->in + st->req.method.off;
	rq.method_len = st->req.method.len;
	rq.path = p.len ? d->in + p.off : NULL;
	q = p.len ? memchr(rq.path, '?', p.len) : NULL;
	rq.path_len = q ? (size_t)(q - rq.path) : p.len;
	rq.header = req_header_cb;
	rq.header_ctx = &hc;
	switch (authz_request(a, &rq, d->remote_s, st->reqid, &w->st, &details)) {
	case 0:
		return false;
	case 400:
		st->resp_close = true;
		fwd_down->local_reply(st, 400, 0, details, "Bad Request");
		return true;
	default:
		fwd_down->local_reply(st, 403, 0, details, "RBAC: access denied");
		return true;
	}
}

/* ---- sidecar: destinations, passthrough, tunnels ---- */

/* Picks the endpoint of st->cl and connects. This is where the upstream's transport is
 * chosen (st_connect: HTTP/1.1 with keep-alive, over TLS when the cluster says so); an
 * HTTP/2 upstream takes over from here, with the same routing and endpoint. */
static void st_pick_endpoint(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct cluster_eps *eps;
	const struct cluster_ep *ep;
	const uint8_t *excl = NULL;

	if (d->sidecar && st->cl->discovery == CLUSTER_ORIGINAL_DST) {
		st_original_dst(st);
		return;
	}
	eps = cluster_eps_load(st->cl);
	if (st->cl->od.on) {
		/* Outlier detection: ejected endpoints are skipped (outlier.h). */
		size_t back;

		back = od_sweep(&st_cc(st)->od, &st->cl->od, eps, loop_now_ms(w->loop));
		while (back--)
			STAT_DEC(w->st.od_ejections_active);
		excl = od_excluded(&st->cc->od, &st->cl->od, eps);
	}
	if (st->cl->hash)
		ep = fwd_hash_pick(st, eps, excl);
	else
		ep = cluster_pick_ex(st->cl, eps, &w->rr[st->cl->index < w->nrr ? st->cl->index : 0],
		                     NULL, worker_rand(w), excl);
	if (!ep) {
		if (!excl && atomic_load_explicit(&st->cl->dns_failed, memory_order_relaxed)) {
			STAT_INC(w->st.dns_fail);
			fwd_down->local_reply(st, 503, ALOG_F_DF, "dns_resolution_failure",
			                      "dns resolution failure");
		} else {
			STAT_INC(w->st.no_healthy);
			fwd_down->local_reply(st, 503, ALOG_F_UH, "no_healthy_upstream", "no healthy upstream");
		}
		return;
	}
	st->ep = ep->addr;
	str_copy(st->ep_str, sizeof(st->ep_str), ep->str);
	st_connect(st, false);
}

/* The route's rewrite (Envoy's prefix_rewrite and host_rewrite_literal, which Istio makes
 * of rewrite.uri and rewrite.authority): what st_send_head sends instead of the target and
 * Host. The rewritten host is the request's host from here on, so the automatic SNI and
 * SAN check follow it, as Envoy's auto_sni does. */
static void st_rewrite(struct stream *st, const struct route_match *hit, const char *path,
                       size_t len)
{
	const struct route *r = st->route;

	if (r->rewrite_uri) {
		struct sbuf p = SBUF_INIT;

		route_rewrite_path(r->rewrite_uri, hit, path, len, &p);
		st->rw_path = sbuf_steal(&p);
	} else if (r->rerw) {
		struct sbuf p = SBUF_INIT;

		rerw_apply(r->rerw, path, len, &p);
		st->rw_path = sbuf_steal(&p);
	}
	if (r->rewrite_authority) {
		char h[sizeof(st->hostbuf) - 2];
		uint16_t port;

		st->rw_auth = xstrdup(r->rewrite_authority);
		if (sidecar_split_authority(st->rw_auth, strlen(st->rw_auth), h, sizeof(h), &port,
		                            0) < 0)
			str_copy(h, sizeof(h), st->rw_auth);
		/* st->host keeps an IPv6 literal's brackets (st_set_host). */
		snprintf(st->hostbuf, sizeof(st->hostbuf), strchr(h, ':') ? "[%s]" : "%s", h);
		st->host = st->hostbuf;
	}
}

/* Routes the request whose head was just parsed and starts the upstream exchange. */
/* The request's id (x-request-id, or a new one), body framing state and host. */
static void st_req_init(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	int rid;

	STAT_INC(w->st.rq_total);
	rid = h1_header_find(&st->req, d->in, "x-request-id", 0);
	if (rid >= 0 && st->req.headers[rid].value.len > 0 &&
	    st->req.headers[rid].value.len < sizeof(st->reqid)) {
		memcpy(st->reqid, d->in + st->req.headers[rid].value.off, st->req.headers[rid].value.len);
		st->reqid[st->req.headers[rid].value.len] = '\0';
	} else {
		gen_request_id(w, st->reqid);
		st->reqid_generated = true;
	}
	st->req_left = st->req.content_length;
	h1_chunked_init(&st->req_ck);
	st->req_done = st->req.body == H1_BODY_NONE ||
	               (st->req.body == H1_BODY_LENGTH && st->req_left == 0);
	st_set_host(st);
}

/* A CONNECT request: tunneled by the sidecar, refused elsewhere. */
static void st_connect_method(struct stream *st)
{
	struct dconn *d = st->d;

	if (d->h2s) {
		/* A stream has no socket to hand to a tunnel (no extended CONNECT). */
		fwd_down->local_reply(st, 405, 0, "method_not_allowed",
		                      "CONNECT over HTTP/2 is not served here");
		return;
	}
	if (d->sidecar && d->redirected) {
		/* Not said to the sidecar: the application talks to a proxy of its own at
		 * the original destination. Relay it there (or as that address's
		 * ServiceEntry says), never to the CONNECT target around that proxy. */
		st_detach(st);
		d_tcp_handoff(d, NULL, SNI_NOT_TLS);
		return;
	}
	if (d->sidecar) {
		if (st_authz(st, st_sidecar_port(st)))
			return;
		st_sidecar_connect(st);
		return;
	}
	st->resp_close = true;
	fwd_down->local_reply(st, 405, 0, "method_not_allowed", "CONNECT is not served here");
}

/* AuthorizationPolicy, then the virtual host for the request (the sidecar's route table
 * for the destination port, or the listener's). NULL when st was answered (or handed on);
 * *port is the port routed on. */
static const struct route_vhost *st_vhost(struct stream *st, uint16_t *port)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	const struct route_vhost *vh;

	/* AuthorizationPolicy runs before routing, as Envoy's RBAC filter does before the
	 * router: a refused request learns nothing about the routes. */
	*port = d->sidecar ? st_sidecar_port(st) : d->lst ? d->lst->port : 0;
	if (st_authz(st, *port))
		return NULL;
	if (d->sidecar) {
		/* The sidecar's route table for the destination port (VirtualServices bound to
		 * mesh, ServiceEntry hosts); no vhost: the outbound traffic policy. */
		const struct route_table *t;

		st->port = *port;
		if (st_sidecar_tcp_route(st, *port))
			return NULL;
		t = sidecar_table(st->snap, *port);
		vh = t ? route_vhost_find(t, st->host, strlen(st->host)) : NULL;
		if (!vh) {
			st_sidecar_default(st);
			return NULL;
		}
	} else {
		if (!d->lst || !d->lst->routes ||
		    !(vh = route_vhost_find(d->lst->routes, st->host, strlen(st->host)))) {
			STAT_INC(w->st.no_route);
			fwd_down->local_reply(st, 404, ALOG_F_NR, "route_not_found", NULL);
			return NULL;
		}
		*port = d->lst->port;
	}
	return vh;
}

/* What the router matches on (route.h), from st's request head. */
static void st_route_req(const struct stream *st, uint16_t port, struct req_hdr_ctx *hc,
                         struct route_req *rq)
{
	const struct dconn *d = st->d;

	memset(rq, 0, sizeof(*rq));
	rq->method = d->in + st->req.method.off;
	rq->method_len = st->req.method.len;
	if (st->req.target_form == H1_TF_ABSOLUTE) {
		rq->path = d->in + st->req.path.off;
		rq->path_len = st->req.path.len;
		rq->authority = d->in + st->req.authority.off;
		rq->authority_len = st->req.authority.len;
	} else {
		rq->path = d->in + st->req.target.off;
		rq->path_len = st->req.target.len;
		if (st->req.host_idx >= 0) {
			rq->authority = d->in + st->req.headers[st->req.host_idx].value.off;
			rq->authority_len = st->req.headers[st->req.host_idx].value.len;
		}
	}
	rq->host = st->host;
	rq->host_len = strlen(st->host);
	rq->scheme = d->tls ? "https" : "http";
	rq->scheme_len = strlen(rq->scheme);
	rq->port = port;
	rq->header = req_header_cb;
	rq->header_ctx = hc;
}

/* The route's redirect, answered here (3xx with location, no body). The Location is
 * Envoy's RedirectAction's (route_fault_location): scheme, host, port, path. */
static void st_redirect(struct stream *st, const struct route_req *rq)
{
	struct sbuf loc = SBUF_INIT;
	struct fwd_field f[1] = { { "location", NULL } };

	route_fault_location(st->route->fault, st->route->redirect_authority,
	                     st->route->redirect_uri, rq, &loc);
	f[0].value = sbuf_str(&loc);
	st->code = st->route->redirect_code;
	st->details = "direct_response";
	if (!st->req_done || !st->req.keep_alive)
		st->resp_close = true;
	fwd_down->reply_head(st, st->code, f, 1, 0);
	sbuf_free(&loc);
	st->resp_done = true;
	st_finish(st);
}

/* The route's directResponse: its status and body, answered here as Envoy's router does
 * (a local reply: content-type text/plain when there is a body, details
 * "direct_response", no response flag; a 201 or 3xx gets the request's own URL as its
 * location, Envoy's newUri without a redirect). */
static void st_direct(struct stream *st, const struct route_req *rq)
{
	const struct route_fault *f = st->route->fault;
	struct sbuf loc = SBUF_INIT;
	struct fwd_field h[3] = { { "x-request-id", st->reqid }, { "location", NULL },
	                          { "content-type", "text/plain" } };
	size_t blen = f->direct_body ? f->direct_len : 0, n = 1;

	st->code = f->direct_status;
	st->details = "direct_response";
	if (!st->req_done || !st->req.keep_alive)
		st->resp_close = true;
	if (st->code == 201 || (st->code >= 300 && st->code < 400)) {
		route_fault_location(NULL, NULL, NULL, rq, &loc);
		h[n++].value = sbuf_str(&loc);
	}
	if (blen)
		h[n++] = h[2];
	fwd_down->reply_head(st, st->code, h, n, blen);
	sbuf_free(&loc);
	if (blen && st->req.method_id != H1_M_HEAD) {
		fwd_down->send(st->d, f->direct_body, blen);
		st->bytes_out = blen;
	}
	st->resp_done = true;
	st_finish(st);
}

/* fault.abort: answered here as Envoy's fault filter does (sendLocalReply with
 * "fault filter abort", details fault_filter_abort, flag FI). A gRPC request gets a
 * trailers-only answer, HTTP 200 with grpc-status: grpcStatus's code, or the one Envoy maps
 * httpStatus to; any other request gets httpStatus (200 for a grpcStatus abort). */
static void st_fault_abort(struct stream *st)
{
	const struct route_fault *f = st->route->fault;
	struct alog_str ct = req_header(st, "content-type");
	char gs[12];
	struct fwd_field h[4] = {
		{ "content-type", "application/grpc" }, { "grpc-status", gs },
		{ "grpc-message", "fault filter abort" }, { "x-request-id", st->reqid },
	};

	STAT_INC(st->d->w->st.fault_aborts);
	if (!route_fault_is_grpc(ct.p, ct.len)) {
		fwd_down->local_reply(st, f->abort_http, ALOG_F_FI, "fault_filter_abort",
		                      "fault filter abort");
		return;
	}
	snprintf(gs, sizeof(gs), "%d", f->abort_grpc >= 0 ? f->abort_grpc
	         : route_fault_http_to_grpc(f->abort_http));
	st->code = 200;
	st->flags |= ALOG_F_FI;
	st->details = "fault_filter_abort";
	if (!st->req_done || !st->req.keep_alive)
		st->resp_close = true;
	fwd_down->reply_head(st, 200, h, 4, 0);
	st->resp_done = true;
	st_finish(st);
}

/* The port st was routed on (st_vhost's *port). */
static uint16_t st_routed_port(const struct stream *st)
{
	return st->d->sidecar ? st->port : st->d->lst ? st->d->lst->port : 0;
}

/* What the route does once its fault delay (if any) is over: fault.abort, then a
 * redirect, a direct response, or a destination and its endpoint. */
static void st_route_action(struct stream *st, const struct route_req *rq)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	const struct route_fault *f = st->route->fault;
	const struct route_dest *dest;

	if (f && f->abort_http && route_fault_hit(f->abort_ppm, worker_rand(w))) {
		st_fault_abort(st);
		return;
	}
	if (st->route->redirect_code || (f && f->direct_status)) {
		struct req_hdr_ctx hc = { &st->req, d->in };
		struct route_req again;

		if (!rq) {      /* after a delay: what the router matched on, again */
			st_route_req(st, st_routed_port(st), &hc, &again);
			rq = &again;
		}
		if (st->route->redirect_code)
			st_redirect(st, rq);
		else
			st_direct(st, rq);
		return;
	}
	dest = route_pick_dest(st->route, worker_rand(w));
	if (!dest || !dest->cluster) {
		fwd_down->local_reply(st, 503, ALOG_F_NC, "cluster_not_found", "no cluster");
		return;
	}
	st->cl = dest->cluster;
	st->hdrs = rhdr_for(st->route->hdrs, (size_t)(dest - st->route->dests), true);
	if (st->route->mirror)   /* shadows of the request as its upstream will get it */
		fmir_begin(st);
	if (st->route->timeout_ms > 0)
		loop_timer_arm(w->loop, &st->timeout, (uint64_t)st->route->timeout_ms);
	st_pick_endpoint(st);
}

/* fault.delay is over: the stream's timer is the route timeout's again, and the request
 * goes on (a client that left meanwhile took the timer with it: st_abandon). */
static void st_on_fault_delay(struct loop *loop, struct loop_timer *t)
{
	struct stream *st = container_of(t, struct stream, timeout);
	struct dconn *d = st->d;

	(void)loop;
	loop_timer_init(&st->timeout, st_on_timeout);
	st_route_action(st, NULL);
	fwd_down->settle(d);
}

/* fault.delay, before anything else the route does (Envoy's fault filter comes before
 * the router, so the route's timeout starts after the delay). The stream's own timer
 * holds the request, no thread: true when it was delayed. */
static bool st_fault_delay(struct stream *st)
{
	const struct route_fault *f = st->route->fault;
	struct worker *w = st->d->w;

	if (!f->delay_ms || !route_fault_hit(f->delay_ppm, worker_rand(w)))
		return false;
	STAT_INC(w->st.fault_delays);
	st->flags |= ALOG_F_DI;
	loop_timer_init(&st->timeout, st_on_fault_delay);
	loop_timer_arm(w->loop, &st->timeout, (uint64_t)f->delay_ms);
	return true;
}

void st_begin(struct dconn *d)
{
	struct stream *st = d->st;
	struct worker *w = d->w;
	const struct route_vhost *vh;
	struct route_req rq;
	struct req_hdr_ctx hc = { &st->req, d->in };
	const struct route_match *hit;
	uint16_t port;

	st_req_init(st);
	if (ovl_refuse_request()) {     /* overload.h: over the heap budget, Envoy's 503 OM */
		fwd_down->local_reply(st, 503, ALOG_F_OM, "overload", "envoy overloaded");
		return;
	}

	if (st->req.method_id == H1_M_CONNECT) {
		st_connect_method(st);
		return;
	}
	if (!st->host[0]) {
		/* Only HTTP/1.0 gets here without a Host (the parser refuses HTTP/1.1 without
		 * one). Envoy, with HTTP/1.0 accepted and no default host, answers 400
		 * missing_host_header; routing on an empty host could also send the upstream an
		 * HTTP/1.1 request without Host. */
		st->resp_close = true;
		fwd_down->local_reply(st, 400, 0, "missing_host_header", NULL);
		return;
	}
	vh = st_vhost(st, &port);
	if (!vh)
		return;
	st_route_req(st, port, &hc, &rq);
	st->route = route_select_hit(vh, &rq, &hit);
	if (!st->route) {
		STAT_INC(w->st.no_route);
		fwd_down->local_reply(st, 404, ALOG_F_NR, "route_not_found", NULL);
		return;
	}
	/* Envoy's CORS filter comes before the fault filter: a preflight is answered first. */
	if (st->route->cors && rcors_request(st)) {
		st_finish(st);   /* a preflight answered here */
		return;
	}
	if (st->route->rewrite_uri || st->route->rewrite_authority || st->route->rerw)
		st_rewrite(st, hit, rq.path, rq.path_len);
	if (st->route->fault && st_fault_delay(st))
		return;
	st_route_action(st, &rq);
}

/* The exchange is over (answered, or failed after the response started). */
void st_finish(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	bool reusable;

	if (!st->active)
		return;
	loop_timer_cancel(w->loop, &st->timeout);
	if (st->dnsq) {
		dns_cancel(st->dnsq);
		st->dnsq = NULL;
	}
	st->active = false;
	STAT_DEC(w->st.rq_active);
	STAT_ADD(w->st.bytes_in, st->bytes_in);
	STAT_ADD(w->st.bytes_out, st->bytes_out);
	st_log(st);
	st_cb_end(st);
	if (st->u) {
		struct uconn *u = st->u;

		reusable = st->resp_done && st->req_done && st->resp && st->resp->keep_alive &&
		           !(st->flags & (ALOG_F_UC | ALOG_F_UPE | ALOG_F_UT)) && u->hs_done;
		st->u = NULL;
		fwd_up->release(u, reusable);
	}
	if (st->snap) {
		snap_unref(st->snap);
		st->snap = NULL;
	}
	if (st->resp_close || !st->resp_done || !st->req_done || w->draining || d->h2s)
		d->closing = true;
	if (d->read_paused && !d->closing) {
		d->read_paused = false;
		fwd_down->interest(d, iob_used(&d->out) > 0);
	}
	/* Drop the head; keep pipelined bytes that followed this request. */
	if (!d->closing) {
		size_t rest = d->in_len - d->in_pos;

		if (rest)
			memmove(d->in, d->in + d->in_pos, rest);
		d->in_len = rest;
		d->in_pos = 0;
	}
	fwd_down->flush(d);
	/* A pipelined request may already be waiting in d->in: start it on the next
	 * iteration (not by recursion: a client could pipeline thousands). */
	if (!d->closing && !d->dead && !d->in_process)
		loop_task_post(w->loop, &d->task);
}
