/* authz: AuthorizationPolicy selection, compilation and indexes, and the compiled
 * policies for config_dump (see authz.h; the compiled form is in authz_int.h, decisions
 * in authz_eval.c). */
#include "proxy/authz.h"
#include "proxy/authz_int.h"

#include "config/resource.h"
#include "core/util.h"
#include "proxy/snap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define AUTHZ_ROOT_NS       "istio-system"
#define AUTHZ_GWNAME_LABEL  "gateway.networking.k8s.io/gateway-name"

/* ---- compile ---- */

static void am_compile(struct amatch *m, const char *s, bool icase)
{
	size_t len = strlen(s);

	m->orig = xstrdup(s);
	if (strcmp(s, "*") == 0) {
		m->k = AM_ANY;
		m->s = xstrdup("");
	} else if (s[0] == '*') {
		m->k = AM_SUFFIX;
		m->s = xstrdup(s + 1);
	} else if (len && s[len - 1] == '*') {
		m->k = AM_PREFIX;
		m->s = xstrndup(s, len - 1);
	} else {
		m->k = AM_EXACT;
		m->s = xstrdup(s);
	}
	m->len = strlen(m->s);
	if (icase)
		for (char *p = m->s; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
}

static void aml_compile(struct amlist *l, const struct res_strlist *src, bool icase)
{
	l->n = src->n;
	l->v = src->n ? xcalloc(src->n, sizeof(*l->v)) : NULL;
	for (size_t i = 0; i < src->n; i++)
		am_compile(&l->v[i], src->v[i], icase);
}

static void aml_free(struct amlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].s);
		free(l->v[i].orig);
	}
	free(l->v);
}

/* Validation accepted s (an IP or CIDR); a bare address is a full-length prefix. */
static void cidr_compile(struct acidr *c, const char *s)
{
	char ip[64];
	const char *slash = strchr(s, '/');
	size_t il = slash ? (size_t)(slash - s) : strlen(s);

	c->orig = xstrdup(s);
	if (il >= sizeof(ip))
		il = sizeof(ip) - 1;
	memcpy(ip, s, il);
	ip[il] = '\0';
	if (inet_pton(AF_INET, ip, c->addr) == 1) {
		c->family = AF_INET;
		c->bits = slash ? atoi(slash + 1) : 32;
	} else if (inet_pton(AF_INET6, ip, c->addr) == 1) {
		c->family = AF_INET6;
		c->bits = slash ? atoi(slash + 1) : 128;
	} else {
		c->family = -1;      /* cannot happen after validation: matches nothing */
	}
}

static void acl_compile(struct acidrlist *l, const struct res_strlist *src)
{
	l->n = src->n;
	l->v = src->n ? xcalloc(src->n, sizeof(*l->v)) : NULL;
	for (size_t i = 0; i < src->n; i++)
		cidr_compile(&l->v[i], src->v[i]);
}

static void acl_free(struct acidrlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].orig);
	free(l->v);
}

static void apl_compile(struct aportlist *l, const struct res_strlist *src)
{
	l->n = src->n;
	l->v = src->n ? xcalloc(src->n, sizeof(*l->v)) : NULL;
	for (size_t i = 0; i < src->n; i++)
		l->v[i] = (uint16_t)atoi(src->v[i]);
}

static void src_compile(struct asource *d, const struct ap_source *s)
{
	aml_compile(&d->principals, &s->principals, false);
	aml_compile(&d->not_principals, &s->not_principals, false);
	aml_compile(&d->namespaces, &s->namespaces, false);
	aml_compile(&d->not_namespaces, &s->not_namespaces, false);
	aml_compile(&d->sas, &s->service_accounts, false);
	aml_compile(&d->not_sas, &s->not_service_accounts, false);
	acl_compile(&d->ip, &s->ip_blocks);
	acl_compile(&d->not_ip, &s->not_ip_blocks);
	acl_compile(&d->rip, &s->remote_ip_blocks);
	acl_compile(&d->not_rip, &s->not_remote_ip_blocks);
}

static void src_free(struct asource *s)
{
	aml_free(&s->principals);
	aml_free(&s->not_principals);
	aml_free(&s->namespaces);
	aml_free(&s->not_namespaces);
	aml_free(&s->sas);
	aml_free(&s->not_sas);
	acl_free(&s->ip);
	acl_free(&s->not_ip);
	acl_free(&s->rip);
	acl_free(&s->not_rip);
}

