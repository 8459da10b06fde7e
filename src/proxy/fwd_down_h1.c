/* fwd_down_h1: the HTTP/1.1 downstream codec of the request path (part of the fwd module,
 * see fwd_int.h).
 *
 * A downstream connection (struct dconn) from fwd_accept: the TLS handshake (d_handshake,
 * or a peek at the ClientHello first, d_peek), then d_on_io -> d_read -> d_process: h1_parse
 * of the head, then the exchange core (fwd_core.c st_begin). Responses are written to the
 * connection's output (st_send_resp_head, st_local_reply) and flushed by d_flush; on a
 * virtual connection (an HTTP/2 stream, d->h2s) an upstream's response head goes out as
 * HEADERS built from its parsed head (st_send_resp_head_h2 -> h2d_send_head), and d_flush
 * hands the rest of the output to fwd_h2.c (h2d_pull) instead of a socket. The files below
 * this one reach these functions through fwd_down_h1_ops (fwd_int.h), which fwd_init
 * installs with the upstream codec's table and fwd_h2.c's sink.
 *
 * One request at a time per downstream connection (HTTP/1.1 pipelining is answered in
 * order by simply not parsing the next head until this one is done).
 *
 * Lifetime: a downstream connection is freed only at a settle point (d_settle), at the end
 * of a top-level event handler, never in the middle of a call chain; code deep inside
 * marks it dead or closing instead. Work that must happen "after this event" (resuming a
 * paused read, which may find bytes OpenSSL already buffered; the next pipelined request)
 * is posted as the connection's deferred task (loop.h: run after this batch of events, O(1))
 * rather than done by recursion. Also the worker's entry points over its connections:
 * fwd_evict (pressure), fwd_drain, fwd_close_all. */
#include "proxy/fwd_down_h1.h"
#include "proxy/fwd_vconn.h"
#include "proxy/fwd_sidecar.h"
#include "proxy/fwd_up_h1.h"
#include "proxy/fwd_conn.h"
#include "proxy/fwd_core.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/fwd_mirror.h"
#include "proxy/worker.h"
#include "proxy/fwd.h"
#include "proxy/cbreak.h"
#include "proxy/fwd_h2.h"
#include "proxy/l4fwd.h"
#include "proxy/linger.h"
#include "proxy/up_h2.h"
#include "proxy/pool.h"
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

static void d_read(struct dconn *d);
static void d_peek(struct dconn *d);
static void d_handshake(struct dconn *d);
static void st_local_reply(struct stream *st, int code, unsigned flags, const char *details,
                           const char *body);
static void st_send_resp_head(struct stream *st);

/* ---- downstream output ---- */

static void d_update_interest(struct dconn *d, bool want_write)
{
	unsigned in = (d->read_paused ? 0 : LOOP_READ) | (want_write ? LOOP_WRITE : 0);

	if (d->mirror)   /* a shadow has no socket */
		return;
	loop_io_mod(d->w->loop, &d->io, in);
}

static void d_send(struct dconn *d, const void *p, size_t n)
{
	/* On an HTTP/2 stream every head goes out as HEADERS (st_send_resp_head_h2,
	 * st_reply_head): what is sent before the response started can only be an interim
	 * 1xx head the upstream codec passes on (u_head), which HTTP/2 clients do not get
	 * (as before: the gateway answers no Expect: 100-continue itself either). */
	if ((d->h2s && !(d->st && d->st->resp_started)) || d->mirror)
		return;   /* a shadow's response is discarded */
	iob_append(&d->out, p, n);
}

/* Flushes the downstream output; closes on error or when closing and drained. */
void d_flush(struct dconn *d)
{
	bool blocked;

	if (d->dead)
		return;
	if (d->h2s) {
		/* Called with nothing buffered too: fwd_h2.c may hold response bytes. */
		ssize_t n = h2d_pull(d->h2s, d->out.p ? d->out.p + d->out.off : "",
		                     iob_used(&d->out));

		if (n < 0) {
			d->st->flags |= ALOG_F_DC;
			d->st->details = d->st->details ? d->st->details : "downstream_remote_disconnect";
			d->dead = true;
			return;
		}
		d->out.off += (size_t)n;
		if (d->out.off == d->out.len)
			d->out.off = d->out.len = 0;
		blocked = iob_used(&d->out) > 0;
	} else if (d->mirror) {
		d->out.off = d->out.len = 0;   /* a shadow's response is discarded */
		blocked = false;
	} else if (io_write(d->io.fd, d->tls, &d->out, &blocked) < 0) {
		if (d->st && d->st->active) {
			d->st->flags |= ALOG_F_DC;
			d->st->details = d->st->details ? d->st->details : "downstream_remote_disconnect";
		}
		d->dead = true;
		return;
	}
	d_update_interest(d, blocked);
	/* Back-pressure: resume the upstream once the client has taken what we had. */
	if (!blocked && d->st && d->st->active && d->st->u && d->st->u->read_paused) {
		struct uconn *u = d->st->u;

		u->read_paused = false;
		if (!u->h2)
			loop_io_mod(d->w->loop, &u->io, LOOP_READ);
		loop_task_post(d->w->loop, &u->task);
	}
}

