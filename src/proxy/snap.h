/* snap: a compiled, immutable configuration snapshot.
 *
 * The control path (main thread) turns the store's resources into a snapshot:
 *     store_load -> resources -> snap_build -> struct snap (listeners, route tables,
 *     clusters with their TLS contexts)
 * and publishes it to the workers (worker.h). A snapshot is never modified after
 * snap_build returns, except for the cluster endpoint sets (cluster.h explains how those
 * change safely). It is reference-counted: the main thread holds one reference for the
 * current snapshot and each worker holds one while it still has requests that began on
 * it, so requests in flight finish on the configuration they started with.
 *
 * snap_build validates the configuration as a whole: any error leaves the previous
 * snapshot serving (nothing is half-applied). Runtime problems that Istio tolerates (a
 * missing credential, an unresolvable host) are not errors: the cluster records the
 * reason and requests to it fail fast with UF / DF. */
#ifndef EGRESS_PROXY_SNAP_H
#define EGRESS_PROXY_SNAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/tls.h"

#include "config/config.h"
#include "core/diag.h"
#include "net/sock.h"
#include "proxy/cluster.h"
#include "proxy/route.h"

struct store_contents;
struct secret_cache;
struct l4_table;
struct authz;

enum snap_role {
	SNAP_ROLE_GATEWAY,
	SNAP_ROLE_SIDECAR,
};

enum snap_server_tls {
	SNAP_SRV_PLAIN,           /* protocol HTTP */
	SNAP_SRV_SIMPLE,
	SNAP_SRV_MUTUAL,
	SNAP_SRV_ISTIO_MUTUAL,
	SNAP_SRV_PASSTHROUGH,     /* not terminated; routed by SNI (tls routes) */
	SNAP_SRV_TCP,             /* protocol TCP (or another non-HTTP, non-TLS one): tcp routes */
};

/* How a listener's connections are routed when no HTTP is spoken on them. */
enum snap_l4_mode {
	SNAP_L4_NONE,             /* HTTP (plain or terminated) */
	SNAP_L4_SNI,              /* PASSTHROUGH servers only: the ClientHello's SNI, tls routes */
	SNAP_L4_TCP,              /* TCP servers: tcp routes, at accept */
	SNAP_L4_PEEK,             /* PASSTHROUGH and terminating servers on one port: the
	                           * ClientHello is peeked at (not consumed); an SNI a
	                           * PASSTHROUGH server wins goes by tls routes, the others are
	                           * terminated as usual */
};

/* One Gateway server bound to a listener. */
struct snap_server {
	char *gateway;            /* "istio-system/istio-egressgateway" */
	char *port_name;          /* server port name */
	char **hosts;             /* namespace part stripped; "*" and "*.x" allowed */
	size_t nhosts;
	enum snap_server_tls tls;
	struct tls_ctx *ctx;      /* terminating modes; NULL for PLAIN/PASSTHROUGH */
	char **allowed_sans;      /* client identities allowed (Gateway tls.subjectAltNames) */
	size_t nallowed_sans;
	bool https_redirect;
	/* tls.mode AUTO_PASSTHROUGH (tls == SNAP_SRV_PASSTHROUGH): an SNI of Istio's form
	 * outbound_.PORT_.SUBSET_.HOST whose HOST one of hosts admits goes to that cluster
	 * without a VirtualService (l4fwd.c). */
	bool auto_sni;
	/* protocol TLS with a terminating mode (ISTIO_MUTUAL, SIMPLE, MUTUAL): what is inside
	 * the TLS goes by the listener's tls:/tcp: routes (l4fwd.c l4_term_handoff), not HTTP:
	 * the older form of the egress gateway task. */
	bool term_l4;
	/* Where the server certificate came from, for config_dump: "kubernetes://NAME",
	 * "file:/path/cert.pem" or "identity:/dir"; NULL for PLAIN/PASSTHROUGH. */
	char *tls_source;
};

