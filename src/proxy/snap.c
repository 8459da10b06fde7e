/* snap: the compiler from Istio resources to a snapshot (listeners, route tables,
 * clusters), and the snapshot's lifetime.
 *
 * snap_build runs on the main thread:
 *   1. gather the resources visible to this proxy (exportTo), sorted by (namespace, name);
 *   2. gateway role: Gateways selected by the proxy's labels -> listeners (snap_gw.c),
 *      each with its route table (snap_route.c); sidecar role: outbound route tables;
 *   3. clusters for every destination the routes name and every ServiceEntry host x port,
 *      with DestinationRule policy and TLS contexts (snap_cluster.c);
 *   4. config_dump (snap_json.c).
 * Files: snap.c (this: driver, gathering, free), snap_gw.c, snap_route.c, snap_l4.c,
 * snap_cluster.c, snap_addr.c, snap_util.c (the helpers all of them share, calling
 * nothing of the others: no call cycle among the files), snap_json.c (with the writer in
 * snap_jsonw.c); snap_int.h is their private header. */
#include "proxy/authz.h"
#include "proxy/snap.h"
#include "proxy/snap_int.h"
#include "proxy/l4route.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"

static atomic_uint_fast64_t snap_next_version = 1;

/* ---- gathering ---- */

static int snap_res_cmp(const void *a, const void *b)
{
	const struct resource *x = *(const struct resource *const *)a;
	const struct resource *y = *(const struct resource *const *)b;
	int c = strcmp(x->namespace, y->namespace);

	return c ? c : strcmp(x->name, y->name);
}

static const struct res_strlist *snap_export_to(const struct resource *r)
{
	switch (r->kind) {
	case RES_SERVICE_ENTRY:
		return &r->u.se->export_to;
	case RES_VIRTUAL_SERVICE:
		return &r->u.vs->export_to;
	case RES_DESTINATION_RULE:
		return &r->u.dr->export_to;
	default:
		return NULL;
	}
}

static void snap_ref_add(struct snap_ref **v, size_t *n, char *key, size_t idx)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[*n].key = key;
	(*v)[*n].idx = idx;
	(*n)++;
}

/* Builds the host indexes of snap_int.h. */
static void snap_index(struct snap_b *b)
{
	b->se_wild = xcalloc(b->nse + 1, sizeof(*b->se_wild));
	for (size_t i = 0; i < b->nse; i++) {
		const struct serviceentry *se = b->se[i]->u.se;
		bool wild = false;

		/* Every host by its literal name (a cluster's host may be "*.x"), and the
		 * ServiceEntries with wildcards apart, for the hosts they cover. */
		for (size_t j = 0; j < se->hosts.n; j++) {
			wild |= se->hosts.v[j][0] == '*';
			snap_ref_add(&b->se_refs, &b->nse_refs, xstrdup(se->hosts.v[j]), i);
		}
		if (wild)
			b->se_wild[b->nse_wild++] = i;
	}
	if (b->nse_refs)
		qsort(b->se_refs, b->nse_refs, sizeof(*b->se_refs), snap_ref_cmp);
	for (size_t i = 0; i < b->ndr; i++) {
		const struct resource *r = b->dr[i];
		char *h = snap_fqdn(r->u.dr->host, r->namespace);

		if (h[0] == '*') {
			snap_ref_add(&b->dr_wild, &b->ndr_wild, h, i);
		} else {
			snap_ref_add(&b->dr_refs, &b->ndr_refs, xasprintf("%s/%s", r->namespace, h), i);
			free(h);
		}
	}
	if (b->ndr_refs)
		qsort(b->dr_refs, b->ndr_refs, sizeof(*b->dr_refs), snap_ref_cmp);
}

/* Adds what the Gateway API objects became: a Gateway only in its own namespace (Istio
 * serves a Gateway API Gateway by the deployment it creates there), a VirtualService
 * where its exportTo lets it be seen. */