static void op_compile(struct aop *d, const struct ap_operation *o)
{
	/* Hosts compare case-insensitively (DNS names); methods and paths exactly. */
	aml_compile(&d->hosts, &o->hosts, true);
	aml_compile(&d->not_hosts, &o->not_hosts, true);
	aml_compile(&d->methods, &o->methods, false);
	aml_compile(&d->not_methods, &o->not_methods, false);
	aml_compile(&d->paths, &o->paths, false);
	aml_compile(&d->not_paths, &o->not_paths, false);
	apl_compile(&d->ports, &o->ports);
	apl_compile(&d->not_ports, &o->not_ports);
}

static void op_free(struct aop *o)
{
	aml_free(&o->hosts);
	aml_free(&o->not_hosts);
	aml_free(&o->methods);
	aml_free(&o->not_methods);
	aml_free(&o->paths);
	aml_free(&o->not_paths);
	free(o->ports.v);
	free(o->not_ports.v);
}

static void cond_compile(struct acond *d, const struct ap_condition *c)
{
	static const struct { const char *k; enum akey v; } keys[] = {
		{ "source.ip", AK_SOURCE_IP }, { "remote.ip", AK_REMOTE_IP },
		{ "destination.ip", AK_DEST_IP }, { "source.namespace", AK_SOURCE_NS },
		{ "source.principal", AK_SOURCE_PRINCIPAL }, { "destination.port", AK_DEST_PORT },
		{ "connection.sni", AK_SNI },
	};

	d->key_str = xstrdup(c->key);
	d->key = AK_HEADER;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(c->key, keys[i].k) == 0)
			d->key = keys[i].v;
	switch (d->key) {
	case AK_HEADER: {
		/* "request.headers[Name]": validation checked the form. */
		size_t n = strlen(c->key) - 17;

		d->header = xstrndup(c->key + 16, n);
		for (char *p = d->header; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		aml_compile(&d->values, &c->values, false);
		aml_compile(&d->not_values, &c->not_values, false);
		break;
	}
	case AK_SOURCE_IP: case AK_REMOTE_IP: case AK_DEST_IP:
		acl_compile(&d->cvalues, &c->values);
		acl_compile(&d->not_cvalues, &c->not_values);
		break;
	case AK_DEST_PORT:
		apl_compile(&d->pvalues, &c->values);
		apl_compile(&d->not_pvalues, &c->not_values);
		break;
	default:
		aml_compile(&d->values, &c->values, d->key == AK_SNI);
		aml_compile(&d->not_values, &c->not_values, d->key == AK_SNI);
		break;
	}
}

static void cond_free(struct acond *c)
{
	free(c->key_str);
	free(c->header);
	aml_free(&c->values);
	aml_free(&c->not_values);
	acl_free(&c->cvalues);
	acl_free(&c->not_cvalues);
	free(c->pvalues.v);
	free(c->not_pvalues.v);
}

static void rule_compile(struct arule *d, const struct ap_rule *r, const char *ns,
                         const char *name, size_t idx, bool *paths)
{
	d->name = xasprintf("ns[%s]-policy[%s]-rule[%zu]", ns, name, idx);
	d->details = xasprintf("rbac_access_denied_matched_policy[%s]", d->name);
	d->nfrom = r->from.n;
	d->from = r->from.n ? xcalloc(r->from.n, sizeof(*d->from)) : NULL;
	for (size_t i = 0; i < r->from.n; i++)
		if (r->from.v[i].source)
			src_compile(&d->from[i], r->from.v[i].source);
	d->nto = r->to.n;
	d->to = r->to.n ? xcalloc(r->to.n, sizeof(*d->to)) : NULL;
	for (size_t i = 0; i < r->to.n; i++) {
		if (!r->to.v[i].operation)
			continue;
		op_compile(&d->to[i], r->to.v[i].operation);
		*paths |= d->to[i].paths.n || d->to[i].not_paths.n;
	}
	d->nwhen = r->when.n;
	d->when = r->when.n ? xcalloc(r->when.n, sizeof(*d->when)) : NULL;
	for (size_t i = 0; i < r->when.n; i++)
		cond_compile(&d->when[i], &r->when.v[i]);
}

static void rule_free(struct arule *r)
{
	for (size_t i = 0; i < r->nfrom; i++)
		src_free(&r->from[i]);
	for (size_t i = 0; i < r->nto; i++)
		op_free(&r->to[i]);
	for (size_t i = 0; i < r->nwhen; i++)
		cond_free(&r->when[i]);
	free(r->from);
	free(r->to);
	free(r->when);
	free(r->name);
	free(r->details);
}

