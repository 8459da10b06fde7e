/* fwd_conn: upstream selection for the request path (part of the fwd module, fwd_int.h):
 * circuit breaking, outlier detection hooks, pool keys and st_connect.
 *
 * st_connect takes an idle pooled upstream connection (pool_take) or makes a new one
 * (sock_connect, then tls_client_new + tls_handshake in fwd_up_h1.c), or attaches an
 * HTTP/2 stream (st_connect_h2, up_h2.c). Before it does, it applies the cluster's
 * DestinationRule connectionPool limits (cbreak.h) and may queue the request instead;
 * results feed outlier detection (st_od, outlier.h). Also the worker's pool upkeep
 * (fwd_pool_close_all, fwd_pool_sweep). The semantics are in the "circuit breaking"
 * section below. */
#include "proxy/fwd_conn.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/worker.h"
#include "proxy/fwd.h"
#include "proxy/cbreak.h"
#include "proxy/overload.h"
#include "proxy/up_h2.h"
#include "proxy/pool.h"
#include "proxy/retry.h"
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

static void st_cb_set(struct stream *st, enum st_cb to);

const struct fwd_down_ops *fwd_down;     /* set by fwd_init (fwd_int.h) */
const struct fwd_up_ops *fwd_up;

/* ---- upstream failures and retries ---- */

/* The worker's Envoy-style counters of cluster cl. */
struct istats_cluster *cl_stats(struct worker *w, const struct cluster *cl)
{
	return istats_cluster(w->istats, cl->name);
}

void st_set_ep(struct stream *st, const struct sock_addr *a, uint16_t port)
{
	st->ep = *a;
	if (port)
		sock_addr_set_port(&st->ep, port);
	sock_addr_str(&st->ep, st->ep_str, sizeof(st->ep_str));
}

/* How a failed attempt failed, for retryOn: a connection never made (UF without UC),
 * a stream the HTTP/2 server refused unprocessed, or a reset. */
static enum retry_fail st_fail_kind(const struct stream *st, unsigned flag, bool retryable)
{
	if ((flag & ALOG_F_UF) && !(flag & ALOG_F_UC))
		return RETRY_F_CONNECT;
	if (retryable && st->u && st->u->h2)
		return RETRY_F_REFUSED;
	return RETRY_F_RESET;
}

/* An upstream failed before the response started. retryable: the connection was reused
 * from the pool (the server may have closed it while idle) or an HTTP/2 server refused
 * the stream unprocessed; a bodiless idempotent request is then tried once more on a
 * fresh connection. Otherwise the route's retry policy decides (st_retry_fail). */
void st_upstream_failed(struct stream *st, unsigned flag, const char *details,
                        const char *reason, bool retryable)
{
	struct uconn *u = st->u;
	int mid = st->req.method_id;
	bool idempotent = mid == H1_M_GET || mid == H1_M_HEAD || mid == H1_M_OPTIONS ||
	                  mid == H1_M_PUT || mid == H1_M_DELETE || mid == H1_M_TRACE;
	enum retry_fail kind = st_fail_kind(st, flag, retryable);

	/* reason may live in u (its TLS error string): keep a copy before u goes. */
	snprintf(st->tls_reason, sizeof(st->tls_reason), "%s", reason ? reason : "");
	if (u) {
		st->u = NULL;
		u->st = NULL;
		fwd_up->close(u);
	}
	/* Envoy counts every reset but an overflow against the endpoint, retried or not. */
	st_od(st, OD_CONNECT_FAIL, 0);
	if (st->cc)
		st_cb_set(st, ST_CB_NONE);
	/* The stale pooled connection first: it spends none of the policy's retries (and
	 * cannot leave a URX behind on a request that then succeeds). */
	if (retryable && !st->retried && !st->resp_started && idempotent &&
	    st->req.body == H1_BODY_NONE) {
		st->retried = true;
		STAT_INC(st->d->w->st.urq_retry);
		if (st->cl)
			STAT_INC(cl_stats(st->d->w, st->cl)->rq_retry);
		st->tls_reason[0] = '\0';
		st_connect(st, true);
		return;
	}
	if (!st->resp_started && st_retry_fail(st, kind)) {
		st->tls_reason[0] = '\0';
		return;
	}
	reason = st->tls_reason;
	{
		char body[512];

		snprintf(body, sizeof(body),
		         "upstream connect error or disconnect/reset before headers. reset reason: %s%s%s",
		         flag & ALOG_F_UF ? "connection failure" : "connection termination",
		         reason && reason[0] ? ", transport failure reason: " : "",
		         reason ? reason : "");
		fwd_down->local_reply(st, 503, flag, details, body);
	}
}

