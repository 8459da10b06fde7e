/* tls: TLS contexts (built once, shared read-only by all workers) and nonblocking TLS
 * connections on top of OpenSSL 3.
 *
 * Contexts. A struct tls_ctx wraps one SSL_CTX with what egressgw adds (ALPN list, allowed
 * peer SubjectAltNames, SNI dispatch). It is built once per distinct configuration
 * (a DestinationRule's TLS settings, a Gateway server) by the control plane and then
 * only read: OpenSSL 3.0 takes locks when an SSL_CTX is modified or when algorithms are
 * fetched, so building a context per connection or per worker would serialise every
 * handshake. Contexts are reference counted (atomically): the config snapshot holds one
 * reference, every connection holds one, so a Secret rotation builds a new context,
 * swaps the snapshot, and connections still using the old one keep it alive.
 *
 * Connections. A struct tls_conn wraps one SSL on a connected nonblocking socket; it never
 * owns or closes the fd. tls_handshake/tls_read/tls_write return TLS_WANT_READ or
 * TLS_WANT_WRITE when the socket would block (the caller waits for that direction with
 * its loop_io and calls the same function again), and -1 on failure, with a reason:
 *     tls_conn_error(c)     "TLS_error:|CERTIFICATE_VERIFY_FAILED:certificate has expired:TLS_error_end"
 *     tls_conn_category(c)  "cert_expired"
 * The reason keeps Envoy's "TLS_error:|...:TLS_error_end" frame (users grep for it in
 * UPSTREAM_TRANSPORT_FAILURE_REASON) but says which check failed: the OpenSSL reason as an
 * upper-case token, then, for certificate failures, the X.509 verification result (and the
 * expected name for name mismatches). The category is a short stable token for a stats
 * label; the full list is below (TLS_CAT_*).
 *
 * A TLS 1.3 client finishes its handshake before the server has checked the client
 * certificate. When a server rejects our certificate (or wanted one and got none), the
 * client learns it from the server's alert on its first tls_read(), not from
 * tls_handshake(): the error and category are then set by tls_read().
 *
 * Session resumption (client). Each worker owns a struct tls_sess_cache (no locks, used by
 * its own thread only) keyed by (context, endpoint address, SNI). tls_client_resume()
 * offers the cached session and arranges for new sessions (TLS 1.2 at handshake end,
 * TLS 1.3 tickets whenever they arrive, usually during the first tls_read) to replace it.
 * OpenSSL's own client cache is off (it would be shared, locked state).
 *
 * Threading: contexts may be used from any thread once built. A tls_conn and a
 * tls_sess_cache belong to one thread. OpenSSL's error queue is per thread; every failure
 * path here drains it, so one connection's error never shows up in another's reason.
 *
 * Key material is read into memory only as long as needed, wiped with OPENSSL_cleanse,
 * and never put into an error message. */
#ifndef EGRESS_NET_TLS_H
#define EGRESS_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/sbuf.h"
#include "net/sock.h"

struct tls_ctx;
struct tls_conn;
struct tls_sess_cache;

/* Return codes of tls_handshake / tls_read / tls_write / tls_shutdown besides 0, byte
 * counts and -1 (error). They say which direction to wait for, which is not always the
 * one of the call: a read may need to write (key update) and a write may need to read. */
#define TLS_WANT_READ  (-2)
#define TLS_WANT_WRITE (-3)

/* Protocol versions for min_version / max_version: OpenSSL's TLS1_2_VERSION (0x0303) and
 * TLS1_3_VERSION (0x0304) values; 0 means the default (min 1.2, max 1.3). */
#define TLS_V1_0 0x0301
#define TLS_V1_1 0x0302
#define TLS_V1_2 0x0303
#define TLS_V1_3 0x0304

/* Where a certificate, key, CA bundle or CRL comes from: a file path (Istio's
 * caCertificates/clientCertificate/... fields, the identity directory), or PEM bytes (a
 * Secret's data). Set at most one of file and data; both unset means "not given". data
 * need not be NUL-terminated and is only read during the *_ctx_new call. */
struct tls_pem {
	const char *file;
	const char *data;
	size_t len;
	/* Names the source in error messages, e.g. "kubernetes://client-credential" or
	 * "Secret istio-system/client-credential key tls.crt". NULL: the file path, or
	 * "inline PEM". Never key bytes. */
	const char *label;
};

