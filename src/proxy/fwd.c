/* fwd: HTTP/1.1 forwarding, downstream connection to upstream connection.
 *
 * A request's path through this file:
 *   d_on_io (downstream readable) -> d_read -> d_process: h1_parse of the head
 *   -> st_begin: route (route_vhost_find, route_select), pick a destination and cluster,
 *      then an endpoint (cluster_pick) -> st_connect: an idle pooled upstream connection
 *      (pool_take) or a new one (sock_connect, then tls_client_new + tls_handshake)
 *   -> st_send_head: the request head re-serialized for the upstream (hop-by-hop fields
 *      dropped, our own framing, x-forwarded-for, x-request-id), then the body streamed as
 *      it arrives (d_forward_body), never buffered whole
 *   -> u_on_io (upstream readable) -> u_process: h1_parse of the response head
 *      -> written to the downstream with x-envoy-upstream-service-time, body streamed
 *   -> st_finish: access log line, stats, the upstream connection back to the pool when it
 *      can carry another request, and the next pipelined request on the downstream.
 *
 * Framing: the proxy writes its own Content-Length or Transfer-Encoding. Chunked bodies are
 * relayed chunk by chunk as received, minus trailer fields (dropped, as Envoy's HTTP/1
 * codec does by default); an HTTP/1.0 client gets a chunked response's payload unframed,
 * ended by closing the connection. A response delimited by close is relayed the same way.
 *
 * One request at a time per downstream connection (HTTP/1.1 pipelining is answered in
 * order by simply not parsing the next head until this one is done). Back-pressure: when
 * one side's output buffer holds more than FWD_HIGH_WATER bytes, reading from the other
 * side stops until it drains.
 *
 * Lifetime: a downstream connection is freed only at a settle point (d_settle), at the end
 * of a top-level event handler, never in the middle of a call chain; code deep inside
 * marks it dead or closing instead. Work that must happen "after this event" (resuming a
 * paused read, which may find bytes OpenSSL already buffered; the next pipelined request)
 * is deferred with a zero-delay kick timer rather than done by recursion.
 *
 * HTTP/2 downstream (gateway TLS listeners, ALPN "h2"): fwd_h2.c runs the session on the
 * connection and gives each stream a virtual dconn (d->h2s, no socket) that is fed an
 * HTTP/1.1 rewrite of the stream's request and whose output fwd_h2.c turns back into
 * HEADERS/DATA (d_flush -> h2d_pull). Everything else in this file is unchanged for them;
 * see fwd_h2.h.
 *
 * Buffers: each connection has an input buffer (head + body bytes as read) and an output
 * buffer (bytes not yet accepted by the socket). Writes are attempted at once; LOOP_WRITE
 * interest is only registered when a write would block, so the common request costs no
 * epoll_ctl. */
#include "proxy/worker.h"
#include "proxy/fwd_h2.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"
#include "proxy/tunnel.h"
#include "core/log.h"
#include "core/util.h"
#include "http/h1.h"
#include "net/dns.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FWD_BUF_INIT    16384
#define FWD_HIGH_WATER  (256 * 1024)
#define FWD_IN_MAX      (H1_MAX_HEAD + 64 * 1024)

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

struct iobuf {
	char *p;
	size_t off, len, cap;           /* data is p[off .. len) */
};

struct uconn;
struct dconn;

struct stream {
	struct dconn *d;
	struct uconn *u;
	struct snap *snap;              /* reference held for the request's lifetime */
	struct h1_parser rp;
	struct h1_msg req;              /* spans into d->in */
	const struct route *route;
	struct cluster *cl;
	struct sock_addr ep;
	char ep_str[SOCK_ADDR_STRLEN];
	char up_local[SOCK_ADDR_STRLEN];
	const char *host;               /* request host without port, NUL-terminated copy */
	char hostbuf[256];
	char reqid[40];
	bool reqid_generated;

	/* request body */
	uint64_t req_left;
	struct h1_chunked req_ck;
	bool req_done;                  /* whole request body forwarded */

	/* response */
	struct h1_parser sp;
	struct h1_msg resp;
	bool resp_started;              /* head sent downstream */
	bool resp_done;
	uint64_t resp_left;
	struct h1_chunked resp_ck;
	bool resp_close;                /* downstream must close after this response */
	bool resp_dechunk;              /* chunked upstream body to an HTTP/1.0 client: send
	                                 * the payload only, the close delimits it */

	int code;
	unsigned flags;
	const char *details;
	char tls_reason[256];
	int64_t start_wall_ms;
	uint64_t start_ms, up_start_ms;
	int64_t ust;                    /* upstream service time, -1 unknown */
	uint64_t bytes_in, bytes_out;
	bool retried;
	bool active;
	struct loop_timer timeout;
	/* Sidecar: the destination port the request is routed on (original destination,
	 * or the authority's), and the lookup of a passthrough destination's name. */
	uint16_t port;
	struct dns_query *dnsq;
};

struct dconn {
	struct loop_io io;
	struct loop_timer timer;        /* header read / keep-alive idle */
	struct worker *w;
	struct snap *snap;
	const struct snap_listener *lst;
	struct tls_conn *tls;
	bool hs_done;
	bool closing;                   /* close once out is flushed */
	bool dead;                      /* close at the next settle point */
	bool read_paused;
	bool in_process;                /* inside d_process: no re-entry */
	struct loop_timer kick;         /* deferred work on the next loop iteration */
	struct sock_addr local, remote;
	char local_s[SOCK_ADDR_STRLEN], remote_s[SOCK_ADDR_STRLEN], remote_ip[SOCK_ADDR_STRLEN];
	char sni[256];
	char *in;
	size_t in_len, in_cap, in_pos; /* in_pos: bytes of in already consumed */
	struct iobuf out;
	struct stream st;
	uint64_t nreq;
	uint64_t head_deadline;         /* loop ms by which the pending head must be whole; 0: none */
	/* Sidecar capture listener: the first bytes decide what the connection is (see
	 * sidecar.h); redirected connections know where they were going (odst). */
	bool sidecar;
	bool sniffing;
	bool redirected;
	struct sock_addr odst;
	int64_t accept_wall_ms;
	uint64_t accept_ms;
	/* HTTP/2 (fwd_h2.h): h2c on a connection that negotiated h2; h2s on the virtual
	 * connection of one of its streams (no socket, not in the worker's list). */
	struct h2d *h2c;
	struct h2ds *h2s;
	struct dconn *next, *prev;
};

struct uconn {
	struct loop_io io;
	struct loop_timer timer;        /* connect timeout, then idle timeout */
	struct loop_timer kick;         /* deferred read after back-pressure */
	struct pool_link link;
	struct worker *w;
	struct tls_conn *tls;
	bool connecting, hs_done;
	bool read_paused;
	struct stream *st;
	char *in;
	size_t in_len, in_cap, in_pos;
	struct iobuf out;
	char key[512];
	size_t keylen;
	uint32_t nreq;
	uint32_t max_req;
	int64_t idle_ms;
	char local_s[SOCK_ADDR_STRLEN];
};

static void d_close(struct dconn *d);
static void d_settle(struct dconn *d);
static void d_read(struct dconn *d);
static void d_process(struct dconn *d);
static void d_flush(struct dconn *d);
static void u_close(struct uconn *u);
static int u_flush(struct uconn *u);
static void u_process(struct uconn *u);
static void st_finish(struct stream *st);
static void st_upstream_failed(struct stream *st, unsigned flag, const char *details,
                               const char *reason, bool retryable);
static void st_connect(struct stream *st, bool fresh);
static void d_on_timer(struct loop *loop, struct loop_timer *t);

