/* ydoc: the YAML tree (positions, documents, quoting, aliases, errors) and its emitters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "config/ydoc.h"
#include "core/util.h"

/* tests/unit/test_ydoc.c -> tests/data/walkthrough/<name> (tests run from the repo root) */
static char *walkthrough_path(const char *name)
{
	const char *f = __FILE__;
	const char *cut = strstr(f, "unit/test_ydoc.c");

	return xasprintf("%.*sdata/walkthrough/%s", (int)(cut - f), f, name);
}

static const char *const walkthrough_files[] = {
	"01-serviceentry-cnn.yaml",
	"02-gateway-destinationrule-cnn.yaml",
	"03-virtualservice-destinationrule-cnn.yaml",
	"04-gateway-destinationrule-nginx.yaml",
	"05-virtualservice-nginx.yaml",
	"06-destinationrule-originate-mtls-nginx.yaml",
};

static int parse(const char *text, struct ystream *s, struct diags *d)
{
	return ydoc_parse("t.yaml", text, strlen(text), s, d);
}

/* The i-th diagnostic as the user sees it. */
static char *diag_line(const struct diags *d, size_t i)
{
	struct sbuf b = SBUF_INIT;

	assert_true(i < d->n);
	diag_format(&d->v[i], &b);
	return sbuf_steal(&b);
}

static void assert_diag(const struct diags *d, size_t i, const char *want)
{
	char *got = diag_line(d, i);

	if (strcmp(got, want) != 0)
		fail_msg("diagnostic %zu:\n  got:  %s\n  want: %s", i, got, want);
	free(got);
}

static void assert_parse_fails_with(const char *text, const char *want)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;

	assert_int_equal(parse(text, &s, &d), -1);
	assert_true(d.n >= 1);
	assert_diag(&d, 0, want);
	assert_null(s.docs);
	assert_int_equal(s.ndocs, 0);
	diags_free(&d);
}

/* Deep equality that also compares quoting and scalar kinds: what a round trip through
 * the emitter must preserve. */
static bool same_tree(const struct ynode *a, const struct ynode *b)
{
	if (!a || !b)
		return a == b;
	if (a->type != b->type)
		return false;
	if (a->type == YNODE_SCALAR)
		return a->len == b->len && memcmp(a->str, b->str, a->len) == 0 &&
		       ynode_scalar_kind(a) == ynode_scalar_kind(b);
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		if (a->type == YNODE_SEQ && !same_tree(a->items[i], b->items[i]))
			return false;
		if (a->type == YNODE_MAP && (!same_tree(a->pairs[i].key, b->pairs[i].key) ||
		                             !same_tree(a->pairs[i].value, b->pairs[i].value)))
			return false;
	}
	return true;
}

static void assert_emit_round_trips(const struct ynode *root)
{
	struct sbuf out = SBUF_INIT;
	struct ystream s2;
	struct diags d = DIAGS_INIT;

	ydoc_emit(root, &out);
	if (parse(sbuf_str(&out), &s2, &d) != 0) {
		diags_print(&d, stderr);
		fail_msg("emitted YAML does not parse:\n%s", sbuf_str(&out));
	}
	assert_int_equal(s2.ndocs, 1);
	if (!same_tree(root, s2.docs[0].root))
		fail_msg("round trip changed the tree:\n%s", sbuf_str(&out));
	assert_true(ynode_equal(root, s2.docs[0].root));
	ystream_free(&s2);
	sbuf_free(&out);
	diags_free(&d);
}

/* ---------------------------------------------------------------------------------
 * Tree and positions
 * ------------------------------------------------------------------------------- */

static void nodes_carry_one_based_line_and_column(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;
	const struct ynode *root, *spec, *hosts, *port;

	(void)state;
	assert_int_equal(parse("# header\nspec:\n  hosts:\n  - edition.cnn.com\n"
	                       "  port: {number: 80, name: http}\n", &s, &d), 0);
	assert_int_equal(s.ndocs, 1);
	root = s.docs[0].root;
	assert_int_equal(root->type, YNODE_MAP);
	assert_int_equal(root->line, 2);
	assert_int_equal(root->col, 1);
	assert_string_equal(root->file, "t.yaml");
	spec = ynode_get(root, "spec");
	assert_int_equal(spec->line, 3);
	assert_int_equal(spec->col, 3);
	assert_int_equal(spec->pairs[0].key->line, 3);
	hosts = ynode_get(spec, "hosts");
	assert_int_equal(hosts->type, YNODE_SEQ);
	assert_int_equal(hosts->items[0]->line, 4);
	assert_int_equal(hosts->items[0]->col, 5);
	assert_string_equal(ynode_str(hosts->items[0]), "edition.cnn.com");
	port = ynode_get(ynode_get(spec, "port"), "number");
	assert_int_equal(port->line, 5);
	assert_int_equal(port->col, 18);
	assert_string_equal(ynode_str(port), "80");
	assert_null(ynode_get(spec, "missing"));
	assert_null(ynode_get(hosts, "x"));
	assert_null(ynode_str(spec));
	ystream_free(&s);
	diags_free(&d);
}

