/* ydoc: libyaml events -> a positioned tree, and the tree back to YAML or JSON.
 *
 * Parsing is one pass over libyaml's event stream with an explicit stack of open
 * collections (no recursion, so deep input cannot overflow the C stack; depth is capped at
 * YDOC_MAX_DEPTH anyway because every later consumer walks the tree recursively). Nodes
 * and scalar text live in an arena owned by the ystream, so freeing a stream is freeing a
 * list of chunks.
 *
 * Child arrays (items, pairs) are always allocated with a power-of-two capacity, so the
 * builders (ynode_seq_append, ynode_map_set) can tell from n alone when an array is full
 * without a capacity field in struct ynode. */
#include "config/ydoc.h"
#include "core/util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Every consumer (clone, emit, equal, the resource decoder) recurses over the tree. */
#define YDOC_MAX_DEPTH 256
#define YA_CHUNK       (64 * 1024)
/* A stream's first chunk; each next one doubles, up to YA_CHUNK. A store of 30,000 small
 * files is 30,000 streams alive at once: a fixed 64 KiB chunk each was most of the
 * gateway's memory at start (350 MB for 10,000 hosts). */
#define YA_CHUNK_FIRST 1024

/* ---------------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------------- */

struct ychunk {
	struct ychunk *next;
	size_t used, cap;
	max_align_t data[];
};

struct yarena {
	struct ychunk *head;
};

/* Spare chunks of freed streams, by size (1 KiB << i), at most YA_SPARE_MAX of each. A
 * reader that frees each stream once it is decoded (egressgw's store load: 30,000 files)
 * takes its chunks from here instead of malloc, whose search through a heap fragmented
 * by what the load keeps was a tenth of the start-up's CPU. Wiped before they are kept.
 * Shared by all threads under a mutex (uncontended: one load runs at a time). */
#define YA_SPARE_SIZES 7            /* 1 KiB .. 64 KiB */
#define YA_SPARE_MAX   4
static pthread_mutex_t ya_spare_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ychunk *ya_spare[YA_SPARE_SIZES];
static unsigned ya_nspare[YA_SPARE_SIZES];

static int ya_spare_index(size_t cap)
{
	for (int i = 0; i < YA_SPARE_SIZES; i++)
		if (cap == (size_t)YA_CHUNK_FIRST << i)
			return i;
	return -1;
}

static struct ychunk *ya_chunk_new(size_t cap)
{
	int i = ya_spare_index(cap);
	struct ychunk *c = NULL;

	if (i >= 0) {
		pthread_mutex_lock(&ya_spare_mu);
		if ((c = ya_spare[i]) != NULL) {
			ya_spare[i] = c->next;
			ya_nspare[i]--;
		}
		pthread_mutex_unlock(&ya_spare_mu);
	}
	if (!c)
		c = xmalloc(sizeof(*c) + cap);
	c->cap = cap;
	return c;
}

static void ya_chunk_free(struct ychunk *c)
{
	int i = ya_spare_index(c->cap);

	if (i >= 0) {
		explicit_bzero(c->data, c->used);
		pthread_mutex_lock(&ya_spare_mu);
		if (ya_nspare[i] < YA_SPARE_MAX) {
			c->next = ya_spare[i];
			ya_spare[i] = c;
			ya_nspare[i]++;
			c = NULL;
		}
		pthread_mutex_unlock(&ya_spare_mu);
	}
	free(c);
}

static void *ya_alloc(struct yarena *a, size_t n)
{
	struct ychunk *c;
	char *p;

	if (n > SIZE_MAX / 2)
		abort();
	n = (n + 15) & ~(size_t)15;
	if (n > YA_CHUNK / 4) {
		/* Big blocks get a chunk of their own, linked behind the current one so the
		 * rest of the current chunk stays usable. */
		c = ya_chunk_new(n);
		c->used = n;
		if (a->head) {
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = NULL;
			a->head = c;
		}
		memset(c->data, 0, n);
		return c->data;
	}
	if (!a->head || a->head->cap - a->head->used < n) {
		size_t cap = a->head ? a->head->cap * 2 : YA_CHUNK_FIRST;

		while (cap < n)
			cap *= 2;
		if (cap > YA_CHUNK)
			cap = YA_CHUNK;
		c = ya_chunk_new(cap);
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	p = (char *)a->head->data + a->head->used;
	a->head->used += n;
	memset(p, 0, n);
	return p;
}

static void ya_free(struct yarena *a)
{
	struct ychunk *c, *next;

	if (!a)
		return;
	for (c = a->head; c; c = next) {
		next = c->next;
		ya_chunk_free(c);
	}
	free(a);
}

static struct yarena *ys_arena(struct ystream *s)
{
	if (!s->arena)
		s->arena = xcalloc(1, sizeof(struct yarena));
	return s->arena;
}

static char *ya_strndup(struct yarena *a, const char *p, size_t n)
{
	char *q = ya_alloc(a, n + 1);

	if (n)
		memcpy(q, p, n);
	q[n] = '\0';
	return q;
}

/* Capacity implied by a count: 0, 1, 2, 4, 8, ... */
static size_t ycap(size_t n)
{
	size_t c = 1;

	if (n == 0)
		return 0;
	while (c < n)
		c <<= 1;
	return c;
}

/* ---------------------------------------------------------------------------------
 * Scalar resolution (how kubectl's YAML reader types a plain scalar)
 * ------------------------------------------------------------------------------- */

static bool str_in(const char *s, size_t len, const char *const *set)
{
	for (; *set; set++)
		if (strlen(*set) == len && memcmp(*set, s, len) == 0)
			return true;
	return false;
}

static const char *const ynull_words[] = { "~", "null", "Null", "NULL", NULL };
static const char *const ytrue_words[] = { "y", "Y", "yes", "Yes", "YES", "true", "True",
                                           "TRUE", "on", "On", "ON", NULL };
static const char *const yfalse_words[] = { "n", "N", "no", "No", "NO", "false", "False",
                                            "FALSE", "off", "Off", "OFF", NULL };

static bool is_null_text(const char *s, size_t len)
{
	return len == 0 || str_in(s, len, ynull_words);
}

static bool is_bool_text(const char *s, size_t len, bool *val)
{
	if (str_in(s, len, ytrue_words)) {
		if (val)
			*val = true;
		return true;
	}
	if (str_in(s, len, yfalse_words)) {
		if (val)
			*val = false;
		return true;
	}
	return false;
}

static bool all_in(const char *s, size_t len, const char *set, bool need_one)
{
	bool one = false;

	for (size_t i = 0; i < len; i++) {
		if (!strchr(set, s[i]) || s[i] == '\0')
			return false;
		if (s[i] != '_')
			one = true;
	}
	return !need_one || one;
}

static bool is_int_text(const char *s, size_t len)
{
	if (len && (s[0] == '+' || s[0] == '-')) {
		s++;
		len--;
	}
	if (len == 0)
		return false;
	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		return all_in(s + 2, len - 2, "0123456789abcdefABCDEF_", true);
	if (len > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
		return all_in(s + 2, len - 2, "01234567_", true);
	if (len > 2 && s[0] == '0' && (s[1] == 'b' || s[1] == 'B'))
		return all_in(s + 2, len - 2, "01_", true);
	if (s[0] == '0' && len > 1)
		return all_in(s + 1, len - 1, "01234567_", false);
	return s[0] != '_' && all_in(s, len, "0123456789_", true);
}

static bool is_float_text(const char *s, size_t len)
{
	static const char *const special[] = { ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
	                                       "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
	                                       ".NaN", ".NAN", NULL };
	size_t i = 0, digits = 0;

	if (str_in(s, len, special))
		return true;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		i++;
	while (i < len && ((s[i] >= '0' && s[i] <= '9') || (s[i] == '_' && digits))) {
		digits += s[i] != '_';
		i++;
	}
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
			digits += s[i] != '_';
			i++;
		}
	}
	if (!digits)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		size_t ed = 0;

		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			ed++;
			i++;
		}
		if (!ed)
			return false;
	}
	return i == len;
}

