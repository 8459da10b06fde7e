/* egressctl get KIND[,KIND...] [NAME...] | KIND/NAME... [-n NS | -A] [-o yaml|json|name] */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cmd/egressctl/ctl.h"
#include "config/res_gwapi.h"
#include "config/resource.h"
#include "core/util.h"

static const char get_usage[] =
	"Display one or many resources from the store.\n"
	"\n"
	"Kinds are named as kubectl names them: serviceentry (se), gateway (gw),\n"
	"virtualservice (vs), destinationrule (dr), authorizationpolicy (ap),\n"
	"secret; singular, plural, short name or KIND.GROUP. The Gateway API kinds:\n"
	"gateways.gateway.networking.k8s.io (gtw; a bare \"gateway\" is Istio's), httproute,\n"
	"tlsroute, tcproute, referencegrant; -o yaml shows their status as Istio's controller\n"
	"writes it. Tables show the columns kubectl shows for Istio's resources; AGE is the\n"
	"time since the resource's file was last written.\n"
	"\n"
	"Usage:\n"
	"  egressctl get KIND[,KIND...] [NAME...] [-n NAMESPACE | -A] [-o yaml|json|name]\n"
	"  egressctl get KIND[,KIND...] -l SELECTOR [-n NAMESPACE | -A] [-o ...]\n"
	"  egressctl get KIND/NAME... [-n NAMESPACE] [-o yaml|json|name]\n"
	"\n"
	"Examples:\n"
	"  egressctl get serviceentries\n"
	"  egressctl get gw istio-egressgateway -o yaml\n"
	"  egressctl get secrets -n istio-system\n"
	"  egressctl get dr -A\n"
	"\n"
	"Flags:\n"
	"  -A, --all-namespaces    list resources of every namespace\n"
	"  -o, --output FORMAT     yaml, json, name, wide (the table: Istio's kinds have no\n"
	"                          more columns), jsonpath=TEMPLATE ({.metadata.name},\n"
	"                          {range .items[*]}...{end}) or custom-columns=H:EXPR,...\n"
	"  -l, --selector SEL      only objects whose labels match (app=x,tier!=y,\n"
	"                          env in (a,b),!legacy), as kubectl -l\n"
	"      --no-headers        leave out the table's header line\n"
	"  -n, --namespace NS      the namespace (default \"default\")\n"
	"      --store DIR         the store directory\n";

enum get_format { GET_TABLE, GET_NAME, GET_YAML, GET_JSON, GET_JSONPATH, GET_CUSTOM };

/* One group of results: a kind and the entries shown for it. */
struct get_group {
	const struct res_kind_info *k;
	const char **names;             /* asked-for names; NULL/0 for "all" */
	size_t nnames;
	const struct store_entry **v;
	size_t n;
};

struct get_req {
	struct get_group *groups;
	size_t ngroups;
	bool named;                     /* names were given */
	bool all_ns;
	const char *ns;
	enum get_format format;
	bool no_headers;
	const struct ctl_selector *sel; /* -l: only matching objects; NULL: all */
	const char *tmpl;               /* -o jsonpath=TEMPLATE / custom-columns=SPEC */
	bool failed;                    /* the printer could not print (bad template) */
};

static struct get_group *get_group_for(struct get_req *q, const struct res_kind_info *k)
{
	for (size_t i = 0; i < q->ngroups; i++)
		if (q->groups[i].k == k)
			return &q->groups[i];
	q->groups = xrealloc(q->groups, (q->ngroups + 1) * sizeof(*q->groups));
	memset(&q->groups[q->ngroups], 0, sizeof(q->groups[0]));
	q->groups[q->ngroups].k = k;
	return &q->groups[q->ngroups++];
}

static void get_add_name(struct get_group *g, const char *name)
{
	g->names = xrealloc(g->names, (g->nnames + 1) * sizeof(*g->names));
	g->names[g->nnames++] = name;
}

static void get_add_entry(struct get_group *g, const struct store_entry *e)
{
	g->v = xrealloc(g->v, (g->n + 1) * sizeof(*g->v));
	g->v[g->n++] = e;
}

