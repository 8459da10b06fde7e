/* egressctl describe KIND NAME...: kubectl describe's layout for a stored object (Name,
 * Namespace, Labels, Annotations, API Version, Kind, then the spec as kubectl prints an
 * object it has no describer for: keys as "Title Case" words, sorted, values aligned),
 * plus what egressctl knows about it: the warnings the store-wide reference check finds
 * for it, and, when a proxy's admin endpoint is named (--admin or $EGRESSGW_ADMIN), what
 * that proxy made of it (the listeners, routes and clusters of its config_dump that come
 * from this object). Secrets show their keys and sizes, never their data, as kubectl. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "config/resource.h"
#include "core/util.h"
#include "net/sock.h"

static const char describe_usage[] =
	"Show details of resources, as kubectl describe does, with the warnings egressctl\n"
	"finds for them and, given a proxy's admin address, what that proxy made of them:\n"
	"the listeners, routes and clusters that come from the object.\n"
	"\n"
	"Usage:\n"
	"  egressctl describe KIND NAME... [-n NAMESPACE] [--admin ADMIN_ADDR]\n"
	"\n"
	"Flags:\n"
	"      --admin ADDR        a running proxy's admin endpoint (default $EGRESSGW_ADMIN;\n"
	"                          without either, the proxy section is left out)\n"
	"  -n, --namespace NS      the namespace (default \"default\")\n"
	"      --store DIR         the store directory\n";

/* kubectl's smartLabelFor: "subjectAltNames" -> "Subject Alt Names", "apiVersion" ->
 * "API Version". */
static void ds_label(const char *key, struct sbuf *out)
{
	static const char *const upper[] = { "api", "http", "https", "id", "ip", "sni", "tls",
	                                     "tcp", "uri", "url", "dns", "crl", "ca" };
	const char *p = key;

	while (*p) {
		const char *s = p++;
		char word[64];
		size_t n;

		while (*p && !isupper((unsigned char)*p))
			p++;
		n = (size_t)(p - s) < sizeof(word) - 1 ? (size_t)(p - s) : sizeof(word) - 1;
		for (size_t i = 0; i < n; i++)
			word[i] = (char)tolower((unsigned char)s[i]);
		word[n] = '\0';
		if (out->len && out->s[out->len - 1] != ' ' && s != key)
			sbuf_addc(out, ' ');
		for (size_t i = 0; i < ARRAY_SIZE(upper); i++)
			if (strcmp(word, upper[i]) == 0) {
				for (size_t k = 0; k < n; k++)
					word[k] = (char)toupper((unsigned char)word[k]);
				break;
			}
		word[0] = (char)toupper((unsigned char)word[0]);
		sbuf_adds(out, word);
	}
}

static int ds_key_cmp(const void *a, const void *b)
{
	const struct ypair *x = *(const struct ypair *const *)a, *y = *(const struct ypair *const *)b;

	return strcmp(x->key->str, y->key->str);
}

static void ds_node(const struct ynode *n, int indent, struct sbuf *out);

/* A map: one "Label:  value" line per key, sorted, values aligned in the block. */
static void ds_map(const struct ynode *m, int indent, struct sbuf *out)
{
	const struct ypair **v = xcalloc(m->n + 1, sizeof(*v));
	struct sbuf *labels = xcalloc(m->n + 1, sizeof(*labels));
	size_t width = 0;

	for (size_t i = 0; i < m->n; i++)
		v[i] = &m->pairs[i];
	qsort(v, m->n, sizeof(*v), ds_key_cmp);
	for (size_t i = 0; i < m->n; i++) {
		ds_label(v[i]->key->str, &labels[i]);
		if (v[i]->value->type == YNODE_SCALAR && labels[i].len + 1 > width)
			width = labels[i].len + 1;
	}
	for (size_t i = 0; i < m->n; i++) {
		const struct ynode *val = v[i]->value;

		sbuf_addf(out, "%*s%s:", indent, "", sbuf_str(&labels[i]));
		if (val->type == YNODE_SCALAR)
			sbuf_addf(out, "%*s%.*s\n", (int)(width - labels[i].len + 1), "", (int)val->len,
			          val->str);
		else if (val->type == YNODE_NULL || val->n == 0)
			sbuf_adds(out, "\n");
		else {
			sbuf_addc(out, '\n');
			ds_node(val, indent + 2, out);
		}
		sbuf_free(&labels[i]);
	}
	free(labels);
	free(v);
}

