/* tls_sysca: the system trust store, loaded once per process and shared by every client
 * context that verifies against it.
 *
 * SSL_CTX_set_default_verify_paths parses the whole system bundle (about 140 certificates
 * on Debian, ~200 KB of X509 objects) into each context; a gateway with many TLS
 * origination settings (credentials, ALPN, versions) made one copy per distinct context.
 * One X509_STORE is shared instead (OpenSSL's stores are reference-counted and safe for
 * concurrent verification). It is loaded again when the bundle file changes (device,
 * inode, size or modification time), so contexts built after an update of
 * ca-certificates trust the new bundle, as they did before. A context that adds CRLs to
 * its store does not use the shared one (CRLs and their flags live in the store). */
#ifndef EGRESS_NET_TLS_SYSCA_H
#define EGRESS_NET_TLS_SYSCA_H

#include <openssl/x509.h>

/* A new reference to the shared store (X509_STORE_free it), or NULL with OpenSSL's error
 * queue set when the system paths cannot be loaded. Thread-safe. */
X509_STORE *tls_system_store(void);

#endif
