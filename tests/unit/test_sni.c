/* Tests for net/sni: the server name of real ClientHellos (made by OpenSSL in memory):
 * whole, cut at every byte, split across records (two, and one byte per record), with
 * bytes after them; and what is not one: other protocols, other handshakes, lengths
 * that do not add up, names that are not host names, hellos too long to wait for. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "net/sni.h"

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

static void test_real_hellos(void **state)
{
	unsigned char h[8192];
	char sni[256];
	size_t n;

	(void)state;
	n = make_hello("edition.cnn.com", TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sni_read(h, n, sni, sizeof(sni)), SNI_OK);
	assert_string_equal(sni, "edition.cnn.com");
	/* Every shorter prefix asks for more, never a wrong answer. */
	for (size_t k = 0; k < n; k++) {
		assert_int_equal(sni_read(h, k, sni, sizeof(sni)), SNI_NEED_MORE);
		assert_string_equal(sni, "");
	}
	/* Bytes after the hello (a client sending early data) are not looked at. */
	memset(h + n, 'x', 10);
	assert_int_equal(sni_read(h, n + 10, sni, sizeof(sni)), SNI_OK);
	assert_string_equal(sni, "edition.cnn.com");

	n = make_hello("My-Nginx.Mesh-External.svc.cluster.local.", TLS1_2_VERSION, h, sizeof(h));
	assert_int_equal(sni_read(h, n, sni, sizeof(sni)), SNI_OK);
	assert_string_equal(sni, "my-nginx.mesh-external.svc.cluster.local");

	n = make_hello(NULL, TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sni_read(h, n, sni, sizeof(sni)), SNI_NO_NAME);
	assert_string_equal(sni, "");
}

static void test_across_records(void **state)
{
	unsigned char h[8192], two[8200];
	char sni[256];
	size_t n = make_hello("split.example", TLS1_3_VERSION, h, sizeof(h)), m;

	(void)state;
	for (size_t cut = 1; cut < n - 5; cut += 37) {
		m = split_records(h, n, cut, two);
		assert_int_equal(sni_read(two, m, sni, sizeof(sni)), SNI_OK);
		assert_string_equal(sni, "split.example");
		assert_int_equal(sni_read(two, m - 1, sni, sizeof(sni)), SNI_NEED_MORE);
	}
}

/* One handshake byte per record: the worst a peer may legally do (RFC 8446 5.1). */
static void test_one_byte_records(void **state)
{
	unsigned char h[8192];
	unsigned char *many;
	char sni[256];
	size_t n = make_hello("tiny.records.example", TLS1_3_VERSION, h, sizeof(h)), m = 0;

	(void)state;
	many = malloc((n - 5) * 6);
	assert_non_null(many);
	for (size_t i = 5; i < n; i++) {
		memcpy(many + m, h, 3);
		many[m + 3] = 0;
		many[m + 4] = 1;
		many[m + 5] = h[i];
		m += 6;
	}
	/* 6 * (hello length) is over the limit only for hellos over SNI_HELLO_MAX / 6. */
	if (m <= SNI_HELLO_MAX) {
		assert_int_equal(sni_read(many, m, sni, sizeof(sni)), SNI_OK);
		assert_string_equal(sni, "tiny.records.example");
	} else {
		assert_int_equal(sni_read(many, m, sni, sizeof(sni)), SNI_TOO_LONG);
	}
	for (size_t k = 0; k < m && k < SNI_HELLO_MAX; k += 5)
		assert_int_equal(sni_read(many, k, sni, sizeof(sni)), SNI_NEED_MORE);
	free(many);
}

