/* fwd_h2: the gateway's HTTP/2 downstream connections (see fwd_h2.h for the design).
 *
 * Event flow: the connection's io events reach h2d_on_io through fwd_down_h1.c's d_on_io;
 * bytes read go to h2_feed, whose callbacks create and feed virtual connections (through
 * the sink, fwd_vconn.c); output is flushed at the end of every event and, for work done
 * from the request path's own handlers (upstream events that produce response bytes), by
 * the connection's deferred task
 * (loop.h, run after the batch of events), because
 * h2_pending_output must not run inside another call chain. */
#include "proxy/fwd_h2.h"
#include "proxy/fwd_hash.h"
#include "proxy/overload.h"
#include "proxy/worker.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define H2D_READ_BUF  16384
#define H2D_ROUNDS    16
#define H2D_CHUNK_FEED 65536    /* bytes per h1_chunked_feed: bounds a held payload */

static const struct h2d_sink *sink;     /* the request path's (fwd_vconn.c), process-wide */

void h2d_set_sink(const struct h2d_sink *k)
{
	sink = k;
}

struct h2d {
	struct worker *w;
	struct dconn *d;                /* the connection (socket, TLS, worker list) */
	struct loop_io *io;             /* d's registered io */
	struct tls_conn *tls;
	struct h2_session *s;
	struct loop_task task;          /* flush after work done outside our own handler */
	struct loop_timer idle;         /* no stream open for idle_timeout_ms: GOAWAY */
	struct loop_timer head;         /* a header block must be whole by then: close */
	unsigned nstreams;              /* streams with a struct h2ds */
	struct h2ds *ds_free;           /* spare stream structs (at most H2D_DS_FREE_MAX) */
	unsigned nds_free;
	struct sbuf hb;                 /* a chunk of request DATA being framed (reused) */
	bool draining;
	bool more;                      /* h2d_on_io stopped with input maybe left in OpenSSL */
};

/* One stream; owned by the session (freed in on_stream_close). */
struct h2ds {
	struct h2d *h;
	int32_t id;
	struct dconn *v;                /* its virtual connection, NULL once gone */
	struct h2ds *next_free;         /* in h2d.ds_free */
	bool chunked_req;               /* request body relayed with chunked framing */
	bool req_trailers;              /* the client's trailers ended that framing */
	size_t unconsumed;              /* DATA bytes not yet released to the peer's window */
	bool h2closed;                  /* on_stream_close ran: no more calls on id */
	/* The response: once its head is submitted (h2d_send_head, h2d_send_reply) only its
	 * body's framing is kept for h2d_pull (a parsed head is 2 KiB; the stream does not
	 * keep it for its lifetime). */
	bool head_done, done;
	uint8_t body;                   /* enum h1_body of the response */
	uint64_t left;
	struct h1_chunked ck;
	/* Chunked: payload the decoder handed out that the send queue did not take yet. */
	char *hold;
	size_t hold_off, hold_len;
};

static void h2d_kick(struct h2d *h)
{
	loop_task_post(h->w->loop, &h->task);
}

/* ---- session callbacks ---- */

/* Stream structs and the head buffer are reused for the connection's next streams: no
 * allocation per request in the steady state. */
#define H2D_DS_FREE_MAX 128

static struct h2ds *ds_get(struct h2d *h)
{
	struct h2ds *ds = h->ds_free;

	if (!ds)
		return xcalloc(1, sizeof(*ds));
	h->ds_free = ds->next_free;
	h->nds_free--;
	memset(ds, 0, sizeof(*ds));
	return ds;
}

static void ds_put(struct h2d *h, struct h2ds *ds)
{
	free(ds->hold);
	if (h->nds_free >= H2D_DS_FREE_MAX) {
		free(ds);
		return;
	}
	ds->hold = NULL;
	ds->next_free = h->ds_free;
	h->ds_free = ds;
	h->nds_free++;
}

static void cb_request(struct h2_session *s, void *user, int32_t id, const struct h2_request *rq)
{
	struct h2d *h = user;
	struct h2ds *ds;

	if (ovl_h2_stream_refused(h->nstreams)) {   /* overload.h: the HTTP/2 stream budget */
		h2_reset_stream(s, id, H2_REFUSED_STREAM);
		return;
	}
	ds = ds_get(h);
	ds->h = h;
	ds->id = id;
	h2_stream_set_user(s, id, ds);
	h->nstreams++;
	loop_timer_cancel(h->w->loop, &h->idle);
	/* The body's framing on the virtual connection, as h2_request_msg sets the head's. */
	ds->chunked_req = !rq->end_stream && rq->content_length < 0;
	ds->v = sink->stream_new(h->d, ds);
	sink->request(ds->v, rq);   /* may end ds->v */
}

