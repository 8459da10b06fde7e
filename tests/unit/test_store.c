/* The file store: root resolution, reading a kubelet mount layout, duplicates and broken
 * files, Secrets written like the kubelet's AtomicWriter, documents replaced and removed
 * inside multi-document files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config/resource.h"
#include "config/store.h"
#include "config/store_cache.h"
#include "config/store_index.h"
#include "core/util.h"

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/test_store.XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return xstrdup(tmpl);
}

static void rm_rf(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void put(const char *root, const char *rel, const char *text)
{
	char *path = xasprintf("%s/%s", root, rel);
	char *dir = xstrdup(path);

	*strrchr(dir, '/') = '\0';
	assert_int_equal(mkdir_p(dir, 0755), 0);
	assert_int_equal(file_write_atomic(path, text, strlen(text), 0644), 0);
	free(dir);
	free(path);
}

static void link_at(const char *root, const char *target, const char *rel)
{
	char *path = xasprintf("%s/%s", root, rel);

	assert_int_equal(symlink(target, path), 0);
	free(path);
}

static char *slurp(const char *root, const char *rel)
{
	char *path = xasprintf("%s/%s", root, rel);
	char *buf = NULL;
	size_t len;

	if (file_read_all(path, &buf, &len) < 0)
		buf = NULL;
	free(path);
	return buf;
}

static bool exists(const char *root, const char *rel)
{
	char *path = xasprintf("%s/%s", root, rel);
	struct stat st;
	bool ok = lstat(path, &st) == 0;

	free(path);
	return ok;
}

/* root/rel in a buffer that lives until the next call. */
static const char *xasprintf_tmp(const char *root, const char *rel)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "%s/%s", root, rel);
	return buf;
}

/* s with the first "from" replaced by "to", newly allocated. */
static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);

	assert_non_null(at);
	return xasprintf("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
}

#define SE(name) \
	"apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: " name \
	"\nspec:\n  hosts:\n  - " name ".example.com\n  resolution: DNS\n  ports:\n  - number: 443\n" \
	"    name: https\n    protocol: HTTPS\n"

static void root_comes_from_flag_env_default(void **state)
{
	(void)state;
	unsetenv(STORE_ENV);
	assert_string_equal(store_root(NULL), "./egressgw-store");
	assert_string_equal(store_root(""), "./egressgw-store");
	setenv(STORE_ENV, "/from/env", 1);
	assert_string_equal(store_root(NULL), "/from/env");
	assert_string_equal(store_root("/from/flag"), "/from/flag");
	setenv(STORE_ENV, "", 1);
	assert_string_equal(store_root(NULL), "./egressgw-store");
	unsetenv(STORE_ENV);
}

