/* Refuse deprecated OpenSSL APIs at compile time. */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include "net/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/util.h"
#include "net/tls_sysca.h"

/* PEM inputs larger than this are refused (a CA bundle is ~200 KiB). */
#define TLS_PEM_MAX (16u << 20)

/* Whether a context still exists, for the sessions cached under it: the last reference
 * to a context may go on any thread (a snapshot freed, a draining connection closed),
 * while a worker's session cache belongs to that worker. A session of a freed context can
 * never be offered again (its replacement has a new id), so the cache drops it at its
 * next sweep instead of keeping it, with its peer's certificate chain, until 1024 newer
 * entries push it out: a credential rotation every second grew a gateway's RSS by about
 * 7 KiB each, linearly, in tests/soak/storm.py. */
struct tls_ctx_life {
	atomic_int refs;              /* the context's and each cache entry's */
	atomic_bool gone;
};

/* Contexts freed so far: a cache sweeps only when this has moved since its last sweep. */
static atomic_uint_fast64_t ctx_gone_count;

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	uint64_t id;
	atomic_int refs;
	struct tls_ctx_life *life;
	bool server;
	int min_version, max_version;
	unsigned char *alpn;          /* wire format: len-prefixed names */
	size_t alpn_len;
	char *ciphers, *ciphersuites; /* as configured (NULL = default), for SNI switching */
	char **sans;                  /* server: allowed client SANs */
	size_t nsans;
	struct tls_ctx *(*select)(const char *sni, void *arg);
	void *select_arg;
};

struct tls_conn {
	SSL *ssl;
	struct tls_ctx *ctx;          /* reference */
	struct tls_ctx *sni_ctx;      /* reference: server context chosen by SNI, or NULL */
	bool server;
	/* Client: what a cached session is keyed by besides endpoint and SNI: the context's
	 * id and the names verified. A resumed session skips verification, so a session
	 * verified for other names (a subjectAltNames change) must never be offered. */
	uint64_t sess_id;
	bool done;                    /* handshake finished */
	bool failed;
	bool san_mismatch;            /* our verify callback rejected the SAN list */
	bool cert_requested;          /* client: server asked for a cert and we had none */
	char *sni_rejected;           /* server: the SNI select() refused ("" if none) */
	int vfail_depth;
	char *vfail_subject;          /* subject of the certificate that failed, or NULL */
	/* Client name checks: one allocation holding the pointers and the strings. */
	char **sans;
	size_t nsans;
	char *hostname;
	void *names_blob;
	/* Session resumption. */
	struct tls_sess_cache *cache;
	struct sock_addr endpoint;
	char alpn[32];
	const char *cat;
	char err[384];
	/* The socket's last read returned less than OpenSSL asked for (read-ahead asks for a
	 * whole buffer): the socket was empty then. See tls_read_drained. */
	bool rd_short;
};

static int conn_idx = -1, ctx_idx = -1;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static atomic_uint_fast64_t next_ctx_id = 1;

