/* up_h2: HTTP/2 upstream connections (the sidecar's ISTIO_MUTUAL hop to the gateway, and
 * any TLS cluster whose DestinationRule says h2UpgradePolicy: UPGRADE), bridged onto
 * the HTTP/1.1 request path (fwd_*.c). Internal to the proxy module.
 *
 * The mirror image of fwd_h2.h. A worker keeps, per pool key (TLS context, endpoint, SNI,
 * verified name: the same key as HTTP/1.1 pooling), a few HTTP/2 client connections, each
 * carrying up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS requests at once. A request
 * that goes upstream over HTTP/2 still gets a struct uconn from fwd_conn.c, but a "virtual" one
 * (no socket, no TLS: its u->h2 is set): its stream struct uh2s is attached here to a
 * connection. The request path then works as for HTTP/1.1 with three differences:
 *   - the request head is submitted as HEADERS (uh2_submit) instead of written as text;
 *   - request body payload (unframed: fwd_up_h1.c drops the chunk framing for such a uconn) is
 *     handed over by uh2_send, which takes what the stream's send queue accepts;
 *   - the response is not rendered as text: uh2_head fills the exchange's parsed head
 *     (struct h1_msg, the fields decoded from HEADERS kept by h2head.h, spans into the
 *     uconn's input buffer, ids and flags from h1's lookup), interim 1xx heads one by
 *     one; uh2_peek / uh2_take hand out the DATA payload as received (no framing added:
 *     the head's framing is the server's content-length, or "until END_STREAM"), and
 *     uh2_trailers the trailer section, whatever framing the server used.
 * Events on a stream (response bytes, end, reset, connection ready or failed, room in the
 * send queue) post the virtual uconn's deferred task (given to uh2_attach); its handler
 * then pulls with uh2_head / uh2_peek and pushes with uh2_send. Nothing here calls into the request path's
 * logic from inside nghttp2 callbacks.
 *
 * Connection set-up offers ALPN "h2", "http/1.1". A server that picks http/1.1 (or no
 * ALPN) makes the key "HTTP/1.1 only" for this worker (for UH2_H1_MEMORY_MS): the streams
 * that were waiting get UH2_FALLBACK from uh2_head and fwd_conn.c sends them over HTTP/1.1
 * instead (nothing of their requests was sent yet, so nothing is replayed). A stream the
 * server refused unprocessed (RST_STREAM REFUSED_STREAM, or above a GOAWAY's last stream
 * id) is retryable; any other failure is not.
 *
 * Lifetime: a stream belongs to its virtual uconn (uh2_detach frees it, resetting the
 * HTTP/2 stream with CANCEL if it is still open: a client that goes away cancels its
 * upstream request). A connection belongs to the worker's table; it closes when the
 * server ends it, on error, at its idle timeout with no streams, or when the worker drains
 * and its last stream is done. */
#ifndef EGRESS_PROXY_UP_H2_H
#define EGRESS_PROXY_UP_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/h2.h"
#include "net/sock.h"

struct worker;
struct uconn;
struct loop_task;
struct uh2s;
struct uh2_table;
struct tls_ctx;
struct tls_verify_names;

/* How long a key whose server chose HTTP/1.1 is remembered as HTTP/1.1 only. */
#define UH2_H1_MEMORY_MS (10 * 60 * 1000)

/* uh2_head and uh2_peek: an extra return code: send this request over HTTP/1.1 instead. */
#define UH2_FALLBACK (-4)

/* What a new connection for a key needs (copied; the strings need not outlive the call). */
struct istats_cluster;

struct uh2_target {
	const struct sock_addr *ep;
	struct tls_ctx *ctx;            /* required (h2 is negotiated by ALPN) */
	const char *sni;                /* may be NULL */
	const struct tls_verify_names *names;
	int64_t connect_timeout_ms;
	int64_t idle_timeout_ms;
	uint64_t conn_id, ident;        /* what it is made under (pool.h) */
	uint32_t max_req;               /* maxRequestsPerConnection: streams it may carry, 0 any */
	const char *cluster;            /* for the draining gauge */
	/* The requesting cluster's counters (istats.h); a connection it opens counts there
	 * (connections, handshakes, failures), as Envoy counts a connection in one cluster. */
	struct istats_cluster *stats;
};

