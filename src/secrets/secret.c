/* secret: credential layouts, the credential cache and its list (see secret.h).
 *
 * Per credential (namespace, name) the cache keeps the version in use ("good") and the
 * last version it rejected. A build resolves each credential once, on its first use:
 *   1. secret_resolve finds the keys (or not: the Secret was deleted, or its directory
 *      could not be read, or keys are missing);
 *   2. the parts are hashed: the same digest as the good version means nothing changed;
 *      the same raw digest as the last rejected version means it was already reported;
 *   3. otherwise the new version is loaded the way the data path will load it (a TLS
 *      client context built and dropped: PEM, key match, CA and CRL all parse) and
 *      becomes the good version, or is rejected and the good version stays.
 * Two digests: the version digest covers the parts used (so an unrelated key added to
 * the Secret changes nothing), the raw digest covers every key of both Secrets (so each
 * distinct bad content is reported once). */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include "secrets/secret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "config/resource.h"
#include "core/log.h"
#include "core/util.h"

#define SECRET_TYPE_CHAIN "Cert Chain"
#define SECRET_TYPE_CA    "CA"

enum secret_status {
	SECRET_ACTIVE,
	SECRET_WARMING,
};

struct secret_event {
	enum log_level lvl;
	char *msg;
};

/* One credentialName. */
struct secret_cred {
	char *ns, *name;
	struct secret_version *good;      /* NULL: never loaded, or deleted (WARMING) */
	char *good_src;                   /* "Secret NS/NAME", for the list */
	char *ca_src;                     /* where the good version's CA came from */
	char rej_raw[SECRET_DIGEST_HEX];  /* raw digest of the last rejected content, or "" */
	char rej_version[SECRET_DIGEST_HEX];
	char *rej_reason;
	time_t rej_at;
	char *error;                      /* this build: why there is no version */
	unsigned want;                    /* SECRET_USE_* announced in this build */
	unsigned needs;                   /* SECRET_USE_* of this build's users */
	bool resolved;                    /* resolved in this build */
	bool used;                        /* some user in this build */
};

/* A certificate from files, in this build. */
struct secret_file {
	char *resource;
	bool root;
	char *source;
	char digest[SECRET_DIGEST_HEX];
	struct tls_cert_info info;
	char *error;
	time_t loaded;
};

struct secret_ctxent {
	char *key;
	struct tls_ctx *ctx;
	uint64_t gen;
};

/* One row of the list shown by secret_cache_json. */
struct secret_item {
	char *name;
	const char *type;
	enum secret_status status;
	bool has_info;
	struct tls_cert_info info;
	char *source, *error;
	char version[SECRET_DIGEST_HEX];
	time_t loaded;
	char rej_version[SECRET_DIGEST_HEX];
	char *rej_reason;
	time_t rej_at;
};

struct secret_cache {
	uint64_t gen;
	struct secret_cred **creds;
	size_t ncreds;
	struct secret_file *files;
	size_t nfiles;
	struct secret_ctxent *ctxs;
	size_t nctxs, ctxs_cap;
	/* Index of ctxs by key: open addressing, slot = index + 1 (0 empty), ctx_mask + 1
	 * slots, rebuilt when it fills to half and after the commit drops contexts. Every
	 * cluster of a snapshot looks its context up here (10,000 clusters, possibly as many
	 * distinct contexts). */
	size_t *ctx_index;
	size_t ctx_mask;
	struct secret_item *items;        /* the list of the last commit */
	size_t nitems;
	struct secret_event *events;
	size_t nevents;
	char **warned;                    /* "PATH|MODE" of key files already warned about */
	size_t nwarned;
};

/* ---- layouts ---- */

static const struct store_entry *secret_entry(const struct store_contents *c, const char *ns,
                                              const char *name)
{
	return c ? store_find(c, RES_SECRET, ns, name) : NULL;
}

/* A key with a non-empty value, or NULL. */
static const struct res_secret_data *secret_val(const struct store_entry *e, const char *key)
{
	const struct res_secret_data *v = e ? res_secret_get(e->res.u.secret, key) : NULL;

	return v && v->len ? v : NULL;
}

static void secret_found_keys(const struct store_entry *e, struct sbuf *err)
{
	const struct secret *s = e->res.u.secret;

	sbuf_adds(err, " (found: ");
	for (size_t i = 0; i < s->data.n; i++)
		sbuf_addf(err, "%s%s", i ? ", " : "", s->data.v[i].key);
	if (s->data.n == 0)
		sbuf_adds(err, "no keys");
	sbuf_adds(err, ")");
}

/* Takes the first of keys[] present in e into *v and *name. */
static void secret_pick(const struct store_entry *e, const char *const *keys, size_t n,
                        const struct res_secret_data **v, const char **name)
{
	for (size_t i = 0; i < n && !*v; i++)
		if ((*v = secret_val(e, keys[i])) != NULL)
			*name = keys[i];
}

