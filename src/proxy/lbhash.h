/* lbhash: consistent-hash load balancing, DestinationRule loadBalancer.consistentHash as
 * Istio hands it to Envoy (lb_policy RING_HASH or MAGLEV on the cluster, a hash_policy on
 * the route).
 *
 * The lookup structure is built once per endpoint set (lbh_build), by whoever publishes
 * the set (the snapshot compiler for STATIC clusters, the resolver for DNS ones: see
 * cluster_eps_hash), and hangs off that set: workers share it read-only, and it goes
 * with the set when every worker has passed a quiescent point (cluster.h). A pick is O(1)
 * (a table slot for maglev; a bucket of the ring's sorted hashes, about one entry long,
 * for the ring) and allocates nothing; a build is O(M log M) for M ring entries, O(M) per
 * slot-fill round for maglev.
 *
 * Endpoint keys: each endpoint is hashed by its address string ("10.0.0.1:80"), as
 * Envoy's default; ring entry i of an endpoint by "ADDR_i". Envoy hashes with xxHash64,
 * here with the process's hash_bytes (core/util.h), so the endpoint a key lands on is not
 * the one Envoy would pick, only as stable and as spread. */
#ifndef EGRESS_PROXY_LBHASH_H
#define EGRESS_PROXY_LBHASH_H

#include <stddef.h>
#include <stdint.h>

struct cluster_eps;

enum lbh_algo {
	LBH_RING_HASH,                /* Istio's default */
	LBH_MAGLEV,
};

enum lbh_key {
	LBH_KEY_NONE,                 /* no key configured: every pick is random */
	LBH_KEY_HEADER,               /* httpHeaderName */
	LBH_KEY_COOKIE,               /* httpCookie */
	LBH_KEY_SOURCE_IP,            /* useSourceIp */
	LBH_KEY_QUERY,                /* httpQueryParameterName */
};

#define LBH_RING_MIN_DEFAULT 1024u     /* Envoy's minimum_ring_size default */
#define LBH_RING_MAX 8388608u          /* Envoy's maximum_ring_size default (8M) */
#define LBH_MAGLEV_DEFAULT 65537u      /* Envoy's maglev table_size default (prime) */

/* A cluster's consistentHash, compiled from the DestinationRule (snap_cluster.c). */
struct lbh_cfg {
	enum lbh_algo algo;
	uint32_t size;                /* ring: minimum ring size; maglev: table size (prime) */
	enum lbh_key key;
	char *name;                   /* header (lower case), cookie or query parameter name */
	char *cookie_path;            /* httpCookie.path, NULL if none */
	int64_t cookie_ttl_s;         /* Max-Age of a generated cookie; 0: session cookie */
};

/* The lookup structure of one endpoint set. */
struct lbh_table;

/* Builds the ring or maglev table for eps (its weights count, as in Envoy). Returns NULL
 * for an empty set. */
struct lbh_table *lbh_build(const struct lbh_cfg *cfg, const struct cluster_eps *eps);
void lbh_free(struct lbh_table *t);
/* Entries in the ring or slots in the table (for config_dump and tests). */
size_t lbh_size(const struct lbh_table *t);

/* The endpoint index (into the set t was built from) that hash h lands on, walking on
 * past endpoints whose excluded[i] is set (excluded may be NULL). Returns SIZE_MAX if
 * every endpoint is excluded or t is NULL. */
size_t lbh_pick(const struct lbh_table *t, uint64_t h, const uint8_t *excluded);

void lbh_cfg_free(struct lbh_cfg *cfg);
/* Envoy's lb_policy name: "RING_HASH" or "MAGLEV". */
const char *lbh_algo_name(const struct lbh_cfg *cfg);
/* What the key is, for people: "header x-user", "cookie sticky", "source IP",
 * "query parameter user", "no key (random)". Writes into buf[size]; returns buf. */
const char *lbh_key_desc(const struct lbh_cfg *cfg, char *buf, size_t size);

#endif
