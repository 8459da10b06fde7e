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
 * relayed chunk by chunk as received. Request trailer fields are dropped (as Envoy's HTTP/1
 * codec does by default); response trailer fields are relayed to a client that asked for
 * them (TE: trailers) and to HTTP/2 streams (gRPC's grpc-status), minus framing, hop-by-hop
 * and Host fields (chunked_relay), and dropped otherwise. An HTTP/1.0 client gets a chunked
 * response's payload unframed, ended by closing the connection. A response delimited by
 * close is relayed the same way.
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
 * is posted as the connection's deferred task (loop.h: run after this batch of events, O(1))
 * rather than done by recursion.
 *
 * Circuit breaking and outlier detection (DestinationRule connectionPool and
 * outlierDetection): st_connect applies the cluster's limits before it takes or makes a
 * connection, and may queue the request instead; st_pick_endpoint skips ejected
 * endpoints. The semantics are in the "circuit breaking" section below and outlier.h.
 *
 * HTTP/2 downstream (gateway TLS listeners, ALPN "h2"; the sidecar's outbound port, h2c
 * with prior knowledge, d_start_h2c): fwd_h2.c runs the session on the
 * connection and gives each stream a virtual dconn (d->h2s, no socket) that is fed an
 * HTTP/1.1 rewrite of the stream's request and whose output fwd_h2.c turns back into
 * HEADERS/DATA (d_flush -> h2d_pull). Everything else in this file is unchanged for them;
 * see fwd_h2.h.
 *
 * Buffers: each connection has an input buffer (head + body bytes as read) and an output
 * buffer (bytes not yet accepted by the socket). Writes are attempted at once; LOOP_WRITE
 * interest is only registered when a write would block, so the common request costs no
 * epoll_ctl. */
#include "proxy/authz.h"
#include "proxy/worker.h"
#include "proxy/fwd.h"
#include "proxy/cbreak.h"
#include "proxy/fwd_h2.h"
#include "proxy/l4fwd.h"
#include "proxy/linger.h"
#include "proxy/up_h2.h"
#include "proxy/pool.h"
#include "proxy/overload.h"
#include "proxy/sidecar.h"
#include "proxy/tunnel.h"
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

#define FWD_BUF_INIT    16384
#define FWD_HIGH_WATER  (256 * 1024)
#define FWD_IN_MAX      (H1_MAX_HEAD + 64 * 1024)
#define FWD_KEY_MAX     (20 + SOCK_ADDR_STRLEN + 2 * 255 + 4)   /* pool keys */


struct iobuf {
	char *p;
	size_t off, len, cap;           /* data is p[off .. len) */
};

struct uconn;
struct dconn;

/* Where a request stands with its cluster's circuit breakers (st_cb_set keeps the
 * cluster's counters in step). */
enum st_cb {
	ST_CB_NONE,                     /* not counted */
	ST_CB_QUEUED,                   /* waiting in the cluster's queue: pending */
	ST_CB_WOKEN,                    /* taken off the queue, retries on its timer: pending */
	ST_CB_CONNECTING,               /* on a connection still connecting: pending, request */
	ST_CB_ACTIVE,                   /* on a ready connection: request */
};

struct stream {
	struct dconn *d;
	struct stream *next_free;       /* in the worker's free list */
	struct uconn *u;
	struct snap *snap;              /* reference held for the request's lifetime */
	/* The route's rewrite.uri / rewrite.authority applied to this request (NULL: none).
	 * Allocated only for routes that rewrite; before `req` so st_get zeroes them. */
	char *rw_path, *rw_auth;
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
	/* Circuit breaking (cbreak.h): the cluster's state on this worker (a reference, from
	 * the first connection attempt to the end of the request), where the request stands,
	 * its place in the queue, and the task that retries it when a slot frees up. */
	struct cb_cluster *cc;
	enum st_cb cb;
	struct cb_link cb_wait;
	struct loop_task cb_wake;
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
	bool rd_drained;                /* d_read's last read left the socket and OpenSSL empty */
	struct loop_task task;          /* deferred work, after this batch of events (loop.h) */
	struct loop_timer peek_retry;   /* d_peek: look at the ClientHello again */
	struct sock_addr local, remote;
	char local_s[SOCK_ADDR_STRLEN], remote_s[SOCK_ADDR_STRLEN], remote_ip[SOCK_ADDR_STRLEN];
	char *sni;                      /* the client's SNI (TLS listeners), NULL if none */
	bool mesh_sniff;                /* plain listener with a mesh_ctx: TLS or not, unread */
	/* The client's identity (mutual TLS): the verified certificate's URI SAN, or NULL.
	 * AuthorizationPolicy's principal is the same fact without "spiffe://" (d_principal). */
	char *peer_id;
	char *in;
	size_t in_len, in_cap, in_pos; /* in_pos: bytes of in already consumed */
	struct iobuf out;
	/* The request being parsed or served; NULL while the connection is idle (a stream is
	 * about 5 KiB, two parsed heads: 10,000 idle keep-alive connections should not hold
	 * 50 MiB of them, so they come from the worker's free list per busy period). */
	struct stream *st;
	uint64_t nreq;
	uint64_t head_deadline;         /* loop ms by which the pending head must be whole; 0: none */
	/* Sidecar capture listener: the first bytes decide what the connection is (see
	 * sidecar.h); redirected connections know where they were going (odst). */
	bool sidecar;
	bool sniffing;
	bool redirected;
	/* A gateway port with PASSTHROUGH and terminating servers: the ClientHello is peeked
	 * at (d_peek) before anything is read, then passed through or terminated. */
	bool peek;
	struct sock_addr odst;
	int64_t accept_wall_ms;
	uint64_t accept_ms;
	uint64_t quiet_ms;              /* loop ms since when it has had no request in progress */
	/* HTTP/2 (fwd_h2.h): h2c on a connection that negotiated h2; h2s on the virtual
	 * connection of one of its streams (no socket, not in the worker's list). */
	struct h2d *h2c;
	struct h2ds *h2s;
	struct dconn *next, *prev;
};

struct uconn {
	struct loop_io io;
	struct loop_timer timer;        /* connect timeout, then idle timeout */
	struct loop_task task;          /* deferred read (back-pressure over, h2 stream event) */
	struct pool_link link;
	struct worker *w;
	struct tls_conn *tls;
	bool connecting, hs_done;
	bool read_paused;
	struct stream *st;
	char *in;
	size_t in_len, in_cap, in_pos;
	struct iobuf out;
	char key[FWD_KEY_MAX];
	size_t keylen;
	uint32_t nreq;
	uint32_t max_req;
	int64_t idle_ms;
	char local_s[SOCK_ADDR_STRLEN];
	/* HTTP/2 upstream (up_h2.h): this uconn is virtual (no socket, no TLS, never pooled)
	 * and its request is a stream on one of up_h2.c's connections. */
	struct uh2s *h2;
	struct cb_cluster *cc;          /* the cluster it counts against (a reference) */
	struct cb_link cb_idle;         /* in cc->idle while pooled */
	/* What it was made under (pool.h): closed instead of pooled once that is gone. */
	uint64_t conn_id, ident;
	bool draining;                  /* counted in the cluster's draining gauge */
	struct uconn *all_next, *all_prev;   /* in w->uconns (socket uconns only) */
	struct hstats_host *hs;         /* its endpoint's counters (hstats.h), or NULL */
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
static int d_forward_body(struct dconn *d);
static void st_h2_fallback(struct stream *st);
static void d_on_timer(struct loop *loop, struct loop_timer *t);
static void d_peek(struct dconn *d);
static void d_handshake(struct dconn *d);
static void st_on_timeout(struct loop *loop, struct loop_timer *t);
static void st_on_wake(struct loop *loop, struct loop_task *t);
static void cc_kick(struct worker *w, struct cb_cluster *cc);
static void st_cb_end(struct stream *st);
static void st_cb_set(struct stream *st, enum st_cb to);
static void st_up_ready(struct stream *st);
static void st_od(struct stream *st, enum od_result r, int code);

/* ---- streams ---- */

/* The client's AuthorizationPolicy principal: its SPIFFE id without "spiffe://", NULL
 * when it presented none (or a URI SAN of another scheme). */
static const char *d_principal(const struct dconn *d)
{
	return d->peer_id && strncmp(d->peer_id, "spiffe://", 9) == 0 ? d->peer_id + 9 : NULL;
}

/* True while d has a request in progress. */
static inline bool d_busy(const struct dconn *d)
{
	return d->st && d->st->active;
}

#define FWD_ST_FREE_MAX 256     /* streams a worker keeps for reuse */
#define FWD_VC_FREE_MAX 256     /* virtual dconns and uconns (HTTP/2 streams), each */

/* Clears the per-request part of st (everything from route on) for a new request. */
static void st_reset(struct stream *st)
{
	free(st->rw_path);
	free(st->rw_auth);
	st->rw_path = st->rw_auth = NULL;
	memset(&st->route, 0, sizeof(*st) - offsetof(struct stream, route));
	loop_timer_init(&st->timeout, st_on_timeout);
	loop_task_init(&st->cb_wake, st_on_wake);
}

/* A stream for d's requests, from the worker's free list when it has one: ready for
 * h1_parse (parser reset, no upstream, no snapshot, not active). */
static struct stream *st_get(struct dconn *d)
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
static void st_put(struct dconn *d)
{
	struct worker *w = d->w;
	struct stream *st = d->st;

	if (!st)
		return;
	d->st = NULL;
	free(st->rw_path);
	free(st->rw_auth);
	st->rw_path = st->rw_auth = NULL;
	if (w->nst_free >= FWD_ST_FREE_MAX) {
		free(st);
		return;
	}
	st->next_free = w->st_free;
	w->st_free = st;
	w->nst_free++;
}

/* ---- small helpers ---- */

/* ---- I/O buffers ----
 * Connections take their buffers when they turn busy and give them back when they go idle
 * (an idle connection keeps none: scenario 4's memory); a buffer grows by doubling from
 * FWD_BUF_INIT. Through malloc that was a malloc and a free per buffer per request, and
 * glibc trimming the thread's arena (madvise, then page faults: 6% of the CPU with 16 KiB
 * responses, whose head and body outgrow one buffer) every few requests. Each worker
 * thread keeps free buffers of the smallest sizes instead (FWD_BUF_MIN, doubling, up to
 * four times FWD_BUF_INIT), up to FWD_BUF_CACHE_BYTES. Sockets start at FWD_BUF_INIT; an
 * HTTP/2 stream's virtual connection starts its input at FWD_BUF_MIN (it holds one request
 * head, and a thousand open streams should not hold 16 MiB of mostly empty buffers).
 * The cache is thread-local rather than in struct worker because buffers are taken and
 * given back deep in the I/O helpers, which know only the buffer; a thread that never
 * called fwd_buf_cache_start (the main thread freeing connections at shutdown) keeps no
 * cache and frees as malloc would. */
#define FWD_BUF_MIN         2048
#define FWD_BUF_CLASSES     6                  /* FWD_BUF_MIN << 0 .. 5 (2 KiB .. 64 KiB) */
#define FWD_BUF_CACHE_BYTES (1024 * 1024)
#define FWD_BUF_CACHE_SLOTS (FWD_BUF_CACHE_BYTES / FWD_BUF_MIN)

/* Under AddressSanitizer a cached buffer is poisoned, so that a use after buf_release is
 * still reported as it would be after free(). The free buffers are listed in arrays, not
 * linked through their own first bytes, for the same reason. */
#if defined(__SANITIZE_ADDRESS__)
#define FWD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FWD_ASAN 1
#endif
#endif
#ifdef FWD_ASAN
#include <sanitizer/asan_interface.h>
#define buf_poison(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define buf_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define buf_poison(p, n)   ((void)(p), (void)(n))
#define buf_unpoison(p, n) ((void)(p), (void)(n))
#endif

static _Thread_local struct {
	void *free[FWD_BUF_CLASSES][FWD_BUF_CACHE_SLOTS];
	unsigned n[FWD_BUF_CLASSES];
	size_t bytes;
	bool on;
} buf_cache;

void fwd_buf_cache_start(void)
{
	buf_cache.on = true;
}

void fwd_buf_cache_stop(void)
{
	for (int c = 0; c < FWD_BUF_CLASSES; c++) {
		while (buf_cache.n[c]) {
			void *p = buf_cache.free[c][--buf_cache.n[c]];

			buf_unpoison(p, (size_t)FWD_BUF_MIN << c);
			free(p);
		}
	}
	buf_cache.bytes = 0;
	buf_cache.on = false;
}

/* The cache's class for a buffer of cap bytes, or -1 when such buffers are not cached. */
static int buf_class(size_t cap)
{
	if (cap < FWD_BUF_MIN || cap > ((size_t)FWD_BUF_MIN << (FWD_BUF_CLASSES - 1)) ||
	    (cap & (cap - 1)))
		return -1;
	return __builtin_ctzll((unsigned long long)(cap / FWD_BUF_MIN));
}

/* A buffer of cap bytes (any size; cached sizes come from the cache when it has one). */
static void *buf_alloc(size_t cap)
{
	int c = buf_class(cap);
	void *p;

	if (c < 0 || !buf_cache.n[c])
		return xmalloc(cap);
	p = buf_cache.free[c][--buf_cache.n[c]];
	buf_cache.bytes -= cap;
	buf_unpoison(p, cap);
	return p;
}

/* Gives back p (NULL allowed), a buffer of cap bytes from buf_alloc or buf_grow. */
static void buf_release(void *p, size_t cap)
{
	int c = buf_class(cap);

	if (!p)
		return;
	/* bytes bounds the slots too: FWD_BUF_CACHE_SLOTS buffers of the smallest size fill
	 * FWD_BUF_CACHE_BYTES. */
	if (c < 0 || !buf_cache.on || buf_cache.bytes + cap > FWD_BUF_CACHE_BYTES) {
		free(p);
		return;
	}
	buf_poison(p, cap);
	buf_cache.free[c][buf_cache.n[c]++] = p;
	buf_cache.bytes += cap;
}

/* p (cap bytes, NULL allowed) replaced by a buffer of ncap bytes holding its first keep
 * bytes (keep <= ncap); p is given back. */
static void *buf_grow(void *p, size_t cap, const void *keep_from, size_t keep, size_t ncap)
{
	void *np = buf_alloc(ncap);

	if (keep)
		memcpy(np, keep_from, keep);
	buf_release(p, cap);
	return np;
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
			b->p = buf_grow(b->p, b->cap, b->p + b->off, b->len - b->off, cap);
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
	buf_release(b->p, b->cap);
	memset(b, 0, sizeof(*b));
}

/* Heads are built straight into the output buffers, piece by piece: no printf on the
 * request path (it was a tenth of the CPU per request). */
#define IOB_LIT(b, lit) iob_append((b), (lit), sizeof(lit) - 1)

static void iob_adds(struct iobuf *b, const char *s)
{
	iob_append(b, s, strlen(s));
}

/* Writes v in decimal at out (room for 20 digits); returns the length. */
static size_t u64_dec(char *out, uint64_t v)
{
	char t[20];
	size_t n = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = t[n - 1 - i];
	return n;
}

static void iob_addu(struct iobuf *b, uint64_t v)
{
	char t[20];

	iob_append(b, t, u64_dec(t, v));
}

/* "name: value\r\n" lines of a head. */
static void iob_field(struct iobuf *b, const char *name, size_t nlen, const char *v,
                      size_t vlen)
{
	iob_append(b, name, nlen);
	IOB_LIT(b, ": ");
	iob_append(b, v, vlen);
	IOB_LIT(b, "\r\n");
}

static void iob_field_s(struct iobuf *b, const char *name, const char *v)
{
	iob_field(b, name, strlen(name), v, strlen(v));
}

static void iob_field_u(struct iobuf *b, const char *name, uint64_t v)
{
	iob_adds(b, name);
	IOB_LIT(b, ": ");
	iob_addu(b, v);
	IOB_LIT(b, "\r\n");
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
		buf_release(b->p, b->cap);
		b->p = NULL;
		b->cap = 0;
	}
	return 0;
}

/* One read from the transport into p[0 .. n): bytes (> 0), 0 at EOF, < 0 (not -2) on
 * error, -2 when nothing is available now; *drained as io_read says. */
static ssize_t io_read_once(int fd, struct tls_conn *tls, char *p, size_t n, bool *drained)
{
	ssize_t r;

	if (tls) {
		r = tls_read(tls, p, n);
		if (r == TLS_WANT_READ || r == TLS_WANT_WRITE)
			return -2;
		if (drained && r > 0 && tls_read_drained(tls))
			*drained = true;
		return r;
	}
	do {
		r = read(fd, p, n);
	} while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -2;
	if (drained && r > 0 && (size_t)r < n)
		*drained = true;
	return r;
}

/* Reads into a growable input buffer. Returns bytes read (> 0), 0 on EOF, -1 on error,
 * -2 when nothing is available now. *drained (may be NULL) is set when a plain socket
 * gave less than asked: it is empty now, and reading again would only find EAGAIN (the
 * level-triggered loop says when more comes). */
static ssize_t io_read(int fd, struct tls_conn *tls, char **buf, size_t *len, size_t *cap,
                       size_t max, bool *drained)
{
	ssize_t n;

	if (drained)
		*drained = false;
	if (!*buf) {
		/* No buffer (an idle connection keeps none): read into the stack first, so that
		 * the read that finds nothing (the common one after a response) allocates
		 * nothing either. */
		char tmp[4096];

		n = io_read_once(fd, tls, tmp, sizeof(tmp), drained);
		if (n <= 0)
			return n;
		*cap = FWD_BUF_INIT < max ? FWD_BUF_INIT : max;
		*buf = buf_alloc(*cap);
		memcpy(*buf, tmp, (size_t)n);
		*len = (size_t)n;
		return n;
	}
	if (*cap - *len < 4096) {
		size_t ncap = *cap ? *cap * 2 : FWD_BUF_INIT;

		if (ncap > max)
			ncap = max;
		if (ncap <= *len)
			return -3;      /* full */
		*buf = buf_grow(*buf, *cap, *buf, *len, ncap);
		*cap = ncap;
	}
	n = io_read_once(fd, tls, *buf + *len, *cap - *len, drained);
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

/* n lower-case hex digits of v (the low 4n bits). */
static void hex_put(char *out, uint32_t v, int n)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = n - 1; i >= 0; i--, v >>= 4)
		out[i] = hex[v & 15];
}