static const char *label_get(const char **labels, const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 0; labels && labels[i]; i++)
		if (strncmp(labels[i], key, kl) == 0 && labels[i][kl] == '=')
			return labels[i] + kl + 1;
	return NULL;
}

/* Does the policy apply to this proxy? Its namespace's policies and the root namespace's
 * (mesh-wide); then the selector's labels must all be the proxy's, or a targetRef must
 * name the Gateway API Gateway the proxy serves. */
static bool ap_applies(const struct resource *r, const struct authz_params *p)
{
	const struct authorizationpolicy *ap = r->u.ap;
	const char *ns = p->namespace ? p->namespace : "default";

	if (strcmp(r->namespace, ns) != 0 && strcmp(r->namespace, AUTHZ_ROOT_NS) != 0)
		return false;
	if (ap->target_ref || ap->target_refs.n) {
		const char *gw = label_get(p->labels, AUTHZ_GWNAME_LABEL);
		size_t n = ap->target_ref ? 1 : ap->target_refs.n;

		if (!gw || strcmp(r->namespace, ns) != 0)
			return false;
		for (size_t i = 0; i < n; i++) {
			const struct ap_target_ref *t = ap->target_ref ? ap->target_ref
			                                : &ap->target_refs.v[i];

			if (t->kind && strcmp(t->kind, "Gateway") == 0 && t->name &&
			    strcmp(t->name, gw) == 0)
				return true;
		}
		return false;
	}
	if (ap->selector) {
		const struct res_strmap *m = &ap->selector->match_labels;

		for (size_t i = 0; i < m->n; i++) {
			const char *v = label_get(p->labels, m->v[i].key);

			if (!v || strcmp(v, m->v[i].value) != 0)
				return false;
		}
	}
	return true;
}

static void aset_add(struct aset *s, struct apolicy *p)
{
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
	s->v[s->n++] = p;
}

static int res_cmp(const void *a, const void *b)
{
	const struct resource *x = *(const struct resource *const *)a;
	const struct resource *y = *(const struct resource *const *)b;
	int c = strcmp(x->namespace, y->namespace);

	return c ? c : strcmp(x->name, y->name);
}

struct authz *authz_build(const struct resource *const *res, size_t n,
                          const struct authz_params *p)
{
	const struct resource **sel = xcalloc(n + 1, sizeof(*sel));
	struct authz *a;
	size_t nsel = 0;

	for (size_t i = 0; i < n; i++)
		if (res[i]->kind == RES_AUTHORIZATION_POLICY && ap_applies(res[i], p))
			sel[nsel++] = res[i];
	if (!nsel) {
		free(sel);
		return NULL;
	}
	qsort(sel, nsel, sizeof(*sel), res_cmp);
	a = xcalloc(1, sizeof(*a));
	a->pol = xcalloc(nsel, sizeof(*a->pol));
	a->npol = nsel;
	for (size_t i = 0; i < nsel; i++) {
		const struct authorizationpolicy *ap = sel[i]->u.ap;
		struct apolicy *pol = &a->pol[i];

		pol->ns = xstrdup(sel[i]->namespace);
		pol->name = xstrdup(sel[i]->name);
		pol->action = ap->action;
		pol->dry_run = ap->dry_run;
		pol->nrules = ap->rules.n;
		pol->rules = ap->rules.n ? xcalloc(ap->rules.n, sizeof(*pol->rules)) : NULL;
		for (size_t k = 0; k < ap->rules.n; k++)
			rule_compile(&pol->rules[k], &ap->rules.v[k], pol->ns, pol->name, k,
			             &a->uses_paths);
		switch (pol->action) {
		case AP_DENY:
			aset_add(pol->dry_run ? &a->sdeny : &a->deny, pol);
			break;
		case AP_ALLOW:
			aset_add(pol->dry_run ? &a->sallow : &a->allow, pol);
			break;
		case AP_AUDIT:
			if (!pol->dry_run)
				aset_add(&a->audit, pol);
			break;
		default:
			break;       /* CUSTOM: refused by validation */
		}
	}
	free(sel);
	authz_index_build(&a->deny);
	authz_index_build(&a->allow);
	authz_index_build(&a->audit);
	authz_index_build(&a->sdeny);
	authz_index_build(&a->sallow);
	return a;
}

