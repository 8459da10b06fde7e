/* egressctl delete KIND NAME... | KIND/NAME... | KIND --all | -f FILE | namespace NAME */
#include <stdlib.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "core/util.h"

static const char delete_usage[] =
	"Delete resources from the store by kind and names, or by file names or stdin.\n"
	"\n"
	"Kinds are named as kubectl names them (gateway, gw, gateways, ...). A resource that\n"
	"does not exist is an error (exit status 1) unless --ignore-not-found is given. A\n"
	"resource living in a file with other documents is removed from that file, which is\n"
	"rewritten atomically; a Secret directory disappears in one step.\n"
	"\n"
	"Namespaces are implicit in the store: \"delete namespace NS\" deletes every resource\n"
	"in NS, as Kubernetes does when a namespace goes away.\n"
	"\n"
	"Usage:\n"
	"  egressctl delete KIND NAME... [-n NAMESPACE]\n"
	"  egressctl delete KIND/NAME... [-n NAMESPACE]\n"
	"  egressctl delete KIND --all [-n NAMESPACE]\n"
	"  egressctl delete -f FILENAME [-n NAMESPACE]\n"
	"  egressctl delete namespace NAME...\n"
	"\n"
	"Examples:\n"
	"  egressctl delete gateway istio-egressgateway\n"
	"  egressctl delete destinationrule -n istio-system originate-mtls-for-nginx\n"
	"  egressctl delete secret nginx-server-certs nginx-ca-certs -n mesh-external\n"
	"\n"
	"Flags:\n"
	"  -f, --filename FILE     delete the resources a file (or - for stdin) describes\n"
	"      --all               delete every resource of the kind in the namespace\n"
	"      --ignore-not-found  a missing resource is not an error\n"
	"  -n, --namespace NS      the namespace (default \"default\")\n"
	"      --store DIR         the store directory\n";

struct del_opts {
	bool all;
	bool ignore_missing;
};

/* Deletes one resource. Returns 0 (deleted, or missing and ignored), or -1 (printed). */
static int del_one(const struct ctl *c, const struct del_opts *o,
                   const struct res_kind_info *k, const char *ns, const char *name)
{
	struct store_contents store;
	struct store_entry *e;
	struct diags d = DIAGS_INIT;
	struct sbuf ref = SBUF_INIT;
	int rc = -1;

	ctl_load_store(c, &store, false);
	e = store_find(&store, k->kind, ns, name);
	if (!e) {
		if (!o->ignore_missing)
			ctl_not_found(k, name);
		rc = o->ignore_missing ? 0 : -1;
		goto out;
	}
	if (store_remove(e, &d) < 0) {
		ctl_print_diags(&d);
		goto out;
	}
	ctl_print_diags(&d);
	ctl_kind_ref(k, &ref);
	printf("%s \"%s\" deleted\n", sbuf_str(&ref), name);
	fflush(stdout);
	rc = 0;
out:
	sbuf_free(&ref);
	diags_free(&d);
	store_contents_free(&store);
	return rc;
}

/* Every resource of kind k in ns. */
static int del_all(const struct ctl *c, const struct del_opts *o,
                   const struct res_kind_info *k, const char *ns)
{
	struct store_contents store;
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	ctl_load_store(c, &store, true);
	for (size_t i = 0; i < store.n; i++) {
		if (store.v[i].res.kind == k->kind && strcmp(store.v[i].res.namespace, ns) == 0) {
			names = xrealloc(names, (n + 1) * sizeof(*names));
			names[n++] = xstrdup(store.v[i].res.name);
		}
	}
	store_contents_free(&store);
	if (n == 0)
		fprintf(stderr, "No resources found\n");
	for (size_t i = 0; i < n; i++) {
		if (del_one(c, o, k, ns, names[i]) < 0)
			rc = -1;
		free(names[i]);
	}
	free(names);
	return rc;
}

/* Everything in namespace ns, then kubectl's line for the namespace itself. */
static int del_namespace(const struct ctl *c, const char *ns)
{
	for (;;) {
		struct store_contents store;
		struct store_entry *e = NULL;
		struct diags d = DIAGS_INIT;
		int rc = 0;

		ctl_load_store(c, &store, false);
		for (size_t i = 0; i < store.n && !e; i++)
			if (strcmp(store.v[i].res.namespace, ns) == 0)
				e = &store.v[i];
		if (e)
			rc = store_remove(e, &d);
		ctl_print_diags(&d);
		diags_free(&d);
		store_contents_free(&store);
		if (rc < 0)
			return -1;
		if (!e)
			break;
	}
	printf("namespace \"%s\" deleted\n", ns);
	return 0;
}

static bool del_is_namespace_word(const char *w)
{
	return strcmp(w, "namespace") == 0 || strcmp(w, "namespaces") == 0 ||
	       strcmp(w, "ns") == 0;
}

/* delete -f: the kind, name and namespace each document names. Documents are not
 * validated beyond that, so that a resource can be deleted with the file that made it
 * even if the file has since been edited. */
