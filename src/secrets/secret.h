/* secret: credentials (certificate, key, CA, CRL) from Secrets and files, as the proxy
 * has loaded them, kept across configuration reloads.
 *
 * Layouts. A credentialName NAME is the Secret NAME in the proxy's namespace, read the
 * way Istio reads it (secret_resolve): the certificate and key from "cert"/"key" (CRL in
 * "crl", CA in "cacert"), else from "tls.crt"/"tls.key" (CRL in "ca.crl", CA in
 * "ca.crt"); the CA comes from a separate Secret NAME-cacert (keys "cacert" or "ca.crt",
 * CRL "crl" or "ca.crl") when that Secret exists. A kubernetes.io/tls Secret is the
 * second layout.
 *
 * The cache. The main thread owns one struct secret_cache for the life of the process and
 * hands it to every snap_build (struct snap_params). For each credential it keeps the last
 * version that loaded (copies of the PEM bytes; the key is wiped when the version is
 * dropped), so that:
 *  - a new version that does not load (bad PEM, key not matching the certificate, keys
 *    missing, the Secret directory unreadable) is rejected, with an event naming the
 *    Secret and the problem, and the previous version stays in use (it is shown as
 *    the rejected version by secret_cache_json);
 *  - a credential that never loaded is WARMING: the caller fails its users fast with the
 *    reason ("secret kubernetes://NAME not found in namespace NS");
 *  - an unchanged credential keeps its TLS client contexts across reloads (the context
 *    cache below, keyed by the versions' digests), so an unrelated reload drops no pooled
 *    connection or session, while a new version always gets a new context (a new id:
 *    upstream pools and session caches never mix the two).
 * A Secret that is deleted is dropped at once (its users fail with "not found").
 *
 * A build uses the cache between secret_cache_begin and secret_cache_commit (the build
 * succeeded: what it did not use is dropped, and the list secret_cache_json shows is
 * replaced) or secret_cache_abort (the previous list stays). One build at a time, main
 * thread only: nothing here locks.
 *
 * What happens (a version loaded, rejected, a private key file readable by others) is
 * queued as events; the owner logs them with secret_cache_log_events. No event, message
 * or JSON ever contains key bytes. */
#ifndef EGRESS_SECRETS_SECRET_H
#define EGRESS_SECRETS_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/store.h"
#include "core/diag.h"
#include "core/sbuf.h"
#include "net/tls.h"

struct res_secret_data;

/* ---- layouts ---- */

/* The keys that make up credential NAME. Pointers borrow the store contents. */
struct secret_parts {
	const struct res_secret_data *cert, *key, *ca, *crl;
	const char *cert_key, *key_key, *ca_key, *crl_key;   /* the key names used */
	const struct store_entry *sec;      /* Secret NAME, or NULL */
	const struct store_entry *casec;    /* Secret NAME-cacert, or NULL */
	const struct store_entry *ca_from;  /* the one of the two the CA came from */
	const struct store_entry *crl_from; /* and the CRL */
};

#define SECRET_NOT_FOUND 1

/* Resolves credential name in namespace ns. need_cert: a certificate and key are
 * required; otherwise they are taken when present and only the CA is looked for.
 * Returns 0 (out filled), SECRET_NOT_FOUND when neither Secret exists (Secret NAME
 * alone when need_cert), or -1 when the Secrets exist but lack the keys needed; err gets
 * the reason either way, naming the keys found:
 *     secret kubernetes://client-credential not found in namespace istio-system
 *     secret kubernetes://client-credential has no tls.crt/tls.key or cert/key (found: ca.crt) */
int secret_resolve(const struct store_contents *c, const char *ns, const char *name,
                   bool need_cert, struct secret_parts *out, struct sbuf *err);

/* ---- versions ---- */

#define SECRET_DIGEST_HEX 17     /* 16 hex digits of SHA-256 and a NUL */

/* One version of a credential: copies of its PEM parts (NULL, 0 when absent), immutable.
 * Owned by the cache: valid until the end of the build that obtained it. */
struct secret_version {
	unsigned char *cert, *key, *ca, *crl;
	size_t cert_len, key_len, ca_len, crl_len;
	char digest[SECRET_DIGEST_HEX];   /* names the version: in context keys and messages */
	struct tls_cert_info cert_info;   /* when cert */
	struct tls_cert_info ca_info;     /* when ca */
	time_t loaded;
};

/* What a user of a credential needs (secret_cache_credential's flags). */
enum {
	SECRET_USE_CERT = 1u << 0,  /* the certificate and key: required (MUTUAL, servers) */
	SECRET_USE_CA   = 1u << 1,  /* the CA when the credential has one */
	SECRET_NEED_CA  = 1u << 2,  /* the CA is required (SIMPLE origination) */
};

/* ---- the cache ---- */

struct secret_cache;

struct secret_cache *secret_cache_new(void);
/* Frees everything: versions (keys wiped), contexts (references dropped), events. */
void secret_cache_free(struct secret_cache *c);