/* A failure, as the request path logs it (strings live as long as the stream). */
struct uh2_fail {
	unsigned flags;                 /* ALOG_F_UF, ALOG_F_UC */
	const char *details;
	const char *reason;
	bool retryable;                 /* refused unprocessed: safe to send again */
	bool timeout;                   /* the connect timeout expired */
};

/* ---- up_h2.c, called by the request path (fwd_conn.c, fwd_up_h1.c) and worker.c ---- */

struct uh2_table *uh2_table_new(struct worker *w);
/* Closes every connection (streams still attached fail) and frees the table. */
void uh2_table_free(struct uh2_table *t);
/* The worker drains: idle connections close now, busy ones after their last stream. */
void uh2_drain(struct uh2_table *t);
struct pool_live;
/* Connections whose settings or endpoint are no longer live (pool.h) take no new stream;
 * idle ones close now, busy ones after their last stream (counted as draining). */
void uh2_sweep(struct uh2_table *t, const struct pool_live *live);

/* A stream for a virtual uconn on a connection for key (an existing one with room, or a
 * new one connecting to tg); every event on it (response bytes, end, reset, connection
 * ready or failed, room in the send queue) posts owner, the uconn's deferred task. Returns NULL when the key is known to be HTTP/1.1 only:
 * use an HTTP/1.1 connection. reused: the connection was already up. */
struct uh2s *uh2_attach(struct uh2_table *t, struct loop_task *owner, const char *key, size_t keylen,
                        const struct uh2_target *tg, bool *reused);
/* The stream's owner goes away: resets the HTTP/2 stream (CANCEL) if still open, unless
 * complete (the response was whole by its framing and the request body was all sent: the
 * stream is left to end by itself), and frees s. */
void uh2_detach(struct uh2s *s, bool complete);

/* The request head (strings copied when the connection is not up yet). Call once. */
void uh2_submit(struct uh2s *s, const struct h2_request *rq);
/* True once the request head went out on an established connection: body bytes may flow. */
bool uh2_ready(const struct uh2s *s);
/* Request body payload; end: nothing follows p[0 .. n). Returns bytes taken (0..n; wait
 * for a kick when short). A stream that can no longer send (reset, or the server already
 * answered and closed it) takes everything and drops it. */
size_t uh2_send(struct uh2s *s, const void *p, size_t n, bool end);
/* Trailer fields to end the request body with (trailing HEADERS instead of END_STREAM on
 * the last DATA), sent once uh2_send is given end; copied. Fields not representable
 * (h2head.h) make the set dropped (the body then ends without them). */
void uh2_trailers_out(struct uh2s *s, const struct h2_header *h, size_t n);
/* The next response head (interim 1xx ones first): fills m (h2head_fill: framing for
 * req_method, an enum h1_method) and copies its field bytes to out, which m's spans are
 * relative to. Returns 0 (m filled), 1 when no head is there yet, 2 when *room bytes at
 * out are not enough (*room set to what is: call again with that much), -1 on failure
 * (uh2_failure), UH2_FALLBACK. */
struct h1_msg;
int uh2_head(struct uh2s *s, int req_method, struct h1_msg *m, char *out, size_t *room);
/* The response payload received and not yet taken, after the final head: sets *p and
 * returns its length (> 0), 0 at the end of the stream, -1 on failure (uh2_failure
 * says what), -2 when nothing is there now, UH2_FALLBACK. */
ssize_t uh2_peek(const struct uh2s *s, const char **p);
/* n bytes of what uh2_peek showed are forwarded: once all are, the stream's receive
 * window opens by what was taken. */
void uh2_take(struct uh2s *s, size_t n);
/* After the end of the stream: the trailer section as an h2head record (read it with
 * h2head_fill), or NULL when the server sent none. */
const void *uh2_trailers(const struct uh2s *s);
const struct uh2_fail *uh2_failure(const struct uh2s *s);
/* Local address of the connection ("" before it is connected). */
const char *uh2_local(const struct uh2s *s);

#endif
