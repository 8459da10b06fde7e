/* store_index_own: a write of this process is recorded in the store index (so the next open
 * does not list its directory again) only when nobody else changed that directory; a file
 * added, or another one replaced, by another writer during the write is found by the next
 * open. The integration test (test_store_index_own.py) cannot reach inside the write: here
 * the other writer acts between store_index_will_write and store_index_wrote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config/resource.h"
#include "config/store.h"
#include "config/store_index.h"
#include "core/util.h"

#define NFILES 300

static char *se_text(const char *name, int port)
{
	return xasprintf("apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\n"
	                 "metadata:\n  name: %s\nspec:\n  hosts: [%s.example.com]\n"
	                 "  resolution: DNS\n  ports:\n  - number: %d\n    name: https\n"
	                 "    protocol: HTTPS\n", name, name, port);
}

/* config/team/REL holds ServiceEntry name, written as egressctl writes (rename). */
static void write_se(const char *root, const char *rel, const char *name, int port)
{
	char *path = xasprintf("%s/config/team/%s", root, rel), *text = se_text(name, port);

	assert_int_equal(file_write_atomic(path, text, strlen(text), 0644), 0);
	free(text);
	free(path);
}

/* A store of NFILES ServiceEntries s000.. in config/team/fNNN.yaml, its index saved with
 * times old enough to be trusted. */
static char *make_store(void)
{
	char tmpl[] = "/tmp/test_store_index_own.XXXXXX";
	char *root, *dir;
	struct store_index *ix;

	assert_non_null(mkdtemp(tmpl));
	root = xstrdup(tmpl);
	dir = xasprintf("%s/config/team", root);
	assert_int_equal(mkdir_p(dir, 0755), 0);
	free(dir);
	for (int i = 0; i < NFILES; i++) {
		char rel[32], name[32];

		snprintf(rel, sizeof(rel), "f%03d.yaml", i);
		snprintf(name, sizeof(name), "s%03d", i);
		write_se(root, rel, name, 443);
	}
	usleep(60 * 1000);
	ix = store_index_open(root, "default");
	store_index_close(ix, true);
	return root;
}

static void remove_store(char *root)
{
	char *cmd = xasprintf("rm -rf '%s'", root);

	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(root);
}

static size_t listed(struct store_index *ix)
{
	struct store_index_stats st;

	store_index_get_stats(ix, &st);
	return st.dirs_listed;
}

/* The port of ServiceEntry name as loaded through the index, or -1 when not found. */
static int port_via_index(struct store_index *ix, const char *name)
{
	struct store_key k = { RES_SERVICE_ENTRY, "default", name };
	struct store_contents c;
	struct diags d = DIAGS_INIT;
	const struct store_entry *e;
	int port = -1;

	store_index_load(ix, &k, 1, &c, &d);
	e = store_find(&c, RES_SERVICE_ENTRY, "default", name);
	if (e)
		port = (int)e->res.u.se->ports.v[0].number;
	store_contents_free(&c);
	diags_free(&d);
	return port;
}

/* One apply's write of s001 (its file f001.yaml), with other(root) run inside the write. */
static void own_write(const char *root, void (*other)(const char *root))
{
	struct store_index *ix = store_index_open(root, "default");
	char *path = xasprintf("%s/config/team/f001.yaml", root);

	store_index_will_write(ix, path);
	write_se(root, "f001.yaml", "s001", 8001);
	if (other)
		other(root);
	store_index_wrote(ix, path, true);
	store_index_close(ix, true);
	free(path);
}

static void own_write_is_recorded(void **state)
{
	char *root = make_store();
	struct store_index *ix;

	(void)state;
	ix = store_index_open(root, "default");
	assert_int_equal(listed(ix), 0);
	store_index_close(ix, false);
	own_write(root, NULL);
	/* The next open trusts the directory as the write left it: not listed again. */
	ix = store_index_open(root, "default");
	assert_int_equal(listed(ix), 0);
	assert_int_equal(port_via_index(ix, "s001"), 8001);
	store_index_close(ix, true);
	remove_store(root);
}

static void add_file(const char *root)
{
	write_se(root, "zz-added.yaml", "added", 9001);
}

static void replace_other(const char *root)
{
	write_se(root, "f002.yaml", "s002r", 9002);
}

static void remove_other(const char *root)
{
	char *path = xasprintf("%s/config/team/f003.yaml", root);

	assert_int_equal(unlink(path), 0);
	free(path);
}

static void foreign_change_inside_the_write_is_seen(void **state)
{
	void (*others[])(const char *) = { add_file, replace_other, remove_other };

	(void)state;
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		char *root = make_store();
		struct store_index *ix;

		own_write(root, others[i]);
		ix = store_index_open(root, "default");
		/* Not recorded: the directory is listed again, and what the other writer did
		 * is in the index. */
		assert_int_equal(listed(ix), 1);
		assert_int_equal(port_via_index(ix, "s001"), 8001);
		if (others[i] == add_file)
			assert_int_equal(port_via_index(ix, "added"), 9001);
		if (others[i] == replace_other) {
			assert_int_equal(port_via_index(ix, "s002r"), 9002);
			assert_int_equal(port_via_index(ix, "s002"), -1);
		}
		if (others[i] == remove_other)
			assert_int_equal(port_via_index(ix, "s003"), -1);
		store_index_close(ix, true);
		remove_store(root);
	}
}

static void foreign_change_before_the_write_is_seen(void **state)
{
	char *root = make_store();
	struct store_index *ix = store_index_open(root, "default");
	char *path = xasprintf("%s/config/team/f001.yaml", root);

	(void)state;
	/* After this apply's open, before its write. */
	add_file(root);
	store_index_will_write(ix, path);
	write_se(root, "f001.yaml", "s001", 8001);
	store_index_wrote(ix, path, true);
	store_index_close(ix, true);
	free(path);
	ix = store_index_open(root, "default");
	assert_int_equal(listed(ix), 1);
	assert_int_equal(port_via_index(ix, "added"), 9001);
	store_index_close(ix, true);
	remove_store(root);
}

/* A torn append (a crash while appending the records) is ignored; the directory is
 * listed again and the index rewritten whole. */
static void torn_append_is_ignored(void **state)
{
	char *root = make_store();
	char *ipath = xasprintf("%s/%s", root, STORE_INDEX_NAME), *buf;
	size_t len;
	struct store_index *ix;

	(void)state;
	own_write(root, NULL);
	assert_int_equal(file_read_all(ipath, &buf, &len), 0);
	assert_true(len > 8);
	assert_int_equal(file_write_atomic(ipath, buf, len - 5, 0644), 0);
	free(buf);
	add_file(root);
	ix = store_index_open(root, "default");
	assert_int_equal(listed(ix), 1);
	assert_int_equal(port_via_index(ix, "s001"), 8001);
	assert_int_equal(port_via_index(ix, "added"), 9001);
	store_index_close(ix, true);
	ix = store_index_open(root, "default");
	assert_int_equal(port_via_index(ix, "added"), 9001);
	store_index_close(ix, true);
	free(ipath);
	remove_store(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(own_write_is_recorded),
		cmocka_unit_test(foreign_change_inside_the_write_is_seen),
		cmocka_unit_test(foreign_change_before_the_write_is_seen),
		cmocka_unit_test(torn_append_is_ignored),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
