/* re_comp: the parser and compiler of core/re (RE2 syntax to a Pike VM program).
 *
 * The parser is recursive descent over the pattern (never over the input), nesting
 * bounded by RE_MAX_DEPTH; it builds a tree of nodes in one array. The compiler walks it
 * and emits the program, expanding counted repetitions, so the RE_MAX_INST check sees
 * the real cost (RE2 refuses by the same measure, its max_mem). Errors are RE2's
 * messages with the offset in the pattern. */
#include "core/re_int.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RE_MAX_DEPTH 1000      /* group nesting (RE2: max nesting depth 1000) */

struct re_parser {
	const char *p0, *p, *end;
	unsigned flags;
	int depth;
	struct re_node *nodes;
	size_t nnodes, capnodes;
	struct re *re;
	size_t capclasses, capranges;
	/* named groups: offsets into the pattern, for the duplicate check */
	struct { const char *s; size_t n; } *names;
	size_t nnames;
	char *err;
	size_t errlen;
	bool failed;
};

static void re_fail(struct re_parser *ps, const char *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void re_fail(struct re_parser *ps, const char *at, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (ps->failed)
		return;
	ps->failed = true;
	if (!ps->err || !ps->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(ps->err, ps->errlen, fmt, ap);
	va_end(ap);
	n = strlen(ps->err);
	if (at && n < ps->errlen)
		snprintf(ps->err + n, ps->errlen - n, " (at offset %zu)", (size_t)(at - ps->p0));
}

/* ---- tree ---- */

static uint32_t re_node_new(struct re_parser *ps, uint8_t kind)
{
	struct re_node *n;

	if (ps->nnodes == ps->capnodes) {
		ps->capnodes = ps->capnodes ? ps->capnodes * 2 : 32;
		ps->nodes = xrealloc(ps->nodes, ps->capnodes * sizeof(*ps->nodes));
	}
	n = &ps->nodes[ps->nnodes];
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->child = n->next = n->last = RE_NONE;
	return (uint32_t)ps->nnodes++;
}

static void re_node_append(struct re_parser *ps, uint32_t parent, uint32_t child)
{
	struct re_node *p = &ps->nodes[parent];

	if (p->child == RE_NONE)
		p->child = child;
	else
		ps->nodes[p->last].next = child;
	ps->nodes[parent].last = child;
}

/* ---- classes ---- */

struct re_rset {
	struct re_range *v;
	size_t n, cap;
};

static void re_rset_add(struct re_rset *r, uint32_t lo, uint32_t hi)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 8;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->n].lo = lo;
	r->v[r->n].hi = hi;
	r->n++;
}

