/* Tests for proxy/mirror: a route's mirror policies as Istio programs them
 * (request_mirror_policies): an absent percentage is 100%, an explicit 0 (either form) is
 * no policy, mirrorPercentage wins over the deprecated mirrorPercent, mirrors[] each with
 * its own percentage, clamped to [0, 100]; the destination resolved by the caller. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config/resource.h"
#include "core/util.h"
#include "proxy/mirror.h"
#include "proxy/route_fault.h"

static void dest(void *ctx, const struct vs_destination *d, struct route_mirror_policy *p)
{
	int *calls = ctx;

	(*calls)++;
	p->host = xstrdup(d->host);
	p->port = d->port ? (uint16_t)d->port : 80;
	p->cluster_name = xasprintf("outbound|%u||%s", p->port, d->host);
}

static void test_mirror_percentages(void **state)
{
	struct vs_destination a = { .host = "a.test" };
	struct res_percent zero = { .value = 0 }, half = { .value = 50 }, over = { .value = 150 };
	struct vs_http_route hr;
	struct route_mirror *m;
	int calls = 0;

	(void)state;
	memset(&hr, 0, sizeof(hr));
	assert_null(route_mirror_compile(&hr, dest, &calls));      /* no mirror */
	hr.mirror = &a;
	m = route_mirror_compile(&hr, dest, &calls);               /* absent: 100% */
	assert_non_null(m);
	assert_int_equal(m->n, 1);
	assert_int_equal(m->p[0].ppm, ROUTE_FAULT_PPM);
	assert_string_equal(m->p[0].cluster_name, "outbound|80||a.test");
	route_mirror_free(m);
	hr.mirror_percentage = &zero;                              /* 0: no policy */
	assert_null(route_mirror_compile(&hr, dest, &calls));
	hr.mirror_percentage = &half;
	hr.mirror_percent = (struct res_u32opt){ .set = true, .value = 0 };   /* ignored */
	m = route_mirror_compile(&hr, dest, &calls);
	assert_int_equal(m->p[0].ppm, 500000);
	route_mirror_free(m);
	hr.mirror_percentage = NULL;                               /* the deprecated form */
	assert_null(route_mirror_compile(&hr, dest, &calls));
	hr.mirror_percent.value = 7;
	m = route_mirror_compile(&hr, dest, &calls);
	assert_int_equal(m->p[0].ppm, 70000);
	route_mirror_free(m);
	hr.mirror_percentage = &over;                              /* clamped */
	m = route_mirror_compile(&hr, dest, &calls);
	assert_int_equal(m->p[0].ppm, ROUTE_FAULT_PPM);
	route_mirror_free(m);
}

static void test_mirrors_list(void **state)
{
	struct vs_destination a = { .host = "a.test" }, b = { .host = "b.test", .port = 8080 };
	struct res_percent zero = { .value = 0 }, tenth = { .value = 0.1 };
	struct vs_mirror_policy v[3] = {
		{ .destination = &a },                             /* 100% */
		{ .destination = &b, .percentage = &tenth },
		{ .destination = &a, .percentage = &zero },        /* none */
	};
	struct vs_http_route hr;
	struct route_mirror *m;
	int calls = 0;

	(void)state;
	memset(&hr, 0, sizeof(hr));
	hr.mirrors.v = v;
	hr.mirrors.n = 3;
	m = route_mirror_compile(&hr, dest, &calls);
	assert_non_null(m);
	assert_int_equal(m->n, 2);
	assert_int_equal(calls, 2);        /* a 0% mirror is not even resolved */
	assert_int_equal(m->p[0].ppm, ROUTE_FAULT_PPM);
	assert_string_equal(m->p[1].cluster_name, "outbound|8080||b.test");
	assert_int_equal(m->p[1].ppm, 1000);
	assert_string_equal(m->p[1].host, "b.test");
	route_mirror_free(m);
	v[0].percentage = v[1].percentage = &zero;
	assert_null(route_mirror_compile(&hr, dest, &calls));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mirror_percentages),
		cmocka_unit_test(test_mirrors_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
