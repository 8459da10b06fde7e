/* fwd_h2: HTTP/2 downstream connections of the gateway (ALPN "h2") and of the sidecar's
 * outbound port (cleartext, prior knowledge: gRPC applications), bridged onto the
 * HTTP/1.1 request path (fwd_*.c). Internal to the proxy module.
 *
 * A downstream connection that negotiated "h2" keeps its struct dconn (socket, TLS, place
 * in the worker's list and counters: draining and shutdown see it as any connection), and
 * gets a struct h2d holding the server session. Each HTTP/2 stream becomes a "virtual"
 * dconn without a socket (fwd_vconn_*): the request head, decoded once from HPACK, is
 * copied into its input buffer and the parsed head the request path works on is filled
 * from it (h2_req.h h2_request_msg: no HTTP/1.1 text is rendered and parsed again), so
 * routing, the upstream pool, retries, timeouts and the access log run unchanged; request
 * DATA is appended as it arrives (chunked when the length is unknown). An upstream's
 * response head goes out as HEADERS built from its parsed head (h2d_send_head, from
 * fwd_down_h1.c), a reply the proxy makes itself as HEADERS built from its status and
 * fields (h2d_send_reply); what the request path then writes to the virtual connection's
 * output is the body, framed as that head said, and goes out as DATA (h2d_pull): no head
 * is parsed here. A virtual connection ends after one response (h2d_vconn_gone). The response's chunked trailer section
 * (chunked_relay keeps its fields for HTTP/2 streams) goes out as a trailing HEADERS
 * frame (gRPC's grpc-status), and the request's "te: trailers" is kept. A client reset of
 * the stream closes the virtual connection like a client disconnect (its upstream
 * connection is closed, the log says DC). */
#ifndef EGRESS_PROXY_FWD_H2_H
#define EGRESS_PROXY_FWD_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/loop.h"
#include "proxy/route_cors.h"

struct worker;
struct dconn;
struct tls_conn;
struct h2d;
struct h2ds;
struct h1_msg;
struct h2_request;

/* ---- fwd_h2.c, called by the request path (fwd_down_h1.c, fwd_sidecar.c, fwd_up_h1.c) ---- */

/* Starts HTTP/2 on the established downstream connection d: TLS done with ALPN "h2", or
 * (tls NULL) a plain connection whose client sent the HTTP/2 preface (h2c with prior
 * knowledge, the sidecar's outbound port). io is d's registered io, its fd and tls the
 * transport (still owned by d). Returns NULL on failure. */
struct h2d *h2d_new(struct worker *w, struct dconn *d, struct loop_io *io,
                    struct tls_conn *tls);
/* The response head of an upstream (m, parsed from buf; ust: the upstream service time in
 * ms, -1 unknown) on ds's stream, built as HEADERS from the parsed head instead of
 * rendered as text for h2d_pull to parse again; the body follows through h2d_pull framed
 * as m says. e: the route's response header operations and CORS fields (route_cors.h),
 * NULL: none.
 * Returns 0, or -1 when the stream is gone or was reset (a status HTTP/2 cannot carry,
 * 101; the session refused it). */
int h2d_send_head(struct h2ds *ds, const struct h1_msg *m, const char *buf, int64_t ust,
                  const struct rcors_edit *e);
/* A response made by the proxy (a local reply, a redirect) on ds's stream: HEADERS with
 * status, "content-length: body_len" and the fields h[0 .. n) (n <= H2D_REPLY_FIELDS,
 * names lower-case), ending the stream when end; otherwise body_len bytes of body follow
 * through h2d_pull. Returns 0, or -1 when the stream is gone or was reset. */
#define H2D_REPLY_FIELDS (6 + RHDR_MAX_EMIT + 3)   /* the proxy's, the route's, CORS */
struct h2_header;
int h2d_send_reply(struct h2ds *ds, int status, const struct h2_header *h, size_t n,
                   uint64_t body_len, bool end);
