/* fwd_sidecar: the sidecar's classification, handoffs and destinations (fwd_sidecar.c). */
#ifndef EGRESS_PROXY_FWD_SIDECAR_H
#define EGRESS_PROXY_FWD_SIDECAR_H

#include "proxy/fwd_int.h"
#include "net/sni.h"

uint16_t st_sidecar_port(const struct stream *st);
void st_detach(struct stream *st);
void d_tcp_handoff(struct dconn *d, const char *sni, enum sni_status sst);
void d_gw_sni_handoff(struct dconn *d, const char *sni, enum sni_status sst);
int d_sniff(struct dconn *d);
void st_sidecar_connect(struct stream *st);
void st_original_dst(struct stream *st);
void st_sidecar_default(struct stream *st);
bool st_sidecar_tcp_route(struct stream *st, uint16_t port);

#endif
