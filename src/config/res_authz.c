/* res_authz: the checks for AuthorizationPolicy (security.istio.io v1beta1 and v1).
 *
 * The keyword tables are in res_tables.c; this file holds the value checks and post hooks,
 * after Istio's validating webhook (pkg/config/validation ValidateAuthorizationPolicy)
 * plus what egressgw cannot serve. What is refused, and why, so that a policy never
 * passes with part of it silently unenforced (an ignored DENY condition lets traffic out,
 * an ignored ALLOW condition lets more out):
 *   - action CUSTOM: needs an external authorizer (ext_authz), which egressgw has not;
 *   - requestPrincipals / notRequestPrincipals and the request.auth.* `when` keys: need JWT
 *     validation (RequestAuthentication), which egressgw has not;
 *   - `when` keys other than request.headers[...], source.ip, remote.ip, source.namespace,
 *     source.principal, destination.ip, destination.port, connection.sni;
 *   - path templates ({*}, {**}).
 * targetRef(s) other than a Gateway API Gateway (Service, ServiceEntry, GatewayClass: those
 * select waypoints, which egressgw is not) are accepted with a warning: they apply to no
 * proxy here, which is also what Istio does for a proxy that is not a waypoint. */
#include "config/res_internal.h"

#include <stdlib.h>
#include <string.h>

/* A list of strings the API matches with Istio's rules (exact, "*" any, "x*" prefix, "*x"
 * suffix): empty strings match nothing Istio would produce and are refused. */
void chk_ap_value(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!*s)
		derr(c, n, "empty value not allowed");
}

void chk_ap_port(struct dctx *c, const struct ynode *n, const char *s)
{
	char *end;
	long v;

	if (!*s) {
		derr(c, n, "empty value not allowed");
		return;
	}
	v = strtol(s, &end, 10);
	if (*end || s[0] == '-' || s[0] == '+' || v < 1 || v > 65535)
		derr(c, n, "invalid port \"%.60s\" (want a port number 1-65535 as a string)", s);
}

/* serviceAccounts: "NAMESPACE/NAME". */
void chk_ap_service_account(struct dctx *c, const struct ynode *n, const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
		derr(c, n, "invalid service account \"%.100s\" (want NAMESPACE/NAME)", s);
}

static bool src_empty(const struct ap_source *s)
{
	return !s->principals.n && !s->not_principals.n && !s->request_principals.n &&
	       !s->not_request_principals.n && !s->namespaces.n && !s->not_namespaces.n &&
	       !s->ip_blocks.n && !s->not_ip_blocks.n && !s->remote_ip_blocks.n &&
	       !s->not_remote_ip_blocks.n && !s->service_accounts.n && !s->not_service_accounts.n;
}

void post_ap_source(struct dctx *c, const struct ynode *map, void *obj)
{
	struct ap_source *s = obj;
	static const char *const jwt[] = { "requestPrincipals", "notRequestPrincipals" };

	for (size_t i = 0; i < 2; i++)
		if (ynode_get(map, jwt[i]))
			derr_field(c, map, jwt[i], "not supported: request principals come from JWTs "
			           "(RequestAuthentication), which egressgw does not validate; use "
			           "principals (the peer's mesh identity)");
	if ((s->service_accounts.n || s->not_service_accounts.n) &&
	    (s->principals.n || s->not_principals.n || s->namespaces.n || s->not_namespaces.n))
		derr(c, map, "serviceAccounts cannot be set with principals or namespaces");
	if (src_empty(s))
		derr(c, map, "`from.source` must not be empty");
}

void post_ap_operation(struct dctx *c, const struct ynode *map, void *obj)
{
	struct ap_operation *o = obj;
	const struct res_strlist *paths[2] = { &o->paths, &o->not_paths };
	static const char *const pnames[2] = { "paths", "notPaths" };

	for (size_t k = 0; k < 2; k++) {
		const struct ynode *l = ynode_get(map, pnames[k]);

		for (size_t i = 0; i < paths[k]->n; i++) {
			if (!strchr(paths[k]->v[i], '{'))
				continue;
			size_t mark = path_push_key(c, pnames[k]);

			path_push_index(c, i);
			derr(c, l && l->type == YNODE_SEQ && i < l->n ? l->items[i] : map,
			     "path templates ({*}, {**}) are not supported (want an exact path, "
			     "\"prefix*\", \"*suffix\" or \"*\")");
			path_pop(c, mark);
		}
	}
	if (!o->hosts.n && !o->not_hosts.n && !o->ports.n && !o->not_ports.n && !o->methods.n &&
	    !o->not_methods.n && !o->paths.n && !o->not_paths.n)
		derr(c, map, "`to.operation` must not be empty");
}

void post_ap_from(struct dctx *c, const struct ynode *map, void *obj)
{
	struct ap_from *f = obj;

	if (!f->source && !ynode_get(map, "source"))
		derr(c, map, "`from.source` must not be nil");
}

void post_ap_to(struct dctx *c, const struct ynode *map, void *obj)
{
	struct ap_to *t = obj;

	if (!t->operation && !ynode_get(map, "operation"))
		derr(c, map, "`to.operation` must not be nil");
}