static void gen_request_id(struct worker *w, char *out)
{
	uint32_t r[4];

	for (int i = 0; i < 4; i++)
		r[i] = worker_rand(w);
	/* RFC 4122 version 4 layout, as Envoy generates x-request-id:
	 * %08x-%04x-4%03x-%04x-%04x%08x of r[0], r[1] >> 16, r[1] & 0xfff,
	 * (r[2] >> 16 & 0x3fff) | 0x8000, r[2] & 0xffff, r[3]. */
	hex_put(out, r[0], 8);
	out[8] = '-';
	hex_put(out + 9, r[1] >> 16, 4);
	out[13] = '-';
	out[14] = '4';
	hex_put(out + 15, r[1] & 0xfff, 3);
	out[18] = '-';
	hex_put(out + 19, (r[2] >> 16 & 0x3fff) | 0x8000, 4);
	out[23] = '-';
	hex_put(out + 24, r[2] & 0xffff, 4);
	hex_put(out + 28, r[3], 8);
	out[36] = '\0';
}

/* ---- Istio's metrics (istats.h) ---- */

/* The worker's Envoy-style counters of cluster cl. */
static struct istats_cluster *cl_stats(struct worker *w, const struct cluster *cl)
{
	return istats_cluster(w->istats, cl->name);
}

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

