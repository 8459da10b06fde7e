/* egressctl: the kubectl/istioctl-like command over the file store.
 *
 * main.c dispatches argv[1] through the command table below. A command is one function
 *     int ctl_cmd_NAME(struct ctl *c, int argc, char **argv)
 * in its own file, receiving the words after its name; it returns the exit status (0 ok,
 * 1 error). Adding a command is one CTL_COMMANDS line and one file.
 *
 * Output follows kubectl: results on stdout ("gateway.networking.istio.io/x created"),
 * problems on stderr ("error: ...", "Error from server (NotFound): ..."). */
#ifndef EGRESS_CMD_EGRESSCTL_CTL_H
#define EGRESS_CMD_EGRESSCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "config/config.h"
#include "config/store.h"
#include "config/ydoc.h"
#include "core/diag.h"
#include "core/sbuf.h"

/* X(name, one-line summary). A '_' in name is typed as '-': proxy_config is the command
 * "proxy-config". */
#define CTL_COMMANDS(X) \
	X(apply,  "Apply a configuration to the store by file name or stdin") \
	X(diff,   "Diff the store against the would-be applied version") \
	X(create, "Create a Secret from files (generic, tls), or a namespace") \
	X(get,    "Display one or many resources") \
	X(describe, "Show details of a resource, and what a running proxy made of it") \
	X(delete, "Delete resources by file names, stdin, kinds and names") \
	X(edit,   "Edit a resource in the store with $EDITOR, validated as apply validates") \
	X(explain, "Describe the fields of a kind (KIND.field.path), from the decoder's tables") \
	X(ca,     "Mesh CA: create a root, issue SPIFFE workload certificates") \
	X(iptables, "Print or apply the iptables rules that capture traffic for the sidecar") \
	X(proxy_config, "Show a gateway's clusters, routes, listeners and secrets, as istioctl does") \
	X(explain_request, "Ask a running proxy how it would handle a request, without sending it") \
	X(completion, "Output shell completion code for bash or zsh") \
	X(analyze, "Find references that do not resolve and credentials that do not load") \
	X(version, "Print the egressctl version")

/* Options every command accepts, before or after its name. */
struct ctl {
	const char *store_flag;   /* --store, NULL when not given */
	const char *ns_flag;      /* -n/--namespace, NULL when not given */
	const char *root;         /* the store root, resolved */
};

struct ctl_cmd {
	const char *name;
	const char *summary;
	int (*run)(struct ctl *c, int argc, char **argv);
};

#define CTL_DECLARE(name, summary) int ctl_cmd_##name(struct ctl *c, int argc, char **argv);
CTL_COMMANDS(CTL_DECLARE)
#undef CTL_DECLARE

/* ---- flags (ctl.c) ---- */

enum ctl_flag_type {
	CTL_FLAG_BOOL,    /* bool *: --x, --x=true|false */
	CTL_FLAG_STR,     /* const char **: --x V, --x=V, -x V, -xV */
	CTL_FLAG_LIST,    /* struct ctl_strs *: repeatable string */
};

struct ctl_strs {
	const char **v;
	size_t n;
};

struct ctl_flag {
	const char *lname;   /* "filename"; NULL ends a table */
	char sname;          /* 'f', or 0 */
	enum ctl_flag_type type;
	void *dest;
};

/* Parses argv[0..argc) with flags anywhere among the words (as kubectl does). The global
 * flags (--store, -n/--namespace) are always accepted and fill c. Words that are not
 * flags, and everything after "--", go to pos. -h/--help sets *help.
 * Returns 0, or -1 after printing "error: ..." to stderr. */
int ctl_parse(struct ctl *c, int argc, char **argv, const struct ctl_flag *flags,
              struct ctl_strs *pos, bool *help);
void ctl_strs_free(struct ctl_strs *s);

/* ---- shared helpers (ctl.c) ---- */

/* The namespace a command works in: -n, else "default". */
const char *ctl_namespace(const struct ctl *c);

/* "gateway.networking.istio.io" / "secret": what kubectl prints before "/name". */
void ctl_kind_ref(const struct res_kind_info *k, struct sbuf *out);
/* "gateways.networking.istio.io" / "secrets": what kubectl's errors name. */
void ctl_kind_resource(const struct res_kind_info *k, struct sbuf *out);
/* Looks a kind word up; prints kubectl's error and returns NULL when unknown. */
const struct res_kind_info *ctl_kind(const char *word);

/* Loads the store (documents without a namespace are in "default"). Problems with what is
 * already stored are shown on stderr as warnings when warn is set: they do not stop a
 * command from working on other resources. out is freed with store_contents_free. */
void ctl_load_store(const struct ctl *c, struct store_contents *out, bool warn);
/* Problems found reading the store, as ctl_load_store shows them (warnings, when warn is
 * set); frees d. */
void ctl_store_diags(struct diags *d, bool warn);

