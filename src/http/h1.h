/* h1: HTTP/1.1 message-head parser, chunked-body decoder and header helpers
 * (RFC 9110 semantics, RFC 9112 syntax).
 *
 * Everything here works IN PLACE on the caller's buffer: the parser fills spans
 * (offset + length) into that buffer and never copies or allocates. There is no global
 * mutable state; a parser or decoder is a small struct the caller owns, so one per
 * connection per worker thread is all that is needed for thread safety.
 *
 * Parsing a message head (request or response)
 * ---------------------------------------------
 *     struct h1_parser p;
 *     struct h1_msg m;
 *     h1_parser_init(&p, true, 0);             // request; for a response pass the method
 *     for (;;) {                               //   of the request it answers (HEAD, CONNECT)
 *         read more bytes, appending to buf (buf[0] is the first byte of the message);
 *         int rc = h1_parse(&p, buf, len, &m);
 *         if (rc == H1_OK) break;              // m filled; the head is buf[0 .. m.head_len)
 *         if (rc == H1_ERROR) answer p.status (400/414/431/505; 502 for a response),
 *                             log p.reason, close;
 *         // H1_AGAIN: need more bytes
 *     }
 *     The body (m.body) starts at buf + m.head_len; a pipelined next request starts there
 *     too when m.body is H1_BODY_NONE. Call h1_parser_init again for the next message.
 * Between calls the bytes already passed must stay where they are relative to buf (the
 * buffer may be moved or grown, the prefix must be unchanged) and len must not shrink.
 *
 * Strictness decisions (each has a unit test in tests/unit/test_h1.c)
 *   - Line endings must be CRLF. A bare LF or bare CR anywhere in the head is 400: lenient
 *     LF handling is a classic request-smuggling vector between proxies.
 *   - Requests may be preceded by empty lines (CRLF), which are skipped (RFC 9112 §2.2);
 *     responses may not.
 *   - Request line: method SP request-target SP HTTP-version, exactly one SP each. Method
 *     is a token (case-sensitive). Target is VCHARs only (no SP, controls, DEL or bytes >=
 *     0x80; a '#' is passed through). Forms: origin (/path), absolute (scheme://authority
 *     [path], userinfo '@' rejected), authority (host:port, CONNECT only and required for
 *     it), asterisk (OPTIONS only). Version must be "HTTP/" DIGIT "." DIGIT; anything else
 *     is 400; well-formed but not 1.0/1.1 (HTTP/0.9, 1.2, 2.0, 3.0, the h2 preface) is 505.
 *   - Start line longer than H1_MAX_START_LINE -> 414 (responses: 502). More than
 *     H1_MAX_HEADERS fields or a head larger than H1_MAX_HEAD bytes (start line and final
 *     CRLF included) -> 431. Both are detected while bytes arrive, not only at the end.
 *   - Field lines: name is a non-empty token followed directly by ':' (whitespace before
 *     the colon is 400); a line starting with SP/HTAB (obs-fold, or whitespace before the
 *     first field) is 400; a value may hold HTAB, SP, VCHAR and obs-text (>= 0x80), any
 *     other control (NUL, CR, LF, DEL...) is 400. Leading/trailing OWS is not in the span.
 *   - Transfer-Encoding must be exactly "chunked" (case-insensitive, surrounding OWS
 *     allowed as the field grammar says), in one field line; "chunked, chunked", "gzip",
 *     "gzip, chunked", "identity", empty -> 400 for requests. 400 rather than 501: the
 *     framing is unusable either way and RFC 9112 §6.3 says a server MUST respond 400 when
 *     it cannot determine the length of a request. Responses get the same rule (502):
 *     RFC 9112 would read a non-chunked-final coding until close, a proxy gains nothing by
 *     forwarding that. Transfer-Encoding in an HTTP/1.0 message is an error (§6.1).
 *   - Content-Length together with Transfer-Encoding -> 400 (no "TE wins" recovery).
 *   - Content-Length: 1*DIGIT, at most 18 digits. A list or repeated field of IDENTICAL
 *     values ("5, 5") is accepted as 5 (RFC 9110 §8.6 allows it); different values, empty,
 *     "+5", "0x5", "5 5", empty list elements -> 400. The proxy must emit its own single
 *     Content-Length (the field is flagged H1_HF_FRAMING), never the received text.
 *   - Host (requests): HTTP/1.1 without Host, more than one Host, an empty Host or one
 *     that is not uri-host[:port] (no userinfo, no comma, no space) -> 400.
 *   - Connection: a list of tokens (empty elements ignored, anything else 400), at most
 *     H1_MAX_CONN_OPTIONS options (400 above: bounds the option x field matching work).
 *     Every field an option names gets H1_HF_CONN_LISTED, even Host or Content-Length:
 *     the proxy writes its own Host/:authority and framing, so dropping them is safe.
 *   - Expect: only "100-continue" means something (expect_continue, HTTP/1.1 only); other
 *     expectations are ignored rather than answered 417 (RFC 9110 §10.1.1 says MAY).
 *   - CONNECT with a body (Transfer-Encoding or non-zero Content-Length) -> 400.
 *   - Responses: status line "HTTP/1.x SP 3DIGIT [SP reason]" (a missing SP+reason is
 *     tolerated, many servers send it), status 100..599. No body for HEAD responses, 1xx,
 *     204, 304 and 2xx to CONNECT; neither Content-Length nor chunked -> UNTIL_CLOSE and
 *     keep_alive false. Every response error is reported with p->status = 502. After a
 *     1xx other than 101 the final response follows: init the parser again and go on.
 *
 * Chunked bodies: see h1_chunked_feed below.
 *
 * Performance
 *   h1_parse makes two passes over the head. Pass 1 runs as bytes arrive: memchr (SIMD in
 *   glibc) from where the previous call stopped to the next LF, O(1) bookkeeping per line
 *   (CR check, line-length and count limits), so feeding a head in k pieces costs O(n + k),
 *   never O(n * k). Pass 2 runs once, when the final CRLFCRLF has been seen: a table-driven
 *   walk over every byte exactly once; the inner loops have no bounds checks because the
 *   head's CR bytes are sentinels that stop every character class, and field values and
 *   the request-target (the long runs) are checked eight bytes per step (SWAR) before the
 *   byte loop finishes them. Then only the values of the framing/connection fields are
 *   read again (a few bytes), and Connection options are matched against field names of
 *   the same length (<= 64 x 100 length compares).
 *   Total O(n), about two reads per head byte, no allocation, no copying. Measured: a
 *   705-byte browser request head parses in ~0.4-0.6 us (gcc -O2, this project's 2-core
 *   machine); fed one byte per call it costs ~4-6 us in all (705 calls).
 *   h1_chunked_feed walks framing bytes (size lines, CRLFs) one at a time through a small
 *   switch, hands payload out as spans without touching it (O(1) per span), and scans a
 *   trailer section once with memchr plus one field-line pass when it is complete.
 */
