/* The router's pure parts: rewrite.uri as Envoy's prefix_rewrite (route_rewrite_path, with
 * the match route_select_hit reports), and the load balancer following endpoint weights
 * (cluster_eps_weigh, cluster_pick). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/sbuf.h"
#include "proxy/cluster.h"
#include "proxy/route.h"

static void expect_rewrite(const char *rewrite, const struct route_match *hit, const char *path,
                           const char *want)
{
	struct sbuf out = SBUF_INIT;

	route_rewrite_path(rewrite, hit, path, strlen(path), &out);
	assert_string_equal(sbuf_str(&out), want);
	sbuf_free(&out);
}

static void uri_rewrite_replaces_what_the_match_hit(void **state)
{
	struct route_match prefix = { .uri = { .kind = SM_PREFIX, .s = "/old/", .len = 5 } };
	struct route_match exact = { .uri = { .kind = SM_EXACT, .s = "/exact", .len = 6 } };
	struct route_match regex = { .uri = { .kind = SM_REGEX, .s = "/re/[0-9]+", .len = 10 } };

	(void)state;
	expect_rewrite("/new/", &prefix, "/old/a/b?x=1", "/new/a/b?x=1");
	expect_rewrite("/", &prefix, "/old/a", "/a");
	expect_rewrite("/whole", &exact, "/exact?q=2", "/whole?q=2");
	expect_rewrite("/n", &regex, "/re/42", "/n");
	expect_rewrite("/n", &regex, "/re/42?a=b", "/n?a=b");
	/* No uri match: Istio's prefix "/", so only the leading slash goes (Envoy's gotcha). */
	expect_rewrite("/v1/", NULL, "/a", "/v1/a");
	expect_rewrite("/v1", NULL, "/a", "/v1a");
	expect_rewrite("/v1/", NULL, "/", "/v1/");
	/* An absolute-form target without a path ("http://h?q"): the path is "/". */
	expect_rewrite("/v1/", NULL, "?q=1", "/v1/?q=1");
	expect_rewrite("/v1/", NULL, "", "/v1/");
}

static void route_select_hit_names_the_match(void **state)
{
	struct route_match m[2] = {
		{ .uri = { .kind = SM_PREFIX, .s = "/a", .len = 2 } },
		{ .uri = { .kind = SM_PREFIX, .s = "/b", .len = 2 } },
	};
	struct route r = { .matches = m, .nmatches = 2 };
	struct route_vhost vh = { .routes = &r, .nroutes = 1 };
	struct route_req rq = { .method = "GET", .method_len = 3, .path = "/b/c", .path_len = 4 };
	const struct route_match *hit = NULL;

	(void)state;
	assert_ptr_equal(route_select_hit(&vh, &rq, &hit), &r);
	assert_ptr_equal(hit, &m[1]);
	rq.path = "/c";
	rq.path_len = 2;
	assert_null(route_select_hit(&vh, &rq, &hit));
	assert_null(hit);
}

static struct cluster_eps *weighted(const uint32_t *w, size_t n)
{
	struct cluster_eps *e = cluster_eps_new(n);

	for (size_t i = 0; i < n; i++) {
		sock_addr_from_ip("127.0.0.1", (uint16_t)(8000 + i), &e->v[i].addr);
		e->v[i].weight = w[i];
	}
	cluster_eps_weigh(e);
	return e;
}

static void picks_follow_endpoint_weights(void **state)
{
	static const uint32_t w31[] = { 3, 1 }, same[] = { 5, 5 };
	struct cluster c = { .lb = CLUSTER_LB_ROUND_ROBIN };
	struct cluster_eps *e = weighted(w31, 2), *u = weighted(same, 2);
	size_t got[2] = { 0, 0 };
	uint32_t rr = 0;

	(void)state;
	assert_int_equal(e->total_weight, 4);
	assert_int_equal(u->total_weight, 0);      /* equal weights: the plain policies */
	for (int i = 0; i < 400; i++)
		got[cluster_pick(&c, e, &rr, NULL, (uint32_t)i * 2654435761u) - e->v]++;
	assert_int_equal(got[0], 300);
	assert_int_equal(got[1], 100);
	c.lb = CLUSTER_LB_RANDOM;
	got[0] = got[1] = 0;
	for (uint32_t i = 0; i < 4000; i++)
		got[cluster_pick(&c, e, &rr, NULL, i) - e->v]++;   /* i % 4: an exact share */
	assert_int_equal(got[0], 3000);
	free(e);
	free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(uri_rewrite_replaces_what_the_match_hit),
		cmocka_unit_test(route_select_hit_names_the_match),
		cmocka_unit_test(picks_follow_endpoint_weights),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
