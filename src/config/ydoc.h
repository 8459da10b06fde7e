/* ydoc: a small YAML document tree that remembers where every node came from.
 *
 * libyaml's event stream is turned into a tree of ynode. Every node keeps its file,
 * 1-based line and column, so that later stages (decoding into typed resources,
 * validation) can report errors as FILE:LINE:COL. Anchors/aliases are expanded by
 * copying (bounded, see YDOC_MAX_ALIAS_NODES), since Istio YAML rarely uses them but kubectl
 * accepts them. Tags other than the core schema's are rejected.
 *
 * Ownership: a ystream owns all its documents, nodes and strings; nothing in it may be
 * freed separately. Nodes are read-only after parsing.
 *
 * Scalars keep their text as written plus whether they were quoted, so decoding can tell
 * the string "80" from the integer 80 and "true" from true, as Kubernetes' strict
 * decoding does. */
#ifndef EGRESS_CONFIG_YDOC_H
#define EGRESS_CONFIG_YDOC_H

#include <stdbool.h>
#include <stddef.h>

#include "core/diag.h"
#include "core/sbuf.h"

/* Limits, each per document (a stream of 30,000 honest documents is not refused, as
 * kubectl does not refuse it), each reported as an error at the node that passed it and
 * ending the parse of that stream at once, so that hostile input costs milliseconds:
 * nodes in one document; nodes that alias expansion adds to one document, and the scalar
 * bytes those copies reference (alias bombs: every copy is read as a value later); anchors
 * defined in one document. Nesting is limited to YDOC_MAX_DEPTH levels (ydoc.c). */
#define YDOC_MAX_NODES        1000000
#define YDOC_MAX_ALIAS_NODES  10000
#define YDOC_MAX_ALIAS_BYTES  (1024 * 1024)
#define YDOC_MAX_ANCHORS      10000

enum ynode_type {
	YNODE_NULL,    /* empty value, "~", "null" (plain) */
	YNODE_SCALAR,
	YNODE_SEQ,
	YNODE_MAP,
};

struct ynode;

struct ypair {
	struct ynode *key;    /* always a YNODE_SCALAR (other keys are rejected at parse) */
	struct ynode *value;
};

struct ynode {
	enum ynode_type type;
	const char *file;     /* owned by the stream */
	int line, col;        /* 1-based position of the node's first character */
	/* YNODE_SCALAR: the text, NUL-terminated (may contain NUL if the YAML had \0;
	 * len is authoritative), and whether it was quoted or block (|, >) style. */
	char *str;
	size_t len;
	bool quoted;
	/* YNODE_SEQ: items[0..n); YNODE_MAP: pairs[0..n) in document order. */
	struct ynode **items;
	struct ypair *pairs;
	size_t n;
};

/* One document of a multi-document stream ("---" separated). */
struct ydoc {
	struct ynode *root;   /* NULL for an empty document */
	int line;             /* line where the document starts (1-based) */
	size_t start, end;    /* byte range of the document's text in ystream.src */
};

struct ystream {
	char *file;           /* name used in diagnostics */
	char *src;            /* the whole input text (NUL-terminated copy) */
	size_t srclen;
	struct ydoc *docs;
	size_t ndocs;
	void *arena;          /* private: node/string storage */
};

/* Parses a whole YAML stream. Empty documents are kept with root == NULL.
 * Returns 0, or -1 after adding at least one error to d (syntax errors carry
 * file:line:col and libyaml's problem text). On -1, out is left empty (freed). */
int ydoc_parse(const char *file, const char *buf, size_t len, struct ystream *out,
               struct diags *d);
/* Reads path and calls ydoc_parse with path as the file name. An unreadable file is an
 * error in d naming the path and strerror. */
int ydoc_parse_file(const char *path, struct ystream *out, struct diags *d);
void ystream_free(struct ystream *s);

/* Map lookup by key; NULL if map is not a map or the key is absent. */
struct ynode *ynode_get(const struct ynode *map, const char *key);
/* The scalar text if node is a scalar, else NULL. */
const char *ynode_str(const struct ynode *node);
/* Human name of the node type for error messages: "null", "string", "list", "map", and
 * for plain scalars that kubectl would not read as strings, "number" or "boolean". */
const char *ynode_type_name(const struct ynode *node);

/* What a scalar means once kubectl has read it (sigs.k8s.io/yaml, YAML 1.1 rules): quoted
 * and block scalars are always strings; plain ones may be booleans (true, yes, on, y, ...
 * in their usual casings), integers (decimal, 0x, 0o, 0b, leading-0 octal, with _) or
 * floats (1.5, 1e3, .inf, .nan). Strict decoding uses this to reject `name: 80` where a
 * string is wanted, as the API server does. YSCALAR_STRING for non-scalars. */
enum yscalar_kind {
	YSCALAR_STRING,
	YSCALAR_BOOL,
	YSCALAR_INT,
	YSCALAR_FLOAT,
};
enum yscalar_kind ynode_scalar_kind(const struct ynode *node);

/* Builds nodes for emission (used by egressctl to write normalised resources). Nodes made
 * by these live in the stream s (arena) and are freed with it. */
struct ynode *ynode_new_map(struct ystream *s);
struct ynode *ynode_new_seq(struct ystream *s);
struct ynode *ynode_new_scalar(struct ystream *s, const char *str, size_t len, bool quoted);
void ynode_map_set(struct ystream *s, struct ynode *map, const char *key, struct ynode *value);
void ynode_seq_append(struct ystream *s, struct ynode *seq, struct ynode *item);
/* Deep copy of a subtree into stream s. */
struct ynode *ynode_clone(struct ystream *s, const struct ynode *node);

/* Emits node as block-style YAML (2-space indent, keys in their order, strings quoted only
 * when needed so that they read back as the same strings), appended to out, ending with a
 * newline. The output of emit parses back to an equal tree. */
void ydoc_emit(const struct ynode *node, struct sbuf *out);
/* Emits as JSON (for -o json and the admin). */
void ydoc_emit_json(const struct ynode *node, struct sbuf *out);

/* Structural equality (scalars compare by text; maps by key set, order-insensitive). */
bool ynode_equal(const struct ynode *a, const struct ynode *b);

#endif
