/* fwd_up_h1: the HTTP/1.1 upstream codec of the request path (part of the fwd module,
 * see fwd_int.h).
 *
 * An upstream connection (struct uconn): connect and TLS handshake (u_on_connected,
 * u_handshake), the request head re-serialized for the upstream (st_send_head: hop-by-hop
 * fields dropped, our own framing, x-forwarded-for, x-request-id; st_send_head_h2 submits
 * it as HEADERS when the uconn is an HTTP/2 stream of up_h2.c), the request body streamed
 * as it arrives (d_forward_body), never buffered whole; then u_on_io -> u_process: h1_parse
 * of the response head, written downstream (fwd_down_h1.c st_send_resp_head), the body
 * streamed (u_forward_body). Back to the pool or closed by u_release / u_close. The
 * response of an HTTP/2 stream takes u_process_h2 instead: no text, no h1_parse (see
 * "the response of an HTTP/2 stream" below).
 *
 * Framing: the proxy writes its own Content-Length or Transfer-Encoding. Chunked bodies are
 * relayed chunk by chunk as received. Request trailer fields are dropped (as Envoy's HTTP/1
 * codec does by default), except an HTTP/2 client's towards an HTTP/2 upstream
 * (up_trailers_h2); response trailer fields are relayed to a client that asked for
 * them (TE: trailers) and to HTTP/2 streams (gRPC's grpc-status), minus framing, hop-by-hop
 * and Host fields (chunked_relay), and dropped otherwise. An HTTP/1.0 client gets a chunked
 * response's payload unframed, ended by closing the connection. A response delimited by
 * close is relayed the same way.
 *
 * Back-pressure: when one side's output buffer holds more than FWD_HIGH_WATER bytes,
 * reading from the other side stops until it drains. Writes are attempted at once;
 * LOOP_WRITE interest is only registered when a write would block. */
#include "proxy/fwd_up_h1.h"
#include "proxy/fwd_conn.h"
#include "proxy/fwd_core.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/fwd_mirror.h"
#include "proxy/worker.h"
#include "proxy/cbreak.h"
#include "proxy/overload.h"
#include "proxy/fwd.h"
#include "proxy/fwd_h2.h"
#include "proxy/up_h2.h"
#include "proxy/pool.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"
#include "http/h2head.h"
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

static void u_process(struct uconn *u);
static void u_release(struct uconn *u, bool reusable);
static void u_on_connected(struct uconn *u);
static void u_on_io(struct loop *loop, struct loop_io *io, unsigned ev);
static void st_send_head(struct stream *st);
static void u_head_final(struct uconn *u);

/* ---- upstream connections ---- */

static void u_update_interest(struct uconn *u, bool want_write)
{
	unsigned in;

	if (u->h2)
		return;
	in = (u->read_paused ? 0 : LOOP_READ) | (want_write ? LOOP_WRITE : 0);
	loop_io_mod(u->w->loop, &u->io, in);
}

/* Returns 0, or -1 when u failed and was closed (the stream may go on elsewhere). */
static int u_flush(struct uconn *u)
{
	bool blocked;

	if (u->connecting || !u->hs_done)
		return 0;
	if (u->h2) {
		/* Payload only (no framing): the stream takes what its send queue can hold. */
		size_t n = uh2_send(u->h2, u->out.p ? u->out.p + u->out.off : "", iob_used(&u->out),
		                    u->st && u->st->req_done);

		u->out.off += n;
		if (u->out.off == u->out.len)
			u->out.off = u->out.len = 0;
		blocked = iob_used(&u->out) > 0;
	} else if (io_write(u->io.fd, u->tls, &u->out, &blocked) < 0) {
		struct stream *st = u->st;

		if (st)
			st_upstream_failed(st, ALOG_F_UC, "upstream_reset_before_response_started{connection_termination}",
			                   u->tls ? tls_conn_error(u->tls) : strerror(errno), u->nreq > 0);
		else
			u_close(u);
		return -1;
	}
	u_update_interest(u, blocked);
	/* Back-pressure the other way: resume reading the client's body. */
	if (!blocked && u->st && u->st->d->read_paused) {
		struct dconn *d = u->st->d;

		d->read_paused = false;
		fwd_down->interest(d, iob_used(&d->out) > 0);
		loop_task_post(d->w->loop, &d->task);
	}
	return 0;
}

/* Frees a virtual (HTTP/2 stream) uconn: it has no socket, TLS, pool place, cluster slot
 * or connection counter of its own. complete: see uh2_detach. */
static void u_free_h2(struct uconn *u, bool complete)
{
	struct worker *w = u->w;

	uh2_detach(u->h2, complete);
	loop_task_cancel(w->loop, &u->task);
	buf_release(u->in, u->in_cap);
	iob_free(&u->out);
	/* Kept for the worker's next HTTP/2 request (as virtual dconns are). */
	if (w->nvu_free >= FWD_VC_FREE_MAX) {
		free(u);
		return;
	}
	u->all_next = w->vu_free;
	w->vu_free = u;
	w->nvu_free++;
}