#ifndef EGRESS_HTTP_H1_H
#define EGRESS_HTTP_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes (ARCHITECTURE.md: 0 success, -1 error, positive "not yet"). */
#define H1_OK     0   /* head complete / chunked body complete */
#define H1_AGAIN  1   /* need more bytes */
#define H1_DATA   2   /* h1_chunked_feed: a payload span is returned, call again */
#define H1_ERROR  (-1)

#define H1_MAX_HEADERS       100           /* field lines in a head or a trailer section */
#define H1_MAX_START_LINE    8192          /* request/status line, without CRLF */
#define H1_MAX_HEAD          (60 * 1024)   /* whole head incl. start line and final CRLF */
#define H1_MAX_CONN_OPTIONS  64            /* options in Connection fields, all together */
#define H1_MAX_CHUNK_LINE    4096          /* chunk-size line incl. extensions, w/o CRLF */
#define H1_MAX_CHUNK_DIGITS  16            /* hex digits of a chunk size, leading 0s too */
#define H1_MAX_TRAILERS      (16 * 1024)   /* trailer section incl. its final CRLF */

enum h1_method {
	H1_M_OTHER = 0,  /* a valid token that is none of the below (e.g. PROPFIND) */
	H1_M_GET,
	H1_M_HEAD,
	H1_M_POST,
	H1_M_PUT,
	H1_M_DELETE,
	H1_M_CONNECT,
	H1_M_OPTIONS,
	H1_M_TRACE,
	H1_M_PATCH,
	H1_M_COUNT
};