void secret_cache_begin(struct secret_cache *c);
void secret_cache_commit(struct secret_cache *c);
void secret_cache_abort(struct secret_cache *c);

/* Announces, before any secret_cache_credential call of the build, that a user of
 * credential name (namespace ns) may need flags (SECRET_USE_*): a new version is checked
 * against every announced need, so that what one user needs is never dropped because
 * another user, served first, needs less. */
void secret_cache_want(struct secret_cache *c, const char *ns, const char *name,
                       unsigned flags);

/* Credential name of namespace ns as this build must use it. contents is the store just
 * loaded; store_root (may be NULL) lets an unreadable Secret directory be told from a
 * missing one, and key files be checked for their mode. flags: SECRET_USE_*, what this
 * user needs (and what the list shows: a kubernetes://NAME row for SECRET_USE_CERT, a
 * kubernetes://NAME-cacert row for the CA).
 * Returns the version to use, or NULL with the reason in err (never loaded, or this use
 * needs a part the version lacks). The first call for a name in a build decides its
 * version from the announced needs; later calls only check their own. The version stays
 * valid until the build's commit or abort. */
const struct secret_version *secret_cache_credential(struct secret_cache *c,
                                                     const struct store_contents *contents,
                                                     const char *store_root, const char *ns,
                                                     const char *name, unsigned flags,
                                                     struct sbuf *err);

/* A certificate loaded from files (the --identity directory, a DestinationRule's or
 * Gateway's file fields), listed as resource: "default", "ROOTCA",
 * "file-cert:CERT~KEY", "file-root:CA". key_file (may be NULL) is only checked for its
 * mode, never read here. Writes the digest of the files' contents to digest (for
 * context keys: a changed file makes a new context); a file that cannot be read is shown
 * WARMING with the reason, and its digest is "unreadable". */
void secret_cache_file(struct secret_cache *c, const char *resource, bool root,
                       const char *cert_file, const char *key_file,
                       char digest[SECRET_DIGEST_HEX]);

/* The digest of a file's contents into digest ("unreadable" when it cannot be read). */
void secret_file_digest(const char *path, char digest[SECRET_DIGEST_HEX]);

/* The digest of the system trust store's bundle: $SSL_CERT_FILE, else OpenSSL's default
 * file (a hashed $SSL_CERT_DIR is not covered). */
void secret_system_ca_digest(char digest[SECRET_DIGEST_HEX]);

/* TLS client contexts kept across builds by key (the caller's key must name every input,
 * including version digests). get returns a new reference or NULL; put keeps a
 * reference. A context not got or put during a build is released at its commit. */
struct tls_ctx *secret_cache_ctx_get(struct secret_cache *c, const char *key);
void secret_cache_ctx_put(struct secret_cache *c, const char *key, struct tls_ctx *ctx);

/* Logs the queued events (module "secret") and clears them. */
void secret_cache_log_events(struct secret_cache *c);
/* The queued events as text, one per line (for tests); they stay queued. */
void secret_cache_events_text(const struct secret_cache *c, struct sbuf *out);

/* The list of the last committed build as JSON, VALID CERT computed now:
 *   { "secrets": [ { "name", "type", "status", "valid", "serial", "not_after",
 *                    "not_before", "subject", "source", "version", "loaded_at",
 *                    "error"?, "rejected"?: { "version", "reason", "at" } } ] }
 * name: "default", "ROOTCA", "kubernetes://NAME", "kubernetes://NAME-cacert",
 * "file-cert:CERT~KEY", "file-root:CA"; type "Cert Chain" or "CA"; status "ACTIVE" or
 * "WARMING". WARMING items first, then ACTIVE ones, each in name order (istioctl's
 * order: warming secrets, then active ones). */
void secret_cache_json(const struct secret_cache *c, struct sbuf *out);

/* Certificate expiry, over the list of the last commit. A certificate is *expiring* when
 * less than 1/SECRET_EXPIRING_FRACTION of its validity period is left (a 24 h workload
 * certificate: 6 h; Istio's agent renews at half, so a healthy one never gets there).
 * secret_cache_json adds "expires_in_seconds" (negative once expired) and "expiring". */
#define SECRET_EXPIRING_FRACTION 4
/* Queues a warning event (an error once expired) for each expiring certificate, once per
 * certificate (name and serial) and state. */
void secret_cache_check_expiry(struct secret_cache *c, time_t now);
/* egressgw_cert_expiry_seconds{resource_name="..."}: seconds until each certificate's
 * notAfter (as istio-agent's istio_agent_cert_expiry_seconds), Prometheus text. */
void secret_cache_prom(const struct secret_cache *c, time_t now, struct sbuf *out);

/* Whether every error in d is about a Secret directory under root/secrets (a store that
 * loads but for some Secrets: the cache treats each as a rejected version). */
bool secret_store_errors_only(const struct diags *d, const char *root);

#endif