int secret_resolve(const struct store_contents *c, const char *ns, const char *name,
                   bool need_cert, struct secret_parts *out, struct sbuf *err)
{
	static const char *const ca_keys[] = { "cacert", "ca.crt" };
	static const char *const crl_keys[] = { "crl", "ca.crl" };
	char *caname = xasprintf("%s-cacert", name);
	const struct store_entry *from;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	out->sec = secret_entry(c, ns, name);
	out->casec = secret_entry(c, ns, caname);
	if (!out->sec && (need_cert || !out->casec)) {
		sbuf_addf(err, "secret kubernetes://%s not found in namespace %s", name, ns);
		rc = SECRET_NOT_FOUND;
		goto out;
	}
	/* Istio's order: cert/key (CRL "crl"), then tls.crt/tls.key (CRL "ca.crl"). */
	if (secret_val(out->sec, "cert") && secret_val(out->sec, "key")) {
		out->cert = secret_val(out->sec, out->cert_key = "cert");
		out->key = secret_val(out->sec, out->key_key = "key");
		if ((out->crl = secret_val(out->sec, "crl")) != NULL)
			out->crl_key = "crl";
	} else if (secret_val(out->sec, "tls.crt") && secret_val(out->sec, "tls.key")) {
		out->cert = secret_val(out->sec, out->cert_key = "tls.crt");
		out->key = secret_val(out->sec, out->key_key = "tls.key");
		if ((out->crl = secret_val(out->sec, "ca.crl")) != NULL)
			out->crl_key = "ca.crl";
	} else if (need_cert) {
		sbuf_addf(err, "secret kubernetes://%s has no tls.crt/tls.key or cert/key", name);
		secret_found_keys(out->sec, err);
		goto out;
	} else {
		out->cert_key = out->key_key = NULL;
	}
	if (out->crl)
		out->crl_from = out->sec;
	/* The CA: Secret NAME-cacert when it exists, else NAME itself. */
	from = out->casec ? out->casec : out->sec;
	secret_pick(from, ca_keys, ARRAY_SIZE(ca_keys), &out->ca, &out->ca_key);
	if (out->casec && !out->ca) {
		sbuf_addf(err, "secret kubernetes://%s has no cacert or ca.crt", caname);
		secret_found_keys(out->casec, err);
		goto out;
	}
	if (out->ca)
		out->ca_from = from;
	if (!out->crl) {
		secret_pick(from, crl_keys, ARRAY_SIZE(crl_keys), &out->crl, &out->crl_key);
		if (out->crl)
			out->crl_from = from;
	}
	rc = 0;
out:
	free(caname);
	return rc;
}

/* ---- digests ---- */

