/* Tests for secrets/secret: Istio's Secret layouts, the credential cache across builds
 * (last good version, rejected versions reported once, WARMING, deletion), the context
 * cache, file certificates, key file modes, the admin JSON, and snap_build reusing a TLS
 * context (same id) while its credential is unchanged. Certificates are made with the
 * walkthrough's openssl commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/crypto.h>

#include "config/resource.h"
#include "config/store.h"
#include "core/log.h"
#include "core/util.h"
#include "proxy/snap.h"
#include "secrets/secret.h"

static char base[64];
static char certs[128];

static int group_setup(void **state)
{
	char cmd[2048];

	(void)state;
	snprintf(base, sizeof(base), "/tmp/test_secret.XXXXXX");
	if (!mkdtemp(base))
		return -1;
	snprintf(certs, sizeof(certs), "%s/certs", base);
	snprintf(cmd, sizeof(cmd),
	         "set -e; mkdir -p %s; cd %s; exec 2>/dev/null; "
	         "openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=example Inc./CN=example.com' -keyout example.com.key -out example.com.crt; "
	         "openssl req -out client.example.com.csr -newkey rsa:2048 -nodes -keyout client.example.com.key -subj \"/CN=client.example.com/O=client organization\"; "
	         "openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key -set_serial 1 -in client.example.com.csr -out client.example.com.crt; "
	         "openssl req -out client2.csr -newkey rsa:2048 -nodes -keyout client2.key -subj \"/CN=client.example.com/O=client organization\"; "
	         "openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key -set_serial 2 -in client2.csr -out client2.crt; "
	         "touch index.txt; echo 01 > crlnumber; "
	         "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\ncrlnumber=crlnumber\\ndefault_md=sha256\\ndefault_crl_days=30\\nprivate_key=example.com.key\\ncertificate=example.com.crt\\n' > ca.cnf; "
	         "openssl ca -config ca.cnf -gencrl -out empty.crl",
	         certs, certs);
	return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

struct env {
	char root[128];
	struct store_contents contents;
	struct diags d;
	struct secret_cache *c;
};

static int env_setup(void **state)
{
	static int seq;
	struct env *e = xcalloc(1, sizeof(*e));

	snprintf(e->root, sizeof(e->root), "%s/store%d", base, seq++);
	if (mkdir_p(e->root, 0700) < 0)
		return -1;
	e->c = secret_cache_new();
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;
	char cmd[256];

	store_contents_free(&e->contents);
	diags_free(&e->d);
	secret_cache_free(e->c);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->root);
	free(e);
	return system(cmd) == 0 ? 0 : -1;
}

static char *cert_path(const char *name)
{
	return xasprintf("%s/%s", certs, name);
}

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t len;

	if (file_read_all(path, &buf, &len) < 0)
		fail_msg("cannot read %s", path);
	return buf;
}

/* Secret ns/name of type with "key=file" pairs (file names under certs, or "=TEXT" for
 * literal text), NULL-terminated. */
static void put_secret(struct env *e, const char *ns, const char *name, const char *type, ...)
{
	struct store_secret sec = { NULL, NULL, 0 };
	struct diags d = DIAGS_INIT;
	const char *kv;
	va_list ap;

	sec.type = xstrdup(type);
	va_start(ap, type);
	while ((kv = va_arg(ap, const char *))) {
		const char *eq = strchr(kv, '=');
		char *key = xstrndup(kv, (size_t)(eq - kv));
		char *text;

		if (eq[1] == '=') {
			text = xstrdup(eq + 2);
		} else {
			char *p = cert_path(eq + 1);

			text = slurp(p);
			free(p);
		}
		store_secret_set(&sec, key, text, strlen(text));
		free(text);
		free(key);
	}
	va_end(ap);
	assert_int_equal(store_put_secret(e->root, ns, name, &sec, &d), 0);
	store_secret_free(&sec);
	diags_free(&d);
}

