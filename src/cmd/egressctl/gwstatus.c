/* gwstatus: the `status` of Gateway API objects in `egressctl get -o yaml|json`, as
 * Istio's gateway controller writes it (route: status.parents[] with parentRef,
 * controllerName and the Accepted and ResolvedRefs conditions; Gateway: Accepted and
 * Programmed, and per listener the routes attached). The conditions come from
 * gwapi_translate, the code that turns these objects into what the proxies serve, so the
 * status says what egressgw does with them. A status in the stored YAML (a re-applied
 * `get -o yaml`) is replaced. */
#include <stdio.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "config/res_gwapi.h"

#define CTL_GWAPI_CONTROLLER "istio.io/gateway-controller"

static void set_str(struct ystream *s, struct ynode *map, const char *key, const char *v)
{
	ynode_map_set(s, map, key, ynode_new_scalar(s, v, strlen(v), true));
}

static struct ynode *cond_node(struct ystream *s, const struct gwapi_cond *c)
{
	struct ynode *m = ynode_new_map(s);

	set_str(s, m, "message", c->message ? c->message : "");
	set_str(s, m, "reason", c->reason);
	set_str(s, m, "status", c->status ? "True" : "False");
	set_str(s, m, "type", c->type);
	return m;
}

static void route_status(struct ystream *s, struct ynode *doc,
                         const struct gwapi_route_status *st)
{
	struct ynode *status = ynode_new_map(s), *parents = ynode_new_seq(s);

	for (size_t i = 0; i < st->nparents; i++) {
		const struct gwapi_parent_status *ps = &st->parents[i];
		const struct gwapi_parent_ref *p = ps->ref;
		struct ynode *m = ynode_new_map(s), *conds = ynode_new_seq(s);
		struct ynode *ref = ynode_new_map(s);

		ynode_seq_append(s, conds, cond_node(s, &ps->accepted));
		ynode_seq_append(s, conds, cond_node(s, &ps->resolved));
		ynode_map_set(s, m, "conditions", conds);
		set_str(s, m, "controllerName", CTL_GWAPI_CONTROLLER);
		set_str(s, ref, "group", p->group ? p->group : GWAPI_GROUP);
		set_str(s, ref, "kind", p->kind ? p->kind : "Gateway");
		set_str(s, ref, "name", p->name);
		if (p->namespace)
			set_str(s, ref, "namespace", p->namespace);
		if (p->section_name)
			set_str(s, ref, "sectionName", p->section_name);
		if (p->port) {
			char b[16];

			snprintf(b, sizeof(b), "%u", p->port);
			ynode_map_set(s, ref, "port", ynode_new_scalar(s, b, strlen(b), false));
		}
		ynode_map_set(s, m, "parentRef", ref);
		ynode_seq_append(s, parents, m);
	}
	ynode_map_set(s, status, "parents", parents);
	ynode_map_set(s, doc, "status", status);
}

static void gateway_status(struct ystream *s, struct ynode *doc, const struct resource *r,
                           const struct gwapi_gateway_status *st)
{
	struct ynode *status = ynode_new_map(s), *conds = ynode_new_seq(s);
	struct ynode *listeners = ynode_new_seq(s);
	const struct gwapi_gateway *g = r->u.kgw;

	ynode_seq_append(s, conds, cond_node(s, &st->accepted));
	ynode_seq_append(s, conds, cond_node(s, &st->programmed));
	ynode_map_set(s, status, "conditions", conds);
	for (size_t i = 0; i < g->listeners.n; i++) {
		struct ynode *l = ynode_new_map(s), *kinds = ynode_new_seq(s);
		struct ynode *k = ynode_new_map(s), *lc = ynode_new_seq(s);
		char b[16];

		snprintf(b, sizeof(b), "%u", st->attached ? st->attached[i] : 0);
		ynode_map_set(s, l, "attachedRoutes", ynode_new_scalar(s, b, strlen(b), false));
		ynode_seq_append(s, lc, cond_node(s, &st->accepted));
		ynode_seq_append(s, lc, cond_node(s, &st->programmed));
		ynode_map_set(s, l, "conditions", lc);
		set_str(s, l, "name", g->listeners.v[i].name);
		set_str(s, k, "group", GWAPI_GROUP);
		set_str(s, k, "kind", "HTTPRoute");
		ynode_seq_append(s, kinds, k);
		ynode_map_set(s, l, "supportedKinds", kinds);
		ynode_seq_append(s, listeners, l);
	}
	ynode_map_set(s, status, "listeners", listeners);
	ynode_map_set(s, doc, "status", status);
}

void ctl_gwapi_status(struct ystream *out, struct ynode *doc, const struct gwapi_xlate *x,
                      const struct resource *r)
{
	const struct gwapi_route_status *rs;
	const struct gwapi_gateway_status *gs;

	if ((r->kind == RES_HTTP_ROUTE || r->kind == RES_TLS_ROUTE || r->kind == RES_TCP_ROUTE) &&
	    (rs = gwapi_route_status(x, r)))
		route_status(out, doc, rs);
	else if (r->kind == RES_K8S_GATEWAY && (gs = gwapi_gateway_status(x, r)))
		gateway_status(out, doc, r, gs);
}
