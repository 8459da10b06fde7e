/* Tests for the request core over TLS upstreams: SIMPLE origination (a DestinationRule's
 * tls) to HTTP/1.1 (fwd_up_h1.c on a TLS uconn) and to HTTP/2 chosen by ALPN (up_h2.c,
 * h2UpgradePolicy UPGRADE), against a loopback TLS server run by the test with OpenSSL
 * (certificates from a test CA made with the openssl command) and, for HTTP/2, nghttp2's
 * own server session.
 *
 * The environment is core_harness.h's, in the gateway role with HTTP/2 on (egressgw's
 * default): HTTP/1.1 clients on the Gateway's port, routed to up.test (TLS, HTTP/1.1 only),
 * h2.test and h2cb.test (TLS, HTTP/2 offered; h2cb.test with http2MaxRequests 1) and
 * bad.test (a CA that did not sign the server's certificate).
 *
 * Cases: origination with SNI and ALPN as configured and the TLS connection pooled; 503 UF
 * on an untrusted certificate; several requests as streams of one HTTP/2 connection,
 * answered out of order; 504 UT cancelling its stream (the connection lives on); an
 * upstream stream reset mid-response; trailers from an HTTP/2 upstream to a client that
 * asked for them; back-pressure (a client that does not read closes the upstream
 * stream's window); 503 UO by http2MaxRequests. */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core_harness.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "net/sock.h"
#include "proxy/alog.h"
#include "proxy/fwd_int.h"
#include "proxy/fwd_io.h"
#include "proxy/snap.h"
#include "proxy/worker.h"

static const char cfg_fmt[] =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: Gateway\n"
	"metadata: {name: gw, namespace: istio-system}\n"
	"spec:\n"
	"  selector: {istio: egressgateway}\n"
	"  servers:\n"
	"  - port: {number: %u, name: http, protocol: HTTP}\n"
	"    hosts: [\"*\"]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: up, namespace: istio-system}\n"
	"spec:\n"
	"  hosts: [up.test, h2.test, h2cb.test, bad.test]\n"
	"  ports: [{number: %u, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints: [{address: 127.0.0.1}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: up, namespace: istio-system}\n"
	"spec:\n"
	"  host: up.test\n"
	"  trafficPolicy:\n"
	"    tls: {mode: SIMPLE, caCertificates: %s/ca.pem, sni: up.test}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: h2, namespace: istio-system}\n"
	"spec:\n"
	"  host: h2.test\n"
	"  trafficPolicy:\n"
	"    connectionPool: {http: {h2UpgradePolicy: UPGRADE}}\n"
	"    tls: {mode: SIMPLE, caCertificates: %s/ca.pem, sni: up.test}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: h2cb, namespace: istio-system}\n"
	"spec:\n"
	"  host: h2cb.test\n"
	"  trafficPolicy:\n"
	"    connectionPool: {http: {h2UpgradePolicy: UPGRADE, http2MaxRequests: 1}}\n"
	"    tls: {mode: SIMPLE, caCertificates: %s/ca.pem, sni: up.test}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: bad, namespace: istio-system}\n"
	"spec:\n"
	"  host: bad.test\n"
	"  trafficPolicy:\n"
	"    tls: {mode: SIMPLE, caCertificates: %s/other-ca.pem, sni: up.test}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: up, namespace: istio-system}\n"
	"spec:\n"
	"  hosts: [up.test, h2.test, h2cb.test, bad.test]\n"
	"  gateways: [gw]\n"
	"  http:\n"
	"  - name: slow\n"
	"    match: [{uri: {prefix: /slow}}]\n"
	"    timeout: 0.2s\n"
	"    route: [{destination: {host: h2.test, port: {number: %u}}}]\n"
	"  - name: h2\n"
	"    match: [{authority: {exact: h2.test}}]\n"
	"    route: [{destination: {host: h2.test, port: {number: %u}}}]\n"
	"  - name: h2cb\n"
	"    match: [{authority: {exact: h2cb.test}}]\n"
	"    route: [{destination: {host: h2cb.test, port: {number: %u}}}]\n"
	"  - name: bad\n"
	"    match: [{authority: {exact: bad.test}}]\n"
	"    retries: {attempts: 0}\n"   /* one handshake: the case is the refusal itself */
	"    route: [{destination: {host: bad.test, port: {number: %u}}}]\n"
	"  - name: up\n"
	"    route: [{destination: {host: up.test, port: {number: %u}}}]\n";

