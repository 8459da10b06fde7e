/* fwd_hash: a request's consistent-hash key and its endpoint (DestinationRule
 * loadBalancer.consistentHash; the tables are lbhash.h's). */
#ifndef EGRESS_PROXY_FWD_HASH_H
#define EGRESS_PROXY_FWD_HASH_H

#include <stdint.h>

struct cluster_ep;
struct cluster_eps;
struct dconn;
struct stream;

/* The endpoint of eps that st's request hashes to for its cluster's consistentHash
 * (st->cl->hash set), skipping those excluded (may be NULL); NULL if none may be picked.
 * An httpCookie with a ttl the request does not carry is made up and kept in
 * st->set_cookie for the response (fwd_hash_set_cookie). */
const struct cluster_ep *fwd_hash_pick(struct stream *st, const struct cluster_eps *eps,
                                       const uint8_t *excluded);

/* The Set-Cookie value the response of connection d's request carries (a made-up
 * consistentHash cookie), or NULL: for the response head writers. */
const char *fwd_hash_set_cookie(const struct dconn *d);

#endif