void u_close(struct uconn *u)
{
	struct worker *w = u->w;

	if (u->h2) {
		u_free_h2(u, false);
		return;
	}
	if (u->link.bucket) {
		pool_remove(w->pool, &u->link);
		STAT_DEC(w->st.pool_idle);
	}
	if (u->all_prev)
		u->all_prev->all_next = u->all_next;
	else
		w->uconns = u->all_next;
	if (u->all_next)
		u->all_next->all_prev = u->all_prev;
	if (u->draining)
		pool_draining_add(u->cc ? u->cc->name : "-", -1);
	if (u->cc) {
		/* A connection slot frees up: the next waiting request may have it. */
		struct cb_cluster *cc = u->cc;

		if (u->cb_idle.next) {
			cb_list_del(&u->cb_idle);
			cc->nidle--;
		}
		cc->ncx--;
		u->cc = NULL;
		cc_kick(w, cc);
		cb_unref(cc);
	}
	loop_timer_cancel(w->loop, &u->timer);
	loop_task_cancel(w->loop, &u->task);
	loop_io_del(w->loop, &u->io);
	if (u->tls)
		tls_conn_free(u->tls);
	close(u->io.fd);
	buf_release(u->in, u->in_cap);
	iob_free(&u->out);
	STAT_DEC(w->st.ucx_active);
	hstats_cx_close(u->hs);
	free(u);
}

static void u_on_timer(struct loop *loop, struct loop_timer *t)
{
	struct uconn *u = container_of(t, struct uconn, timer);
	struct dconn *d = u->st ? u->st->d : NULL;

	(void)loop;
	if (u->st && (u->connecting || !u->hs_done)) {
		STAT_INC(u->w->st.ucx_connect_timeout);
		st_upstream_failed(u->st, ALOG_F_UF,
		                   "upstream_reset_before_response_started{connection_timeout}",
		                   "connection timeout", false);
	} else if (!u->st) {
		u_close(u);      /* idle timeout */
	}
	if (d)
		fwd_down->settle(d);
}

static void u_on_task(struct loop *loop, struct loop_task *t)
{
	struct uconn *u = container_of(t, struct uconn, task);
	struct dconn *d = u->st ? u->st->d : NULL;

	(void)loop;
	if (u->h2 && u->st) {
		struct stream *st = u->st;

		if (!st->up_local[0])
			str_copy(st->up_local, sizeof(st->up_local), uh2_local(u->h2));
		/* Body bytes held back until the stream was open go now (flushes u). */
		if (!st->req_done && uh2_ready(u->h2) && d->in_pos < d->in_len) {
			if (d_forward_body(d) < 0) {
				fwd_down->settle(d);
				return;
			}
		} else {
			u_flush(u);
		}
		if (st->u != u) {
			fwd_down->settle(d);
			return;
		}
	}
	if (u->st && !u->read_paused && u->hs_done)
		u_process(u);
	if (d)
		fwd_down->settle(d);
}

/* The connection can carry no more requests: drop it. */
static void u_release(struct uconn *u, bool reusable)
{
	struct worker *w = u->w;

	u->st = NULL;
	u->nreq++;
	if (u->h2) {
		/* Never pooled (the connection is up_h2.c's); a complete exchange leaves the
		 * stream to end by itself rather than be reset. */
		u_free_h2(u, reusable && iob_used(&u->out) == 0);
		return;
	}
	if (!reusable || w->draining || (u->max_req && u->nreq >= u->max_req) ||
	    u->in_len > u->in_pos || iob_used(&u->out) > 0 ||
	    !pool_live_ok(w->live, u->conn_id, u->ident)) {
		u_close(u);
		return;
	}
	u->in_len = u->in_pos = 0;
	if (u->in && u->in_cap > FWD_BUF_INIT * 4) {
		buf_release(u->in, u->in_cap);
		u->in = NULL;
		u->in_cap = 0;
	}
	u->read_paused = false;
	/* Keep watching for reads: a server closing an idle connection is noticed at once. */
	loop_io_mod(w->loop, &u->io, LOOP_READ);
	loop_timer_arm(w->loop, &u->timer, (uint64_t)u->idle_ms);
	pool_put(w->pool, u->key, u->keylen, &u->link);
	STAT_INC(w->st.pool_idle);
	if (u->cc) {
		cb_list_add_tail(&u->cc->idle, &u->cb_idle);
		u->cc->nidle++;
		cc_kick(w, u->cc);
	}
}

static void u_handshake(struct uconn *u)
{
	struct stream *st = u->st;
	int rc = tls_handshake(u->tls);

	if (tls_wait(u->w->loop, &u->io, rc))
		return;
	if (rc < 0) {
		int cat = stats_tls_cat_index(tls_conn_category(u->tls));

		STAT_INC(u->w->st.ucx_tls_fail[cat]);
		if (st && st->cl)
			STAT_INC(cl_stats(u->w, st->cl)->ssl_fail[cat]);
		if (st)
			st_upstream_failed(st, ALOG_F_UF,
			                   "upstream_reset_before_response_started{connection_failure}",
			                   tls_conn_error(u->tls), false);
		else
			u_close(u);
		return;
	}
	u->hs_done = true;
	if (st)
		st_up_ready(st);
	if (st && st->cl)
		STAT_INC(cl_stats(u->w, st->cl)->ssl_handshake);
	if (tls_conn_resumed(u->tls))
		STAT_INC(u->w->st.ucx_tls_resumed);
	else
		STAT_INC(u->w->st.ucx_tls_full);
	loop_timer_cancel(u->w->loop, &u->timer);
	u_flush(u);
}