static void secret_hex(const unsigned char *md, char out[SECRET_DIGEST_HEX])
{
	for (size_t i = 0; i < (SECRET_DIGEST_HEX - 1) / 2; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Adds a tagged, length-prefixed field, so that moving bytes between fields changes the
 * digest. */
static void secret_md_field(EVP_MD_CTX *md, const char *tag, const void *p, size_t n)
{
	uint64_t len = n;

	EVP_DigestUpdate(md, tag, strlen(tag) + 1);
	EVP_DigestUpdate(md, &len, sizeof(len));
	if (n)
		EVP_DigestUpdate(md, p, n);
}

static void secret_md_final(EVP_MD_CTX *md, char out[SECRET_DIGEST_HEX])
{
	unsigned char buf[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_DigestFinal_ex(md, buf, &n);
	EVP_MD_CTX_free(md);
	secret_hex(buf, out);
	OPENSSL_cleanse(buf, sizeof(buf));
}

static EVP_MD_CTX *secret_md_new(void)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		abort();    /* allocation failure, as xmalloc */
	return md;
}

/* Every key of both Secrets (what the user last wrote) and what the users need (the
 * same content may be fine for fewer needs). */
static void secret_raw_digest(const struct secret_parts *p, unsigned needs,
                              char out[SECRET_DIGEST_HEX])
{
	EVP_MD_CTX *md = secret_md_new();
	const struct store_entry *e[2] = { p->sec, p->casec };

	secret_md_field(md, "needs", &needs, sizeof(needs));

	for (size_t k = 0; k < 2; k++) {
		const struct secret *s = e[k] ? e[k]->res.u.secret : NULL;
		unsigned char present = s != NULL;

		secret_md_field(md, k ? "cacert-secret" : "secret", &present, 1);
		for (size_t i = 0; s && i < s->data.n; i++)
			secret_md_field(md, s->data.v[i].key, s->data.v[i].value, s->data.v[i].len);
	}
	secret_md_final(md, out);
}

static void secret_version_digest(struct secret_version *v)
{
	EVP_MD_CTX *md = secret_md_new();

	secret_md_field(md, "cert", v->cert, v->cert_len);
	secret_md_field(md, "key", v->key, v->key_len);
	secret_md_field(md, "ca", v->ca, v->ca_len);
	secret_md_field(md, "crl", v->crl, v->crl_len);
	secret_md_final(md, v->digest);
}

/* ---- versions ---- */

/* A copy of a Secret value; secure: in OpenSSL's secure heap (mlocked, left out of core
 * dumps: egressgw initializes it at start) when it has room, for private keys, which the
 * cache keeps as long as their version serves. */
static unsigned char *secret_copy(const struct res_secret_data *d, size_t *len, bool secure)
{
	unsigned char *p = NULL;

	*len = 0;
	if (!d)
		return NULL;
	if (secure && CRYPTO_secure_malloc_initialized())
		p = OPENSSL_secure_malloc(d->len + 1);
	if (!p)
		p = xmalloc(d->len + 1);
	memcpy(p, d->value, d->len);
	p[d->len] = '\0';
	*len = d->len;
	return p;
}

static void secret_wipe(unsigned char *p, size_t len)
{
	if (p && CRYPTO_secure_allocated(p)) {
		OPENSSL_secure_clear_free(p, len + 1);
	} else if (p) {
		OPENSSL_cleanse(p, len + 1);
		free(p);
	}
}

static void secret_version_free(struct secret_version *v)
{
	if (!v)
		return;
	secret_wipe(v->cert, v->cert_len);
	secret_wipe(v->key, v->key_len);
	secret_wipe(v->ca, v->ca_len);
	secret_wipe(v->crl, v->crl_len);
	OPENSSL_cleanse(v, sizeof(*v));
	free(v);
}

static struct secret_version *secret_version_new(const struct secret_parts *p)
{
	struct secret_version *v = xcalloc(1, sizeof(*v));

	v->cert = secret_copy(p->cert, &v->cert_len, false);
	v->key = secret_copy(p->key, &v->key_len, true);
	v->ca = secret_copy(p->ca, &v->ca_len, false);
	v->crl = secret_copy(p->crl, &v->crl_len, false);
	secret_version_digest(v);
	return v;
}

/* "tls.crt" for a key of Secret NAME, "NAME-cacert/ca.crt" for one of NAME-cacert. */
static void secret_label(char *out, size_t n, const struct secret_parts *p,
                         const struct store_entry *from, const char *key)
{
	if (from && from == p->casec)
		snprintf(out, n, "%s/%s", p->casec->res.name, key);
	else
		snprintf(out, n, "%s", key ? key : "");
}

static void secret_pem(struct tls_pem *pem, const unsigned char *data, size_t len,
                       const char *label)
{
	if (!data)
		return;
	pem->data = (const char *)data;
	pem->len = len;
	pem->label = label;
}

/* Loads v as the data path will (a TLS client context built and dropped) and fills its
 * certificate details. Returns 0, or -1 with the reason in err. */
static int secret_version_check(struct secret_version *v, const struct secret_parts *p,
                                unsigned needs, struct sbuf *err)
{
	char lcert[300], lkey[300], lca[300], lcrl[300];
	struct tls_client_params cp;
	struct tls_ctx *probe;

	if ((needs & SECRET_NEED_CA) && !v->ca) {
		sbuf_addf(err, "no CA (want ca.crt or cacert, here or in Secret %s-cacert)",
		          p->sec ? p->sec->res.name : "NAME");
		return -1;
	}
	if (!v->cert && !v->ca) {
		sbuf_adds(err, "no certificate and no CA (want tls.crt/tls.key, cert/key, ca.crt "
		               "or cacert)");
		return -1;
	}
	secret_label(lcert, sizeof(lcert), p, p->sec, p->cert_key);
	secret_label(lkey, sizeof(lkey), p, p->sec, p->key_key);
	secret_label(lca, sizeof(lca), p, p->ca_from, p->ca_key);
	secret_label(lcrl, sizeof(lcrl), p, p->crl_from, p->crl_key);
	memset(&cp, 0, sizeof(cp));
	secret_pem(&cp.cert, v->cert, v->cert_len, lcert);
	secret_pem(&cp.key, v->key, v->key_len, lkey);
	secret_pem(&cp.ca, v->ca, v->ca_len, lca);
	secret_pem(&cp.crl, v->crl, v->crl_len, lcrl);
	probe = tls_client_ctx_new(&cp, err);
	if (!probe)
		return -1;
	tls_ctx_unref(probe);
	if (v->cert && tls_cert_info_pem((const char *)v->cert, v->cert_len, &v->cert_info, err) < 0)
		return -1;
	if (v->ca && tls_cert_info_pem((const char *)v->ca, v->ca_len, &v->ca_info, err) < 0)
		return -1;
	v->loaded = time(NULL);
	return 0;
}

/* ---- events ---- */

static void secret_event(struct secret_cache *c, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void secret_event(struct secret_cache *c, enum log_level lvl, const char *fmt, ...)
{
	struct sbuf b = SBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	sbuf_vaddf(&b, fmt, ap);
	va_end(ap);
	c->events = xrealloc(c->events, (c->nevents + 1) * sizeof(*c->events));
	c->events[c->nevents].lvl = lvl;
	c->events[c->nevents++].msg = sbuf_steal(&b);
}

void secret_cache_log_events(struct secret_cache *c)
{
	for (size_t i = 0; i < c->nevents; i++) {
		log_msg(c->events[i].lvl, "secret", "%s", c->events[i].msg);
		free(c->events[i].msg);
	}
	free(c->events);
	c->events = NULL;
	c->nevents = 0;
}

void secret_cache_events_text(const struct secret_cache *c, struct sbuf *out)
{
	for (size_t i = 0; i < c->nevents; i++)
		sbuf_addf(out, "%s\n", c->events[i].msg);
}

/* True the first time tag is seen (which it then keeps, or frees). For warnings given
 * once per condition. */
static bool secret_first_time(struct secret_cache *c, char *tag)
{
	for (size_t i = 0; i < c->nwarned; i++)
		if (strcmp(c->warned[i], tag) == 0) {
			free(tag);
			return false;
		}
	c->warned = xrealloc(c->warned, (c->nwarned + 1) * sizeof(*c->warned));
	c->warned[c->nwarned++] = tag;
	return true;
}

/* A private key file that group or others may read: warned about once per path and
 * mode. Follows symlinks (a kubelet mount's KEY -> ..data/KEY). */
static void secret_check_mode(struct secret_cache *c, const char *path)
{
	struct stat st;
	char *tag;

	if (!path || stat(path, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 077))
		return;
	tag = xasprintf("%s|%o", path, (unsigned)(st.st_mode & 07777));
	if (!secret_first_time(c, tag))
		return;
	secret_event(c, LOG_WARN, "private key file %s is readable by %s (mode %04o); restrict "
	             "it to its owner (chmod 600)", path,
	             (st.st_mode & 044) == 044 ? "group and others" :
	             (st.st_mode & 004) ? "others" : (st.st_mode & 040) ? "group" :
	             "group or others (write or execute)", (unsigned)(st.st_mode & 07777));
}

/* ---- the cache ---- */

struct secret_cache *secret_cache_new(void)
{
	return xcalloc(1, sizeof(struct secret_cache));
}

static void secret_cred_free(struct secret_cred *cr)
{
	secret_version_free(cr->good);
	free(cr->ns);
	free(cr->name);
	free(cr->good_src);
	free(cr->ca_src);
	free(cr->rej_reason);
	free(cr->error);
	free(cr);
}

static void secret_files_clear(struct secret_cache *c)
{
	for (size_t i = 0; i < c->nfiles; i++) {
		free(c->files[i].resource);
		free(c->files[i].source);
		free(c->files[i].error);
	}
	free(c->files);
	c->files = NULL;
	c->nfiles = 0;
}

static void secret_items_clear(struct secret_item *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].source);
		free(v[i].error);
		free(v[i].rej_reason);
	}
	free(v);
}

