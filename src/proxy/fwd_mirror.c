/* fwd_mirror: a route's mirror policies (mirror.h) on the request path (part of the fwd
 * module, see fwd_int.h), as Envoy's router sends request_mirror_policies' shadows.
 *
 * When st_route_action has picked the request's destination (after the route's rewrite
 * and with its header operations chosen), fmir_begin draws, per policy, whether this
 * request is mirrored (its runtime_fraction). The shadows wait for the request body,
 * which d_forward_body hands over as it takes it from the client (fmir_body), up to
 * MIRROR_BODY_MAX bytes: a longer body is not mirrored (mirror_skipped_body). Once the
 * body is whole (at once for a request without one) each shadow is a detached exchange:
 *   - a dconn of its own with d->mirror set: no socket, not in the worker's connection
 *     list (it counts against no --max-connections), its input a copy of the request
 *     head and body, its output discarded (fwd_down_h1.c: d_send / d_flush drop it);
 *   - a struct stream on it with the request's parsed head (the spans are offsets into
 *     the copy), the route's path rewrite, header operations and request id, and the
 *     authority with "-shadow" appended to its host (Envoy's shadow_writer: "foo.com"
 *     -> "foo.com-shadow", "foo.com:8080" -> "foo.com-shadow:8080");
 *   - sent by the upstream machinery every request uses (st_connect: the cluster's pool,
 *     TLS origination, HTTP/1.1 or HTTP/2 upstream, circuit breakers), with no route
 *     (no retries) and its own timeout (the route's, else MIRROR_DEFAULT_TIMEOUT_MS).
 * Its response is read and discarded; it is counted (mirror_* and the mirror cluster's
 * upstream_rq_*), never logged (st_log hands it to fmir_done), and nothing of it reaches
 * the request it copies: that one neither waits for it nor sees its failure.
 *
 * The shadow's TLS origination names the mirror destination's host (SNI, verified
 * name), not the "-shadow" authority: the mirror is a real external service. In the
 * sidecar, a mirror host that a mesh route takes (to the egress gateway) is sent as
 * that route says, never straight to the host (the gateway cannot be bypassed).
 *
 * Bounded: MIRROR_MAX_ACTIVE shadows in flight per worker (past it: not sent,
 * mirror_skipped_overflow); each holds its snapshot until it ends; drain and shutdown
 * cancel them (fmir_cancel_all). Worker thread only. */
#include "proxy/fwd_mirror.h"
#include "proxy/fwd_conn.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/istats.h"
#include "proxy/mirror.h"
#include "proxy/route_fault.h"
#include "proxy/alog.h"
#include "proxy/route.h"
#include "proxy/sidecar.h"
#include "proxy/snap.h"
#include "proxy/worker.h"
#include "core/util.h"
#include "http/h1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A request's shadows waiting for its body. */
struct fmir_pend {
	const struct route_mirror *rm;   /* the route's, in the request's snapshot */
	char *body;
	size_t len, cap;
	bool pick[];                     /* rm->p[i] is mirrored */
};

static void fmir_pend_free(struct stream *st)
{
	struct fmir_pend *p = st->mir;

	if (!p)
		return;
	st->mir = NULL;
	free(p->body);
	free(p);
}

void fmir_pend_drop(struct stream *st)
{
	STAT_INC(st->d->w->st.mirror_skip_unfinished);
	fmir_pend_free(st);
}

static void fmir_noop_timer(struct loop *loop, struct loop_timer *t)
{
	(void)loop;
	(void)t;
}

static void fmir_noop_io(struct loop *loop, struct loop_io *io, unsigned ev)
{
	(void)loop;
	(void)io;
	(void)ev;
}

/* The shadow's timeout: as the route's would (504 UT), counted as failed. */
static void fmir_on_timeout(struct loop *loop, struct loop_timer *t)
{
	struct stream *st = container_of(t, struct stream, timeout);

	(void)loop;
	if (st->u) {
		struct uconn *u = st->u;

		st->u = NULL;
		u->st = NULL;
		fwd_up->close(u);
	}
	st->resp_close = true;
	fwd_down->local_reply(st, 504, ALOG_F_UT, "response_timeout", NULL);
	fwd_down->settle(st->d);
}

