/* fwd_mirror: a route's mirror policies (mirror.h) on the request path (part of the fwd
 * module, see fwd_int.h). */
#ifndef EGRESS_PROXY_FWD_MIRROR_H
#define EGRESS_PROXY_FWD_MIRROR_H

#include <stddef.h>

struct dconn;
struct stream;
struct worker;

/* st was routed to a destination and its route has mirror policies: draws which of them
 * this request is mirrored to and, once the request body is whole (now for a request
 * without one), sends the shadows. Never fails st. */
void fmir_begin(struct stream *st);
/* d_forward_body took st's body bytes d->in[from .. in_pos), as framed by the client:
 * kept for the shadows; when the body is whole they are sent. */
void fmir_body(struct stream *st, size_t from);
/* st's waiting shadows dropped: the request ended before its body was whole (an
 * upstream that answered early, a client that left); counted. */
void fmir_pend_drop(struct stream *st);
/* A shadow's exchange ended (st_log's place for a shadow): counted, not logged. */
void fmir_done(struct stream *st);
/* A shadow's dconn is closed (d_close): freed. */
void fmir_gone(struct dconn *d);
/* Drain or shutdown: every shadow in flight on w is cancelled (counted as failed). */
void fmir_cancel_all(struct worker *w);

#endif
