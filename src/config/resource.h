/* resource: the typed spec of each Istio kind (and core v1 Secret), as res_decode fills it.
 *
 * Field names follow the Istio API (camelCase there, snake_case here); every field listed
 * in Istio's networking/v1alpha3 protos that egressgw acts on is here. Fields of the API
 * that egressgw does not implement (corsPolicy, directResponse, consistentHash, ...) are
 * accepted by the decoder with a warning and not stored.
 *
 * Conventions for every struct below:
 *   - strings are NUL-terminated and owned by the resource; NULL means "not set";
 *   - integers are 0 when not set (the protobuf default), unless said otherwise;
 *   - durations are in milliseconds, 0 when not set (Istio rejects durations under 1ms,
 *     so a set duration is never 0, except where noted);
 *   - a pointer to a sub-object is NULL when the YAML did not have it;
 *   - lists are { v, n } arrays in document order;
 *   - `pos` is where the object (its map) starts in the YAML, so later stages (snapshot
 *     compilation, the proxy at runtime) can report problems as FILE:LINE:COL. pos.file
 *     points into the owning struct resource and lives as long as it.
 * Everything is read-only after res_decode; res_free releases it. */
#ifndef EGRESS_CONFIG_RESOURCE_H
#define EGRESS_CONFIG_RESOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* A place in a YAML file (1-based line and column; 0 when unknown). */
struct srcpos {
	const char *file;
	int line, col;
};

/* A list of strings, each with the position of its YAML node. */
struct res_strlist {
	char **v;
	struct srcpos *pos;
	size_t n;
};

/* A string-to-string map (labels, selectors, header operations), in document order.
 * pos is the key's position. */
struct res_strmap_entry {
	char *key;
	char *value;
	struct srcpos pos;
};

struct res_strmap {
	struct res_strmap_entry *v;
	size_t n;
};

/* A name-to-port map (ServiceEntry endpoint ports). */
struct res_portmap_entry {
	char *name;
	uint32_t number;
	struct srcpos pos;
};

struct res_portmap {
	struct res_portmap_entry *v;
	size_t n;
};

/* istio.networking.v1alpha3.Percent */
struct res_percent {
	double value;
	struct srcpos pos;
};

/* google.protobuf.UInt32Value: set tells "0" from "absent" where Istio does. */
struct res_u32opt {
	bool set;
	uint32_t value;
};

#define RES_LIST(type) struct { type *v; size_t n; }

/* Port protocols (Istio's protocol.Parse, case-insensitive on input). */
enum res_protocol {
	RES_PROTO_UNSET,      /* not given: protocol sniffing */
	RES_PROTO_HTTP,
	RES_PROTO_HTTPS,
	RES_PROTO_GRPC,
	RES_PROTO_GRPC_WEB,
	RES_PROTO_HTTP2,
	RES_PROTO_HTTP_PROXY,
	RES_PROTO_MONGO,
	RES_PROTO_REDIS,
	RES_PROTO_MYSQL,
	RES_PROTO_TCP,
	RES_PROTO_TLS,
	RES_PROTO_UDP,
	RES_PROTO_COUNT
};

/* "HTTP", "GRPC-WEB", ...; "" for RES_PROTO_UNSET. */
const char *res_protocol_name(enum res_protocol p);
/* Istio's IsHTTP (HTTP, HTTP2, GRPC, GRPC-WEB, HTTP_PROXY) and IsTLS (HTTPS, TLS). */
bool res_protocol_is_http(enum res_protocol p);
bool res_protocol_is_tls(enum res_protocol p);

/* ------------------------------------------------------------------------------------
 * ServiceEntry
 * ---------------------------------------------------------------------------------- */

enum se_location {
	SE_LOCATION_MESH_EXTERNAL,   /* default */
	SE_LOCATION_MESH_INTERNAL,
};

enum se_resolution {
	SE_RESOLUTION_NONE,          /* default: original destination */
	SE_RESOLUTION_STATIC,
	SE_RESOLUTION_DNS,
	SE_RESOLUTION_DNS_ROUND_ROBIN,
};

