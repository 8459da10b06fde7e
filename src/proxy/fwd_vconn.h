/* fwd_vconn: HTTP/2 streams' virtual connections (fwd_vconn.c), called by fwd_h2.c. */
#ifndef EGRESS_PROXY_FWD_VCONN_H
#define EGRESS_PROXY_FWD_VCONN_H

#include "proxy/fwd_int.h"
#include "proxy/fwd_h2.h"

/* The virtual connections as fwd_h2.c's sink (h2d_set_sink, from fwd_init): a stream's
 * request bytes reach the HTTP/1.1 downstream codec through them (fwd_vconn.c). */
extern const struct h2d_sink fwd_vconn_sink;

#endif
