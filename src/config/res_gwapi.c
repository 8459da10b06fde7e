/* res_gwapi: keyword tables and whole-object checks for the Gateway API kinds (see
 * res_gwapi.h), in the style of res_tables.c / res_validate.c.
 *
 * Field lists follow sigs.k8s.io/gateway-api apis/v1 (Gateway, HTTPRoute), v1alpha2
 * (TLSRoute, TCPRoute) and v1beta1 (ReferenceGrant). Unknown fields are errors, as the
 * API server's structural schema makes them. What the Gateway API defines and egressgw
 * does not serve is refused here with an error that says so (filters the request core
 * does not apply, TLS passthrough and TCP listeners and routes, namespace selectors),
 * never accepted and ignored; fields that do not change what traffic does (infrastructure,
 * addresses) are warnings. */
#include "config/res_gwapi.h"
#include "config/res_internal.h"

#include <stddef.h>
#include <string.h>

#define F(T, n, ty, fld, ...) \
	{ .name = (n), .type = (ty), .off = offsetof(T, fld), __VA_ARGS__ }
#define U(n)   { .name = (n), .type = KW_UNSUPPORTED }
#define END    { .name = NULL }
#define PORT   .min = 1, .max = 65535, .flags = KWF_PORT
#define TAB(var, T, label, post_fn) \
	static const struct kwtab var = { label, sizeof(T), offsetof(T, pos), var##_kws, post_fn }

/* ---- value checks ---- */

static void chk_oneof(struct dctx *c, const struct ynode *n, const char *s,
                      const char *const *allowed, const char *want)
{
	for (size_t i = 0; allowed[i]; i++)
		if (strcmp(s, allowed[i]) == 0)
			return;
	derr(c, n, "unsupported value \"%.60s\" (want %s)", s, want);
}

static void chk_path_type(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "Exact", "PathPrefix", "RegularExpression", NULL };

	chk_oneof(c, n, s, v, "Exact, PathPrefix or RegularExpression");
}

static void chk_match_type(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "Exact", "RegularExpression", NULL };

	chk_oneof(c, n, s, v, "Exact or RegularExpression");
}

static void chk_method(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
	                                 "OPTIONS", "TRACE", "PATCH", NULL };

	chk_oneof(c, n, s, v, "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH");
}

static void chk_listener_protocol(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "HTTP", "HTTPS", "TLS", "TCP", "UDP", NULL };

	chk_oneof(c, n, s, v, "HTTP, HTTPS, TLS, TCP or UDP");
}

static void chk_tls_mode(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "Terminate", "Passthrough", NULL };

	chk_oneof(c, n, s, v, "Terminate or Passthrough");
}

static void chk_from(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "Same", "All", "Selector", NULL };

	chk_oneof(c, n, s, v, "Same, All or Selector");
}

static void chk_filter_type(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "RequestHeaderModifier", "ResponseHeaderModifier",
	                                 "RequestMirror", "RequestRedirect", "URLRewrite",
	                                 "ExtensionRef", "CORS", NULL };

	chk_oneof(c, n, s, v, "RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, "
	          "RequestRedirect, URLRewrite, ExtensionRef or CORS");
}

static void chk_scheme(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "http", "https", NULL };

	chk_oneof(c, n, s, v, "http or https");
}

static void chk_path_mod_type(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const v[] = { "ReplaceFullPath", "ReplacePrefixMatch", NULL };

	chk_oneof(c, n, s, v, "ReplaceFullPath or ReplacePrefixMatch");
}

/* Gateway API Hostname: a DNS name, optionally "*." + name; no IP, no port, not "*". */
static void chk_hostname(struct dctx *c, const struct ynode *n, const char *s)
{
	char buf[256];
	const char *e;

	if (is_ip_address(s))
		derr(c, n, "hostname \"%.100s\" is an IP address (want a DNS name)", s);
	else if (strcmp(s, "*") == 0)
		derr(c, n, "invalid hostname \"*\" (leave it out to match every host)");
	else if ((e = check_wildcard_domain(s, buf, sizeof(buf))))
		derr(c, n, "invalid hostname \"%.100s\": %s", s, e);
}