/* Turns the words into groups. Returns 0 or -1 (printed). */
static int get_targets(struct get_req *q, const struct ctl_strs *pos, char **scratch)
{
	bool slash = pos->n && strchr(pos->v[0], '/');

	if (pos->n == 0) {
		fprintf(stderr, "error: you must specify the type of resource to get. Use "
		        "\"egressctl get --help\" for the kinds.\n");
		return -1;
	}
	if (slash) {
		for (size_t i = 0; i < pos->n; i++) {
			char *w = scratch[i] = xstrdup(pos->v[i]);
			char *sl = strchr(w, '/');
			const struct res_kind_info *k;

			if (!sl || !sl[1]) {
				fprintf(stderr, "error: there is no need to specify a resource type as a "
				        "separate argument when passing arguments in resource/name form\n");
				return -1;
			}
			*sl = '\0';
			k = ctl_kind(w);
			if (!k)
				return -1;
			get_add_name(get_group_for(q, k), sl + 1);
		}
		q->named = true;
		return 0;
	}
	scratch[0] = xstrdup(pos->v[0]);
	for (char *save = NULL, *w = strtok_r(scratch[0], ",", &save); w;
	     w = strtok_r(NULL, ",", &save)) {
		const struct res_kind_info *k = ctl_kind(w);
		struct get_group *g;

		if (!k)
			return -1;
		g = get_group_for(q, k);
		for (size_t i = 1; i < pos->n; i++)
			get_add_name(g, pos->v[i]);
	}
	if (q->ngroups == 0)
		return ctl_kind(pos->v[0]) ? 0 : -1;
	q->named = pos->n > 1;
	return 0;
}

static int get_cmp(const void *a, const void *b)
{
	const struct resource *x = &(*(const struct store_entry *const *)a)->res;
	const struct resource *y = &(*(const struct store_entry *const *)b)->res;
	int c = strcmp(x->namespace, y->namespace);

	return c ? c : strcmp(x->name, y->name);
}

/* Fills each group from the store; prints NotFound for missing names. Returns the
 * number of names not found. */
static int get_select(struct get_req *q, const struct store_contents *store)
{
	int missing = 0;

	for (size_t i = 0; i < q->ngroups; i++) {
		struct get_group *g = &q->groups[i];

		if (g->nnames) {
			for (size_t j = 0; j < g->nnames; j++) {
				const struct store_entry *e = store_find(store, g->k->kind, q->ns,
				                                         g->names[j]);

				if (e) {
					get_add_entry(g, e);
				} else {
					ctl_not_found(g->k, g->names[j]);
					missing++;
				}
			}
			continue;
		}
		for (size_t j = 0; j < store->n; j++) {
			const struct store_entry *e = &store->v[j];

			if (e->res.kind == g->k->kind &&
			    (q->all_ns || strcmp(e->res.namespace, q->ns) == 0) &&
			    (!q->sel || ctl_selector_match(q->sel, e->res.node)))
				get_add_entry(g, e);
		}
		if (g->n > 1)
			qsort(g->v, g->n, sizeof(*g->v), get_cmp);
	}
	return missing;
}

/* ---- table cells ---- */

/* A string list the way kubectl's printer columns show it: compact JSON, with Go's
 * escaping of <, > and &. Empty when absent. */
static void get_json_list(const struct ynode *seq, struct sbuf *out)
{
	if (!seq || seq->type != YNODE_SEQ)
		return;
	sbuf_addc(out, '[');
	for (size_t i = 0; i < seq->n; i++) {
		const struct ynode *it = seq->items[i];
		const unsigned char *p = (const unsigned char *)(it->str ? it->str : "");

		if (i)
			sbuf_addc(out, ',');
		sbuf_addc(out, '"');
		for (size_t j = 0; it->type == YNODE_SCALAR && j < it->len; j++) {
			unsigned char ch = p[j];

			if (ch == '"' || ch == '\\')
				sbuf_addf(out, "\\%c", ch);
			else if (ch == '\n')
				sbuf_adds(out, "\\n");
			else if (ch < 0x20 || ch == '<' || ch == '>' || ch == '&')
				sbuf_addf(out, "\\u%04x", ch);
			else
				sbuf_addc(out, (char)ch);
		}
		sbuf_addc(out, '"');
	}
	sbuf_addc(out, ']');
}

static const char *get_spec_str(const struct store_entry *e, const char *field)
{
	const char *s = ynode_str(ynode_get(ynode_get(e->res.node, "spec"), field));

	return s ? s : "";
}

