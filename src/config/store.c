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
#include "config/store_cache.h"
#include "config/store_int.h"
#include "core/util.h"

/* Kubernetes refuses Secrets over 1 MiB; a bigger key file is a mistake, not a secret. */
#define STORE_SECRET_MAX   (1024 * 1024)
/* How deep config/ may nest (symlink loops are caught separately): STORE_MAX_DEPTH,
 * store_int.h. */

const char *store_root(const char *flag)
{
	const char *env;

	if (flag && *flag)
		return flag;
	env = getenv(STORE_ENV);
	if (env && *env)
		return env;
	return STORE_DEFAULT_ROOT;
}

/* ---- contents ---- */

static void store_keep_stream(struct store_contents *c, struct ystream *s)
{
	if (c->nstreams == c->streams_cap) {
		c->streams_cap = c->streams_cap ? c->streams_cap * 2 : 16;
		c->streams = xrealloc(c->streams, c->streams_cap * sizeof(*c->streams));
	}
	c->streams[c->nstreams++] = s;
}

static struct store_entry *store_new_entry(struct store_contents *c)
{
	struct store_entry *e;

	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 32;
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	e = &c->v[c->n++];
	memset(e, 0, sizeof(*e));
	return e;
}

static uint64_t store_key_hash(enum res_kind kind, const char *ns, const char *name)
{
	/* Namespace and name hashed apart and mixed, so "a/bc" and "ab/c" differ. */
	uint64_t h = hash_bytes(ns, strlen(ns)) * 31 + hash_bytes(name, strlen(name));

	return h * 131 + (uint64_t)kind;
}

/* The slot of kind/ns/name: the one holding it, or the empty one where it would go. */
static size_t store_index_slot(const struct store_contents *c, enum res_kind kind,
                               const char *ns, const char *name)
{
	size_t k = store_key_hash(kind, ns, name) & c->index_mask;

	for (;; k = (k + 1) & c->index_mask) {
		const struct resource *r;

		if (!c->index[k])
			return k;
		r = &c->v[c->index[k] - 1].res;
		if (r->kind == kind && strcmp(r->name, name) == 0 && strcmp(r->namespace, ns) == 0)
			return k;
	}
}

/* Indexes c->v[i] (its resource filled in); grows the table at half full. */
static void store_index_add(struct store_contents *c, size_t i)
{
	const struct resource *r = &c->v[i].res;

	if (!c->index || (c->n + 1) * 2 > c->index_mask + 1) {
		size_t *old = c->index, old_mask = c->index_mask;

		c->index_mask = c->index ? c->index_mask * 2 + 1 : 63;
		while ((c->n + 1) * 2 > c->index_mask + 1)
			c->index_mask = c->index_mask * 2 + 1;
		c->index = xcalloc(c->index_mask + 1, sizeof(*c->index));
		for (size_t k = 0; old && k <= old_mask; k++)
			if (old[k]) {
				const struct resource *o = &c->v[old[k] - 1].res;

				c->index[store_index_slot(c, o->kind, o->namespace, o->name)] = old[k];
			}
		free(old);
	}
	c->index[store_index_slot(c, r->kind, r->namespace, r->name)] = i + 1;
}

struct store_entry *store_find(const struct store_contents *c, enum res_kind kind,
                               const char *ns, const char *name)
{
	size_t k;

	if (!c->index)
		return NULL;
	k = store_index_slot(c, kind, ns, name);
	return c->index[k] ? &c->v[c->index[k] - 1] : NULL;
}

/* Wipes every scalar of a tree (Secret data may be anywhere a document put it). */
void store_cleanse_tree(struct ynode *n)
{
	if (!n)
		return;
	switch (n->type) {
	case YNODE_SCALAR:
		if (n->str)
			OPENSSL_cleanse(n->str, n->len);
		break;
	case YNODE_SEQ:
		for (size_t i = 0; i < n->n; i++)
			store_cleanse_tree(n->items[i]);
		break;
	case YNODE_MAP:
		for (size_t i = 0; i < n->n; i++)
			store_cleanse_tree(n->pairs[i].value);
		break;
	case YNODE_NULL:
		break;
	}
}

void store_cleanse_stream(struct ystream *s)
{
	for (size_t i = 0; i < s->ndocs; i++)
		store_cleanse_tree(s->docs[i].root);
	if (s->src)
		OPENSSL_cleanse(s->src, s->srclen);
}

static void store_stream_free(struct ystream *s)
{
	store_cleanse_stream(s);
	ystream_free(s);
	free(s);
}

void store_contents_free(struct store_contents *c)
{
	for (size_t i = 0; i < c->n; i++) {
		if (c->v[i].borrowed)
			continue;
		res_free(&c->v[i].res);
		free(c->v[i].path);
	}
	free(c->v);
	for (size_t i = 0; i < c->nstreams; i++)
		store_stream_free(c->streams[i]);
	free(c->streams);
	free(c->index);
	memset(c, 0, sizeof(*c));
}

