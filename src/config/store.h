/* store: the file store that egressctl writes and egressgw reads.
 *
 * The store is a directory (see store_root for how it is chosen) laid out so that a
 * Kubernetes ConfigMap and Secret volumes can be mounted into it unchanged:
 *
 *     ROOT/config/...                 YAML (or JSON) files, any number of resources per file,
 *                                     read recursively, following symlinks
 *     ROOT/secrets/NS/NAME/KEY        one directory per Secret, one file per key
 *
 * Names beginning with ".." are skipped everywhere, which is what makes a kubelet mount
 * read correctly: the kubelet keeps the real files in "..2024_01_01_00_00_00.123456/",
 * points "..data" at it and makes each visible name a symlink "KEY -> ..data/KEY".
 * Under config/ only files ending in .yaml, .yml or .json are read.
 *
 * egressctl writes one file per resource, ROOT/config/NS/PLURAL/NAME.yaml (for example
 * config/default/gateways/istio-egressgateway.yaml); a resource found in some other file is
 * updated or removed in that file. Secrets are written the way the kubelet's AtomicWriter
 * does (see store_put_secret), so a watcher never sees half a Secret.
 *
 * A Secret directory carries no type in the Kubernetes layout. The store keeps it in a
 * hidden "..type" entry (ignored by readers that skip "..*"); without one the type is
 * inferred: kubernetes.io/tls when the keys are exactly tls.crt and tls.key, else Opaque.
 *
 * Nothing here prints: problems are located diagnostics in a struct diags. */
#ifndef EGRESS_CONFIG_STORE_H
#define EGRESS_CONFIG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "config/config.h"
#include "config/ydoc.h"
#include "core/diag.h"

#define STORE_ENV            "EGRESSGW_STORE"
#define STORE_DEFAULT_ROOT   "./egressgw-store"
#define STORE_CONFIG_DIR     "config"
#define STORE_SECRETS_DIR    "secrets"
#define STORE_SECRET_TYPE    "..type"
#define STORE_SECRET_OPAQUE  "Opaque"
#define STORE_SECRET_TLS     "kubernetes.io/tls"
/* In the store's root while a writer (egressctl apply) writes several files of one
 * change: egressgw's watcher does not read the store until it is gone (store_mark.c). */
#define STORE_APPLY_MARK     "..egressctl-applying"

/* The store root: flag when not NULL and not empty, else $EGRESSGW_STORE when set and not
 * empty, else "./egressgw-store". The result points into flag, the environment or a
 * constant; it is not to be freed. */
const char *store_root(const char *flag);

/* One resource found in the store. */
struct store_entry {
	struct resource res;       /* decoded; res.node borrows from the stream below */
	char *path;                /* config: the file; Secret: the secret directory */
	struct ystream *stream;    /* the stream res.node lives in (owned by the contents) */
	size_t doc;                /* index of the document in stream->docs */
	time_t mtime;              /* modification time of the file or secret directory */
	bool in_secret_dir;        /* a Secret read from secrets/NS/NAME/, not from config/ */
	bool borrowed;             /* res and path belong to a store_cache, not to the contents */
};

struct store_contents {
	struct store_entry *v;
	size_t n, cap;
	/* Every stream read; owned. Streams may hold Secret data (a Secret can also be a
	 * document in config/), so all of them are cleansed before they are freed. */
	struct ystream **streams;
	size_t nstreams, streams_cap;
	/* Index by (kind, namespace, name) for store_find: open addressing, slot = entry
	 * index + 1 (0 = empty), mask + 1 slots; kept by the loader as it adds entries. */
	size_t *index;
	size_t index_mask;
};

#define STORE_CONTENTS_INIT { NULL, 0, 0, NULL, 0, 0, NULL, 0 }

/* Reads the whole store under root: every config file and every secret directory, each
 * document decoded with res_decode (default_ns for documents without a namespace).
 * Everything that decodes goes into out (sorted by path, then document order), even when
 * other documents fail. A resource defined twice (same kind, namespace and name) is an
 * error at the second place, which is left out. A missing root, config/ or secrets/ is an
 * empty store, not an error.
 * Returns 0, or -1 when d received at least one error. Either way out must be freed with
 * store_contents_free. */
int store_load(const char *root, const char *default_ns, struct store_contents *out,
               struct diags *d);
void store_contents_free(struct store_contents *c);

/* Reads only the config files paths[0..npaths) (full paths, in that order; one that is
 * gone or not a regular file is skipped) and the Secret directories
 * secrets/secret_ns[i]/secret_names[i] that exist, as store_load reads them (egressctl
 * apply, with the files the store index names). */
int store_load_files(const char *root, const char *default_ns, char *const *paths,
                     size_t npaths, const char *const *secret_ns,
                     const char *const *secret_names, size_t nsecrets,
                     struct store_contents *out, struct diags *d);

struct store_cache;
/* store_load for a reader that keeps only decoded resources (egressgw): every stream is
 * cleansed and freed as soon as its documents are decoded (entries have stream and
 * res.node NULL), and the config files that cache (store_cache.h) holds unchanged are not
 * read again: their entries are borrowed from it. cache may be NULL (nothing reused). The
 * contents must be freed before the cache's next load ends. */