enum yscalar_kind ynode_scalar_kind(const struct ynode *node)
{
	if (!node || node->type != YNODE_SCALAR || node->quoted)
		return YSCALAR_STRING;
	if (is_bool_text(node->str, node->len, NULL))
		return YSCALAR_BOOL;
	if (is_int_text(node->str, node->len))
		return YSCALAR_INT;
	if (is_float_text(node->str, node->len))
		return YSCALAR_FLOAT;
	return YSCALAR_STRING;
}

/* ---------------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------------- */

struct yframe {
	struct ynode *node;
	struct ynode **tmp;   /* items, or key, value, key, value, ... for maps */
	size_t n, cap;
	char *anchor;
};

struct yanchor {
	char *name;
	struct ynode *node;
};

struct ybuild {
	struct ystream *s;
	struct yarena *a;
	struct diags *d;
	struct yframe *stack;
	size_t depth, stack_cap;
	struct yanchor *anchors;
	size_t nanchors, anchors_cap;
	size_t nnodes;                  /* in the current document */
	size_t alias_nodes, alias_bytes; /* added by alias expansion in it */
	size_t docs_cap;
	bool failed;
	bool over_budget;
	bool stop;                      /* a limit was passed: read no further */
	struct ynode *root;
	/* libyaml marks count characters; documents are cut by bytes. */
	size_t bom, ci_char, ci_byte;
};