static void u_on_connected(struct uconn *u)
{
	struct stream *st = u->st;

	if (sock_connect_result(u->io.fd) < 0) {
		char reason[128];

		snprintf(reason, sizeof(reason), "delayed connect error: %s", strerror(errno));
		STAT_INC(u->w->st.ucx_connect_fail);
		if (st->cl)
			STAT_INC(cl_stats(u->w, st->cl)->cx_connect_fail);
		st_upstream_failed(st, ALOG_F_UF,
		                   "upstream_reset_before_response_started{connection_failure}",
		                   reason, false);
		return;
	}
	u->connecting = false;
	{
		struct sock_addr la;

		if (sock_local_addr(u->io.fd, &la) == 0)
			sock_addr_str(&la, u->local_s, sizeof(u->local_s));
		str_copy(st->up_local, sizeof(st->up_local), u->local_s);
	}
	if (u->tls) {
		u_handshake(u);
		return;
	}
	u->hs_done = true;
	st_up_ready(st);
	loop_timer_cancel(u->w->loop, &u->timer);
	u_flush(u);
}

static void u_on_io(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct uconn *u = container_of(io, struct uconn, io);
	struct dconn *d = u->st ? u->st->d : NULL;

	(void)loop;
	if (u->connecting) {
		if (ev & (LOOP_WRITE | LOOP_ERROR))
			u_on_connected(u);
	} else if (!u->hs_done) {
		u_handshake(u);
	} else if (!u->st) {
		/* Idle in the pool: the server closed it, or sent something unasked. Either way
		 * it cannot be reused. */
		u_close(u);
	} else if (!(ev & LOOP_WRITE) || u_flush(u) == 0) {
		if ((ev & (LOOP_READ | LOOP_ERROR)) && !u->read_paused)
			u_process(u);
	}
	if (d)
		fwd_down->settle(d);
}

/* ---- request head to the upstream ---- */

/* The request head as HTTP/2 HEADERS on u's stream: the same fields st_send_head writes
 * (hop-by-hop ones dropped by h2_request_from_h1, ours added). */
static void st_send_head_h2(struct stream *st)
{
	struct dconn *d = st->d;
	struct uconn *u = st->u;
	struct proxy *px = d->w->proxy;
	const char *b = d->in;
	struct h2_from_h1 c;
	/* c.hdrs compacted in place when no header operation applies (c.hdrs has room for
	 * ours, see below); with operations, a larger array that also holds theirs. */
	struct h2_header big[H1_MAX_HEADERS + 2 + 5 + RHDR_MAX_EMIT];
	const struct rhdr_list *rh = rhdr_req(st->hdrs);
	struct h2_header *h = rh ? big : c.hdrs;
	size_t room = rh ? sizeof(big) / sizeof(big[0]) : sizeof(c.hdrs) / sizeof(c.hdrs[0]);
	size_t n = 0;
	char xff[1024];
	char count[12];                 /* x-envoy-attempt-count, submitted below */
	bool gw = px->role == SNAP_ROLE_GATEWAY;

	memset(&c, 0, sizeof(c));
	/* The mesh hop carries the application's http request inside mTLS (the gateway
	 * originates TLS itself); any other TLS upstream is https. */
	h2_request_from_h1(&st->req, b, st->cl->tls_mode == CLUSTER_TLS_ISTIO_MUTUAL ? "http" : "https",
	                   &c);
	if (st->rw_path)
		c.rq.path = (struct h2_str){ st->rw_path, strlen(st->rw_path) };
	if (st->rw_auth)
		c.rq.authority = (struct h2_str){ st->rw_auth, strlen(st->rw_auth) };
	str_copy(xff, sizeof(xff), d->remote_ip);
	/* Compact c.hdrs in place, dropping what the gateway replaces; room for ours stays
	 * (c.hdrs has two spare slots beyond H1_MAX_HEADERS, plus those dropped). */
	for (size_t i = 0; i < c.rq.nheaders; i++) {
		const struct h2_header *f = &c.rq.headers[i];

		if (rhdr_dropped(rh, f->name.p, f->name.len))
			continue;
		if (gw && h1_name_eq(f->name.p, f->name.len, "x-forwarded-for", 15)) {
			snprintf(xff, sizeof(xff), "%.*s,%s", (int)f->value.len, f->value.p, d->remote_ip);
			continue;
		}
		if (gw && h1_name_eq(f->name.p, f->name.len, "x-forwarded-proto", 17))
			continue;
		if (st->rw_path && h1_name_eq(f->name.p, f->name.len, "x-envoy-original-path", 21))
			continue;
		if (h1_name_eq(f->name.p, f->name.len, "x-envoy-attempt-count", 21))
			continue;
		h[n++] = *f;
	}
	{
		struct h2_header extra[6];
		size_t ne = 0;

		if (st->rw_path) {
			struct h1_span p = st->req.target_form == H1_TF_ABSOLUTE ? st->req.path
			                                                           : st->req.target;

			extra[ne++] = (struct h2_header){ { "x-envoy-original-path", 21 },
			                                  { b + p.off, p.len } };
		}

		if (gw && !rhdr_dropped(rh, "x-forwarded-for", 15))
			extra[ne++] = (struct h2_header){ { "x-forwarded-for", 15 }, { xff, strlen(xff) } };
		if (gw && !rhdr_dropped(rh, "x-forwarded-proto", 17))
			extra[ne++] = (struct h2_header){ { "x-forwarded-proto", 17 },
			    { d->tls || d->h2s || d->mirror_tls ? "https" : "http",
			      d->tls || d->h2s || d->mirror_tls ? 5 : 4 } };
		if (st->reqid_generated && !rhdr_dropped(rh, "x-request-id", 12))
			extra[ne++] = (struct h2_header){ { "x-request-id", 12 },
			                                  { st->reqid, strlen(st->reqid) } };
		snprintf(count, sizeof(count), "%u", st_attempts(st));
		extra[ne++] = (struct h2_header){ { "x-envoy-attempt-count", 21 },
		                                  { count, strlen(count) } };
		for (size_t i = 0; i < ne && n < room; i++)
			h[n++] = extra[i];
		rhdr_h2(h, &n, room, rh);
	}
	c.rq.headers = h;
	c.rq.nheaders = n;
	uh2_submit(u->h2, &c.rq);
	h2_from_h1_fini(&c);
}

