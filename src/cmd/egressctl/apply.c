/* egressctl apply -f FILE|DIR|- [-n NS]: validate everything, then write each resource. */
#include <stdlib.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "config/resource.h"
#include "config/store_index.h"
#include "core/util.h"

static const char apply_usage[] =
	"Apply a configuration to the store by file name or stdin.\n"
	"\n"
	"Documents may be ServiceEntry, Gateway, VirtualService and DestinationRule\n"
	"(networking.istio.io/v1alpha3, v1beta1 or v1), AuthorizationPolicy\n"
	"(security.istio.io/v1beta1 or v1), v1 Secret, and the Gateway API's Gateway, HTTPRoute\n"
	"(gateway.networking.k8s.io/v1, v1beta1), TLSRoute and TCPRoute (v1alpha2) and\n"
	"ReferenceGrant, any number per file (Gateway API listeners of protocol UDP, and TLS\n"
	"listeners that terminate, are refused: not served yet).\n"
	"Every document is validated before anything is written: when one is invalid, each\n"
	"problem is reported as FILE:LINE:COL and nothing is applied. Each resource is\n"
	"written atomically to config/NAMESPACE/KIND/NAME.yaml in the store (a Secret to\n"
	"secrets/NAMESPACE/NAME/), or updated where it already is.\n"
	"\n"
	"The namespace is metadata.namespace, else -n, else \"default\"; a document whose\n"
	"namespace differs from -n is an error, as in kubectl. Fields egressgw accepts but\n"
	"does not apply (delegate, statPrefix, ...) are applied with one warning each,\n"
	"as kubectl prints them: \"Warning: FILE:LINE:COL: Kind ns/name: field: not applied\n"
	"by egressgw; ignored\". A DestinationRule whose host no ServiceEntry of the store\n"
	"lists once everything is written gets a warning too (IST0174; not for hosts of the\n"
	"cluster domain, which are Kubernetes Services).\n"
	"\n"
	"With --dry-run=client nothing is written: each object is validated and the line\n"
	"says what would happen (\"created (dry run)\"). --dry-run=server also checks the\n"
	"objects together with the rest of the store, as the gateway's reload does, and\n"
	"prints what that check finds.\n"
	"\n"
	"Usage:\n"
	"  egressctl apply -f FILENAME [-n NAMESPACE] [--dry-run=none|client|server]\n"
	"\n"
	"Examples:\n"
	"  egressctl apply -f serviceentry.yaml\n"
	"  egressctl apply -n istio-system -f - <<EOF\n"
	"  apiVersion: networking.istio.io/v1alpha3\n"
	"  kind: DestinationRule\n"
	"  ...\n"
	"  EOF\n"
	"\n"
	"Flags:\n"
	"  -f, --filename FILE     a file, a directory of .yaml/.yml/.json files, or - for\n"
	"                          stdin (repeatable)\n"
	"  -n, --namespace NS      namespace for documents without metadata.namespace\n"
	"      --dry-run MODE      none (default), client or server: write nothing\n"
	"      --store DIR         the store directory\n";

struct apply_item {
	struct resource res;
	struct ystream *s;      /* the input stream the document came from */
};

enum apply_dry {
	APPLY_DRY_NONE,
	APPLY_DRY_CLIENT,       /* validate the documents, say what would change */
	APPLY_DRY_SERVER,       /* and check them with the rest of the store */
};

/* --dry-run=server: the objects with everything else in the store, through the
 * cross-resource check a reload runs (res_check_refs); its findings are printed as
 * kubectl prints warnings. Returns 0, or -1 on errors. */
