/* snap_int: what the snapshot compiler's files (snap.c, snap_gw.c, snap_route.c,
 * snap_cluster.c, snap_json.c) share. Not a public API: only src/proxy/snap*.c include it.
 *
 * One struct snap_b lives for the duration of one snap_build call. It borrows the store's
 * resources (they outlive the call) and collects what later stages need: the clusters
 * the routes refer to, the TLS contexts already built (so identical settings share one
 * SSL_CTX), and per-cluster details that only config_dump wants. */
#ifndef EGRESS_PROXY_SNAP_INT_H
#define EGRESS_PROXY_SNAP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "config/res_gwapi.h"
#include "config/resource.h"
#include "config/store.h"
#include "core/diag.h"
#include "core/sbuf.h"
#include "proxy/snap.h"
#include "secrets/secret.h"

/* Istio's root namespace: the last place a DestinationRule is looked up. */
#define SNAP_ROOT_NS      "istio-system"
#define SNAP_KUBE_SUFFIX  ".svc.cluster.local"
#define SNAP_MESH         "mesh"

/* Defaults Istio applies to a cluster without connectionPool settings. */
#define SNAP_CONNECT_TIMEOUT_MS  10000
#define SNAP_IDLE_TIMEOUT_MS     (3600 * 1000)

/* A string -> index map (open addressing) for the lookups compile time repeats per
 * route, host and cluster, so that large configurations stay linear. Keys are borrowed
 * and must outlive the map; icase maps compare and hash ASCII case-insensitively. */
struct snap_map {
	struct snap_map_ent { const char *key; size_t val; } *v;
	size_t mask, n;
	bool icase;
};

void snap_map_init(struct snap_map *m, bool icase);
/* The value of key, or SIZE_MAX. */
size_t snap_map_get(const struct snap_map *m, const char *key);
/* Sets key's value unless key is present already (the first value stays). */
void snap_map_put(struct snap_map *m, const char *key, size_t val);
void snap_map_fini(struct snap_map *m);

/* A key naming a resource by its index in one of snap_b's lists. */
struct snap_ref {
	char *key;
	size_t idx;
};

/* A cluster some route (or ServiceEntry) asks for. */
struct snap_ckey {
	char *name;                /* outbound|PORT|SUBSET|HOST */
	char *host;
	char *subset;              /* "" when none */
	uint16_t port;
};

/* A built cluster plus where its TLS material came from (config_dump only). */
struct snap_bcluster {
	struct cluster *c;
	char *dr;                  /* "ns/name" of the DestinationRule applied, or NULL */
	char *se;                  /* "ns/name" of the ServiceEntry, or NULL */
	char *ca_src;              /* "system", "file:PATH", "kubernetes://NAME-cacert", ... */
	char *cert_src;            /* client certificate source, or NULL */
	char *crl_src;
};

/* A TLS client context already built in this snapshot, keyed by its settings. */
struct snap_ctxent {
	char *key;
	struct tls_ctx *ctx;       /* NULL when building failed */
	char *err;
};

/* A credential (credentialName) as the secret cache has it: the version in use (valid
 * for the build) and the names its parts go by in messages. */
struct snap_cred {
	const struct secret_version *v;
	char cert_label[300], ca_label[300], crl_label[300];
};

struct snap_b {
	const struct snap_params *p;
	const char *ns;            /* p->namespace, or "default" */
	struct diags *d;
	const struct store_contents *contents;
	struct snap *s;

	/* Resources visible to this proxy (exportTo), each kind sorted by (namespace,
	 * name): Istio orders by creation time, which a file store does not have, so the
	 * name order is the stable stand-in. Gateways are all kept (no exportTo). */
	const struct resource **se, **gw, **vs, **dr;
	size_t nse, ngw, nvs, ndr;
	/* Lookup indexes: the hosts of the ServiceEntries (literally, "*.x" too) and the
	 * "ns/host" of the exact-host DestinationRules (host made FQDN in the rule's
	 * namespace), each sorted by (key, resource order), so every resource naming a host
	 * is found in order by binary search; the wildcard ones are kept in order apart. */
	struct snap_ref *se_refs, *dr_refs;
	size_t nse_refs, ndr_refs;
	size_t *se_wild, nse_wild;
	struct snap_ref *dr_wild;    /* key = the FQDN wildcard host */
	size_t ndr_wild;

	/* The Istio Gateways and VirtualServices the Gateway API objects became
	 * (config/res_gwapi.h); the lists above include those this proxy serves. */
	struct gwapi_xlate gwx;

	/* Gateway role: the Gateways whose selector matches p->labels. */
	const struct resource **selgw;
	size_t nselgw;

	struct snap_ckey *keys;
	size_t nkeys, capkeys;
	struct snap_map key_idx;     /* cluster name -> index in keys */

	struct snap_bcluster *bc;
	size_t nbc;

	struct snap_ctxent *ctxs;
	size_t nctxs, ctxs_cap;
	struct snap_map ctx_idx;     /* key -> index in ctxs */

	/* p->secrets, or a cache made for this build (own_secrets). */
	struct secret_cache *secrets;
	bool own_secrets;
	/* Digests of the identity files (cert-chain.pem, root-cert.pem) for context keys. */
	char id_digest[SECRET_DIGEST_HEX], root_digest[SECRET_DIGEST_HEX];
	/* Digest of the system trust store's bundle file; "" until needed. */
	char sys_digest[SECRET_DIGEST_HEX];
};