/* The request line for the upstream: origin-form (an absolute-form target's path, "/"
 * for an empty one), or the route's rewritten path. */
static void st_send_request_line(const struct stream *st, struct iobuf *o)
{
	const struct h1_msg *m = &st->req;
	const char *b = st->d->in;

	iob_append(o, b + m->method.off, m->method.len);
	iob_append(o, " ", 1);
	if (st->rw_path) {
		iob_adds(o, st->rw_path);
	} else if (m->target_form == H1_TF_ABSOLUTE) {
		if (m->path.len == 0)
			iob_append(o, "/", 1);
		else if (b[m->path.off] == '?')
			iob_append(o, "/", 1);
		iob_append(o, b + m->path.off, m->path.len);
	} else {
		iob_append(o, b + m->target.off, m->target.len);
	}
	IOB_LIT(o, " HTTP/1.1\r\n");
}

/* The fields st_send_head writes of its own after the client's: Host (absolute-form or
 * rewritten), x-envoy-original-path, the gateway's x-forwarded-*, a new x-request-id and
 * x-envoy-attempt-count (Istio sets include_request_attempt_count on every virtual host). */
static void st_send_own_fields(struct stream *st, struct iobuf *o, const struct rhdr_list *rh,
                               bool have_xff)
{
	struct dconn *d = st->d;
	const struct h1_msg *m = &st->req;
	const char *b = d->in;
	bool gw = d->w->proxy->role == SNAP_ROLE_GATEWAY;

	if (st->rw_auth)
		iob_field_s(o, "host", st->rw_auth);
	else if (m->target_form == H1_TF_ABSOLUTE)
		iob_field(o, "host", 4, b + m->authority.off, m->authority.len);
	if (st->rw_path) {
		/* Envoy tells the upstream what the path was before the rewrite. */
		struct h1_span p = m->target_form == H1_TF_ABSOLUTE ? m->path : m->target;

		iob_field(o, "x-envoy-original-path", 21, b + p.off, p.len);
	}
	if (gw && !have_xff && !rhdr_dropped(rh, "x-forwarded-for", 15))
		iob_field_s(o, "x-forwarded-for", d->remote_ip);
	if (gw && !rhdr_dropped(rh, "x-forwarded-proto", 17)) {
		if (d->tls || d->h2s || d->mirror_tls)
			IOB_LIT(o, "x-forwarded-proto: https\r\n");
		else
			IOB_LIT(o, "x-forwarded-proto: http\r\n");
	}
	if (st->reqid_generated && !rhdr_dropped(rh, "x-request-id", 12))
		iob_field_s(o, "x-request-id", st->reqid);
	iob_field_u(o, "x-envoy-attempt-count", st_attempts(st));
}

static void st_send_head(struct stream *st)
{
	struct dconn *d = st->d;
	struct uconn *u = st->u;
	const struct h1_msg *m = &st->req;
	const char *b = d->in;
	struct proxy *px = d->w->proxy;
	struct iobuf *o = &u->out;
	bool have_xff = false;
	/* The route's header operations (route_hdrs.h): applied after the proxy's own fields
	 * are in, as Envoy's router applies request_headers_to_* after the connection
	 * manager set x-forwarded-for and x-request-id. */
	const struct rhdr_list *rh = rhdr_req(st->hdrs);

	if (u->h2) {
		st_send_head_h2(st);
		return;
	}
	st_send_request_line(st, o);
	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *hd = &m->headers[i];

		if (hd->flags & H1_HF_DROP)
			continue;
		if (rhdr_dropped(rh, b + hd->name.off, hd->name.len))
			continue;
		/* A request in absolute-form (to a forward proxy) is sent on in origin-form,
		 * with the URI's authority as Host (RFC 9112 section 3.2.2). */
		if ((m->target_form == H1_TF_ABSOLUTE || st->rw_auth) && (int)i == m->host_idx)
			continue;
		if (st->rw_path && h1_name_eq(b + hd->name.off, hd->name.len,
		                              "x-envoy-original-path", 21))
			continue;
		if (h1_name_eq(b + hd->name.off, hd->name.len, "x-forwarded-for", 15) &&
		    px->role == SNAP_ROLE_GATEWAY) {
			have_xff = true;
			iob_append(o, b + hd->name.off, hd->name.len);
			IOB_LIT(o, ": ");
			iob_append(o, b + hd->value.off, hd->value.len);
			IOB_LIT(o, ",");
			iob_adds(o, d->remote_ip);
			IOB_LIT(o, "\r\n");
			continue;
		}
		if (px->role == SNAP_ROLE_GATEWAY &&
		    h1_name_eq(b + hd->name.off, hd->name.len, "x-forwarded-proto", 17))
			continue;
		if (h1_name_eq(b + hd->name.off, hd->name.len, "x-envoy-attempt-count", 21))
			continue;   /* ours replaces it */
		iob_field(o, b + hd->name.off, hd->name.len, b + hd->value.off, hd->value.len);
	}
	st_send_own_fields(st, o, rh, have_xff);
	rhdr_write_h1(o, rh);
	if (m->has_te_trailers)
		IOB_LIT(o, "te: trailers\r\n");
	if (m->body == H1_BODY_LENGTH) {
		iob_field_u(o, "content-length", m->content_length);
	} else if (m->body == H1_BODY_CHUNKED) {
		IOB_LIT(o, "transfer-encoding: chunked\r\n");
	}
	IOB_LIT(o, "\r\n");
}

