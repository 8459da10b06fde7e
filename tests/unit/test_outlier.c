/* Outlier detection (proxy/outlier.c): Envoy's consecutive-error detectors with Istio's
 * defaults, the ejection share limit, ejection time back-off, lazy sweeps, panic; and the
 * load balancer skipping ejected endpoints (cluster_pick_ex). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/cbreak.h"
#include "proxy/cluster.h"
#include "proxy/hstats.h"
#include "proxy/outlier.h"

static struct cluster_eps *eps_of(size_t n)
{
	struct cluster_eps *e = cluster_eps_new(n);

	for (size_t i = 0; i < n; i++) {
		sock_addr_from_ip("127.0.0.1", (uint16_t)(8000 + i), &e->v[i].addr);
		snprintf(e->v[i].str, sizeof(e->v[i].str), "127.0.0.1:%zu", 8000 + i);
		e->v[i].weight = 1;
	}
	return e;
}

static struct od_config cfg(void)
{
	struct od_config c;

	memset(&c, 0, sizeof(c));
	c.on = true;
	c.consecutive_5xx = 3;
	c.interval_ms = 1000;
	c.base_ejection_ms = 1000;
	c.max_ejection_ms = 300000;
	c.max_ejection_percent = 50;
	return c;
}

static void consecutive_5xx_ejects_and_any_success_resets(void **state)
{
	struct od_config c = cfg();
	struct od_set s;
	struct cluster_eps *e = eps_of(2);
	const char *a = e->v[0].str;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(od_report(&s, &c, a, 2, OD_HTTP, 500, 10), OD_EV_NONE);
	assert_int_equal(od_report(&s, &c, a, 2, OD_HTTP, 503, 10), OD_EV_NONE);
	assert_int_equal(od_report(&s, &c, a, 2, OD_HTTP, 404, 10), OD_EV_NONE);  /* resets */
	assert_int_equal(od_report(&s, &c, a, 2, OD_HTTP, 500, 10), OD_EV_NONE);
	assert_int_equal(od_report(&s, &c, a, 2, OD_CONNECT_FAIL, 0, 10), OD_EV_NONE);
	assert_int_equal(od_report(&s, &c, a, 2, OD_HTTP, 501, 10), OD_EV_EJECTED);
	assert_true(od_host_find(&s, a)->ejected);
	assert_int_equal(s.nejected, 1);
	od_sweep(&s, &c, e, 10);
	{
		const uint8_t *x = od_excluded(&s, &c, e);

		assert_non_null(x);
		assert_int_equal(x[0], 1);
		assert_int_equal(x[1], 0);
	}
	od_set_fini(&s);
	free(e);
}

static void gateway_errors_only_count_502_503_504(void **state)
{
	struct od_config c = cfg();
	struct od_set s;
	const char *a = "10.0.0.1:80";

	(void)state;
	c.consecutive_5xx = 0;
	c.consecutive_gateway = 2;
	memset(&s, 0, sizeof(s));
	assert_int_equal(od_report(&s, &c, a, 4, OD_HTTP, 502, 1), OD_EV_NONE);
	assert_int_equal(od_report(&s, &c, a, 4, OD_HTTP, 500, 1), OD_EV_NONE);  /* resets gw */
	assert_int_equal(od_report(&s, &c, a, 4, OD_HTTP, 504, 1), OD_EV_NONE);
	/* A connect failure is a 503 when local and external errors are not split. */
	assert_int_equal(od_report(&s, &c, a, 4, OD_CONNECT_FAIL, 0, 1), OD_EV_EJECTED);
	od_set_fini(&s);
}

static void split_counts_local_failures_apart(void **state)
{
	struct od_config c = cfg();
	struct od_set s;
	const char *a = "10.0.0.1:80";

	(void)state;
	c.split = true;
	c.consecutive_local = 2;
	memset(&s, 0, sizeof(s));
	assert_int_equal(od_report(&s, &c, a, 4, OD_CONNECT_FAIL, 0, 1), OD_EV_NONE);
	assert_int_equal(od_report(&s, &c, a, 4, OD_CONNECT_OK, 0, 1), OD_EV_NONE);  /* resets */
	assert_int_equal(od_report(&s, &c, a, 4, OD_TIMEOUT, 0, 1), OD_EV_NONE);
	assert_int_equal(od_host_find(&s, a)->c5xx, 0);  /* not counted as 5xx */
	assert_int_equal(od_report(&s, &c, a, 4, OD_CONNECT_FAIL, 0, 1), OD_EV_EJECTED);
	od_set_fini(&s);
}

