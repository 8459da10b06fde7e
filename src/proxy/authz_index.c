/* authz_index: the indexes that make an AuthorizationPolicy decision cost what the rules
 * that can match cost, not what all of them cost (see authz_int.h for the layout).
 *
 * Why these structures: Istio's values are exact, "prefix*", "*suffix" or "*". Exact values
 * hash. The "prefix*" patterns that a value v starts with are all prefixes of one another,
 * and all of them are prefixes of P, the greatest pattern (in byte order) not above v: any
 * pattern q that is a prefix of v lies between q and v, and every string there starts with
 * q. So a binary search finds P, and the chain of parents (each pattern's longest pattern
 * prefix, made once at build) walked down to the length P shares with v lists exactly the
 * matching ones. "*suffix" patterns are the same on reversed strings. A decision thus
 * costs a hash probe, two O(log n) searches and the length of the chains per attribute,
 * and then only the rules whose indexed field matches are tried. */
#include "proxy/authz_int.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>

/* ---- small pieces ---- */

static uint64_t key_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

/* The bucket of key in x: the one holding it, or the empty one where it would go. */
static struct abucket *idx_slot(const struct aindex *x, const char *k, size_t n)
{
	size_t i = (size_t)key_hash(k, n) & x->mask;

	while (x->v[i].key && !(x->v[i].keylen == n && memcmp(x->v[i].key, k, n) == 0))
		i = (i + 1) & x->mask;
	return &x->v[i];
}

static void u32_push(uint32_t **v, size_t *n, uint32_t x)
{
	if (*n && (*v)[*n - 1] == x)
		return;              /* the same rule twice under one key */
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = x;
}

static bool aml_has_any(const struct amlist *l)
{
	for (size_t k = 0; k < l->n; k++)
		if (l->v[k].k == AM_ANY)
			return true;
	return false;
}

/* ---- build ---- */

struct pent {                /* a pattern met while filing, before grouping */
	char *s;
	size_t len;
	uint32_t rule;
};

struct pents {
	struct pent *v;
	size_t n;
};

struct ibuild {              /* per attribute, while filing */
	struct pents pre, suf;
};

static int pent_cmp(const void *a, const void *b)
{
	const struct pent *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, n);

	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->rule < y->rule ? -1 : x->rule > y->rule;
}

static void pents_add(struct pents *p, const char *s, size_t len, bool reverse, uint32_t rule)
{
	char *c = xmalloc(len + 1);

	for (size_t i = 0; i < len; i++)
		c[i] = reverse ? s[len - 1 - i] : s[i];
	c[len] = '\0';
	p->v = xrealloc(p->v, (p->n + 1) * sizeof(*p->v));
	p->v[p->n++] = (struct pent){ c, len, rule };
}

/* Sorted, equal patterns merged (their rule lists ascending), parents linked. */
static void pats_make(struct pents *p, struct apat **out, size_t *nout)
{
	struct apat *v = NULL;
	ptrdiff_t *stack;
	size_t n = 0, depth = 0;

	if (!p->n) {
		*out = NULL;
		*nout = 0;
		return;
	}
	qsort(p->v, p->n, sizeof(*p->v), pent_cmp);
	v = xcalloc(p->n, sizeof(*v));
	for (size_t i = 0; i < p->n; i++) {
		if (n && v[n - 1].len == p->v[i].len && memcmp(v[n - 1].s, p->v[i].s, p->v[i].len) == 0) {
			free(p->v[i].s);
		} else {
			v[n].s = p->v[i].s;
			v[n].len = p->v[i].len;
			n++;
		}
		u32_push(&v[n - 1].v, &v[n - 1].n, p->v[i].rule);
	}
	/* In sorted order a pattern's extensions follow it, so a stack of the patterns that
	 * are prefixes of one another gives each its parent. */
	stack = xcalloc(n, sizeof(*stack));
	for (size_t i = 0; i < n; i++) {
		while (depth) {
			const struct apat *t = &v[stack[depth - 1]];

			if (t->len < v[i].len && memcmp(t->s, v[i].s, t->len) == 0)
				break;
			depth--;
		}
		v[i].parent = depth ? stack[depth - 1] : -1;
		stack[depth++] = (ptrdiff_t)i;
	}
	free(stack);
	free(p->v);
	*out = v;
	*nout = n;
}

enum { SLOT_EXACT, SLOT_PREFIX, SLOT_SUFFIX, SLOT_ANY, SLOT_N };

/* Where a value is filed: its slot and key. A serviceAccount ("NS/SA", matched whole
 * against the principal's namespace and account) is filed as its exact NS. False for a
 * value that can match nothing. */