/* ---- request body ---- */

/* The trailer section of a request that came over HTTP/2 (b[0 .. len), fwd_h2.c's
 * rendering of the client's trailing HEADERS) goes to an HTTP/2 upstream as trailing
 * HEADERS, minus the fields chunked_relay would drop. An HTTP/1.1 client's trailers are
 * dropped whatever the upstream speaks, as Envoy's HTTP/1 codec does by default. */
static void up_trailers_h2(struct uconn *u, const char *b, size_t len)
{
	struct h1_header f[H1_MAX_HEADERS];
	struct h2_header h[H1_MAX_HEADERS];
	unsigned n = 0, k = 0;

	if (h1_parse_trailers(b, len, f, H1_MAX_HEADERS, &n) < 0)
		return;
	for (unsigned i = 0; i < n; i++)
		if (!(f[i].flags & H1_HF_DROP) && f[i].id != H1_H_HOST && f[i].id != H1_H_TRAILER)
			h[k++] = (struct h2_header){ { b + f[i].name.off, f[i].name.len },
			                             { b + f[i].value.off, f[i].value.len } };
	uh2_trailers_out(u->h2, h, k);
}

/* Consumed body bytes need not stay: keep the head (its spans are used until the
 * stream ends) and move what is left down behind it. Unless the route may retry:
 * then up to RETRY_BODY_MAX of them stay for a replay (st_retry_*). */
static void d_body_compact(struct dconn *d, struct stream *st)
{
	if (st->route && st->route->retry && !st->rt_nobody) {
		size_t held = d->in_pos - st->req.head_len;

		if (held > RETRY_BODY_MAX || (held == RETRY_BODY_MAX && !st->req_done))
			st->rt_nobody = true;
	}
	if (d->in_pos > st->req.head_len && d->in_pos == d->in_len &&
	    (st->rt_nobody || !st->route || !st->route->retry)) {
		d->in_len = d->in_pos = st->req.head_len;
	}
}

/* Moves request body bytes from d->in to the upstream. Returns -1 if the stream ended
 * (error answered), else 0. */
int d_forward_body(struct dconn *d)
{
	struct stream *st = d->st;
	struct uconn *u = st->u;
	size_t from = d->in_pos;

	if (u && u->h2 && !uh2_ready(u->h2)) {
		/* The stream is not open yet (the connection is being set up): leave the body
		 * where it is, so that a fallback to HTTP/1.1 can still send it all. */
		if (!d->h2s && !d->read_paused) {
			d->read_paused = true;
			fwd_down->interest(d, iob_used(&d->out) > 0);
		}
		return 0;
	}
	while (!st->req_done && d->in_pos < d->in_len) {
		const char *p = d->in + d->in_pos;
		size_t avail = d->in_len - d->in_pos;

		if (st->req.body == H1_BODY_LENGTH) {
			size_t n = avail < st->req_left ? avail : (size_t)st->req_left;

			if (u)
				iob_append(&u->out, p, n);
			st->req_left -= n;
			st->bytes_in += n;
			d->in_pos += n;
			if (st->req_left == 0)
				st->req_done = true;
		} else {
			size_t used;
			struct h1_span data, tr;
			int rc = h1_chunked_feed(&st->req_ck, p, avail, &used, &data, &tr);

			if (rc == H1_ERROR) {
				st->resp_close = true;
				fwd_down->local_reply(st, 400, ALOG_F_DPE, "http1.invalid_chunk", "Bad Request");
				return -1;
			}
			if (u && u->h2) {
				if (rc == H1_DATA)
					iob_append(&u->out, p + data.off, data.len);
				else if (rc == H1_OK && d->h2s && tr.len > 2)
					up_trailers_h2(u, p + tr.off, tr.len);
			} else if (u) {
				chunked_relay(&u->out, p, used, rc, tr, false);
			}
			if (rc == H1_DATA)
				st->bytes_in += data.len;
			d->in_pos += used;
			if (rc == H1_OK)
				st->req_done = true;
			if (rc == H1_AGAIN)
				break;
		}
	}
	if (st->mir)    /* the body as taken, for the request's shadows (fwd_mirror.c) */
		fmir_body(st, from);
	if (d->h2s && d->in_len - d->in_pos <= FWD_HIGH_WATER)
		h2d_vconn_drained(d->h2s);
	if (!u)
		return 0;
	d_body_compact(d, st);
	if (iob_used(&u->out) > FWD_HIGH_WATER) {
		d->read_paused = true;
		fwd_down->interest(d, iob_used(&d->out) > 0);
	}
	u_flush(u);   /* u may be gone after this (a retry may have replaced it) */
	return 0;
}

