/* fwd_vconn: HTTP/2 streams' virtual connections (fwd_vconn.c), called by fwd_h2.c. */
#ifndef EGRESS_PROXY_FWD_VCONN_H
#define EGRESS_PROXY_FWD_VCONN_H

#include "proxy/fwd_int.h"

struct h2ds;

/* A virtual connection for one stream of h's connection d. Never NULL. */
struct dconn *fwd_vconn_new(struct dconn *d, struct h2ds *ds);
/* Request bytes (HTTP/1.1 head, then body with the head's framing) for v; may start the
 * request, answer it, and free v (h2d_vconn_gone is called first). */
void fwd_vconn_input(struct dconn *v, const void *p, size_t n);
/* The stream's send queue has room again: pull more output. May free v. */
void fwd_vconn_writable(struct dconn *v);
/* The client reset the stream or the connection went away: v is closed now (logged DC
 * when a request was in flight). h2d_vconn_gone is called from here. */
void fwd_vconn_abort(struct dconn *v);
/* The h2 connection d is finished (GOAWAY done, error): frees it (and calls h2d_free). */
void fwd_h2_conn_done(struct dconn *d);


#endif