/* The authority a shadow carries: a's host with "-shadow" appended, its port kept. */
static char *fmir_authority(const char *a, size_t len)
{
	size_t hl = len;
	const char *close = len && a[0] == '[' ? memchr(a, ']', len) : NULL;
	const char *colon;

	if (close)
		hl = (size_t)(close - a) + 1;
	else if ((colon = memchr(a, ':', len)) != NULL)
		hl = (size_t)(colon - a);
	return xasprintf("%.*s-shadow%.*s", (int)hl, a, (int)(len - hl), a + hl);
}

/* The request's authority as its upstream gets it (after the route's host rewrite). */
static char *fmir_shadow_authority(const struct stream *st)
{
	const char *b = st->d->in;
	struct h1_span a;

	if (st->rw_auth)
		return fmir_authority(st->rw_auth, strlen(st->rw_auth));
	if (st->req.host_idx >= 0 && st->req.target_form != H1_TF_ABSOLUTE)
		a = st->req.headers[st->req.host_idx].value;
	else
		a = st->req.authority;
	return fmir_authority(b + a.off, a.len);
}

/* The cluster a shadow to policy p goes to. In the sidecar a mirror host that a mesh
 * route takes goes where that route sends the request (the egress gateway); NULL when
 * that route has no destination (the shadow fails, counted). */
static struct cluster *fmir_cluster(const struct stream *sh, const struct route_mirror_policy *p)
{
	const struct dconn *d = sh->d;
	const struct route_table *t;
	const struct route_vhost *vh;
	const struct route *r;
	const struct route_dest *dest;
	struct req_hdr_ctx hc = { &sh->req, d->in };
	struct route_req rq;
	struct h1_span path;

	if (!d->sidecar)
		return snap_cluster_find(sh->snap, p->cluster_name);
	t = sidecar_table(sh->snap, p->port);
	vh = t ? route_vhost_find(t, p->host, strlen(p->host)) : NULL;
	if (!vh)
		return snap_cluster_find(sh->snap, p->cluster_name);
	path = sh->req.target_form == H1_TF_ABSOLUTE ? sh->req.path : sh->req.target;
	memset(&rq, 0, sizeof(rq));
	rq.method = d->in + sh->req.method.off;
	rq.method_len = sh->req.method.len;
	rq.path = sh->rw_path ? sh->rw_path : d->in + path.off;
	rq.path_len = sh->rw_path ? strlen(sh->rw_path) : path.len;
	rq.host = rq.authority = p->host;
	rq.host_len = rq.authority_len = strlen(p->host);
	rq.scheme = "http";
	rq.scheme_len = 4;
	rq.port = p->port;
	rq.header = req_header_cb;
	rq.header_ctx = &hc;
	r = route_select(vh, &rq);
	dest = r ? route_pick_dest(r, worker_rand(d->w)) : NULL;
	return dest ? dest->cluster : NULL;
}

/* Starts a shadow (its dconn's task, after the request that made it was handled). The
 * codecs post a dconn's task again to resume reading the client (u_flush after
 * back-pressure): a shadow has no client, so then there is nothing to do. */
static void fmir_on_task(struct loop *loop, struct loop_task *t)
{
	struct dconn *d = container_of(t, struct dconn, task);
	struct stream *st = d->st;
	struct worker *w = d->w;
	const struct cluster_ep *ep;
	struct cluster_eps *eps;

	(void)loop;
	if (d->nreq++ || !st || !st->active) {
		fwd_down->settle(d);
		return;
	}
	if (!st->cl) {
		fwd_down->local_reply(st, 503, ALOG_F_NC, "cluster_not_found", NULL);
		fwd_down->settle(d);
		return;
	}
	eps = st->cl->discovery == CLUSTER_ORIGINAL_DST ? NULL : cluster_eps_load(st->cl);
	ep = eps ? cluster_pick_ex(st->cl, eps,
	                           &w->rr[st->cl->index < w->nrr ? st->cl->index : 0], NULL,
	                           worker_rand(w), NULL) : NULL;
	if (!ep) {
		fwd_down->local_reply(st, 503, ALOG_F_UH, "no_healthy_upstream", NULL);
		fwd_down->settle(d);
		return;
	}
	st->ep = ep->addr;
	str_copy(st->ep_str, sizeof(st->ep_str), ep->str);
	st_connect(st, false);
	fwd_down->settle(d);
}

