#include "ca/ca.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/util.h"

/* Appends "what: <openssl reason>" to err and empties the OpenSSL error queue. Only the
 * library's reason strings are used: they never contain key material. */
static void ca_ssl_err(struct sbuf *err, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[256];

	if (e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		sbuf_addf(err, "%s: %s", what, buf);
	} else {
		sbuf_addf(err, "%s", what);
	}
	ERR_clear_error();
}

static char *ca_path(const char *dir, const char *file)
{
	return xasprintf("%s/%s", dir, file);
}

/* ---- names ---- */

static bool ca_is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool ca_trust_domain_valid(const char *td)
{
	size_t n = strlen(td);

	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!ca_is_lower_alnum(td[i]) && td[i] != '.' && td[i] != '-' && td[i] != '_')
			return false;
	return true;
}

/* DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most max bytes; with dots allowed
 * between labels when subdomain is true. */
static bool ca_dns1123_valid(const char *s, size_t max, bool subdomain)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (ca_is_lower_alnum(c))
			continue;
		if (c == '-' && i > 0 && i + 1 < n && s[i - 1] != '.' && s[i + 1] != '.')
			continue;
		if (c == '.' && subdomain && i > 0 && i + 1 < n && s[i - 1] != '.')
			continue;
		return false;
	}
	return true;
}

bool ca_namespace_valid(const char *ns)
{
	return ca_dns1123_valid(ns, 63, false);
}

bool ca_service_account_valid(const char *sa)
{
	return ca_dns1123_valid(sa, 253, true);
}

void ca_spiffe_id(const char *trust_domain, const char *ns, const char *sa, struct sbuf *out)
{
	sbuf_addf(out, "spiffe://%s/ns/%s/sa/%s", trust_domain, ns, sa);
}

/* ---- durations ---- */

struct ca_unit {
	const char *name;
	int64_t ns;
};

static const struct ca_unit ca_units[] = {
	{ "ns", 1 },
	{ "us", 1000 },
	{ "\xc2\xb5s", 1000 },  /* U+00B5 micro sign */
	{ "\xce\xbcs", 1000 },  /* U+03BC Greek mu */
	{ "ms", 1000000 },
	{ "s", 1000000000LL },
	{ "m", 60 * 1000000000LL },
	{ "h", 3600 * 1000000000LL },
};

/* Matches the longest unit at p; returns its length and sets *unit, or 0. */
static size_t ca_match_unit(const char *p, int64_t *unit)
{
	size_t best = 0;

	for (size_t i = 0; i < ARRAY_SIZE(ca_units); i++) {
		size_t l = strlen(ca_units[i].name);

		if (l > best && strncmp(p, ca_units[i].name, l) == 0) {
			best = l;
			*unit = ca_units[i].ns;
		}
	}
	/* "m" must not swallow the "m" of "ms": the longest match handles it. */
	return best;
}

int ca_parse_duration(const char *s, int64_t *sec)
{
	const char *p = s;
	int64_t total = 0;

	if (*p == '+')
		p++;
	else if (*p == '-')
		return -1;
	if (strcmp(p, "0") == 0) {
		*sec = 0;
		return 0;
	}
	if (*p == '\0')
		return -1;
	while (*p) {
		int64_t whole = 0, frac = 0, scale = 1, unit = 0, part;
		bool digits = false;
		size_t ul;

		while (*p >= '0' && *p <= '9') {
			if (whole > (INT64_MAX - 9) / 10)
				return -1;
			whole = whole * 10 + (*p++ - '0');
			digits = true;
		}
		if (*p == '.') {
			p++;
			while (*p >= '0' && *p <= '9') {
				/* Extra digits beyond nanosecond precision are dropped, as Go does. */
				if (scale < 1000000000000000000LL) {
					frac = frac * 10 + (*p - '0');
					scale *= 10;
				}
				p++;
				digits = true;
			}
		}
		if (!digits)
			return -1;
		ul = ca_match_unit(p, &unit);
		if (ul == 0)
			return -1;
		p += ul;
		if (whole > INT64_MAX / unit)
			return -1;
		part = whole * unit;
		/* frac/scale < 1, so frac * (unit / scale) stays in range when computed as a
		 * double; the result is rounded down to whole nanoseconds. */
		part += (int64_t)((double)frac * ((double)unit / (double)scale));
		if (part < 0 || total > INT64_MAX - part)
			return -1;
		total += part;
	}
	*sec = total / 1000000000LL;
	return 0;
}

