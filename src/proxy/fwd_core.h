/* fwd_core: the exchange core: streams, routing, timeouts, finishing (fwd_core.c). */
#ifndef EGRESS_PROXY_FWD_CORE_H
#define EGRESS_PROXY_FWD_CORE_H

#include "proxy/fwd_int.h"

void st_reset(struct stream *st);
struct stream *st_get(struct dconn *d);
void st_put(struct dconn *d);
/* st's response head, from the worker's free list the first time (headers not cleared:
 * h1_parse and uh2_head fill what they count). */
struct h1_msg *st_resp(struct stream *st);
/* Frees the worker's free response heads (at its exit, with fwd_streams_free). */
void st_resp_free_all(struct worker *w);
void st_log(struct stream *st);
void st_begin(struct dconn *d);
void st_finish(struct stream *st);

#endif
