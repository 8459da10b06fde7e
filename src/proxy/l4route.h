/* l4route: the compiled VirtualService tls: and tcp: routes, as Envoy's filter chains
 * with server_names / destination_port / prefix_ranges in front of a tcp_proxy.
 *
 * One l4_table per place that serves them: the sidecar's outbound side (routes bound to
 * "mesh", snap.mesh_l4) and each gateway listener (routes bound to one of the listener's
 * Gateways, snap_listener.l4). A table lists routes in VirtualService order; a worker asks
 * it once per connection:
 *   - tls routes first (they need the SNI of a ClientHello): the first route one of whose
 *     matches hits wins (match: sniHosts, with "*.x" wildcards; port; destinationSubnets);
 *   - then tcp routes (match: port, destinationSubnets, and, on the sidecar, the
 *     VirtualService's hosts against the destination's name), as Envoy prefers the more
 *     specific filter chain;
 *   - a route's destinations split connections by weight.
 * A tcp: match's sourceSubnet is compared with the connection's source address (the
 * application's on the sidecar, the downstream peer's on the gateway), as Envoy's
 * source_prefix_ranges; a connection whose source is unknown does not match it.
 * Conditions egressgw cannot evaluate here (a destinationSubnets entry that is not an
 * address) do not make a match broader or narrower: a route using one is compiled with
 * `refuse` set, and a connection it would take is refused (closed, logged with NR), never
 * sent elsewhere; sourceLabels and sourceNamespace are decided at compile time against
 * the proxy's own labels and namespace, as Istio does per proxy.
 *
 * Pure data and lookups, no I/O: the data path (fwd_sidecar.c and fwd_down_h1.c hooks, l4fwd.c) does the rest. A
 * table belongs to a snapshot and is immutable once built. */
#ifndef EGRESS_PROXY_L4ROUTE_H
#define EGRESS_PROXY_L4ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/sock.h"
#include "proxy/route.h"

/* An address prefix (destinationSubnets). */
struct l4_cidr {
	int family;                /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned bits;
};

struct l4_match {
	char **hosts;              /* tls: sniHosts; tcp (sidecar): the VirtualService hosts;
	                            * none: any */
	size_t nhosts;
	uint16_t port;             /* 0: any */
	struct l4_cidr *subnets;   /* destinationSubnets; none: any */
	size_t nsubnets;
	struct l4_cidr src;        /* tcp: sourceSubnet, when has_src */
	bool has_src;
};

struct l4_route {
	bool tls;                  /* a tls: route (needs a ClientHello), else tcp: */
	char *vs;                  /* "ns/name" of the VirtualService */
	size_t index;              /* position in the VirtualService's tls: or tcp: list */
	struct l4_match *matches;  /* ORed; nmatches == 0 matches everything */
	size_t nmatches;
	struct route_dest *dests;  /* cluster names, linked to the snapshot's clusters */
	size_t ndests;
	uint32_t total_weight;
	/* Non-NULL: the route uses a field this proxy does not apply ("sourceSubnet");
	 * connections it takes are refused. */
	char *refuse;
	char *file;                /* where the route is, for messages */
	int line;
};

struct l4_table {
	char *name;                /* "mesh" or the listener's name */
	struct l4_route *routes;
	size_t nroutes;
};

/* What a connection offers to the lookup. */
struct l4_req {
	const char *sni;           /* the ClientHello's server name; NULL when not TLS or none */
	const char *host;          /* the destination's name when known (CONNECT host, SNI);
	                            * NULL: unknown */
	uint16_t port;             /* the destination (sidecar) or listener (gateway) port */
	const struct sock_addr *dst;   /* the destination address when known, else NULL */
	const struct sock_addr *src;   /* the connection's source (sourceSubnet), or NULL */
	bool http;                 /* an HTTP request: it names its host (Host), no SNI needed */
};

/* Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128). Returns 0, or
 * -1 when s is not one. */
int l4_cidr_parse(const char *s, struct l4_cidr *out);
bool l4_cidr_contains(const struct l4_cidr *c, const struct sock_addr *a);

/* Istio's AUTO_PASSTHROUGH SNI, "outbound_.PORT_.SUBSET_.HOST" (SUBSET empty: none):
 * fills port, subset and host (lower-case). Returns 0, or -1 when sni is not of that
 * form or a part does not fit. */
int l4_auto_sni_parse(const char *sni, uint16_t *port, char *subset, size_t subset_sz,
                      char *host, size_t host_sz);

/* The route the connection takes, or NULL. */
const struct l4_route *l4_lookup(const struct l4_table *t, const struct l4_req *req);
/* Whether any route of the table could apply to a connection to port (0: any port): used
 * to decide whether a connection must wait for its ClientHello before routing. */
bool l4_table_has_port(const struct l4_table *t, uint16_t port);

void l4_route_fini(struct l4_route *r);
void l4_table_free(struct l4_table *t);

#endif