static void st_log(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct alog_entry e;
	struct alog_str xff = req_header(st, "x-forwarded-for");
	char xffbuf[1024];

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
		ssize_t n = h2d_pull(d->h2s, d->st->req.method_id,
		                     d->out.p ? d->out.p + d->out.off : "", iob_used(&d->out));

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
	n = snprintf(head, sizeof(head),
	             "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\ncontent-type: text/plain\r\n"
	             "x-request-id: %s\r\n%s\r\n",
	             code, h1_status_reason(code), blen, st->reqid,
	             st->resp_close ? "connection: close\r\n" : "");
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
		d_update_interest(d, iob_used(&d->out) > 0);
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

static void u_close(struct uconn *u)
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
		d_settle(d);
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
				d_settle(d);
				return;
			}
		} else {
			u_flush(u);
		}
		if (st->u != u) {
			d_settle(d);
			return;
		}
	}
	if (u->st && !u->read_paused && u->hs_done)
		u_process(u);
	if (d)
		d_settle(d);
}

void fwd_uh2_kick(struct uconn *u)
{
	loop_task_post(u->w->loop, &u->task);
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
		d_settle(d);
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
	struct h2_header *h = c.hdrs;
	size_t n = 0;
	char xff[1024];
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

		if (gw && h1_name_eq(f->name.p, f->name.len, "x-forwarded-for", 15)) {
			snprintf(xff, sizeof(xff), "%.*s,%s", (int)f->value.len, f->value.p, d->remote_ip);
			continue;
		}
		if (gw && h1_name_eq(f->name.p, f->name.len, "x-forwarded-proto", 17))
			continue;
		if (st->rw_path && h1_name_eq(f->name.p, f->name.len, "x-envoy-original-path", 21))
			continue;
		h[n++] = *f;
	}
	{
		struct h2_header extra[5];
		size_t ne = 0;

		if (st->rw_path) {
			struct h1_span p = st->req.target_form == H1_TF_ABSOLUTE ? st->req.path
			                                                           : st->req.target;

			extra[ne++] = (struct h2_header){ { "x-envoy-original-path", 21 },
			                                  { b + p.off, p.len } };
		}

		if (gw) {
			extra[ne++] = (struct h2_header){ { "x-forwarded-for", 15 }, { xff, strlen(xff) } };
			extra[ne++] = (struct h2_header){ { "x-forwarded-proto", 17 },
			                                  { d->tls || d->h2s ? "https" : "http",
			                                    d->tls || d->h2s ? 5 : 4 } };
		}
		if (st->reqid_generated)
			extra[ne++] = (struct h2_header){ { "x-request-id", 12 },
			                                  { st->reqid, strlen(st->reqid) } };
		for (size_t i = 0; i < ne && n < sizeof(c.hdrs) / sizeof(c.hdrs[0]); i++)
			h[n++] = extra[i];
	}
	c.rq.headers = h;
	c.rq.nheaders = n;
	uh2_submit(u->h2, &c.rq);
	h2_from_h1_fini(&c);
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

	if (u->h2) {
		st_send_head_h2(st);
		return;
	}
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
	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *hd = &m->headers[i];

		if (hd->flags & H1_HF_DROP)
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
		iob_field(o, b + hd->name.off, hd->name.len, b + hd->value.off, hd->value.len);
	}
	if (st->rw_auth)
		iob_field_s(o, "host", st->rw_auth);
	else if (m->target_form == H1_TF_ABSOLUTE)
		iob_field(o, "host", 4, b + m->authority.off, m->authority.len);
	if (st->rw_path) {
		/* Envoy tells the upstream what the path was before the rewrite. */
		struct h1_span p = m->target_form == H1_TF_ABSOLUTE ? m->path : m->target;

		iob_field(o, "x-envoy-original-path", 21, b + p.off, p.len);
	}
	if (px->role == SNAP_ROLE_GATEWAY) {
		if (!have_xff)
			iob_field_s(o, "x-forwarded-for", d->remote_ip);
		if (d->tls || d->h2s)
			IOB_LIT(o, "x-forwarded-proto: https\r\n");
		else
			IOB_LIT(o, "x-forwarded-proto: http\r\n");
	}
	if (st->reqid_generated)
		iob_field_s(o, "x-request-id", st->reqid);
	if (m->has_te_trailers)
		IOB_LIT(o, "te: trailers\r\n");
	if (m->body == H1_BODY_LENGTH) {
		iob_field_u(o, "content-length", m->content_length);
	} else if (m->body == H1_BODY_CHUNKED) {
		IOB_LIT(o, "transfer-encoding: chunked\r\n");
	}
	IOB_LIT(o, "\r\n");
}