static void tls_init_once(void)
{
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
	conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static void tls_init(void)
{
	pthread_once(&tls_once, tls_init_once);
}

static struct tls_conn *conn_of(const SSL *ssl)
{
	return SSL_get_ex_data(ssl, conn_idx);
}

/* ---- small helpers ---- */

/* The earliest queued OpenSSL error as text (reason only), and clears the queue. */
static const char *drain_errors(char *buf, size_t n)
{
	unsigned long e, first = 0;

	while ((e = ERR_get_error()) != 0)
		if (!first)
			first = e;
	if (!first) {
		snprintf(buf, n, "unknown error");
	} else {
		const char *r = ERR_reason_error_string(first);

		if (r)
			snprintf(buf, n, "%s", r);
		else
			snprintf(buf, n, "error:%08lX", first);
	}
	return buf;
}

static void upper_token(const char *s, char *out, size_t n)
{
	size_t i = 0;

	for (; *s && i + 1 < n; s++)
		out[i++] = (*s == ' ' || *s == '-') ? '_' : (char)toupper((unsigned char)*s);
	out[i] = '\0';
}

static bool is_ip(const char *s)
{
	unsigned char b[16];

	return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* ---- PEM sources ---- */

struct pem_src {
	BIO *bio;
	char *owned;       /* file contents we read; wiped and freed by pem_close */
	size_t owned_len;
	const char *what;  /* "client certificate" */
	const char *name;  /* label, path, or "inline PEM" */
};

static bool pem_given(const struct tls_pem *p)
{
	return p->file || p->data;
}

static void src_err(struct sbuf *err, const struct pem_src *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void src_err(struct sbuf *err, const struct pem_src *s, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	sbuf_addf(err, "%s %s: ", s->what, s->name);
	va_start(ap, fmt);
	sbuf_vaddf(err, fmt, ap);
	va_end(ap);
}

/* Reads a whole file into one allocation of its exact size: no realloc, so no stray
 * copies of a key are left in freed memory. */
static int read_file_exact(const char *path, char **out, size_t *len)
{
	struct stat st;
	size_t n = 0, size;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		goto fail;
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > TLS_PEM_MAX) {
		errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		goto fail;
	}
	size = (size_t)st.st_size;
	buf = xmalloc(size + 1);
	while (n < size) {
		ssize_t r = read(fd, buf + n, size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			OPENSSL_cleanse(buf, size + 1);
			free(buf);
			close(fd);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	*len = size + 1;
	return 0;
fail:
	{
		int e = errno;

		close(fd);
		errno = e;
	}
	return -1;
}

static int pem_open(const struct tls_pem *p, const char *what, struct pem_src *s,
                    struct sbuf *err)
{
	memset(s, 0, sizeof(*s));
	s->what = what;
	s->name = p->label ? p->label : p->file ? p->file : "inline PEM";
	if (p->file && p->data) {
		src_err(err, s, "both a file and inline data given");
		return -1;
	}
	if (p->file) {
		size_t len;

		if (read_file_exact(p->file, &s->owned, &len) < 0) {
			src_err(err, s, "cannot read: %s", strerror(errno));
			return -1;
		}
		s->owned_len = len;
		s->bio = BIO_new_mem_buf(s->owned, (int)strlen(s->owned));
	} else {
		if (p->len > TLS_PEM_MAX) {
			src_err(err, s, "too large");
			return -1;
		}
		s->bio = BIO_new_mem_buf(p->data, (int)p->len);
	}
	if (!s->bio) {
		src_err(err, s, "out of memory");
		return -1;
	}
	return 0;
}

static void pem_close(struct pem_src *s)
{
	BIO_free(s->bio);
	if (s->owned) {
		OPENSSL_cleanse(s->owned, s->owned_len);
		free(s->owned);
	}
	memset(s, 0, sizeof(*s));
}

/* True if the PEM reader stopped because there is nothing more (not a broken block). */
static bool pem_end_ok(void)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		ERR_clear_error();
		return true;
	}
	return false;
}

static STACK_OF(X509) *load_certs(const struct tls_pem *p, const char *what, struct sbuf *err)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	struct pem_src s;
	X509 *x;
	char e[160];

	if (pem_open(p, what, &s, err) < 0)
		goto fail;
	ERR_clear_error();
	while ((x = PEM_read_bio_X509(s.bio, NULL, NULL, NULL)) != NULL)
		sk_X509_push(sk, x);
	if (!pem_end_ok()) {
		src_err(err, &s, "bad PEM certificate: %s", drain_errors(e, sizeof(e)));
		goto fail_src;
	}
	if (sk_X509_num(sk) == 0) {
		src_err(err, &s, "no PEM certificate found");
		goto fail_src;
	}
	pem_close(&s);
	return sk;
fail_src:
	pem_close(&s);
fail:
	sk_X509_pop_free(sk, X509_free);
	return NULL;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;
}

static EVP_PKEY *load_key(const struct tls_pem *p, struct sbuf *err)
{
	struct pem_src s;
	EVP_PKEY *k;
	char e[160];

	if (pem_open(p, "private key", &s, err) < 0)
		return NULL;
	ERR_clear_error();
	k = PEM_read_bio_PrivateKey(s.bio, NULL, no_passphrase, NULL);
	if (!k)
		src_err(err, &s, "no usable PEM private key (encrypted keys are not supported): %s",
		        drain_errors(e, sizeof(e)));
	pem_close(&s);
	return k;
}

static int load_crls(X509_STORE *st, const struct tls_pem *p, struct sbuf *err)
{
	struct pem_src s;
	X509_CRL *crl;
	int n = 0;
	char e[160];

	if (pem_open(p, "CRL", &s, err) < 0)
		return -1;
	ERR_clear_error();
	while ((crl = PEM_read_bio_X509_CRL(s.bio, NULL, NULL, NULL)) != NULL) {
		int ok = X509_STORE_add_crl(st, crl);

		X509_CRL_free(crl);
		if (!ok) {
			src_err(err, &s, "cannot add CRL: %s", drain_errors(e, sizeof(e)));
			goto fail;
		}
		n++;
	}
	if (!pem_end_ok()) {
		src_err(err, &s, "bad PEM CRL: %s", drain_errors(e, sizeof(e)));
		goto fail;
	}
	if (n == 0) {
		src_err(err, &s, "no PEM X509 CRL found");
		goto fail;
	}
	X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	pem_close(&s);
	return 0;
fail:
	pem_close(&s);
	return -1;
}

/* Adds CA certificates to the context's store (and, for a server, to the list of CA
 * names sent in CertificateRequest). */
static int load_trust(SSL_CTX *sctx, const struct tls_pem *p, const char *what, bool server,
                      struct sbuf *err)
{
	STACK_OF(X509) *sk = load_certs(p, what, err);
	X509_STORE *st = SSL_CTX_get_cert_store(sctx);
	char e[160];

	if (!sk)
		return -1;
	for (int i = 0; i < sk_X509_num(sk); i++) {
		X509 *x = sk_X509_value(sk, i);

		if (!X509_STORE_add_cert(st, x) ||
		    (server && !SSL_CTX_add_client_CA(sctx, x))) {
			if (err)
				sbuf_addf(err, "%s: cannot add certificate %d: %s", what, i + 1,
				          drain_errors(e, sizeof(e)));
			sk_X509_pop_free(sk, X509_free);
			return -1;
		}
	}
	sk_X509_pop_free(sk, X509_free);
	return 0;
}

static int load_cert_key(SSL_CTX *sctx, const struct tls_pem *cert, const struct tls_pem *key,
                         const char *what, struct sbuf *err)
{
	STACK_OF(X509) *sk = NULL;
	EVP_PKEY *pk = NULL;
	char e[160];
	int rc = -1;

	if (!pem_given(cert) || !pem_given(key)) {
		if (err)
			sbuf_addf(err, "%s: %s given without %s", what,
			          pem_given(cert) ? "certificate" : "private key",
			          pem_given(cert) ? "private key" : "certificate");
		return -1;
	}
	sk = load_certs(cert, what, err);
	if (!sk)
		goto out;
	pk = load_key(key, err);
	if (!pk)
		goto out;
	if (!SSL_CTX_use_certificate(sctx, sk_X509_value(sk, 0))) {
		if (err)
			sbuf_addf(err, "%s: unusable certificate: %s", what, drain_errors(e, sizeof(e)));
		goto out;
	}
	for (int i = 1; i < sk_X509_num(sk); i++) {
		if (!SSL_CTX_add1_chain_cert(sctx, sk_X509_value(sk, i))) {
			if (err)
				sbuf_addf(err, "%s: cannot add chain certificate %d: %s", what, i + 1,
				          drain_errors(e, sizeof(e)));
			goto out;
		}
	}
	if (!SSL_CTX_use_PrivateKey(sctx, pk) || !SSL_CTX_check_private_key(sctx)) {
		ERR_clear_error();
		if (err)
			sbuf_addf(err, "private key %s: does not match the certificate %s",
			          key->label ? key->label : key->file ? key->file : "inline PEM",
			          cert->label ? cert->label : cert->file ? cert->file : "inline PEM");
		goto out;
	}
	rc = 0;
out:
	EVP_PKEY_free(pk);     /* frees (and OpenSSL cleanses) our reference to the key */
	sk_X509_pop_free(sk, X509_free);
	return rc;
}

static unsigned char *alpn_wire(const char *const *alpn, size_t n, size_t *len,
                                struct sbuf *err)
{
	size_t total = 0, off = 0;
	unsigned char *w;

	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(alpn[i]);

		if (l == 0 || l > 255) {
			if (err)
				sbuf_addf(err, "ALPN protocol %zu: length %zu (want 1..255)", i + 1, l);
			return NULL;
		}
		total += 1 + l;
	}
	w = xmalloc(total ? total : 1);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(alpn[i]);

		w[off++] = (unsigned char)l;
		memcpy(w + off, alpn[i], l);
		off += l;
	}
	*len = total;
	return w;
}

/* ---- SAN matching ---- */

/* A DNS SAN from a certificate against a configured name: exact (case-insensitive), or a
 * "*.rest" SAN covering exactly one label in front of rest (Envoy's dnsNameMatch). */
static bool dns_san_match(const unsigned char *san, size_t slen, const char *want)
{
	size_t wlen = strlen(want);
	const char *dot;

	if (slen == wlen && strncasecmp((const char *)san, want, wlen) == 0)
		return true;
	if (slen < 3 || san[0] != '*' || san[1] != '.')
		return false;
	dot = strchr(want, '.');
	if (!dot || dot == want)
		return false;
	return strlen(dot) == slen - 1 && strncasecmp(dot, (const char *)san + 1, slen - 1) == 0;
}

static bool gen_matches(const GENERAL_NAME *g, const char *want)
{
	const unsigned char *d;
	int l;

	switch (g->type) {
	case GEN_DNS:
		d = ASN1_STRING_get0_data(g->d.dNSName);
		l = ASN1_STRING_length(g->d.dNSName);
		return l > 0 && !memchr(d, 0, (size_t)l) && dns_san_match(d, (size_t)l, want);
	case GEN_URI:
		d = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		l = ASN1_STRING_length(g->d.uniformResourceIdentifier);
		return (size_t)l == strlen(want) && memcmp(d, want, (size_t)l) == 0;
	case GEN_IPADD: {
		unsigned char ip[16];

		d = ASN1_STRING_get0_data(g->d.iPAddress);
		l = ASN1_STRING_length(g->d.iPAddress);
		if (l == 4 && inet_pton(AF_INET, want, ip) == 1)
			return memcmp(d, ip, 4) == 0;
		if (l == 16 && inet_pton(AF_INET6, want, ip) == 1)
			return memcmp(d, ip, 16) == 0;
		return false;
	}
	default:
		return false;
	}
}

static bool san_list_match(X509 *cert, char *const *want, size_t n)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	bool ok = false;

	if (!gens)
		return false;
	for (int i = 0; i < sk_GENERAL_NAME_num(gens) && !ok; i++)
		for (size_t j = 0; j < n && !ok; j++)
			ok = gen_matches(sk_GENERAL_NAME_value(gens, i), want[j]);
	GENERAL_NAMES_free(gens);
	return ok;
}