_Static_assert(FWD_REPLY_FIELDS <= H2D_REPLY_FIELDS, "reply fields fit h2d_send_reply");

/* The head of a response made here (fwd_down_ops.reply_head): HTTP/1.1 text, or on an
 * HTTP/2 stream's virtual connection HEADERS built from the same fields
 * (h2d_send_reply), not text for h2d_pull to parse again. */
static void st_reply_head(struct stream *st, int code, const struct fwd_field *f, size_t n,
                          size_t blen)
{
	struct dconn *d = st->d;
	struct iobuf *o = &d->out;
	/* A reply made for the route carries its response operations and CORS fields. */
	struct rcors_edit es;
	const struct rcors_edit *e = rcors_edit_for(st, &es);

	st->resp_started = true;
	if (d->h2s) {
		struct h2_header h[FWD_REPLY_FIELDS + RHDR_MAX_EMIT + RCORS_MAX_FIELDS];
		size_t k = 0;

		for (size_t i = 0; i < n; i++) {
			if (rcors_dropped(e, f[i].name, strlen(f[i].name)))
				continue;
			h[k].name = (struct h2_str){ f[i].name, strlen(f[i].name) };
			h[k++].value = (struct h2_str){ f[i].value, strlen(f[i].value) };
		}
		rcors_h2(h, &k, sizeof(h) / sizeof(h[0]), e);
		if (!d->dead && h2d_send_reply(d->h2s, code, h, k, blen,
		                               st->req.method_id == H1_M_HEAD || blen == 0) < 0) {
			st->flags |= ALOG_F_DC;
			d->dead = true;
		}
		return;
	}
	IOB_LIT(o, "HTTP/1.1 ");
	iob_addu(o, (uint64_t)code);
	IOB_LIT(o, " ");
	iob_adds(o, h1_status_reason(code));
	IOB_LIT(o, "\r\n");
	iob_field_u(o, "content-length", blen);
	for (size_t i = 0; i < n; i++)
		if (!rcors_dropped(e, f[i].name, strlen(f[i].name)))
			iob_field_s(o, f[i].name, f[i].value);
	rcors_write_h1(o, e);
	if (st->resp_close)
		IOB_LIT(o, "connection: close\r\n");
	IOB_LIT(o, "\r\n");
}

/* A response made here (no upstream response): 404 NR, 503 UF, 504 UT... */
static void st_local_reply(struct stream *st, int code, unsigned flags, const char *details,
                           const char *body)
{
	struct dconn *d = st->d;
	size_t blen = body ? strlen(body) : 0;
	struct fwd_field f[2] = { { "content-type", "text/plain" }, { "x-request-id", st->reqid } };

	st->code = code;
	st->flags |= flags;
	st->details = details;
	/* "connection: close" said is connection closed: a client that asked for it may wait
	 * for the close to end its read. */
	if (!st->req.keep_alive)
		st->resp_close = true;
	if (st->resp_started) {
		/* Too late for a status: the client sees the connection end early. */
		st->resp_close = true;
		st_finish(st);
		return;
	}
	st_reply_head(st, code, f, 2, blen);
	if (blen && st->req.method_id != H1_M_HEAD)
		d_send(d, body, blen);
	st->bytes_out = blen;
	st->resp_done = true;
	/* The request body was not read: the connection cannot carry another request unless
	 * the body is complete. */
	if (!st->req_done)
		st->resp_close = true;
	st_finish(st);
}

/* ---- response ---- */

/* st_send_resp_head on an HTTP/2 stream's virtual connection: the head goes out as
 * HEADERS built from the upstream's parsed head (h2d_send_head), not as text for h2d_pull
 * to parse again; the body follows through d->out as for HTTP/1.1. */