static void missing_store_is_empty(void **state)
{
	struct store_contents c;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(store_load("/nonexistent/egressgw-store", "default", &c, &d), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(d.n, 0);
	store_contents_free(&c);
}

static void kubelet_mount_is_read_once(void **state)
{
	char *root = tmpdir();
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	const struct store_entry *e;

	(void)state;
	put(root, "config/cm/..2024_01_01_00_00_00.1/a.yaml", SE("a") "---\n" SE("b"));
	put(root, "config/cm/..2024_01_01_00_00_00.1/notes.txt", "not read\n");
	link_at(root, "..2024_01_01_00_00_00.1", "config/cm/..data");
	link_at(root, "..data/a.yaml", "config/cm/a.yaml");
	link_at(root, "..data/notes.txt", "config/cm/notes.txt");
	put(root, "secrets/istio-system/cred/..2024_01_01_00_00_00.1/tls.crt", "CERT");
	put(root, "secrets/istio-system/cred/..2024_01_01_00_00_00.1/tls.key", "KEY");
	link_at(root, "..2024_01_01_00_00_00.1", "secrets/istio-system/cred/..data");
	link_at(root, "..data/tls.crt", "secrets/istio-system/cred/tls.crt");
	link_at(root, "..data/tls.key", "secrets/istio-system/cred/tls.key");

	assert_int_equal(store_load(root, "default", &c, &d), 0);
	assert_int_equal(d.n, 0);
	assert_int_equal(c.n, 3);
	e = store_find(&c, RES_SERVICE_ENTRY, "default", "b");
	assert_non_null(e);
	assert_int_equal(e->doc, 1);
	assert_false(e->in_secret_dir);
	e = store_find(&c, RES_SECRET, "istio-system", "cred");
	assert_non_null(e);
	assert_true(e->in_secret_dir);
	/* No ..type: two keys tls.crt and tls.key mean a TLS Secret. */
	assert_string_equal(e->res.u.secret->type, "kubernetes.io/tls");
	assert_int_equal(e->res.u.secret->data.n, 2);
	assert_memory_equal(res_secret_get(e->res.u.secret, "tls.key")->value, "KEY", 3);
	store_contents_free(&c);
	diags_free(&d);
	rm_rf(root);
	free(root);
}

static void duplicates_and_broken_files_are_located_errors(void **state)
{
	char *root = tmpdir();
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	struct sbuf msg = SBUF_INIT;

	(void)state;
	put(root, "config/1.yaml", SE("a"));
	put(root, "config/2.yaml", "# comment\n" SE("a"));
	put(root, "config/3.yaml", SE("c") "---\napiVersion: networking.istio.io/v1\n"
	    "kind: Gateway\nmetadata:\n  name: g\nspec:\n  servers: 7\n");
	put(root, "config/4.yml", "key: [unclosed\n");
	assert_int_equal(store_load(root, "default", &c, &d), -1);
	/* a from 1.yaml, c from 3.yaml: what decodes is still there. */
	assert_int_equal(c.n, 2);
	assert_non_null(store_find(&c, RES_SERVICE_ENTRY, "default", "c"));
	for (size_t i = 0; i < d.n; i++) {
		diag_format(&d.v[i], &msg);
		sbuf_addc(&msg, '\n');
	}
	assert_non_null(strstr(msg.s, "/config/2.yaml:2: ServiceEntry default/a: already "
	                              "defined at "));
	assert_non_null(strstr(msg.s, "/config/3.yaml:"));
	assert_non_null(strstr(msg.s, "Gateway default/g"));
	assert_non_null(strstr(msg.s, "/config/4.yml:"));
	sbuf_free(&msg);
	store_contents_free(&c);
	diags_free(&d);
	rm_rf(root);
	free(root);
}

static void secrets_are_written_like_the_kubelet(void **state)
{
	char *root = tmpdir();
	struct store_secret s;
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	const struct store_entry *e;
	char target[256], old[256];
	ssize_t n;
	struct stat st;
	char *p, *text;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.type = xstrdup("Opaque");
	store_secret_set(&s, "tls.key", "KEY1", 4);
	store_secret_set(&s, "tls.crt", "CERT1", 5);
	store_secret_set(&s, "ca.crt", "CA1", 3);
	assert_string_equal(s.keys[0].key, "ca.crt");  /* kept sorted */
	assert_int_equal(store_put_secret(root, "istio-system", "cred", &s, &d), 0);

	p = xasprintf("%s/secrets/istio-system/cred/..data", root);
	n = readlink(p, old, sizeof(old) - 1);
	assert_true(n > 2);
	old[n] = '\0';
	assert_true(str_has_prefix(old, "..20"));
	free(p);
	p = xasprintf("%s/secrets/istio-system/cred/tls.key", root);
	n = readlink(p, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "..data/tls.key");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(p);
	p = xasprintf("%s/secrets/istio-system/cred", root);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(p);
	text = slurp(root, "secrets/istio-system/cred/..type");
	assert_string_equal(text, "Opaque\n");
	free(text);

	assert_int_equal(store_load(root, "default", &c, &d), 0);
	e = store_find(&c, RES_SECRET, "istio-system", "cred");
	assert_non_null(e);
	assert_string_equal(e->res.u.secret->type, "Opaque");  /* from ..type, not inferred */
	{
		struct store_secret back;

		store_secret_from_res(&e->res, &back);
		assert_true(store_secret_equal(&s, &back));
		store_secret_free(&back);
	}
	store_contents_free(&c);

	/* A new version without ca.crt: one ..data switch, the old version and the old name
	 * are gone. */
	store_secret_free(&s);
	memset(&s, 0, sizeof(s));
	s.type = xstrdup("kubernetes.io/tls");
	store_secret_set(&s, "tls.crt", "CERT2", 5);
	store_secret_set(&s, "tls.key", "KEY2", 4);
	assert_int_equal(store_put_secret(root, "istio-system", "cred", &s, &d), 0);
	p = xasprintf("secrets/istio-system/cred/%s", old);
	assert_false(exists(root, p));
	free(p);
	assert_false(exists(root, "secrets/istio-system/cred/ca.crt"));
	text = slurp(root, "secrets/istio-system/cred/tls.crt");
	assert_string_equal(text, "CERT2");
	free(text);
	assert_int_equal(store_load(root, "default", &c, &d), 0);
	e = store_find(&c, RES_SECRET, "istio-system", "cred");
	assert_string_equal(e->res.u.secret->type, "kubernetes.io/tls");
	assert_int_equal(e->res.u.secret->data.n, 2);

	/* Removal: gone at once, nothing hidden left behind. */
	assert_int_equal(store_remove(e, &d), 0);
	store_contents_free(&c);
	assert_false(exists(root, "secrets/istio-system/cred"));
	{
		char *cmd = xasprintf("test -z \"$(ls -A '%s/secrets/istio-system')\"", root);

		assert_int_equal(system(cmd), 0);
		free(cmd);
	}
	assert_int_equal(d.nerrors, 0);
	store_secret_free(&s);
	diags_free(&d);
	rm_rf(root);
	free(root);
}

static void bad_secret_key_names_are_refused(void **state)
{
	(void)state;
	assert_true(store_secret_key_valid("tls.crt"));
	assert_true(store_secret_key_valid(".hidden"));
	assert_true(store_secret_key_valid("A_b-c.d"));
	assert_false(store_secret_key_valid(""));
	assert_false(store_secret_key_valid("."));
	assert_false(store_secret_key_valid(".."));
	assert_false(store_secret_key_valid("..data"));
	assert_false(store_secret_key_valid("a/b"));
	assert_false(store_secret_key_valid("a b"));
}

#define MULTI \
	"---\n" \
	"# first\n" SE("a") \
	"...\n" \
	"---\n" SE("b") \
	"--- # third\n" SE("c")

/* Loads root and removes kind/name, then reloads and returns the names left, joined. */
static char *remove_and_list(const char *root, const char *name)
{
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	struct sbuf names = SBUF_INIT;

	assert_int_equal(store_load(root, "default", &c, &d), 0);
	assert_int_equal(store_remove(store_find(&c, RES_SERVICE_ENTRY, "default", name), &d), 0);
	store_contents_free(&c);
	assert_int_equal(store_load(root, "default", &c, &d), 0);
	for (size_t i = 0; i < c.n; i++)
		sbuf_addf(&names, "%s%s", i ? "," : "", c.v[i].res.name);
	store_contents_free(&c);
	assert_int_equal(d.n, 0);
	diags_free(&d);
	return sbuf_steal(&names);
}

static void documents_are_removed_from_multi_document_files(void **state)
{
	const char *order[][3] = {
		{ "a", "b,c", "c" }, { "b", "a,c", "a" }, { "c", "a,b", "a" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		char *root = tmpdir();
		char *left, *text;
		const char *second = strcmp(order[i][0], "b") == 0 ? "c" : "b";

		put(root, "config/m.yaml", MULTI);
		left = remove_and_list(root, order[i][0]);
		assert_string_equal(left, order[i][1]);
		free(left);
		text = slurp(root, "config/m.yaml");
		assert_null(strstr(text, "---\n---"));
		free(text);
		left = remove_and_list(root, second);
		assert_string_equal(left, order[i][2]);
		free(left);
		left = remove_and_list(root, order[i][2]);
		assert_string_equal(left, "");
		free(left);
		/* The last one takes the file with it. */
		assert_false(exists(root, "config/m.yaml"));
		rm_rf(root);
		free(root);
	}
}

static void documents_are_replaced_where_they_are(void **state)
{
	char *root = tmpdir();
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	struct store_entry *e;
	struct ystream in;
	char *text;
	char *edited = replace(SE("b"), "resolution: DNS", "resolution: NONE");

	(void)state;
	put(root, "config/m.yaml", MULTI);
	assert_int_equal(ydoc_parse("<test>", edited, strlen(edited), &in, &d), 0);
	assert_int_equal(store_load(root, "default", &c, &d), 0);
	e = store_find(&c, RES_SERVICE_ENTRY, "default", "b");
	assert_int_equal(store_put(root, e, RES_SERVICE_ENTRY, "default", "b", in.docs[0].root, &d),
	                 0);
	store_contents_free(&c);
	text = slurp(root, "config/m.yaml");
	assert_non_null(strstr(text, "# first\n"));
	assert_non_null(strstr(text, "--- # third\n"));
	assert_non_null(strstr(text, "resolution: NONE"));
	free(text);
	assert_int_equal(store_load(root, "default", &c, &d), 0);
	assert_int_equal(c.n, 3);
	e = store_find(&c, RES_SERVICE_ENTRY, "default", "b");
	assert_string_equal(ynode_str(ynode_get(ynode_get(e->res.node, "spec"), "resolution")),
	                    "NONE");
	store_contents_free(&c);
	/* A new resource goes to its own file. */
	assert_int_equal(store_put(root, NULL, RES_SERVICE_ENTRY, "istio-system", "b",
	                           in.docs[0].root, &d), 0);
	assert_true(exists(root, "config/istio-system/serviceentries/b.yaml"));
	assert_int_equal(d.n, 0);
	ystream_free(&in);
	diags_free(&d);
	free(edited);
	rm_rf(root);
	free(root);
}

/* A record kept racy (its file written just before it was read) is handed out again only
 * for the same bytes, whatever stat says; settled, by stat alone. */
static void racy_record_is_checked_by_its_bytes(void **state)
{
	struct store_cache *cache = store_cache_new();
	struct resource *v;
	const struct resource *kept, *got;
	const char *cpath;
	struct stat st;
	uint64_t same = 42, other = 43;
	size_t n = 0;

	(void)state;
	memset(&st, 0, sizeof(st));
	st.st_ino = 7;
	st.st_size = 100;
	for (int step = 0; step < 3; step++) {
		v = xcalloc(1, sizeof(*v));
		v[0].kind = RES_SERVICE_ENTRY;
		v[0].name = xstrdup("a");
		v[0].namespace = xstrdup("default");
		store_cache_begin(cache);
		store_cache_put(cache, xstrdup("/s/a.yaml"), &st, true, same, v, 1, &kept);
		store_cache_end(cache);
		free(v);
		store_cache_begin(cache);
		assert_true(store_cache_racy(cache, "/s/a.yaml", &st));
		/* Not read, or other bytes under the same stat: dropped (parsed again). */
		assert_int_equal(store_cache_get(cache, "/s/a.yaml", &st,
		                                 step == 0 ? NULL : step == 1 ? &other : &same,
		                                 true, &got, &n, &cpath), step == 2);
		store_cache_end(cache);
	}
	assert_int_equal(n, 1);
	/* Still recent: still racy. Verified once settled: known by stat from then on. */
	store_cache_begin(cache);
	assert_true(store_cache_racy(cache, "/s/a.yaml", &st));
	assert_true(store_cache_get(cache, "/s/a.yaml", &st, &same, false, &got, &n, &cpath));
	store_cache_end(cache);
	store_cache_begin(cache);
	assert_false(store_cache_racy(cache, "/s/a.yaml", &st));
	assert_true(store_cache_get(cache, "/s/a.yaml", &st, NULL, false, &got, &n, &cpath));
	store_cache_end(cache);
	store_cache_free(cache);

	/* The same through store_load_cached: a file rewritten in place with other bytes of
	 * the same size just after a load is read again even when the kernel stamped it
	 * with the same times (one coarse tick); tried until that happens, or 300 times. */
	{
		char *root = tmpdir(), *path = xasprintf("%s/config/x.yaml", root);
		struct store_contents c;
		struct diags d = DIAGS_INIT;
		struct stat before, after;
		int same_stat = 0;

		cache = store_cache_new();
		put(root, "config/x.yaml", SE("b1"));
		for (int i = 0; i < 300 && same_stat < 3; i++) {
			char name[8], *text;
			FILE *f;

			store_load_cached(root, "default", cache, &c, &d);
			assert_int_equal(stat(path, &before), 0);
			snprintf(name, sizeof(name), "b%d", (i + 2) % 10);
			text = xasprintf(SE("%s"), name, name);
			f = fopen(path, "w");
			assert_non_null(f);
			fputs(text, f);
			fclose(f);
			assert_int_equal(stat(path, &after), 0);
			same_stat += before.st_mtim.tv_nsec == after.st_mtim.tv_nsec &&
			             before.st_ctim.tv_nsec == after.st_ctim.tv_nsec &&
			             before.st_mtim.tv_sec == after.st_mtim.tv_sec &&
			             before.st_ctim.tv_sec == after.st_ctim.tv_sec;
			store_contents_free(&c);
			diags_free(&d);
			store_load_cached(root, "default", cache, &c, &d);
			assert_non_null(store_find(&c, RES_SERVICE_ENTRY, "default", name));
			store_contents_free(&c);
			diags_free(&d);
			free(text);
		}
		printf("same-stat rewrites seen: %d\n", same_stat);
		store_cache_free(cache);
		rm_rf(root);
		free(root);
		free(path);
	}
}

/* store_load_cached: a reload parses what changed, reuses the rest (borrowed, no stream),
 * forgets what went away, and never caches a file with a diagnostic. */
static void unchanged_files_are_not_parsed_again(void **state)
{
	char *root = tmpdir();
	struct store_cache *cache = store_cache_new();
	struct store_cache_stats st;
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	struct store_entry *e;

	(void)state;
	put(root, "config/a.yaml", SE("a"));
	put(root, "config/b.yaml", SE("b"));
	put(root, "config/bad.yaml", SE("w") "  exportTo: [\".\", \"*\"]\n  unknownField: 1\n");
	usleep(60 * 1000);   /* files written in the last 50 ms are not cached */
	store_load_cached(root, "default", cache, &c, &d);
	store_cache_stats(cache, &st);
	assert_int_equal(st.files, 3);
	assert_int_equal(st.parsed, 3);
	assert_int_equal(st.reused, 0);
	e = store_find(&c, RES_SERVICE_ENTRY, "default", "a");
	assert_non_null(e);
	assert_true(e->borrowed);
	assert_null(e->stream);
	assert_null(e->res.node);
	assert_true(diags_has_errors(&d));
	store_contents_free(&c);
	diags_free(&d);

	/* b replaced (a new file renamed over it), a unchanged, the broken one read again;
	 * b, written just now, is kept racy: the next loads read its bytes again and reuse
	 * it for the same bytes (store_load_racy_file_is_checked_by_its_bytes). */
	put(root, "config/b.yaml", SE("b2"));
	for (int round = 0; round < 4; round++) {
		if (round == 2)
			usleep(60 * 1000);
		store_load_cached(root, "default", cache, &c, &d);
		store_cache_stats(cache, &st);
		/* Round 0 parses b, the next ones reuse it. */
		assert_int_equal(st.parsed, round < 1 ? 2 : 1);
		assert_int_equal(st.reused, round < 1 ? 1 : 2);
		assert_true(diags_has_errors(&d));
		assert_non_null(store_find(&c, RES_SERVICE_ENTRY, "default", "a"));
		assert_non_null(store_find(&c, RES_SERVICE_ENTRY, "default", "b2"));
		assert_null(store_find(&c, RES_SERVICE_ENTRY, "default", "b"));
		store_contents_free(&c);
		diags_free(&d);
	}

	/* a removed: gone, not served from the cache. */
	assert_int_equal(unlink(xasprintf_tmp(root, "config/a.yaml")), 0);
	store_load_cached(root, "default", cache, &c, &d);
	store_cache_stats(cache, &st);
	assert_int_equal(st.files, 2);
	assert_int_equal(st.reused, 1);
	assert_int_equal(st.dropped, 1);
	assert_null(store_find(&c, RES_SERVICE_ENTRY, "default", "a"));
	store_contents_free(&c);
	diags_free(&d);
	store_cache_free(cache);
	rm_rf(root);
	free(root);
}

/* Writes text over root/rel in place (same inode, as an editor that does not rename). */
static void put_in_place(const char *root, const char *rel, const char *text)
{
	FILE *f = fopen(xasprintf_tmp(root, rel), "r+");

	assert_non_null(f);
	assert_int_equal(ftruncate(fileno(f), 0), 0);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static struct store_index_stats index_stats(struct store_index *ix)
{
	struct store_index_stats st;

	store_index_get_stats(ix, &st);
	return st;
}

/* Loads one ServiceEntry through the index; whether it was found, and in which file. */
static bool index_finds(struct store_index *ix, const char *name, const char *root,
                        const char *rel)
{
	struct store_key k = { RES_SERVICE_ENTRY, "default", name };
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	const struct store_entry *e;
	bool ok;

	store_index_load(ix, &k, 1, &c, &d);
	e = store_find(&c, RES_SERVICE_ENTRY, "default", name);
	ok = e && (!rel || strcmp(e->path, xasprintf_tmp(root, rel)) == 0);
	/* Only what may hold it was read: never the unrelated file. */
	assert_null(store_find(&c, RES_SERVICE_ENTRY, "default", "alone"));
	store_contents_free(&c);
	diags_free(&d);
	return ok;
}

/* A directory the index cannot open for a reason other than its absence (here EMFILE: one
 * descriptor left, taken by the listing of its parent) is not dropped as if it were gone:
 * the index is unsure, not saved, and a load and the ServiceEntry hosts come from the
 * whole store. Before, the subtree was dropped, its object "missing", and created again. */
static void index_unreadable_directory_reads_whole_store(void **state)
{
	char *root = tmpdir();
	struct store_index *ix;
	struct store_key k = { RES_SERVICE_ENTRY, "default", "late" };
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	struct rlimit old, lim;
	const char *const *hosts;
	size_t nh;
	bool found = false;
	int fd;

	(void)state;
	for (int i = 0; i < 256; i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "config/filler/f%03d.yaml", i);
		put(root, rel, "# nothing\n");
	}
	put(root, "config/mine/a.yaml", SE("a"));
	ix = store_index_open(root, "default");
	store_index_close(ix, true);
	assert_true(exists(root, "..egressctl-index"));
	put(root, "config/newdir/late.yaml", SE("late"));
	put(root, "config/newdir/late2.yaml", SE("late2"));   /* and the index stays unsaved */
	fd = dup(0);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)fd + 1;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	ix = store_index_open(root, "default");
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	store_index_load(ix, &k, 1, &c, &d);
	assert_non_null(store_find(&c, RES_SERVICE_ENTRY, "default", "late"));
	store_contents_free(&c);
	diags_free(&d);
	hosts = store_index_se_hosts(ix, &nh);
	for (size_t i = 0; i < nh; i++)
		found |= strcmp(hosts[i], "late2.example.com") == 0;
	assert_true(found);
	{
		char *ipath = xasprintf("%s/..egressctl-index", root);
		struct stat before, after;

		assert_int_equal(stat(ipath, &before), 0);
		store_index_close(ix, true);
		assert_int_equal(stat(ipath, &after), 0);
		assert_true(before.st_ino == after.st_ino);   /* not rewritten */
		free(ipath);
	}
	/* With descriptors again: the index is right, and saved. */
	ix = store_index_open(root, "default");
	d = (struct diags)DIAGS_INIT;
	store_index_load(ix, &k, 1, &c, &d);
	assert_non_null(store_find(&c, RES_SERVICE_ENTRY, "default", "late"));
	assert_null(store_find(&c, RES_SERVICE_ENTRY, "default", "a"));
	store_contents_free(&c);
	diags_free(&d);
	store_index_close(ix, true);
	rm_rf(root);
	free(root);
}

/* The store index (egressctl apply): built once, then trusted only as far as the
 * directories' identities and the files it names say; files added, replaced or edited
 * behind its back, and a torn or foreign index file, are found. */
static void index_is_checked_not_trusted(void **state)
{
	char *root = tmpdir();
	struct store_index *ix;
	size_t nh;
	const char *const *hosts;

	(void)state;
	/* A store big enough to keep an index: 256 files not holding a resource (the index
	 * records files, whatever they hold). */
	for (int i = 0; i < 256; i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "config/filler/f%03d.yaml", i);
		put(root, rel, "# nothing\n");
	}
	put(root, "config/default/serviceentries/alone.yaml", SE("alone"));
	put(root, "config/mine/multi.yaml", SE("b") "---\n" SE("c"));
	usleep(60 * 1000);   /* files known by their times (not recorded as too recent) */
	ix = store_index_open(root, "default");
	assert_int_equal(index_stats(ix).rebuilds, 1);
	assert_int_equal(index_stats(ix).resources, 3);
	assert_true(index_finds(ix, "b", root, "config/mine/multi.yaml"));
	assert_false(index_finds(ix, "nothere", root, NULL));
	hosts = store_index_se_hosts(ix, &nh);
	assert_int_equal(nh, 3);
	{
		bool found = false;

		for (size_t i = 0; i < nh; i++)
			found |= strcmp(hosts[i], "c.example.com") == 0;
		assert_true(found);
	}
	store_index_close(ix, true);
	assert_true(exists(root, "..egressctl-index"));

	/* Read back: nothing parsed (directories recorded too recently are listed again, but
	 * their files' inodes and change times are unchanged). */
	usleep(60 * 1000);
	ix = store_index_open(root, "default");
	assert_int_equal(index_stats(ix).rebuilds, 0);
	assert_int_equal(index_stats(ix).files_parsed, 0);
	assert_true(index_finds(ix, "c", root, "config/mine/multi.yaml"));
	store_index_close(ix, true);

	/* A file and a directory added behind its back: parsed, nothing else. */
	put(root, "config/mine/sub/new.yaml", SE("d"));
	put(root, "config/mine/other.yaml", SE("e"));
	ix = store_index_open(root, "default");
	assert_int_equal(index_stats(ix).rebuilds, 0);
	assert_int_equal(index_stats(ix).files_parsed, 2);
	assert_true(index_finds(ix, "d", root, "config/mine/sub/new.yaml"));
	assert_true(index_finds(ix, "e", root, "config/mine/other.yaml"));
	store_index_close(ix, true);

	/* Replaced by rename (a new inode): parsed again. Removed: dropped. */
	put(root, "config/mine/other.yaml", SE("e2"));
	assert_int_equal(unlink(xasprintf_tmp(root, "config/mine/sub/new.yaml")), 0);
	ix = store_index_open(root, "default");
	assert_int_equal(index_stats(ix).rebuilds, 0);
	assert_false(index_finds(ix, "e", root, NULL));
	assert_true(index_finds(ix, "e2", root, "config/mine/other.yaml"));
	assert_false(index_finds(ix, "d", root, NULL));
	assert_int_equal(index_stats(ix).rebuilds, 0);
	store_index_close(ix, true);

	/* Edited in place (same inode, its directory's times unchanged once they settle): the
	 * file named for b no longer holds it, so the index is rebuilt and b is not found;
	 * the object added in place is found after that. */
	usleep(60 * 1000);
	/* Rebuilt and saved with every directory settled (a directory changed since the index
	 * was saved is listed at each open, and its files compared by change time: that
	 * would find the edit without the check below). */
	assert_int_equal(unlink(xasprintf_tmp(root, "..egressctl-index")), 0);
	ix = store_index_open(root, "default");
	store_index_close(ix, true);
	usleep(60 * 1000);
	put_in_place(root, "config/mine/multi.yaml", SE("f") "---\n" SE("c"));
	ix = store_index_open(root, "default");
	assert_int_equal(index_stats(ix).rebuilds, 0);
	assert_false(index_finds(ix, "b", root, NULL));
	assert_int_equal(index_stats(ix).rebuilds, 1);
	assert_true(index_finds(ix, "f", root, "config/mine/multi.yaml"));
	store_index_close(ix, true);

	/* An object added by an edit in place to a file the index knows, then applied: the
	 * index does not know it, so before it would be created every file is stat()ed and
	 * the edited one (its own ctime changed) parsed again; found where it is. */
	usleep(60 * 1000);
	put_in_place(root, "config/mine/other.yaml", SE("e2") "---\n" SE("h"));
	ix = store_index_open(root, "default");
	assert_true(index_finds(ix, "h", root, "config/mine/other.yaml"));
	assert_int_equal(index_stats(ix).full_checks, 1);
	assert_int_equal(index_stats(ix).rebuilds, 0);
	/* other.yaml, and multi.yaml if its record was made too soon after its edit above. */
	assert_in_range(index_stats(ix).files_parsed, 1, 2);
	store_index_close(ix, true);

	/* A file at the path an object would be created in, unknown to the index: read. */
	put(root, "config/default/serviceentries/g.yaml", SE("g"));
	ix = store_index_open(root, "default");
	assert_true(index_finds(ix, "g", root, "config/default/serviceentries/g.yaml"));
	store_index_close(ix, true);

	/* Torn (cut short), of another version, or of another default namespace: rebuilt. */
	{
		char *text = slurp(root, "..egressctl-index");
		const char *bad[3];

		assert_non_null(text);
		bad[0] = xasprintf("%.*s", (int)(strlen(text) / 2), text);
		bad[1] = replace(text, "egressgw-store-index 1 ", "egressgw-store-index 9 ");
		bad[2] = "garbage\n";
		for (size_t i = 0; i < 3; i++) {
			put(root, "..egressctl-index", bad[i]);
			ix = store_index_open(root, "default");
			assert_int_equal(index_stats(ix).rebuilds, 1);
			assert_int_equal(index_stats(ix).resources, 6);  /* alone c f e2 h g */
			assert_true(index_finds(ix, "f", root, "config/mine/multi.yaml"));
			store_index_close(ix, true);
		}
		ix = store_index_open(root, "other");
		assert_int_equal(index_stats(ix).rebuilds, 1);
		store_index_close(ix, true);
		free((char *)bad[0]);
		free((char *)bad[1]);
		free(text);
	}
	rm_rf(root);
	free(root);
}

