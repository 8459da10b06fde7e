/* The RE2-syntax engine (core/re.c): RE2's syntax, its leftmost-first submatches (where
 * POSIX's leftmost-longest differs), full match, GlobalReplace with RE2's empty-match
 * rule, the errors in RE2's words, the limits, and linear time on the classic
 * backtracking killers.
 *
 * `test_re --batch` instead reads lines "hex(pattern) hex(input) hex(rewrite)" on stdin
 * and prints, per line, what the engine says (compile error, full match, search spans,
 * GlobalReplace output): tests/integration/test_re_differential.py compares that with
 * Python's re on random patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/re.h"
#include "core/sbuf.h"

static struct re *compile_ok(const char *pat)
{
	char err[256];
	struct re *re = re_compile(pat, 0, err, sizeof(err));

	if (!re)
		fail_msg("%s: %s", pat, err);
	return re;
}

static void expect_full(const char *pat, const char *s, bool want)
{
	struct re *re = compile_ok(pat);

	if (re_full_match(re, s, strlen(s)) != want)
		fail_msg("full match %s on \"%s\": want %d", pat, s, want);
	re_free(re);
}

/* Search spans as "s,e s,e ..." (-1,-1 for an unset group), or "none". */
static void expect_search(const char *pat, const char *s, const char *want)
{
	struct re *re = compile_ok(pat);
	long caps[20];
	int n = re_ngroups(re) + 1 < 10 ? re_ngroups(re) + 1 : 10;
	char got[256] = "none";

	if (re_search(re, s, strlen(s), 0, caps, n, NULL)) {
		size_t off = 0;

		for (int i = 0; i < n; i++)
			off += (size_t)snprintf(got + off, sizeof(got) - off, "%s%ld,%ld", i ? " " : "",
			                        caps[2 * i], caps[2 * i + 1]);
	}
	if (strcmp(got, want) != 0)
		fail_msg("search %s on \"%s\": got %s, want %s", pat, s, got, want);
	re_free(re);
}

static void expect_replace(const char *pat, const char *s, const char *rw, const char *want,
                           int wantn)
{
	struct re *re = compile_ok(pat);
	struct sbuf out = SBUF_INIT;
	char err[256];
	int n;

	if (re_check_rewrite(re, rw, err, sizeof(err)) < 0)
		fail_msg("%s: %s", rw, err);
	n = re_global_replace(re, s, strlen(s), rw, &out);
	if (strcmp(sbuf_str(&out), want) != 0 || n != wantn)
		fail_msg("replace %s in \"%s\" by %s: got \"%s\" (%d), want \"%s\" (%d)", pat, s, rw,
		         sbuf_str(&out), n, want, wantn);
	sbuf_free(&out);
	re_free(re);
}

static void expect_error(const char *pat, const char *want)
{
	char err[256];
	struct re *re = re_compile(pat, 0, err, sizeof(err));

	if (re) {
		re_free(re);
		fail_msg("%s compiled; want error %s", pat, want);
	}
	if (!strstr(err, want))
		fail_msg("%s: got \"%s\", want \"%s\"", pat, err, want);
}

