/* res_internal: the keyword-table decoder shared by the config/res_*.c files.
 *
 * Each typed struct of resource.h has a keyword table (HAProxy-style): YAML field name ->
 * how to decode it -> where it goes (offset in the struct). The generic walker in
 * res_decode.c reads a YAML map with a table, reports unknown fields and type errors at
 * the offending node, fills the struct, then calls the table's `post` hook, which checks
 * what needs the whole object (required fields, combinations, sums). The same tables
 * drive res_free, so adding a field is one table line and one struct member.
 *
 * Not a public API: only src/config/res_*.c and resource.c include this. */
#ifndef EGRESS_CONFIG_RES_INTERNAL_H
#define EGRESS_CONFIG_RES_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "config/resource.h"
#include "config/ydoc.h"
#include "core/diag.h"

/* Decoding context: where we are, for messages. */
struct dctx {
	struct diags *d;
	const char *file;            /* owned by the resource being built; also for srcpos */
	char desc[320];              /* "DestinationRule default/broken" */
	char path[1024];             /* "spec.trafficPolicy.tls.mode" */
	size_t plen;
	const char *ns;              /* the resource's namespace */
	enum res_kind kind;
	bool failed;                 /* at least one error */
};

enum kw_type {
	KW_STR,          /* char *;             check(value) */
	KW_STRLIST,      /* struct res_strlist;  check(item) */
	KW_STRMAP,       /* struct res_strmap;   keycheck(key), check(value) */
	KW_PORTMAP,      /* struct res_portmap;  keycheck(name), ports 1..65535 */
	KW_U32,          /* uint32_t, range min..max */
	KW_I32,          /* int32_t, range min..max */
	KW_U32OPT,       /* struct res_u32opt */
	KW_BOOL,         /* bool */
	KW_DOUBLE,       /* double, range min..max */
	KW_DURATION,     /* int64_t milliseconds; KWF_ZERO_OK lets "0s" through as -1 */
	KW_ENUM,         /* int-sized enum; names[] */
	KW_PROTOCOL,     /* enum res_protocol */
	KW_OBJ,          /* pointer to a struct allocated here; sub */
	KW_EMBED,        /* struct embedded at off; sub */
	KW_LIST,         /* RES_LIST(struct); sub for each item */
	KW_NAMED,        /* YAML map name -> object: RES_LIST(struct) whose first member is
	                  * `char *name`; sub decodes each value; keycheck(name) */
	KW_UNSUPPORTED,  /* in Istio's API, not implemented here: warning, ignored */
	KW_IGNORE,       /* accepted silently and not stored (server-set metadata) */
};

#define KWF_PORT     0x01   /* integer is a port number: Istio's wording in errors */
#define KWF_ZERO_OK  0x02   /* KW_DURATION: "0s" is meaningful (stored as -1) */
/* Decoded and validated as Istio does, but egressgw does not act on it: a warning at the
 * field ("not applied by egressgw; ignored"). With KW_UNSUPPORTED (not even stored),
 * the keyword tables are the one list of what is accepted and not applied: the decoder's
 * warnings reach `egressctl apply` (Warning: lines), `egressctl analyze` (IST0133 at
 * FILE:LINE) and the proxy's log at load, so nothing is ignored in silence. */
#define KWF_UNAPPLIED 0x04

struct kwtab;

typedef void (*kw_check_fn)(struct dctx *c, const struct ynode *node, const char *s);
typedef void (*kw_post_fn)(struct dctx *c, const struct ynode *map, void *obj);

struct kw {
	const char *name;
	enum kw_type type;
	size_t off;
	const struct kwtab *sub;
	const char *const *names;    /* KW_ENUM: NULL-terminated, index = enum value */
	kw_check_fn check;
	kw_check_fn keycheck;
	int64_t min, max;            /* KW_U32/KW_I32/KW_DOUBLE; both 0: type's full range */
	unsigned flags;
};

#define KW_NOPOS ((size_t)-1)

struct kwtab {
	const char *name;            /* Istio message name, for debugging */
	size_t size;                 /* sizeof the struct (KW_OBJ/KW_LIST/KW_NAMED items) */
	size_t pos_off;              /* offsetof its struct srcpos, or KW_NOPOS */
	const struct kw *kws;        /* terminated by { NULL } */
	kw_post_fn post;
};

/* ---- the walker (res_decode.c) ---- */