/* ---- certificate building ---- */

static EVP_PKEY *ca_new_key(struct sbuf *err)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	if (!key)
		ca_ssl_err(err, "generating an ECDSA P-256 key");
	return key;
}

/* A random positive 128-bit serial number (RFC 5280 allows up to 20 octets). */
static int ca_set_serial(X509 *x, struct sbuf *err)
{
	unsigned char raw[16];
	BIGNUM *bn = NULL;
	int ret = -1;

	do {
		if (RAND_bytes(raw, sizeof(raw)) != 1) {
			ca_ssl_err(err, "generating a serial number");
			return -1;
		}
		raw[0] &= 0x7f;
	} while (raw[0] == 0 && raw[1] == 0);
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
		ca_ssl_err(err, "setting the serial number");
		goto out;
	}
	ret = 0;
out:
	BN_free(bn);
	return ret;
}

/* Adds one extension from its OpenSSL config-string form, e.g. "critical,CA:TRUE". The
 * values passed here are constants, never user input (SANs are built as GENERAL_NAMEs). */
static int ca_add_ext(X509 *cert, X509 *issuer, int nid, const char *value, struct sbuf *err)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ex;
	int ok;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ex) {
		ca_ssl_err(err, "building a certificate extension");
		return -1;
	}
	ok = X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	if (!ok) {
		ca_ssl_err(err, "adding a certificate extension");
		return -1;
	}
	return 0;
}

static int ca_push_name(GENERAL_NAMES *gens, int type, const char *value)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();

	if (!gn || !s || !ASN1_STRING_set(s, value, (int)strlen(value)))
		goto fail;
	GENERAL_NAME_set0_value(gn, type, s);
	s = NULL;
	if (!sk_GENERAL_NAME_push(gens, gn))
		goto fail;
	return 0;
fail:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(gn);
	return -1;
}

/* The SAN extension: the SPIFFE URI then the DNS names. Critical, because the subject is
 * empty (RFC 5280 4.2.1.6). */
static int ca_add_san(X509 *x, const char *uri, const char *const *dns, size_t ndns,
                      struct sbuf *err)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	int ret = -1;

	if (!gens || ca_push_name(gens, GEN_URI, uri) < 0)
		goto fail;
	for (size_t i = 0; i < ndns; i++)
		if (ca_push_name(gens, GEN_DNS, dns[i]) < 0)
			goto fail;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 1, X509V3_ADD_DEFAULT) != 1)
		goto fail;
	ret = 0;
	goto out;
fail:
	ca_ssl_err(err, "adding the subjectAltName");
out:
	GENERAL_NAMES_free(gens);
	return ret;
}

static X509 *ca_make_root(EVP_PKEY *key, const char *trust_domain, struct sbuf *err)
{
	X509 *x = X509_new();
	X509_NAME *name;

	if (!x) {
		ca_ssl_err(err, "allocating a certificate");
		return NULL;
	}
	if (!X509_set_version(x, 2) || ca_set_serial(x, err) < 0)
		goto fail_ssl;
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
	                                (const unsigned char *)trust_domain, -1, -1, 0))
		goto fail_ssl;
	if (!X509_set_issuer_name(x, name))
		goto fail_ssl;
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -60) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), CA_ROOT_VALIDITY_DAYS, 0, NULL))
		goto fail_ssl;
	if (!X509_set_pubkey(x, key))
		goto fail_ssl;
	if (ca_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE", err) < 0 ||
	    ca_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature",
	               err) < 0 ||
	    ca_add_ext(x, x, NID_subject_key_identifier, "hash", err) < 0)
		goto fail;
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto fail_ssl;
	return x;