void secret_cache_free(struct secret_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ncreds; i++)
		secret_cred_free(c->creds[i]);
	free(c->creds);
	secret_files_clear(c);
	for (size_t i = 0; i < c->nctxs; i++) {
		free(c->ctxs[i].key);
		tls_ctx_unref(c->ctxs[i].ctx);
	}
	free(c->ctxs);
	free(c->ctx_index);
	secret_items_clear(c->items, c->nitems);
	for (size_t i = 0; i < c->nevents; i++)
		free(c->events[i].msg);
	free(c->events);
	for (size_t i = 0; i < c->nwarned; i++)
		free(c->warned[i]);
	free(c->warned);
	free(c);
}

void secret_cache_begin(struct secret_cache *c)
{
	c->gen++;
	secret_files_clear(c);
	for (size_t i = 0; i < c->ncreds; i++) {
		struct secret_cred *cr = c->creds[i];

		cr->want = cr->needs = 0;
		cr->resolved = cr->used = false;
	}
}

void secret_cache_abort(struct secret_cache *c)
{
	secret_files_clear(c);
}

static struct secret_cred *secret_cred_get(struct secret_cache *c, const char *ns,
                                           const char *name)
{
	struct secret_cred *cr;

	for (size_t i = 0; i < c->ncreds; i++)
		if (strcmp(c->creds[i]->ns, ns) == 0 && strcmp(c->creds[i]->name, name) == 0)
			return c->creds[i];
	cr = xcalloc(1, sizeof(*cr));
	cr->ns = xstrdup(ns);
	cr->name = xstrdup(name);
	c->creds = xrealloc(c->creds, (c->ncreds + 1) * sizeof(*c->creds));
	c->creds[c->ncreds++] = cr;
	return cr;
}

void secret_cache_want(struct secret_cache *c, const char *ns, const char *name,
                       unsigned flags)
{
	secret_cred_get(c, ns, name)->want |= flags;
}

static void secret_set(char **dst, const char *s)
{
	free(*dst);
	*dst = s ? xstrdup(s) : NULL;
}

static void secret_clear_rejected(struct secret_cred *cr)
{
	cr->rej_raw[0] = cr->rej_version[0] = '\0';
	secret_set(&cr->rej_reason, NULL);
	cr->rej_at = 0;
}

/* The new content (raw digest raw, version digest version or "") does not load. */
static void secret_reject(struct secret_cache *c, struct secret_cred *cr, const char *raw,
                          const char *version, const char *reason)
{
	if (strcmp(cr->rej_raw, raw) != 0) {
		snprintf(cr->rej_raw, sizeof(cr->rej_raw), "%s", raw);
		snprintf(cr->rej_version, sizeof(cr->rej_version), "%s", version);
		secret_set(&cr->rej_reason, reason);
		cr->rej_at = time(NULL);
		if (cr->good)
			secret_event(c, LOG_WARN, "Secret %s/%s rejected: %s; keeping the previous "
			             "version (%s)", cr->ns, cr->name, reason, cr->good->digest);
		else
			secret_event(c, LOG_WARN, "Secret %s/%s rejected: %s; credential "
			             "kubernetes://%s stays WARMING", cr->ns, cr->name, reason, cr->name);
	}
	if (!cr->good) {
		free(cr->error);
		/* A reason that already names the Secret stays as it is. */
		cr->error = str_has_prefix(cr->rej_reason, "secret kubernetes://")
		            ? xstrdup(cr->rej_reason)
		            : xasprintf("secret kubernetes://%s: %s", cr->name, cr->rej_reason);
	}
}

static bool secret_dir_exists(const char *root, const char *ns, const char *name)
{
	char *dir;
	struct stat st;
	bool yes;

	if (!root)
		return false;
	dir = store_secret_dir(root, ns, name);
	yes = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
	free(dir);
	return yes;
}

static void secret_key_mode(struct secret_cache *c, const struct secret_cred *cr,
                            const struct secret_parts *p, const char *root)
{
	char *dir, *path;

	if (!root || !p->key || !p->sec || !p->sec->in_secret_dir)
		return;
	dir = store_secret_dir(root, cr->ns, cr->name);
	path = xasprintf("%s/%s", dir, p->key_key);
	secret_check_mode(c, path);
	free(path);
	free(dir);
}

