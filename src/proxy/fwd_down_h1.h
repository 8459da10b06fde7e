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
void d_on_io(struct loop *loop, struct loop_io *io, unsigned ev);

#endif