/* The `when` keys egressgw evaluates; the value check each takes. */
enum ap_key_type { AKT_STRING, AKT_CIDR, AKT_PORT };

static int ap_key_type(const char *key, enum ap_key_type *t)
{
	static const struct { const char *key; enum ap_key_type t; } keys[] = {
		{ "source.ip", AKT_CIDR }, { "remote.ip", AKT_CIDR }, { "destination.ip", AKT_CIDR },
		{ "source.namespace", AKT_STRING }, { "source.principal", AKT_STRING },
		{ "destination.port", AKT_PORT }, { "connection.sni", AKT_STRING },
	};
	size_t kl = strlen(key);

	if (kl > 17 && strncmp(key, "request.headers[", 16) == 0 && key[kl - 1] == ']') {
		*t = AKT_STRING;
		return 0;
	}
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(key, keys[i].key) == 0) {
			*t = keys[i].t;
			return 0;
		}
	}
	return -1;
}

static void check_cond_values(struct dctx *c, const struct ynode *map, const char *field,
                              const struct res_strlist *l, enum ap_key_type t)
{
	const struct ynode *seq = ynode_get(map, field);
	size_t mark = path_push_key(c, field);

	for (size_t i = 0; i < l->n; i++) {
		const struct ynode *n = seq && seq->type == YNODE_SEQ && i < seq->n ? seq->items[i]
		                        : map;
		size_t m2 = path_push_index(c, i);

		if (t == AKT_CIDR)
			chk_ip_or_cidr(c, n, l->v[i]);
		else if (t == AKT_PORT)
			chk_ap_port(c, n, l->v[i]);
		path_pop(c, m2);
	}
	path_pop(c, mark);
}

void post_ap_condition(struct dctx *c, const struct ynode *map, void *obj)
{
	struct ap_condition *w = obj;
	enum ap_key_type t;

	if (!w->key) {
		derr_required(c, map, "key");
		return;
	}
	if (ap_key_type(w->key, &t) < 0) {
		if (strncmp(w->key, "request.auth.", 13) == 0)
			derr_field(c, map, "key", "\"%.100s\" is not supported: request.auth.* come from "
			           "JWTs (RequestAuthentication), which egressgw does not validate",
			           w->key);
		else
			derr_field(c, map, "key", "unsupported key \"%.100s\" (want request.headers[NAME], "
			           "source.ip, remote.ip, source.namespace, source.principal, "
			           "destination.ip, destination.port or connection.sni)", w->key);
		return;
	}
	if (!w->values.n && !w->not_values.n) {
		derr(c, map, "at least one of values or notValues must be set for key %.100s", w->key);
		return;
	}
	check_cond_values(c, map, "values", &w->values, t);
	check_cond_values(c, map, "notValues", &w->not_values, t);
}

void post_ap_target_ref(struct dctx *c, const struct ynode *map, void *obj)
{
	struct ap_target_ref *r = obj;
	const char *g = r->group ? r->group : "";

	if (!r->kind)
		derr_required(c, map, "kind");
	if (!r->name)
		derr_required(c, map, "name");
	if (!r->kind || !r->name)
		return;
	if (r->namespace && c->ns && strcmp(r->namespace, c->ns) != 0)
		derr_field(c, map, "namespace", "cross namespace referencing is not currently "
		           "supported (want %.60s or nothing)", c->ns);
	if (strcmp(r->kind, "Gateway") == 0 && strcmp(g, "gateway.networking.k8s.io") == 0)
		return;
	if ((strcmp(r->kind, "Service") == 0 && !*g) ||
	    (strcmp(r->kind, "ServiceEntry") == 0 && strcmp(g, "networking.istio.io") == 0) ||
	    (strcmp(r->kind, "GatewayClass") == 0 && strcmp(g, "gateway.networking.k8s.io") == 0)) {
		dwarn(c, map, "targetRef %.60s %.100s selects waypoint proxies: egressgw is not one, "
		      "so no egressgw proxy enforces this reference", r->kind, r->name);
		return;
	}
	derr(c, map, "targetRef must be to a Gateway (gateway.networking.k8s.io), GatewayClass, "
	     "Service or ServiceEntry, got %.60s (group \"%.60s\")", r->kind, g);
}

void post_ap(struct dctx *c, const struct ynode *map, void *obj)
{
	struct authorizationpolicy *ap = obj;
	bool refs = ap->target_ref || ap->target_refs.n;

	if (ap->selector && refs)
		derr(c, map, "only one of targetRefs or workloadSelector can be set");
	if (ap->target_ref && ap->target_refs.n)
		derr(c, map, "only one of targetRef or targetRefs can be set");
	if (ap->action == AP_CUSTOM) {
		derr_field(c, map, "action", "CUSTOM is not supported: it delegates to an external "
		           "authorizer (ext_authz extension provider), and egressgw has none; use "
		           "ALLOW, DENY or AUDIT");
	} else if (ap->provider || ynode_get(map, "provider")) {
		derr_field(c, map, "provider", "provider must not be set for %s action",
		           ap_action_names[ap->action]);
	}
}