static void chk_name(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!is_dns1123_subdomain(s))
		derr(c, n, "invalid name \"%.100s\" (want a DNS-1123 subdomain)", s);
}

static void chk_section_name(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!is_dns1123_subdomain(s))
		derr(c, n, "invalid sectionName \"%.100s\" (want a DNS-1123 subdomain)", s);
}

/* ---- whole-object checks ---- */

static void post_objref(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_objref *r = obj;

	if (!r->name)
		derr_required(c, map, "name");
}

static void post_listener_tls(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_listener_tls *t = obj;
	const char *tm = res_strmap_get(&t->options, "gateway.istio.io/tls-terminate-mode");

	if (t->mode && strcmp(t->mode, "Passthrough") == 0) {
		/* Istio's PASSTHROUGH server: the application's TLS goes through untouched, so
		 * there is nothing to terminate with. */
		if (t->certificate_refs.n)
			derr_field(c, map, "certificateRefs", "must not be set when mode is "
			           "Passthrough");
		if (t->options.n)
			derr_field(c, map, "options", "must not be set when mode is Passthrough "
			           "(nothing is terminated)");
		return;
	}
	for (size_t i = 0; i < t->certificate_refs.n; i++) {
		const struct gwapi_objref *r = &t->certificate_refs.v[i];

		if ((r->group && *r->group) || (r->kind && strcmp(r->kind, "Secret") != 0))
			derr_field(c, map, "certificateRefs", "certificateRefs[%zu]: only core "
			           "Secrets are served (got %s/%s)", i, r->group ? r->group : "",
			           r->kind ? r->kind : "Secret");
		else if (r->namespace && strcmp(r->namespace, c->ns) != 0)
			derr_field(c, map, "certificateRefs", "certificateRefs[%zu]: a Secret of "
			           "another namespace is not served yet; put it in %s", i, c->ns);
	}
	if (t->certificate_refs.n > 1)
		derr_field(c, map, "certificateRefs", "more than one certificate is not served "
		           "yet");
	for (size_t i = 0; i < t->options.n; i++) {
		const struct res_strmap_entry *o = &t->options.v[i];

		if (strcmp(o->key, "gateway.istio.io/tls-terminate-mode") != 0) {
			dwarn_field(c, map, "options", "option \"%.100s\" is not applied by egressgw; "
			            "ignored", o->key);
		}
	}
	if (tm && strcmp(tm, "SIMPLE") != 0 && strcmp(tm, "MUTUAL") != 0 &&
	    strcmp(tm, "ISTIO_MUTUAL") != 0)
		derr_field(c, map, "options", "gateway.istio.io/tls-terminate-mode: unsupported value "
		           "\"%.60s\" (want SIMPLE, MUTUAL or ISTIO_MUTUAL)", tm);
	if (!t->certificate_refs.n && (!tm || strcmp(tm, "ISTIO_MUTUAL") != 0))
		derr_field(c, map, "certificateRefs", "a Terminate listener needs a certificateRef "
		           "(or the option gateway.istio.io/tls-terminate-mode: ISTIO_MUTUAL)");
}

static void post_route_namespaces(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_route_namespaces *ns = obj;

	if (ns->from && strcmp(ns->from, "Selector") == 0)
		derr_field(c, map, "from", "\"Selector\" is not served by egressgw (its store has "
		           "no namespace labels); use Same or All");
}

static void post_route_group_kind(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_route_group_kind *k = obj;

	if (!k->kind) {
		derr_required(c, map, "kind");
		return;
	}
	if ((k->group && strcmp(k->group, GWAPI_GROUP) != 0) ||
	    (strcmp(k->kind, "HTTPRoute") != 0 && strcmp(k->kind, "TLSRoute") != 0 &&
	     strcmp(k->kind, "TCPRoute") != 0))
		derr_field(c, map, "kind", "only HTTPRoute, TLSRoute and TCPRoute routes are served "
		           "by egressgw (got %s)", k->kind);
}

