/* res_lbhash: Istio's validation of DestinationRule loadBalancer.consistentHash
 * (pkg/config/validation validateLoadBalancer) and the bounds Envoy puts on what Istio
 * makes of it (RingHashLbConfig, MaglevLbConfig), run as post hooks of the keyword
 * tables (res_tables.c). Kept apart from res_validate.c, which is at its size limit.
 *
 * The proto's oneofs are checked here because the YAML decoder sees separate fields:
 * simple | consistentHash, the hash key (httpHeaderName | httpCookie | useSourceIp |
 * httpQueryParameterName) and the algorithm (ringHash | maglev). */
#include "config/res_internal.h"
#include "core/util.h"

#include <stdbool.h>
#include <stdint.h>

static bool lbh_is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	for (uint32_t d = 2; (uint64_t)d * d <= n; d++)
		if (n % d == 0)
			return false;
	return true;
}

void post_dr_lb(struct dctx *c, const struct ynode *map, void *obj)
{
	const struct dr_load_balancer *lb = obj;

	if (lb->simple != DR_LB_UNSPECIFIED && lb->consistent_hash)
		derr_field(c, map, "consistentHash", "only one of simple or consistentHash may be "
		           "set (lbPolicy is a oneof)");
}

void post_dr_lb_hash(struct dctx *c, const struct ynode *map, void *obj)
{
	const struct dr_lb_consistent_hash *h = obj;
	int keys = (h->http_header_name != NULL) + (h->http_cookie != NULL) + h->use_source_ip +
	           (h->http_query_parameter_name != NULL);

	if (keys > 1)
		derr(c, map, "only one of httpHeaderName, httpCookie, useSourceIp or "
		     "httpQueryParameterName may be set (hashKey is a oneof)");
	else if (keys == 0)
		dwarn(c, map, "consistentHash without a hash key (httpHeaderName, httpCookie, "
		      "useSourceIp or httpQueryParameterName): each request goes to a random "
		      "endpoint, as in Envoy");
	if (h->http_header_name && !h->http_header_name[0])
		derr_field(c, map, "httpHeaderName", "must not be empty");
	if (h->http_query_parameter_name && !h->http_query_parameter_name[0])
		derr_field(c, map, "httpQueryParameterName", "must not be empty");
	if (h->ring_hash && h->maglev)
		derr_field(c, map, "maglev", "only one of ringHash or maglev may be set "
		           "(hashAlgorithm is a oneof)");
	if (h->maglev && h->maglev->table_size && !lbh_is_prime(h->maglev->table_size))
		derr_field(c, map, "maglev", "tableSize %u is not a prime number (Envoy's maglev "
		           "table size must be prime)", h->maglev->table_size);
	if (h->minimum_ring_size && (h->ring_hash || h->maglev))
		dwarn_field(c, map, "minimumRingSize", "deprecated minimumRingSize is ignored: "
		            "%s is set", h->ring_hash ? "ringHash" : "maglev");
	else if (h->minimum_ring_size)
		dwarn_field(c, map, "minimumRingSize", "minimumRingSize is deprecated, use "
		            "ringHash.minimumRingSize instead");
}

void post_dr_lb_cookie(struct dctx *c, const struct ynode *map, void *obj)
{
	const struct dr_lb_cookie *k = obj;

	if (!k->name || !k->name[0])
		derr(c, map, "name required for HttpCookie");
	if (k->ttl_ms == 0)
		derr(c, map, "ttl required for HttpCookie");
}