/* ---- verification callback (both sides) ---- */

/* "CN=my-nginx.mesh-external.svc.cluster.local,O=some organization" (in certificate
 * order), for failure messages. */
static char *subject_str(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char buf[256];
	int n = 0;

	if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
	                            XN_FLAG_SEP_COMMA_PLUS | XN_FLAG_FN_SN | ASN1_STRFLGS_RFC2253) >= 0)
		n = BIO_read(b, buf, (int)sizeof(buf) - 1);
	BIO_free(b);
	buf[n > 0 ? n : 0] = '\0';
	return xstrdup(buf);
}

static int verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl ? conn_of(ssl) : NULL;
	int depth = X509_STORE_CTX_get_error_depth(xs);
	char *const *sans = NULL;
	size_t nsans = 0;

	if (!c)
		return ok;
	if (ok && depth == 0) {
		if (c->server) {
			struct tls_ctx *cur = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);

			if (cur) {
				sans = cur->sans;
				nsans = cur->nsans;
			}
		} else {
			sans = c->sans;
			nsans = c->nsans;
		}
		if (nsans && !san_list_match(X509_STORE_CTX_get_current_cert(xs), sans, nsans)) {
			c->san_mismatch = true;
			X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
			ok = 0;
		}
	}
	if (!ok && !c->vfail_subject) {
		X509 *cur = X509_STORE_CTX_get_current_cert(xs);

		c->vfail_depth = depth;
		if (cur)
			c->vfail_subject = subject_str(cur);
	}
	return ok;
}

/* Client without a certificate: remember that the server asked for one, to explain the
 * failure that follows. Returning 0 sends no certificate. */
static int client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
	struct tls_conn *c = conn_of(ssl);

	(void)x509; (void)pkey;
	if (c)
		c->cert_requested = true;
	return 0;
}

/* ---- client sessions ---- */

struct sess_entry {
	uint64_t ctx_id;
	struct tls_ctx_life *life;     /* reference: the context the session was made with */
	struct sock_addr addr;
	char *sni;                     /* "" when none */
	uint64_t hash;
	SSL_SESSION *sess;
	struct sess_entry *hnext;
	struct sess_entry *prev, *next; /* LRU: head is most recent */
};

struct tls_sess_cache {
	struct sess_entry **buckets;
	size_t nbuckets, n, max;
	struct sess_entry *head, *tail;
	struct tls_sess_stats st;
	uint_fast64_t swept_gone;      /* ctx_gone_count at the last sweep */
};