static void cb_data(struct h2_session *s, void *user, int32_t id, void *su,
                    const uint8_t *data, size_t len)
{
	struct h2ds *ds = su;
	char line[24];
	int n;

	(void)user;
	if (!ds || !ds->v || len == 0) {
		h2_consume(s, id, len);
		return;
	}
	/* Released to the peer only once the virtual connection has passed its input on
	 * (h2d_vconn_drained): a slow upstream back-pressures the client by its window. */
	ds->unconsumed += len;
	if (!ds->chunked_req) {
		sink->input(ds->v, data, len);
		return;
	}
	n = snprintf(line, sizeof(line), "%zx\r\n", len);
	{
		struct sbuf *b = &ds->h->hb;   /* reused: no allocation per DATA frame */

		sbuf_reset(b);
		sbuf_add(b, line, (size_t)n);
		sbuf_add(b, data, len);
		sbuf_adds(b, "\r\n");
		sink->input(ds->v, b->s, b->len);
	}
}

void h2d_vconn_drained(struct h2ds *ds)
{
	if (ds->unconsumed == 0 || ds->h2closed)
		return;
	h2_consume(ds->h->s, ds->id, ds->unconsumed);
	ds->unconsumed = 0;
	h2d_kick(ds->h);
}

/* The client's trailing HEADERS end a chunked request as its trailer section (up13: the
 * request path passes them to an HTTP/2 upstream, fwd_up_h1.c up_trailers_h2). */
static void cb_req_trailers(struct h2_session *s, void *user, int32_t id, void *su,
                            const struct h2_header *h, size_t n)
{
	struct h2ds *ds = su;
	struct sbuf *b;

	(void)s;
	(void)user;
	(void)id;
	if (!ds || !ds->v || !ds->chunked_req)
		return;
	b = &ds->h->hb;
	sbuf_reset(b);
	sbuf_adds(b, "0\r\n");
	for (size_t i = 0; i < n && n <= H1_MAX_HEADERS; i++) {
		sbuf_add(b, h[i].name.p, h[i].name.len);
		sbuf_adds(b, ": ");
		sbuf_add(b, h[i].value.p, h[i].value.len);
		sbuf_adds(b, "\r\n");
	}
	sbuf_adds(b, "\r\n");
	if (b->len > H1_MAX_TRAILERS) {     /* more than h1_chunked_feed takes: dropped */
		sbuf_reset(b);
		sbuf_adds(b, "0\r\n\r\n");
	}
	ds->req_trailers = true;
	sink->input(ds->v, b->s, b->len);
}

static void cb_end_stream(struct h2_session *s, void *user, int32_t id, void *su)
{
	struct h2ds *ds = su;

	(void)s;
	(void)user;
	(void)id;
	if (ds && ds->v && ds->chunked_req && !ds->req_trailers)
		sink->input(ds->v, "0\r\n\r\n", 5);
}

static void cb_stream_close(struct h2_session *s, void *user, int32_t id, void *su,
                            uint32_t code)
{
	struct h2ds *ds = su;

	(void)s;
	(void)user;
	(void)id;
	(void)code;
	if (!ds)
		return;
	ovl_h2_stream_closed();   /* overload.h */
	ds->h2closed = true;
	if (--ds->h->nstreams == 0 && !ds->h->draining)
		loop_timer_arm(ds->h->w->loop, &ds->h->idle, (uint64_t)ds->h->w->proxy->idle_timeout_ms);
	if (ds->v)
		sink->abort(ds->v);   /* client reset or connection gone: like a disconnect */
	ds_put(ds->h, ds);
}

static void cb_writable(struct h2_session *s, void *user, int32_t id, void *su)
{
	struct h2ds *ds = su;

	(void)s;
	(void)user;
	(void)id;
	if (ds && ds->v)
		sink->writable(ds->v);
}

static const struct h2_callbacks h2d_cb = {
	.on_request = cb_request,
	.on_data = cb_data,
	.on_trailers = cb_req_trailers,
	.on_end_stream = cb_end_stream,
	.on_stream_close = cb_stream_close,
	.on_writable = cb_writable,
};