static void st_send_resp_head_h2(struct stream *st)
{
	struct dconn *d = st->d;
	struct uconn *u = st->u;
	struct rcors_edit es;

	if (st->resp->body == H1_BODY_UNTIL_CLOSE || !st->req.keep_alive || d->w->draining)
		st->resp_close = true;
	st->resp_started = true;
	if (d->dead)
		return;
	if (h2d_send_head(d->h2s, st->resp, u->in + u->in_pos, st->ust,
	                  rcors_edit_for(st, &es)) < 0) {
		/* As d_flush does when the stream is gone. */
		st->flags |= ALOG_F_DC;
		st->details = st->details ? st->details : "downstream_remote_disconnect";
		d->dead = true;
	}
}

static void st_send_resp_head(struct stream *st)
{
	struct dconn *d = st->d;
	struct uconn *u = st->u;
	const struct h1_msg *m = st->resp;
	const char *b = u->in + u->in_pos;
	struct iobuf *o = &d->out;
	struct rcors_edit es;
	const struct rcors_edit *e;

	if (d->h2s) {
		st_send_resp_head_h2(st);
		return;
	}
	e = rcors_edit_for(st, &es);
	IOB_LIT(o, "HTTP/1.1 ");
	iob_addu(o, (uint64_t)m->status);
	IOB_LIT(o, " ");
	iob_append(o, b + m->reason.off, m->reason.len);
	IOB_LIT(o, "\r\n");
	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *hd = &m->headers[i];

		if (hd->flags & H1_HF_DROP)
			continue;
		if (rcors_dropped(e, b + hd->name.off, hd->name.len))
			continue;
		/* Ours replaces an upstream proxy's (a sidecar in front of a gateway), as
		 * Envoy's router sets the header rather than adding a second one. */
		if (st->ust >= 0 &&
		    h1_name_eq(b + hd->name.off, hd->name.len, "x-envoy-upstream-service-time", 29))
			continue;
		iob_field(o, b + hd->name.off, hd->name.len, b + hd->value.off, hd->value.len);
	}
	if (m->body == H1_BODY_LENGTH ||
	    (m->body == H1_BODY_NONE && h1_header_find(m, b, "content-length", 0) >= 0)) {
		iob_field_u(o, "content-length", m->content_length);
	} else if (m->body == H1_BODY_CHUNKED && st->req.version_minor == 0) {
		/* An HTTP/1.0 client knows no chunked coding (RFC 9112 section 6.1): the payload
		 * goes unframed and the close ends it, as Envoy does. */
		st->resp_dechunk = st->resp_close = true;
	} else if (m->body == H1_BODY_CHUNKED) {
		IOB_LIT(o, "transfer-encoding: chunked\r\n");
	} else if (m->body == H1_BODY_UNTIL_CLOSE) {
		st->resp_close = true;
	}
	if (st->ust >= 0 && !rcors_dropped(e, "x-envoy-upstream-service-time", 29))
		iob_field_u(o, "x-envoy-upstream-service-time", (uint64_t)st->ust);
	rcors_write_h1(o, e);
	if (st->set_cookie)   /* consistentHash's made-up cookie (fwd_hash.c) */
		iob_field(o, "set-cookie", 10, st->set_cookie, strlen(st->set_cookie));
	if (!st->req.keep_alive || d->w->draining)
		st->resp_close = true;
	if (st->resp_close)
		IOB_LIT(o, "connection: close\r\n");
	else if (st->req.version_minor == 0)
		IOB_LIT(o, "connection: keep-alive\r\n");
	IOB_LIT(o, "\r\n");
	st->resp_started = true;
}

/* ---- downstream ---- */

/* A virtual connection's struct, kept for the worker's next HTTP/2 stream (no allocation
 * per stream in the steady state), up to FWD_VC_FREE_MAX of them. */
static void vconn_put(struct worker *w, struct dconn *v)
{
	if (w->nvc_free >= FWD_VC_FREE_MAX) {
		free(v);
		return;
	}
	v->next = w->vc_free;
	w->vc_free = v;
	w->nvc_free++;
}

/* d goes away with its request st in progress: the client went away mid-request (logged
 * DC); its upstream connection and DNS query go too. */
static void st_abandon(struct dconn *d, struct stream *st)
{
	struct worker *w = d->w;

	/* The client went away mid-request. */
	if (!st->resp_started)
		st->code = 0;
	st->flags |= ALOG_F_DC;
	if (!st->details)
		st->details = "downstream_remote_disconnect";
	st->resp_close = true;
	if (st->u) {
		struct uconn *u = st->u;

		st->u = NULL;
		u->st = NULL;
		u_close(u);
	}
	if (st->dnsq) {
		dns_cancel(st->dnsq);
		st->dnsq = NULL;
	}
	st_cb_end(st);
	d->closing = true;
	st->active = false;
	loop_timer_cancel(w->loop, &st->timeout);
	STAT_DEC(w->st.rq_active);
	st_log(st);
	if (st->snap)
		snap_unref(st->snap);
	st->snap = NULL;
}