/* Decides the version of cr for this build (see the top of the file). */
static void secret_cred_resolve(struct secret_cache *c, struct secret_cred *cr,
                                const struct store_contents *contents, const char *root,
                                unsigned needs)
{
	struct secret_parts p;
	struct sbuf why = SBUF_INIT;
	struct secret_version *v = NULL;
	char raw[SECRET_DIGEST_HEX];
	int r;

	secret_set(&cr->error, NULL);
	r = secret_resolve(contents, cr->ns, cr->name, needs & SECRET_USE_CERT, &p, &why);
	if (r == 0 && !(needs & SECRET_USE_CERT))
		p.cert = p.key = NULL;   /* only the CA is used: the rest is not looked at */
	if (r == SECRET_NOT_FOUND) {
		char *caname = xasprintf("%s-cacert", cr->name);
		bool unreadable = secret_dir_exists(root, cr->ns, cr->name) ||
		                  (!(needs & SECRET_USE_CERT) && secret_dir_exists(root, cr->ns, caname));

		free(caname);
		if (unreadable) {
			char *dir = store_secret_dir(root, cr->ns, cr->name);

			sbuf_reset(&why);
			sbuf_addf(&why, "the Secret's directory %s could not be read (see the store's "
			          "errors)", dir);
			free(dir);
			secret_reject(c, cr, "unreadable", "", sbuf_str(&why));
			goto out;
		}
		if (cr->good)
			secret_event(c, LOG_INFO, "Secret %s/%s deleted: credential kubernetes://%s is "
			             "no longer served", cr->ns, cr->name, cr->name);
		secret_version_free(cr->good);
		cr->good = NULL;
		secret_clear_rejected(cr);
		cr->error = sbuf_steal(&why);
		goto out;
	}
	secret_raw_digest(&p, needs, raw);
	if (r < 0) {
		secret_reject(c, cr, raw, "", sbuf_str(&why));
		goto out;
	}
	v = secret_version_new(&p);
	if (cr->good && strcmp(v->digest, cr->good->digest) == 0) {
		secret_clear_rejected(cr);
		goto out;
	}
	if (strcmp(cr->rej_raw, raw) == 0) {
		secret_reject(c, cr, raw, v->digest, cr->rej_reason);
		goto out;
	}
	sbuf_reset(&why);
	if (secret_version_check(v, &p, needs, &why) < 0) {
		secret_reject(c, cr, raw, v->digest, sbuf_str(&why));
		goto out;
	}
	secret_key_mode(c, cr, &p, root);
	if (v->cert)
		secret_event(c, LOG_INFO, "Secret %s/%s: version %s in use (certificate serial %s, "
		             "not after %s)%s", cr->ns, cr->name, v->digest, v->cert_info.serial,
		             v->cert_info.not_after, cr->good ? "" : "; credential is ACTIVE");
	else
		secret_event(c, LOG_INFO, "Secret %s/%s: version %s in use (CA serial %s, not after "
		             "%s)%s", cr->ns, cr->name, v->digest, v->ca_info.serial,
		             v->ca_info.not_after, cr->good ? "" : "; credential is ACTIVE");
	secret_version_free(cr->good);
	cr->good = v;
	v = NULL;
	secret_clear_rejected(cr);
	free(cr->good_src);
	cr->good_src = xasprintf("Secret %s/%s", cr->ns, p.sec ? p.sec->res.name : p.casec->res.name);
	free(cr->ca_src);
	cr->ca_src = p.ca_from ? xasprintf("Secret %s/%s", cr->ns, p.ca_from->res.name) : NULL;
out:
	secret_version_free(v);
	sbuf_free(&why);
}

const struct secret_version *secret_cache_credential(struct secret_cache *c,
                                                     const struct store_contents *contents,
                                                     const char *store_root, const char *ns,
                                                     const char *name, unsigned flags,
                                                     struct sbuf *err)
{
	struct secret_cred *cr = secret_cred_get(c, ns, name);
	const struct secret_version *v;

	cr->needs |= flags;
	cr->used = true;
	if (!cr->resolved) {
		secret_cred_resolve(c, cr, contents, store_root, flags | cr->want);
		cr->resolved = true;
	}
	v = cr->good;
	if (!v) {
		sbuf_adds(err, cr->error ? cr->error : "credential not loaded");
		return NULL;
	}
	if ((flags & SECRET_USE_CERT) && !v->cert) {
		sbuf_addf(err, "secret kubernetes://%s has no tls.crt/tls.key or cert/key", name);
		return NULL;
	}
	if ((flags & SECRET_NEED_CA) && !v->ca) {
		sbuf_addf(err, "secret kubernetes://%s has no CA (want ca.crt or cacert, here or in "
		          "Secret %s-cacert)", name, name);
		return NULL;
	}
	return v;
}

/* ---- files ---- */

