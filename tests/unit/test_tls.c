/* Tests for net/tls against real peers on 127.0.0.1.
 *
 * Client side: `openssl s_server -www` with certificates made here: the walkthrough's own
 * (its openssl commands, RSA-2048, an X.509 v1 server certificate with only a CN) and
 * others made with OpenSSL's API (EC P-256, signed by the walkthrough CA): SANs,
 * expired, not yet valid, self-signed, unknown CA, revoked (CRL), SPIFFE URI SAN,
 * clientAuth-only EKU. Server side: our server contexts against `openssl s_client` and
 * against our own client, for client certificates, ALPN, SNI dispatch, ISTIO_MUTUAL. */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/sbuf.h"
#include "core/util.h"
#include "net/sock.h"
#include "net/tls.h"

static char dir[64];

static const char *path(const char *name)
{
	static char bufs[8][256];
	static int i;
	char *b = bufs[i++ % 8];

	snprintf(b, 256, "%s/%s", dir, name);
	return b;
}

/* ---- certificate factory ---- */

static X509 *ca_cert;          /* the walkthrough's example.com root (RSA) */
static EVP_PKEY *ca_key;

struct spec {
	const char *cn;
	const char *san;           /* X509v3 value, e.g. "DNS:a.test,IP:127.0.0.1" */
	const char *eku;           /* e.g. "serverAuth"; NULL: no EKU */
	long nb_days, na_days;     /* validity, relative to now */
	bool ca;
	uint64_t serial;
	X509 *issuer;              /* NULL: self-signed */
	EVP_PKEY *issuer_key;
};

static void add_ext(X509 *x, X509V3_CTX *v, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, v, nid, value);

	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

static void write_cert_key(const char *name, X509 *x, EVP_PKEY *k)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s.crt", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	PEM_write_X509(f, x);
	fclose(f);
	if (!k)
		return;
	snprintf(p, sizeof(p), "%s/%s.key", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
}

static void mkcert(const char *name, const struct spec *s, X509 **xo, EVP_PKEY **ko)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	X509V3_CTX v;

	assert_non_null(k);
	X509_set_version(x, 2);
	ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), s->serial ? s->serial : 1000);
	X509_gmtime_adj(X509_getm_notBefore(x), s->nb_days * 86400);
	X509_gmtime_adj(X509_getm_notAfter(x), s->na_days * 86400);
	X509_set_pubkey(x, k);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)s->cn, -1, -1, 0);
	X509_set_issuer_name(x, s->issuer ? X509_get_subject_name(s->issuer) : n);
	X509V3_set_ctx(&v, s->issuer ? s->issuer : x, x, NULL, NULL, 0);
	add_ext(x, &v, NID_basic_constraints, s->ca ? "critical,CA:TRUE" : "CA:FALSE");
	if (s->ca) {
		add_ext(x, &v, NID_key_usage, "critical,keyCertSign,cRLSign");
		add_ext(x, &v, NID_subject_key_identifier, "hash");
	}
	if (s->san)
		add_ext(x, &v, NID_subject_alt_name, s->san);
	if (s->eku)
		add_ext(x, &v, NID_ext_key_usage, s->eku);
	assert_true(X509_sign(x, s->issuer_key ? s->issuer_key : k, EVP_sha256()) > 0);
	write_cert_key(name, x, k);
	if (xo)
		*xo = x;
	else
		X509_free(x);
	if (ko)
		*ko = k;
	else
		EVP_PKEY_free(k);
}

static void mkcrl(const char *name, X509 *issuer, EVP_PKEY *key, const long *revoked, int n)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_adj(NULL, time(NULL), 0, -3600);
	FILE *f;

	X509_CRL_set_version(crl, 1);
	X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer));
	X509_CRL_set1_lastUpdate(crl, t);
	for (int i = 0; i < n; i++) {
		X509_REVOKED *r = X509_REVOKED_new();
		ASN1_INTEGER *sn = ASN1_INTEGER_new();

		ASN1_INTEGER_set(sn, revoked[i]);
		X509_REVOKED_set_serialNumber(r, sn);
		X509_REVOKED_set_revocationDate(r, t);
		X509_CRL_add0_revoked(crl, r);
		ASN1_INTEGER_free(sn);
	}
	ASN1_TIME_adj(t, time(NULL), 30, 0);
	X509_CRL_set1_nextUpdate(crl, t);
	X509_CRL_sort(crl);
	assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
	f = fopen(path(name), "w");
	assert_non_null(f);
	PEM_write_X509_CRL(f, crl);
	fclose(f);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
}

static void cat_files(const char *out, const char *a, const char *b)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "cat %s %s > %s", path(a), b ? path(b) : "", path(out));
	assert_int_equal(system(cmd), 0);
}

static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int group_setup(void **state)
{
	X509 *other_ca, *mesh_root;
	EVP_PKEY *other_key, *mesh_key;
	FILE *f;
	long revoked[] = { 77 };

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/egtls.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	/* The walkthrough's commands, verbatim but for file names. */
	if (sh("cd %s && openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 "
	       "-subj '/O=example Inc./CN=example.com' -keyout example.com.key -out example.com.crt "
	       ">/dev/null 2>&1", dir) ||
	    sh("cd %s && openssl req -out nginx.csr -newkey rsa:2048 -nodes -keyout nginx.key "
	       "-subj '/CN=my-nginx.mesh-external.svc.cluster.local/O=some organization' "
	       ">/dev/null 2>&1", dir) ||
	    sh("cd %s && openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey "
	       "example.com.key -set_serial 0 -in nginx.csr -out nginx.crt >/dev/null 2>&1", dir) ||
	    sh("cd %s && openssl req -out client.csr -newkey rsa:2048 -nodes -keyout client.key "
	       "-subj '/CN=client.example.com/O=client organization' >/dev/null 2>&1", dir) ||
	    sh("cd %s && openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey "
	       "example.com.key -set_serial 1 -in client.csr -out client.crt >/dev/null 2>&1", dir))
		return -1;
	f = fopen(path("example.com.crt"), "r");
	ca_cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	f = fopen(path("example.com.key"), "r");
	ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!ca_cert || !ca_key)
		return -1;

	mkcert("good", &(struct spec){ .cn = "good", .san = "DNS:good.test,DNS:*.wild.test,IP:127.0.0.1",
	       .eku = "serverAuth", .nb_days = -1, .na_days = 30, .issuer = ca_cert,
	       .issuer_key = ca_key, .serial = 16491643791048004260ull }, NULL, NULL);
	mkcert("expired", &(struct spec){ .cn = "expired", .san = "DNS:good.test",
	       .nb_days = -30, .na_days = -1, .issuer = ca_cert, .issuer_key = ca_key }, NULL, NULL);
	mkcert("notyet", &(struct spec){ .cn = "notyet", .san = "DNS:good.test",
	       .nb_days = 2, .na_days = 30, .issuer = ca_cert, .issuer_key = ca_key }, NULL, NULL);
	mkcert("selfsigned", &(struct spec){ .cn = "selfsigned", .san = "DNS:good.test",
	       .nb_days = -1, .na_days = 30 }, NULL, NULL);
	mkcert("otherca", &(struct spec){ .cn = "Other CA", .ca = true, .nb_days = -1,
	       .na_days = 30 }, &other_ca, &other_key);
	mkcert("othercert", &(struct spec){ .cn = "other", .san = "DNS:good.test",
	       .nb_days = -1, .na_days = 30, .issuer = other_ca, .issuer_key = other_key }, NULL, NULL);
	mkcert("othercl", &(struct spec){ .cn = "other client", .nb_days = -1, .na_days = 30,
	       .issuer = other_ca, .issuer_key = other_key }, NULL, NULL);
	mkcert("revoked", &(struct spec){ .cn = "revoked", .san = "DNS:good.test", .serial = 77,
	       .nb_days = -1, .na_days = 30, .issuer = ca_cert, .issuer_key = ca_key }, NULL, NULL);
	mkcrl("crl.pem", ca_cert, ca_key, revoked, 1);
	mkcert("spiffe", &(struct spec){ .cn = "nginx",
	       .san = "URI:spiffe://cluster.local/ns/mesh-external/sa/nginx",
	       .nb_days = -1, .na_days = 30, .issuer = ca_cert, .issuer_key = ca_key }, NULL, NULL);
	mkcert("clientonly", &(struct spec){ .cn = "clientonly", .san = "DNS:good.test",
	       .eku = "clientAuth", .nb_days = -1, .na_days = 30, .issuer = ca_cert,
	       .issuer_key = ca_key }, NULL, NULL);
	mkcert("a.example", &(struct spec){ .cn = "a", .san = "DNS:a.example.com", .nb_days = -1,
	       .na_days = 30, .issuer = ca_cert, .issuer_key = ca_key }, NULL, NULL);
	mkcert("b.example", &(struct spec){ .cn = "b", .san = "DNS:b.example.com", .nb_days = -1,
	       .na_days = 30, .issuer = ca_cert, .issuer_key = ca_key }, NULL, NULL);
	/* Mesh: a root, the gateway's workload identity (Istio's file layout), a client. */
	mkcert("meshroot", &(struct spec){ .cn = "cluster.local root", .ca = true, .nb_days = -1,
	       .na_days = 30 }, &mesh_root, &mesh_key);
	mkcert("gw", &(struct spec){ .cn = "gw",
	       .san = "URI:spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account",
	       .eku = "serverAuth,clientAuth", .nb_days = -1, .na_days = 1, .issuer = mesh_root,
	       .issuer_key = mesh_key }, NULL, NULL);
	mkcert("sleep", &(struct spec){ .cn = "sleep",
	       .san = "URI:spiffe://cluster.local/ns/default/sa/sleep",
	       .eku = "serverAuth,clientAuth", .nb_days = -1, .na_days = 1, .issuer = mesh_root,
	       .issuer_key = mesh_key }, NULL, NULL);
	if (sh("mkdir -p %s/identity && cp %s/gw.crt %s/identity/cert-chain.pem && "
	       "cp %s/gw.key %s/identity/key.pem && cp %s/meshroot.crt %s/identity/root-cert.pem",
	       dir, dir, dir, dir, dir, dir, dir))
		return -1;
	X509_free(other_ca);
	EVP_PKEY_free(other_key);
	X509_free(mesh_root);
	EVP_PKEY_free(mesh_key);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	X509_free(ca_cert);
	EVP_PKEY_free(ca_key);
	return sh("rm -rf %s", dir) == 0 ? 0 : -1;
}