/* Forwards response body bytes from u->in. Returns -1 if the stream ended badly. */
static int u_forward_body(struct uconn *u)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;

	while (!st->resp_done && u->in_pos < u->in_len) {
		const char *p = u->in + u->in_pos;
		size_t avail = u->in_len - u->in_pos;

		if (st->resp->body == H1_BODY_LENGTH) {
			size_t n = avail < st->resp_left ? avail : (size_t)st->resp_left;

			fwd_down->send(d, p, n);
			st->resp_left -= n;
			st->bytes_out += n;
			u->in_pos += n;
			if (st->resp_left == 0)
				st->resp_done = true;
		} else if (st->resp->body == H1_BODY_CHUNKED) {
			size_t used;
			struct h1_span data, tr;
			int rc = h1_chunked_feed(&st->resp_ck, p, avail, &used, &data, &tr);

			if (rc == H1_ERROR) {
				st->flags |= ALOG_F_UPE;
				st->details = "upstream_reset_after_response_started{protocol_error}";
				st->resp_close = true;
				st_finish(st);
				return -1;
			}
			if (st->resp_dechunk) {
				if (rc == H1_DATA)
					fwd_down->send(d, p + data.off, data.len);
			} else {
				chunked_relay(&d->out, p, used, rc, tr,
				              st->req.has_te_trailers || d->h2s);
			}
			if (rc == H1_DATA)
				st->bytes_out += data.len;
			u->in_pos += used;
			if (rc == H1_OK)
				st->resp_done = true;
			if (rc == H1_AGAIN)
				break;
		} else {
			fwd_down->send(d, p, avail);
			st->bytes_out += avail;
			u->in_pos += avail;
		}
	}
	if (u->in_pos == u->in_len)
		u->in_pos = u->in_len = 0;
	return 0;
}

/* Reading the response failed (n < 0 from uh2_head, uh2_peek or io_read): 503 before the response
 * started (retried when it may be), else the response is cut short. */
static void u_read_failed(struct uconn *u)
{
	struct stream *st = u->st;
	const char *reason;

	if (u->h2) {
		const struct uh2_fail *f = uh2_failure(u->h2);

		if (!st->resp_started) {
			st_upstream_failed(st, f->flags, f->details, f->reason, f->retryable);
		} else {
			st->flags |= f->flags & ~ALOG_F_UF;
			st->details = "upstream_reset_after_response_started{remote_reset}";
			snprintf(st->tls_reason, sizeof(st->tls_reason), "%s", f->reason);
			st->resp_close = true;
			st_finish(st);
		}
		return;
	}
	reason = u->tls ? tls_conn_error(u->tls) : strerror(errno);
	if (!st->resp_started) {
		/* A TLS 1.3 server rejecting our client certificate says so here. */
		if (u->tls && tls_conn_category(u->tls)[0]) {
			int cat = stats_tls_cat_index(tls_conn_category(u->tls));

			STAT_INC(u->w->st.ucx_tls_fail[cat]);
			if (st->cl)
				STAT_INC(cl_stats(u->w, st->cl)->ssl_fail[cat]);
		}
		st_upstream_failed(st, ALOG_F_UC | (u->tls ? ALOG_F_UF : 0),
		                   "upstream_reset_before_response_started{connection_termination}",
		                   reason, u->nreq > 0);
	} else {
		st->flags |= ALOG_F_UC;
		st->details = "upstream_reset_after_response_started{connection_termination}";
		st->resp_close = true;
		st_finish(st);
	}
}

/* The response head in u->in: parsed and written downstream. Returns 0 when it is
 * (u->in_pos past it), 1 to read more (incomplete, or a 1xx passed on), -1 when st was
 * answered (a malformed head: 502). */
static int u_head(struct uconn *u)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;
	int rc = h1_parse(&st->sp, u->in + u->in_pos, u->in_len - u->in_pos, st_resp(st));

	if (rc == H1_AGAIN)
		return 1;
	if (rc == H1_ERROR) {
		st->resp_close = true;
		u->nreq = UINT32_MAX - 1;  /* never pool */
		st_od(st, OD_CONNECT_FAIL, 0);
		fwd_down->local_reply(st, 502, ALOG_F_UPE, "upstream_protocol_error", "Bad Gateway");
		return -1;
	}
	if (st->resp->status < 200 && st->resp->status != 101) {
		/* 1xx interim (100 Continue): pass it on, wait for the final response. */
		fwd_down->send(d, u->in + u->in_pos, st->resp->head_len);
		u->in_pos += st->resp->head_len;
		h1_parser_init(&st->sp, false, st->req.method_id);
		return 1;
	}
	/* A retriable answer goes no further: the route's policy retries (u is gone). */
	if (st_retry_head(st, u->in + u->in_pos))
		return -1;
	u_head_final(u);
	return 0;
}