/* The certificates, made once for the group: a CA, the server's certificate for up.test
 * signed by it, and another CA. */
static char cert_dir[64];

static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd) == 0 ? 0 : -1;
}

static int group_setup(void **state)
{
	snprintf(cert_dir, sizeof(cert_dir), "/tmp/test_core_tls.XXXXXX");
	if (!mkdtemp(cert_dir))
		return -1;
	return sh("cd %s && "
	          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	          "-keyout ca.key -out ca.pem -subj /CN=core-test-ca -days 2 2>/dev/null && "
	          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	          "-keyout other-ca.key -out other-ca.pem -subj /CN=other-ca -days 2 2>/dev/null && "
	          "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	          "-keyout up.key -out up.csr -subj /CN=up.test 2>/dev/null && "
	          "printf 'subjectAltName=DNS:up.test\\n' >up.ext && "
	          "openssl x509 -req -in up.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	          "-out up.pem -days 2 -extfile up.ext 2>/dev/null", cert_dir);
}

static int group_teardown(void **state)
{
	return sh("rm -rf '%s'", cert_dir);
}

static int env_setup(void **state)
{
	struct env *e = core_env_new();
	char *yaml;
	int rc;

	yaml = xasprintf(cfg_fmt, e->gw_port, e->up_port, cert_dir, cert_dir, cert_dir, cert_dir,
	                 e->up_port, e->up_port, e->up_port, e->up_port, e->up_port);
	e->http2 = true;
	rc = core_env_start(e, SNAP_ROLE_GATEWAY, yaml);
	free(yaml);
	*state = e;
	return rc;
}

static int env_teardown(void **state)
{
	return core_env_free(*state);
}

/* ---- the TLS server ---- */

#define MAXS 16

struct ss {                            /* a stream the HTTP/2 server received */
	int32_t id;
	char path[64];
	bool ended;                    /* the request's END_STREAM */
	bool closed;
	uint32_t err;
	const char *body;              /* the response body being sent, and what is left */
	size_t left;
	bool trailers;                 /* end with trailers */
	bool hold;                     /* stop after what was sent (DEFERRED) */
};

struct tsrv {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	bool h2_ok;                    /* pick h2 when the client offers it */
	char sni[64];
	char alpn_offered[64];         /* the client's ALPN list, comma-separated */
	char alpn[16];                 /* the protocol chosen, "" none */
	nghttp2_session *h2;
	struct ss st[MAXS];
	int n;
	bool eof;
};

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
	struct tsrv *t = arg;
	size_t o = 0;

	for (unsigned i = 0; i < inlen && o + in[i] + 2 < sizeof(t->alpn_offered);
	     i += 1u + in[i]) {
		if (o)
			t->alpn_offered[o++] = ',';
		memcpy(t->alpn_offered + o, in + i + 1, in[i]);
		o += in[i];
		t->alpn_offered[o] = '\0';
	}
	for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
		bool h2 = in[i] == 2 && memcmp(in + i + 1, "h2", 2) == 0;
		bool h1 = in[i] == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0;

		if ((h2 && t->h2_ok) || (h1 && !t->h2_ok)) {
			*out = in + i + 1;
			*outlen = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Accepts the worker's next upstream connection and runs the server side of its TLS
 * handshake, turning the loop. Returns 0 once done, -1 when it failed. */
static int tsrv_accept(struct env *e, struct tsrv *t, bool h2_ok)
{
	uint64_t end = now_ms() + WAIT_MS;
	const unsigned char *a = NULL;
	unsigned alen = 0;
	const char *sni;
	int rc;

	memset(t, 0, sizeof(*t));
	t->h2_ok = h2_ok;
	t->fd = up_accept(e);
	assert_int_equal(sock_set_nonblock(t->fd), 0);
	assert_non_null(t->ctx = SSL_CTX_new(TLS_server_method()));
	{
		char *cert = xasprintf("%s/up.pem", cert_dir), *key = xasprintf("%s/up.key", cert_dir);

		assert_int_equal(SSL_CTX_use_certificate_chain_file(t->ctx, cert), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM), 1);
		free(cert);
		free(key);
	}
	SSL_CTX_set_alpn_select_cb(t->ctx, alpn_cb, t);
	assert_non_null(t->ssl = SSL_new(t->ctx));
	SSL_set_fd(t->ssl, t->fd);
	while ((rc = SSL_accept(t->ssl)) != 1) {
		int err = SSL_get_error(t->ssl, rc);

		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
			ERR_clear_error();
			return -1;
		}
		if (now_ms() > end)
			fail_msg("TLS handshake with the worker did not finish");
		turn(e);
	}
	if ((sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name)) != NULL)
		snprintf(t->sni, sizeof(t->sni), "%s", sni);
	SSL_get0_alpn_selected(t->ssl, &a, &alen);
	snprintf(t->alpn, sizeof(t->alpn), "%.*s", (int)alen, a ? (const char *)a : "");
	return 0;
}

