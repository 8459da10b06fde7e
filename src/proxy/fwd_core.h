/* fwd_core: the exchange core: streams, routing, timeouts, finishing (fwd_core.c). */
#ifndef EGRESS_PROXY_FWD_CORE_H
#define EGRESS_PROXY_FWD_CORE_H

#include "proxy/fwd_int.h"

void st_reset(struct stream *st);
struct stream *st_get(struct dconn *d);
void st_put(struct dconn *d);
struct istats_cluster *cl_stats(struct worker *w, const struct cluster *cl);
void st_log(struct stream *st);
void st_upstream_failed(struct stream *st, unsigned flag, const char *details,
                        const char *reason, bool retryable);
void st_set_ep(struct stream *st, const struct sock_addr *a, uint16_t port);
void st_begin(struct dconn *d);
void st_finish(struct stream *st);

#endif
