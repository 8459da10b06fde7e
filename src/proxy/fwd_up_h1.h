/* fwd_up_h1: the HTTP/1.1 upstream codec (fwd_up_h1.c). */
#ifndef EGRESS_PROXY_FWD_UP_H1_H
#define EGRESS_PROXY_FWD_UP_H1_H

#include "proxy/fwd_int.h"

void u_close(struct uconn *u);
int d_forward_body(struct dconn *d);

#endif