/* ---- chunked bodies ---- */

/* Relays the bytes one h1_chunked_feed call consumed (p[0 .. used), result rc, trailer
 * section span tr) unchanged, except the trailer section. Without keep_trailers its fields
 * are dropped and only its final CRLF is kept: Envoy's HTTP/1 codec drops trailers unless
 * enable_trailers is set (Istio does not set it). With keep_trailers (the response's
 * receiver asked for them with TE: trailers, or is an HTTP/2 stream: gRPC's grpc-status
 * and grpc-message travel there) the fields are relayed, minus those that must never be
 * acted on as trailers (framing, hop-by-hop, Host: RFC 9110 section 6.5.1). */
static void chunked_relay(struct iobuf *out, const char *p, size_t used, int rc,
                          struct h1_span tr, bool keep_trailers)
{
	struct h1_header f[H1_MAX_HEADERS];
	unsigned n = 0;

	if (rc != H1_OK || used == 0) {
		if (used)
			iob_append(out, p, used);
		return;
	}
	iob_append(out, p, tr.off);
	if (keep_trailers && tr.len > 2 &&
	    h1_parse_trailers(p + tr.off, tr.len, f, H1_MAX_HEADERS, &n) == 0) {
		const char *b = p + tr.off;

		for (unsigned i = 0; i < n; i++) {
			if ((f[i].flags & H1_HF_DROP) || f[i].id == H1_H_HOST ||
			    f[i].id == H1_H_TRAILER)
				continue;
			iob_field(out, b + f[i].name.off, f[i].name.len, b + f[i].value.off,
			          f[i].value.len);
		}
	}
	iob_append(out, "\r\n", 2);
}