void store_overlay(struct store_contents *c, struct ystream *s, const char *default_ns,
                   struct diags *d)
{
	store_keep_stream(c, s);
	for (size_t i = 0; i < s->ndocs; i++) {
		struct resource r;
		struct store_entry *e;

		if (!s->docs[i].root || res_decode(s, &s->docs[i], default_ns, &r, d) < 0)
			continue;
		e = store_find(c, r.kind, r.namespace, r.name);
		bool added = !e;

		if (e && !e->borrowed) {
			res_free(&e->res);
			free(e->path);
		} else if (!e) {
			e = store_new_entry(c);
		}
		e->res = r;
		e->path = xstrdup(s->file ? s->file : "-");
		e->stream = s;
		e->doc = i;
		e->mtime = 0;
		e->in_secret_dir = false;
		e->borrowed = false;
		/* store_find looks only at the index: an added object must be in it too. */
		if (added)
			store_index_add(c, (size_t)(e - c->v));
	}
}

/* ---- directory helpers ---- */

void store_free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

char *store_join(const char *a, const char *b)
{
	return xasprintf("%s/%s", a, b);
}

/* rm -r for directories the store made (plain files, symlinks, subdirectories). */
int store_rm_tree(const char *path)
{
	struct stat st;
	DIR *dp;
	struct dirent *de;
	int ret = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	dp = opendir(path);
	if (!dp)
		return -1;
	while ((de = readdir(dp)) != NULL) {
		char *sub;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		sub = store_join(path, de->d_name);
		if (store_rm_tree(sub) < 0)
			ret = -1;
		free(sub);
	}
	closedir(dp);
	if (rmdir(path) < 0)
		ret = -1;
	return ret;
}

/* ---- loading config/ ---- */

/* Adds a decoded resource unless the same kind/namespace/name is already there. Takes
 * ownership of r either way, unless borrowed (r and path then belong to a store_cache). */
void store_add(struct store_loader *l, const struct resource *r, const char *path,
                      struct ystream *s, size_t doc, time_t mtime, bool secret_dir,
                      bool borrowed)
{
	struct store_entry *prev = store_find(l->out, r->kind, r->namespace, r->name);
	struct store_entry *e;

	if (prev) {
		diag_err(l->d, r->file, r->line, 0, "%s: already defined at %s:%d",
		         res_describe(r), prev->res.file, prev->res.line);
		if (!borrowed)
			res_free((struct resource *)r);
		return;
	}
	e = store_new_entry(l->out);
	e->res = *r;
	e->borrowed = borrowed;
	e->path = borrowed ? (char *)path : xstrdup(path);
	e->stream = s;
	e->doc = doc;
	e->mtime = mtime;
	e->in_secret_dir = secret_dir;
	store_index_add(l->out, (size_t)(e - l->out->v));
}

static void store_load_file(struct store_loader *l, const char *path, time_t mtime)
{
	struct ystream *s = xcalloc(1, sizeof(*s));
	int rc = ydoc_parse_file(path, s, l->d);

	if (rc != 0) {
		free(s);
		return;
	}
	store_keep_stream(l->out, s);
	for (size_t i = 0; i < s->ndocs; i++) {
		struct resource r;

		if (!s->docs[i].root)
			continue;
		if (res_decode(s, &s->docs[i], l->default_ns, &r, l->d) < 0)
			continue;
		store_add(l, &r, path, s, i, mtime, false, false);
	}
}

/* Whether a file's times are too recent to know it by them: the kernel stamps files with a
 * coarse clock (a few ms), so a same-size rewrite in place within one tick of the write
 * that was read would keep its identity (git's "racily clean" index entries). Such a file
 * is read again at each load until it is older than this. */
#define STORE_CACHE_SETTLE_NS (50 * 1000000LL)
#define STORE_CACHE_SETTLE_COARSE_NS (2000 * 1000000LL)