/* The index over a ConfigMap mount: the kubelet's update (a new "..<time>" directory, one
 * rename of "..data", visible names added and removed) is seen through the mount
 * directory's change time and the links' targets, in a saved and read-back index. */
static void index_follows_a_kubelet_swap(void **state)
{
	char *root = tmpdir();
	struct store_index *ix;

	(void)state;
	for (int i = 0; i < 256; i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "config/filler/f%03d.yaml", i);
		put(root, rel, "# nothing\n");
	}
	put(root, "config/cm/..2024_01_01_00_00_00.1/a.yaml", SE("a"));
	put(root, "config/cm/..2024_01_01_00_00_00.1/b.yaml", SE("b"));
	link_at(root, "..2024_01_01_00_00_00.1", "config/cm/..data");
	link_at(root, "..data/a.yaml", "config/cm/a.yaml");
	link_at(root, "..data/b.yaml", "config/cm/b.yaml");
	usleep(60 * 1000);   /* files known by their times (not recorded as too recent) */
	ix = store_index_open(root, "default");
	assert_true(index_finds(ix, "a", root, "config/cm/a.yaml"));
	assert_true(index_finds(ix, "b", root, "config/cm/b.yaml"));
	store_index_close(ix, true);
	{
		char *text = slurp(root, "..egressctl-index");

		assert_non_null(text);
		assert_non_null(strstr(text, "\nL "));   /* known as reached through a link */
		free(text);
	}

	usleep(60 * 1000);
	put(root, "config/cm/..2024_01_01_00_00_00.2/a.yaml", SE("a2"));
	put(root, "config/cm/..2024_01_01_00_00_00.2/c.yaml", SE("c"));
	link_at(root, "..2024_01_01_00_00_00.2", "config/cm/..data_tmp");
	{
		char *from = xasprintf("%s/config/cm/..data_tmp", root);

		assert_int_equal(rename(from, xasprintf_tmp(root, "config/cm/..data")), 0);
		free(from);
	}
	link_at(root, "..data/c.yaml", "config/cm/c.yaml");
	assert_int_equal(unlink(xasprintf_tmp(root, "config/cm/b.yaml")), 0);
	rm_rf(xasprintf_tmp(root, "config/cm/..2024_01_01_00_00_00.1"));
	ix = store_index_open(root, "default");
	assert_int_equal(index_stats(ix).rebuilds, 0);
	assert_int_equal(index_stats(ix).files_parsed, 2);   /* a.yaml's new target, c.yaml */
	assert_false(index_finds(ix, "a", root, NULL));
	assert_false(index_finds(ix, "b", root, NULL));
	assert_true(index_finds(ix, "a2", root, "config/cm/a.yaml"));
	assert_true(index_finds(ix, "c", root, "config/cm/c.yaml"));
	assert_int_equal(index_stats(ix).rebuilds, 0);
	store_index_close(ix, true);
	rm_rf(root);
	free(root);
}

