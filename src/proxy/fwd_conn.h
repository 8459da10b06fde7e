/* fwd_conn: circuit breaking, outlier hooks, pool keys, st_connect (fwd_conn.c). */
#ifndef EGRESS_PROXY_FWD_CONN_H
#define EGRESS_PROXY_FWD_CONN_H

#include "proxy/fwd_int.h"
#include "proxy/retry.h"

void cc_kick(struct worker *w, struct cb_cluster *cc);
void st_on_wake(struct loop *loop, struct loop_task *t);
void st_cb_end(struct stream *st);
void st_up_ready(struct stream *st);
struct cb_cluster *st_cc(struct stream *st);
void st_od(struct stream *st, enum od_result r, int code);
void st_h2_fallback(struct stream *st);
void st_connect(struct stream *st, bool fresh);
struct istats_cluster *cl_stats(struct worker *w, const struct cluster *cl);
void st_upstream_failed(struct stream *st, unsigned flag, const char *details,
                        const char *reason, bool retryable);
/* Retries (the route's retry.h policy). st_retry_fail: an attempt failed without a
 * response (its connection already gone); st_retry_head: its final response head is in
 * st->resp, spans at b. True when a retry is on its way (st_retry_head closed the
 * attempt's connection); false: the caller answers as it would have. */
bool st_retry_fail(struct stream *st, enum retry_fail kind);
bool st_retry_head(struct stream *st, const char *b);
void st_on_rt_timer(struct loop *loop, struct loop_timer *t);
/* The attempt being made, from 1: x-envoy-attempt-count. */
static inline unsigned st_attempts(const struct stream *st)
{
	return 1u + st->rt_n + (st->retried ? 1u : 0u);
}
void st_set_ep(struct stream *st, const struct sock_addr *a, uint16_t port);

#endif