static int apply_check_with_store(const struct ctl *c, struct apply_item *items, size_t n)
{
	struct store_contents store;
	struct resource **all;
	struct diags d = DIAGS_INIT;
	size_t nall = 0;
	int rc;

	ctl_load_store(c, &store, false);
	all = xcalloc(store.n + n + 1, sizeof(*all));
	for (size_t i = 0; i < store.n; i++) {
		const struct resource *r = &store.v[i].res;
		bool replaced = false;

		for (size_t k = 0; k < n && !replaced; k++)
			replaced = items[k].res.kind == r->kind &&
			           strcmp(items[k].res.namespace, r->namespace) == 0 &&
			           strcmp(items[k].res.name, r->name) == 0;
		if (!replaced)
			all[nall++] = &store.v[i].res;
	}
	for (size_t k = 0; k < n; k++)
		all[nall++] = &items[k].res;
	res_check_refs(all, nall, &d);
	ctl_print_diags(&d);
	rc = diags_has_errors(&d) ? -1 : 0;
	diags_free(&d);
	free(all);
	store_contents_free(&store);
	return rc;
}

/* After a write: a DestinationRule this apply wrote whose host no ServiceEntry of the
 * store lists (IST0174) gets a warning at its host, as kubectl prints an admission
 * warning; the proxy says the same in its log. Kubernetes takes objects in any order, so
 * this is only a warning, and a ServiceEntry applied later makes it go away. The
 * ServiceEntry hosts come from the store index (brought up to date with what this apply
 * wrote), not from reading the whole store. */
static void apply_warn_dr_hosts(struct store_index *ix, const struct apply_item *items,
                                size_t n)
{
	const char *const *se;
	const char **hosts;
	char **norm;
	size_t nse, *which, nh = 0;
	bool *unknown, any = false;
	struct diags d = DIAGS_INIT;

	for (size_t k = 0; k < n && !any; k++)
		any = items[k].res.kind == RES_DESTINATION_RULE && items[k].res.u.dr->host;
	if (!any)
		return;
	se = store_index_se_hosts(ix, &nse);
	hosts = xcalloc(n + 1, sizeof(*hosts));
	norm = xcalloc(n + 1, sizeof(*norm));
	which = xcalloc(n + 1, sizeof(*which));
	unknown = xcalloc(n + 1, sizeof(*unknown));
	for (size_t k = 0; k < n; k++) {
		const struct resource *r = &items[k].res;
		char h[300];

		if (r->kind != RES_DESTINATION_RULE || !r->u.dr->host)
			continue;
		res_norm_host(r->u.dr->host, r->namespace, h, sizeof(h));
		norm[nh] = xstrdup(h);
		hosts[nh] = norm[nh];
		which[nh++] = k;
	}
	res_hosts_unlisted(se, nse, hosts, nh, unknown);
	for (size_t j = 0; j < nh; j++) {
		const struct resource *r = &items[which[j]].res;

		if (unknown[j])
			diag_warn(&d, r->u.dr->pos.file ? r->u.dr->pos.file : r->file,
			          r->u.dr->pos.line ? r->u.dr->pos.line : r->line, r->u.dr->pos.col,
			          "%s: spec.host: no ServiceEntry has host \"%s\" (IST0174): its "
			          "traffic policy applies to nothing", res_describe(r), r->u.dr->host);
		free(norm[j]);
	}
	ctl_print_diags(&d);
	diags_free(&d);
	free(unknown);
	free(which);
	free(norm);
	free(hosts);
}

/* The store as far as items need it: the files the store index names for them (and the
 * file each would be created in, and their Secret directories). What is wrong in those
 * files cannot be fixed by this command: on the first read it is said as warnings. */
static void apply_load(struct store_index *ix, const struct apply_item *items, size_t n,
                       bool warn, struct store_contents *out)
{
	struct store_key *keys = xcalloc(n + 1, sizeof(*keys));
	struct diags d = DIAGS_INIT;

	for (size_t i = 0; i < n; i++) {
		keys[i].kind = items[i].res.kind;
		keys[i].ns = items[i].res.namespace;
		keys[i].name = items[i].res.name;
	}
	store_index_load(ix, keys, n, out, &d);
	ctl_store_diags(&d, warn);
	free(keys);
}

