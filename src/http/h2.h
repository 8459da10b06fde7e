/* h2: HTTP/2 sessions on nghttp2, transport-agnostic, with the limits a proxy needs.
 *
 * A struct h2_session wraps one nghttp2_session (server or client side) and owns no
 * socket: the caller reads bytes from its transport (TLS via net/tls.h, or a plain
 * socket) and hands them to h2_feed(); it asks h2_pending_output() for the bytes to
 * write and reports what it wrote with h2_output_consumed(). So the same code serves
 * the gateway's h2 listeners (ALPN "h2") and the sidecar's h2 upstream connections.
 *
 * Driving a session (one connection, one thread; nothing here locks):
 *
 *     s = h2_session_new(H2_SERVER, NULL, &my_callbacks, conn);  // NULL: h2_limits_default
 *     on readable:  n = read(...); if (h2_feed(s, buf, n) < 0) { log h2_error(s); close; }
 *     then flush:   while ((n = h2_pending_output(s, &p)) > 0) {
 *                       w = write(fd, p, n); if (w <= 0) break;  // wait for POLLOUT
 *                       h2_output_consumed(s, w);
 *                   }
 *     interest:     read while h2_want_read(s), write while h2_want_write(s);
 *     end:          h2_done(s) (GOAWAY exchanged and flushed, or a fatal error) -> close:
 *                   h2_abort(s) (on_stream_close for every stream still open), then
 *                   h2_session_free(s).
 * Flush after every h2_feed and after any submit/send/consume/reset call (they queue
 * frames, they never write). h2_pending_output also runs callbacks (see below), so call
 * it from the connection's event handler, not from inside another callback.
 *
 * Streams are named by their HTTP/2 stream id (int32_t > 0). Every function taking an id
 * returns -1 (or NULL/0) for a stream that is closed or unknown, so an owner never holds
 * a dangling pointer into this module. Each stream has one owner pointer
 * (h2_stream_user / h2_stream_set_user; the client passes it to h2_submit_request).
 *
 * Callbacks (struct h2_callbacks; any may be NULL). They run only inside h2_feed,
 * h2_pending_output and h2_abort, never inside the submit/send/consume/reset calls,
 * which may themselves be called from a callback. Never call h2_session_free, h2_feed or
 * h2_pending_output from a callback. String arguments (headers, data) are valid only
 * during the callback: h2_request_dup / h2_response_dup copy a head when it must live on.
 *
 *   server:   on_request -> [on_data]* -> [on_trailers] -> on_end_stream -> on_stream_close
 *   client:   h2_submit_request -> [on_response (1xx)]* -> on_response -> [on_data]* ->
 *             [on_trailers] -> on_end_stream -> on_stream_close
 * on_stream_close is called exactly once for every stream the owner knows about (server:
 * after on_request; client: after h2_submit_request), also when the owner reset it, also
 * when a submitted request never left (GOAWAY, session end), and by h2_abort. Streams the
 * owner never saw (refused, malformed, answered 431 by this module) make no callbacks.
 * The error code is the HTTP/2 code of the RST_STREAM sent or received (0: ended
 * normally; a client stream above a received GOAWAY's last id closes with
 * H2_REFUSED_STREAM: it was not processed and may be retried), or an H2_E_* value
 * (>= 0x100) when this module ended it for a local reason.
 *
 * Flow control is by consumption. Received DATA counts against the stream and connection
 * windows until the owner calls h2_consume(s, id, n) for bytes it has forwarded; only
 * then does a WINDOW_UPDATE go out, so a slow upstream back-pressures the peer and at
 * most stream_window bytes per stream (connection_window per connection) are ever
 * outstanding. Bytes of a stream that closes unconsumed, padding, and data the owner never
 * sees are released automatically.
 *
 * Sending bodies. h2_submit_response / h2_submit_request with end_stream false leave the
 * stream open for h2_send_data, which copies into a per-stream queue of at most
 * stream_send_buffer bytes and returns how much it took: when that is short, the owner
 * keeps the rest and waits for on_writable (the queue fell to half). The queue is drained
 * by nghttp2's data provider (NO_COPY: queue bytes go straight into the output buffer;
 * an empty queue defers the stream until more data or the end arrives). h2_send_data(...,
 * end_stream=true) or h2_submit_trailers ends the stream.
 *
 * Limits (struct h2_limits, each with its default; every one has a unit test against a
 * real peer in tests/unit/test_h2.c):
 *   - max_concurrent_streams 100 (SETTINGS_MAX_CONCURRENT_STREAMS). nghttp2 refuses
 *     extra streams with RST_STREAM(REFUSED_STREAM) while our SETTINGS is not yet
 *     acknowledged; a peer that exceeds the acknowledged limit gets a connection error
 *     GOAWAY(PROTOCOL_ERROR) (nghttp2's choice; RFC 9113 5.1.2 allows a stream error).
 *   - max_header_list 60 KiB (SETTINGS_MAX_HEADER_LIST_SIZE, RFC 9113 size: name + value
 *     + 32 per field, pseudo-fields included), counted as the block is decoded so an
 *     HPACK bomb costs no memory. Server: the request is answered 431 by this module,
 *     then, if the request body is still coming, RST_STREAM(NO_ERROR) tells the client to
 *     stop (RFC 9113 8.1); the owner never sees it. Client: the stream is reset
 *     (H2_E_HEADERS_TOO_LARGE to the owner).
 *   - max_continuations 8: CONTINUATION frames after one HEADERS (nghttp2 option). nghttp2
 *     stops reading at the 9th; this module then queues GOAWAY(ENHANCE_YOUR_CALM) and the
 *     session ends (h2_feed returns 0: flush, then h2_done).
 *   - max_outbound_control 1000: SETTINGS/PING ACKs queued for a peer that does not read
 *     (nghttp2 max_outbound_ack); past it the session is dropped (h2_feed -1), which
 *     covers SETTINGS and PING floods (a peer that reads its ACKs costs CPU only: no rate
 *     limit on PING/SETTINGS, WINDOW_UPDATE or PRIORITY frames).
 *   - max_outbound_frames 10000: frames of any kind waiting in nghttp2's queue; past it
 *     h2_feed returns -1 (the peer makes us queue RST_STREAM/WINDOW_UPDATE... and does not
 *     read).
 *   - reset_rate 200/s, reset_burst 1000 (token bucket): RST_STREAM frames received plus
 *     RST_STREAM frames we send because of the peer's errors (not h2_reset_stream), so
 *     both Rapid Reset (CVE-2023-44487) and peer-provoked resets count. Past it:
 *     GOAWAY(ENHANCE_YOUR_CALM), session ends. nghttp2's own limiter (which would answer
 *     INTERNAL_ERROR) is set to twice these values so ours always acts first.
 *   - max_empty_frames 16 consecutive DATA frames with no payload and no END_STREAM on one
 *     stream, and empty_rate 100/s, empty_burst 1000 per session (nghttp2 1.52 has no
 *     glitch limiter): past either, GOAWAY(ENHANCE_YOUR_CALM).
 *   - stream_window 256 KiB, connection_window 25 MiB (100 x 256 KiB: streams stalled by
 *     slow readers cannot use up the connection's window and starve the others; memory
 *     stays bounded by the per-stream windows): receive windows (above).
 *   - stream_send_buffer 64 KiB per stream, output_buffer 64 KiB per session (soft: one
 *     frame may overshoot it): the memory this module holds for sending.
 * nghttp2's HTTP messaging checks stay on and are relied upon (each verified by a test):
 * pseudo-header rules, upper-case field names, connection-specific fields (Connection,
 * Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade), TE other than "trailers",
 * content-length against the DATA received: all reset the stream with PROTOCOL_ERROR.
 * Fields nghttp2 would silently drop (bad characters, surrounding whitespace) reset the
 * stream here instead. This module adds: :authority and Host both present and different
 * -> RST_STREAM(PROTOCOL_ERROR).
 *
 * Not supported: h2c upgrade from HTTP/1.1 (prior knowledge and ALPN only), server push
 * (disabled), extended CONNECT, priorities (SETTINGS_NO_RFC7540_PRIORITIES is sent).
 *
 * Performance: no allocation per frame, none per request once a session has warmed up;
 * nghttp2's own (its stream structs, decoded fields, copies of submitted header lists) go
 * through h2_mem.h's size-class cache on worker threads. Received header fields are
 * referenced in nghttp2's refcounted buffers (no copy) in a per-session array reused for
 * every block; stream structs and their send queues are recycled through a free list;
 * DATA goes from the stream queue to the output buffer in one copy (NO_COPY data
 * provider); the output buffer is allocated once. Measured by test_pair_bench (gcc -O2,
 * this project's 2-core machine, client and server sessions together, no I/O): a GET with
 * two fields and a 5-byte answer ~3.5 us; bulk DATA ~1.7 GB/s.
 */
