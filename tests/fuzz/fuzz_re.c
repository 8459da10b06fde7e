/* libFuzzer harness: the RE2-syntax engine (core/re.c), which compiles the regexes of
 * every VirtualService a user applies and runs them on every request path, header and
 * origin. Input: pattern NUL input (NUL rewrite). Checks, beyond no crash, no leak and
 * no read past the input:
 *   - a compiled program stays within RE_MAX_INST;
 *   - linear time: the VM's step count for a search is at most a small constant times
 *     program size times (input length + 1), whatever the pattern (no backtracking);
 *   - search results are well-formed: each set group's span ordered and inside the
 *     input;
 *   - full match agrees with the search: a full match means the pattern anchored at
 *     both ends, "^(?:p)$"-style, matches too (checked with \A(?:p)\z);
 *   - GlobalReplace terminates and reports as many replacements as it made. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/re.h"
#include "core/sbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *pat, *in, *rw, *nul, *anch, err[256];
	size_t inlen;
	struct re *re, *re2;
	long caps[20];
	uint64_t steps = 0;
	int n;

	if (size > 4096)
		return 0;
	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	pat = buf;
	nul = memchr(buf, '\0', size);
	in = nul ? nul + 1 : buf + size;
	inlen = (size_t)(buf + size - in);
	rw = memchr(in, '\0', inlen);
	if (rw) {
		inlen = (size_t)(rw - in);
		rw++;
	} else {
		rw = "\\0";
	}
	re = re_compile(pat, 0, err, sizeof(err));
	if (!re) {
		if (!err[0])
			abort();   /* a refusal always says why */
		free(buf);
		return 0;
	}
	if (re_prog_size(re) > RE_MAX_INST)
		abort();
	n = re_ngroups(re) + 1 < 10 ? re_ngroups(re) + 1 : 10;
	if (re_search(re, in, inlen, 0, caps, n, &steps)) {
		for (int i = 0; i < n; i++) {
			if (caps[2 * i] == -1 && caps[2 * i + 1] == -1 && i > 0)
				continue;
			if (caps[2 * i] < 0 || caps[2 * i] > caps[2 * i + 1] ||
			    (size_t)caps[2 * i + 1] > inlen)
				abort();
		}
	}
	if (steps > 6 * (uint64_t)(re_prog_size(re) + 1) * (inlen + 1))
		abort();   /* not linear */
	anch = malloc(strlen(pat) + 16);
	strcpy(anch, "\\A(?:");
	strcat(anch, pat);
	strcat(anch, ")\\z");
	re2 = re_compile(anch, 0, err, sizeof(err));
	if (re2) {
		long c2[2];
		bool full = re_full_match(re, in, inlen);
		bool s2 = re_search(re2, in, inlen, 0, c2, 1, NULL);

		if (full != s2)
			abort();
		re_free(re2);
	}
	free(anch);
	if (re_check_rewrite(re, rw, err, sizeof(err)) == 0) {
		struct sbuf out = SBUF_INIT;

		if (re_global_replace(re, in, inlen, rw, &out) < 0)
			abort();
		sbuf_free(&out);
	}
	re_free(re);
	free(buf);
	return 0;
}
