/* sidecar: what the sidecar role adds to the data path, apart from the I/O.
 *
 * The sidecar has one listener (--outbound) that receives the application's outbound
 * connections two ways: as an HTTP proxy (absolute-form requests, CONNECT) and
 * transparently (connections redirected there by iptables REDIRECT; SO_ORIGINAL_DST gives
 * where they were going). fwd_sidecar.c looks at the first bytes of each connection and decides:
 *
 *   first bytes                  what happens
 *   TLS ClientHello (0x16 ...)   the tls: routes bound to "mesh" by SNI and port (to the
 *                                egress gateway, l4fwd.c), else an opaque tunnel to the
 *                                original destination's cluster, chosen by SNI and port
 *                                (TLS passes through unterminated either way)
 *   an HTTP request line         HTTP routing (fwd_core.c): absolute-form by the URL's
 *                                authority, origin-form by Host and the original port,
 *                                CONNECT host:port becomes an opaque tunnel (tls:/tcp:
 *                                routes first, by host and port)
 *   anything else, or nothing    tcp: routes bound to "mesh", else an opaque tunnel to
 *   within SIDECAR_DETECT_MS     the original destination (a server-first protocol such
 *                                as SMTP sends nothing first)
 *
 * Routing follows Istio's sidecar: the outbound route table of the destination port
 * (VirtualServices bound to "mesh", ServiceEntry hosts), then the outbound traffic policy
 * for everything else: ALLOW_ANY passes it to the original destination through
 * PassthroughCluster (route allow_any), REGISTRY_ONLY refuses it through BlackHoleCluster
 * (route block_all: 502 for HTTP, a closed connection for TCP).
 *
 * This file holds the pure parts, each testable without sockets: classifying first
 * bytes (the SNI of a ClientHello is net/sni.c's), splitting an authority, finding the
 * route table or the cluster for a destination, and the two special clusters. */
#ifndef EGRESS_PROXY_SIDECAR_H
#define EGRESS_PROXY_SIDECAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/cluster.h"
#include "proxy/route.h"
#include "proxy/snap.h"

/* How long a redirected connection may stay silent before it is taken to be a
 * server-first protocol and tunnelled as opaque TCP. */
#define SIDECAR_DETECT_MS 1000

enum sidecar_proto {
	SIDECAR_NEED_MORE,     /* not enough bytes to tell */
	SIDECAR_PROTO_TLS,     /* a TLS handshake record */
	SIDECAR_PROTO_HTTP,    /* an HTTP/1.x request line (method token, then SP) */
	SIDECAR_PROTO_OPAQUE,  /* anything else */
};

/* Classifies the first bytes a client sent. Leading CRLFs (allowed before a request)
 * count as HTTP when a method follows. Never reads past len. */
enum sidecar_proto sidecar_classify(const char *buf, size_t len);

/* Splits an authority "host", "host:port", "[v6]" or "[v6]:port" (len bytes, not
 * NUL-terminated) into host (lower-cased, brackets removed, size n) and *port (dflt when
 * absent). Returns 0, or -1 when the host does not fit, is empty or the port is not
 * 1..65535. */
int sidecar_split_authority(const char *a, size_t len, char *host, size_t n, uint16_t *port,
                            uint16_t dflt);

/* The sidecar's outbound route table for a destination port, or NULL. */
const struct route_table *sidecar_table(const struct snap *s, uint16_t port);

/* The cluster that carries opaque TCP (TLS passthrough, CONNECT tunnels) to host:port:
 * "outbound|PORT||HOST" when the snapshot has it (a ServiceEntry host and port, or a
 * route destination), else the first ServiceEntry cluster of that port whose wildcard
 * host covers host. NULL when none: the outbound traffic policy decides. */
struct cluster *sidecar_tcp_cluster(const struct snap *s, const char *host, uint16_t port);

/* Istio's special clusters and routes. Never freed, never written after start: the
 * passthrough cluster has original-destination discovery and no TLS; the black hole has
 * no endpoints. */
extern struct cluster sidecar_passthrough_cluster;   /* "PassthroughCluster" */
extern struct cluster sidecar_blackhole_cluster;     /* "BlackHoleCluster" */
extern const struct route sidecar_allow_any_route;   /* "allow_any" */
extern const struct route sidecar_block_all_route;   /* "block_all" */

#endif