static void get_header(struct ctl_table *t, const struct get_req *q, enum res_kind kind)
{
	if (q->all_ns)
		ctl_table_add(t, "NAMESPACE");
	ctl_table_add(t, "NAME");
	switch (kind) {
	case RES_SERVICE_ENTRY:
		ctl_table_add(t, "HOSTS");
		ctl_table_add(t, "LOCATION");
		ctl_table_add(t, "RESOLUTION");
		break;
	case RES_VIRTUAL_SERVICE:
		ctl_table_add(t, "GATEWAYS");
		ctl_table_add(t, "HOSTS");
		break;
	case RES_DESTINATION_RULE:
		ctl_table_add(t, "HOST");
		break;
	case RES_AUTHORIZATION_POLICY:
		ctl_table_add(t, "ACTION");
		break;
	case RES_SECRET:
		ctl_table_add(t, "TYPE");
		ctl_table_add(t, "DATA");
		break;
	case RES_K8S_GATEWAY:
		ctl_table_add(t, "CLASS");
		ctl_table_add(t, "ADDRESS");
		ctl_table_add(t, "PROGRAMMED");
		break;
	case RES_HTTP_ROUTE:
	case RES_TLS_ROUTE:
		ctl_table_add(t, "HOSTNAMES");
		break;
	default:
		break;
	}
	ctl_table_add(t, "AGE");
}

static size_t get_ncols(const struct get_req *q, enum res_kind kind)
{
	size_t n = q->all_ns ? 3 : 2;

	switch (kind) {
	case RES_SERVICE_ENTRY:    return n + 3;
	case RES_VIRTUAL_SERVICE:  return n + 2;
	case RES_DESTINATION_RULE: return n + 1;
	case RES_AUTHORIZATION_POLICY: return n + 1;
	case RES_SECRET:           return n + 2;
	case RES_K8S_GATEWAY:      return n + 3;
	case RES_HTTP_ROUTE:       return n + 1;
	case RES_TLS_ROUTE:        return n + 1;
	default:                   return n;
	}
}

static void get_row(struct ctl_table *t, const struct get_req *q, const struct store_entry *e,
                    bool prefix, time_t now)
{
	const struct ynode *spec = ynode_get(e->res.node, "spec");
	struct sbuf cell = SBUF_INIT;

	if (q->all_ns)
		ctl_table_add(t, e->res.namespace);
	if (prefix) {
		ctl_kind_ref(res_kind_info(e->res.kind), &cell);
		sbuf_addc(&cell, '/');
	}
	sbuf_adds(&cell, e->res.name);
	ctl_table_add(t, sbuf_str(&cell));
	sbuf_reset(&cell);
	switch (e->res.kind) {
	case RES_SERVICE_ENTRY:
		get_json_list(ynode_get(spec, "hosts"), &cell);
		ctl_table_add(t, sbuf_str(&cell));
		sbuf_reset(&cell);
		ctl_table_add(t, get_spec_str(e, "location"));
		ctl_table_add(t, get_spec_str(e, "resolution"));
		break;
	case RES_VIRTUAL_SERVICE:
		get_json_list(ynode_get(spec, "gateways"), &cell);
		ctl_table_add(t, sbuf_str(&cell));
		sbuf_reset(&cell);
		get_json_list(ynode_get(spec, "hosts"), &cell);
		ctl_table_add(t, sbuf_str(&cell));
		sbuf_reset(&cell);
		break;
	case RES_DESTINATION_RULE:
		ctl_table_add(t, get_spec_str(e, "host"));
		break;
	case RES_AUTHORIZATION_POLICY:
		/* The CRD's printer column is .spec.action: empty when not written. */
		ctl_table_add(t, get_spec_str(e, "action"));
		break;
	case RES_SECRET: {
		const struct secret *s = e->res.u.secret;

		ctl_table_add(t, s->type ? s->type : STORE_SECRET_OPAQUE);
		sbuf_addf(&cell, "%zu", s->data.n);
		ctl_table_add(t, sbuf_str(&cell));
		sbuf_reset(&cell);
		break;
	}
	case RES_K8S_GATEWAY: {
		const char *cls = get_spec_str(e, "gatewayClassName");

		ctl_table_add(t, cls);
		/* No Service, no address: the proxies listen where they are started. Programmed
		 * is gwapi_translate's condition: True exactly for class istio. */
		ctl_table_add(t, "");
		ctl_table_add(t, strcmp(cls, "istio") == 0 ? "True" : "False");
		break;
	}
	case RES_HTTP_ROUTE:
	case RES_TLS_ROUTE:
		get_json_list(ynode_get(spec, "hostnames"), &cell);
		ctl_table_add(t, sbuf_str(&cell));
		sbuf_reset(&cell);
		break;
	default:
		break;
	}
	ctl_age(e->mtime, now, &cell);
	ctl_table_add(t, sbuf_str(&cell));
	sbuf_free(&cell);
}

/* ---- output ---- */