static void life_unref(struct tls_ctx_life *l)
{
	if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
		free(l);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t sess_hash(uint64_t ctx_id, const struct sock_addr *a, const char *sni)
{
	uint64_t h = fnv(14695981039346656037ull, &ctx_id, sizeof(ctx_id));

	if (a->u.sa.sa_family == AF_INET)
		h = fnv(h, &a->u.in4.sin_addr, 4), h = fnv(h, &a->u.in4.sin_port, 2);
	else if (a->u.sa.sa_family == AF_INET6)
		h = fnv(h, &a->u.in6.sin6_addr, 16), h = fnv(h, &a->u.in6.sin6_port, 2);
	return fnv(h, sni, strlen(sni));
}

struct tls_sess_cache *tls_sess_cache_new(size_t max_entries)
{
	struct tls_sess_cache *c = xcalloc(1, sizeof(*c));

	c->max = max_entries ? max_entries : 1024;
	c->nbuckets = 16;
	while (c->nbuckets < c->max)
		c->nbuckets *= 2;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	return c;
}

static void lru_unlink(struct tls_sess_cache *c, struct sess_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(struct tls_sess_cache *c, struct sess_entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

static struct sess_entry **sess_find(struct tls_sess_cache *c, uint64_t h, uint64_t ctx_id,
                                     const struct sock_addr *a, const char *sni)
{
	struct sess_entry **pp = &c->buckets[h & (c->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->hnext) {
		struct sess_entry *e = *pp;

		if (e->hash == h && e->ctx_id == ctx_id && sock_addr_equal(&e->addr, a) &&
		    strcmp(e->sni, sni) == 0)
			return pp;
	}
	return pp;
}

static void sess_remove(struct tls_sess_cache *c, struct sess_entry **pp)
{
	struct sess_entry *e = *pp;

	*pp = e->hnext;
	lru_unlink(c, e);
	SSL_SESSION_free(e->sess);
	life_unref(e->life);
	free(e->sni);
	free(e);
	c->n--;
}

static void sess_remove_entry(struct tls_sess_cache *c, struct sess_entry *e)
{
	struct sess_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	sess_remove(c, pp);
}

void tls_sess_cache_free(struct tls_sess_cache *c)
{
	if (!c)
		return;
	while (c->head)
		sess_remove_entry(c, c->head);
	free(c->buckets);
	free(c);
}

const struct tls_sess_stats *tls_sess_cache_stats(const struct tls_sess_cache *c)
{
	return &c->st;
}

size_t tls_sess_cache_size(const struct tls_sess_cache *c)
{
	return c->n;
}

size_t tls_sess_cache_sweep(struct tls_sess_cache *c)
{
	uint_fast64_t gone = atomic_load_explicit(&ctx_gone_count, memory_order_acquire);
	struct sess_entry *e, *next;
	size_t n = 0;

	if (gone == c->swept_gone)
		return 0;
	c->swept_gone = gone;
	for (e = c->head; e; e = next) {
		next = e->next;
		if (atomic_load_explicit(&e->life->gone, memory_order_acquire)) {
			sess_remove_entry(c, e);
			n++;
		}
	}
	c->st.stale += n;
	return n;
}

static const char *conn_sni(const struct tls_conn *c)
{
	const char *s = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);

	return s ? s : "";
}

/* Takes ownership of sess. */
static void sess_put(struct tls_conn *conn, SSL_SESSION *sess)
{
	struct tls_sess_cache *c = conn->cache;
	const char *sni = conn_sni(conn);
	uint64_t id = conn->sess_id;
	uint64_t h = sess_hash(id, &conn->endpoint, sni);
	struct sess_entry **pp = sess_find(c, h, id, &conn->endpoint, sni), *e = *pp;

	if (e) {
		SSL_SESSION_free(e->sess);
		e->sess = sess;
		lru_unlink(c, e);
		lru_push_front(c, e);
	} else {
		if (c->n >= c->max) {
			sess_remove_entry(c, c->tail);
			c->st.evicted++;
			pp = sess_find(c, h, id, &conn->endpoint, sni);
		}
		e = xcalloc(1, sizeof(*e));
		e->ctx_id = id;
		e->life = conn->ctx->life;
		atomic_fetch_add_explicit(&e->life->refs, 1, memory_order_relaxed);
		e->addr = conn->endpoint;
		e->sni = xstrdup(sni);
		e->hash = h;
		e->sess = sess;
		*pp = e;
		lru_push_front(c, e);
		c->n++;
	}
	c->st.stored++;
}

static void sess_drop(struct tls_conn *conn)
{
	const char *sni = conn_sni(conn);
	uint64_t h = sess_hash(conn->sess_id, &conn->endpoint, sni);
	struct sess_entry **pp = sess_find(conn->cache, h, conn->sess_id, &conn->endpoint, sni);

	if (*pp)
		sess_remove(conn->cache, pp);
}

/* OpenSSL hands us each new session (TLS 1.2: at the end of the handshake; TLS 1.3: each
 * NewSessionTicket). The SSL_CTX is shared by all workers, so the destination slot comes
 * from the SSL's own ex_data (its connection, on this thread), never from the context. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_conn *c = conn_of(ssl);

	if (!c || !c->cache || !SSL_SESSION_is_resumable(sess))
		return 0;
	sess_put(c, sess);
	return 1;
}

void tls_client_resume(struct tls_conn *c, struct tls_sess_cache *cache,
                       const struct sock_addr *endpoint)
{
	const char *sni;
	uint64_t h;
	struct sess_entry **pp, *e;

	if (c->server || !cache)
		return;
	c->cache = cache;
	c->endpoint = *endpoint;
	sni = conn_sni(c);
	h = sess_hash(c->sess_id, endpoint, sni);
	pp = sess_find(cache, h, c->sess_id, endpoint, sni);
	e = *pp;
	if (!e)
		return;
	if (!SSL_SESSION_is_resumable(e->sess) ||
	    (uint64_t)SSL_SESSION_get_time(e->sess) + (uint64_t)SSL_SESSION_get_timeout(e->sess) <
	    (uint64_t)time(NULL)) {
		sess_remove(cache, pp);
		return;
	}
	if (SSL_set_session(c->ssl, e->sess)) {
		cache->st.offered++;
		lru_unlink(cache, e);
		lru_push_front(cache, e);
	}
}

/* ---- contexts ---- */

static struct tls_ctx *ctx_alloc(SSL_CTX *sctx, bool server)
{
	struct tls_ctx *c = xcalloc(1, sizeof(*c));

	c->ssl_ctx = sctx;
	c->server = server;
	c->id = atomic_fetch_add(&next_ctx_id, 1);
	atomic_init(&c->refs, 1);
	c->life = xcalloc(1, sizeof(*c->life));
	atomic_init(&c->life->refs, 1);
	atomic_init(&c->life->gone, false);
	SSL_CTX_set_ex_data(sctx, ctx_idx, c);
	return c;
}

static void ctx_destroy(struct tls_ctx *c)
{
	atomic_store_explicit(&c->life->gone, true, memory_order_release);
	life_unref(c->life);
	atomic_fetch_add_explicit(&ctx_gone_count, 1, memory_order_release);
	SSL_CTX_free(c->ssl_ctx);
	free(c->alpn);
	free(c->ciphers);
	free(c->ciphersuites);
	for (size_t i = 0; i < c->nsans; i++)
		free(c->sans[i]);
	free(c->sans);
	free(c);
}

struct tls_ctx *tls_ctx_ref(struct tls_ctx *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

void tls_ctx_unref(struct tls_ctx *c)
{
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		ctx_destroy(c);
}

uint64_t tls_ctx_id(const struct tls_ctx *c)
{
	return c->id;
}

/* Settings shared by both sides. */
static int ctx_common(struct tls_ctx *c, int minv, int maxv, const char *ciphers,
                      const char *suites, const char *const *alpn, size_t nalpn,
                      struct sbuf *err)
{
	SSL_CTX *s = c->ssl_ctx;
	char e[160];

	c->min_version = minv ? minv : TLS1_2_VERSION;
	c->max_version = maxv ? maxv : TLS1_3_VERSION;
	if (c->min_version > c->max_version) {
		if (err)
			sbuf_addf(err, "minimum TLS version is above the maximum");
		return -1;
	}
	if (!SSL_CTX_set_min_proto_version(s, c->min_version) ||
	    !SSL_CTX_set_max_proto_version(s, c->max_version)) {
		if (err)
			sbuf_addf(err, "unsupported TLS protocol version");
		ERR_clear_error();
		return -1;
	}
	/* Partial writes and moving buffers: the caller's output buffer may be compacted
	 * between retries. RELEASE_BUFFERS: idle connections hold no 34 KiB of record
	 * buffers (client contexts turn it off again: see tls_client_ctx_new). */
	SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                    SSL_MODE_RELEASE_BUFFERS);
	/* Read-ahead: one read() per record instead of two (header, then body), a syscall
	 * per response saved. Bytes read ahead stay inside OpenSSL where no socket event
	 * announces them: every reader here reads until TLS_WANT_READ, or until
	 * tls_read_drained says nothing is left, before it waits. */
	SSL_CTX_set_read_ahead(s, 1);
	/* No renegotiation (an attack surface, and nothing of ours needs it). An EOF
	 * without close_notify reads as a close: HTTP's framing detects truncation, and
	 * many servers close that way. */
	SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
	                       SSL_OP_NO_COMPRESSION);
	if (ciphers) {
		if (!SSL_CTX_set_cipher_list(s, ciphers)) {
			if (err)
				sbuf_addf(err, "cipher list \"%s\": %s", ciphers, drain_errors(e, sizeof(e)));
			return -1;
		}
		c->ciphers = xstrdup(ciphers);
	}
	if (suites) {
		if (!SSL_CTX_set_ciphersuites(s, suites)) {
			if (err)
				sbuf_addf(err, "TLS 1.3 cipher suites \"%s\": %s", suites,
				          drain_errors(e, sizeof(e)));
			return -1;
		}
		c->ciphersuites = xstrdup(suites);
	}
	if (nalpn) {
		c->alpn = alpn_wire(alpn, nalpn, &c->alpn_len, err);
		if (!c->alpn)
			return -1;
	}
	return 0;
}

/* The part both context kinds share: the SSL_CTX for method, our wrapper around it, and
 * the protocol versions, ciphers and ALPN. Returns the context (one reference), or NULL
 * with the reason appended to err. */
static struct tls_ctx *ctx_create(const SSL_METHOD *method, bool server, int min_version,
                                  int max_version, const char *ciphers,
                                  const char *ciphersuites, const char *const *alpn,
                                  size_t nalpn, struct sbuf *err)
{
	SSL_CTX *s;
	struct tls_ctx *c;
	char e[160];

	tls_init();
	s = SSL_CTX_new_ex(NULL, NULL, method);
	if (!s) {
		if (err)
			sbuf_addf(err, "cannot create TLS context: %s", drain_errors(e, sizeof(e)));
		return NULL;
	}
	c = ctx_alloc(s, server);
	if (ctx_common(c, min_version, max_version, ciphers, ciphersuites, alpn, nalpn, err) < 0) {
		ERR_clear_error();
		tls_ctx_unref(c);
		return NULL;
	}
	return c;
}

/* The process's one copy of the system trust store (tls_sysca.h) as s's store. */
static int tls_ctx_use_system_store(SSL_CTX *s)
{
	X509_STORE *st = tls_system_store();

	if (!st)
		return -1;
	SSL_CTX_set1_cert_store(s, st);
	X509_STORE_free(st);
	return 0;
}

struct tls_ctx *tls_client_ctx_new(const struct tls_client_params *p, struct sbuf *err)
{
	SSL_CTX *s;
	struct tls_ctx *c;
	char e[160];

	c = ctx_create(TLS_client_method(), false, p->min_version, p->max_version, p->ciphers,
	               p->ciphersuites, p->alpn, p->nalpn, err);
	if (!c)
		return NULL;
	s = c->ssl_ctx;
	if (c->alpn && SSL_CTX_set_alpn_protos(s, c->alpn, (unsigned)c->alpn_len) != 0) {
		if (err)
			sbuf_addf(err, "cannot set ALPN protocols");
		goto fail;
	}
	/* Sessions go to the per-worker cache only: OpenSSL's internal store would be
	 * state shared (and locked) across workers. */
	SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(s, new_session_cb);
	/* Upstream connections keep their record buffers: they are few (pooled, shared by
	 * many clients) and busy, and releasing the buffers cost a malloc and a free of
	 * ~17 KiB each way for every request (OpenSSL gives them back after each record). */
	SSL_CTX_clear_mode(s, SSL_MODE_RELEASE_BUFFERS);

	if (p->insecure_skip_verify) {
		SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
	} else {
		SSL_CTX_set_verify(s, SSL_VERIFY_PEER, verify_cb);
		if (pem_given(&p->ca)) {
			if (load_trust(s, &p->ca, "CA certificates", false, err) < 0)
				goto fail;
		} else if (pem_given(&p->crl) ? !SSL_CTX_set_default_verify_paths(s)
		                              : tls_ctx_use_system_store(s) < 0) {
			if (err)
				sbuf_addf(err, "cannot load the system trust store: %s",
				          drain_errors(e, sizeof(e)));
			goto fail;
		}
		if (pem_given(&p->crl) && load_crls(SSL_CTX_get_cert_store(s), &p->crl, err) < 0)
			goto fail;
	}
	if (pem_given(&p->cert) || pem_given(&p->key)) {
		if (load_cert_key(s, &p->cert, &p->key, "client certificate", err) < 0)
			goto fail;
	} else {
		SSL_CTX_set_client_cert_cb(s, client_cert_cb);
	}
	ERR_clear_error();
	return c;
fail:
	ERR_clear_error();
	tls_ctx_unref(c);
	return NULL;
}

static int servername_ack_cb(SSL *ssl, int *al, void *arg)
{
	(void)ssl; (void)al; (void)arg;
	return SSL_TLSEXT_ERR_OK;      /* acknowledge SNI; dispatch is in client_hello_cb */
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
	struct tls_ctx *c = arg;
	unsigned char *o;

	(void)ssl;
	if (!c->alpn)
		return SSL_TLSEXT_ERR_NOACK;
	/* Walks our list in order and takes the first one the client offered. */
	if (SSL_select_next_proto(&o, outlen, c->alpn, (unsigned)c->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = o;
	return SSL_TLSEXT_ERR_OK;
}

struct tls_ctx *tls_server_ctx_new(const struct tls_server_params *p, struct sbuf *err)
{
	SSL_CTX *s;
	struct tls_ctx *c;

	c = ctx_create(TLS_server_method(), true, p->min_version, p->max_version, p->ciphers,
	               p->ciphersuites, p->alpn, p->nalpn, err);
	if (!c)
		return NULL;
	s = c->ssl_ctx;
	SSL_CTX_set_options(s, SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (load_cert_key(s, &p->cert, &p->key, "server certificate", err) < 0)
		goto fail;
	/* Resumption through tickets only (stateless, keys shared by all workers through
	 * the SSL_CTX); the stateful cache would be a locked table. */
	SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	/* A distinct session id context per context: a session made under a context
	 * without client authentication must not resume under one that requires it. */
	SSL_CTX_set_session_id_context(s, (const unsigned char *)&c->id, sizeof(c->id));
	SSL_CTX_set_tlsext_servername_callback(s, servername_ack_cb);
	SSL_CTX_set_alpn_select_cb(s, alpn_select_cb, c);

	if (pem_given(&p->client_ca)) {
		int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;

		if (!p->optional_client_cert)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		if (load_trust(s, &p->client_ca, "client CA certificates", true, err) < 0)
			goto fail;
		if (pem_given(&p->crl) && load_crls(SSL_CTX_get_cert_store(s), &p->crl, err) < 0)
			goto fail;
		SSL_CTX_set_verify(s, mode, verify_cb);
		if (p->nclient_sans) {
			c->sans = xcalloc(p->nclient_sans, sizeof(*c->sans));
			for (size_t i = 0; i < p->nclient_sans; i++)
				c->sans[i] = xstrdup(p->client_sans[i]);
			c->nsans = p->nclient_sans;
		}
	} else {
		if (pem_given(&p->crl) || p->nclient_sans) {
			if (err)
				sbuf_addf(err, "%s given without client CA certificates",
				          pem_given(&p->crl) ? "CRL" : "client subjectAltNames");
			goto fail;
		}
		SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
	}
	ERR_clear_error();
	return c;
fail:
	ERR_clear_error();
	tls_ctx_unref(c);
	return NULL;
}

void tls_identity_files(const char *dir, struct tls_identity_files *f,
                        struct tls_pem *cert, struct tls_pem *key, struct tls_pem *root)
{
	snprintf(f->cert, sizeof(f->cert), "%s/cert-chain.pem", dir);
	snprintf(f->key, sizeof(f->key), "%s/key.pem", dir);
	snprintf(f->root, sizeof(f->root), "%s/root-cert.pem", dir);
	if (cert) {
		memset(cert, 0, sizeof(*cert));
		cert->file = f->cert;
	}
	if (key) {
		memset(key, 0, sizeof(*key));
		key->file = f->key;
	}
	if (root) {
		memset(root, 0, sizeof(*root));
		root->file = f->root;
	}
}

/* ---- SNI dispatch ---- */

static bool str_eq_null(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Moves a server SSL to another context before version negotiation. SSL_set_SSL_CTX
 * swaps certificate, key and session id context; the rest that SSL_new copied from the
 * listener's context is copied here. */
static int switch_ctx(SSL *ssl, struct tls_ctx *from, struct tls_ctx *to)
{
	SSL_CTX *s = to->ssl_ctx;

	if (!SSL_set_SSL_CTX(ssl, s))
		return -1;
	SSL_set_verify(ssl, SSL_CTX_get_verify_mode(s), SSL_CTX_get_verify_callback(s));
	SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(s));
	SSL_clear_options(ssl, SSL_get_options(ssl) ^ SSL_CTX_get_options(s));
	SSL_set_options(ssl, SSL_CTX_get_options(s));
	if (!SSL_set_min_proto_version(ssl, to->min_version) ||
	    !SSL_set_max_proto_version(ssl, to->max_version))
		return -1;
	if (!str_eq_null(from->ciphers, to->ciphers) &&
	    !SSL_set_cipher_list(ssl, to->ciphers ? to->ciphers : OSSL_default_cipher_list()))
		return -1;
	if (!str_eq_null(from->ciphersuites, to->ciphersuites) &&
	    !SSL_set_ciphersuites(ssl, to->ciphersuites ? to->ciphersuites
	                                                : OSSL_default_ciphersuites()))
		return -1;
	return 0;
}

/* Extracts the host_name from a raw server_name extension (RFC 6066 section 3). */
static bool parse_sni(const unsigned char *p, size_t len, char *out, size_t n)
{
	size_t list, nl;

	if (len < 2)
		return false;
	list = ((size_t)p[0] << 8) | p[1];
	p += 2;
	len -= 2;
	if (list != len || len < 3 || p[0] != TLSEXT_NAMETYPE_host_name)
		return false;
	nl = ((size_t)p[1] << 8) | p[2];
	p += 3;
	len -= 3;
	if (nl == 0 || nl > len || nl >= n || memchr(p, 0, nl))
		return false;
	memcpy(out, p, nl);
	out[nl] = '\0';
	return true;
}

static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
	struct tls_conn *c = conn_of(ssl);
	struct tls_ctx *dflt = arg, *sel;
	const unsigned char *p;
	size_t len;
	char name[256];
	const char *sni = NULL;

	if (!c)
		return SSL_CLIENT_HELLO_SUCCESS;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) &&
	    parse_sni(p, len, name, sizeof(name)))
		sni = name;
	sel = dflt->select(sni, dflt->select_arg);
	if (!sel) {
		free(c->sni_rejected);
		c->sni_rejected = xstrdup(sni ? sni : "");
		*al = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (sel != dflt && !c->sni_ctx) {
		c->sni_ctx = tls_ctx_ref(sel);
		if (switch_ctx(ssl, dflt, sel) < 0) {
			*al = SSL_AD_INTERNAL_ERROR;
			return SSL_CLIENT_HELLO_ERROR;
		}
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

void tls_server_set_sni(struct tls_ctx *dflt,
                        struct tls_ctx *(*select)(const char *sni, void *arg), void *arg)
{
	dflt->select = select;
	dflt->select_arg = arg;
	SSL_CTX_set_client_hello_cb(dflt->ssl_ctx, select ? client_hello_cb : NULL, dflt);
}

bool tls_host_match(const char *pattern, const char *name)
{
	size_t nl, pl;

	if (strcmp(pattern, "*") == 0)
		return true;
	if (!name)
		return false;
	nl = strlen(name);
	if (nl && name[nl - 1] == '.')
		nl--;
	pl = strlen(pattern);
	if (pattern[0] == '*' && pattern[1] == '.') {
		/* "*.example.com": name must be longer than ".example.com" and end with it. */
		size_t sl = pl - 1;

		return nl > sl && strncasecmp(name + nl - sl, pattern + 1, sl) == 0;
	}
	return nl == pl && strncasecmp(name, pattern, nl) == 0;
}

/* ---- connections ---- */

/* Watches the socket BIO's reads for rd_short. */
static long bio_read_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                        int ret, size_t *processed)
{
	(void)argp;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
		struct tls_conn *c = (struct tls_conn *)BIO_get_callback_arg(b);

		c->rd_short = ret > 0 && processed && *processed < len;
	}
	return ret;
}

static struct tls_conn *conn_new(struct tls_ctx *ctx, int fd, bool server)
{
	struct tls_conn *c = xcalloc(1, sizeof(*c));

	c->ssl = SSL_new(ctx->ssl_ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
		fprintf(stderr, "egressgw: SSL_new/SSL_set_fd failed (out of memory)\n");
		abort();
	}
	c->ctx = tls_ctx_ref(ctx);
	c->server = server;
	c->cat = "";
	SSL_set_ex_data(c->ssl, conn_idx, c);
	BIO_set_callback_arg(SSL_get_rbio(c->ssl), (char *)c);
	BIO_set_callback_ex(SSL_get_rbio(c->ssl), bio_read_cb);
	return c;
}

/* Copies the verify names into one allocation. */
static void conn_set_names(struct tls_conn *c, const struct tls_verify_names *nm)
{
	size_t total = 0;
	char *p;

	if (nm->nsans) {
		for (size_t i = 0; i < nm->nsans; i++)
			total += strlen(nm->sans[i]) + 1;
		c->names_blob = xmalloc(nm->nsans * sizeof(char *) + total);
		c->sans = c->names_blob;
		p = (char *)(c->sans + nm->nsans);
		for (size_t i = 0; i < nm->nsans; i++) {
			size_t l = strlen(nm->sans[i]) + 1;

			memcpy(p, nm->sans[i], l);
			c->sans[i] = p;
			p += l;
		}
		c->nsans = nm->nsans;
	} else if (nm->hostname && nm->hostname[0]) {
		c->names_blob = xstrdup(nm->hostname);
		c->hostname = c->names_blob;
		if (is_ip(c->hostname)) {
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->hostname);
		} else {
			/* NEVER_CHECK_SUBJECT: the CN is not a name (RFC 6125, and Envoy). */
			SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
			                          X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			SSL_set1_host(c->ssl, c->hostname);
		}
	}
}

void tls_client_alpn(struct tls_conn *c, const char *const *alpn, size_t n)
{
	size_t len = 0;
	unsigned char *w = n ? alpn_wire(alpn, n, &len, NULL) : NULL;

	if (n && !w)
		return;         /* a name of bad length: callers pass short constant names */
	SSL_set_alpn_protos(c->ssl, w, (unsigned)len);
	free(w);
}

struct tls_conn *tls_client_new(struct tls_ctx *ctx, int fd, const char *sni,
                                const struct tls_verify_names *names)
{
	struct tls_conn *c = conn_new(ctx, fd, false);

	SSL_set_connect_state(c->ssl);
	if (sni && sni[0] && !is_ip(sni))
		SSL_set_tlsext_host_name(c->ssl, sni);
	c->sess_id = ctx->id;
	if (names && SSL_CTX_get_verify_mode(ctx->ssl_ctx) != SSL_VERIFY_NONE) {
		conn_set_names(c, names);
		/* 0x1f separates names and marks the kind (list or host) in the digest. */
		c->sess_id = fnv(c->sess_id * 1099511628211ull, c->nsans ? "\x1f" : "\x1e", 1);
		for (size_t i = 0; i < c->nsans; i++)
			c->sess_id = fnv(fnv(c->sess_id, c->sans[i], strlen(c->sans[i])), "\x1f", 1);
		if (c->hostname)
			c->sess_id = fnv(c->sess_id, c->hostname, strlen(c->hostname));
	}
	ERR_clear_error();
	return c;
}

struct tls_conn *tls_server_new(struct tls_ctx *ctx, int fd)
{
	struct tls_conn *c = conn_new(ctx, fd, true);

	SSL_set_accept_state(c->ssl);
	return c;
}

void tls_conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	/* OpenSSL marks the session of a connection freed without close_notify sent as not
	 * resumable (ssl_clear_bad_session), which would defeat the session cache every time
	 * a pooled connection is simply closed. A connection that did not fail is freed as
	 * if shut down; a failed one keeps OpenSSL's invalidation. */
	if (c->done && !c->failed)
		SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(c->ssl);
	tls_ctx_unref(c->sni_ctx);
	tls_ctx_unref(c->ctx);
	free(c->vfail_subject);
	free(c->sni_rejected);
	free(c->names_blob);
	free(c);
}

/* ---- failure reasons ---- */

static const char *verify_category(const struct tls_conn *c, long vr)
{
	switch (vr) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return TLS_CAT_CERT_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return TLS_CAT_CERT_NOT_YET_VALID;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return TLS_CAT_UNKNOWN_CA;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return TLS_CAT_SELF_SIGNED;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return TLS_CAT_HOSTNAME_MISMATCH;
	case X509_V_ERR_CERT_REVOKED:
		return TLS_CAT_REVOKED;
	case X509_V_ERR_UNABLE_TO_GET_CRL:
	case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
	case X509_V_ERR_CRL_SIGNATURE_FAILURE:
	case X509_V_ERR_CRL_NOT_YET_VALID:
	case X509_V_ERR_CRL_HAS_EXPIRED:
	case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
	case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
	case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
	case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
	case X509_V_ERR_DIFFERENT_CRL_SCOPE:
		return TLS_CAT_CRL_ERROR;
	case X509_V_ERR_INVALID_PURPOSE:
		return TLS_CAT_BAD_PURPOSE;
	case X509_V_ERR_APPLICATION_VERIFICATION:
		if (c->san_mismatch)
			return TLS_CAT_SAN_MISMATCH;
		return TLS_CAT_CERT_INVALID;
	default:
		return TLS_CAT_CERT_INVALID;
	}
}