/* ---- snap.c: shared helpers ---- */

/* The value of label key in p->labels, or NULL. */
const char *snap_label(const struct snap_b *b, const char *key);
/* Every entry of sel is among p->labels (an empty selector matches). */
bool snap_labels_match(const struct snap_b *b, const struct res_strmap *sel);
/* exportTo: whether a resource of namespace res_ns is visible from namespace ns. */
bool snap_visible(const struct res_strlist *export_to, const char *res_ns, const char *ns);
/* "foo" in namespace ns -> "foo.ns.svc.cluster.local"; names with a dot and "*" stay.
 * Newly allocated, lower-case. */
char *snap_fqdn(const char *host, const char *ns);
/* A gateway reference of a VirtualService ("name", "ns/name", legacy "name.ns.svc...",
 * "mesh") as "ns/name" or "mesh", into out. */
void snap_gw_ref(const char *ref, const char *vs_ns, char *out, size_t n);
/* "ns/name" of a resource into out. */
const char *snap_res_id(const struct resource *r, char *out, size_t n);
/* The first visible ServiceEntry (in name order) listing host exactly, or NULL. */
const struct resource *snap_se_for_host(const struct snap_b *b, const char *host);
/* qsort order of snap_ref lists: key (case-insensitive), then index. */
int snap_ref_cmp(const void *a, const void *b);
/* The refs whose key equals key (case-insensitively): *n of them from the returned one
 * on, in resource order. */
const struct snap_ref *snap_refs_find(const struct snap_ref *v, size_t n, const char *key,
                                      size_t *nfound);
/* The namespace a host belongs to for DestinationRule lookup: the second label of a
 * "*.svc.cluster.local" name, else the namespace of its ServiceEntry, else NULL. Writes
 * into out. */
const char *snap_host_ns(const struct snap_b *b, const char *host, char *out, size_t n);
void snap_lower(char *s);
/* snap_addr.c: s->addrs from the ServiceEntries' addresses (after snap_clusters). */
void snap_addrs(struct snap_b *b);

/* ---- snap_gw.c: gateway listeners ---- */
int snap_gw_listeners(struct snap_b *b);

/* ---- snap_route.c: VirtualServices to route tables ---- */
/* Builds the route table of listener l (gateway role). */
void snap_gw_routes(struct snap_b *b, struct snap_listener *l,
                    const struct resource *const *srv_gw, const struct gw_server *const *srv);
/* Builds s->outbound (sidecar role). */
void snap_sidecar_routes(struct snap_b *b);
/* Whether gateway list l (of a VirtualService in vs_ns) names gw ("ns/name" or "mesh"). */
bool snap_gw_list_has(const struct res_strlist *l, const char *vs_ns, const char *gw);
/* Whether the VirtualService is bound to gw ("ns/name" or "mesh"). */
bool snap_vs_bound(const struct resource *vsr, const char *gw);
/* The service port a destination without port.number goes to: the ServiceEntry's only
 * port, else dflt. */
uint16_t snap_dest_port(const struct snap_b *b, const char *host, uint32_t port, uint16_t dflt);
/* The more specific of VirtualService host vh and server host sh, or NULL if they do not
 * intersect. */
const char *snap_host_intersect(const char *vh, const char *sh);
/* Whether server host entry raw ("[ns/]host") admits a VirtualService of namespace vs_ns;
 * *host is set to the host part. */
bool snap_srv_host_admits(const char *raw, const char *gw_ns, const char *vs_ns,
                          const char **host);

/* ---- snap_l4.c: tls: and tcp: routes (l4route.h) ---- */
/* Builds l->l4 from the routes bound to the listener's PASSTHROUGH and TCP servers. */
void snap_l4_gw(struct snap_b *b, struct snap_listener *l,
                const struct resource *const *srv_gw, const struct gw_server *const *srv);
/* Builds s->mesh_l4 (sidecar role). */
void snap_l4_mesh(struct snap_b *b);
/* Points the tables' destinations at the built clusters (warns about those it cannot
 * serve). */
void snap_l4_link(struct snap_b *b);

/* ---- snap_cluster.c ---- */
/* Registers a wanted cluster; returns its name (owned by b). */
const char *snap_want_cluster(struct snap_b *b, const char *host, const char *subset,
                              uint16_t port);
/* Adds the ServiceEntry host x port clusters, builds every wanted cluster, sorts them
 * into s->clusters and points route destinations at them. */
void snap_clusters(struct snap_b *b);
/* The credential credentialName of the proxy's namespace, from the secret cache. flags:
 * SECRET_USE_CERT (MUTUAL, gateway servers), SECRET_USE_CA, SECRET_NEED_CA (SIMPLE).
 * Returns 0, or -1 with a reason in err ("secret kubernetes://NAME not found in
 * namespace istio-system", ...). */
int snap_cred_load(struct snap_b *b, const char *name, unsigned flags, struct snap_cred *out,
                   struct sbuf *err);
/* Announces every credential the visible DestinationRules and Gateways name, with what
 * they need (secret_cache_want), before anything is built. */
void snap_cred_want(struct snap_b *b);
void snap_bcluster_fini(struct snap_bcluster *bc);

/* ---- snap_json.c ---- */

#endif