/* file_read_at trusts the size the loader's stat gave only as far as it goes: a file that
 * grew or shrank since is still read whole, and one exactly that size in one read. */
static void read_at_is_whole_whatever_the_stat_said(void **state)
{
	char dir[] = "/tmp/egressgw-readat-XXXXXX";
	char path[64], big[20000], *buf;
	size_t len;
	int dfd;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.yaml", dir);
	memset(big, 'x', sizeof(big));
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(big, 1, sizeof(big), f), sizeof(big));
	fclose(f);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	/* The stat's size: exact, smaller (the file grew), larger (it shrank), unknown. */
	long long sizes[] = { (long long)sizeof(big), 10, 100000, -1, 0 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_int_equal(file_read_at(dfd, "a.yaml", sizes[i], &buf, &len), 0);
		assert_int_equal(len, sizeof(big));
		assert_memory_equal(buf, big, sizeof(big));
		assert_int_equal(buf[len], '\0');
		free(buf);
	}
	assert_int_equal(file_read_at(dfd, "missing.yaml", 10, &buf, &len), -1);
	close(dfd);
	unlink(path);
	rmdir(dir);
}

/* A cached file's resources name the cache record's path, not a copy each; a file the
 * cache does not keep (it drew a warning) has resources with their own copy, which
 * outlive its stream. Run under ASan: a borrowed path freed early shows there. */
