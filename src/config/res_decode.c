/* res_decode: the keyword-table walker, scalar parsing, and res_decode/res_free.
 *
 * Strictness follows what `kubectl apply` with server-side validation does to these
 * objects: unknown fields are errors, a quoted "80" is not an integer and a plain 80 is
 * not a string, null means "not set". Every problem is reported (the walk never stops at
 * the first one), each at the YAML node it is about. */
#include "config/res_internal.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define SECRET_MAX_BYTES (1024 * 1024)   /* the API server's limit on a Secret's data */

/* ---------------------------------------------------------------------------------
 * Paths and messages
 * ------------------------------------------------------------------------------- */

static size_t path_append(struct dctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static size_t path_append(struct dctx *c, const char *fmt, ...)
{
	size_t mark = c->plen;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->path + c->plen, sizeof(c->path) - c->plen, fmt, ap);
	va_end(ap);
	if (n > 0)
		c->plen += (size_t)n < sizeof(c->path) - c->plen ? (size_t)n
		                                                 : sizeof(c->path) - c->plen - 1;
	return mark;
}

size_t path_push_key(struct dctx *c, const char *key)
{
	return path_append(c, c->plen ? ".%s" : "%s", key);
}

size_t path_push_index(struct dctx *c, size_t i)
{
	return path_append(c, "[%zu]", i);
}

size_t path_push_mapkey(struct dctx *c, const char *key)
{
	return path_append(c, "[\"%.80s\"]", key);
}

void path_pop(struct dctx *c, size_t mark)
{
	c->plen = mark;
	c->path[mark] = '\0';
}

static void dmsg(struct dctx *c, enum diag_level lvl, const struct ynode *at, const char *fmt,
                 va_list ap)
{
	struct sbuf msg = SBUF_INIT;

	sbuf_addf(&msg, "%s: ", c->desc);
	if (c->plen)
		sbuf_addf(&msg, "%s: ", c->path);
	sbuf_vaddf(&msg, fmt, ap);
	diag_add(c->d, lvl, c->file, at ? at->line : 0, at ? at->col : 0, "%s", sbuf_str(&msg));
	sbuf_free(&msg);
	if (lvl == DIAG_ERROR)
		c->failed = true;
}

void derr(struct dctx *c, const struct ynode *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dmsg(c, DIAG_ERROR, at, fmt, ap);
	va_end(ap);
}

void dwarn(struct dctx *c, const struct ynode *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dmsg(c, DIAG_WARNING, at, fmt, ap);
	va_end(ap);
}

static void dfield(struct dctx *c, enum diag_level lvl, const struct ynode *map,
                   const char *field, const char *fmt, va_list ap)
{
	const struct ynode *v = ynode_get(map, field);
	size_t mark = path_push_key(c, field);

	dmsg(c, lvl, v ? v : map, fmt, ap);
	path_pop(c, mark);
}

void derr_field(struct dctx *c, const struct ynode *map, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dfield(c, DIAG_ERROR, map, field, fmt, ap);
	va_end(ap);
}

void dwarn_field(struct dctx *c, const struct ynode *map, const char *field, const char *fmt,
                 ...)
{
	va_list ap;

	va_start(ap, fmt);
	dfield(c, DIAG_WARNING, map, field, fmt, ap);
	va_end(ap);
}

void derr_required(struct dctx *c, const struct ynode *map, const char *field)
{
	if (ynode_get(map, field))
		derr_field(c, map, field, "must not be empty");
	else
		derr(c, map, "missing required field \"%s\"", field);
}

struct srcpos kw_pos(const struct dctx *c, const struct ynode *n)
{
	struct srcpos p = { c->file, n ? n->line : 0, n ? n->col : 0 };

	return p;
}

/* "string \"80\"", "80", "boolean true", "a list": what the user wrote, for type errors. */
static const char *describe(const struct ynode *n, char *buf, size_t bufsz)
{
	switch (n->type) {
	case YNODE_NULL:
		return "null";
	case YNODE_SEQ:
		return "a list";
	case YNODE_MAP:
		return "a map";
	default:
		break;
	}
	switch (ynode_scalar_kind(n)) {
	case YSCALAR_BOOL:
		snprintf(buf, bufsz, "boolean %.40s", n->str);
		break;
	case YSCALAR_INT:
	case YSCALAR_FLOAT:
		snprintf(buf, bufsz, "%.40s", n->str);
		break;
	default:
		snprintf(buf, bufsz, "string \"%.60s\"", n->str);
		break;
	}
	return buf;
}

/* ---------------------------------------------------------------------------------
 * Scalars
 * ------------------------------------------------------------------------------- */

static bool get_string(struct dctx *c, const struct ynode *n, const char **out)
{
	char b[96];

	if (n->type != YNODE_SCALAR) {
		derr(c, n, "want a string, got %s", describe(n, b, sizeof(b)));
		return false;
	}
	if (ynode_scalar_kind(n) != YSCALAR_STRING) {
		derr(c, n, "want a string, got %s (write \"%.40s\" to make it a string)",
		     describe(n, b, sizeof(b)), n->str);
		return false;
	}
	if (memchr(n->str, '\0', n->len)) {
		derr(c, n, "must not contain a NUL character");
		return false;
	}
	*out = n->str;
	return true;
}