static void documents_keep_byte_ranges_that_cut_the_file(void **state)
{
	const char *text = "# leading comment\n"
	                   "apiVersion: v1\nkind: A\n"
	                   "---\n"
	                   "kind: B # trailing\n"
	                   "---\n"
	                   "kind: C\n"
	                   "...\n";
	struct ystream s, one;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(parse(text, &s, &d), 0);
	assert_int_equal(s.ndocs, 3);
	assert_int_equal(s.docs[0].line, 2);
	assert_int_equal(s.docs[1].line, 4);
	assert_int_equal(s.docs[2].line, 6);
	assert_int_equal(s.docs[0].start, strlen("# leading comment\n"));
	assert_int_equal(s.docs[0].end, s.docs[1].start);
	assert_int_equal(s.docs[1].end, s.docs[2].start);
	assert_memory_equal(s.src + s.docs[1].start, "---\nkind: B # trailing\n",
	                    s.docs[1].end - s.docs[1].start);
	assert_memory_equal(s.src + s.docs[2].start, "---\nkind: C\n...",
	                    s.docs[2].end - s.docs[2].start);
	/* A document cut out by its range parses to the same tree. */
	assert_int_equal(ydoc_parse("cut.yaml", s.src + s.docs[1].start,
	                            s.docs[1].end - s.docs[1].start, &one, &d), 0);
	assert_int_equal(one.ndocs, 1);
	assert_true(ynode_equal(one.docs[0].root, s.docs[1].root));
	ystream_free(&one);
	ystream_free(&s);
	diags_free(&d);
}

static void byte_ranges_count_bytes_not_characters(void **state)
{
	/* libyaml counts characters; "é" and "€" are 2 and 3 bytes. */
	const char *text = "\xEF\xBB\xBFname: \"caf\xC3\xA9 \xE2\x82\xAC\"\n---\nkind: B\n";
	struct ystream s;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(parse(text, &s, &d), 0);
	assert_int_equal(s.ndocs, 2);
	assert_int_equal(s.docs[0].start, 3);
	assert_memory_equal(s.src + s.docs[1].start, "---\nkind: B\n",
	                    s.docs[1].end - s.docs[1].start);
	assert_int_equal(s.docs[1].end, strlen(text));
	assert_string_equal(ynode_str(ynode_get(s.docs[0].root, "name")), "caf\xC3\xA9 \xE2\x82\xAC");
	ystream_free(&s);
	diags_free(&d);
}

static void crlf_line_endings_keep_ranges_and_lines(void **state)
{
	const char *text = "a: 1\r\n---\r\nb: 2\r\n";
	struct ystream s;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(parse(text, &s, &d), 0);
	assert_int_equal(s.ndocs, 2);
	assert_int_equal(s.docs[1].line, 2);
	assert_int_equal(s.docs[1].start, 6);
	assert_int_equal(s.docs[1].end, strlen(text));
	assert_int_equal(ynode_get(s.docs[1].root, "b")->line, 3);
	ystream_free(&s);
	diags_free(&d);
}

static void empty_documents_are_kept_with_a_null_root(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(parse("---\n---\n# only a comment\n---\na: 1\n", &s, &d), 0);
	assert_int_equal(s.ndocs, 3);
	assert_null(s.docs[0].root);
	assert_null(s.docs[1].root);
	assert_non_null(s.docs[2].root);
	ystream_free(&s);

	assert_int_equal(parse("", &s, &d), 0);
	assert_int_equal(s.ndocs, 0);
	ystream_free(&s);
	assert_int_equal(parse("# nothing here\n\n", &s, &d), 0);
	assert_int_equal(s.ndocs, 0);
	ystream_free(&s);
	assert_int_equal(d.n, 0);
	diags_free(&d);
}

/* ---------------------------------------------------------------------------------
 * Scalars
 * ------------------------------------------------------------------------------- */

