/* The heap budget's pure parts (proxy/overload.c): flag values, and which of Envoy's
 * actions a heap size sets; the HTTP/2 stream budget's admission rule. The sampling and the refusals are tested against a running
 * gateway (tests/integration/test_overload.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/alog.h"
#include "proxy/overload.h"
#include "net/loop.h"

static void test_bytes(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(ovl_parse_bytes("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(ovl_parse_bytes("1048576", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(ovl_parse_bytes("512Mi", &v), 0);
	assert_int_equal(v, 512ull << 20);
	assert_int_equal(ovl_parse_bytes("2Gi", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(ovl_parse_bytes("100Ki", &v), 0);
	assert_int_equal(v, 102400);
	assert_int_equal(ovl_parse_bytes("1G", &v), 0);
	assert_int_equal(v, 1000000000);
	assert_int_equal(ovl_parse_bytes("5M", &v), 0);
	assert_int_equal(v, 5000000);
	v = 7;
	assert_int_equal(ovl_parse_bytes("", &v), -1);
	assert_int_equal(ovl_parse_bytes("-1", &v), -1);
	assert_int_equal(ovl_parse_bytes("1Ti", &v), -1);
	assert_int_equal(ovl_parse_bytes("12 Mi", &v), -1);
	assert_int_equal(ovl_parse_bytes("Mi", &v), -1);
	assert_int_equal(ovl_parse_bytes("99999999999999999999Gi", &v), -1);
	assert_int_equal(ovl_parse_bytes("18446744073709551615Gi", &v), -1);
	assert_int_equal(v, 7);
}

static void test_ratio(void **state)
{
	double r = 0;

	(void)state;
	assert_int_equal(ovl_parse_ratio("0.95", &r), 0);
	assert_true(r > 0.9499 && r < 0.9501);
	assert_int_equal(ovl_parse_ratio("1", &r), 0);
	assert_int_equal(ovl_parse_ratio("0", &r), -1);
	assert_int_equal(ovl_parse_ratio("1.01", &r), -1);
	assert_int_equal(ovl_parse_ratio("nan", &r), -1);
	assert_int_equal(ovl_parse_ratio("0.5x", &r), -1);
	assert_int_equal(ovl_parse_ratio("", &r), -1);
}

static void test_actions(void **state)
{
	struct ovl_config c;

	(void)state;
	ovl_config_default(&c);
	assert_int_equal(c.refresh_ms, 250);
	/* No budget: never an action, whatever the heap. */
	assert_int_equal(ovl_actions_for(&c, UINT64_MAX), 0);
	c.max_heap = 1000;
	assert_int_equal(ovl_actions_for(&c, 0), 0);
	assert_int_equal(ovl_actions_for(&c, 899), 0);
	assert_int_equal(ovl_actions_for(&c, 900), OVL_SHRINK_HEAP);
	assert_int_equal(ovl_actions_for(&c, 950), OVL_SHRINK_HEAP | OVL_STOP_REQUESTS);
	assert_int_equal(ovl_actions_for(&c, 980),
	                 OVL_SHRINK_HEAP | OVL_STOP_REQUESTS | OVL_REJECT_CONNECTIONS);
	assert_int_equal(ovl_actions_for(&c, 5000),
	                 OVL_SHRINK_HEAP | OVL_STOP_REQUESTS | OVL_REJECT_CONNECTIONS);
	/* Thresholds are independent: refusing connections before requests is allowed. */
	c.reject_connections = 0.5;
	assert_int_equal(ovl_actions_for(&c, 600), OVL_REJECT_CONNECTIONS);
}

static void test_options(void **state)
{
	struct ovl_config c;
	struct sbuf err = SBUF_INIT;

	(void)state;
	ovl_config_default(&c);
	assert_int_equal(ovl_option(&c, OVL_OPT_MAX_HEAP, "64Mi", &err), 0);
	assert_int_equal(c.max_heap, 64ull << 20);
	assert_int_equal(ovl_option(&c, OVL_OPT_STOP_REQUESTS, "0.8", &err), 0);
	assert_true(c.stop_requests > 0.79 && c.stop_requests < 0.81);
	assert_int_equal(ovl_option(&c, OVL_OPT_REFRESH, "50ms", &err), 0);
	assert_int_equal(c.refresh_ms, 50);
	assert_int_equal(ovl_option(&c, OVL_OPT_REFRESH, "2s", &err), 0);
	assert_int_equal(c.refresh_ms, 2000);
	assert_int_equal(ovl_option(&c, OVL_OPT_REFRESH, "5ms", &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "--overload-refresh-interval"));
	sbuf_reset(&err);
	assert_int_equal(ovl_option(&c, OVL_OPT_REJECT_CONNECTIONS, "2", &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "--overload-reject-connections"));
	sbuf_free(&err);
	assert_int_equal(c.refresh_ms, 2000);
}