static bool get_int(struct dctx *c, const struct ynode *n, int64_t *out)
{
	char b[96], digits[72];
	const char *p;
	size_t j = 0;
	bool neg = false;
	int base = 10;
	char *end;
	unsigned long long v;

	if (n->type != YNODE_SCALAR || ynode_scalar_kind(n) != YSCALAR_INT) {
		derr(c, n, "want an integer, got %s", describe(n, b, sizeof(b)));
		return false;
	}
	p = n->str;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		base = 16, p += 2;
	else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
		base = 8, p += 2;
	else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B'))
		base = 2, p += 2;
	else if (p[0] == '0' && p[1])
		base = 8, p += 1;
	for (; *p && j + 1 < sizeof(digits); p++)
		if (*p != '_')
			digits[j++] = *p;
	digits[j] = '\0';
	errno = 0;
	v = strtoull(digits, &end, base);
	if (*p || errno || *end || v > (unsigned long long)INT64_MAX) {
		derr(c, n, "integer %.40s is out of range", n->str);
		return false;
	}
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

static bool get_bool(struct dctx *c, const struct ynode *n, bool *out)
{
	char b[96];

	if (n->type != YNODE_SCALAR || ynode_scalar_kind(n) != YSCALAR_BOOL) {
		derr(c, n, "want a boolean (true or false), got %s", describe(n, b, sizeof(b)));
		return false;
	}
	/* The true words start with y, t or o (yes, true, on); "off" is the one false word
	 * starting with o. */
	*out = strchr("yYtToO", n->str[0]) && strcmp(n->str, "off") && strcmp(n->str, "Off") &&
	       strcmp(n->str, "OFF");
	return true;
}

static bool get_double(struct dctx *c, const struct ynode *n, double *out)
{
	char b[96], digits[72];
	size_t j = 0;
	char *end;
	double v;

	if (n->type != YNODE_SCALAR || (ynode_scalar_kind(n) != YSCALAR_INT &&
	                                ynode_scalar_kind(n) != YSCALAR_FLOAT)) {
		derr(c, n, "want a number, got %s", describe(n, b, sizeof(b)));
		return false;
	}
	for (const char *p = n->str; *p && j + 1 < sizeof(digits); p++)
		if (*p != '_')
			digits[j++] = *p;
	digits[j] = '\0';
	v = strtod(digits, &end);
	if (*end || !isfinite(v)) {
		derr(c, n, "want a finite number, got %.40s", n->str);
		return false;
	}
	*out = v;
	return true;
}

/* Go's time.ParseDuration, which Istio's (golang/protobuf jsonpb) Duration decoding
 * uses: "300ms", "1.5h", "2h45m", "-1s"; units ns us µs ms s m h; "0" alone. Integer
 * arithmetic, as Go does, so "1.001s" is exactly 1001ms. */
int parse_duration_ns(const char *s, int64_t *ns)
{
	static const struct { const char *u; uint64_t mult; } units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "\xC2\xB5s", 1000 }, { "\xCE\xBCs", 1000 },
		{ "ms", 1000000 }, { "s", 1000000000 }, { "m", 60ULL * 1000000000 },
		{ "h", 3600ULL * 1000000000 },
	};
	const uint64_t limit = (uint64_t)INT64_MAX;
	uint64_t total = 0;
	bool neg = false;
	const char *p = s;

	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (strcmp(p, "0") == 0) {
		*ns = 0;
		return 0;
	}
	if (!*p)
		return -1;
	while (*p) {
		uint64_t v = 0, frac = 0, scale = 1, mult = 0, part;
		bool digits = false;
		size_t ulen = 0;

		while (*p >= '0' && *p <= '9') {
			if (v > (limit - 9) / 10)
				return -1;
			v = v * 10 + (uint64_t)(*p++ - '0');
			digits = true;
		}
		if (*p == '.') {
			p++;
			while (*p >= '0' && *p <= '9') {
				/* Digits beyond nanosecond precision of an hour cannot matter. */
				if (scale < 1000000000000000000ULL) {
					frac = frac * 10 + (uint64_t)(*p - '0');
					scale *= 10;
				}
				p++;
				digits = true;
			}
		}
		if (!digits)
			return -1;
		for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
			size_t l = strlen(units[i].u);

			/* longest match: "ms" before "m", "ns" before "s" */
			if (strncmp(p, units[i].u, l) == 0 && l > ulen) {
				ulen = l;
				mult = units[i].mult;
			}
		}
		if (!ulen)
			return -1;
		p += ulen;
		if (v > limit / mult)
			return -1;
		part = v * mult;
		/* frac/scale of a unit, without overflow: mult <= 3.6e12, frac < scale <= 1e18 */
		if (frac) {
			long double f = (long double)frac * (long double)mult / (long double)scale;

			part += (uint64_t)(f + 0.5L);
		}
		if (part > limit - total)
			return -1;
		total += part;
	}
	*ns = neg ? -(int64_t)total : (int64_t)total;
	return 0;
}

static bool get_duration_ms(struct dctx *c, const struct ynode *n, unsigned flags, int64_t *ms)
{
	const char *s;
	int64_t ns;
	char b[96];

	if (n->type != YNODE_SCALAR || ynode_scalar_kind(n) != YSCALAR_STRING) {
		derr(c, n, "want a duration such as \"10s\" or \"500ms\", got %s",
		     describe(n, b, sizeof(b)));
		return false;
	}
	if (!get_string(c, n, &s))
		return false;
	if (parse_duration_ns(s, &ns) < 0) {
		derr(c, n, "invalid duration \"%.60s\" (want a number with a unit: h, m, s, ms, "
		     "us, ns, e.g. \"1m30s\")", s);
		return false;
	}
	if (ns == 0 && (flags & KWF_ZERO_OK)) {
		*ms = -1;
		return true;
	}
	if (ns < 1000000) {
		derr(c, n, "duration must be at least 1ms (got \"%.60s\")", s);
		return false;
	}
	if (ns % 1000000) {
		derr(c, n, "only durations to ms precision are supported (got \"%.60s\")", s);
		return false;
	}
	*ms = ns / 1000000;
	return true;
}

