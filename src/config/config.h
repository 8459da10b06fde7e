/* config: Istio resources from YAML, decoded strictly into typed structs.
 *
 * This is the one entry point that egressctl (validate before writing) and egressgw
 * (load the store) use. The flow is
 *     text --ydoc_parse--> ystream --res_decode--> struct resource (typed, validated)
 * and, across resources, res_check_refs() for warnings about references that do not
 * resolve (never errors: resources arrive in any order, as in Kubernetes).
 *
 * Error messages name the file, line, column, the resource and the field path:
 *     dr.yaml:9:13: DestinationRule default/broken: spec.trafficPolicy.tls.mode: unknown
 *     value "SIMPEL" (want DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL)
 *
 * The typed spec structs are in config/resource.h. */
#ifndef EGRESS_CONFIG_CONFIG_H
#define EGRESS_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/diag.h"
#include "config/ydoc.h"

enum res_kind {
	RES_SERVICE_ENTRY,
	RES_GATEWAY,
	RES_VIRTUAL_SERVICE,
	RES_DESTINATION_RULE,
	RES_SECRET,
	RES_AUTHORIZATION_POLICY,   /* security.istio.io */
	/* Kubernetes Gateway API (gateway.networking.k8s.io), config/res_gwapi.h */
	RES_K8S_GATEWAY,
	RES_HTTP_ROUTE,
	RES_TLS_ROUTE,
	RES_TCP_ROUTE,
	RES_REFERENCE_GRANT,
	RES_KIND_COUNT
};

/* Names kubectl knows a kind by. One static table entry per kind. */
struct res_kind_info {
	enum res_kind kind;
	const char *kind_name;  /* "ServiceEntry" */
	const char *group;      /* "networking.istio.io", "security.istio.io"; "" for core v1 */
	const char *singular;   /* "serviceentry" */
	const char *plural;     /* "serviceentries" */
	const char *shortname;  /* "se"; NULL when none */
	bool namespaced;        /* all are */
	/* The apiVersions served, NULL-terminated; NULL: the Istio versions (or v1 for a
	 * core kind). */
	const char *const *versions;
};

const struct res_kind_info *res_kind_info(enum res_kind kind);
/* Accepts what kubectl accepts on the command line, case-insensitively: singular, plural,
 * short name, the Kind itself, and any of those followed by ".<group>" (for example
 * "gw", "gateways", "Gateway", "gateway.networking.istio.io"). NULL if unknown. */
const struct res_kind_info *res_kind_lookup(const char *word);
/* The kind a document names by its Kind and the group of its apiVersion ("G/V"; "V" is
 * core): Istio's Gateway and the Gateway API's share a Kind. Without an apiVersion, as
 * res_kind_lookup(kind). NULL if unknown. */
const struct res_kind_info *res_kind_of_doc(const char *kind, const char *api_version);

struct serviceentry;
struct gateway;
struct virtualservice;
struct destinationrule;
struct secret;
struct authorizationpolicy;
struct gwapi_gateway;
struct gwapi_route;
struct gwapi_refgrant;

/* One decoded, validated resource. */
struct resource {
	enum res_kind kind;
	char *api_version;      /* as written, e.g. "networking.istio.io/v1alpha3" */
	char *name;
	char *namespace;        /* metadata.namespace, else the default given to res_decode */
	bool namespace_explicit;/* metadata.namespace was present in the document */
	char *file;             /* where it came from, for diagnostics */
	bool file_borrowed;     /* file is the store cache record's path (res_decode_lent) */
	int line;               /* line of the document start */
	const struct ynode *node; /* the document root; valid while its ystream lives */
	union {
		struct serviceentry *se;
		struct gateway *gw;
		struct virtualservice *vs;
		struct destinationrule *dr;
		struct secret *secret;
		struct authorizationpolicy *ap;
		struct gwapi_gateway *kgw;     /* RES_K8S_GATEWAY */
		struct gwapi_route *route;     /* RES_HTTP_ROUTE, RES_TLS_ROUTE, RES_TCP_ROUTE */
		struct gwapi_refgrant *grant;  /* RES_REFERENCE_GRANT */
	} u;
};

/* Decodes one document of s. Checks apiVersion (networking.istio.io/v1alpha3, v1beta1,
 * v1 for the networking kinds; security.istio.io/v1beta1, v1 for AuthorizationPolicy; v1
 * for Secret), kind, metadata (name required and a valid
 * DNS-1123 subdomain, namespace a DNS-1123 label), and the whole spec strictly: unknown
 * fields, wrong types, bad enums, missing required fields, bad ports, durations, hosts and
 * label selectors are errors. default_ns is used when metadata.namespace is absent.
 * Returns 0 with out filled, or -1 with every error found added to d (not just the first)
 * and out left zeroed. Warnings may be added on success. */
int res_decode(const struct ystream *s, const struct ydoc *doc, const char *default_ns,
               struct resource *out, struct diags *d);

/* res_decode, but the resource's file (and every position in it) is s->file itself, not a
 * copy: for the store cache, whose record then takes s->file over (store_cache_adopt), so
 * that 30,000 cached resources do not each hold a copy of their path. */
int res_decode_lent(const struct ystream *s, const struct ydoc *doc, const char *default_ns,
                    struct resource *out, struct diags *d);

/* Frees what res_decode allocated (secret data is cleansed before it is freed). */
void res_free(struct resource *r);

/* Cross-resource checks over a whole set: a VirtualService naming a Gateway that does not
 * exist, a route to a subset no DestinationRule defines, and so on. Adds warnings only. */
void res_check_refs(struct resource *const *all, size_t n, struct diags *d);
/* DestinationRules among all whose host no ServiceEntry among all lists (Istio's
 * IST0174 UnknownDestinationRuleHost): an exact host no ServiceEntry host equals or
 * covers, a wildcard host no ServiceEntry host overlaps. Hosts of the cluster domain
 * ("reviews", "x.ns.svc.cluster.local") are Kubernetes Services, which the store does not
 * hold: never reported. Sets unknown[i] for each such all[i] (unknown has n entries;
 * others are set false). O(n log n). */
void res_dr_unknown_hosts(const struct resource *const *all, size_t n, bool *unknown);
/* The same check over host names alone (egressctl apply, from the store index): sets
 * unknown[j] when hosts[j] is neither equal to, covered by nor (for a wildcard) overlapping
 * one of se_hosts, and is not of the cluster domain. All hosts normalised by res_norm_host.
 * O((nse + n) log(nse + n)). */
void res_hosts_unlisted(const char *const *se_hosts, size_t nse, const char *const *hosts,
                        size_t n, bool *unknown);
/* A host as written in a resource of namespace ns, made comparable: a short name becomes
 * NAME.NS.svc.cluster.local, anything else stays as it is. */
void res_norm_host(const char *host, const char *ns, char *out, size_t outsz);

/* kubectl explain for KIND[.field.path], from the keyword tables that decode the YAML
 * (res_explain.c): the field's type and, for objects, its fields with their types; fields
 * of Istio's API that egressgw does not implement say so. path is "" for the kind itself.
 * Returns 0, or -1 with kubectl's error text in err. */
int res_explain(const struct res_kind_info *k, const char *path, struct sbuf *out,
                struct sbuf *err);

/* "ServiceEntry default/cnn": for messages. Returns a static-per-thread buffer. */
const char *res_describe(const struct resource *r);

#endif
