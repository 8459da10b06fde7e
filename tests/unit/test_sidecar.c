/* Tests for proxy/sidecar: classification of first bytes, the SNI of real ClientHellos
 * (made by OpenSSL in memory, whole, cut short, split across records), authorities, and
 * the lookups of route tables and TCP clusters in a snapshot. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

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

/* ---- ClientHello ---- */

/* A ClientHello as OpenSSL sends it (sni may be NULL). Returns its length in out. */
static size_t make_hello(const char *sni, int max_version, unsigned char *out, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	BIO *rb, *wb;
	int n;

	assert_non_null(ctx);
	SSL_CTX_set_max_proto_version(ctx, max_version);
	ssl = SSL_new(ctx);
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, rb, wb);
	if (sni)
		SSL_set_tlsext_host_name(ssl, sni);
	SSL_set_connect_state(ssl);
	assert_int_equal(SSL_do_handshake(ssl), -1);    /* wants to read the ServerHello */
	n = BIO_read(wb, out, (int)cap);
	assert_true(n > 50);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return (size_t)n;
}

static void test_sni_of_real_hellos(void **state)
{
	unsigned char h[8192];
	char sni[256];
	size_t n;

	(void)state;
	n = make_hello("edition.cnn.com", TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sidecar_sniff_sni(h, n, sni, sizeof(sni)), 0);
	assert_string_equal(sni, "edition.cnn.com");
	/* Every shorter prefix asks for more, never a wrong answer. */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(sidecar_sniff_sni(h, k, sni, sizeof(sni)), 1);
	/* Bytes after the hello (none are sent, but a pipelining client could) are ignored. */
	memset(h + n, 'x', 10);
	assert_int_equal(sidecar_sniff_sni(h, n + 10, sni, sizeof(sni)), 0);
	assert_string_equal(sni, "edition.cnn.com");

	n = make_hello("My-Nginx.Mesh-External.svc.cluster.local", TLS1_2_VERSION, h, sizeof(h));
	assert_int_equal(sidecar_sniff_sni(h, n, sni, sizeof(sni)), 0);
	assert_string_equal(sni, "my-nginx.mesh-external.svc.cluster.local");

	n = make_hello(NULL, TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sidecar_sniff_sni(h, n, sni, sizeof(sni)), 0);
	assert_string_equal(sni, "");
}

/* The same hello re-framed into two handshake records, split at byte cut of the
 * handshake message. */
static size_t split_records(const unsigned char *h, size_t n, size_t cut, unsigned char *out)
{
	size_t body = n - 5, a = cut, b = body - cut;

	memcpy(out, h, 3);
	out[3] = (unsigned char)(a >> 8);
	out[4] = (unsigned char)a;
	memcpy(out + 5, h + 5, a);
	memcpy(out + 5 + a, h, 3);
	out[5 + a + 3] = (unsigned char)(b >> 8);
	out[5 + a + 4] = (unsigned char)b;
	memcpy(out + 5 + a + 5, h + 5 + a, b);
	return n + 5;
}

static void test_sni_across_records(void **state)
{
	unsigned char h[8192], two[8200];
	char sni[256];
	size_t n = make_hello("split.example", TLS1_3_VERSION, h, sizeof(h)), m;

	(void)state;
	for (size_t cut = 1; cut < n - 5; cut += 37) {
		m = split_records(h, n, cut, two);
		assert_int_equal(sidecar_sniff_sni(two, m, sni, sizeof(sni)), 0);
		assert_string_equal(sni, "split.example");
		assert_int_equal(sidecar_sniff_sni(two, m - 1, sni, sizeof(sni)), 1);
	}
}

static void test_sni_refuses_what_is_not_a_hello(void **state)
{
	unsigned char h[8192];
	char sni[256];
	size_t n = make_hello("a.example", TLS1_3_VERSION, h, sizeof(h));
	unsigned char bad[8192];

	(void)state;
	/* Not a handshake record, or a bad version, or an empty record. */
	assert_int_equal(sidecar_sniff_sni((const unsigned char *)"GET / HTTP/1.1\r\n", 16, sni,
	                                   sizeof(sni)), -1);
	memcpy(bad, h, n);
	bad[1] = 2;
	assert_int_equal(sidecar_sniff_sni(bad, n, sni, sizeof(sni)), -1);
	assert_int_equal(sidecar_sniff_sni((const unsigned char *)"\x16\x03\x01\x00\x00", 5, sni,
	                                   sizeof(sni)), -1);
	/* A handshake that is not a ClientHello (ServerHello = 2). */
	memcpy(bad, h, n);
	bad[5] = 2;
	assert_int_equal(sidecar_sniff_sni(bad, n, sni, sizeof(sni)), -1);
	/* An extension length running past the extensions. */
	memcpy(bad, h, n);
	bad[n - 3] = 0xff;
	bad[n - 4] = 0xff;
	assert_true(sidecar_sniff_sni(bad, n, sni, sizeof(sni)) <= 0);
	/* A name with bytes a host name cannot have is no name. */
	n = make_hello("bad name.example", TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sidecar_sniff_sni(h, n, sni, sizeof(sni)), 0);
	assert_string_equal(sni, "");
	/* Too large to wait for. */
	memset(bad, 0, sizeof(bad));
	memcpy(bad, "\x16\x03\x01\x40\x00\x01\xff\xff\xff", 9);
	assert_int_equal(sidecar_sniff_sni(bad, 9, sni, sizeof(sni)), -1);
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
		cmocka_unit_test(test_sni_of_real_hellos),
		cmocka_unit_test(test_sni_across_records),
		cmocka_unit_test(test_sni_refuses_what_is_not_a_hello),
		cmocka_unit_test(test_authority),
		cmocka_unit_test(test_lookups),
	};

	return cmocka_run_group_tests_name("sidecar", tests, NULL, NULL);
}