static void enum_want(const char *const *names, struct sbuf *out)
{
	for (size_t i = 0; names[i]; i++) {
		if (i)
			sbuf_adds(out, ", ");
		sbuf_adds(out, names[i]);
	}
}

static bool get_enum(struct dctx *c, const struct ynode *n, const char *const *names, int *out)
{
	struct sbuf want = SBUF_INIT;
	const char *s;

	if (!get_string(c, n, &s))
		return false;
	for (int i = 0; names[i]; i++) {
		if (strcmp(names[i], s) == 0) {
			*out = i;
			return true;
		}
	}
	enum_want(names, &want);
	derr(c, n, "unknown value \"%.60s\" (want %s)", s, sbuf_str(&want));
	sbuf_free(&want);
	return false;
}

static bool get_protocol(struct dctx *c, const struct ynode *n, int *out)
{
	struct sbuf want = SBUF_INIT;
	const char *s;

	if (!get_string(c, n, &s))
		return false;
	for (int i = 1; i < RES_PROTO_COUNT; i++) {
		if (strcasecmp(res_protocol_name((enum res_protocol)i), s) == 0) {
			*out = i;
			return true;
		}
	}
	for (int i = 1; i < RES_PROTO_COUNT; i++) {
		if (i > 1)
			sbuf_adds(&want, ", ");
		sbuf_adds(&want, res_protocol_name((enum res_protocol)i));
	}
	derr(c, n, "unknown protocol \"%.60s\" (want %s)", s, sbuf_str(&want));
	sbuf_free(&want);
	return false;
}

static bool in_range(struct dctx *c, const struct ynode *n, const struct kw *k, int64_t v,
                     int64_t tmin, int64_t tmax)
{
	int64_t lo = k->min, hi = k->max;

	if (lo == 0 && hi == 0) {
		lo = tmin;
		hi = tmax;
	}
	if (v >= lo && v <= hi)
		return true;
	if (k->flags & KWF_PORT)
		derr(c, n, "port number %" PRId64 " must be in the range %" PRId64 "..%" PRId64,
		     v, lo, hi);
	else if (lo == 0 && v < 0)
		derr(c, n, "must not be negative (got %" PRId64 ")", v);
	else
		derr(c, n, "must be between %" PRId64 " and %" PRId64 " (got %" PRId64 ")",
		     lo, hi, v);
	return false;
}

/* ---------------------------------------------------------------------------------
 * Composite fields
 * ------------------------------------------------------------------------------- */

struct anylist {
	void *v;
	size_t n;
};

static void put_list(void *field, void *v, size_t n)
{
	struct anylist l = { v, n };

	memcpy(field, &l, sizeof(l));
}

static struct anylist get_list(const void *field)
{
	struct anylist l;

	memcpy(&l, field, sizeof(l));
	return l;
}

static bool want_type(struct dctx *c, const struct ynode *n, enum ynode_type t)
{
	char b[96];

	if (n->type == t)
		return true;
	derr(c, n, "want %s, got %s", t == YNODE_MAP ? "a map" : "a list",
	     describe(n, b, sizeof(b)));
	return false;
}

static void decode_strlist(struct dctx *c, const struct ynode *n, const struct kw *k,
                           struct res_strlist *l)
{
	if (!want_type(c, n, YNODE_SEQ))
		return;
	l->v = xcalloc(n->n, sizeof(*l->v));
	l->pos = xcalloc(n->n, sizeof(*l->pos));
	l->n = n->n;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *item = n->items[i];
		size_t mark = path_push_index(c, i);
		const char *s;

		l->pos[i] = kw_pos(c, item);
		if (get_string(c, item, &s)) {
			l->v[i] = xstrdup(s);
			if (k->check)
				k->check(c, item, s);
		}
		path_pop(c, mark);
	}
}

static void decode_strmap(struct dctx *c, const struct ynode *n, const struct kw *k,
                          struct res_strmap *m)
{
	if (!want_type(c, n, YNODE_MAP))
		return;
	m->v = xcalloc(n->n, sizeof(*m->v));
	m->n = n->n;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *key = n->pairs[i].key, *val = n->pairs[i].value;
		struct res_strmap_entry *e = &m->v[i];
		size_t mark = path_push_mapkey(c, key->str);
		const char *s;

		e->key = xstrdup(key->str);
		e->pos = kw_pos(c, key);
		if (k->keycheck)
			k->keycheck(c, key, key->str);
		if (val->type == YNODE_NULL) {
			e->value = xstrdup("");
		} else if (get_string(c, val, &s)) {
			e->value = xstrdup(s);
			if (k->check)
				k->check(c, val, s);
		}
		path_pop(c, mark);
	}
}

static void decode_portmap(struct dctx *c, const struct ynode *n, const struct kw *k,
                           struct res_portmap *m)
{
	static const struct kw portkw = { "", KW_U32, 0, NULL, NULL, NULL, NULL, 1, 65535,
	                                  KWF_PORT };

	if (!want_type(c, n, YNODE_MAP))
		return;
	m->v = xcalloc(n->n, sizeof(*m->v));
	m->n = n->n;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *key = n->pairs[i].key, *val = n->pairs[i].value;
		size_t mark = path_push_mapkey(c, key->str);
		int64_t v;