static void del_secret(struct env *e, const char *ns, const char *name)
{
	char *cmd = xasprintf("rm -rf '%s/secrets/%s/%s'", e->root, ns, name);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void load(struct env *e)
{
	store_contents_free(&e->contents);
	diags_free(&e->d);
	if (store_load(e->root, "default", &e->contents, &e->d) < 0) {
		diags_print(&e->d, stderr);
		fail_msg("store_load failed");
	}
}

/* One build's use of credential name with flags: the version, or NULL with err. */
static const struct secret_version *use(struct env *e, const char *name, unsigned flags,
                                        struct sbuf *err)
{
	sbuf_reset(err);
	return secret_cache_credential(e->c, &e->contents, e->root, "istio-system", name, flags,
	                               err);
}

static char *events(struct env *e)
{
	struct sbuf b = SBUF_INIT;

	secret_cache_events_text(e->c, &b);
	secret_cache_log_events(e->c);      /* clears them (logging is off: see main) */
	return sbuf_steal(&b);
}

static char *json(struct env *e)
{
	struct sbuf b = SBUF_INIT;

	secret_cache_json(e->c, &b);
	return sbuf_steal(&b);
}

#define MUTUAL (SECRET_USE_CERT | SECRET_USE_CA)

/* ---- layouts ---- */

static void layouts(void **state)
{
	struct env *e = *state;
	struct secret_parts p;
	struct sbuf err = SBUF_INIT;

	put_secret(e, "istio-system", "a", "Opaque", "tls.crt=client.example.com.crt",
	           "tls.key=client.example.com.key", "ca.crt=example.com.crt",
	           "ca.crl=empty.crl", (char *)NULL);
	put_secret(e, "istio-system", "b", "Opaque", "cert=client.example.com.crt",
	           "key=client.example.com.key", "cacert=example.com.crt", "crl=empty.crl",
	           (char *)NULL);
	put_secret(e, "istio-system", "c", "kubernetes.io/tls", "tls.crt=client.example.com.crt",
	           "tls.key=client.example.com.key", (char *)NULL);
	put_secret(e, "istio-system", "c-cacert", "Opaque", "ca.crt=example.com.crt",
	           "ca.crl=empty.crl", (char *)NULL);
	put_secret(e, "istio-system", "d", "Opaque", "ca.crt=example.com.crt", (char *)NULL);
	put_secret(e, "istio-system", "e-cacert", "Opaque", "cacert=example.com.crt", (char *)NULL);
	put_secret(e, "istio-system", "f", "Opaque", "tls.crt=client.example.com.crt",
	           (char *)NULL);
	put_secret(e, "istio-system", "f-cacert", "Opaque", "other==x", (char *)NULL);
	put_secret(e, "default", "g", "Opaque", "tls.crt=client.example.com.crt",
	           "tls.key=client.example.com.key", (char *)NULL);
	load(e);

	assert_int_equal(secret_resolve(&e->contents, "istio-system", "a", true, &p, &err), 0);
	assert_string_equal(p.cert_key, "tls.crt");
	assert_string_equal(p.key_key, "tls.key");
	assert_string_equal(p.ca_key, "ca.crt");
	assert_string_equal(p.crl_key, "ca.crl");
	assert_ptr_equal(p.ca_from, p.sec);

	assert_int_equal(secret_resolve(&e->contents, "istio-system", "b", true, &p, &err), 0);
	assert_string_equal(p.cert_key, "cert");
	assert_string_equal(p.ca_key, "cacert");
	assert_string_equal(p.crl_key, "crl");

	/* kubernetes.io/tls with the CA (and CRL) in NAME-cacert. */
	assert_int_equal(secret_resolve(&e->contents, "istio-system", "c", true, &p, &err), 0);
	assert_non_null(p.casec);
	assert_ptr_equal(p.ca_from, p.casec);
	assert_ptr_equal(p.crl_from, p.casec);
	assert_string_equal(p.crl_key, "ca.crl");

	/* Only a CA: fine when no certificate is needed, an error naming the keys when it is. */
	assert_int_equal(secret_resolve(&e->contents, "istio-system", "d", false, &p, &err), 0);
	assert_null(p.cert);
	assert_non_null(p.ca);
	assert_int_equal(secret_resolve(&e->contents, "istio-system", "d", true, &p, &err), -1);
	assert_string_equal(sbuf_str(&err), "secret kubernetes://d has no tls.crt/tls.key or "
	                    "cert/key (found: ca.crt)");
	sbuf_reset(&err);

	/* NAME-cacert alone serves a CA-only user. */
	assert_int_equal(secret_resolve(&e->contents, "istio-system", "e", false, &p, &err), 0);
	assert_string_equal(p.ca_key, "cacert");
	assert_int_equal(secret_resolve(&e->contents, "istio-system", "e", true, &p, &err),
	                 SECRET_NOT_FOUND);
	sbuf_reset(&err);

	/* A NAME-cacert without a CA key is an error. */
	assert_int_equal(secret_resolve(&e->contents, "istio-system", "f", false, &p, &err), -1);
	assert_string_equal(sbuf_str(&err), "secret kubernetes://f-cacert has no cacert or "
	                    "ca.crt (found: other)");
	sbuf_reset(&err);

	/* The proxy's namespace only. */
	assert_int_equal(secret_resolve(&e->contents, "istio-system", "g", true, &p, &err),
	                 SECRET_NOT_FOUND);
	assert_string_equal(sbuf_str(&err), "secret kubernetes://g not found in namespace "
	                    "istio-system");
	sbuf_free(&err);
}

/* ---- the cache ---- */

static void last_good_version(void **state)
{
	struct env *e = *state;
	struct sbuf err = SBUF_INIT;
	const struct secret_version *v;
	char digest1[SECRET_DIGEST_HEX], *ev, *js;

	put_secret(e, "istio-system", "cred", "Opaque", "tls.crt=client.example.com.crt",
	           "tls.key=client.example.com.key", "ca.crt=example.com.crt", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	secret_cache_want(e->c, "istio-system", "cred", MUTUAL);
	v = use(e, "cred", MUTUAL, &err);
	assert_non_null(v);
	assert_string_equal(v->cert_info.serial, "1");
	assert_non_null(v->key);
	memcpy(digest1, v->digest, sizeof(digest1));
	secret_cache_commit(e->c);
	ev = events(e);
	assert_non_null(strstr(ev, "Secret istio-system/cred: version "));
	assert_non_null(strstr(ev, "(certificate serial 1, not after "));
	free(ev);

	/* Unchanged: the same version, no event. An unrelated key added: still the same. */
	put_secret(e, "istio-system", "cred", "Opaque", "tls.crt=client.example.com.crt",
	           "tls.key=client.example.com.key", "ca.crt=example.com.crt",
	           "note==hello", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	v = use(e, "cred", MUTUAL, &err);
	assert_string_equal(v->digest, digest1);
	secret_cache_commit(e->c);
	ev = events(e);
	assert_string_equal(ev, "");
	free(ev);

	/* A key that does not match: rejected once, named, the good version stays. */
	put_secret(e, "istio-system", "cred", "Opaque", "tls.crt=client.example.com.crt",
	           "tls.key=client2.key", "ca.crt=example.com.crt", (char *)NULL);
	for (int round = 0; round < 2; round++) {
		load(e);
		secret_cache_begin(e->c);
		v = use(e, "cred", MUTUAL, &err);
		assert_non_null(v);
		assert_string_equal(v->digest, digest1);
		secret_cache_commit(e->c);
		ev = events(e);
		if (round == 0)
			assert_true(str_has_prefix(ev, "Secret istio-system/cred rejected: private key "
			                           "tls.key: does not match the certificate tls.crt; "
			                           "keeping the previous version ("));
		else
			assert_string_equal(ev, "");
		free(ev);
	}
	js = json(e);
	assert_non_null(strstr(js, "\"reason\": \"private key tls.key: does not match the "
	                       "certificate tls.crt\""));
	assert_non_null(strstr(js, "\"status\": \"ACTIVE\""));
	assert_null(strstr(js, "PRIVATE KEY"));
	free(js);

	/* Bad PEM and missing keys: rejected too. */
	put_secret(e, "istio-system", "cred", "Opaque",
	           "tls.crt==-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
	           "tls.key=client.example.com.key", "ca.crt=example.com.crt", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	assert_non_null(use(e, "cred", MUTUAL, &err));
	secret_cache_commit(e->c);
	ev = events(e);
	assert_non_null(strstr(ev, "Secret istio-system/cred rejected: client certificate tls.crt: "
	                       "bad PEM certificate"));
	assert_null(strstr(ev, "BEGIN"));
	free(ev);
	put_secret(e, "istio-system", "cred", "Opaque", "ca.crt=example.com.crt", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	assert_non_null(use(e, "cred", MUTUAL, &err));
	secret_cache_commit(e->c);
	ev = events(e);
	assert_non_null(strstr(ev, "rejected: secret kubernetes://cred has no tls.crt/tls.key or "
	                       "cert/key (found: ca.crt); keeping the previous version"));
	free(ev);

	/* A good new version replaces it and clears the rejection. */
	put_secret(e, "istio-system", "cred", "Opaque", "tls.crt=client2.crt",
	           "tls.key=client2.key", "ca.crt=example.com.crt", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	v = use(e, "cred", MUTUAL, &err);
	assert_string_equal(v->cert_info.serial, "2");
	assert_string_not_equal(v->digest, digest1);
	secret_cache_commit(e->c);
	free(events(e));
	js = json(e);
	assert_null(strstr(js, "rejected"));
	assert_non_null(strstr(js, "\"serial\": \"2\""));
	free(js);

	/* Deleted: dropped at once. */
	del_secret(e, "istio-system", "cred");
	load(e);
	secret_cache_begin(e->c);
	assert_null(use(e, "cred", MUTUAL, &err));
	assert_string_equal(sbuf_str(&err), "secret kubernetes://cred not found in namespace "
	                    "istio-system");
	secret_cache_commit(e->c);
	ev = events(e);
	assert_non_null(strstr(ev, "Secret istio-system/cred deleted"));
	free(ev);
	js = json(e);
	assert_non_null(strstr(js, "\"status\": \"WARMING\""));
	free(js);
	sbuf_free(&err);
}

static void warming_then_rows(void **state)
{
	struct env *e = *state;
	struct sbuf err = SBUF_INIT;
	char *js, *ev;

	load(e);
	secret_cache_begin(e->c);
	assert_null(use(e, "cred", MUTUAL, &err));
	assert_string_equal(sbuf_str(&err), "secret kubernetes://cred not found in namespace "
	                    "istio-system");
	secret_cache_commit(e->c);
	js = json(e);
	assert_non_null(strstr(js, "\"name\": \"kubernetes://cred\""));
	assert_non_null(strstr(js, "\"name\": \"kubernetes://cred-cacert\""));
	assert_non_null(strstr(js, "\"error\": \"secret kubernetes://cred not found in namespace "
	                       "istio-system\""));
	assert_null(strstr(js, "ACTIVE"));
	free(js);

	/* An invalid first version: WARMING with the reason. */
	put_secret(e, "istio-system", "cred", "Opaque", "tls.crt=client.example.com.crt",
	           "tls.key=client2.key", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	assert_null(use(e, "cred", MUTUAL, &err));
	assert_string_equal(sbuf_str(&err), "secret kubernetes://cred: private key tls.key: does "
	                    "not match the certificate tls.crt");
	secret_cache_commit(e->c);
	ev = events(e);
	assert_non_null(strstr(ev, "stays WARMING"));
	free(ev);

	/* Valid, without a CA: MUTUAL uses the system trust store, no -cacert row. A SIMPLE
	 * user needs the CA: an error for it alone. */
	put_secret(e, "istio-system", "cred", "kubernetes.io/tls", "tls.crt=client.example.com.crt",
	           "tls.key=client.example.com.key", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	assert_non_null(use(e, "cred", MUTUAL, &err));
	assert_null(use(e, "cred", SECRET_USE_CA | SECRET_NEED_CA, &err));
	assert_non_null(strstr(sbuf_str(&err), "has no CA"));
	secret_cache_commit(e->c);
	js = json(e);
	assert_non_null(strstr(js, "\"name\": \"kubernetes://cred\""));
	assert_non_null(strstr(js, "\"status\": \"ACTIVE\""));
	free(js);
	free(events(e));

	/* Not used by the next build: gone from the list. */
	secret_cache_begin(e->c);
	secret_cache_commit(e->c);
	js = json(e);
	assert_string_equal(js, "{\n  \"secrets\": []\n}\n");
	free(js);
	sbuf_free(&err);
}

/* A CA-only user announced alongside a MUTUAL one: the version is checked for both. */
static void wants_decide_the_checks(void **state)
{
	struct env *e = *state;
	struct sbuf err = SBUF_INIT;

	put_secret(e, "istio-system", "cred", "Opaque", "ca.crt=example.com.crt", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	secret_cache_want(e->c, "istio-system", "cred", SECRET_USE_CA | SECRET_NEED_CA);
	secret_cache_want(e->c, "istio-system", "cred", MUTUAL);
	assert_null(use(e, "cred", SECRET_USE_CA | SECRET_NEED_CA, &err));
	assert_non_null(strstr(sbuf_str(&err), "has no tls.crt/tls.key or cert/key"));
	secret_cache_commit(e->c);
	free(events(e));

	/* Only the CA user: the version loads. */
	secret_cache_begin(e->c);
	secret_cache_want(e->c, "istio-system", "cred", SECRET_USE_CA | SECRET_NEED_CA);
	assert_non_null(use(e, "cred", SECRET_USE_CA | SECRET_NEED_CA, &err));
	secret_cache_commit(e->c);
	free(events(e));
	sbuf_free(&err);
}

static void abort_keeps_the_list(void **state)
{
	struct env *e = *state;
	struct sbuf err = SBUF_INIT;
	char *before, *after;

	put_secret(e, "istio-system", "cred", "Opaque", "tls.crt=client.example.com.crt",
	           "tls.key=client.example.com.key", "ca.crt=example.com.crt", (char *)NULL);
	load(e);
	secret_cache_begin(e->c);
	assert_non_null(use(e, "cred", MUTUAL, &err));
	secret_cache_commit(e->c);
	before = json(e);
	secret_cache_begin(e->c);
	secret_cache_abort(e->c);
	after = json(e);
	assert_string_equal(before, after);
	free(before);
	free(after);
	free(events(e));
	sbuf_free(&err);
}

static struct tls_ctx *new_ctx(void)
{
	struct tls_client_params cp;
	struct sbuf err = SBUF_INIT;
	struct tls_ctx *c;

	memset(&cp, 0, sizeof(cp));
	c = tls_client_ctx_new(&cp, &err);
	assert_non_null(c);
	sbuf_free(&err);
	return c;
}

static void context_cache(void **state)
{
	struct env *e = *state;
	struct tls_ctx *a = new_ctx(), *got;

	secret_cache_begin(e->c);
	assert_null(secret_cache_ctx_get(e->c, "k1"));
	secret_cache_ctx_put(e->c, "k1", a);
	secret_cache_commit(e->c);
	/* Used again: kept. */
	secret_cache_begin(e->c);
	got = secret_cache_ctx_get(e->c, "k1");
	assert_ptr_equal(got, a);
	tls_ctx_unref(got);
	secret_cache_commit(e->c);
	/* Not used by a build: released at its commit. */
	secret_cache_begin(e->c);
	secret_cache_commit(e->c);
	secret_cache_begin(e->c);
	assert_null(secret_cache_ctx_get(e->c, "k1"));
	secret_cache_commit(e->c);
	tls_ctx_unref(a);
}

static void files_and_modes(void **state)
{
	struct env *e = *state;
	char d1[SECRET_DIGEST_HEX], d2[SECRET_DIGEST_HEX], d3[SECRET_DIGEST_HEX];
	char *crt = cert_path("client.example.com.crt"), *key = xasprintf("%s/k.pem", e->root);
	char *text = slurp(crt), *ev, *js;
	char *keytext = cert_path("client.example.com.key"), *keydata = slurp(keytext);

	assert_int_equal(file_write_atomic(key, keydata, strlen(keydata), 0644), 0);
	secret_cache_begin(e->c);
	secret_cache_file(e->c, "file-cert:x~y", false, crt, key, d1);
	secret_cache_file(e->c, "ROOTCA", true, "/nonexistent/root.pem", NULL, d2);
	secret_file_digest(crt, d3);
	assert_string_equal(d1, d3);
	assert_string_equal(d2, "unreadable");
	secret_cache_commit(e->c);
	ev = events(e);
	assert_non_null(strstr(ev, "private key file "));
	assert_non_null(strstr(ev, "k.pem is readable by group and others (mode 0644)"));
	assert_null(strstr(ev, "PRIVATE"));
	free(ev);
	js = json(e);
	/* WARMING first, then ACTIVE. */
	assert_true(strstr(js, "\"ROOTCA\"") < strstr(js, "\"file-cert:x~y\""));
	assert_non_null(strstr(js, "\"type\": \"CA\""));
	assert_non_null(strstr(js, "cannot read /nonexistent/root.pem"));
	assert_non_null(strstr(js, "\"serial\": \"1\""));
	assert_null(strstr(js, "PRIVATE"));
	free(js);
	/* Warned once per path and mode. */
	secret_cache_begin(e->c);
	secret_cache_file(e->c, "file-cert:x~y", false, crt, key, d1);
	secret_cache_commit(e->c);
	ev = events(e);
	assert_string_equal(ev, "");
	free(ev);
	free(crt);
	free(key);
	free(text);
	free(keytext);
	OPENSSL_cleanse(keydata, strlen(keydata));
	free(keydata);
}

/* A 365-day certificate: not expiring today, expiring (warned once) with less than a
 * quarter left, then expired (an error, once); the gauge counts the seconds left. */
static void expiry(void **state)
{
	struct env *e = *state;
	char d1[SECRET_DIGEST_HEX];
	char *crt = cert_path("client.example.com.crt"), *ev, *js;
	struct sbuf prom = SBUF_INIT;
	time_t now = time(NULL);
	long long left;
	const char *p;

	secret_cache_begin(e->c);
	secret_cache_file(e->c, "default", false, crt, NULL, d1);
	secret_cache_commit(e->c);
	free(events(e));
	secret_cache_check_expiry(e->c, now);
	ev = events(e);
	assert_string_equal(ev, "");
	free(ev);
	secret_cache_prom(e->c, now, &prom);
	p = strstr(sbuf_str(&prom), "egressgw_cert_expiry_seconds{resource_name=\"default\"} ");
	assert_non_null(p);
	left = strtoll(strchr(p, '}') + 2, NULL, 10);
	assert_true(left > 364LL * 86400 && left <= 365LL * 86400);
	js = json(e);
	assert_non_null(strstr(js, "\"expiring\": false"));
	free(js);
	/* 300 days later: 65 days left of 365, less than a quarter. */
	secret_cache_check_expiry(e->c, now + 300 * 86400);
	ev = events(e);
	assert_non_null(strstr(ev, "certificate default (file /"));
	assert_non_null(strstr(ev, "serial 1) expires in 15"));   /* 65 days: 15xxh */
	assert_non_null(strstr(ev, "renew it"));
	free(ev);
	secret_cache_check_expiry(e->c, now + 301 * 86400);
	ev = events(e);
	assert_string_equal(ev, "");       /* once per certificate and state */
	free(ev);
	secret_cache_check_expiry(e->c, now + 366 * 86400);
	ev = events(e);
	assert_non_null(strstr(ev, "certificate default (file /"));
	assert_non_null(strstr(ev, "expired at"));
	free(ev);
	sbuf_reset(&prom);
	secret_cache_prom(e->c, now + 366 * 86400, &prom);
	assert_non_null(strstr(sbuf_str(&prom), "{resource_name=\"default\"} -"));
	sbuf_free(&prom);
	free(crt);
}

static void store_errors_only(void **state)
{
	struct diags d = DIAGS_INIT;

	(void)state;
	diag_warn(&d, "/s/config/x.yaml", 1, 1, "w");
	diag_err(&d, "/s/secrets/istio-system/cred/tls.key", 0, 0, "cannot read");
	assert_true(secret_store_errors_only(&d, "/s"));
	diag_err(&d, "/s/config/x.yaml", 3, 1, "bad");
	assert_false(secret_store_errors_only(&d, "/s"));
	diags_free(&d);
}

/* ---- snap_build with a cache ---- */

static const char *dr_mtls =
	"apiVersion: networking.istio.io/v1alpha3\n"
	"kind: DestinationRule\n"
	"metadata: {name: originate-mtls-for-nginx, namespace: istio-system}\n"
	"spec:\n"
	"  host: my-nginx.mesh-external.svc.cluster.local\n"
	"  trafficPolicy:\n"
	"    tls: {mode: MUTUAL, credentialName: client-credential,\n"
	"          sni: my-nginx.mesh-external.svc.cluster.local}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1alpha3\n"
	"kind: ServiceEntry\n"
	"metadata: {name: nginx}\n"
	"spec:\n"
	"  hosts: [my-nginx.mesh-external.svc.cluster.local]\n"
	"  ports: [{number: 443, name: https, protocol: HTTPS}]\n"
	"  resolution: DNS\n"
	"---\n"
	"apiVersion: networking.istio.io/v1alpha3\n"
	"kind: ServiceEntry\n"
	"metadata: {name: other}\n"
	"spec:\n"
	"  hosts: [other.example.com]\n"
	"  ports: [{number: 443, name: https, protocol: HTTPS}]\n"
	"  resolution: DNS\n"
	"---\n"
	"apiVersion: networking.istio.io/v1alpha3\n"
	"kind: DestinationRule\n"
	"metadata: {name: other}\n"
	"spec:\n"
	"  host: other.example.com\n"
	"  trafficPolicy: {tls: {mode: SIMPLE}}\n";

static struct snap *build(struct env *e, struct diags *d)
{
	static const char *labels[] = { "istio=egressgateway", NULL };
	struct snap_params p;
	struct snap *s;

	memset(&p, 0, sizeof(p));
	p.role = SNAP_ROLE_GATEWAY;
	p.namespace = "istio-system";
	p.labels = labels;
	p.listen_address = "0.0.0.0";
	p.store_root = e->root;
	p.secrets = e->c;
	load(e);
	s = snap_build(&e->contents, &p, d);
	assert_non_null(s);
	return s;
}

static void snap_reuses_contexts(void **state)
{
	struct env *e = *state;
	struct diags d = DIAGS_INIT;
	const char *name = "outbound|443||my-nginx.mesh-external.svc.cluster.local";
	char *path = xasprintf("%s/config/dr.yaml", e->root), *dir = xasprintf("%s/config", e->root);
	struct snap *s1, *s2, *s3;
	uint64_t id1, other1;

	assert_int_equal(mkdir_p(dir, 0700), 0);
	assert_int_equal(file_write_atomic(path, dr_mtls, strlen(dr_mtls), 0600), 0);
	put_secret(e, "istio-system", "client-credential", "Opaque",
	           "tls.crt=client.example.com.crt", "tls.key=client.example.com.key",
	           "ca.crt=example.com.crt", (char *)NULL);
	s1 = build(e, &d);
	assert_non_null(snap_cluster_find(s1, name)->tls_ctx);
	id1 = tls_ctx_id(snap_cluster_find(s1, name)->tls_ctx);
	other1 = tls_ctx_id(snap_cluster_find(s1, "outbound|443||other.example.com")->tls_ctx);

	/* An unrelated reload: same contexts (same ids). */
	s2 = build(e, &d);
	assert_int_equal(tls_ctx_id(snap_cluster_find(s2, name)->tls_ctx), id1);
	assert_int_equal(tls_ctx_id(snap_cluster_find(s2, "outbound|443||other.example.com")->tls_ctx),
	                 other1);

	/* A rotation: a new context for the credential's cluster only. */
	put_secret(e, "istio-system", "client-credential", "Opaque",
	           "tls.crt=client2.crt", "tls.key=client2.key", "ca.crt=example.com.crt",
	           (char *)NULL);
	s3 = build(e, &d);
	assert_int_not_equal(tls_ctx_id(snap_cluster_find(s3, name)->tls_ctx), id1);
	assert_int_equal(tls_ctx_id(snap_cluster_find(s3, "outbound|443||other.example.com")->tls_ctx),
	                 other1);
	/* The old snapshot's context is still alive for connections that use it. */
	assert_int_equal(tls_ctx_id(snap_cluster_find(s1, name)->tls_ctx), id1);
	snap_unref(s1);
	snap_unref(s2);
	snap_unref(s3);
	free(events(e));
	diags_free(&d);
	free(path);
	free(dir);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)
	const struct CMUnitTest tests[] = {
		T(layouts),
		T(last_good_version),
		T(warming_then_rows),
		T(wants_decide_the_checks),
		T(abort_keeps_the_list),
		T(context_cache),
		T(files_and_modes),
		T(expiry),
		T(store_errors_only),
		T(snap_reuses_contexts),
	};
#undef T
	log_min_level = LOG_ERROR;          /* the events are checked as text, not logged */
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