/* ---- small helpers ---- */

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void iob_append(struct iobuf *b, const void *p, size_t n)
{
	if (b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		if (b->off > 0 && b->len - b->off + n <= b->cap) {
			memmove(b->p, b->p + b->off, b->len - b->off);
		} else {
			size_t cap = b->cap ? b->cap : FWD_BUF_INIT;

			while (cap < b->len - b->off + n)
				cap *= 2;
			if (b->off > 0)
				memmove(b->p, b->p + b->off, b->len - b->off);
			b->p = xrealloc(b->p, cap);
			b->cap = cap;
		}
		b->len -= b->off;
		b->off = 0;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static size_t iob_used(const struct iobuf *b)
{
	return b->len - b->off;
}

static void iob_free(struct iobuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Writes buffered bytes. Returns 0 when everything was written or the socket is full
 * (*blocked set), -1 on error. */
static int io_write(int fd, struct tls_conn *tls, struct iobuf *b, bool *blocked)
{
	*blocked = false;
	while (iob_used(b) > 0) {
		ssize_t n;

		if (tls) {
			n = tls_write(tls, b->p + b->off, iob_used(b));
			if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
				*blocked = true;
				return 0;
			}
		} else {
			n = write(fd, b->p + b->off, iob_used(b));
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*blocked = true;
				return 0;
			}
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n <= 0)
			return -1;
		b->off += (size_t)n;
	}
	b->off = b->len = 0;
	/* Idle connections should not keep big buffers: give back what grew past the default. */
	if (b->cap > FWD_BUF_INIT * 4) {
		free(b->p);
		b->p = NULL;
		b->cap = 0;
	}
	return 0;
}

/* Reads into a growable input buffer. Returns bytes read (> 0), 0 on EOF, -1 on error,
 * -2 when nothing is available now. */
static ssize_t io_read(int fd, struct tls_conn *tls, char **buf, size_t *len, size_t *cap,
                       size_t max)
{
	ssize_t n;

	if (*cap - *len < 4096) {
		size_t ncap = *cap ? *cap * 2 : FWD_BUF_INIT;

		if (ncap > max)
			ncap = max;
		if (ncap <= *len)
			return -3;      /* full */
		*buf = xrealloc(*buf, ncap);
		*cap = ncap;
	}
	if (tls) {
		n = tls_read(tls, *buf + *len, *cap - *len);
		if (n == TLS_WANT_READ || n == TLS_WANT_WRITE)
			return -2;
	} else {
		do {
			n = read(fd, *buf + *len, *cap - *len);
		} while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -2;
	}
	if (n > 0)
		*len += (size_t)n;
	return n;
}

/* A handshake step that must wait: registers the direction OpenSSL asked for (reads stay
 * on) and returns true. Any other rc (done or failed) returns false. */
static bool tls_wait(struct loop *loop, struct loop_io *io, int rc)
{
	if (rc == TLS_WANT_READ)
		loop_io_mod(loop, io, LOOP_READ);
	else if (rc == TLS_WANT_WRITE)
		loop_io_mod(loop, io, LOOP_READ | LOOP_WRITE);
	else
		return false;
	return true;
}

static struct alog_str span_str(const char *buf, struct h1_span s)
{
	struct alog_str a = { buf + s.off, s.len };

	return a;
}

static struct alog_str cstr(const char *s)
{
	struct alog_str a = { s, s ? strlen(s) : 0 };

	return a;
}

/* Value of the first header named name in the request, as an alog_str. */
static struct alog_str req_header(const struct stream *st, const char *name)
{
	int i = h1_header_find(&st->req, st->d->in, name, 0);

	if (i < 0)
		return cstr(NULL);
	return span_str(st->d->in, st->req.headers[i].value);
}

static void gen_request_id(struct worker *w, char *out)
{
	uint32_t r[4];

	for (int i = 0; i < 4; i++)
		r[i] = worker_rand(w);
	/* RFC 4122 version 4 layout, as Envoy generates x-request-id. */
	snprintf(out, 40, "%08x-%04x-4%03x-%04x-%04x%08x", r[0], r[1] >> 16, r[1] & 0xfff,
	         (r[2] >> 16 & 0x3fff) | 0x8000, r[2] & 0xffff, r[3]);
}

/* ---- access log ---- */

static void st_log(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct alog_entry e;
	struct alog_str xff = req_header(st, "x-forwarded-for");
	char xffbuf[1024];

	STAT_INC(w->st.resp[st->code >= 100 && st->code < 600 ? st->code / 100 : 0]);
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
	e.authority = st->req.host_idx >= 0 && st->req.target_form != H1_TF_ABSOLUTE
	              ? span_str(d->in, st->req.headers[st->req.host_idx].value)
	              : span_str(d->in, st->req.authority);
	e.upstream_host = cstr(st->ep_str[0] ? st->ep_str : NULL);
	e.upstream_cluster = cstr(st->cl ? st->cl->name : NULL);
	e.upstream_local = cstr(st->up_local[0] ? st->up_local : NULL);
	e.downstream_local = cstr(d->local_s);
	e.downstream_remote = cstr(d->remote_s);
	e.sni = cstr(d->sni[0] ? d->sni : NULL);
	e.route_name = cstr(st->route ? st->route->name : NULL);
	worker_alog(w, &e);
}

/* ---- downstream output ---- */

static void d_update_interest(struct dconn *d, bool want_write)
{
	unsigned in = (d->read_paused ? 0 : LOOP_READ) | (want_write ? LOOP_WRITE : 0);

	loop_io_mod(d->w->loop, &d->io, in);
}

static void d_send(struct dconn *d, const void *p, size_t n)
{
	iob_append(&d->out, p, n);
}

/* Flushes the downstream output; closes on error or when closing and drained. */
static void d_flush(struct dconn *d)
{
	bool blocked;

	if (d->dead)
		return;
	if (d->h2s) {
		/* Called with nothing buffered too: fwd_h2.c may hold response bytes. */
		ssize_t n = h2d_pull(d->h2s, d->st.req.method_id,
		                     d->out.p ? d->out.p + d->out.off : "", iob_used(&d->out));

		if (n < 0) {
			d->st.flags |= ALOG_F_DC;
			d->st.details = d->st.details ? d->st.details : "downstream_remote_disconnect";
			d->dead = true;
			return;
		}
		d->out.off += (size_t)n;
		if (d->out.off == d->out.len)
			d->out.off = d->out.len = 0;
		blocked = iob_used(&d->out) > 0;
	} else if (io_write(d->io.fd, d->tls, &d->out, &blocked) < 0) {
		if (d->st.active) {
			d->st.flags |= ALOG_F_DC;
			d->st.details = d->st.details ? d->st.details : "downstream_remote_disconnect";
		}
		d->dead = true;
		return;
	}
	d_update_interest(d, blocked);
	/* Back-pressure: resume the upstream once the client has taken what we had. */
	if (!blocked && d->st.active && d->st.u && d->st.u->read_paused) {
		d->st.u->read_paused = false;
		loop_io_mod(d->w->loop, &d->st.u->io, LOOP_READ);
		loop_timer_arm(d->w->loop, &d->st.u->kick, 0);
	}
}

/* A response made here (no upstream response): 404 NR, 503 UF, 504 UT... */
static void st_local_reply(struct stream *st, int code, unsigned flags, const char *details,
                           const char *body)
{
	struct dconn *d = st->d;
	char head[512];
	size_t blen = body ? strlen(body) : 0;
	int n;

	st->code = code;
	st->flags |= flags;
	st->details = details;
	if (st->resp_started) {
		/* Too late for a status: the client sees the connection end early. */
		st->resp_close = true;
		st_finish(st);
		return;
	}
	n = snprintf(head, sizeof(head),
	             "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\ncontent-type: text/plain\r\n"
	             "x-request-id: %s\r\n%s\r\n",
	             code, h1_status_reason(code), blen, st->reqid,
	             st->resp_close || !st->req.keep_alive ? "connection: close\r\n" : "");
	d_send(d, head, (size_t)n);
	if (blen && st->req.method_id != H1_M_HEAD)
		d_send(d, body, blen);
	st->bytes_out = blen;
	st->resp_started = true;
	st->resp_done = true;
	/* The request body was not read: the connection cannot carry another request unless
	 * the body is complete. */
	if (!st->req_done)
		st->resp_close = true;
	st_finish(st);
}

/* ---- upstream connections ---- */

static void u_update_interest(struct uconn *u, bool want_write)
{
	unsigned in = (u->read_paused ? 0 : LOOP_READ) | (want_write ? LOOP_WRITE : 0);

	loop_io_mod(u->w->loop, &u->io, in);
}

/* Returns 0, or -1 when u failed and was closed (the stream may go on elsewhere). */
static int u_flush(struct uconn *u)
{
	bool blocked;

	if (u->connecting || !u->hs_done)
		return 0;
	if (io_write(u->io.fd, u->tls, &u->out, &blocked) < 0) {
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
		d_update_interest(d, iob_used(&d->out) > 0);
		loop_timer_arm(d->w->loop, &d->kick, 0);
	}
	return 0;
}

static void u_close(struct uconn *u)
{
	struct worker *w = u->w;

	if (u->link.bucket) {
		pool_remove(w->pool, &u->link);
		STAT_DEC(w->st.pool_idle);
	}
	loop_timer_cancel(w->loop, &u->timer);
	loop_timer_cancel(w->loop, &u->kick);
	loop_io_del(w->loop, &u->io);
	if (u->tls)
		tls_conn_free(u->tls);
	close(u->io.fd);
	free(u->in);
	iob_free(&u->out);
	STAT_DEC(w->st.ucx_active);
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
		d_settle(d);
}

static void u_on_kick(struct loop *loop, struct loop_timer *t)
{
	struct uconn *u = container_of(t, struct uconn, kick);
	struct dconn *d = u->st ? u->st->d : NULL;

	(void)loop;
	if (u->st && !u->read_paused && u->hs_done)
		u_process(u);
	if (d)
		d_settle(d);
}

/* The connection can carry no more requests: drop it. */
static void u_release(struct uconn *u, bool reusable)
{
	struct worker *w = u->w;

	u->st = NULL;
	u->nreq++;
	if (!reusable || w->draining || (u->max_req && u->nreq >= u->max_req) ||
	    u->in_len > u->in_pos || iob_used(&u->out) > 0) {
		u_close(u);
		return;
	}
	u->in_len = u->in_pos = 0;
	if (u->in && u->in_cap > FWD_BUF_INIT * 4) {
		free(u->in);
		u->in = NULL;
		u->in_cap = 0;
	}
	u->read_paused = false;
	/* Keep watching for reads: a server closing an idle connection is noticed at once. */
	loop_io_mod(w->loop, &u->io, LOOP_READ);
	loop_timer_arm(w->loop, &u->timer, (uint64_t)u->idle_ms);
	pool_put(w->pool, u->key, u->keylen, &u->link);
	STAT_INC(w->st.pool_idle);
}

static void u_handshake(struct uconn *u)
{
	struct stream *st = u->st;
	int rc = tls_handshake(u->tls);

	if (tls_wait(u->w->loop, &u->io, rc))
		return;
	if (rc < 0) {
		STAT_INC(u->w->st.ucx_tls_fail[stats_tls_cat_index(tls_conn_category(u->tls))]);
		if (st)
			st_upstream_failed(st, ALOG_F_UF,
			                   "upstream_reset_before_response_started{connection_failure}",
			                   tls_conn_error(u->tls), false);
		else
			u_close(u);
		return;
	}
	u->hs_done = true;
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
		snprintf(st->up_local, sizeof(st->up_local), "%s", u->local_s);
	}
	if (u->tls) {
		u_handshake(u);
		return;
	}
	u->hs_done = true;
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
		d_settle(d);
}