/* Client (upstream, origination) context parameters. */
struct tls_client_params {
	/* Trust anchors. Neither ca.file nor ca.data: the system store
	 * (SSL_CTX_set_default_verify_paths, which honours SSL_CERT_FILE / SSL_CERT_DIR). */
	struct tls_pem ca;
	/* Optional client certificate chain (leaf first, then intermediates) and its key;
	 * both or neither. The key must match the leaf certificate. */
	struct tls_pem cert;
	struct tls_pem key;
	/* Optional CRLs (one or more PEM X509 CRLs). When given, every certificate of the
	 * server's chain is checked (X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL): a CA
	 * in the chain without a CRL fails with "unable to get certificate CRL". */
	struct tls_pem crl;
	int min_version, max_version;   /* TLS_V1_x; 0 = 1.2 / 1.3 */
	/* ALPN offered, in preference order ("h2", "http/1.1"); nalpn 0 = no ALPN. */
	const char *const *alpn;
	size_t nalpn;
	const char *ciphers;        /* TLS <= 1.2 cipher list (OpenSSL syntax); NULL = default */
	const char *ciphersuites;   /* TLS 1.3 suites; NULL = default */
	/* Istio's insecureSkipVerify: no chain and no name check at all. */
	bool insecure_skip_verify;
};

/* Server (downstream, Gateway termination) context parameters. */
struct tls_server_params {
	struct tls_pem cert;        /* chain, leaf first; required */
	struct tls_pem key;         /* required; must match */
	/* Client CA: when given, a client certificate is requested and verified against it
	 * (MUTUAL, ISTIO_MUTUAL). Required unless optional_client_cert (OPTIONAL_MUTUAL:
	 * verified if presented, accepted if absent). */
	struct tls_pem client_ca;
	struct tls_pem crl;         /* optional, checks the client chain (needs client_ca) */
	bool optional_client_cert;
	/* Allowed client certificate SubjectAltNames (exact; DNS, URI or IP SAN), any of
	 * them. nclient_sans 0 = any certificate the CA vouches for. */
	const char *const *client_sans;
	size_t nclient_sans;
	/* ALPN protocols we accept, in our preference order; the first one the client also
	 * offers wins. None in common: the handshake goes on without ALPN (HTTP/1.1). */
	const char *const *alpn;
	size_t nalpn;
	int min_version, max_version;   /* 0 = 1.2 / 1.3 (Istio's TLSV1_2 default) */
	const char *ciphers;            /* Gateway cipherSuites (TLS <= 1.2, OpenSSL names) */
	const char *ciphersuites;       /* TLS 1.3; NULL = default */
};

/* Builds a context. Returns NULL with a one-line reason in err (appended), for example
 * "client certificate /etc/certs/cert.pem: no PEM certificate found" or
 * "private key kubernetes://cred: does not match the certificate". */
struct tls_ctx *tls_client_ctx_new(const struct tls_client_params *p, struct sbuf *err);
struct tls_ctx *tls_server_ctx_new(const struct tls_server_params *p, struct sbuf *err);
/* Reference counting; the creator owns the first reference. Any thread. */
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx);
void tls_ctx_unref(struct tls_ctx *ctx);      /* NULL is fine */
/* Unique per process, never reused (unlike the pointer): for caches and stats. */
uint64_t tls_ctx_id(const struct tls_ctx *ctx);

/* Istio's file-mounted identity: DIR/cert-chain.pem, DIR/key.pem, DIR/root-cert.pem.
 * Fills the three tls_pem (file paths, stored in *files, which must outlive their use
 * by tls_*_ctx_new) for ISTIO_MUTUAL on either side. */
struct tls_identity_files {
	char cert[4096], key[4096], root[4096];
};
void tls_identity_files(const char *dir, struct tls_identity_files *files,
                        struct tls_pem *cert, struct tls_pem *key, struct tls_pem *root);

/* ---- server name dispatch (Gateway servers sharing one port) ---- */

/* Installs SNI dispatch on a listener's default server context. During each ClientHello
 * (before version negotiation, so the chosen context's protocol versions, verify mode
 * and ALPN apply), select(sni, arg) is called with the client's server name (NULL if it
 * sent none) and returns the context to use: the default context itself, another server
 * context, or NULL to refuse the handshake (unrecognized_name alert). select runs on the
 * worker thread doing the handshake, so arg must be safe to read from all workers (for
 * example an immutable config snapshot); the returned context is borrowed (the
 * connection takes its own reference). Call before the context is shared. */
void tls_server_set_sni(struct tls_ctx *dflt,
                        struct tls_ctx *(*select)(const char *sni, void *arg), void *arg);

/* Gateway host matching, case-insensitive: "*" matches every name; "*.example.com"
 * matches any name ending in ".example.com" (one or more labels, not "example.com"
 * itself); otherwise exact. A trailing dot on name is ignored. The "ns/" prefix of a
 * Gateway host is the caller's to strip. name may be NULL (no SNI): only "*" matches. */
bool tls_host_match(const char *pattern, const char *name);

/* ---- connections ---- */