static const char *reason_category(int lib, int reason)
{
	if (lib != ERR_LIB_SSL)
		return TLS_CAT_TLS_ERROR;
	switch (reason) {
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
	case SSL_R_UNKNOWN_PROTOCOL:
	case SSL_R_UNSUPPORTED_SSL_VERSION:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_TLSV1_ALERT_INAPPROPRIATE_FALLBACK:
		return TLS_CAT_PROTOCOL_VERSION;
	case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
	case SSL_R_NO_CIPHERS_AVAILABLE:
	case SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY:
	case SSL_R_TLSV13_ALERT_MISSING_EXTENSION:
		return TLS_CAT_HANDSHAKE_FAILURE;
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return TLS_CAT_PEER_UNKNOWN_CA;
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_NO_CERTIFICATE:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
		return TLS_CAT_PEER_BAD_CERT;
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return TLS_CAT_CLIENT_CERT_REQUIRED;
	case SSL_R_TLSV1_UNRECOGNIZED_NAME:
		return TLS_CAT_UNRECOGNIZED_NAME;
	case SSL_R_NO_APPLICATION_PROTOCOL:
	case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
		return TLS_CAT_ALPN_MISMATCH;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return TLS_CAT_CONNECTION_CLOSED;
	case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
	case SSL_R_DECRYPTION_FAILED:
	case SSL_R_SSLV3_ALERT_BAD_RECORD_MAC:
	case SSL_R_TLSV1_ALERT_DECODE_ERROR:
	case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
	case SSL_R_TLSV1_ALERT_DECRYPTION_FAILED:
	case SSL_R_TLSV1_ALERT_RECORD_OVERFLOW:
	case SSL_R_SSLV3_ALERT_UNEXPECTED_MESSAGE:
	case SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER:
	case SSL_R_UNEXPECTED_MESSAGE:
	case SSL_R_RECORD_LENGTH_MISMATCH:
	case SSL_R_BAD_RECORD_TYPE:
	case SSL_R_LENGTH_MISMATCH:
	case SSL_R_BAD_PACKET_LENGTH:
		return TLS_CAT_PROTOCOL_ERROR;
	default:
		return TLS_CAT_TLS_ERROR;
	}
}