		m->v[i].name = xstrdup(key->str);
		m->v[i].pos = kw_pos(c, key);
		if (k->keycheck)
			k->keycheck(c, key, key->str);
		if (get_int(c, val, &v) && in_range(c, val, &portkw, v, 0, 0))
			m->v[i].number = (uint32_t)v;
		path_pop(c, mark);
	}
}

static void decode_list(struct dctx *c, const struct ynode *n, const struct kw *k, void *field)
{
	char *items;

	if (!want_type(c, n, YNODE_SEQ))
		return;
	items = xcalloc(n->n, k->sub->size);
	put_list(field, items, n->n);
	for (size_t i = 0; i < n->n; i++) {
		size_t mark = path_push_index(c, i);

		kw_decode_map(c, n->items[i], k->sub, items + i * k->sub->size);
		path_pop(c, mark);
	}
}

static void decode_named(struct dctx *c, const struct ynode *n, const struct kw *k, void *field)
{
	char *items;

	if (!want_type(c, n, YNODE_MAP))
		return;
	items = xcalloc(n->n, k->sub->size);
	put_list(field, items, n->n);
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *key = n->pairs[i].key, *val = n->pairs[i].value;
		char *item = items + i * k->sub->size;
		char *name = xstrdup(key->str);
		size_t mark = path_push_mapkey(c, key->str);

		memcpy(item, &name, sizeof(name));   /* first member: char *name */
		if (k->keycheck)
			k->keycheck(c, key, key->str);
		if (val->type == YNODE_NULL) {
			if (k->sub->pos_off != KW_NOPOS) {
				struct srcpos p = kw_pos(c, key);

				memcpy(item + k->sub->pos_off, &p, sizeof(p));
			}
		} else {
			kw_decode_map(c, val, k->sub, item);
		}
		path_pop(c, mark);
	}
}

static void decode_field(struct dctx *c, const struct kw *k, const struct ynode *key,
                         const struct ynode *v, void *obj)
{
	/* obj is NULL for tables that only reject unknown fields (all KW_IGNORE). */
	char *field = obj ? (char *)obj + k->off : NULL;
	const char *s;
	int64_t i64;
	double d;
	bool b;
	int e;

	if (!field && k->type != KW_UNSUPPORTED && k->type != KW_IGNORE)
		return;
	if (k->flags & KWF_UNAPPLIED)
		dwarn(c, key, "not applied by egressgw; ignored");
	switch (k->type) {
	case KW_STR:
		if (get_string(c, v, &s)) {
			char *dup = xstrdup(s);

			memcpy(field, &dup, sizeof(dup));
			if (k->check)
				k->check(c, v, s);
		}
		break;
	case KW_STRLIST:
		decode_strlist(c, v, k, (struct res_strlist *)(void *)field);
		break;
	case KW_STRMAP:
		decode_strmap(c, v, k, (struct res_strmap *)(void *)field);
		break;
	case KW_PORTMAP:
		decode_portmap(c, v, k, (struct res_portmap *)(void *)field);
		break;
	case KW_U32:
		if (get_int(c, v, &i64) && in_range(c, v, k, i64, 0, UINT32_MAX)) {
			uint32_t u = (uint32_t)i64;

			memcpy(field, &u, sizeof(u));
		}
		break;
	case KW_I32:
		if (get_int(c, v, &i64) && in_range(c, v, k, i64, INT32_MIN, INT32_MAX)) {
			int32_t x = (int32_t)i64;

			memcpy(field, &x, sizeof(x));
		}
		break;
	case KW_U32OPT:
		if (get_int(c, v, &i64) && in_range(c, v, k, i64, 0, UINT32_MAX)) {
			struct res_u32opt o = { true, (uint32_t)i64 };

			memcpy(field, &o, sizeof(o));
		}
		break;
	case KW_BOOL:
		if (get_bool(c, v, &b))
			memcpy(field, &b, sizeof(b));
		break;
	case KW_DOUBLE:
		if (get_double(c, v, &d)) {
			if ((k->min || k->max) && (d < (double)k->min || d > (double)k->max))
				derr(c, v, "must be between %" PRId64 " and %" PRId64 " (got %g)",
				     k->min, k->max, d);
			else
				memcpy(field, &d, sizeof(d));
		}
		break;
	case KW_DURATION:
		if (get_duration_ms(c, v, k->flags, &i64))
			memcpy(field, &i64, sizeof(i64));
		break;
	case KW_ENUM:
		if (get_enum(c, v, k->names, &e))
			memcpy(field, &e, sizeof(e));
		break;
	case KW_PROTOCOL:
		if (get_protocol(c, v, &e))
			memcpy(field, &e, sizeof(e));
		break;
	case KW_OBJ:
		if (want_type(c, v, YNODE_MAP)) {
			void *sub = xcalloc(1, k->sub->size);

			memcpy(field, &sub, sizeof(sub));
			kw_decode_map(c, v, k->sub, sub);
		}
		break;
	case KW_EMBED:
		kw_decode_map(c, v, k->sub, field);
		break;
	case KW_LIST:
		decode_list(c, v, k, field);
		break;
	case KW_NAMED:
		decode_named(c, v, k, field);
		break;
	case KW_UNSUPPORTED:
		dwarn(c, key, "not supported by egressgw; ignored");
		break;
	case KW_IGNORE:
		break;
	}
}