#ifndef EGRESS_HTTP_H2_H
#define EGRESS_HTTP_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/sbuf.h"
#include "http/h1.h"

struct h2_session;

enum h2_role {
	H2_SERVER = 0,
	H2_CLIENT = 1,
};

/* HTTP/2 error codes (RFC 9113 section 7), as used in RST_STREAM and GOAWAY. */
#define H2_NO_ERROR            0x0
#define H2_PROTOCOL_ERROR      0x1
#define H2_INTERNAL_ERROR      0x2
#define H2_FLOW_CONTROL_ERROR  0x3
#define H2_STREAM_CLOSED       0x5
#define H2_REFUSED_STREAM      0x7
#define H2_CANCEL              0x8
#define H2_ENHANCE_YOUR_CALM   0xb

/* on_stream_close codes for local reasons (outside the HTTP/2 code space). */
#define H2_E_HEADERS_TOO_LARGE 0x100 /* client: response head over max_header_list */
#define H2_E_SESSION_GONE      0x101 /* h2_abort, or the request never left */

struct h2_limits {
	uint32_t max_concurrent_streams; /* 100 */
	uint32_t max_header_list;        /* 61440 */
	uint32_t max_continuations;      /* 8 */
	uint32_t max_outbound_control;   /* 1000 */
	uint32_t max_outbound_frames;    /* 10000 */
	uint32_t reset_rate;             /* 200 per second */
	uint32_t reset_burst;            /* 1000 */
	uint32_t max_empty_frames;       /* 16 consecutive, per stream */
	uint32_t empty_rate;             /* 100 per second, per session */
	uint32_t empty_burst;            /* 1000 */
	uint32_t stream_window;          /* 262144 (SETTINGS_INITIAL_WINDOW_SIZE) */
	uint32_t connection_window;      /* 26214400 */
	uint32_t stream_send_buffer;     /* 65536 */
	uint32_t output_buffer;          /* 65536 */
};