/* ---- retries (the route's retry.h policy) ----
 *
 * As Envoy's router does for Istio: an attempt that failed without a response
 * (st_upstream_failed, or its perTryTimeout), or whose final response head is retriable
 * (st_retry_head, before anything of it goes downstream), is retried while the policy
 * has retries left: its connection is closed (an HTTP/2 stream reset), the request body
 * rewound in d->in (kept there up to RETRY_BODY_MAX by d_forward_body; a longer body is
 * never replayed, its request not retried), and after the backoff (Envoy's jittered
 * exponential: 0-25 ms, 0-75 ms, ... at most 250 ms by default) the next attempt goes to
 * an endpoint not tried yet when the cluster has one (previous_hosts, up to 5 picks). The
 * route's timeout keeps running across attempts; perTryTimeout restarts with each.
 *
 * The budget: a request holds one of its cluster's retry slots from its first retry to
 * its end. DestinationRule maxRetries bounds them (Envoy's max_retries circuit breaker);
 * unset (Istio programs 2^32-1: unlimited), Envoy's retry budget bounds them instead:
 * 20 % of the cluster's active requests on this worker, at least 3, so that an outage
 * cannot multiply the upstream's load (a 50 % failing upstream sees at most ~1.2x). A
 * retry refused by it is answered as the attempt ended, flagged UO; a retriable answer
 * with no retries left is flagged URX. Counters: upstream_rq_retry, _retry_success,
 * _retry_overflow, _retry_limit_exceeded per cluster. */

static const struct retry_policy *st_policy(const struct stream *st)
{
	return st->route && st->cl ? st->route->retry : NULL;
}

/* Whether ep (an endpoint's string) was tried already by st. */
static bool st_rt_tried(const struct stream *st, const char *ep)
{
	uint64_t h = hash_bytes(ep, strlen(ep));

	for (size_t i = 0; i < sizeof(st->rt_prev) / sizeof(st->rt_prev[0]); i++)
		if (st->rt_prev[i] == h)
			return true;
	return false;
}

/* The endpoint of the next attempt: previous_hosts, as Envoy's predicate with
 * host_selection_retry_max_attempts picks. An original destination stays. */
static void st_rt_pick(struct stream *st, const struct retry_policy *p)
{
	struct worker *w = st->d->w;
	struct cluster *cl = st->cl;
	const struct cluster_eps *eps;
	const struct cluster_ep *ep = NULL;
	const uint8_t *excl = NULL;

	if (cl->discovery == CLUSTER_ORIGINAL_DST || !p->prev_hosts)
		return;
	eps = cluster_eps_load(cl);
	if (!eps || eps->n < 2)
		return;
	if (cl->od.on && st->cc)
		excl = od_excluded(&st->cc->od, &cl->od, eps);
	for (uint32_t i = 0; i < p->host_attempts; i++) {
		ep = cluster_pick_ex(cl, eps, &w->rr[cl->index < w->nrr ? cl->index : 0], NULL,
		                     worker_rand(w), excl);
		if (!ep || !st_rt_tried(st, ep->str))
			break;
	}
	if (!ep)
		return;
	st->ep = ep->addr;
	str_copy(st->ep_str, sizeof(st->ep_str), ep->str);
}

/* Whether st may retry now under p: a replayable body, retries left, a slot in the
 * budget. Sets URX or UO (with their counters) when it may not. */
static bool st_rt_may(struct stream *st, const struct retry_policy *p)
{
	struct worker *w = st->d->w;
	struct istats_cluster *cs = cl_stats(w, st->cl);
	struct cb_cluster *cc;

	if (st->rt_nobody)
		return false;
	if (st->rt_n >= p->num_retries || st->rt_n == UINT8_MAX) {
		st->flags |= ALOG_F_URX;
		STAT_INC(cs->rq_retry_limit_exceeded);
		return false;
	}
	if (!st->rt_slot) {
		cc = st_cc(st);
		if (cc->nretry >= retry_budget(st->cl->max_retries,
		                               cc->nrq + cc->npending + cc->nretry)) {
			st->flags |= ALOG_F_UO;
			STAT_INC(cs->rq_retry_overflow);
			return false;
		}
		cc->nretry++;
		st->rt_slot = true;
	}
	return true;
}

/* The next attempt after the backoff: nothing of this one is left (its connection is
 * closed), the request body rewound for a replay. */
