/* authz: Istio AuthorizationPolicy compiled for one proxy and evaluated per request.
 *
 * snap_build selects the policies that apply to this proxy (its namespace's, and the root
 * namespace istio-system's mesh-wide; by selector against --labels, or by targetRef to the
 * Gateway API Gateway named by the label gateway.networking.k8s.io/gateway-name) and
 * compiles them into a struct authz owned by the snapshot. A request is then decided in
 * Istio's order (CUSTOM is refused at apply, so there is none):
 *   1. a DENY policy that matches: denied, by that policy;
 *   2. no ALLOW policy: allowed;
 *   3. an ALLOW policy that matches: allowed; none: denied ("none");
 * and every AUDIT policy that matches is reported (it never changes the decision).
 * Policies annotated istio.io/dry-run: "true" form a shadow set decided the same way,
 * counted and reported, never enforced.
 *
 * Matching follows Istio: values are exact, "*" (present), "prefix*" or "*suffix";
 * lists are ORed, fields of a source / operation are ANDed, `not` fields must match
 * none; from[] and to[] are ORed, when[] ANDed; a rule matches when all three do and a
 * policy when one of its rules does. principals are the client certificate's SPIFFE id
 * without "spiffe://" ("cluster.local/ns/default/sa/sleep"); namespaces are its /ns/
 * part; ipBlocks and remoteIpBlocks both match the connection's peer (egressgw trusts no
 * x-forwarded-for hop, as Envoy with numTrustedProxies 0).
 *
 * Connection-level requests (authz_req.l4: TCP and TLS passthrough have no HTTP
 * attributes) follow Istio's rule for HTTP-only fields (hosts, methods, paths,
 * request.headers): in an ALLOW policy such a rule never matches; in DENY and AUDIT
 * policies those fields are ignored (the rule matches on the rest), so that a DENY is
 * never weakened. authz_eval is the single entry point for both. */
#ifndef EGRESS_PROXY_AUTHZ_H
#define EGRESS_PROXY_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/diag.h"
#include "net/sock.h"

struct authz;
struct snap_json;

/* Which proxy the policies are compiled for. */
struct authz_params {
	const char *namespace;        /* the proxy's namespace */
	const char **labels;          /* "key=value", NULL-terminated; may be NULL */
};

/* Compiles the AuthorizationPolicies among res[0..n) that apply to the proxy. Never
 * fails for a validated policy; returns NULL when none applies (every request allowed,
 * at no cost). */
struct authz *authz_build(const struct resource *const *res, size_t n,
                          const struct authz_params *p);
void authz_free(struct authz *a);

/* What a request or connection is, as the policies see it. Strings need not be
 * NUL-terminated where a length is given. */
struct authz_req {
	const char *principal;        /* peer SPIFFE id without "spiffe://"; NULL: none */
	const struct sock_addr *source;   /* the connection's peer */
	const struct sock_addr *dest;     /* the address the connection was made to; may be NULL */
	uint16_t port;                /* destination port */
	const char *sni;              /* NULL: none */
	bool l4;                      /* connection-level: the fields below are not used */
	const char *host;             /* authority as sent (port included, if any) */
	size_t host_len;
	const char *method;
	size_t method_len;
	const char *path;             /* without the query string */
	size_t path_len;
	/* Header value by lower-case name: true and *v, *vlen when present. */
	bool (*header)(void *ctx, const char *name, const char **v, size_t *vlen);
	void *header_ctx;
};

struct authz_result {
	bool denied;
	/* The rule that decided, "ns[NS]-policy[NAME]-rule[I]", or NULL (no DENY matched and
	 * no ALLOW policy exists, or ALLOW policies exist and none matched: Envoy's "none"). */
	const char *policy;
	/* RESPONSE_CODE_DETAILS of a denial: "rbac_access_denied_matched_policy[POLICY]", or
	 * "...[none]"; lives as long as a. NULL when allowed. */
	const char *details;
	const char *audit;            /* the first AUDIT rule that matched, or NULL */
	bool shadow;                  /* dry-run policies exist: shadow_* are meaningful */
	bool shadow_denied;
	const char *shadow_policy;
};

/* Decides r (a may be NULL: allowed). Reads only immutable data: any worker, no lock. */
void authz_eval(const struct authz *a, const struct authz_req *r, struct authz_result *out);

struct wstats;

/* The data path's entry (fwd_core.c st_authz): refuses a path not in normal form while path policies
 * are in force (400, details "path_normalization_failed"), else decides r, counts the
 * decision in st as Envoy's RBAC filter does (rbac_allowed, rbac_denied, and the shadow
 * pair for dry-run policies), and logs AUDIT matches and dry-run denials with remote and
 * request_id. Returns 0 (allowed), 403 or 400, with *details the RESPONSE_CODE_DETAILS
 * (valid as long as a). For a connection-level request (r->l4; request_id may be NULL)
 * the same, without the path check: on 403 the caller closes the connection before any
 * byte goes upstream and logs *details (the hook TCP and TLS passthrough need). */
int authz_request(const struct authz *a, const struct authz_req *r, const char *remote,
                  const char *request_id, struct wstats *st, const char **details);

/* False when the path (query excluded) is not in the form an upstream would use to decide
 * what it serves: dot segments ("/./", "/../"), "//", a backslash, or an encoded '.', '/'
 * or '\'. A path policy matched on such a path could be walked around ("/x/../admin"
 * reaches "/admin"), so while path policies are in force the data path refuses them. */
bool authz_path_normal(const char *p, size_t n);

/* The compiled policies for config_dump: an array of
 * {name, namespace, action, dry_run, rules: [{name, from, to, when}]}. */
void authz_json(const struct authz *a, struct snap_json *j);

/* Number of compiled policies (0 for NULL). */
size_t authz_count(const struct authz *a);

#endif