static void quoting_tells_strings_from_numbers_and_booleans(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;
	const struct ynode *r;

	(void)state;
	assert_int_equal(parse("q80: \"80\"\np80: 80\nqtrue: 'true'\nptrue: true\nyes: yes\n"
	                       "hex: 0x1F\nfl: 1.5\nexp: 1e3\nstr: edition.cnn.com\n"
	                       "ip: 10.0.0.1\nblock: |\n  80\ntagged: !!str 443\n"
	                       "neg: -12\ninf: .inf\n", &s, &d), 0);
	r = s.docs[0].root;
	assert_true(ynode_get(r, "q80")->quoted);
	assert_false(ynode_get(r, "p80")->quoted);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "q80")), YSCALAR_STRING);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "p80")), YSCALAR_INT);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "qtrue")), YSCALAR_STRING);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "ptrue")), YSCALAR_BOOL);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "yes")), YSCALAR_BOOL);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "hex")), YSCALAR_INT);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "fl")), YSCALAR_FLOAT);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "exp")), YSCALAR_FLOAT);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "str")), YSCALAR_STRING);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "ip")), YSCALAR_STRING);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "block")), YSCALAR_STRING);
	assert_string_equal(ynode_str(ynode_get(r, "block")), "80\n");
	assert_true(ynode_get(r, "tagged")->quoted);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "neg")), YSCALAR_INT);
	assert_int_equal(ynode_scalar_kind(ynode_get(r, "inf")), YSCALAR_FLOAT);
	assert_string_equal(ynode_type_name(ynode_get(r, "q80")), "string");
	assert_string_equal(ynode_type_name(ynode_get(r, "p80")), "number");
	assert_string_equal(ynode_type_name(ynode_get(r, "ptrue")), "boolean");
	assert_string_equal(ynode_type_name(r), "map");
	ystream_free(&s);
	diags_free(&d);
}

static void null_forms_become_null_nodes(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;
	const struct ynode *r;

	(void)state;
	assert_int_equal(parse("empty:\ntilde: ~\nnull: null\nNull: Null\nquoted: 'null'\n"
	                       "list: [~, x]\n", &s, &d), 0);
	r = s.docs[0].root;
	assert_int_equal(ynode_get(r, "empty")->type, YNODE_NULL);
	assert_int_equal(ynode_get(r, "tilde")->type, YNODE_NULL);
	assert_int_equal(ynode_get(r, "null")->type, YNODE_NULL);
	assert_int_equal(ynode_get(r, "Null")->type, YNODE_NULL);
	assert_int_equal(ynode_get(r, "quoted")->type, YNODE_SCALAR);
	assert_int_equal(ynode_get(r, "list")->items[0]->type, YNODE_NULL);
	assert_string_equal(ynode_type_name(ynode_get(r, "tilde")), "null");
	assert_string_equal(ynode_type_name(ynode_get(r, "list")), "list");
	assert_null(ynode_str(ynode_get(r, "tilde")));
	ystream_free(&s);
	diags_free(&d);
}

/* ---------------------------------------------------------------------------------
 * Anchors, aliases, merge keys
 * ------------------------------------------------------------------------------- */

static void aliases_expand_to_copies(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;
	const struct ynode *r, *a, *b;

	(void)state;
	assert_int_equal(parse("base: &tls\n  mode: SIMPLE\n  sni: x.example.com\n"
	                       "one: *tls\nport: &p 443\nsame: *p\n", &s, &d), 0);
	r = s.docs[0].root;
	a = ynode_get(r, "base");
	b = ynode_get(r, "one");
	assert_ptr_not_equal(a, b);
	assert_true(ynode_equal(a, b));
	assert_string_equal(ynode_str(ynode_get(b, "mode")), "SIMPLE");
	/* The alias node stands where it is written; its insides point at the anchor. */
	assert_int_equal(b->line, 4);
	assert_int_equal(b->col, 6);
	assert_int_equal(ynode_get(b, "mode")->line, 2);
	assert_string_equal(ynode_str(ynode_get(r, "same")), "443");
	assert_false(ynode_get(r, "same")->quoted);
	ystream_free(&s);
	diags_free(&d);
}

static void merge_keys_fill_in_without_overriding(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;
	const struct ynode *m;

	(void)state;
	assert_int_equal(parse("defaults: &d {mode: SIMPLE, sni: a, port: 1}\n"
	                       "extra: &e {port: 2, x: y}\n"
	                       "tls:\n  sni: b\n  <<: [*d, *e]\n  last: z\n", &s, &d), 0);
	m = ynode_get(s.docs[0].root, "tls");
	assert_int_equal(m->n, 5);
	assert_string_equal(m->pairs[0].key->str, "sni");
	assert_string_equal(ynode_str(ynode_get(m, "sni")), "b");      /* explicit wins */
	assert_string_equal(ynode_str(ynode_get(m, "mode")), "SIMPLE");
	assert_string_equal(ynode_str(ynode_get(m, "port")), "1");     /* first source wins */
	assert_string_equal(ynode_str(ynode_get(m, "x")), "y");
	assert_string_equal(m->pairs[4].key->str, "last");
	assert_null(ynode_get(m, "<<"));
	ystream_free(&s);
	diags_free(&d);
}