/* ---- request head to the upstream ---- */

static void st_send_head(struct stream *st)
{
	struct dconn *d = st->d;
	struct uconn *u = st->u;
	const struct h1_msg *m = &st->req;
	const char *b = d->in;
	struct proxy *px = d->w->proxy;
	struct sbuf h = SBUF_INIT;
	bool have_xff = false;

	sbuf_add(&h, b + m->method.off, m->method.len);
	sbuf_addc(&h, ' ');
	if (m->target_form == H1_TF_ABSOLUTE) {
		if (m->path.len == 0)
			sbuf_addc(&h, '/');
		else if (b[m->path.off] == '?')
			sbuf_addc(&h, '/');
		sbuf_add(&h, b + m->path.off, m->path.len);
	} else {
		sbuf_add(&h, b + m->target.off, m->target.len);
	}
	sbuf_adds(&h, " HTTP/1.1\r\n");
	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *hd = &m->headers[i];

		if (hd->flags & H1_HF_DROP)
			continue;
		/* A request in absolute-form (to a forward proxy) is sent on in origin-form,
		 * with the URI's authority as Host (RFC 9112 section 3.2.2). */
		if (m->target_form == H1_TF_ABSOLUTE && (int)i == m->host_idx)
			continue;
		if (h1_name_eq(b + hd->name.off, hd->name.len, "x-forwarded-for", 15) &&
		    px->role == SNAP_ROLE_GATEWAY) {
			have_xff = true;
			sbuf_add(&h, b + hd->name.off, hd->name.len);
			sbuf_adds(&h, ": ");
			sbuf_add(&h, b + hd->value.off, hd->value.len);
			sbuf_addf(&h, ",%s\r\n", d->remote_ip);
			continue;
		}
		if (px->role == SNAP_ROLE_GATEWAY &&
		    h1_name_eq(b + hd->name.off, hd->name.len, "x-forwarded-proto", 17))
			continue;
		sbuf_add(&h, b + hd->name.off, hd->name.len);
		sbuf_adds(&h, ": ");
		sbuf_add(&h, b + hd->value.off, hd->value.len);
		sbuf_adds(&h, "\r\n");
	}
	if (m->target_form == H1_TF_ABSOLUTE) {
		sbuf_adds(&h, "host: ");
		sbuf_add(&h, b + m->authority.off, m->authority.len);
		sbuf_adds(&h, "\r\n");
	}
	if (px->role == SNAP_ROLE_GATEWAY) {
		if (!have_xff)
			sbuf_addf(&h, "x-forwarded-for: %s\r\n", d->remote_ip);
		sbuf_addf(&h, "x-forwarded-proto: %s\r\n", d->tls || d->h2s ? "https" : "http");
	}
	if (st->reqid_generated)
		sbuf_addf(&h, "x-request-id: %s\r\n", st->reqid);
	if (m->has_te_trailers)
		sbuf_adds(&h, "te: trailers\r\n");
	if (m->body == H1_BODY_LENGTH)
		sbuf_addf(&h, "content-length: %llu\r\n", (unsigned long long)m->content_length);
	else if (m->body == H1_BODY_CHUNKED)
		sbuf_adds(&h, "transfer-encoding: chunked\r\n");
	sbuf_adds(&h, "\r\n");
	iob_append(&u->out, h.s, h.len);
	sbuf_free(&h);
}

/* ---- chunked bodies ---- */

/* Relays the bytes one h1_chunked_feed call consumed (p[0 .. used), result rc, trailer
 * section span tr) unchanged, except the trailer section: its fields are dropped and only
 * its final CRLF is kept. Envoy's HTTP/1 codec drops trailers unless enable_trailers is
 * set (Istio does not set it), and relaying them verbatim would pass on fields that must
 * never be acted on as trailers (Content-Length, Host... RFC 9110 section 6.5.1). */
static void chunked_relay(struct iobuf *out, const char *p, size_t used, int rc,
                          struct h1_span tr)
{
	if (rc == H1_OK && used > 0) {
		iob_append(out, p, tr.off);
		iob_append(out, "\r\n", 2);
	} else if (used) {
		iob_append(out, p, used);
	}
}

/* ---- request body ---- */

/* Moves request body bytes from d->in to the upstream. Returns -1 if the stream ended
 * (error answered), else 0. */
static int d_forward_body(struct dconn *d)
{
	struct stream *st = &d->st;
	struct uconn *u = st->u;

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
				st_local_reply(st, 400, ALOG_F_DPE, "http1.invalid_chunk", "Bad Request");
				return -1;
			}
			if (u)
				chunked_relay(&u->out, p, used, rc, tr);
			if (rc == H1_DATA)
				st->bytes_in += data.len;
			d->in_pos += used;
			if (rc == H1_OK)
				st->req_done = true;
			if (rc == H1_AGAIN)
				break;
		}
	}
	if (d->h2s && d->in_len - d->in_pos <= FWD_HIGH_WATER)
		h2d_vconn_drained(d->h2s);
	if (!u)
		return 0;
	/* Consumed body bytes need not stay: keep the head (its spans are used until the
	 * stream ends) and move what is left down behind it. */
	if (d->in_pos > st->req.head_len && d->in_pos == d->in_len) {
		d->in_len = d->in_pos = st->req.head_len;
	}
	if (iob_used(&u->out) > FWD_HIGH_WATER) {
		d->read_paused = true;
		d_update_interest(d, iob_used(&d->out) > 0);
	}
	u_flush(u);   /* u may be gone after this (a retry may have replaced it) */
	return 0;
}

/* ---- response ---- */