fail_ssl:
	if (!err->len)
		ca_ssl_err(err, "building the root certificate");
fail:
	X509_free(x);
	return NULL;
}

/* ---- files ---- */

/* PEM of a private key (PKCS#8) written to path with mode 0600. The PEM text lives in a
 * secure-memory BIO and is cleansed before it is freed. */
static int ca_write_key(const char *path, EVP_PKEY *key, struct sbuf *err)
{
	BIO *b = BIO_new(BIO_s_secmem());
	char *data;
	long n;
	int ret = -1;

	if (!b || !PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)) {
		ca_ssl_err(err, "encoding the private key");
		goto out;
	}
	n = BIO_get_mem_data(b, &data);
	if (file_write_atomic(path, data, (size_t)n, 0600) < 0) {
		sbuf_addf(err, "%s: %s", path, strerror(errno));
		OPENSSL_cleanse(data, (size_t)n);
		goto out;
	}
	OPENSSL_cleanse(data, (size_t)n);
	ret = 0;
out:
	BIO_free(b);
	return ret;
}

static int ca_write_cert(const char *path, X509 *cert, struct sbuf *err)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long n;
	int ret = -1;

	if (!b || !PEM_write_bio_X509(b, cert)) {
		ca_ssl_err(err, "encoding a certificate");
		goto out;
	}
	n = BIO_get_mem_data(b, &data);
	if (file_write_atomic(path, data, (size_t)n, 0644) < 0) {
		sbuf_addf(err, "%s: %s", path, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	BIO_free(b);
	return ret;
}

static bool ca_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Creates dir with mode 0700 (it will hold the root key); missing parents are made with
 * the usual 0755. An existing dir is left as it is. */
static int ca_mkdir_private(const char *dir)
{
	char *parent = xstrdup(dir);
	char *slash = strrchr(parent, '/');
	int ret = 0;

	while (slash && slash > parent && slash[1] == '\0') {
		*slash = '\0';
		slash = strrchr(parent, '/');
	}
	if (slash && slash != parent) {
		*slash = '\0';
		ret = mkdir_p(parent, 0755);
	}
	free(parent);
	if (ret == 0 && mkdir(dir, 0700) < 0 && errno != EEXIST)
		ret = -1;
	return ret;
}

int ca_create(const char *dir, const char *trust_domain, struct sbuf *err)
{
	char *certp = ca_path(dir, CA_ROOT_CERT_FILE);
	char *keyp = ca_path(dir, CA_ROOT_KEY_FILE);
	char *tdp = ca_path(dir, CA_TRUST_DOMAIN_FILE);
	char *tdline = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int ret = -1;

	if (!trust_domain)
		trust_domain = CA_DEFAULT_TRUST_DOMAIN;
	if (!ca_trust_domain_valid(trust_domain)) {
		sbuf_addf(err, "invalid trust domain \"%s\" (want lowercase letters, digits, "
		          "'.', '-', '_')", trust_domain);
		goto out;
	}
	if (ca_exists(certp) || ca_exists(keyp)) {
		sbuf_addf(err, "%s already holds a CA (%s); remove it first to create a new root",
		          dir, ca_exists(certp) ? CA_ROOT_CERT_FILE : CA_ROOT_KEY_FILE);
		goto out;
	}
	if (ca_mkdir_private(dir) < 0) {
		sbuf_addf(err, "%s: %s", dir, strerror(errno));
		goto out;
	}
	key = ca_new_key(err);
	if (!key)
		goto out;
	cert = ca_make_root(key, trust_domain, err);
	if (!cert)
		goto out;
	/* Key first: a root certificate without its key would be a CA that cannot sign. */
	if (ca_write_key(keyp, key, err) < 0 || ca_write_cert(certp, cert, err) < 0)
		goto out;
	tdline = xasprintf("%s\n", trust_domain);
	if (file_write_atomic(tdp, tdline, strlen(tdline), 0644) < 0) {
		sbuf_addf(err, "%s: %s", tdp, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	free(tdline);
	X509_free(cert);
	EVP_PKEY_free(key);
	free(tdp);
	free(keyp);
	free(certp);
	return ret;
}

/* Reads the trust-domain file: its first line, surrounding whitespace removed. A missing
 * file means the default, so that a root brought from elsewhere works with two files. */
static int ca_read_trust_domain(const char *dir, char **out, struct sbuf *err)
{
	char *path = ca_path(dir, CA_TRUST_DOMAIN_FILE);
	char *buf = NULL, *s, *e;
	int ret = -1;

	if (file_read_all(path, &buf, NULL) < 0) {
		if (errno == ENOENT) {
			*out = xstrdup(CA_DEFAULT_TRUST_DOMAIN);
			ret = 0;
		} else {
			sbuf_addf(err, "%s: %s", path, strerror(errno));
		}
		goto out;
	}
	s = buf + strspn(buf, " \t\r\n");
	e = s + strcspn(s, "\r\n");
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*e = '\0';
	if (!ca_trust_domain_valid(s)) {
		sbuf_addf(err, "%s: invalid trust domain \"%s\"", path, s);
		goto out;
	}
	*out = xstrdup(s);
	ret = 0;
out:
	free(buf);
	free(path);
	return ret;
}

int ca_load(const char *dir, struct ca *out, struct sbuf *err)
{
	char *certp = ca_path(dir, CA_ROOT_CERT_FILE);
	char *keyp = ca_path(dir, CA_ROOT_KEY_FILE);
	BIO *b = NULL;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	b = BIO_new_file(certp, "r");
	if (!b || !(out->cert = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		sbuf_addf(err, "%s: ", certp);
		ca_ssl_err(err, b ? "not a PEM certificate" : "cannot open");
		goto out;
	}
	BIO_free(b);
	b = BIO_new_file(keyp, "r");
	if (!b || !(out->key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL))) {
		/* The reason text is about the format; never the key bytes. */
		sbuf_addf(err, "%s: ", keyp);
		ca_ssl_err(err, b ? "not a PEM private key" : "cannot open");
		goto out;
	}
	if (X509_check_private_key(out->cert, out->key) != 1) {
		ERR_clear_error();
		sbuf_addf(err, "%s does not belong to %s", keyp, certp);
		goto out;
	}
	if (X509_check_ca(out->cert) == 0) {
		sbuf_addf(err, "%s is not a CA certificate", certp);
		goto out;
	}
	if (ca_read_trust_domain(dir, &out->trust_domain, err) < 0)
		goto out;
	ret = 0;
out:
	BIO_free(b);
	if (ret < 0)
		ca_fini(out);
	free(keyp);
	free(certp);
	return ret;
}

void ca_fini(struct ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);  /* OpenSSL clears private key memory on free */
	free(ca->trust_domain);
	memset(ca, 0, sizeof(*ca));
}

int ca_cert_not_after(const X509 *cert, time_t *out)
{
	const ASN1_TIME *t = X509_get0_notAfter(cert);
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	*out = timegm(&tm);
	return 0;
}

/* ---- issuing ---- */

static int ca_check_req(const struct ca *ca, const struct ca_issue_req *req, struct sbuf *err)
{
	time_t root_end, now = time(NULL);

	if (!req->ns || !ca_namespace_valid(req->ns)) {
		sbuf_addf(err, "invalid namespace \"%s\" (want a DNS-1123 label)",
		          req->ns ? req->ns : "");
		return -1;
	}
	if (!req->sa || !ca_service_account_valid(req->sa)) {
		sbuf_addf(err, "invalid service account \"%s\" (want a DNS-1123 subdomain)",
		          req->sa ? req->sa : "");
		return -1;
	}
	for (size_t i = 0; i < req->ndns; i++) {
		const char *d = req->dns[i];
		/* A wildcard is allowed in the leftmost label only. */
		const char *rest = str_has_prefix(d, "*.") ? d + 2 : d;

		if (!ca_dns1123_valid(rest, 253, true)) {
			sbuf_addf(err, "invalid DNS name \"%s\"", d);
			return -1;
		}
	}
	if (req->ttl_sec <= 0) {
		sbuf_addf(err, "the TTL must be at least 1s");
		return -1;
	}
	if (ca_cert_not_after(ca->cert, &root_end) < 0) {
		sbuf_addf(err, "cannot read the root certificate's expiry");
		return -1;
	}
	if (req->ttl_sec > (int64_t)(root_end - now)) {
		sbuf_addf(err, "the TTL goes past the root certificate's expiry");
		return -1;
	}
	return 0;
}

int ca_issue(const struct ca *ca, const struct ca_issue_req *req, struct ca_leaf *out,
             struct sbuf *err)
{
	struct sbuf uri = SBUF_INIT;
	X509 *x = NULL;
	EVP_PKEY *key = NULL;

	memset(out, 0, sizeof(*out));
	if (ca_check_req(ca, req, err) < 0)
		return -1;
	key = ca_new_key(err);
	if (!key)
		goto fail;
	x = X509_new();
	if (!x) {
		ca_ssl_err(err, "allocating a certificate");
		goto fail;
	}
	if (!X509_set_version(x, 2) || ca_set_serial(x, err) < 0 ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -60) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)req->ttl_sec) ||
	    !X509_set_pubkey(x, key)) {
		if (!err->len)
			ca_ssl_err(err, "building the workload certificate");
		goto fail;
	}
	ca_spiffe_id(ca->trust_domain, req->ns, req->sa, &uri);
	if (ca_add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE", err) < 0 ||
	    ca_add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature,keyEncipherment",
	               err) < 0 ||
	    ca_add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth,clientAuth", err) < 0 ||
	    ca_add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always", err) < 0 ||
	    ca_add_san(x, sbuf_str(&uri), req->dns, req->ndns, err) < 0)
		goto fail;
	if (X509_sign(x, ca->key, EVP_sha256()) <= 0) {
		ca_ssl_err(err, "signing the workload certificate");
		goto fail;
	}
	sbuf_free(&uri);
	out->cert = x;
	out->key = key;
	return 0;