static void tsrv_free(struct tsrv *t)
{
	if (t->h2)
		nghttp2_session_del(t->h2);
	if (t->ssl)
		SSL_free(t->ssl);
	SSL_CTX_free(t->ctx);
	close(t->fd);
}

static void tsrv_write(struct env *e, struct tsrv *t, const void *p, size_t len)
{
	uint64_t end = now_ms() + WAIT_MS;
	size_t off = 0;

	while (off < len) {
		int n = SSL_write(t->ssl, (const char *)p + off, (int)(len - off));

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		assert_true(SSL_get_error(t->ssl, n) == SSL_ERROR_WANT_WRITE ||
		            SSL_get_error(t->ssl, n) == SSL_ERROR_WANT_READ);
		if (now_ms() > end)
			fail_msg("TLS write stuck");
		turn(e);
	}
}

/* Reads what the TLS connection has now into b (HTTP/1.1) or the HTTP/2 session. */
static void tsrv_read(struct tsrv *t, struct sbuf *b)
{
	char buf[16384];
	int n;

	while ((n = SSL_read(t->ssl, buf, sizeof(buf))) > 0) {
		if (t->h2)
			assert_int_equal(nghttp2_session_mem_recv(t->h2, (uint8_t *)buf, (size_t)n), n);
		else
			sbuf_add(b, buf, (size_t)n);
	}
	if (SSL_get_error(t->ssl, n) == SSL_ERROR_ZERO_RETURN ||
	    SSL_get_error(t->ssl, n) == SSL_ERROR_SYSCALL)
		t->eof = true;
	ERR_clear_error();
}

/* HTTP/1.1 over the TLS connection: turns until b holds n request heads. */
static void tsrv_heads(struct env *e, struct tsrv *t, struct sbuf *b, int n)
{
	uint64_t end = now_ms() + WAIT_MS;

	for (;;) {
		int seen = 0;

		tsrv_read(t, b);
		for (const char *p = b->s; p && (p = memmem(p, b->len - (size_t)(p - b->s),
		                                            "\r\n\r\n", 4)); p += 4)
			seen++;
		if (seen >= n)
			return;
		if (now_ms() > end)
			fail_msg("TLS upstream has %d of %d request heads", seen, n);
		turn(e);
	}
}

/* ---- the HTTP/2 server session ---- */

static struct ss *ss_of(struct tsrv *t, int32_t id)
{
	for (int i = 0; i < t->n; i++)
		if (t->st[i].id == id)
			return &t->st[i];
	return NULL;
}

static int s_on_begin(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct tsrv *t = user;

	if (f->hd.type == NGHTTP2_HEADERS && !ss_of(t, f->hd.stream_id)) {
		assert_true(t->n < MAXS);
		memset(&t->st[t->n], 0, sizeof(t->st[t->n]));
		t->st[t->n++].id = f->hd.stream_id;
	}
	return 0;
}