static void st_rt_schedule(struct stream *st, const struct retry_policy *p)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;

	st->rt_prev[st->rt_n % (sizeof(st->rt_prev) / sizeof(st->rt_prev[0]))] =
		hash_bytes(st->ep_str, strlen(st->ep_str));
	st->rt_n++;
	STAT_INC(w->st.urq_retry);
	STAT_INC(cl_stats(w, st->cl)->rq_retry);
	if (st->req.body != H1_BODY_NONE) {
		d->in_pos = st->req.head_len;
		st->req_left = st->req.content_length;
		h1_chunked_init(&st->req_ck);
		st->req_done = st->req.body == H1_BODY_LENGTH && st->req_left == 0;
		st->bytes_in = 0;
	}
	st->rt_wait = true;
	loop_timer_arm(w->loop, &st->rt_timer, retry_backoff_ms(p, st->rt_n, worker_rand(w)));
}

bool st_retry_fail(struct stream *st, enum retry_fail kind)
{
	const struct retry_policy *p = st_policy(st);

	if (!p || !retry_on_fail(p, kind) || !st_rt_may(st, p))
		return false;
	st_rt_schedule(st, p);
	return true;
}

/* The response's grpc-status (spans at b), -1 when it has none: a gRPC trailers-only
 * response carries it in the head, which is what Envoy's gRPC conditions look at. */
static int resp_grpc_status(const struct stream *st, const char *b)
{
	int i = h1_header_find(st->resp, b, "grpc-status", 0);
	const struct h1_span *v = i >= 0 ? &st->resp->headers[i].value : NULL;
	int n = 0;

	if (!v || v->len == 0 || v->len > 2)
		return -1;
	for (size_t k = 0; k < v->len; k++) {
		if (b[v->off + k] < '0' || b[v->off + k] > '9')
			return -1;
		n = n * 10 + (b[v->off + k] - '0');
	}
	return n;
}

bool st_retry_head(struct stream *st, const char *b)
{
	const struct retry_policy *p = st_policy(st);
	struct worker *w = st->d->w;
	struct uconn *u = st->u;
	int code = st->resp->status;
	int grpc = -1;
	bool rl = false;

	if (!p)
		return false;
	if (p->on & (RETRY_ON_CANCELLED | RETRY_ON_DEADLINE | RETRY_ON_RESOURCE |
	             RETRY_ON_INTERNAL | RETRY_ON_UNAVAILABLE))
		grpc = resp_grpc_status(st, b);
	if (p->on & RETRY_ON_RATELIMITED)
		rl = h1_header_find(st->resp, b, "x-envoy-ratelimited", 0) >= 0;
	/* The response goes downstream, or this attempt is over: its perTryTimeout ends
	 * at its head (Envoy's runs to the end of the response). */
	loop_timer_cancel(w->loop, &st->rt_timer);
	if (!retry_on_status(p, code, grpc, rl)) {
		if (st->rt_n)
			STAT_INC(cl_stats(w, st->cl)->rq_retry_success);
		return false;
	}
	if (!st_rt_may(st, p))
		return false;
	/* The response is dropped: its connection cannot carry another request. */
	st_od(st, OD_HTTP, code);
	st->u = NULL;
	u->st = NULL;
	fwd_up->close(u);
	if (st->cc)
		st_cb_set(st, ST_CB_NONE);
	st_rt_schedule(st, p);
	return true;
}

/* perTryTimeout, before the response head: the attempt in flight is abandoned (retried
 * as a reset is: 5xx, gateway-error, reset), or 504 UT when it may not be. */
static void st_rt_timeout(struct stream *st)
{
	struct uconn *u = st->u;

	STAT_INC(st->d->w->st.urq_timeout);
	STAT_INC(cl_stats(st->d->w, st->cl)->rq_timeout);
	st->u = NULL;
	u->st = NULL;
	st_od(st, OD_TIMEOUT, 504);
	fwd_up->close(u);
	if (st->cc)
		st_cb_set(st, ST_CB_NONE);
	if (st_retry_fail(st, RETRY_F_TIMEOUT))
		return;
	st->resp_close = true;
	fwd_down->local_reply(st, 504, ALOG_F_UT, "upstream_per_try_timeout",
	                      "upstream request timeout");
}

void st_on_rt_timer(struct loop *loop, struct loop_timer *t)
{
	struct stream *st = container_of(t, struct stream, rt_timer);
	struct dconn *d = st->d;

	(void)loop;
	if (!st->active)
		return;
	if (st->rt_wait) {
		st->rt_wait = false;
		st_rt_pick(st, st_policy(st));
		st_connect(st, false);
	} else if (st->u) {
		st_rt_timeout(st);
	}
	fwd_down->settle(d);
}