static int re_range_cmp(const void *a, const void *b)
{
	const struct re_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

static void re_rset_norm(struct re_rset *r)
{
	size_t k = 0;

	if (!r->n)
		return;
	qsort(r->v, r->n, sizeof(*r->v), re_range_cmp);
	for (size_t i = 1; i < r->n; i++) {
		if (r->v[i].lo <= r->v[k].hi + 1) {
			if (r->v[i].hi > r->v[k].hi)
				r->v[k].hi = r->v[i].hi;
		} else {
			r->v[++k] = r->v[i];
		}
	}
	r->n = k + 1;
}

/* Adds the other case of every ASCII letter in r (after norm). */
static void re_rset_fold(struct re_rset *r)
{
	size_t n = r->n;

	for (size_t i = 0; i < n; i++) {
		uint32_t lo = r->v[i].lo, hi = r->v[i].hi;
		uint32_t a = lo > 'a' ? lo : 'a', b = hi < 'z' ? hi : 'z';

		if (a <= b)
			re_rset_add(r, a - 32, b - 32);
		a = lo > 'A' ? lo : 'A';
		b = hi < 'Z' ? hi : 'Z';
		if (a <= b)
			re_rset_add(r, a + 32, b + 32);
	}
	re_rset_norm(r);
}

static void re_rset_negate(struct re_rset *r)
{
	struct re_rset o = { 0 };
	uint32_t next = 0;

	for (size_t i = 0; i < r->n; i++) {
		if (r->v[i].lo > next)
			re_rset_add(&o, next, r->v[i].lo - 1);
		next = r->v[i].hi + 1;
	}
	if (next <= RE_MAXCP)
		re_rset_add(&o, next, RE_MAXCP);
	free(r->v);
	*r = o;
}

/* The Perl classes \d \s \w (upper case: negated), into r. */
static void re_perl_class(struct re_rset *r, char c)
{
	struct re_rset t = { 0 };

	switch (c | 0x20) {
	case 'd':
		re_rset_add(&t, '0', '9');
		break;
	case 's':
		re_rset_add(&t, '\t', '\n');
		re_rset_add(&t, '\f', '\r');
		re_rset_add(&t, ' ', ' ');
		break;
	default: /* w */
		re_rset_add(&t, '0', '9');
		re_rset_add(&t, 'A', 'Z');
		re_rset_add(&t, '_', '_');
		re_rset_add(&t, 'a', 'z');
		break;
	}
	if (c >= 'A' && c <= 'Z') {
		re_rset_norm(&t);
		re_rset_negate(&t);
	}
	for (size_t i = 0; i < t.n; i++)
		re_rset_add(r, t.v[i].lo, t.v[i].hi);
	free(t.v);
}

static const struct {
	const char *name;
	const char *ranges;        /* pairs lo,hi */
} re_posix[] = {
	{ "alnum", "09AZaz" }, { "alpha", "AZaz" }, { "ascii", "\x01\x7f" },
	{ "blank", "\t\t  " }, { "cntrl", "\x01\x1f\x7f\x7f" }, { "digit", "09" },
	{ "graph", "!~" }, { "lower", "az" }, { "print", " ~" },
	{ "punct", "!/:@[`{~" }, { "space", "\t\r  " }, { "upper", "AZ" },
	{ "word", "09AZ__az" }, { "xdigit", "09AFaf" },
};

/* [:name:] or [:^name:] at ps->p (which points at "[:"). Returns 1 if one was read. */
static int re_posix_class(struct re_parser *ps, struct re_rset *r)
{
	const char *s = ps->p + 2, *e;
	bool neg = false;
	struct re_rset t = { 0 };

	e = s;
	while (e + 1 < ps->end && !(e[0] == ':' && e[1] == ']'))
		e++;
	if (e + 1 >= ps->end)
		return 0;
	if (*s == '^') {
		neg = true;
		s++;
	}
	for (size_t i = 0; i < sizeof(re_posix) / sizeof(re_posix[0]); i++) {
		const char *rg = re_posix[i].ranges;

		if (strlen(re_posix[i].name) != (size_t)(e - s) ||
		    memcmp(re_posix[i].name, s, (size_t)(e - s)) != 0)
			continue;
		for (; *rg; rg += 2)
			re_rset_add(&t, (unsigned char)rg[0], (unsigned char)rg[1]);
		if (strcmp(re_posix[i].name, "ascii") == 0 || strcmp(re_posix[i].name, "cntrl") == 0)
			t.v[0].lo = 0;
		re_rset_norm(&t);
		if (neg)
			re_rset_negate(&t);
		for (size_t j = 0; j < t.n; j++)
			re_rset_add(r, t.v[j].lo, t.v[j].hi);
		free(t.v);
		ps->p = e + 2;
		return 1;
	}
	re_fail(ps, ps->p, "invalid character class range: %.*s", (int)(e + 2 - ps->p), ps->p);
	return -1;
}

static uint32_t re_class_node(struct re_parser *ps, struct re_rset *r)
{
	struct re *re = ps->re;
	struct re_class *c;
	uint32_t n = re_node_new(ps, N_CLASS);

	if (re->nclasses == ps->capclasses) {
		ps->capclasses = ps->capclasses ? ps->capclasses * 2 : 4;
		re->classes = xrealloc(re->classes, ps->capclasses * sizeof(*re->classes));
	}
	c = &re->classes[re->nclasses];
	memset(c, 0, sizeof(*c));
	c->first = (uint32_t)re->nranges;
	c->n = (uint32_t)r->n;
	for (size_t i = 0; i < r->n; i++) {
		if (re->nranges == ps->capranges) {
			ps->capranges = ps->capranges ? ps->capranges * 2 : 16;
			re->ranges = xrealloc(re->ranges, ps->capranges * sizeof(*re->ranges));
		}
		re->ranges[re->nranges++] = r->v[i];
		for (uint32_t ch = r->v[i].lo; ch <= r->v[i].hi && ch < 128; ch++)
			c->ascii[ch >> 5] |= 1u << (ch & 31);
	}
	ps->nodes[n].a = (int32_t)re->nclasses++;
	return n;
}

/* ---- escapes ---- */

static int re_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A character escape at ps->p (just after the backslash): sets *cp and returns 0, or
 * returns 1 for a Perl class letter (left at ps->p), -1 on error. */
static int re_escape_char(struct re_parser *ps, uint32_t *cp)
{
	const char *bs = ps->p - 1;
	size_t n;
	char c;

	if (ps->p >= ps->end) {
		re_fail(ps, bs, "trailing \\");
		return -1;
	}
	c = *ps->p;
	switch (c) {
	case '1': case '2': case '3': case '4': case '5': case '6': case '7':
		/* A lone digit is a backreference, which RE2 does not have. */
		if (ps->p + 1 >= ps->end || ps->p[1] < '0' || ps->p[1] > '7')
			break;
		/* fall through */
	case '0': {
		uint32_t v = 0;

		for (int i = 0; i < 3 && ps->p < ps->end && *ps->p >= '0' && *ps->p <= '7'; i++)
			v = v * 8 + (uint32_t)(*ps->p++ - '0');
		*cp = v;
		return 0;
	}
	case 'x': {
		uint32_t v = 0;
		int h1, h2;

		ps->p++;
		if (ps->p < ps->end && *ps->p == '{') {
			const char *q = ps->p + 1;
			int nd = 0;

			while (q < ps->end && re_hex(*q) >= 0 && v <= RE_MAXCP) {
				v = v * 16 + (uint32_t)re_hex(*q++);
				nd++;
			}
			if (q >= ps->end || *q != '}' || nd == 0 || v > RE_MAXCP)
				goto bad;
			ps->p = q + 1;
			*cp = v;
			return 0;
		}
		if (ps->p + 1 >= ps->end || (h1 = re_hex(ps->p[0])) < 0 ||
		    (h2 = re_hex(ps->p[1])) < 0)
			goto bad;
		ps->p += 2;
		*cp = (uint32_t)(h1 * 16 + h2);
		return 0;
	}
	case 'a': *cp = 7; ps->p++; return 0;
	case 'f': *cp = '\f'; ps->p++; return 0;
	case 't': *cp = '\t'; ps->p++; return 0;
	case 'n': *cp = '\n'; ps->p++; return 0;
	case 'r': *cp = '\r'; ps->p++; return 0;
	case 'v': *cp = '\v'; ps->p++; return 0;
	case 'd': case 'D': case 's': case 'S': case 'w': case 'W':
		return 1;
	case 'p': case 'P':
		re_fail(ps, bs, "Unicode character classes are not supported by egressgw: \\%c", c);
		return -1;
	case 'C':
		re_fail(ps, bs, "\\C (any byte) is not supported by egressgw");
		return -1;
	default:
		if ((unsigned char)c < 0x80 && !re_is_word((unsigned char)c)) {
			*cp = (unsigned char)c;
			ps->p++;
			return 0;
		}
		break;
	}
bad:
	(void)re_decode((const unsigned char *)bs + 1, (size_t)(ps->end - bs - 1), &n);
	re_fail(ps, bs, "invalid escape sequence: %.*s", (int)(n + 1), bs);
	return -1;
}

/* One literal character of the pattern at ps->p (not an escape). */
static int re_pattern_char(struct re_parser *ps, uint32_t *cp)
{
	size_t n;

	*cp = re_decode((const unsigned char *)ps->p, (size_t)(ps->end - ps->p), &n);
	if (*cp == RE_BAD) {
		re_fail(ps, ps->p, "invalid UTF-8");
		return -1;
	}
	ps->p += n;
	return 0;
}

static bool re_fold_refused(struct re_parser *ps, const char *at, uint32_t c)
{
	if ((ps->flags & F_I) && c >= 0x80) {
		re_fail(ps, at, "case-insensitive matching of non-ASCII characters is not "
		        "supported by egressgw");
		return true;
	}
	return false;
}

/* [...] at ps->p. */
static uint32_t re_parse_class(struct re_parser *ps)
{
	const char *open = ps->p;
	struct re_rset r = { 0 };
	bool neg = false, first = true;
	uint32_t node = RE_NONE;

	ps->p++;
	if (ps->p < ps->end && *ps->p == '^') {
		neg = true;
		ps->p++;
	}
	for (;;) {
		uint32_t lo, hi;
		const char *at = ps->p;
		int k;

		if (ps->p >= ps->end) {
			re_fail(ps, open, "missing closing ]: %.*s", (int)(ps->end - open), open);
			goto out;
		}
		if (*ps->p == ']' && !first)
			break;
		first = false;
		if (ps->p + 1 < ps->end && ps->p[0] == '[' && ps->p[1] == ':') {
			k = re_posix_class(ps, &r);
			if (k < 0)
				goto out;
			if (k > 0)
				continue;
		}
		if (*ps->p == '\\') {
			ps->p++;
			k = re_escape_char(ps, &lo);
			if (k < 0)
				goto out;
			if (k > 0) {
				re_perl_class(&r, *ps->p++);
				continue;
			}
		} else if (re_pattern_char(ps, &lo) < 0) {
			goto out;
		}
		hi = lo;
		if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
			ps->p++;
			if (*ps->p == '\\') {
				ps->p++;
				k = re_escape_char(ps, &hi);
				if (k < 0)
					goto out;
				if (k > 0) {
					re_fail(ps, at, "invalid character class range: %.*s",
					        (int)(ps->p + 1 - at), at);
					goto out;
				}
			} else if (re_pattern_char(ps, &hi) < 0) {
				goto out;
			}
			if (hi < lo) {
				re_fail(ps, at, "invalid character class range: %.*s",
				        (int)(ps->p - at), at);
				goto out;
			}
		}
		if (re_fold_refused(ps, at, hi))
			goto out;
		re_rset_add(&r, lo, hi);
	}
	ps->p++;
	re_rset_norm(&r);
	if (ps->flags & F_I)
		re_rset_fold(&r);
	if (neg)
		re_rset_negate(&r);
	node = re_class_node(ps, &r);
out:
	free(r.v);
	return node;
}