bool store_recent(const struct stat *st)
{
	struct timespec now;
	long long n, m, c;

	clock_gettime(CLOCK_REALTIME, &now);
	n = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
	m = (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
	c = (long long)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
	/* A file system that stamps whole seconds (ext4 with 128-byte inodes, FAT, some NFS
	 * and FUSE mounts): a same-size rewrite within that second keeps the identity, so
	 * such a file is only known by its times once two seconds have passed. */
	if (st->st_mtim.tv_nsec == 0 && st->st_ctim.tv_nsec == 0)
		return n - m < STORE_CACHE_SETTLE_COARSE_NS || n - c < STORE_CACHE_SETTLE_COARSE_NS;
	return n - m < STORE_CACHE_SETTLE_NS || n - c < STORE_CACHE_SETTLE_NS;
}

/* A file of a directory being loaded, named relative to it (dfd, when open) and sized by
 * the stat the loader made: one system call less each for the path walk, the fstat and
 * the read at the end. */
static int store_read(const char *path, int dfd, const char *name, const struct stat *st,
                      char **buf, size_t *len)
{
	return dfd >= 0 ? file_read_at(dfd, name, (long long)st->st_size, buf, len)
	                : file_read_all(path, buf, len);
}

/* Decodes every document of s into v (s->ndocs slots at most); returns how many. lent:
 * the resources borrow s's path (res_decode_lent). */
static size_t store_decode_all(struct store_loader *l, const struct ystream *s,
                               struct resource *v, struct diags *fd, bool lent, bool *secret)
{
	size_t n = 0;

	*secret = false;
	for (size_t i = 0; i < s->ndocs; i++) {
		if (!s->docs[i].root ||
		    (lent ? res_decode_lent : res_decode)(s, &s->docs[i], l->default_ns, &v[n], fd) < 0)
			continue;
		v[n].node = NULL;
		*secret |= v[n].kind == RES_SECRET;
		n++;
	}
	return n;
}

static void store_free_decoded(struct resource *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		res_free(&v[i]);
}

/* store_load_file for store_load_cached: the stream goes as soon as it is decoded, and a
 * file that decoded cleanly (no diagnostic, no Secret) is kept in the cache, with the hash
 * of its bytes when it was written just now (store_cache.h: racy). */
void store_load_file_cached(struct store_loader *l, const char *path, int dfd,
                                   const char *name, const struct stat *st)
{
	const struct resource *kept;
	const char *cpath;
	struct ystream s;
	struct diags fd = DIAGS_INIT;
	struct resource *v;
	char *buf = NULL;
	size_t n = 0, len = 0;
	uint64_t sum = 0;
	bool secret = false, have = false, lend, recent = store_recent(st);

	if (l->cache) {
		/* A racy record is handed out again only for the same bytes. */
		if (store_cache_racy(l->cache, path, st) &&
		    store_read(path, dfd, name, st, &buf, &len) == 0) {
			sum = hash_bytes(buf, len);
			have = true;
		}
		if (store_cache_get(l->cache, path, st, have ? &sum : NULL, recent, &kept, &n,
		                    &cpath)) {
			for (size_t i = 0; i < n; i++)
				store_add(l, &kept[i], cpath, NULL, i, st->st_mtime, false, true);
			free(buf);
			return;
		}
	}
	memset(&s, 0, sizeof(s));
	if (!have && store_read(path, dfd, name, st, &buf, &len) < 0) {
		diag_err(&fd, path, 0, 0, "cannot read %s: %s", path, strerror(errno));
		buf = NULL;
	}
	if (!buf || ydoc_parse(path, buf, len, &s, &fd) < 0) {
		free(buf);
		diags_merge(l->d, &fd);
		diags_free(&fd);
		if (l->cache)
			store_cache_note_parsed(l->cache);
		return;
	}
	/* The hash of the very bytes decoded: a write after this read differs from it. */
	sum = hash_bytes(buf, len);
	v = xcalloc(s.ndocs + 1, sizeof(*v));
	/* Lent only while the file may still be cached: the parse said nothing. */
	lend = l->cache && fd.n == 0;
	n = store_decode_all(l, &s, v, &fd, lend, &secret);
	if (lend && (fd.n != 0 || secret)) {
		/* Not cacheable after all: decoded again with copies of the path, which the
		 * stream takes with it (fd had only this decode's diagnostics). */
		store_free_decoded(v, n);
		diags_free(&fd);
		n = store_decode_all(l, &s, v, &fd, false, &secret);
	}
	if (secret)
		OPENSSL_cleanse(buf, len);
	free(buf);
	store_cleanse_stream(&s);
	if (l->cache && fd.n == 0 && !secret) {
		/* The resources borrowed the stream's path: the cache's record takes it. */
		char *spath = s.file;

		s.file = NULL;
		ystream_free(&s);
		cpath = store_cache_put(l->cache, spath, st, recent, sum, v, n, &kept);
		for (size_t i = 0; i < n; i++)
			store_add(l, &kept[i], cpath, NULL, i, st->st_mtime, false, true);
	} else {
		ystream_free(&s);
		if (l->cache)
			store_cache_note_parsed(l->cache);
		diags_merge(l->d, &fd);
		for (size_t i = 0; i < n; i++)
			store_add(l, &v[i], path, NULL, i, st->st_mtime, false, false);
	}
	diags_free(&fd);
	free(v);
}

static bool store_config_name(const char *name)
{
	return str_has_suffix(name, ".yaml") || str_has_suffix(name, ".yml") ||
	       str_has_suffix(name, ".json");
}

static void store_load_dir(struct store_loader *l, const char *dir)
{
	char **names;
	unsigned char *types;
	size_t n;
	int dfd;

	if (store_list_typed(dir, &names, &types, &n) < 0) {
		diag_err(l->d, dir, 0, 0, "cannot read directory: %s", strerror(errno));
		if (l->cache)
			store_cache_plan_spoil(l->cache);
		return;
	}
	/* Names are stat()ed relative to the directory: a reload that finds every file
	 * unchanged is mostly these 30,000 calls, and a whole path walk each was half of it. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (size_t i = 0; i < n; i++) {
		char *path = store_join(dir, names[i]);
		struct stat st;

		/* stat, not lstat: a ConfigMap mount is symlinks all the way down. */
		/* What a reload that takes the changed names from the watcher cannot see
		 * changed (store_load_changed): a link (its target may be outside the store's
		 * watches), a type the file system does not say, what the walk warned of. */
		if (l->cache && types[i] != DT_REG && types[i] != DT_DIR)
			store_cache_plan_spoil(l->cache);
		if ((dfd >= 0 ? fstatat(dfd, names[i], &st, 0) : stat(path, &st)) < 0) {
			diag_warn(l->d, path, 0, 0, "skipped: %s", strerror(errno));
			if (l->cache)
				store_cache_plan_spoil(l->cache);
		} else if (S_ISDIR(st.st_mode)) {
			bool loop = false;

			for (int k = 0; k < l->depth; k++)
				if (l->stack[k].dev == st.st_dev && l->stack[k].ino == st.st_ino)
					loop = true;
			if ((loop || l->depth == STORE_MAX_DEPTH) && l->cache)
				store_cache_plan_spoil(l->cache);
			if (loop) {
				diag_warn(l->d, path, 0, 0, "skipped: symlink loop");
			} else if (l->depth == STORE_MAX_DEPTH) {
				diag_warn(l->d, path, 0, 0, "skipped: nested more than %d levels",
				          STORE_MAX_DEPTH);
			} else {
				l->stack[l->depth].dev = st.st_dev;
				l->stack[l->depth].ino = st.st_ino;
				l->depth++;
				store_load_dir(l, path);
				l->depth--;
			}
		} else if (S_ISREG(st.st_mode) && store_config_name(names[i])) {
			if (l->drop_streams) {
				if (l->cache)
					store_cache_plan_add(l->cache, dir, names[i]);
				store_load_file_cached(l, path, dfd, names[i], &st);
			} else
				store_load_file(l, path, st.st_mtime);
		}
		free(path);
	}
	if (dfd >= 0)
		close(dfd);
	store_free_names(names, n);
	free(types);
}