/* ---- response: heads as HEADERS, the request path's body bytes as DATA ---- */

static ssize_t pull_fail(struct h2ds *ds)
{
	h2_reset_stream(ds->h->s, ds->id, H2_INTERNAL_ERROR);
	ds->done = true;
	h2d_kick(ds->h);
	return -1;
}

/* The response head went out: what follows on the virtual connection is its body, framed
 * as body says (enum h1_body; left: its content-length); end: the stream ended with it. */
static void head_sent(struct h2ds *ds, int body, uint64_t left, bool end)
{
	ds->head_done = true;
	ds->body = (uint8_t)body;
	ds->left = left;
	if (body == H1_BODY_CHUNKED)
		h1_chunked_init(&ds->ck);
	if (end)
		ds->done = true;
}

int h2d_send_reply(struct h2ds *ds, int status, const struct h2_header *h, size_t n,
                   uint64_t body_len, bool end)
{
	struct h2_header f[H2D_REPLY_FIELDS + 1];
	char cl[24];
	struct h2_response rs = { .status = status, .headers = f, .nheaders = n + 1,
		                  .content_length = -1, .end_stream = end };

	if (ds->h2closed || ds->head_done || n > H2D_REPLY_FIELDS)
		return -1;
	f[0].name = (struct h2_str){ "content-length", 14 };
	f[0].value = (struct h2_str){ cl, (size_t)snprintf(cl, sizeof(cl), "%llu",
	                                                   (unsigned long long)body_len) };
	memcpy(f + 1, h, n * sizeof(*h));
	if (h2_submit_response(ds->h->s, ds->id, &rs) < 0) {
		pull_fail(ds);
		return -1;
	}
	head_sent(ds, end ? H1_BODY_NONE : H1_BODY_LENGTH, body_len, end);
	h2d_kick(ds->h);
	return 0;
}

int h2d_send_head(struct h2ds *ds, const struct h1_msg *m, const char *buf, int64_t ust,
                  const struct rcors_edit *e)
{
	struct h2_from_h1 c;
	struct h2_header big[H1_MAX_HEADERS + 3 + RHDR_MAX_EMIT + RCORS_MAX_FIELDS];
	char ustbuf[24];
	size_t n = 0;
	const char *sc;

	if (ds->h2closed || ds->head_done)
		return -1;
	memset(&c, 0, sizeof(c));
	if (h2_response_from_h1(m, buf, &c) < 0) {
		pull_fail(ds);
		return -1;
	}
	if (e) {
		/* The route's response operations and CORS (route_cors.h): the kept fields, ours,
		 * theirs. */
		for (size_t i = 0; i < c.rs.nheaders; i++)
			if (!rcors_dropped(e, c.rs.headers[i].name.p, c.rs.headers[i].name.len) &&
			    !(ust >= 0 && h1_name_eq(c.rs.headers[i].name.p, c.rs.headers[i].name.len,
			                             "x-envoy-upstream-service-time", 29)))
				big[n++] = c.rs.headers[i];
		if (ust >= 0 && !rcors_dropped(e, "x-envoy-upstream-service-time", 29))
			big[n++] = (struct h2_header){
				{ "x-envoy-upstream-service-time", 29 },
				{ ustbuf, (size_t)snprintf(ustbuf, sizeof(ustbuf), "%lld", (long long)ust) } };
		rcors_h2(big, &n, sizeof(big) / sizeof(big[0]), e);
		c.rs.headers = big;
		c.rs.nheaders = n;
	} else if (ust >= 0) {
		/* Ours replaces an upstream proxy's, as for HTTP/1.1 (st_send_resp_head). */
		for (size_t i = 0; i < c.rs.nheaders; i++)
			if (!h1_name_eq(c.hdrs[i].name.p, c.hdrs[i].name.len,
			                "x-envoy-upstream-service-time", 29))
				c.hdrs[n++] = c.hdrs[i];
		c.hdrs[n].name = (struct h2_str){ "x-envoy-upstream-service-time", 29 };
		c.hdrs[n].value.p = ustbuf;
		c.hdrs[n].value.len = (size_t)snprintf(ustbuf, sizeof(ustbuf), "%lld", (long long)ust);
		c.rs.nheaders = n + 1;
	}
	if ((sc = fwd_hash_set_cookie(ds->v)) && c.rs.nheaders < ARRAY_SIZE(c.hdrs))
		c.hdrs[c.rs.nheaders++] = (struct h2_header){ .name = { "set-cookie", 10 },
		                                              .value = { sc, strlen(sc) } };
	if (h2_submit_response(ds->h->s, ds->id, &c.rs) < 0) {
		h2_from_h1_fini(&c);
		pull_fail(ds);
		return -1;
	}
	h2_from_h1_fini(&c);
	head_sent(ds, m->body, m->content_length, c.rs.end_stream);
	h2d_kick(ds->h);
	return 0;
}

