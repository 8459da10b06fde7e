#include "core/diag.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void diag_add(struct diags *d, enum diag_level lvl, const char *file, int line, int col,
              const char *fmt, ...)
{
	struct sbuf msg = SBUF_INIT;
	struct diag *e;
	va_list ap;

	va_start(ap, fmt);
	sbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->v = xrealloc(d->v, d->cap * sizeof(*d->v));
	}
	e = &d->v[d->n++];
	e->level = lvl;
	e->file = file ? xstrdup(file) : NULL;
	e->line = line;
	e->col = col;
	e->msg = sbuf_steal(&msg);
	if (lvl == DIAG_ERROR)
		d->nerrors++;
}

bool diags_has_errors(const struct diags *d)
{
	return d->nerrors > 0;
}

void diags_merge(struct diags *dst, const struct diags *src)
{
	for (size_t i = 0; i < src->n; i++) {
		const struct diag *e = &src->v[i];

		diag_add(dst, e->level, e->file, e->line, e->col, "%s", e->msg);
	}
}

void diag_format(const struct diag *e, struct sbuf *out)
{
	if (e->file) {
		sbuf_adds(out, e->file);
		if (e->line > 0) {
			sbuf_addf(out, ":%d", e->line);
			if (e->col > 0)
				sbuf_addf(out, ":%d", e->col);
		}
		sbuf_adds(out, ": ");
	}
	if (e->level == DIAG_WARNING)
		sbuf_adds(out, "warning: ");
	sbuf_adds(out, e->msg);
}

void diags_print(const struct diags *d, void *stream)
{
	struct sbuf line = SBUF_INIT;

	for (size_t i = 0; i < d->n; i++) {
		sbuf_reset(&line);
		diag_format(&d->v[i], &line);
		fprintf(stream, "%s\n", sbuf_str(&line));
	}
	sbuf_free(&line);
}

void diags_free(struct diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].msg);
	}
	free(d->v);
	d->v = NULL;
	d->n = d->cap = d->nerrors = 0;
}