/* ---- parser ---- */

static uint32_t re_parse_alt(struct re_parser *ps);

static uint32_t re_lit(struct re_parser *ps, uint32_t c)
{
	uint32_t n = re_node_new(ps, N_LIT);
	bool fold = (ps->flags & F_I) && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');

	ps->nodes[n].a = (int32_t)(fold ? (c | 0x20) : c);
	ps->nodes[n].fold = fold;
	return n;
}

static uint32_t re_assert(struct re_parser *ps, int kind)
{
	uint32_t n = re_node_new(ps, N_ASSERT);

	ps->nodes[n].a = kind;
	return n;
}

/* "(?flags)" or "(?flags:" at ps->p (just after "(?"). Returns 1 for a group with flags
 * (":" read), 0 for flags alone (")" read), -1 on error. */
static int re_parse_flags(struct re_parser *ps, const char *open)
{
	bool neg = false, any = false;

	for (; ps->p < ps->end; ps->p++) {
		unsigned f;

		switch (*ps->p) {
		case 'i': f = F_I; break;
		case 'm': f = F_M; break;
		case 's': f = F_S; break;
		case 'U': f = F_U; break;
		case '-':
			if (neg)
				goto bad;
			neg = true;
			any = false;
			continue;
		case ':':
		case ')':
			/* "(?:" has no flags; "(?)", "(?i-)" and "(?-:" are errors. */
			if (!any && (neg || *ps->p == ')'))
				goto bad;
			return *ps->p++ == ':' ? 1 : 0;
		default:
			goto bad;
		}
		any = true;
		if (neg)
			ps->flags &= ~f;
		else
			ps->flags |= f;
	}
bad:
	re_fail(ps, open, "invalid or unsupported Perl syntax: %.*s",
	        (int)((ps->p < ps->end ? ps->p + 1 : ps->end) - open), open);
	return -1;
}