static bool value_key(const struct amatch *m, bool sas, int *slot, const char **key,
                      size_t *klen)
{
	static const int slots[] = { [AM_EXACT] = SLOT_EXACT, [AM_PREFIX] = SLOT_PREFIX,
	                             [AM_SUFFIX] = SLOT_SUFFIX, [AM_ANY] = SLOT_ANY };

	*key = m->s;
	*klen = m->len;
	if (sas) {
		const char *slash = memchr(m->s, '/', m->len);

		*slot = SLOT_EXACT;
		*klen = slash ? (size_t)(slash - m->s) : 0;
		return slash != NULL;
	}
	*slot = slots[m->k];
	return true;
}

/* Files rule r under every value of l as attribute w. */
static void file_list(struct aset *s, struct ibuild *b, int w, const struct amlist *l,
                      bool sas, uint32_t r)
{
	struct apatix *x = &s->ix[w];

	for (size_t k = 0; k < l->n; k++) {
		struct abucket *bk;
		const char *key;
		size_t klen;
		int slot;

		if (!value_key(&l->v[k], sas, &slot, &key, &klen))
			continue;
		switch (slot) {
		case SLOT_ANY:
			u32_push(&x->any, &x->nany, r);
			break;
		case SLOT_PREFIX:
			pents_add(&b[w].pre, key, klen, false, r);
			break;
		case SLOT_SUFFIX:
			pents_add(&b[w].suf, key, klen, true, r);
			break;
		default:
			bk = idx_slot(&x->exact, key, klen);
			bk->key = key;
			bk->keylen = klen;
			u32_push(&bk->v, &bk->n, r);
			break;
		}
	}
}

/* How many rules name each value (per attribute and slot), to choose for each rule the
 * field whose values other rules share least: a host that one rule names narrows more than
 * a principal pattern every rule names. */
struct counts {
	struct aindex v[AIX_N][SLOT_N];
	size_t nrules;
};

/* Counts l's values (add) or returns the rules that share them: the cost of filing a
 * rule under l ("*" costs every rule). */
static size_t count_list(struct counts *c, int w, const struct amlist *l, bool sas, bool add)
{
	size_t cost = 0;

	for (size_t k = 0; k < l->n; k++) {
		struct abucket *bk;
		const char *key;
		size_t klen;
		int slot;

		if (!value_key(&l->v[k], sas, &slot, &key, &klen))
			continue;
		if (slot == SLOT_ANY) {
			cost += c->nrules;
			continue;
		}
		bk = idx_slot(&c->v[w][slot], key, klen);
		if (add) {
			bk->key = key;
			bk->keylen = klen;
			bk->n++;
		}
		cost += bk->n;
	}
	return cost;
}

/* The list a source is filed under: the first of principals, namespaces, serviceAccounts
 * that has no "*" (presence narrows little), else one that has; false when the source
 * leaves the identity free. */
static bool src_key(const struct asource *src, int *w, const struct amlist **l, bool *sas)
{
	const struct amlist *c[3] = { &src->principals, &src->namespaces, &src->sas };
	const int cw[3] = { AIX_PRINCIPAL, AIX_NAMESPACE, AIX_NAMESPACE };

	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < 3; i++)
			if (c[i]->n && (pass || !aml_has_any(c[i]))) {
				*w = cw[i];
				*l = c[i];
				*sas = i == 2;
				return true;
			}
	return false;
}

/* An operation's list for an HTTP-only index. */
static const struct amlist *op_list(const struct aop *o, int w)
{
	return w == AIX_HOST ? &o->hosts : &o->paths;
}

/* The index a condition's values can be filed under (they must match for the rule to):
 * -1 for keys not indexed and for conditions with only notValues. */
static int cond_index(const struct acond *w)
{
	if (!w->values.n)
		return -1;
	switch (w->key) {
	case AK_SOURCE_PRINCIPAL:
		return AIX_PRINCIPAL;
	case AK_SOURCE_NS:
		return AIX_NAMESPACE;
	case AK_SNI:
		return AIX_SNI;
	default:
		return -1;
	}
}

enum { BY_NONE, BY_SRC, BY_OP, BY_WHEN };

struct choice {
	int how;                 /* BY_* */
	int w;                   /* BY_OP, BY_WHEN: the index */
	size_t i;                /* BY_WHEN: the condition */
	size_t cost;
};

static void consider(struct choice *best, int how, int w, size_t i, size_t cost)
{
	if (cost < best->cost)
		*best = (struct choice){ how, w, i, cost };
}