/* kubectl's check: a document's own namespace must agree with -n. */
static void apply_check_ns(const struct ctl *c, const struct resource *r, struct diags *d)
{
	if (c->ns_flag && r->namespace_explicit && strcmp(r->namespace, c->ns_flag) != 0)
		diag_err(d, NULL, 0, 0, "the namespace from the provided object \"%s\" does not "
		         "match the namespace \"%s\". You must pass '--namespace=%s' to perform "
		         "this operation.", r->namespace, c->ns_flag, r->namespace);
}

/* Writes one resource against the current store. Returns "created", "configured" or
 * "unchanged", or NULL with errors in d. */
/* What this apply has written since the store was last read: the resources and the
 * files (or Secret directories) they went to. */
struct apply_written_item {
	enum res_kind kind;
	char *ns, *name, *path;
};

/* Items, and a set of their keys ("kind/ns/name" and "path:" + path) hashed with open
 * addressing (slot = key, NULL = empty), so that checking a resource against what was
 * written is constant time: a linear scan made applying a file of 30,000 documents
 * quadratic. */
struct apply_written {
	struct apply_written_item *v;
	size_t n, cap;
	char **set;
	size_t set_mask, set_n;
};

static size_t apply_set_slot(const struct apply_written *w, const char *key)
{
	size_t k = hash_bytes(key, strlen(key)) & w->set_mask;

	while (w->set[k] && strcmp(w->set[k], key) != 0)
		k = (k + 1) & w->set_mask;
	return k;
}

static bool apply_set_has(const struct apply_written *w, const char *key)
{
	return w->set && w->set[apply_set_slot(w, key)] != NULL;
}

/* Takes key. */
static void apply_set_add(struct apply_written *w, char *key)
{
	size_t k;

	if (!w->set || (w->set_n + 1) * 2 > w->set_mask + 1) {
		char **old = w->set;
		size_t old_mask = w->set_mask;

		w->set_mask = w->set ? w->set_mask * 2 + 1 : 63;
		w->set = xcalloc(w->set_mask + 1, sizeof(*w->set));
		for (size_t i = 0; old && i <= old_mask; i++)
			if (old[i])
				w->set[apply_set_slot(w, old[i])] = old[i];
		free(old);
	}
	k = apply_set_slot(w, key);
	if (w->set[k]) {
		free(key);
		return;
	}
	w->set[k] = key;
	w->set_n++;
}

static char *apply_res_key(enum res_kind kind, const char *ns, const char *name)
{
	return xasprintf("%d/%s/%s", (int)kind, ns, name);
}

static void apply_written_add(struct apply_written *w, const struct resource *r,
                              const char *path)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 64;
		w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
	}
	w->v[w->n].kind = r->kind;
	w->v[w->n].ns = xstrdup(r->namespace);
	w->v[w->n].name = xstrdup(r->name);
	w->v[w->n].path = xstrdup(path);
	w->n++;
	apply_set_add(w, apply_res_key(r->kind, r->namespace, r->name));
	apply_set_add(w, xasprintf("path:%s", path));
}

static void apply_written_clear(struct apply_written *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free(w->v[i].ns);
		free(w->v[i].name);
		free(w->v[i].path);
	}
	free(w->v);
	w->v = NULL;
	w->n = w->cap = 0;
	for (size_t i = 0; w->set && i <= w->set_mask; i++)
		free(w->set[i]);
	free(w->set);
	w->set = NULL;
	w->set_mask = w->set_n = 0;
}

/* True if the store as read may be stale for r: r itself was written by this apply (a
 * document given twice), or r lives in a file this apply rewrote. */
static bool apply_written_affects(const struct apply_written *w,
                                  const struct store_contents *store, const struct resource *r)
{
	const struct store_entry *e = store_find(store, r->kind, r->namespace, r->name);
	char *key = apply_res_key(r->kind, r->namespace, r->name);
	bool hit = apply_set_has(w, key);

	free(key);
	if (!hit && e) {
		key = xasprintf("path:%s", e->path);
		hit = apply_set_has(w, key);
		free(key);
	}
	return hit;
}

