/* ca: the mesh CA. A self-signed root that issues SPIFFE workload certificates.
 *
 * What Istio's istiod does for a mesh, reduced to files: `ca_create` makes a root (ECDSA
 * P-256, CA:TRUE, keyCertSign, 10 years, subject O=<trust domain>) in a directory, and
 * `ca_issue` signs short-lived workload certificates whose only identity is the URI SAN
 *     spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
 * (empty subject, critical SAN, EKU serverAuth+clientAuth), as Istio's are. The workload
 * files are the ones Istio mounts: cert-chain.pem, key.pem, root-cert.pem.
 *
 * CA directory layout (stable, documented in the user guide):
 *     root-cert.pem   the root certificate
 *     root-key.pem    its private key (PKCS#8 PEM, mode 0600; the directory is 0700)
 *     trust-domain    the trust domain, one line ("cluster.local" when the file is absent)
 *
 * Errors are returned as text in a caller-provided sbuf; no function prints. Key material
 * never appears in an error message; PEM buffers holding keys are cleansed before free. */
#ifndef EGRESS_CA_CA_H
#define EGRESS_CA_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/sbuf.h"

#define CA_ROOT_CERT_FILE     "root-cert.pem"
#define CA_ROOT_KEY_FILE      "root-key.pem"
#define CA_TRUST_DOMAIN_FILE  "trust-domain"
#define CA_DEFAULT_TRUST_DOMAIN "cluster.local"

#define CA_WORKLOAD_CHAIN_FILE "cert-chain.pem"
#define CA_WORKLOAD_KEY_FILE   "key.pem"
#define CA_WORKLOAD_ROOT_FILE  "root-cert.pem"

#define CA_ROOT_VALIDITY_DAYS  3650
#define CA_DEFAULT_TTL_SEC     (24 * 3600)

struct ca {
	X509 *cert;            /* the root */
	EVP_PKEY *key;         /* its key */
	char *trust_domain;
};

/* What a workload certificate says. ns and sa are required; dns[0..ndns) are extra DNS
 * SANs (may be 0). ttl_sec > 0. */
struct ca_issue_req {
	const char *ns;
	const char *sa;
	const char *const *dns;
	size_t ndns;
	int64_t ttl_sec;
};

/* An issued certificate and its fresh key. */
struct ca_leaf {
	X509 *cert;
	EVP_PKEY *key;
};

/* Creates a new root in dir (created 0700 if missing). Refuses (-1) when dir already holds
 * a root certificate or key, so that an existing mesh is never silently re-rooted.
 * trust_domain NULL means CA_DEFAULT_TRUST_DOMAIN. Returns 0, or -1 with err set. */
int ca_create(const char *dir, const char *trust_domain, struct sbuf *err);

/* Loads the root and its key from dir and checks that they belong together.
 * Returns 0 with out filled (release with ca_fini), or -1 with err set. */
int ca_load(const char *dir, struct ca *out, struct sbuf *err);
void ca_fini(struct ca *ca);

/* Issues a workload certificate signed by ca. The validity starts one minute in the past
 * (clock skew between hosts) and ends ttl_sec from now, which must not be after the root's
 * own expiry. Returns 0 with out filled (release with ca_leaf_fini), or -1 with err set. */
int ca_issue(const struct ca *ca, const struct ca_issue_req *req, struct ca_leaf *out,
             struct sbuf *err);
void ca_leaf_fini(struct ca_leaf *leaf);

/* Writes leaf and the root to outdir (created 0755 if missing) as cert-chain.pem (0644),
 * key.pem (0600) and root-cert.pem (0644), each file atomically. Returns 0 or -1/err. */
int ca_write_workload(const struct ca *ca, const struct ca_leaf *leaf, const char *outdir,
                      struct sbuf *err);

/* "spiffe://TD/ns/NS/sa/SA" appended to out. */
void ca_spiffe_id(const char *trust_domain, const char *ns, const char *sa, struct sbuf *out);

/* Validity checks for the parts of a SPIFFE ID, so that an identity cannot smuggle '/'
 * or other characters into the URI: a trust domain is lowercase letters, digits, '.',
 * '-' and '_' (at most 255 bytes); a namespace is a DNS-1123 label; a service account
 * a DNS-1123 subdomain. */
bool ca_trust_domain_valid(const char *td);
bool ca_namespace_valid(const char *ns);
bool ca_service_account_valid(const char *sa);

/* Parses a Go-style duration ("24h", "90m", "1h30m", "1.5h", "3600s", "500ms") into whole
 * seconds, truncating fractions of a second. Units: ns us µs ms s m h. Returns 0, or -1
 * if s is not a duration, is negative or overflows. */
int ca_parse_duration(const char *s, int64_t *sec);

/* The certificate's notAfter as a time_t. Returns 0 or -1. */
int ca_cert_not_after(const X509 *cert, time_t *out);

#endif