static void test_not_a_hello(void **state)
{
	unsigned char h[8192], bad[8192];
	char sni[256];
	size_t n = make_hello("a.example", TLS1_3_VERSION, h, sizeof(h));

	(void)state;
	/* Other protocols are told at the first byte that cannot be TLS. */
	assert_int_equal(sni_read((const unsigned char *)"G", 1, sni, sizeof(sni)), SNI_NOT_TLS);
	assert_int_equal(sni_read((const unsigned char *)"GET / HTTP/1.1\r\n", 16, sni,
	                          sizeof(sni)), SNI_NOT_TLS);
	assert_int_equal(sni_read((const unsigned char *)"\x16\x02", 2, sni, sizeof(sni)),
	                 SNI_NOT_TLS);
	assert_int_equal(sni_read((const unsigned char *)"", 0, sni, sizeof(sni)), SNI_NEED_MORE);
	/* A bad record version, an empty record. */
	memcpy(bad, h, n);
	bad[1] = 2;
	assert_int_equal(sni_read(bad, n, sni, sizeof(sni)), SNI_NOT_TLS);
	assert_int_equal(sni_read((const unsigned char *)"\x16\x03\x01\x00\x00", 5, sni,
	                          sizeof(sni)), SNI_MALFORMED);
	/* A handshake that is not a ClientHello (ServerHello = 2), told at its first byte. */
	memcpy(bad, h, n);
	bad[5] = 2;
	assert_int_equal(sni_read(bad, n, sni, sizeof(sni)), SNI_NOT_TLS);
	assert_int_equal(sni_read(bad, 6, sni, sizeof(sni)), SNI_NOT_TLS);
	/* An extensions block longer than the hello. */
	memcpy(bad, h, n);
	{
		size_t p = 5 + 4 + 2 + 32;

		p += 1 + bad[p];                              /* session id */
		p += 2 + ((size_t)bad[p] << 8 | bad[p + 1]);  /* cipher suites */
		p += 1 + bad[p];                              /* compression methods */
		bad[p] = bad[p + 1] = 0xff;
	}
	assert_int_equal(sni_read(bad, n, sni, sizeof(sni)), SNI_MALFORMED);
	/* A hello whose body ends inside its fixed fields. */
	memcpy(bad, h, 5 + 4 + 20);
	bad[3] = 0;
	bad[4] = 4 + 20;
	bad[6] = bad[7] = 0;
	bad[8] = 20;
	assert_int_equal(sni_read(bad, 5 + 4 + 20, sni, sizeof(sni)), SNI_MALFORMED);
}

static void test_names(void **state)
{
	unsigned char h[8192];
	char sni[256], small[8];
	size_t n;

	(void)state;
	/* Bytes a host name cannot have: not a name to route on. */
	n = make_hello("bad name.example", TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sni_read(h, n, sni, sizeof(sni)), SNI_BAD_NAME);
	assert_string_equal(sni, "");
	n = make_hello("a.example\x01", TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sni_read(h, n, sni, sizeof(sni)), SNI_BAD_NAME);
	/* A name that does not fit the caller's buffer is not cut short. */
	n = make_hello("longer.example", TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sni_read(h, n, small, sizeof(small)), SNI_BAD_NAME);
	assert_string_equal(small, "");
	/* Underscores occur in real names. */
	n = make_hello("_svc.Example", TLS1_3_VERSION, h, sizeof(h));
	assert_int_equal(sni_read(h, n, sni, sizeof(sni)), SNI_OK);
	assert_string_equal(sni, "_svc.example");
}

static void test_too_long(void **state)
{
	unsigned char bad[64];
	char sni[256];

	(void)state;
	/* A handshake announcing 16 MiB: not waited for. */
	memset(bad, 0, sizeof(bad));
	memcpy(bad, "\x16\x03\x01\x40\x00\x01\xff\xff\xff", 9);
	assert_int_equal(sni_read(bad, 9, sni, sizeof(sni)), SNI_TOO_LONG);
	/* A record longer than TLS allows. */
	memcpy(bad, "\x16\x03\x01\x48\x01\x01", 6);
	assert_int_equal(sni_read(bad, 6, sni, sizeof(sni)), SNI_MALFORMED);
	assert_string_equal(sni_status_name(SNI_TOO_LONG), "too_long");
	assert_string_equal(sni_status_name(SNI_OK), "ok");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_hellos),
		cmocka_unit_test(test_across_records),
		cmocka_unit_test(test_one_byte_records),
		cmocka_unit_test(test_not_a_hello),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_too_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