static void st_send_resp_head(struct stream *st)
{
	struct dconn *d = st->d;
	struct uconn *u = st->u;
	const struct h1_msg *m = &st->resp;
	const char *b = u->in + u->in_pos;
	struct sbuf h = SBUF_INIT;

	sbuf_addf(&h, "HTTP/1.1 %d ", m->status);
	sbuf_add(&h, b + m->reason.off, m->reason.len);
	sbuf_adds(&h, "\r\n");
	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *hd = &m->headers[i];

		if (hd->flags & H1_HF_DROP)
			continue;
		/* Ours replaces an upstream proxy's (a sidecar in front of a gateway), as
		 * Envoy's router sets the header rather than adding a second one. */
		if (st->ust >= 0 &&
		    h1_name_eq(b + hd->name.off, hd->name.len, "x-envoy-upstream-service-time", 29))
			continue;
		sbuf_add(&h, b + hd->name.off, hd->name.len);
		sbuf_adds(&h, ": ");
		sbuf_add(&h, b + hd->value.off, hd->value.len);
		sbuf_adds(&h, "\r\n");
	}
	if (m->body == H1_BODY_LENGTH ||
	    (m->body == H1_BODY_NONE && h1_header_find(m, b, "content-length", 0) >= 0))
		sbuf_addf(&h, "content-length: %llu\r\n", (unsigned long long)m->content_length);
	else if (m->body == H1_BODY_CHUNKED && st->req.version_minor == 0)
		/* An HTTP/1.0 client knows no chunked coding (RFC 9112 section 6.1): the payload
		 * goes unframed and the close ends it, as Envoy does. */
		st->resp_dechunk = st->resp_close = true;
	else if (m->body == H1_BODY_CHUNKED)
		sbuf_adds(&h, "transfer-encoding: chunked\r\n");
	else if (m->body == H1_BODY_UNTIL_CLOSE)
		st->resp_close = true;
	if (st->ust >= 0)
		sbuf_addf(&h, "x-envoy-upstream-service-time: %lld\r\n", (long long)st->ust);
	if (!st->req.keep_alive || d->w->draining)
		st->resp_close = true;
	if (st->resp_close)
		sbuf_adds(&h, "connection: close\r\n");
	else if (st->req.version_minor == 0)
		sbuf_adds(&h, "connection: keep-alive\r\n");
	sbuf_adds(&h, "\r\n");
	d_send(d, h.s, h.len);
	sbuf_free(&h);
	st->resp_started = true;
}

/* Forwards response body bytes from u->in. Returns -1 if the stream ended badly. */
static int u_forward_body(struct uconn *u)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;

	while (!st->resp_done && u->in_pos < u->in_len) {
		const char *p = u->in + u->in_pos;
		size_t avail = u->in_len - u->in_pos;

		if (st->resp.body == H1_BODY_LENGTH) {
			size_t n = avail < st->resp_left ? avail : (size_t)st->resp_left;

			d_send(d, p, n);
			st->resp_left -= n;
			st->bytes_out += n;
			u->in_pos += n;
			if (st->resp_left == 0)
				st->resp_done = true;
		} else if (st->resp.body == H1_BODY_CHUNKED) {
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
					d_send(d, p + data.off, data.len);
			} else {
				chunked_relay(&d->out, p, used, rc, tr);
			}
			if (rc == H1_DATA)
				st->bytes_out += data.len;
			u->in_pos += used;
			if (rc == H1_OK)
				st->resp_done = true;
			if (rc == H1_AGAIN)
				break;
		} else {
			d_send(d, p, avail);
			st->bytes_out += avail;
			u->in_pos += avail;
		}
	}
	if (u->in_pos == u->in_len)
		u->in_pos = u->in_len = 0;
	return 0;
}