static void verify_detail(const struct tls_conn *c, long vr, char *out, size_t n)
{
	const char *want = NULL;
	size_t off;

	if (vr == X509_V_ERR_APPLICATION_VERIFICATION && c->san_mismatch) {
		char *const *sans = c->sans;
		size_t nsans = c->nsans;

		if (c->server) {
			struct tls_ctx *cur = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(c->ssl), ctx_idx);

			sans = cur ? cur->sans : NULL;
			nsans = cur ? cur->nsans : 0;
		}
		off = (size_t)snprintf(out, n, "no SubjectAltName matches [");
		for (size_t i = 0; i < nsans && off < n; i++)
			off += (size_t)snprintf(out + off, n - off, "%s%s", i ? ", " : "", sans[i]);
		if (off < n)
			off += (size_t)snprintf(out + off, n - off, "]");
	} else {
		off = (size_t)snprintf(out, n, "%s", X509_verify_cert_error_string(vr));
		if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
			want = c->hostname;
	}
	/* "certificate has expired (depth 0: CN=x)", "hostname mismatch (want h; depth 0: CN=x)" */
	if (off < n && want)
		off += (size_t)snprintf(out + off, n - off, " (want %s%s", want,
		                        c->vfail_subject ? "; " : ")");
	if (off < n && c->vfail_subject)
		snprintf(out + off, n - off, "%sdepth %d: %s)", want ? "" : " (",
		         c->vfail_depth, c->vfail_subject);
}