/* The final response head is in st->resp (spans at u->in + u->in_pos): written downstream,
 * u->in_pos moved past it. Shared by both upstream codecs. */
static void u_head_final(struct uconn *u)
{
	struct stream *st = u->st;

	st->ust = (int64_t)(loop_now_ms(u->w->loop) - st->up_start_ms);
	st->code = st->resp->status;
	st->details = "via_upstream";
	st_od(st, OD_HTTP, st->code);
	st->resp_left = st->resp->content_length;
	h1_chunked_init(&st->resp_ck);
	fwd_down->resp_head(st);
	u->in_pos += st->resp->head_len;
	if (st->resp->body == H1_BODY_NONE ||
	    (st->resp->body == H1_BODY_LENGTH && st->resp_left == 0))
		st->resp_done = true;
}

/* u_process after its reads: the end of a response delimited by close, a response cut
 * short, 503 for a connection closed before any response, or done. */
static void u_reads_done(struct uconn *u, bool eof)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;

	if (st->resp_started && !st->resp_done && eof) {
		if (st->resp->body == H1_BODY_UNTIL_CLOSE) {
			st->resp_done = true;
			st->resp_close = true;
			u->nreq = UINT32_MAX - 1;
		} else {
			/* Truncated by the server: the client must see a short response, never a
			 * padded one, so its connection is closed too. */
			st->flags |= ALOG_F_UC;
			st->details = "upstream_reset_after_response_started{connection_termination}";
			st->resp_close = true;
			st_finish(st);
			return;
		}
	}
	if (!st->resp_started && eof) {
		st_upstream_failed(st, ALOG_F_UC,
		                   "upstream_reset_before_response_started{connection_termination}",
		                   "connection closed", u->nreq > 0);
		return;
	}
	if (st->resp_done) {
		st_finish(st);
		return;
	}
	fwd_down->flush(d);
}

/* ---- the response of an HTTP/2 stream (up_h2.c) ----
 * No text and no h1_parse: uh2_head fills st->resp from the decoded HEADERS, entering
 * the core where u_head does after a successful h1_parse; the payload comes unframed and
 * is framed here as the head written downstream announced (raw for a length or an
 * HTTP/1.0 client, chunks for "until END_STREAM"; the trailer section ends the chunks). */

/* Writes "name: value\r\n" downstream. */
static void down_field(struct dconn *d, const char *b, const struct h1_header *h)
{
	fwd_down->send(d, b + h->name.off, h->name.len);
	fwd_down->send(d, ": ", 2);
	fwd_down->send(d, b + h->value.off, h->value.len);
	fwd_down->send(d, "\r\n", 2);
}

/* An interim 1xx head (spans at u->in + u->in_pos) passed on as HTTP/1.1 text, as u_head
 * passes the server's own (an HTTP/2 downstream drops it, h2d_pull). */
static void u_interim_h2(struct uconn *u)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;
	const struct h1_msg *m = st->resp;
	const char *b = u->in + u->in_pos;
	char line[32];
	int n = snprintf(line, sizeof(line), "HTTP/1.1 %d ", m->status);

	fwd_down->send(d, line, (size_t)n);
	fwd_down->send(d, b + m->reason.off, m->reason.len);
	fwd_down->send(d, "\r\n", 2);
	for (unsigned i = 0; i < m->nheaders; i++)
		if (!(m->headers[i].flags & H1_HF_DROP))
			down_field(d, b, &m->headers[i]);
	fwd_down->send(d, "\r\n", 2);
}

/* The end of an "until END_STREAM" body framed as chunks: the last chunk and the trailer
 * section, with the server's trailer fields for a receiver that takes them (TE: trailers,
 * or an HTTP/2 stream), minus framing, hop-by-hop, Host and Trailer (as chunked_relay). */
static void u_chunked_end_h2(struct uconn *u)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;
	const void *tr = uh2_trailers(u->h2);

	fwd_down->send(d, "0\r\n", 3);
	if (tr && (st->req.has_te_trailers || d->h2s)) {
		struct h1_msg m;
		size_t len;
		const char *b = h2head_data(tr, &len);

		h2head_fill(tr, st->req.method_id, &m);
		for (unsigned i = 0; i < m.nheaders; i++) {
			const struct h1_header *h = &m.headers[i];

			if (!(h->flags & H1_HF_DROP) && h->id != H1_H_HOST && h->id != H1_H_TRAILER)
				down_field(d, b, h);
		}
	}
	fwd_down->send(d, "\r\n", 2);
}

/* Payload p[0 .. n) of the response downstream, in the head's framing. */
static void u_payload_h2(struct uconn *u, const char *p, size_t n)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;

	if (st->resp->body == H1_BODY_CHUNKED && !st->resp_dechunk) {
		char size[24];
		int k = snprintf(size, sizeof(size), "%zx\r\n", n);

		fwd_down->send(d, size, (size_t)k);
		fwd_down->send(d, p, n);
		fwd_down->send(d, "\r\n", 2);
	} else {
		fwd_down->send(d, p, n);
	}
	st->bytes_out += n;
	if (st->resp->body == H1_BODY_LENGTH) {
		st->resp_left -= n < st->resp_left ? n : st->resp_left;
		if (st->resp_left == 0)
			st->resp_done = true;
	}
}