/* Fills l with the defaults listed above. */
void h2_limits_default(struct h2_limits *l);

/* Bytes that need not be NUL-terminated. */
struct h2_str {
	const char *p;
	size_t len;
};

struct h2_header {
	struct h2_str name, value;
};

/* A request head.
 * Received (on_request): method, scheme, authority, path are the pseudo-fields
 * (:authority, or Host when :authority is absent; scheme and path empty for CONNECT);
 * headers are the regular fields in order, names lower-case, without Host and TE
 * (te_trailers says whether TE: trailers was sent); content_length is the
 * content-length field's value or -1; end_stream: no body follows.
 * Submitted (h2_submit_request): the same fields; scheme and path empty are omitted
 * (CONNECT); header names may be in any case (they are lower-cased on the way out);
 * fields HTTP/2 forbids are dropped on the way out whatever the caller passes
 * (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE other than
 * "trailers", names starting with ':', and Host when authority is set);
 * content_length and te_trailers are ignored (put the fields in headers). */
struct h2_request {
	struct h2_str method, scheme, authority, path;
	const struct h2_header *headers;
	size_t nheaders;
	int64_t content_length;
	bool te_trailers;
	bool end_stream;
};

/* A response head (received: on_response; submitted: h2_submit_response), same rules. */
struct h2_response {
	int status;
	const struct h2_header *headers;
	size_t nheaders;
	int64_t content_length;
	bool end_stream;
};

