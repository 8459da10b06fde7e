/* h2_req: an HTTP/2 request head (struct h2_request, HPACK-decoded by h2.c) made into
 * the parsed head the request path works on (struct h1_msg), decoded once: no HTTP/1.1
 * text is rendered and parsed again.
 *
 * The strings are copied once into caller storage (the stream's virtual connection's
 * input buffer) and m's spans point there, exactly as h1_parse's spans point into the
 * bytes it parsed, so everything that reads a parsed head (routing, authz, rewrite, the
 * access log, the upstream codecs) works on it unchanged. What h2.c and nghttp2 already
 * refuse (pseudo-field rules, upper-case or malformed names, CR/LF/NUL/controls in
 * values, connection-specific fields, TE other than "trailers", content-length against
 * the DATA, :authority against Host, the 60 KiB header list) is not checked again here;
 * what h1_parse checked and they do not, is (h2_request_msg).
 *
 *     size_t need = h2_request_msg_size(rq);
 *     ... make buf hold need bytes ...
 *     int status = h2_request_msg(rq, buf, &m, &reason);   // 0, or 400/414/431
 *     body: m.body (H1_BODY_LENGTH with the content-length, H1_BODY_CHUNKED when the
 *     length is unknown, H1_BODY_NONE with END_STREAM); the caller frames what it
 *     appends after m.head_len to match. */
#ifndef EGRESS_HTTP_H2_REQ_H
#define EGRESS_HTTP_H2_REQ_H

#include <stddef.h>

#include "http/h1.h"
#include "http/h2.h"

/* Bytes of storage h2_request_msg needs for rq (an upper bound). */
size_t h2_request_msg_size(const struct h2_request *rq);

/* Fills m from rq, copying the method, target, authority and fields into buf (at least
 * h2_request_msg_size(rq) bytes); m->head_len is the bytes used. The head as m has it:
 *   - method_id from the :method token; target: :path (origin-form, or "*" for OPTIONS:
 *     asterisk-form), for CONNECT the :authority (authority-form, host:port required);
 *   - headers[0] is "host" with the :authority (or the Host field h2.c took instead),
 *     host_idx 0; then the fields in order without content-length (the framing is
 *     m->body's), cookie crumbs joined with "; " into the first one (RFC 9113 8.2.3);
 *     each field's id and flags from h1's own tables (h1_header_id, h1_header_flags);
 *   - has_te_trailers from rq->te_trailers; version_minor 1, keep_alive false (a stream
 *     carries one request), no expect_continue (1xx is not relayed to HTTP/2 clients), no
 *     upgrade;
 *   - body: none with END_STREAM, else length (rq->content_length) or chunked.
 * Returns 0, or the status to answer with *reason set (static text):
 *   400  empty or invalid :authority/Host (h1_authority_ok: no userinfo, comma, spaces),
 *        :path not VCHARs, not origin-form, or "*" with a method other than OPTIONS;
 *   414  a request line ("METHOD target HTTP/1.1") over H1_MAX_START_LINE;
 *   431  more than H1_MAX_HEADERS fields once cookies are joined (host included).
 * m is filled only as far as the check that failed; m->method_id is always set (a HEAD
 * refused gets no body). */
int h2_request_msg(const struct h2_request *rq, char *buf, struct h1_msg *m,
                   const char **reason);

#endif
