/* l4fwd: the data path of tls: and tcp: routes (l4route.h), in both roles: what a
 * connection that no HTTP is spoken on is routed to, as a tunnel request (tunnel.h).
 *
 *   sidecar  a TLS connection (by its ClientHello's SNI), a CONNECT (by its host), or
 *            opaque TCP (by its destination): the first tls:/tcp: route bound to "mesh"
 *            that matches decides, before the registry and the outbound traffic policy.
 *            A route that matches is followed or the connection is refused: it never
 *            falls back to a direct connection (the gateway cannot be bypassed). Nor can
 *            it be bypassed by not naming the host: a connection to an address of a
 *            host that a tls: route takes (an endpoint of its registry cluster), with no
 *            SNI, another one, or none at all, is refused.
 *   gateway  a PASSTHROUGH port: the ClientHello's SNI must be one of the servers' hosts
 *            and match a tls: route; a TCP port: the first tcp: route; an
 *            AUTO_PASSTHROUGH server: an SNI outbound_.PORT_.SUBSET_.HOST whose HOST its
 *            hosts admit goes to that cluster, bytes as they are (Istio's SNI-DNAT).
 *            Otherwise the connection is closed with NR (Envoy's filter_chain_not_found).
 *
 * Once routed, the connection is decided by the AuthorizationPolicies of the proxy
 * (l4_authz, Envoy's network RBAC filter): at the gateway after the ClientHello's SNI is
 * read (PASSTHROUGH) or at accept (TCP), at the sidecar when its first bytes are
 * classified; always before the tunnel connects upstream.
 *
 * A destination cluster whose DestinationRule originates TLS gets it under the tunnel
 * (l4tls.c): the older form of the egress gateway task, ISTIO_MUTUAL around the
 * application's TLS; on the gateway a protocol TLS server with a terminating mode hands
 * what it terminated to the routes (l4_term_handoff). Worker thread only. */
#ifndef EGRESS_PROXY_L4FWD_H
#define EGRESS_PROXY_L4FWD_H

#include "net/sni.h"
#include "proxy/l4route.h"
#include "proxy/snap.h"
#include "proxy/tunnel.h"

struct worker;

/* Sidecar, on snapshot s (the one r->snap will hold: r->cl belongs to it). st is what
 * the SNI reader said (SNI_OK, SNI_NO_NAME, ...; SNI_NOT_TLS for a
 * connection that is not TLS). Returns 0 when no route applies (the caller goes on as
 * before), 1 when r has been filled: r->cl to follow, or a refusal (r->fail_*). */
int l4_route_sidecar(struct worker *w, const struct snap *s, const struct l4_req *q,
                     enum sni_status st, struct tun_req *r);

/* Gateway: routes a connection accepted on listener l (l4_mode SNI or TCP). Always fills
 * r: r->cl, or a refusal. */
void l4_route_gateway(struct worker *w, const struct snap_listener *l, const struct l4_req *q,
                      enum sni_status st, struct tun_req *r);

/* Gateway: a connection accepted on a TCP listener (l4_mode TCP) goes to a tunnel at
 * once, by the listener's tcp: routes (a server-first protocol sends nothing first). The
 * tunnel owns fd from here. */
void l4_accept_tcp(struct worker *w, const struct snap_listener *l, int fd,
                   const struct sock_addr *peer);

/* Gateway: whether the server the handshake on listener l chose by the SNI sni (the most
 * specific host) is protocol TLS with a terminating mode (snap_server.term_l4), whose
 * inner bytes go by tls:/tcp: routes rather than HTTP. */
bool l4_term_takes(const struct snap_listener *l, const char *sni);
/* Then: the bytes inside go by the listener's tls: (on sni) and tcp: routes, decided by
 * the AuthorizationPolicies with the client's principal (NULL: none), through a tunnel
 * over l4tls.c's server side. fd must not be registered with the loop. Returns 0 (tls and
 * fd are owned from then on), or -1 when the relay could not be made (still the
 * caller's, to close). */
int l4_term_handoff(struct worker *w, struct snap *s, const struct snap_listener *l,
                    struct tls_conn *tls, int fd, const char *sni,
                    const struct sock_addr *local, const struct sock_addr *remote,
                    const char *local_s, const char *remote_s, const char *principal,
                    int64_t start_wall_ms, uint64_t start_ms);

/* Gateway, a port with PASSTHROUGH and terminating servers (l4_mode PEEK): whether the
 * ClientHello's name (NULL: none) goes to a PASSTHROUGH server, that is whether one of
 * those has a more specific host for it than any terminating server. */
bool l4_peek_passthrough(const struct snap_listener *l, const char *sni);
/* Both roles: AuthorizationPolicy (authz.h) for a connection routed by r (nothing is
 * decided when r is already a refusal: as in Envoy, a connection that no filter chain
 * takes never reaches the RBAC filter). q names what the policies see (SNI, port, the
 * destination address); peer and principal (NULL: none) the client. Counts the decision
 * (rbac_allowed / rbac_denied), logs AUDIT matches, and on a denial makes r a refusal
 * with details "rbac_access_denied_matched_policy[...]": the tunnel then logs it and
 * closes the connection without connecting upstream. Returns true when denied. */
bool l4_authz(struct worker *w, const struct snap *s, const struct l4_req *q,
              const struct sock_addr *peer, const char *remote_s, const char *principal,
              struct tun_req *r);

#endif
