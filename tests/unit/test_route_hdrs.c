/* VirtualService header operations as compiled (rhdr_compile: Envoy's evaluation order
 * run over a symbolic message) and corsPolicy's origin matching (rcors_compile,
 * rcors_origin_allowed), without a proxy: the drop and emit lists a route gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/route.h"
#include "proxy/route_cors.h"
#include "proxy/route_hdrs.h"

/* A strmap from "k=v" strings (n of them). */
static struct res_strmap map(struct res_strmap_entry *e, size_t n, const char *const *kv)
{
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(kv[i], '=');

		e[i].key = strndup(kv[i], (size_t)(eq - kv[i]));
		e[i].value = strdup(eq + 1);
	}
	return (struct res_strmap){ e, n };
}

static void map_free(struct res_strmap *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].key);
		free(m->v[i].value);
	}
}

static const char *emitted(const struct rhdr_list *l, size_t i)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "%s=%s", l->emit[i].name, l->emit[i].value);
	return buf;
}

static void destination_level_first_then_route_level(void **state)
{
	struct res_strmap_entry rs[3], ra[1], ds[2], da[1];
	static const char *const rset[] = { "X-Both=route", "host=h.example", "x-pct=100%%" };
	static const char *const radd[] = { "x-multi=r1" };
	static const char *const dset[] = { "x-both=dest", "x-dest=d" };
	static const char *const dadd[] = { "x-multi=d1" };
	char *rrm[] = { "x-internal", "X-DEST" };
	struct vs_header_ops rreq = { .set = map(rs, 3, rset), .add = map(ra, 1, radd),
	                              .remove = { rrm, NULL, 2 } };
	struct vs_header_ops dreq = { .set = map(ds, 2, dset), .add = map(da, 1, dadd) };
	struct vs_headers rh = { .request = &rreq }, dh = { .request = &dreq };
	struct vs_http_route_destination dests[2] = { { .headers = &dh }, { .headers = NULL } };
	struct vs_http_route hr = { .headers = &rh, .route = { dests, 2 } };
	struct route_dest rd[2] = { { 0 } };
	struct route r = { .dests = rd, .ndests = 2 };
	const struct rhdr_list *l;

	(void)state;
	rhdr_compile(&r, &hr);
	assert_non_null(r.hdrs);
	/* Istio: the route's request set of host is its host rewrite, not a field. */
	assert_string_equal(r.rewrite_authority, "h.example");
	/* Destination 0: its level (set x-both, x-dest; add x-multi), then the route's: the
	 * removes drop x-internal and the x-dest it set; the route's set of x-both replaces
	 * the destination's; both adds stay, destination's first. */
	l = &r.hdrs->dest[0].req;
	assert_int_equal(l->nemit, 4);
	assert_string_equal(emitted(l, 0), "x-multi=d1");
	assert_string_equal(emitted(l, 1), "x-both=route");
	assert_string_equal(emitted(l, 2), "x-pct=100%");
	assert_string_equal(emitted(l, 3), "x-multi=r1");
	assert_true(rhdr_drop(l, "X-Both", 6));
	assert_true(rhdr_drop(l, "x-dest", 6));
	assert_true(rhdr_drop(l, "x-internal", 10));
	assert_false(rhdr_drop(l, "x-multi", 7));
	assert_false(rhdr_drop(l, "host", 4));
	/* Destination 1 (no operations of its own) and the route alone: the route's. */
	l = &r.hdrs->dest[1].req;
	assert_int_equal(l->nemit, 3);
	assert_string_equal(emitted(l, 0), "x-both=route");
	assert_int_equal(r.hdrs->route.req.nemit, 3);
	assert_int_equal(r.hdrs->route.resp.nemit + r.hdrs->route.resp.ndrop, 0);
	assert_null(rhdr_resp(&r.hdrs->route));
	rhdr_free(r.hdrs);
	free(r.rewrite_authority);
	map_free(&rreq.set);
	map_free(&rreq.add);
	map_free(&dreq.set);
	map_free(&dreq.add);
}

static void empty_values_do_nothing_and_no_ops_compile_to_null(void **state)
{
	struct res_strmap_entry s[1];
	static const char *const set[] = { "x-a=" };
	struct vs_header_ops resp = { .set = map(s, 1, set) };
	struct vs_headers h = { .response = &resp };
	struct vs_http_route hr = { .headers = &h };
	struct route r = { 0 };
	struct vs_http_route none = { 0 };
	struct route r2 = { 0 };

	(void)state;
	rhdr_compile(&r, &hr);
	/* Envoy (keep_empty_value false): an empty value neither adds nor overwrites. */
	assert_non_null(r.hdrs);
	assert_int_equal(r.hdrs->route.resp.nemit, 0);
	assert_int_equal(r.hdrs->route.resp.ndrop, 0);
	rhdr_free(r.hdrs);
	rhdr_compile(&r2, &none);
	assert_null(r2.hdrs);
	assert_null(rhdr_for(r2.hdrs, 0, true));
	map_free(&resp.set);
}

static void cors_origins_match_as_envoy(void **state)
{
	struct vs_string_match o[3] = { { .exact = "https://a.example" },
	                                { .prefix = "https://pre." },
	                                { .regex = "https://[a-z]+\\.re\\.example" } };
	struct vs_cors c = { .allow_origins = { o, 3 }, .max_age_ms = 86400000 };
	struct vs_http_route hr = { .cors = &c };
	struct vs_string_match star = { .exact = "*" };
	struct vs_cors c2 = { .allow_origins = { &star, 1 }, .unmatched_preflights = VS_CORS_IGNORE };
	struct vs_http_route hr2 = { .cors = &c2 };
	struct route r = { 0 }, r2 = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(rcors_compile(&r, &hr, err, sizeof(err)), 0);
	assert_true(rcors_origin_allowed(r.cors, "https://a.example", 17));
	assert_false(rcors_origin_allowed(r.cors, "https://a.example.evil", 22));
	assert_true(rcors_origin_allowed(r.cors, "https://pre.x", 13));
	assert_true(rcors_origin_allowed(r.cors, "https://abc.re.example", 22));
	assert_false(rcors_origin_allowed(r.cors, "https://abc.re.exampleX", 23));   /* full match */
	assert_false(rcors_origin_allowed(r.cors, "https://abcXre.example", 22));
	assert_string_equal(r.cors->max_age, "86400");
	assert_true(r.cors->forward_unmatched);
	assert_int_equal(rcors_compile(&r2, &hr2, err, sizeof(err)), 0);
	/* Envoy's isOriginAllowed: a matcher that matches "*" allows every origin. */
	assert_true(rcors_origin_allowed(r2.cors, "https://anything", 16));
	assert_false(r2.cors->forward_unmatched);
	route_cors_free(r.cors);
	route_cors_free(r2.cors);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(destination_level_first_then_route_level),
		cmocka_unit_test(empty_values_do_nothing_and_no_ops_compile_to_null),
		cmocka_unit_test(cors_origins_match_as_envoy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