/* Field names the parser recognises (h1_header.id). */
enum h1_hdr_id {
	H1_H_OTHER = 0,
	H1_H_CONNECTION,
	H1_H_CONTENT_LENGTH,
	H1_H_TRANSFER_ENCODING,
	H1_H_HOST,
	H1_H_EXPECT,
	H1_H_UPGRADE,
	H1_H_TE,
	H1_H_KEEP_ALIVE,
	H1_H_PROXY_CONNECTION,
	H1_H_TRAILER,
	H1_H_COUNT
};

/* h1_header.flags. A proxy forwarding a message drops every field with any of
 * H1_HF_DROP set and writes its own Connection and framing (Content-Length or
 * Transfer-Encoding) fields. */
enum h1_hdr_flag {
	H1_HF_HOP_BY_HOP  = 1u << 0, /* see h1_header_flags */
	H1_HF_FRAMING     = 1u << 1, /* Content-Length, Transfer-Encoding */
	H1_HF_CONN_LISTED = 1u << 2, /* its name is an option of a Connection field */
};
#define H1_HF_DROP (H1_HF_HOP_BY_HOP | H1_HF_FRAMING | H1_HF_CONN_LISTED)

enum h1_target_form {
	H1_TF_ORIGIN = 0, /* /path?query */
	H1_TF_ABSOLUTE,   /* http://host:port/path?query (forward proxy) */
	H1_TF_AUTHORITY,  /* host:port (CONNECT) */
	H1_TF_ASTERISK,   /* * (OPTIONS) */
};

enum h1_body {
	H1_BODY_NONE = 0,
	H1_BODY_LENGTH,       /* content_length bytes (may be 0) */
	H1_BODY_CHUNKED,      /* use h1_chunked_feed */
	H1_BODY_UNTIL_CLOSE,  /* responses only: read until the server closes */
};

/* A range of the caller's buffer. */
struct h1_span {
	uint32_t off, len;
};

struct h1_header {
	struct h1_span name;   /* as received (case preserved) */
	struct h1_span value;  /* without leading/trailing OWS; may be empty */
	uint16_t id;           /* enum h1_hdr_id */
	uint16_t flags;        /* enum h1_hdr_flag */
};

/* A parsed head. Spans point into the buffer passed to h1_parse. */
struct h1_msg {
	/* request line (requests only) */
	struct h1_span method, target;
	int method_id;            /* enum h1_method; responses: the method given to init */
	enum h1_target_form target_form;
	struct h1_span scheme;    /* absolute-form: "http"; else empty */
	struct h1_span authority; /* absolute-form: host[:port]; authority-form: the target */
	struct h1_span path;      /* origin-form: the target; absolute-form: from the first
	                           * '/' or '?' after the authority (may be empty) */
	/* status line (responses only) */
	int status;
	struct h1_span reason;    /* may be empty */

	int version_minor;        /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
	struct h1_header headers[H1_MAX_HEADERS];
	unsigned nheaders;

	enum h1_body body;
	uint64_t content_length;  /* when a Content-Length field was present (even for
	                           * bodiless responses, e.g. HEAD); else 0 */
	bool keep_alive;          /* connection may carry another message after this one:
	                           * 1.1 unless "close"; 1.0 only with "keep-alive"; false
	                           * for UNTIL_CLOSE responses */
	bool expect_continue;     /* HTTP/1.1 request with Expect: 100-continue */
	bool upgrade;             /* request: HTTP/1.1, Upgrade field and Connection: upgrade;
	                           * response: status 101 */
	bool has_te_trailers;     /* a TE field lists "trailers" (gRPC needs it) */
	int host_idx;             /* index of the Host field in headers[], or -1 */
	int upgrade_idx;          /* index of the first Upgrade field, or -1 */
	uint32_t head_len;        /* bytes of the head including the final CRLFCRLF */
};