static void post_listener(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_listener *l = obj;

	if (!l->name)
		derr_required(c, map, "name");
	if (!l->port)
		derr_required(c, map, "port");
	if (!l->protocol) {
		derr_required(c, map, "protocol");
		return;
	}
	if (strcmp(l->protocol, "UDP") == 0)
		derr_field(c, map, "protocol", "%s listeners are not served by egressgw yet "
		           "(refused rather than accepted and ignored)", l->protocol);
	/* TLS is served as Istio serves it: Passthrough only (a TLS listener that
	 * terminates would be an HTTPS one without HTTP routing, which egressgw has not). */
	if (strcmp(l->protocol, "TLS") == 0 &&
	    (!l->tls || !l->tls->mode || strcmp(l->tls->mode, "Passthrough") != 0))
		derr_field(c, map, "tls", "a TLS listener is served with tls.mode Passthrough only "
		           "(Terminate is not served yet; use protocol HTTPS)");
	if (strcmp(l->protocol, "TCP") == 0 && l->tls)
		derr_field(c, map, "tls", "tls must not be set for protocol TCP");
	if (strcmp(l->protocol, "HTTPS") == 0 && l->tls && l->tls->mode &&
	    strcmp(l->tls->mode, "Passthrough") == 0)
		derr_field(c, map, "tls", "an HTTPS listener terminates TLS; for Passthrough use "
		           "protocol TLS");
	if (strcmp(l->protocol, "HTTPS") == 0 && !l->tls)
		derr_required(c, map, "tls");
	if (strcmp(l->protocol, "HTTP") == 0 && l->tls)
		derr_field(c, map, "tls", "tls must not be set for protocol HTTP");
}

static void post_gateway(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_gateway *g = obj;

	if (!g->gateway_class_name)
		derr_required(c, map, "gatewayClassName");
	else if (strcmp(g->gateway_class_name, "istio") != 0)
		dwarn_field(c, map, "gatewayClassName", "class \"%.60s\" is not istio: egressgw "
		            "does not serve this Gateway (nor its routes)", g->gateway_class_name);
	if (!g->listeners.n)
		derr_required(c, map, "listeners");
	for (size_t i = 0; i < g->listeners.n; i++)
		for (size_t j = 0; j < i; j++) {
			const struct gwapi_listener *a = &g->listeners.v[i], *b = &g->listeners.v[j];

			if (a->name && b->name && strcmp(a->name, b->name) == 0)
				derr_field(c, map, "listeners", "listeners[%zu]: name \"%s\" is used by "
				           "listeners[%zu] already", i, a->name, j);
		}
}

static void post_parent_ref(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_parent_ref *p = obj;

	if (!p->name)
		derr_required(c, map, "name");
}

static void post_string_match(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_string_match *m = obj;

	if (!m->name)
		derr_required(c, map, "name");
	if (!m->value)
		derr_required(c, map, "value");
}

static void post_path_match(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_string_match *m = obj;

	if (m->value && m->value[0] != '/' && (!m->type || strcmp(m->type,
	                                                         "RegularExpression") != 0))
		derr_field(c, map, "value", "must be an absolute path (start with '/')");
}

static void post_backend_ref(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_backend_ref *b = obj;
	bool svc = (!b->group || !*b->group) && (!b->kind || strcmp(b->kind, "Service") == 0);

	if (!b->name)
		derr_required(c, map, "name");
	if (svc && !b->port)
		derr_field(c, map, "port", "must be specified for a Service reference");
	if (b->kind && strcmp(b->kind, "Hostname") == 0 && !b->port)
		derr_field(c, map, "port", "must be specified for a Hostname reference");
	if (b->has_filters)
		derr_field(c, map, "filters", "backendRef filters are not applied by egressgw yet "
		           "(refused rather than accepted and ignored)");
}

static void post_filter(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_filter *f = obj;

	if (!f->type) {
		derr_required(c, map, "type");
		return;
	}
	if (strcmp(f->type, "RequestRedirect") != 0) {
		derr_field(c, map, "type", "%s is not applied by the request core yet (refused "
		           "rather than accepted and ignored)", f->type);
		return;
	}
	if (!f->request_redirect)
		derr_required(c, map, "requestRedirect");
	for (size_t i = 0; i < map->n; i++) {
		const char *k = map->pairs[i].key->str;

		if (k && strcmp(k, "type") != 0 && strcmp(k, "requestRedirect") != 0)
			derr_field(c, map, k, "must not be set when type is RequestRedirect");
	}
}