int store_load_cached(const char *root, const char *default_ns, struct store_cache *cache,
                      struct store_contents *out, struct diags *d);
/* store_load_cached of a store whose config files changed only at changed[0..n) (full
 * paths, as root/config/... names them; the watcher's word): the last full load's walk is
 * replayed (store_cache.h, the plan) without listing a directory or stat()ing a file, each
 * changed file stat()ed and read, every other one taken from the cache as it is (one the
 * cache does not hold, having had diagnostics, read again). The same contents, in the same
 * order, with the same diagnostics as store_load_cached. When there is no plan, or a
 * changed path is not in it or is not a regular file now (made, removed), it is
 * store_load_cached. *full: whether the whole store was walked. */
int store_load_changed(const char *root, const char *default_ns, struct store_cache *cache,
                       char *const *changed, size_t n, struct store_contents *out,
                       struct diags *d, bool *full);
/* Puts the documents of stream s over c as if they were applied: each replaces the
 * resource of the same kind, namespace and name, or is added (path: the stream's file).
 * Takes ownership of s (allocated with malloc). Decoding errors go to d. */
void store_overlay(struct store_contents *c, struct ystream *s, const char *default_ns,
                   struct diags *d);

/* Wipes the source text and every scalar of s; for streams that may hold Secret data,
 * before ystream_free. */
void store_cleanse_stream(struct ystream *s);
/* Wipes every scalar under n (for trees built with the ynode_new_* builders). */
void store_cleanse_tree(struct ynode *n);

/* The entry for kind/ns/name, or NULL. A hash look-up: constant time in the store's size. */
struct store_entry *store_find(const struct store_contents *c, enum res_kind kind,
                               const char *ns, const char *name);

/* ROOT/config/NS/PLURAL/NAME.yaml, newly allocated. */
char *store_config_path(const char *root, enum res_kind kind, const char *ns,
                        const char *name);
/* ROOT/secrets/NS/NAME, newly allocated. */
char *store_secret_dir(const char *root, const char *ns, const char *name);

/* Creates the writer's STORE_APPLY_MARK in root; returns its path (NULL: none made, which
 * is not an error) for store_mark_end, which removes and frees it. */
char *store_mark_begin(const char *root);
void store_mark_end(char *mark);

/* Writes the document of a resource that is not a Secret. doc is the normalised document
 * (namespace filled in). When existing is NULL the resource is new and goes to its own
 * file (store_config_path); otherwise existing's document is replaced where it is: the
 * file is rewritten atomically with only that document's text changed, so comments and
 * other documents stay (a .json file is rewritten whole, as JSON). Returns 0, or -1 with
 * an error in d (store unchanged). */
int store_put(const char *root, const struct store_entry *existing, enum res_kind kind,
              const char *ns, const char *name, const struct ynode *doc, struct diags *d);

/* One key of a Secret. */
struct store_secret_key {
	char *key;                 /* [-._a-zA-Z0-9]+, not starting with ".." */
	unsigned char *data;       /* cleansed before it is freed */
	size_t len;
};

/* A Secret's content as the store keeps it: a type and keys sorted by name. */
struct store_secret {
	char *type;                /* "Opaque", "kubernetes.io/tls", ... */
	struct store_secret_key *keys;
	size_t n;
};

/* Adds a key (copies name and data; replaces the data of an existing key of that name)
 * and keeps the keys sorted. */
void store_secret_set(struct store_secret *s, const char *key, const void *data, size_t len);
/* The type and keys of a decoded Secret resource (kind RES_SECRET), copied. */
void store_secret_from_res(const struct resource *r, struct store_secret *out);
/* Same type, same key names, same bytes. */
bool store_secret_equal(const struct store_secret *a, const struct store_secret *b);
/* Frees keys and data, cleansing the data. */
void store_secret_free(struct store_secret *s);

/* Writes Secret ns/name the way the kubelet's AtomicWriter does:
 *  1. the data goes into a new directory "..<UTC timestamp>.<random>" (0700), one file
 *     per key (0600) plus "..type";
 *  2. a symlink "..data_tmp" to it is renamed over "..data" (the one atomic switch);
 *  3. each visible name "KEY -> ..data/KEY" and "..type -> ..data/..type" is created if
 *     missing, names of keys that went away are removed, then the old directory.
 * A new Secret is assembled under a hidden name and renamed into place, so it appears
 * whole. Directories are created 0700. Returns 0, or -1 with an error in d. Never puts
 * key bytes in a message. */
int store_put_secret(const char *root, const char *ns, const char *name,
                     const struct store_secret *sec, struct diags *d);

/* Removes an entry found by store_load: a Secret directory (renamed to a hidden name,
 * then removed, so it disappears at once), a file holding only this document (unlinked),
 * or this document's text from a file holding others (rewritten atomically).
 * Returns 0, or -1 with an error in d. */
int store_remove(const struct store_entry *e, struct diags *d);

/* Whether s is a valid Secret key name (Kubernetes: [-._a-zA-Z0-9]+, at most 253 bytes,
 * not "." or ".."); the store also refuses names starting with "..". */
bool store_secret_key_valid(const char *s);

#endif
