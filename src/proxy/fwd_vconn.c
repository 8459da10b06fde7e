/* fwd_vconn: HTTP/2 streams' virtual connections (part of the fwd module, see fwd_int.h
 * and fwd_h2.h).
 *
 * fwd_h2.c runs the HTTP/2 session on a downstream connection and gives each stream a
 * virtual dconn (d->h2s, no socket). The stream's decoded request head is copied once into
 * the virtual connection's input buffer and its parsed head (st->req) filled from it
 * (fwd_vconn_request: h2_request_msg, then d_start, where an HTTP/1.1 head goes after
 * h1_parse); request DATA follows in the same buffer (fwd_vconn_input), framed as the
 * head says. Its response goes out as HEADERS built from the parsed upstream head or
 * from the fields of a reply made here (h2d_send_head, h2d_send_reply), its body through
 * d_flush -> h2d_pull. Virtual dconns come from the worker's free list (fwd_vconn_new;
 * vconn_put in fwd_down_h1.c gives them back). */
#include "proxy/fwd_vconn.h"
#include "proxy/fwd_down_h1.h"
#include "proxy/fwd_up_h1.h"
#include "proxy/fwd_core.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/worker.h"
#include "proxy/fwd.h"
#include "proxy/cbreak.h"
#include "proxy/fwd_h2.h"
#include "proxy/pool.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"
#include "http/h2_req.h"
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

/* ---- HTTP/2 virtual connections (see fwd_h2.h) ---- */

/* A virtual connection for one stream of h's connection d. Never NULL. */
static struct dconn *fwd_vconn_new(struct dconn *d, struct h2ds *ds)
{
	struct dconn *v = d->w->vc_free;

	if (v) {
		d->w->vc_free = v->next;
		d->w->nvc_free--;
		memset(v, 0, sizeof(*v));
	} else {
		v = xcalloc(1, sizeof(*v));
	}

	v->w = d->w;
	v->snap = snap_ref(d->snap);
	v->lst = d->lst;
	v->local = d->local;
	v->remote = d->remote;
	memcpy(v->local_s, d->local_s, sizeof(v->local_s));
	memcpy(v->remote_s, d->remote_s, sizeof(v->remote_s));
	memcpy(v->remote_ip, d->remote_ip, sizeof(v->remote_ip));
	/* Borrowed, not copied (two allocations per stream saved): the connection frees its
	 * own only after its streams' virtual connections are gone (d_close: h2d_free first). */
	v->sni = d->sni;
	v->peer_id = d->peer_id;
	v->sidecar = d->sidecar;
	v->redirected = d->redirected;
	v->odst = d->odst;
	v->accept_wall_ms = d->accept_wall_ms;
	v->accept_ms = d->accept_ms;
	v->h2s = ds;
	v->hs_done = true;
	loop_io_init(&v->io, -1, d_on_io);
	loop_timer_init(&v->timer, d_on_timer);
	loop_task_init(&v->task, d_on_task);
	loop_timer_init(&v->peek_retry, d_on_peek_retry);
	v->st = st_get(v);
	return v;
}

void fwd_streams_free(struct worker *w)
{
	while (w->vc_free) {
		struct dconn *v = w->vc_free;

		w->vc_free = v->next;
		free(v);
	}
	w->nvc_free = 0;
	while (w->vu_free) {
		struct uconn *u = w->vu_free;

		w->vu_free = u->all_next;
		free(u);
	}
	w->nvu_free = 0;
	while (w->st_free) {
		struct stream *st = w->st_free;

		w->st_free = st->next_free;
		free(st);
	}
	w->nst_free = 0;
	st_resp_free_all(w);
}

/* v->in holds at least n more bytes (FWD_BUF_MIN, doubling: from the worker's buffer
 * cache). */
static void vconn_reserve(struct dconn *v, size_t n)
{
	size_t cap = v->in_cap ? v->in_cap : FWD_BUF_MIN;

	if (v->in_cap - v->in_len >= n)
		return;
	while (cap - v->in_len < n)
		cap *= 2;
	v->in = buf_grow(v->in, v->in_cap, v->in, v->in_len, cap);
	v->in_cap = cap;
}

/* The stream's request head: decoded once into v's input buffer and st->req, then
 * started (or answered 400/414/431 as an HTTP/1.1 head h1_parse refused would be). May
 * answer the request and free v (h2d_vconn_gone is called first). */
static void fwd_vconn_request(struct dconn *v, const struct h2_request *rq)
{
	struct stream *st = v->st;
	const char *reason = NULL;
	int status;

	vconn_reserve(v, h2_request_msg_size(rq));
	status = h2_request_msg(rq, v->in, &st->req, &reason);
	v->in_len = status ? 0 : st->req.head_len;
	d_start(v, status, reason, "http2.invalid_request");
	loop_timer_cancel(v->w->loop, &v->timer);
	d_settle(v);
}

/* Request body bytes for v, framed as its head says (chunked when the length is
 * unknown); may answer the request and free v (h2d_vconn_gone is called first). Bytes
 * after the request ended are dropped. */
static void fwd_vconn_input(struct dconn *v, const void *p, size_t n)
{
	struct stream *st = v->st;

	if (!st->active || v->dead || v->closing) {
		d_settle(v);   /* a dead one goes now, as it did when the bytes were kept */
		return;
	}
	vconn_reserve(v, n);
	memcpy(v->in + v->in_len, p, n);
	v->in_len += n;
	if (!st->req_done && st->u && !v->read_paused)
		d_forward_body(v);
	d_settle(v);
}

/* The stream's send queue has room again: pull more output. May free v. */
static void fwd_vconn_writable(struct dconn *v)
{
	d_flush(v);
	d_settle(v);
}

/* The client reset the stream or the connection went away: v is closed now (logged DC
 * when a request was in flight). h2d_vconn_gone is called from d_close. */
static void fwd_vconn_abort(struct dconn *v)
{
	v->dead = true;
	d_close(v);
}

/* The h2 connection d is finished (GOAWAY done, error): frees it (and calls h2d_free). */
static void fwd_h2_conn_done(struct dconn *d)
{
	d_close(d);
}

const struct h2d_sink fwd_vconn_sink = {
	.stream_new = fwd_vconn_new,
	.request = fwd_vconn_request,
	.input = fwd_vconn_input,
	.writable = fwd_vconn_writable,
	.abort = fwd_vconn_abort,
	.conn_done = fwd_h2_conn_done,
};