static void unknown_alias_is_an_error_at_the_alias(void **state)
{
	(void)state;
	assert_parse_fails_with("a: 1\nb: *nope\n", "t.yaml:2:4: unknown YAML anchor \"nope\"");
}

static void alias_bombs_stop_at_the_node_budget(void **state)
{
	struct sbuf y = SBUF_INIT;
	struct ystream s;
	struct diags d = DIAGS_INIT;
	clock_t t0 = clock();
	char *line;

	(void)state;
	sbuf_adds(&y, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
	for (int i = 1; i < 9; i++)
		sbuf_addf(&y, "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n",
		          i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
	assert_int_equal(parse(sbuf_str(&y), &s, &d), -1);
	line = diag_line(&d, 0);
	/* At the alias that passes the expansion budget (10,000 nodes per document): the
	 * copies of l1 and l2 are 1,220 nodes, each *l2 in l3 1,111 more, so the eighth. */
	assert_non_null(strstr(line, "t.yaml:4:45: "));
	assert_non_null(strstr(line, "YAML alias expansion too large: more than 10000 nodes"));
	free(line);
	assert_int_equal(d.n, 1);
	/* Bounded work: milliseconds, not the time a 10^9-node expansion would take. */
	assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
	sbuf_free(&y);
	diags_free(&d);
}

/* The limits are per document: a stream of many documents, more nodes and more alias
 * copies in all than one document may hold, parses. */
static void limits_are_per_document(void **state)
{
	struct sbuf y = SBUF_INIT;
	struct ystream s;
	struct diags d = DIAGS_INIT;

	(void)state;
	for (int i = 0; i < 3; i++) {
		sbuf_adds(&y, "---\nv: &v x\nl:\n");
		for (int j = 0; j < 9000; j++)
			sbuf_adds(&y, "- *v\n");
	}
	/* And more nodes in the stream than one document may hold (1,000,000): kubectl
	 * applies a file of 30,000 documents, which is about 1,200,000. */
	for (int i = 0; i < 2; i++) {
		sbuf_adds(&y, "---\nbig: [x");
		for (int j = 1; j < 600000; j++)
			sbuf_adds(&y, ",x");
		sbuf_adds(&y, "]\n");
	}
	assert_int_equal(parse(sbuf_str(&y), &s, &d), 0);
	assert_int_equal(s.ndocs, 5);
	assert_int_equal(ynode_get(s.docs[2].root, "l")->n, 9000);
	assert_int_equal(ynode_get(s.docs[4].root, "big")->n, 600000);
	ystream_free(&s);
	diags_free(&d);
	sbuf_free(&y);
}

static void alias_bytes_are_bounded(void **state)
{
	struct sbuf y = SBUF_INIT;
	struct ystream s;
	struct diags d = DIAGS_INIT;
	char *line;

	(void)state;
	sbuf_adds(&y, "v: &v ");
	for (int i = 0; i < 1024; i++)
		sbuf_addc(&y, 'A');
	sbuf_adds(&y, "\nl:\n");
	for (int j = 0; j < 2000; j++)
		sbuf_adds(&y, "- *v\n");
	assert_int_equal(parse(sbuf_str(&y), &s, &d), -1);
	assert_int_equal(d.n, 1);
	line = diag_line(&d, 0);
	/* 1 MiB of copies is 1,024 aliases of 1 KiB: the 1,025th (line 3 + 1,024) passes it. */
	assert_non_null(strstr(line, "t.yaml:1027:3: YAML alias expansion too large"));
	free(line);
	diags_free(&d);
	sbuf_free(&y);
}

/* ---------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------- */

static void duplicate_keys_are_errors_naming_both_places(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(parse("spec:\n  host: a\n  port: 1\n  host: b\n  port: 2\n", &s, &d), -1);
	assert_int_equal(d.n, 2);
	assert_diag(&d, 0, "t.yaml:4:3: duplicate key \"host\" (first defined at line 2, column 3)");
	assert_diag(&d, 1, "t.yaml:5:3: duplicate key \"port\" (first defined at line 3, column 3)");
	diags_free(&d);
}

static void syntax_errors_carry_file_line_and_column(void **state)
{
	(void)state;
	assert_parse_fails_with("a: [1, 2\nb: 3\n",
	                        "t.yaml:2:2: YAML syntax error: did not find expected ',' or ']' "
	                        "(while parsing a flow sequence, line 1 column 4)");
	assert_parse_fails_with("spec:\n  host: a\n port: 80\n",
	                        "t.yaml:3:2: YAML syntax error: did not find expected key "
	                        "(while parsing a block mapping, line 1 column 1)");
	assert_parse_fails_with("a:\n\tb: 1\n",
	                        "t.yaml:2:1: YAML syntax error: found character that cannot start "
	                        "any token (while scanning for the next token, line 2 column 1)");
	assert_parse_fails_with("a: b: c\n",
	                        "t.yaml:1:5: YAML syntax error: mapping values are not allowed in "
	                        "this context");
}

static void invalid_utf8_is_reported_at_its_line(void **state)
{
	(void)state;
	assert_parse_fails_with("a: 1\nb: \xff\n",
	                        "t.yaml:2:4: invalid input: invalid leading UTF-8 octet");
	assert_parse_fails_with("\xff\xfe" "a\0:\0",
	                        "t.yaml:1:1: UTF-16 input is not supported; convert the file to "
	                        "UTF-8");
}

static void non_scalar_keys_and_unknown_tags_are_rejected(void **state)
{
	(void)state;
	assert_parse_fails_with("? [a, b]\n: c\n", "t.yaml:1:3: map keys must be strings, not a list");
	assert_parse_fails_with("a: !!binary aGk=\n",
	                        "t.yaml:1:4: unsupported YAML tag \"tag:yaml.org,2002:binary\"");
	assert_parse_fails_with("a: !custom {x: 1}\n", "t.yaml:1:4: unsupported YAML tag \"!custom\"");
}

static void deep_nesting_is_rejected(void **state)
{
	char buf[700];

	(void)state;
	memset(buf, '[', 300);
	memset(buf + 300, ']', 300);
	buf[600] = '\0';
	assert_parse_fails_with(buf, "t.yaml:1:257: YAML nesting deeper than 256 levels");
}

/* libyaml's scanner is quadratic in flow nesting: the parse stops at the limit. */
static void very_deep_nesting_is_rejected_at_once(void **state)
{
	size_t n = 100000;
	char *buf = malloc(n + 8);
	struct ystream s;
	struct diags d = DIAGS_INIT;
	clock_t t0 = clock();

	(void)state;
	memcpy(buf, "a: ", 3);
	memset(buf + 3, '[', n);
	buf[n + 3] = '\0';
	assert_int_equal(parse(buf, &s, &d), -1);
	assert_int_equal(d.n, 1);
	assert_diag(&d, 0, "t.yaml:1:259: YAML nesting deeper than 256 levels");
	assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
	diags_free(&d);
	free(buf);
}

static void unreadable_file_names_the_path(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(ydoc_parse_file("/nonexistent/x.yaml", &s, &d), -1);
	assert_diag(&d, 0, "/nonexistent/x.yaml: cannot read /nonexistent/x.yaml: No such file or "
	            "directory");
	diags_free(&d);
}

/* ---------------------------------------------------------------------------------
 * Emitters
 * ------------------------------------------------------------------------------- */

static void emit_round_trips_every_walkthrough_document(void **state)
{
	size_t docs = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(walkthrough_files); i++) {
		char *path = walkthrough_path(walkthrough_files[i]);
		struct ystream s;
		struct diags d = DIAGS_INIT;

		if (ydoc_parse_file(path, &s, &d) != 0) {
			diags_print(&d, stderr);
			fail_msg("cannot parse %s", path);
		}
		for (size_t j = 0; j < s.ndocs; j++, docs++)
			assert_emit_round_trips(s.docs[j].root);
		ystream_free(&s);
		diags_free(&d);
		free(path);
	}
	assert_int_equal(docs, 9);
}

static void emit_writes_kubectl_style_block_yaml(void **state)
{
	const char *text = "apiVersion: networking.istio.io/v1alpha3\n"
	                   "kind: DestinationRule\n"
	                   "metadata:\n"
	                   "  name: egressgateway-for-cnn\n"
	                   "spec:\n"
	                   "  host: istio-egressgateway.istio-system.svc.cluster.local\n"
	                   "  subsets:\n"
	                   "  - name: cnn\n"
	                   "    trafficPolicy:\n"
	                   "      portLevelSettings:\n"
	                   "      - port:\n"
	                   "          number: 80\n"
	                   "        tls:\n"
	                   "          mode: ISTIO_MUTUAL\n"
	                   "          sni: edition.cnn.com\n"
	                   "  exportTo: []\n"
	                   "  workloadSelector: {}\n"
	                   "  nested:\n"
	                   "  - - a\n"
	                   "    - b\n"
	                   "  - []\n";
	struct ystream s;
	struct diags d = DIAGS_INIT;
	struct sbuf out = SBUF_INIT;

	(void)state;
	assert_int_equal(parse(text, &s, &d), 0);
	ydoc_emit(s.docs[0].root, &out);
	assert_string_equal(sbuf_str(&out), text);
	sbuf_free(&out);
	ystream_free(&s);
	diags_free(&d);
}

static void emit_quotes_strings_that_would_read_as_something_else(void **state)
{
	static const char *const strings[] = {
		"80", "true", "yes", "on", "N", "null", "~", "", "1e3", "0x1F", "0777", "1_000", ".5",
		"-3", ".inf", "1:30", "2024-06-04", "- item", "a: b", "x #y", "#c", "&a", "*a", "!t",
		"|", ">", "'", "\"", "%x", "@x", "`x", " lead", "trail ", "tab\there", "---", "...",
		"{x}", "[x]", "?", "ends:", "bell\a", "nul\0byte", "nel\xC2\x85", "ls\xE2\x80\xA8",
		"back\\slash \"q\"",
	};
	static const char *const plain[] = {
		"edition.cnn.com", "ISTIO_MUTUAL", "outbound|443||edition.cnn.com", "a:b", "x#y",
		"10.0.0.1", "-foo", "caf\xC3\xA9", "/politics?q=1", "spiffe://cluster.local/ns/x",
	};
	struct ystream s;
	struct sbuf out = SBUF_INIT;
	struct ynode *map;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.file = xstrdup("built");
	map = ynode_new_map(&s);
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++) {
		size_t len = strcmp(strings[i], "nul") == 0 ? 8 : strlen(strings[i]);
		char key[32];

		snprintf(key, sizeof(key), "s%zu", i);
		ynode_map_set(&s, map, key, ynode_new_scalar(&s, strings[i], len, true));
	}
	for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
		char key[32];

		snprintf(key, sizeof(key), "p%zu", i);
		ynode_map_set(&s, map, key, ynode_new_scalar(&s, plain[i], strlen(plain[i]), true));
	}
	/* A string "<<" must not come back as a merge key. */
	ynode_map_set(&s, map, "<<", ynode_new_scalar(&s, "<<", 2, true));
	ynode_map_set(&s, map, "int", ynode_new_scalar(&s, "80", 2, false));
	ynode_map_set(&s, map, "bool", ynode_new_scalar(&s, "true", 4, false));
	assert_emit_round_trips(map);
	ydoc_emit(map, &out);
	assert_true(str_has_prefix(sbuf_str(&out), "s0: \"80\"\n"));
	assert_non_null(strstr(sbuf_str(&out), "\ns1: \"true\"\n"));
	assert_non_null(strstr(sbuf_str(&out), "\ns7: \"\"\n"));
	assert_non_null(strstr(sbuf_str(&out), "\ns40: \"bell\\x07\"\n"));
	assert_non_null(strstr(sbuf_str(&out), "\ns41: \"nul\\0byte\"\n"));
	assert_non_null(strstr(sbuf_str(&out), "\ns42: \"nel\\N\"\n"));
	/* Quotes and backslashes inside a plain scalar need no quoting. */
	assert_non_null(strstr(sbuf_str(&out), "\ns44: back\\slash \"q\"\n"));
	assert_non_null(strstr(sbuf_str(&out), "\np0: edition.cnn.com\n"));
	assert_non_null(strstr(sbuf_str(&out), "\np2: outbound|443||edition.cnn.com\n"));
	assert_non_null(strstr(sbuf_str(&out), "\n\"<<\": \"<<\"\n"));
	assert_non_null(strstr(sbuf_str(&out), "\nint: 80\n"));
	assert_non_null(strstr(sbuf_str(&out), "\nbool: true\n"));
	sbuf_free(&out);
	ystream_free(&s);
}