fail:
	sbuf_free(&uri);
	X509_free(x);
	EVP_PKEY_free(key);
	return -1;
}

void ca_leaf_fini(struct ca_leaf *leaf)
{
	X509_free(leaf->cert);
	EVP_PKEY_free(leaf->key);
	memset(leaf, 0, sizeof(*leaf));
}

int ca_write_workload(const struct ca *ca, const struct ca_leaf *leaf, const char *outdir,
                      struct sbuf *err)
{
	char *chain = ca_path(outdir, CA_WORKLOAD_CHAIN_FILE);
	char *key = ca_path(outdir, CA_WORKLOAD_KEY_FILE);
	char *root = ca_path(outdir, CA_WORKLOAD_ROOT_FILE);
	int ret = -1;

	if (mkdir_p(outdir, 0755) < 0) {
		sbuf_addf(err, "%s: %s", outdir, strerror(errno));
		goto out;
	}
	/* Key before certificate: a reader that sees the new certificate finds its key. */
	if (ca_write_key(key, leaf->key, err) < 0 || ca_write_cert(chain, leaf->cert, err) < 0 ||
	    ca_write_cert(root, ca->cert, err) < 0)
		goto out;
	ret = 0;
out:
	free(root);
	free(key);
	free(chain);
	return ret;
}