static void re2_syntax(void **state)
{
	(void)state;
	expect_full("^/v\\d+/.*", "/v12/users", true);
	expect_full("^/v\\d+/.*", "/vx/users", false);
	expect_full("/api/\\w+", "/api/a_b9", true);
	expect_full("/api/\\w+", "/api/a-b", false);
	expect_full("\\s\\S\\D\\W", " x.-", true);
	expect_full("(?i)/API/[a-z]+", "/api/XyZ", true);
	expect_full("(?i:a)b", "Ab", true);
	expect_full("(?i:a)b", "AB", false);
	expect_full("(?:ab)+", "ababab", true);
	expect_full("(?P<ver>v\\d)/(?<rest>.*)", "v1/x", true);
	expect_full("[[:alpha:]]+[[:digit:]]", "abc1", true);
	expect_full("[[:^alpha:]]", "1", true);
	expect_full("[^/]+", "a/b", false);
	expect_full("[]a]+", "]a]", true);
	expect_full("[a-c-]+", "a-c", true);
	expect_full("\\x41\\x{42}\\103", "ABC", true);
	expect_full("\\Qa.b\\E", "a.b", true);
	expect_full("\\Qa.b\\E", "axb", false);
	expect_full("a{2,3}", "aaa", true);
	expect_full("a{2,3}", "aaaa", false);
	expect_full("a{2,}", "aaaaa", true);
	expect_full("a{2}", "a", false);
	expect_full("a{,2}", "a{,2}", true);   /* not a repetition: literal, as RE2 */
	expect_full("x{", "x{", true);
	/* Flags are not atoms: the operator after (?i) applies to what came before. */
	expect_full("b(?i)?", "", true);
	expect_full("\\Qab\\E+", "abbb", true);
	/* Full match means the whole string, with alternation inside (RE2's FullMatch). */
	expect_full("a|ab", "ab", true);
	expect_full(".", "\n", false);
	expect_full("(?s).", "\n", true);
	expect_full("(?m)^b$", "b", true);
	/* UTF-8: `.` and classes consume a character, not a byte. */
	expect_full("/caf.", "/caf\xc3\xa9", true);
	expect_full("/caf[^a]", "/caf\xc3\xa9", true);
	expect_full("[é]", "\xc3\xa9", true);
	expect_full("\\x{e9}", "\xc3\xa9", true);
	expect_full("..", "\xc3\xa9", false);
	expect_full(".", "\xff", false);
	expect_full("\\bfoo\\b", "foo", true);
	expect_full("a\\Bb", "ab", true);
	expect_full("\\Aab\\z", "ab", true);
	/* The `.*` tail shortcut must still see newlines and the rest of the pattern. */
	expect_full("/a/.*", "/a/x\ny", false);
	expect_full("/a/.*$", "/a/xy", true);
	expect_full("/a/.*x", "/a/yy", false);
	expect_full("(?s)/a/.*", "/a/x\ny", true);
	expect_full("(?s)/a/.*", "/a/x\xc3\xa9", true);
	expect_full("/a/[^/]+", "/a/x/y", false);
	expect_full("/a/[^/]+$", "/a/xy", true);
	expect_full("/a/[a-z]+", "/a/x\xc3\xa9", false);
	expect_full("/a/[^/]+", "/a/x\xc3\xa9", true);
	expect_full("/a/x+", "/a/xxx", true);
	expect_full("/a/x+", "/a/xxy", false);
	expect_full("(?i)/a/x+$", "/a/xXx", true);
}

/* Leftmost-first, as RE2 and Perl: the first alternative that matches wins, not the
 * longest (POSIX). */
static void leftmost_first(void **state)
{
	(void)state;
	expect_search("a|ab", "ab", "0,1");
	expect_search("(a|ab)(c|bcd)", "abcd", "0,4 0,1 1,4");
	expect_search("(a+?)(a*)", "aaa", "0,3 0,1 1,3");
	expect_search("(a*?)b", "aab", "0,3 0,2");
	expect_search("(?U)(a+)", "aaa", "0,1 0,1");
	expect_search("(?U)(a+?)", "aaa", "0,3 0,3");
	expect_search("x*", "aaa", "0,0");
	expect_search("b+", "aabbb", "2,5");
	expect_search("(a)|(b)", "b", "0,1 -1,-1 0,1");
	expect_search("/v(\\d+)/(.*)", "GET /v12/users", "4,14 6,8 9,14");
	expect_search("^b", "ab", "none");
	expect_search("\\bb", "a b", "2,3");
	expect_search("(a*)+", "b", "0,0 0,0");
	/* RE2 compiles x* as (x+)?, so an empty iteration still sets the group (Perl's
	 * answer), not "unset" as a split-x-jmp loop would. */
	expect_search("(a*)*", "b", "0,0 0,0");
	expect_search("(a|b)*", "ab", "0,2 1,2");
}

