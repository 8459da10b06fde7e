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
};

struct snap_listener {
	char *name;               /* "0.0.0.0_80" as Envoy names it */
	struct sock_addr addr;
	uint16_t port;
	bool tls;                 /* the servers terminate TLS (all of them or none) */
	struct snap_server *servers;
	size_t nservers;
	struct route_table *routes;  /* "http.80" */
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

	/* JSON of the active configuration, made once at build time for /config_dump. */
	char *config_dump;
};

/* What snap_build needs besides the resources. */
struct snap_params {
	enum snap_role role;
	const char *namespace;        /* the proxy's namespace (istio-system for the gateway) */
	const char **labels;          /* "key=value" pairs of --labels, NULL-terminated */
	const char *identity_dir;     /* cert-chain.pem, key.pem, root-cert.pem; may be NULL */
	const char *listen_address;   /* "0.0.0.0" by default */
	const char *store_root;       /* for credentialName Secrets */
};

/* Builds a snapshot from every resource of the store. Returns the snapshot (refs = 1), or
 * NULL with the reasons in d. Warnings (unresolved references) may be added either way. */
struct snap *snap_build(const struct store_contents *contents, const struct snap_params *p,
                        struct diags *d);

/* The cluster with that name, or NULL (binary search). */
struct cluster *snap_cluster_find(const struct snap *s, const char *name);

static inline struct snap *snap_ref(struct snap *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

/* Drops a reference; the last one frees the snapshot (route tables, clusters, contexts). */
void snap_unref(struct snap *s);

#endif