/* A group at ps->p ("("). */
static uint32_t re_parse_group(struct re_parser *ps)
{
	const char *open = ps->p;
	unsigned saved = ps->flags;
	uint32_t node = RE_NONE, inner;
	int group = -1;

	if (++ps->depth > RE_MAX_DEPTH) {
		re_fail(ps, open, "expression nests too deeply");
		return RE_NONE;
	}
	ps->p++;
	if (ps->p < ps->end && *ps->p == '?') {
		const char *name;

		ps->p++;
		if (ps->p < ps->end && (*ps->p == 'P' || *ps->p == '<')) {
			if (*ps->p == 'P')
				ps->p++;
			if (ps->p >= ps->end || *ps->p != '<') {
				re_fail(ps, open, "invalid named capture group: %.*s",
				        (int)(ps->p - open), open);
				goto out;
			}
			name = ++ps->p;
			while (ps->p < ps->end && re_is_word((unsigned char)*ps->p))
				ps->p++;
			if (ps->p >= ps->end || *ps->p != '>' || ps->p == name) {
				re_fail(ps, open, "invalid named capture group: %.*s",
				        (int)((ps->p < ps->end ? ps->p + 1 : ps->end) - open), open);
				goto out;
			}
			for (size_t i = 0; i < ps->nnames; i++)
				if (ps->names[i].n == (size_t)(ps->p - name) &&
				    memcmp(ps->names[i].s, name, ps->names[i].n) == 0) {
					re_fail(ps, open, "duplicate capture group name: %.*s",
					        (int)(ps->p - name), name);
					goto out;
				}
			ps->names = xrealloc(ps->names, (ps->nnames + 1) * sizeof(*ps->names));
			ps->names[ps->nnames].s = name;
			ps->names[ps->nnames++].n = (size_t)(ps->p - name);
			ps->p++;
			group = ++ps->re->ngroups;
		} else {
			int k = re_parse_flags(ps, open);

			if (k < 0)
				goto out;
			if (k == 0) {
				/* (?i) alone: the flags hold to the end of the enclosing group. */
				ps->depth--;
				return re_node_new(ps, N_EMPTY);
			}
		}
	} else {
		group = ++ps->re->ngroups;
	}
	inner = re_parse_alt(ps);
	if (ps->failed)
		goto out;
	if (ps->p >= ps->end || *ps->p != ')') {
		/* RE2 names the whole pattern here. */
		re_fail(ps, open, "missing closing ): %s", ps->p0);
		goto out;
	}
	ps->p++;
	if (group >= 0) {
		node = re_node_new(ps, N_CAP);
		ps->nodes[node].a = group;
		ps->nodes[node].child = inner;
	} else {
		node = inner;
	}
	ps->flags = saved;
out:
	ps->depth--;
	return node;
}