static void global_replace(void **state)
{
	(void)state;
	/* Istio's example: /service/foo/v1/api -> /v1/api/instance/foo */
	expect_replace("^/service/([^/]+)(/.*)$", "/service/foo/v1/api", "\\2/instance/\\1",
	               "/v1/api/instance/foo", 1);
	expect_replace("a", "banana", "o", "bonono", 3);
	expect_replace("x", "banana", "o", "banana", 0);
	/* RE2's empty-match rule: no empty match right where the previous match ended. */
	expect_replace("a*", "baaac", "-", "-b-c-", 3);
	expect_replace("", "abc", "-", "-a-b-c-", 4);
	expect_replace("b*", "abc", "\\0\\0", "abbc", 3);
	expect_replace("(\\d+)", "v1/v22", "<\\1>", "v<1>/v<22>", 2);
	expect_replace("/", "/a/b", "\\\\", "\\a\\b", 2);
	/* \0 is the whole match; a group that did not take part is empty. */
	expect_replace("(a)|(b)", "ab", "[\\1\\2]", "[a][b]", 2);
	/* An empty match steps over a whole UTF-8 character. */
	expect_replace("", "\xc3\xa9", "-", "-\xc3\xa9-", 2);
}

static void check_rewrite(void **state)
{
	char err[256];
	struct re *re = compile_ok("(a)(b)");

	(void)state;
	assert_int_equal(re_check_rewrite(re, "\\1-\\2-\\0-\\\\", err, sizeof(err)), 0);
	assert_int_equal(re_check_rewrite(re, "\\3", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "only has 2 parenthesized"));
	assert_int_equal(re_check_rewrite(re, "\\q", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "invalid rewrite pattern"));
	assert_int_equal(re_check_rewrite(re, "x\\", err, sizeof(err)), -1);
	re_free(re);
}

static void errors_in_re2_words(void **state)
{
	(void)state;
	expect_error("(a", "missing closing ): (a");
	expect_error("a)", "unexpected ): a)");
	expect_error("[a", "missing closing ]: [a");
	expect_error("\\q", "invalid escape sequence: \\q");
	expect_error("a\\", "trailing \\");
	expect_error("\\1", "invalid escape sequence: \\1");     /* backreference */
	expect_error("\\Z", "invalid escape sequence: \\Z");
	expect_error("*a", "no argument for repetition operator: *");
	expect_error("(?i)*", "no argument for repetition operator: *");
	expect_error("a**", "bad repetition operator: **");
	expect_error("a{1001}", "bad repetition operator: {1001}");
	expect_error("a{3,2}", "bad repetition operator: {3,2}");
	expect_error("[z-a]", "invalid character class range: z-a");
	expect_error("[[:foo:]]", "invalid character class range: [:foo:]");
	expect_error("(?=a)", "invalid or unsupported Perl syntax: (?=");
	expect_error("(?<!a)", "invalid named capture group");
	expect_error("(?P<n>a)(?P<n>b)", "duplicate capture group name: n");
	expect_error("\\pL", "Unicode character classes are not supported");
	expect_error("\\C", "not supported");
	expect_error("(?i)\xc3\xa9", "non-ASCII");
	expect_error("\xff", "invalid UTF-8");
	/* The error names where. */
	expect_error("ab\\q", "(at offset 2)");
	/* Programs beyond the limit are refused, as RE2 refuses beyond max_mem. */
	expect_error("((a{1000}){1000}){1000}", "pattern too large");
	expect_error("[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}"
	             "[a-z]{1000}[a-z]{1000}[a-z]{1000}", "pattern too large");
}

/* Linear time: the patterns that make a backtracker exponential run in steps bounded
 * by program size times input length. */
