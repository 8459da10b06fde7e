/* fwd_up_h1: the HTTP/1.1 upstream codec (fwd_up_h1.c). */
#ifndef EGRESS_PROXY_FWD_UP_H1_H
#define EGRESS_PROXY_FWD_UP_H1_H

#include "proxy/fwd_int.h"

void u_close(struct uconn *u);
void u_on_timer(struct loop *loop, struct loop_timer *t);
void u_on_task(struct loop *loop, struct loop_task *t);
void u_release(struct uconn *u, bool reusable);
void u_on_connected(struct uconn *u);
void u_on_io(struct loop *loop, struct loop_io *io, unsigned ev);
void st_send_head(struct stream *st);
int d_forward_body(struct dconn *d);

#endif