static int s_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *user)
{
	struct ss *x = ss_of(user, f->hd.stream_id);

	if (x && namelen == 5 && memcmp(name, ":path", 5) == 0)
		snprintf(x->path, sizeof(x->path), "%.*s", (int)valuelen, (const char *)value);
	return 0;
}

static int s_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct ss *x = ss_of(user, f->hd.stream_id);

	if (x && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA))
		x->ended = true;
	return 0;
}

static int s_on_close(nghttp2_session *s, int32_t id, uint32_t err, void *user)
{
	struct ss *x = ss_of(user, id);

	if (x) {
		x->closed = true;
		x->err = err;
	}
	return 0;
}

static ssize_t s_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                      uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct ss *x = src->ptr;
	size_t n = x->left < len ? x->left : len;

	if (!n && x->hold)
		return NGHTTP2_ERR_DEFERRED;
	memcpy(buf, x->body, n);
	x->body += n;
	x->left -= n;
	if (!x->left && !x->hold) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (x->trailers) {
			static const nghttp2_nv tr[] = {
				{ (uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0 },
				{ (uint8_t *)"grpc-message", (uint8_t *)"fine", 12, 4, 0 },
			};

			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			assert_int_equal(nghttp2_submit_trailer(s, id, tr, 2), 0);
		}
	}
	return (ssize_t)n;
}

