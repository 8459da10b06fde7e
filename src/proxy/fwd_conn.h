/* fwd_conn: circuit breaking, outlier hooks, pool keys, st_connect (fwd_conn.c). */
#ifndef EGRESS_PROXY_FWD_CONN_H
#define EGRESS_PROXY_FWD_CONN_H

#include "proxy/fwd_int.h"

void st_cb_set(struct stream *st, enum st_cb to);
void cc_kick(struct worker *w, struct cb_cluster *cc);
void st_on_wake(struct loop *loop, struct loop_task *t);
void st_cb_end(struct stream *st);
void st_up_ready(struct stream *st);
struct cb_cluster *st_cc(struct stream *st);
void st_od(struct stream *st, enum od_result r, int code);
void st_h2_fallback(struct stream *st);
void st_connect(struct stream *st, bool fresh);

#endif
