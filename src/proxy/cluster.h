/* cluster: an upstream service as Envoy sees it, named "outbound|PORT|SUBSET|HOST".
 *
 * A cluster is built by the snapshot compiler (snap.c) from a ServiceEntry (or a bare
 * host name) plus the DestinationRule policy that applies to its port and subset. Its
 * static part (name, TLS context, policy) is immutable and belongs to the snapshot; its
 * endpoint set changes as DNS answers change, so it lives behind an atomic pointer that
 * the resolver (main thread) swaps and workers read without locks. An old endpoint set
 * is freed only after every worker has passed a quiescent point (see worker.h), so a
 * worker may use the set it loaded until it returns to its event loop.
 *
 * Load-balancing state (round-robin cursors, active request counts) is per worker, as in
 * Envoy: no shared cache lines on the request path. */
#ifndef EGRESS_PROXY_CLUSTER_H
#define EGRESS_PROXY_CLUSTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/tls.h"

#include "net/sock.h"
#include "proxy/outlier.h"

struct lbh_cfg;
struct lbh_table;

enum cluster_lb {
	CLUSTER_LB_ROUND_ROBIN,   /* Istio's default in our build (Envoy's is LEAST_REQUEST) */
	CLUSTER_LB_LEAST_REQUEST,
	CLUSTER_LB_RANDOM,
	CLUSTER_LB_PASSTHROUGH,   /* original destination */
};

enum cluster_discovery {
	CLUSTER_DNS,              /* resolve names, use every address (STRICT_DNS) */
	CLUSTER_DNS_ROUND_ROBIN,  /* resolve names, use the first address (LOGICAL_DNS) */
	CLUSTER_STATIC,           /* fixed addresses from ServiceEntry endpoints */
	CLUSTER_ORIGINAL_DST,     /* resolution NONE / PassthroughCluster */
};

enum cluster_tls_mode {
	CLUSTER_TLS_DISABLE,
	CLUSTER_TLS_SIMPLE,
	CLUSTER_TLS_MUTUAL,
	CLUSTER_TLS_ISTIO_MUTUAL,
};

struct cluster_ep {
	struct sock_addr addr;
	char str[SOCK_ADDR_STRLEN];   /* "151.101.129.67:443", for UPSTREAM_HOST */
	uint32_t weight;
};

/* An immutable endpoint set. */
struct cluster_eps {
	size_t n;
	uint64_t min_ttl_ms;          /* when to resolve again (DNS clusters) */
	uint32_t total_weight;        /* sum of weights when they differ, else 0 (cluster_eps_weigh) */
	struct lbh_table *lbh;        /* consistentHash's ring or maglev table of this set
	                               * (cluster_eps_hash), NULL when the cluster has none */
	struct cluster_ep v[];
};

/* A name to resolve for a DNS cluster, with the port to use for its addresses. */
struct cluster_name {
	char *host;
	uint16_t port;
	uint32_t weight;
};

struct cluster {
	char *name;                   /* outbound|443||edition.cnn.com */
	char *host;                   /* edition.cnn.com */
	char *subset;                 /* "" when none */
	uint16_t port;                /* service port (the 443 of the name) */
	size_t index;                 /* position in the snapshot, for per-worker state */

	enum cluster_discovery discovery;
	enum cluster_lb lb;
	/* loadBalancer.consistentHash (lbhash.h): NULL when not configured, then lb picks. */
	struct lbh_cfg *hash;
	struct cluster_name *names;   /* DNS: names to resolve */
	size_t nnames;
	_Atomic(struct cluster_eps *) eps;  /* NULL until first resolved */
	char *dns_error;              /* last resolution failure, for DF (main thread writes) */
	_Atomic bool dns_failed;

	/* Upstream TLS (origination). */
	enum cluster_tls_mode tls_mode;
	struct tls_ctx *tls_ctx;      /* NULL for DISABLE; shared with earlier snapshots
	                               * while its inputs (settings, credential
	                               * version, file contents) are unchanged:
	                               * same context, same id (secrets/secret.h) */
	char *tls_ctx_error;          /* why tls_ctx could not be built (e.g. missing secret):
	                               * requests fail fast with UF and this reason */
	char *sni;                    /* NULL: the request's host (auto SNI) */
	char **sans;                  /* exact SubjectAltNames to accept; NULL-terminated */
	size_t nsans;
	bool verify_host_auto;        /* no sni and no sans: the cert must match the host */
	bool insecure_skip_verify;
	char *credential;             /* credentialName, for status and errors */
	/* Where its settings came from, for /config_dump (rendered on request from the
	 * snapshot, snap_json.c): "ns/name" of the ServiceEntry and the DestinationRule,
	 * and the sources of the CA, client certificate and CRL; each may be NULL. */
	char *src_se, *src_dr, *src_ca, *src_cert, *src_crl;