static void linear_time(void **state)
{
	char s[4097];
	struct re *re = compile_ok("(a*)*(a*)*(a*)*b");
	long caps[2];
	uint64_t steps = 0;

	(void)state;
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	assert_false(re_search(re, s, strlen(s), 0, caps, 1, &steps));
	assert_true(steps <= (uint64_t)(strlen(s) + 1) * (strlen(s) + 1) * 4 * re_prog_size(re));
	/* Unanchored search restarts at each position but the lists stay bounded by the
	 * program: per position at most 4 steps per instruction. */
	assert_false(re_full_match(re, s, strlen(s)));
	re_free(re);

	re = compile_ok("(x+x+)+y");
	assert_true(re_search(re, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxy", 41, 0, caps, 1, &steps));
	assert_true(steps <= 42u * 4 * re_prog_size(re));
	re_free(re);
}

static double ns_per_match(const char *pat, const char *path, size_t len, int iters)
{
	struct re *re = compile_ok(pat);
	struct timespec a, b;
	int hits = 0;
	double ns;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < iters; i++)
		hits += re_full_match(re, path, len);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / iters;
	assert_int_equal(hits, iters);
	printf("# re_full_match %s, %zu-byte path, %zu-instruction program: %.0f ns per match\n",
	       pat, len, re_prog_size(re), ns);
	re_free(re);
	return ns;
}

/* A 200-byte path against typical route regexes: reports the time (the brief: well
 * under 1 us per 100 bytes, measured -O2 on an idle core); fails only on an order of
 * magnitude, which no load explains. */
static void speed(void **state)
{
	char path[201];
	struct re *re;
	struct sbuf out = SBUF_INIT;
	struct timespec a, b;

	(void)state;
	memset(path, 'x', 200);
	memcpy(path, "/api/v12/users/12345/", 21);
	path[200] = '\0';
	/* A `.*` tail (the scan shortcut) and a class loop to the end (the VM all along). */
	assert_true(ns_per_match("^/api/v\\d+/users/[^/]+/.*", path, 200, 20000) < 50000);
	assert_true(ns_per_match("^/api/v\\d+/users/[0-9]+/[a-z/]+$", path, 200, 20000) < 50000);
	assert_true(ns_per_match("/api/(v1|v12|v2)/(users|groups)/.+", path, 200, 20000) < 50000);
	re = compile_ok("^/api/v(\\d+)/users/([^/]+)/(.*)$");
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < 5000; i++) {
		sbuf_reset(&out);
		re_global_replace(re, path, 200, "/u/\\2/v\\1/\\3", &out);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_int_equal(out.len, 200 - 21 + 13);
	printf("# re_global_replace with 3 groups, 200-byte path: %.0f ns per rewrite\n",
	       ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 5000);
	sbuf_free(&out);
	re_free(re);
}

/* ---- --batch, for the differential test ---- */

static size_t unhex(const char *h, char *out)
{
	size_t n = 0;

	for (; h[0] && h[1] && h[0] != ' ' && h[0] != '\n'; h += 2) {
		unsigned v;

		sscanf(h, "%2x", &v);
		out[n++] = (char)v;
	}
	out[n] = '\0';
	return n;
}

static void puthex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", (unsigned char)s[i]);
}

static int batch(void)
{
	static char line[65536], pat[16384], in[16384], rw[16384];

	while (fgets(line, sizeof(line), stdin)) {
		char *f2 = strchr(line, ' '), *f3, err[256];
		struct re *re;
		size_t inlen;
		long caps[20];
		int n;

		if (!f2 || !(f3 = strchr(f2 + 1, ' ')))
			return 2;
		unhex(line, pat);
		inlen = unhex(f2 + 1, in);
		unhex(f3 + 1, rw);
		re = re_compile(pat, 0, err, sizeof(err));
		if (!re) {
			printf("ERR %s\n", err);
			fflush(stdout);
			continue;
		}
		printf("FULL %d SEARCH", re_full_match(re, in, inlen));
		n = re_ngroups(re) + 1 < 10 ? re_ngroups(re) + 1 : 10;
		if (re_search(re, in, inlen, 0, caps, n, NULL))
			for (int i = 0; i < 2 * n; i++)
				printf(" %ld", caps[i]);
		else
			printf(" none");
		if (re_check_rewrite(re, rw, err, sizeof(err)) == 0) {
			struct sbuf out = SBUF_INIT;

			n = re_global_replace(re, in, inlen, rw, &out);
			printf(" REPL %d ", n);
			puthex(out.s ? out.s : "", out.len);
			sbuf_free(&out);
		}
		printf("\n");
		fflush(stdout);
		re_free(re);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(re2_syntax),
		cmocka_unit_test(leftmost_first),
		cmocka_unit_test(global_replace),
		cmocka_unit_test(check_rewrite),
		cmocka_unit_test(errors_in_re2_words),
		cmocka_unit_test(linear_time),
		cmocka_unit_test(speed),
	};

	if (argc > 1 && strcmp(argv[1], "--batch") == 0)
		return batch();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