static int del_files(const struct ctl *c, const struct del_opts *o, const struct ctl_strs *files)
{
	struct ystream **streams = NULL;
	size_t n = 0;
	struct diags d = DIAGS_INIT;
	int rc = 0;

	if (ctl_read_inputs(files, &streams, &n, &d) < 0) {
		ctl_print_diags(&d);
		diags_free(&d);
		ctl_free_streams(streams, n);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < streams[i]->ndocs; j++) {
			const struct ynode *doc = streams[i]->docs[j].root;
			const struct ynode *meta = ynode_get(doc, "metadata");
			const char *kind = ynode_str(ynode_get(doc, "kind"));
			const char *name = ynode_str(ynode_get(meta, "name"));
			const char *ns = ynode_str(ynode_get(meta, "namespace"));
			const char *av = ynode_str(ynode_get(doc, "apiVersion"));
			const struct res_kind_info *k = res_kind_of_doc(kind, av);

			if (!doc)
				continue;
			if (!k) {
				diag_err(&d, streams[i]->file, streams[i]->docs[j].line, 0,
				         "no resource kind egressctl knows (kind: %s)",
				         kind ? kind : "missing");
				rc = -1;
				continue;
			}
			if (!name) {
				diag_err(&d, streams[i]->file, streams[i]->docs[j].line, 0,
				         "metadata.name is required");
				rc = -1;
				continue;
			}
			if (ns && c->ns_flag && strcmp(ns, c->ns_flag) != 0) {
				fprintf(stderr, "error: the namespace from the provided object \"%s\" does "
				        "not match the namespace \"%s\". You must pass '--namespace=%s' to "
				        "perform this operation.\n", ns, c->ns_flag, ns);
				rc = -1;
				continue;
			}
			if (del_one(c, o, k, ns ? ns : ctl_namespace(c), name) < 0)
				rc = -1;
		}
	}
	ctl_print_diags(&d);
	diags_free(&d);
	ctl_free_streams(streams, n);
	return rc;
}

/* delete KIND NAME..., KIND/NAME..., KIND --all, namespace NAME... */
static int del_words(const struct ctl *c, const struct del_opts *o, const struct ctl_strs *pos)
{
	const char *ns = ctl_namespace(c);
	const struct res_kind_info *k;
	int rc = 0;

	if (strchr(pos->v[0], '/')) {
		for (size_t i = 0; i < pos->n; i++) {
			char *w = xstrdup(pos->v[i]);
			char *sl = strchr(w, '/');

			if (!sl || !sl[1]) {
				fprintf(stderr, "error: there is no need to specify a resource type as a "
				        "separate argument when passing arguments in resource/name form\n");
				rc = -1;
			} else {
				*sl = '\0';
				k = ctl_kind(w);
				if (!k || del_one(c, o, k, ns, sl + 1) < 0)
					rc = -1;
			}
			free(w);
		}
		return rc;
	}
	if (del_is_namespace_word(pos->v[0])) {
		if (pos->n < 2) {
			fprintf(stderr, "error: resource(s) were provided, but no name was specified\n");
			return -1;
		}
		for (size_t i = 1; i < pos->n; i++)
			if (del_namespace(c, pos->v[i]) < 0)
				rc = -1;
		return rc;
	}
	k = ctl_kind(pos->v[0]);
	if (!k)
		return -1;
	if (o->all) {
		if (pos->n > 1) {
			fprintf(stderr, "error: name cannot be provided when --all is specified\n");
			return -1;
		}
		return del_all(c, o, k, ns);
	}
	if (pos->n < 2) {
		fprintf(stderr, "error: resource(s) were provided, but no name was specified\n");
		return -1;
	}
	for (size_t i = 1; i < pos->n; i++)
		if (del_one(c, o, k, ns, pos->v[i]) < 0)
			rc = -1;
	return rc;
}

int ctl_cmd_delete(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs files = { NULL, 0 }, pos = { NULL, 0 };
	struct del_opts o = { false, false };
	const struct ctl_flag flags[] = {
		{ "filename", 'f', CTL_FLAG_LIST, &files },
		{ "all", 0, CTL_FLAG_BOOL, &o.all },
		{ "ignore-not-found", 0, CTL_FLAG_BOOL, &o.ignore_missing },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	bool help = false;
	int rc = 1;

	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(delete_usage, stdout);
		rc = 0;
		goto out;
	}
	if (files.n && pos.n) {
		fprintf(stderr, "error: use either -f or KIND NAME, not both\n");
		goto out;
	}
	if (files.n)
		rc = del_files(c, &o, &files) < 0 ? 1 : 0;
	else if (pos.n)
		rc = del_words(c, &o, &pos) < 0 ? 1 : 0;
	else
		fprintf(stderr, "error: You must provide one or more resources by argument or "
		        "filename.\nSee 'egressctl delete --help' for usage.\n");
out:
	ctl_strs_free(&files);
	ctl_strs_free(&pos);
	return rc;
}