static void emit_writes_multiline_strings_as_literal_blocks(void **state)
{
	static const char *const texts[] = {
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		"no newline at end\nsecond",
		"two newlines\n\n",
		"inner\n\nblank\n   indented\n",
		" leading space\nneeds quotes",
		"\nleading newline",
		"cr\r\nlf",
	};
	struct ystream s;
	struct sbuf out = SBUF_INIT;
	struct ynode *seq, *map;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.file = xstrdup("built");
	map = ynode_new_map(&s);
	seq = ynode_new_seq(&s);
	for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
		ynode_seq_append(&s, seq, ynode_new_scalar(&s, texts[i], strlen(texts[i]), true));
		ynode_map_set(&s, map, i ? "later" : "cert", ynode_new_scalar(&s, texts[i],
		              strlen(texts[i]), true));
	}
	ynode_map_set(&s, map, "list", seq);
	assert_emit_round_trips(map);
	ydoc_emit(map, &out);
	assert_non_null(strstr(sbuf_str(&out), "cert: |\n  -----BEGIN CERTIFICATE-----\n  MIIB\n"));
	assert_non_null(strstr(sbuf_str(&out), "- |-\n  no newline at end\n  second\n"));
	assert_non_null(strstr(sbuf_str(&out), "- |+\n  two newlines\n\n"));
	assert_non_null(strstr(sbuf_str(&out), "- \" leading space\\nneeds quotes\"\n"));
	sbuf_free(&out);
	ystream_free(&s);
}