void secret_cache_file(struct secret_cache *c, const char *resource, bool root,
                       const char *cert_file, const char *key_file,
                       char digest[SECRET_DIGEST_HEX])
{
	struct secret_file *f = NULL;
	struct sbuf err = SBUF_INIT;
	char *data = NULL;
	size_t len = 0;

	for (size_t i = 0; i < c->nfiles; i++)
		if (strcmp(c->files[i].resource, resource) == 0) {
			memcpy(digest, c->files[i].digest, SECRET_DIGEST_HEX);
			return;
		}
	c->files = xrealloc(c->files, (c->nfiles + 1) * sizeof(*c->files));
	f = &c->files[c->nfiles++];
	memset(f, 0, sizeof(*f));
	f->resource = xstrdup(resource);
	f->root = root;
	f->source = xasprintf("file %s", cert_file ? cert_file : "");
	snprintf(f->digest, sizeof(f->digest), "unreadable");
	if (!cert_file || file_read_all(cert_file, &data, &len) < 0) {
		f->error = xasprintf("cannot read %s: %s", cert_file ? cert_file : "(none)",
		                     strerror(cert_file ? errno : ENOENT));
	} else {
		EVP_MD_CTX *md = secret_md_new();

		secret_md_field(md, "file", data, len);
		secret_md_final(md, f->digest);
		if (tls_cert_info_pem(data, len, &f->info, &err) < 0)
			f->error = xasprintf("%s: %s", cert_file, sbuf_str(&err));
		f->loaded = time(NULL);
	}
	if (data) {
		OPENSSL_cleanse(data, len);
		free(data);
	}
	sbuf_free(&err);
	secret_check_mode(c, key_file);
	memcpy(digest, f->digest, SECRET_DIGEST_HEX);
}

void secret_file_digest(const char *path, char digest[SECRET_DIGEST_HEX])
{
	char *data = NULL;
	size_t len = 0;
	EVP_MD_CTX *md;

	if (!path || file_read_all(path, &data, &len) < 0) {
		snprintf(digest, SECRET_DIGEST_HEX, "unreadable");
		return;
	}
	md = secret_md_new();
	secret_md_field(md, "file", data, len);
	secret_md_final(md, digest);
	OPENSSL_cleanse(data, len);
	free(data);
}

void secret_system_ca_digest(char digest[SECRET_DIGEST_HEX])
{
	const char *f = getenv(X509_get_default_cert_file_env());

	secret_file_digest(f && *f ? f : X509_get_default_cert_file(), digest);
}

/* ---- contexts ---- */

/* The slot of key in ctx_index: the one holding it or the empty one where it goes. */
static size_t secret_ctx_slot(const struct secret_cache *c, const char *key)
{
	size_t k = hash_bytes(key, strlen(key)) & c->ctx_mask;

	while (c->ctx_index[k] && strcmp(c->ctxs[c->ctx_index[k] - 1].key, key) != 0)
		k = (k + 1) & c->ctx_mask;
	return k;
}

static void secret_ctx_reindex(struct secret_cache *c)
{
	size_t want = 64;

	while (want < (c->nctxs + 1) * 2)
		want *= 2;
	free(c->ctx_index);
	c->ctx_mask = want - 1;
	c->ctx_index = xcalloc(want, sizeof(*c->ctx_index));
	for (size_t i = 0; i < c->nctxs; i++)
		c->ctx_index[secret_ctx_slot(c, c->ctxs[i].key)] = i + 1;
}

static struct secret_ctxent *secret_ctx_find(const struct secret_cache *c, const char *key)
{
	size_t k;

	if (!c->ctx_index)
		return NULL;
	k = secret_ctx_slot(c, key);
	return c->ctx_index[k] ? &c->ctxs[c->ctx_index[k] - 1] : NULL;
}

struct tls_ctx *secret_cache_ctx_get(struct secret_cache *c, const char *key)
{
	struct secret_ctxent *e = secret_ctx_find(c, key);

	if (!e)
		return NULL;
	e->gen = c->gen;
	return tls_ctx_ref(e->ctx);
}

void secret_cache_ctx_put(struct secret_cache *c, const char *key, struct tls_ctx *ctx)
{
	struct secret_ctxent *e = secret_ctx_find(c, key);

	if (e) {
		tls_ctx_unref(e->ctx);
		e->ctx = tls_ctx_ref(ctx);
		e->gen = c->gen;
		return;
	}
	if (c->nctxs == c->ctxs_cap) {
		c->ctxs_cap = c->ctxs_cap ? c->ctxs_cap * 2 : 16;
		c->ctxs = xrealloc(c->ctxs, c->ctxs_cap * sizeof(*c->ctxs));
	}
	c->ctxs[c->nctxs].key = xstrdup(key);
	c->ctxs[c->nctxs].ctx = tls_ctx_ref(ctx);
	c->ctxs[c->nctxs++].gen = c->gen;
	if (!c->ctx_index || c->nctxs * 2 > c->ctx_mask + 1)
		secret_ctx_reindex(c);
	else
		c->ctx_index[secret_ctx_slot(c, key)] = c->nctxs;
}

/* ---- commit: the list ---- */

static struct secret_item *secret_item_add(struct secret_item **v, size_t *n, const char *name,
                                           const char *type)
{
	struct secret_item *it;

	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	it = &(*v)[(*n)++];
	memset(it, 0, sizeof(*it));
	it->name = xstrdup(name);
	it->type = type;
	it->status = SECRET_WARMING;
	return it;
}

static void secret_item_cred(struct secret_item *it, const struct secret_cred *cr,
                             const struct tls_cert_info *info, const char *src)
{
	const struct secret_version *v = cr->good;

	if (v && info) {
		it->status = SECRET_ACTIVE;
		it->has_info = true;
		it->info = *info;
		snprintf(it->version, sizeof(it->version), "%s", v->digest);
		it->loaded = v->loaded;
		it->source = src ? xstrdup(src) : NULL;
	} else {
		it->error = xstrdup(cr->error ? cr->error
		                              : v ? "the credential has no CA" : "not loaded");
	}
	if (cr->rej_reason) {
		snprintf(it->rej_version, sizeof(it->rej_version), "%s", cr->rej_version);
		it->rej_reason = xstrdup(cr->rej_reason);
		it->rej_at = cr->rej_at;
	}
}