/* What a downstream connection holds whether it is a socket or an HTTP/2 stream's
 * virtual connection: given back by both ends of d_close. */
static void d_release(struct dconn *d)
{
	if (d->snap)
		snap_unref(d->snap);
	buf_release(d->in, d->in_cap);
	if (!d->h2s) {   /* a stream's virtual connection borrows its connection's */
		free(d->sni);
		free(d->peer_id);
	}
	iob_free(&d->out);
}

void d_close(struct dconn *d)
{
	struct worker *w = d->w;
	struct stream *st = d->st;
	bool complete = st && !st->active && st->resp_done && iob_used(&d->out) == 0 && !d->dead;

	if (st && st->active)
		st_abandon(d, st);
	loop_timer_cancel(w->loop, &d->timer);
	loop_task_cancel(w->loop, &d->task);
	loop_timer_cancel(w->loop, &d->peek_retry);
	st_put(d);
	if (d->mirror) {   /* a shadow (fwd_mirror.c): no socket, not in the list */
		fmir_gone(d);
		return;
	}
	if (d->h2s) {
		/* A virtual connection: no socket, not in the worker's list. */
		h2d_vconn_gone(d->h2s, complete);
		d_release(d);
		vconn_put(w, d);
		return;
	}
	/* An HTTP/2 client sends without waiting for answers: it may still be sending when we
	 * end the connection (linger.h). */
	bool may_send = d->h2c != NULL;

	if (d->h2c) {
		struct h2d *h = d->h2c;

		d->h2c = NULL;
		h2d_free(h);
	}
	loop_io_del(w->loop, &d->io);
	if (d->tls) {
		tls_shutdown(d->tls);
		tls_conn_free(d->tls);
	}
	if (d->io.fd >= 0)            /* -1: handed over to a tunnel */
		linger_close(w, d->io.fd, may_send);
	if (d->prev)
		d->prev->next = d->next;
	else
		w->dconns = d->next;
	if (d->next)
		d->next->prev = d->prev;
	d_release(d);
	w->nconns--;
	STAT_DEC(w->st.dcx_active);
	free(d);
}

void d_on_timer(struct loop *loop, struct loop_timer *t)
{
	struct dconn *d = container_of(t, struct dconn, timer);

	(void)loop;
	if (d->sniffing && d->redirected)
		d_tcp_handoff(d, NULL, SNI_NOT_TLS);   /* silent (server-first) or unrecognised */
	else if (!d_busy(d))
		d->dead = true;   /* header read timeout or keep-alive idle */
	d_settle(d);
}

void d_on_peek_retry(struct loop *loop, struct loop_timer *t)
{
	struct dconn *d = container_of(t, struct dconn, peek_retry);

	(void)loop;
	if (!d->dead)
		d_peek(d);
	d_settle(d);
}

void d_on_task(struct loop *loop, struct loop_task *t)
{
	struct dconn *d = container_of(t, struct dconn, task);

	(void)loop;
	if (d->hs_done && !d->dead) {
		/* A stream's virtual connection has its one request from fwd_vconn.c. */
		if (!d_busy(d) && !d->h2s)
			d_process(d);
		/* Nothing to read if the last read emptied the socket: the level-triggered loop
		 * announces what arrives after it (a syscall per request saved at low rates). */
		if (!d->dead && !d->read_paused && !d->rd_drained)
			d_read(d);
	}
	d_settle(d);
}

/* The one place a downstream connection is freed: when it is dead, or closing with
 * nothing left to send. */
void d_settle(struct dconn *d)
{
	if (d->dead || (d->closing && !d_busy(d) && iob_used(&d->out) == 0))
		d_close(d);
}

/* Finds the listener of the connection in snapshot s (by port). */
static const struct snap_listener *snap_listener_for(const struct snap *s, uint16_t port)
{
	for (size_t i = 0; i < s->nlisteners; i++)
		if (s->listeners[i].port == port)
			return &s->listeners[i];
	return NULL;
}

/* d has no request in progress after d_process: the timer for the next head (whole within
 * header_timeout_ms of its first byte), or idle keep-alive without buffers. */