/* ---- secrets ---- */

bool store_secret_key_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253 || strcmp(s, ".") == 0 || str_has_prefix(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

static int store_key_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_secret_key *)a)->key,
	              ((const struct store_secret_key *)b)->key);
}

void store_secret_set(struct store_secret *s, const char *key, const void *data, size_t len)
{
	struct store_secret_key *k = NULL;

	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->keys[i].key, key) == 0)
			k = &s->keys[i];
	if (k) {
		OPENSSL_cleanse(k->data, k->len);
		free(k->data);
	} else {
		s->keys = xrealloc(s->keys, (s->n + 1) * sizeof(*s->keys));
		k = &s->keys[s->n++];
		k->key = xstrdup(key);
	}
	k->data = xmalloc(len ? len : 1);
	if (len)
		memcpy(k->data, data, len);
	k->len = len;
	qsort(s->keys, s->n, sizeof(*s->keys), store_key_cmp);
}

void store_secret_free(struct store_secret *s)
{
	for (size_t i = 0; i < s->n; i++) {
		OPENSSL_cleanse(s->keys[i].data, s->keys[i].len);
		free(s->keys[i].data);
		free(s->keys[i].key);
	}
	free(s->keys);
	free(s->type);
	memset(s, 0, sizeof(*s));
}

bool store_secret_equal(const struct store_secret *a, const struct store_secret *b)
{
	if (strcmp(a->type ? a->type : STORE_SECRET_OPAQUE,
	           b->type ? b->type : STORE_SECRET_OPAQUE) != 0 || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->keys[i].key, b->keys[i].key) != 0 || a->keys[i].len != b->keys[i].len ||
		    CRYPTO_memcmp(a->keys[i].data, b->keys[i].data, a->keys[i].len) != 0)
			return false;
	return true;
}

void store_secret_from_res(const struct resource *r, struct store_secret *out)
{
	const struct secret *sec = r->u.secret;

	memset(out, 0, sizeof(*out));
	out->type = xstrdup(sec->type ? sec->type : STORE_SECRET_OPAQUE);
	for (size_t i = 0; i < sec->data.n; i++)
		store_secret_set(out, sec->data.v[i].key, sec->data.v[i].value, sec->data.v[i].len);
}

/* Writes s as a double-quoted YAML scalar; anything unusual is escaped so that a name
 * taken from a directory entry cannot change the document's structure. */