struct se_port {
	uint32_t number;
	enum res_protocol protocol;
	char *name;
	uint32_t target_port;        /* 0: same as number */
	struct srcpos pos;
};

struct se_endpoint {
	char *address;               /* IP, hostname (DNS) or unix:///path */
	struct res_portmap ports;    /* port name -> endpoint port */
	struct res_strmap labels;
	char *network;
	char *locality;
	uint32_t weight;
	char *service_account;
	struct srcpos pos;
};

struct se_workload_selector {
	struct res_strmap labels;
	struct srcpos pos;
};

struct serviceentry {
	struct res_strlist hosts;
	struct res_strlist addresses;
	RES_LIST(struct se_port) ports;
	enum se_location location;
	enum se_resolution resolution;
	RES_LIST(struct se_endpoint) endpoints;
	struct se_workload_selector *workload_selector;
	struct res_strlist export_to;
	struct res_strlist subject_alt_names;
	struct srcpos pos;
};

/* ------------------------------------------------------------------------------------
 * Gateway
 * ---------------------------------------------------------------------------------- */

enum gw_tls_mode {
	GW_TLS_PASSTHROUGH,          /* protobuf default */
	GW_TLS_SIMPLE,
	GW_TLS_MUTUAL,
	GW_TLS_AUTO_PASSTHROUGH,
	GW_TLS_ISTIO_MUTUAL,
	GW_TLS_OPTIONAL_MUTUAL,
};

enum res_tls_version {
	RES_TLS_AUTO,                /* default: TLS 1.2 minimum, 1.3 maximum */
	RES_TLSV1_0,
	RES_TLSV1_1,
	RES_TLSV1_2,
	RES_TLSV1_3,
};

struct gw_tls {
	bool https_redirect;
	enum gw_tls_mode mode;
	char *server_certificate;
	char *private_key;
	char *ca_certificates;
	char *ca_crl;
	char *credential_name;
	struct res_strlist subject_alt_names;
	struct res_strlist verify_certificate_spki;
	struct res_strlist verify_certificate_hash;
	enum res_tls_version min_protocol_version;
	enum res_tls_version max_protocol_version;
	struct res_strlist cipher_suites;
	struct srcpos pos;
};

struct gw_port {
	uint32_t number;
	enum res_protocol protocol;
	char *name;
	uint32_t target_port;        /* rejected on gateways; kept for messages */
	struct srcpos pos;
};

struct gw_server {
	struct gw_port port;         /* required */
	char *bind;
	struct res_strlist hosts;    /* "[ns/]host", host may start with "*" */
	struct gw_tls *tls;
	char *default_endpoint;
	char *name;
	struct srcpos pos;
};

struct gateway {
	struct res_strmap selector;
	RES_LIST(struct gw_server) servers;
	struct srcpos pos;
};

/* ------------------------------------------------------------------------------------
 * VirtualService
 * ---------------------------------------------------------------------------------- */

/* StringMatch: at most one of the three is set; none set means "any value" (for headers:
 * the header is present). */
struct vs_string_match {
	char *exact;
	char *prefix;
	char *regex;
	struct srcpos pos;
};

/* An entry of headers / queryParams / withoutHeaders: name -> StringMatch. */
struct vs_named_match {
	char *name;
	struct vs_string_match m;
	struct srcpos pos;
};

struct vs_http_match {
	char *name;
	struct vs_string_match *uri;
	struct vs_string_match *scheme;
	struct vs_string_match *method;
	struct vs_string_match *authority;
	RES_LIST(struct vs_named_match) headers;
	uint32_t port;               /* 0: any */
	struct res_strmap source_labels;
	struct res_strlist gateways;
	RES_LIST(struct vs_named_match) query_params;
	bool ignore_uri_case;
	RES_LIST(struct vs_named_match) without_headers;
	char *source_namespace;
	char *stat_prefix;
	struct srcpos pos;
};

