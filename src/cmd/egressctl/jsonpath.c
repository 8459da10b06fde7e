/* kubectl's -o jsonpath=TEMPLATE and -o custom-columns=SPEC over the documents get shows.
 *
 * The JSONPath subset kubectl users write: literal text; {.a.b}, {.a[0]}, {.a[*].b},
 * {.a['key.with.dots']}; {"text"} with \n and \t; {range .items[*]}...{end}. Several
 * results of one expression are joined with a space, as kubectl does; a map or list is
 * printed as JSON. custom-columns is HEADER:EXPR,... (EXPR as inside the braces, the
 * leading dot optional): one row per object, <none> when the expression finds nothing,
 * several results joined with ",". */
#include <stdlib.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "core/util.h"

struct jp_set {
	const struct ynode **v;
	size_t n, cap;
};

static void jp_push(struct jp_set *s, const struct ynode *n)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 8;
		s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = n;
}

/* Applies the path p (len bytes, from '.' or '[') to every node of in; results to out.
 * Returns 0 or -1 (syntax, message in err). */
static int jp_eval(const char *p, size_t len, const struct jp_set *in, struct jp_set *out,
                   struct sbuf *err)
{
	struct jp_set cur = { NULL, 0, 0 }, next = { NULL, 0, 0 };
	size_t i = 0;
	int rc = 0;

	for (size_t k = 0; k < in->n; k++)
		jp_push(&cur, in->v[k]);
	while (i < len) {
		char key[256];
		long idx = -2;          /* -1: [*], >= 0: [N], -2: a key */

		if (p[i] == '.') {
			size_t s = ++i;

			while (i < len && p[i] != '.' && p[i] != '[')
				i++;
			snprintf(key, sizeof(key), "%.*s", (int)(i - s), p + s);
			if (!key[0])
				continue;   /* "{.}" or ".." */
		} else if (p[i] == '[') {
			size_t e = i + 1;

			while (e < len && p[e] != ']')
				e++;
			if (e >= len) {
				sbuf_addf(err, "unterminated [ in %.*s", (int)len, p);
				rc = -1;
				break;
			}
			if (p[i + 1] == '\'' || p[i + 1] == '"') {
				snprintf(key, sizeof(key), "%.*s", (int)(e - i - 3), p + i + 2);
			} else if (e == i + 2 && p[i + 1] == '*') {
				idx = -1;
			} else {
				char *end;

				idx = strtol(p + i + 1, &end, 10);
				if (end != p + e || idx < 0) {
					sbuf_addf(err, "unsupported index %.*s", (int)(e - i + 1), p + i);
					rc = -1;
					break;
				}
			}
			i = e + 1;
		} else {
			sbuf_addf(err, "unrecognized character in %.*s", (int)len, p);
			rc = -1;
			break;
		}
		next.n = 0;
		for (size_t k = 0; k < cur.n; k++) {
			const struct ynode *n = cur.v[k];

			if (idx == -2) {
				const struct ynode *v = ynode_get(n, key);

				if (v)
					jp_push(&next, v);
			} else if (n && n->type == YNODE_SEQ) {
				for (size_t j = 0; j < n->n; j++)
					if (idx == -1 || (size_t)idx == j)
						jp_push(&next, n->items[j]);
			} else if (n && n->type == YNODE_MAP && idx == -1) {
				for (size_t j = 0; j < n->n; j++)
					jp_push(&next, n->pairs[j].value);
			}
		}
		{
			struct jp_set t = cur;

			cur = next;
			next = t;
		}
	}
	for (size_t k = 0; rc == 0 && k < cur.n; k++)
		jp_push(out, cur.v[k]);
	free(cur.v);
	free(next.v);
	return rc;
}

/* A scalar as JSON: plain numbers and booleans bare, the rest quoted. */
static void jp_json_scalar(const struct ynode *n, struct sbuf *out)
{
	enum yscalar_kind k = ynode_scalar_kind(n);

	if (!n->quoted && (k == YSCALAR_INT || k == YSCALAR_FLOAT || k == YSCALAR_BOOL)) {
		sbuf_add(out, n->str, n->len);
		return;
	}
	sbuf_addc(out, '"');
	for (size_t i = 0; i < n->len; i++) {
		unsigned char c = (unsigned char)n->str[i];

		if (c == '"' || c == '\\')
			sbuf_addf(out, "\\%c", c);
		else if (c < 0x20)
			sbuf_addf(out, "\\u%04x", c);
		else
			sbuf_addc(out, (char)c);
	}
	sbuf_addc(out, '"');
}

/* jsonpath prints a map or list as compact JSON; custom-columns as Go's %v
 * ([a b], map[k:v]), as kubectl does. */
static void jp_write(const struct ynode *n, bool go, bool top, struct sbuf *out)
{
	if (n->type == YNODE_SCALAR) {
		if (go || top)
			sbuf_add(out, n->str, n->len);
		else
			jp_json_scalar(n, out);
	} else if (n->type == YNODE_SEQ) {
		sbuf_addc(out, '[');
		for (size_t i = 0; i < n->n; i++) {
			if (i)
				sbuf_addc(out, go ? ' ' : ',');
			jp_write(n->items[i], go, false, out);
		}
		sbuf_addc(out, ']');
	} else if (n->type == YNODE_MAP) {
		sbuf_adds(out, go ? "map[" : "{");
		for (size_t i = 0; i < n->n; i++) {
			if (i)
				sbuf_addc(out, go ? ' ' : ',');
			if (go)
				sbuf_add(out, n->pairs[i].key->str, n->pairs[i].key->len);
			else
				jp_json_scalar(n->pairs[i].key, out);
			sbuf_addc(out, ':');
			jp_write(n->pairs[i].value, go, false, out);
		}
		sbuf_addc(out, go ? ']' : '}');
	} else {
		sbuf_adds(out, go ? "<nil>" : "null");
	}
}

