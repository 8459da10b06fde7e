/* fwd_down_h1: the HTTP/1.1 downstream codec and the dconn lifecycle (fwd_down_h1.c). */
#ifndef EGRESS_PROXY_FWD_DOWN_H1_H
#define EGRESS_PROXY_FWD_DOWN_H1_H

#include "proxy/fwd_int.h"

void d_flush(struct dconn *d);
void d_close(struct dconn *d);
void d_on_timer(struct loop *loop, struct loop_timer *t);
void d_on_peek_retry(struct loop *loop, struct loop_timer *t);
void d_on_task(struct loop *loop, struct loop_task *t);
void d_settle(struct dconn *d);
void d_process(struct dconn *d);
/* d->st's head (st->req, spans into d->in) is complete: the request starts (st_begin),
 * with the connection's newest snapshot; status non-zero instead answers the head the
 * codec refused (400, 414, 431...: logged DPE with details, reason as the body) and
 * closes. Where d_process goes after h1_parse, and fwd_vconn.c after h2_request_msg. */
void d_start(struct dconn *d, int status, const char *reason, const char *details);
void d_on_io(struct loop *loop, struct loop_io *io, unsigned ev);

#endif