/* Decodes map into obj with table t; reports at the node. Path must already name map. */
void kw_decode_map(struct dctx *c, const struct ynode *map, const struct kwtab *t, void *obj);
/* Frees everything a table owns in obj (not obj itself). */
void kw_free(const struct kwtab *t, void *obj);
/* srcpos of a node (file from the context). */
struct srcpos kw_pos(const struct dctx *c, const struct ynode *n);

/* Path handling: push returns a mark to pop back to. */
size_t path_push_key(struct dctx *c, const char *key);
size_t path_push_index(struct dctx *c, size_t i);
size_t path_push_mapkey(struct dctx *c, const char *key);   /* ["key"] */
void path_pop(struct dctx *c, size_t mark);

/* Errors and warnings at a node, prefixed with "Kind ns/name: path: ". */
void derr(struct dctx *c, const struct ynode *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void dwarn(struct dctx *c, const struct ynode *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same for a field of map: path gets ".field", position is the field's value if
 * present, else the map. */
void derr_field(struct dctx *c, const struct ynode *map, const char *field, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
void dwarn_field(struct dctx *c, const struct ynode *map, const char *field, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
/* Error for a missing required field: at map, path of map, `missing required field "f"`;
 * or, if the field is present but empty (e.g. []), at the field: "must not be empty". */
void derr_required(struct dctx *c, const struct ynode *map, const char *field);

/* Scalar parsing shared with validation. */
int parse_duration_ns(const char *s, int64_t *ns);
/* Decodes standard base64 (padding required, \r and \n ignored, as Go's StdEncoding).
 * Returns 0 and a malloc'd buffer (NUL-terminated, *len bytes), or -1 with *bad_off set
 * to the offset of the first offending character. */
int base64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen,
                  size_t *bad_off);

/* ---- validators (res_validate.c) ---- */

bool is_dns1123_label(const char *s);          /* Kubernetes: lowercase, <= 63 */
bool is_dns1123_subdomain(const char *s);      /* Kubernetes: lowercase, <= 253 */
bool is_istio_label(const char *s);            /* Istio's label check: any case, <= 63 */
bool is_ip_address(const char *s);
/* NULL if valid, else a static description of the problem (Istio's wording). */
/* res_hosts.c: first[j] = the earliest i < j whose host overlaps hosts[j] (one matches
 * the other, res_host_matches), or SIZE_MAX; O(n log n). */
void res_hosts_first_overlap(const char *const *hosts, size_t n, size_t *first);
const char *check_wildcard_domain(const char *host, char *buf, size_t bufsz);
const char *check_fqdn(const char *host, char *buf, size_t bufsz);

void chk_ns_label(struct dctx *c, const struct ynode *n, const char *s);
void chk_label_key(struct dctx *c, const struct ynode *n, const char *s);
void chk_label_value(struct dctx *c, const struct ynode *n, const char *s);
void chk_selector_key(struct dctx *c, const struct ynode *n, const char *s);
void chk_selector_value(struct dctx *c, const struct ynode *n, const char *s);
void chk_annotation_key(struct dctx *c, const struct ynode *n, const char *s);
void chk_export_to(struct dctx *c, const struct ynode *n, const char *s);
void chk_se_host(struct dctx *c, const struct ynode *n, const char *s);
void chk_ip_or_cidr(struct dctx *c, const struct ynode *n, const char *s);
void chk_port_name(struct dctx *c, const struct ynode *n, const char *s);
void chk_gw_host(struct dctx *c, const struct ynode *n, const char *s);
void chk_ip_bind(struct dctx *c, const struct ynode *n, const char *s);
void chk_gateway_name(struct dctx *c, const struct ynode *n, const char *s);
void chk_dest_host(struct dctx *c, const struct ynode *n, const char *s);
void chk_subset_name(struct dctx *c, const struct ynode *n, const char *s);
void chk_dr_host(struct dctx *c, const struct ynode *n, const char *s);
void chk_header_name(struct dctx *c, const struct ynode *n, const char *s);
void chk_header_value(struct dctx *c, const struct ynode *n, const char *s);
void chk_request_header_op_name(struct dctx *c, const struct ynode *n, const char *s);
void chk_dest_request_header_op_name(struct dctx *c, const struct ynode *n, const char *s);
/* res_regex.c: an RE2 regex (the proxy's engine, core/re.h) for field of map; a
 * uriRegexRewrite's match and rewrite. */
void chk_re2_field(struct dctx *c, const struct ynode *map, const char *field, const char *s);
struct vs_regex_rewrite;
void chk_regex_rewrite(struct dctx *c, const struct ynode *map, const struct vs_regex_rewrite *r);
void chk_cors_method(struct dctx *c, const struct ynode *n, const char *s);
void chk_cors_header(struct dctx *c, const struct ynode *n, const char *s);
void post_vs_cors(struct dctx *c, const struct ynode *map, void *obj);
void chk_header_op_name(struct dctx *c, const struct ynode *n, const char *s);
void chk_not_empty(struct dctx *c, const struct ynode *n, const char *s);
void chk_retry_on(struct dctx *c, const struct ynode *n, const char *s);
void chk_source_namespace(struct dctx *c, const struct ynode *n, const char *s);
void chk_cidr(struct dctx *c, const struct ynode *n, const char *s);
void chk_secret_key(struct dctx *c, const struct ynode *n, const char *s);

/* AuthorizationPolicy (res_authz.c) */
void chk_ap_value(struct dctx *c, const struct ynode *n, const char *s);
void chk_ap_port(struct dctx *c, const struct ynode *n, const char *s);
void chk_ap_service_account(struct dctx *c, const struct ynode *n, const char *s);
void post_ap(struct dctx *c, const struct ynode *map, void *obj);
void post_ap_source(struct dctx *c, const struct ynode *map, void *obj);
void post_ap_operation(struct dctx *c, const struct ynode *map, void *obj);
void post_ap_from(struct dctx *c, const struct ynode *map, void *obj);
void post_ap_to(struct dctx *c, const struct ynode *map, void *obj);
void post_ap_condition(struct dctx *c, const struct ynode *map, void *obj);
void post_ap_target_ref(struct dctx *c, const struct ynode *map, void *obj);

void post_metadata(struct dctx *c, const struct ynode *map, void *obj);
void post_se(struct dctx *c, const struct ynode *map, void *obj);
void post_se_port(struct dctx *c, const struct ynode *map, void *obj);
void post_se_endpoint(struct dctx *c, const struct ynode *map, void *obj);
void post_se_selector(struct dctx *c, const struct ynode *map, void *obj);
void post_gw(struct dctx *c, const struct ynode *map, void *obj);
void post_gw_server(struct dctx *c, const struct ynode *map, void *obj);
void post_gw_port(struct dctx *c, const struct ynode *map, void *obj);
void post_gw_tls(struct dctx *c, const struct ynode *map, void *obj);
void post_vs(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_http(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_http_match(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_string_match(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_uri_match(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_http_dest(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_mirror_policy(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_destination(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_headers(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_redirect(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_rewrite(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_regex_rewrite(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_retries(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_fault(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_http_body(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_direct_response(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_fault_delay(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_fault_abort(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_tls_route(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_tls_match(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_tcp_route(struct dctx *c, const struct ynode *map, void *obj);
void post_vs_route_dest(struct dctx *c, const struct ynode *map, void *obj);
void post_dr(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_policy(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_port_policy(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_pool(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_outlier(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_lb(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_lb_hash(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_lb_cookie(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_tls(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_subset(struct dctx *c, const struct ynode *map, void *obj);
void post_dr_selector(struct dctx *c, const struct ynode *map, void *obj);
void post_portsel(struct dctx *c, const struct ynode *map, void *obj);

/* ---- tables (res_tables.c) ---- */

/* Parsed metadata, shared by all kinds. */
struct res_meta {
	char *name;
	char *namespace;
	struct res_strmap labels;
	struct res_strmap annotations;
	struct srcpos pos;
};

/* The spec table of an Istio kind; NULL for Secret. */
const struct kwtab *res_spec_table(enum res_kind kind);
extern const struct kwtab kt_metadata;
extern const struct kwtab kt_serviceentry;
extern const struct kwtab kt_gateway;
extern const struct kwtab kt_virtualservice;
extern const struct kwtab kt_destinationrule;
extern const struct kwtab kt_authorizationpolicy;
/* Top-level fields of the Istio kinds and of Secret: only to reject unknown ones. */
extern const struct kwtab kt_istio_top;
extern const struct kwtab kt_secret_top;
/* The spec table of a Gateway API kind (res_gwapi.c); NULL for the others. */
const struct kwtab *gwapi_spec_table(enum res_kind kind);

#endif