struct h2_callbacks {
	/* Server: a complete, validated request head on a new stream. */
	void (*on_request)(struct h2_session *s, void *user, int32_t id,
	                   const struct h2_request *rq);
	/* Client: a response head (1xx interim heads too: status < 200, more follow). */
	void (*on_response)(struct h2_session *s, void *user, int32_t id, void *stream_user,
	                    const struct h2_response *rs);
	/* Body bytes; call h2_consume(s, id, n) once they are forwarded (now or later). */
	void (*on_data)(struct h2_session *s, void *user, int32_t id, void *stream_user,
	                const uint8_t *data, size_t len);
	/* Trailer fields (names lower-case); on_end_stream follows. */
	void (*on_trailers)(struct h2_session *s, void *user, int32_t id, void *stream_user,
	                    const struct h2_header *h, size_t n);
	/* The peer finished its side of the stream (END_STREAM received). */
	void (*on_end_stream)(struct h2_session *s, void *user, int32_t id, void *stream_user);
	/* The stream is gone (see the top of this file for the code). */
	void (*on_stream_close)(struct h2_session *s, void *user, int32_t id,
	                        void *stream_user, uint32_t error_code);
	/* After a short h2_send_data: the stream's queue has room again. */
	void (*on_writable)(struct h2_session *s, void *user, int32_t id, void *stream_user);
	/* GOAWAY received. Streams above last_stream_id are closed (H2_REFUSED_STREAM). */
	void (*on_goaway)(struct h2_session *s, void *user, uint32_t error_code,
	                  int32_t last_stream_id);
};

/* Counters of one session (read with h2_stats). */
struct h2_stats {
	uint64_t streams;        /* streams the owner saw */
	uint64_t resets_recv;    /* RST_STREAM received */
	uint64_t resets_sent;    /* RST_STREAM sent (any reason) */
	uint64_t empty_frames;   /* empty non-final DATA frames received */
	bool goaway_sent;
	uint32_t goaway_code;    /* code of the last GOAWAY sent */
	bool goaway_recv;
	uint32_t goaway_recv_code;
};

/* Creates a session. limits NULL means the defaults; cb is copied; user is passed to every
 * callback. The SETTINGS frame (and, for a client, the connection preface) is queued at
 * once: flush it. Returns NULL only if nghttp2 cannot allocate. */
struct h2_session *h2_session_new(enum h2_role role, const struct h2_limits *limits,
                                  const struct h2_callbacks *cb, void *user);
/* Frees the session and its streams without calling any callback (see h2_abort). NULL ok. */
void h2_session_free(struct h2_session *s);

/* Processes len received bytes (any split). Returns 0, or -1 when the session is dead
 * (nghttp2 fatal error, a flood the peer does not read, bad client preface): close the
 * connection, h2_error(s) says why. Protocol errors that nghttp2 answers with GOAWAY and
 * our own limits are not -1: they queue a GOAWAY, flush it, then h2_done() turns true.
 * Input after the session has decided to end is dropped. */
int h2_feed(struct h2_session *s, const void *data, size_t len);