/* ---- peers ---- */

struct peer {
	pid_t pid;
	int port;
};

/* Every peer process started, so that a failed test (which longjmps out) does not leave
 * servers behind: the per-test teardown stops them. */
static pid_t running[16];

static void track(pid_t pid)
{
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		if (running[i] <= 0) {
			running[i] = pid;
			return;
		}
}

static void untrack(pid_t pid)
{
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		if (running[i] == pid)
			running[i] = 0;
}

static int stop_all(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		if (running[i] > 0) {
			kill(running[i], SIGTERM);
			waitpid(running[i], NULL, 0);
			running[i] = 0;
		}
	return 0;
}

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd;

		/* Dies with the test, even when the test itself crashes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDONLY);

		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Starts `openssl s_server -www` with cert/key NAME.crt/NAME.key plus extra arguments
 * (NULL-terminated), and waits for its "ACCEPT 127.0.0.1:PORT" line. */
static void server_start(struct peer *p, const char *name, ...)
{
	char *argv[32], certp[256], keyp[256], log[256], buf[4096];
	int argc = 0;
	const char *a;
	va_list ap;

	snprintf(certp, sizeof(certp), "%s/%s.crt", dir, name);
	snprintf(keyp, sizeof(keyp), "%s/%s.key", dir, name);
	snprintf(log, sizeof(log), "%s/s_server.%s.log", dir, name);
	argv[argc++] = "openssl";
	argv[argc++] = "s_server";
	argv[argc++] = "-accept";
	argv[argc++] = "127.0.0.1:0";
	argv[argc++] = "-www";
	argv[argc++] = "-cert";
	argv[argc++] = certp;
	argv[argc++] = "-key";
	argv[argc++] = keyp;
	va_start(ap, name);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 30)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	unlink(log);            /* never read a previous server's port */
	p->pid = spawn(argv, log);
	track(p->pid);
	p->port = 0;
	for (int i = 0; i < 500 && !p->port; i++) {
		FILE *f = fopen(log, "r");
		size_t n = 0;
		char *m;

		if (f) {
			n = fread(buf, 1, sizeof(buf) - 1, f);
			fclose(f);
		}
		buf[n] = '\0';
		m = strstr(buf, "ACCEPT 127.0.0.1:");
		if (m && strchr(m, '\n'))
			p->port = atoi(m + strlen("ACCEPT 127.0.0.1:"));
		else
			usleep(10000);
	}
	if (!p->port)
		fail_msg("s_server did not start: %s", buf);
}

static void peer_stop(struct peer *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGTERM);
		waitpid(p->pid, NULL, 0);
		untrack(p->pid);
		p->pid = -1;
	}
}

static int wait_fd(int fd, int rc, int ms)
{
	struct pollfd pf = { .fd = fd, .events = rc == TLS_WANT_WRITE ? POLLOUT : POLLIN };

	return poll(&pf, 1, ms);
}

static int connect_port(int port)
{
	struct sock_addr a;
	int fd, rc;

	assert_int_equal(sock_addr_from_ip("127.0.0.1", (uint16_t)port, &a), 0);
	rc = sock_connect(&a, NULL, &fd);
	assert_true(rc == 0 || rc == 1);
	if (rc == 1)
		assert_int_equal(wait_fd(fd, TLS_WANT_WRITE, 3000), 1);
	assert_int_equal(sock_connect_result(fd), 0);
	return fd;
}

/* Drives a handshake on a blocking-style poll loop: 0, -1, or fails the test on timeout. */
static int drive_handshake(struct tls_conn *c, int fd)
{
	for (;;) {
		int rc = tls_handshake(c);

		if (rc == 0 || rc == -1)
			return rc;
		if (wait_fd(fd, rc, 5000) != 1)
			fail_msg("handshake timed out");
	}
}

static ssize_t write_all(struct tls_conn *c, int fd, const char *s)
{
	size_t n = strlen(s), off = 0;

	while (off < n) {
		ssize_t w = tls_write(c, s + off, n - off);

		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w == -1)
			return -1;
		if (wait_fd(fd, (int)w, 5000) != 1)
			fail_msg("write timed out");
	}
	return (ssize_t)off;
}