/* ---- circuit breaking (DestinationRule connectionPool) ----
 *
 * Envoy's circuit breakers with Istio's field mapping, counted in the cluster's state on
 * this worker (cbreak.h):
 *   - tcp.maxConnections: upstream connections open for the cluster (connecting, busy or
 *     idle in the pool). A request that finds no idle connection for its endpoint while
 *     the cluster is at the limit first closes an idle connection of the cluster to
 *     another endpoint if there is one (a slot nobody uses; Envoy's per-endpoint pools
 *     would wait for it instead, and create one past the limit for an endpoint with no
 *     connection at all), else counts upstream_cx_overflow and waits as pending.
 *   - http.http1MaxPendingRequests: requests waiting for a connection, in the queue or
 *     on a connection of their own still connecting (Envoy's pending requests). A request
 *     that would go over it is answered 503 UO "upstream_reset_before_response_started
 *     {overflow}", body "upstream connect error or disconnect/reset before headers. reset
 *     reason: overflow", and counts upstream_rq_pending_overflow.
 *   - http.http2MaxRequests: requests on a connection (connecting or ready); one more is
 *     answered 503 UO the same way and counted in upstream_rq_pending_overflow too, as
 *     Envoy does.
 * The queue is first come, first served: a new request queues behind waiting ones even
 * if a slot is free at that moment. A waiting request is retried (st_connect, same
 * endpoint) when a connection of the cluster closes or goes back to the pool idle, one
 * at a time, from a zero-delay timer. There is no pending timeout of its own, as in
 * Envoy: the route timeout (504 UT) or the client going away ends the wait.
 *
 * Per worker, not per cluster: Envoy's limits are cluster-wide, shared by its workers
 * through atomic counters. Here each worker applies the whole limit to its own
 * connections and requests (like HAProxy's per-process maxconn), so with --workers N a
 * cluster may have up to N x maxConnections connections. Dividing the limit by N instead
 * would turn away requests while the cluster is far below its limit whenever the kernel's
 * SO_REUSEPORT spread gives one worker more clients than the others, and limits below N
 * would round to 0 or 1 per worker anyway; sharing counters would put atomics on every
 * request, which the data path avoids. Run one worker where an exact limit matters.
 *
 * HTTP/1.1 connections are counted; pass-through tunnels (tunnel.c) are not. */

static void st_cb_set(struct stream *st, enum st_cb to)
{
	struct cb_cluster *cc = st->cc;
	struct worker *w = st->d->w;
	enum st_cb from = st->cb;
	bool pend_from = from == ST_CB_QUEUED || from == ST_CB_WOKEN || from == ST_CB_CONNECTING;
	bool pend_to = to == ST_CB_QUEUED || to == ST_CB_WOKEN || to == ST_CB_CONNECTING;
	bool rq_from = from == ST_CB_CONNECTING || from == ST_CB_ACTIVE;
	bool rq_to = to == ST_CB_CONNECTING || to == ST_CB_ACTIVE;

	if (from == to)
		return;
	if (from == ST_CB_QUEUED) {
		cb_list_del(&st->cb_wait);
		cc->nqueued--;
	} else if (from == ST_CB_WOKEN) {
		cc->nwoken--;
		loop_task_cancel(w->loop, &st->cb_wake);
	}
	if (pend_from && !pend_to) {
		cc->npending--;
		STAT_DEC(w->st.urq_pending_active);
	} else if (!pend_from && pend_to) {
		cc->npending++;
		STAT_INC(w->st.urq_pending_active);
		STAT_INC(w->st.urq_pending_total);
	}
	if (rq_from && !rq_to)
		cc->nrq--;
	else if (!rq_from && rq_to)
		cc->nrq++;
	if (to == ST_CB_WOKEN)
		cc->nwoken++;
	st->cb = to;
}

/* A slot may have freed up: the oldest waiting request retries after this batch of events.
 * One at a time (nwoken): the woken one kicks again once it has its connection. */
void cc_kick(struct worker *w, struct cb_cluster *cc)
{
	struct stream *st;

	if (cc->nwoken || !cc->nqueued)
		return;
	st = container_of(cc->queue.next, struct stream, cb_wait);
	if (st->cl->max_connections && cc->ncx >= st->cl->max_connections && !cc->nidle)
		return;
	st_cb_set(st, ST_CB_WOKEN);
	loop_task_post(w->loop, &st->cb_wake);
}

void st_on_wake(struct loop *loop, struct loop_task *t)
{
	struct stream *st = container_of(t, struct stream, cb_wake);
	struct dconn *d = st->d;

	(void)loop;
	if (st->active && st->cb == ST_CB_WOKEN)
		st_connect(st, false);
	fwd_down->settle(d);
}

