/* authz: AuthorizationPolicy selection, compilation and evaluation (see authz.h).
 *
 * Compiled form: every value list becomes an array of matchers decided by a length
 * compare and one memcmp (exact, prefix, suffix, presence), CIDRs become family + bytes
 * + prefix length, ports a small array. Rule names ("ns[NS]-policy[NAME]-rule[I]", the
 * policy ids Istio gives Envoy's RBAC filter) are made once here, so a decision hands
 * back a pointer and the access log prints it without formatting. Evaluation allocates
 * nothing and stops at the first rule that decides. */
#include "proxy/authz.h"

#include "config/resource.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "proxy/snap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define AUTHZ_ROOT_NS       "istio-system"
#define AUTHZ_GWNAME_LABEL  "gateway.networking.k8s.io/gateway-name"

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

static uint64_t key_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static struct abucket *idx_slot(const struct aindex *x, const char *k, size_t n)
{
	size_t i = (size_t)key_hash(k, n) & x->mask;

	while (x->v[i].key && !(x->v[i].keylen == n && memcmp(x->v[i].key, k, n) == 0))
		i = (i + 1) & x->mask;
	return &x->v[i];
}

static bool aml_all_exact(const struct amlist *l)
{
	for (size_t k = 0; k < l->n; k++)
		if (l->v[k].k != AM_EXACT)
			return false;
	return l->n > 0;
}

/* The namespace a principal pattern confines a canonical principal (TD/ns/NS/sa/SA, see
 * actx_init) to: an exact one's, a "*suffix" ending in "/ns/NS/sa/SA" (the form
 * trust-domain-agnostic policies use), or a "prefix*" starting "TD/ns/NS/". */
static bool pattern_ns(const struct amatch *m, const char **ns, size_t *len)
{
	size_t pos[4], cnt = 0;

	if (m->k == AM_PREFIX) {
		const char *td_end = memchr(m->s, '/', m->len), *end;

		if (!td_end || td_end == m->s || (size_t)(td_end - m->s) + 4 > m->len ||
		    memcmp(td_end, "/ns/", 4) != 0)
			return false;
		*ns = td_end + 4;
		end = memchr(*ns, '/', m->len - (size_t)(*ns - m->s));
		if (!end || end == *ns)
			return false;
		*len = (size_t)(end - *ns);
		return true;
	}
	if (m->k != AM_EXACT && m->k != AM_SUFFIX)
		return false;
	for (size_t i = m->len; i > 0 && cnt < 4; i--)
		if (m->s[i - 1] == '/')
			pos[cnt++] = i - 1;
	/* pos[3] "ns" pos[2] NS pos[1] "sa" pos[0] SA */
	if (cnt < 4 || pos[2] - pos[3] != 3 || memcmp(m->s + pos[3] + 1, "ns", 2) != 0 ||
	    pos[0] - pos[1] != 3 || memcmp(m->s + pos[1] + 1, "sa", 2) != 0 ||
	    pos[1] - pos[2] < 2 || pos[0] + 1 == m->len)
		return false;
	*ns = m->s + pos[2] + 1;
	*len = pos[1] - pos[2] - 1;
	return true;
}

/* The namespace keys of a source: its exact namespaces, else the namespaces all its
 * principal patterns imply; false when neither confines it. */
static bool src_ns_keys(const struct asource *src, const struct amlist **l, bool *from_p)
{
	const char *ns;
	size_t len;

	if (aml_all_exact(&src->namespaces)) {
		*l = &src->namespaces;
		*from_p = false;
		return true;
	}
	for (size_t k = 0; k < src->principals.n; k++)
		if (!pattern_ns(&src->principals.v[k], &ns, &len))
			return false;
	*l = &src->principals;
	*from_p = true;
	return src->principals.n > 0;
}

/* AIX_PRINCIPAL when every source of the rule lists exact principals, AIX_NAMESPACE when
 * every source is confined to namespaces (src_ns_keys): the rule cannot match a request
 * from elsewhere. Else AIX_OPEN. */