/* Parser state. Fields before the private marker are results; do not touch the rest. */
struct h1_parser {
	int status;           /* on H1_ERROR: 400, 414, 431, 505 for requests, 502 responses */
	const char *reason;   /* on H1_ERROR: static text saying exactly why */
	/* private */
	uint32_t scan;        /* next byte to look at for an LF */
	uint32_t line_start;  /* first byte of the line being scanned */
	uint32_t start;       /* first byte of the start line (after skipped empty lines) */
	uint32_t first_lf;    /* the LF ending the start line */
	uint32_t nlines;      /* non-empty lines seen */
	uint32_t head_len;
	int req_method;
	bool is_request;
	uint8_t state;
};

/* Prepares p for one message. is_request selects request or response parsing; for a
 * response, request_method is the enum h1_method of the request it answers (HEAD and
 * CONNECT change the framing), ignored for requests. */
void h1_parser_init(struct h1_parser *p, bool is_request, int request_method);

/* Parses the head at buf[0 .. len). Returns H1_OK with m filled, H1_AGAIN when the head
 * is not complete yet (m untouched), or H1_ERROR with p->status and p->reason set. Bytes
 * after the head (body, next request) are never looked at. Resumable: call again with
 * the same buffer start and a larger len; already-scanned bytes are not scanned again.
 * After H1_ERROR every call returns H1_ERROR; after H1_OK a call parses the same head
 * again into m. */
int h1_parse(struct h1_parser *p, const char *buf, size_t len, struct h1_msg *m);

/* Chunked body decoder (RFC 9112 §7.1).
 *
 * Accepts: chunk-size of 1..16 hex digits, optional extensions with the full grammar
 * (BWS ";" BWS token [BWS "=" BWS (token / quoted-string)]), the size line at most
 * H1_MAX_CHUNK_LINE bytes, CRLF after the size line and after each chunk's data, then
 * "0" line, trailer section (field lines as in a head, at most H1_MAX_HEADERS fields and
 * H1_MAX_TRAILERS bytes) and the final CRLF. Anything else (bare LF, "0x5", "-1", "5 5",
 * "5 " without extension, 17 digits, missing CRLF after data...) is H1_ERROR, with
 * c->reason set. A request body error is a 400, a response body error a 502.
 *
 * How to call it (in points at the first unconsumed body byte, n bytes follow):
 *     for (;;) {
 *         rc = h1_chunked_feed(&c, in, n, &used, &data, &trailers);
 *         if (rc == H1_DATA)  payload: in + data.off, data.len bytes;
 *         if (rc == H1_OK)    trailer section: in + trailers.off, trailers.len bytes;
 *         in += used; n -= used;  // consumed bytes are validated framing and payload:
 *                                 // a relay may forward them unchanged
 *         if (rc == H1_DATA) continue;
 *         if (rc == H1_AGAIN) keep in[0 .. n) (non-empty only inside the trailer section),
 *                             append more bytes after it, call again;
 *         if (rc == H1_OK)    the body ended; in[0 .. n) is the next message;
 *         if (rc == H1_ERROR) c.reason says why; stop;
 *     }
 * data and trailers are relative to the `in` given to that call. The trailer section is
 * consumed all at once: while it is incomplete the decoder returns H1_AGAIN without
 * consuming it, so the caller's buffer must be able to hold H1_MAX_TRAILERS bytes; it
 * remembers how far it scanned, so re-presenting those bytes costs nothing.
 * trailers covers the field lines and the final CRLF (len 2 when there are no trailer
 * fields); pass it to h1_parse_trailers to get the fields. trailers may be NULL. */