static void ds_node(const struct ynode *n, int indent, struct sbuf *out)
{
	if (n->type == YNODE_MAP) {
		ds_map(n, indent, out);
	} else if (n->type == YNODE_SEQ) {
		for (size_t i = 0; i < n->n; i++)
			ds_node(n->items[i], indent, out);
	} else if (n->type == YNODE_SCALAR) {
		sbuf_addf(out, "%*s%.*s\n", indent, "", (int)n->len, n->str);
	}
}

static void ds_strmap(const char *label, const struct ynode *m, struct sbuf *out)
{
	sbuf_addf(out, "%-14s", label);
	if (!m || m->type != YNODE_MAP || m->n == 0) {
		sbuf_adds(out, "<none>\n");
		return;
	}
	for (size_t i = 0; i < m->n; i++)
		sbuf_addf(out, "%*s%s=%s\n", i ? 14 : 0, "", m->pairs[i].key->str,
		          ynode_str(m->pairs[i].value) ? ynode_str(m->pairs[i].value) : "");
}

/* The proxy's view: config_dump entries that name this object. */
static void ds_proxy(const struct ctl *c, const struct resource *r, const char *admin,
                     struct sbuf *out)
{
	struct sock_addr a;
	char addr[SOCK_ADDR_STRLEN], id[600];
	struct sbuf body = SBUF_INIT;
	struct ystream s;
	struct diags d = DIAGS_INIT;
	const struct ynode *root;
	size_t shown = 0;

	(void)c;
	memset(&s, 0, sizeof(s));
	snprintf(id, sizeof(id), "%s/%s", r->namespace, r->name);
	if (ctl_admin_addr(admin, &a, addr, sizeof(addr)) < 0 ||
	    ctl_admin_get(&a, addr, "/config_dump", &body) < 0 ||
	    ydoc_parse("config_dump", sbuf_str(&body), body.len, &s, &d) < 0 || !s.ndocs) {
		sbuf_addf(out, "Proxy:        <unreachable at %s>\n", admin);
		goto out;
	}
	root = s.docs[0].root;
	sbuf_addf(out, "Proxy:        %s %s, configuration version %s\n",
	          ynode_str(ynode_get(root, "role")), addr, ynode_str(ynode_get(root, "version")));
	{
		const struct ynode *ls = ynode_get(root, "listeners");

		for (size_t i = 0; ls && i < ls->n; i++) {
			const struct ynode *sv = ynode_get(ls->items[i], "servers");

			for (size_t k = 0; sv && k < sv->n; k++) {
				const char *g = ynode_str(ynode_get(sv->items[k], "gateway"));

				if (r->kind == RES_GATEWAY && g && strcmp(g, id) == 0) {
					sbuf_addf(out, "  Listener:   %s (%s)\n",
					          ynode_str(ynode_get(ls->items[i], "name")),
					          ynode_str(ynode_get(sv->items[k], "tls_mode")));
					shown++;
				}
			}
		}
	}
	if (r->kind == RES_VIRTUAL_SERVICE) {
		const struct ynode *rc = ynode_get(root, "route_configs");

		for (size_t i = 0; rc && i < rc->n; i++) {
			const struct ynode *vhs = ynode_get(rc->items[i], "virtual_hosts");

			for (size_t h = 0; vhs && h < vhs->n; h++) {
				const struct ynode *rs = ynode_get(vhs->items[h], "routes");

				for (size_t k = 0; rs && k < rs->n; k++) {
					const char *vs = ynode_str(ynode_get(rs->items[k], "virtual_service"));
					const struct ynode *dst = ynode_get(rs->items[k], "route");

					if (!vs || strcmp(vs, id) != 0)
						continue;
					sbuf_addf(out, "  Route:      %s %s -> %s\n",
					          ynode_str(ynode_get(rc->items[i], "name")),
					          ynode_str(ynode_get(vhs->items[h], "name")),
					          dst && dst->n ? ynode_str(ynode_get(dst->items[0], "cluster"))
					                        : "(redirect)");
					shown++;
				}
			}
		}
	}
	{
		const struct ynode *cls = ynode_get(root, "clusters");
		const char *key = r->kind == RES_SERVICE_ENTRY ? "service_entry"
		                  : r->kind == RES_DESTINATION_RULE ? "destination_rule" : NULL;

		for (size_t i = 0; key && cls && i < cls->n; i++) {
			const char *v = ynode_str(ynode_get(cls->items[i], key));
			const char *err = ynode_str(ynode_get(ynode_get(cls->items[i], "tls"), "error"));

			if (!v || strcmp(v, id) != 0)
				continue;
			sbuf_addf(out, "  Cluster:    %s%s%s\n", ynode_str(ynode_get(cls->items[i], "name")),
			          err && strcmp(err, "null") ? "  TLS NOT LOADED: " : "",
			          err && strcmp(err, "null") ? err : "");
			shown++;
		}
	}
	if (!shown)
		sbuf_adds(out, "  <nothing in this proxy comes from it>\n");
out:
	ystream_free(&s);
	diags_free(&d);
	sbuf_free(&body);
}