static void d_wait_head(struct dconn *d)
{
	struct worker *w = d->w;
	uint64_t now = loop_now_ms(w->loop);

	if (d->in_len > 0) {
		/* A head must be whole within header_timeout_ms of its first byte. Re-arming
		 * the full timeout on every partial read would let a client sending a byte a
		 * minute (slowloris) hold the connection for weeks. */
		if (!d->head_deadline)
			d->head_deadline = now + (uint64_t)w->proxy->header_timeout_ms;
		loop_timer_arm(w->loop, &d->timer,
		               d->head_deadline > now ? d->head_deadline - now : 0);
	} else {
		d->head_deadline = 0;
		/* An idle keep-alive connection keeps no buffers, as nginx does: they are
		 * 16 KiB each way, which for 10,000 idle connections is 300 MiB of memory
		 * doing nothing. The next read allocates again. */
		buf_release(d->in, d->in_cap);
		d->in = NULL;
		d->in_cap = d->in_len = d->in_pos = 0;
		if (iob_used(&d->out) == 0)
			iob_free(&d->out);
		if (!d->h2s)
			st_put(d);
		d->quiet_ms = now;
		loop_timer_arm(w->loop, &d->timer, (uint64_t)w->proxy->idle_timeout_ms);
	}
}

void d_start(struct dconn *d, int status, const char *reason, const char *details)
{
	struct worker *w = d->w;
	struct stream *st = d->st;

	/* A new request: adopt the worker's newest snapshot for it. */
	if (d->snap != w->snap) {
		const struct snap_listener *nl = snap_listener_for(w->snap, d->lst ? d->lst->port : 0);

		snap_unref(d->snap);
		d->snap = snap_ref(w->snap);
		d->lst = nl;
	}
	st_reset(st);
	st->active = true;
	st->code = 0;
	st->ust = -1;
	st->start_wall_ms = wall_ms();
	st->start_ms = loop_now_ms(w->loop);
	st->snap = snap_ref(d->snap);
	loop_timer_cancel(w->loop, &d->timer);
	STAT_INC(w->st.rq_active);
	d->nreq++;
	if (status) {
		/* Answer what the codec says and close: the framing is unknowable. An HTTP/2
		 * head's method is known (h2_request_msg sets it first): a HEAD gets no body. */
		int method_id = d->h2s ? st->req.method_id : H1_M_OTHER;

		memset(&st->req, 0, sizeof(st->req));
		st->req.method_id = method_id;
		st->req.host_idx = -1;
		/* Logged as the codec's protocol, as Envoy does ("- - HTTP/1.1"): the
		 * request's own version is not known for sure. */
		st->req.version_minor = 1;
		st->req_done = true;
		st->resp_close = true;
		snprintf(st->reqid, sizeof(st->reqid), "-");
		st_local_reply(st, status, ALOG_F_DPE, details, reason);
		return;
	}
	d->in_pos = st->req.head_len;
	d->head_deadline = 0;
	st_begin(d);   /* forwards the body bytes already read once connected */
}

/* Parses and starts requests while the connection has complete heads. */
void d_process(struct dconn *d)
{
	struct stream *st;

	if (d->sniffing && !d->dead && d_sniff(d) != 0)
		return;
	if (!d->st && d->in_len > 0)
		d->st = st_get(d);
	st = d->st;
	d->in_process = true;
	while (st && !st->active && !d->closing && !d->dead && d->in_len > 0) {
		int rc;

		rc = h1_parse(&st->rp, d->in, d->in_len, &st->req);
		if (rc == H1_AGAIN) {
			if (d->in_len >= FWD_IN_MAX) {
				d->closing = true;
			}
			break;
		}
		if (rc == H1_ERROR) {
			d_start(d, st->rp.status, st->rp.reason, "http1.codec_error");
			break;
		}
		h1_parser_init(&st->rp, true, 0);
		d_start(d, 0, NULL, NULL);
	}
	d->in_process = false;
	if (!d_busy(d) && !d->closing && !d->dead)
		d_wait_head(d);
}