static int rule_index(const struct arule *ru)
{
	const struct amlist *l;
	bool ok = ru->nfrom > 0, from_p;

	for (size_t i = 0; ok && i < ru->nfrom; i++)
		ok = aml_all_exact(&ru->from[i].principals);
	if (ok)
		return AIX_PRINCIPAL;
	ok = ru->nfrom > 0;
	for (size_t i = 0; ok && i < ru->nfrom; i++)
		ok = src_ns_keys(&ru->from[i], &l, &from_p);
	return ok ? AIX_NAMESPACE : AIX_OPEN;
}

static void u32_push(uint32_t **v, size_t *n, uint32_t x)
{
	if (*n && (*v)[*n - 1] == x)
		return;              /* the same rule twice under one key */
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = x;
}

static void aset_index(struct aset *s)
{
	size_t nkeys = 0, cap = 16;

	for (size_t i = 0; i < s->n; i++)
		for (size_t k = 0; k < s->v[i]->nrules; k++) {
			const struct arule *ru = &s->v[i]->rules[k];

			s->rules = xrealloc(s->rules, (s->nrules + 1) * sizeof(*s->rules));
			s->rules[s->nrules++] = ru;
			for (size_t f = 0; f < ru->nfrom; f++)
				nkeys += ru->from[f].principals.n + ru->from[f].namespaces.n;
		}
	while (cap < 2 * nkeys)
		cap *= 2;
	for (int w = AIX_PRINCIPAL; w <= AIX_NAMESPACE; w++) {
		s->ix[w].mask = cap - 1;
		s->ix[w].v = xcalloc(cap, sizeof(*s->ix[w].v));
	}
	for (size_t r = 0; r < s->nrules; r++) {
		const struct arule *ru = s->rules[r];
		int w = rule_index(ru);

		if (w == AIX_OPEN) {
			u32_push(&s->open, &s->nopen, (uint32_t)r);
			continue;
		}
		for (size_t f = 0; f < ru->nfrom; f++) {
			const struct amlist *l = &ru->from[f].principals;
			bool from_p = true;

			if (w == AIX_NAMESPACE)
				src_ns_keys(&ru->from[f], &l, &from_p);
			for (size_t k = 0; k < l->n; k++) {
				const char *key = l->v[k].s;
				size_t klen = l->v[k].len;
				struct abucket *b;

				if (w == AIX_NAMESPACE && from_p)
					pattern_ns(&l->v[k], &key, &klen);
				b = idx_slot(&s->ix[w], key, klen);
				b->key = key;
				b->keylen = klen;
				u32_push(&b->v, &b->n, (uint32_t)r);
			}
		}
	}
}

static void aset_fini(struct aset *s)
{
	for (int w = AIX_PRINCIPAL; w <= AIX_NAMESPACE; w++) {
		for (size_t i = 0; s->ix[w].v && i <= s->ix[w].mask; i++)
			free(s->ix[w].v[i].v);
		free(s->ix[w].v);
	}
	free(s->open);
	free(s->rules);
	free(s->v);
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
	aset_index(&a->deny);
	aset_index(&a->allow);
	aset_index(&a->audit);
	aset_index(&a->sdeny);
	aset_index(&a->sallow);
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
	aset_fini(&a->deny);
	aset_fini(&a->allow);
	aset_fini(&a->audit);
	aset_fini(&a->sdeny);
	aset_fini(&a->sallow);
	free(a);
}

size_t authz_count(const struct authz *a)
{
	return a ? a->npol : 0;
}

bool authz_uses_paths(const struct authz *a)
{
	return a && a->uses_paths;
}

/* ---- evaluate ---- */

static bool am_match(const struct amatch *m, const char *s, size_t len, bool icase)
{
	switch (m->k) {
	case AM_ANY:
		return true;
	case AM_EXACT:
		return len == m->len && (icase ? strncasecmp(s, m->s, len) == 0
		                               : memcmp(s, m->s, len) == 0);
	case AM_PREFIX:
		return len >= m->len && (icase ? strncasecmp(s, m->s, m->len) == 0
		                               : memcmp(s, m->s, m->len) == 0);
	case AM_SUFFIX:
		return len >= m->len && (icase ? strncasecmp(s + len - m->len, m->s, m->len) == 0
		                               : memcmp(s + len - m->len, m->s, m->len) == 0);
	}
	return false;
}