/* Edit distance with transpositions (optimal string alignment), enough to suggest
 * "mode" for "mdoe". Names longer than 62 characters are never close. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), rows[3][64];
	size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t *t;

		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);

			if (prev[j] + 1 < best)
				best = prev[j] + 1;
			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    pp[j - 2] + 1 < best)
				best = pp[j - 2] + 1;
			cur[j] = best;
		}
		t = pp;
		pp = prev;
		prev = cur;
		cur = t;
	}
	return prev[lb];
}

/* credential_name, CredentialName -> credentialname */
static void fold_name(const char *s, char *out, size_t outsz)
{
	size_t j = 0;

	for (; *s && j + 1 < outsz; s++)
		if (*s != '_' && *s != '-')
			out[j++] = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
	out[j] = '\0';
}

static const char *suggest(const struct kwtab *t, const char *name)
{
	char fa[64], fb[64];
	const char *best = NULL;
	size_t bestd = 3;

	fold_name(name, fa, sizeof(fa));
	for (const struct kw *k = t->kws; k->name; k++) {
		size_t d;

		fold_name(k->name, fb, sizeof(fb));
		if (strcmp(fa, fb) == 0)
			return k->name;
		d = edit_distance(name, k->name);
		if (d < bestd && (d == 1 || strlen(k->name) > 4)) {
			bestd = d;
			best = k->name;
		}
	}
	return best;
}

static const struct kw *kw_find(const struct kwtab *t, const struct ynode *key)
{
	for (const struct kw *k = t->kws; k->name; k++)
		if (strlen(k->name) == key->len && memcmp(k->name, key->str, key->len) == 0)
			return k;
	return NULL;
}

void kw_decode_map(struct dctx *c, const struct ynode *map, const struct kwtab *t, void *obj)
{
	if (!want_type(c, map, YNODE_MAP))
		return;
	if (t->pos_off != KW_NOPOS) {
		struct srcpos p = kw_pos(c, map);

		memcpy((char *)obj + t->pos_off, &p, sizeof(p));
	}
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *key = map->pairs[i].key, *v = map->pairs[i].value;
		const struct kw *k = kw_find(t, key);
		size_t mark = path_push_key(c, key->str);

		if (!k) {
			const char *s = suggest(t, key->str);

			if (s)
				derr(c, key, "unknown field (did you mean \"%s\"?)", s);
			else
				derr(c, key, "unknown field");
		} else if (v->type != YNODE_NULL || k->type == KW_UNSUPPORTED) {
			decode_field(c, k, key, v, obj);
		}
		path_pop(c, mark);
	}
	if (t->post)
		t->post(c, map, obj);
}

/* ---------------------------------------------------------------------------------
 * Freeing, driven by the same tables
 * ------------------------------------------------------------------------------- */

static void free_strlist(struct res_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	free(l->pos);
}

static void free_strmap(struct res_strmap *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].key);
		free(m->v[i].value);
	}
	free(m->v);
}

void kw_free(const struct kwtab *t, void *obj)
{
	for (const struct kw *k = t->kws; k->name; k++) {
		char *field = (char *)obj + k->off;
		struct anylist l;
		void *p;

		switch (k->type) {
		case KW_STR:
			memcpy(&p, field, sizeof(p));
			free(p);
			break;
		case KW_STRLIST:
			free_strlist((struct res_strlist *)(void *)field);
			break;
		case KW_STRMAP:
			free_strmap((struct res_strmap *)(void *)field);
			break;
		case KW_PORTMAP: {
			struct res_portmap *m = (struct res_portmap *)(void *)field;

			for (size_t i = 0; i < m->n; i++)
				free(m->v[i].name);
			free(m->v);
			break;
		}
		case KW_OBJ:
			memcpy(&p, field, sizeof(p));
			if (p) {
				kw_free(k->sub, p);
				free(p);
			}
			break;
		case KW_EMBED:
			kw_free(k->sub, field);
			break;
		case KW_LIST:
		case KW_NAMED:
			l = get_list(field);
			for (size_t i = 0; i < l.n; i++) {
				char *item = (char *)l.v + i * k->sub->size;

				if (k->type == KW_NAMED) {
					memcpy(&p, item, sizeof(p));
					free(p);
				}
				kw_free(k->sub, item);
			}
			free(l.v);
			break;
		default:
			break;
		}
	}
}

/* ---------------------------------------------------------------------------------
 * Base64 (Secret data)
 * ------------------------------------------------------------------------------- */

static int b64val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

int base64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen,
                  size_t *bad_off)
{
	unsigned char *buf = xmalloc(len / 4 * 3 + 4);
	unsigned quad[4];
	size_t nq = 0, o = 0, pad = 0, last = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		int v;

		if (ch == '\r' || ch == '\n')
			continue;
		last = i;
		if (ch == '=') {
			/* Padding only in the last two places of the last quad. */
			if (nq < 2)
				goto bad;
			pad++;
			quad[nq++] = 0;
		} else {
			if (pad || (v = b64val(ch)) < 0)
				goto bad;
			quad[nq++] = (unsigned)v;
		}
		if (nq == 4) {
			unsigned x = quad[0] << 18 | quad[1] << 12 | quad[2] << 6 | quad[3];

			buf[o++] = (unsigned char)(x >> 16);
			if (pad < 2)
				buf[o++] = (unsigned char)(x >> 8);
			if (pad < 1)
				buf[o++] = (unsigned char)x;
			nq = 0;
			if (pad)
				pad = 3;   /* anything after a padded quad is an error */
		} else if (pad == 3) {
			goto bad;
		}
	}
	if (nq != 0) {
		last = len;
		goto bad;
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return 0;
bad:
	OPENSSL_cleanse(buf, len / 4 * 3 + 4);
	free(buf);
	*bad_off = last;
	return -1;
}

