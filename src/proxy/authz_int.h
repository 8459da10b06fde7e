/* authz_int: the compiled form of AuthorizationPolicies shared by authz.c (selection,
 * compilation, indexes, config_dump) and authz_eval.c (matching, decisions). Not a public
 * API: only src/proxy/authz*.c include it.
 *
 * Every value list is an array of matchers decided by a length compare and one memcmp
 * (exact, prefix, suffix, presence), CIDRs are family + bytes + prefix length, ports a
 * small array. Rule names ("ns[NS]-policy[NAME]-rule[I]", the policy ids Istio gives
 * Envoy's RBAC filter) and denial details are made at compile time, so a decision hands
 * back a pointer and the access log prints it without formatting. */
#ifndef EGRESS_PROXY_AUTHZ_INT_H
#define EGRESS_PROXY_AUTHZ_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/resource.h"
#include "proxy/authz.h"

enum am_kind { AM_EXACT, AM_PREFIX, AM_SUFFIX, AM_ANY };

struct amatch {
	enum am_kind k;
	char *s;                 /* the part compared (without the '*') */
	size_t len;
	char *orig;              /* as written, for config_dump */
};

struct amlist {
	struct amatch *v;
	size_t n;
};

struct acidr {
	int family;              /* AF_INET, AF_INET6 */
	uint8_t addr[16];
	int bits;
	char *orig;
};

struct acidrlist {
	struct acidr *v;
	size_t n;
};

struct aportlist {
	uint16_t *v;
	size_t n;
};

struct asource {
	struct amlist principals, not_principals, namespaces, not_namespaces;
	struct amlist sas, not_sas;          /* serviceAccounts: "ns/sa" exact */
	struct acidrlist ip, not_ip, rip, not_rip;
};

struct aop {
	struct amlist hosts, not_hosts, methods, not_methods, paths, not_paths;
	struct aportlist ports, not_ports;
};

enum akey {
	AK_HEADER, AK_SOURCE_IP, AK_REMOTE_IP, AK_DEST_IP, AK_SOURCE_NS, AK_SOURCE_PRINCIPAL,
	AK_DEST_PORT, AK_SNI,
};

struct acond {
	enum akey key;
	char *key_str;           /* as written */
	char *header;            /* AK_HEADER: lower-case name */
	struct amlist values, not_values;
	struct acidrlist cvalues, not_cvalues;
	struct aportlist pvalues, not_pvalues;
};

struct arule {
	char *name;              /* ns[NS]-policy[NAME]-rule[I] */
	char *details;           /* rbac_access_denied_matched_policy[NAME] */
	struct asource *from;
	size_t nfrom;
	struct aop *to;
	size_t nto;
	struct acond *when;
	size_t nwhen;
};

struct apolicy {
	char *ns, *name;
	enum ap_action action;
	bool dry_run;
	struct arule *rules;
	size_t nrules;
};

/* The indexes (authz_index.c). A rule is filed under the values that can make it match:
 * when every source of the rule constrains the principal (or, failing that, the namespace
 * or the service account's namespace), under each of those patterns; when every operation
 * names hosts (or paths), under its host (path) patterns; when a `when` condition on
 * source.principal, source.namespace or connection.sni has values, under those; of these,
 * under the field whose values fewer other rules share; else it is `open` (tried for
 * every request). Each attribute keeps its exact values in a hash, its "prefix*" values
 * sorted (a value's matching prefixes are the chain of `parent`s of the greatest pattern
 * not above it), its "*suffix" values reversed and sorted the same way, and "*" apart. A
 * decision merges the rule lists of the patterns that match the request (one hash probe,
 * two binary searches and their chains per attribute) with `open`, in rule order, so the
 * first match is Istio's and only rules whose indexed field matches are tried. Rule
 * numbers are positions in aset.rules (policy order); every list is ascending. */
struct abucket {
	const char *key;         /* borrowed from the rule's matcher */
	size_t keylen;
	uint32_t *v;
	size_t n;
};

struct aindex {
	struct abucket *v;       /* open addressing, size mask + 1 */
	size_t mask;
};

struct apat {                /* one distinct "prefix*" or "*suffix" pattern */
	char *s;                 /* in compare order: a suffix is stored reversed */
	size_t len;
	ptrdiff_t parent;        /* the longest other pattern that is a prefix of this; -1 */
	uint32_t *v;
	size_t n;
};

struct apatix {              /* one attribute's patterns */
	struct aindex exact;
	struct apat *pre, *suf;
	size_t npre, nsuf;
	uint32_t *any;           /* "*": any value present */
	size_t nany;
};

enum { AIX_PRINCIPAL, AIX_NAMESPACE, AIX_HOST, AIX_PATH, AIX_SNI, AIX_N };

struct aset {                /* one action's policies */
	struct apolicy **v;
	size_t n;
	const struct arule **rules;
	size_t nrules;
	uint32_t *open;          /* rules no index holds */
	size_t nopen;
	uint32_t *filed[AIX_N];  /* per field, every rule filed under it by an operation
	                          * or a condition (for aquery.all) */
	size_t nfiled[AIX_N];
	struct apatix ix[AIX_N];
};

/* A request's values for the indexes: NULL where absent. Hosts are lower-case, as the
 * authority was sent and without its port (the second NULL when they are the same). */
struct aquery {
	const char *principal, *ns, *host[2], *path, *sni;
	size_t principal_len, ns_len, host_len[2], path_len, sni_len;
	/* Every rule of `filed` for AIX_HOST, AIX_PATH, AIX_SNI instead of a lookup: a
	 * connection under DENY/AUDIT ignores HTTP-only fields; a name too long to fold. */
	bool all[AIX_N];
};

struct aidlist {
	const uint32_t *v;
	size_t n;
};

#define AIX_MAXLISTS 64

/* Files the rules of s's policies (s->v) into s's indexes; authz_index_fini frees them. */
void authz_index_build(struct aset *s);
void authz_index_fini(struct aset *s);

/* The rule lists that hold every rule of s that can match q (open included), at most
 * max; -1 when there would be more (the caller then tries every rule). */
int authz_index_lookup(const struct aset *s, const struct aquery *q, struct aidlist *out,
                       size_t max);

struct authz {
	struct apolicy *pol;     /* all, in (namespace, name) order */
	size_t npol;
	struct aset deny, allow, audit;              /* enforced */
	struct aset sdeny, sallow;                   /* dry-run (shadow) */
	bool uses_paths;
};

/* Decides r trying every rule in order, without the indexes: the reference the
 * differential test holds authz_eval to. */
void authz_eval_scan(const struct authz *a, const struct authz_req *r,
                     struct authz_result *out);

#endif