struct snap_listener {
	char *name;               /* "0.0.0.0_80" as Envoy names it */
	struct sock_addr addr;
	uint16_t port;
	bool tls;                 /* the servers terminate TLS (all of them or none) */
	/* The listener's TLS context when tls: the first terminating server's context, with
	 * SNI dispatch installed (tls_server_set_sni) choosing among the servers by their
	 * hosts; an SNI no server matches is refused. Borrowed from servers[]; NULL when
	 * !tls. A listener whose servers are all PASSTHROUGH has tls == false, ctx == NULL
	 * (not served yet: the data path will route those by SNI). The SNI callback reads
	 * this listener, so a handshake on ctx must not outlive the snapshot: hold a snap
	 * reference for every connection accepted on it until its handshake is done. */
	struct tls_ctx *ctx;
	struct snap_server *servers;
	size_t nservers;
	struct route_table *routes;  /* "http.80" */
	/* A listener of plain HTTP servers also accepts the mesh's mutual TLS (a sidecar's
	 * automatic mutual TLS, as Istio's gateways do, PERMISSIVE): a connection that
	 * starts with a TLS handshake record is served with this ISTIO_MUTUAL context (the
	 * gateway's workload certificate, a client certificate chained to the mesh root
	 * required), then routed like plain HTTP. NULL without --identity. Owned. */
	struct tls_ctx *mesh_ctx;
	/* Listeners with PASSTHROUGH or TCP servers: their tls:/tcp: routes (l4route.h). */
	enum snap_l4_mode l4_mode;
	struct l4_table *l4;
};

struct snap {
	atomic_uint refs;
	uint64_t version;         /* increases with each snapshot built by this process */
	enum snap_role role;

	struct snap_listener *listeners;
	size_t nlisteners;

	struct cluster **clusters;   /* sorted by name */
	size_t nclusters;

	/* The sidecar's outbound route table (VirtualServices bound to "mesh"), keyed by the
	 * destination port; NULL in the gateway role. */
	struct route_table **outbound;
	size_t noutbound;
	/* The sidecar's tls: and tcp: routes bound to "mesh" (l4route.h); NULL in the gateway
	 * role. Consulted before the registry for TLS, CONNECT and opaque connections. */
	struct l4_table *mesh_l4;

	/* ServiceEntry addresses x ports (snap_addr.c), longest prefix first. */
	struct snap_addr *addrs;
	size_t naddrs;

	/* The AuthorizationPolicies that apply to this proxy, compiled (proxy/authz.h);
	 * NULL when none does (every request allowed). */
	struct authz *authz;
};

/* One ServiceEntry address (an IP is a /32 or /128) and port, and its cluster. */
struct snap_addr {
	int family;                   /* AF_INET, AF_INET6 */
	uint8_t net[16];
	unsigned prefix;
	uint16_t port;
	size_t order;                 /* document order, for equal prefixes */
	bool opaque;                  /* the port's protocol is neither HTTP-like nor unset:
	                               * TCP proxying, no HTTP detection (Istio's TCP ports) */
	struct cluster *cl;
};

/* The entry of the ServiceEntry whose addresses cover dst's IP and whose ports have
 * dst's port (the longest prefix wins), or NULL. */
const struct snap_addr *snap_addr_find(const struct snap *s, const struct sock_addr *dst);