/* ---------------------------------------------------------------------------------
 * Secret
 * ------------------------------------------------------------------------------- */

static void secret_item_clear(struct res_secret_data *e)
{
	if (e->value) {
		OPENSSL_cleanse(e->value, e->len);
		free(e->value);
	}
	free(e->key);
	memset(e, 0, sizeof(*e));
}

static struct res_secret_data *secret_slot(struct secret *sec, const char *key, size_t *cap)
{
	for (size_t i = 0; i < sec->data.n; i++) {
		if (strcmp(sec->data.v[i].key, key) == 0) {
			OPENSSL_cleanse(sec->data.v[i].value, sec->data.v[i].len);
			free(sec->data.v[i].value);
			sec->data.v[i].value = NULL;
			sec->data.v[i].len = 0;
			return &sec->data.v[i];
		}
	}
	if (sec->data.n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		sec->data.v = xrealloc(sec->data.v, *cap * sizeof(*sec->data.v));
	}
	memset(&sec->data.v[sec->data.n], 0, sizeof(*sec->data.v));
	sec->data.v[sec->data.n].key = xstrdup(key);
	return &sec->data.v[sec->data.n++];
}

/* data (base64) then stringData (plain, wins), as the API server merges them. */
static void decode_secret_data(struct dctx *c, const struct ynode *n, bool base64,
                               struct secret *sec, size_t *cap)
{
	if (!want_type(c, n, YNODE_MAP))
		return;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *key = n->pairs[i].key, *val = n->pairs[i].value;
		size_t mark = path_push_mapkey(c, key->str);
		struct res_secret_data *e;
		const char *s = "";
		unsigned char *bytes;
		size_t len, bad;

		chk_secret_key(c, key, key->str);
		if (val->type != YNODE_NULL && !get_string(c, val, &s)) {
			path_pop(c, mark);
			continue;
		}
		if (base64) {
			if (base64_decode(s, strlen(s), &bytes, &len, &bad) < 0) {
				/* The value is key material: say where, never what. */
				derr(c, val, "value is not valid base64 (first bad character at "
				     "offset %zu)", bad);
				path_pop(c, mark);
				continue;
			}
		} else {
			len = strlen(s);
			bytes = (unsigned char *)xstrndup(s, len);
		}
		e = secret_slot(sec, key->str, cap);
		e->value = bytes;
		e->len = len;
		e->pos = kw_pos(c, val);
		path_pop(c, mark);
	}
}

static void decode_secret(struct dctx *c, const struct ynode *root, struct secret *sec)
{
	const struct ynode *n;
	size_t cap = 0, total = 0;
	const char *s;

	sec->pos = kw_pos(c, root);
	kw_decode_map(c, root, &kt_secret_top, NULL);
	if ((n = ynode_get(root, "type")) && n->type != YNODE_NULL) {
		size_t mark = path_push_key(c, "type");

		if (get_string(c, n, &s) && *s)
			sec->type = xstrdup(s);
		path_pop(c, mark);
	}
	if (!sec->type)
		sec->type = xstrdup("Opaque");
	if ((n = ynode_get(root, "immutable")) && n->type != YNODE_NULL) {
		size_t mark = path_push_key(c, "immutable");

		get_bool(c, n, &sec->immutable);
		path_pop(c, mark);
	}
	if ((n = ynode_get(root, "data")) && n->type != YNODE_NULL) {
		size_t mark = path_push_key(c, "data");

		decode_secret_data(c, n, true, sec, &cap);
		path_pop(c, mark);
	}
	if ((n = ynode_get(root, "stringData")) && n->type != YNODE_NULL) {
		size_t mark = path_push_key(c, "stringData");

		decode_secret_data(c, n, false, sec, &cap);
		path_pop(c, mark);
	}
	for (size_t i = 0; i < sec->data.n; i++)
		total += strlen(sec->data.v[i].key) + sec->data.v[i].len;
	if (total > SECRET_MAX_BYTES)
		derr(c, root, "Secret data is %zu bytes, more than the limit of %d", total,
		     SECRET_MAX_BYTES);
	if (strcmp(sec->type, "kubernetes.io/tls") == 0) {
		static const char *const need[] = { "tls.crt", "tls.key" };

		for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
			if (!res_secret_get(sec, need[i])) {
				const struct ynode *at = ynode_get(root, "data");
				size_t mark = path_push_key(c, "data");

				path_push_mapkey(c, need[i]);
				derr(c, at ? at : root, "required for type kubernetes.io/tls");
				path_pop(c, mark);
			}
		}
	}
}

static void free_secret(struct secret *sec)
{
	for (size_t i = 0; i < sec->data.n; i++)
		secret_item_clear(&sec->data.v[i]);
	free(sec->data.v);
	free(sec->type);
}

/* ---------------------------------------------------------------------------------
 * res_decode
 * ------------------------------------------------------------------------------- */

static const char *const istio_versions[] = {
	"networking.istio.io/v1alpha3", "networking.istio.io/v1beta1", "networking.istio.io/v1",
	NULL
};
static const char *const security_versions[] = {
	"security.istio.io/v1beta1", "security.istio.io/v1", NULL
};
static const char *const core_versions[] = { "v1", NULL };

const struct kwtab *res_spec_table(enum res_kind kind)
{
	switch (kind) {
	case RES_SERVICE_ENTRY:    return &kt_serviceentry;
	case RES_GATEWAY:          return &kt_gateway;
	case RES_VIRTUAL_SERVICE:  return &kt_virtualservice;
	case RES_DESTINATION_RULE: return &kt_destinationrule;
	case RES_AUTHORIZATION_POLICY: return &kt_authorizationpolicy;
	default:                   return gwapi_spec_table(kind);
	}
}