static void post_redirect(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_redirect *r = obj;

	if (r->status_code && r->status_code != 301 && r->status_code != 302)
		derr_field(c, map, "statusCode", "unsupported value %u (want 301 or 302)",
		           r->status_code);
	if (r->path && r->path->type && strcmp(r->path->type, "ReplacePrefixMatch") == 0)
		derr_field(c, map, "path", "ReplacePrefixMatch is not applied yet (refused rather "
		           "than ignored); ReplaceFullPath is");
}

static void post_path_modifier(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_path_modifier *p = obj;

	if (!p->type)
		derr_required(c, map, "type");
	else if (strcmp(p->type, "ReplaceFullPath") == 0 && !p->replace_full_path)
		derr_required(c, map, "replaceFullPath");
	else if (strcmp(p->type, "ReplacePrefixMatch") == 0 && !p->replace_prefix_match)
		derr_required(c, map, "replacePrefixMatch");
}

static void post_timeouts(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_timeouts *t = obj;

	if (t->backend_request_ms)
		derr_field(c, map, "backendRequest", "a per-try timeout is not applied by egressgw "
		           "yet (refused rather than ignored); use request");
}

static void post_rule(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_rule *r = obj;
	bool redirect = false;

	for (size_t i = 0; i < r->filters.n; i++)
		redirect |= r->filters.v[i].request_redirect != NULL;
	if (redirect && r->backend_refs.n)
		derr_field(c, map, "backendRefs", "a rule with a RequestRedirect filter must not "
		           "have backendRefs");
}

/* TLSRoute and TCPRoute: a TLSRoute matches by SNI, so its hostnames are the SNIs;
 * a TCPRoute has no hostnames at all (the decoder table has none). */
static void post_l4_route(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_route *r = obj;

	if (!r->parent_refs.n)
		derr_required(c, map, "parentRefs");
	if (!r->rules.n)
		derr_required(c, map, "rules");
}

static void post_grant_ref(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_grant_ref *r = obj;

	if (!r->kind)
		derr_required(c, map, "kind");
	if (!r->group && !ynode_get(map, "group"))
		derr_required(c, map, "group");
}

static void post_grant_from(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_grant_ref *r = obj;

	post_grant_ref(c, map, obj);
	if (!r->namespace)
		derr_required(c, map, "namespace");
}

static void post_grant(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_refgrant *g = obj;

	if (!g->from.n)
		derr_required(c, map, "from");
	if (!g->to.n)
		derr_required(c, map, "to");
}

/* ---- tables ---- */

static const struct kw kt_objref_kws[] = {
	F(struct gwapi_objref, "group", KW_STR, group),
	F(struct gwapi_objref, "kind", KW_STR, kind),
	F(struct gwapi_objref, "name", KW_STR, name, .check = chk_name),
	F(struct gwapi_objref, "namespace", KW_STR, namespace, .check = chk_ns_label),
	END
};
TAB(kt_objref, struct gwapi_objref, "SecretObjectReference", post_objref);

static const struct kw kt_listener_tls_kws[] = {
	F(struct gwapi_listener_tls, "mode", KW_STR, mode, .check = chk_tls_mode),
	F(struct gwapi_listener_tls, "certificateRefs", KW_LIST, certificate_refs,
	  .sub = &kt_objref),
	F(struct gwapi_listener_tls, "options", KW_STRMAP, options),
	U("frontendValidation"),
	END
};
TAB(kt_listener_tls, struct gwapi_listener_tls, "GatewayTLSConfig", post_listener_tls);

static const struct kw kt_route_namespaces_kws[] = {
	F(struct gwapi_route_namespaces, "from", KW_STR, from, .check = chk_from),
	U("selector"),
	END
};
TAB(kt_route_namespaces, struct gwapi_route_namespaces, "RouteNamespaces",
    post_route_namespaces);