static void cached_resources_share_the_record_path(void **state)
{
	char *root = tmpdir();
	struct store_cache *cache = store_cache_new();
	struct diags d = DIAGS_INIT;
	struct store_contents c;
	/* A field egressgw accepts but does not apply: a warning, so not cached. */
	const char *warned = SE("w") "  location: MESH_EXTERNAL\n  workloadSelector:\n"
	                     "    labels: {app: x}\n";

	(void)state;
	put(root, "config/a.yaml", SE("a"));
	put(root, "config/w.yaml", warned);
	for (int round = 0; round < 3; round++) {
		bool seen_a = false, seen_w = false;

		assert_int_equal(store_load_cached(root, "default", cache, &c, &d), 0);
		for (size_t i = 0; i < c.n; i++) {
			const struct resource *r = &c.v[i].res;

			if (strcmp(r->name, "a") == 0) {
				seen_a = true;
				assert_true(r->file_borrowed);
				assert_ptr_equal(r->file, c.v[i].path);
				assert_ptr_equal(r->u.se->pos.file, r->file);
			} else if (strcmp(r->name, "w") == 0) {
				seen_w = true;
				assert_false(r->file_borrowed);
				assert_non_null(strstr(r->file, "w.yaml"));
				assert_non_null(strstr(r->u.se->pos.file, "w.yaml"));
			}
		}
		assert_true(seen_a && seen_w);
		store_contents_free(&c);
		diags_free(&d);
		if (round == 1)
			put(root, "config/a.yaml", SE("a"));   /* rewritten: a new record path */
	}
	store_cache_free(cache);
	rm_rf(root);
	free(root);
}