static void jp_value(const struct ynode *n, struct sbuf *out)
{
	jp_write(n, false, true, out);
}

/* The template from t (len bytes) against the nodes of ctx. */
static int jp_run(const char *t, size_t len, const struct jp_set *ctx, struct sbuf *out,
                  struct sbuf *err)
{
	size_t i = 0;

	while (i < len) {
		const char *open = memchr(t + i, '{', len - i), *close;
		const char *e;
		size_t elen;

		if (!open) {
			sbuf_add(out, t + i, len - i);
			break;
		}
		sbuf_add(out, t + i, (size_t)(open - t - i));
		close = memchr(open, '}', len - (size_t)(open - t));
		if (!close) {
			sbuf_addf(err, "unclosed action");
			return -1;
		}
		e = open + 1;
		elen = (size_t)(close - e);
		while (elen && *e == ' ')
			e++, elen--;
		i = (size_t)(close - t) + 1;
		if (elen && (*e == '"' || *e == '\'')) {
			for (size_t k = 1; k + 1 < elen; k++) {
				if (e[k] == '\\' && k + 2 < elen) {
					k++;
					sbuf_addc(out, e[k] == 'n' ? '\n' : e[k] == 't' ? '\t' : e[k]);
				} else {
					sbuf_addc(out, e[k]);
				}
			}
		} else if (elen >= 5 && strncmp(e, "range", 5) == 0) {
			/* {range EXPR}BODY{end}: BODY once per result. */
			const char *body = t + i, *end = NULL;
			struct jp_set items = { NULL, 0, 0 };
			int depth = 1, rc = 0;

			for (const char *q = body; q < t + len; q++) {
				if (strncmp(q, "{range", 6) == 0)
					depth++;
				else if (strncmp(q, "{end}", 5) == 0 && --depth == 0) {
					end = q;
					break;
				}
			}
			if (!end) {
				sbuf_addf(err, "{range} without {end}");
				return -1;
			}
			if (jp_eval(e + 5 + strspn(e + 5, " "), elen - 5 - strspn(e + 5, " "), ctx,
			            &items, err) < 0)
				rc = -1;
			for (size_t k = 0; rc == 0 && k < items.n; k++) {
				struct jp_set one = { &items.v[k], 1, 1 };

				rc = jp_run(body, (size_t)(end - body), &one, out, err);
			}
			free(items.v);
			if (rc < 0)
				return -1;
			i = (size_t)(end - t) + 5;
		} else {
			struct jp_set res = { NULL, 0, 0 };

			if (jp_eval(e, elen, ctx, &res, err) < 0) {
				free(res.v);
				return -1;
			}
			for (size_t k = 0; k < res.n; k++) {
				if (k)
					sbuf_addc(out, ' ');
				jp_value(res.v[k], out);
			}
			free(res.v);
		}
	}
	return 0;
}

int ctl_jsonpath(const char *tmpl, const struct ynode *root, struct sbuf *out, struct sbuf *err)
{
	struct jp_set ctx = { &root, 1, 1 };

	return jp_run(tmpl, strlen(tmpl), &ctx, out, err);
}

int ctl_custom_columns(const char *spec, const struct ynode *const *docs, size_t n,
                       bool no_headers, FILE *out, struct sbuf *err)
{
	char *copy = xstrdup(spec), *save = NULL;
	const char *exprs[64], *heads[64];
	size_t ncols = 0;
	struct ctl_table t;
	int rc = -1;

	ctl_table_init(&t, 0);
	for (char *col = strtok_r(copy, ",", &save); col; col = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(col, ':');

		if (!colon || colon == col || !colon[1] || ncols == ARRAY_SIZE(exprs)) {
			sbuf_addf(err, "unexpected custom-columns spec: %s, expected <header>:<json-path-expr>",
			          col);
			goto out;
		}
		*colon = '\0';
		heads[ncols] = col;
		exprs[ncols++] = colon + 1;
	}
	if (!ncols) {
		sbuf_addf(err, "custom-columns format specified but no custom columns given");
		goto out;
	}
	ctl_table_init(&t, ncols);
	if (!no_headers)
		for (size_t c = 0; c < ncols; c++)
			ctl_table_add(&t, heads[c]);
	for (size_t d = 0; d < n; d++) {
		for (size_t c = 0; c < ncols; c++) {
			const struct ynode *doc = docs[d];
			struct jp_set ctx = { &doc, 1, 1 }, res = { NULL, 0, 0 };
			struct sbuf cell = SBUF_INIT;
			const char *e = exprs[c];
			char dotted[512];

			if (*e == '{')
				snprintf(dotted, sizeof(dotted), "%.*s", (int)strcspn(e + 1, "}"), e + 1);
			else
				snprintf(dotted, sizeof(dotted), "%s%s", *e == '.' || *e == '[' ? "" : ".", e);
			if (jp_eval(dotted, strlen(dotted), &ctx, &res, err) < 0) {
				free(res.v);
				sbuf_free(&cell);
				goto out;
			}
			for (size_t k = 0; k < res.n; k++) {
				if (k)
					sbuf_addc(&cell, ',');
				jp_write(res.v[k], true, true, &cell);
			}
			ctl_table_add(&t, res.n ? sbuf_str(&cell) : "<none>");
			free(res.v);
			sbuf_free(&cell);
		}
	}
	ctl_table_print(&t, out);
	rc = 0;
out:
	ctl_table_free(&t);
	free(copy);
	return rc;
}