static void max_ejection_percent_overflows(void **state)
{
	struct od_config c = cfg();
	struct od_set s;

	(void)state;
	c.consecutive_5xx = 1;
	memset(&s, 0, sizeof(s));
	/* 2 endpoints, 50%: (0 + 1) / 2 = 50% may go; a second would make 100%. */
	assert_int_equal(od_report(&s, &c, "a:1", 2, OD_HTTP, 500, 1), OD_EV_EJECTED);
	assert_int_equal(od_report(&s, &c, "b:1", 2, OD_HTTP, 500, 1), OD_EV_OVERFLOW);
	assert_false(od_host_find(&s, "b:1")->ejected);
	/* Istio's default 10% ejects nothing among fewer than 10 endpoints. */
	od_set_fini(&s);
	c.max_ejection_percent = 10;
	assert_int_equal(od_report(&s, &c, "a:1", 9, OD_HTTP, 500, 1), OD_EV_OVERFLOW);
	assert_int_equal(od_report(&s, &c, "a:1", 10, OD_HTTP, 500, 1), OD_EV_EJECTED);
	od_set_fini(&s);
}

static void ejection_time_grows_and_comes_back_at_a_sweep(void **state)
{
	struct od_config c = cfg();
	struct od_set s;
	struct cluster_eps *e = eps_of(2);
	const char *a = e->v[0].str;

	(void)state;
	c.consecutive_5xx = 1;
	memset(&s, 0, sizeof(s));
	assert_int_equal(od_sweep(&s, &c, e, 1000), 0);           /* sweeps at 2000, 3000... */
	assert_int_equal(od_report(&s, &c, a, 2, OD_HTTP, 500, 1500), OD_EV_EJECTED);
	assert_int_equal(od_sweep(&s, &c, e, 2000), 0);           /* 500 ms served */
	assert_int_equal(od_sweep(&s, &c, e, 2999), 0);
	assert_int_equal(od_sweep(&s, &c, e, 3000), 1);           /* 1500 ms >= 1 s */
	assert_false(od_host_find(&s, a)->ejected);
	assert_null(od_excluded(&s, &c, e));
	/* Again at once: twice the base time. */
	assert_int_equal(od_report(&s, &c, a, 2, OD_HTTP, 500, 3100), OD_EV_EJECTED);
	assert_int_equal(od_host_find(&s, a)->backoff, 2);
	assert_int_equal(od_sweep(&s, &c, e, 4500), 0);
	assert_int_equal(od_sweep(&s, &c, e, 5050), 0);            /* 1900 ms < 2 s */
	assert_int_equal(od_sweep(&s, &c, e, 6000), 1);
	/* In service for a while: the multiplier runs down one per sweep. */
	od_sweep(&s, &c, e, 9000);
	assert_int_equal(od_host_find(&s, a)->backoff, 0);
	od_set_fini(&s);
	free(e);
}

static void gone_endpoints_are_forgotten(void **state)
{
	struct od_config c = cfg();
	struct od_set s;
	struct cluster_eps *e = eps_of(2), *e1 = eps_of(1);

	(void)state;
	c.consecutive_5xx = 1;
	memset(&s, 0, sizeof(s));
	od_sweep(&s, &c, e, 1);
	assert_int_equal(od_report(&s, &c, e->v[1].str, 2, OD_HTTP, 500, 1), OD_EV_EJECTED);
	assert_int_equal(od_sweep(&s, &c, e1, 2), 1);
	assert_int_equal(s.nejected, 0);
	assert_null(od_host_find(&s, e->v[1].str));
	od_set_fini(&s);
	free(e);
	free(e1);
}

static void panic_below_min_health_uses_everything(void **state)
{
	struct od_config c = cfg();
	struct od_set s;
	struct cluster_eps *e = eps_of(2);
	struct cluster cl;
	uint32_t rr = 0;

	(void)state;
	memset(&cl, 0, sizeof(cl));
	c.consecutive_5xx = 1;
	c.max_ejection_percent = 100;
	memset(&s, 0, sizeof(s));
	od_sweep(&s, &c, e, 1);
	od_report(&s, &c, e->v[0].str, 2, OD_HTTP, 500, 1);
	od_report(&s, &c, e->v[1].str, 2, OD_HTTP, 500, 1);
	/* minHealthPercent 0 (Istio's default): no panic, nothing may be picked. */
	assert_null(cluster_pick_ex(&cl, e, &rr, NULL, 7, od_excluded(&s, &c, e)));
	/* 50%: 0% in service is below it: panic, everything is used. */
	c.min_health_percent = 50;
	assert_null(od_excluded(&s, &c, e));
	od_set_fini(&s);
	free(e);
}