static const char *version_name(int v)
{
	switch (v) {
	case TLS1_VERSION:   return "TLSv1";
	case TLS1_1_VERSION: return "TLSv1.1";
	case TLS1_2_VERSION: return "TLSv1.2";
	case TLS1_3_VERSION: return "TLSv1.3";
	default:             return "?";
	}
}

/* Explains the failures whose OpenSSL reason alone leaves the operator guessing. */
static void alert_detail(const struct tls_conn *c, int lib, int reason, char *out, size_t n)
{
	const char *peer = c->server ? "client" : "server";
	const char *sni;

	if (lib != ERR_LIB_SSL)
		return;
	switch (reason) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		snprintf(out, n, "client sent no certificate");
		break;
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		snprintf(out, n, "the %s does not trust the CA of our certificate", peer);
		break;
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
		snprintf(out, n, "the %s rejected our certificate", peer);
		break;
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		snprintf(out, n, "the server requires a client certificate");
		break;
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
		snprintf(out, n, "the %s does not speak TLS here (plaintext?)", peer);
		break;
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
		snprintf(out, n, "no TLS version in common (ours: %s to %s)",
		         version_name(SSL_get_min_proto_version(c->ssl)),
		         version_name(SSL_get_max_proto_version(c->ssl)));
		break;
	case SSL_R_TLSV1_UNRECOGNIZED_NAME:
		sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
		snprintf(out, n, "the server does not serve SNI \"%s\"", sni ? sni : "");
		break;
	default:
		break;
	}
}

/* Records why c failed. ssl_err is SSL_get_error's value, sys_errno the errno right after
 * the failing call. Drains the thread's error queue. */
static void conn_fail(struct tls_conn *c, int ssl_err, int sys_errno)
{
	unsigned long e, first = 0;
	char token[96], detail[256];
	const char *cat = TLS_CAT_TLS_ERROR;

	while ((e = ERR_get_error()) != 0)
		if (!first)
			first = e;
	detail[0] = '\0';
	c->failed = true;
	if (c->sni_rejected) {
		snprintf(token, sizeof(token), "UNRECOGNIZED_NAME");
		snprintf(detail, sizeof(detail), "no server for SNI \"%s\"", c->sni_rejected);
		cat = TLS_CAT_UNRECOGNIZED_NAME;
	} else if (ssl_err == SSL_ERROR_ZERO_RETURN ||
	           (ssl_err == SSL_ERROR_SYSCALL && !first && sys_errno == 0)) {
		snprintf(token, sizeof(token), "UNEXPECTED_EOF_WHILE_READING");
		snprintf(detail, sizeof(detail), "peer closed the connection%s",
		         c->done ? "" : " during the handshake");
		cat = TLS_CAT_CONNECTION_CLOSED;
	} else if (ssl_err == SSL_ERROR_SYSCALL && !first) {
		snprintf(token, sizeof(token), "SYSCALL");
		snprintf(detail, sizeof(detail), "%s", strerror(sys_errno));
		cat = (sys_errno == ECONNRESET || sys_errno == EPIPE) ? TLS_CAT_CONNECTION_RESET
		                                                      : TLS_CAT_IO_ERROR;
	} else if (first) {
		const char *rs = ERR_reason_error_string(first);
		int lib = ERR_GET_LIB(first), reason = ERR_GET_REASON(first);

		if (rs)
			upper_token(rs, token, sizeof(token));
		else
			snprintf(token, sizeof(token), "ERROR_%08lX", first);
		if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
			long vr = SSL_get_verify_result(c->ssl);

			verify_detail(c, vr, detail, sizeof(detail));
			cat = verify_category(c, vr);
		} else {
			cat = reason_category(lib, reason);
			alert_detail(c, lib, reason, detail, sizeof(detail));
		}
	} else {
		snprintf(token, sizeof(token), "SSL_ERROR_%d", ssl_err);
	}
	/* A client without a certificate that the server asked for one: whatever alert the
	 * server chose (handshake_failure in TLS 1.2, certificate_required in 1.3), say so. */
	if (!c->server && c->cert_requested &&
	    (!strcmp(cat, TLS_CAT_HANDSHAKE_FAILURE) || !strcmp(cat, TLS_CAT_CLIENT_CERT_REQUIRED) ||
	     !strcmp(cat, TLS_CAT_PEER_BAD_CERT))) {
		cat = TLS_CAT_CLIENT_CERT_REQUIRED;
		snprintf(detail, sizeof(detail),
		         "server requires a client certificate and none is configured");
	}
	c->cat = cat;
	if (detail[0])
		snprintf(c->err, sizeof(c->err), "TLS_error:|%s:%s:TLS_error_end", token, detail);
	else
		snprintf(c->err, sizeof(c->err), "TLS_error:|%s:TLS_error_end", token);
}

