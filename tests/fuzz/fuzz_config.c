/* libFuzzer harness: YAML text -> ydoc tree -> typed resources. Checks that parsing and
 * strict decoding never crash or leak on any input, that document ranges stay inside the
 * text, that the Gateway API kinds translate (gwapi_translate) without fault, and that
 * what parses re-emits (YAML and JSON) into text that parses again to an
 * equal tree. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/res_gwapi.h"
#include "config/resource.h"
#include "config/ydoc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Equal text is not enough: "80" must not come back as 80, nor true as "true". */
static bool same_kinds(const struct ynode *a, const struct ynode *b)
{
	if (!a || !b || a->type != b->type || a->n != b->n)
		return a == b;
	if (a->type == YNODE_SCALAR)
		return ynode_scalar_kind(a) == ynode_scalar_kind(b);
	for (size_t i = 0; i < a->n; i++) {
		if (a->type == YNODE_SEQ && !same_kinds(a->items[i], b->items[i]))
			return false;
		if (a->type == YNODE_MAP && !same_kinds(a->pairs[i].value, b->pairs[i].value))
			return false;
	}
	return true;
}

static void check_round_trip(const struct ynode *root)
{
	struct sbuf out = SBUF_INIT;
	struct ystream s2;
	struct diags d = DIAGS_INIT;

	ydoc_emit(root, &out);
	if (ydoc_parse("emitted", out.s ? out.s : "", out.len, &s2, &d) != 0 || s2.ndocs != 1 ||
	    !ynode_equal(root, s2.docs[0].root) || !same_kinds(root, s2.docs[0].root))
		abort();
	ystream_free(&s2);
	sbuf_reset(&out);
	ydoc_emit_json(root, &out);
	sbuf_free(&out);
	diags_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ystream s;
	struct diags d = DIAGS_INIT;
	struct resource res[8];
	struct resource *all[8];
	size_t n = 0;

	if (size > 256 * 1024)
		return 0;
	if (ydoc_parse("fuzz.yaml", (const char *)data, size, &s, &d) != 0) {
		diags_free(&d);
		return 0;
	}
	for (size_t i = 0; i < s.ndocs; i++) {
		if (s.docs[i].start > s.docs[i].end || s.docs[i].end > s.srclen)
			abort();
		if (s.docs[i].root)
			check_round_trip(s.docs[i].root);
		if (n < 8 && res_decode(&s, &s.docs[i], "default", &res[n], &d) == 0) {
			all[n] = &res[n];
			n++;
		}
	}
	res_check_refs(all, n, &d);
	{
		/* The Gateway API objects among them, translated as the proxies do. */
		struct gwapi_xlate x;

		gwapi_translate((const struct resource *const *)all, n, &x, &d);
		gwapi_xlate_free(&x);
	}
	for (size_t i = 0; i < n; i++)
		res_free(&res[i]);
	ystream_free(&s);
	diags_free(&d);
	return 0;
}