static void u_process(struct uconn *u)
{
	struct stream *st = u->st;
	struct dconn *d = st->d;
	bool eof = false;

	for (;;) {
		ssize_t n = io_read(u->io.fd, u->tls, &u->in, &u->in_len, &u->in_cap,
		                    st->resp_started ? FWD_BUF_INIT * 4 : FWD_IN_MAX);

		if (n == -2 || n == -3)
			break;
		if (n == 0) {
			eof = true;
			break;
		}
		if (n < 0) {
			const char *reason = u->tls ? tls_conn_error(u->tls) : strerror(errno);

			if (!st->resp_started) {
				/* A TLS 1.3 server rejecting our client certificate says so here. */
				if (u->tls && tls_conn_category(u->tls)[0])
					STAT_INC(u->w->st.ucx_tls_fail[stats_tls_cat_index(tls_conn_category(u->tls))]);
				st_upstream_failed(st, ALOG_F_UC | (u->tls ? ALOG_F_UF : 0),
				                   "upstream_reset_before_response_started{connection_termination}",
				                   reason, u->nreq > 0);
			} else {
				st->flags |= ALOG_F_UC;
				st->details = "upstream_reset_after_response_started{connection_termination}";
				st->resp_close = true;
				st_finish(st);
			}
			return;
		}
		if (!st->resp_started) {
			int rc = h1_parse(&st->sp, u->in + u->in_pos, u->in_len - u->in_pos, &st->resp);

			if (rc == H1_AGAIN)
				continue;
			if (rc == H1_ERROR) {
				st->resp_close = true;
				u->nreq = UINT32_MAX - 1;  /* never pool */
				st_local_reply(st, 502, ALOG_F_UPE, "upstream_protocol_error", "Bad Gateway");
				return;
			}
			if (st->resp.status < 200 && st->resp.status != 101) {
				/* 1xx interim (100 Continue): pass it on, wait for the final response. */
				d_send(d, u->in + u->in_pos, st->resp.head_len);
				u->in_pos += st->resp.head_len;
				h1_parser_init(&st->sp, false, st->req.method_id);
				continue;
			}
			st->ust = (int64_t)(loop_now_ms(u->w->loop) - st->up_start_ms);
			st->code = st->resp.status;
			st->details = "via_upstream";
			st->resp_left = st->resp.content_length;
			h1_chunked_init(&st->resp_ck);
			st_send_resp_head(st);
			u->in_pos += st->resp.head_len;
			if (st->resp.body == H1_BODY_NONE ||
			    (st->resp.body == H1_BODY_LENGTH && st->resp_left == 0))
				st->resp_done = true;
		}
		if (u_forward_body(u) < 0)
			return;
		if (st->resp_done)
			break;
		if (iob_used(&d->out) > FWD_HIGH_WATER) {
			u->read_paused = true;
			u_update_interest(u, iob_used(&u->out) > 0);
			break;
		}
	}
	if (st->resp_started && !st->resp_done && eof) {
		if (st->resp.body == H1_BODY_UNTIL_CLOSE) {
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
	d_flush(d);
}

/* ---- stream lifecycle ---- */

static void st_on_timeout(struct loop *loop, struct loop_timer *t)
{
	struct stream *st = container_of(t, struct stream, timeout);

	(void)loop;
	STAT_INC(st->d->w->st.urq_timeout);
	if (st->u) {
		struct uconn *u = st->u;

		st->u = NULL;
		u->st = NULL;
		u_close(u);
	}
	st->resp_close = true;
	st_local_reply(st, 504, ALOG_F_UT, "response_timeout", "upstream request timeout");
	d_settle(st->d);
}

/* An upstream failed before the response started. retryable: the connection was reused
 * from the pool (the server may have closed it while idle); a bodiless idempotent request
 * is then tried once more on a fresh connection. */
static void st_upstream_failed(struct stream *st, unsigned flag, const char *details,
                               const char *reason, bool retryable)
{
	struct uconn *u = st->u;
	int mid = st->req.method_id;
	bool idempotent = mid == H1_M_GET || mid == H1_M_HEAD || mid == H1_M_OPTIONS ||
	                  mid == H1_M_PUT || mid == H1_M_DELETE || mid == H1_M_TRACE;

	/* reason may live in u (its TLS error string): keep a copy before u goes. */
	snprintf(st->tls_reason, sizeof(st->tls_reason), "%s", reason ? reason : "");
	if (u) {
		st->u = NULL;
		u->st = NULL;
		u_close(u);
	}
	if (retryable && !st->retried && !st->resp_started && idempotent &&
	    st->req.body == H1_BODY_NONE) {
		st->retried = true;
		STAT_INC(st->d->w->st.urq_retry);
		st->tls_reason[0] = '\0';
		st_connect(st, true);
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
		st_local_reply(st, 503, flag, details, body);
	}
}

static void build_pool_key(struct stream *st, const char *sni, const char *vname,
                           char *key, size_t *keylen)
{
	int n;

	/* st->ep_str is the endpoint's address as sock_addr_str formats it, set with st->ep:
	 * no need to format it again on every request. */
	n = snprintf(key, 512, "%llu|%s|%s|%s",
	             st->cl->tls_ctx ? (unsigned long long)tls_ctx_id(st->cl->tls_ctx) : 0ULL,
	             st->ep_str, sni ? sni : "", vname ? vname : "");
	*keylen = n < 512 ? (size_t)n : 511;
}

static void st_connect(struct stream *st, bool fresh)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct cluster *cl = st->cl;
	const char *sni = NULL, *vname = NULL;
	char key[512];
	size_t keylen;
	struct pool_link *l;
	struct uconn *u;
	int fd, rc;

	if (cl->tls_mode != CLUSTER_TLS_DISABLE) {
		if (!cl->tls_ctx) {
			STAT_INC(w->st.ucx_tls_fail[0]);
			st_upstream_failed(st, ALOG_F_UF,
			                   "upstream_reset_before_response_started{connection_failure}",
			                   cl->tls_ctx_error ? cl->tls_ctx_error : "no TLS context", false);
			return;
		}
		sni = cl->sni ? cl->sni : st->host;
		if (cl->verify_host_auto)
			vname = st->host;
	}
	build_pool_key(st, sni, vname, key, &keylen);
	/* Each attempt parses its response from scratch, framed by the request's method (no
	 * body for HEAD): a retry must not inherit a partial head from the failed one. */
	h1_parser_init(&st->sp, false, st->req.method_id);
	STAT_INC(w->st.urq_total);
	st->up_start_ms = loop_now_ms(w->loop);
	if (!fresh && (l = pool_take(w->pool, key, keylen)) != NULL) {
		u = container_of(l, struct uconn, link);
		STAT_DEC(w->st.pool_idle);
		STAT_INC(w->st.urq_reused);
		loop_timer_cancel(w->loop, &u->timer);
		u->st = st;
		st->u = u;
		snprintf(st->up_local, sizeof(st->up_local), "%s", u->local_s);
		st_send_head(st);
		d_forward_body(d);   /* flushes */
		return;
	}

	rc = sock_connect(&st->ep, NULL, &fd);
	if (rc < 0) {
		char reason[128];

		snprintf(reason, sizeof(reason), "delayed connect error: %s", strerror(errno));
		STAT_INC(w->st.ucx_connect_fail);
		st_upstream_failed(st, ALOG_F_UF,
		                   "upstream_reset_before_response_started{connection_failure}",
		                   reason, false);
		return;
	}
	u = xcalloc(1, sizeof(*u));
	u->w = w;
	u->st = st;
	st->u = u;
	memcpy(u->key, key, keylen);
	u->keylen = keylen;
	u->max_req = cl->max_requests_per_conn;
	u->idle_ms = cl->idle_timeout_ms > 0 ? cl->idle_timeout_ms : 3600 * 1000;
	u->connecting = rc == 1;
	loop_io_init(&u->io, fd, u_on_io);
	loop_timer_init(&u->timer, u_on_timer);
	loop_timer_init(&u->kick, u_on_kick);
	STAT_INC(w->st.ucx_total);
	STAT_INC(w->st.ucx_active);
	if (cl->tls_mode != CLUSTER_TLS_DISABLE) {
		struct tls_verify_names names;

		memset(&names, 0, sizeof(names));
		if (cl->nsans) {
			names.sans = (const char *const *)cl->sans;
			names.nsans = cl->nsans;
		} else if (cl->verify_host_auto) {
			names.hostname = st->host;
		}
		u->tls = tls_client_new(cl->tls_ctx, fd, sni, &names);
		tls_client_resume(u->tls, w->sess, &st->ep);
	}
	loop_io_add(w->loop, &u->io, LOOP_READ | LOOP_WRITE);
	loop_timer_arm(w->loop, &u->timer,
	               (uint64_t)(cl->connect_timeout_ms > 0 ? cl->connect_timeout_ms : 10000));
	st_send_head(st);
	if (d_forward_body(d) < 0)
		return;
	if (!u->connecting)
		u_on_connected(u);
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

struct hdr_ctx {
	const struct h1_msg *m;
	const char *buf;
};

static bool route_header_cb(void *ctx, const char *name, const char **v, size_t *vlen)
{
	struct hdr_ctx *hc = ctx;
	int i = h1_header_find(hc->m, hc->buf, name, 0);

	if (i < 0)
		return false;
	*v = hc->buf + hc->m->headers[i].value.off;
	*vlen = hc->m->headers[i].value.len;
	return true;
}

/* ---- sidecar: destinations, passthrough, tunnels ---- */

static void st_set_ep(struct stream *st, const struct sock_addr *a, uint16_t port)
{
	st->ep = *a;
	if (port)
		sock_addr_set_port(&st->ep, port);
	sock_addr_str(&st->ep, st->ep_str, sizeof(st->ep_str));
}

/* The port a sidecar request is routed on: the original destination's when the
 * connection was redirected, else the authority's (the URL's for a proxy request, Host's
 * otherwise), else the scheme's default. */
static uint16_t st_sidecar_port(const struct stream *st)
{
	const struct dconn *d = st->d;
	const char *b = d->in;
	struct h1_span a;
	char host[256];
	uint16_t port, dflt = 80;

	if (st->req.target_form == H1_TF_ABSOLUTE) {
		a = st->req.authority;
		if (st->req.scheme.len == 5 && h1_name_eq(b + st->req.scheme.off, 5, "https", 5))
			dflt = 443;
	} else if (d->redirected) {
		return sock_addr_port(&d->odst);
	} else if (st->req.host_idx >= 0) {
		a = st->req.headers[st->req.host_idx].value;
	} else {
		return dflt;
	}
	if (sidecar_split_authority(b + a.off, a.len, host, sizeof(host), &port, dflt) < 0)
		return dflt;
	return port;
}

/* The request leaves this connection's HTTP processing without a log line of its own
 * (a tunnel takes over and logs it). */
static void st_detach(struct stream *st)
{
	struct worker *w = st->d->w;

	loop_timer_cancel(w->loop, &st->timeout);
	st->active = false;
	STAT_DEC(w->st.rq_active);
	if (st->snap) {
		snap_unref(st->snap);
		st->snap = NULL;
	}
}

/* Gives the downstream socket to a tunnel; the connection is freed at the next settle
 * point without closing it. */
static void d_handoff(struct dconn *d, struct tun_req *r)
{
	r->fd = d->io.fd;
	loop_io_del(d->w->loop, &d->io);
	d->io.fd = -1;
	d->dead = true;
	tun_start(d->w, r);
}

/* A redirected connection that is not HTTP (a TLS ClientHello, whose SNI is given, or
 * anything else): an opaque tunnel, to the cluster of its SNI and original port when the
 * registry has one, else as the outbound traffic policy says. A connection made to the
 * capture port directly has no destination to pass it to: it is closed. */
static void d_tcp_handoff(struct dconn *d, const char *sni)
{
	struct worker *w = d->w;
	struct tun_req r;
	uint16_t port = sock_addr_port(&d->odst);

	d->sniffing = false;
	if (!d->redirected) {
		log_debug("fwd", "%s: not HTTP and not redirected: no destination; closing",
		          d->remote_s);
		d->dead = true;
		return;
	}
	memset(&r, 0, sizeof(r));
	r.snap = w->snap;
	r.cl = sni && sni[0] ? sidecar_tcp_cluster(w->snap, sni, port) : NULL;
	if (!r.cl)
		r.cl = w->proxy->outbound_policy == PROXY_REGISTRY_ONLY ? &sidecar_blackhole_cluster
		                                                         : &sidecar_passthrough_cluster;
	r.dst = &d->odst;
	r.sni = sni;
	r.local_s = d->local_s;
	r.remote_s = d->remote_s;
	r.initial = d->in;
	r.ninitial = d->in_len;
	r.start_wall_ms = d->accept_wall_ms;
	r.start_ms = d->accept_ms;
	d_handoff(d, &r);
}

/* Classifies the first bytes of a capture-listener connection. Returns 0 when it is
 * HTTP (go on parsing), 1 when more bytes are needed or the connection was handed to a
 * tunnel. */
static int d_sniff(struct dconn *d)
{
	char sni[256];
	int rc;

	switch (sidecar_classify(d->in, d->in_len)) {
	case SIDECAR_NEED_MORE:
		return 1;
	case SIDECAR_PROTO_HTTP:
		d->sniffing = false;
		return 0;
	case SIDECAR_PROTO_TLS:
		rc = sidecar_sniff_sni((const unsigned char *)d->in, d->in_len, sni, sizeof(sni));
		if (rc == 1)
			return 1;
		d_tcp_handoff(d, rc == 0 ? sni : NULL);
		return 1;
	case SIDECAR_PROTO_OPAQUE:
	default:
		d_tcp_handoff(d, NULL);
		return 1;
	}
}

/* CONNECT host:port at the sidecar: a tunnel to the registry's cluster for host:port,
 * else as the outbound traffic policy says. */
static void st_sidecar_connect(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	const char *b = d->in;
	struct tun_req r;
	char host[256], authority[300], ua[256];
	struct alog_str uas = req_header(st, "user-agent");
	uint16_t port;

	if (sidecar_split_authority(b + st->req.target.off, st->req.target.len, host, sizeof(host),
	                            &port, 0) < 0 || port == 0) {
		st->resp_close = true;
		st_local_reply(st, 400, ALOG_F_DPE, "http1.invalid_url", "CONNECT needs host:port");
		return;
	}
	memset(&r, 0, sizeof(r));
	r.cl = sidecar_tcp_cluster(st->snap, host, port);
	if (!r.cl && w->proxy->outbound_policy == PROXY_REGISTRY_ONLY) {
		STAT_INC(w->st.blackhole);
		st->cl = &sidecar_blackhole_cluster;
		st->route = &sidecar_block_all_route;
		st->resp_close = true;
		st_local_reply(st, 502, 0, "direct_response", NULL);
		return;
	}
	if (!r.cl) {
		r.cl = &sidecar_passthrough_cluster;
		r.route_name = sidecar_allow_any_route.name;
	}
	snprintf(authority, sizeof(authority), "%.*s", (int)st->req.target.len, b + st->req.target.off);
	snprintf(ua, sizeof(ua), "%.*s", (int)uas.len, uas.p ? uas.p : "");
	r.name = host;
	r.port = port;
	r.local_s = d->local_s;
	r.remote_s = d->remote_s;
	/* Bytes the client sent right after the head (an eager TLS ClientHello). */
	r.initial = d->in + d->in_pos;
	r.ninitial = d->in_len - d->in_pos;
	r.connect = true;
	r.authority = authority;
	r.user_agent = ua;
	r.request_id = st->reqid;
	r.protocol = st->req.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
	r.start_wall_ms = st->start_wall_ms;
	r.start_ms = st->start_ms;
	/* The stream's reference goes with st_detach; r.cl belongs to this snapshot, so
	 * hold it until the tunnel has taken its own. */
	r.snap = snap_ref(st->snap);
	st_detach(st);
	d_handoff(d, &r);
	snap_unref(r.snap);
}

static void st_resolved(struct stream *st, const struct dns_result *res)
{
	struct dconn *d = st->d;

	if (res->status != DNS_OK || res->n == 0) {
		char body[300];

		STAT_INC(d->w->st.dns_fail);
		snprintf(body, sizeof(body), "dns resolution failure: %s: %s", st->host, res->reason);
		st_local_reply(st, 503, ALOG_F_DF, "dns_resolution_failure", body);
		return;
	}
	st_set_ep(st, &res->addrs[0].addr, st->port);
	/* A proxy request for the proxy itself would come back here forever. */
	if (!d->redirected && sock_addr_equal(&st->ep, &d->local)) {
		st->ep_str[0] = '\0';
		st_local_reply(st, 508, 0, "proxy_loop_detected", "the proxy's own address");
		return;
	}
	st_connect(st, false);
}

static void st_on_dns(void *arg, const struct dns_result *res)
{
	struct stream *st = arg;
	struct dconn *d = st->d;

	st->dnsq = NULL;
	st_resolved(st, res);
	d_settle(d);
}

/* An original-destination cluster (PassthroughCluster, resolution NONE): where the
 * connection was going when it was redirected, else the request's authority, resolved
 * on the worker. */
static void st_original_dst(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct dns_result res;
	char name[256];
	size_t n = strlen(st->host);

	if (d->redirected) {
		st_set_ep(st, &d->odst, 0);
		st_connect(st, false);
		return;
	}
	/* st->host keeps an IPv6 literal's brackets. */
	if (n >= 2 && st->host[0] == '[' && st->host[n - 1] == ']')
		snprintf(name, sizeof(name), "%.*s", (int)(n - 2), st->host + 1);
	else
		snprintf(name, sizeof(name), "%s", st->host);
	if (!w->dns) {
		st_local_reply(st, 503, ALOG_F_DF, "dns_resolution_failure", "no resolver");
		return;
	}
	if (dns_resolve_local(w->dns, name, AF_UNSPEC, &res) == 0) {
		st_resolved(st, &res);
		return;
	}
	st->dnsq = dns_resolve(w->dns, name, AF_UNSPEC, st_on_dns, st);
}

/* No route for the host on this port: ALLOW_ANY passes the request to where it was
 * going (PassthroughCluster, route allow_any), REGISTRY_ONLY answers 502
 * (BlackHoleCluster, route block_all), as Istio's sidecar does. */
static void st_sidecar_default(struct stream *st)
{
	struct worker *w = st->d->w;

	if (w->proxy->outbound_policy == PROXY_REGISTRY_ONLY) {
		STAT_INC(w->st.blackhole);
		st->cl = &sidecar_blackhole_cluster;
		st->route = &sidecar_block_all_route;
		st_local_reply(st, 502, 0, "direct_response", NULL);
		return;
	}
	STAT_INC(w->st.passthrough);
	st->cl = &sidecar_passthrough_cluster;
	st->route = &sidecar_allow_any_route;
	st_original_dst(st);
}

/* Picks the endpoint of st->cl and connects. This is where the upstream's transport is
 * chosen (st_connect: HTTP/1.1 with keep-alive, over TLS when the cluster says so); an
 * HTTP/2 upstream takes over from here, with the same routing and endpoint. */
static void st_pick_endpoint(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct cluster_eps *eps;
	const struct cluster_ep *ep;

	if (d->sidecar && st->cl->discovery == CLUSTER_ORIGINAL_DST) {
		st_original_dst(st);
		return;
	}
	eps = cluster_eps_load(st->cl);
	if (st->cl->index < w->nrr)
		ep = cluster_pick(st->cl, eps, &w->rr[st->cl->index], NULL, worker_rand(w));
	else
		ep = cluster_pick(st->cl, eps, &w->rr[0], NULL, worker_rand(w));
	if (!ep) {
		if (atomic_load_explicit(&st->cl->dns_failed, memory_order_relaxed)) {
			STAT_INC(w->st.dns_fail);
			st_local_reply(st, 503, ALOG_F_DF, "dns_resolution_failure",
			               "dns resolution failure");
		} else {
			STAT_INC(w->st.no_healthy);
			st_local_reply(st, 503, ALOG_F_UH, "no_healthy_upstream", "no healthy upstream");
		}
		return;
	}
	st->ep = ep->addr;
	snprintf(st->ep_str, sizeof(st->ep_str), "%s", ep->str);
	st_connect(st, false);
}

/* Routes the request whose head was just parsed and starts the upstream exchange. */
static void st_begin(struct dconn *d)
{
	struct stream *st = &d->st;
	struct worker *w = d->w;
	const struct route_vhost *vh;
	const struct route_dest *dest;
	struct route_req rq;
	struct hdr_ctx hc = { &st->req, d->in };
	uint16_t port;
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

	if (st->req.method_id == H1_M_CONNECT) {
		if (d->sidecar) {
			st_sidecar_connect(st);
			return;
		}
		st->resp_close = true;
		st_local_reply(st, 405, 0, "method_not_allowed", "CONNECT is not served here");
		return;
	}
	if (!st->host[0]) {
		/* Only HTTP/1.0 gets here without a Host (the parser refuses HTTP/1.1 without
		 * one). Envoy, with HTTP/1.0 accepted and no default host, answers 400
		 * missing_host_header; routing on an empty host could also send the upstream an
		 * HTTP/1.1 request without Host. */
		st->resp_close = true;
		st_local_reply(st, 400, 0, "missing_host_header", NULL);
		return;
	}
	if (d->sidecar) {
		/* The sidecar's route table for the destination port (VirtualServices bound to
		 * mesh, ServiceEntry hosts); no vhost: the outbound traffic policy. */
		const struct route_table *t;

		st->port = port = st_sidecar_port(st);
		t = sidecar_table(st->snap, port);
		vh = t ? route_vhost_find(t, st->host, strlen(st->host)) : NULL;
		if (!vh) {
			st_sidecar_default(st);
			return;
		}
	} else {
		if (!d->lst || !d->lst->routes ||
		    !(vh = route_vhost_find(d->lst->routes, st->host, strlen(st->host)))) {
			STAT_INC(w->st.no_route);
			st_local_reply(st, 404, ALOG_F_NR, "route_not_found", NULL);
			return;
		}
		port = d->lst->port;
	}
	memset(&rq, 0, sizeof(rq));
	rq.method = d->in + st->req.method.off;
	rq.method_len = st->req.method.len;
	if (st->req.target_form == H1_TF_ABSOLUTE) {
		rq.path = d->in + st->req.path.off;
		rq.path_len = st->req.path.len;
		rq.authority = d->in + st->req.authority.off;
		rq.authority_len = st->req.authority.len;
	} else {
		rq.path = d->in + st->req.target.off;
		rq.path_len = st->req.target.len;
		if (st->req.host_idx >= 0) {
			rq.authority = d->in + st->req.headers[st->req.host_idx].value.off;
			rq.authority_len = st->req.headers[st->req.host_idx].value.len;
		}
	}
	rq.host = st->host;
	rq.host_len = strlen(st->host);
	rq.scheme = d->tls ? "https" : "http";
	rq.scheme_len = strlen(rq.scheme);
	rq.port = port;
	rq.header = route_header_cb;
	rq.header_ctx = &hc;
	st->route = route_select(vh, &rq);
	if (!st->route) {
		STAT_INC(w->st.no_route);
		st_local_reply(st, 404, ALOG_F_NR, "route_not_found", NULL);
		return;
	}
	if (st->route->redirect_code) {
		char loc[1024];
		char head[1400];
		int n;

		snprintf(loc, sizeof(loc), "%s://%s%s", rq.scheme,
		         st->route->redirect_authority ? st->route->redirect_authority : st->host,
		         st->route->redirect_uri ? st->route->redirect_uri : "/");
		st->code = st->route->redirect_code;
		st->details = "direct_response";
		n = snprintf(head, sizeof(head),
		             "HTTP/1.1 %d %s\r\nlocation: %s\r\ncontent-length: 0\r\n%s\r\n",
		             st->code, h1_status_reason(st->code), loc,
		             st->req_done && st->req.keep_alive ? "" : "connection: close\r\n");
		if (!st->req_done || !st->req.keep_alive)
			st->resp_close = true;
		d_send(d, head, (size_t)n);
		st->resp_started = st->resp_done = true;
		st_finish(st);
		return;
	}
	dest = route_pick_dest(st->route, worker_rand(w));
	if (!dest || !dest->cluster) {
		st_local_reply(st, 503, ALOG_F_NC, "cluster_not_found", "no cluster");
		return;
	}
	st->cl = dest->cluster;
	if (st->route->timeout_ms > 0)
		loop_timer_arm(w->loop, &st->timeout, (uint64_t)st->route->timeout_ms);
	st_pick_endpoint(st);
}

/* The exchange is over (answered, or failed after the response started). */
static void st_finish(struct stream *st)
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
	if (st->u) {
		struct uconn *u = st->u;

		reusable = st->resp_done && st->req_done && st->resp.keep_alive &&
		           !(st->flags & (ALOG_F_UC | ALOG_F_UPE | ALOG_F_UT)) && u->hs_done;
		st->u = NULL;
		u_release(u, reusable);
	}
	if (st->snap) {
		snap_unref(st->snap);
		st->snap = NULL;
	}
	if (st->resp_close || !st->resp_done || !st->req_done || w->draining || d->h2s)
		d->closing = true;
	if (d->read_paused && !d->closing) {
		d->read_paused = false;
		d_update_interest(d, iob_used(&d->out) > 0);
	}
	/* Drop the head; keep pipelined bytes that followed this request. */
	if (!d->closing) {
		size_t rest = d->in_len - d->in_pos;

		if (rest)
			memmove(d->in, d->in + d->in_pos, rest);
		d->in_len = rest;
		d->in_pos = 0;
	}
	d_flush(d);
	/* A pipelined request may already be waiting in d->in: start it on the next
	 * iteration (not by recursion: a client could pipeline thousands). */
	if (!d->closing && !d->dead && !d->in_process)
		loop_timer_arm(w->loop, &d->kick, 0);
}

/* ---- downstream ---- */

static void d_close(struct dconn *d)
{
	struct worker *w = d->w;
	struct stream *st = &d->st;
	bool complete = !st->active && st->resp_done && iob_used(&d->out) == 0 && !d->dead;

	if (st->active) {
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
		d->closing = true;
		st->active = false;
		loop_timer_cancel(w->loop, &st->timeout);
		STAT_DEC(w->st.rq_active);
		st_log(st);
		if (st->snap)
			snap_unref(st->snap);
		st->snap = NULL;
	}
	loop_timer_cancel(w->loop, &d->timer);
	loop_timer_cancel(w->loop, &d->kick);
	if (d->h2s) {
		/* A virtual connection: no socket, not in the worker's list. */
		h2d_vconn_gone(d->h2s, complete);
		if (d->snap)
			snap_unref(d->snap);
		free(d->in);
		iob_free(&d->out);
		free(d);
		return;
	}
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
	if (d->io.fd >= 0) {
		close(d->io.fd);      /* -1: handed over to a tunnel */
		worker_dcx_closed(w);
	}
	if (d->prev)
		d->prev->next = d->next;
	else
		w->dconns = d->next;
	if (d->next)
		d->next->prev = d->prev;
	if (d->snap)
		snap_unref(d->snap);
	free(d->in);
	iob_free(&d->out);
	w->nconns--;
	STAT_DEC(w->st.dcx_active);
	free(d);
}

static void d_on_timer(struct loop *loop, struct loop_timer *t)
{
	struct dconn *d = container_of(t, struct dconn, timer);

	(void)loop;
	if (d->sniffing && d->redirected)
		d_tcp_handoff(d, NULL);   /* silent (server-first protocol) or unrecognised */
	else if (!d->st.active)
		d->dead = true;   /* header read timeout or keep-alive idle */
	d_settle(d);
}

static void d_on_kick(struct loop *loop, struct loop_timer *t)
{
	struct dconn *d = container_of(t, struct dconn, kick);

	(void)loop;
	if (d->hs_done && !d->dead) {
		if (!d->st.active)
			d_process(d);
		if (!d->dead && !d->read_paused)
			d_read(d);
	}
	d_settle(d);
}

/* The one place a downstream connection is freed: when it is dead, or closing with
 * nothing left to send. */
static void d_settle(struct dconn *d)
{
	if (d->dead || (d->closing && !d->st.active && iob_used(&d->out) == 0))
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

/* Parses and starts requests while the connection has complete heads. */
static void d_process(struct dconn *d)
{
	struct worker *w = d->w;
	struct stream *st = &d->st;

	if (d->sniffing && !d->dead && d_sniff(d) != 0)
		return;
	d->in_process = true;
	while (!st->active && !d->closing && !d->dead && d->in_len > 0) {
		int rc;

		rc = h1_parse(&st->rp, d->in, d->in_len, &st->req);
		if (rc == H1_AGAIN) {
			if (d->in_len >= FWD_IN_MAX) {
				d->closing = true;
			}
			break;
		}
		/* A new request: adopt the worker's newest snapshot for it. */
		if (d->snap != w->snap) {
			const struct snap_listener *nl = snap_listener_for(w->snap, d->lst ? d->lst->port : 0);

			snap_unref(d->snap);
			d->snap = snap_ref(w->snap);
			d->lst = nl;
		}
		memset(&st->route, 0, sizeof(*st) - offsetof(struct stream, route));
		st->d = d;
		st->active = true;
		st->code = 0;
		st->ust = -1;
		st->start_wall_ms = wall_ms();
		st->start_ms = loop_now_ms(w->loop);
		st->snap = snap_ref(d->snap);
		loop_timer_init(&st->timeout, st_on_timeout);
		loop_timer_cancel(w->loop, &d->timer);
		STAT_INC(w->st.rq_active);
		d->nreq++;
		if (rc == H1_ERROR) {
			/* Answer what the parser says and close: the framing is unknowable. */
			memset(&st->req, 0, sizeof(st->req));
			st->req.host_idx = -1;
			/* Logged as the codec's protocol, as Envoy does ("- - HTTP/1.1"): the
			 * request's own version is not known for sure. */
			st->req.version_minor = 1;
			st->req_done = true;
			st->resp_close = true;
			snprintf(st->reqid, sizeof(st->reqid), "-");
			st_local_reply(st, st->rp.status, ALOG_F_DPE, "http1.codec_error", st->rp.reason);
			break;
		}
		d->in_pos = st->req.head_len;
		d->head_deadline = 0;
		h1_parser_init(&st->rp, true, 0);
		st_begin(d);   /* forwards the body bytes already read once connected */
	}
	d->in_process = false;
	if (!st->active && !d->closing && !d->dead) {
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
			free(d->in);
			d->in = NULL;
			d->in_cap = d->in_len = d->in_pos = 0;
			if (iob_used(&d->out) == 0)
				iob_free(&d->out);
			loop_timer_arm(w->loop, &d->timer, (uint64_t)w->proxy->idle_timeout_ms);
		}
	}
}

static void d_read(struct dconn *d)
{
	struct stream *st = &d->st;

	if (d->h2s) {
		/* Fed by fwd_h2.c: "reading" is forwarding body bytes it already gave us. */
		if (st->active && !st->req_done && st->u && !d->read_paused &&
		    d->in_pos < d->in_len)
			d_forward_body(d);
		return;
	}
	if (d->h2c)
		return;

	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n;

		if (d->read_paused || d->dead)
			return;
		n = io_read(d->io.fd, d->tls, &d->in, &d->in_len, &d->in_cap, FWD_IN_MAX);
		if (n == -2)
			return;
		if (n == -3) {
			/* Input full: a head this large was already refused by the parser (431), so
			 * this is body data waiting for the upstream: stop reading until it drains. */
			d->read_paused = true;
			d_update_interest(d, iob_used(&d->out) > 0);
			return;
		}
		if (n <= 0) {
			if (st->active) {
				st->flags |= ALOG_F_DC;
				st->details = "downstream_remote_disconnect";
			}
			d->dead = true;
			return;
		}
		if (st->active && !st->req_done) {
			if (st->u && d_forward_body(d) < 0)
				return;
		} else if (!st->active) {
			d_process(d);
		}
	}
	/* Fairness: after a burst, let the loop serve others. OpenSSL may hold decrypted
	 * bytes that no socket event will announce, so come back on the next iteration. */
	loop_timer_arm(d->w->loop, &d->kick, 0);
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
		snprintf(d->sni, sizeof(d->sni), "%s", sni);
	{
		/* The mesh peer (ISTIO_MUTUAL): its SPIFFE identity was checked against the
		 * server's subjectAltNames during the handshake; the access log format has no
		 * field for it, so it goes to the debug log and a counter. */
		char id[512];

		if (tls_peer_uri_san(d->tls, id, sizeof(id))) {
			STAT_INC(d->w->st.dcx_peer_identity);
			log_debug("fwd", "downstream %s: peer identity %s (SNI %s)", d->remote_s, id,
			          d->sni[0] ? d->sni : "-");
		}
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

static void d_on_io(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct dconn *d = container_of(io, struct dconn, io);

	(void)loop;
	if (d->h2c) {
		if (h2d_on_io(d->h2c, ev) < 0)
			d->dead = true;
	} else if (!d->hs_done) {
		d_handshake(d);
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

	d->w = w;
	d->snap = snap_ref(w->snap);
	d->lst = sl;
	d->remote = *peer;
	sock_addr_str(peer, d->remote_s, sizeof(d->remote_s));
	sock_addr_ip_str(peer, d->remote_ip, sizeof(d->remote_ip));
	if (sock_local_addr(fd, &d->local) == 0)
		sock_addr_str(&d->local, d->local_s, sizeof(d->local_s));
	if (l->sidecar_outbound) {
		/* Redirected by iptables: conntrack knows where the connection was going (and
		 * the access log shows that as the downstream local address, as Envoy's
		 * original_dst listener filter does). Made to the capture port directly: no
		 * original destination; an HTTP proxy client. */
		d->sidecar = true;
		d->sniffing = true;
		d->accept_wall_ms = wall_ms();
		d->accept_ms = loop_now_ms(w->loop);
		if (sock_original_dst(fd, &d->odst) == 0 && !sock_addr_equal(&d->odst, &d->local) &&
		    !sock_addr_equal(&d->odst, &l->addr)) {
			d->redirected = true;
			sock_addr_str(&d->odst, d->local_s, sizeof(d->local_s));
			first_timeout = SIDECAR_DETECT_MS;
		}
	}
	loop_io_init(&d->io, fd, d_on_io);
	loop_timer_init(&d->timer, d_on_timer);
	loop_timer_init(&d->kick, d_on_kick);
	h1_parser_init(&d->st.rp, true, 0);
	loop_timer_init(&d->st.timeout, st_on_timeout);
	d->st.d = d;
	d->hs_done = true;
	/* The listener's context dispatches on SNI to the matching Gateway server's. */
	if (sl && sl->tls && sl->ctx) {
		d->tls = tls_server_new(sl->ctx, fd);
		d->hs_done = false;
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
	if (!sl && !d->sidecar) {
		/* The listener went away with a reload between accept and now. */
		d_close(d);
	}
}

/* Draining: idle connections close now; busy ones close after their response. */
void fwd_drain(struct worker *w)
{
	struct dconn *d = w->dconns, *next;

	for (; d; d = next) {
		next = d->next;
		if (d->h2c)
			h2d_drain(d->h2c);
		else if (!d->st.active)
			d_close(d);
		else
			d->closing = true;
	}
}

static void pool_close_cb(struct pool_link *l, void *arg)
{
	struct uconn *u = container_of(l, struct uconn, link);

	(void)arg;
	u_close(u);
}

void fwd_pool_close_all(struct worker *w)
{
	pool_each(w->pool, pool_close_cb, NULL);
}

/* ---- HTTP/2 virtual connections (see fwd_h2.h) ---- */

struct dconn *fwd_vconn_new(struct dconn *d, struct h2ds *ds)
{
	struct dconn *v = xcalloc(1, sizeof(*v));

	v->w = d->w;
	v->snap = snap_ref(d->snap);
	v->lst = d->lst;
	v->local = d->local;
	v->remote = d->remote;
	memcpy(v->local_s, d->local_s, sizeof(v->local_s));
	memcpy(v->remote_s, d->remote_s, sizeof(v->remote_s));
	memcpy(v->remote_ip, d->remote_ip, sizeof(v->remote_ip));
	memcpy(v->sni, d->sni, sizeof(v->sni));
	v->h2s = ds;
	v->hs_done = true;
	loop_io_init(&v->io, -1, d_on_io);
	loop_timer_init(&v->timer, d_on_timer);
	loop_timer_init(&v->kick, d_on_kick);
	h1_parser_init(&v->st.rp, true, 0);
	loop_timer_init(&v->st.timeout, st_on_timeout);
	v->st.d = v;
	return v;
}

void fwd_vconn_input(struct dconn *v, const void *p, size_t n)
{
	struct stream *st = &v->st;

	if (v->in_cap - v->in_len < n) {
		size_t cap = v->in_cap ? v->in_cap : FWD_BUF_INIT;

		while (cap - v->in_len < n)
			cap *= 2;
		v->in = xrealloc(v->in, cap);
		v->in_cap = cap;
	}
	memcpy(v->in + v->in_len, p, n);
	v->in_len += n;
	if (!v->dead && !v->closing) {
		if (!st->active)
			d_process(v);
		else if (!st->req_done && st->u && !v->read_paused)
			d_forward_body(v);
	}
	loop_timer_cancel(v->w->loop, &v->timer);
	d_settle(v);
}

void fwd_vconn_writable(struct dconn *v)
{
	d_flush(v);
	d_settle(v);
}

void fwd_vconn_abort(struct dconn *v)
{
	v->dead = true;
	d_close(v);
}

void fwd_h2_conn_done(struct dconn *d)
{
	d_close(d);
}