struct vs_destination {
	char *host;                  /* required */
	char *subset;
	uint32_t port;               /* port.number; 0: not given */
	struct srcpos pos;
};

struct vs_header_ops {
	struct res_strmap set;
	struct res_strmap add;
	struct res_strlist remove;
	struct srcpos pos;
};

/* set + add entries of one direction of one Headers (res_validate.c post_vs_headers). */
#define VS_HEADER_OPS_MAX 32

struct vs_headers {
	struct vs_header_ops *request;
	struct vs_header_ops *response;
	struct srcpos pos;
};

struct vs_http_route_destination {
	struct vs_destination *destination;  /* required */
	int32_t weight;
	struct vs_headers *headers;
	struct srcpos pos;
};

enum vs_redirect_derive_port {
	VS_REDIRECT_FROM_PROTOCOL_DEFAULT,   /* protobuf default */
	VS_REDIRECT_FROM_REQUEST_PORT,
};

struct vs_redirect {
	char *uri;
	char *authority;
	uint32_t port;
	enum vs_redirect_derive_port derive_port;
	char *scheme;
	uint32_t redirect_code;      /* 0: 301 */
	struct srcpos pos;
};

struct vs_regex_rewrite {
	char *match;
	char *rewrite;
	struct srcpos pos;
};

struct vs_rewrite {
	char *uri;
	char *authority;
	struct vs_regex_rewrite *uri_regex_rewrite;
	struct srcpos pos;
};

struct vs_retries {
	int32_t attempts;
	int64_t per_try_timeout_ms;
	char *retry_on;              /* comma-separated Envoy policies and status codes */
	bool retry_remote_localities;
	bool retry_ignore_previous_hosts;
	int64_t backoff_ms;
	struct srcpos pos;
};

struct vs_fault_delay {
	int64_t fixed_delay_ms;
	int64_t exponential_delay_ms;  /* rejected by validation, as in Istio */
	struct res_percent *percentage;
	int32_t percent;               /* deprecated integer form */
	struct srcpos pos;
};

struct vs_fault_abort {
	int32_t http_status;
	char *grpc_status;
	char *http2_error;             /* rejected by validation, as in Istio */
	struct res_percent *percentage;
	struct srcpos pos;
};

struct vs_fault {
	struct vs_fault_delay *delay;
	struct vs_fault_abort *abort;
	struct srcpos pos;
};

/* HTTPDirectResponse: answered by the proxy (proxy/route_fault.h). body: one of string or
 * bytes; bytes is base64 in the YAML, and post_vs_http_body replaces it with the decoded
 * bytes (bytes_len of them, NUL-terminated). */
struct vs_http_body {
	char *string;
	char *bytes;
	size_t bytes_len;
	struct srcpos pos;
};

struct vs_direct_response {
	uint32_t status;
	struct vs_http_body *body;
	struct srcpos pos;
};

/* CorsPolicy (applied by src/proxy/route_cors.c). */
enum vs_cors_unmatched {
	VS_CORS_UNMATCHED_UNSPECIFIED,   /* FORWARD */
	VS_CORS_FORWARD,
	VS_CORS_IGNORE,
};

struct vs_cors {
	RES_LIST(struct vs_string_match) allow_origins;
	struct res_strlist allow_origin;     /* deprecated: exact origins */
	struct res_strlist allow_methods;
	struct res_strlist allow_headers;
	struct res_strlist expose_headers;
	int64_t max_age_ms;                  /* 0: not given; whole seconds */
	bool allow_credentials;
	int unmatched_preflights;            /* enum vs_cors_unmatched */
	struct srcpos pos;
};

/* HTTPMirrorPolicy (mirrors[]): a shadow destination and its own percentage. */
struct vs_mirror_policy {
	struct vs_destination *destination;  /* required */
	struct res_percent *percentage;      /* absent: 100% */
	struct srcpos pos;
};

