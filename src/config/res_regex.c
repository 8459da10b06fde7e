/* res_regex: the decoder's checks of Istio's regexes (StringMatch `regex`, corsPolicy
 * allowOrigins, rewrite.uriRegexRewrite), with the engine the proxy runs them on
 * (core/re.h), so `egressctl apply` refuses exactly what the proxy could not compile, as
 * Istio's validation refuses what Go's regexp (RE2 syntax) does not parse. */
#include "config/res_internal.h"
#include "core/re.h"

#include <stdio.h>

void chk_re2_field(struct dctx *c, const struct ynode *map, const char *field, const char *s)
{
	char err[256];
	struct re *re = re_compile(s, 0, err, sizeof(err));

	if (re) {
		re_free(re);
		return;
	}
	/* Istio's validateStringRegexp wording. */
	derr_field(c, map, field, "\"%.100s\": error parsing regexp: %s; Istio uses RE2 style "
	           "regex-based match (https://github.com/google/re2/wiki/Syntax)", s, err);
}

void chk_regex_rewrite(struct dctx *c, const struct ynode *map, const struct vs_regex_rewrite *r)
{
	char err[256];
	struct re *re = re_compile(r->match, 0, err, sizeof(err));

	if (!re) {
		derr_field(c, map, "match", "\"%.100s\": error parsing regexp: %s; Istio uses RE2 "
		           "style regex-based match (https://github.com/google/re2/wiki/Syntax)",
		           r->match, err);
		return;
	}
	/* RE2 refuses a substitution naming a group the pattern lacks, or an escape other
	 * than \0..\9 and \\ (RE2::CheckRewriteString); Envoy refuses the route then. */
	if (r->rewrite && re_check_rewrite(re, r->rewrite, err, sizeof(err)) < 0)
		derr_field(c, map, "rewrite", "\"%.100s\": %s", r->rewrite, err);
	re_free(re);
}