static void store_yaml_quote(struct sbuf *b, const char *s)
{
	sbuf_addc(b, '"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			sbuf_addc(b, '\\');
			sbuf_addc(b, (char)c);
		} else if (c < 0x20 || c == 0x7f) {
			sbuf_addf(b, "\\x%02x", c);
		} else {
			sbuf_addc(b, (char)c);
		}
	}
	sbuf_addc(b, '"');
}

/* The Secret type of a directory: its "..type" entry, else inferred from the keys. */
static char *store_secret_type(const char *dir, const struct store_secret *sec)
{
	char *path = store_join(dir, STORE_SECRET_TYPE);
	char *buf = NULL, *t;
	size_t len;

	if (file_read_all(path, &buf, &len) == 0) {
		free(path);
		len = strcspn(buf, "\r\n");
		while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
			len--;
		t = xstrndup(buf, len);
		free(buf);
		return t;
	}
	free(path);
	if (sec->n == 2 && strcmp(sec->keys[0].key, "tls.crt") == 0 &&
	    strcmp(sec->keys[1].key, "tls.key") == 0)
		return xstrdup(STORE_SECRET_TLS);
	return xstrdup(STORE_SECRET_OPAQUE);
}

/* Reads the keys of a secret directory. Entries that cannot be keys are warned about and
 * skipped; an unreadable key file is an error (-1). */