/* Reads a -f argument: "-" is stdin (named "<stdin>" in messages), a directory is every
 * .yaml/.yml/.json file in it (sorted), anything else a file. Parsed streams are
 * appended to *streams (allocated ystream pointers). Returns 0, or -1 with errors in d. */
int ctl_read_inputs(const struct ctl_strs *files, struct ystream ***streams, size_t *n,
                    struct diags *d);
void ctl_free_streams(struct ystream **streams, size_t n);

/* A copy of a resource document (in stream s) with metadata.namespace set to ns, placed
 * right after metadata.name when the document had none. */
struct ynode *ctl_normalise(struct ystream *s, const struct ynode *doc, const char *ns);

/* The document get -o yaml/json shows for an entry, built in stream out: the stored
 * document with its namespace, or for a Secret kubectl's layout (apiVersion, data in
 * base64, kind, metadata, type). Secret trees must be wiped (store_cleanse_tree). */
struct ynode *ctl_output_doc(struct ystream *out, const struct store_entry *e);

struct gwapi_xlate;
/* Sets doc's `status` for a Gateway API Gateway or HTTPRoute r, from x (gwstatus.c). */
void ctl_gwapi_status(struct ystream *out, struct ynode *doc, const struct gwapi_xlate *x,
                      const struct resource *r);
/* ---- the admin endpoint (proxyconfig.c) ---- */

struct sock_addr;
/* The admin address from an ADMIN_ADDR word (NULL: $EGRESSGW_ADMIN, else 127.0.0.1:15000)
 * and its text. Returns 0, or -1 after printing the error. */
int ctl_admin_addr(const char *word, struct sock_addr *out, char *text, size_t n);
/* GET path; the body of a 200 answer goes to body. Returns 0, or -1 after printing. */
int ctl_admin_get(const struct sock_addr *a, const char *addr, const char *path,
                  struct sbuf *body);

/* ---- -o jsonpath= and -o custom-columns= (jsonpath.c) ---- */

/* Appends kubectl's output of JSONPath template tmpl over root. Returns 0, or -1 with the
 * problem in err. */
int ctl_jsonpath(const char *tmpl, const struct ynode *root, struct sbuf *out, struct sbuf *err);
/* Prints the custom-columns table (spec "HEADER:EXPR,...") of docs to out. Returns 0, or
 * -1 with the problem in err. */
int ctl_custom_columns(const char *spec, const struct ynode *const *docs, size_t n,
                       bool no_headers, FILE *out, struct sbuf *err);

/* ---- label selectors, kubectl -l (selector.c) ---- */

enum ctl_sel_op {
	CTL_SEL_EQ, CTL_SEL_NE, CTL_SEL_IN, CTL_SEL_NOTIN, CTL_SEL_EXISTS, CTL_SEL_NOT_EXISTS,
};

struct ctl_sel_req {
	enum ctl_sel_op op;
	const char *key;
	const char *values[16];
	size_t nvalues;
};

struct ctl_selector {
	struct ctl_sel_req reqs[32];
	size_t n;
	char *buf;                      /* the parsed copy the strings point into */
};

/* Parses "app=x,tier!=y,env in (a,b),!legacy". Returns 0, or -1 after printing kubectl's
 * "unable to parse requirement" error. ctl_selector_free in either case. */
int ctl_selector_parse(const char *s, struct ctl_selector *sel);
void ctl_selector_free(struct ctl_selector *sel);
/* True when doc's metadata.labels satisfy every requirement. */
bool ctl_selector_match(const struct ctl_selector *sel, const struct ynode *doc);

/* kubectl's "NotFound" line on stderr. */
void ctl_not_found(const struct res_kind_info *k, const char *name);

/* Prints diagnostics to stderr: errors as they are, warnings as kubectl prints the API
 * server's ("Warning: FILE:LINE:COL: Kind ns/name: field: problem"). */
void ctl_print_diags(const struct diags *d);

/* kubectl's age format: "5s", "3m20s", "17m", "5h3m", "2d", "400d", "3y". */
void ctl_age(time_t then, time_t now, struct sbuf *out);

/* ---- tables ---- */

/* A text table laid out by Go's text/tabwriter rules: every column but the last is as
 * wide as its widest cell (in UTF-8 characters) plus padding, and at least minwidth; the
 * last column is not padded. ctl_table_init sets kubectl's layout (minwidth 6,
 * padding 3); istioctl's tables set their own (proxy-config: minwidth 0, padding 5 or 1). */
struct ctl_table {
	size_t ncols;
	char **cells;    /* row-major, including the header row */
	size_t ncells, cap;
	size_t minwidth, padding;
};

void ctl_table_init(struct ctl_table *t, size_t ncols);
/* Appends one cell; rows fill left to right. */
void ctl_table_add(struct ctl_table *t, const char *cell);
void ctl_table_print(const struct ctl_table *t, FILE *out);
void ctl_table_free(struct ctl_table *t);

#endif