static void emit_writes_long_keys_as_explicit_keys(void **state)
{
	struct ystream s;
	struct ynode *map, *inner, *seq, *list;
	struct sbuf out = SBUF_INIT;
	char key[2001];

	(void)state;
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	memset(&s, 0, sizeof(s));
	s.file = xstrdup("built");
	map = ynode_new_map(&s);
	inner = ynode_new_map(&s);
	seq = ynode_new_seq(&s);
	list = ynode_new_seq(&s);
	ynode_map_set(&s, inner, key, ynode_new_scalar(&s, "v", 1, true));
	ynode_seq_append(&s, seq, ynode_new_scalar(&s, "a", 1, true));
	ynode_map_set(&s, map, key, inner);
	key[0] = 'j';
	ynode_map_set(&s, map, key, seq);
	key[0] = 'i';
	ynode_map_set(&s, map, key, ynode_new_scalar(&s, "80", 2, true));
	ynode_seq_append(&s, list, inner);
	ynode_map_set(&s, map, "list", list);
	assert_emit_round_trips(map);
	ydoc_emit(map, &out);
	assert_true(str_has_prefix(sbuf_str(&out), "? kkkk"));
	sbuf_free(&out);
	ystream_free(&s);
}

static void emit_json_types_scalars_as_kubectl_reads_them(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;
	struct sbuf out = SBUF_INIT;

	(void)state;
	assert_int_equal(parse("name: cnn\nport: 80\nquoted: \"80\"\nhex: 0x10\nok: true\n"
	                       "on: yes\nnone: ~\nratio: 1.5\nexp: 1e3\ninf: .inf\n"
	                       "text: \"tab\\there \\\"q\\\" \\u0001\"\nlist: [a, 1]\nempty: {}\n"
	                       "nolist: []\n", &s, &d), 0);
	ydoc_emit_json(s.docs[0].root, &out);
	assert_string_equal(sbuf_str(&out),
	                    "{\n"
	                    "    \"name\": \"cnn\",\n"
	                    "    \"port\": 80,\n"
	                    "    \"quoted\": \"80\",\n"
	                    "    \"hex\": 16,\n"
	                    "    \"ok\": true,\n"
	                    "    \"on\": true,\n"
	                    "    \"none\": null,\n"
	                    "    \"ratio\": 1.5,\n"
	                    "    \"exp\": 1e3,\n"
	                    "    \"inf\": \".inf\",\n"
	                    "    \"text\": \"tab\\there \\\"q\\\" \\u0001\",\n"
	                    "    \"list\": [\n"
	                    "        \"a\",\n"
	                    "        1\n"
	                    "    ],\n"
	                    "    \"empty\": {},\n"
	                    "    \"nolist\": []\n"
	                    "}\n");
	sbuf_free(&out);
	ystream_free(&s);
	diags_free(&d);
}