static void tsrv_h2_start(struct tsrv *t)
{
	nghttp2_session_callbacks *cbs;

	assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, s_on_begin);
	nghttp2_session_callbacks_set_on_header_callback(cbs, s_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, s_on_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, s_on_close);
	assert_int_equal(nghttp2_session_server_new(&t->h2, cbs, t), 0);
	nghttp2_session_callbacks_del(cbs);
	assert_int_equal(nghttp2_submit_settings(t->h2, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

/* Writes what the server session queued, turns the loop once, feeds what came. */
static void tsrv_h2_step(struct env *e, struct tsrv *t)
{
	const uint8_t *p;
	ssize_t n;

	while ((n = nghttp2_session_mem_send(t->h2, &p)) > 0)
		tsrv_write(e, t, p, (size_t)n);
	turn(e);
	tsrv_read(t, NULL);
}

/* Turns until the server has n streams whose requests ended. */
static void tsrv_h2_requests(struct env *e, struct tsrv *t, int n)
{
	uint64_t end = now_ms() + WAIT_MS;

	for (;;) {
		int k = 0;

		for (int i = 0; i < t->n; i++)
			k += t->st[i].ended;
		if (k >= n)
			return;
		if (now_ms() > end)
			fail_msg("HTTP/2 upstream has %d of %d requests", k, n);
		tsrv_h2_step(e, t);
	}
}

static void tsrv_h2_respond(struct tsrv *t, struct ss *x, int status, const char *body,
                            bool trailers, bool hold)
{
	char st[4], cl[24];
	nghttp2_nv nv[] = {
		{ (uint8_t *)":status", (uint8_t *)st, 7, 3, 0 },
		{ (uint8_t *)"content-length", (uint8_t *)cl, 14, 0, 0 },
	};
	nghttp2_data_provider prd = { .source.ptr = x, .read_callback = s_body };

	snprintf(st, sizeof(st), "%d", status);
	nv[1].valuelen = (size_t)snprintf(cl, sizeof(cl), "%zu", strlen(body));
	x->body = body;
	x->left = strlen(body);
	x->trailers = trailers;
	x->hold = hold;
	/* With trailers, no content-length: the client gets it chunked. */
	assert_int_equal(nghttp2_submit_response(t->h2, x->id, nv, trailers ? 1 : 2, &prd), 0);
}

/* ---- the client side: HTTP/1.1 on the Gateway port ---- */

static int get(struct env *e, const char *host, const char *path, const char *extra)
{
	int c = client(e, 0);
	char req[512];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nhost: %s\r\n%s\r\n", path, host,
	         extra ? extra : "");
	put_all(c, req);
	return c;
}

/* Turns the loop (and the HTTP/2 server, if any) until the client has a whole response. */
static int await_resp_h2(struct env *e, struct tsrv *t, int c, struct sbuf *b, size_t *off,
                         const char **body, size_t *blen)
{
	uint64_t end = now_ms() + WAIT_MS;
	int status;

	for (;;) {
		take(c, b);
		if ((status = resp_at(b, off, body, blen)) != 0)
			return status;
		if (now_ms() > end)
			fail_msg("no response; client has %zu bytes", b->len);
		if (t && t->h2)
			tsrv_h2_step(e, t);
		else
			turn(e);
	}
}

/* ---- TLS origination, HTTP/1.1 ---- */

/* SIMPLE: the handshake with the DestinationRule's SNI, no ALPN (the cluster has no
 * h2UpgradePolicy: HTTP/1.1 only), the request over TLS; a second request reuses the
 * pooled TLS connection. */
static void tls_h1(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, u = SBUF_INIT;
	size_t off = 0, blen;
	const char *body;
	struct tsrv t;
	int c = get(e, "up.test", "/one", NULL);

	assert_int_equal(tsrv_accept(e, &t, true), 0);
	assert_string_equal(t.sni, "up.test");
	assert_string_equal(t.alpn_offered, "");   /* no ALPN: the server cannot pick h2 */
	assert_string_equal(t.alpn, "");
	tsrv_heads(e, &t, &u, 1);
	assert_true(contains(u.s, u.len, "GET /one HTTP/1.1\r\n"));
	tsrv_write(e, &t, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none", 41);
	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 200);
	assert_memory_equal(body, "one", 3);

	put_all(c, "GET /two HTTP/1.1\r\nhost: up.test\r\n\r\n");
	tsrv_heads(e, &t, &u, 2);
	tsrv_write(e, &t, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo", 41);
	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 200);
	assert_memory_equal(body, "two", 3);
	assert_int_equal(STAT_GET(e->w->st.ucx_total), 1);
	assert_int_equal(STAT_GET(e->w->st.urq_reused), 1);
	assert_int_equal(rec.nlocal, 0);
	tsrv_free(&t);
	close(c);
	sbuf_free(&b);
	sbuf_free(&u);
}

/* A server certificate the DestinationRule's CA did not sign: 503 UF, the TLS failure in
 * the details and the body, nothing sent. */
static void tls_untrusted(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, lg = SBUF_INIT;
	size_t off = 0, blen;
	const char *body;
	struct tsrv t;
	int c = get(e, "bad.test", "/x", NULL);

	assert_int_equal(tsrv_accept(e, &t, false), -1);
	assert_int_equal(await_resp(e, c, &b, &off, &body, &blen), 503);
	assert_true(contains(body, blen, "CERTIFICATE_VERIFY_FAILED"));
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UF);
	assert_true(strncmp(rec.local[0].details,
	                    "upstream_reset_before_response_started{connection_failure", 57) == 0);
	assert_int_equal(rec.send_head, 1);     /* queued, never written: nothing reached */
	alog_take(e, &lg);
	assert_non_null(strstr(lg.s, "\"GET /x HTTP/1.1\" 503 UF "));
	tsrv_free(&t);
	close(c);
	sbuf_free(&b);
	sbuf_free(&lg);
}

/* ---- HTTP/2 upstream (up_h2.c) ---- */

#define NCL 5

/* Five clients at once: one TLS connection, ALPN h2, five streams, answered in reverse
 * order; each client gets its own answer. */
