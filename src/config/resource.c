/* resource: the kind table (kubectl names), enum names, res_describe and small helpers.
 * Decoding is in res_decode.c, the keyword tables in res_tables.c, validation in
 * res_validate.c, cross-resource checks in res_refs.c. */
#include "config/res_internal.h"
#include "core/util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Gateway API versions as Istio serves them (v1 and the older v1beta1 for the standard
 * kinds; the experimental routes in v1alpha2). */
static const char *const gwapi_std_versions[] = {
	"gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1", NULL
};
static const char *const gwapi_alpha_versions[] = { "gateway.networking.k8s.io/v1alpha2", NULL };
static const char *const gwapi_grant_versions[] = {
	"gateway.networking.k8s.io/v1beta1", "gateway.networking.k8s.io/v1alpha2", NULL
};

static const struct res_kind_info kinds[RES_KIND_COUNT] = {
	{ RES_SERVICE_ENTRY, "ServiceEntry", "networking.istio.io", "serviceentry",
	  "serviceentries", "se", true, NULL },
	{ RES_GATEWAY, "Gateway", "networking.istio.io", "gateway", "gateways", "gw", true, NULL },
	{ RES_VIRTUAL_SERVICE, "VirtualService", "networking.istio.io", "virtualservice",
	  "virtualservices", "vs", true, NULL },
	{ RES_DESTINATION_RULE, "DestinationRule", "networking.istio.io", "destinationrule",
	  "destinationrules", "dr", true, NULL },
	{ RES_SECRET, "Secret", "", "secret", "secrets", NULL, true, NULL },
	{ RES_AUTHORIZATION_POLICY, "AuthorizationPolicy", "security.istio.io",
	  "authorizationpolicy", "authorizationpolicies", "ap", true, NULL },
	{ RES_K8S_GATEWAY, "Gateway", "gateway.networking.k8s.io", "gateway", "gateways", "gtw",
	  true, gwapi_std_versions },
	{ RES_HTTP_ROUTE, "HTTPRoute", "gateway.networking.k8s.io", "httproute", "httproutes",
	  NULL, true, gwapi_std_versions },
	{ RES_TLS_ROUTE, "TLSRoute", "gateway.networking.k8s.io", "tlsroute", "tlsroutes", NULL,
	  true, gwapi_alpha_versions },
	{ RES_TCP_ROUTE, "TCPRoute", "gateway.networking.k8s.io", "tcproute", "tcproutes", NULL,
	  true, gwapi_alpha_versions },
	{ RES_REFERENCE_GRANT, "ReferenceGrant", "gateway.networking.k8s.io", "referencegrant",
	  "referencegrants", "refgrant", true, gwapi_grant_versions },
};

const struct res_kind_info *res_kind_info(enum res_kind kind)
{
	if ((int)kind < 0 || kind >= RES_KIND_COUNT)
		return NULL;
	return &kinds[kind];
}

static bool name_is(const char *word, size_t len, const char *name)
{
	return name && strlen(name) == len && strncasecmp(word, name, len) == 0;
}

/* "gateway", "gw.networking.istio.io", "gateways.v1beta1.networking.istio.io". A bare
 * "gateway" is Istio's (first in the table); the Gateway API's is "gtw" or
 * "gateways.gateway.networking.k8s.io", so a name that matches with another group goes
 * on to the next kind rather than failing. */
const struct res_kind_info *res_kind_lookup(const char *word)
{
	static const char *const versions[] = { "v1alpha3.", "v1beta1.", "v1alpha2.", "v1.", NULL };
	const char *dot;
	size_t len;

	if (!word || !*word)
		return NULL;
	dot = strchr(word, '.');
	len = dot ? (size_t)(dot - word) : strlen(word);
	for (int i = 0; i < RES_KIND_COUNT; i++) {
		const struct res_kind_info *k = &kinds[i];
		const char *rest = dot ? dot + 1 : NULL;

		if (!name_is(word, len, k->singular) && !name_is(word, len, k->plural) &&
		    !name_is(word, len, k->shortname) && !name_is(word, len, k->kind_name))
			continue;
		if (!rest)
			return k;
		if (!*k->group)
			continue;
		for (size_t v = 0; versions[v]; v++) {
			if (strncasecmp(rest, versions[v], strlen(versions[v])) == 0) {
				rest += strlen(versions[v]);
				break;
			}
		}
		if (strcasecmp(rest, k->group) == 0)
			return k;
	}
	return NULL;
}

const struct res_kind_info *res_kind_of_doc(const char *kind, const char *api_version)
{
	const char *slash = api_version ? strchr(api_version, '/') : NULL;
	size_t glen = slash ? (size_t)(slash - api_version) : 0;

	if (!kind)
		return NULL;
	if (!api_version)
		return res_kind_lookup(kind);
	for (int i = 0; i < RES_KIND_COUNT; i++)
		if (strcmp(kinds[i].kind_name, kind) == 0 && strlen(kinds[i].group) == glen &&
		    strncmp(kinds[i].group, api_version, glen) == 0)
			return &kinds[i];
	return NULL;
}

