/* res_explain: kubectl explain over the keyword tables (res_tables.c).
 *
 * The tables are what decodes the YAML, so what explain lists is exactly what apply
 * accepts: the fields, their types (kubectl's notation: <string>, <integer>, <boolean>,
 * <[]string>, <map[string]string>, <Object>, <[]Object>), the values of enums, and the
 * fields of Istio's API that egressgw accepts with a warning and ignores. The tables have
 * no prose, so DESCRIPTION is kubectl's "<empty>" except where egressgw has something to
 * say. */
#include "config/res_internal.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

static void ex_type(const struct kw *k, struct sbuf *out)
{
	switch (k->type) {
	case KW_STR:
	case KW_DURATION:
	case KW_ENUM:
	case KW_PROTOCOL:
		sbuf_adds(out, "<string>");
		break;
	case KW_STRLIST:
		sbuf_adds(out, "<[]string>");
		break;
	case KW_STRMAP:
		sbuf_adds(out, "<map[string]string>");
		break;
	case KW_PORTMAP:
		sbuf_adds(out, "<map[string]integer>");
		break;
	case KW_U32:
	case KW_I32:
	case KW_U32OPT:
		sbuf_adds(out, "<integer>");
		break;
	case KW_BOOL:
		sbuf_adds(out, "<boolean>");
		break;
	case KW_DOUBLE:
		sbuf_adds(out, "<number>");
		break;
	case KW_OBJ:
	case KW_EMBED:
		sbuf_adds(out, "<Object>");
		break;
	case KW_LIST:
		sbuf_adds(out, "<[]Object>");
		break;
	case KW_NAMED:
		sbuf_adds(out, "<map[string]Object>");
		break;
	case KW_UNSUPPORTED:
	case KW_IGNORE:
		sbuf_adds(out, "<Object>");
		break;
	}
}

/* What egressgw has to say about a field, or NULL. */
static void ex_note(const struct kw *k, const char *indent, struct sbuf *out)
{
	if (k->type == KW_UNSUPPORTED) {
		sbuf_addf(out, "%sNot implemented by egressgw: accepted with a warning (egressctl apply,\n"
		          "%sanalyze, the proxy's log) and ignored.\n", indent, indent);
	} else if (k->type == KW_ENUM && k->names) {
		sbuf_addf(out, "%sOne of:", indent);
		for (size_t i = 0; k->names[i]; i++)
			sbuf_addf(out, "%s %s", i ? "," : "", k->names[i]);
		sbuf_addc(out, '\n');
	} else if (k->type == KW_DURATION) {
		sbuf_addf(out, "%sA duration: \"1s\", \"500ms\", \"1h2m\".\n", indent);
	} else if (k->flags & KWF_PORT) {
		sbuf_addf(out, "%sA port number, 1-65535.\n", indent);
	}
}

static const struct kwtab *ex_sub(const struct kw *k)
{
	return k->type == KW_OBJ || k->type == KW_EMBED || k->type == KW_LIST ||
	       k->type == KW_NAMED ? k->sub : NULL;
}

/* The resource's top level, as kubectl explain shows it. */
static const struct kw top_istio[] = {
	{ .name = "apiVersion", .type = KW_STR }, { .name = "kind", .type = KW_STR },
	{ .name = "metadata", .type = KW_OBJ, .sub = &kt_metadata },
	{ .name = "spec", .type = KW_OBJ },   /* sub: the kind's table, set below */
	{ .name = NULL },
};
static const struct kw top_secret[] = {
	{ .name = "apiVersion", .type = KW_STR }, { .name = "data", .type = KW_STRMAP },
	{ .name = "immutable", .type = KW_BOOL }, { .name = "kind", .type = KW_STR },
	{ .name = "metadata", .type = KW_OBJ, .sub = &kt_metadata },
	{ .name = "stringData", .type = KW_STRMAP }, { .name = "type", .type = KW_STR },
	{ .name = NULL },
};

static int ex_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct kw *const *)a)->name, (*(const struct kw *const *)b)->name);
}

/* FIELDS, sorted by name as kubectl lists them. */
static void ex_fields(const struct kw *kws, const struct kwtab *spec, struct sbuf *out)
{
	const struct kw **v;
	size_t n = 0;

	for (const struct kw *k = kws; k->name; k++)
		n++;
	v = xcalloc(n + 1, sizeof(*v));
	n = 0;
	for (const struct kw *k = kws; k->name; k++)
		if (k->type != KW_IGNORE)
			v[n++] = k;
	qsort(v, n, sizeof(*v), ex_cmp);
	sbuf_adds(out, "FIELDS:\n");
	for (size_t i = 0; i < n; i++) {
		const struct kw *k = v[i];

		sbuf_addf(out, "  %s\t", k->name);
		ex_type(k, out);
		sbuf_addc(out, '\n');
		if (spec && strcmp(k->name, "spec") == 0)
			sbuf_addf(out, "    Specification of the %s.\n", spec->name);
		ex_note(k, "    ", out);
		sbuf_addc(out, '\n');
	}
	free(v);
}

int res_explain(const struct res_kind_info *k, const char *path, struct sbuf *out,
                struct sbuf *err)
{
	const struct kwtab *spec = res_spec_table(k->kind);
	struct kw top[8];
	const struct kw *kws, *field = NULL;
	char *copy = xstrdup(path), *save = NULL;
	int rc = -1;

	if (k->kind == RES_SECRET)
		memcpy(top, top_secret, sizeof(top_secret));
	else
		memcpy(top, top_istio, sizeof(top_istio));
	for (struct kw *t = top; t->name; t++)
		if (strcmp(t->name, "spec") == 0)
			t->sub = spec;
	kws = top;
	for (char *w = strtok_r(copy, ".", &save); w; w = strtok_r(NULL, ".", &save)) {
		const struct kwtab *sub = field ? ex_sub(field) : NULL;

		if (field && !sub) {
			sbuf_addf(err, "field \"%s\" does not exist", w);
			goto out;
		}
		if (sub)
			kws = sub->kws;
		field = NULL;
		for (const struct kw *c = kws; c->name; c++)
			if (c->type != KW_IGNORE && strcmp(c->name, w) == 0)
				field = c;
		if (!field) {
			sbuf_addf(err, "field \"%s\" does not exist", w);
			goto out;
		}
	}
	sbuf_addf(out, "GROUP:      %s\nKIND:       %s\nVERSION:    v1\n\n",
	          k->group[0] ? k->group : "", k->kind_name);
	if (field) {
		sbuf_addf(out, "FIELD: %s ", field->name);
		ex_type(field, out);
		sbuf_adds(out, "\n\nDESCRIPTION:\n");
		if (field->type == KW_UNSUPPORTED || (field->type == KW_ENUM && field->names) ||
		    field->type == KW_DURATION || (field->flags & KWF_PORT))
			ex_note(field, "    ", out);
		else
			sbuf_adds(out, "    <empty>\n");
		if (ex_sub(field) && ex_sub(field)->kws) {
			sbuf_addc(out, '\n');
			ex_fields(ex_sub(field)->kws, NULL, out);
		}
	} else {
		sbuf_addf(out, "DESCRIPTION:\n    %s%s\n\n", k->kind_name,
		          k->kind == RES_SECRET ? ": key material, for credentialName."
		                                : " of Istio's networking API, as egressgw applies it.");
		ex_fields(kws, spec, out);
	}
	rc = 0;
out:
	free(copy);
	return rc;
}
