/* Tests for proxy/sidecar: classification of first bytes, authorities, and the lookups
 * of route tables and TCP clusters in a snapshot (the SNI reader: test_sni.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>


#include "core/util.h"
#include "proxy/sidecar.h"

/* ---- classification ---- */

static void test_classify(void **state)
{
	(void)state;
	assert_int_equal(sidecar_classify("", 0), SIDECAR_NEED_MORE);
	assert_int_equal(sidecar_classify("\x16\x03\x01", 3), SIDECAR_PROTO_TLS);
	assert_int_equal(sidecar_classify("GET / HTTP/1.1\r\n", 16), SIDECAR_PROTO_HTTP);
	assert_int_equal(sidecar_classify("CONNECT a:443 HTTP/1.1", 22), SIDECAR_PROTO_HTTP);
	assert_int_equal(sidecar_classify("PROPFIND /", 10), SIDECAR_PROTO_HTTP);
	assert_int_equal(sidecar_classify("\r\nGET /", 7), SIDECAR_PROTO_HTTP);
	/* Not yet decidable. */
	assert_int_equal(sidecar_classify("GE", 2), SIDECAR_NEED_MORE);
	assert_int_equal(sidecar_classify("\r\n", 2), SIDECAR_NEED_MORE);
	/* Opaque: binary, a space first, an over-long "method", many blank lines. */
	assert_int_equal(sidecar_classify("\x00\x01\x02", 3), SIDECAR_PROTO_OPAQUE);
	assert_int_equal(sidecar_classify(" GET", 4), SIDECAR_PROTO_OPAQUE);
	assert_int_equal(sidecar_classify("SSH-2.0-OpenSSH_9.2\r\n", 21), SIDECAR_PROTO_OPAQUE);
	assert_int_equal(sidecar_classify("ABCDEFGHIJKLMNOPQRSTUVWXYZ ", 27), SIDECAR_PROTO_OPAQUE);
	assert_int_equal(sidecar_classify("\r\n\r\n\r\n\r\n\r\n", 10), SIDECAR_PROTO_OPAQUE);
	assert_int_equal(sidecar_classify("\x80\x01", 2), SIDECAR_PROTO_OPAQUE);
}

/* ---- authorities ---- */

static void auth_ok(const char *a, uint16_t dflt, const char *host, uint16_t port)
{
	char h[256];
	uint16_t p = 0;

	if (sidecar_split_authority(a, strlen(a), h, sizeof(h), &p, dflt) != 0)
		fail_msg("refused: %s", a);
	assert_string_equal(h, host);
	assert_int_equal(p, port);
}

static void auth_bad(const char *a)
{
	char h[256];
	uint16_t p;

	if (sidecar_split_authority(a, strlen(a), h, sizeof(h), &p, 80) != -1)
		fail_msg("accepted: %s", a);
}

static void test_authority(void **state)
{
	(void)state;
	auth_ok("edition.cnn.com", 80, "edition.cnn.com", 80);
	auth_ok("Edition.CNN.com:443", 80, "edition.cnn.com", 443);
	auth_ok("10.0.0.1:8080", 80, "10.0.0.1", 8080);
	auth_ok("[::1]:8443", 80, "::1", 8443);
	auth_ok("[::1]", 443, "::1", 443);
	auth_ok("host:", 80, "host", 80);
	auth_bad("");
	auth_bad(":80");
	auth_bad("host:0");
	auth_bad("host:65536");
	auth_bad("host:80x");
	auth_bad("host:123456");
	auth_bad("[::1");
	auth_bad("[::1]x");
}

/* ---- lookups ---- */

static struct cluster *mk_cluster(const char *name, const char *host, uint16_t port)
{
	struct cluster *c = xcalloc(1, sizeof(*c));

	c->name = xstrdup(name);
	c->host = xstrdup(host);
	c->subset = xstrdup("");
	c->port = port;
	return c;
}

static int cl_cmp(const void *a, const void *b)
{
	return strcmp((*(struct cluster *const *)a)->name, (*(struct cluster *const *)b)->name);
}

static void test_lookups(void **state)
{
	struct snap s;
	struct cluster *cs[3];
	struct route_table t80 = { .name = "80" }, t8080 = { .name = "8080" };
	struct route_table *tables[2] = { &t80, &t8080 };

	(void)state;
	memset(&s, 0, sizeof(s));
	cs[0] = mk_cluster("outbound|443||edition.cnn.com", "edition.cnn.com", 443);
	cs[1] = mk_cluster("outbound|443||*.wild.test", "*.wild.test", 443);
	cs[2] = mk_cluster("outbound|80|cnn|egw.test", "egw.test", 80);
	free(cs[2]->subset);
	cs[2]->subset = xstrdup("cnn");
	qsort(cs, 3, sizeof(cs[0]), cl_cmp);
	s.clusters = cs;
	s.nclusters = 3;
	s.outbound = tables;
	s.noutbound = 2;

	assert_ptr_equal(sidecar_table(&s, 80), &t80);
	assert_ptr_equal(sidecar_table(&s, 8080), &t8080);
	assert_null(sidecar_table(&s, 443));

	assert_string_equal(sidecar_tcp_cluster(&s, "edition.cnn.com", 443)->name,
	                    "outbound|443||edition.cnn.com");
	assert_string_equal(sidecar_tcp_cluster(&s, "a.wild.test", 443)->name,
	                    "outbound|443||*.wild.test");
	assert_null(sidecar_tcp_cluster(&s, "wild.test", 443));
	assert_null(sidecar_tcp_cluster(&s, "edition.cnn.com", 80));
	assert_null(sidecar_tcp_cluster(&s, "egw.test", 80));      /* subsets are not registry */
	assert_null(sidecar_tcp_cluster(&s, "", 443));
	assert_null(sidecar_tcp_cluster(&s, NULL, 443));

	assert_string_equal(sidecar_passthrough_cluster.name, "PassthroughCluster");
	assert_int_equal(sidecar_passthrough_cluster.discovery, CLUSTER_ORIGINAL_DST);
	assert_string_equal(sidecar_blackhole_cluster.name, "BlackHoleCluster");
	assert_string_equal(sidecar_allow_any_route.name, "allow_any");
	assert_string_equal(sidecar_block_all_route.name, "block_all");

	for (size_t i = 0; i < 3; i++) {
		free(cs[i]->name);
		free(cs[i]->host);
		free(cs[i]->subset);
		free(cs[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_authority),
		cmocka_unit_test(test_lookups),
	};

	return cmocka_run_group_tests_name("sidecar", tests, NULL, NULL);
}
