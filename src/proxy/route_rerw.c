/* route_rerw: rewrite.uriRegexRewrite (see route_rerw.h). */
#include "proxy/route_rerw.h"
#include "core/re.h"
#include "core/sbuf.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

int rerw_compile(struct route *out, const struct vs_http_route *hr, char *err, size_t errlen)
{
	const struct vs_regex_rewrite *in = hr->rewrite ? hr->rewrite->uri_regex_rewrite : NULL;
	struct route_rerw *rw;
	struct re *re;

	if (!in || !in->match || !in->rewrite)
		return 0;
	re = re_compile(in->match, 0, err, errlen);
	if (!re)
		return -1;
	if (re_check_rewrite(re, in->rewrite, err, errlen) < 0) {
		re_free(re);
		return -1;
	}
	rw = xcalloc(1, sizeof(*rw));
	rw->re = re;
	rw->match = xstrdup(in->match);
	rw->rewrite = xstrdup(in->rewrite);
	out->rerw = rw;
	return 0;
}

void rerw_apply(const struct route_rerw *rw, const char *path, size_t len, struct sbuf *out)
{
	size_t plen = len;

	/* Envoy: the path without query and fragment is rewritten, the rest appended. */
	for (size_t i = 0; i < len; i++)
		if (path[i] == '?' || path[i] == '#') {
			plen = i;
			break;
		}
	re_global_replace(rw->re, path, plen, rw->rewrite, out);
	sbuf_add(out, path + plen, len - plen);
}

void rerw_free(struct route_rerw *rw)
{
	if (!rw)
		return;
	re_free(rw->re);
	free(rw->match);
	free(rw->rewrite);
	free(rw);
}