static void d_read(struct dconn *d)
{
	struct stream *st = d->st;

	if (d->h2s) {
		/* Fed by fwd_h2.c: "reading" is forwarding body bytes it already gave us. */
		if (st->active && !st->req_done && st->u && !d->read_paused &&
		    d->in_pos < d->in_len)
			d_forward_body(d);
		return;
	}
	if (d->h2c)
		return;

	d->rd_drained = false;
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n;
		bool drained;

		if (d->read_paused || d->dead || d->h2c)
			return;
		n = io_read(d->io.fd, d->tls, &d->in, &d->in_len, &d->in_cap, FWD_IN_MAX, &drained);
		if (n == -2) {
			d->rd_drained = !d->tls || tls_pending(d->tls) == 0;
			return;
		}
		if (n == -3) {
			/* Input full: a head this large was already refused by the parser (431), so
			 * this is body data waiting for the upstream: stop reading until it drains. */
			d->read_paused = true;
			d_update_interest(d, iob_used(&d->out) > 0);
			return;
		}
		/* d_process may have released the stream (idle): look again each round. */
		st = d->st;
		if (n <= 0) {
			if (st && st->active) {
				st->flags |= ALOG_F_DC;
				st->details = "downstream_remote_disconnect";
			}
			d->dead = true;
			return;
		}
		if (st && st->active && !st->req_done) {
			if (st->u && d_forward_body(d) < 0)
				return;
		} else if (!st || !st->active) {
			d_process(d);
		}
		/* The socket is empty: the read that would find EAGAIN is a syscall per
		 * request saved. */
		if (drained) {
			d->rd_drained = true;
			return;
		}
	}
	/* Fairness: after a burst, let the loop serve others. OpenSSL may hold decrypted
	 * bytes that no socket event will announce, so come back on the next iteration. */
	loop_task_post(d->w->loop, &d->task);
}

/* How long a peek waits before looking again when the ClientHello is not whole yet (the
 * bytes stay in the socket, so a level-triggered read interest would spin). */
#define D_PEEK_RETRY_MS 5

/* A port with PASSTHROUGH and terminating servers: the ClientHello is read without being
 * consumed; a name a PASSTHROUGH server wins goes by tls: routes (the tunnel then reads
 * the hello itself), any other is handed to the TLS server (whose SNI dispatch chooses
 * among the terminating servers, and refuses what none has). */
static void d_peek(struct dconn *d)
{
	unsigned char buf[SNI_HELLO_MAX];
	char sni[256];
	enum sni_status sst;
	ssize_t n = recv(d->io.fd, buf, sizeof(buf), MSG_PEEK);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		d->dead = true;
		return;
	}
	sst = sni_read(buf, (size_t)n, sni, sizeof(sni));
	if (sst == SNI_NEED_MORE && (size_t)n < sizeof(buf)) {
		loop_io_mod(d->w->loop, &d->io, 0);
		loop_timer_arm(d->w->loop, &d->peek_retry, D_PEEK_RETRY_MS);
		return;
	}
	d->peek = false;
	loop_io_mod(d->w->loop, &d->io, LOOP_READ);
	if ((sst == SNI_OK || sst == SNI_NO_NAME) &&
	    l4_peek_passthrough(d->lst, sst == SNI_OK ? sni : NULL)) {
		d_gw_sni_handoff(d, sni, sst);
		return;
	}
	d->tls = tls_server_new(d->lst->ctx, d->io.fd);
	d_handshake(d);
}

static void d_handshake(struct dconn *d)
{
	int rc = tls_handshake(d->tls);
	const char *sni;

	if (tls_wait(d->w->loop, &d->io, rc))
		return;
	if (rc < 0) {
		STAT_INC(d->w->st.dcx_tls_fail);
		log_debug("fwd", "downstream TLS from %s failed: %s", d->remote_s, tls_conn_error(d->tls));
		d->dead = true;
		return;
	}
	d->hs_done = true;
	sni = tls_conn_sni(d->tls);
	if (sni)
		d->sni = xstrdup(sni);
	{
		/* The mesh peer (ISTIO_MUTUAL): its SPIFFE identity was checked against the
		 * server's subjectAltNames during the handshake; the access log format has no
		 * field for it, so it goes to the debug log and a counter, and to the
		 * AuthorizationPolicy evaluation as the principal. */
		char id[512];

		if (tls_peer_uri_san(d->tls, id, sizeof(id))) {
			d->peer_id = xstrdup(id);
			STAT_INC(d->w->st.dcx_peer_identity);
			log_debug("fwd", "downstream %s: peer identity %s (SNI %s)", d->remote_s, id,
			          d->sni ? d->sni : "-");
		}
	}
	/* A protocol TLS server: the bytes inside go by tls:/tcp: routes (l4fwd.c). */
	if (d->lst && d->lst->l4 && d->snap && l4_term_takes(d->lst, d->sni)) {
		loop_io_del(d->w->loop, &d->io);
		if (l4_term_handoff(d->w, d->snap, d->lst, d->tls, d->io.fd, d->sni, &d->local,
		                    &d->remote, d->local_s, d->remote_s, d_principal(d),
		                    d->accept_wall_ms, d->accept_ms) == 0) {
			d->io.fd = -1;
			d->tls = NULL;
		}
		d->dead = true;
		return;
	}
	{
		const char *alpn = tls_conn_alpn(d->tls);

		if (alpn && strcmp(alpn, "h2") == 0) {
			loop_timer_cancel(d->w->loop, &d->timer);
			d->h2c = h2d_new(d->w, d, &d->io, d->tls);
			if (!d->h2c) {
				d->dead = true;
				return;
			}
			if (h2d_on_io(d->h2c, LOOP_READ | LOOP_WRITE) < 0)
				d->dead = true;
			return;
		}
	}
	loop_io_mod(d->w->loop, &d->io, LOOP_READ);
	d_read(d);
}