/* {n}, {n,}, {n,m} at ps->p. Returns 1 (and advances) if there is one, 0 if the "{" is a
 * literal, -1 if the bounds are out of range. */
static int re_parse_braces(struct re_parser *ps, int *min, int *max)
{
	const char *q = ps->p + 1;
	long lo = 0, hi;
	int nd = 0;

	while (q < ps->end && *q >= '0' && *q <= '9' && lo <= 100000) {
		lo = lo * 10 + (*q++ - '0');
		nd++;
	}
	if (!nd || q >= ps->end)
		return 0;
	hi = lo;
	if (*q == ',') {
		q++;
		nd = 0;
		hi = 0;
		while (q < ps->end && *q >= '0' && *q <= '9' && hi <= 100000) {
			hi = hi * 10 + (*q++ - '0');
			nd++;
		}
		if (!nd)
			hi = -1;
	}
	if (q >= ps->end || *q != '}')
		return 0;
	if (lo > RE_MAX_REPEAT || hi > RE_MAX_REPEAT || (hi >= 0 && hi < lo)) {
		re_fail(ps, ps->p, "bad repetition operator: %.*s", (int)(q + 1 - ps->p), ps->p);
		return -1;
	}
	*min = (int)lo;
	*max = (int)hi;
	ps->p = q + 1;
	return 1;
}

/* A repetition operator at ps->p? Sets min/max and advances. 1 yes, 0 no, -1 error. */
static int re_parse_repop(struct re_parser *ps, int *min, int *max)
{
	switch (*ps->p) {
	case '*': *min = 0; *max = -1; ps->p++; return 1;
	case '+': *min = 1; *max = -1; ps->p++; return 1;
	case '?': *min = 0; *max = 1; ps->p++; return 1;
	case '{': return re_parse_braces(ps, min, max);
	default: return 0;
	}
}

static uint32_t re_parse_atom(struct re_parser *ps)
{
	uint32_t c, n;
	int k;

	switch (*ps->p) {
	case '(':
		return re_parse_group(ps);
	case '[':
		return re_parse_class(ps);
	case '.':
		ps->p++;
		n = re_node_new(ps, N_ANY);
		ps->nodes[n].nl = (ps->flags & F_S) != 0;
		return n;
	case '^':
		ps->p++;
		return re_assert(ps, (ps->flags & F_M) ? A_BOL : A_BOT);
	case '$':
		ps->p++;
		return re_assert(ps, (ps->flags & F_M) ? A_EOL : A_EOT);
	case '\\':
		ps->p++;
		if (ps->p < ps->end) {
			switch (*ps->p) {
			case 'A': ps->p++; return re_assert(ps, A_BOT);
			case 'z': ps->p++; return re_assert(ps, A_EOT);
			case 'b': ps->p++; return re_assert(ps, A_WB);
			case 'B': ps->p++; return re_assert(ps, A_NWB);
			default:
				break;
			}
		}
		k = re_escape_char(ps, &c);
		if (k < 0)
			return RE_NONE;
		if (k > 0) {
			struct re_rset r = { 0 };

			re_perl_class(&r, *ps->p++);
			re_rset_norm(&r);
			n = re_class_node(ps, &r);
			free(r.v);
			return n;
		}
		if (re_fold_refused(ps, ps->p - 1, c))
			return RE_NONE;
		return re_lit(ps, c);
	default: {
		const char *at = ps->p;

		if (re_pattern_char(ps, &c) < 0 || re_fold_refused(ps, at, c))
			return RE_NONE;
		return re_lit(ps, c);
	}
	}
}