static void test_h2_options(void **state)
{
	struct ovl_config c;
	struct sbuf err = SBUF_INIT;

	(void)state;
	ovl_config_default(&c);
	assert_true(c.max_h2_streams == UINT64_MAX);          /* "not given" */
	assert_int_equal(c.max_h2_buffer, 256ull << 20);
	assert_int_equal(ovl_option(&c, OVL_OPT_MAX_H2_STREAMS, "300", &err), 0);
	assert_int_equal(c.max_h2_streams, 300);
	assert_int_equal(ovl_option(&c, OVL_OPT_MAX_H2_BUFFER, "1Mi", &err), 0);
	assert_int_equal(c.max_h2_buffer, 1 << 20);
	assert_int_equal(ovl_option(&c, OVL_OPT_MAX_H2_STREAMS, "-1", &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "--max-h2-streams"));
	sbuf_reset(&err);
	assert_int_equal(ovl_option(&c, OVL_OPT_MAX_H2_BUFFER, "lots", &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "--max-h2-buffer"));
	sbuf_free(&err);
}

/* The stream budget: the smaller of the count and buffer / 128 KiB; from half of it, a
 * connection with OVL_H2_FAIR_STREAMS streams gets no more; a closed stream gives its
 * place back. */
static void test_h2_admission(void **state)
{
	struct loop *loop = loop_new();
	struct ovl_config c;
	unsigned admitted = 0;

	(void)state;
	ovl_config_default(&c);
	c.max_h2_streams = 1000;
	c.max_h2_buffer = 40 * OVL_H2_STREAM_RESERVE;       /* 40 streams' reserve */
	ovl_start(loop, &c, NULL, NULL);
	/* One connection: admitted up to half (20), then it holds 20 >= 10: refused. */
	for (unsigned i = 0; i < 30; i++)
		if (!ovl_h2_stream_refused(admitted))
			admitted++;
	assert_int_equal(admitted, 20);
	/* Other connections with fewer than 10 streams still get in, up to the budget. */
	for (unsigned conn = 0; conn < 5; conn++)
		for (unsigned k = 0; k < 9; k++)
			if (!ovl_h2_stream_refused(k))
				admitted++;
	assert_int_equal(admitted, 40);
	assert_true(ovl_h2_stream_refused(0));                /* the budget: even a new client */
	ovl_h2_stream_closed();
	assert_false(ovl_h2_stream_refused(0));
	while (admitted--)
		ovl_h2_stream_closed();
	ovl_stop(loop);
	loop_free(loop);
	/* No limits: everything admitted. */
	ovl_config_default(&c);
	c.max_h2_streams = 0;
	c.max_h2_buffer = 0;
	loop = loop_new();
	ovl_start(loop, &c, NULL, NULL);
	for (unsigned i = 0; i < 5000; i++)
		assert_false(ovl_h2_stream_refused(i));
	for (unsigned i = 0; i < 5000; i++)
		ovl_h2_stream_closed();
	ovl_stop(loop);
	loop_free(loop);
}

/* Without a budget nothing is refused (the workers' hooks). */
static void test_no_budget_refuses_nothing(void **state)
{
	(void)state;
	assert_false(ovl_refuse_request());
	assert_false(ovl_reject_connection(-1));
}

static void test_om_flag(void **state)
{
	struct sbuf s = SBUF_INIT;

	(void)state;
	alog_flags_str(ALOG_F_OM, &s);
	assert_string_equal(sbuf_str(&s), "OM");
	sbuf_reset(&s);
	alog_flags_str(ALOG_F_DF | ALOG_F_OM, &s);
	assert_string_equal(sbuf_str(&s), "DF,OM");
	sbuf_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_ratio),
		cmocka_unit_test(test_actions),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_h2_options),
		cmocka_unit_test(test_h2_admission),
		cmocka_unit_test(test_no_budget_refuses_nothing),
		cmocka_unit_test(test_om_flag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