/* Ends the response at the end of its chunked body: with the trailer section's fields
 * (b[0 .. len), chunked_relay passed only those fit to pass) as HTTP/2 trailers, or with an empty
 * DATA frame when there are none. Returns 0 or -1. */
static int end_with_trailers(struct h2ds *ds, const char *b, size_t len)
{
	struct h1_header f[H1_MAX_HEADERS];
	struct h2_header h[H1_MAX_HEADERS];
	unsigned n = 0;

	if (len > 2 && h1_parse_trailers(b, len, f, H1_MAX_HEADERS, &n) < 0)
		return -1;
	if (n == 0)
		return h2_send_data(ds->h->s, ds->id, "", 0, true) < 0 ? -1 : 0;
	for (unsigned i = 0; i < n; i++) {
		h[i].name.p = b + f[i].name.off;
		h[i].name.len = f[i].name.len;
		h[i].value.p = b + f[i].value.off;
		h[i].value.len = f[i].value.len;
	}
	return h2_submit_trailers(ds->h->s, ds->id, h, n);
}

/* h2d_pull's chunked body: avail bytes at p of HTTP/1.1 chunked framing, sent as DATA
 * (the trailer section as trailing HEADERS). *took: the bytes consumed. Returns -1 on
 * failure, 1 when the stream's queue is full or more bytes are needed, 0 to go on. */
static int pull_chunked(struct h2ds *ds, const char *p, size_t avail, size_t *took)
{
	struct h2_session *s = ds->h->s;
	size_t lim = avail < H2D_CHUNK_FEED ? avail : H2D_CHUNK_FEED, u;
	struct h1_span data, tr;
	ssize_t w;
	int rc;

	/* A payload span the queue does not take whole is kept (the decoder has counted
	 * it); the short send makes on_writable come back. */
	if (ds->hold_off < ds->hold_len) {
		w = h2_send_data(s, ds->id, ds->hold + ds->hold_off,
		                 ds->hold_len - ds->hold_off, false);
		if (w < 0)
			return -1;
		ds->hold_off += (size_t)w;
		if (ds->hold_off < ds->hold_len)
			return 1;
		ds->hold_off = ds->hold_len = 0;
	}
	rc = h1_chunked_feed(&ds->ck, p, lim, &u, &data, &tr);
	if (rc == H1_ERROR)
		return -1;
	if (rc == H1_DATA) {
		w = h2_send_data(s, ds->id, p + data.off, data.len, false);
		if (w < 0)
			return -1;
		if ((size_t)w < data.len) {
			ds->hold = xrealloc(ds->hold, data.len - (size_t)w);
			memcpy(ds->hold, p + data.off + w, data.len - (size_t)w);
			ds->hold_off = 0;
			ds->hold_len = data.len - (size_t)w;
		}
	}
	if (rc == H1_OK) {
		if (end_with_trailers(ds, p + tr.off, tr.len) < 0)
			return -1;
		ds->done = true;
	}
	*took = u;
	return rc == H1_AGAIN && u == 0;
}

ssize_t h2d_pull(struct h2ds *ds, const char *p, size_t n)
{
	struct h2_session *s = ds->h->s;
	size_t used = 0;

	if (ds->h2closed)
		return -1;
	if (!ds->head_done) {
		/* The head goes out as HEADERS first (h2d_send_head, h2d_send_reply): body
		 * bytes without one cannot be carried. */
		return n ? pull_fail(ds) : 0;
	}
	while (!ds->done && (used < n || ds->hold_off < ds->hold_len)) {
		size_t avail = n - used;
		ssize_t w;

		if (ds->body == H1_BODY_LENGTH) {
			size_t take = avail < ds->left ? avail : (size_t)ds->left;

			w = h2_send_data(s, ds->id, p + used, take, take == ds->left);
			if (w < 0)
				return pull_fail(ds);
			used += (size_t)w;
			ds->left -= (uint64_t)w;
			if (ds->left == 0)
				ds->done = true;
			if ((size_t)w < take)
				break;
		} else if (ds->body == H1_BODY_CHUNKED) {
			size_t took = 0;
			int rc = pull_chunked(ds, p + used, avail, &took);

			if (rc < 0)
				return pull_fail(ds);
			used += took;
			if (rc > 0)
				break;
		} else if (ds->body == H1_BODY_UNTIL_CLOSE) {
			w = h2_send_data(s, ds->id, p + used, avail, false);
			if (w < 0)
				return pull_fail(ds);
			used += (size_t)w;
			if ((size_t)w < avail)
				break;
		} else {
			ds->done = true;
		}
	}
	if (ds->done)
		used = n;   /* nothing may follow the response on a virtual connection */
	h2d_kick(ds->h);
	return (ssize_t)used;
}