/* \Q...\E at ps->p: literal text (RE2 accepts it). All characters but the last go
 * into cat; the last is returned, for a repetition operator after \E applies to it
 * alone, as in RE2 and Perl. */
static uint32_t re_parse_quote(struct re_parser *ps, uint32_t cat)
{
	uint32_t last = RE_NONE, c;

	ps->p += 2;
	while (ps->p < ps->end && !(ps->p[0] == '\\' && ps->p + 1 < ps->end && ps->p[1] == 'E')) {
		const char *at = ps->p;

		if (re_pattern_char(ps, &c) < 0 || re_fold_refused(ps, at, c))
			return RE_NONE;
		if (last != RE_NONE)
			re_node_append(ps, cat, last);
		last = re_lit(ps, c);
	}
	if (ps->p < ps->end)
		ps->p += 2;
	return last != RE_NONE ? last : re_node_new(ps, N_EMPTY);
}

/* A concatenation. The last atom stays pending until the next one comes, for a
 * repetition operator applies to it even across flag groups: RE2 reads "b(?i)?" as
 * "b?" (flags are not atoms), and "(?i)?" at the start has no argument. */
static uint32_t re_parse_cat(struct re_parser *ps)
{
	uint32_t cat = re_node_new(ps, N_CAT), pending = RE_NONE;
	const char *repeated = NULL;   /* the operator just applied to pending, if any */

	while (ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
		const char *opstart = ps->p;
		uint32_t atom;
		int min, max, k;

		k = re_parse_repop(ps, &min, &max);
		if (k < 0)
			return RE_NONE;
		if (k > 0) {
			uint32_t rep;
			bool lazy = false;

			if (ps->p < ps->end && *ps->p == '?') {
				lazy = true;
				ps->p++;
			}
			if (pending == RE_NONE) {
				re_fail(ps, opstart, "no argument for repetition operator: %.*s",
				        (int)(ps->p - opstart), opstart);
				return RE_NONE;
			}
			if (repeated) {
				re_fail(ps, repeated, "bad repetition operator: %.*s",
				        (int)(ps->p - repeated), repeated);
				return RE_NONE;
			}
			rep = re_node_new(ps, N_REP);
			ps->nodes[rep].a = min;
			ps->nodes[rep].b = max;
			/* (?U) swaps the meaning of x* and x*?. */
			ps->nodes[rep].greedy = (ps->flags & F_U) ? lazy : !lazy;
			ps->nodes[rep].child = pending;
			pending = rep;
			repeated = opstart;
			continue;
		}
		if (ps->p + 1 < ps->end && ps->p[0] == '\\' && ps->p[1] == 'Q') {
			if (pending != RE_NONE)
				re_node_append(ps, cat, pending);
			pending = RE_NONE;
			atom = re_parse_quote(ps, cat);
		} else {
			atom = re_parse_atom(ps);
		}
		if (ps->failed)
			return RE_NONE;
		if (ps->nodes[atom].kind == N_EMPTY) {
			repeated = NULL;   /* "a*(?i)*" stacks, as in RE2: not a doubled operator */
			continue;          /* (?flags) */
		}
		if (pending != RE_NONE)
			re_node_append(ps, cat, pending);
		pending = atom;
		repeated = NULL;
	}
	if (pending != RE_NONE)
		re_node_append(ps, cat, pending);
	return cat;
}

static uint32_t re_parse_alt(struct re_parser *ps)
{
	uint32_t first = re_parse_cat(ps), alt;

	if (ps->failed || ps->p >= ps->end || *ps->p != '|')
		return first;
	alt = re_node_new(ps, N_ALT);
	re_node_append(ps, alt, first);
	while (ps->p < ps->end && *ps->p == '|') {
		uint32_t next;

		ps->p++;
		next = re_parse_cat(ps);
		if (ps->failed)
			return RE_NONE;
		re_node_append(ps, alt, next);
	}
	return alt;
}

/* ---- compiler ---- */

struct re_comp {
	struct re_parser *ps;
	uint32_t cap;
};