static void yb_err(struct ybuild *b, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void yb_err(struct ybuild *b, int line, int col, const char *fmt, ...)
{
	struct sbuf msg = SBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	sbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	diag_err(b->d, b->s->file, line, col, "%s", sbuf_str(&msg));
	sbuf_free(&msg);
	b->failed = true;
}

/* Renders a key for an error message: at most 64 bytes, control characters as '?'. */
static void key_for_msg(const char *s, size_t len, char *out, size_t outsz)
{
	size_t n = len < 64 ? len : 64, j = 0;

	for (size_t i = 0; i < n && j + 4 < outsz; i++)
		out[j++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	if (n < len && j + 4 < outsz) {
		memcpy(out + j, "...", 3);
		j += 3;
	}
	out[j] = '\0';
}

static size_t yb_byte_offset(struct ybuild *b, size_t chidx)
{
	const unsigned char *src = (const unsigned char *)b->s->src;

	if (chidx < b->ci_char) {
		b->ci_char = 0;
		b->ci_byte = b->bom;
	}
	while (b->ci_char < chidx && b->ci_byte < b->s->srclen) {
		unsigned char c = src[b->ci_byte];
		size_t w = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
		         : (c & 0xF8) == 0xF0 ? 4 : 1;

		b->ci_byte += w;
		b->ci_char++;
	}
	return b->ci_byte < b->s->srclen ? b->ci_byte : b->s->srclen;
}

static struct ynode *yb_node(struct ybuild *b, enum ynode_type type, const yaml_mark_t *m)
{
	struct ynode *n;

	if (++b->nnodes > YDOC_MAX_NODES) {
		if (!b->over_budget)
			yb_err(b, (int)m->line + 1, (int)m->column + 1,
			       "too many YAML nodes in one document (more than %d)", YDOC_MAX_NODES);
		b->over_budget = true;
		b->stop = true;
		return NULL;
	}
	n = ya_alloc(b->a, sizeof(*n));
	n->type = type;
	n->file = b->s->file;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	return n;
}

/* Copy of an anchored subtree for an alias. Strings are shared (read-only, same arena). */
static struct ynode *yb_clone(struct ybuild *b, const struct ynode *src, size_t depth)
{
	yaml_mark_t m = { 0, (size_t)(src->line - 1), (size_t)(src->col - 1) };
	struct ynode *n;

	if (depth > YDOC_MAX_DEPTH) {
		yb_err(b, src->line, src->col, "YAML nesting deeper than %d levels",
		       YDOC_MAX_DEPTH);
		b->stop = true;
		return NULL;
	}
	n = yb_node(b, src->type, &m);
	if (!n)
		return NULL;
	n->str = src->str;
	n->len = src->len;
	n->quoted = src->quoted;
	n->n = src->n;
	if (src->type == YNODE_SEQ && src->n) {
		n->items = ya_alloc(b->a, ycap(src->n) * sizeof(*n->items));
		for (size_t i = 0; i < src->n; i++)
			if (!(n->items[i] = yb_clone(b, src->items[i], depth + 1)))
				return NULL;
	} else if (src->type == YNODE_MAP && src->n) {
		n->pairs = ya_alloc(b->a, ycap(src->n) * sizeof(*n->pairs));
		for (size_t i = 0; i < src->n; i++) {
			n->pairs[i].key = src->pairs[i].key;
			if (!(n->pairs[i].value = yb_clone(b, src->pairs[i].value, depth + 1)))
				return NULL;
		}
	}
	return n;
}

static void yb_add(struct ybuild *b, struct ynode *n)
{
	struct yframe *f;

	if (b->depth == 0) {
		b->root = n;
		return;
	}
	f = &b->stack[b->depth - 1];
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 8;
		f->tmp = xrealloc(f->tmp, f->cap * sizeof(*f->tmp));
	}
	f->tmp[f->n++] = n;
}

static void yb_anchor(struct ybuild *b, const char *name, struct ynode *n)
{
	if (!name || !n)
		return;
	if (b->nanchors == YDOC_MAX_ANCHORS) {
		/* Each alias looks its anchor up among these. */
		yb_err(b, n->line, n->col, "more than %d YAML anchors in one document",
		       YDOC_MAX_ANCHORS);
		b->stop = true;
		return;
	}
	if (b->nanchors == b->anchors_cap) {
		b->anchors_cap = b->anchors_cap ? b->anchors_cap * 2 : 8;
		b->anchors = xrealloc(b->anchors, b->anchors_cap * sizeof(*b->anchors));
	}
	b->anchors[b->nanchors].name = xstrdup(name);
	b->anchors[b->nanchors].node = n;
	b->nanchors++;
}

static void yb_reset_anchors(struct ybuild *b)
{
	for (size_t i = 0; i < b->nanchors; i++)
		free(b->anchors[i].name);
	b->nanchors = 0;
}

static bool ykey_eq(const struct ynode *a, const struct ynode *b)
{
	return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
}

static bool is_merge_key(const struct ynode *k)
{
	return !k->quoted && k->len == 2 && memcmp(k->str, "<<", 2) == 0;
}

struct keyref {
	const struct ynode *key;
	size_t idx;
};

static int keyref_cmp(const void *pa, const void *pb)
{
	const struct keyref *a = pa, *b = pb;
	int c;

	if (a->key->len != b->key->len)
		return a->key->len < b->key->len ? -1 : 1;
	c = memcmp(a->key->str, b->key->str, a->key->len);
	if (c)
		return c;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static int size_cmp(const void *pa, const void *pb)
{
	size_t a = *(const size_t *)pa, b = *(const size_t *)pb;

	return a < b ? -1 : a > b;
}

/* Marks pairs whose key repeats an earlier one (dup[i] = true) and reports each, in
 * document order. Sorting keeps this O(n log n) for maps with many keys. */
static void yb_find_dups(struct ybuild *b, struct ypair *p, size_t n, bool *dup)
{
	struct keyref *refs = xmalloc(n * sizeof(*refs));
	size_t *dups = xmalloc(n * sizeof(*dups)), ndups = 0, m = 0;

	for (size_t i = 0; i < n; i++)
		if (!is_merge_key(p[i].key))
			refs[m++] = (struct keyref){ p[i].key, i };
	qsort(refs, m, sizeof(*refs), keyref_cmp);
	for (size_t i = 1, first = 0; i < m; i++) {
		if (ykey_eq(refs[i].key, refs[first].key)) {
			dup[refs[i].idx] = true;
			dups[ndups++] = refs[i].idx;
		} else {
			first = i;
		}
	}
	qsort(dups, ndups, sizeof(*dups), size_cmp);
	for (size_t i = 0; i < ndups; i++) {
		const struct ynode *k = p[dups[i]].key, *orig = NULL;
		char kb[80];

		for (size_t j = 0; j < dups[i] && !orig; j++)
			if (!is_merge_key(p[j].key) && ykey_eq(p[j].key, k))
				orig = p[j].key;
		key_for_msg(k->str, k->len, kb, sizeof(kb));
		yb_err(b, k->line, k->col, "duplicate key \"%s\" (first defined at line %d, column %d)",
		       kb, orig ? orig->line : 0, orig ? orig->col : 0);
	}
	free(dups);
	free(refs);
}

static bool pairs_have_key(const struct ypair *p, size_t n, const struct ynode *k)
{
	for (size_t i = 0; i < n; i++)
		if (!is_merge_key(p[i].key) && ykey_eq(p[i].key, k))
			return true;
	return false;
}

/* Adds the pairs of a merge source (<<: *anchor or <<: [*a, *b]) that are not
 * explicitly set in the map and not already merged from an earlier source. */
static void yb_merge_from(struct ybuild *b, const struct ynode *src, const struct ypair *raw,
                          size_t nraw, struct ypair *out, size_t *nout)
{
	if (src->type == YNODE_SEQ) {
		for (size_t i = 0; i < src->n; i++) {
			if (src->items[i]->type != YNODE_MAP) {
				yb_err(b, src->items[i]->line, src->items[i]->col,
				       "merge key \"<<\" needs a map or a list of maps, got a %s",
				       ynode_type_name(src->items[i]));
				continue;
			}
			yb_merge_from(b, src->items[i], raw, nraw, out, nout);
		}
		return;
	}
	if (src->type != YNODE_MAP) {
		yb_err(b, src->line, src->col, "merge key \"<<\" needs a map or a list of maps, got a %s",
		       ynode_type_name(src));
		return;
	}
	for (size_t i = 0; i < src->n; i++) {
		const struct ypair *q = &src->pairs[i];

		if (pairs_have_key(raw, nraw, q->key) || pairs_have_key(out, *nout, q->key))
			continue;
		out[(*nout)++] = *q;
	}
}

static size_t merged_size(const struct ynode *v)
{
	size_t n = 0;

	if (v->type == YNODE_MAP)
		return v->n;
	if (v->type == YNODE_SEQ)
		for (size_t i = 0; i < v->n; i++)
			if (v->items[i]->type == YNODE_MAP)
				n += v->items[i]->n;
	return n;
}

static void yb_close_map(struct ybuild *b, struct yframe *f)
{
	struct ynode *map = f->node;
	size_t nraw = f->n / 2, nout = 0, cap = 0;
	struct ypair *raw = xcalloc(nraw ? nraw : 1, sizeof(*raw));
	bool *dup = xcalloc(nraw ? nraw : 1, sizeof(*dup));
	bool has_merge = false;
	struct ypair *out;

	for (size_t i = 0; i < nraw; i++) {
		struct ynode *k = f->tmp[2 * i], *v = f->tmp[2 * i + 1];

		if (k->type == YNODE_NULL) {
			/* `~: x` or `? : x`: keep the text; strict decoding rejects the field. */
			k->type = YNODE_SCALAR;
		} else if (k->type != YNODE_SCALAR) {
			yb_err(b, k->line, k->col, "map keys must be strings, not a %s",
			       ynode_type_name(k));
			k = NULL;
		}
		raw[i].key = k;
		raw[i].value = v;
	}
	/* Drop the rejected keys before looking for duplicates. */
	{
		size_t j = 0;

		for (size_t i = 0; i < nraw; i++)
			if (raw[i].key)
				raw[j++] = raw[i];
		nraw = j;
	}
	yb_find_dups(b, raw, nraw, dup);
	for (size_t i = 0; i < nraw; i++) {
		if (is_merge_key(raw[i].key)) {
			has_merge = true;
			cap += merged_size(raw[i].value);
		} else {
			cap++;
		}
	}
	out = ya_alloc(b->a, ycap(cap) * sizeof(*out));
	for (size_t i = 0; i < nraw; i++) {
		if (dup[i])
			continue;
		if (has_merge && is_merge_key(raw[i].key))
			yb_merge_from(b, raw[i].value, raw, nraw, out, &nout);
		else
			out[nout++] = raw[i];
	}
	if (nout == 0)
		out = NULL;
	else if (ycap(nout) < ycap(cap)) {
		/* Keep the power-of-two capacity invariant exact for the builders. */
		struct ypair *shrunk = ya_alloc(b->a, ycap(nout) * sizeof(*out));

		memcpy(shrunk, out, nout * sizeof(*out));
		out = shrunk;
	}
	map->pairs = out;
	map->n = nout;
	free(dup);
	free(raw);
}

static void yb_close_seq(struct ybuild *b, struct yframe *f)
{
	struct ynode *seq = f->node;

	seq->n = f->n;
	if (f->n) {
		seq->items = ya_alloc(b->a, ycap(f->n) * sizeof(*seq->items));
		memcpy(seq->items, f->tmp, f->n * sizeof(*seq->items));
	}
}

static void yb_open(struct ybuild *b, enum ynode_type type, const yaml_mark_t *m,
                    const char *anchor, const char *tag)
{
	const char *want = type == YNODE_MAP ? "tag:yaml.org,2002:map" : "tag:yaml.org,2002:seq";
	struct ynode *n = NULL;
	struct yframe *f;

	if (tag && strcmp(tag, want) != 0 && strcmp(tag, "!") != 0)
		yb_err(b, (int)m->line + 1, (int)m->column + 1, "unsupported YAML tag \"%s\"", tag);
	if (b->depth >= YDOC_MAX_DEPTH) {
		/* libyaml's scanner costs O(depth) per token in flow collections: reading a
		 * 100,000-deep "[[[..." to its end took 18 s. Stop here. */
		yb_err(b, (int)m->line + 1, (int)m->column + 1,
		       "YAML nesting deeper than %d levels", YDOC_MAX_DEPTH);
		b->stop = true;
	} else {
		n = yb_node(b, type, m);
	}
	if (b->depth == b->stack_cap) {
		b->stack_cap = b->stack_cap ? b->stack_cap * 2 : 16;
		b->stack = xrealloc(b->stack, b->stack_cap * sizeof(*b->stack));
	}
	f = &b->stack[b->depth++];
	memset(f, 0, sizeof(*f));
	f->node = n;
	f->anchor = anchor ? xstrdup(anchor) : NULL;
}

static void yb_close(struct ybuild *b)
{
	struct yframe *f = &b->stack[b->depth - 1];
	struct ynode *n = f->node;

	if (n && !b->over_budget) {
		if (n->type == YNODE_MAP)
			yb_close_map(b, f);
		else
			yb_close_seq(b, f);
	}
	free(f->tmp);
	b->depth--;
	if (n && !b->over_budget) {
		yb_anchor(b, f->anchor, n);
		yb_add(b, n);
	}
	free(f->anchor);
}

static void yb_scalar(struct ybuild *b, const yaml_event_t *ev)
{
	const char *tag = (const char *)ev->data.scalar.tag;
	const yaml_mark_t *m = &ev->start_mark;
	const char *text = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	bool quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
	bool null = false;
	struct ynode *n;

	if (tag) {
		if (strcmp(tag, "!") == 0 || strcmp(tag, YAML_STR_TAG) == 0)
			quoted = true;
		else if (strcmp(tag, YAML_NULL_TAG) == 0)
			null = true;
		else if (strcmp(tag, YAML_BOOL_TAG) == 0 || strcmp(tag, YAML_INT_TAG) == 0 ||
		         strcmp(tag, YAML_FLOAT_TAG) == 0)
			quoted = false;
		else
			yb_err(b, (int)m->line + 1, (int)m->column + 1,
			       "unsupported YAML tag \"%s\"", tag);
	}
	if (!quoted && is_null_text(text, len))
		null = true;
	n = yb_node(b, null ? YNODE_NULL : YNODE_SCALAR, m);
	if (!n)
		return;
	n->str = ya_strndup(b->a, text, len);
	n->len = len;
	n->quoted = quoted && !null;
	yb_anchor(b, (const char *)ev->data.scalar.anchor, n);
	yb_add(b, n);
}

/* Adds the nodes and scalar bytes of the subtree n to the document's alias expansion;
 * false (and stops counting) once either passes its limit. */
static bool yb_alias_budget(struct ybuild *b, const struct ynode *n)
{
	b->alias_nodes++;
	b->alias_bytes += n->type == YNODE_SCALAR ? n->len : 0;
	if (b->alias_nodes > YDOC_MAX_ALIAS_NODES || b->alias_bytes > YDOC_MAX_ALIAS_BYTES)
		return false;
	if (n->type == YNODE_SEQ) {
		for (size_t i = 0; i < n->n; i++)
			if (!yb_alias_budget(b, n->items[i]))
				return false;
	} else if (n->type == YNODE_MAP) {
		for (size_t i = 0; i < n->n; i++)
			if (!yb_alias_budget(b, n->pairs[i].value))
				return false;
	}
	return true;
}

static void yb_alias(struct ybuild *b, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	const yaml_mark_t *m = &ev->start_mark;
	struct ynode *n;
	size_t i;

	for (i = b->nanchors; i > 0; i--)
		if (strcmp(b->anchors[i - 1].name, name) == 0)
			break;
	if (i == 0) {
		char nb[80];

		key_for_msg(name, strlen(name), nb, sizeof(nb));
		yb_err(b, (int)m->line + 1, (int)m->column + 1, "unknown YAML anchor \"%s\"", nb);
		/* Keep the tree shape so that map key/value pairing stays right. */
		n = yb_node(b, YNODE_NULL, m);
		if (n) {
			n->str = ya_strndup(b->a, "", 0);
			yb_add(b, n);
		}
		return;
	}
	/* Counted before copying, so that the error names the alias that passed the limit. */
	if (!yb_alias_budget(b, b->anchors[i - 1].node)) {
		yb_err(b, (int)m->line + 1, (int)m->column + 1, "YAML alias expansion too large: "
		       "more than %d nodes or %d bytes in one document (an alias bomb?)",
		       YDOC_MAX_ALIAS_NODES, YDOC_MAX_ALIAS_BYTES);
		b->over_budget = true;
		b->stop = true;
		return;
	}
	n = yb_clone(b, b->anchors[i - 1].node, b->depth);
	if (n) {
		/* The alias stands where it is written; its insides keep the anchor's places. */
		n->line = (int)m->line + 1;
		n->col = (int)m->column + 1;
		yb_add(b, n);
	}
}

static void yb_doc_start(struct ybuild *b, const yaml_event_t *ev)
{
	struct ystream *s = b->s;
	struct ydoc *doc;

	if (s->ndocs == b->docs_cap) {
		b->docs_cap = b->docs_cap ? b->docs_cap * 2 : 4;
		s->docs = xrealloc(s->docs, b->docs_cap * sizeof(*s->docs));
	}
	doc = &s->docs[s->ndocs++];
	memset(doc, 0, sizeof(*doc));
	doc->line = (int)ev->start_mark.line + 1;
	doc->start = yb_byte_offset(b, ev->start_mark.index);
	b->root = NULL;
	b->nnodes = b->alias_nodes = b->alias_bytes = 0;
}

static void yb_doc_end(struct ybuild *b, const yaml_event_t *ev)
{
	struct ydoc *doc = &b->s->docs[b->s->ndocs - 1];

	doc->end = yb_byte_offset(b, ev->end_mark.index);
	doc->root = (b->root && b->root->type != YNODE_NULL) ? b->root : NULL;
	b->root = NULL;
	yb_reset_anchors(b);
}

static void yb_event(struct ybuild *b, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		yb_doc_start(b, ev);
		break;
	case YAML_DOCUMENT_END_EVENT:
		yb_doc_end(b, ev);
		break;
	case YAML_SCALAR_EVENT:
		if (!b->over_budget)
			yb_scalar(b, ev);
		break;
	case YAML_ALIAS_EVENT:
		if (!b->over_budget)
			yb_alias(b, ev);
		break;
	case YAML_SEQUENCE_START_EVENT:
		yb_open(b, YNODE_SEQ, &ev->start_mark, (const char *)ev->data.sequence_start.anchor,
		        (const char *)ev->data.sequence_start.tag);
		break;
	case YAML_MAPPING_START_EVENT:
		yb_open(b, YNODE_MAP, &ev->start_mark, (const char *)ev->data.mapping_start.anchor,
		        (const char *)ev->data.mapping_start.tag);
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		yb_close(b);
		break;
	default:
		break;
	}
}

/* Line and column of a byte offset, for libyaml reader errors (which give only that). */
static void offset_to_linecol(const char *src, size_t len, size_t off, int *line, int *col)
{
	int l = 1, c = 1;

	for (size_t i = 0; i < off && i < len; i++) {
		if (src[i] == '\n') {
			l++;
			c = 1;
		} else if (((unsigned char)src[i] & 0xC0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

static void yb_syntax_error(struct ybuild *b, const yaml_parser_t *p)
{
	const char *problem = p->problem ? p->problem : "unknown error";

	if (p->error == YAML_MEMORY_ERROR) {
		fprintf(stderr, "egressgw: out of memory in libyaml\n");
		abort();
	}
	if (p->error == YAML_READER_ERROR) {
		int line, col;

		offset_to_linecol(b->s->src, b->s->srclen, p->problem_offset, &line, &col);
		yb_err(b, line, col, "invalid input: %s", problem);
		return;
	}
	if (p->context)
		yb_err(b, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1,
		       "YAML syntax error: %s (%s, line %d column %d)", problem, p->context,
		       (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
	else
		yb_err(b, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1,
		       "YAML syntax error: %s", problem);
}

static void yb_cleanup(struct ybuild *b)
{
	while (b->depth) {
		struct yframe *f = &b->stack[--b->depth];

		free(f->tmp);
		free(f->anchor);
	}
	free(b->stack);
	yb_reset_anchors(b);
	free(b->anchors);
}

int ydoc_parse(const char *file, const char *buf, size_t len, struct ystream *out,
               struct diags *d)
{
	struct ybuild b;
	yaml_parser_t parser;
	bool done = false;

	memset(out, 0, sizeof(*out));
	memset(&b, 0, sizeof(b));
	out->file = xstrdup(file ? file : "-");
	out->src = xstrndup(buf, len);
	out->srclen = len;
	b.s = out;
	b.a = ys_arena(out);
	b.d = d;
	if (len >= 2 && (((unsigned char)buf[0] == 0xFE && (unsigned char)buf[1] == 0xFF) ||
	                 ((unsigned char)buf[0] == 0xFF && (unsigned char)buf[1] == 0xFE))) {
		yb_err(&b, 1, 1, "UTF-16 input is not supported; convert the file to UTF-8");
		goto fail;
	}
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		b.bom = 3;
	b.ci_byte = b.bom;

	if (!yaml_parser_initialize(&parser)) {
		fprintf(stderr, "egressgw: out of memory in libyaml\n");
		abort();
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)out->src, len);
	while (!done && !b.stop) {
		yaml_event_t ev;

		if (!yaml_parser_parse(&parser, &ev)) {
			yb_syntax_error(&b, &parser);
			break;
		}
		yb_event(&b, &ev);
		done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	if (b.failed)
		goto fail;
	yb_cleanup(&b);
	return 0;
fail:
	yb_cleanup(&b);
	ystream_free(out);
	return -1;
}

int ydoc_parse_file(const char *path, struct ystream *out, struct diags *d)
{
	char *buf;
	size_t len;
	int r;

	memset(out, 0, sizeof(*out));
	if (file_read_all(path, &buf, &len) < 0) {
		diag_err(d, path, 0, 0, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	r = ydoc_parse(path, buf, len, out, d);
	free(buf);
	return r;
}

void ystream_free(struct ystream *s)
{
	if (!s)
		return;
	free(s->file);
	free(s->src);
	free(s->docs);
	ya_free(s->arena);
	memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------------------------
 * Access
 * ------------------------------------------------------------------------------- */

struct ynode *ynode_get(const struct ynode *map, const char *key)
{
	size_t klen;

	if (!map || map->type != YNODE_MAP || !key)
		return NULL;
	klen = strlen(key);
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *k = map->pairs[i].key;

		if (k->len == klen && memcmp(k->str, key, klen) == 0)
			return map->pairs[i].value;
	}
	return NULL;
}

const char *ynode_str(const struct ynode *node)
{
	return node && node->type == YNODE_SCALAR ? node->str : NULL;
}

const char *ynode_type_name(const struct ynode *node)
{
	if (!node || node->type == YNODE_NULL)
		return "null";
	switch (node->type) {
	case YNODE_SEQ:
		return "list";
	case YNODE_MAP:
		return "map";
	default:
		break;
	}
	switch (ynode_scalar_kind(node)) {
	case YSCALAR_BOOL:
		return "boolean";
	case YSCALAR_INT:
	case YSCALAR_FLOAT:
		return "number";
	default:
		return "string";
	}
}

/* ---------------------------------------------------------------------------------
 * Builders
 * ------------------------------------------------------------------------------- */

static struct ynode *ynode_new(struct ystream *s, enum ynode_type type)
{
	struct ynode *n = ya_alloc(ys_arena(s), sizeof(*n));

	n->type = type;
	n->file = s->file;
	return n;
}

struct ynode *ynode_new_map(struct ystream *s)
{
	return ynode_new(s, YNODE_MAP);
}

struct ynode *ynode_new_seq(struct ystream *s)
{
	return ynode_new(s, YNODE_SEQ);
}

struct ynode *ynode_new_scalar(struct ystream *s, const char *str, size_t len, bool quoted)
{
	struct ynode *n = ynode_new(s, YNODE_SCALAR);

	n->str = ya_strndup(ys_arena(s), str ? str : "", str ? len : 0);
	n->len = str ? len : 0;
	n->quoted = quoted;
	if (!quoted && is_null_text(n->str, n->len))
		n->type = YNODE_NULL;
	return n;
}

/* Grows a child array when n has reached its (power-of-two) capacity. */
static void *grow_children(struct ystream *s, void *arr, size_t n, size_t elsize)
{
	void *bigger;

	if (n != ycap(n))
		return arr;
	bigger = ya_alloc(ys_arena(s), (n ? n * 2 : 1) * elsize);
	if (n)
		memcpy(bigger, arr, n * elsize);
	return bigger;
}

void ynode_map_set(struct ystream *s, struct ynode *map, const char *key, struct ynode *value)
{
	size_t klen = strlen(key);

	if (!map || map->type != YNODE_MAP)
		return;
	for (size_t i = 0; i < map->n; i++) {
		struct ynode *k = map->pairs[i].key;

		if (k->len == klen && memcmp(k->str, key, klen) == 0) {
			map->pairs[i].value = value;
			return;
		}
	}
	map->pairs = grow_children(s, map->pairs, map->n, sizeof(*map->pairs));
	map->pairs[map->n].key = ynode_new_scalar(s, key, klen, true);
	map->pairs[map->n].value = value;
	map->n++;
}

void ynode_seq_append(struct ystream *s, struct ynode *seq, struct ynode *item)
{
	if (!seq || seq->type != YNODE_SEQ)
		return;
	seq->items = grow_children(s, seq->items, seq->n, sizeof(*seq->items));
	seq->items[seq->n++] = item;
}

struct yclone {
	struct ystream *s;
	const char *src_file;  /* last foreign file name seen, and its copy in s */
	const char *dst_file;
};

static struct ynode *clone_rec(struct yclone *c, const struct ynode *src)
{
	struct yarena *a = ys_arena(c->s);
	struct ynode *n = ya_alloc(a, sizeof(*n));

	*n = *src;
	n->items = NULL;
	n->pairs = NULL;
	if (src->file && src->file != c->s->file) {
		if (src->file != c->src_file) {
			c->src_file = src->file;
			c->dst_file = ya_strndup(a, src->file, strlen(src->file));
		}
		n->file = c->dst_file;
	}
	if (src->str)
		n->str = ya_strndup(a, src->str, src->len);
	if (src->type == YNODE_SEQ && src->n) {
		n->items = ya_alloc(a, ycap(src->n) * sizeof(*n->items));
		for (size_t i = 0; i < src->n; i++)
			n->items[i] = clone_rec(c, src->items[i]);
	} else if (src->type == YNODE_MAP && src->n) {
		n->pairs = ya_alloc(a, ycap(src->n) * sizeof(*n->pairs));
		for (size_t i = 0; i < src->n; i++) {
			n->pairs[i].key = clone_rec(c, src->pairs[i].key);
			n->pairs[i].value = clone_rec(c, src->pairs[i].value);
		}
	}
	return n;
}

struct ynode *ynode_clone(struct ystream *s, const struct ynode *node)
{
	struct yclone c = { s, NULL, NULL };

	return node ? clone_rec(&c, node) : NULL;
}

/* ---------------------------------------------------------------------------------
 * Equality
 * ------------------------------------------------------------------------------- */

bool ynode_equal(const struct ynode *a, const struct ynode *b)
{
	if (!a || !b)
		return a == b;
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case YNODE_NULL:
		return true;
	case YNODE_SCALAR:
		return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
	case YNODE_SEQ:
		if (a->n != b->n)
			return false;
		for (size_t i = 0; i < a->n; i++)
			if (!ynode_equal(a->items[i], b->items[i]))
				return false;
		return true;
	case YNODE_MAP:
		if (a->n != b->n)
			return false;
		for (size_t i = 0; i < a->n; i++) {
			const struct ynode *other = NULL;

			for (size_t j = 0; j < b->n && !other; j++)
				if (ykey_eq(a->pairs[i].key, b->pairs[j].key))
					other = b->pairs[j].value;
			if (!other || !ynode_equal(a->pairs[i].value, other))
				return false;
		}
		return true;
	}
	return false;
}

/* ---------------------------------------------------------------------------------
 * YAML emitter
 * ------------------------------------------------------------------------------- */

/* Unicode line breaks and BOM that YAML treats specially (UTF-8 encoded). */
static size_t special_unicode(const unsigned char *p, size_t left)
{
	if (left >= 2 && p[0] == 0xC2 && p[1] == 0x85)
		return 2;
	if (left >= 3 && p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9))
		return 3;
	if (left >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
		return 3;
	return 0;
}

static bool looks_like_timestamp(const char *s, size_t len)
{
	return len >= 8 && all_in(s, 4, "0123456789", true) && s[4] == '-' &&
	       s[5] >= '0' && s[5] <= '9';
}

/* Sexagesimal numbers (YAML 1.1: 1:30, 190:20:30.15) read as numbers by some parsers. */
static bool looks_sexagesimal(const char *s, size_t len)
{
	bool colon = false;

	if (len && (s[0] == '+' || s[0] == '-')) {
		s++;
		len--;
	}
	if (!len || s[0] < '0' || s[0] > '9')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == ':')
			colon = true;
		else if (!strchr("0123456789_.", s[i]))
			return false;
	}
	return colon;
}

/* Whether text can be written as a plain scalar in block context and read back as the
 * same text. Does not look at typing (see needs_quotes). */
static bool plain_safe(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	if (len == 0)
		return false;
	if (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t')
		return false;
	if (strchr("-?:", s[0]) && s[0]) {
		if (len == 1 || s[1] == ' ' || s[1] == '\t')
			return false;
	} else if (strchr(",[]{}#&*!|>'\"%@`", s[0])) {
		return false;
	}
	if (len >= 3 && (memcmp(s, "---", 3) == 0 || memcmp(s, "...", 3) == 0))
		return false;
	if (s[len - 1] == ':')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (u[i] < 0x20 || u[i] == 0x7f)
			return false;
		if (u[i] >= 0x80 && special_unicode(u + i, len - i))
			return false;
		if (s[i] == ':' && i + 1 < len && (s[i + 1] == ' ' || s[i + 1] == '\t'))
			return false;
		if (s[i] == '#' && i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\t'))
			return false;
	}
	return true;
}

/* A string that some YAML reader would type as something else than a string (or, for
 * "<<", as a merge key). */
static bool resolves_non_string(const char *s, size_t len)
{
	return (len == 2 && memcmp(s, "<<", 2) == 0) || is_null_text(s, len) || is_bool_text(s, len, NULL) || is_int_text(s, len) ||
	       is_float_text(s, len) || looks_sexagesimal(s, len) || looks_like_timestamp(s, len);
}

static bool needs_quotes(const struct ynode *n)
{
	if (!plain_safe(n->str, n->len))
		return true;
	return n->quoted && resolves_non_string(n->str, n->len);
}

static void emit_double_quoted(const char *s, size_t len, struct sbuf *out)
{
	const unsigned char *u = (const unsigned char *)s;

	sbuf_addc(out, '"');
	for (size_t i = 0; i < len; i++) {
		size_t sp;

		switch (u[i]) {
		case '"':  sbuf_adds(out, "\\\""); continue;
		case '\\': sbuf_adds(out, "\\\\"); continue;
		case '\n': sbuf_adds(out, "\\n"); continue;
		case '\t': sbuf_adds(out, "\\t"); continue;
		case '\r': sbuf_adds(out, "\\r"); continue;
		case '\0': sbuf_adds(out, "\\0"); continue;
		default:   break;
		}
		if (u[i] < 0x20 || u[i] == 0x7f) {
			sbuf_addf(out, "\\x%02x", u[i]);
			continue;
		}
		sp = u[i] >= 0x80 ? special_unicode(u + i, len - i) : 0;
		if (sp == 2) {
			sbuf_adds(out, "\\N");
		} else if (sp == 3 && u[i] == 0xE2) {
			sbuf_adds(out, u[i + 2] == 0xA8 ? "\\L" : "\\P");
		} else if (sp == 3) {
			sbuf_adds(out, "\\uFEFF");
		} else {
			sbuf_addc(out, s[i]);
			continue;
		}
		i += sp - 1;
	}
	sbuf_addc(out, '"');
}

/* Multi-line strings read best as literal blocks; anything a literal block cannot carry
 * exactly (leading blank or space, CR, control characters) falls back to quotes. */
static bool literal_ok(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	if (len == 0 || !memchr(s, '\n', len) || s[0] == ' ' || s[0] == '\t' || s[0] == '\n')
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((u[i] < 0x20 && u[i] != '\n' && u[i] != '\t') || u[i] == 0x7f)
			return false;
		if (u[i] >= 0x80 && special_unicode(u + i, len - i))
			return false;
	}
	return true;
}

static void emit_indent(struct sbuf *out, int n)
{
	for (int i = 0; i < n; i++)
		sbuf_addc(out, ' ');
}

static void emit_literal(const char *s, size_t len, int indent, struct sbuf *out)
{
	size_t trailing = 0, body;

	while (trailing < len && s[len - 1 - trailing] == '\n')
		trailing++;
	body = len - trailing;
	sbuf_adds(out, trailing == 0 ? "|-\n" : trailing == 1 ? "|\n" : "|+\n");
	for (size_t i = 0; i < body;) {
		const char *nl = memchr(s + i, '\n', body - i);
		size_t end = nl ? (size_t)(nl - s) : body;

		if (end > i) {
			emit_indent(out, indent);
			sbuf_add(out, s + i, end - i);
		}
		sbuf_addc(out, '\n');
		i = end + 1;
	}
	for (size_t i = 1; i < trailing; i++)
		sbuf_addc(out, '\n');
}

/* A scalar or null in value position; ends the line. indent is for literal bodies. */
static void emit_scalar(const struct ynode *n, int indent, struct sbuf *out)
{
	if (n->type == YNODE_NULL) {
		sbuf_adds(out, "null\n");
		return;
	}
	if (literal_ok(n->str, n->len) && n->quoted) {
		emit_literal(n->str, n->len, indent, out);
		return;
	}
	if (needs_quotes(n))
		emit_double_quoted(n->str, n->len, out);
	else
		sbuf_add(out, n->str, n->len);
	sbuf_addc(out, '\n');
}

/* Writes "key:", or "? key\n<indent>:" for keys too long to be implicit (YAML allows
 * at most 1024 characters before the ':' of an implicit key). Returns true for the
 * explicit form, whose block values must then be indented. */
static bool emit_key(const struct ynode *k, int indent, struct sbuf *out)
{
	struct sbuf key = SBUF_INIT;
	bool explicit;

	if (needs_quotes(k))
		emit_double_quoted(k->str, k->len, &key);
	else
		sbuf_add(&key, k->str, k->len);
	explicit = key.len > 1000;
	if (explicit) {
		sbuf_adds(out, "? ");
		sbuf_add(out, key.s, key.len);
		sbuf_addc(out, '\n');
		emit_indent(out, indent);
	} else {
		sbuf_add(out, key.s, key.len);
	}
	sbuf_addc(out, ':');
	sbuf_free(&key);
	return explicit;
}

static bool is_empty_coll(const struct ynode *n)
{
	return (n->type == YNODE_MAP || n->type == YNODE_SEQ) && n->n == 0;
}

/* inline_first: the first line continues a "- " already written by the caller. */
static void emit_block(const struct ynode *n, int indent, bool inline_first, struct sbuf *out)
{
	if (n->type == YNODE_MAP) {
		for (size_t i = 0; i < n->n; i++) {
			const struct ynode *v = n->pairs[i].value;

			bool explicit;

			if (i > 0 || !inline_first)
				emit_indent(out, indent);
			explicit = emit_key(n->pairs[i].key, indent, out);
			if (is_empty_coll(v)) {
				sbuf_adds(out, v->type == YNODE_MAP ? " {}\n" : " []\n");
			} else if (v->type == YNODE_MAP) {
				sbuf_addc(out, '\n');
				emit_block(v, indent + 2, false, out);
			} else if (v->type == YNODE_SEQ) {
				/* kubectl style: list items at the key's indentation. */
				sbuf_addc(out, '\n');
				emit_block(v, explicit ? indent + 2 : indent, false, out);
			} else {
				sbuf_addc(out, ' ');
				emit_scalar(v, indent + 2, out);
			}
		}
		return;
	}
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *v = n->items[i];

		if (i > 0 || !inline_first)
			emit_indent(out, indent);
		sbuf_addc(out, '-');
		if (is_empty_coll(v)) {
			sbuf_adds(out, v->type == YNODE_MAP ? " {}\n" : " []\n");
		} else if (v->type == YNODE_MAP || v->type == YNODE_SEQ) {
			sbuf_addc(out, ' ');
			emit_block(v, indent + 2, true, out);
		} else {
			sbuf_addc(out, ' ');
			emit_scalar(v, indent + 2, out);
		}
	}
}

void ydoc_emit(const struct ynode *node, struct sbuf *out)
{
	if (!node) {
		sbuf_adds(out, "null\n");
		return;
	}
	if (is_empty_coll(node))
		sbuf_adds(out, node->type == YNODE_MAP ? "{}\n" : "[]\n");
	else if (node->type == YNODE_MAP || node->type == YNODE_SEQ)
		emit_block(node, 0, false, out);
	else
		emit_scalar(node, 2, out);
}

/* ---------------------------------------------------------------------------------
 * JSON emitter
 * ------------------------------------------------------------------------------- */

static void json_string(const char *s, size_t len, struct sbuf *out)
{
	sbuf_addc(out, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		switch (c) {
		case '"':  sbuf_adds(out, "\\\""); break;
		case '\\': sbuf_adds(out, "\\\\"); break;
		case '\n': sbuf_adds(out, "\\n"); break;
		case '\t': sbuf_adds(out, "\\t"); break;
		case '\r': sbuf_adds(out, "\\r"); break;
		default:
			if (c < 0x20 || c == 0x7f)
				sbuf_addf(out, "\\u%04x", c);
			else
				sbuf_addc(out, (char)c);
		}
	}
	sbuf_addc(out, '"');
}

static bool json_number_form(const char *s, size_t len)
{
	size_t i = 0;

	if (i < len && s[i] == '-')
		i++;
	if (i >= len || s[i] < '0' || s[i] > '9')
		return false;
	if (s[i] == '0')
		i++;
	else
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
	if (i < len && s[i] == '.') {
		size_t d = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		size_t d;

		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		d = i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	return i == len;
}

static void json_scalar(const struct ynode *n, struct sbuf *out)
{
	char buf[64];
	size_t j = 0;
	bool b = false;

	switch (ynode_scalar_kind(n)) {
	case YSCALAR_BOOL:
		is_bool_text(n->str, n->len, &b);
		sbuf_adds(out, b ? "true" : "false");
		return;
	case YSCALAR_INT:
	case YSCALAR_FLOAT:
		if (json_number_form(n->str, n->len)) {
			sbuf_add(out, n->str, n->len);
			return;
		}
		for (size_t i = 0; i < n->len && j + 1 < sizeof(buf); i++)
			if (n->str[i] != '_')
				buf[j++] = n->str[i];
		buf[j] = '\0';
		if (ynode_scalar_kind(n) == YSCALAR_INT) {
			const char *p = buf;
			bool neg = *p == '-';
			int base = 10;
			unsigned long long v;
			char *end;

			if (*p == '+' || *p == '-')
				p++;
			if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
				base = 16, p += 2;
			else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
				base = 8, p += 2;
			else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B'))
				base = 2, p += 2;
			else if (p[0] == '0' && p[1])
				base = 8, p += 1;
			errno = 0;
			v = strtoull(p, &end, base);
			if (errno == 0 && *end == '\0' && j + 1 < sizeof(buf)) {
				sbuf_addf(out, "%s%llu", neg && v ? "-" : "", v);
				return;
			}
		} else {
			char *end;
			double v = strtod(buf, &end);

			/* JSON has no inf or nan: those stay strings. */
			if (*end == '\0' && isfinite(v) && j + 1 < sizeof(buf)) {
				sbuf_addf(out, "%.17g", v);
				return;
			}
		}
		break;
	default:
		break;
	}
	json_string(n->str, n->len, out);
}

static void json_rec(const struct ynode *n, int indent, struct sbuf *out)
{
	if (!n || n->type == YNODE_NULL) {
		sbuf_adds(out, "null");
		return;
	}
	if (n->type == YNODE_SCALAR) {
		if (n->quoted)
			json_string(n->str, n->len, out);
		else
			json_scalar(n, out);
		return;
	}
	if (n->n == 0) {
		sbuf_adds(out, n->type == YNODE_MAP ? "{}" : "[]");
		return;
	}
	sbuf_adds(out, n->type == YNODE_MAP ? "{\n" : "[\n");
	for (size_t i = 0; i < n->n; i++) {
		emit_indent(out, indent + 4);
		if (n->type == YNODE_MAP) {
			json_string(n->pairs[i].key->str, n->pairs[i].key->len, out);
			sbuf_adds(out, ": ");
			json_rec(n->pairs[i].value, indent + 4, out);
		} else {
			json_rec(n->items[i], indent + 4, out);
		}
		sbuf_adds(out, i + 1 < n->n ? ",\n" : "\n");
	}
	emit_indent(out, indent);
	sbuf_addc(out, n->type == YNODE_MAP ? '}' : ']');
}

void ydoc_emit_json(const struct ynode *node, struct sbuf *out)
{
	json_rec(node, 0, out);
	sbuf_addc(out, '\n');
}