struct vs_http_route {
	char *name;
	RES_LIST(struct vs_http_match) match;
	RES_LIST(struct vs_http_route_destination) route;
	struct vs_redirect *redirect;
	struct vs_rewrite *rewrite;
	int64_t timeout_ms;
	struct vs_retries *retries;
	struct vs_fault *fault;
	struct vs_direct_response *direct_response;
	struct vs_destination *mirror;
	struct res_percent *mirror_percentage;
	struct res_u32opt mirror_percent;  /* deprecated integer form */
	RES_LIST(struct vs_mirror_policy) mirrors;
	struct vs_headers *headers;
	struct vs_cors *cors;
	struct srcpos pos;
};

struct vs_tls_match {
	struct res_strlist sni_hosts;      /* required */
	struct res_strlist destination_subnets;
	uint32_t port;
	struct res_strmap source_labels;
	struct res_strlist gateways;
	char *source_namespace;
	struct srcpos pos;
};

struct vs_l4_match {
	struct res_strlist destination_subnets;
	uint32_t port;
	char *source_subnet;
	struct res_strmap source_labels;
	struct res_strlist gateways;
	char *source_namespace;
	struct srcpos pos;
};

struct vs_route_destination {
	struct vs_destination *destination;  /* required */
	int32_t weight;
	struct srcpos pos;
};

struct vs_tls_route {
	RES_LIST(struct vs_tls_match) match;
	RES_LIST(struct vs_route_destination) route;
	struct srcpos pos;
};

struct vs_tcp_route {
	RES_LIST(struct vs_l4_match) match;
	RES_LIST(struct vs_route_destination) route;
	struct srcpos pos;
};

struct virtualservice {
	struct res_strlist hosts;
	struct res_strlist gateways;       /* empty: "mesh" only */
	RES_LIST(struct vs_http_route) http;
	RES_LIST(struct vs_tls_route) tls;
	RES_LIST(struct vs_tcp_route) tcp;
	struct res_strlist export_to;
	struct srcpos pos;
};

/* ------------------------------------------------------------------------------------
 * DestinationRule
 * ---------------------------------------------------------------------------------- */

enum dr_lb_simple {
	DR_LB_UNSPECIFIED,
	DR_LB_LEAST_CONN,            /* deprecated alias of LEAST_REQUEST */
	DR_LB_RANDOM,
	DR_LB_PASSTHROUGH,
	DR_LB_ROUND_ROBIN,
	DR_LB_LEAST_REQUEST,
};

/* loadBalancer.consistentHash (Istio's ConsistentHashLB; applied by proxy/lbhash.c). */
struct dr_lb_cookie {
	char *name;
	char *path;
	int64_t ttl_ms;               /* 0: absent (refused), -1: "0s" (session cookie) */
	struct srcpos pos;
};

struct dr_lb_ring_hash {
	uint32_t minimum_ring_size;   /* 0: Envoy's default, 1024 */
	struct srcpos pos;
};

struct dr_lb_maglev {
	uint32_t table_size;          /* 0: Envoy's default, 65537; else a prime */
	struct srcpos pos;
};

struct dr_lb_consistent_hash {
	char *http_header_name;
	struct dr_lb_cookie *http_cookie;
	bool use_source_ip;
	char *http_query_parameter_name;
	struct dr_lb_ring_hash *ring_hash;
	struct dr_lb_maglev *maglev;
	uint32_t minimum_ring_size;   /* deprecated form of ringHash.minimumRingSize */
	struct srcpos pos;
};

struct dr_load_balancer {
	enum dr_lb_simple simple;
	struct dr_lb_consistent_hash *consistent_hash;
	struct srcpos pos;
};

struct dr_tcp_keepalive {
	uint32_t probes;
	int64_t time_ms;
	int64_t interval_ms;
	struct srcpos pos;
};

struct dr_pool_tcp {
	int32_t max_connections;
	int64_t connect_timeout_ms;
	struct dr_tcp_keepalive *tcp_keepalive;
	int64_t max_connection_duration_ms;
	int64_t idle_timeout_ms;     /* 0: not set; -1: "0s", idle timeout disabled */
	struct srcpos pos;
};

