/* res_tables: one keyword table per struct of resource.h (see res_internal.h).
 *
 * Field lists follow istio/api networking/v1alpha3 (same schema in v1beta1 and v1).
 * Fields of the API that egressgw does not implement are KW_UNSUPPORTED: accepted with a
 * warning, so that a valid Istio object is never rejected as "unknown field". Tables are
 * ordered leaves first so that no forward declarations are needed. */
#include "config/res_internal.h"

#include <stddef.h>

#define F(T, n, ty, fld, ...) \
	{ .name = (n), .type = (ty), .off = offsetof(T, fld), __VA_ARGS__ }
#define U(n)   { .name = (n), .type = KW_UNSUPPORTED }
#define IGN(n) { .name = (n), .type = KW_IGNORE }
#define END    { .name = NULL }
#define PORT   .min = 1, .max = 65535, .flags = KWF_PORT
#define PORT0  .min = 0, .max = 65535, .flags = KWF_PORT
#define NONNEG .min = 0, .max = INT32_MAX
#define PCT    .min = 0, .max = 100
#define NA     .flags = KWF_UNAPPLIED  /* accepted, not applied: warned (res_internal.h) */
#define LABELS .keycheck = chk_label_key, .check = chk_label_value
#define SELECTOR .keycheck = chk_selector_key, .check = chk_selector_value
#define TAB(var, T, label, post_fn) \
	const struct kwtab var = { label, sizeof(T), offsetof(T, pos), var##_kws, post_fn }
#define STAB(var, T, label, post_fn) \
	static TAB(var, T, label, post_fn)

/* ---------------------------------------------------------------------------------
 * Object metadata and top level
 * ------------------------------------------------------------------------------- */

static const struct kw kt_metadata_kws[] = {
	F(struct res_meta, "name", KW_STR, name),
	F(struct res_meta, "namespace", KW_STR, namespace, .check = chk_ns_label),
	F(struct res_meta, "labels", KW_STRMAP, labels, LABELS),
	F(struct res_meta, "annotations", KW_STRMAP, annotations, .keycheck = chk_annotation_key),
	U("generateName"),
	/* Set by the API server; present when a user re-applies `kubectl get -o yaml`. */
	IGN("uid"), IGN("resourceVersion"), IGN("generation"), IGN("creationTimestamp"),
	IGN("managedFields"), IGN("finalizers"), IGN("ownerReferences"),
	IGN("deletionTimestamp"), IGN("deletionGracePeriodSeconds"), IGN("selfLink"),
	END
};
TAB(kt_metadata, struct res_meta, "ObjectMeta", post_metadata);

static const struct kw kt_istio_top_kws[] = {
	IGN("apiVersion"), IGN("kind"), IGN("metadata"), IGN("spec"), IGN("status"), END
};
const struct kwtab kt_istio_top = { "Object", 0, KW_NOPOS, kt_istio_top_kws, NULL };

static const struct kw kt_secret_top_kws[] = {
	IGN("apiVersion"), IGN("kind"), IGN("metadata"), IGN("type"), IGN("data"),
	IGN("stringData"), IGN("immutable"), END
};
const struct kwtab kt_secret_top = { "Secret", 0, KW_NOPOS, kt_secret_top_kws, NULL };

/* PortSelector {number}: decodes straight into a uint32_t. */
static const struct kw kt_portsel_kws[] = {
	{ .name = "number", .type = KW_U32, .off = 0, PORT },
	END
};
static const struct kwtab kt_portsel = { "PortSelector", sizeof(uint32_t), KW_NOPOS,
                                         kt_portsel_kws, post_portsel };

/* ---------------------------------------------------------------------------------
 * ServiceEntry
 * ------------------------------------------------------------------------------- */

static const struct kw kt_se_port_kws[] = {
	F(struct se_port, "number", KW_U32, number, PORT),
	F(struct se_port, "protocol", KW_PROTOCOL, protocol),
	F(struct se_port, "name", KW_STR, name),
	F(struct se_port, "targetPort", KW_U32, target_port, PORT),
	END
};
STAB(kt_se_port, struct se_port, "ServicePort", post_se_port);

static const struct kw kt_se_endpoint_kws[] = {
	F(struct se_endpoint, "address", KW_STR, address),
	F(struct se_endpoint, "ports", KW_PORTMAP, ports, .keycheck = chk_port_name),
	F(struct se_endpoint, "labels", KW_STRMAP, labels, LABELS),
	F(struct se_endpoint, "network", KW_STR, network, NA),
	F(struct se_endpoint, "locality", KW_STR, locality, NA),
	F(struct se_endpoint, "weight", KW_U32, weight),
	F(struct se_endpoint, "serviceAccount", KW_STR, service_account, NA),
	END
};
STAB(kt_se_endpoint, struct se_endpoint, "WorkloadEntry", post_se_endpoint);

static const struct kw kt_se_selector_kws[] = {
	F(struct se_workload_selector, "labels", KW_STRMAP, labels, SELECTOR),
	END
};
STAB(kt_se_selector, struct se_workload_selector, "WorkloadSelector", post_se_selector);

static const struct kw kt_serviceentry_kws[] = {
	F(struct serviceentry, "hosts", KW_STRLIST, hosts, .check = chk_se_host),
	F(struct serviceentry, "addresses", KW_STRLIST, addresses, .check = chk_ip_or_cidr),
	F(struct serviceentry, "ports", KW_LIST, ports, .sub = &kt_se_port),
	F(struct serviceentry, "location", KW_ENUM, location, .names = se_location_names),
	F(struct serviceentry, "resolution", KW_ENUM, resolution, .names = se_resolution_names),
	F(struct serviceentry, "endpoints", KW_LIST, endpoints, .sub = &kt_se_endpoint),
	F(struct serviceentry, "workloadSelector", KW_OBJ, workload_selector,
	  .sub = &kt_se_selector, NA),
	F(struct serviceentry, "exportTo", KW_STRLIST, export_to, .check = chk_export_to),
	F(struct serviceentry, "subjectAltNames", KW_STRLIST, subject_alt_names,
	  .check = chk_not_empty),
	END
};
TAB(kt_serviceentry, struct serviceentry, "ServiceEntry", post_se);

/* ---------------------------------------------------------------------------------
 * Gateway
 * ------------------------------------------------------------------------------- */

static const struct kw kt_gw_tls_kws[] = {
	F(struct gw_tls, "httpsRedirect", KW_BOOL, https_redirect),
	F(struct gw_tls, "mode", KW_ENUM, mode, .names = gw_tls_mode_names),
	F(struct gw_tls, "serverCertificate", KW_STR, server_certificate),
	F(struct gw_tls, "privateKey", KW_STR, private_key),
	F(struct gw_tls, "caCertificates", KW_STR, ca_certificates),
	F(struct gw_tls, "caCrl", KW_STR, ca_crl),
	F(struct gw_tls, "credentialName", KW_STR, credential_name),
	U("credentialNames"),
	U("tlsCertificates"),
	F(struct gw_tls, "subjectAltNames", KW_STRLIST, subject_alt_names, .check = chk_not_empty),
	F(struct gw_tls, "verifyCertificateSpki", KW_STRLIST, verify_certificate_spki, NA),
	F(struct gw_tls, "verifyCertificateHash", KW_STRLIST, verify_certificate_hash, NA),
	F(struct gw_tls, "minProtocolVersion", KW_ENUM, min_protocol_version,
	  .names = res_tls_version_names),
	F(struct gw_tls, "maxProtocolVersion", KW_ENUM, max_protocol_version,
	  .names = res_tls_version_names),
	F(struct gw_tls, "cipherSuites", KW_STRLIST, cipher_suites),
	END
};
STAB(kt_gw_tls, struct gw_tls, "ServerTLSSettings", post_gw_tls);

static const struct kw kt_gw_port_kws[] = {
	F(struct gw_port, "number", KW_U32, number, PORT0),
	F(struct gw_port, "protocol", KW_PROTOCOL, protocol),
	F(struct gw_port, "name", KW_STR, name),
	F(struct gw_port, "targetPort", KW_U32, target_port),
	END
};
STAB(kt_gw_port, struct gw_port, "Port", post_gw_port);

static const struct kw kt_gw_server_kws[] = {
	F(struct gw_server, "port", KW_EMBED, port, .sub = &kt_gw_port),
	F(struct gw_server, "bind", KW_STR, bind, .check = chk_ip_bind, NA),
	F(struct gw_server, "hosts", KW_STRLIST, hosts, .check = chk_gw_host),
	F(struct gw_server, "tls", KW_OBJ, tls, .sub = &kt_gw_tls),
	F(struct gw_server, "defaultEndpoint", KW_STR, default_endpoint, NA),
	F(struct gw_server, "name", KW_STR, name),
	END
};
STAB(kt_gw_server, struct gw_server, "Server", post_gw_server);

static const struct kw kt_gateway_kws[] = {
	F(struct gateway, "servers", KW_LIST, servers, .sub = &kt_gw_server),
	F(struct gateway, "selector", KW_STRMAP, selector, LABELS),
	END
};
TAB(kt_gateway, struct gateway, "Gateway", post_gw);

/* ---------------------------------------------------------------------------------
 * VirtualService
 * ------------------------------------------------------------------------------- */

static const struct kw kt_vs_string_match_kws[] = {
	F(struct vs_string_match, "exact", KW_STR, exact),
	F(struct vs_string_match, "prefix", KW_STR, prefix),
	F(struct vs_string_match, "regex", KW_STR, regex),
	END
};
STAB(kt_vs_string_match, struct vs_string_match, "StringMatch", post_vs_string_match);
/* uri allows an empty prefix (Envoy does), the others do not. */
static const struct kwtab kt_vs_uri_match = {
	"StringMatch", sizeof(struct vs_string_match), offsetof(struct vs_string_match, pos),
	kt_vs_string_match_kws, post_vs_uri_match
};

static const struct kw kt_vs_named_match_kws[] = {
	F(struct vs_named_match, "exact", KW_STR, m.exact),
	F(struct vs_named_match, "prefix", KW_STR, m.prefix),
	F(struct vs_named_match, "regex", KW_STR, m.regex),
	END
};
/* The StringMatch checks run on the embedded .m: see post_vs_string_match. */
static void post_vs_named_match(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_named_match *nm = obj;

	nm->m.pos = nm->pos;
	post_vs_string_match(c, map, &nm->m);
}
STAB(kt_vs_named_match, struct vs_named_match, "StringMatch", post_vs_named_match);

static const struct kw kt_vs_http_match_kws[] = {
	F(struct vs_http_match, "name", KW_STR, name),
	F(struct vs_http_match, "uri", KW_OBJ, uri, .sub = &kt_vs_uri_match),
	F(struct vs_http_match, "scheme", KW_OBJ, scheme, .sub = &kt_vs_string_match),
	F(struct vs_http_match, "method", KW_OBJ, method, .sub = &kt_vs_string_match),
	F(struct vs_http_match, "authority", KW_OBJ, authority, .sub = &kt_vs_string_match),
	F(struct vs_http_match, "headers", KW_NAMED, headers, .sub = &kt_vs_named_match,
	  .keycheck = chk_header_name),
	F(struct vs_http_match, "port", KW_U32, port, PORT0),
	F(struct vs_http_match, "sourceLabels", KW_STRMAP, source_labels, LABELS),
	F(struct vs_http_match, "gateways", KW_STRLIST, gateways, .check = chk_gateway_name),
	F(struct vs_http_match, "queryParams", KW_NAMED, query_params, .sub = &kt_vs_named_match),
	F(struct vs_http_match, "ignoreUriCase", KW_BOOL, ignore_uri_case),
	F(struct vs_http_match, "withoutHeaders", KW_NAMED, without_headers,
	  .sub = &kt_vs_named_match, .keycheck = chk_header_name),
	F(struct vs_http_match, "sourceNamespace", KW_STR, source_namespace,
	  .check = chk_source_namespace),
	F(struct vs_http_match, "statPrefix", KW_STR, stat_prefix, NA),
	END
};
STAB(kt_vs_http_match, struct vs_http_match, "HTTPMatchRequest", post_vs_http_match);

static const struct kw kt_vs_destination_kws[] = {
	F(struct vs_destination, "host", KW_STR, host, .check = chk_dest_host),
	F(struct vs_destination, "subset", KW_STR, subset, .check = chk_subset_name),
	F(struct vs_destination, "port", KW_EMBED, port, .sub = &kt_portsel),
	END
};
STAB(kt_vs_destination, struct vs_destination, "Destination", post_vs_destination);

static const struct kw kt_vs_req_ops_kws[] = {
	F(struct vs_header_ops, "set", KW_STRMAP, set, .keycheck = chk_request_header_op_name,
	  .check = chk_header_value),
	F(struct vs_header_ops, "add", KW_STRMAP, add, .keycheck = chk_request_header_op_name,
	  .check = chk_header_value),
	F(struct vs_header_ops, "remove", KW_STRLIST, remove, .check = chk_header_op_name),
	END
};
STAB(kt_vs_req_ops, struct vs_header_ops, "HeaderOperations", NULL);

static const struct kw kt_vs_resp_ops_kws[] = {
	F(struct vs_header_ops, "set", KW_STRMAP, set, .keycheck = chk_header_op_name,
	  .check = chk_header_value),
	F(struct vs_header_ops, "add", KW_STRMAP, add, .keycheck = chk_header_op_name,
	  .check = chk_header_value),
	F(struct vs_header_ops, "remove", KW_STRLIST, remove, .check = chk_header_op_name),
	END
};
STAB(kt_vs_resp_ops, struct vs_header_ops, "HeaderOperations", NULL);

static const struct kw kt_vs_headers_kws[] = {
	F(struct vs_headers, "request", KW_OBJ, request, .sub = &kt_vs_req_ops),
	F(struct vs_headers, "response", KW_OBJ, response, .sub = &kt_vs_resp_ops),
	END
};
STAB(kt_vs_headers, struct vs_headers, "Headers", post_vs_headers);

/* A destination's request operations: as the route's, but `host` / `:authority` (Istio's
 * per-destination host rewrite) is refused (chk_dest_request_header_op_name). */
static const struct kw kt_vs_dest_req_ops_kws[] = {
	F(struct vs_header_ops, "set", KW_STRMAP, set, .keycheck = chk_dest_request_header_op_name,
	  .check = chk_header_value),
	F(struct vs_header_ops, "add", KW_STRMAP, add, .keycheck = chk_dest_request_header_op_name,
	  .check = chk_header_value),
	F(struct vs_header_ops, "remove", KW_STRLIST, remove, .check = chk_header_op_name),
	END
};
STAB(kt_vs_dest_req_ops, struct vs_header_ops, "HeaderOperations", NULL);

static const struct kw kt_vs_dest_headers_kws[] = {
	F(struct vs_headers, "request", KW_OBJ, request, .sub = &kt_vs_dest_req_ops),
	F(struct vs_headers, "response", KW_OBJ, response, .sub = &kt_vs_resp_ops),
	END
};
STAB(kt_vs_dest_headers, struct vs_headers, "Headers", post_vs_headers);

/* allowOrigins: a StringMatch (its regex is RE2, checked by post_vs_string_match). */
static const struct kw kt_vs_cors_origin_kws[] = {
	F(struct vs_string_match, "exact", KW_STR, exact),
	F(struct vs_string_match, "prefix", KW_STR, prefix),
	F(struct vs_string_match, "regex", KW_STR, regex),
	END
};
STAB(kt_vs_cors_origin, struct vs_string_match, "StringMatch", post_vs_string_match);

static const struct kw kt_vs_cors_kws[] = {
	F(struct vs_cors, "allowOrigins", KW_LIST, allow_origins, .sub = &kt_vs_cors_origin),
	F(struct vs_cors, "allowOrigin", KW_STRLIST, allow_origin, .check = chk_not_empty),
	F(struct vs_cors, "allowMethods", KW_STRLIST, allow_methods, .check = chk_cors_method),
	F(struct vs_cors, "allowHeaders", KW_STRLIST, allow_headers, .check = chk_cors_header),
	F(struct vs_cors, "exposeHeaders", KW_STRLIST, expose_headers, .check = chk_cors_header),
	F(struct vs_cors, "maxAge", KW_DURATION, max_age_ms),
	F(struct vs_cors, "allowCredentials", KW_BOOL, allow_credentials),
	F(struct vs_cors, "unmatchedPreflights", KW_ENUM, unmatched_preflights,
	  .names = vs_cors_unmatched_names),
	END
};
STAB(kt_vs_cors, struct vs_cors, "CorsPolicy", post_vs_cors);

static const struct kw kt_vs_http_dest_kws[] = {
	F(struct vs_http_route_destination, "destination", KW_OBJ, destination,
	  .sub = &kt_vs_destination),
	F(struct vs_http_route_destination, "weight", KW_I32, weight, NONNEG),
	F(struct vs_http_route_destination, "headers", KW_OBJ, headers, .sub = &kt_vs_dest_headers),
	END
};
STAB(kt_vs_http_dest, struct vs_http_route_destination, "HTTPRouteDestination",
     post_vs_http_dest);

static const struct kw kt_vs_redirect_kws[] = {
	F(struct vs_redirect, "uri", KW_STR, uri),
	F(struct vs_redirect, "authority", KW_STR, authority),
	F(struct vs_redirect, "port", KW_U32, port, .min = 1, .max = 65535, .flags = KWF_PORT),
	F(struct vs_redirect, "derivePort", KW_ENUM, derive_port,
	  .names = vs_redirect_derive_port_names),
	F(struct vs_redirect, "scheme", KW_STR, scheme),
	F(struct vs_redirect, "redirectCode", KW_U32, redirect_code),
	END
};
STAB(kt_vs_redirect, struct vs_redirect, "HTTPRedirect", post_vs_redirect);

static const struct kw kt_vs_regex_rewrite_kws[] = {
	F(struct vs_regex_rewrite, "match", KW_STR, match),
	F(struct vs_regex_rewrite, "rewrite", KW_STR, rewrite),
	END
};
STAB(kt_vs_regex_rewrite, struct vs_regex_rewrite, "RegexRewrite", post_vs_regex_rewrite);

static const struct kw kt_vs_rewrite_kws[] = {
	F(struct vs_rewrite, "uri", KW_STR, uri),
	F(struct vs_rewrite, "authority", KW_STR, authority),
	F(struct vs_rewrite, "uriRegexRewrite", KW_OBJ, uri_regex_rewrite,
	  .sub = &kt_vs_regex_rewrite),
	END
};
STAB(kt_vs_rewrite, struct vs_rewrite, "HTTPRewrite", post_vs_rewrite);

static const struct kw kt_vs_retries_kws[] = {
	F(struct vs_retries, "attempts", KW_I32, attempts, NONNEG),
	F(struct vs_retries, "perTryTimeout", KW_DURATION, per_try_timeout_ms),
	F(struct vs_retries, "retryOn", KW_STR, retry_on, .check = chk_retry_on),
	F(struct vs_retries, "retryRemoteLocalities", KW_BOOL, retry_remote_localities, NA),
	F(struct vs_retries, "retryIgnorePreviousHosts", KW_BOOL, retry_ignore_previous_hosts, NA),
	F(struct vs_retries, "backoff", KW_DURATION, backoff_ms),
	END
};
STAB(kt_vs_retries, struct vs_retries, "HTTPRetry", post_vs_retries);

static const struct kw kt_percent_kws[] = {
	F(struct res_percent, "value", KW_DOUBLE, value, PCT),
	END
};
STAB(kt_percent, struct res_percent, "Percent", NULL);

static const struct kw kt_vs_fault_delay_kws[] = {
	F(struct vs_fault_delay, "fixedDelay", KW_DURATION, fixed_delay_ms),
	F(struct vs_fault_delay, "exponentialDelay", KW_DURATION, exponential_delay_ms),
	F(struct vs_fault_delay, "percentage", KW_OBJ, percentage, .sub = &kt_percent),
	F(struct vs_fault_delay, "percent", KW_I32, percent, PCT),
	END
};
STAB(kt_vs_fault_delay, struct vs_fault_delay, "Delay", post_vs_fault_delay);

static const struct kw kt_vs_fault_abort_kws[] = {
	F(struct vs_fault_abort, "httpStatus", KW_I32, http_status),
	F(struct vs_fault_abort, "grpcStatus", KW_STR, grpc_status),
	F(struct vs_fault_abort, "http2Error", KW_STR, http2_error),
	F(struct vs_fault_abort, "percentage", KW_OBJ, percentage, .sub = &kt_percent),
	END
};
STAB(kt_vs_fault_abort, struct vs_fault_abort, "Abort", post_vs_fault_abort);

static const struct kw kt_vs_fault_kws[] = {
	F(struct vs_fault, "delay", KW_OBJ, delay, .sub = &kt_vs_fault_delay),
	F(struct vs_fault, "abort", KW_OBJ, abort, .sub = &kt_vs_fault_abort),
	END
};
STAB(kt_vs_fault, struct vs_fault, "HTTPFaultInjection", post_vs_fault);

static const struct kw kt_vs_http_body_kws[] = {
	F(struct vs_http_body, "string", KW_STR, string),
	F(struct vs_http_body, "bytes", KW_STR, bytes),
	END
};
STAB(kt_vs_http_body, struct vs_http_body, "HTTPBody", post_vs_http_body);

static const struct kw kt_vs_direct_response_kws[] = {
	F(struct vs_direct_response, "status", KW_U32, status),
	F(struct vs_direct_response, "body", KW_OBJ, body, .sub = &kt_vs_http_body),
	END
};
STAB(kt_vs_direct_response, struct vs_direct_response, "HTTPDirectResponse",
     post_vs_direct_response);

static const struct kw kt_vs_mirror_policy_kws[] = {
	F(struct vs_mirror_policy, "destination", KW_OBJ, destination, .sub = &kt_vs_destination),
	F(struct vs_mirror_policy, "percentage", KW_OBJ, percentage, .sub = &kt_percent),
	END
};
STAB(kt_vs_mirror_policy, struct vs_mirror_policy, "HTTPMirrorPolicy", post_vs_mirror_policy);

static const struct kw kt_vs_http_route_kws[] = {
	F(struct vs_http_route, "name", KW_STR, name),
	F(struct vs_http_route, "match", KW_LIST, match, .sub = &kt_vs_http_match),
	F(struct vs_http_route, "route", KW_LIST, route, .sub = &kt_vs_http_dest),
	F(struct vs_http_route, "redirect", KW_OBJ, redirect, .sub = &kt_vs_redirect),
	F(struct vs_http_route, "directResponse", KW_OBJ, direct_response,
	  .sub = &kt_vs_direct_response),
	U("delegate"),
	F(struct vs_http_route, "rewrite", KW_OBJ, rewrite, .sub = &kt_vs_rewrite),
	F(struct vs_http_route, "timeout", KW_DURATION, timeout_ms),
	F(struct vs_http_route, "retries", KW_OBJ, retries, .sub = &kt_vs_retries),
	F(struct vs_http_route, "fault", KW_OBJ, fault, .sub = &kt_vs_fault),
	F(struct vs_http_route, "mirror", KW_OBJ, mirror, .sub = &kt_vs_destination),
	F(struct vs_http_route, "mirrors", KW_LIST, mirrors, .sub = &kt_vs_mirror_policy),
	F(struct vs_http_route, "mirrorPercent", KW_U32OPT, mirror_percent, PCT),
	F(struct vs_http_route, "mirrorPercentage", KW_OBJ, mirror_percentage, .sub = &kt_percent),
	F(struct vs_http_route, "corsPolicy", KW_OBJ, cors, .sub = &kt_vs_cors),
	F(struct vs_http_route, "headers", KW_OBJ, headers, .sub = &kt_vs_headers),
	END
};
STAB(kt_vs_http_route, struct vs_http_route, "HTTPRoute", post_vs_http);

static const struct kw kt_vs_tls_match_kws[] = {
	F(struct vs_tls_match, "sniHosts", KW_STRLIST, sni_hosts),
	F(struct vs_tls_match, "destinationSubnets", KW_STRLIST, destination_subnets,
	  .check = chk_cidr),
	F(struct vs_tls_match, "port", KW_U32, port, PORT0),
	F(struct vs_tls_match, "sourceLabels", KW_STRMAP, source_labels, LABELS),
	F(struct vs_tls_match, "gateways", KW_STRLIST, gateways, .check = chk_gateway_name),
	F(struct vs_tls_match, "sourceNamespace", KW_STR, source_namespace,
	  .check = chk_source_namespace),
	END
};
STAB(kt_vs_tls_match, struct vs_tls_match, "TLSMatchAttributes", post_vs_tls_match);

static const struct kw kt_vs_l4_match_kws[] = {
	F(struct vs_l4_match, "destinationSubnets", KW_STRLIST, destination_subnets,
	  .check = chk_cidr),
	F(struct vs_l4_match, "port", KW_U32, port, PORT0),
	F(struct vs_l4_match, "sourceSubnet", KW_STR, source_subnet, .check = chk_cidr),
	F(struct vs_l4_match, "sourceLabels", KW_STRMAP, source_labels, LABELS),
	F(struct vs_l4_match, "gateways", KW_STRLIST, gateways, .check = chk_gateway_name),
	F(struct vs_l4_match, "sourceNamespace", KW_STR, source_namespace,
	  .check = chk_source_namespace),
	END
};
STAB(kt_vs_l4_match, struct vs_l4_match, "L4MatchAttributes", NULL);

static const struct kw kt_vs_route_dest_kws[] = {
	F(struct vs_route_destination, "destination", KW_OBJ, destination,
	  .sub = &kt_vs_destination),
	F(struct vs_route_destination, "weight", KW_I32, weight, NONNEG),
	END
};
STAB(kt_vs_route_dest, struct vs_route_destination, "RouteDestination", post_vs_route_dest);

static const struct kw kt_vs_tls_route_kws[] = {
	F(struct vs_tls_route, "match", KW_LIST, match, .sub = &kt_vs_tls_match),
	F(struct vs_tls_route, "route", KW_LIST, route, .sub = &kt_vs_route_dest),
	END
};
STAB(kt_vs_tls_route, struct vs_tls_route, "TLSRoute", post_vs_tls_route);

static const struct kw kt_vs_tcp_route_kws[] = {
	F(struct vs_tcp_route, "match", KW_LIST, match, .sub = &kt_vs_l4_match),
	F(struct vs_tcp_route, "route", KW_LIST, route, .sub = &kt_vs_route_dest),
	END
};
STAB(kt_vs_tcp_route, struct vs_tcp_route, "TCPRoute", post_vs_tcp_route);

static const struct kw kt_virtualservice_kws[] = {
	F(struct virtualservice, "hosts", KW_STRLIST, hosts),
	F(struct virtualservice, "gateways", KW_STRLIST, gateways, .check = chk_gateway_name),
	F(struct virtualservice, "http", KW_LIST, http, .sub = &kt_vs_http_route),
	F(struct virtualservice, "tls", KW_LIST, tls, .sub = &kt_vs_tls_route),
	F(struct virtualservice, "tcp", KW_LIST, tcp, .sub = &kt_vs_tcp_route),
	F(struct virtualservice, "exportTo", KW_STRLIST, export_to, .check = chk_export_to),
	END
};
TAB(kt_virtualservice, struct virtualservice, "VirtualService", post_vs);

/* ---------------------------------------------------------------------------------
 * DestinationRule
 * ------------------------------------------------------------------------------- */

static const struct kw kt_dr_lb_cookie_kws[] = {
	F(struct dr_lb_cookie, "name", KW_STR, name),
	F(struct dr_lb_cookie, "path", KW_STR, path),
	F(struct dr_lb_cookie, "ttl", KW_DURATION, ttl_ms, .flags = KWF_ZERO_OK),
	U("attributes"),
	END
};
STAB(kt_dr_lb_cookie, struct dr_lb_cookie, "HTTPCookie", post_dr_lb_cookie);

/* Envoy's bounds: RingHashLbConfig.minimum_ring_size <= 8M, MaglevLbConfig.table_size
 * <= 5000011 (and prime, checked in post_dr_lb_hash). */
static const struct kw kt_dr_lb_ring_kws[] = {
	F(struct dr_lb_ring_hash, "minimumRingSize", KW_U32, minimum_ring_size,
	  .min = 0, .max = 8388608),
	END
};
STAB(kt_dr_lb_ring, struct dr_lb_ring_hash, "RingHash", NULL);

static const struct kw kt_dr_lb_maglev_kws[] = {
	F(struct dr_lb_maglev, "tableSize", KW_U32, table_size, .min = 0, .max = 5000011),
	END
};
STAB(kt_dr_lb_maglev, struct dr_lb_maglev, "MagLev", NULL);

static const struct kw kt_dr_lb_hash_kws[] = {
	F(struct dr_lb_consistent_hash, "httpHeaderName", KW_STR, http_header_name),
	F(struct dr_lb_consistent_hash, "httpCookie", KW_OBJ, http_cookie, .sub = &kt_dr_lb_cookie),
	F(struct dr_lb_consistent_hash, "useSourceIp", KW_BOOL, use_source_ip),
	F(struct dr_lb_consistent_hash, "httpQueryParameterName", KW_STR,
	  http_query_parameter_name),
	F(struct dr_lb_consistent_hash, "ringHash", KW_OBJ, ring_hash, .sub = &kt_dr_lb_ring),
	F(struct dr_lb_consistent_hash, "maglev", KW_OBJ, maglev, .sub = &kt_dr_lb_maglev),
	F(struct dr_lb_consistent_hash, "minimumRingSize", KW_U32, minimum_ring_size,
	  .min = 0, .max = 8388608),
	END
};
STAB(kt_dr_lb_hash, struct dr_lb_consistent_hash, "ConsistentHashLB", post_dr_lb_hash);

static const struct kw kt_dr_lb_kws[] = {
	F(struct dr_load_balancer, "simple", KW_ENUM, simple, .names = dr_lb_simple_names),
	F(struct dr_load_balancer, "consistentHash", KW_OBJ, consistent_hash,
	  .sub = &kt_dr_lb_hash),
	U("localityLbSetting"),
	U("warmupDurationSecs"),
	U("warmup"),
	END
};
STAB(kt_dr_lb, struct dr_load_balancer, "LoadBalancerSettings", post_dr_lb);

static const struct kw kt_dr_keepalive_kws[] = {
	F(struct dr_tcp_keepalive, "probes", KW_U32, probes),
	F(struct dr_tcp_keepalive, "time", KW_DURATION, time_ms),
	F(struct dr_tcp_keepalive, "interval", KW_DURATION, interval_ms),
	END
};
STAB(kt_dr_keepalive, struct dr_tcp_keepalive, "TcpKeepalive", NULL);

static const struct kw kt_dr_pool_tcp_kws[] = {
	F(struct dr_pool_tcp, "maxConnections", KW_I32, max_connections, NONNEG),
	F(struct dr_pool_tcp, "connectTimeout", KW_DURATION, connect_timeout_ms),
	F(struct dr_pool_tcp, "tcpKeepalive", KW_OBJ, tcp_keepalive, .sub = &kt_dr_keepalive, NA),
	F(struct dr_pool_tcp, "maxConnectionDuration", KW_DURATION, max_connection_duration_ms,
	  NA),
	F(struct dr_pool_tcp, "idleTimeout", KW_DURATION, idle_timeout_ms, .flags = KWF_ZERO_OK),
	END
};
STAB(kt_dr_pool_tcp, struct dr_pool_tcp, "TCPSettings", NULL);

static const struct kw kt_dr_pool_http_kws[] = {
	F(struct dr_pool_http, "http1MaxPendingRequests", KW_I32, http1_max_pending_requests,
	  NONNEG),
	F(struct dr_pool_http, "http2MaxRequests", KW_I32, http2_max_requests, NONNEG),
	F(struct dr_pool_http, "maxRequestsPerConnection", KW_I32, max_requests_per_connection,
	  NONNEG),
	F(struct dr_pool_http, "maxRetries", KW_I32, max_retries, NONNEG),
	F(struct dr_pool_http, "idleTimeout", KW_DURATION, idle_timeout_ms),
	F(struct dr_pool_http, "h2UpgradePolicy", KW_ENUM, h2_upgrade_policy,
	  .names = dr_h2_upgrade_policy_names),
	F(struct dr_pool_http, "useClientProtocol", KW_BOOL, use_client_protocol, NA),
	F(struct dr_pool_http, "maxConcurrentStreams", KW_I32, max_concurrent_streams, NONNEG, NA),
	END
};
STAB(kt_dr_pool_http, struct dr_pool_http, "HTTPSettings", NULL);

static const struct kw kt_dr_pool_kws[] = {
	F(struct dr_connection_pool, "tcp", KW_OBJ, tcp, .sub = &kt_dr_pool_tcp),
	F(struct dr_connection_pool, "http", KW_OBJ, http, .sub = &kt_dr_pool_http),
	END
};
STAB(kt_dr_pool, struct dr_connection_pool, "ConnectionPoolSettings", post_dr_pool);

static const struct kw kt_dr_outlier_kws[] = {
	F(struct dr_outlier_detection, "splitExternalLocalOriginErrors", KW_BOOL,
	  split_external_local_origin_errors),
	F(struct dr_outlier_detection, "consecutiveLocalOriginFailures", KW_U32OPT,
	  consecutive_local_origin_failures),
	F(struct dr_outlier_detection, "consecutiveGatewayErrors", KW_U32OPT,
	  consecutive_gateway_errors),
	F(struct dr_outlier_detection, "consecutive5xxErrors", KW_U32OPT, consecutive_5xx_errors),
	F(struct dr_outlier_detection, "consecutiveErrors", KW_I32, consecutive_errors),
	F(struct dr_outlier_detection, "interval", KW_DURATION, interval_ms),
	F(struct dr_outlier_detection, "baseEjectionTime", KW_DURATION, base_ejection_time_ms),
	F(struct dr_outlier_detection, "maxEjectionPercent", KW_I32, max_ejection_percent, PCT),
	F(struct dr_outlier_detection, "minHealthPercent", KW_I32, min_health_percent, PCT),
	END
};
STAB(kt_dr_outlier, struct dr_outlier_detection, "OutlierDetection", post_dr_outlier);

static const struct kw kt_dr_tls_kws[] = {
	F(struct dr_tls, "mode", KW_ENUM, mode, .names = dr_tls_mode_names),
	F(struct dr_tls, "clientCertificate", KW_STR, client_certificate),
	F(struct dr_tls, "privateKey", KW_STR, private_key),
	F(struct dr_tls, "caCertificates", KW_STR, ca_certificates),
	F(struct dr_tls, "credentialName", KW_STR, credential_name),
	F(struct dr_tls, "subjectAltNames", KW_STRLIST, subject_alt_names, .check = chk_not_empty),
	F(struct dr_tls, "sni", KW_STR, sni),
	F(struct dr_tls, "insecureSkipVerify", KW_BOOL, insecure_skip_verify),
	F(struct dr_tls, "caCrl", KW_STR, ca_crl),
	END
};
STAB(kt_dr_tls, struct dr_tls, "ClientTLSSettings", post_dr_tls);

static const struct kw kt_dr_port_policy_kws[] = {
	F(struct dr_port_policy, "port", KW_EMBED, port, .sub = &kt_portsel),
	F(struct dr_port_policy, "loadBalancer", KW_OBJ, load_balancer, .sub = &kt_dr_lb),
	F(struct dr_port_policy, "connectionPool", KW_OBJ, connection_pool, .sub = &kt_dr_pool),
	F(struct dr_port_policy, "outlierDetection", KW_OBJ, outlier_detection,
	  .sub = &kt_dr_outlier),
	F(struct dr_port_policy, "tls", KW_OBJ, tls, .sub = &kt_dr_tls),
	END
};
STAB(kt_dr_port_policy, struct dr_port_policy, "PortTrafficPolicy", post_dr_port_policy);

static const struct kw kt_dr_policy_kws[] = {
	F(struct dr_traffic_policy, "loadBalancer", KW_OBJ, load_balancer, .sub = &kt_dr_lb),
	F(struct dr_traffic_policy, "connectionPool", KW_OBJ, connection_pool, .sub = &kt_dr_pool),
	F(struct dr_traffic_policy, "outlierDetection", KW_OBJ, outlier_detection,
	  .sub = &kt_dr_outlier),
	F(struct dr_traffic_policy, "tls", KW_OBJ, tls, .sub = &kt_dr_tls),
	F(struct dr_traffic_policy, "portLevelSettings", KW_LIST, port_level_settings,
	  .sub = &kt_dr_port_policy),
	U("tunnel"),
	U("proxyProtocol"),
	END
};
STAB(kt_dr_policy, struct dr_traffic_policy, "TrafficPolicy", post_dr_policy);

static const struct kw kt_dr_subset_kws[] = {
	F(struct dr_subset, "name", KW_STR, name, .check = chk_subset_name),
	F(struct dr_subset, "labels", KW_STRMAP, labels, LABELS),
	F(struct dr_subset, "trafficPolicy", KW_OBJ, traffic_policy, .sub = &kt_dr_policy),
	END
};
STAB(kt_dr_subset, struct dr_subset, "Subset", post_dr_subset);

static const struct kw kt_dr_selector_kws[] = {
	F(struct dr_workload_selector, "matchLabels", KW_STRMAP, match_labels, SELECTOR),
	END
};
STAB(kt_dr_selector, struct dr_workload_selector, "WorkloadSelector", post_dr_selector);

static const struct kw kt_destinationrule_kws[] = {
	F(struct destinationrule, "host", KW_STR, host, .check = chk_dr_host),
	F(struct destinationrule, "trafficPolicy", KW_OBJ, traffic_policy, .sub = &kt_dr_policy),
	F(struct destinationrule, "subsets", KW_LIST, subsets, .sub = &kt_dr_subset),
	F(struct destinationrule, "exportTo", KW_STRLIST, export_to, .check = chk_export_to),
	F(struct destinationrule, "workloadSelector", KW_OBJ, workload_selector,
	  .sub = &kt_dr_selector),
	END
};
TAB(kt_destinationrule, struct destinationrule, "DestinationRule", post_dr);

/* The decoder stores enums through an int. */
_Static_assert(sizeof(enum dr_tls_mode) == sizeof(int), "enums must be int-sized");
_Static_assert(sizeof(enum res_protocol) == sizeof(int), "enums must be int-sized");
_Static_assert(sizeof(enum gw_tls_mode) == sizeof(int), "enums must be int-sized");

/* ---------------------------------------------------------------------------------
 * AuthorizationPolicy (istio/api security/v1beta1/authorization.proto; v1 is the same)
 * ------------------------------------------------------------------------------- */

static const struct kw kt_ap_source_kws[] = {
	F(struct ap_source, "principals", KW_STRLIST, principals, .check = chk_ap_value),
	F(struct ap_source, "notPrincipals", KW_STRLIST, not_principals, .check = chk_ap_value),
	F(struct ap_source, "requestPrincipals", KW_STRLIST, request_principals),
	F(struct ap_source, "notRequestPrincipals", KW_STRLIST, not_request_principals),
	F(struct ap_source, "namespaces", KW_STRLIST, namespaces, .check = chk_ap_value),
	F(struct ap_source, "notNamespaces", KW_STRLIST, not_namespaces, .check = chk_ap_value),
	F(struct ap_source, "ipBlocks", KW_STRLIST, ip_blocks, .check = chk_ip_or_cidr),
	F(struct ap_source, "notIpBlocks", KW_STRLIST, not_ip_blocks, .check = chk_ip_or_cidr),
	F(struct ap_source, "remoteIpBlocks", KW_STRLIST, remote_ip_blocks, .check = chk_ip_or_cidr),
	F(struct ap_source, "notRemoteIpBlocks", KW_STRLIST, not_remote_ip_blocks,
	  .check = chk_ip_or_cidr),
	F(struct ap_source, "serviceAccounts", KW_STRLIST, service_accounts,
	  .check = chk_ap_service_account),
	F(struct ap_source, "notServiceAccounts", KW_STRLIST, not_service_accounts,
	  .check = chk_ap_service_account),
	END
};
STAB(kt_ap_source, struct ap_source, "Source", post_ap_source);

static const struct kw kt_ap_operation_kws[] = {
	F(struct ap_operation, "hosts", KW_STRLIST, hosts, .check = chk_ap_value),
	F(struct ap_operation, "notHosts", KW_STRLIST, not_hosts, .check = chk_ap_value),
	F(struct ap_operation, "ports", KW_STRLIST, ports, .check = chk_ap_port),
	F(struct ap_operation, "notPorts", KW_STRLIST, not_ports, .check = chk_ap_port),
	F(struct ap_operation, "methods", KW_STRLIST, methods, .check = chk_ap_value),
	F(struct ap_operation, "notMethods", KW_STRLIST, not_methods, .check = chk_ap_value),
	F(struct ap_operation, "paths", KW_STRLIST, paths, .check = chk_ap_value),
	F(struct ap_operation, "notPaths", KW_STRLIST, not_paths, .check = chk_ap_value),
	END
};
STAB(kt_ap_operation, struct ap_operation, "Operation", post_ap_operation);

static const struct kw kt_ap_from_kws[] = {
	F(struct ap_from, "source", KW_OBJ, source, .sub = &kt_ap_source),
	END
};
STAB(kt_ap_from, struct ap_from, "Rule.From", post_ap_from);

static const struct kw kt_ap_to_kws[] = {
	F(struct ap_to, "operation", KW_OBJ, operation, .sub = &kt_ap_operation),
	END
};
STAB(kt_ap_to, struct ap_to, "Rule.To", post_ap_to);

static const struct kw kt_ap_condition_kws[] = {
	F(struct ap_condition, "key", KW_STR, key),
	F(struct ap_condition, "values", KW_STRLIST, values, .check = chk_ap_value),
	F(struct ap_condition, "notValues", KW_STRLIST, not_values, .check = chk_ap_value),
	END
};
STAB(kt_ap_condition, struct ap_condition, "Condition", post_ap_condition);

static const struct kw kt_ap_rule_kws[] = {
	F(struct ap_rule, "from", KW_LIST, from, .sub = &kt_ap_from),
	F(struct ap_rule, "to", KW_LIST, to, .sub = &kt_ap_to),
	F(struct ap_rule, "when", KW_LIST, when, .sub = &kt_ap_condition),
	END
};
STAB(kt_ap_rule, struct ap_rule, "Rule", NULL);

static const struct kw kt_ap_selector_kws[] = {
	F(struct ap_selector, "matchLabels", KW_STRMAP, match_labels, SELECTOR),
	END
};
STAB(kt_ap_selector, struct ap_selector, "WorkloadSelector", NULL);

static const struct kw kt_ap_target_ref_kws[] = {
	F(struct ap_target_ref, "group", KW_STR, group),
	F(struct ap_target_ref, "kind", KW_STR, kind),
	F(struct ap_target_ref, "name", KW_STR, name),
	F(struct ap_target_ref, "namespace", KW_STR, namespace),
	END
};
STAB(kt_ap_target_ref, struct ap_target_ref, "PolicyTargetReference", post_ap_target_ref);

static const struct kw kt_ap_provider_kws[] = {
	F(struct ap_provider, "name", KW_STR, name),
	END
};
STAB(kt_ap_provider, struct ap_provider, "ExtensionProvider", NULL);

static const struct kw kt_authorizationpolicy_kws[] = {
	F(struct authorizationpolicy, "selector", KW_OBJ, selector, .sub = &kt_ap_selector),
	F(struct authorizationpolicy, "targetRef", KW_OBJ, target_ref, .sub = &kt_ap_target_ref),
	F(struct authorizationpolicy, "targetRefs", KW_LIST, target_refs, .sub = &kt_ap_target_ref),
	F(struct authorizationpolicy, "rules", KW_LIST, rules, .sub = &kt_ap_rule),
	F(struct authorizationpolicy, "action", KW_ENUM, action, .names = ap_action_names),
	F(struct authorizationpolicy, "provider", KW_OBJ, provider, .sub = &kt_ap_provider),
	END
};
TAB(kt_authorizationpolicy, struct authorizationpolicy, "AuthorizationPolicy", post_ap);

_Static_assert(sizeof(enum ap_action) == sizeof(int), "enums must be int-sized");