/* A response with a length, to an HTTP/2 client: HTTP/2 lets trailers follow such a body
 * (a server may send them; HTTP/1.1 has no place for them). The head goes downstream with
 * its content-length as a plain field (not flagged framing, so the downstream codec passes
 * it on instead of writing its own) and the body framed as "until END_STREAM": its last
 * chunk carries the trailers (u_chunked_end_h2), which fwd_h2.c sends as trailing HEADERS
 * after exactly content-length bytes of DATA. */
static void u_length_as_stream(struct stream *st)
{
	struct h1_msg *m = st->resp;

	if (!st->d->h2s || m->body != H1_BODY_LENGTH || m->content_length == 0)
		return;
	for (unsigned i = 0; i < m->nheaders; i++)
		if (m->headers[i].id == H1_H_CONTENT_LENGTH)
			m->headers[i].flags &= (uint16_t)~H1_HF_FRAMING;
	m->body = H1_BODY_CHUNKED;
}

/* The response head(s) of an HTTP/2 stream. Returns 0 once the final head is written
 * downstream, 1 when none is there yet, -1 when st ended (failed, or sent over HTTP/1.1). */
static int u_heads_h2(struct uconn *u)
{
	struct stream *st = u->st;

	while (!st->resp_started) {
		size_t room = u->in_cap;
		int rc;

		/* The head's bytes go where h1_parse's would be (u->in: the downstream codec
		 * reads the spans there), a buffer from fwd_io.c's cache. */
		u->in_pos = u->in_len = 0;
		if (!u->in) {
			u->in_cap = room = FWD_BUF_INIT;
			u->in = fwd_buf_get(room);
		}
		rc = uh2_head(u->h2, st->req.method_id, st_resp(st), u->in, &room);
		if (rc == 2) {
			u->in = buf_grow(u->in, u->in_cap, NULL, 0, room);
			u->in_cap = room;
			rc = uh2_head(u->h2, st->req.method_id, st->resp, u->in, &room);
		}
		if (rc == UH2_FALLBACK) {
			st_h2_fallback(st);
			return -1;
		}
		if (rc < 0) {
			u_read_failed(u);
			return -1;
		}
		if (rc > 0)
			return 1;
		if (st->resp->status < 200) {
			u_interim_h2(u);
		} else if (st_retry_head(st, u->in + u->in_pos)) {
			return -1;      /* retried: u is gone */
		} else {
			u_length_as_stream(st);
			u_head_final(u);
		}
		u->in_pos = u->in_len = 0;      /* the head is written: its bytes may go */
	}
	return 0;
}

static void u_process_h2(struct uconn *u)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;
	int rc = u_heads_h2(u);

	if (rc < 0)
		return;
	while (rc == 0 && !st->resp_done) {
		const char *p;
		ssize_t n = uh2_peek(u->h2, &p);

		if (n == -2)
			break;
		if (n < 0) {
			u_read_failed(u);
			return;
		}
		if (n == 0) {
			if (st->resp->body != H1_BODY_CHUNKED) {
				u_reads_done(u, true);  /* short of its length: cut short */
				return;
			}
			if (!st->resp_dechunk)
				u_chunked_end_h2(u);
			st->resp_done = true;
			break;
		}
		if (st->resp->body == H1_BODY_LENGTH && (size_t)n > st->resp_left)
			n = (ssize_t)st->resp_left;     /* nghttp2 resets a stream that overruns */
		u_payload_h2(u, p, (size_t)n);
		uh2_take(u->h2, (size_t)n);
		if (iob_used(&d->out) > (d->h2s ? OVL_H2_STREAM_HIGH_WATER : FWD_HIGH_WATER)) {
			u->read_paused = true;
			break;
		}
	}
	u_reads_done(u, false);
}

static void u_process(struct uconn *u)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;
	bool eof = false;

	if (u->h2) {
		u_process_h2(u);
		return;
	}
	for (;;) {
		size_t max = st->resp_started ? FWD_BUF_INIT * 4 : FWD_IN_MAX;
		ssize_t n = io_read(u->io.fd, u->tls, &u->in, &u->in_len, &u->in_cap, max, NULL);

		if (n == -2 || n == -3)
			break;
		if (n == 0) {
			eof = true;
			break;
		}
		if (n < 0) {
			u_read_failed(u);
			return;
		}
		if (!st->resp_started) {
			int rc = u_head(u);

			if (rc > 0)
				continue;
			if (rc < 0)
				return;
		}
		if (u_forward_body(u) < 0)
			return;
		if (st->resp_done)
			break;
		if (iob_used(&d->out) > (d->h2s ? OVL_H2_STREAM_HIGH_WATER : FWD_HIGH_WATER)) {
			u->read_paused = true;
			u_update_interest(u, iob_used(&u->out) > 0);
			break;
		}
	}
	u_reads_done(u, eof);
}

const struct fwd_up_ops fwd_up_h1_ops = {
	.close = u_close,
	.release = u_release,
	.send_head = st_send_head,
	.forward_body = d_forward_body,
	.connected = u_on_connected,
	.on_io = u_on_io,
	.on_timer = u_on_timer,
	.on_task = u_on_task,
};