static uint32_t re_emit(struct re_comp *c, uint8_t op, uint32_t x, uint32_t y)
{
	struct re *re = c->ps->re;

	if (re->ninst >= RE_MAX_INST) {
		re_fail(c->ps, NULL, "pattern too large - compile failed (egressgw's limit is %d "
		        "instructions)", RE_MAX_INST);
		return RE_NONE;
	}
	if (re->ninst == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 32;
		re->prog = xrealloc(re->prog, c->cap * sizeof(*re->prog));
	}
	re->prog[re->ninst].op = op;
	re->prog[re->ninst].fold = 0;
	re->prog[re->ninst].x = x;
	re->prog[re->ninst].y = y;
	return re->ninst++;
}

static void re_comp_node(struct re_comp *c, uint32_t ni);

/* a|b|c: a split before each alternative but the last, each followed by a jump to the end. */
static void re_comp_alt(struct re_comp *c, const struct re_node *n)
{
	struct re *re = c->ps->re;
	uint32_t first_jump = RE_NONE;

	for (uint32_t k = n->child; k != RE_NONE; k = c->ps->nodes[k].next) {
		uint32_t split = RE_NONE, j;

		if (c->ps->nodes[k].next != RE_NONE)
			split = re_emit(c, OP_SPLIT, re->ninst + 1, 0);
		re_comp_node(c, k);
		if (c->ps->failed)
			return;
		if (split == RE_NONE)
			break;
		/* The jumps to the end are chained through y of each JMP (patched below),
		 * so any number of alternatives needs no array. */
		j = re_emit(c, OP_JMP, 0, first_jump);
		if (j == RE_NONE)
			return;
		first_jump = j;
		re->prog[split].y = re->ninst;
	}
	for (uint32_t j = first_jump; j != RE_NONE;) {
		uint32_t nextj = re->prog[j].y;

		re->prog[j].x = re->ninst;
		re->prog[j].y = 0;
		j = nextj;
	}
}

/* x*, x+, x?, x{n,m} (greedy or lazy). */
static void re_comp_rep(struct re_comp *c, const struct re_node *n)
{
	struct re *re = c->ps->re;
	int min = n->a, max = n->b;
	bool greedy = n->greedy;
	uint32_t child = n->child, chain = RE_NONE;

	for (int i = 0; i < min - (max < 0 && min > 0 ? 1 : 0); i++)
		re_comp_node(c, child);
	if (max < 0) {
		uint32_t loop = re->ninst, split;

		if (min > 0) {
			/* x+ : x then a split back to it. */
			re_comp_node(c, child);
			split = re_emit(c, OP_SPLIT, 0, 0);
			if (split == RE_NONE)
				return;
			re->prog[split].x = greedy ? loop : re->ninst;
			re->prog[split].y = greedy ? re->ninst : loop;
		} else {
			/* x* as (x+)?, as RE2 compiles it since its empty-width loop fix:
			 * for an x that can match empty, "(a*)*" on "b" sets the group to
			 * (0,0) as in Perl, where split-x-jmp would leave it unset (the loop
			 * back finds its split already visited). */
			uint32_t body, split2;

			split = re_emit(c, OP_SPLIT, 0, 0);
			body = re->ninst;
			re_comp_node(c, child);
			split2 = re_emit(c, OP_SPLIT, 0, 0);
			if (split == RE_NONE || split2 == RE_NONE)
				return;
			re->prog[split2].x = greedy ? body : re->ninst;
			re->prog[split2].y = greedy ? re->ninst : body;
			re->prog[split].x = greedy ? body : re->ninst;
			re->prog[split].y = greedy ? re->ninst : body;
		}
		return;
	}
	/* x{n,m}: m-n nested optional copies, each split skipping to the end. The
	 * splits are chained through the branch to be patched. */
	for (int i = min; i < max; i++) {
		uint32_t split = re_emit(c, OP_SPLIT, 0, 0);

		if (split == RE_NONE)
			return;
		if (greedy) {
			re->prog[split].x = split + 1;
			re->prog[split].y = chain;
		} else {
			re->prog[split].y = split + 1;
			re->prog[split].x = chain;
		}
		chain = split;
		re_comp_node(c, child);
		if (c->ps->failed)
			return;
	}
	while (chain != RE_NONE) {
		struct re_inst *in = &re->prog[chain];
		uint32_t nextc = greedy ? in->y : in->x;

		if (greedy)
			in->y = re->ninst;
		else
			in->x = re->ninst;
		chain = nextc;
	}
}