static int store_read_secret_dir(const char *dir, struct store_secret *sec, struct diags *d)
{
	char **names;
	size_t n;
	int ret = 0;

	memset(sec, 0, sizeof(*sec));
	if (store_list(dir, &names, &n) < 0) {
		diag_err(d, dir, 0, 0, "cannot read secret directory: %s", strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < n && ret == 0; i++) {
		char *path = store_join(dir, names[i]);
		struct stat st;
		char *buf;
		size_t len;

		if (stat(path, &st) < 0) {
			diag_warn(d, path, 0, 0, "skipped: %s", strerror(errno));
		} else if (!S_ISREG(st.st_mode)) {
			diag_warn(d, path, 0, 0, "skipped: a secret key must be a file");
		} else if (!store_secret_key_valid(names[i])) {
			diag_warn(d, path, 0, 0, "skipped: not a valid secret key name "
			          "(want letters, digits, '-', '_', '.')");
		} else if (st.st_size > STORE_SECRET_MAX) {
			diag_err(d, path, 0, 0, "secret key larger than 1MiB");
			ret = -1;
		} else if (file_read_all(path, &buf, &len) < 0) {
			diag_err(d, path, 0, 0, "cannot read: %s", strerror(errno));
			ret = -1;
		} else {
			store_secret_set(sec, names[i], buf, len);
			OPENSSL_cleanse(buf, len);
			free(buf);
		}
		free(path);
	}
	store_free_names(names, n);
	if (ret < 0)
		store_secret_free(sec);
	else
		sec->type = store_secret_type(dir, sec);
	return ret;
}

/* The Secret as the YAML document a user would have applied, so that it goes through the
 * same res_decode as everything else. The buffer is sized up front and never reallocated,
 * so the one copy of the encoded keys can be cleansed. */
static char *store_secret_yaml(const char *ns, const char *name, const struct store_secret *sec,
                               size_t *len, size_t *cap)
{
	struct sbuf b = SBUF_INIT;
	size_t est = 512 + 4 * (strlen(ns) + strlen(name) + strlen(sec->type));
	unsigned char *enc;

	for (size_t i = 0; i < sec->n; i++)
		est += 16 + 4 * strlen(sec->keys[i].key) + (sec->keys[i].len + 2) / 3 * 4;
	b.s = xmalloc(est);
	b.cap = est;
	sbuf_adds(&b, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ");
	store_yaml_quote(&b, name);
	sbuf_adds(&b, "\n  namespace: ");
	store_yaml_quote(&b, ns);
	sbuf_adds(&b, "\ntype: ");
	store_yaml_quote(&b, sec->type);
	sbuf_adds(&b, sec->n ? "\ndata:\n" : "\ndata: {}\n");
	for (size_t i = 0; i < sec->n; i++) {
		size_t elen = (sec->keys[i].len + 2) / 3 * 4;

		sbuf_adds(&b, "  ");
		store_yaml_quote(&b, sec->keys[i].key);
		sbuf_adds(&b, ": \"");
		enc = (unsigned char *)b.s + b.len;
		/* Encoded in place: EVP_EncodeBlock writes elen bytes and a NUL. */
		if (b.len + elen + 4 > b.cap)
			abort();  /* est above is an upper bound; this cannot happen */
		EVP_EncodeBlock(enc, sec->keys[i].data, (int)sec->keys[i].len);
		b.len += elen;
		sbuf_adds(&b, "\"\n");
	}
	*len = b.len;
	*cap = b.cap;
	return b.s;
}

static time_t store_secret_mtime(const char *dir)
{
	char *data = store_join(dir, "..data");
	struct stat st;
	time_t t = 0;

	/* ..data points at the timestamped directory of the current version. */
	if (stat(data, &st) == 0 || stat(dir, &st) == 0)
		t = st.st_mtime;
	free(data);
	return t;
}

static void store_load_secret(struct store_loader *l, const char *dir, const char *ns,
                              const char *name)
{
	struct store_secret sec;
	struct diags tmp = DIAGS_INIT;
	struct ystream *s;
	struct resource r;
	char *yaml;
	size_t len, cap;
	int rc;

	if (store_read_secret_dir(dir, &sec, l->d) < 0)
		return;
	yaml = store_secret_yaml(ns, name, &sec, &len, &cap);
	store_secret_free(&sec);
	s = xcalloc(1, sizeof(*s));
	rc = ydoc_parse(dir, yaml, len, s, &tmp);
	OPENSSL_cleanse(yaml, cap);
	free(yaml);
	if (rc == 0) {
		rc = s->ndocs == 1 ? res_decode(s, &s->docs[0], ns, &r, &tmp) : -1;
		if (l->drop_streams) {
			store_stream_free(s);
			s = NULL;
			r.node = NULL;
		} else {
			store_keep_stream(l->out, s);
		}
	} else {
		free(s);
	}
	/* Positions in the generated text mean nothing to the user: keep the directory and
	 * the message only. */
	for (size_t i = 0; i < tmp.n; i++)
		diag_add(l->d, tmp.v[i].level, dir, 0, 0, "%s", tmp.v[i].msg);
	if (rc == 0)
		store_add(l, &r, dir, s, 0, store_secret_mtime(dir), true, false);
	else if (!diags_has_errors(&tmp))
		diag_err(l->d, dir, 0, 0, "cannot read this secret directory");
	diags_free(&tmp);
}

void store_load_secrets(struct store_loader *l, const char *sdir)
{
	char **nss, **names;
	size_t nns, nnames;

	if (store_list(sdir, &nss, &nns) < 0) {
		if (errno != ENOENT)
			diag_err(l->d, sdir, 0, 0, "cannot read directory: %s", strerror(errno));
		return;
	}
	for (size_t i = 0; i < nns; i++) {
		char *nsdir = store_join(sdir, nss[i]);
		struct stat st;

		if (stat(nsdir, &st) < 0 || !S_ISDIR(st.st_mode)) {
			diag_warn(l->d, nsdir, 0, 0, "skipped: want a directory per namespace");
		} else if (store_list(nsdir, &names, &nnames) < 0) {
			diag_err(l->d, nsdir, 0, 0, "cannot read directory: %s", strerror(errno));
		} else {
			for (size_t j = 0; j < nnames; j++) {
				char *dir = store_join(nsdir, names[j]);

				if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
					diag_warn(l->d, dir, 0, 0, "skipped: want a directory per secret");
				else
					store_load_secret(l, dir, nss[i], names[j]);
				free(dir);
			}
			store_free_names(names, nnames);
		}
		free(nsdir);
	}
	store_free_names(nss, nns);
}

void store_loader_init(struct store_loader *l, struct store_contents *out,
                              const char *default_ns, struct diags *d)
{
	memset(out, 0, sizeof(*out));
	memset(l, 0, sizeof(*l));
	l->out = out;
	l->default_ns = default_ns;
	l->d = d;
}

static int store_load_with(const char *root, const char *default_ns, struct store_cache *cache,
                           bool drop_streams, struct store_contents *out, struct diags *d)
{
	struct store_loader l;
	struct diags mine = DIAGS_INIT;
	char *cdir = store_join(root, STORE_CONFIG_DIR);
	char *sdir = store_join(root, STORE_SECRETS_DIR);
	struct stat st;
	int ret;

	store_loader_init(&l, out, default_ns, &mine);
	l.cache = cache;
	l.drop_streams = drop_streams;
	if (cache) {
		store_cache_begin(cache);
		store_cache_plan_reset(cache);
	}
	if (stat(cdir, &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			l.stack[0].dev = st.st_dev;
			l.stack[0].ino = st.st_ino;
			l.depth = 1;
			store_load_dir(&l, cdir);
		} else {
			diag_err(&mine, cdir, 0, 0, "not a directory");
		}
	} else if (errno != ENOENT) {
		diag_err(&mine, cdir, 0, 0, "%s", strerror(errno));
	}
	store_load_secrets(&l, sdir);
	if (cache)
		store_cache_end(cache);
	ret = diags_has_errors(&mine) ? -1 : 0;
	diags_merge(d, &mine);
	diags_free(&mine);
	free(sdir);
	free(cdir);
	return ret;
}

int store_load(const char *root, const char *default_ns, struct store_contents *out,
               struct diags *d)
{
	return store_load_with(root, default_ns, NULL, false, out, d);
}

int store_load_cached(const char *root, const char *default_ns, struct store_cache *cache,
                      struct store_contents *out, struct diags *d)
{
	return store_load_with(root, default_ns, cache, true, out, d);
}

int store_load_files(const char *root, const char *default_ns, char *const *paths,
                     size_t npaths, const char *const *secret_ns,
                     const char *const *secret_names, size_t nsecrets,
                     struct store_contents *out, struct diags *d)
{
	struct store_loader l;
	struct diags mine = DIAGS_INIT;
	int ret;

	store_loader_init(&l, out, default_ns, &mine);
	for (size_t i = 0; i < npaths; i++) {
		struct stat st;

		/* Gone since the index named it: the caller sees the resource missing. */
		if (stat(paths[i], &st) == 0 && S_ISREG(st.st_mode))
			store_load_file(&l, paths[i], st.st_mtime);
	}
	for (size_t i = 0; i < nsecrets; i++) {
		char *dir = store_secret_dir(root, secret_ns[i], secret_names[i]);
		struct stat st;

		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
			store_load_secret(&l, dir, secret_ns[i], secret_names[i]);
		free(dir);
	}
	ret = diags_has_errors(&mine) ? -1 : 0;
	diags_merge(d, &mine);
	diags_free(&mine);
	return ret;
}

/* ---- paths ---- */

char *store_config_path(const char *root, enum res_kind kind, const char *ns,
                        const char *name)
{
	const struct res_kind_info *k = res_kind_info(kind);

	/* The Gateway API kinds live in "<plural>.<group>" directories, so that its
	 * gateways never share a directory (or a file name) with Istio's. */
	if (strcmp(k->group, "gateway.networking.k8s.io") == 0)
		return xasprintf("%s/%s/%s/%s.%s/%s.yaml", root, STORE_CONFIG_DIR, ns, k->plural,
		                 k->group, name);
	return xasprintf("%s/%s/%s/%s/%s.yaml", root, STORE_CONFIG_DIR, ns, k->plural, name);
}

char *store_secret_dir(const char *root, const char *ns, const char *name)
{
	return xasprintf("%s/%s/%s/%s", root, STORE_SECRETS_DIR, ns, name);
}

/* ---- writing config ---- */

int store_mkdir_parent(const char *path, unsigned mode, struct diags *d)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	int ret = 0;

	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir_p(dir, mode) < 0) {
			diag_err(d, dir, 0, 0, "cannot create directory: %s", strerror(errno));
			ret = -1;
		}
	}
	free(dir);
	return ret;
}

