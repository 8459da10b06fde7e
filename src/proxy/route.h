/* route: the compiled router. VirtualService http rules, as they apply to one listener,
 * turned into a table that a worker consults once per request without locks or
 * allocation.
 *
 * Shape (as Envoy's RDS, which Istio generates):
 *   route_table (one per listener port, e.g. "http.80")
 *     -> route_vhost chosen by the request's host: exact hash lookup, then the longest
 *        wildcard suffix ("*.cnn.com"), then "*"
 *       -> routes in VirtualService order; the first whose match list hits wins
 *         -> destinations with weights -> cluster
 * Cost per request: one hash of the host, then the matches of that vhost only, so the
 * number of routes elsewhere does not matter.
 *
 * A route_table is immutable once route_table_finalize() ran; it belongs to a snapshot. */
#ifndef EGRESS_PROXY_ROUTE_H
#define EGRESS_PROXY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cluster;
struct re;
struct retry_policy;
struct route_fault;
struct rhdr_route;
struct route_cors;
struct route_rerw;
struct route_mirror;
struct sbuf;

enum strmatch_kind {
	SM_ANY,     /* no condition */
	SM_EXACT,
	SM_PREFIX,
	SM_REGEX,   /* RE2 syntax (core/re.h), matched against the whole string as Envoy does */
};

struct strmatch {
	enum strmatch_kind kind;
	bool icase;       /* case-insensitive comparison (methods are not; hosts are) */
	char *s;
	size_t len;
	/* SM_REGEX, once compiled (core/re.h); NULL otherwise. */
	struct re *re;
};

struct route_hdr_match {
	char *name;                /* lower-case header name */
	struct strmatch m;         /* SM_ANY: the header must merely be present */
};

struct route_match {
	char *name;                /* HTTPMatchRequest.name, or NULL */
	struct strmatch uri, scheme, method, authority;
	uint16_t port;             /* 0: any port */
	struct route_hdr_match *headers;   /* all must match */
	size_t nheaders;
	struct route_hdr_match *without;   /* none may match */
	size_t nwithout;
	struct route_hdr_match *query;     /* query parameters, all must match */
	size_t nquery;
};

struct route_dest {
	char *cluster_name;        /* outbound|port|subset|host */
	struct cluster *cluster;   /* resolved in the same snapshot; NULL if none (NC) */
	uint32_t weight;
	bool name_borrowed;        /* cluster_name is cluster->name (snap_link_table) */
};

struct route {
	char *name;                /* HTTPRoute.name, for the access log's ROUTE_NAME */
	char *vs;                  /* "ns/name" of the VirtualService, for diagnostics */
	struct route_match *matches;   /* ORed; nmatches == 0 matches everything */
	size_t nmatches;
	struct route_dest *dests;
	size_t ndests;
	uint32_t total_weight;
	int64_t timeout_ms;        /* 0: no timeout (Istio's default) */
	/* Direct response (HTTPRedirect) instead of a destination, when redirect_code != 0. */
	int redirect_code;
	char *redirect_uri, *redirect_authority;
	char *rewrite_uri, *rewrite_authority;
	/* retries (retry.h): Istio's default policy when absent, NULL for attempts 0. */
	const struct retry_policy *retry;
	/* fault, directResponse, redirect scheme/port (route_fault.h); NULL: none. */
	struct route_fault *fault;
	struct rhdr_route *hdrs;   /* `headers` (route_hdrs.h); NULL: none */
	struct route_cors *cors;   /* corsPolicy (route_cors.h); NULL: none */
	struct route_rerw *rerw;   /* rewrite.uriRegexRewrite (route_rerw.h); NULL: none */
	struct route_mirror *mirror;   /* mirror/mirrors (mirror.h); NULL: none */
	/* The file and line of the rule, for reporting runtime problems against config. */
	char *file;
	int line;
	/* vs and file are those of an earlier route of the same VirtualService in the same
	 * vhost, which frees them (snap_vs_into: 10,000 hosts of two routes, 1 MB). */
	bool strs_borrowed;
};

struct route_vhost {
	char *name;                /* "edition.cnn.com:80" */
	char **domains;            /* lower-case; "*.x.com" and "*" allowed */
	size_t ndomains;
	struct route *routes;
	size_t nroutes;
};

struct route_table {
	char *name;                /* "http.80" */
	struct route_vhost *vhosts;
	size_t nvhosts;
	/* built by route_table_finalize */
	struct route_slot *hash;   /* open addressing, power-of-two size */
	size_t hash_mask;
	struct route_wild *wild;   /* wildcard suffixes, longest first */
	size_t nwild;
	struct route_vhost *any;   /* the "*" vhost, if any */
};

/* What the router looks at in a request. Strings need not be NUL-terminated. */
struct route_req {
	const char *method; size_t method_len;
	const char *path; size_t path_len;        /* origin-form, with query */
	const char *host; size_t host_len;        /* authority without port */
	const char *authority; size_t authority_len;
	const char *scheme; size_t scheme_len;
	uint16_t port;                            /* listener (or original destination) port */
	/* Header lookup by lower-case name. Returns true and sets *v and *vlen if present. */
	bool (*header)(void *ctx, const char *name, const char **v, size_t *vlen);
	void *header_ctx;
};

/* Compiles m (kind and s already set); for SM_REGEX compiles the pattern. Returns 0, or -1
 * with a message in err (re_compile's, RE2's words and the offset). */
int strmatch_compile(struct strmatch *m, char *err, size_t errlen);
bool strmatch_eval(const struct strmatch *m, const char *s, size_t len);
void strmatch_free(struct strmatch *m);

/* Builds the host index. Call once after all vhosts are filled. Duplicate domains: the
 * first vhost keeps the domain (Istio merges; the compiler is expected to merge first). */
void route_table_finalize(struct route_table *t);
/* The vhost for a host (case-insensitive, no port), or NULL. */
const struct route_vhost *route_vhost_find(const struct route_table *t, const char *host,
                                           size_t len);
/* The first route of the vhost whose matches hit, or NULL (404 NR). */
const struct route *route_select(const struct route_vhost *vh, const struct route_req *req);
/* route_select, also giving the match that hit in *hit (NULL for a route without matches). */
const struct route *route_select_hit(const struct route_vhost *vh, const struct route_req *req,
                                     const struct route_match **hit);
/* rewrite.uri as Istio hands it to Envoy (prefix_rewrite): appends to out the path path
 * (len bytes, origin-form, query included) with the part the match hit replaced by
 * rewrite. A prefix match replaces its prefix; an exact or regex match the whole path
 * (the query string stays); a route without a uri match is Istio's prefix "/", so its
 * leading "/" is what is replaced ("/v1" + "/a" gives "/v1a", as in Envoy). */
void route_rewrite_path(const char *rewrite, const struct route_match *hit, const char *path,
                        size_t len, struct sbuf *out);
/* Picks a destination by weight, using the caller's random value r (any 32-bit value). */
const struct route_dest *route_pick_dest(const struct route *r, uint32_t rnd);
/* The same over any destination list (tls/tcp routes, l4route.h). */
const struct route_dest *route_pick_weighted(const struct route_dest *d, size_t n,
                                             uint32_t total, uint32_t rnd);
void route_table_free(struct route_table *t);

#endif