/* First bytes on a plain listener that also takes the mesh's mutual TLS (snap.h
 * mesh_ctx): a TLS handshake record starts the ISTIO_MUTUAL handshake, anything else is
 * plain HTTP. Only peeked, so either reader starts at the first byte. */
static void d_mesh_sniff(struct dconn *d)
{
	unsigned char c;
	ssize_t n = recv(d->io.fd, &c, 1, MSG_PEEK);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	d->mesh_sniff = false;
	if (n == 1 && c == 0x16 && d->lst && d->lst->mesh_ctx) {
		d->tls = tls_server_new(d->lst->mesh_ctx, d->io.fd);
		d->hs_done = false;
		d_handshake(d);
		return;
	}
	d_read(d);
}

void d_on_io(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct dconn *d = container_of(io, struct dconn, io);

	(void)loop;
	if (d->h2c) {
		if (h2d_on_io(d->h2c, ev) < 0)
			d->dead = true;
	} else if (d->peek) {
		d_peek(d);
	} else if (!d->hs_done) {
		d_handshake(d);
	} else if (d->mesh_sniff) {
		d_mesh_sniff(d);
	} else {
		if (ev & LOOP_WRITE)
			d_flush(d);
		if ((ev & (LOOP_READ | LOOP_ERROR)) && !d->read_paused)
			d_read(d);
	}
	d_settle(d);
}

void fwd_accept(struct worker *w, struct wlistener *l, int fd, const struct sock_addr *peer)
{
	struct dconn *d = xcalloc(1, sizeof(*d));
	const struct snap_listener *sl = l->sidecar_outbound ? NULL : snap_listener_for(w->snap, l->port);
	uint64_t first_timeout = (uint64_t)w->proxy->header_timeout_ms;
	bool refuse = false;

	if (sl && sl->l4_mode == SNAP_L4_TCP) {
		/* A gateway TCP port: tcp: routes, from the first byte (l4fwd.c). */
		free(d);
		l4_accept_tcp(w, sl, fd, peer);
		return;
	}
	d->w = w;
	d->snap = snap_ref(w->snap);
	d->lst = sl;
	d->remote = *peer;
	sock_addr_str(peer, d->remote_s, sizeof(d->remote_s));
	sock_addr_ip_str(peer, d->remote_ip, sizeof(d->remote_ip));
	if (sock_accepted_local(fd, &l->addr, &d->local) == 0)
		sock_addr_str(&d->local, d->local_s, sizeof(d->local_s));
	d->quiet_ms = loop_now_ms(w->loop);
	if (sl && (sl->l4_mode == SNAP_L4_SNI || sl->l4_mode == SNAP_L4_PEEK)) {
		/* A gateway PASSTHROUGH port: routed on the ClientHello's SNI (d_sniff); one
		 * with terminating servers too: peeked at first (d_peek). */
		d->sniffing = sl->l4_mode == SNAP_L4_SNI;
		d->peek = sl->l4_mode == SNAP_L4_PEEK;
		d->accept_wall_ms = wall_ms();
		d->accept_ms = loop_now_ms(w->loop);
	}
	if (l->sidecar_outbound) {
		/* Redirected by iptables: conntrack knows where the connection was going (and
		 * the access log shows that as the downstream local address, as Envoy's
		 * original_dst listener filter does). Made to the capture port directly: no
		 * original destination; an HTTP proxy client. */
		d->sidecar = true;
		d->sniffing = true;
		d->accept_wall_ms = wall_ms();
		d->accept_ms = loop_now_ms(w->loop);
		if (sock_original_dst_at(fd, &d->local, &d->odst) == 0 &&
		    !sock_addr_equal(&d->odst, &d->local) &&
		    !sock_addr_equal(&d->odst, &l->addr)) {
			d->redirected = true;
			sock_addr_str(&d->odst, d->local_s, sizeof(d->local_s));
			first_timeout = SIDECAR_DETECT_MS;
			if (proxy_is_self(w->proxy, &d->odst)) {
				log_warn("fwd", "%s: refused: redirected to %s, this proxy's own "
				         "listener or admin address", d->remote_s, d->local_s);
				refuse = true;
			}
		}
	}
	loop_io_init(&d->io, fd, d_on_io);
	loop_timer_init(&d->timer, d_on_timer);
	loop_task_init(&d->task, d_on_task);
	loop_timer_init(&d->peek_retry, d_on_peek_retry);
	d->hs_done = true;
	/* The listener's context dispatches on SNI to the matching Gateway server's. */
	if (sl && sl->tls && sl->ctx) {
		if (!d->peek)
			d->tls = tls_server_new(sl->ctx, fd);
		d->hs_done = false;
	} else if (sl && sl->mesh_ctx) {
		d->mesh_sniff = true;
	}
	d->next = w->dconns;
	if (d->next)
		d->next->prev = d;
	w->dconns = d;
	w->nconns++;
	STAT_INC(w->st.dcx_total);
	STAT_INC(w->st.dcx_active);
	loop_io_add(w->loop, &d->io, LOOP_READ);
	loop_timer_arm(w->loop, &d->timer, first_timeout);
	if ((!sl && !d->sidecar) || refuse) {
		/* The listener went away with a reload between accept and now, or the
		 * connection was redirected to the proxy itself. */
		d_close(d);
	}
}