/* ---------------------------------------------------------------------------------
 * Equality, builders, clone
 * ------------------------------------------------------------------------------- */

static void equality_ignores_map_order_but_not_list_order(void **state)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(parse("{a: 1, b: [x, y]}\n---\n{b: [x, y], a: 1}\n---\n{a: 1, b: [y, x]}\n"
	                       "---\n{a: 1}\n---\n{a: '1', b: [x, y]}\n", &s, &d), 0);
	assert_true(ynode_equal(s.docs[0].root, s.docs[1].root));
	assert_false(ynode_equal(s.docs[0].root, s.docs[2].root));
	assert_false(ynode_equal(s.docs[0].root, s.docs[3].root));
	assert_true(ynode_equal(s.docs[0].root, s.docs[4].root));   /* text equality */
	assert_false(ynode_equal(s.docs[0].root, NULL));
	assert_true(ynode_equal(NULL, NULL));
	ystream_free(&s);
	diags_free(&d);
}

static void builders_replace_keys_and_grow_lists(void **state)
{
	struct ystream s;
	struct ynode *map, *seq;
	struct sbuf out = SBUF_INIT;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.file = xstrdup("built");
	map = ynode_new_map(&s);
	seq = ynode_new_seq(&s);
	for (int i = 0; i < 100; i++) {
		char num[16];

		snprintf(num, sizeof(num), "%d", i);
		ynode_seq_append(&s, seq, ynode_new_scalar(&s, num, strlen(num), false));
	}
	ynode_map_set(&s, map, "kind", ynode_new_scalar(&s, "Secret", 6, true));
	ynode_map_set(&s, map, "items", seq);
	ynode_map_set(&s, map, "kind", ynode_new_scalar(&s, "Gateway", 7, true));
	assert_int_equal(map->n, 2);
	assert_string_equal(ynode_str(ynode_get(map, "kind")), "Gateway");
	assert_int_equal(seq->n, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(atoi(seq->items[i]->str), i);
	assert_int_equal(ynode_new_scalar(&s, "~", 1, false)->type, YNODE_NULL);
	assert_emit_round_trips(map);
	/* A parsed map can be extended too. */
	{
		struct ystream p;
		struct diags d = DIAGS_INIT;
		struct ynode *root;

		assert_int_equal(parse("a: 1\nb: 2\nc: 3\n", &p, &d), 0);
		root = p.docs[0].root;
		ynode_map_set(&p, root, "d", ynode_new_scalar(&p, "4", 1, false));
		ynode_map_set(&p, root, "e", ynode_new_scalar(&p, "5", 1, false));
		ydoc_emit(root, &out);
		assert_string_equal(sbuf_str(&out), "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\n");
		ystream_free(&p);
		diags_free(&d);
	}
	sbuf_free(&out);
	ystream_free(&s);
}

static void clone_copies_into_another_stream(void **state)
{
	struct ystream src, dst;
	struct diags d = DIAGS_INIT;
	struct ynode *copy;

	(void)state;
	assert_int_equal(parse("spec:\n  hosts: [a, b]\n  port: 80\n", &src, &d), 0);
	memset(&dst, 0, sizeof(dst));
	dst.file = xstrdup("dst");
	copy = ynode_clone(&dst, ynode_get(src.docs[0].root, "spec"));
	ystream_free(&src);   /* the copy must not depend on the source */
	assert_string_equal(copy->file, "t.yaml");
	assert_int_equal(copy->line, 2);
	assert_string_equal(ynode_str(ynode_get(copy, "hosts")->items[1]), "b");
	assert_false(ynode_get(copy, "port")->quoted);
	assert_null(ynode_clone(&dst, NULL));
	ystream_free(&dst);
	diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nodes_carry_one_based_line_and_column),
		cmocka_unit_test(documents_keep_byte_ranges_that_cut_the_file),
		cmocka_unit_test(byte_ranges_count_bytes_not_characters),
		cmocka_unit_test(crlf_line_endings_keep_ranges_and_lines),
		cmocka_unit_test(empty_documents_are_kept_with_a_null_root),
		cmocka_unit_test(quoting_tells_strings_from_numbers_and_booleans),
		cmocka_unit_test(null_forms_become_null_nodes),
		cmocka_unit_test(aliases_expand_to_copies),
		cmocka_unit_test(merge_keys_fill_in_without_overriding),
		cmocka_unit_test(unknown_alias_is_an_error_at_the_alias),
		cmocka_unit_test(alias_bombs_stop_at_the_node_budget),
		cmocka_unit_test(limits_are_per_document),
		cmocka_unit_test(alias_bytes_are_bounded),
		cmocka_unit_test(duplicate_keys_are_errors_naming_both_places),
		cmocka_unit_test(syntax_errors_carry_file_line_and_column),
		cmocka_unit_test(invalid_utf8_is_reported_at_its_line),
		cmocka_unit_test(non_scalar_keys_and_unknown_tags_are_rejected),
		cmocka_unit_test(deep_nesting_is_rejected),
		cmocka_unit_test(very_deep_nesting_is_rejected_at_once),
		cmocka_unit_test(unreadable_file_names_the_path),
		cmocka_unit_test(emit_round_trips_every_walkthrough_document),
		cmocka_unit_test(emit_writes_kubectl_style_block_yaml),
		cmocka_unit_test(emit_quotes_strings_that_would_read_as_something_else),
		cmocka_unit_test(emit_writes_multiline_strings_as_literal_blocks),
		cmocka_unit_test(emit_writes_long_keys_as_explicit_keys),
		cmocka_unit_test(emit_json_types_scalars_as_kubectl_reads_them),
		cmocka_unit_test(equality_ignores_map_order_but_not_list_order),
		cmocka_unit_test(builders_replace_keys_and_grow_lists),
		cmocka_unit_test(clone_copies_into_another_stream),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