/* Reads until the peer closes; -1 on a TLS error. */
static ssize_t read_all(struct tls_conn *c, int fd, char *buf, size_t cap)
{
	size_t got = 0;

	for (;;) {
		ssize_t r = tls_read(c, buf + got, cap - 1 - got);

		if (r > 0) {
			got += (size_t)r;
			if (got == cap - 1)
				break;
			continue;
		}
		if (r == 0)
			break;
		if (r == -1)
			return -1;
		if (wait_fd(fd, (int)r, 5000) != 1)
			fail_msg("read timed out");
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

/* One client exchange: connect, handshake, GET, read the whole response. */
struct result {
	int rc;                 /* 0 ok; -1 failed (in handshake or in the exchange) */
	bool hs_ok;             /* the handshake itself succeeded */
	bool resumed;
	char cat[64];
	char err[400];
	char alpn[32];
	char body[8192];
};

static void client_run(struct tls_ctx *ctx, int port, const char *sni,
                       const struct tls_verify_names *nm, struct tls_sess_cache *cache,
                       struct result *r)
{
	int fd = connect_port(port);
	struct tls_conn *c = tls_client_new(ctx, fd, sni, nm);
	struct sock_addr ep;

	memset(r, 0, sizeof(*r));
	assert_null(tls_conn_error(c));
	assert_string_equal(tls_conn_category(c), "");
	if (cache) {
		sock_addr_from_ip("127.0.0.1", (uint16_t)port, &ep);
		tls_client_resume(c, cache, &ep);
	}
	r->rc = drive_handshake(c, fd);
	r->hs_ok = r->rc == 0;
	if (r->rc == 0) {
		r->resumed = tls_conn_resumed(c);
		snprintf(r->alpn, sizeof(r->alpn), "%s", tls_conn_alpn(c) ? tls_conn_alpn(c) : "");
		if (write_all(c, fd, "GET / HTTP/1.0\r\n\r\n") < 0 ||
		    read_all(c, fd, r->body, sizeof(r->body)) < 0)
			r->rc = -1;
		else
			tls_shutdown(c);
	}
	if (r->rc == -1) {
		assert_non_null(tls_conn_error(c));
		snprintf(r->cat, sizeof(r->cat), "%s", tls_conn_category(c));
		snprintf(r->err, sizeof(r->err), "%s", tls_conn_error(c));
	}
	tls_conn_free(c);
	close(fd);
}

static struct tls_ctx *client_ctx(const char *ca, const char *cert, const char *key,
                                  const char *crl, int maxv)
{
	struct tls_client_params p;
	struct sbuf err = SBUF_INIT;
	struct tls_ctx *ctx;

	memset(&p, 0, sizeof(p));
	if (ca)
		p.ca.file = path(ca);
	if (cert)
		p.cert.file = path(cert);
	if (key)
		p.key.file = path(key);
	if (crl)
		p.crl.file = path(crl);
	p.max_version = maxv;
	ctx = tls_client_ctx_new(&p, &err);
	if (!ctx)
		fail_msg("tls_client_ctx_new: %s", sbuf_str(&err));
	sbuf_free(&err);
	return ctx;
}

static void expect_ok(const struct result *r)
{
	if (r->rc != 0)
		fail_msg("expected success, got %s: %s", r->cat, r->err);
	assert_non_null(strstr(r->body, "HTTP/1.0 200"));
}

static void expect_fail(const struct result *r, const char *cat, const char *text)
{
	if (r->rc != -1)
		fail_msg("expected failure %s, got success", cat);
	if (strcmp(r->cat, cat) != 0 || !strstr(r->err, text))
		fail_msg("expected %s / \"%s\", got %s / %s", cat, text, r->cat, r->err);
	if (getenv("TLS_TEST_VERBOSE"))
		fprintf(stderr, "  %-22s %s\n", r->cat, r->err);
	assert_true(strncmp(r->err, "TLS_error:|", 11) == 0);
	assert_non_null(strstr(r->err, ":TLS_error_end"));
}

/* ---- client tests ---- */

/* The walkthrough: an X.509 v1 server certificate with only a CN, sni set and no
 * subjectAltNames: chain only, and it works; the server requires our client cert. */
static void test_walkthrough_v1_mutual(void **state)
{
	struct peer s;
	struct tls_ctx *ctx = client_ctx("example.com.crt", "client.crt", "client.key", NULL, 0);
	struct result r;

	(void)state;
	server_start(&s, "nginx", "-Verify", "1", "-CAfile", path("example.com.crt"), NULL);
	client_run(ctx, s.port, "my-nginx.mesh-external.svc.cluster.local", NULL, NULL, &r);
	expect_ok(&r);
	/* Automatic SAN validation of the same certificate fails: a CN is not a name. */
	client_run(ctx, s.port, "my-nginx.mesh-external.svc.cluster.local",
	           &(struct tls_verify_names){ .hostname = "my-nginx.mesh-external.svc.cluster.local" },
	           NULL, &r);
	expect_fail(&r, TLS_CAT_HOSTNAME_MISMATCH,
	            "CERTIFICATE_VERIFY_FAILED:hostname mismatch (want my-nginx.mesh-external.svc.cluster.local; depth 0: CN=my-nginx");
	peer_stop(&s);
	tls_ctx_unref(ctx);
}

static void test_hostname_checks(void **state)
{
	struct peer s;
	struct tls_ctx *ctx = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct result r;

	(void)state;
	server_start(&s, "good", NULL);
	client_run(ctx, s.port, "good.test", &(struct tls_verify_names){ .hostname = "good.test" },
	           NULL, &r);
	expect_ok(&r);
	client_run(ctx, s.port, "x.wild.test", &(struct tls_verify_names){ .hostname = "x.wild.test" },
	           NULL, &r);
	expect_ok(&r);
	/* One label only for a wildcard. */
	client_run(ctx, s.port, "a.b.wild.test",
	           &(struct tls_verify_names){ .hostname = "a.b.wild.test" }, NULL, &r);
	expect_fail(&r, TLS_CAT_HOSTNAME_MISMATCH, "hostname mismatch");
	client_run(ctx, s.port, NULL, &(struct tls_verify_names){ .hostname = "127.0.0.1" }, NULL, &r);
	expect_ok(&r);
	client_run(ctx, s.port, "wrong.test", &(struct tls_verify_names){ .hostname = "wrong.test" },
	           NULL, &r);
	expect_fail(&r, TLS_CAT_HOSTNAME_MISMATCH, "hostname mismatch (want wrong.test; depth 0: CN=good)");
	/* Chain only (no names) accepts any name. */
	client_run(ctx, s.port, "wrong.test", NULL, NULL, &r);
	expect_ok(&r);
	peer_stop(&s);
	tls_ctx_unref(ctx);
}

static void test_chain_failures(void **state)
{
	struct tls_ctx *ctx = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct tls_verify_names nm = { .hostname = "good.test" };
	struct peer s;
	struct result r;

	(void)state;
	server_start(&s, "expired", NULL);
	client_run(ctx, s.port, "good.test", &nm, NULL, &r);
	expect_fail(&r, TLS_CAT_CERT_EXPIRED,
	            "TLS_error:|CERTIFICATE_VERIFY_FAILED:certificate has expired");
	peer_stop(&s);

	server_start(&s, "notyet", NULL);
	client_run(ctx, s.port, "good.test", &nm, NULL, &r);
	expect_fail(&r, TLS_CAT_CERT_NOT_YET_VALID, "certificate is not yet valid");
	peer_stop(&s);

	server_start(&s, "selfsigned", NULL);
	client_run(ctx, s.port, "good.test", &nm, NULL, &r);
	expect_fail(&r, TLS_CAT_SELF_SIGNED, "self-signed certificate");
	peer_stop(&s);

	server_start(&s, "othercert", NULL);
	client_run(ctx, s.port, "good.test", &nm, NULL, &r);
	expect_fail(&r, TLS_CAT_UNKNOWN_CA, "unable to get local issuer certificate");
	peer_stop(&s);

	server_start(&s, "clientonly", NULL);
	client_run(ctx, s.port, "good.test", &nm, NULL, &r);
	expect_fail(&r, TLS_CAT_BAD_PURPOSE, "unsuitable certificate purpose");
	peer_stop(&s);
	tls_ctx_unref(ctx);
}

static void test_crl(void **state)
{
	struct tls_ctx *ctx = client_ctx("example.com.crt", NULL, NULL, "crl.pem", 0);
	struct tls_verify_names nm = { .hostname = "good.test" };
	struct peer s;
	struct result r;

	(void)state;
	server_start(&s, "revoked", NULL);
	client_run(ctx, s.port, "good.test", &nm, NULL, &r);
	expect_fail(&r, TLS_CAT_REVOKED, "certificate revoked");
	peer_stop(&s);
	/* The same CRL lets a certificate that is not on it through. */
	server_start(&s, "good", NULL);
	client_run(ctx, s.port, "good.test", &nm, NULL, &r);
	expect_ok(&r);
	peer_stop(&s);
	tls_ctx_unref(ctx);
}

static void test_san_list(void **state)
{
	struct tls_ctx *ctx = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	const char *spiffe[] = { "spiffe://cluster.local/ns/other/sa/x",
	                         "spiffe://cluster.local/ns/mesh-external/sa/nginx" };
	const char *wrong[] = { "spiffe://cluster.local/ns/mesh-external/sa/evil", "nginx" };
	const char *dns[] = { "good.test" };
	const char *wild[] = { "foo.wild.test" };
	const char *ip[] = { "127.0.0.1" };
	struct peer s;
	struct result r;

	(void)state;
	server_start(&s, "spiffe", NULL);
	client_run(ctx, s.port, "nginx.mesh",
	           &(struct tls_verify_names){ .sans = spiffe, .nsans = 2 }, NULL, &r);
	expect_ok(&r);
	/* Neither a wrong URI nor the CN matches. */
	client_run(ctx, s.port, "nginx.mesh",
	           &(struct tls_verify_names){ .sans = wrong, .nsans = 2 }, NULL, &r);
	expect_fail(&r, TLS_CAT_SAN_MISMATCH,
	            "no SubjectAltName matches [spiffe://cluster.local/ns/mesh-external/sa/evil, nginx]");
	peer_stop(&s);

	server_start(&s, "good", NULL);
	client_run(ctx, s.port, "x", &(struct tls_verify_names){ .sans = dns, .nsans = 1 }, NULL, &r);
	expect_ok(&r);
	client_run(ctx, s.port, "x", &(struct tls_verify_names){ .sans = wild, .nsans = 1 }, NULL, &r);
	expect_ok(&r);
	client_run(ctx, s.port, "x", &(struct tls_verify_names){ .sans = ip, .nsans = 1 }, NULL, &r);
	expect_ok(&r);
	/* The list wins over a hostname. */
	client_run(ctx, s.port, "x",
	           &(struct tls_verify_names){ .hostname = "wrong.test", .sans = dns, .nsans = 1 },
	           NULL, &r);
	expect_ok(&r);
	peer_stop(&s);
	tls_ctx_unref(ctx);
}

static void test_client_cert_required(void **state)
{
	struct tls_ctx *none13 = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct tls_ctx *none12 = client_ctx("example.com.crt", NULL, NULL, NULL, TLS_V1_2);
	struct tls_ctx *other = client_ctx("example.com.crt", "othercl.crt", "othercl.key", NULL, 0);
	struct tls_ctx *other12 = client_ctx("example.com.crt", "othercl.crt", "othercl.key", NULL,
	                                     TLS_V1_2);
	struct tls_ctx *good12 = client_ctx("example.com.crt", "client.crt", "client.key", NULL,
	                                    TLS_V1_2);
	struct peer s;
	struct result r;

	(void)state;
	server_start(&s, "good", "-Verify", "1", "-verify_return_error", "-CAfile",
	             path("example.com.crt"), NULL);
	/* TLS 1.3: our handshake completes; the server's alert arrives on the first read. */
	client_run(none13, s.port, "good.test", NULL, NULL, &r);
	assert_true(r.hs_ok);
	expect_fail(&r, TLS_CAT_CLIENT_CERT_REQUIRED,
	            "server requires a client certificate and none is configured");
	/* TLS 1.2: the handshake itself fails. */
	client_run(none12, s.port, "good.test", NULL, NULL, &r);
	assert_false(r.hs_ok);
	expect_fail(&r, TLS_CAT_CLIENT_CERT_REQUIRED, "none is configured");
	/* A certificate from a CA the server does not trust. */
	client_run(other, s.port, "good.test", NULL, NULL, &r);
	expect_fail(&r, TLS_CAT_PEER_UNKNOWN_CA,
	            "TLSV1_ALERT_UNKNOWN_CA:the server does not trust the CA of our certificate");
	client_run(other12, s.port, "good.test", NULL, NULL, &r);
	assert_false(r.hs_ok);
	expect_fail(&r, TLS_CAT_PEER_UNKNOWN_CA, "TLSV1_ALERT_UNKNOWN_CA");
	client_run(good12, s.port, "good.test", NULL, NULL, &r);
	expect_ok(&r);
	peer_stop(&s);
	tls_ctx_unref(none13);
	tls_ctx_unref(none12);
	tls_ctx_unref(other);
	tls_ctx_unref(other12);
	tls_ctx_unref(good12);
}

static void check_resumption(struct tls_ctx *ctx, int port, bool tls12)
{
	struct tls_sess_cache *cache = tls_sess_cache_new(0);
	const struct tls_sess_stats *st = tls_sess_cache_stats(cache);
	struct result r;

	client_run(ctx, port, "good.test", NULL, cache, &r);
	expect_ok(&r);
	assert_false(r.resumed);
	assert_non_null(strstr(r.body, tls12 ? "TLSv1.2" : "TLSv1.3"));
	assert_int_equal(tls_sess_cache_size(cache), 1);
	assert_true(st->stored >= 1);
	client_run(ctx, port, "good.test", NULL, cache, &r);
	expect_ok(&r);
	assert_true(r.resumed);
	client_run(ctx, port, "good.test", NULL, cache, &r);
	expect_ok(&r);
	assert_true(r.resumed);
	assert_int_equal(st->full, 1);
	assert_int_equal(st->resumed, 2);
	assert_int_equal(st->offered, 2);
	/* Another SNI is another key: full handshake. */
	client_run(ctx, port, "other.test", NULL, cache, &r);
	expect_ok(&r);
	assert_false(r.resumed);
	assert_int_equal(tls_sess_cache_size(cache), 2);
	/* Without a cache: no resumption. */
	client_run(ctx, port, "good.test", NULL, NULL, &r);
	expect_ok(&r);
	assert_false(r.resumed);
	tls_sess_cache_free(cache);
}

static void test_resumption_tls13(void **state)
{
	struct tls_ctx *ctx = client_ctx("example.com.crt", "client.crt", "client.key", NULL, 0);
	struct peer s;

	(void)state;
	server_start(&s, "good", "-Verify", "1", "-CAfile", path("example.com.crt"), NULL);
	check_resumption(ctx, s.port, false);
	peer_stop(&s);
	tls_ctx_unref(ctx);
}

static void test_resumption_tls12(void **state)
{
	struct tls_ctx *ctx = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct peer s;

	(void)state;
	/* Tickets. */
	server_start(&s, "good", "-tls1_2", NULL);
	check_resumption(ctx, s.port, true);
	peer_stop(&s);
	/* Session ids (stateful server cache). */
	server_start(&s, "good", "-tls1_2", "-no_ticket", NULL);
	check_resumption(ctx, s.port, true);
	peer_stop(&s);
	tls_ctx_unref(ctx);
}

static void test_session_cache_eviction(void **state)
{
	struct tls_ctx *ctx = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct tls_sess_cache *cache = tls_sess_cache_new(2);
	const struct tls_sess_stats *st = tls_sess_cache_stats(cache);
	struct peer s;
	struct result r;

	(void)state;
	server_start(&s, "good", "-tls1_2", NULL);
	client_run(ctx, s.port, "a.test", NULL, cache, &r);
	client_run(ctx, s.port, "b.test", NULL, cache, &r);
	client_run(ctx, s.port, "c.test", NULL, cache, &r);
	expect_ok(&r);
	assert_int_equal(tls_sess_cache_size(cache), 2);
	assert_int_equal(st->evicted, 1);
	/* a.test was the least recently used: gone. c.test resumes. */
	client_run(ctx, s.port, "a.test", NULL, cache, &r);
	assert_false(r.resumed);
	client_run(ctx, s.port, "c.test", NULL, cache, &r);
	assert_true(r.resumed);
	peer_stop(&s);
	tls_sess_cache_free(cache);
	tls_ctx_unref(ctx);
}

/* A session cached under a context that is then freed (a credential rotated: the new
 * context has a new id) can never be offered again; the sweep drops it, and only it. */
static void test_session_cache_sweeps_freed_contexts(void **state)
{
	struct tls_ctx *old = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct tls_ctx *kept = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct tls_sess_cache *cache = tls_sess_cache_new(0);
	const struct tls_sess_stats *st = tls_sess_cache_stats(cache);
	struct peer s;
	struct result r;

	(void)state;
	server_start(&s, "good", "-tls1_2", NULL);
	client_run(old, s.port, "good.test", NULL, cache, &r);
	expect_ok(&r);
	client_run(kept, s.port, "good.test", NULL, cache, &r);
	expect_ok(&r);
	assert_int_equal(tls_sess_cache_size(cache), 2);
	tls_sess_cache_sweep(cache);    /* no context freed since the cache was made */
	assert_int_equal(tls_sess_cache_size(cache), 2);
	tls_ctx_unref(old);
	assert_int_equal(tls_sess_cache_sweep(cache), 1);
	assert_int_equal(tls_sess_cache_size(cache), 1);
	assert_int_equal(st->stale, 1);
	assert_int_equal(tls_sess_cache_sweep(cache), 0);
	client_run(kept, s.port, "good.test", NULL, cache, &r);
	expect_ok(&r);
	assert_true(r.resumed);
	peer_stop(&s);
	tls_sess_cache_free(cache);
	tls_ctx_unref(kept);
}

static void test_alpn_and_versions(void **state)
{
	const char *alpn[] = { "h2", "http/1.1" };
	struct tls_client_params p = { .alpn = alpn, .nalpn = 2 };
	struct sbuf err = SBUF_INIT;
	struct tls_ctx *ctx, *ctx13;
	struct peer s;
	struct result r;

	(void)state;
	p.ca.file = path("example.com.crt");
	ctx = tls_client_ctx_new(&p, &err);
	assert_non_null(ctx);
	p.min_version = TLS_V1_3;
	ctx13 = tls_client_ctx_new(&p, &err);
	assert_non_null(ctx13);
	server_start(&s, "good", "-alpn", "http/1.1,h2", NULL);
	client_run(ctx, s.port, "good.test", NULL, NULL, &r);
	expect_ok(&r);
	assert_string_equal(r.alpn, "http/1.1");      /* s_server's preference */
	peer_stop(&s);
	server_start(&s, "good", "-tls1_2", NULL);
	client_run(ctx13, s.port, "good.test", NULL, NULL, &r);
	expect_fail(&r, TLS_CAT_PROTOCOL_VERSION,
	            "TLSV1_ALERT_PROTOCOL_VERSION:no TLS version in common (ours: TLSv1.3 to TLSv1.3)");
	peer_stop(&s);
	tls_ctx_unref(ctx);
	tls_ctx_unref(ctx13);
	sbuf_free(&err);
}

static void test_insecure_and_system_store(void **state)
{
	struct tls_client_params p = { .insecure_skip_verify = true };
	struct sbuf err = SBUF_INIT;
	struct tls_ctx *ctx;
	struct peer s;
	struct result r;
	char *pem;
	size_t len;

	(void)state;
	server_start(&s, "selfsigned", NULL);
	ctx = tls_client_ctx_new(&p, &err);
	assert_non_null(ctx);
	client_run(ctx, s.port, "whatever", &(struct tls_verify_names){ .hostname = "nope" }, NULL, &r);
	expect_ok(&r);
	tls_ctx_unref(ctx);
	peer_stop(&s);

	/* No CA given: the system store, which SSL_CERT_FILE overrides. */
	server_start(&s, "good", NULL);
	setenv("SSL_CERT_FILE", path("example.com.crt"), 1);
	memset(&p, 0, sizeof(p));
	ctx = tls_client_ctx_new(&p, &err);
	unsetenv("SSL_CERT_FILE");
	assert_non_null(ctx);
	client_run(ctx, s.port, "good.test", &(struct tls_verify_names){ .hostname = "good.test" },
	           NULL, &r);
	expect_ok(&r);
	tls_ctx_unref(ctx);

	/* CA and client credentials as PEM bytes (a Secret's data). */
	assert_int_equal(file_read_all(path("example.com.crt"), &pem, &len), 0);
	p.ca.data = pem;
	p.ca.len = len;
	p.ca.label = "kubernetes://cred-cacert";
	ctx = tls_client_ctx_new(&p, &err);
	assert_non_null(ctx);
	client_run(ctx, s.port, "good.test", &(struct tls_verify_names){ .hostname = "good.test" },
	           NULL, &r);
	expect_ok(&r);
	tls_ctx_unref(ctx);
	free(pem);
	peer_stop(&s);
	sbuf_free(&err);
}

/* Plaintext peer, a peer that closes, a peer that resets. */
static void test_transport_failures(void **state)
{
	struct tls_ctx *ctx = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct sock_addr a;
	struct result r;
	int lfd, fd, afd;
	struct tls_conn *c;
	const char *garbage = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";

	(void)state;
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &a), 0);
	lfd = sock_listen(&a, 0, 0);
	assert_true(lfd >= 0);
	assert_int_equal(sock_local_addr(lfd, &a), 0);
	memset(&r, 0, sizeof(r));
	for (int mode = 0; mode < 3; mode++) {
		fd = connect_port(sock_addr_port(&a));
		assert_int_equal(wait_fd(lfd, TLS_WANT_READ, 3000), 1);
		afd = sock_accept(lfd, NULL);
		assert_true(afd >= 0);
		if (mode == 0) {
			assert_int_equal(write(afd, garbage, strlen(garbage)), (ssize_t)strlen(garbage));
		} else if (mode == 2) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			/* Let the ClientHello arrive first, so that close() sends a RST. */
			c = NULL;
			setsockopt(afd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		c = tls_client_new(ctx, fd, "good.test", NULL);
		if (mode == 2) {
			assert_int_equal(tls_handshake(c), TLS_WANT_READ);
			assert_int_equal(wait_fd(afd, TLS_WANT_READ, 3000), 1);
		}
		close(afd);
		assert_int_equal(drive_handshake(c, fd), -1);
		if (mode == 0)
			assert_string_equal(tls_conn_category(c), TLS_CAT_PROTOCOL_VERSION);
		else if (mode == 1)
			assert_string_equal(tls_conn_category(c), TLS_CAT_CONNECTION_CLOSED);
		else
			assert_string_equal(tls_conn_category(c), TLS_CAT_CONNECTION_RESET);
		if (getenv("TLS_TEST_VERBOSE"))
			fprintf(stderr, "  %-22s %s\n", tls_conn_category(c), tls_conn_error(c));
		assert_non_null(strstr(tls_conn_error(c), mode == 0 ? "WRONG_VERSION_NUMBER:the server does not speak TLS" :
		                       mode == 1 ? "peer closed the connection during the handshake"
		                                 : "Connection reset by peer"));
		/* Failed stays failed. */
		assert_int_equal(tls_handshake(c), -1);
		assert_int_equal(tls_read(c, r.body, 10), -1);
		tls_conn_free(c);
		close(fd);
	}
	close(lfd);
	tls_ctx_unref(ctx);
}

static void test_ctx_errors_real(void **state)
{
	struct tls_client_params p;
	struct tls_server_params sp;
	struct sbuf err = SBUF_INIT;
	const char *bad_alpn[] = { "" };
	char want[512];

	(void)state;
	memset(&p, 0, sizeof(p));
	p.ca.file = path("nonexistent.pem");
	assert_null(tls_client_ctx_new(&p, &err));
	snprintf(want, sizeof(want), "CA certificates %s: cannot read: No such file or directory",
	         path("nonexistent.pem"));
	assert_string_equal(sbuf_str(&err), want);
	sbuf_reset(&err);

	/* A key file where the CA should be. */
	p.ca.file = path("good.key");
	assert_null(tls_client_ctx_new(&p, &err));
	assert_non_null(strstr(sbuf_str(&err), "no PEM certificate found"));
	sbuf_reset(&err);

	/* Inline garbage with a label. */
	memset(&p, 0, sizeof(p));
	p.ca.data = "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n";
	p.ca.len = strlen(p.ca.data);
	p.ca.label = "kubernetes://bad-cacert";
	assert_null(tls_client_ctx_new(&p, &err));
	assert_non_null(strstr(sbuf_str(&err), "CA certificates kubernetes://bad-cacert: bad PEM"));
	sbuf_reset(&err);

	/* Key that does not match the certificate: named, never printed. */
	memset(&p, 0, sizeof(p));
	p.ca.file = path("example.com.crt");
	p.cert.file = path("client.crt");
	p.key.file = path("good.key");
	assert_null(tls_client_ctx_new(&p, &err));
	assert_non_null(strstr(sbuf_str(&err), "does not match the certificate"));
	assert_null(strstr(sbuf_str(&err), "PRIVATE KEY"));
	sbuf_reset(&err);

	/* Certificate without key. */
	p.key.file = NULL;
	assert_null(tls_client_ctx_new(&p, &err));
	assert_non_null(strstr(sbuf_str(&err), "certificate given without private key"));
	sbuf_reset(&err);

	/* Bad CRL, bad ALPN, bad cipher list, inverted versions. */
	memset(&p, 0, sizeof(p));
	p.ca.file = path("example.com.crt");
	p.crl.file = path("example.com.crt");
	assert_null(tls_client_ctx_new(&p, &err));
	assert_non_null(strstr(sbuf_str(&err), "no PEM X509 CRL found"));
	sbuf_reset(&err);
	p.crl.file = NULL;
	p.alpn = bad_alpn;
	p.nalpn = 1;
	assert_null(tls_client_ctx_new(&p, &err));
	assert_non_null(strstr(sbuf_str(&err), "ALPN"));
	sbuf_reset(&err);
	p.nalpn = 0;
	p.ciphers = "NO-SUCH-CIPHER";
	assert_null(tls_client_ctx_new(&p, &err));
	assert_non_null(strstr(sbuf_str(&err), "NO-SUCH-CIPHER"));
	sbuf_reset(&err);
	p.ciphers = NULL;
	p.min_version = TLS_V1_3;
	p.max_version = TLS_V1_2;
	assert_null(tls_client_ctx_new(&p, &err));
	assert_non_null(strstr(sbuf_str(&err), "minimum TLS version"));
	sbuf_reset(&err);

	/* Server: CRL without client CA. */
	memset(&sp, 0, sizeof(sp));
	sp.cert.file = path("good.crt");
	sp.key.file = path("good.key");
	sp.crl.file = path("crl.pem");
	assert_null(tls_server_ctx_new(&sp, &err));
	assert_non_null(strstr(sbuf_str(&err), "CRL given without client CA"));
	sbuf_free(&err);
}

/* ---- server side ---- */

static int listen_any(int *port)
{
	struct sock_addr a;
	int lfd;

	assert_int_equal(sock_addr_parse("127.0.0.1:0", &a), 0);
	lfd = sock_listen(&a, 0, SOCK_REUSEPORT);
	assert_true(lfd >= 0);
	assert_int_equal(sock_local_addr(lfd, &a), 0);
	*port = sock_addr_port(&a);
	return lfd;
}

/* Starts `openssl s_client` (stdin /dev/null, so it closes right after the handshake),
 * accepts its connection and drives our server handshake. Returns the connection (the
 * caller frees it and closes *fd) and the handshake result in *rc. */
static struct tls_conn *serve_s_client(struct tls_ctx *sctx, int *fd, int *rc, ...)
{
	char *argv[32], log[256], conn[64];
	int argc = 0, lfd, port;
	const char *a;
	struct tls_conn *c;
	va_list ap;
	pid_t pid;

	lfd = listen_any(&port);
	snprintf(conn, sizeof(conn), "127.0.0.1:%d", port);
	snprintf(log, sizeof(log), "%s/s_client.log", dir);
	argv[argc++] = "openssl";
	argv[argc++] = "s_client";
	argv[argc++] = "-connect";
	argv[argc++] = conn;
	va_start(ap, rc);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 30)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	pid = spawn(argv, log);
	track(pid);
	if (wait_fd(lfd, TLS_WANT_READ, 5000) != 1)
		fail_msg("s_client did not connect");
	*fd = sock_accept(lfd, NULL);
	assert_true(*fd >= 0);
	close(lfd);
	c = tls_server_new(sctx, *fd);
	*rc = drive_handshake(c, *fd);
	if (*rc == 0) {
		/* Read until s_client closes: in TLS 1.3 the client's certificate is checked
		 * with its Finished, which arrives here. */
		char buf[256];
		ssize_t n;

		while ((n = tls_read(c, buf, sizeof(buf))) != 0 && n != -1)
			if (n < 0 && wait_fd(*fd, (int)n, 5000) != 1)
				break;
		if (n == -1)
			*rc = -1;
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	untrack(pid);
	return c;
}

static struct tls_ctx *server_ctx(const char *cert, const char *key, const char *client_ca,
                                  const char *const *sans, size_t nsans)
{
	const char *alpn[] = { "h2", "http/1.1" };
	struct tls_server_params p;
	struct sbuf err = SBUF_INIT;
	struct tls_ctx *ctx;

	memset(&p, 0, sizeof(p));
	p.cert.file = path(cert);
	p.key.file = path(key);
	if (client_ca)
		p.client_ca.file = path(client_ca);
	p.client_sans = sans;
	p.nclient_sans = nsans;
	p.alpn = alpn;
	p.nalpn = 2;
	ctx = tls_server_ctx_new(&p, &err);
	if (!ctx)
		fail_msg("tls_server_ctx_new: %s", sbuf_str(&err));
	sbuf_free(&err);
	return ctx;
}

static void test_server_simple_alpn(void **state)
{
	struct tls_ctx *sctx = server_ctx("good.crt", "good.key", NULL, NULL, 0);
	struct tls_conn *c;
	int fd, rc;

	(void)state;
	c = serve_s_client(sctx, &fd, &rc, "-servername", "good.test", "-alpn", "http/1.1,h2",
	                   "-CAfile", path("example.com.crt"), NULL);
	assert_int_equal(rc, 0);
	assert_string_equal(tls_conn_alpn(c), "h2");     /* our preference wins */
	assert_string_equal(tls_conn_sni(c), "good.test");
	assert_string_equal(tls_conn_version(c), "TLSv1.3");
	assert_non_null(tls_conn_cipher(c));
	assert_false(tls_conn_peer_has_cert(c));
	assert_true(tls_conn_ctx(c) == sctx);
	tls_conn_free(c);
	close(fd);
	/* A client offering only http/1.1 gets it; one offering nothing we know gets no ALPN. */
	c = serve_s_client(sctx, &fd, &rc, "-alpn", "http/1.1", NULL);
	assert_int_equal(rc, 0);
	assert_string_equal(tls_conn_alpn(c), "http/1.1");
	assert_null(tls_conn_sni(c));
	tls_conn_free(c);
	close(fd);
	c = serve_s_client(sctx, &fd, &rc, "-alpn", "spdy/3", NULL);
	assert_int_equal(rc, 0);
	assert_null(tls_conn_alpn(c));
	tls_conn_free(c);
	close(fd);
	tls_ctx_unref(sctx);
}

static void test_server_mutual(void **state)
{
	struct tls_ctx *sctx = server_ctx("good.crt", "good.key", "example.com.crt", NULL, 0);
	struct tls_conn *c;
	int fd, rc;

	(void)state;
	c = serve_s_client(sctx, &fd, &rc, "-cert", path("client.crt"), "-key", path("client.key"),
	                   NULL);
	assert_int_equal(rc, 0);
	assert_true(tls_conn_peer_has_cert(c));
	tls_conn_free(c);
	close(fd);
	/* No client certificate. */
	c = serve_s_client(sctx, &fd, &rc, NULL);
	assert_int_equal(rc, -1);
	assert_string_equal(tls_conn_category(c), TLS_CAT_CLIENT_CERT_REQUIRED);
	assert_non_null(strstr(tls_conn_error(c),
	                       "PEER_DID_NOT_RETURN_A_CERTIFICATE:client sent no certificate"));
	tls_conn_free(c);
	close(fd);
	/* A client certificate from another CA. */
	c = serve_s_client(sctx, &fd, &rc, "-cert", path("othercl.crt"), "-key", path("othercl.key"),
	                   NULL);
	assert_int_equal(rc, -1);
	assert_string_equal(tls_conn_category(c), TLS_CAT_UNKNOWN_CA);
	assert_non_null(strstr(tls_conn_error(c), "unable to get local issuer certificate"));
	tls_conn_free(c);
	close(fd);
	/* TLS 1.2 as well. */
	c = serve_s_client(sctx, &fd, &rc, "-tls1_2", NULL);
	assert_int_equal(rc, -1);
	assert_string_equal(tls_conn_category(c), TLS_CAT_CLIENT_CERT_REQUIRED);
	tls_conn_free(c);
	close(fd);
	tls_ctx_unref(sctx);
}

static void test_server_istio_mutual(void **state)
{
	struct tls_identity_files files;
	struct tls_server_params p;
	struct sbuf err = SBUF_INIT;
	struct tls_ctx *sctx;
	struct tls_conn *c;
	char id[256], ddir[128];
	const char *allowed[] = { "spiffe://cluster.local/ns/default/sa/sleep" };
	const char *others[] = { "spiffe://cluster.local/ns/default/sa/other" };
	int fd, rc;

	(void)state;
	snprintf(ddir, sizeof(ddir), "%s/identity", dir);
	memset(&p, 0, sizeof(p));
	tls_identity_files(ddir, &files, &p.cert, &p.key, &p.client_ca);
	assert_non_null(strstr(p.cert.file, "/identity/cert-chain.pem"));
	p.client_sans = allowed;
	p.nclient_sans = 1;
	sctx = tls_server_ctx_new(&p, &err);
	if (!sctx)
		fail_msg("%s", sbuf_str(&err));
	c = serve_s_client(sctx, &fd, &rc, "-cert", path("sleep.crt"), "-key", path("sleep.key"),
	                   NULL);
	assert_int_equal(rc, 0);
	assert_string_equal(tls_peer_uri_san(c, id, sizeof(id)),
	                    "spiffe://cluster.local/ns/default/sa/sleep");
	assert_null(tls_peer_uri_san(c, id, 10));      /* does not fit */
	tls_conn_free(c);
	close(fd);
	/* A certificate from outside the mesh. */
	c = serve_s_client(sctx, &fd, &rc, "-cert", path("client.crt"), "-key", path("client.key"),
	                   NULL);
	assert_int_equal(rc, -1);
	assert_string_equal(tls_conn_category(c), TLS_CAT_UNKNOWN_CA);
	tls_conn_free(c);
	close(fd);
	tls_ctx_unref(sctx);

	/* A mesh certificate whose identity is not allowed. */
	p.client_sans = others;
	sctx = tls_server_ctx_new(&p, &err);
	assert_non_null(sctx);
	c = serve_s_client(sctx, &fd, &rc, "-cert", path("sleep.crt"), "-key", path("sleep.key"),
	                   NULL);
	assert_int_equal(rc, -1);
	assert_string_equal(tls_conn_category(c), TLS_CAT_SAN_MISMATCH);
	assert_non_null(strstr(tls_conn_error(c),
	                       "no SubjectAltName matches [spiffe://cluster.local/ns/default/sa/other]"));
	tls_conn_free(c);
	close(fd);
	tls_ctx_unref(sctx);
	sbuf_free(&err);
}

/* SNI dispatch, with our own client (both ends in this process). */
struct sni_table {
	const char *host[3];
	struct tls_ctx *ctx[3];
	int n;
	int calls;
	char last_sni[64];
};

static struct tls_ctx *sni_select(const char *sni, void *arg)
{
	struct sni_table *t = arg;

	t->calls++;
	snprintf(t->last_sni, sizeof(t->last_sni), "%s", sni ? sni : "(none)");
	for (int i = 0; i < t->n; i++)
		if (tls_host_match(t->host[i], sni))
			return t->ctx[i];
	return NULL;
}

static int pair_handshake(struct tls_conn *cli, int cfd, struct tls_conn *srv, int sfd)
{
	int rc1 = 1, rc2 = 1;

	for (int i = 0; i < 200; i++) {
		struct pollfd pf[2] = { { .fd = cfd }, { .fd = sfd } };

		if (rc1 != 0 && rc1 != -1)
			rc1 = tls_handshake(cli);
		if (rc2 != 0 && rc2 != -1)
			rc2 = tls_handshake(srv);
		if ((rc1 == 0 || rc1 == -1) && (rc2 == 0 || rc2 == -1))
			return rc1 == 0 && rc2 == 0 ? 0 : -1;
		if (rc2 == -1 && rc1 != 0 && rc1 != -1) {
			/* Server gave up: let the client read the alert. */
			pf[0].events = POLLIN;
			poll(pf, 1, 2000);
			continue;
		}
		pf[0].events = rc1 == TLS_WANT_WRITE ? POLLOUT : POLLIN;
		pf[1].events = rc2 == TLS_WANT_WRITE ? POLLOUT : POLLIN;
		poll(pf, 2, 2000);
	}
	fail_msg("pair handshake did not finish");
	return -1;
}

struct pair {
	int cfd, sfd;
	struct tls_conn *cli, *srv;
	int rc;
};

static void pair_run(struct pair *p, struct tls_ctx *cctx, struct tls_ctx *sctx, const char *sni,
                     const struct tls_verify_names *nm)
{
	int port, lfd = listen_any(&port);

	p->cfd = connect_port(port);
	assert_int_equal(wait_fd(lfd, TLS_WANT_READ, 3000), 1);
	p->sfd = sock_accept(lfd, NULL);
	close(lfd);
	p->cli = tls_client_new(cctx, p->cfd, sni, nm);
	p->srv = tls_server_new(sctx, p->sfd);
	p->rc = pair_handshake(p->cli, p->cfd, p->srv, p->sfd);
}

static void pair_free(struct pair *p)
{
	tls_conn_free(p->cli);
	tls_conn_free(p->srv);
	close(p->cfd);
	close(p->sfd);
}

static void test_server_sni_dispatch(void **state)
{
	struct tls_ctx *dflt = server_ctx("good.crt", "good.key", NULL, NULL, 0);
	struct tls_ctx *a = server_ctx("a.example.crt", "a.example.key", NULL, NULL, 0);
	/* b requires a client certificate: the switch must carry the verify mode. */
	struct tls_ctx *b = server_ctx("b.example.crt", "b.example.key", "example.com.crt", NULL, 0);
	struct tls_ctx *cli = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct tls_ctx *cli_cert = client_ctx("example.com.crt", "client.crt", "client.key", NULL, 0);
	struct sni_table t = { .host = { "a.example.com", "*.b.example.com", "good.test" },
	                       .ctx = { a, b, NULL }, .n = 3 };
	struct pair p;
	char buf[64];

	(void)state;
	t.ctx[2] = dflt;
	tls_server_set_sni(dflt, sni_select, &t);

	pair_run(&p, cli, dflt, "a.example.com",
	         &(struct tls_verify_names){ .hostname = "a.example.com" });
	assert_int_equal(p.rc, 0);
	assert_true(tls_conn_ctx(p.srv) == a);
	assert_string_equal(tls_conn_sni(p.srv), "a.example.com");
	assert_string_equal(tls_conn_alpn(p.srv) ? tls_conn_alpn(p.srv) : "", "");
	pair_free(&p);

	pair_run(&p, cli, dflt, "good.test", &(struct tls_verify_names){ .hostname = "good.test" });
	assert_int_equal(p.rc, 0);
	assert_true(tls_conn_ctx(p.srv) == dflt);
	pair_free(&p);

	/* b: wildcard host; client without certificate is refused by b's settings. */
	pair_run(&p, cli, dflt, "x.b.example.com", NULL);
	assert_int_equal(p.rc, -1);
	assert_string_equal(tls_conn_category(p.srv), TLS_CAT_CLIENT_CERT_REQUIRED);
	pair_free(&p);
	pair_run(&p, cli_cert, dflt, "x.b.example.com",
	         &(struct tls_verify_names){ .sans = (const char *[]){ "b.example.com" }, .nsans = 1 });
	assert_int_equal(p.rc, 0);
	assert_true(tls_conn_ctx(p.srv) == b);
	assert_true(tls_conn_peer_has_cert(p.srv));
	assert_null(tls_peer_uri_san(p.srv, buf, sizeof(buf)));
	/* Data flows both ways. */
	assert_int_equal(tls_write(p.cli, "ping", 4), 4);
	assert_int_equal(wait_fd(p.sfd, TLS_WANT_READ, 2000), 1);
	for (int i = 0; i < 10; i++) {
		ssize_t n = tls_read(p.srv, buf, sizeof(buf));

		if (n == 4) {
			assert_memory_equal(buf, "ping", 4);
			break;
		}
		assert_true(n == TLS_WANT_READ);
		wait_fd(p.sfd, TLS_WANT_READ, 1000);
	}
	assert_int_equal(tls_pending(p.srv), 0);
	pair_free(&p);

	/* An SNI no server serves: refused with unrecognized_name. */
	pair_run(&p, cli, dflt, "unknown.test", NULL);
	assert_int_equal(p.rc, -1);
	assert_string_equal(tls_conn_category(p.srv), TLS_CAT_UNRECOGNIZED_NAME);
	assert_non_null(strstr(tls_conn_error(p.srv), "no server for SNI \"unknown.test\""));
	assert_non_null(strstr(tls_conn_error(p.cli), "the server does not serve SNI \"unknown.test\""));
	assert_string_equal(tls_conn_category(p.cli), TLS_CAT_UNRECOGNIZED_NAME);
	assert_string_equal(t.last_sni, "unknown.test");
	pair_free(&p);
	/* No SNI at all: select sees NULL. */
	pair_run(&p, cli, dflt, NULL, NULL);
	assert_int_equal(p.rc, -1);
	assert_string_equal(t.last_sni, "(none)");
	pair_free(&p);

	tls_ctx_unref(cli);
	tls_ctx_unref(cli_cert);
	tls_ctx_unref(a);
	tls_ctx_unref(b);
	tls_ctx_unref(dflt);
}

/* Our server resumes our client's sessions (stateless tickets shared through the
 * SSL_CTX), in TLS 1.3 and 1.2; OPTIONAL_MUTUAL accepts a client without certificate. */
static void server_resume_round(struct tls_ctx *cctx, struct tls_ctx *sctx, int lfd, int port,
                                struct tls_sess_cache *cache, bool *cli_resumed,
                                bool *srv_resumed)
{
	struct sock_addr ep;
	struct pair p;
	char buf[16];

	sock_addr_from_ip("127.0.0.1", (uint16_t)port, &ep);
	p.cfd = connect_port(port);
	assert_int_equal(wait_fd(lfd, TLS_WANT_READ, 3000), 1);
	p.sfd = sock_accept(lfd, NULL);
	p.cli = tls_client_new(cctx, p.cfd, "good.test", NULL);
	tls_client_resume(p.cli, cache, &ep);
	p.srv = tls_server_new(sctx, p.sfd);
	assert_int_equal(pair_handshake(p.cli, p.cfd, p.srv, p.sfd), 0);
	/* TLS 1.3 tickets arrive after the handshake: one round trip of data reads them. */
	assert_int_equal(tls_write(p.srv, "x", 1), 1);
	for (int i = 0; i < 20; i++) {
		ssize_t n = tls_read(p.cli, buf, sizeof(buf));

		if (n == 1)
			break;
		assert_int_equal(n, TLS_WANT_READ);
		wait_fd(p.cfd, TLS_WANT_READ, 1000);
	}
	*cli_resumed = tls_conn_resumed(p.cli);
	*srv_resumed = tls_conn_resumed(p.srv);
	pair_free(&p);
}

static void test_server_resumption_optional_mutual(void **state)
{
	struct tls_server_params sp;
	struct sbuf err = SBUF_INIT;
	struct tls_ctx *sctx, *cctx13, *cctx12;
	struct tls_sess_cache *cache = tls_sess_cache_new(0);
	bool cr, sr;
	int port, lfd = listen_any(&port);

	(void)state;
	memset(&sp, 0, sizeof(sp));
	sp.cert.file = path("good.crt");
	sp.key.file = path("good.key");
	sp.client_ca.file = path("example.com.crt");
	sp.optional_client_cert = true;
	sctx = tls_server_ctx_new(&sp, &err);
	assert_non_null(sctx);
	cctx13 = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	cctx12 = client_ctx("example.com.crt", NULL, NULL, NULL, TLS_V1_2);

	server_resume_round(cctx13, sctx, lfd, port, cache, &cr, &sr);
	assert_false(cr);
	assert_false(sr);
	server_resume_round(cctx13, sctx, lfd, port, cache, &cr, &sr);
	assert_true(cr);
	assert_true(sr);
	server_resume_round(cctx12, sctx, lfd, port, cache, &cr, &sr);
	assert_false(cr);
	server_resume_round(cctx12, sctx, lfd, port, cache, &cr, &sr);
	assert_true(cr);
	assert_true(sr);
	assert_int_equal(tls_sess_cache_stats(cache)->resumed, 2);
	assert_int_equal(tls_sess_cache_stats(cache)->full, 2);
	assert_int_equal(tls_sess_cache_size(cache), 2);     /* one key per client context */

	close(lfd);
	tls_sess_cache_free(cache);
	tls_ctx_unref(cctx13);
	tls_ctx_unref(cctx12);
	tls_ctx_unref(sctx);
	sbuf_free(&err);
}

/* Contexts outlive their creator's reference while connections use them. */
static void test_ctx_refcount(void **state)
{
	struct tls_ctx *sctx = server_ctx("good.crt", "good.key", NULL, NULL, 0);
	struct tls_ctx *cctx = client_ctx("example.com.crt", NULL, NULL, NULL, 0);
	struct pair p;
	int port, lfd = listen_any(&port);

	(void)state;
	assert_true(tls_ctx_id(sctx) != tls_ctx_id(cctx));
	p.cfd = connect_port(port);
	assert_int_equal(wait_fd(lfd, TLS_WANT_READ, 3000), 1);
	p.sfd = sock_accept(lfd, NULL);
	close(lfd);
	p.cli = tls_client_new(cctx, p.cfd, "good.test", NULL);
	p.srv = tls_server_new(sctx, p.sfd);
	tls_ctx_unref(cctx);          /* a config swap dropped them */
	tls_ctx_unref(sctx);
	assert_int_equal(pair_handshake(p.cli, p.cfd, p.srv, p.sfd), 0);
	pair_free(&p);                /* last references: ASan checks */
}

/* ---- pure functions ---- */

static void test_host_match(void **state)
{
	(void)state;
	assert_true(tls_host_match("*", "anything.test"));
	assert_true(tls_host_match("*", NULL));
	assert_true(tls_host_match("edition.cnn.com", "edition.cnn.com"));
	assert_true(tls_host_match("edition.cnn.com", "Edition.CNN.com."));
	assert_false(tls_host_match("edition.cnn.com", "cnn.com"));
	assert_false(tls_host_match("edition.cnn.com", NULL));
	assert_true(tls_host_match("*.example.com", "a.example.com"));
	assert_true(tls_host_match("*.example.com", "a.b.example.com"));
	assert_false(tls_host_match("*.example.com", "example.com"));
	assert_false(tls_host_match("*.example.com", "aexample.com"));
	assert_false(tls_host_match("*.example.com", ".example.com"));
}

static void test_cert_info(void **state)
{
	struct tls_cert_info ci;
	struct sbuf err = SBUF_INIT;
	char *pem;
	size_t len;
	time_t now = time(NULL);
	struct tm tm;
	char year[8];

	(void)state;
	assert_int_equal(file_read_all(path("nginx.crt"), &pem, &len), 0);
	assert_int_equal(tls_cert_info_pem(pem, len, &ci, &err), 0);
	assert_string_equal(ci.serial, "0");
	assert_true(ci.valid_now);
	assert_int_equal(ci.chain_len, 1);
	assert_non_null(strstr(ci.subject, "CN=my-nginx.mesh-external.svc.cluster.local"));
	assert_int_equal(strlen(ci.not_before), 20);
	assert_int_equal(ci.not_before[10], 'T');
	assert_int_equal(ci.not_before[19], 'Z');
	gmtime_r(&now, &tm);
	strftime(year, sizeof(year), "%Y", &tm);
	assert_memory_equal(ci.not_before, year, 4);
	free(pem);

	assert_int_equal(file_read_all(path("good.crt"), &pem, &len), 0);
	assert_int_equal(tls_cert_info_pem(pem, len, &ci, &err), 0);
	assert_string_equal(ci.serial, "16491643791048004260");
	free(pem);

	assert_int_equal(file_read_all(path("client.crt"), &pem, &len), 0);
	assert_int_equal(tls_cert_info_pem(pem, len, &ci, &err), 0);
	assert_string_equal(ci.serial, "1");
	free(pem);

	assert_int_equal(file_read_all(path("expired.crt"), &pem, &len), 0);
	assert_int_equal(tls_cert_info_pem(pem, len, &ci, &err), 0);
	assert_false(ci.valid_now);
	free(pem);

	cat_files("chain.pem", "gw.crt", "meshroot.crt");
	assert_int_equal(file_read_all(path("chain.pem"), &pem, &len), 0);
	assert_int_equal(tls_cert_info_pem(pem, len, &ci, &err), 0);
	assert_int_equal(ci.chain_len, 2);
	assert_string_equal(ci.subject, "CN=gw");
	free(pem);

	assert_int_equal(tls_cert_info_pem("junk", 4, &ci, &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "no PEM certificate found"));
	sbuf_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_walkthrough_v1_mutual, stop_all),
		cmocka_unit_test_teardown(test_hostname_checks, stop_all),
		cmocka_unit_test_teardown(test_chain_failures, stop_all),
		cmocka_unit_test_teardown(test_crl, stop_all),
		cmocka_unit_test_teardown(test_san_list, stop_all),
		cmocka_unit_test_teardown(test_client_cert_required, stop_all),
		cmocka_unit_test_teardown(test_resumption_tls13, stop_all),
		cmocka_unit_test_teardown(test_resumption_tls12, stop_all),
		cmocka_unit_test_teardown(test_session_cache_eviction, stop_all),
		cmocka_unit_test_teardown(test_session_cache_sweeps_freed_contexts, stop_all),
		cmocka_unit_test_teardown(test_alpn_and_versions, stop_all),
		cmocka_unit_test_teardown(test_insecure_and_system_store, stop_all),
		cmocka_unit_test_teardown(test_transport_failures, stop_all),
		cmocka_unit_test_teardown(test_ctx_errors_real, stop_all),
		cmocka_unit_test_teardown(test_server_simple_alpn, stop_all),
		cmocka_unit_test_teardown(test_server_mutual, stop_all),
		cmocka_unit_test_teardown(test_server_istio_mutual, stop_all),
		cmocka_unit_test_teardown(test_server_sni_dispatch, stop_all),
		cmocka_unit_test_teardown(test_server_resumption_optional_mutual, stop_all),
		cmocka_unit_test_teardown(test_ctx_refcount, stop_all),
		cmocka_unit_test_teardown(test_host_match, stop_all),
		cmocka_unit_test_teardown(test_cert_info, stop_all),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("tls", tests, group_setup, group_teardown);
}