/* Bytes the connection read before it was known to be HTTP/2 (h2c with prior knowledge:
 * the sniffed client preface and what followed). Returns -1 when it must be closed now. */
int h2d_input(struct h2d *h, const void *p, size_t n);
/* Readable/writable event on the connection. Returns -1 when it must be closed now. */
int h2d_on_io(struct h2d *h, unsigned ev);
/* Graceful shutdown (worker draining): GOAWAY, close once the streams are done. */
void h2d_drain(struct h2d *h);
/* Aborts every stream and frees the session; the caller closes the socket. */
void h2d_free(struct h2d *h);
/* Output of a virtual connection: p[0 .. n) is its response body as written so far,
 * framed as the head submitted before said (h2d_send_head, h2d_send_reply: length,
 * chunked with trailers, or until close). Returns the bytes taken (0..n; wait for
 * fwd_vconn_writable), or -1 when the response cannot be carried (the stream is reset). */
ssize_t h2d_pull(struct h2ds *ds, const char *p, size_t n);
/* The virtual connection of ds has passed on what it was given (little is buffered):
 * the request DATA received so far opens the client's windows again. */
void h2d_vconn_drained(struct h2ds *ds);
/* The virtual connection of ds is being freed; complete: its response was fully written
 * and pulled. */
void h2d_vconn_gone(struct h2ds *ds, bool complete);

/* ---- fwd_h2.c, shared with up_h2.c ---- */

struct h2_session;

/* Writes what session s has queued to tls (or, tls NULL, the plain socket fd) until done or the socket is full. Returns 0 with
 * *interest set to what the connection must wait for next (LOOP_READ, plus LOOP_WRITE when
 * output is pending), 1 when the session is over (h2_done: close the connection), -1 when
 * the write failed (tls_conn_error says why). */
int h2_tls_flush(struct h2_session *s, int fd, struct tls_conn *tls, unsigned *interest);
/* Reads from tls (tls NULL: the plain socket fd) into session s, at most rounds reads of 16 KiB (fairness), until
 * TLS_WANT_READ or until tls_read_drained says the socket and OpenSSL are empty. *more is
 * set when it stopped at the round limit: OpenSSL may hold bytes
 * that no socket event will announce, so call again soon. Returns 0, H2_PUMP_CLOSED when
 * the peer closed the connection, H2_PUMP_TLS on a TLS error (tls_conn_error), or
 * H2_PUMP_SESSION when the session rejected the input (h2_error). */
#define H2_PUMP_CLOSED  1
#define H2_PUMP_TLS     (-1)
#define H2_PUMP_SESSION (-2)
int h2_tls_pump(struct h2_session *s, int fd, struct tls_conn *tls, int rounds, bool *more);

/* ---- the request path, as fwd_h2.c sees it ----
 * fwd_h2.c calls nothing of the request path: the streams' events reach it through this
 * sink (fwd_vconn.c's, set once by fwd_init before any worker runs). */
struct h2d_sink {
	/* A virtual connection for one stream of h's connection d. Never NULL. */
	struct dconn *(*stream_new)(struct dconn *d, struct h2ds *ds);
	/* The stream's request head (valid during the call only); may answer the request
	 * and free v. */
	void (*request)(struct dconn *v, const struct h2_request *rq);
	/* Request body bytes for v (chunked framing when ds->chunked_req); may answer the
	 * request and free v. */
	void (*input)(struct dconn *v, const void *p, size_t n);
	/* The stream's send queue has room again: pull more output. May free v. */
	void (*writable)(struct dconn *v);
	/* The client reset the stream or the connection went away: v is closed now. */
	void (*abort)(struct dconn *v);
	/* The h2 connection d is finished (GOAWAY done, error): frees it. */
	void (*conn_done)(struct dconn *d);
};
void h2d_set_sink(const struct h2d_sink *sink);

#endif