/* Bytes ready to write: sets *p and returns their count (0: nothing now). Pulls frames from
 * nghttp2 until about output_buffer bytes are waiting. May run callbacks (on_stream_close
 * for streams whose last frame just went out, on_writable). The bytes stay valid until the
 * next h2_pending_output or h2_output_consumed call. */
size_t h2_pending_output(struct h2_session *s, const uint8_t **p);
/* n bytes of what h2_pending_output returned were written. */
void h2_output_consumed(struct h2_session *s, size_t n);

bool h2_want_read(const struct h2_session *s);
bool h2_want_write(const struct h2_session *s);
/* True when nothing more will be read or written (GOAWAY done, or dead) and the output
 * buffer is empty: close the connection. */
bool h2_done(const struct h2_session *s);
/* Why the session died or ended itself ("" if it did not): a static or per-session string. */
const char *h2_error(const struct h2_session *s);
const struct h2_stats *h2_stats(const struct h2_session *s);
/* True while a header block has begun (HEADERS received) and is not complete (its
 * CONTINUATION frames are still due): the peer is in the middle of sending a head. A
 * server bounds how long that may take (slowloris over HTTP/2). */
bool h2_header_block_pending(const struct h2_session *s);

/* Calls on_stream_close(H2_E_SESSION_GONE) for every stream the owner knows that is still
 * open and forgets them; later input is dropped. For a connection that is going away. */
void h2_abort(struct h2_session *s);

/* ---- streams ---- */

/* Server: answers stream id. end_stream true: no body; false: h2_send_data follows.
 * A 1xx status (not 101) sends an interim head: call again with the final one.
 * Returns 0, or -1 (unknown stream, already answered, bad arguments). */
int h2_submit_response(struct h2_session *s, int32_t id, const struct h2_response *rs);
/* Client: sends a request on a new stream with stream_user as its owner pointer
 * (rq->end_stream as for responses). Returns the stream id (> 0), or -1 when no new
 * stream can be opened (GOAWAY received, session ending, ids exhausted). Requests beyond
 * the peer's concurrency limit wait inside nghttp2 until a stream frees up; see
 * h2_streams_available to spread load instead. */
int32_t h2_submit_request(struct h2_session *s, const struct h2_request *rq,
                          void *stream_user);
/* Queues body bytes; returns how many were taken (0..len), or -1 for an unknown stream or
 * one whose body was already ended. end_stream applies only if all len bytes were taken
 * (len may be 0). After a short count, on_writable says when to try again. */
ssize_t h2_send_data(struct h2_session *s, int32_t id, const void *data, size_t len,
                     bool end_stream);
/* Room left in the stream's send queue (0 for an unknown stream). */
size_t h2_send_space(struct h2_session *s, int32_t id);
/* Ends the stream's body with trailer fields (names in any case, copied). Only for a
 * stream whose head was submitted with end_stream false and whose body has not ended.
 * Returns 0 or -1. */
int h2_submit_trailers(struct h2_session *s, int32_t id, const struct h2_header *h,
                       size_t n);
/* n received body bytes of stream id have been forwarded: open the windows. Returns 0,
 * also for a stream that is already closed (its bytes were released then). */
int h2_consume(struct h2_session *s, int32_t id, size_t n);
/* Resets the stream with code (H2_CANCEL, H2_INTERNAL_ERROR...). on_stream_close follows
 * when the frame goes out. Returns 0, or -1 for an unknown stream. */
int h2_reset_stream(struct h2_session *s, int32_t id, uint32_t code);
void *h2_stream_user(struct h2_session *s, int32_t id);
int h2_stream_set_user(struct h2_session *s, int32_t id, void *user);
/* Caps the stream window the session advertises (SETTINGS_INITIAL_WINDOW_SIZE) at cap,
 * or gives back the configured one when cap is at least that (UINT32_MAX: no cap): a
 * SETTINGS frame only when the value changes (back-pressure: proxy/overload.h).
 * Returns 0, or -1 (dead session, nghttp2 refused). */