/* The way of filing the rule that costs least: by its sources, by its operations' hosts
 * or paths, or by one of its conditions (SIZE_MAX: cannot be; earlier ways win ties).
 * With add, its values are counted first (every way's). */
static void rule_choose(struct counts *c, const struct arule *ru, bool add, struct choice *best)
{
	const struct amlist *l;
	size_t cost;
	bool sas;
	int w;

	*best = (struct choice){ BY_NONE, -1, 0, SIZE_MAX };
	cost = ru->nfrom ? 0 : SIZE_MAX;
	for (size_t i = 0; cost != SIZE_MAX && i < ru->nfrom; i++)
		cost = src_key(&ru->from[i], &w, &l, &sas) ?
		       cost + count_list(c, w, l, sas, add) : SIZE_MAX;
	consider(best, BY_SRC, -1, 0, cost);
	for (w = AIX_HOST; w <= AIX_PATH; w++) {
		cost = ru->nto ? 0 : SIZE_MAX;
		for (size_t i = 0; cost != SIZE_MAX && i < ru->nto; i++) {
			l = op_list(&ru->to[i], w);
			cost = l->n ? cost + count_list(c, w, l, false, add) : SIZE_MAX;
		}
		consider(best, BY_OP, w, 0, cost);
	}
	for (size_t i = 0; i < ru->nwhen; i++) {
		w = cond_index(&ru->when[i]);
		if (w >= 0)
			consider(best, BY_WHEN, w, i,
			         count_list(c, w, &ru->when[i].values, false, add));
	}
}

/* Files rule r the way rule_choose says: by its sources (it matches only if one source
 * does, and a source only if its list does), by its hosts or paths (only if one
 * operation's do), or by a condition (conditions are ANDed: that one's values must
 * match); else it is open. */
static void file_rule(struct aset *s, struct ibuild *b, struct counts *c,
                      const struct arule *ru, uint32_t r)
{
	const struct amlist *l;
	struct choice ch;
	bool sas;
	int w;

	rule_choose(c, ru, false, &ch);
	switch (ch.how) {
	case BY_SRC:
		for (size_t i = 0; i < ru->nfrom; i++) {
			src_key(&ru->from[i], &w, &l, &sas);
			file_list(s, b, w, l, sas, r);
		}
		return;
	case BY_OP:
		for (size_t i = 0; i < ru->nto; i++)
			file_list(s, b, ch.w, op_list(&ru->to[i], ch.w), false, r);
		break;
	case BY_WHEN:
		file_list(s, b, ch.w, &ru->when[ch.i].values, false, r);
		break;
	default:
		u32_push(&s->open, &s->nopen, r);
		return;
	}
	u32_push(&s->filed[ch.w], &s->nfiled[ch.w], r);
}

/* An empty hash of room for n keys (at most half full, so probes stay short). */
static void idx_init(struct aindex *x, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	x->mask = cap - 1;
	x->v = xcalloc(cap, sizeof(*x->v));
}

void authz_index_build(struct aset *s)
{
	struct ibuild b[AIX_N];
	struct counts c;
	size_t nkeys[AIX_N] = { 0 };
	struct choice unused;

	memset(b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < s->n; i++)
		for (size_t k = 0; k < s->v[i]->nrules; k++) {
			const struct arule *ru = &s->v[i]->rules[k];

			s->rules = xrealloc(s->rules, (s->nrules + 1) * sizeof(*s->rules));
			s->rules[s->nrules++] = ru;
			for (size_t f = 0; f < ru->nfrom; f++) {
				nkeys[AIX_PRINCIPAL] += ru->from[f].principals.n;
				nkeys[AIX_NAMESPACE] += ru->from[f].namespaces.n + ru->from[f].sas.n;
			}
			for (size_t t = 0; t < ru->nto; t++) {
				nkeys[AIX_HOST] += ru->to[t].hosts.n;
				nkeys[AIX_PATH] += ru->to[t].paths.n;
			}
			for (size_t k2 = 0; k2 < ru->nwhen; k2++) {
				int w = cond_index(&ru->when[k2]);

				if (w >= 0)
					nkeys[w] += ru->when[k2].values.n;
			}
		}
	c.nrules = s->nrules;
	for (int w = 0; w < AIX_N; w++) {
		idx_init(&s->ix[w].exact, nkeys[w]);
		for (int k = 0; k < SLOT_N; k++)
			idx_init(&c.v[w][k], nkeys[w]);
	}
	for (size_t r = 0; r < s->nrules; r++)
		rule_choose(&c, s->rules[r], true, &unused);
	for (size_t r = 0; r < s->nrules; r++)
		file_rule(s, b, &c, s->rules[r], (uint32_t)r);
	for (int w = 0; w < AIX_N; w++) {
		pats_make(&b[w].pre, &s->ix[w].pre, &s->ix[w].npre);
		pats_make(&b[w].suf, &s->ix[w].suf, &s->ix[w].nsuf);
		for (int k = 0; k < SLOT_N; k++)
			free(c.v[w][k].v);
	}
}