/* ---- request body ---- */

/* Moves request body bytes from d->in to the upstream. Returns -1 if the stream ended
 * (error answered), else 0. */
static int d_forward_body(struct dconn *d)
{
	struct stream *st = d->st;
	struct uconn *u = st->u;

	if (u && u->h2 && !uh2_ready(u->h2)) {
		/* The stream is not open yet (the connection is being set up): leave the body
		 * where it is, so that a fallback to HTTP/1.1 can still send it all. */
		if (!d->h2s && !d->read_paused) {
			d->read_paused = true;
			d_update_interest(d, iob_used(&d->out) > 0);
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
				st_local_reply(st, 400, ALOG_F_DPE, "http1.invalid_chunk", "Bad Request");
				return -1;
			}
			if (u && u->h2) {
				if (rc == H1_DATA)
					iob_append(&u->out, p + data.off, data.len);
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
	struct iobuf *o = &d->out;

	IOB_LIT(o, "HTTP/1.1 ");
	iob_addu(o, (uint64_t)m->status);
	IOB_LIT(o, " ");
	iob_append(o, b + m->reason.off, m->reason.len);
	IOB_LIT(o, "\r\n");
	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *hd = &m->headers[i];

		if (hd->flags & H1_HF_DROP)
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
	if (st->ust >= 0)
		iob_field_u(o, "x-envoy-upstream-service-time", (uint64_t)st->ust);
	if (!st->req.keep_alive || d->w->draining)
		st->resp_close = true;
	if (st->resp_close)
		IOB_LIT(o, "connection: close\r\n");
	else if (st->req.version_minor == 0)
		IOB_LIT(o, "connection: keep-alive\r\n");
	IOB_LIT(o, "\r\n");
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
		size_t max = st->resp_started ? FWD_BUF_INIT * 4 : FWD_IN_MAX;
		ssize_t n = u->h2 ? uh2_read(u->h2, &u->in, &u->in_len, &u->in_cap, max)
		                  : io_read(u->io.fd, u->tls, &u->in, &u->in_len, &u->in_cap, max, NULL);

		if (n == -2 || n == -3)
			break;
		if (n == 0) {
			eof = true;
			break;
		}
		if (n == UH2_FALLBACK) {
			st_h2_fallback(st);
			return;
		}
		if (n < 0 && u->h2) {
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
		if (n < 0) {
			const char *reason = u->tls ? tls_conn_error(u->tls) : strerror(errno);

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
			return;
		}
		if (!st->resp_started) {
			int rc = h1_parse(&st->sp, u->in + u->in_pos, u->in_len - u->in_pos, &st->resp);

			if (rc == H1_AGAIN)
				continue;
			if (rc == H1_ERROR) {
				st->resp_close = true;
				u->nreq = UINT32_MAX - 1;  /* never pool */
				st_od(st, OD_CONNECT_FAIL, 0);
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
			st_od(st, OD_HTTP, st->code);
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
		if (iob_used(&d->out) > (d->h2s ? OVL_H2_STREAM_HIGH_WATER : FWD_HIGH_WATER)) {
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
	if (st->cl)
		STAT_INC(cl_stats(st->d->w, st->cl)->rq_timeout);
	if (st->u) {
		struct uconn *u = st->u;

		st_od(st, OD_TIMEOUT, 504);

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
	/* Envoy counts every reset but an overflow against the endpoint, retried or not. */
	st_od(st, OD_CONNECT_FAIL, 0);
	if (st->cc)
		st_cb_set(st, ST_CB_NONE);
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
static void cc_kick(struct worker *w, struct cb_cluster *cc)
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

static void st_on_wake(struct loop *loop, struct loop_task *t)
{
	struct stream *st = container_of(t, struct stream, cb_wake);
	struct dconn *d = st->d;

	(void)loop;
	if (st->active && st->cb == ST_CB_WOKEN)
		st_connect(st, false);
	d_settle(d);
}

/* The request leaves its cluster's books (it ended, or went to a tunnel). */
static void st_cb_end(struct stream *st)
{
	struct cb_cluster *cc = st->cc;

	if (!cc)
		return;
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
	st_local_reply(st, 503, ALOG_F_UO, "upstream_reset_before_response_started{overflow}",
	               "upstream connect error or disconnect/reset before headers. reset reason: overflow");
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
static void st_up_ready(struct stream *st)
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
static struct cb_cluster *st_cc(struct stream *st)
{
	if (!st->cc)
		st->cc = cb_get(st->d->w->cb, st->cl->name, st->d->w->snap);
	return st->cc;
}

/* Outlier detection: what happened on the request's endpoint (outlier.h). */
static void st_od(struct stream *st, enum od_result r, int code)
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
	 * st->ep_str is the endpoint as formatted once with st->ep. FWD_KEY_MAX holds the
	 * longest: 20 digits, an address, two names of at most 255 bytes, and separators. */
	const char *parts[3] = { st->ep_str, sni ? sni : "", vname ? vname : "" };
	size_t len = u64_dec(key, st->cl->conn_id);

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
static void st_h2_fallback(struct stream *st)
{
	struct uconn *u = st->u;

	st->u = NULL;
	u->st = NULL;
	u_close(u);
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
	u->h2 = uh2_attach(w->uh2, u, key, keylen, &tg, &reused);
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
	loop_io_init(&u->io, -1, u_on_io);
	loop_timer_init(&u->timer, u_on_timer);
	loop_task_init(&u->task, u_on_task);
	str_copy(st->up_local, sizeof(st->up_local), uh2_local(u->h2));
	st_send_head(st);
	/* A stream that failed at once (no socket) or is ready reports on the next turn. */
	fwd_uh2_kick(u);
	d_forward_body(d);   /* may end the request, and free u (cancelling its task) */
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

static void st_connect(struct stream *st, bool fresh)
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
	int fd, rc;

	/* A request for the proxy itself (its capture listener: it would come back here
	 * forever; its admin: the configuration handed to the application). */
	if (proxy_is_self(w->proxy, &st->ep)) {
		log_warn("fwd", "%s: refused: %s is this proxy's own listener or admin address",
		         d->remote_s, st->ep_str);
		st->resp_close = true;
		st_local_reply(st, 403, 0, "proxy_loop_detected", "the proxy's own address");
		return;
	}
	if (cl->tls_mode != CLUSTER_TLS_DISABLE) {
		if (!cl->tls_ctx) {
			STAT_INC(w->st.ucx_tls_fail[0]);
			STAT_INC(cl_stats(w, cl)->ssl_fail[0]);
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
		u_close(container_of(cc->idle.next, struct uconn, cb_idle));
	}
	if (!u && st->cb == ST_CB_NONE && cl->max_pending && cc->npending >= cl->max_pending) {
		st_overflow(st);
		return;
	}
	st_attempt_start(st);
	if (u) {
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
		st_send_head(st);
		d_forward_body(d);   /* flushes */
		return;
	}

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
	loop_io_init(&u->io, fd, u_on_io);
	loop_timer_init(&u->timer, u_on_timer);
	loop_task_init(&u->task, u_on_task);
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

/* AuthorizationPolicy (proxy/authz.h) for an HTTP request: true when it was refused
 * here (403 "RBAC: access denied", or 400 for a path not in normal form while path
 * policies are in force). */
static bool st_authz(struct stream *st, uint16_t port)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	const struct authz *a = st->snap->authz;
	struct hdr_ctx hc = { &st->req, d->in };
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
	rq.header = route_header_cb;
	rq.header_ctx = &hc;
	switch (authz_request(a, &rq, d->remote_s, st->reqid, &w->st, &details)) {
	case 0:
		return false;
	case 400:
		st->resp_close = true;
		st_local_reply(st, 400, 0, details, "Bad Request");
		return true;
	default:
		st_local_reply(st, 403, 0, details, "RBAC: access denied");
		return true;
	}
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
	st_cb_end(st);
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

/* d_handoff for a connection that was never HTTP: what it sent so far goes first, and
 * its log line starts at accept. */
static void d_handoff_read(struct dconn *d, struct tun_req *r)
{
	r->local_s = d->local_s;
	r->remote_s = d->remote_s;
	r->initial = d->in;
	r->ninitial = d->in_len;
	r->start_wall_ms = d->accept_wall_ms;
	r->start_ms = d->accept_ms;
	d_handoff(d, r);
}

/* The cluster of the ServiceEntry whose addresses cover dst, or NULL. */
static struct cluster *snap_addr_cluster(const struct snap *s, const struct sock_addr *dst)
{
	const struct snap_addr *a = snap_addr_find(s, dst);

	return a ? a->cl : NULL;
}

/* A redirected connection that is not HTTP (a TLS ClientHello, whose SNI is given, or
 * anything else): the tls:/tcp: routes bound to "mesh" first (l4fwd.c), else the cluster
 * of the ServiceEntry whose addresses cover its original destination, else an opaque
 * tunnel to the cluster of its SNI and original port when the registry has one, else as
 * the outbound traffic policy says; then the AuthorizationPolicies decide it as a
 * connection. A connection made to the capture port directly has no destination to pass
 * it to: it is closed. */
static void d_tcp_handoff(struct dconn *d, const char *sni, enum sni_status sst)
{
	struct worker *w = d->w;
	struct tun_req r;
	struct l4_req q;
	char ip[SOCK_ADDR_STRLEN];
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
	memset(&q, 0, sizeof(q));
	q.sni = sni && sni[0] ? sni : NULL;
	q.host = q.sni ? q.sni : sock_addr_ip_str(&d->odst, ip, sizeof(ip));
	q.port = port;
	q.dst = &d->odst;
	q.src = &d->remote;
	if (l4_route_sidecar(w, w->snap, &q, sst, &r) == 0) {
		/* A ServiceEntry address before the SNI: Istio's listener for that IP:port wins
		 * over the port's wildcard one, where the SNI is looked at. */
		r.cl = snap_addr_cluster(w->snap, &d->odst);
		if (!r.cl && q.sni)
			r.cl = sidecar_tcp_cluster(w->snap, sni, port);
		if (!r.cl)
			r.cl = w->proxy->outbound_policy == PROXY_REGISTRY_ONLY
			       ? &sidecar_blackhole_cluster : &sidecar_passthrough_cluster;
	}
	l4_authz(w, w->snap, &q, &d->remote, d->remote_s, d_principal(d), &r);
	r.dst = &d->odst;
	r.sni = sni;
	d_handoff_read(d, &r);
}

/* A connection on a gateway PASSTHROUGH port, once its ClientHello is read (or is not
 * one): routed by the listener's tls: routes (l4fwd.c), refused when none matches, then
 * decided by the AuthorizationPolicies on its SNI (no client certificate: the TLS is the
 * application's). */
static void d_gw_sni_handoff(struct dconn *d, const char *sni, enum sni_status sst)
{
	struct tun_req r;
	struct l4_req q;

	d->sniffing = false;
	memset(&r, 0, sizeof(r));
	memset(&q, 0, sizeof(q));
	q.sni = sst == SNI_OK ? sni : NULL;
	q.host = q.sni;
	q.port = d->lst->port;
	q.dst = &d->local;
	q.src = &d->remote;
	r.snap = d->snap;
	l4_route_gateway(d->w, d->lst, &q, sst, &r);
	l4_authz(d->w, d->snap, &q, &d->remote, d->remote_s, NULL, &r);
	r.sni = q.sni;
	d_handoff_read(d, &r);
}

/* Classifies the first bytes of a capture-listener connection, or reads the ClientHello
 * on a gateway PASSTHROUGH port. Returns 0 when it is HTTP (go on parsing), 1 when more
 * bytes are needed or the connection was handed to a tunnel. */
/* A plain connection whose client opened with the HTTP/2 preface (prior knowledge, as
 * gRPC clients do on plaintext): the same server session as ALPN h2 on TLS, fed what was
 * read while sniffing. */
static void d_start_h2c(struct dconn *d)
{
	d->sniffing = false;
	loop_timer_cancel(d->w->loop, &d->timer);
	d->h2c = h2d_new(d->w, d, &d->io, NULL);
	if (!d->h2c || h2d_input(d->h2c, d->in, d->in_len) < 0)
		d->dead = true;
	buf_release(d->in, d->in_cap);
	d->in = NULL;
	d->in_cap = d->in_len = d->in_pos = 0;
}

static int d_sniff(struct dconn *d)
{
	const struct snap_addr *a = d->redirected ? snap_addr_find(d->w->snap, &d->odst) : NULL;
	char sni[256];
	enum sni_status sst;

	if (!d->sidecar) {
		sst = sni_read((const unsigned char *)d->in, d->in_len, sni, sizeof(sni));
		if (sst == SNI_NEED_MORE)
			return 1;
		d_gw_sni_handoff(d, sni, sst);
		return 1;
	}

	if (a && a->opaque) {
		/* A ServiceEntry address on a TCP port: opaque, whatever the bytes look like. */
		d_tcp_handoff(d, NULL, SNI_NOT_TLS);
		return 1;
	}
	switch (h2_preface_check(d->in, d->in_len)) {
	case H2_PREFACE_MORE:
		return 1;
	case H2_PREFACE_YES:
		d_start_h2c(d);
		return 1;
	default:
		break;
	}
	switch (sidecar_classify(d->in, d->in_len)) {
	case SIDECAR_NEED_MORE:
		return 1;
	case SIDECAR_PROTO_HTTP:
		d->sniffing = false;
		return 0;
	case SIDECAR_PROTO_TLS:
		sst = sni_read((const unsigned char *)d->in, d->in_len, sni, sizeof(sni));
		if (sst == SNI_NEED_MORE)
			return 1;
		d_tcp_handoff(d, sst == SNI_OK ? sni : NULL, sst);
		return 1;
	case SIDECAR_PROTO_OPAQUE:
	default:
		if (!d->redirected) {
			/* Made to the capture port directly: an HTTP proxy client, whose malformed
			 * request line the parser answers with its 400 (there is nowhere to tunnel
			 * it to). */
			d->sniffing = false;
			return 0;
		}
		d_tcp_handoff(d, NULL, SNI_NOT_TLS);
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
	struct l4_req q;
	struct sock_addr ip;
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
	memset(&q, 0, sizeof(q));
	/* The CONNECT host stands for the SNI the client is about to send: a tls: route to
	 * the egress gateway takes it there, and the gateway routes on the real SNI. */
	q.sni = q.host = host;
	q.port = port;
	q.src = &d->remote;
	if (sock_addr_from_ip(host, port, &ip) == 0)
		q.dst = &ip;
	if (l4_route_sidecar(w, st->snap, &q, SNI_OK, &r) == 0) {
		r.cl = sidecar_tcp_cluster(st->snap, host, port);
		/* CONNECT to an IP: the ServiceEntry whose addresses cover it. */
		if (!r.cl && q.dst)
			r.cl = snap_addr_cluster(st->snap, &ip);
	}
	if (!r.cl && !r.fail_flags && w->proxy->outbound_policy == PROXY_REGISTRY_ONLY) {
		STAT_INC(w->st.blackhole);
		st->cl = &sidecar_blackhole_cluster;
		st->route = &sidecar_block_all_route;
		st->resp_close = true;
		st_local_reply(st, 502, 0, "direct_response", NULL);
		return;
	}
	if (!r.cl && !r.fail_flags) {
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
	st_connect(st, false);   /* refuses the proxy's own addresses */
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
		str_copy(name, sizeof(name), st->host);
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
	ep = cluster_pick_ex(st->cl, eps, &w->rr[st->cl->index < w->nrr ? st->cl->index : 0], NULL,
	                     worker_rand(w), excl);
	if (!ep) {
		if (!excl && atomic_load_explicit(&st->cl->dns_failed, memory_order_relaxed)) {
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

/* HTTP to a destination a mesh tcp: route takes (by host and port): the route decides,
 * not HTTP routing, so that a route to the gateway is never bypassed because the bytes
 * looked like HTTP. The connection's first request hands the whole connection to the
 * route's tunnel (what was read goes first); a later one, or a refusal, is answered 503.
 * Returns true when the request was taken. */
static bool st_sidecar_tcp_route(struct stream *st, uint16_t port)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct tun_req r;
	struct l4_req q;

	if (!st->snap->mesh_l4 || st->snap->mesh_l4->nroutes == 0)
		return false;
	memset(&q, 0, sizeof(q));
	memset(&r, 0, sizeof(r));
	q.host = st->host;
	q.port = port;
	q.dst = d->redirected ? &d->odst : NULL;
	q.src = &d->remote;
	q.http = true;
	if (l4_route_sidecar(w, st->snap, &q, SNI_NOT_TLS, &r) == 0)
		return false;
	if (r.fail_flags || d->nreq != 1 || d->h2s) {
		st->resp_close = true;
		st->cl = r.cl;
		if (r.fail_flags)
			st_local_reply(st, r.fail_code, r.fail_flags, r.fail_details, r.fail_reason);
		else
			st_local_reply(st, 503, ALOG_F_NR, "filter_chain_not_found",
			               "a tcp route takes this destination: only a connection's "
			               "first request can follow it");
		return true;
	}
	r.dst = q.dst;
	r.name = st->host;
	r.port = port;
	r.snap = snap_ref(st->snap);
	st_detach(st);
	d_handoff_read(d, &r);
	snap_unref(r.snap);
	return true;
}

/* Routes the request whose head was just parsed and starts the upstream exchange. */
static void st_begin(struct dconn *d)
{
	struct stream *st = d->st;
	struct worker *w = d->w;
	const struct route_vhost *vh;
	const struct route_dest *dest;
	struct route_req rq;
	struct hdr_ctx hc = { &st->req, d->in };
	const struct route_match *hit;
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
	if (ovl_refuse_request()) {     /* overload.h: over the heap budget, Envoy's 503 OM */
		st_local_reply(st, 503, ALOG_F_OM, "overload", "envoy overloaded");
		return;
	}

	if (st->req.method_id == H1_M_CONNECT) {
		if (d->h2s) {
			/* A stream has no socket to hand to a tunnel (no extended CONNECT). */
			st_local_reply(st, 405, 0, "method_not_allowed",
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
	/* AuthorizationPolicy runs before routing, as Envoy's RBAC filter does before the
	 * router: a refused request learns nothing about the routes. */
	port = d->sidecar ? st_sidecar_port(st) : d->lst ? d->lst->port : 0;
	if (st_authz(st, port))
		return;
	if (d->sidecar) {
		/* The sidecar's route table for the destination port (VirtualServices bound to
		 * mesh, ServiceEntry hosts); no vhost: the outbound traffic policy. */
		const struct route_table *t;

		st->port = port;
		if (st_sidecar_tcp_route(st, port))
			return;
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
	st->route = route_select_hit(vh, &rq, &hit);
	if (!st->route) {
		STAT_INC(w->st.no_route);
		st_local_reply(st, 404, ALOG_F_NR, "route_not_found", NULL);
		return;
	}
	if (st->route->redirect_code) {
		char loc[1024];
		char head[1400];
		int n;

		/* No uri: the request's own path (and query), as Envoy keeps it. */
		snprintf(loc, sizeof(loc), "%s://%s%.*s", rq.scheme,
		         st->route->redirect_authority ? st->route->redirect_authority : st->host,
		         st->route->redirect_uri ? (int)strlen(st->route->redirect_uri)
		                                 : (int)rq.path_len,
		         st->route->redirect_uri ? st->route->redirect_uri : rq.path);
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
	if (st->route->rewrite_uri || st->route->rewrite_authority)
		st_rewrite(st, hit, rq.path, rq.path_len);
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
	st_cb_end(st);
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
		loop_task_post(w->loop, &d->task);
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

static void d_close(struct dconn *d)
{
	struct worker *w = d->w;
	struct stream *st = d->st;
	bool complete = st && !st->active && st->resp_done && iob_used(&d->out) == 0 && !d->dead;

	if (st && st->active) {
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
	loop_timer_cancel(w->loop, &d->timer);
	loop_task_cancel(w->loop, &d->task);
	loop_timer_cancel(w->loop, &d->peek_retry);
	st_put(d);
	if (d->h2s) {
		/* A virtual connection: no socket, not in the worker's list. */
		h2d_vconn_gone(d->h2s, complete);
		if (d->snap)
			snap_unref(d->snap);
		buf_release(d->in, d->in_cap);
		free(d->sni);
		free(d->peer_id);
		iob_free(&d->out);
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
	if (d->snap)
		snap_unref(d->snap);
	buf_release(d->in, d->in_cap);
	free(d->sni);
	free(d->peer_id);
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
		d_tcp_handoff(d, NULL, SNI_NOT_TLS);   /* silent (server-first) or unrecognised */
	else if (!d_busy(d))
		d->dead = true;   /* header read timeout or keep-alive idle */
	d_settle(d);
}

static void d_on_peek_retry(struct loop *loop, struct loop_timer *t)
{
	struct dconn *d = container_of(t, struct dconn, peek_retry);

	(void)loop;
	if (!d->dead)
		d_peek(d);
	d_settle(d);
}

static void d_on_task(struct loop *loop, struct loop_task *t)
{
	struct dconn *d = container_of(t, struct dconn, task);

	(void)loop;
	if (d->hs_done && !d->dead) {
		if (!d_busy(d))
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
static void d_settle(struct dconn *d)
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

/* Parses and starts requests while the connection has complete heads. */
static void d_process(struct dconn *d)
{
	struct worker *w = d->w;
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
	if (!d_busy(d) && !d->closing && !d->dead) {
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

static void d_on_io(struct loop *loop, struct loop_io *io, unsigned ev)
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
	if (sock_local_addr(fd, &d->local) == 0)
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
		if (sock_original_dst(fd, &d->odst) == 0 && !sock_addr_equal(&d->odst, &d->local) &&
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
	while (w->dconns)
		d_close(w->dconns);
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

static void pool_sweep_cb(struct pool_link *l, void *arg)
{
	struct uconn *u = container_of(l, struct uconn, link);
	struct worker *w = arg;

	if (!pool_live_ok(w->live, u->conn_id, u->ident))
		u_close(u);
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

/* ---- HTTP/2 virtual connections (see fwd_h2.h) ---- */

struct dconn *fwd_vconn_new(struct dconn *d, struct h2ds *ds)
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
	v->sni = d->sni ? xstrdup(d->sni) : NULL;
	v->peer_id = d->peer_id ? xstrdup(d->peer_id) : NULL;
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
}

void fwd_vconn_input(struct dconn *v, const void *p, size_t n)
{
	struct stream *st = v->st;

	if (v->in_cap - v->in_len < n) {
		size_t cap = v->in_cap ? v->in_cap : FWD_BUF_MIN;

		while (cap - v->in_len < n)
			cap *= 2;
		v->in = buf_grow(v->in, v->in_cap, v->in, v->in_len, cap);
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