/* What snap_build needs besides the resources. */
struct snap_params {
	enum snap_role role;
	const char *namespace;        /* the proxy's namespace (istio-system for the gateway) */
	const char **labels;          /* "key=value" pairs of --labels, NULL-terminated */
	const char *identity_dir;     /* cert-chain.pem, key.pem, root-cert.pem; may be NULL */
	const char *listen_address;   /* "0.0.0.0" by default */
	const char *store_root;       /* for credentialName Secrets */
	/* HTTP/2 by ALPN: Gateway TLS servers offer "h2" then "http/1.1" (as Istio's do; h2
	 * streams are served by fwd_h2.c), clusters set h2_alpn (cluster.h). false: only
	 * HTTP/1.1 anywhere (egressgw --no-http2). */
	bool http2;
	/* Hosts known to be mesh workloads (FQDNs, NULL-terminated; may be NULL): the egress
	 * gateway's service, --mesh-hosts. With the other signs (snap_cluster.c), a cluster
	 * to one of them that no DestinationRule gives `tls` speaks ISTIO_MUTUAL. */
	const char **mesh_hosts;
	/* The credentials loaded so far (secrets/secret.h), kept across builds by the owner:
	 * last good versions, TLS client contexts reused while their inputs are unchanged,
	 * the list the admin shows. NULL: a cache for this build only. */
	struct secret_cache *secrets;
};

/* Builds a snapshot from every resource of the store. Returns the snapshot (refs = 1), or
 * NULL with the reasons in d. Warnings (unresolved references) may be added either way.
 * With p->secrets, the build runs between secret_cache_begin and secret_cache_commit (or
 * secret_cache_abort when it fails); events about credentials queue in the cache. */
struct snap *snap_build(const struct store_contents *contents, const struct snap_params *p,
                        struct diags *d);

/* How well server sv's hosts match sni (NULL: none sent): 0 not at all, then "*", then
 * wildcards by length, an exact host highest. SNI dispatch picks the highest. */
size_t snap_server_sni_score(const struct snap_server *sv, const char *sni);

/* The cluster with that name, or NULL (binary search). */
struct cluster *snap_cluster_find(const struct snap *s, const char *name);

static inline struct snap *snap_ref(struct snap *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

/* Drops a reference; the last one frees the snapshot (route tables, clusters, contexts). */
void snap_unref(struct snap *s);
/* Appends the JSON of s for /config_dump (listeners, route tables, clusters, policies).
 * Rendered when asked for, not kept: at 10,000 hosts it is 21 MB. Call from the thread
 * that swaps endpoint sets (the main thread), as static endpoints are read. */
void snap_config_dump(const struct snap *s, struct sbuf *out);

/* ---- JSON writing (config_dump; usable by the admin endpoint for other documents) ----
 *
 * A small streaming writer that handles commas and indentation (two spaces, as Envoy's
 * config_dump). Keys are given with each value inside objects and are NULL inside
 * arrays. Strings are escaped (quotes, backslash, control characters); bytes >= 0x80
 * are copied as they are (the input is UTF-8). A NULL string value writes null. */
#define SNAP_JSON_MAX_DEPTH 32

struct snap_json {
	struct sbuf *out;
	unsigned depth;
	bool nonempty[SNAP_JSON_MAX_DEPTH];
};

void snap_json_init(struct snap_json *j, struct sbuf *out);
void snap_json_obj_begin(struct snap_json *j, const char *key);
void snap_json_obj_end(struct snap_json *j);
void snap_json_arr_begin(struct snap_json *j, const char *key);
void snap_json_arr_end(struct snap_json *j);
void snap_json_str(struct snap_json *j, const char *key, const char *v);
void snap_json_int(struct snap_json *j, const char *key, long long v);
void snap_json_bool(struct snap_json *j, const char *key, bool v);
void snap_json_null(struct snap_json *j, const char *key);
/* A route's "fault" and "direct_response" objects, and its redirect object's "scheme",
 * "port", "derive_port" (route_fault.h). */
void snap_json_route_fault(struct snap_json *j, const struct route_fault *f);
void snap_json_route_redirect(struct snap_json *j, const struct route_fault *f);
/* "source": "FILE:LINE" of the route's rule, or null. */
void snap_json_route_source(struct snap_json *j, const struct route *r);
/* Appends s as a quoted, escaped JSON string to out. */
void snap_json_escape(struct sbuf *out, const char *s);

#endif