/* The stream of shadow d: a copy of st's request (its head spans are offsets into d->in,
 * which starts with the same head), with what the route did to it. */
static struct stream *fmir_stream(struct dconn *d, const struct stream *st)
{
	struct stream *sh = xcalloc(1, sizeof(*sh));
	struct worker *w = d->w;
	int64_t tmo = st->route->timeout_ms > 0 ? st->route->timeout_ms : MIRROR_DEFAULT_TIMEOUT_MS;

	sh->d = d;
	sh->req = st->req;
	loop_timer_init(&sh->timeout, fmir_on_timeout);
	loop_timer_init(&sh->rt_timer, st_on_rt_timer);
	loop_task_init(&sh->cb_wake, st_on_wake);
	sh->active = true;
	sh->ust = -1;
	sh->start_wall_ms = wall_ms();
	sh->start_ms = loop_now_ms(w->loop);
	sh->snap = snap_ref(st->snap);
	sh->hdrs = st->hdrs;
	sh->port = st->port;
	sh->rw_path = st->rw_path ? xstrdup(st->rw_path) : NULL;
	sh->rw_auth = fmir_shadow_authority(st);
	memcpy(sh->reqid, st->reqid, sizeof(sh->reqid));
	sh->reqid_generated = st->reqid_generated;
	sh->req_left = st->req.content_length;
	h1_chunked_init(&sh->req_ck);
	sh->req_done = st->req.body == H1_BODY_NONE ||
	               (st->req.body == H1_BODY_LENGTH && sh->req_left == 0);
	sh->resp_close = true;
	STAT_INC(w->st.rq_active);       /* st_finish takes it off, as for any request */
	loop_timer_arm(w->loop, &sh->timeout, (uint64_t)tmo);
	return sh;
}

/* One shadow of st to policy p, started on the next turn of the loop. */
static void fmir_send(struct stream *st, const struct route_mirror_policy *p,
                      const struct fmir_pend *pend)
{
	const struct dconn *o = st->d;
	struct worker *w = o->w;
	struct dconn *d;
	struct stream *sh;
	size_t hl = st->req.head_len, bl = pend ? pend->len : 0;

	if (w->nmirrors >= MIRROR_MAX_ACTIVE) {
		STAT_INC(w->st.mirror_skip_busy);
		return;
	}
	d = xcalloc(1, sizeof(*d));
	d->w = w;
	d->mirror = true;
	d->mirror_tls = o->tls || o->h2s || o->mirror_tls;
	d->snap = snap_ref(st->snap);
	d->lst = o->lst;
	d->local = o->local;
	d->remote = o->remote;
	memcpy(d->local_s, o->local_s, sizeof(d->local_s));
	memcpy(d->remote_s, o->remote_s, sizeof(d->remote_s));
	memcpy(d->remote_ip, o->remote_ip, sizeof(d->remote_ip));
	d->sidecar = o->sidecar;
	d->redirected = o->redirected;
	d->odst = o->odst;
	d->hs_done = true;
	d->closing = true;               /* one exchange, then gone */
	d->accept_wall_ms = wall_ms();
	d->accept_ms = loop_now_ms(w->loop);
	d->in_cap = hl + bl + 1;
	d->in = xmalloc(d->in_cap);
	memcpy(d->in, o->in, hl);
	if (bl)
		memcpy(d->in + hl, pend->body, bl);
	d->in_len = hl + bl;
	d->in_pos = hl;
	loop_io_init(&d->io, -1, fmir_noop_io);
	loop_timer_init(&d->timer, fmir_noop_timer);
	loop_timer_init(&d->peek_retry, fmir_noop_timer);
	loop_task_init(&d->task, fmir_on_task);
	d->st = sh = fmir_stream(d, st);
	/* The mirror's host names the shadow's TLS (SNI, verified name): see the top. */
	str_copy(sh->hostbuf, sizeof(sh->hostbuf), p->host);
	sh->host = sh->hostbuf;
	sh->cl = fmir_cluster(sh, p);
	d->next = w->mirrors;
	if (d->next)
		d->next->prev = d;
	w->mirrors = d;
	w->nmirrors++;
	STAT_INC(w->st.mirror_active);
	STAT_INC(w->st.mirror_sent);
	loop_task_post(w->loop, &d->task);
}