/* dry: say what would happen, write nothing. */
static const char *apply_one(const struct ctl *c, struct apply_item *it,
                             struct store_contents *store, bool dry, struct diags *d)
{
	const struct resource *r = &it->res;
	struct store_entry *old = store_find(store, r->kind, r->namespace, r->name);
	const char *status = old ? "configured" : "created";

	if (r->kind == RES_SECRET && (!old || old->in_secret_dir)) {
		struct store_secret now, was;
		bool same = false;
		int rc = 0;

		store_secret_from_res(r, &now);
		if (old) {
			store_secret_from_res(&old->res, &was);
			same = store_secret_equal(&now, &was);
			store_secret_free(&was);
		}
		if (same)
			status = "unchanged";
		else if (!dry)
			rc = store_put_secret(c->root, r->namespace, r->name, &now, d);
		store_secret_free(&now);
		return rc < 0 ? NULL : status;
	}
	{
		struct ynode *doc = ctl_normalise(it->s, r->node, r->namespace);

		if (old) {
			struct ynode *was = ctl_normalise(old->stream, old->res.node,
			                                  old->res.namespace);

			if (ynode_equal(doc, was))
				return "unchanged";
		}
		if (!dry && store_put(c->root, old, r->kind, r->namespace, r->name, doc, d) < 0)
			return NULL;
	}
	return status;
}

