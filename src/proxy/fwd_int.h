/* fwd_int: the types the request path's files share (the fwd module: fwd_io.c, fwd_core.c,
 * fwd_conn.c, fwd_down_h1.c, fwd_up_h1.c, fwd_sidecar.c, fwd_vconn.c). Private to them: the
 * rest of the proxy reaches the request path through fwd.h, fwd_h2.h and up_h2.h.
 *
 *   struct dconn   a downstream connection (socket, or an HTTP/2 stream's virtual one)
 *   struct stream  the request in progress on a dconn (its parsed heads, route, cluster,
 *                  endpoint, circuit-breaker state, timers)
 *   struct uconn   an upstream connection (socket, or an HTTP/2 stream of up_h2.c)
 * Each file's own functions are declared in its header (fwd_io.h, fwd_core.h, ...). */
#ifndef EGRESS_PROXY_FWD_INT_H
#define EGRESS_PROXY_FWD_INT_H

#include "proxy/cbreak.h"
#include "proxy/outlier.h"
#include "proxy/pool.h"
#include "proxy/route_hdrs.h"
#include "proxy/worker.h"
#include "http/h1.h"
#include "net/loop.h"
#include "net/sock.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
struct fmir_pend;

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
	/* The request's Origin when its route's corsPolicy allowed it (route_cors.c): its
	 * response gets CORS fields. Allocated only then; before `req` as rw_path. */
	char *cors_origin;
	/* The route's mirror policies this request was picked for, waiting for its body
	 * (fwd_mirror.h); NULL: none. Before `req` as rw_path. */
	struct fmir_pend *mir;
	/* The response head: NULL until the upstream's first response byte is parsed
	 * (st_resp), from the worker's free list, given back by st_reset / st_put. A request
	 * waiting for its upstream holds no response head (2 KiB: half of a stream's size).
	 * Before `req` so st_get zeroes it. */
	struct h1_msg *resp;
	/* consistentHash's made-up cookie (fwd_hash.c): the Set-Cookie value the response
	 * carries, NULL when none. Before `req` so st_get zeroes it. */
	char *set_cookie;
	struct h1_parser rp;
	struct h1_msg req;              /* spans into d->in */
	const struct route *route;
	const struct rhdr *hdrs;        /* the route's and its destination's header operations */
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
	/* Retries (the route's retry.h policy; fwd_conn.c "retries"): retries made, the
	 * request body kept in d->in for a replay (rt_nobody: it outgrew RETRY_BODY_MAX, no
	 * retry), one of the cluster's retry slots held, waiting out a backoff, the hashes of
	 * the endpoints tried (previous_hosts), and the timer of the per-try timeout or the
	 * backoff. */
	uint8_t rt_n;
	bool rt_nobody, rt_slot, rt_wait;
	uint64_t rt_prev[4];
	struct loop_timer rt_timer;
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
	char *sni;                      /* the client's SNI (TLS listeners), NULL if none;
	                                 * a virtual connection's points to its connection's */
	bool mesh_sniff;                /* plain listener with a mesh_ctx: TLS or not, unread */
	/* The client's identity (mutual TLS): the verified certificate's URI SAN, or NULL.
	 * AuthorizationPolicy's principal is the same fact without "spiffe://" (d_principal).
	 * A virtual connection's points to its connection's, as sni does. */
	char *peer_id;
	char *in;
	size_t in_len, in_cap, in_pos; /* in_pos: bytes of in already consumed */
	struct iobuf out;
	/* The request being parsed or served; NULL while the connection is idle (a stream is
	 * about 3.4 KiB, 5.4 with its response head: 10,000 idle keep-alive connections should
	 * not hold 50 MiB of them, so they come from the worker's free list per busy period). */
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
	/* A mirror policy's shadow (fwd_mirror.c): no client, its response is discarded; in
	 * the worker's list of shadows (next, prev), not of connections. mirror_tls: the
	 * request it copies came over TLS or HTTP/2 (x-forwarded-proto: https, as on it). */
	bool mirror, mirror_tls;
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

#define FWD_ST_FREE_MAX 256     /* streams a worker keeps for reuse */
#define FWD_VC_FREE_MAX 256     /* virtual dconns and uconns (HTTP/2 streams), each */

/* The client's AuthorizationPolicy principal: its SPIFFE id without "spiffe://", NULL
 * when it presented none (or a URI SAN of another scheme). */
static inline const char *d_principal(const struct dconn *d)
{
	return d->peer_id && strncmp(d->peer_id, "spiffe://", 9) == 0 ? d->peer_id + 9 : NULL;
}

/* True while d has a request in progress. */
static inline bool d_busy(const struct dconn *d)
{
	return d->st && d->st->active;
}

/* ---- the codecs as the core sees them ----
 * The files form layers, each calling only the ones below it (make check: no call
 * cycle): fwd_vconn > fwd_down_h1 > fwd_up_h1 > fwd_core > fwd_sidecar, fwd_mirror >
 * fwd_conn > fwd_io. The codecs call the core directly (a parsed head: st_begin; a response done:
 * st_finish; an upstream failure: st_upstream_failed); the core, and the upstream codec
 * writing a response downstream, reach the codecs above them through these two tables,
 * set once by fwd_init before any worker runs. */
/* A field of a response made here (NUL-terminated name and value). */
struct fwd_field {
	const char *name, *value;
};

struct fwd_down_ops {
	/* A response made here (code, access log flags and details, body) written out. */
	void (*local_reply)(struct stream *st, int code, unsigned flags, const char *details,
	                    const char *body);
	/* The head of a response made here: status code, content-length blen, the fields
	 * f[0 .. n) (n <= FWD_REPLY_FIELDS); its body (blen bytes, none for HEAD) follows
	 * through send. Sets st->resp_started. */
	void (*reply_head)(struct stream *st, int code, const struct fwd_field *f, size_t n,
	                   size_t blen);
	void (*resp_head)(struct stream *st);   /* the upstream's response head, written */
	void (*send)(struct dconn *d, const void *p, size_t n);
	void (*flush)(struct dconn *d);
	void (*interest)(struct dconn *d, bool want_write);
	void (*settle)(struct dconn *d);        /* the settle point: frees d if it is done */
};
#define FWD_REPLY_FIELDS 6   /* a CORS preflight's answer has 5 */
struct fwd_up_ops {
	void (*close)(struct uconn *u);
	void (*release)(struct uconn *u, bool reusable);   /* back to the pool, or closed */
	void (*send_head)(struct stream *st);
	int (*forward_body)(struct dconn *d);   /* -1: the request ended (d may be dead) */
	void (*connected)(struct uconn *u);
	/* The event handlers of a new upstream connection (loop.h). */
	void (*on_io)(struct loop *loop, struct loop_io *io, unsigned ev);
	void (*on_timer)(struct loop *loop, struct loop_timer *t);
	void (*on_task)(struct loop *loop, struct loop_task *t);
};
extern const struct fwd_down_ops *fwd_down;
extern const struct fwd_up_ops *fwd_up;
extern const struct fwd_down_ops fwd_down_h1_ops;
extern const struct fwd_up_ops fwd_up_h1_ops;

#endif