/* Any of l matches s; an absent value (s NULL) matches nothing, not even "*". */
static bool aml_any(const struct amlist *l, const char *s, size_t len, bool icase)
{
	if (!s)
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (am_match(&l->v[i], s, len, icase))
			return true;
	return false;
}

/* The list constrains: set ones must match, not-lists must not. */
static bool aml_ok(const struct amlist *yes, const struct amlist *no, const char *s, size_t len,
                   bool icase)
{
	if (yes->n && !aml_any(yes, s, len, icase))
		return false;
	return !(no->n && aml_any(no, s, len, icase));
}

/* The address as family + bytes, IPv4-mapped IPv6 as IPv4. */
static int addr_bytes(const struct sock_addr *a, const uint8_t **b)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (!a)
		return -1;
	if (a->u.sa.sa_family == AF_INET) {
		*b = (const uint8_t *)&a->u.in4.sin_addr;
		return AF_INET;
	}
	if (a->u.sa.sa_family == AF_INET6) {
		*b = a->u.in6.sin6_addr.s6_addr;
		if (memcmp(*b, mapped, 12) == 0) {
			*b += 12;
			return AF_INET;
		}
		return AF_INET6;
	}
	return -1;
}

static bool cidr_has(const struct acidr *c, int fam, const uint8_t *b)
{
	int full = c->bits / 8, rest = c->bits % 8;

	if (c->family != fam)
		return false;
	if (memcmp(c->addr, b, (size_t)full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		return (c->addr[full] & mask) == (b[full] & mask);
	}
	return true;
}

static bool acl_any(const struct acidrlist *l, const struct sock_addr *a)
{
	const uint8_t *b;
	int fam = addr_bytes(a, &b);

	if (fam < 0)
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (cidr_has(&l->v[i], fam, b))
			return true;
	return false;
}

static bool acl_ok(const struct acidrlist *yes, const struct acidrlist *no,
                   const struct sock_addr *a)
{
	if (yes->n && !acl_any(yes, a))
		return false;
	return !(no->n && acl_any(no, a));
}

static bool apl_ok(const struct aportlist *yes, const struct aportlist *no, uint16_t port)
{
	bool hit = false;

	if (yes->n) {
		for (size_t i = 0; i < yes->n && !hit; i++)
			hit = yes->v[i] == port;
		if (!hit)
			return false;
	}
	for (size_t i = 0; i < no->n; i++)
		if (no->v[i] == port)
			return false;
	return true;
}

/* What a request's principal says, computed once per evaluation. */
struct actx {
	const struct authz_req *r;
	size_t plen;
	const char *ns;              /* namespace part of the principal, or NULL */
	size_t nslen;
	const char *sa;              /* "ns/NS/sa/SA" tail of the principal, or NULL */
	bool canonical;              /* the principal is TD/ns/NS/sa/SA (or there is none) */
	const char *host;            /* authority without its port */
	size_t host_len;
	bool lenient;                /* l4: HTTP-only fields ignored (DENY, AUDIT) */
};

static void actx_init(struct actx *c, const struct authz_req *r)
{
	const char *p = r->principal;

	memset(c, 0, sizeof(*c));
	c->r = r;
	c->canonical = true;
	if (p) {
		/* Istio's identities are TD/ns/NS/sa/SA (the trust domain has no '/'): only then
		 * is there a namespace. Another form (no CA of Istio's issues one) has none, and
		 * is evaluated against every rule, not through the indexes. */
		const char *td_end = strchr(p, '/'), *ns_end;

		c->plen = strlen(p);
		c->canonical = td_end && td_end != p && strncmp(td_end, "/ns/", 4) == 0 &&
		               (ns_end = strchr(td_end + 4, '/')) && ns_end != td_end + 4 &&
		               strncmp(ns_end, "/sa/", 4) == 0 && ns_end[4] &&
		               !strchr(ns_end + 4, '/');
		if (c->canonical) {
			c->ns = td_end + 4;
			c->nslen = (size_t)(ns_end - c->ns);
			c->sa = td_end + 1;
		}
	}
	if (!r->l4 && r->host) {
		size_t n = r->host_len;

		/* Strip ":port" (not inside an IPv6 literal's brackets). */
		for (size_t i = n; i > 0; i--) {
			char ch = r->host[i - 1];

			if (ch == ':') {
				n = i - 1;
				break;
			}
			if (ch < '0' || ch > '9')
				break;
		}
		c->host = r->host;
		c->host_len = n;
	}
}

/* serviceAccounts "NS/SA" against the principal's "ns/NS/sa/SA" tail. */
static bool sa_any(const struct amlist *l, const struct actx *c)
{
	if (!c->sa)
		return false;
	for (size_t i = 0; i < l->n; i++) {
		const char *v = l->v[i].s, *slash = strchr(v, '/');
		size_t nl = slash ? (size_t)(slash - v) : 0;

		if (slash && c->nslen == nl && memcmp(c->ns, v, nl) == 0 &&
		    strncmp(c->ns + nl, "/sa/", 4) == 0 && strcmp(c->ns + nl + 4, slash + 1) == 0)
			return true;
	}
	return false;
}

static bool src_match(const struct asource *s, const struct actx *c)
{
	const struct authz_req *r = c->r;

	if (!aml_ok(&s->principals, &s->not_principals, r->principal, c->plen, false))
		return false;
	if (!aml_ok(&s->namespaces, &s->not_namespaces, c->ns, c->nslen, false))
		return false;
	if (s->sas.n && !sa_any(&s->sas, c))
		return false;
	if (s->not_sas.n && sa_any(&s->not_sas, c))
		return false;
	return acl_ok(&s->ip, &s->not_ip, r->source) && acl_ok(&s->rip, &s->not_rip, r->source);
}

/* An authority matches a host pattern as written or without its port. */
static bool host_ok(const struct aop *o, const struct actx *c)
{
	const struct authz_req *r = c->r;

	if (o->hosts.n && !aml_any(&o->hosts, r->host, r->host_len, true) &&
	    !aml_any(&o->hosts, c->host, c->host_len, true))
		return false;
	return !(o->not_hosts.n && (aml_any(&o->not_hosts, r->host, r->host_len, true) ||
	                            aml_any(&o->not_hosts, c->host, c->host_len, true)));
}

static bool op_match(const struct aop *o, const struct actx *c)
{
	const struct authz_req *r = c->r;

	if (!apl_ok(&o->ports, &o->not_ports, r->port))
		return false;
	if (r->l4) {
		bool http = o->hosts.n || o->not_hosts.n || o->methods.n || o->not_methods.n ||
		            o->paths.n || o->not_paths.n;

		return !http || c->lenient;
	}
	return host_ok(o, c) &&
	       aml_ok(&o->methods, &o->not_methods, r->method, r->method_len, false) &&
	       aml_ok(&o->paths, &o->not_paths, r->path, r->path_len, false);
}

static bool cond_match(const struct acond *w, const struct actx *c)
{
	const struct authz_req *r = c->r;
	const char *s = NULL;
	size_t len = 0;
	bool icase = false;

	switch (w->key) {
	case AK_SOURCE_IP: case AK_REMOTE_IP:
		return acl_ok(&w->cvalues, &w->not_cvalues, r->source);
	case AK_DEST_IP:
		return acl_ok(&w->cvalues, &w->not_cvalues, r->dest);
	case AK_DEST_PORT:
		return apl_ok(&w->pvalues, &w->not_pvalues, r->port);
	case AK_HEADER:
		if (r->l4)
			return c->lenient;
		if (!r->header || !r->header(r->header_ctx, w->header, &s, &len))
			s = NULL;
		break;
	case AK_SOURCE_NS:
		s = c->ns;
		len = c->nslen;
		break;
	case AK_SOURCE_PRINCIPAL:
		s = r->principal;
		len = c->plen;
		break;
	case AK_SNI:
		s = r->sni;
		len = s ? strlen(s) : 0;
		icase = true;
		break;
	}
	return aml_ok(&w->values, &w->not_values, s, len, icase);
}

static bool rule_match(const struct arule *ru, const struct actx *c)
{
	bool ok = ru->nfrom == 0;

	for (size_t i = 0; i < ru->nfrom && !ok; i++)
		ok = src_match(&ru->from[i], c);
	if (!ok)
		return false;
	ok = ru->nto == 0;
	for (size_t i = 0; i < ru->nto && !ok; i++)
		ok = op_match(&ru->to[i], c);
	if (!ok)
		return false;
	for (size_t i = 0; i < ru->nwhen; i++)
		if (!cond_match(&ru->when[i], c))
			return false;
	return true;
}

/* The first rule of the set's policies that matches, or NULL: the rules indexed under the
 * request's principal and the open ones, merged in policy order. */
static const struct arule *aset_match(const struct aset *s, struct actx *c, bool lenient)
{
	const uint32_t *l[3] = { NULL, NULL, s->open };
	size_t n[3] = { 0, 0, s->nopen }, at[3] = { 0, 0, 0 };

	if (!s->nrules)
		return NULL;
	c->lenient = lenient;
	if (!c->canonical) {
		for (size_t i = 0; i < s->nrules; i++)
			if (rule_match(s->rules[i], c))
				return s->rules[i];
		return NULL;
	}
	if (c->r->principal) {
		const struct abucket *b = idx_slot(&s->ix[AIX_PRINCIPAL], c->r->principal, c->plen);

		l[AIX_PRINCIPAL] = b->v;
		n[AIX_PRINCIPAL] = b->key ? b->n : 0;
	}
	if (c->ns) {
		const struct abucket *b = idx_slot(&s->ix[AIX_NAMESPACE], c->ns, c->nslen);

		l[AIX_NAMESPACE] = b->v;
		n[AIX_NAMESPACE] = b->key ? b->n : 0;
	}
	for (;;) {
		int best = -1;

		for (int w = 0; w < 3; w++)
			if (at[w] < n[w] && (best < 0 || l[w][at[w]] < l[best][at[best]]))
				best = w;
		if (best < 0)
			return NULL;
		if (rule_match(s->rules[l[best][at[best]]], c))
			return s->rules[l[best][at[best]]];
		at[best]++;
	}
}

static const char rbac_none[] = "rbac_access_denied_matched_policy[none]";

/* DENY, then ALLOW: Istio's order for one set of policies. */
static bool decide(const struct aset *deny, const struct aset *allow, struct actx *c,
                   const char **policy, const char **details)
{
	const struct arule *ru = aset_match(deny, c, true);

	if (ru) {
		*policy = ru->name;
		*details = ru->details;
		return true;
	}
	if (!allow->n)
		return false;
	if ((ru = aset_match(allow, c, false))) {
		*policy = ru->name;
		return false;
	}
	*details = rbac_none;
	return true;
}

void authz_eval(const struct authz *a, const struct authz_req *r, struct authz_result *out)
{
	const char *sdetails = NULL;
	struct actx c;

	memset(out, 0, sizeof(*out));
	if (!a)
		return;
	actx_init(&c, r);
	out->denied = decide(&a->deny, &a->allow, &c, &out->policy, &out->details);
	if (a->audit.n) {
		const struct arule *ru = aset_match(&a->audit, &c, true);

		out->audit = ru ? ru->name : NULL;
	}
	if (a->sdeny.n || a->sallow.n) {
		out->shadow = true;
		out->shadow_denied = decide(&a->sdeny, &a->sallow, &c, &out->shadow_policy,
		                            &sdetails);
	}
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

/* ---- path form ---- */

bool authz_path_normal(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];

		if (ch == '?' || ch == '#')
			break;
		if (ch == '\\')
			return false;
		if (ch == '%' && i + 2 < n) {
			char a = p[i + 1], b = (char)(p[i + 2] | 0x20);

			/* %2e ".", %2f "/", %5c "\": an upstream decoding them sees another path. */
			if ((a == '2' && (b == 'e' || b == 'f')) || (a == '5' && b == 'c'))
				return false;
		}
		if (ch != '/')
			continue;
		if (i + 1 < n && p[i + 1] == '/')
			return false;
		if (i + 1 < n && p[i + 1] == '.') {
			size_t k = i + 2;

			if (k < n && p[k] == '.')
				k++;
			if (k >= n || p[k] == '/' || p[k] == '?' || p[k] == '#')
				return false;
		}
	}
	return true;
}