const char *res_describe(const struct resource *r)
{
	static _Thread_local char buf[384];
	const struct res_kind_info *k = res_kind_info(r->kind);

	snprintf(buf, sizeof(buf), "%s %s/%s", k ? k->kind_name : "?",
	         r->namespace ? r->namespace : "?", r->name ? r->name : "?");
	return buf;
}

/* ---------------------------------------------------------------------------------
 * Enum names
 * ------------------------------------------------------------------------------- */

static const char *const protocol_names[RES_PROTO_COUNT] = {
	[RES_PROTO_UNSET] = "", [RES_PROTO_HTTP] = "HTTP", [RES_PROTO_HTTPS] = "HTTPS",
	[RES_PROTO_GRPC] = "GRPC", [RES_PROTO_GRPC_WEB] = "GRPC-WEB",
	[RES_PROTO_HTTP2] = "HTTP2", [RES_PROTO_HTTP_PROXY] = "HTTP_PROXY",
	[RES_PROTO_MONGO] = "MONGO", [RES_PROTO_REDIS] = "REDIS", [RES_PROTO_MYSQL] = "MYSQL",
	[RES_PROTO_TCP] = "TCP", [RES_PROTO_TLS] = "TLS", [RES_PROTO_UDP] = "UDP",
};

const char *res_protocol_name(enum res_protocol p)
{
	return (int)p >= 0 && p < RES_PROTO_COUNT ? protocol_names[p] : "";
}

bool res_protocol_is_http(enum res_protocol p)
{
	return p == RES_PROTO_HTTP || p == RES_PROTO_HTTP2 || p == RES_PROTO_GRPC ||
	       p == RES_PROTO_GRPC_WEB || p == RES_PROTO_HTTP_PROXY;
}

bool res_protocol_is_tls(enum res_protocol p)
{
	return p == RES_PROTO_HTTPS || p == RES_PROTO_TLS;
}

const char *const se_location_names[] = { "MESH_EXTERNAL", "MESH_INTERNAL", NULL };
const char *const se_resolution_names[] = { "NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", NULL };
const char *const gw_tls_mode_names[] = { "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH",
                                          "ISTIO_MUTUAL", "OPTIONAL_MUTUAL", NULL };
const char *const res_tls_version_names[] = { "TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2",
                                              "TLSV1_3", NULL };
const char *const dr_lb_simple_names[] = { "UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH",
                                           "ROUND_ROBIN", "LEAST_REQUEST", NULL };
const char *const dr_h2_upgrade_policy_names[] = { "DEFAULT", "DO_NOT_UPGRADE", "UPGRADE",
                                                   NULL };
const char *const dr_tls_mode_names[] = { "DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL", NULL };
const char *const vs_redirect_derive_port_names[] = { "FROM_PROTOCOL_DEFAULT",
                                                      "FROM_REQUEST_PORT", NULL };
const char *const vs_cors_unmatched_names[] = { "UNSPECIFIED", "FORWARD", "IGNORE", NULL };
const char *const ap_action_names[] = { "ALLOW", "DENY", "AUDIT", "CUSTOM", NULL };

/* ---------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------- */

bool res_strlist_has(const struct res_strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] && strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

const char *res_strmap_get(const struct res_strmap *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].key && strcmp(m->v[i].key, key) == 0)
			return m->v[i].value;
	return NULL;
}

bool res_labels_select(const struct res_strmap *sel, const struct res_strmap *labels)
{
	for (size_t i = 0; i < sel->n; i++) {
		const char *v = res_strmap_get(labels, sel->v[i].key);

		if (!v || strcmp(v, sel->v[i].value ? sel->v[i].value : "") != 0)
			return false;
	}
	return true;
}

static bool ends_with_ci(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);

	return ls >= lx && strcasecmp(s + ls - lx, suffix) == 0;
}

bool res_host_matches(const char *pattern, const char *name)
{
	if (!pattern || !name)
		return false;
	if (strcmp(pattern, "*") == 0)
		return true;
	if (pattern[0] == '*') {
		const char *suffix = pattern + 1;

		if (name[0] == '*')
			return ends_with_ci(name + 1, suffix);
		return strlen(name) > strlen(suffix) && ends_with_ci(name, suffix);
	}
	return name[0] != '*' && strcasecmp(pattern, name) == 0;
}

const struct res_secret_data *res_secret_get(const struct secret *s, const char *key)
{
	for (size_t i = 0; i < s->data.n; i++)
		if (strcmp(s->data.v[i].key, key) == 0)
			return &s->data.v[i];
	return NULL;
}