/* The request leaves its cluster's books (it ended, or went to a tunnel). */
void st_cb_end(struct stream *st)
{
	struct cb_cluster *cc = st->cc;

	loop_timer_cancel(st->d->w->loop, &st->rt_timer);
	st->rt_wait = false;
	if (!cc)
		return;
	if (st->rt_slot) {
		cc->nretry--;
		st->rt_slot = false;
	}
	st_cb_set(st, ST_CB_NONE);
	st->cc = NULL;
	cc_kick(st->d->w, cc);     /* it may have been the one woken */
	cb_unref(cc);
}

/* 503 UO: a circuit breaker said no. */
static void st_overflow(struct stream *st)
{
	STAT_INC(st->d->w->st.urq_pending_overflow);
	if (st->cl)
		STAT_INC(cl_stats(st->d->w, st->cl)->rq_pending_overflow);
	st_cb_set(st, ST_CB_NONE);
	fwd_down->local_reply(st, 503, ALOG_F_UO, "upstream_reset_before_response_started{overflow}",
	                      "upstream connect error or disconnect/reset before headers. reset reason: overflow");
}

/* 503 UO: the process-wide upstream connection budget (overload.h) is used up and this
 * worker has no idle pooled connection to close for it. */
static void st_budget_overflow(struct stream *st)
{
	ovl_up_refused();
	STAT_INC(st->d->w->st.ucx_overflow);
	st_cb_set(st, ST_CB_NONE);
	fwd_down->local_reply(st, 503, ALOG_F_UO, "upstream_reset_before_response_started{overflow}",
	                      "upstream connect error or disconnect/reset before headers. reset "
	                      "reason: overflow (upstream connection budget)");
}

/* The request waits for a connection slot: in arrival order, or back at the head when it
 * was woken and lost the slot. Returns -1 when it was answered 503 UO instead. */
static int st_cb_wait(struct stream *st)
{
	struct cb_cluster *cc = st->cc;
	bool head = st->cb == ST_CB_WOKEN;

	if (st->cb == ST_CB_NONE && st->cl->max_pending && cc->npending >= st->cl->max_pending) {
		st_overflow(st);
		return -1;
	}
	st_cb_set(st, ST_CB_QUEUED);
	if (head)
		cb_list_add_head(&cc->queue, &st->cb_wait);
	else
		cb_list_add_tail(&cc->queue, &st->cb_wait);
	cc->nqueued++;
	cc_kick(st->d->w, cc);
	return 0;
}

/* The request's connection is ready for it: no longer pending. */
void st_up_ready(struct stream *st)
{
	if (st->cb == ST_CB_CONNECTING)
		st_cb_set(st, ST_CB_ACTIVE);
	st_od(st, OD_CONNECT_OK, 0);
}

/* Moves a pooled connection's slot to the cluster of the request taking it (two clusters
 * may share an endpoint, TLS context and names, hence a pool key). */
static void u_cc_take(struct uconn *u, struct cb_cluster *cc)
{
	struct cb_cluster *old = u->cc;

	if (u->cb_idle.next) {
		cb_list_del(&u->cb_idle);
		old->nidle--;
	}
	if (old == cc)
		return;
	cb_ref(cc);
	cc->ncx++;
	u->cc = cc;
	if (old) {
		old->ncx--;
		cc_kick(u->w, old);
		cb_unref(old);
	}
}

/* The request's cluster state on this worker (taken at its first use; st_cb_end lets go). */
struct cb_cluster *st_cc(struct stream *st)
{
	if (!st->cc)
		st->cc = cb_get(st->d->w->cb, st->cl->name, st->d->w->snap);
	return st->cc;
}

/* Outlier detection: what happened on the request's endpoint (outlier.h). */
void st_od(struct stream *st, enum od_result r, int code)
{
	struct worker *w = st->d->w;
	const struct cluster_eps *eps;

	if (!st->cl || !st->cl->od.on || !st->cc || !st->ep_str[0])
		return;
	eps = cluster_eps_load(st->cl);
	switch (od_report(&st->cc->od, &st->cl->od, st->ep_str, eps ? eps->n : 0, r, code,
	                  loop_now_ms(w->loop))) {
	case OD_EV_EJECTED:
		STAT_INC(w->st.od_ejections_enforced);
		STAT_INC(cl_stats(w, st->cl)->od_ejections_enforced);
		STAT_INC(w->st.od_ejections_active);
		log_info("fwd", "outlier detection: %s ejected from %s (worker %d)", st->ep_str,
		         st->cl->name, w->id);
		break;
	case OD_EV_OVERFLOW:
		STAT_INC(w->st.od_ejections_overflow);
		break;
	case OD_EV_NONE:
	default:
		break;
	}
}