static const struct kw kt_route_group_kind_kws[] = {
	F(struct gwapi_route_group_kind, "group", KW_STR, group),
	F(struct gwapi_route_group_kind, "kind", KW_STR, kind),
	END
};
TAB(kt_route_group_kind, struct gwapi_route_group_kind, "RouteGroupKind",
    post_route_group_kind);

static const struct kw kt_allowed_routes_kws[] = {
	F(struct gwapi_allowed_routes, "namespaces", KW_OBJ, namespaces,
	  .sub = &kt_route_namespaces),
	F(struct gwapi_allowed_routes, "kinds", KW_LIST, kinds, .sub = &kt_route_group_kind),
	END
};
TAB(kt_allowed_routes, struct gwapi_allowed_routes, "AllowedRoutes", NULL);

static const struct kw kt_listener_kws[] = {
	F(struct gwapi_listener, "name", KW_STR, name, .check = chk_section_name),
	F(struct gwapi_listener, "hostname", KW_STR, hostname, .check = chk_hostname),
	F(struct gwapi_listener, "port", KW_U32, port, PORT),
	F(struct gwapi_listener, "protocol", KW_STR, protocol, .check = chk_listener_protocol),
	F(struct gwapi_listener, "tls", KW_OBJ, tls, .sub = &kt_listener_tls),
	F(struct gwapi_listener, "allowedRoutes", KW_OBJ, allowed_routes,
	  .sub = &kt_allowed_routes),
	END
};
TAB(kt_listener, struct gwapi_listener, "Listener", post_listener);

static const struct kw kt_k8s_gateway_kws[] = {
	F(struct gwapi_gateway, "gatewayClassName", KW_STR, gateway_class_name),
	F(struct gwapi_gateway, "listeners", KW_LIST, listeners, .sub = &kt_listener),
	U("addresses"),
	U("infrastructure"),
	U("backendTLS"),
	END
};
TAB(kt_k8s_gateway, struct gwapi_gateway, "GatewaySpec", post_gateway);

static const struct kw kt_parent_ref_kws[] = {
	F(struct gwapi_parent_ref, "group", KW_STR, group),
	F(struct gwapi_parent_ref, "kind", KW_STR, kind),
	F(struct gwapi_parent_ref, "namespace", KW_STR, namespace, .check = chk_ns_label),
	F(struct gwapi_parent_ref, "name", KW_STR, name, .check = chk_name),
	F(struct gwapi_parent_ref, "sectionName", KW_STR, section_name, .check = chk_section_name),
	F(struct gwapi_parent_ref, "port", KW_U32, port, PORT),
	END
};
TAB(kt_parent_ref, struct gwapi_parent_ref, "ParentReference", post_parent_ref);

static const struct kw kt_path_match_kws[] = {
	F(struct gwapi_string_match, "type", KW_STR, type, .check = chk_path_type),
	F(struct gwapi_string_match, "value", KW_STR, value),
	END
};
TAB(kt_path_match, struct gwapi_string_match, "HTTPPathMatch", post_path_match);

static const struct kw kt_string_match_kws[] = {
	F(struct gwapi_string_match, "type", KW_STR, type, .check = chk_match_type),
	F(struct gwapi_string_match, "name", KW_STR, name),
	F(struct gwapi_string_match, "value", KW_STR, value),
	END
};
TAB(kt_string_match, struct gwapi_string_match, "HTTPHeaderMatch", post_string_match);

static const struct kw kt_match_kws[] = {
	F(struct gwapi_match, "path", KW_OBJ, path, .sub = &kt_path_match),
	F(struct gwapi_match, "headers", KW_LIST, headers, .sub = &kt_string_match),
	F(struct gwapi_match, "queryParams", KW_LIST, query_params, .sub = &kt_string_match),
	F(struct gwapi_match, "method", KW_STR, method, .check = chk_method),
	END
};
TAB(kt_match, struct gwapi_match, "HTTPRouteMatch", NULL);