enum dr_h2_upgrade_policy {
	DR_H2_UPGRADE_DEFAULT,
	DR_H2_DO_NOT_UPGRADE,
	DR_H2_UPGRADE,
};

struct dr_pool_http {
	int32_t http1_max_pending_requests;
	int32_t http2_max_requests;
	int32_t max_requests_per_connection;
	int32_t max_retries;
	int64_t idle_timeout_ms;
	enum dr_h2_upgrade_policy h2_upgrade_policy;
	bool use_client_protocol;
	int32_t max_concurrent_streams;
	struct srcpos pos;
};

struct dr_connection_pool {
	struct dr_pool_tcp *tcp;
	struct dr_pool_http *http;
	struct srcpos pos;
};

struct dr_outlier_detection {
	bool split_external_local_origin_errors;
	struct res_u32opt consecutive_local_origin_failures;
	struct res_u32opt consecutive_gateway_errors;
	struct res_u32opt consecutive_5xx_errors;
	int32_t consecutive_errors;  /* deprecated */
	int64_t interval_ms;
	int64_t base_ejection_time_ms;
	int32_t max_ejection_percent;
	int32_t min_health_percent;
	struct srcpos pos;
};

enum dr_tls_mode {
	DR_TLS_DISABLE,              /* protobuf default */
	DR_TLS_SIMPLE,
	DR_TLS_MUTUAL,
	DR_TLS_ISTIO_MUTUAL,
};

/* ClientTLSSettings: TLS origination toward the destination. */
struct dr_tls {
	enum dr_tls_mode mode;
	char *client_certificate;
	char *private_key;
	char *ca_certificates;
	char *credential_name;
	struct res_strlist subject_alt_names;
	char *sni;
	bool insecure_skip_verify;
	char *ca_crl;
	struct srcpos pos;
};

struct dr_port_policy {
	uint32_t port;               /* port.number; required */
	struct dr_load_balancer *load_balancer;
	struct dr_connection_pool *connection_pool;
	struct dr_outlier_detection *outlier_detection;
	struct dr_tls *tls;
	struct srcpos pos;
};

struct dr_traffic_policy {
	struct dr_load_balancer *load_balancer;
	struct dr_connection_pool *connection_pool;
	struct dr_outlier_detection *outlier_detection;
	struct dr_tls *tls;
	RES_LIST(struct dr_port_policy) port_level_settings;
	struct srcpos pos;
};

struct dr_subset {
	char *name;                  /* required */
	struct res_strmap labels;
	struct dr_traffic_policy *traffic_policy;
	struct srcpos pos;
};

struct dr_workload_selector {
	struct res_strmap match_labels;
	struct srcpos pos;
};

struct destinationrule {
	char *host;                  /* required */
	struct dr_traffic_policy *traffic_policy;
	RES_LIST(struct dr_subset) subsets;
	struct res_strlist export_to;
	struct dr_workload_selector *workload_selector;
	struct srcpos pos;
};

/* ------------------------------------------------------------------------------------
 * Secret (core v1)
 * ---------------------------------------------------------------------------------- */

/* One key of a Secret: data values are base64-decoded; stringData values are merged in
 * as the API server does (stringData wins). value is key material: never log it. */
struct res_secret_data {
	char *key;
	unsigned char *value;        /* NUL-terminated for convenience; len is authoritative */
	size_t len;
	struct srcpos pos;           /* where the value was written */
};

struct secret {
	char *type;                  /* "Opaque" when not given */
	RES_LIST(struct res_secret_data) data;
	bool immutable;
	struct srcpos pos;
};

/* Looks a key up in a Secret; NULL if absent. */
const struct res_secret_data *res_secret_get(const struct secret *s, const char *key);

/* ------------------------------------------------------------------------------------
 * AuthorizationPolicy (security.istio.io v1beta1 and v1)
 * ---------------------------------------------------------------------------------- */