static void build_pool_key(struct stream *st, const char *sni, const char *vname,
                           char *key, size_t *keylen)
{
	/* "conn_id|endpoint|sni|verified name", by hand (this runs for every request);
	 * st->ep_str is the endpoint as formatted once with st->ep. conn_id is a 64-bit hash:
	 * 16 hex digits, not 20 decimal ones (a division per digit cost ~400 instructions per
	 * request). FWD_KEY_MAX holds the longest: 16 digits, an address, two names of at
	 * most 255 bytes, and separators. */
	const char *parts[3] = { st->ep_str, sni ? sni : "", vname ? vname : "" };
	size_t len = 16;

	hex_put(key, st->cl->conn_id, 16);

	for (int i = 0; i < 3; i++) {
		size_t l = strnlen(parts[i], 255);

		key[len++] = '|';
		memcpy(key + len, parts[i], l);
		len += l;
	}
	key[len] = '\0';
	*keylen = len;
}

/* The server of an HTTP/2 attempt chose HTTP/1.1: nothing of the request was sent (its
 * body waits in d->in), so it simply starts again on an HTTP/1.1 connection (up_h2.c now
 * remembers the key as HTTP/1.1 only). */
void st_h2_fallback(struct stream *st)
{
	struct uconn *u = st->u;

	st->u = NULL;
	u->st = NULL;
	fwd_up->close(u);
	STAT_DEC(st->d->w->st.urq_total);   /* the same attempt, on another connection */
	st_connect(st, false);
}

/* An attempt at the upstream begins: its response is parsed from scratch, framed by the
 * request's method (no body for HEAD): a retry must not inherit a partial head from the
 * failed one. */
static void st_attempt_start(struct stream *st)
{
	struct worker *w = st->d->w;

	h1_parser_init(&st->sp, false, st->req.method_id);
	STAT_INC(w->st.urq_total);
	st->up_start_ms = loop_now_ms(w->loop);
	if (st->route && st->route->retry && st->route->retry->per_try_ms)
		loop_timer_arm(w->loop, &st->rt_timer, (uint64_t)st->route->retry->per_try_ms);
}

/* Tries to carry the request on an HTTP/2 stream. Returns false when the key is known to
 * be HTTP/1.1 only (the caller connects the HTTP/1.1 way). */
static bool st_connect_h2(struct stream *st, const char *key, size_t keylen, const char *sni,
                          const struct tls_verify_names *names)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct cluster *cl = st->cl;
	struct uh2_target tg;
	struct uconn *u = w->vu_free;
	bool reused;

	if (u) {
		w->vu_free = u->all_next;
		w->nvu_free--;
		memset(u, 0, sizeof(*u));
	} else {
		u = xcalloc(1, sizeof(*u));
	}
	memset(&tg, 0, sizeof(tg));
	tg.ep = &st->ep;
	tg.ctx = cl->tls_ctx;
	tg.sni = sni;
	tg.names = names;
	tg.connect_timeout_ms = cl->connect_timeout_ms;
	tg.idle_timeout_ms = cl->idle_timeout_ms;
	tg.conn_id = cl->conn_id;
	tg.ident = pool_ident(cl->conn_id, st->ep_str);
	tg.max_req = cl->max_requests_per_conn;
	tg.cluster = cl->name;
	tg.stats = cl_stats(w, cl);
	u->w = w;
	/* Before uh2_attach: a stream that fails at once posts the task from inside it. */
	loop_io_init(&u->io, -1, fwd_up->on_io);
	loop_timer_init(&u->timer, fwd_up->on_timer);
	loop_task_init(&u->task, fwd_up->on_task);
	u->h2 = uh2_attach(w->uh2, &u->task, key, keylen, &tg, &reused);
	if (!u->h2) {
		free(u);
		return false;
	}
	st_attempt_start(st);
	st_cb_set(st, ST_CB_ACTIVE);
	if (reused)
		STAT_INC(w->st.urq_reused);
	u->hs_done = true;
	u->st = st;
	st->u = u;
	str_copy(st->up_local, sizeof(st->up_local), uh2_local(u->h2));
	fwd_up->send_head(st);
	/* A stream that failed at once (no socket) or is ready reports on the next turn. */
	loop_task_post(w->loop, &u->task);
	fwd_up->forward_body(d);   /* may end the request, and free u (cancelling its task) */
	return true;
}

static void st_verify_names(const struct stream *st, struct tls_verify_names *names)
{
	const struct cluster *cl = st->cl;

	memset(names, 0, sizeof(*names));
	if (cl->nsans) {
		names->sans = (const char *const *)cl->sans;
		names->nsans = cl->nsans;
	} else if (cl->verify_host_auto) {
		names->hostname = st->host;
	}
}

/* st_connect's first look: a request for the proxy itself is refused, and a TLS cluster
 * needs its context. Sets the SNI and the name to verify; false when st was answered. */
