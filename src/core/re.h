/* re: regular expressions with RE2's syntax and semantics, written for egressgw.
 *
 * Istio's regexes (HTTPMatchRequest uri/headers/queryParams `regex`, corsPolicy
 * allowOrigins `regex`, rewrite.uriRegexRewrite) are RE2, which Envoy runs through
 * google_re2 (safe_regex). POSIX regcomp differs in syntax (\d, (?i), *? ...), in
 * semantics (leftmost-longest, where RE2 is leftmost-first: the submatches differ) and in
 * cost (glibc backtracks). This engine follows RE2:
 *   - a pattern is parsed into a tree, then compiled into a program of at most
 *     RE_MAX_INST instructions (larger: "pattern too large - compile failed", as RE2
 *     refuses what exceeds its max_mem); counted repetitions are capped at 1000 as in RE2;
 *   - the program runs on a Pike VM (Thompson NFA simulation with capture slots, threads
 *     kept in priority order so the first alternative wins as in RE2/Perl): time
 *     O(program size * input length), no recursion on the input, memory bounded by the
 *     program size (on the stack up to RE_STACK_VM bytes, so a match allocates nothing
 *     for ordinary patterns);
 *   - input is UTF-8: `.` and classes consume a whole character; a byte that does not
 *     start a valid sequence matches nothing but itself as a literal byte never could
 *     (it matches no class, no `.`), as RE2 in UTF-8 mode.
 * Not supported, refused with a message (RE2 accepts them): Unicode classes \p / \P, \C,
 * case folding of non-ASCII letters under (?i). Backreferences and look-arounds are not
 * RE2 and are refused as RE2 refuses them. */
#ifndef EGRESS_CORE_RE_H
#define EGRESS_CORE_RE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sbuf;
struct re;

#define RE_MAX_INST 8000       /* program size limit (RE2: max_mem, 8 MiB by default) */
#define RE_MAX_REPEAT 1000     /* {n,m} bound, as RE2 */
#define RE_STACK_VM 32768      /* VM working memory a match keeps on its stack */

enum {
	RE_ICASE = 1,          /* as a leading (?i) */
};

/* Compiles pat (NUL-terminated). Returns NULL with a message in err naming the offset and
 * the problem in RE2's words ("missing closing ): at offset 4"). */
struct re *re_compile(const char *pat, unsigned flags, char *err, size_t errlen);
void re_free(struct re *re);
/* Number of capturing groups (not counting the whole match). */
int re_ngroups(const struct re *re);
/* Program size in instructions (for reports and the VM sizing). */
size_t re_prog_size(const struct re *re);

/* Does the whole of s match (RE2::FullMatch, Envoy's safe_regex matcher)? */
bool re_full_match(const struct re *re, const char *s, size_t len);
/* The leftmost-first match in s at or after start (the text before start is context for
 * ^ and \b, as RE2::Match with startpos). caps gets 2*ncap offsets, group 0 first; an
 * unset group is (-1, -1). Returns true on a match. steps, if not NULL, receives the VM's
 * work count (for the linear-time bound checked by the fuzzer). */
bool re_search(const struct re *re, const char *s, size_t len, size_t start, long *caps,
               int ncap, uint64_t *steps);
/* Checks a rewrite string for re_global_replace as RE2::CheckRewriteString: \0..\9 within
 * the groups of re, \\ for a backslash, no other escape. 0, or -1 with a message. */
int re_check_rewrite(const struct re *re, const char *rewrite, char *err, size_t errlen);
/* RE2::GlobalReplace: appends to out s with every non-overlapping match replaced by
 * rewrite (\0..\9 substituted); an empty match right after the previous match is skipped
 * by one character. Returns the number of replacements (0: out gets s unchanged).
 * rewrite must have passed
 * re_check_rewrite. */
int re_global_replace(const struct re *re, const char *s, size_t len, const char *rewrite,
                      struct sbuf *out);

#endif
