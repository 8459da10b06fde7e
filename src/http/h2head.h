/* h2head: a decoded HTTP/2 header block (a response head or a trailer section) kept for
 * later and read back as a struct h1_msg, with no HTTP/1.1 text in between.
 *
 * The fields h2.c's callbacks hand over live only during the callback. h2head_pack
 * appends them to a caller's buffer as one record (reused buffer: no allocation in the
 * steady state); h2head_fill reads the record back into a struct h1_msg whose spans point
 * into the record's own bytes (h2head_data), with each field's id and flags from h1's own
 * lookup (h1_header_id, h1_header_flags), so the request path treats it exactly as a head
 * h1_parse filled: the downstream codec drops framing and hop-by-hop fields and writes
 * its own framing from m->body. A caller may copy the h2head_data bytes elsewhere: the
 * spans are offsets.
 *
 * What a record refuses, the same limits h1_parse puts on a response, so an HTTP/2
 * response is never passed to an HTTP/1.1 client in a form its own parser would refuse:
 * h2head_pack returns -1 for a status outside 100..599, more than H1_MAX_HEADERS fields
 * or more than H1_MAX_HEAD bytes of fields; h2head_fields_ok is false for a name that is
 * not a token or a value with a control character other than HTAB, or DEL. h2head_pack
 * does not look at the characters again: the fields h2.c hands over have passed nghttp2's
 * own checks, which are these or stricter (nghttp2_check_header_name: lower-case tokens;
 * nghttp2_check_header_value_rfc9113: no control but HTAB, no DEL, no surrounding
 * whitespace), and a field that fails them resets the stream (h2.c on_invalid_header)
 * instead of reaching the owner. That second scan was 1,800 instructions of a sidecar's
 * 47,600 per proxied request (callgrind, bench/s3.sh's chain). Fields from anywhere else
 * go through h2head_fields_ok first (up_h2.c uh2_trailers_out). Nothing is rewritten:
 * fields keep their order and repetitions; none is dropped here (not Host, not Cookie,
 * not Content-Length: the receiver of m decides).
 *
 * Framing (h2head_fill, status >= 200): none for HEAD, 204 and 304 (content_length
 * still set from the content-length field if any), H1_BODY_LENGTH when the server sent
 * content-length or ended the stream with the head (length 0), otherwise H1_BODY_CHUNKED,
 * which here means "until END_STREAM": the payload arrives as DATA, unframed, and the
 * receiver frames it (chunked for an HTTP/1.1 client). */
#ifndef EGRESS_HTTP_H2HEAD_H
#define EGRESS_HTTP_H2HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "http/h1.h"
#include "http/h2.h"

/* True when every name of h[0 .. n) is a token and no value holds a control character
 * other than HTAB, or DEL (see above). */
bool h2head_fields_ok(const struct h2_header *h, size_t n);

/* Appends rs (status, fields, content_length, end_stream) to sb as one record. A trailer
 * section is packed with status 0 (the status range is then not checked). The fields'
 * characters are the caller's to have checked (above). Returns 0, or -1 (sb unchanged)
 * when the head is not representable as an h1_msg (see above). */
int h2head_pack(struct sbuf *sb, const struct h2_response *rs);

/* Size of the record at rec (bytes to skip to the next one). */
size_t h2head_size(const void *rec);
/* The record's field bytes (reason phrase, then names and values) and their length: what
 * the spans h2head_fill sets are relative to. */
const char *h2head_data(const void *rec, size_t *len);
/* The record's status (0 for a trailer section). */
int h2head_status(const void *rec);

/* Fills m from the record at rec: status, reason (the standard phrase), fields with ids
 * and flags, framing (above, req_method: the enum h1_method of the request it answers),
 * content_length, keep_alive true, version_minor 1, head_len = the data length. Spans
 * are relative to h2head_data(rec). Only m->headers[0 .. nheaders) are written. */
void h2head_fill(const void *rec, int req_method, struct h1_msg *m);

#endif