	/* DestinationRule connection pool and timeouts. */
	int64_t connect_timeout_ms;   /* default 10 s */
	int64_t idle_timeout_ms;      /* upstream idle connection timeout, default 1 h */
	uint32_t max_requests_per_conn; /* 0: unlimited */
	uint32_t max_connections;     /* 0: unlimited (Istio: 2^32-1) */
	uint32_t max_pending;         /* http1MaxPendingRequests, 0: unlimited */
	uint32_t max_requests;        /* http2MaxRequests, 0: unlimited */
	uint32_t max_retries;         /* maxRetries, 0: unset (Envoy's retry budget, retry.h) */
	struct od_config od;          /* outlierDetection (od.on false: none) */
	bool h2_upstream;             /* h2UpgradePolicy UPGRADE */
	bool h2_no_upgrade;           /* h2UpgradePolicy DO_NOT_UPGRADE */
	/* Offer "h2", "http/1.1" by ALPN and speak HTTP/2 when the server picks h2
	 * (up_h2.h): ISTIO_MUTUAL clusters unless DO_NOT_UPGRADE, other TLS clusters with
	 * UPGRADE; never without TLS (no cleartext h2); off with egressgw --no-http2. */
	bool h2_alpn;
	/* What its connections are made under: a digest of the TLS context id, mode, SNI,
	 * subjectAltNames, auto-SAN, skip-verify and ALPN (snap_cluster.c). Pool keys and
	 * connection identities use it, so a change to any of them makes new connections
	 * and drains the old ones (pool.h). 0 only for the sidecar's PassthroughCluster. */
	uint64_t conn_id;
	bool auto_mtls;               /* ISTIO_MUTUAL by automatic mutual TLS, not by a rule */
};

/* The current endpoint set, or NULL. Worker side: valid until the worker's next
 * quiescent point. */
static inline struct cluster_eps *cluster_eps_load(const struct cluster *c)
{
	return atomic_load_explicit(&((struct cluster *)c)->eps, memory_order_acquire);
}

/* Allocates a set for n endpoints (zeroed). */
struct cluster_eps *cluster_eps_new(size_t n);
/* Sets eps->total_weight (the set's weights differ: picks follow them, as Envoy's
 * load_balancing_weight; equal weights keep the plain policies). Call once filled. */
void cluster_eps_weigh(struct cluster_eps *eps);
/* Frees a set and its consistent-hash table. */
void cluster_eps_free(struct cluster_eps *eps);
/* Builds eps's ring or maglev table when c has consistentHash (and eps has none yet):
 * call on a filled set before publishing it. */
void cluster_eps_hash(const struct cluster *c, struct cluster_eps *eps);
/* True if the two sets hold the same addresses in the same order. */
bool cluster_eps_equal(const struct cluster_eps *a, const struct cluster_eps *b);

/* Picks an endpoint. rr is the worker's round-robin cursor for this cluster; active (may
 * be NULL) gives a worker-local count of active requests per endpoint index for
 * LEAST_REQUEST (two random choices, the less loaded wins, as Envoy does); rnd is a
 * random 32-bit value. With weights (total_weight set), each endpoint gets its share of
 * picks: round robin walks the weight line in turn, random and least request draw on it.
 * Returns NULL if the set is empty. */
const struct cluster_ep *cluster_pick(const struct cluster *c, const struct cluster_eps *eps,
                                      uint32_t *rr, const uint32_t *active, uint32_t rnd);
/* cluster_pick among the endpoints whose excluded[i] is zero (excluded may be NULL: all
 * may be picked; else it has eps->n entries). Returns NULL if none may be picked. */
const struct cluster_ep *cluster_pick_ex(const struct cluster *c, const struct cluster_eps *eps,
                                         uint32_t *rr, const uint32_t *active, uint32_t rnd,
                                         const uint8_t *excluded);

/* Frees the cluster and its current endpoint set (only when no worker can see it). */
void cluster_free(struct cluster *c);

#endif