/* default, ROOTCA, then the rest by name; WARMING before ACTIVE. */
static int secret_item_rank(const struct secret_item *it)
{
	return strcmp(it->name, "default") == 0 ? 0 : strcmp(it->name, "ROOTCA") == 0 ? 1 : 2;
}

static int secret_item_cmp(const void *a, const void *b)
{
	const struct secret_item *x = a, *y = b;

	if (x->status != y->status)
		return x->status == SECRET_WARMING ? -1 : 1;
	if (secret_item_rank(x) != secret_item_rank(y))
		return secret_item_rank(x) - secret_item_rank(y);
	return strcmp(x->name, y->name);
}

void secret_cache_commit(struct secret_cache *c)
{
	struct secret_item *items = NULL;
	size_t nitems = 0, keep = 0;

	for (size_t i = 0; i < c->nfiles; i++) {
		const struct secret_file *f = &c->files[i];
		struct secret_item *it = secret_item_add(&items, &nitems, f->resource,
		                                         f->root ? SECRET_TYPE_CA : SECRET_TYPE_CHAIN);

		it->source = xstrdup(f->source);
		if (f->error) {
			it->error = xstrdup(f->error);
			continue;
		}
		it->status = SECRET_ACTIVE;
		it->has_info = true;
		it->info = f->info;
		snprintf(it->version, sizeof(it->version), "%s", f->digest);
		it->loaded = f->loaded;
	}
	for (size_t i = 0; i < c->ncreds; i++) {
		struct secret_cred *cr = c->creds[i];
		const struct secret_version *v = cr->good;
		char *n;

		if (!cr->used) {
			secret_cred_free(cr);
			continue;
		}
		c->creds[keep++] = cr;
		if (cr->needs & SECRET_USE_CERT) {
			n = xasprintf("kubernetes://%s", cr->name);
			secret_item_cred(secret_item_add(&items, &nitems, n, SECRET_TYPE_CHAIN), cr,
			                 v && v->cert ? &v->cert_info : NULL, cr->good_src);
			free(n);
		}
		/* The CA row, as istioctl shows it for the walkthrough ("Cert Chain" too). A
		 * credential without a CA uses the system trust store: no row, unless a user
		 * needs the CA. */
		if ((cr->needs & (SECRET_USE_CA | SECRET_NEED_CA)) &&
		    (!v || v->ca || (cr->needs & SECRET_NEED_CA))) {
			n = xasprintf("kubernetes://%s-cacert", cr->name);
			secret_item_cred(secret_item_add(&items, &nitems, n, SECRET_TYPE_CHAIN), cr,
			                 v && v->ca ? &v->ca_info : NULL, cr->ca_src);
			free(n);
		}
	}
	c->ncreds = keep;
	keep = 0;
	for (size_t i = 0; i < c->nctxs; i++) {
		if (c->ctxs[i].gen != c->gen) {
			free(c->ctxs[i].key);
			tls_ctx_unref(c->ctxs[i].ctx);
			continue;
		}
		c->ctxs[keep++] = c->ctxs[i];
	}
	if (keep != c->nctxs) {
		c->nctxs = keep;
		secret_ctx_reindex(c);
	}
	if (nitems)
		qsort(items, nitems, sizeof(*items), secret_item_cmp);
	secret_items_clear(c->items, c->nitems);
	c->items = items;
	c->nitems = nitems;
	secret_files_clear(c);
}

/* ---- JSON ---- */

static void secret_json_str(struct sbuf *out, const char *s)
{
	sbuf_addc(out, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			sbuf_addf(out, "\\%c", *p);
		else if (*p < 0x20)
			sbuf_addf(out, "\\u%04x", *p);
		else
			sbuf_addc(out, (char)*p);
	}
	sbuf_addc(out, '"');
}

static void secret_json_kv(struct sbuf *out, const char *indent, const char *key,
                           const char *val, bool comma)
{
	sbuf_addf(out, "%s\"%s\": ", indent, key);
	secret_json_str(out, val ? val : "");
	sbuf_adds(out, comma ? ",\n" : "\n");
}