static size_t get_count(const struct get_req *q)
{
	size_t n = 0;

	for (size_t i = 0; i < q->ngroups; i++)
		n += q->groups[i].n;
	return n;
}

static void get_print_tables(const struct get_req *q)
{
	bool prefix = q->ngroups > 1;
	bool first = true;
	struct timespec ts;
	time_t now;

	/* Not time(NULL): glibc answers it from the coarse clock, up to a tick behind the
	 * clock that stamped a file written an instant ago (which would then look a second
	 * younger than it is). */
	clock_gettime(CLOCK_REALTIME, &ts);
	now = ts.tv_sec;

	for (size_t i = 0; i < q->ngroups; i++) {
		const struct get_group *g = &q->groups[i];
		struct ctl_table t;

		if (g->n == 0)
			continue;
		ctl_table_init(&t, get_ncols(q, g->k->kind));
		if (!q->no_headers)
			get_header(&t, q, g->k->kind);
		for (size_t j = 0; j < g->n; j++)
			get_row(&t, q, g->v[j], prefix, now);
		if (!first)
			fputc('\n', stdout);
		ctl_table_print(&t, stdout);
		ctl_table_free(&t);
		first = false;
	}
}

static void get_print_names(const struct get_req *q)
{
	struct sbuf ref = SBUF_INIT;

	for (size_t i = 0; i < q->ngroups; i++) {
		for (size_t j = 0; j < q->groups[i].n; j++) {
			sbuf_reset(&ref);
			ctl_kind_ref(q->groups[i].k, &ref);
			printf("%s/%s\n", sbuf_str(&ref), q->groups[i].v[j]->res.name);
		}
	}
	sbuf_free(&ref);
}

/* The output document of e, with the status the Gateway API kinds get from x. */
static struct ynode *get_doc(struct ystream *out, const struct store_entry *e,
                             const struct gwapi_xlate *x)
{
	struct ynode *doc = ctl_output_doc(out, e);

	ctl_gwapi_status(out, doc, x, &e->res);
	return doc;
}

/* yaml/json: the object itself for exactly one named resource, else a kubectl List. */
static void get_print_docs(struct get_req *q, const struct store_contents *store)
{
	const struct resource **all = xcalloc(store->n + 1, sizeof(*all));
	struct gwapi_xlate x;
	struct diags quiet = DIAGS_INIT;
	struct ystream out;
	struct ynode *root, *items = NULL;
	struct sbuf text = SBUF_INIT;
	size_t total = get_count(q);

	memset(&out, 0, sizeof(out));
	/* The status is what the proxies make of the objects: the same translation. Its
	 * warnings are analyze's and the proxies' to report. */
	for (size_t i = 0; i < store->n; i++)
		all[i] = &store->v[i].res;
	gwapi_translate(all, store->n, &x, &quiet);
	if (q->named && total == 1 && q->ngroups == 1 && q->groups[0].nnames == 1) {
		root = get_doc(&out, q->groups[0].v[0], &x);
	} else {
		root = ynode_new_map(&out);
		ynode_map_set(&out, root, "apiVersion", ynode_new_scalar(&out, "v1", 2, true));
		items = ynode_new_seq(&out);
		for (size_t i = 0; i < q->ngroups; i++)
			for (size_t j = 0; j < q->groups[i].n; j++)
				ynode_seq_append(&out, items, get_doc(&out, q->groups[i].v[j], &x));
		ynode_map_set(&out, root, "items", items);
		ynode_map_set(&out, root, "kind", ynode_new_scalar(&out, "List", 4, true));
		{
			struct ynode *meta = ynode_new_map(&out);

			ynode_map_set(&out, meta, "resourceVersion", ynode_new_scalar(&out, "", 0, true));
			ynode_map_set(&out, root, "metadata", meta);
		}
	}
	if (q->format == GET_JSONPATH || q->format == GET_CUSTOM) {
		struct sbuf err = SBUF_INIT;
		int rc;

		if (q->format == GET_JSONPATH) {
			rc = ctl_jsonpath(q->tmpl, root, &text, &err);
		} else {
			const struct ynode **docs = xcalloc(get_count(q) + 1, sizeof(*docs));
			size_t n = 0;

			if (items)
				for (size_t i = 0; i < items->n; i++)
					docs[n++] = items->items[i];
			else
				docs[n++] = root;
			rc = ctl_custom_columns(q->tmpl, docs, n, q->no_headers, stdout, &err);
			free(docs);
		}
		if (rc < 0) {
			fprintf(stderr, "error: %s\n", sbuf_str(&err));
			q->failed = true;
		}
		sbuf_free(&err);
	} else if (q->format == GET_JSON) {
		ydoc_emit_json(root, &text);
		if (text.len && text.s[text.len - 1] != '\n')
			sbuf_addc(&text, '\n');
	} else {
		ydoc_emit(root, &text);
	}
	fwrite(text.s ? text.s : "", 1, text.len, stdout);
	/* get -o yaml shows Secret data, as kubectl does; the copies made for it do not
	 * outlive the command's output. */
	if (text.s)
		OPENSSL_cleanse(text.s, text.cap);
	sbuf_free(&text);
	store_cleanse_tree(root);
	ystream_free(&out);
	gwapi_xlate_free(&x);
	diags_free(&quiet);
	free(all);
}