/* st's body is whole: its shadows go. */
static void fmir_launch(struct stream *st)
{
	struct fmir_pend *p = st->mir;

	for (size_t i = 0; i < p->rm->n; i++)
		if (p->pick[i])
			fmir_send(st, &p->rm->p[i], p);
	fmir_pend_free(st);
}

void fmir_begin(struct stream *st)
{
	const struct route_mirror *rm = st->route->mirror;
	struct worker *w = st->d->w;
	struct fmir_pend *p = NULL;

	for (size_t i = 0; i < rm->n; i++) {
		if (!route_fault_hit(rm->p[i].ppm, worker_rand(w)))
			continue;
		if (!p)
			p = xcalloc(1, sizeof(*p) + rm->n * sizeof(p->pick[0]));
		p->pick[i] = true;
	}
	if (!p)
		return;
	p->rm = rm;
	fmir_pend_free(st);
	st->mir = p;
	if (st->req_done)
		fmir_launch(st);
}

void fmir_body(struct stream *st, size_t from)
{
	struct fmir_pend *p = st->mir;
	const char *b = st->d->in + from;
	size_t n = st->d->in_pos - from, held = from - st->req.head_len;

	/* While the route may retry, the body taken so far stays in d->in behind the head
	 * (d_body_compact): a retry rewound it when less is held than was kept, and its
	 * replay is taken again from there. */
	if (st->route->retry && !st->rt_nobody && held < p->len)
		p->len = held;
	if (p->len + n > MIRROR_BODY_MAX) {
		/* As Envoy's shadow stops at its buffer limit: this request is not mirrored. */
		STAT_INC(st->d->w->st.mirror_skip_body);
		fmir_pend_free(st);
		return;
	}
	if (n) {
		if (p->len + n > p->cap) {
			p->cap = p->len + n > 2 * p->cap ? p->len + n : 2 * p->cap;
			p->body = xrealloc(p->body, p->cap);
		}
		memcpy(p->body + p->len, b, n);
		p->len += n;
	}
	if (st->req_done)
		fmir_launch(st);
}

void fmir_done(struct stream *st)
{
	struct worker *w = st->d->w;

	if (st->resp && st->resp_done && !(st->flags & (ALOG_F_UT | ALOG_F_UC | ALOG_F_UPE)))
		STAT_INC(w->st.mirror_answered);
	else
		STAT_INC(w->st.mirror_failed);
	/* Per mirror: its cluster's upstream_rq_total / upstream_rq_Nxx, as Envoy counts a
	 * shadow on the mirror cluster. */
	if (st->cl && st->code) {
		struct istats_cluster *cs = cl_stats(w, st->cl);

		STAT_INC(cs->rq_total);
		STAT_INC(cs->rq_xx[st->code >= 100 && st->code < 600 ? st->code / 100 : 0]);
	}
}

void fmir_gone(struct dconn *d)
{
	struct worker *w = d->w;

	if (d->prev)
		d->prev->next = d->next;
	else
		w->mirrors = d->next;
	if (d->next)
		d->next->prev = d->prev;
	w->nmirrors--;
	STAT_DEC(w->st.mirror_active);
	if (d->snap)
		snap_unref(d->snap);
	free(d->in);
	iob_free(&d->out);
	free(d);
}

void fmir_cancel_all(struct worker *w)
{
	while (w->mirrors) {
		struct dconn *d = w->mirrors;

		d->dead = true;
		fwd_down->settle(d);   /* d_close: the shadow abandoned, counted, freed */
	}
}