/* The file to rewrite for an entry: the real file behind any symlinks, so that a
 * mounted layout (KEY -> ..data/KEY) keeps its links. */
static char *store_real_file(const char *path, unsigned *mode, struct diags *d)
{
	char *real = realpath(path, NULL);
	struct stat st;

	if (!real || stat(real, &st) < 0) {
		diag_err(d, path, 0, 0, "%s", strerror(errno));
		free(real);
		return NULL;
	}
	*mode = st.st_mode & 07777;
	return real;
}

static size_t store_count_docs(const struct ystream *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->ndocs; i++)
		if (s->docs[i].root)
			n++;
	return n;
}

static bool store_marker_at(const struct ystream *s, size_t at)
{
	return s->srclen - at >= 3 && memcmp(s->src + at, "---", 3) == 0 &&
	       (s->srclen - at == 3 || strchr(" \t\r\n", s->src[at + 3]));
}

static size_t store_next_line(const struct ystream *s, size_t at)
{
	const char *nl = memchr(s->src + at, '\n', s->srclen - at);

	return nl ? (size_t)(nl - s->src) + 1 : s->srclen;
}

/* The byte range of document i in its stream, widened to whole lines. To replace a
 * document (whole false) its own "---" line stays outside the range, so that what
 * replaces it is still a separate document. To remove one (whole true) one separator
 * goes with it: its own "---" line, or for a first document without one, the next
 * document's. */
static void store_doc_range(const struct ystream *s, size_t i, bool whole, size_t *start,
                            size_t *end)
{
	size_t a = s->docs[i].start, b = s->docs[i].end;
	bool marker;

	if (a > s->srclen)
		a = s->srclen;
	if (b > s->srclen)
		b = s->srclen;
	if (b < a)
		b = a;
	marker = store_marker_at(s, a);
	if (marker && !whole) {
		a = store_next_line(s, a);
		if (b < a)
			b = a;
	}
	/* Back to the start of the line, forward past the end of the line. */
	while (a > 0 && s->src[a - 1] != '\n')
		a--;
	while (b < s->srclen && (b == 0 || s->src[b - 1] != '\n'))
		b++;
	if (whole && !marker && store_marker_at(s, b))
		b = store_next_line(s, b);
	*start = a;
	*end = b;
}

/* Checks that after text holds the documents of s, except that document skip is either
 * gone (repl NULL) or equal to repl. */