/* What a client checks of the server certificate's names, beyond the chain (Istio's
 * DestinationRule rules: subjectAltNames if set; else, when no sni is configured, the
 * request's host; else nothing). Pass NULL or a zeroed struct for "chain only".
 *  - nsans > 0: the leaf must carry one of sans exactly: a DNS SAN (a wildcard DNS SAN in
 *    the certificate, "*.example.com", covers one label, as in Envoy), a URI SAN
 *    ("spiffe://cluster.local/ns/x/sa/y") or an IP SAN (compared as addresses). The
 *    subject CN is never used.
 *  - else hostname != NULL: automatic SAN validation: DNS SAN match (wildcards in the
 *    leftmost label), or IP SAN if hostname is an IP literal. Never the CN, so a
 *    certificate without SANs fails with hostname_mismatch.
 * The strings are copied; the struct need not outlive the call. */
struct tls_verify_names {
	const char *hostname;
	const char *const *sans;
	size_t nsans;
};

/* A client connection on a connected (or connecting) nonblocking fd. sni may be NULL (no
 * server_name sent; IP literals are never sent as SNI, per RFC 6066). Never fails except
 * on allocation (abort); errors surface from tls_handshake. */
struct tls_conn *tls_client_new(struct tls_ctx *ctx, int fd, const char *sni,
                                const struct tls_verify_names *names);
/* Replaces the ALPN list the context offers, for this connection only (n 0: none); call
 * before the first tls_handshake. The HTTP/1.1 path of a cluster whose context offers h2
 * offers only "http/1.1" this way. */
void tls_client_alpn(struct tls_conn *c, const char *const *alpn, size_t n);
/* Session resumption for a client connection: call after tls_client_new and before the
 * first tls_handshake. endpoint is the address connected to. cache must outlive conn. */
void tls_client_resume(struct tls_conn *c, struct tls_sess_cache *cache,
                       const struct sock_addr *endpoint);
/* A server connection on an accepted nonblocking fd. */
struct tls_conn *tls_server_new(struct tls_ctx *ctx, int fd);
/* Frees the connection; does not close the fd; NULL is fine. A connection that did not
 * fail keeps its session resumable even without tls_shutdown (OpenSSL would otherwise
 * invalidate it), so a pool may just free and close idle connections. */
void tls_conn_free(struct tls_conn *c);

/* Drives the handshake: 0 done, TLS_WANT_READ / TLS_WANT_WRITE, -1 failed (see
 * tls_conn_error). Calling it again after 0 returns 0. */
int tls_handshake(struct tls_conn *c);
/* Reads decrypted bytes: > 0 bytes, 0 the peer closed (close_notify or plain EOF: HTTP's
 * own framing detects truncation), TLS_WANT_READ / TLS_WANT_WRITE, -1 error. With an
 * edge-triggered loop_io, call until it returns WANT_*: OpenSSL may hold a whole record
 * already read from the socket. */
ssize_t tls_read(struct tls_conn *c, void *buf, size_t n);
/* Writes: > 0 bytes taken (may be fewer than n: partial writes are on; the buffer may
 * move between retries), TLS_WANT_*, -1 error. n must be > 0. */
ssize_t tls_write(struct tls_conn *c, const void *buf, size_t n);
/* Sends close_notify, best effort: 0 sent (or nothing to do), TLS_WANT_* to retry, -1 if
 * the connection is already broken. Never waits for the peer's close_notify. */
int tls_shutdown(struct tls_conn *c);
/* Bytes already decrypted and buffered inside OpenSSL (readable without the socket). */
size_t tls_pending(const struct tls_conn *c);
/* True when another tls_read would find nothing now: OpenSSL holds no byte, decrypted or
 * not, and the socket's last read came back short (it was empty). A reader may then wait
 * for the loop instead of reading once more for TLS_WANT_READ. False means "not known". */
bool tls_read_drained(const struct tls_conn *c);

/* Failure reason and category of the last -1 (NULL and "" before any failure). The
 * strings live in the connection. */
const char *tls_conn_error(const struct tls_conn *c);
const char *tls_conn_category(const struct tls_conn *c);