/* Fairness under pressure (wl_on_accept, at --max-connections or out of descriptors):
 * room for a new connection is made by closing one that serves nothing, the slowest and
 * idlest first, as Envoy's overload manager and HAProxy's per-source limits do. Candidates
 * are HTTP/1.1 connections with no request in progress (nothing sent yet, a head still
 * incomplete, or idle keep-alive) and nothing left to write. When the newcomer's source
 * holds less than half of this worker's connections, the oldest candidate of another
 * source goes (the one holding most of them, in a flood); otherwise (or with no peer, out
 * of descriptors before accept) only a candidate quiet for FWD_PRESSURE_QUIET_MS, the
 * shorter deadline that pressure sets for incomplete heads and idle connections. */
#define FWD_PRESSURE_QUIET_MS 10000

bool fwd_evict(struct worker *w, const struct sock_addr *peer)
{
	uint64_t now = loop_now_ms(w->loop);
	char ip[SOCK_ADDR_STRLEN] = "";
	struct dconn *other = NULL, *aged = NULL;
	size_t mine = 0, total = 0;

	if (peer)
		sock_addr_ip_str(peer, ip, sizeof(ip));
	for (struct dconn *d = w->dconns; d; d = d->next) {
		bool same = peer && strcmp(d->remote_ip, ip) == 0;

		total++;
		mine += same;
		if (d_busy(d) || d->h2c || d->dead || d->closing || iob_used(&d->out) > 0)
			continue;
		if (!same && (!other || d->quiet_ms < other->quiet_ms))
			other = d;
		if (now - d->quiet_ms >= FWD_PRESSURE_QUIET_MS && (!aged || d->quiet_ms < aged->quiet_ms))
			aged = d;
	}
	if (!(peer && other && mine * 2 < total))
		other = aged;
	if (!other)
		return false;
	log_debug("fwd", "%s: closed (%s for %llu ms) to make room for a new connection",
	          other->remote_s, other->st ? "incomplete request head" : "idle",
	          (unsigned long long)(now - other->quiet_ms));
	STAT_INC(w->st.dcx_evicted);
	d_close(other);
	return true;
}

/* Draining: idle connections close now; busy ones close after their response. */
void fwd_drain(struct worker *w)
{
	struct dconn *d = w->dconns, *next;

	uh2_drain(w->uh2);
	fmir_cancel_all(w);   /* shadows do not hold the drain up */

	for (; d; d = next) {
		next = d->next;
		if (d->h2c)
			h2d_drain(d->h2c);
		else if (!d_busy(d))
			d_close(d);
		else
			d->closing = true;
	}
}

void fwd_close_all(struct worker *w)
{
	fmir_cancel_all(w);
	while (w->dconns)
		d_close(w->dconns);
}

const struct fwd_down_ops fwd_down_h1_ops = {
	.local_reply = st_local_reply,
	.reply_head = st_reply_head,
	.resp_head = st_send_resp_head,
	.send = d_send,
	.flush = d_flush,
	.interest = d_update_interest,
	.settle = d_settle,
};

void fwd_init(void)
{
	fwd_down = &fwd_down_h1_ops;
	fwd_up = &fwd_up_h1_ops;
	h2d_set_sink(&fwd_vconn_sink);
}