void h2d_vconn_gone(struct h2ds *ds, bool complete)
{
	ds->v = NULL;
	if (ds->h2closed)
		return;
	h2d_vconn_drained(ds);
	if (!ds->done) {
		if (complete && ds->head_done && ds->body == H1_BODY_UNTIL_CLOSE)
			h2_send_data(ds->h->s, ds->id, "", 0, true);
		else
			h2_reset_stream(ds->h->s, ds->id, H2_INTERNAL_ERROR);
		ds->done = true;
	}
	h2d_kick(ds->h);
}

/* ---- connection ---- */

/* One write or read on the connection's transport: TLS when tls is set, else the plain
 * socket fd (h2c with prior knowledge on the sidecar's outbound port). Same return codes as
 * tls_write / tls_read; *drained (read only) says the socket is known to be empty. */
static ssize_t x_write(int fd, struct tls_conn *tls, const void *p, size_t n)
{
	ssize_t w;

	if (tls)
		return tls_write(tls, p, n);
	w = send(fd, p, n, MSG_NOSIGNAL);
	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return TLS_WANT_WRITE;
	return w < 0 ? -1 : w;
}

static ssize_t x_read(int fd, struct tls_conn *tls, void *p, size_t n, bool *drained)
{
	ssize_t r;

	if (tls) {
		r = tls_read(tls, p, n);
		*drained = r > 0 && tls_read_drained(tls);
		return r;
	}
	r = recv(fd, p, n, 0);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return TLS_WANT_READ;
	/* A short read from a stream socket: what the kernel had is taken. */
	*drained = r >= 0 && (size_t)r < n;
	return r < 0 ? -1 : r;
}

int h2_tls_flush(struct h2_session *s, int fd, struct tls_conn *tls, unsigned *interest)
{
	const uint8_t *p;
	size_t n;
	bool blocked = false;

	while ((n = h2_pending_output(s, &p)) > 0) {
		ssize_t w = x_write(fd, tls, p, n);

		if (w == TLS_WANT_READ || w == TLS_WANT_WRITE) {
			blocked = true;
			break;
		}
		if (w <= 0)
			return -1;
		h2_output_consumed(s, (size_t)w);
	}
	if (h2_done(s))
		return 1;
	*interest = 0;
	if (h2_want_read(s))
		*interest |= LOOP_READ;
	if (blocked || h2_want_write(s))
		*interest |= LOOP_WRITE;
	if (!*interest)
		*interest = LOOP_READ;   /* notice the peer's close */
	return 0;
}

int h2_tls_pump(struct h2_session *s, int fd, struct tls_conn *tls, int rounds, bool *more)
{
	char buf[H2D_READ_BUF];
	int i;

	*more = false;
	for (i = 0; i < rounds; i++) {
		bool drained = false;
		ssize_t n = x_read(fd, tls, buf, sizeof(buf), &drained);

		if (n == TLS_WANT_READ || n == TLS_WANT_WRITE)
			return 0;
		if (n == 0)
			return H2_PUMP_CLOSED;
		if (n < 0)
			return H2_PUMP_TLS;
		if (h2_feed(s, buf, (size_t)n) < 0)
			return H2_PUMP_SESSION;
		/* Empty now: the read that would find TLS_WANT_READ is a syscall saved. */
		if (drained)
			return 0;
	}
	*more = true;
	return 0;
}

/* Writes what the session has. Returns 0, or -1 when the connection must close. */
static int h2d_flush(struct h2d *h)
{
	unsigned interest;

	if (h2_tls_flush(h->s, h->io->fd, h->tls, &interest) != 0)
		return -1;
	loop_io_mod(h->w->loop, h->io, interest);
	return 0;
}