struct h1_chunked {
	const char *reason;  /* on H1_ERROR */
	uint64_t payload;    /* payload bytes handed out so far */
	/* private */
	uint64_t size;       /* chunk size being parsed, then bytes of data left */
	uint32_t line_len;   /* bytes of the current size line */
	uint32_t tscan;      /* trailer scan position, relative to the trailer start */
	uint32_t tline;      /* start of the trailer line being scanned */
	uint32_t tlines;
	uint8_t ndigits;
	uint8_t state;
};

void h1_chunked_init(struct h1_chunked *c);
int h1_chunked_feed(struct h1_chunked *c, const char *in, size_t len, size_t *consumed,
                    struct h1_span *data, struct h1_span *trailers);

/* Splits a trailer section returned by h1_chunked_feed (buf = start of the section, len =
 * trailers.len) into at most max fields (spans relative to buf, flags and ids set as for
 * a head). Returns 0 with *n set, or -1 if buf is not a valid trailer section or has more
 * than max fields. The proxy should not forward framing, routing or hop-by-hop fields
 * received as trailers (RFC 9110 §6.5.1): check flags and id. */
int h1_parse_trailers(const char *buf, size_t len, struct h1_header *out, unsigned max,
                      unsigned *n);

/* ---- helpers ---- */

/* ASCII case-insensitive comparison of two field names (or any strings). */
bool h1_name_eq(const char *a, size_t alen, const char *b, size_t blen);

/* Index of the first field at index >= from whose name equals name (case-insensitive),
 * or -1. buf is the buffer m was parsed from. */
int h1_header_find(const struct h1_msg *m, const char *buf, const char *name, unsigned from);

/* enum h1_hdr_id of a field name (case-insensitive), H1_H_OTHER if not recognised. */
int h1_header_id(const char *name, size_t len);

/* H1_HF_* flags that a field name has by itself (not H1_HF_CONN_LISTED, which depends on
 * the message). Hop-by-hop, decided from RFC 9110 §7.6.1 ("Proxy-Connection, Keep-Alive,
 * TE, Transfer-Encoding, Upgrade" plus Connection itself), which is also the set HTTP/2
 * forbids (RFC 9113 §8.2.2; TE there is allowed only as "trailers", which the proxy adds
 * back from has_te_trailers). NOT hop-by-hop: Trailer (end-to-end in RFC 9110 §6.6.2),
 * Proxy-Authenticate and Proxy-Authorization (RFC 9110 lets a proxy relay them; this
 * gateway does no proxy authentication). Content-Length and Transfer-Encoding carry
 * H1_HF_FRAMING: the proxy re-adds its own framing. */
unsigned h1_header_flags(const char *name, size_t len);
bool h1_is_hop_by_hop(const char *name, size_t len);

/* True if s[0 .. n) is uri-host [":" port] as a Host field must be (RFC 3986 host:
 * reg-name, IPv4, or a bracketed IPv6 literal; port 1-5 digits <= 65535, required when
 * need_port): no userinfo, no comma, no whitespace. The rule h1_parse applies to Host and
 * to a CONNECT target, for heads that did not come as HTTP/1.1 text (h2_req.h). */
bool h1_authority_ok(const char *s, size_t n, bool need_port);

/* enum h1_method of a method token (case-sensitive, RFC 9110 §9.1), H1_M_OTHER if none. */
int h1_method_lookup(const char *s, size_t len);
/* "GET"... for a known id, NULL for H1_M_OTHER or out of range. */
const char *h1_method_name(int id);

/* Standard reason phrase ("Not Found"), or "" for a code without one. */
const char *h1_status_reason(int code);

/* True if field i of m was named by a Connection option (so must not be forwarded). */
static inline bool h1_conn_listed(const struct h1_msg *m, unsigned i)
{
	return i < m->nheaders && (m->headers[i].flags & H1_HF_CONN_LISTED);
}

/* The bytes of a span. */
static inline const char *h1_ptr(const char *buf, struct h1_span s)
{
	return buf + s.off;
}

#endif