static void pats_free(struct apat *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].s);
		free(v[i].v);
	}
	free(v);
}

void authz_index_fini(struct aset *s)
{
	for (int w = 0; w < AIX_N; w++) {
		struct apatix *x = &s->ix[w];

		for (size_t i = 0; x->exact.v && i <= x->exact.mask; i++)
			free(x->exact.v[i].v);
		free(x->exact.v);
		pats_free(x->pre, x->npre);
		pats_free(x->suf, x->nsuf);
		free(x->any);
	}
	for (int w = 0; w < AIX_N; w++)
		free(s->filed[w]);
	free(s->open);
	free(s->rules);
	free(s->v);
}

/* ---- lookup ---- */

struct lists {
	struct aidlist *v;
	size_t n, max;
	bool over;
};

static void lists_add(struct lists *l, const uint32_t *v, size_t n)
{
	if (!n)
		return;
	if (l->n == l->max) {
		l->over = true;
		return;
	}
	l->v[l->n++] = (struct aidlist){ v, n };
}

/* Byte i of q as the patterns are stored: reversed for suffixes. */
static inline unsigned char qat(const char *q, size_t qlen, size_t i, bool rev)
{
	return (unsigned char)(rev ? q[qlen - 1 - i] : q[i]);
}

/* The patterns of v[0..n) that are prefixes of q (read reversed when rev). */
static void pats_lookup(const struct apat *v, size_t n, const char *q, size_t qlen, bool rev,
                        struct lists *out)
{
	size_t lo = 0, hi = n, common = 0;
	ptrdiff_t j;

	/* The greatest pattern not above q: its index is lo - 1 at the end. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2, m = v[mid].len < qlen ? v[mid].len : qlen, i = 0;
		int c = 0;

		while (i < m && (unsigned char)v[mid].s[i] == qat(q, qlen, i, rev))
			i++;
		if (i < m)
			c = (unsigned char)v[mid].s[i] < qat(q, qlen, i, rev) ? -1 : 1;
		else
			c = v[mid].len <= qlen ? -1 : 1;
		if (c <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return;
	j = (ptrdiff_t)lo - 1;
	while (common < v[j].len && common < qlen &&
	       (unsigned char)v[j].s[common] == qat(q, qlen, common, rev))
		common++;
	while (j >= 0 && v[j].len > common)
		j = v[j].parent;
	for (; j >= 0; j = v[j].parent)
		lists_add(out, v[j].v, v[j].n);
}

static void attr_lookup(const struct apatix *x, const char *q, size_t qlen, struct lists *out)
{
	const struct abucket *b;

	if (!q)
		return;
	b = idx_slot(&x->exact, q, qlen);
	if (b->key)
		lists_add(out, b->v, b->n);
	pats_lookup(x->pre, x->npre, q, qlen, false, out);
	pats_lookup(x->suf, x->nsuf, q, qlen, true, out);
	lists_add(out, x->any, x->nany);
}

int authz_index_lookup(const struct aset *s, const struct aquery *q, struct aidlist *out,
                       size_t max)
{
	struct lists l = { out, 0, max, false };

	lists_add(&l, s->open, s->nopen);
	attr_lookup(&s->ix[AIX_PRINCIPAL], q->principal, q->principal_len, &l);
	attr_lookup(&s->ix[AIX_NAMESPACE], q->ns, q->ns_len, &l);
	if (q->all[AIX_HOST]) {
		lists_add(&l, s->filed[AIX_HOST], s->nfiled[AIX_HOST]);
	} else {
		attr_lookup(&s->ix[AIX_HOST], q->host[0], q->host_len[0], &l);
		attr_lookup(&s->ix[AIX_HOST], q->host[1], q->host_len[1], &l);
	}
	if (q->all[AIX_PATH])
		lists_add(&l, s->filed[AIX_PATH], s->nfiled[AIX_PATH]);
	else
		attr_lookup(&s->ix[AIX_PATH], q->path, q->path_len, &l);
	if (q->all[AIX_SNI])
		lists_add(&l, s->filed[AIX_SNI], s->nfiled[AIX_SNI]);
	else
		attr_lookup(&s->ix[AIX_SNI], q->sni, q->sni_len, &l);
	return l.over ? -1 : (int)l.n;
}