int h2d_on_io(struct h2d *h, unsigned ev)
{
	int rc;

	(void)ev;
	h2_cap_stream_window(h->s, ovl_h2_window_cap());   /* overload.h: window shrinking */
	rc = h2_tls_pump(h->s, h->io->fd, h->tls, H2D_ROUNDS, &h->more);
	if (rc == H2_PUMP_SESSION)
		log_debug("fwd", "h2 downstream: %s", h2_error(h->s));
	if (rc != 0)
		return -1;
	if (h->more)
		h2d_kick(h);
	/* A request head must be whole within --request-headers-timeout of its start, as
	 * on HTTP/1.1: a client trickling HEADERS/CONTINUATION frames is cut off. */
	if (!h2_header_block_pending(h->s))
		loop_timer_cancel(h->w->loop, &h->head);
	else if (!loop_timer_armed(&h->head))
		loop_timer_arm(h->w->loop, &h->head, (uint64_t)h->w->proxy->header_timeout_ms);
	return h2d_flush(h);
}

int h2d_input(struct h2d *h, const void *p, size_t n)
{
	h2_cap_stream_window(h->s, ovl_h2_window_cap());   /* overload.h: window shrinking */
	if (n > 0 && h2_feed(h->s, p, n) < 0) {
		log_debug("fwd", "h2 downstream: %s", h2_error(h->s));
		return -1;
	}
	if (h2_header_block_pending(h->s) && !loop_timer_armed(&h->head))
		loop_timer_arm(h->w->loop, &h->head, (uint64_t)h->w->proxy->header_timeout_ms);
	return h2d_flush(h);
}

static void h2d_on_task(struct loop *loop, struct loop_task *t)
{
	struct h2d *h = container_of(t, struct h2d, task);

	(void)loop;
	/* Most kicks carry output made by the request path (response bytes): a read would only find
	 * EAGAIN. Read only when the last read stopped early. */
	if ((h->more ? h2d_on_io(h, LOOP_READ) : h2d_flush(h)) < 0)
		sink->conn_done(h->d);
}

static void h2d_on_head_timeout(struct loop *loop, struct loop_timer *t)
{
	struct h2d *h = container_of(t, struct h2d, head);

	(void)loop;
	log_debug("fwd", "h2 downstream: request head not complete within %lld ms; closing",
	          (long long)h->w->proxy->header_timeout_ms);
	sink->conn_done(h->d);
}

static void h2d_on_idle(struct loop *loop, struct loop_timer *t)
{
	struct h2d *h = container_of(t, struct h2d, idle);

	(void)loop;
	h2d_drain(h);
}

struct h2d *h2d_new(struct worker *w, struct dconn *d, struct loop_io *io,
                    struct tls_conn *tls)
{
	struct h2d *h = xcalloc(1, sizeof(*h));

	h->w = w;
	h->d = d;
	h->io = io;
	h->tls = tls;
	loop_task_init(&h->task, h2d_on_task);
	loop_timer_init(&h->idle, h2d_on_idle);
	loop_timer_init(&h->head, h2d_on_head_timeout);
	loop_timer_arm(w->loop, &h->idle, (uint64_t)w->proxy->idle_timeout_ms);
	h->s = h2_session_new(H2_SERVER, NULL, &h2d_cb, h);
	if (!h->s) {
		free(h);
		return NULL;
	}
	h2_cap_stream_window(h->s, ovl_h2_window_cap());   /* overload.h: window shrinking */
	return h;
}

void h2d_drain(struct h2d *h)
{
	if (h->draining)
		return;
	h->draining = true;
	loop_timer_cancel(h->w->loop, &h->idle);
	h2_goaway(h->s, H2_NO_ERROR);
	h2d_kick(h);
}

void h2d_free(struct h2d *h)
{
	h2_abort(h->s);   /* streams' virtual connections close (logged DC if unfinished) */
	loop_task_cancel(h->w->loop, &h->task);
	loop_timer_cancel(h->w->loop, &h->idle);
	loop_timer_cancel(h->w->loop, &h->head);
	h2_session_free(h->s);
	while (h->ds_free) {
		struct h2ds *ds = h->ds_free;

		h->ds_free = ds->next_free;
		free(ds);
	}
	sbuf_free(&h->hb);
	free(h);
}
