/* Access log formatting: Istio's default TEXT line, field for field, and JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/alog.h"

#define S(x) ((struct alog_str){ (x), sizeof(x) - 1 })

static void fill_walkthrough_line(struct alog_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->start_ms = 1593533876763LL; /* 2020-06-30T16:17:56.763Z */
	e->method = S("GET");
	e->path = S("/politics");
	e->protocol = S("HTTP/2");
	e->response_code = 200;
	e->details = S("via_upstream");
	e->bytes_received = 0;
	e->bytes_sent = 1295938;
	e->duration_ms = 529;
	e->upstream_service_time = 89;
	e->xff = S("10.244.0.171");
	e->user_agent = S("curl/7.64.0");
	e->request_id = S("cf76518d-3209-9ab7-a1d0-e6002728ef5b");
	e->authority = S("edition.cnn.com");
	e->upstream_host = S("151.101.129.67:443");
	e->upstream_cluster = S("outbound|443||edition.cnn.com");
	e->upstream_local = S("10.244.0.170:54280");
	e->downstream_local = S("10.244.0.170:8080");
	e->downstream_remote = S("10.244.0.171:35628");
}

static void text_matches_walkthrough_sample(void **state)
{
	struct alog_entry e;
	struct sbuf out = SBUF_INIT;

	(void)state;
	fill_walkthrough_line(&e);
	alog_format(ALOG_TEXT, &e, &out);
	assert_string_equal(out.s,
		"[2020-06-30T16:17:56.763Z] \"GET /politics HTTP/2\" 200 - via_upstream - \"-\" "
		"0 1295938 529 89 \"10.244.0.171\" \"curl/7.64.0\" "
		"\"cf76518d-3209-9ab7-a1d0-e6002728ef5b\" \"edition.cnn.com\" "
		"\"151.101.129.67:443\" outbound|443||edition.cnn.com 10.244.0.170:54280 "
		"10.244.0.170:8080 10.244.0.171:35628 - -\n");
	sbuf_free(&out);
}

static void failure_prints_flags_reason_and_dashes(void **state)
{
	struct alog_entry e;
	struct sbuf out = SBUF_INIT;

	(void)state;
	memset(&e, 0, sizeof(e));
	e.start_ms = 0;
	e.method = S("GET");
	e.path = S("/");
	e.protocol = S("HTTP/1.1");
	e.response_code = 503;
	e.flags = ALOG_F_UF | ALOG_F_URX;
	e.details = S("upstream_reset_before_response_started{connection_failure}");
	e.tls_failure = S("TLS_error:|certificate verify failed");
	e.upstream_service_time = -1;
	alog_format(ALOG_TEXT, &e, &out);
	assert_string_equal(out.s,
		"[1970-01-01T00:00:00.000Z] \"GET / HTTP/1.1\" 503 UF,URX "
		"upstream_reset_before_response_started{connection_failure} - "
		"\"TLS_error:|certificate verify failed\" 0 0 0 - \"-\" \"-\" \"-\" \"-\" \"-\" "
		"- - - - - -\n");
	sbuf_free(&out);
}

static void text_escapes_quotes_and_controls_from_the_network(void **state)
{
	struct alog_entry e;
	struct sbuf out = SBUF_INIT;

	(void)state;
	memset(&e, 0, sizeof(e));
	e.upstream_service_time = -1;
	e.user_agent = S("evil\" 200 \"x\n");
	alog_format(ALOG_TEXT, &e, &out);
	assert_non_null(strstr(out.s, "\"evil\\\" 200 \\\"x\\x0a\""));
	/* exactly one newline: the terminator */
	assert_ptr_equal(strchr(out.s, '\n'), out.s + out.len - 1);
	sbuf_free(&out);
}

static void json_uses_snake_case_keys(void **state)
{
	struct alog_entry e;
	struct sbuf out = SBUF_INIT;

	(void)state;
	fill_walkthrough_line(&e);
	alog_format(ALOG_JSON, &e, &out);
	assert_non_null(strstr(out.s, "\"start_time\":\"2020-06-30T16:17:56.763Z\""));
	assert_non_null(strstr(out.s, "\"response_code\":200"));
	assert_non_null(strstr(out.s, "\"response_flags\":\"-\""));
	assert_non_null(strstr(out.s, "\"upstream_cluster\":\"outbound|443||edition.cnn.com\""));
	assert_non_null(strstr(out.s, "\"upstream_service_time\":\"89\""));
	assert_non_null(strstr(out.s, "\"route_name\":null"));
	assert_int_equal(out.s[out.len - 1], '\n');
	sbuf_free(&out);
}

static void flags_print_in_envoy_order(void **state)
{
	struct sbuf out = SBUF_INIT;

	(void)state;
	alog_flags_str(ALOG_F_DF | ALOG_F_NR, &out);
	assert_string_equal(out.s, "NR,DF");
	sbuf_reset(&out);
	alog_flags_str(0, &out);
	assert_string_equal(out.s, "-");
	sbuf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(text_matches_walkthrough_sample),
		cmocka_unit_test(failure_prints_flags_reason_and_dashes),
		cmocka_unit_test(text_escapes_quotes_and_controls_from_the_network),
		cmocka_unit_test(json_uses_snake_case_keys),
		cmocka_unit_test(flags_print_in_envoy_order),
	};
	return cmocka_run_group_tests_name("alog", tests, NULL, NULL);
}