static const struct kw kt_backend_ref_kws[] = {
	F(struct gwapi_backend_ref, "group", KW_STR, group),
	F(struct gwapi_backend_ref, "kind", KW_STR, kind),
	F(struct gwapi_backend_ref, "name", KW_STR, name),
	F(struct gwapi_backend_ref, "namespace", KW_STR, namespace, .check = chk_ns_label),
	F(struct gwapi_backend_ref, "port", KW_U32, port, PORT),
	F(struct gwapi_backend_ref, "weight", KW_U32OPT, weight, .min = 0, .max = 1000000),
	{ .name = "filters", .type = KW_IGNORE },
	END
};

/* backendRefs[].filters: refused, so only its presence matters (post_backend_ref). */
static void post_backend_ref_presence(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gwapi_backend_ref *b = obj;

	b->has_filters = ynode_get(map, "filters") != NULL;
	post_backend_ref(c, map, obj);
}
TAB(kt_backend_ref, struct gwapi_backend_ref, "HTTPBackendRef", post_backend_ref_presence);

static const struct kw kt_path_modifier_kws[] = {
	F(struct gwapi_path_modifier, "type", KW_STR, type, .check = chk_path_mod_type),
	F(struct gwapi_path_modifier, "replaceFullPath", KW_STR, replace_full_path),
	F(struct gwapi_path_modifier, "replacePrefixMatch", KW_STR, replace_prefix_match),
	END
};
TAB(kt_path_modifier, struct gwapi_path_modifier, "HTTPPathModifier", post_path_modifier);

static const struct kw kt_redirect_kws[] = {
	F(struct gwapi_redirect, "scheme", KW_STR, scheme, .check = chk_scheme),
	F(struct gwapi_redirect, "hostname", KW_STR, hostname, .check = chk_hostname),
	F(struct gwapi_redirect, "path", KW_OBJ, path, .sub = &kt_path_modifier),
	F(struct gwapi_redirect, "port", KW_U32, port, PORT),
	F(struct gwapi_redirect, "statusCode", KW_U32, status_code),
	END
};
TAB(kt_redirect, struct gwapi_redirect, "HTTPRequestRedirectFilter", post_redirect);

static const struct kw kt_filter_kws[] = {
	F(struct gwapi_filter, "type", KW_STR, type, .check = chk_filter_type),
	F(struct gwapi_filter, "requestRedirect", KW_OBJ, request_redirect, .sub = &kt_redirect),
	/* Refused by post_filter through their type; present so that the error is that,
	 * not "unknown field". */
	{ .name = "requestHeaderModifier", .type = KW_IGNORE },
	{ .name = "responseHeaderModifier", .type = KW_IGNORE },
	{ .name = "requestMirror", .type = KW_IGNORE },
	{ .name = "urlRewrite", .type = KW_IGNORE },
	{ .name = "extensionRef", .type = KW_IGNORE },
	{ .name = "cors", .type = KW_IGNORE },
	END
};
TAB(kt_filter, struct gwapi_filter, "HTTPRouteFilter", post_filter);

static const struct kw kt_timeouts_kws[] = {
	F(struct gwapi_timeouts, "request", KW_DURATION, request_ms, .flags = KWF_ZERO_OK),
	F(struct gwapi_timeouts, "backendRequest", KW_DURATION, backend_request_ms,
	  .flags = KWF_ZERO_OK),
	END
};
TAB(kt_timeouts, struct gwapi_timeouts, "HTTPRouteTimeouts", post_timeouts);

static const struct kw kt_rule_kws[] = {
	F(struct gwapi_rule, "name", KW_STR, name, .check = chk_section_name),
	F(struct gwapi_rule, "matches", KW_LIST, matches, .sub = &kt_match),
	F(struct gwapi_rule, "filters", KW_LIST, filters, .sub = &kt_filter),
	F(struct gwapi_rule, "backendRefs", KW_LIST, backend_refs, .sub = &kt_backend_ref),
	F(struct gwapi_rule, "timeouts", KW_OBJ, timeouts, .sub = &kt_timeouts),
	U("retry"),
	U("sessionPersistence"),
	END
};
TAB(kt_rule, struct gwapi_rule, "HTTPRouteRule", post_rule);

