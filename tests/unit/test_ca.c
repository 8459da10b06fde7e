/* The mesh CA: Go-style durations, SPIFFE name checks, a root and a workload certificate
 * verified in-process with OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"
#include "core/util.h"

static void durations_parse_like_go(void **state)
{
	static const struct { const char *in; int64_t sec; } ok[] = {
		{ "24h", 86400 }, { "90m", 5400 }, { "1h30m", 5400 }, { "1.5h", 5400 },
		{ ".5h", 1800 }, { "1.h", 3600 }, { "3600s", 3600 }, { "500ms", 0 },
		{ "1500ms", 1 }, { "0", 0 }, { "+2m", 120 }, { "2h45m30.5s", 9930 },
		{ "1us", 0 }, { "1\xc2\xb5s", 0 }, { "100000000ns", 0 }, { "8760h", 31536000 },
	};
	static const char *const bad[] = {
		"", "h", "10", "-1h", "1x", "1hh", "h1", "1.5", ".h", "99999999999999999999h",
		"3000000h", "1 h",
	};
	int64_t sec;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		sec = -1;
		assert_int_equal(ca_parse_duration(ok[i].in, &sec), 0);
		assert_int_equal(sec, ok[i].sec);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (ca_parse_duration(bad[i], &sec) == 0)
			fail_msg("\"%s\" parsed as %lld", bad[i], (long long)sec);
	}
}

static void identity_parts_are_checked(void **state)
{
	(void)state;
	assert_true(ca_trust_domain_valid("cluster.local"));
	assert_true(ca_trust_domain_valid("example_org"));
	assert_false(ca_trust_domain_valid(""));
	assert_false(ca_trust_domain_valid("Cluster.local"));
	assert_false(ca_trust_domain_valid("a/b"));
	assert_true(ca_namespace_valid("istio-system"));
	assert_false(ca_namespace_valid("istio.system"));
	assert_false(ca_namespace_valid("-a"));
	assert_false(ca_namespace_valid("a-"));
	assert_false(ca_namespace_valid("a/b"));
	assert_true(ca_service_account_valid("istio-egressgateway-service-account"));
	assert_true(ca_service_account_valid("a.b-c"));
	assert_false(ca_service_account_valid("a..b"));
	assert_false(ca_service_account_valid("A"));

	struct sbuf id = SBUF_INIT;

	ca_spiffe_id("cluster.local", "istio-system", "sa", &id);
	assert_string_equal(id.s, "spiffe://cluster.local/ns/istio-system/sa/sa");
	sbuf_free(&id);
}

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/test_ca.XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return xstrdup(tmpl);
}

static void rm_rf(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

/* The leaf's SAN URI, or NULL. */
static char *leaf_uri(X509 *x)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	char *uri = NULL;

	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);

		if (gn->type == GEN_URI)
			uri = xstrndup((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
			               (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier));
	}
	GENERAL_NAMES_free(gens);
	return uri;
}

static int verify(X509 *root, X509 *leaf, int purpose)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok;

	X509_STORE_add_cert(st, root);
	X509_STORE_CTX_init(ctx, st, leaf, NULL);
	X509_STORE_CTX_set_purpose(ctx, purpose);
	ok = X509_verify_cert(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	return ok;
}

static void root_issues_verifiable_spiffe_certificates(void **state)
{
	char *dir = tmpdir();
	char *cadir = xasprintf("%s/ca", dir), *out = xasprintf("%s/out", dir);
	char *keyp = xasprintf("%s/root-key.pem", cadir);
	char *wkey = xasprintf("%s/key.pem", out);
	struct sbuf err = SBUF_INIT;
	struct ca ca;
	struct ca_leaf leaf;
	const char *dns[] = { "gw.example.test" };
	struct ca_issue_req req = { "istio-system", "istio-egressgateway-service-account",
	                            dns, 1, 3600 };
	struct stat st;
	char *uri;
	time_t end;

	(void)state;
	assert_int_equal(ca_create(cadir, NULL, &err), 0);
	assert_int_equal(stat(keyp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* A second root over the first is refused. */
	assert_int_equal(ca_create(cadir, NULL, &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "already holds a CA"));
	sbuf_reset(&err);

	assert_int_equal(ca_load(cadir, &ca, &err), 0);
	assert_string_equal(ca.trust_domain, "cluster.local");
	assert_int_equal(ca_issue(&ca, &req, &leaf, &err), 0);
	assert_int_equal(verify(ca.cert, leaf.cert, X509_PURPOSE_SSL_SERVER), 1);
	assert_int_equal(verify(ca.cert, leaf.cert, X509_PURPOSE_SSL_CLIENT), 1);
	assert_int_equal(X509_check_private_key(leaf.cert, leaf.key), 1);
	assert_int_equal(X509_check_host(leaf.cert, "gw.example.test", 0, 0, NULL), 1);
	uri = leaf_uri(leaf.cert);
	assert_non_null(uri);
	assert_string_equal(uri,
		"spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account");
	free(uri);
	assert_int_equal(ca_cert_not_after(leaf.cert, &end), 0);
	assert_true(end > time(NULL) + 3500 && end <= time(NULL) + 3600);

	assert_int_equal(ca_write_workload(&ca, &leaf, out, &err), 0);
	assert_int_equal(stat(wkey, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	ca_leaf_fini(&leaf);

	/* A TTL past the root's own expiry, and a bad identity, are refused. */
	req.ttl_sec = (int64_t)CA_ROOT_VALIDITY_DAYS * 86400 + 86400;
	assert_int_equal(ca_issue(&ca, &req, &leaf, &err), -1);
	sbuf_reset(&err);
	req.ttl_sec = 60;
	req.ns = "a/b";
	assert_int_equal(ca_issue(&ca, &req, &leaf, &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "invalid namespace"));

	ca_fini(&ca);
	sbuf_free(&err);
	rm_rf(dir);
	free(wkey);
	free(keyp);
	free(out);
	free(cadir);
	free(dir);
}

static void load_rejects_a_key_of_another_root(void **state)
{
	char *dir = tmpdir();
	char *a = xasprintf("%s/a", dir), *b = xasprintf("%s/b", dir);
	char *cmd = xasprintf("cp '%s/root-key.pem' '%s/root-key.pem'", b, a);
	struct sbuf err = SBUF_INIT;
	struct ca ca;

	(void)state;
	assert_int_equal(ca_create(a, "example.org", &err), 0);
	assert_int_equal(ca_create(b, NULL, &err), 0);
	assert_int_equal(ca_load(a, &ca, &err), 0);
	assert_string_equal(ca.trust_domain, "example.org");
	ca_fini(&ca);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(ca_load(a, &ca, &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "does not belong to"));
	/* The message names files, never key bytes. */
	assert_null(strstr(sbuf_str(&err), "PRIVATE"));
	sbuf_free(&err);
	rm_rf(dir);
	free(cmd);
	free(b);
	free(a);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(durations_parse_like_go),
		cmocka_unit_test(identity_parts_are_checked),
		cmocka_unit_test(root_issues_verifiable_spiffe_certificates),
		cmocka_unit_test(load_rejects_a_key_of_another_root),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
