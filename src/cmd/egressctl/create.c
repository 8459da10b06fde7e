/* egressctl create secret generic|tls NAME ..., create namespace NAME */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca/ca.h"
#include "cmd/egressctl/ctl.h"
#include "config/resource.h"
#include "core/util.h"

static const char create_usage[] =
	"Create a Secret from files or literals, or a namespace.\n"
	"\n"
	"A Secret is written to secrets/NAMESPACE/NAME/ in the store, one file per key (mode\n"
	"0600), the way Kubernetes mounts a Secret volume. Creating a Secret that exists is\n"
	"an error; use apply to change one.\n"
	"\n"
	"Namespaces are implicit in the store (a resource's namespace is part of its path),\n"
	"so \"create namespace NAME\" only checks the name and reports it created, for\n"
	"scripts written for kubectl.\n"
	"\n"
	"Usage:\n"
	"  egressctl create secret generic NAME [--from-file=[KEY=]PATH]...\n"
	"                                       [--from-literal=KEY=VALUE]... [--type=TYPE]\n"
	"  egressctl create secret tls NAME --cert=PATH --key=PATH\n"
	"  egressctl create namespace NAME\n"
	"\n"
	"Examples:\n"
	"  egressctl create -n mesh-external secret tls nginx-server-certs --key server.key \\\n"
	"      --cert server.crt\n"
	"  egressctl create secret -n istio-system generic client-credential \\\n"
	"      --from-file=tls.key=client.key --from-file=tls.crt=client.crt \\\n"
	"      --from-file=ca.crt=ca.crt\n"
	"\n"
	"Flags:\n"
	"      --from-file=[KEY=]PATH   a key from a file (KEY defaults to its base name); a\n"
	"                               directory adds each file in it (repeatable)\n"
	"      --from-literal=KEY=VALUE a key with the given value (repeatable)\n"
	"      --type=TYPE              the Secret type for generic (default Opaque)\n"
	"      --cert=PATH              tls: the PEM certificate (chain)\n"
	"      --key=PATH               tls: the PEM private key\n"
	"  -n, --namespace NS           the namespace (default \"default\")\n"
	"      --store DIR              the store directory\n";

struct create_opts {
	struct ctl_strs from_file;
	struct ctl_strs from_literal;
	const char *type;
	const char *cert;
	const char *key;
};

static int create_add_key(struct store_secret *sec, const char *name, const char *key,
                          const void *data, size_t len)
{
	for (size_t i = 0; i < sec->n; i++) {
		if (strcmp(sec->keys[i].key, key) == 0) {
			fprintf(stderr, "error: cannot add key %s, another key by that name already "
			        "exists in Data for Secret \"%s\"\n", key, name);
			return -1;
		}
	}
	if (!store_secret_key_valid(key)) {
		fprintf(stderr, "error: \"%s\" is not a valid key name for a Secret: a valid config "
		        "key must consist of alphanumeric characters, '-', '_' or '.'\n", key);
		return -1;
	}
	store_secret_set(sec, key, data, len);
	return 0;
}

/* Reads path into the secret under key. The content is never printed. */
static int create_add_file(struct store_secret *sec, const char *name, const char *key,
                           const char *path)
{
	char *buf;
	size_t len;
	int rc;

	if (file_read_all(path, &buf, &len) < 0) {
		fprintf(stderr, "error: error reading %s: %s\n", path, strerror(errno));
		return -1;
	}
	rc = create_add_key(sec, name, key, buf, len);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rc;
}

static int create_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --from-file=DIR: each regular file of DIR, under its name. */
static int create_add_dir(struct store_secret *sec, const char *name, const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	if (!dp) {
		fprintf(stderr, "error: error reading %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(dp)) != NULL) {
		char *p = xasprintf("%s/%s", dir, de->d_name);
		struct stat st;

		if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			names = xrealloc(names, (n + 1) * sizeof(*names));
			names[n++] = xstrdup(de->d_name);
		}
		free(p);
	}
	closedir(dp);
	if (n)
		qsort(names, n, sizeof(*names), create_cmp);
	for (size_t i = 0; i < n; i++) {
		char *p = xasprintf("%s/%s", dir, names[i]);

		if (rc == 0 && create_add_file(sec, name, names[i], p) < 0)
			rc = -1;
		free(p);
		free(names[i]);
	}
	free(names);
	return rc;
}