static void pick_skips_excluded_for_every_policy(void **state)
{
	struct cluster_eps *e = eps_of(4);
	struct cluster cl;
	uint8_t x[4] = { 1, 0, 1, 0 };
	uint32_t rr = 0, active[4] = { 0, 0, 0, 0 };
	enum cluster_lb lbs[] = { CLUSTER_LB_ROUND_ROBIN, CLUSTER_LB_RANDOM, CLUSTER_LB_LEAST_REQUEST };

	(void)state;
	memset(&cl, 0, sizeof(cl));
	for (size_t k = 0; k < 3; k++) {
		cl.lb = lbs[k];
		for (uint32_t r = 0; r < 200; r++) {
			const struct cluster_ep *ep = cluster_pick_ex(&cl, e, &rr, active, r * 2654435761u, x);

			assert_non_null(ep);
			assert_true(ep == &e->v[1] || ep == &e->v[3]);
		}
	}
	/* Round robin still alternates between what is left. */
	cl.lb = CLUSTER_LB_ROUND_ROBIN;
	rr = 0;
	assert_ptr_equal(cluster_pick_ex(&cl, e, &rr, NULL, 0, x), &e->v[1]);
	assert_ptr_equal(cluster_pick_ex(&cl, e, &rr, NULL, 0, x), &e->v[3]);
	assert_ptr_equal(cluster_pick_ex(&cl, e, &rr, NULL, 0, x), &e->v[1]);
	free(e);
}

static void cb_table_keeps_used_entries_and_drops_the_rest(void **state)
{
	struct cb_table *t = cb_table_new();
	struct cb_cluster *keep;
	char name[64];

	(void)state;
	keep = cb_get(t, "outbound|80||keep", NULL);
	assert_ptr_equal(cb_get(t, "outbound|80||keep", NULL), keep);
	cb_unref(keep);
	/* Many names come and go; the referenced one survives every collection. */
	for (int i = 0; i < 200; i++) {
		struct cb_cluster *c;

		snprintf(name, sizeof(name), "outbound|80||n%d", i);
		c = cb_get(t, name, NULL);
		assert_string_equal(c->name, name);
		cb_unref(c);
	}
	assert_true(cb_count(t) < 50);
	assert_ptr_equal(cb_get(t, "outbound|80||keep", NULL), keep);
	assert_int_equal(keep->refs, 2);
	cb_table_free(t);
}

/* The admin thread's view (hstats.h): each ejection and return is mirrored, and an entry
 * dropped while its hosts are out shows them back in service. */
static void ejections_are_mirrored_for_the_admin_thread(void **state)
{
	struct od_config c = cfg();
	struct hstats *hs = hstats_new();
	struct cb_table *t = cb_table_new();
	struct cb_cluster *cc;
	struct cluster_eps *e = eps_of(2);
	const char *a = e->v[0].str, *name = "outbound|80||m";

	(void)state;
	cb_table_publish(t, hs);
	cc = cb_get(t, name, NULL);
	assert_null(hstats_find(hs, name, a));
	od_report(&cc->od, &c, a, 2, OD_HTTP, 500, 10);
	assert_non_null(hstats_find(hs, name, a));
	assert_false(hstats_find(hs, name, a)->ejected);
	od_report(&cc->od, &c, a, 2, OD_HTTP, 500, 10);
	od_report(&cc->od, &c, a, 2, OD_HTTP, 500, 10);
	assert_true(hstats_find(hs, name, a)->ejected);
	/* Back at the first sweep (every 1 s from the first use, at 10) once the base
	 * ejection time (1 s) has passed. */
	od_sweep(&cc->od, &c, e, 1000);
	assert_true(hstats_find(hs, name, a)->ejected);
	od_sweep(&cc->od, &c, e, 1010);
	assert_false(hstats_find(hs, name, a)->ejected);
	/* Out again, then the cluster's state goes away with its entry. */
	for (int i = 0; i < 3; i++)
		od_report(&cc->od, &c, a, 2, OD_HTTP, 500, 2100);
	assert_true(hstats_find(hs, name, a)->ejected);
	cb_unref(cc);
	cb_table_free(t);
	assert_false(hstats_find(hs, name, a)->ejected);
	hstats_free(hs);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(consecutive_5xx_ejects_and_any_success_resets),
		cmocka_unit_test(gateway_errors_only_count_502_503_504),
		cmocka_unit_test(split_counts_local_failures_apart),
		cmocka_unit_test(max_ejection_percent_overflows),
		cmocka_unit_test(ejection_time_grows_and_comes_back_at_a_sweep),
		cmocka_unit_test(gone_endpoints_are_forgotten),
		cmocka_unit_test(panic_below_min_health_uses_everything),
		cmocka_unit_test(pick_skips_excluded_for_every_policy),
		cmocka_unit_test(cb_table_keeps_used_entries_and_drops_the_rest),
		cmocka_unit_test(ejections_are_mirrored_for_the_admin_thread),
	};
	return cmocka_run_group_tests_name("outlier", tests, NULL, NULL);
}