static void re_comp_node(struct re_comp *c, uint32_t ni)
{
	const struct re_node *n;
	struct re *re = c->ps->re;
	uint32_t pc;

	if (c->ps->failed || ni == RE_NONE)
		return;
	n = &c->ps->nodes[ni];
	switch (n->kind) {
	case N_EMPTY:
		break;
	case N_LIT:
		pc = re_emit(c, OP_CHAR, (uint32_t)n->a, 0);
		if (pc != RE_NONE)
			re->prog[pc].fold = n->fold;
		break;
	case N_CLASS:
		re_emit(c, OP_CLASS, (uint32_t)n->a, 0);
		break;
	case N_ANY:
		re_emit(c, n->nl ? OP_ANYNL : OP_ANY, 0, 0);
		break;
	case N_ASSERT:
		re_emit(c, OP_ASSERT, (uint32_t)n->a, 0);
		break;
	case N_CAT:
		for (uint32_t k = n->child; k != RE_NONE; k = c->ps->nodes[k].next)
			re_comp_node(c, k);
		break;
	case N_CAP:
		re_emit(c, OP_SAVE, (uint32_t)n->a * 2, 0);
		re_comp_node(c, n->child);
		re_emit(c, OP_SAVE, (uint32_t)n->a * 2 + 1, 0);
		break;
	case N_ALT:
		re_comp_alt(c, n);
		break;
	case N_REP:
		re_comp_rep(c, n);
		break;
	}
}

/* Marks the ANY, CLASS and CHAR instructions that loop to the end of the pattern
 * (y = 1), as `.*`, `[^/]+`, `[a-z]+$` or `x+` closing a pattern: from the instruction after it, the only
 * ways on are back to it or, past nothing but captures and \z / $, to MATCH. A full
 * match that reaches such a thread with the rest of the input plain ASCII the loop takes
 * has matched (re_exec), so the common tail costs a scan instead of the VM per byte. The
 * walk looks at 16 instructions at most, so compiling stays linear. */
static void re_mark_tails(struct re *re)
{
	for (uint32_t pc = 0; pc < re->ninst; pc++) {
		uint32_t todo[16], nt = 0, seen = 0;
		bool back = false, match = false, bad = false;

		if (re->prog[pc].op != OP_ANY && re->prog[pc].op != OP_ANYNL &&
		    re->prog[pc].op != OP_CLASS && re->prog[pc].op != OP_CHAR)
			continue;
		todo[nt++] = (pc + 1) << 1;
		while (nt && !bad) {
			uint32_t e = todo[--nt], q = e >> 1;
			bool end_only = e & 1;
			const struct re_inst *in = &re->prog[q];

			if (++seen > 16) {
				bad = true;
				break;
			}
			switch (in->op) {
			case OP_JMP:
				todo[nt++] = (in->x << 1) | end_only;
				break;
			case OP_SPLIT:
				if (nt + 2 > 16) {
					bad = true;
					break;
				}
				todo[nt++] = (in->x << 1) | end_only;
				todo[nt++] = (in->y << 1) | end_only;
				break;
			case OP_SAVE:
				todo[nt++] = ((q + 1) << 1) | end_only;
				break;
			case OP_ASSERT:
				if (in->x != A_EOT || nt >= 16)
					bad = true;
				else
					todo[nt++] = ((q + 1) << 1) | 1;
				break;
			case OP_MATCH:
				match = true;
				break;
			default:
				if (q == pc && !end_only)
					back = true;
				else
					bad = true;
				break;
			}
		}
		if (back && match && !bad)
			re->prog[pc].y = 1;
	}
}

struct re *re_compile(const char *pat, unsigned flags, char *err, size_t errlen)
{
	struct re_parser ps = { 0 };
	struct re_comp c = { 0 };
	struct re *re = xcalloc(1, sizeof(*re));
	uint32_t root;

	if (err && errlen)
		err[0] = '\0';
	ps.p0 = ps.p = pat;
	ps.end = pat + strlen(pat);
	ps.flags = (flags & RE_ICASE) ? F_I : 0;
	ps.re = re;
	ps.err = err;
	ps.errlen = errlen;
	root = re_parse_alt(&ps);
	if (!ps.failed && ps.p < ps.end)
		re_fail(&ps, ps.p, "unexpected ): %.*s", (int)(ps.end - ps.p0), ps.p0);
	c.ps = &ps;
	if (!ps.failed) {
		re_emit(&c, OP_SAVE, 0, 0);
		re_comp_node(&c, root);
		re_emit(&c, OP_SAVE, 1, 0);
		re_emit(&c, OP_MATCH, 0, 0);
	}
	if (!ps.failed)
		re_mark_tails(re);
	free(ps.nodes);
	free(ps.names);
	if (ps.failed) {
		re_free(re);
		return NULL;
	}
	return re;
}