static bool st_connect_check(struct stream *st, const char **sni, const char **vname)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct cluster *cl = st->cl;

	/* A request for the proxy itself (its capture listener: it would come back here
	 * forever; its admin: the configuration handed to the application). */
	if (proxy_is_self(w->proxy, &st->ep)) {
		log_warn("fwd", "%s: refused: %s is this proxy's own listener or admin address",
		         d->remote_s, st->ep_str);
		st->resp_close = true;
		fwd_down->local_reply(st, 403, 0, "proxy_loop_detected", "the proxy's own address");
		return false;
	}
	if (cl->tls_mode != CLUSTER_TLS_DISABLE) {
		if (!cl->tls_ctx) {
			STAT_INC(w->st.ucx_tls_fail[0]);
			STAT_INC(cl_stats(w, cl)->ssl_fail[0]);
			st_upstream_failed(st, ALOG_F_UF,
			                   "upstream_reset_before_response_started{connection_failure}",
			                   cl->tls_ctx_error ? cl->tls_ctx_error : "no TLS context", false);
			return false;
		}
		*sni = cl->sni ? cl->sni : st->host;
		if (cl->verify_host_auto)
			*vname = st->host;
	}
	return true;
}

/* st_connect with an idle pooled connection u. */
static void st_use_pooled(struct stream *st, struct uconn *u, struct cb_cluster *cc)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;

	STAT_DEC(w->st.pool_idle);
	STAT_INC(w->st.urq_reused);
	loop_timer_cancel(w->loop, &u->timer);
	u_cc_take(u, cc);
	u->st = st;
	st->u = u;
	str_copy(st->up_local, sizeof(st->up_local), u->local_s);
	st_cb_set(st, ST_CB_ACTIVE);
	st_od(st, OD_CONNECT_OK, 0);
	cc_kick(w, cc);      /* when woken: the next one may find a slot too */
	fwd_up->send_head(st);
	fwd_up->forward_body(d);   /* flushes */
}

/* st_connect with a new connection to st's endpoint (key: its pool key). */
static void st_connect_new(struct stream *st, struct cb_cluster *cc, const char *key,
                           size_t keylen, const char *sni)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct cluster *cl = st->cl;
	struct uconn *u;
	int fd, rc;

	rc = sock_connect(&st->ep, NULL, &fd);
	if (rc < 0) {
		char reason[128];

		snprintf(reason, sizeof(reason), "delayed connect error: %s", strerror(errno));
		STAT_INC(w->st.ucx_connect_fail);
		STAT_INC(cl_stats(w, cl)->cx_connect_fail);
		st_upstream_failed(st, ALOG_F_UF,
		                   "upstream_reset_before_response_started{connection_failure}",
		                   reason, false);
		return;
	}
	u = xcalloc(1, sizeof(*u));
	u->w = w;
	u->st = st;
	st->u = u;
	u->conn_id = cl->conn_id;
	u->ident = pool_ident(cl->conn_id, st->ep_str);
	u->all_next = w->uconns;
	if (w->uconns)
		((struct uconn *)w->uconns)->all_prev = u;
	w->uconns = u;
	u->cc = cc;
	cb_ref(cc);
	cc->ncx++;
	st_cb_set(st, ST_CB_CONNECTING);
	cc_kick(w, cc);
	memcpy(u->key, key, keylen);
	u->keylen = keylen;
	u->max_req = cl->max_requests_per_conn;
	u->idle_ms = cl->idle_timeout_ms > 0 ? cl->idle_timeout_ms : 3600 * 1000;
	u->connecting = rc == 1;
	loop_io_init(&u->io, fd, fwd_up->on_io);
	loop_timer_init(&u->timer, fwd_up->on_timer);
	loop_task_init(&u->task, fwd_up->on_task);
	STAT_INC(w->st.ucx_total);
	STAT_INC(w->st.ucx_active);
	STAT_INC(cl_stats(w, cl)->cx_total);
	u->hs = hstats_cx_open(istats_hosts(w->istats), cl, st->ep_str);
	if (cl->tls_mode != CLUSTER_TLS_DISABLE) {
		struct tls_verify_names names;

		st_verify_names(st, &names);
		u->tls = tls_client_new(cl->tls_ctx, fd, sni, &names);
		if (cl->h2_alpn) {
			/* The context offers h2 for up_h2.c's connections; this one speaks
			 * HTTP/1.1 and must not let the server pick h2. */
			static const char *const h1_only[] = { "http/1.1" };

			tls_client_alpn(u->tls, h1_only, 1);
		}
		tls_client_resume(u->tls, w->sess, &st->ep);
	}
	loop_io_add(w->loop, &u->io, LOOP_READ | LOOP_WRITE);
	loop_timer_arm(w->loop, &u->timer,
	               (uint64_t)(cl->connect_timeout_ms > 0 ? cl->connect_timeout_ms : 10000));
	fwd_up->send_head(st);
	if (fwd_up->forward_body(d) < 0)
		return;
	if (!u->connecting)
		fwd_up->connected(u);
}