static int get_format_parse(const char *o, enum get_format *f, const char **tmpl)
{
	if (o && strncmp(o, "jsonpath=", 9) == 0) {
		*f = GET_JSONPATH;
		*tmpl = o + 9;
	} else if (o && strncmp(o, "custom-columns=", 15) == 0) {
		*f = GET_CUSTOM;
		*tmpl = o + 15;
	} else if (!o || strcmp(o, "wide") == 0)
		*f = GET_TABLE;
	else if (strcmp(o, "name") == 0)
		*f = GET_NAME;
	else if (strcmp(o, "yaml") == 0)
		*f = GET_YAML;
	else if (strcmp(o, "json") == 0)
		*f = GET_JSON;
	else {
		fprintf(stderr, "error: unable to match a printer suitable for the output format "
		        "\"%s\", allowed formats are: custom-columns,json,jsonpath,name,wide,yaml\n", o);
		return -1;
	}
	return 0;
}

int ctl_cmd_get(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 };
	const char *output = NULL, *selector = NULL;
	struct get_req q;
	struct ctl_selector sel;
	const struct ctl_flag flags[] = {
		{ "output", 'o', CTL_FLAG_STR, &output },
		{ "selector", 'l', CTL_FLAG_STR, &selector },
		{ "all-namespaces", 'A', CTL_FLAG_BOOL, &q.all_ns },
		{ "no-headers", 0, CTL_FLAG_BOOL, &q.no_headers },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	struct store_contents store = STORE_CONTENTS_INIT;
	char **scratch = NULL;
	bool help = false;
	int rc = 1, missing;

	memset(&q, 0, sizeof(q));
	memset(&sel, 0, sizeof(sel));
	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(get_usage, stdout);
		rc = 0;
		goto out;
	}
	scratch = xcalloc(pos.n + 1, sizeof(*scratch));
	if (get_format_parse(output, &q.format, &q.tmpl) < 0 || get_targets(&q, &pos, scratch) < 0)
		goto out;
	q.ns = ctl_namespace(c);
	if (selector) {
		if (q.named) {
			fprintf(stderr, "error: name cannot be provided when a selector is specified\n");
			goto out;
		}
		if (ctl_selector_parse(selector, &sel) < 0)
			goto out;
		q.sel = &sel;
	}
	if (q.all_ns && q.named) {
		fprintf(stderr, "error: a resource cannot be retrieved by name across all "
		        "namespaces\n");
		goto out;
	}
	ctl_load_store(c, &store, true);
	missing = get_select(&q, &store);
	rc = missing ? 1 : 0;
	if (get_count(&q) == 0 && q.format != GET_YAML && q.format != GET_JSON &&
	    q.format != GET_JSONPATH) {
		if (!q.named) {
			if (q.all_ns)
				fprintf(stderr, "No resources found\n");
			else
				fprintf(stderr, "No resources found in %s namespace.\n", q.ns);
		}
		goto out;
	}
	if (get_count(&q) == 0 && q.named)
		goto out;
	switch (q.format) {
	case GET_TABLE:
		get_print_tables(&q);
		break;
	case GET_NAME:
		get_print_names(&q);
		break;
	case GET_YAML:
	case GET_JSON:
	case GET_JSONPATH:
	case GET_CUSTOM:
		get_print_docs(&q, &store);
		if (q.failed)
			rc = 1;
		break;
	}
out:
	for (size_t i = 0; i < q.ngroups; i++) {
		free(q.groups[i].names);
		free(q.groups[i].v);
	}
	free(q.groups);
	for (size_t i = 0; scratch && i < pos.n; i++)
		free(scratch[i]);
	free(scratch);
	ctl_selector_free(&sel);
	store_contents_free(&store);
	ctl_strs_free(&pos);
	return rc;
}