/* Whether apiVersion (if it is a plain string) names group: "G/V", or "V" for core. */
static bool api_group_is(const struct ynode *av, const char *group)
{
	const char *s = ynode_str(av), *slash;

	if (!s || av->type != YNODE_SCALAR)
		return false;
	slash = strchr(s, '/');
	if (!slash)
		return !*group;
	return strlen(group) == (size_t)(slash - s) && strncmp(s, group, strlen(group)) == 0;
}

/* The kind, from the document's `kind` field and the group of its apiVersion (Istio's
 * Gateway and the Gateway API's share a Kind); reports and returns NULL if unusable. */
static const struct res_kind_info *doc_kind(struct dctx *c, const struct ynode *root)
{
	const struct ynode *n = ynode_get(root, "kind");
	const struct ynode *av = ynode_get(root, "apiVersion");
	const struct res_kind_info *by_name = NULL;
	const char *s;
	size_t mark;

	if (!n || n->type == YNODE_NULL) {
		derr(c, root, "missing required field \"kind\"");
		return NULL;
	}
	mark = path_push_key(c, "kind");
	if (get_string(c, n, &s)) {
		for (int k = 0; k < RES_KIND_COUNT; k++) {
			const struct res_kind_info *ki = res_kind_info((enum res_kind)k);

			if (strcmp(ki->kind_name, s) != 0)
				continue;
			if (api_group_is(av, ki->group)) {
				path_pop(c, mark);
				return ki;
			}
			if (!by_name)
				by_name = ki;
		}
		/* Known Kind, other group: check_api_version says what is wrong. */
		if (by_name) {
			path_pop(c, mark);
			return by_name;
		}
		derr(c, n, "\"%.60s\" is not a supported kind (want ServiceEntry, Gateway, "
		     "VirtualService, DestinationRule, AuthorizationPolicy, Secret, HTTPRoute, TLSRoute, "
		     "TCPRoute or ReferenceGrant)", s);
	}
	path_pop(c, mark);
	return NULL;
}

/* Name and namespace as written, before validation, so messages can name the object. */
static void early_names(const struct ynode *root, const char *default_ns, const char **name,
                        const char **ns)
{
	const struct ynode *meta = ynode_get(root, "metadata");
	const struct ynode *nn = ynode_get(meta, "name"), *nsn = ynode_get(meta, "namespace");

	*name = nn && nn->type == YNODE_SCALAR && nn->len && !memchr(nn->str, 0, nn->len)
	        ? nn->str : "(unnamed)";
	*ns = nsn && nsn->type == YNODE_SCALAR && nsn->len && !memchr(nsn->str, 0, nsn->len)
	      ? nsn->str : default_ns;
}

static void check_api_version(struct dctx *c, const struct ynode *root,
                              const struct res_kind_info *ki, char **out)
{
	const char *const *allowed = ki->versions ? ki->versions
	                             : ki->kind == RES_SECRET ? core_versions
	                             : ki->kind == RES_AUTHORIZATION_POLICY ? security_versions
	                             : istio_versions;
	const struct ynode *n = ynode_get(root, "apiVersion");
	struct sbuf want = SBUF_INIT;
	size_t mark;
	const char *s;

	if (!n || n->type == YNODE_NULL) {
		derr(c, root, "missing required field \"apiVersion\"");
		return;
	}
	mark = path_push_key(c, "apiVersion");
	if (get_string(c, n, &s)) {
		*out = xstrdup(s);
		for (size_t i = 0; allowed[i]; i++)
			if (strcmp(allowed[i], s) == 0)
				goto out;
		enum_want(allowed, &want);
		derr(c, n, "\"%.60s\" is not a version of %s (want %s)", s, ki->kind_name,
		     sbuf_str(&want));
	}
out:
	sbuf_free(&want);
	path_pop(c, mark);
}

static void decode_metadata(struct dctx *c, const struct ynode *root, struct res_meta *meta)
{
	const struct ynode *n = ynode_get(root, "metadata");
	size_t mark;

	if (!n || n->type == YNODE_NULL) {
		derr(c, root, "missing required field \"metadata\"");
		return;
	}
	mark = path_push_key(c, "metadata");
	kw_decode_map(c, n, &kt_metadata, meta);
	path_pop(c, mark);
}

static void decode_spec(struct dctx *c, const struct ynode *root, const struct kwtab *t,
                        void *obj)
{
	const struct ynode *n = ynode_get(root, "spec");
	size_t mark;

	kw_decode_map(c, root, &kt_istio_top, NULL);
	if ((!n || n->type == YNODE_NULL) && c->kind == RES_AUTHORIZATION_POLICY)
		return;     /* no spec is spec {}: ALLOW with no rules (allow nothing) */
	if (!n || n->type == YNODE_NULL) {
		derr(c, root, "missing required field \"spec\"");
		return;
	}
	mark = path_push_key(c, "spec");
	kw_decode_map(c, n, t, obj);
	path_pop(c, mark);
}

static void free_meta(struct res_meta *m)
{
	kw_free(&kt_metadata, m);
}