static void snap_gather_gwapi(struct snap_b *b)
{
	const struct store_contents *c = b->contents;
	const struct resource **all = xcalloc(c->n + 1, sizeof(*all));
	size_t more;

	for (size_t i = 0; i < c->n; i++)
		all[i] = &c->v[i].res;
	gwapi_translate(all, c->n, &b->gwx, b->d);
	free(all);
	more = b->gwx.nres;
	if (!more)
		return;
	b->gw = xrealloc(b->gw, (b->ngw + more + 1) * sizeof(*b->gw));
	b->vs = xrealloc(b->vs, (b->nvs + more + 1) * sizeof(*b->vs));
	for (size_t i = 0; i < b->gwx.nres; i++) {
		const struct resource *r = &b->gwx.res[i];

		if (r->kind == RES_GATEWAY && strcmp(r->namespace, b->ns) == 0)
			b->gw[b->ngw++] = r;
		else if (r->kind == RES_VIRTUAL_SERVICE &&
		         snap_visible(&r->u.vs->export_to, r->namespace, b->ns))
			b->vs[b->nvs++] = r;
	}
}

/* A visible DestinationRule whose host no visible ServiceEntry lists, nor --mesh-hosts
 * (Istio's IST0174, res_dr_unknown_hosts): its policy applies to nothing, which the
 * configuration's author should hear about; said in the build's log, as egressctl apply
 * and analyze say it. */
static void snap_dr_hosts_check(struct snap_b *b)
{
	size_t n = b->nse + b->ndr;
	const struct resource **all = xcalloc(n + 1, sizeof(*all));
	bool *unknown = xcalloc(n + 1, sizeof(*unknown));
	char id[300];

	memcpy(all, b->se, b->nse * sizeof(*all));
	memcpy(all + b->nse, b->dr, b->ndr * sizeof(*all));
	res_dr_unknown_hosts(all, n, unknown);
	for (size_t i = b->nse; i < n; i++) {
		const struct destinationrule *dr = all[i]->u.dr;
		bool mesh = false;

		for (const char **h = b->p->mesh_hosts; h && *h && !mesh; h++)
			mesh = strcasecmp(*h, dr->host) == 0;
		if (unknown[i] && !mesh)
			diag_warn(b->d, dr->pos.file ? dr->pos.file : all[i]->file,
			          dr->pos.file ? dr->pos.line : all[i]->line, dr->pos.col,
			          "DestinationRule %s: spec.host: no ServiceEntry has host \"%s\" "
			          "(IST0174): its traffic policy applies to nothing",
			          snap_res_id(all[i], id, sizeof(id)), dr->host);
	}
	free(unknown);
	free(all);
}

static void snap_gather(struct snap_b *b)
{
	const struct store_contents *c = b->contents;

	b->se = xcalloc(c->n + 1, sizeof(*b->se));
	b->gw = xcalloc(c->n + 1, sizeof(*b->gw));
	b->vs = xcalloc(c->n + 1, sizeof(*b->vs));
	b->dr = xcalloc(c->n + 1, sizeof(*b->dr));
	for (size_t i = 0; i < c->n; i++) {
		const struct resource *r = &c->v[i].res;
		const struct res_strlist *exp = snap_export_to(r);

		if (exp && !snap_visible(exp, r->namespace, b->ns))
			continue;
		switch (r->kind) {
		case RES_SERVICE_ENTRY:
			b->se[b->nse++] = r;
			break;
		case RES_GATEWAY:
			b->gw[b->ngw++] = r;
			break;
		case RES_VIRTUAL_SERVICE:
			b->vs[b->nvs++] = r;
			break;
		case RES_DESTINATION_RULE:
			b->dr[b->ndr++] = r;
			break;
		default:
			break;
		}
	}
	snap_gather_gwapi(b);
	qsort(b->se, b->nse, sizeof(*b->se), snap_res_cmp);
	qsort(b->gw, b->ngw, sizeof(*b->gw), snap_res_cmp);
	qsort(b->vs, b->nvs, sizeof(*b->vs), snap_res_cmp);
	qsort(b->dr, b->ndr, sizeof(*b->dr), snap_res_cmp);
	snap_index(b);
}

static void snap_refs_free(struct snap_ref *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].key);
	free(v);
}

static void snap_b_fini(struct snap_b *b)
{
	free(b->se);
	free(b->gw);
	free(b->vs);
	free(b->dr);
	free(b->selgw);
	gwapi_xlate_free(&b->gwx);
	snap_refs_free(b->se_refs, b->nse_refs);
	snap_refs_free(b->dr_refs, b->ndr_refs);
	snap_refs_free(b->dr_wild, b->ndr_wild);
	free(b->se_wild);
	snap_map_fini(&b->key_idx);
	for (size_t i = 0; i < b->nkeys; i++) {
		free(b->keys[i].name);
		free(b->keys[i].host);
		free(b->keys[i].subset);
	}
	free(b->keys);
	for (size_t i = 0; i < b->nbc; i++)
		snap_bcluster_fini(&b->bc[i]);
	free(b->bc);
	for (size_t i = 0; i < b->nctxs; i++) {
		free(b->ctxs[i].key);
		free(b->ctxs[i].err);
		tls_ctx_unref(b->ctxs[i].ctx);
	}
	free(b->ctxs);
	snap_map_fini(&b->ctx_idx);
	if (b->own_secrets)
		secret_cache_free(b->secrets);
}