static const struct kw kt_http_route_kws[] = {
	F(struct gwapi_route, "parentRefs", KW_LIST, parent_refs, .sub = &kt_parent_ref),
	F(struct gwapi_route, "hostnames", KW_STRLIST, hostnames, .check = chk_hostname),
	F(struct gwapi_route, "rules", KW_LIST, rules, .sub = &kt_rule),
	END
};
TAB(kt_http_route, struct gwapi_route, "HTTPRouteSpec", NULL);

/* TLSRoute / TCPRoute rules: name and backendRefs only. */
static const struct kw kt_l4_backend_ref_kws[] = {
	F(struct gwapi_backend_ref, "group", KW_STR, group),
	F(struct gwapi_backend_ref, "kind", KW_STR, kind),
	F(struct gwapi_backend_ref, "name", KW_STR, name),
	F(struct gwapi_backend_ref, "namespace", KW_STR, namespace, .check = chk_ns_label),
	F(struct gwapi_backend_ref, "port", KW_U32, port, PORT),
	F(struct gwapi_backend_ref, "weight", KW_U32OPT, weight, .min = 0, .max = 1000000),
	END
};
TAB(kt_l4_backend_ref, struct gwapi_backend_ref, "BackendRef", post_backend_ref);

static const struct kw kt_l4_rule_kws[] = {
	F(struct gwapi_rule, "name", KW_STR, name, .check = chk_section_name),
	F(struct gwapi_rule, "backendRefs", KW_LIST, backend_refs, .sub = &kt_l4_backend_ref),
	END
};
TAB(kt_l4_rule, struct gwapi_rule, "TCPRouteRule", NULL);

static const struct kw kt_tls_route_kws[] = {
	F(struct gwapi_route, "parentRefs", KW_LIST, parent_refs, .sub = &kt_parent_ref),
	F(struct gwapi_route, "hostnames", KW_STRLIST, hostnames, .check = chk_hostname),
	F(struct gwapi_route, "rules", KW_LIST, rules, .sub = &kt_l4_rule),
	END
};
TAB(kt_tls_route, struct gwapi_route, "TLSRouteSpec", post_l4_route);

static const struct kw kt_tcp_route_kws[] = {
	F(struct gwapi_route, "parentRefs", KW_LIST, parent_refs, .sub = &kt_parent_ref),
	F(struct gwapi_route, "rules", KW_LIST, rules, .sub = &kt_l4_rule),
	END
};
TAB(kt_tcp_route, struct gwapi_route, "TCPRouteSpec", post_l4_route);

static const struct kw kt_grant_from_kws[] = {
	F(struct gwapi_grant_ref, "group", KW_STR, group),
	F(struct gwapi_grant_ref, "kind", KW_STR, kind),
	F(struct gwapi_grant_ref, "namespace", KW_STR, namespace, .check = chk_ns_label),
	END
};
TAB(kt_grant_from, struct gwapi_grant_ref, "ReferenceGrantFrom", post_grant_from);

static const struct kw kt_grant_to_kws[] = {
	F(struct gwapi_grant_ref, "group", KW_STR, group),
	F(struct gwapi_grant_ref, "kind", KW_STR, kind),
	F(struct gwapi_grant_ref, "name", KW_STR, name),
	END
};
TAB(kt_grant_to, struct gwapi_grant_ref, "ReferenceGrantTo", post_grant_ref);

static const struct kw kt_refgrant_kws[] = {
	F(struct gwapi_refgrant, "from", KW_LIST, from, .sub = &kt_grant_from),
	F(struct gwapi_refgrant, "to", KW_LIST, to, .sub = &kt_grant_to),
	END
};
TAB(kt_refgrant, struct gwapi_refgrant, "ReferenceGrantSpec", post_grant);

const struct kwtab *gwapi_spec_table(enum res_kind kind)
{
	switch (kind) {
	case RES_K8S_GATEWAY:     return &kt_k8s_gateway;
	case RES_HTTP_ROUTE:      return &kt_http_route;
	case RES_TLS_ROUTE:       return &kt_tls_route;
	case RES_TCP_ROUTE:       return &kt_tcp_route;
	case RES_REFERENCE_GRANT: return &kt_refgrant;
	default:                  return NULL;
	}
}