const char *tls_conn_error(const struct tls_conn *c)
{
	return c->err[0] ? c->err : NULL;
}

const char *tls_conn_category(const struct tls_conn *c)
{
	return c->cat;
}

/* ---- I/O ---- */

/* Maps SSL_get_error for a failed call to our codes. 0 means "closed" for reads. */
static int io_result(struct tls_conn *c, int rc, int sys_errno)
{
	int e = SSL_get_error(c->ssl, rc);

	switch (e) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	default:
		conn_fail(c, e, sys_errno);
		return -1;
	}
}

static void handshake_done(struct tls_conn *c)
{
	const unsigned char *p;
	unsigned int len;

	c->done = true;
	SSL_get0_alpn_selected(c->ssl, &p, &len);
	if (p && len && len < sizeof(c->alpn)) {
		memcpy(c->alpn, p, len);
		c->alpn[len] = '\0';
	}
	if (c->cache) {
		if (SSL_session_reused(c->ssl))
			c->cache->st.resumed++;
		else
			c->cache->st.full++;
	}
}

int tls_handshake(struct tls_conn *c)
{
	int rc, r;

	if (c->done)
		return 0;
	if (c->failed)
		return -1;
	ERR_clear_error();
	errno = 0;
	rc = SSL_do_handshake(c->ssl);
	if (rc == 1) {
		handshake_done(c);
		return 0;
	}
	r = io_result(c, rc, errno);
	if (r == -1 && c->cache) {
		c->cache->st.failed++;
		sess_drop(c);
	}
	return r;
}

ssize_t tls_read(struct tls_conn *c, void *buf, size_t n)
{
	size_t got = 0;
	int e;

	if (c->failed)
		return -1;
	if (ERR_peek_error())
		ERR_clear_error();
	errno = 0;
	if (SSL_read_ex(c->ssl, buf, n, &got) == 1)
		return (ssize_t)got;
	e = SSL_get_error(c->ssl, 0);
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
		return 0;
	if (e == SSL_ERROR_WANT_READ)
		return TLS_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TLS_WANT_WRITE;
	conn_fail(c, e, errno);
	return -1;
}

ssize_t tls_write(struct tls_conn *c, const void *buf, size_t n)
{
	size_t put = 0;
	int saved;

	if (c->failed)
		return -1;
	if (ERR_peek_error())
		ERR_clear_error();
	errno = 0;
	if (SSL_write_ex(c->ssl, buf, n, &put) == 1)
		return (ssize_t)put;
	saved = errno;
	return io_result(c, 0, saved);
}

int tls_shutdown(struct tls_conn *c)
{
	int rc, e;

	if (c->failed)
		return -1;
	if (!c->done)
		return 0;
	if (ERR_peek_error())
		ERR_clear_error();
	rc = SSL_shutdown(c->ssl);
	if (rc >= 0)
		return 0;
	e = SSL_get_error(c->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return TLS_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TLS_WANT_WRITE;
	ERR_clear_error();
	return -1;
}

bool tls_read_drained(const struct tls_conn *c)
{
	return c->rd_short && !SSL_has_pending(c->ssl);
}

size_t tls_pending(const struct tls_conn *c)
{
	int n = SSL_pending(c->ssl);

	return n > 0 ? (size_t)n : 0;
}

bool tls_conn_resumed(const struct tls_conn *c)
{
	return c->done && SSL_session_reused(c->ssl);
}

const char *tls_conn_alpn(const struct tls_conn *c)
{
	return c->alpn[0] ? c->alpn : NULL;
}

const char *tls_conn_sni(const struct tls_conn *c)
{
	return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
	const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);

	return ci ? SSL_CIPHER_get_name(ci) : NULL;
}

bool tls_conn_peer_has_cert(const struct tls_conn *c)
{
	return SSL_get0_peer_certificate(c->ssl) != NULL;
}

struct tls_ctx *tls_conn_ctx(const struct tls_conn *c)
{
	return c->sni_ctx ? c->sni_ctx : c->ctx;
}

/* The first URI SubjectAltName of x (a SPIFFE identity under Istio) into buf, or NULL. */
static const char *x509_uri_san(X509 *x, char *buf, size_t n)
{
	GENERAL_NAMES *gens;
	const char *ret = NULL;

	if (!x)
		return NULL;
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	if (!gens)
		return NULL;
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		int l;

		if (g->type != GEN_URI)
			continue;
		d = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		l = ASN1_STRING_length(g->d.uniformResourceIdentifier);
		if (l > 0 && (size_t)l < n && !memchr(d, 0, (size_t)l)) {
			memcpy(buf, d, (size_t)l);
			buf[l] = '\0';
			ret = buf;
		}
		break;
	}
	GENERAL_NAMES_free(gens);
	return ret;
}

const char *tls_peer_uri_san(const struct tls_conn *c, char *buf, size_t n)
{
	return x509_uri_san(SSL_get0_peer_certificate(c->ssl), buf, n);
}

/* ---- certificate inspection ---- */

static int asn1_time_rfc3339(const ASN1_TIME *t, char *out, size_t n)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return -1;
	return strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) ? 0 : -1;
}

int tls_cert_info_pem(const char *pem, size_t len, struct tls_cert_info *out, struct sbuf *err)
{
	struct tls_pem src = { .data = pem, .len = len };
	STACK_OF(X509) *sk;
	X509 *x;
	BIGNUM *bn = NULL;
	char *dec = NULL;
	BIO *b = NULL;
	int rc = -1, n;

	tls_init();
	memset(out, 0, sizeof(*out));
	sk = load_certs(&src, "certificate", err);
	if (!sk)
		return -1;
	x = sk_X509_value(sk, 0);
	out->chain_len = (size_t)sk_X509_num(sk);
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	dec = bn ? BN_bn2dec(bn) : NULL;
	if (!dec || strlen(dec) >= sizeof(out->serial)) {
		if (err)
			sbuf_addf(err, "certificate: unreadable serial number");
		goto out;
	}
	strcpy(out->serial, dec);
	if (asn1_time_rfc3339(X509_get0_notBefore(x), out->not_before, sizeof(out->not_before)) < 0 ||
	    asn1_time_rfc3339(X509_get0_notAfter(x), out->not_after, sizeof(out->not_after)) < 0) {
		if (err)
			sbuf_addf(err, "certificate: unreadable validity dates");
		goto out;
	}
	out->valid_now = X509_cmp_current_time(X509_get0_notBefore(x)) < 0 &&
	                 X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
	b = BIO_new(BIO_s_mem());
	if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_read(b, out->subject, (int)sizeof(out->subject) - 1);
		out->subject[n > 0 ? n : 0] = '\0';
	}
	x509_uri_san(x, out->uri_san, sizeof(out->uri_san));
	rc = 0;
out:
	ERR_clear_error();
	BIO_free(b);
	OPENSSL_free(dec);
	BN_free(bn);
	sk_X509_pop_free(sk, X509_free);
	return rc;
}