static void free_spec(struct resource *r)
{
	const struct kwtab *t = res_spec_table(r->kind);
	void *obj = NULL;

	switch (r->kind) {
	case RES_SERVICE_ENTRY:    obj = r->u.se; break;
	case RES_GATEWAY:          obj = r->u.gw; break;
	case RES_VIRTUAL_SERVICE:  obj = r->u.vs; break;
	case RES_DESTINATION_RULE: obj = r->u.dr; break;
	case RES_AUTHORIZATION_POLICY: obj = r->u.ap; break;
	case RES_K8S_GATEWAY:      obj = r->u.kgw; break;
	case RES_HTTP_ROUTE:
	case RES_TLS_ROUTE:
	case RES_TCP_ROUTE:        obj = r->u.route; break;
	case RES_REFERENCE_GRANT:  obj = r->u.grant; break;
	case RES_SECRET:
		if (r->u.secret) {
			free_secret(r->u.secret);
			OPENSSL_cleanse(r->u.secret, sizeof(*r->u.secret));
			free(r->u.secret);
		}
		break;
	default:
		break;
	}
	if (t && obj) {
		kw_free(t, obj);
		free(obj);
	}
}

static int res_decode_x(const struct ystream *s, const struct ydoc *doc,
                        const char *default_ns, struct resource *out, struct diags *d,
                        bool lent);

int res_decode(const struct ystream *s, const struct ydoc *doc, const char *default_ns,
               struct resource *out, struct diags *d)
{
	return res_decode_x(s, doc, default_ns, out, d, false);
}

int res_decode_lent(const struct ystream *s, const struct ydoc *doc, const char *default_ns,
                    struct resource *out, struct diags *d)
{
	return res_decode_x(s, doc, default_ns, out, d, s->file != NULL);
}

static int res_decode_x(const struct ystream *s, const struct ydoc *doc,
                        const char *default_ns, struct resource *out, struct diags *d,
                        bool lent)
{
	const struct res_kind_info *ki;
	const struct ynode *root = doc->root;
	struct resource r;
	struct res_meta meta;
	struct dctx c;
	const char *name, *ns;
	char b[96];

	memset(out, 0, sizeof(*out));
	memset(&r, 0, sizeof(r));
	memset(&meta, 0, sizeof(meta));
	memset(&c, 0, sizeof(c));
	if (!default_ns || !*default_ns)
		default_ns = "default";
	r.file = lent ? s->file : xstrdup(s->file ? s->file : "-");
	r.file_borrowed = lent;
	r.line = doc->line;
	r.node = root;
	c.d = d;
	c.file = r.file;
	snprintf(c.desc, sizeof(c.desc), "document");
	if (!root) {
		diag_err(d, r.file, doc->line, 0, "empty document: nothing to apply");
		goto fail;
	}
	if (root->type != YNODE_MAP) {
		derr(&c, root, "want a Kubernetes object (a map), got %s", describe(root, b, sizeof(b)));
		goto fail;
	}
	early_names(root, default_ns, &name, &ns);
	snprintf(c.desc, sizeof(c.desc), "%s/%s", ns, name);
	if (!(ki = doc_kind(&c, root)))
		goto fail;
	r.kind = ki->kind;
	c.kind = ki->kind;
	snprintf(c.desc, sizeof(c.desc), "%s %.100s/%.150s", ki->kind_name, ns, name);
	c.ns = ns;

	check_api_version(&c, root, ki, &r.api_version);
	decode_metadata(&c, root, &meta);
	if (ki->kind == RES_SECRET) {
		r.u.secret = xcalloc(1, sizeof(*r.u.secret));
		decode_secret(&c, root, r.u.secret);
	} else {
		const struct kwtab *t = res_spec_table(ki->kind);
		void *obj = xcalloc(1, t->size);

		switch (ki->kind) {
		case RES_SERVICE_ENTRY:    r.u.se = obj; break;
		case RES_GATEWAY:          r.u.gw = obj; break;
		case RES_VIRTUAL_SERVICE:  r.u.vs = obj; break;
		case RES_AUTHORIZATION_POLICY: r.u.ap = obj; break;
		case RES_DESTINATION_RULE: r.u.dr = obj; break;
		case RES_K8S_GATEWAY:      r.u.kgw = obj; break;
		case RES_REFERENCE_GRANT:  r.u.grant = obj; break;
		default:                   r.u.route = obj; break;
		}
		decode_spec(&c, root, t, obj);
	}
	if (ki->kind == RES_AUTHORIZATION_POLICY) {
		/* Istio's dry-run annotation: evaluated and counted, never enforced. */
		const char *dry = res_strmap_get(&meta.annotations, "istio.io/dry-run");

		r.u.ap->dry_run = dry && strcmp(dry, "true") == 0;
	}
	if (ki->kind == RES_GATEWAY && meta.name && !is_dns1123_label(meta.name)) {
		size_t mark = path_push_key(&c, "metadata");

		derr_field(&c, ynode_get(root, "metadata"), "name",
		           "invalid gateway name \"%.100s\": Gateway names must be DNS-1123 "
		           "labels (lowercase letters, digits and '-', at most 63)", meta.name);
		path_pop(&c, mark);
	}
	if (c.failed)
		goto fail;
	r.name = meta.name;
	meta.name = NULL;
	r.namespace_explicit = meta.namespace != NULL;
	r.namespace = meta.namespace ? meta.namespace : xstrdup(default_ns);
	meta.namespace = NULL;
	free_meta(&meta);
	*out = r;
	return 0;
fail:
	free_meta(&meta);
	res_free(&r);
	return -1;
}

void res_free(struct resource *r)
{
	if (!r)
		return;
	free_spec(r);
	free(r->api_version);
	free(r->name);
	free(r->namespace);
	if (!r->file_borrowed)
		free(r->file);
	memset(r, 0, sizeof(*r));
}