static int create_generic(const struct create_opts *o, const char *name,
                          struct store_secret *sec)
{
	sec->type = xstrdup(o->type && *o->type ? o->type : STORE_SECRET_OPAQUE);
	for (size_t i = 0; i < o->from_file.n; i++) {
		const char *arg = o->from_file.v[i];
		const char *eq = strchr(arg, '=');
		struct stat st;

		if (eq) {
			char *key = xstrndup(arg, (size_t)(eq - arg));
			int rc = create_add_file(sec, name, key, eq + 1);

			free(key);
			if (rc < 0)
				return -1;
		} else if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (create_add_dir(sec, name, arg) < 0)
				return -1;
		} else {
			const char *base = strrchr(arg, '/');

			if (create_add_file(sec, name, base ? base + 1 : arg, arg) < 0)
				return -1;
		}
	}
	for (size_t i = 0; i < o->from_literal.n; i++) {
		const char *arg = o->from_literal.v[i];
		const char *eq = strchr(arg, '=');
		char *key;
		int rc;

		if (!eq || eq == arg) {
			fprintf(stderr, "error: invalid literal source %s, expected key=value\n", arg);
			return -1;
		}
		key = xstrndup(arg, (size_t)(eq - arg));
		rc = create_add_key(sec, name, key, eq + 1, strlen(eq + 1));
		free(key);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* Checks that the files hold a certificate and the private key that goes with it, as
 * kubectl does. Messages name the files, never their content. */
static int create_check_pair(const struct store_secret *sec, const char *cert_path,
                             const char *key_path)
{
	const struct store_secret_key *c = &sec->keys[0], *k = &sec->keys[1];
	BIO *cb = BIO_new_mem_buf(c->data, (int)c->len);
	BIO *kb = BIO_new_mem_buf(k->data, (int)k->len);
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	int rc = -1;

	if (!cb || !kb)
		goto out;
	x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	if (!x) {
		fprintf(stderr, "error: failed to load key pair tls: %s: no PEM certificate found\n",
		        cert_path);
		goto out;
	}
	pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	if (!pk) {
		fprintf(stderr, "error: failed to load key pair tls: %s: no PEM private key found\n",
		        key_path);
		goto out;
	}
	if (X509_check_private_key(x, pk) != 1) {
		fprintf(stderr, "error: failed to load key pair tls: private key does not match "
		        "public key (%s, %s)\n", key_path, cert_path);
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(kb);
	BIO_free(cb);
	return rc;
}

static int create_tls(const struct create_opts *o, const char *name, struct store_secret *sec)
{
	if (!o->cert || !o->key) {
		fprintf(stderr, "error: required flag(s) %s not set\n",
		        !o->cert && !o->key ? "\"cert\", \"key\"" : !o->cert ? "\"cert\"" : "\"key\"");
		return -1;
	}
	sec->type = xstrdup(STORE_SECRET_TLS);
	if (create_add_file(sec, name, "tls.crt", o->cert) < 0 ||
	    create_add_file(sec, name, "tls.key", o->key) < 0)
		return -1;
	return create_check_pair(sec, o->cert, o->key);
}

/* The Secret as a document, decoded like any applied Secret: the same validation of the
 * name, namespace, type and keys. */
static int create_validate(const char *ns, const char *name, const struct store_secret *sec,
                           struct resource *out)
{
	struct ystream s;
	struct ydoc doc;
	struct ynode *root, *meta, *data;
	struct diags d = DIAGS_INIT;
	int rc;

	memset(&s, 0, sizeof(s));
	s.file = xstrdup("<arguments>");
	root = ynode_new_map(&s);
	ynode_map_set(&s, root, "apiVersion", ynode_new_scalar(&s, "v1", 2, true));
	ynode_map_set(&s, root, "kind", ynode_new_scalar(&s, "Secret", 6, true));
	meta = ynode_new_map(&s);
	ynode_map_set(&s, meta, "name", ynode_new_scalar(&s, name, strlen(name), true));
	ynode_map_set(&s, meta, "namespace", ynode_new_scalar(&s, ns, strlen(ns), true));
	ynode_map_set(&s, root, "metadata", meta);
	ynode_map_set(&s, root, "type", ynode_new_scalar(&s, sec->type, strlen(sec->type), true));
	data = ynode_new_map(&s);
	for (size_t i = 0; i < sec->n; i++) {
		size_t elen = (sec->keys[i].len + 2) / 3 * 4;
		unsigned char *enc = xmalloc(elen + 1);

		EVP_EncodeBlock(enc, sec->keys[i].data, (int)sec->keys[i].len);
		ynode_map_set(&s, data, sec->keys[i].key,
		              ynode_new_scalar(&s, (char *)enc, elen, true));
		OPENSSL_cleanse(enc, elen);
		free(enc);
	}
	ynode_map_set(&s, root, "data", data);
	memset(&doc, 0, sizeof(doc));
	doc.root = root;
	doc.line = 0;
	rc = res_decode(&s, &doc, ns, out, &d);
	ctl_print_diags(&d);
	diags_free(&d);
	store_cleanse_tree(root);
	ystream_free(&s);
	return rc;
}

static int create_secret(const struct ctl *c, const struct create_opts *o,
                         const struct ctl_strs *pos)
{
	const char *ns = ctl_namespace(c);
	const char *what = pos->n > 1 ? pos->v[1] : NULL;
	const char *name = pos->n > 2 ? pos->v[2] : NULL;
	struct store_secret sec;
	struct store_contents store = STORE_CONTENTS_INIT;
	struct resource r;
	struct diags d = DIAGS_INIT;
	int rc = -1, wrc;
	char *mark;

	memset(&sec, 0, sizeof(sec));
	memset(&r, 0, sizeof(r));
	if (!what || (strcmp(what, "generic") != 0 && strcmp(what, "tls") != 0)) {
		fprintf(stderr, "error: want \"create secret generic NAME\" or \"create secret tls "
		        "NAME\"; see 'egressctl create --help'\n");
		return -1;
	}
	if (!name || pos->n > 3) {
		fprintf(stderr, "error: exactly one NAME is required\n");
		return -1;
	}
	if (strcmp(what, "tls") == 0 ? create_tls(o, name, &sec) < 0
	                            : create_generic(o, name, &sec) < 0)
		goto out;
	if (create_validate(ns, name, &sec, &r) < 0)
		goto out;
	ctl_load_store(c, &store, true);
	if (store_find(&store, RES_SECRET, ns, name)) {
		fprintf(stderr, "error: failed to create secret secrets \"%s\" already exists\n", name);
		goto out;
	}
	/* The marker: egressgw reads the store once the Secret's directory is in place, not
	 * when its hidden staging directory appears (store_mark.c). */
	mark = store_mark_begin(c->root);
	wrc = store_put_secret(c->root, ns, name, &sec, &d);
	store_mark_end(mark);
	if (wrc < 0) {
		ctl_print_diags(&d);
		goto out;
	}
	printf("secret/%s created\n", name);
	rc = 0;
out:
	diags_free(&d);
	store_contents_free(&store);
	res_free(&r);
	store_secret_free(&sec);
	return rc;
}

static int create_namespace(const struct ctl_strs *pos)
{
	if (pos->n != 2) {
		fprintf(stderr, "error: exactly one NAME is required, got %zu\n",
		        pos->n > 0 ? pos->n - 1 : 0);
		return -1;
	}
	if (!ca_namespace_valid(pos->v[1])) {
		fprintf(stderr, "error: invalid namespace name \"%s\": want a DNS-1123 label "
		        "(lowercase letters, digits and '-', at most 63)\n", pos->v[1]);
		return -1;
	}
	printf("namespace/%s created\n", pos->v[1]);
	return 0;
}

int ctl_cmd_create(struct ctl *c, int argc, char **argv)
{
	struct create_opts o;
	struct ctl_strs pos = { NULL, 0 };
	const struct ctl_flag flags[] = {
		{ "from-file", 0, CTL_FLAG_LIST, &o.from_file },
		{ "from-literal", 0, CTL_FLAG_LIST, &o.from_literal },
		{ "type", 0, CTL_FLAG_STR, &o.type },
		{ "cert", 0, CTL_FLAG_STR, &o.cert },
		{ "key", 0, CTL_FLAG_STR, &o.key },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	bool help = false;
	int rc = 1;

	memset(&o, 0, sizeof(o));
	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(create_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n == 0) {
		fprintf(stderr, "error: want \"create secret ...\" or \"create namespace NAME\"\n"
		        "See 'egressctl create --help' for usage.\n");
		goto out;
	}
	if (strcmp(pos.v[0], "secret") == 0)
		rc = create_secret(c, &o, &pos) < 0 ? 1 : 0;
	else if (strcmp(pos.v[0], "namespace") == 0 || strcmp(pos.v[0], "ns") == 0)
		rc = create_namespace(&pos) < 0 ? 1 : 0;
	else
		fprintf(stderr, "error: egressctl cannot create \"%s\"; it creates secrets and "
		        "namespaces (use apply for Istio resources)\n", pos.v[0]);
out:
	ctl_strs_free(&o.from_file);
	ctl_strs_free(&o.from_literal);
	ctl_strs_free(&pos);
	return rc;
}
