/* fwd_core: the exchange core: streams, routing, timeouts, finishing (fwd_core.c). */
#ifndef EGRESS_PROXY_FWD_CORE_H
#define EGRESS_PROXY_FWD_CORE_H

#include "proxy/fwd_int.h"

void st_reset(struct stream *st);
struct stream *st_get(struct dconn *d);
void st_put(struct dconn *d);
void st_log(struct stream *st);
void st_begin(struct dconn *d);
void st_finish(struct stream *st);

#endif