static void ds_one(const struct ctl *c, const struct store_contents *store,
                   const struct store_entry *e, const char *admin, struct sbuf *out)
{
	const struct resource *r = &e->res;
	const struct res_kind_info *k = res_kind_info(r->kind);
	const struct ynode *doc = r->node, *meta = ynode_get(doc, "metadata");
	struct resource **all = xcalloc(store->n + 1, sizeof(*all));
	struct diags d = DIAGS_INIT;
	struct sbuf who = SBUF_INIT;
	size_t nw = 0;

	sbuf_addf(out, "%-14s%s\n%-14s%s\n", "Name:", r->name, "Namespace:", r->namespace);
	ds_strmap("Labels:", ynode_get(meta, "labels"), out);
	ds_strmap("Annotations:", ynode_get(meta, "annotations"), out);
	if (r->kind == RES_SECRET) {
		/* kubectl: the keys and their sizes, never the data. */
		sbuf_addf(out, "\nType:  %s\n\nData\n====\n", r->u.secret->type ? r->u.secret->type
		                                                                 : "Opaque");
		for (size_t i = 0; i < r->u.secret->data.n; i++)
			sbuf_addf(out, "%s:  %zu bytes\n", r->u.secret->data.v[i].key,
			          r->u.secret->data.v[i].len);
		goto out;
	}
	sbuf_addf(out, "%-14s%s\n%-14s%s\n", "API Version:", r->api_version, "Kind:", k->kind_name);
	if (ynode_get(doc, "spec")) {
		sbuf_adds(out, "Spec:\n");
		ds_node(ynode_get(doc, "spec"), 2, out);
	}
	/* The store-wide reference check (what apply and a reload warn about), this object's
	 * findings only. */
	for (size_t i = 0; i < store->n; i++)
		all[i] = (struct resource *)&store->v[i].res;
	res_check_refs(all, store->n, &d);
	sbuf_addf(&who, "%s %s/%s:", k->kind_name, r->namespace, r->name);
	for (size_t i = 0; i < d.n; i++) {
		if (strncmp(d.v[i].msg, sbuf_str(&who), who.len) != 0)
			continue;
		sbuf_addf(out, "%-14s%s\n", nw++ ? "" : "Warnings:", d.v[i].msg + who.len + 1);
	}
	if (!nw)
		sbuf_addf(out, "%-14s<none>\n", "Warnings:");
	if (admin)
		ds_proxy(c, r, admin, out);
	sbuf_addf(out, "%-14s<none>\n", "Events:");
out:
	sbuf_free(&who);
	diags_free(&d);
	free(all);
}

int ctl_cmd_describe(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 };
	const char *admin = getenv("EGRESSGW_ADMIN");
	const struct ctl_flag flags[] = {
		{ "admin", 0, CTL_FLAG_STR, &admin },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	struct store_contents store = STORE_CONTENTS_INIT;
	const struct res_kind_info *k;
	struct sbuf out = SBUF_INIT;
	bool help = false;
	int rc = 1;

	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(describe_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n < 2) {
		fprintf(stderr, "error: You must specify the type of resource and a name to "
		        "describe.\nSee 'egressctl describe --help' for usage.\n");
		goto out;
	}
	k = ctl_kind(pos.v[0]);
	if (!k)
		goto out;
	if (admin && !*admin)
		admin = NULL;
	ctl_load_store(c, &store, false);
	rc = 0;
	for (size_t i = 1; i < pos.n; i++) {
		const struct store_entry *e = store_find(&store, k->kind, ctl_namespace(c), pos.v[i]);

		if (!e) {
			ctl_not_found(k, pos.v[i]);
			rc = 1;
			continue;
		}
		sbuf_reset(&out);
		ds_one(c, &store, e, admin, &out);
		fputs(sbuf_str(&out), stdout);
		if (i + 1 < pos.n)
			fputs("\n\n", stdout);
	}
out:
	sbuf_free(&out);
	store_contents_free(&store);
	ctl_strs_free(&pos);
	return rc;
}
