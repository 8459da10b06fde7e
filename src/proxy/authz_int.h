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

/* Principal -> rules and namespace -> rules indexes: a rule whose every source names
 * exact principals (or, failing that, exact namespaces) can only match a request from one
 * of them, so a decision looks at those rules and the others (`open`) instead of all.
 * Rule numbers are positions in aset.rules (policy order), and each bucket is ascending,
 * so merging the two buckets with `open` keeps Istio's first-match. */
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

enum { AIX_PRINCIPAL, AIX_NAMESPACE, AIX_OPEN };

struct aset {                /* one action's policies */
	struct apolicy **v;
	size_t n;
	const struct arule **rules;
	size_t nrules;
	uint32_t *open;
	size_t nopen;
	struct aindex ix[2];     /* AIX_PRINCIPAL, AIX_NAMESPACE */
};

struct authz {
	struct apolicy *pol;     /* all, in (namespace, name) order */
	size_t npol;
	struct aset deny, allow, audit;              /* enforced */
	struct aset sdeny, sallow;                   /* dry-run (shadow) */
	bool uses_paths;
};

/* The bucket of key in x: the one holding it, or the empty one where it would go. */
struct abucket *authz_idx_slot(const struct aindex *x, const char *k, size_t n);

#endif