enum ap_action {
	AP_ALLOW,                    /* protobuf default */
	AP_DENY,
	AP_AUDIT,
	AP_CUSTOM,                   /* refused by validation: no external authorizer here */
};

/* Source: who sends the request. Every list is ORed inside, the lists are ANDed. */
struct ap_source {
	struct res_strlist principals, not_principals;
	struct res_strlist request_principals, not_request_principals;   /* refused: no JWT */
	struct res_strlist namespaces, not_namespaces;
	struct res_strlist ip_blocks, not_ip_blocks;
	struct res_strlist remote_ip_blocks, not_remote_ip_blocks;
	struct res_strlist service_accounts, not_service_accounts;       /* "ns/sa" */
	struct srcpos pos;
};

/* Operation: what the request asks for. ports are strings in the API ("443"). */
struct ap_operation {
	struct res_strlist hosts, not_hosts;
	struct res_strlist ports, not_ports;
	struct res_strlist methods, not_methods;
	struct res_strlist paths, not_paths;
	struct srcpos pos;
};

struct ap_from {
	struct ap_source *source;    /* required */
	struct srcpos pos;
};

struct ap_to {
	struct ap_operation *operation;  /* required */
	struct srcpos pos;
};

struct ap_condition {
	char *key;                   /* required: "request.headers[x-user]", "source.ip", ... */
	struct res_strlist values, not_values;
	struct srcpos pos;
};

struct ap_rule {
	RES_LIST(struct ap_from) from;
	RES_LIST(struct ap_to) to;
	RES_LIST(struct ap_condition) when;
	struct srcpos pos;
};

struct ap_selector {
	struct res_strmap match_labels;
	struct srcpos pos;
};

/* PolicyTargetReference: a Gateway API Gateway (the proxy labelled
 * gateway.networking.k8s.io/gateway-name=NAME in the policy's namespace). */
struct ap_target_ref {
	char *group;
	char *kind;                  /* required */
	char *name;                  /* required */
	char *namespace;
	struct srcpos pos;
};

struct ap_provider {
	char *name;
	struct srcpos pos;
};

struct authorizationpolicy {
	struct ap_selector *selector;
	struct ap_target_ref *target_ref;
	RES_LIST(struct ap_target_ref) target_refs;
	RES_LIST(struct ap_rule) rules;
	enum ap_action action;
	struct ap_provider *provider;
	/* metadata.annotations["istio.io/dry-run"] == "true": evaluated, counted and logged
	 * as a shadow decision, never enforced. */
	bool dry_run;
	struct srcpos pos;
};

/* ------------------------------------------------------------------------------------
 * Enum names (as written in YAML), indexed by the enum values above.
 * ---------------------------------------------------------------------------------- */

extern const char *const se_location_names[];
extern const char *const se_resolution_names[];
extern const char *const gw_tls_mode_names[];
extern const char *const res_tls_version_names[];
extern const char *const dr_lb_simple_names[];
extern const char *const dr_h2_upgrade_policy_names[];
extern const char *const dr_tls_mode_names[];
extern const char *const vs_redirect_derive_port_names[];
extern const char *const vs_cors_unmatched_names[];
extern const char *const ap_action_names[];

/* ------------------------------------------------------------------------------------
 * Small helpers shared by the later stages
 * ---------------------------------------------------------------------------------- */

bool res_strlist_has(const struct res_strlist *l, const char *s);
/* NULL when absent. */
const char *res_strmap_get(const struct res_strmap *m, const char *key);
/* Label selection (subsets, selectors): true when labels carries every key of sel with
 * the same value; an empty sel selects everything. */
bool res_labels_select(const struct res_strmap *sel, const struct res_strmap *labels);
/* Istio host matching: exact (case-insensitive), or a "*.suffix" / "*" pattern covering
 * the other name. pattern may be a wildcard; name may be too (then it must be covered). */
bool res_host_matches(const char *pattern, const char *name);

#endif