static void secret_rfc3339(time_t t, char *out, size_t n)
{
	struct tm tm;

	if (!t || !gmtime_r(&t, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, n, "%s", "");
}

static time_t secret_parse_time(const char *s)
{
	struct tm tm;
	char *end;

	memset(&tm, 0, sizeof(tm));
	end = s && *s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
	return end && !*end ? timegm(&tm) : (time_t)-1;
}

static bool secret_valid_now(const struct secret_item *it)
{
	time_t now = time(NULL);
	time_t nb = secret_parse_time(it->info.not_before);
	time_t na = secret_parse_time(it->info.not_after);

	return it->has_info && nb != (time_t)-1 && na != (time_t)-1 && nb <= now && now <= na;
}

/* Seconds until it->info.not_after (negative once expired), and whether it is expiring:
 * less than a quarter of its validity left (SECRET_EXPIRING_FRACTION). Returns 0, or -1
 * when the dates cannot be read. */
static int secret_item_expiry(const struct secret_item *it, time_t now, int64_t *left,
                              bool *expiring)
{
	time_t nb = secret_parse_time(it->info.not_before);
	time_t na = secret_parse_time(it->info.not_after);

	if (nb == (time_t)-1 || na == (time_t)-1 || na < nb)
		return -1;
	*left = (int64_t)na - (int64_t)now;
	*expiring = *left < ((int64_t)na - (int64_t)nb) / SECRET_EXPIRING_FRACTION;
	return 0;
}

void secret_cache_check_expiry(struct secret_cache *c, time_t now)
{
	for (size_t i = 0; i < c->nitems; i++) {
		const struct secret_item *it = &c->items[i];
		int64_t left;
		bool expiring;

		if (!it->has_info || secret_item_expiry(it, now, &left, &expiring) < 0 || !expiring)
			continue;
		if (!secret_first_time(c, xasprintf("expiry|%s|%s|%s", it->name, it->info.serial,
		                                    left < 0 ? "expired" : "expiring")))
			continue;
		if (left < 0)
			secret_event(c, LOG_ERROR, "certificate %s (%s, serial %s) expired at %s: TLS "
			             "with it fails; renew it", it->name, it->source ? it->source : "-",
			             it->info.serial, it->info.not_after);
		else
			secret_event(c, LOG_WARN, "certificate %s (%s, serial %s) expires in %lldh%02lldm "
			             "(at %s), with less than 1/%d of its validity left: renew it (a "
			             "new one written in place is picked up within a second)", it->name,
			             it->source ? it->source : "-", it->info.serial,
			             (long long)(left / 3600), (long long)(left % 3600 / 60),
			             it->info.not_after, SECRET_EXPIRING_FRACTION);
	}
}

void secret_cache_prom(const struct secret_cache *c, time_t now, struct sbuf *out)
{
	sbuf_adds(out, "# HELP egressgw_cert_expiry_seconds Seconds until the certificate in use "
	          "expires (negative: expired).\n"
	          "# TYPE egressgw_cert_expiry_seconds gauge\n");
	for (size_t i = 0; i < c->nitems; i++) {
		const struct secret_item *it = &c->items[i];
		int64_t left;
		bool expiring;

		/* Names are resource names ("default", "kubernetes://NAME"): no quote or
		 * backslash to escape in a label value. */
		if (it->has_info && secret_item_expiry(it, now, &left, &expiring) == 0)
			sbuf_addf(out, "egressgw_cert_expiry_seconds{resource_name=\"%s\"} %lld\n",
			          it->name, (long long)left);
	}
}

void secret_cache_json(const struct secret_cache *c, struct sbuf *out)
{
	time_t now = time(NULL);
	int64_t left;
	bool expiring;

	sbuf_adds(out, "{\n  \"secrets\": [");
	for (size_t i = 0; i < c->nitems; i++) {
		const struct secret_item *it = &c->items[i];
		const char *in = "      ";
		char t[32];

		sbuf_adds(out, i ? ",\n    {\n" : "\n    {\n");
		secret_json_kv(out, in, "name", it->name, true);
		secret_json_kv(out, in, "type", it->type, true);
		secret_json_kv(out, in, "status", it->status == SECRET_ACTIVE ? "ACTIVE" : "WARMING",
		               true);
		sbuf_addf(out, "%s\"valid\": %s,\n", in, secret_valid_now(it) ? "true" : "false");
		secret_json_kv(out, in, "serial", it->has_info ? it->info.serial : "", true);
		secret_json_kv(out, in, "not_after", it->has_info ? it->info.not_after : "", true);
		secret_json_kv(out, in, "not_before", it->has_info ? it->info.not_before : "", true);
		if (it->has_info && secret_item_expiry(it, now, &left, &expiring) == 0)
			sbuf_addf(out, "%s\"expires_in_seconds\": %lld,\n%s\"expiring\": %s,\n", in,
			          (long long)left, in, expiring ? "true" : "false");
		secret_json_kv(out, in, "subject", it->has_info ? it->info.subject : "", true);
		secret_json_kv(out, in, "source", it->source, true);
		secret_json_kv(out, in, "version", it->version, true);
		secret_rfc3339(it->loaded, t, sizeof(t));
		secret_json_kv(out, in, "loaded_at", t, it->error || it->rej_reason);
		if (it->error)
			secret_json_kv(out, in, "error", it->error, it->rej_reason != NULL);
		if (it->rej_reason) {
			sbuf_addf(out, "%s\"rejected\": {\n", in);
			secret_json_kv(out, "        ", "version", it->rej_version, true);
			secret_json_kv(out, "        ", "reason", it->rej_reason, true);
			secret_rfc3339(it->rej_at, t, sizeof(t));
			secret_json_kv(out, "        ", "at", t, false);
			sbuf_addf(out, "%s}\n", in);
		}
		sbuf_adds(out, "    }");
	}
	sbuf_adds(out, c->nitems ? "\n  ]\n}\n" : "]\n}\n");
}

/* ---- store errors ---- */

bool secret_store_errors_only(const struct diags *d, const char *root)
{
	char *prefix = xasprintf("%s/%s/", root, STORE_SECRETS_DIR);
	bool only = true;

	for (size_t i = 0; i < d->n && only; i++)
		if (d->v[i].level == DIAG_ERROR &&
		    (!d->v[i].file || !str_has_prefix(d->v[i].file, prefix)))
			only = false;
	free(prefix);
	return only;
}