int ctl_cmd_apply(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs files = { NULL, 0 }, pos = { NULL, 0 };
	const char *dry_flag = "none";
	const struct ctl_flag flags[] = {
		{ "filename", 'f', CTL_FLAG_LIST, &files },
		{ "dry-run", 0, CTL_FLAG_STR, &dry_flag },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	enum apply_dry dry = APPLY_DRY_NONE;
	struct ystream **streams = NULL;
	size_t nstreams = 0, nitems = 0;
	struct apply_item *items = NULL;
	struct diags d = DIAGS_INIT;
	struct apply_written written = { NULL, 0, 0, NULL, 0, 0 };
	struct store_contents store;
	struct store_index *ix = NULL;
	char *mark = NULL;
	bool loaded = false, wrote_se = false;
	bool help = false;
	int rc = 1;

	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(apply_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n) {
		fprintf(stderr, "error: unexpected argument \"%s\"; use -f FILE\n", pos.v[0]);
		goto out;
	}
	if (strcmp(dry_flag, "none") == 0) {
		dry = APPLY_DRY_NONE;
	} else if (strcmp(dry_flag, "client") == 0) {
		dry = APPLY_DRY_CLIENT;
	} else if (strcmp(dry_flag, "server") == 0) {
		dry = APPLY_DRY_SERVER;
	} else {
		fprintf(stderr, "error: Invalid dry-run value (%s). Must be \"none\", \"server\", or "
		        "\"client\".\n", dry_flag);
		goto out;
	}
	if (files.n == 0) {
		fprintf(stderr, "error: must specify -f FILENAME\n"
		        "See 'egressctl apply --help' for usage.\n");
		goto out;
	}
	if (ctl_read_inputs(&files, &streams, &nstreams, &d) < 0) {
		ctl_print_diags(&d);
		goto out;
	}
	/* Decode and check everything first: nothing is written unless all of it is good. */
	for (size_t i = 0; i < nstreams; i++) {
		struct ystream *s = streams[i];

		for (size_t j = 0; j < s->ndocs; j++) {
			struct resource r;

			if (!s->docs[j].root)
				continue;
			if (res_decode(s, &s->docs[j], ctl_namespace(c), &r, &d) < 0)
				continue;
			apply_check_ns(c, &r, &d);
			items = xrealloc(items, (nitems + 1) * sizeof(*items));
			items[nitems].res = r;
			items[nitems].s = s;
			nitems++;
		}
	}
	ctl_print_diags(&d);
	if (diags_has_errors(&d))
		goto out;
	if (nitems == 0) {
		fprintf(stderr, "error: no objects passed to apply\n");
		goto out;
	}
	if (dry == APPLY_DRY_SERVER && apply_check_with_store(c, items, nitems) < 0)
		goto out;
	rc = 0;
	/* Nothing below needs more of the store than the objects applied (where each lives, to
	 * update it there): the store index (config/store_index.h) says which files hold them,
	 * so that applying one object into a store of 30,000 files reads one file, not all of
	 * them (10,000 hosts: 2 s of CPU before). */
	ix = store_index_open(c->root, "default");
	/* egressgw waits for the marker to go before it reads the store, so that the apply
	 * is served whole, in one reload, not in the parts a descheduled egressctl would
	 * leave between two renames (several objects; a Secret's version directory and its
	 * ..data switch). */
	if (dry == APPLY_DRY_NONE)
		mark = store_mark_begin(c->root);
	for (size_t i = 0; i < nitems; i++) {
		struct diags wd = DIAGS_INIT;
		struct sbuf ref = SBUF_INIT;
		const struct resource *r = &items[i].res;
		struct store_entry *e;
		const char *status;

		/* The store is read once, and again only when an earlier write of this apply
		 * touched what this resource needs: the resource itself, or the file it lives in
		 * (a multi-document file rewritten in place). Reading it for every resource made
		 * applying N resources cost O(N^2). */
		if (!loaded || apply_written_affects(&written, &store, r)) {
			if (loaded) {
				store_contents_free(&store);
				store_index_sync(ix);   /* what this apply wrote so far */
			}
			apply_load(ix, items, nitems, !loaded, &store);
			loaded = true;
			apply_written_clear(&written);
		}
		e = store_find(&store, r->kind, r->namespace, r->name);
		{
			char *path = e ? xstrdup(e->path)
			               : r->kind == RES_SECRET
			                     ? store_secret_dir(c->root, r->namespace, r->name)
			                     : store_config_path(c->root, r->kind, r->namespace, r->name);

			/* The index records what this write changed, so the next apply does not
			 * list the directory again (store_index_own.c). */
			if (dry == APPLY_DRY_NONE && r->kind != RES_SECRET)
				store_index_will_write(ix, path);
			status = apply_one(c, &items[i], &store, dry != APPLY_DRY_NONE, &wd);
			if (dry == APPLY_DRY_NONE && r->kind != RES_SECRET)
				store_index_wrote(ix, path, status && strcmp(status, "unchanged") != 0);
			if (status && strcmp(status, "unchanged") != 0) {
				apply_written_add(&written, r, path);
				wrote_se |= r->kind == RES_SERVICE_ENTRY;
			}
			free(path);
		}
		ctl_print_diags(&wd);
		if (!status) {
			rc = 1;
		} else {
			ctl_kind_ref(res_kind_info(r->kind), &ref);
			printf("%s/%s %s%s\n", sbuf_str(&ref), r->name, status,
			       dry == APPLY_DRY_CLIENT ? " (dry run)" :
			       dry == APPLY_DRY_SERVER ? " (server dry run)" : "");
			fflush(stdout);
		}
		sbuf_free(&ref);
		diags_free(&wd);
	}
	store_mark_end(mark);
	mark = NULL;
	if (loaded)
		store_contents_free(&store);
	apply_written_clear(&written);
	if (dry == APPLY_DRY_NONE) {
		/* The ServiceEntries this apply wrote, into the index (their files parsed, nothing
		 * else) for the warning below; other writes are found at the next open. */
		if (wrote_se)
			store_index_sync(ix);
		apply_warn_dr_hosts(ix, items, nitems);
	}
out:
	store_mark_end(mark);
	/* A dry run writes nothing, not even the index. */
	store_index_close(ix, dry == APPLY_DRY_NONE);
	for (size_t i = 0; i < nitems; i++)
		res_free(&items[i].res);
	free(items);
	ctl_free_streams(streams, nstreams);
	diags_free(&d);
	ctl_strs_free(&files);
	ctl_strs_free(&pos);
	return rc;
}