static void h2_streams(void **state)
{
	struct env *e = *state;
	struct sbuf b[NCL];
	struct tsrv t;
	int c[NCL];
	char body[NCL][16];

	for (int i = 0; i < NCL; i++) {
		char path[32];

		snprintf(path, sizeof(path), "/s/%d", i);
		c[i] = get(e, "h2.test", path, NULL);
		memset(&b[i], 0, sizeof(b[i]));
	}
	assert_int_equal(tsrv_accept(e, &t, true), 0);
	assert_string_equal(t.alpn_offered, "h2,http/1.1");
	assert_string_equal(t.alpn, "h2");
	tsrv_h2_start(&t);
	tsrv_h2_requests(e, &t, NCL);
	for (int i = t.n - 1; i >= 0; i--) {
		snprintf(body[i], sizeof(body[i]), "%s", t.st[i].path);
		tsrv_h2_respond(&t, &t.st[i], 200, body[i], false, false);
	}
	for (int i = 0; i < NCL; i++) {
		size_t off = 0, blen;
		const char *p;
		char want[16];

		snprintf(want, sizeof(want), "/s/%d", i);
		assert_int_equal(await_resp_h2(e, &t, c[i], &b[i], &off, &p, &blen), 200);
		assert_int_equal(blen, strlen(want));
		assert_memory_equal(p, want, blen);
	}
	assert_int_equal(STAT_GET(e->w->st.urq_total), NCL);
	/* No other connection was made. */
	assert_true(sock_accept(e->up_lfd, NULL) < 0);
	for (int i = 0; i < NCL; i++) {
		close(c[i]);
		sbuf_free(&b[i]);
	}
	tsrv_free(&t);
}

/* The route's timeout on an HTTP/2 upstream: 504 UT, the stream cancelled
 * (RST_STREAM CANCEL), the connection kept: the next request is a stream on it. */
static void h2_timeout(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, b2 = SBUF_INIT, lg = SBUF_INIT;
	size_t off = 0, off2 = 0, blen;
	const char *body;
	struct tsrv t;
	int c = get(e, "h2.test", "/slow/1", NULL), c2;

	assert_int_equal(tsrv_accept(e, &t, true), 0);
	tsrv_h2_start(&t);
	tsrv_h2_requests(e, &t, 1);
	assert_int_equal(await_resp_h2(e, &t, c, &b, &off, &body, &blen), 504);
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UT);
	for (uint64_t end = now_ms() + WAIT_MS; !t.st[0].closed;) {
		if (now_ms() > end)
			fail_msg("the timed-out stream was not reset");
		tsrv_h2_step(e, &t);
	}
	assert_int_equal(t.st[0].err, NGHTTP2_CANCEL);
	alog_take(e, &lg);
	assert_non_null(strstr(lg.s, "\"GET /slow/1 HTTP/1.1\" 504 UT response_timeout "));

	c2 = get(e, "h2.test", "/next", NULL);
	tsrv_h2_requests(e, &t, 2);
	tsrv_h2_respond(&t, &t.st[1], 200, "next", false, false);
	assert_int_equal(await_resp_h2(e, &t, c2, &b2, &off2, &body, &blen), 200);
	assert_memory_equal(body, "next", 4);
	assert_true(sock_accept(e->up_lfd, NULL) < 0);
	tsrv_free(&t);
	close(c);
	close(c2);
	sbuf_free(&b);
	sbuf_free(&b2);
	sbuf_free(&lg);
}

/* The upstream resets its stream after the head and part of the body: the client, whose
 * response had started, sees its connection closed short of the body (no complete
 * response made up); the log says the upstream reset. */