static int store_verify_splice(const struct ystream *s, size_t skip, const struct ynode *repl,
                               const char *path, const char *text, size_t len)
{
	struct ystream t;
	struct diags tmp = DIAGS_INIT;
	size_t j = 0;
	int ret = -1;

	if (ydoc_parse(path, text, len, &t, &tmp) < 0) {
		diags_free(&tmp);
		return -1;
	}
	for (size_t i = 0; i < s->ndocs; i++) {
		const struct ynode *want = s->docs[i].root;

		if (i == skip)
			want = repl;
		if (!want)
			continue;
		while (j < t.ndocs && !t.docs[j].root)
			j++;
		if (j == t.ndocs || !ynode_equal(t.docs[j].root, want))
			goto out;
		j++;
	}
	while (j < t.ndocs && !t.docs[j].root)
		j++;
	ret = j == t.ndocs ? 0 : -1;
out:
	store_cleanse_stream(&t);
	ystream_free(&t);
	diags_free(&tmp);
	return ret;
}

/* Rewrites the file of e with its document replaced by repl_text (or removed when
 * repl_text is NULL), atomically, after checking that the result parses to the same
 * other documents. */
static int store_splice(const struct store_entry *e, const char *repl_text,
                        const struct ynode *repl, struct diags *d)
{
	const struct ystream *s = e->stream;
	struct sbuf out = SBUF_INIT;
	size_t a, b;
	unsigned mode;
	char *real = NULL;
	int ret = -1;

	store_doc_range(s, e->doc, repl_text == NULL, &a, &b);
	sbuf_add(&out, s->src, a);
	if (repl_text)
		sbuf_adds(&out, repl_text);
	sbuf_add(&out, s->src + b, s->srclen - b);
	if (store_verify_splice(s, e->doc, repl, e->path, sbuf_str(&out), out.len) < 0) {
		diag_err(d, e->path, s->docs[e->doc].line, 0,
		         "cannot %s %s in this file without disturbing its other documents; "
		         "edit the file by hand", repl_text ? "update" : "remove",
		         res_describe(&e->res));
		goto out;
	}
	real = store_real_file(e->path, &mode, d);
	if (!real)
		goto out;
	if (file_write_atomic(real, out.s ? out.s : "", out.len, mode) < 0) {
		diag_err(d, e->path, 0, 0, "cannot write: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	free(real);
	if (out.s)
		OPENSSL_cleanse(out.s, out.cap);
	sbuf_free(&out);
	return ret;
}

int store_put(const char *root, const struct store_entry *existing, enum res_kind kind,
              const char *ns, const char *name, const struct ynode *doc, struct diags *d)
{
	struct sbuf text = SBUF_INIT;
	char *path = NULL;
	unsigned mode = 0644;
	bool json = existing && str_has_suffix(existing->path, ".json");
	int ret = -1;

	/* A resource kept in a JSON file stays JSON (and is the whole file); in YAML only the
	 * document's own text is replaced, so comments and other documents stay. */
	if (json)
		ydoc_emit_json(doc, &text);
	else
		ydoc_emit(doc, &text);
	if (existing && !json) {
		ret = store_splice(existing, sbuf_str(&text), doc, d);
		goto out;
	}
	if (existing) {
		path = store_real_file(existing->path, &mode, d);
		if (!path)
			goto out;
	} else {
		path = store_config_path(root, kind, ns, name);
		if (store_mkdir_parent(path, 0755, d) < 0)
			goto out;
	}
	if (file_write_atomic(path, text.s, text.len, mode) < 0) {
		diag_err(d, path, 0, 0, "cannot write: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	free(path);
	if (text.s)
		OPENSSL_cleanse(text.s, text.cap);
	sbuf_free(&text);
	return ret;
}

/* ---- removing ---- */

int store_remove(const struct store_entry *e, struct diags *d)
{
	if (e->in_secret_dir) {
		char *tmp = xasprintf("%s.XXXXXX", e->path);
		char *slash = strrchr(tmp, '/');
		char *hidden;
		int ret = 0;

		/* Rename to a hidden "..deleted.NAME.XXXXXX" first: readers skip it, so the
		 * Secret disappears in one step even if removing the files takes longer. */
		*slash = '\0';
		hidden = xasprintf("%s/..deleted.%s", tmp, slash + 1);
		free(tmp);
		if (!mkdtemp(hidden) || rmdir(hidden) < 0 || rename(e->path, hidden) < 0) {
			diag_err(d, e->path, 0, 0, "cannot remove: %s", strerror(errno));
			ret = -1;
		} else if (store_rm_tree(hidden) < 0) {
			diag_warn(d, hidden, 0, 0, "left behind: %s", strerror(errno));
		}
		free(hidden);
		return ret;
	}
	if (store_count_docs(e->stream) > 1)
		return store_splice(e, NULL, NULL, d);
	if (unlink(e->path) < 0) {
		diag_err(d, e->path, 0, 0, "cannot remove: %s", strerror(errno));
		return -1;
	}
	return 0;
}