int h2_cap_stream_window(struct h2_session *s, uint32_t cap);

/* ---- session end ---- */

/* Server: GOAWAY with the last stream id 2^31-1, a hint to stop opening streams (RFC 9113
 * 6.8 graceful shutdown); follow it after about one RTT with h2_goaway(s, H2_NO_ERROR). */
int h2_shutdown_notice(struct h2_session *s);
/* GOAWAY(code). H2_NO_ERROR: graceful, streams already started finish, then h2_done().
 * Any other code: the session ends as soon as the GOAWAY is flushed. Returns 0 or -1. */
int h2_goaway(struct h2_session *s, uint32_t code);
/* Client: streams that may be opened now without waiting (peer's limit minus open ones);
 * 0 after a GOAWAY. */
uint32_t h2_streams_available(const struct h2_session *s);

/* ---- heads ---- */

/* One allocation holding a copy of the head and all its strings; free() it. */
struct h2_request *h2_request_dup(const struct h2_request *rq);
struct h2_response *h2_response_dup(const struct h2_response *rs);

/* HTTP/1.1 -> HTTP/2 conversion into caller storage (e.g. on the stack). */
struct h2_from_h1 {
	struct h2_request rq;
	struct h2_response rs;
	struct h2_header hdrs[H1_MAX_HEADERS + 2];
	char cl[24];        /* content-length digits */
	char *path_alloc;   /* "/?query" for "http://host?query"; freed by h2_from_h1_fini */
};

/* Builds c->rq from a parsed request head m (buf is the buffer it was parsed from).
 * :method from the request line; :scheme from an absolute-form target, else scheme
 * ("http"/"https"), none for CONNECT; :authority from the absolute-form authority, the
 * CONNECT target, else Host; :path from the target ("/" for an absolute-form target
 * without one, none for CONNECT). Fields: all but those h1 flags H1_HF_DROP
 * (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE, fields named
 * by Connection, Content-Length) and Host; then "te: trailers" when the request had TE:
 * trailers, and "content-length: N" for a Content-Length body. end_stream is true when
 * there is no body. Strings point into buf, m and c. Returns 0, or -1 without an
 * authority (HTTP/1.0 without Host). */
int h2_request_from_h1(const struct h1_msg *m, const char *buf, const char *scheme,
                       struct h2_from_h1 *c);
/* Builds c->rs from a parsed response head: status, fields as above, content-length when
 * the response has one (also for bodiless HEAD/304 responses that carry it). end_stream is
 * true when no body follows. Returns 0, or -1 for a status HTTP/2 cannot carry (101). */
int h2_response_from_h1(const struct h1_msg *m, const char *buf, struct h2_from_h1 *c);
void h2_from_h1_fini(struct h2_from_h1 *c);

/* HTTP/2 -> HTTP/1.1 (the sidecar's HTTP/2 upstream, up_h2.c): appends "HTTP/1.1 200 OK"
 * and the fields, each line CRLF-ended, WITHOUT the final empty line: the caller adds its
 * framing. Cookie fields are joined into one with "; " (RFC 9113 8.2.3); content-length,
 * Host, TE and the connection-specific fields are not copied. Returns 0, or -1 (nothing
 * appended) if a string holds CR, LF or NUL or a name is not visible ASCII: never produce
 * a smuggling vector even if nghttp2's validation were off. (A request head is not
 * rendered as text: h2_req.h decodes it into the parsed head directly.) */
int h2_response_to_h1(const struct h2_response *rs, struct sbuf *out);

/* The client connection preface at the start of a plaintext connection.
 * Returns H2_PREFACE_YES (all 24 bytes match), H2_PREFACE_NO, or H2_PREFACE_MORE (what
 * is there matches, fewer than 24 bytes). */
#define H2_PREFACE_NO   0
#define H2_PREFACE_YES  1
#define H2_PREFACE_MORE 2
int h2_preface_check(const void *buf, size_t len);

#endif