void st_connect(struct stream *st, bool fresh)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct cluster *cl = st->cl;
	const char *sni = NULL, *vname = NULL;
	char key[FWD_KEY_MAX];
	size_t keylen;
	struct pool_link *l;
	struct uconn *u = NULL;
	struct cb_cluster *cc;

	if (!st_connect_check(st, &sni, &vname))
		return;
	build_pool_key(st, sni, vname, key, &keylen);
	/* Circuit breakers (see above): http2MaxRequests, then first come first served, then
	 * an idle connection, then maxConnections and http1MaxPendingRequests for a new one.
	 * A request enters here not counted (NONE) or woken from the queue (WOKEN). */
	cc = st_cc(st);
	if (cl->max_requests && cc->nrq >= cl->max_requests) {
		st_overflow(st);
		return;
	}
	if (st->cb == ST_CB_NONE && !st->retried && cc->nqueued + cc->nwoken > 0) {
		st_cb_wait(st);
		return;
	}
	/* HTTP/2 (up_h2.c): streams share connections, which maxConnections does not count
	 * (Envoy counts an HTTP/2 connection as one; here it is not yet counted at all). */
	if (cl->h2_alpn && cl->tls_ctx && (st->req.host_idx >= 0 || st->req.target_form == H1_TF_ABSOLUTE)) {
		struct tls_verify_names names;

		st_verify_names(st, &names);
		if (st_connect_h2(st, key, keylen, sni, &names))
			return;
	}
	if (!fresh && (l = pool_take(w->pool, key, keylen)) != NULL) {
		u = container_of(l, struct uconn, link);
		if (u->cc != cc && cl->max_connections && cc->ncx >= cl->max_connections) {
			/* Pooled by another cluster with the same key: taking it would put this one
			 * over its limit. */
			pool_put(w->pool, key, keylen, l);
			u = NULL;
		}
	}
	if (!u && cl->max_connections && cc->ncx >= cl->max_connections) {
		if (cb_list_empty(&cc->idle)) {
			STAT_INC(w->st.ucx_overflow);
			STAT_INC(cl_stats(w, cl)->cx_overflow);
			st_cb_wait(st);
			return;
		}
		/* An idle connection to another endpoint holds a slot nobody is using. */
		fwd_up->close(container_of(cc->idle.next, struct uconn, cb_idle));
	}
	if (!u && st->cb == ST_CB_NONE && cl->max_pending && cc->npending >= cl->max_pending) {
		st_overflow(st);
		return;
	}
	if (!u && ovl_up_full(w->proxy) && fwd_pool_shed(w, 1) == 0) {
		st_budget_overflow(st);
		return;
	}
	st_attempt_start(st);
	if (u) {
		st_use_pooled(st, u, cc);
		return;
	}
	st_connect_new(st, cc, key, keylen, sni);
}

static void pool_close_cb(struct pool_link *l, void *arg)
{
	struct uconn *u = container_of(l, struct uconn, link);

	(void)arg;
	fwd_up->close(u);
}

void fwd_pool_close_all(struct worker *w)
{
	pool_each(w->pool, pool_close_cb, NULL);
}

static void pool_shed_cb(struct pool_link *l, void *arg)
{
	size_t *left = arg;

	if (*left == 0)
		return;
	(*left)--;
	fwd_up->close(container_of(l, struct uconn, link));
}

size_t fwd_pool_shed(struct worker *w, size_t n)
{
	size_t left = n;

	pool_each(w->pool, pool_shed_cb, &left);
	ovl_up_shed(n - left);
	return n - left;
}

static void pool_sweep_cb(struct pool_link *l, void *arg)
{
	struct uconn *u = container_of(l, struct uconn, link);
	struct worker *w = arg;

	if (!pool_live_ok(w->live, u->conn_id, u->ident))
		fwd_up->close(u);
}

void fwd_pool_sweep(struct worker *w)
{
	/* Idle ones close now; busy ones finish their request and close (u_release), and
	 * are counted as draining until then. */
	pool_each(w->pool, pool_sweep_cb, w);
	for (struct uconn *u = w->uconns; u; u = u->all_next)
		if (!u->draining && !u->link.bucket && !pool_live_ok(w->live, u->conn_id, u->ident)) {
			u->draining = true;
			pool_draining_add(u->cc ? u->cc->name : "-", 1);
		}
	uh2_sweep(w->uh2, w->live);
}