/* Categories (tls_conn_category). Verification of the peer's certificate by us: */
#define TLS_CAT_CERT_EXPIRED        "cert_expired"
#define TLS_CAT_CERT_NOT_YET_VALID  "cert_not_yet_valid"
#define TLS_CAT_UNKNOWN_CA          "unknown_ca"         /* no path to a trust anchor */
#define TLS_CAT_SELF_SIGNED         "self_signed"
#define TLS_CAT_HOSTNAME_MISMATCH   "hostname_mismatch"  /* automatic SAN validation */
#define TLS_CAT_SAN_MISMATCH        "san_mismatch"       /* subjectAltNames list */
#define TLS_CAT_REVOKED             "revoked"
#define TLS_CAT_CRL_ERROR           "crl_error"          /* missing/expired/bad CRL */
#define TLS_CAT_BAD_PURPOSE         "bad_purpose"        /* e.g. EKU clientAuth only */
#define TLS_CAT_CERT_INVALID        "cert_invalid"       /* any other X.509 failure */
#define TLS_CAT_NO_PEER_CERT        "no_peer_cert"       /* peer sent no certificate */
/* The peer rejected us (an alert it sent): */
#define TLS_CAT_PEER_UNKNOWN_CA     "peer_unknown_ca"    /* our client cert's CA */
#define TLS_CAT_PEER_BAD_CERT       "peer_bad_certificate"
#define TLS_CAT_CLIENT_CERT_REQUIRED "client_cert_required"
#define TLS_CAT_UNRECOGNIZED_NAME   "unrecognized_name"  /* SNI not served */
/* Negotiation and transport: */
#define TLS_CAT_PROTOCOL_VERSION    "protocol_version"   /* incl. "wrong version number":
                                                          * often a plaintext peer */
#define TLS_CAT_HANDSHAKE_FAILURE   "handshake_failure"  /* no shared cipher/group/sigalg */
#define TLS_CAT_ALPN_MISMATCH       "alpn_mismatch"
#define TLS_CAT_PROTOCOL_ERROR      "protocol_error"     /* malformed or bad MAC */
#define TLS_CAT_CONNECTION_RESET    "connection_reset"
#define TLS_CAT_CONNECTION_CLOSED   "connection_closed"  /* EOF in the middle */
#define TLS_CAT_IO_ERROR            "io_error"           /* other socket errno */
#define TLS_CAT_TLS_ERROR           "tls_error"          /* anything else */

/* After the handshake. Strings live in the connection; NULL when absent. */
bool tls_conn_resumed(const struct tls_conn *c);
const char *tls_conn_alpn(const struct tls_conn *c);      /* "h2", "http/1.1", NULL */
const char *tls_conn_sni(const struct tls_conn *c);       /* server: what the client sent */
const char *tls_conn_version(const struct tls_conn *c);   /* "TLSv1.3" */
const char *tls_conn_cipher(const struct tls_conn *c);    /* "TLS_AES_128_GCM_SHA256" */
bool tls_conn_peer_has_cert(const struct tls_conn *c);
/* The peer certificate's first URI SAN (the SPIFFE id in a mesh) copied into buf (size
 * n). Returns buf, or NULL when there is no peer certificate or no URI SAN, or it does
 * not fit. */
const char *tls_peer_uri_san(const struct tls_conn *c, char *buf, size_t n);
/* The server context chosen by SNI dispatch (or the listener's own); borrowed. */
struct tls_ctx *tls_conn_ctx(const struct tls_conn *c);

/* ---- per-worker client session cache ---- */

struct tls_sess_stats {
	uint64_t full;        /* handshakes completed without resumption */
	uint64_t resumed;     /* handshakes that resumed a cached session */
	uint64_t offered;     /* handshakes where a cached session was offered */
	uint64_t stored;      /* sessions (or TLS 1.3 tickets) stored */
	uint64_t evicted;     /* entries dropped because the cache was full */
	uint64_t failed;      /* handshakes failed (their cache entry is dropped) */
	uint64_t stale;       /* entries dropped because their context was freed */
};

/* max_entries: distinct (context, endpoint, SNI) keys kept, least recently used
 * evicted first; 0 = 1024. */
struct tls_sess_cache *tls_sess_cache_new(size_t max_entries);
void tls_sess_cache_free(struct tls_sess_cache *cache);
const struct tls_sess_stats *tls_sess_cache_stats(const struct tls_sess_cache *cache);
size_t tls_sess_cache_size(const struct tls_sess_cache *cache);
/* Drops the entries whose context has been freed since (a rotation's old credential, a
 * changed setting); costs nothing unless some context was freed since the last call.
 * Returns how many it dropped. The owning worker calls it at its tick. */
size_t tls_sess_cache_sweep(struct tls_sess_cache *cache);

/* ---- certificate inspection (admin, proxy-config secret) ---- */

struct tls_cert_info {
	char serial[64];        /* decimal, as istioctl prints it ("16491643791048004260") */
	char not_before[32];    /* RFC 3339 UTC "2024-06-04T12:46:28Z" */
	char not_after[32];
	bool valid_now;         /* not_before <= now <= not_after */
	char subject[256];      /* one line, RFC 2253 ("CN=example.com,O=example Inc.") */
	size_t chain_len;       /* certificates in the PEM */
	char uri_san[512];      /* the first URI SAN (a SPIFFE identity), "" when none */
};

/* Inspects the first certificate of a PEM chain or bundle (the leaf, or a CA bundle's
 * first CA). Returns 0, or -1 with a reason in err. */
int tls_cert_info_pem(const char *pem, size_t len, struct tls_cert_info *out,
                      struct sbuf *err);

#endif
