/* store_secret_write: Secrets written into the store the way the kubelet's AtomicWriter
 * writes a Secret volume (see store_put_secret in store.h), so that a watcher, egressgw's
 * or a kubelet-mount reader's, never sees half a Secret. Moved out of store.c, which
 * reads the store and writes config documents. */
#include "config/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config/resource.h"
#include "config/store_int.h"
#include "core/util.h"

/* ---- writing secrets (the kubelet's AtomicWriter, in C) ---- */

/* Creates or replaces the symlink at path so that it points at target, atomically (a
 * temporary link renamed over it). */
static int store_symlink_swap(const char *dir, const char *name, const char *target)
{
	char *path = store_join(dir, name);
	char *tmp = xasprintf("%s/..%s_tmp", dir, name[0] == '.' ? name + 2 : name);
	int ret = -1;

	unlink(tmp);
	if (symlink(target, tmp) < 0)
		goto out;
	if (rename(tmp, path) < 0) {
		int e = errno;

		unlink(tmp);
		errno = e;
		goto out;
	}
	ret = 0;
out:
	free(tmp);
	free(path);
	return ret;
}

/* Whether the visible name already is "..data/NAME". */
static bool store_links_to_data(const char *dir, const char *name)
{
	char *path = store_join(dir, name);
	char *want = xasprintf("..data/%s", name);
	char buf[PATH_MAX];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	bool ok = false;

	if (n >= 0) {
		buf[n] = '\0';
		ok = strcmp(buf, want) == 0;
	}
	free(want);
	free(path);
	return ok;
}

static bool store_secret_has(const struct store_secret *sec, const char *key)
{
	for (size_t i = 0; i < sec->n; i++)
		if (strcmp(sec->keys[i].key, key) == 0)
			return true;
	return false;
}

/* Makes "..YYYY_MM_DD_HH_MM_SS.XXXXXX" in dir (the kubelet's naming) and returns its name. */
static char *store_new_version_dir(const char *dir)
{
	char stamp[64];
	struct tm tm;
	time_t now = time(NULL);
	char *path, *name;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "..%Y_%m_%d_%H_%M_%S.XXXXXX", &tm);
	path = store_join(dir, stamp);
	if (!mkdtemp(path)) {
		free(path);
		return NULL;
	}
	name = xstrdup(strrchr(path, '/') + 1);
	free(path);
	return name;
}

/* Writes one version of the secret into dir (which exists), following AtomicWriter. */
static int store_secret_payload(const char *dir, const struct store_secret *sec,
                                struct diags *d)
{
	char *data_link = store_join(dir, "..data");
	char old[PATH_MAX];
	char *ver = NULL, *verdir = NULL;
	char **names = NULL;
	size_t nnames = 0;
	ssize_t oldlen;
	int ret = -1;

	oldlen = readlink(data_link, old, sizeof(old) - 1);
	if (oldlen >= 0)
		old[oldlen] = '\0';
	ver = store_new_version_dir(dir);
	if (!ver) {
		diag_err(d, dir, 0, 0, "cannot create a version directory: %s", strerror(errno));
		goto out;
	}
	verdir = store_join(dir, ver);
	for (size_t i = 0; i < sec->n; i++) {
		char *p = store_join(verdir, sec->keys[i].key);
		int rc = file_write_atomic(p, sec->keys[i].data, sec->keys[i].len, 0600);

		free(p);
		if (rc < 0) {
			/* The key's name is fine to show; its content never is. */
			diag_err(d, dir, 0, 0, "cannot write key %s: %s", sec->keys[i].key,
			         strerror(errno));
			goto fail_ver;
		}
	}
	{
		char *p = store_join(verdir, STORE_SECRET_TYPE);
		char *line = xasprintf("%s\n", sec->type ? sec->type : STORE_SECRET_OPAQUE);
		int rc = file_write_atomic(p, line, strlen(line), 0600);

		free(line);
		free(p);
		if (rc < 0) {
			diag_err(d, dir, 0, 0, "cannot write the secret type: %s", strerror(errno));
			goto fail_ver;
		}
	}
	/* The switch: one rename makes the new version current. */
	if (store_symlink_swap(dir, "..data", ver) < 0) {
		diag_err(d, dir, 0, 0, "cannot switch ..data: %s", strerror(errno));
		goto fail_ver;
	}
	/* Visible names, then removal of names that went away. Readers already see the
	 * new version through ..data; these links only change what names exist. */
	for (size_t i = 0; i <= sec->n; i++) {
		const char *name = i < sec->n ? sec->keys[i].key : STORE_SECRET_TYPE;
		char *target = xasprintf("..data/%s", name);
		int rc = store_links_to_data(dir, name) ? 0 : store_symlink_swap(dir, name, target);

		free(target);
		if (rc < 0) {
			diag_err(d, dir, 0, 0, "cannot link %s: %s", name, strerror(errno));
			goto out;
		}
	}
	if (store_list(dir, &names, &nnames) == 0) {
		for (size_t i = 0; i < nnames; i++) {
			if (!store_secret_has(sec, names[i])) {
				char *p = store_join(dir, names[i]);

				store_rm_tree(p);
				free(p);
			}
		}
	}
	if (oldlen > 0 && str_has_prefix(old, "..") && !strchr(old, '/')) {
		char *p = store_join(dir, old);

		store_rm_tree(p);
		free(p);
	}
	ret = 0;
	goto out;
fail_ver:
	store_rm_tree(verdir);
out:
	store_free_names(names, nnames);
	free(verdir);
	free(ver);
	free(data_link);
	return ret;
}

int store_put_secret(const char *root, const char *ns, const char *name,
                     const struct store_secret *sec, struct diags *d)
{
	char *dir = store_secret_dir(root, ns, name);
	char *sdir = xasprintf("%s/%s", root, STORE_SECRETS_DIR);
	char *nsdir = xasprintf("%s/%s", sdir, ns);
	char *staging = NULL;
	struct stat st;
	int ret = -1;

	for (size_t i = 0; i < sec->n; i++) {
		if (!store_secret_key_valid(sec->keys[i].key)) {
			diag_err(d, dir, 0, 0, "invalid secret key name \"%s\"", sec->keys[i].key);
			goto out;
		}
	}
	/* The store and secrets/ as usual; from the namespace down, owner only. */
	if (mkdir_p(sdir, 0755) < 0 || (mkdir(nsdir, 0700) < 0 && errno != EEXIST)) {
		diag_err(d, nsdir, 0, 0, "cannot create directory: %s", strerror(errno));
		goto out;
	}
	if (lstat(dir, &st) == 0) {
		ret = store_secret_payload(dir, sec, d);
		goto out;
	}
	/* New: build it under a hidden name, then one rename makes it appear whole. */
	staging = xasprintf("%s/..new.%s.XXXXXX", nsdir, name);
	if (!mkdtemp(staging)) {
		diag_err(d, nsdir, 0, 0, "cannot create directory: %s", strerror(errno));
		free(staging);
		staging = NULL;
		goto out;
	}
	if (store_secret_payload(staging, sec, d) < 0)
		goto out;
	if (rename(staging, dir) < 0) {
		diag_err(d, dir, 0, 0, "cannot create: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (staging && ret < 0)
		store_rm_tree(staging);
	free(staging);
	free(nsdir);
	free(sdir);
	free(dir);
	return ret;
}