static void h2_reset_mid_response(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, lg = SBUF_INIT;
	struct tsrv t;
	int c = get(e, "h2.test", "/cut", NULL);
	uint64_t end;
	bool open = true;

	assert_int_equal(tsrv_accept(e, &t, true), 0);
	tsrv_h2_start(&t);
	tsrv_h2_requests(e, &t, 1);
	{
		char st[] = "200";
		nghttp2_nv nv[] = {
			{ (uint8_t *)":status", (uint8_t *)st, 7, 3, 0 },
			{ (uint8_t *)"content-length", (uint8_t *)"100", 14, 3, 0 },
		};
		nghttp2_data_provider prd = { .source.ptr = &t.st[0], .read_callback = s_body };

		t.st[0].body = "0123456789";
		t.st[0].left = 10;
		t.st[0].hold = true;
		assert_int_equal(nghttp2_submit_response(t.h2, t.st[0].id, nv, 2, &prd), 0);
	}
	for (end = now_ms() + WAIT_MS; !contains(b.s, b.len, "0123456789");) {
		if (now_ms() > end)
			fail_msg("no partial body: %zu bytes", b.len);
		tsrv_h2_step(e, &t);
		take(c, &b);
	}
	assert_int_equal(nghttp2_submit_rst_stream(t.h2, NGHTTP2_FLAG_NONE, t.st[0].id,
	                                           NGHTTP2_INTERNAL_ERROR), 0);
	for (end = now_ms() + WAIT_MS; open;) {
		if (now_ms() > end)
			fail_msg("the client's connection stayed open");
		tsrv_h2_step(e, &t);
		open = take(c, &b);
	}
	assert_true(contains(b.s, b.len, "HTTP/1.1 200 "));
	assert_true(contains(b.s, b.len, "content-length: 100\r\n"));
	{
		const char *h = memmem(b.s, b.len, "\r\n\r\n", 4);

		assert_non_null(h);
		assert_int_equal(b.len - (size_t)(h + 4 - b.s), 10);   /* nothing made up */
	}
	assert_int_equal(rec.nresp, 1);
	alog_take(e, &lg);
	assert_non_null(strstr(lg.s, "\"GET /cut HTTP/1.1\" 200 UR "));
	tsrv_free(&t);
	close(c);
	sbuf_free(&b);
	sbuf_free(&lg);
}

/* An HTTP/2 upstream's trailers reach an HTTP/1.1 client that sent TE: trailers as the
 * chunked body's trailer section. */
static void h2_trailers(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT;
	struct tsrv t;
	int c = get(e, "h2.test", "/grpc", "te: trailers\r\n");

	assert_int_equal(tsrv_accept(e, &t, true), 0);
	tsrv_h2_start(&t);
	tsrv_h2_requests(e, &t, 1);
	tsrv_h2_respond(&t, &t.st[0], 200, "abc", true, false);
	for (uint64_t end = now_ms() + WAIT_MS; !contains(b.s, b.len, "abc\r\n0\r\n") ||
	                                         !contains(b.s, b.len, "fine\r\n\r\n");) {
		if (now_ms() > end)
			fail_msg("no trailers: %.*s", (int)b.len, b.s);
		tsrv_h2_step(e, &t);
		take(c, &b);
	}
	assert_true(contains(b.s, b.len, "transfer-encoding: chunked\r\n"));
	assert_true(contains(b.s, b.len, "\r\n\r\n3\r\nabc\r\n0\r\n"
	                                 "grpc-status: 0\r\ngrpc-message: fine\r\n\r\n"));
	tsrv_free(&t);
	close(c);
	sbuf_free(&b);
}

#define BIG (16u << 20)

/* Back-pressure from an HTTP/1.1 client that does not read to an HTTP/2 upstream: the
 * core stops taking the stream's DATA, so its window is not reopened and the server
 * stalls with most of the body unsent, the proxy's own buffer bounded; once the client
 * reads, every byte arrives. */
