/* sbuf: a growable byte string, always NUL-terminated.
 *
 * Used wherever text is built up (YAML emission, admin output, error messages).
 * Not for the request path: that uses fixed buffers from a pool (see buf.h when added).
 * Allocation failure aborts (see xmalloc in util.h): a proxy out of memory cannot do
 * anything useful, and checking every append would hide the real logic. */
#ifndef EGRESS_CORE_SBUF_H
#define EGRESS_CORE_SBUF_H

#include <stdarg.h>
#include <stddef.h>

struct sbuf {
	char  *s;    /* NUL-terminated; NULL until the first append */
	size_t len;  /* bytes used, without the NUL */
	size_t cap;  /* bytes allocated */
};

#define SBUF_INIT { NULL, 0, 0 }

void sbuf_add(struct sbuf *b, const void *p, size_t n);
/* n more bytes at the end, not initialised: the caller writes them (one size check for a
 * record assembled in place). */
void *sbuf_extend(struct sbuf *b, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_addc(struct sbuf *b, char c);
void sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap);
void sbuf_reset(struct sbuf *b);        /* len = 0, keeps the allocation */
void sbuf_free(struct sbuf *b);         /* frees, back to SBUF_INIT */
char *sbuf_steal(struct sbuf *b);       /* returns the string (never NULL), b back to SBUF_INIT */
const char *sbuf_str(const struct sbuf *b); /* "" when empty */

#endif