/* A writer's marker: made even when a dead writer of the same process id left one, and
 * taken away by the writer's Ctrl-C. */
static void marker_is_made_and_taken_away(void **state)
{
	char *root = tmpdir();
	char *stale = xasprintf("%s/%s.%ld", root, STORE_APPLY_MARK, (long)getpid());
	char *stale2 = xasprintf("%s/%s.%ld.00000000", root, STORE_APPLY_MARK, (long)getpid());
	char *mark;
	int pfd[2], status;
	pid_t pid;

	(void)state;
	fclose(fopen(stale, "w"));
	fclose(fopen(stale2, "w"));
	mark = store_mark_begin(root);
	assert_non_null(mark);
	assert_string_not_equal(mark, stale);
	assert_int_equal(access(mark, F_OK), 0);
	store_mark_end(mark);
	assert_int_equal(access(stale, F_OK), 0);   /* not ours to remove */

	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *m = store_mark_begin(root);
		size_t n = m ? strlen(m) : 0;

		if (write(pfd[1], m ? m : "", n + 1) != (ssize_t)(n + 1))
			_exit(3);
		raise(SIGINT);
		_exit(4);   /* not reached: SIGINT's default action */
	}
	{
		char made[512] = "";
		ssize_t got = read(pfd[0], made, sizeof(made) - 1);

		assert_true(got > 1);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGINT);
		assert_int_equal(access(made, F_OK), -1);   /* the child's marker went with it */
	}
	close(pfd[0]);
	close(pfd[1]);
	free(stale);
	free(stale2);
	rm_rf(root);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(read_at_is_whole_whatever_the_stat_said),
		cmocka_unit_test(root_comes_from_flag_env_default),
		cmocka_unit_test(missing_store_is_empty),
		cmocka_unit_test(kubelet_mount_is_read_once),
		cmocka_unit_test(duplicates_and_broken_files_are_located_errors),
		cmocka_unit_test(secrets_are_written_like_the_kubelet),
		cmocka_unit_test(bad_secret_key_names_are_refused),
		cmocka_unit_test(documents_are_removed_from_multi_document_files),
		cmocka_unit_test(documents_are_replaced_where_they_are),
		cmocka_unit_test(unchanged_files_are_not_parsed_again),
		cmocka_unit_test(racy_record_is_checked_by_its_bytes),
		cmocka_unit_test(cached_resources_share_the_record_path),
		cmocka_unit_test(marker_is_made_and_taken_away),
		cmocka_unit_test(index_is_checked_not_trusted),
		cmocka_unit_test(index_unreadable_directory_reads_whole_store),
		cmocka_unit_test(index_follows_a_kubelet_swap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