static void h2_backpressure(void **state)
{
	struct env *e = *state;
	static char big[BIG];
	char st[] = "200", cl[16], buf[65536];
	nghttp2_nv nv[] = {
		{ (uint8_t *)":status", (uint8_t *)st, 7, 3, 0 },
		{ (uint8_t *)"content-length", (uint8_t *)cl, 14, 0, 0 },
	};
	nghttp2_data_provider prd;
	struct sbuf b = SBUF_INIT;
	struct tsrv t;
	int c = client(e, 4096), rcv = 256 * 1024;
	size_t sent = 0, got = 0;
	const char *h;
	uint64_t end;

	put_all(c, "GET /big HTTP/1.1\r\nhost: h2.test\r\n\r\n");
	assert_int_equal(tsrv_accept(e, &t, true), 0);
	tsrv_h2_start(&t);
	tsrv_h2_requests(e, &t, 1);
	memset(big, 'x', sizeof(big));
	t.st[0].body = big;
	t.st[0].left = BIG;
	prd.source.ptr = &t.st[0];
	prd.read_callback = s_body;
	nv[1].valuelen = (size_t)snprintf(cl, sizeof(cl), "%u", BIG);
	assert_int_equal(nghttp2_submit_response(t.h2, t.st[0].id, nv, 2, &prd), 0);

	/* The client does not read: the server's window for the stream closes and stays
	 * closed (200 turns more), well short of the body. */
	for (end = now_ms() + WAIT_MS; now_ms() < end;) {
		tsrv_h2_step(e, &t);
		if (nghttp2_session_get_stream_remote_window_size(t.h2, t.st[0].id) == 0)
			break;
	}
	assert_int_equal(nghttp2_session_get_stream_remote_window_size(t.h2, t.st[0].id), 0);
	for (int i = 0; i < 200; i++)
		tsrv_h2_step(e, &t);
	sent = BIG - t.st[0].left;
	assert_int_equal(nghttp2_session_get_stream_remote_window_size(t.h2, t.st[0].id), 0);
	/* What the proxy holds stays bounded: FWD_HIGH_WATER plus one take past it, at most
	 * the stream's receive window (h2.h: 256 KiB). The kernel's socket buffers (up to
	 * tcp_wmem's 4 MiB) hold the rest of what was sent. */
	assert_non_null(e->w->dconns);
	assert_true(iob_used(&((struct dconn *)e->w->dconns)->out) <= FWD_HIGH_WATER + 256 * 1024);
	assert_true(sent < BIG / 2);

	/* The client reads: everything arrives. */
	assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)), 0);
	for (end = now_ms() + 30000; !b.s || !(h = memmem(b.s, b.len, "\r\n\r\n", 4));) {
		if (now_ms() > end)
			fail_msg("no response head");
		tsrv_h2_step(e, &t);
		take(c, &b);
	}
	assert_true(contains(b.s, b.len, "HTTP/1.1 200 "));
	got = b.len - (size_t)(h + 4 - b.s);
	while (got < BIG) {
		ssize_t n;

		if (now_ms() > end)
			fail_msg("client has %zu of %u body bytes", got, BIG);
		tsrv_h2_step(e, &t);
		while ((n = read(c, buf, sizeof(buf))) > 0)
			got += (size_t)n;
	}
	assert_int_equal(got, BIG);
	assert_int_equal(t.st[0].left, 0);
	tsrv_free(&t);
	close(c);
	sbuf_free(&b);
}

/* http2MaxRequests 1: a second request while the first is open is refused 503 UO at
 * once, and nothing of it reaches the upstream. */
static void h2_max_requests(void **state)
{
	struct env *e = *state;
	struct sbuf b = SBUF_INIT, b2 = SBUF_INIT;
	size_t off = 0, off2 = 0, blen;
	const char *body;
	struct tsrv t;
	int c = get(e, "h2cb.test", "/first", NULL), c2;

	assert_int_equal(tsrv_accept(e, &t, true), 0);
	tsrv_h2_start(&t);
	tsrv_h2_requests(e, &t, 1);
	c2 = get(e, "h2cb.test", "/second", NULL);
	assert_int_equal(await_resp_h2(e, &t, c2, &b2, &off2, &body, &blen), 503);
	assert_true(contains(body, blen, "reset reason: overflow"));
	assert_int_equal(rec.nlocal, 1);
	assert_int_equal(rec.local[0].st_flags, ALOG_F_UO);
	assert_int_equal(STAT_GET(e->w->st.urq_total), 1);
	tsrv_h2_respond(&t, &t.st[0], 200, "first", false, false);
	assert_int_equal(await_resp_h2(e, &t, c, &b, &off, &body, &blen), 200);
	assert_int_equal(t.n, 1);
	tsrv_free(&t);
	close(c);
	close(c2);
	sbuf_free(&b);
	sbuf_free(&b2);
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(tls_h1),
		T(tls_untrusted),
		T(h2_streams),
		T(h2_timeout),
		T(h2_reset_mid_response),
		T(h2_trailers),
		T(h2_backpressure),
		T(h2_max_requests),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