void authz_free(struct authz *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->npol; i++) {
		for (size_t k = 0; k < a->pol[i].nrules; k++)
			rule_free(&a->pol[i].rules[k]);
		free(a->pol[i].rules);
		free(a->pol[i].ns);
		free(a->pol[i].name);
	}
	free(a->pol);
	authz_index_fini(&a->deny);
	authz_index_fini(&a->allow);
	authz_index_fini(&a->audit);
	authz_index_fini(&a->sdeny);
	authz_index_fini(&a->sallow);
	free(a);
}

size_t authz_count(const struct authz *a)
{
	return a ? a->npol : 0;
}

/* ---- config_dump ---- */

static void json_aml(struct snap_json *j, const char *key, const struct amlist *l)
{
	if (!l->n)
		return;
	snap_json_arr_begin(j, key);
	for (size_t i = 0; i < l->n; i++)
		snap_json_str(j, NULL, l->v[i].orig);
	snap_json_arr_end(j);
}

static void json_acl(struct snap_json *j, const char *key, const struct acidrlist *l)
{
	if (!l->n)
		return;
	snap_json_arr_begin(j, key);
	for (size_t i = 0; i < l->n; i++)
		snap_json_str(j, NULL, l->v[i].orig);
	snap_json_arr_end(j);
}

static void json_apl(struct snap_json *j, const char *key, const struct aportlist *l)
{
	if (!l->n)
		return;
	snap_json_arr_begin(j, key);
	for (size_t i = 0; i < l->n; i++)
		snap_json_int(j, NULL, l->v[i]);
	snap_json_arr_end(j);
}

static void json_rule(struct snap_json *j, const struct arule *ru)
{
	snap_json_obj_begin(j, NULL);
	snap_json_str(j, "name", ru->name);
	snap_json_arr_begin(j, "from");
	for (size_t i = 0; i < ru->nfrom; i++) {
		const struct asource *s = &ru->from[i];

		snap_json_obj_begin(j, NULL);
		json_aml(j, "principals", &s->principals);
		json_aml(j, "not_principals", &s->not_principals);
		json_aml(j, "namespaces", &s->namespaces);
		json_aml(j, "not_namespaces", &s->not_namespaces);
		json_aml(j, "service_accounts", &s->sas);
		json_aml(j, "not_service_accounts", &s->not_sas);
		json_acl(j, "ip_blocks", &s->ip);
		json_acl(j, "not_ip_blocks", &s->not_ip);
		json_acl(j, "remote_ip_blocks", &s->rip);
		json_acl(j, "not_remote_ip_blocks", &s->not_rip);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_json_arr_begin(j, "to");
	for (size_t i = 0; i < ru->nto; i++) {
		const struct aop *o = &ru->to[i];

		snap_json_obj_begin(j, NULL);
		json_aml(j, "hosts", &o->hosts);
		json_aml(j, "not_hosts", &o->not_hosts);
		json_apl(j, "ports", &o->ports);
		json_apl(j, "not_ports", &o->not_ports);
		json_aml(j, "methods", &o->methods);
		json_aml(j, "not_methods", &o->not_methods);
		json_aml(j, "paths", &o->paths);
		json_aml(j, "not_paths", &o->not_paths);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_json_arr_begin(j, "when");
	for (size_t i = 0; i < ru->nwhen; i++) {
		const struct acond *w = &ru->when[i];

		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "key", w->key_str);
		json_aml(j, "values", &w->values);
		json_aml(j, "not_values", &w->not_values);
		json_acl(j, "values", &w->cvalues);
		json_acl(j, "not_values", &w->not_cvalues);
		json_apl(j, "values", &w->pvalues);
		json_apl(j, "not_values", &w->not_pvalues);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
	snap_json_obj_end(j);
}

void authz_json(const struct authz *a, struct snap_json *j)
{
	snap_json_arr_begin(j, "authorization_policies");
	for (size_t i = 0; a && i < a->npol; i++) {
		const struct apolicy *p = &a->pol[i];

		snap_json_obj_begin(j, NULL);
		snap_json_str(j, "name", p->name);
		snap_json_str(j, "namespace", p->ns);
		snap_json_str(j, "action", ap_action_names[p->action]);
		snap_json_bool(j, "dry_run", p->dry_run);
		snap_json_arr_begin(j, "rules");
		for (size_t k = 0; k < p->nrules; k++)
			json_rule(j, &p->rules[k]);
		snap_json_arr_end(j);
		snap_json_obj_end(j);
	}
	snap_json_arr_end(j);
}
