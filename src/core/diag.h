/* diag: a list of located diagnostics (errors and warnings) about input files.
 *
 * Configuration code never prints: it appends to a struct diags, and the caller decides
 * how to show them (egressctl to stderr, egressgw to its log). Each entry renders as
 *     FILE:LINE:COL: MESSAGE
 * (LINE/COL omitted when 0), for example
 *     dr.yaml:9:13: DestinationRule default/broken: spec.trafficPolicy.tls.mode: unknown
 *     value "SIMPEL" (want DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL)
 * Lines and columns are 1-based, as editors count them. */
#ifndef EGRESS_CORE_DIAG_H
#define EGRESS_CORE_DIAG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"

enum diag_level {
	DIAG_ERROR,
	DIAG_WARNING,
};

struct diag {
	enum diag_level level;
	char *file;   /* may be NULL */
	int   line;   /* 0 when unknown */
	int   col;    /* 0 when unknown */
	char *msg;
};

struct diags {
	struct diag *v;
	size_t n, cap;
	size_t nerrors;
};

#define DIAGS_INIT { NULL, 0, 0, 0 }

void diag_add(struct diags *d, enum diag_level lvl, const char *file, int line, int col,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define diag_err(d, file, line, col, ...)  diag_add(d, DIAG_ERROR, file, line, col, __VA_ARGS__)
#define diag_warn(d, file, line, col, ...) diag_add(d, DIAG_WARNING, file, line, col, __VA_ARGS__)

bool diags_has_errors(const struct diags *d);
/* Appends every entry of src to dst (copies). */
void diags_merge(struct diags *dst, const struct diags *src);
/* Renders one entry as "FILE:LINE:COL: [warning: ]MSG" (no newline). */
void diag_format(const struct diag *e, struct sbuf *out);
/* Writes every entry, one per line, to the stream (FILE *), errors as-is and warnings with
 * "warning: " before the message. */
void diags_print(const struct diags *d, void *stream);
void diags_free(struct diags *d);

#endif