/* The workload identity's certificates, listed as Istio lists them (default, ROOTCA),
 * and their digests for the ISTIO_MUTUAL context keys. */
static void snap_identity(struct snap_b *b)
{
	struct tls_identity_files idf;
	struct tls_pem cert, key, root;

	if (!b->p->identity_dir)
		return;
	tls_identity_files(b->p->identity_dir, &idf, &cert, &key, &root);
	secret_cache_file(b->secrets, "default", false, cert.file, key.file, b->id_digest);
	secret_cache_file(b->secrets, "ROOTCA", true, root.file, NULL, b->root_digest);
}

/* The AuthorizationPolicies for this proxy (every namespace's are looked at: the root
 * namespace's apply mesh-wide; exportTo does not exist for policies). */
static void snap_authz(struct snap_b *b)
{
	const struct store_contents *c = b->contents;
	const struct resource **v = xcalloc(c->n + 1, sizeof(*v));
	struct authz_params ap = { b->ns, b->p->labels };
	size_t n = 0;

	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].res.kind == RES_AUTHORIZATION_POLICY)
			v[n++] = &c->v[i].res;
	b->s->authz = authz_build(v, n, &ap);
	free(v);
}

/* ---- build ---- */

struct snap *snap_build(const struct store_contents *contents, const struct snap_params *p,
                        struct diags *d)
{
	struct snap_b b;
	struct snap *s;

	memset(&b, 0, sizeof(b));
	b.p = p;
	b.ns = p->namespace && *p->namespace ? p->namespace : "default";
	b.d = d;
	b.contents = contents;
	s = xcalloc(1, sizeof(*s));
	atomic_init(&s->refs, 1);
	s->version = atomic_fetch_add(&snap_next_version, 1);
	s->role = p->role;
	b.s = s;
	b.secrets = p->secrets;
	if (!b.secrets) {
		b.secrets = secret_cache_new();
		b.own_secrets = true;
	}
	secret_cache_begin(b.secrets);

	snap_gather(&b);
	snap_dr_hosts_check(&b);
	snap_identity(&b);
	snap_cred_want(&b);
	if (p->role == SNAP_ROLE_GATEWAY) {
		if (snap_gw_listeners(&b) < 0)
			goto fail;
	} else {
		snap_sidecar_routes(&b);
		snap_l4_mesh(&b);
	}
	snap_clusters(&b);
	snap_addrs(&b);
	snap_l4_link(&b);
	snap_authz(&b);
	secret_cache_commit(b.secrets);
	snap_b_fini(&b);
	return s;

fail:
	secret_cache_abort(b.secrets);
	snap_b_fini(&b);
	snap_unref(s);
	return NULL;
}

static void snap_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void snap_listener_fini(struct snap_listener *l)
{
	for (size_t i = 0; i < l->nservers; i++) {
		struct snap_server *sv = &l->servers[i];

		free(sv->gateway);
		free(sv->port_name);
		snap_strv_free(sv->hosts, sv->nhosts);
		snap_strv_free(sv->allowed_sans, sv->nallowed_sans);
		free(sv->tls_source);
		tls_ctx_unref(sv->ctx);
	}
	free(l->servers);
	route_table_free(l->routes);
	l4_table_free(l->l4);
	free(l->name);
	tls_ctx_unref(l->mesh_ctx);
}

void snap_unref(struct snap *s)
{
	if (!s)
		return;
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < s->nlisteners; i++)
		snap_listener_fini(&s->listeners[i]);
	free(s->listeners);
	for (size_t i = 0; i < s->nclusters; i++)
		cluster_free(s->clusters[i]);
	free(s->clusters);
	for (size_t i = 0; i < s->noutbound; i++)
		route_table_free(s->outbound[i]);
	free(s->outbound);
	free(s->addrs);
	l4_table_free(s->mesh_l4);
	authz_free(s->authz);
	free(s);
}
