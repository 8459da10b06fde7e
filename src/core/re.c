/* re: RE2-syntax regular expressions on a Pike VM (see re.h for what and why).
 *
 * Two passes. The parser (recursive descent over the pattern, nesting bounded by
 * RE_MAX_DEPTH) builds a tree of nodes in one array; the compiler walks it and emits the
 * program, expanding counted repetitions, so the program size check sees the real cost.
 * The VM (re_exec) keeps two thread lists in priority order: a thread is a program
 * counter plus its capture slots. Following the epsilon edges of one thread (SPLIT, JMP,
 * SAVE, assertions) is done with an explicit stack, each instruction at most once per
 * input position, so the work per character is bounded by the program size, whatever
 * the pattern. The first thread of the list to reach MATCH cuts those after it: that is
 * leftmost-first (RE2/Perl) rather than POSIX's leftmost-longest. */
#include "core/re_int.h"
#include "core/sbuf.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decodes one UTF-8 character of s (len > 0 bytes). An invalid sequence is RE_BAD, one
 * byte long. */
uint32_t re_decode(const unsigned char *s, size_t len, size_t *n)
{
	unsigned b0 = s[0];
	uint32_t lo = 0x80, hi = 0xBF, c;
	size_t need;

	*n = 1;
	if (b0 < 0x80)
		return b0;
	if (b0 >= 0xC2 && b0 <= 0xDF) {
		need = 1;
		c = b0 & 0x1F;
	} else if (b0 >= 0xE0 && b0 <= 0xEF) {
		need = 2;
		c = b0 & 0x0F;
		if (b0 == 0xE0)
			lo = 0xA0;
		else if (b0 == 0xED)
			hi = 0x9F;
	} else if (b0 >= 0xF0 && b0 <= 0xF4) {
		need = 3;
		c = b0 & 0x07;
		if (b0 == 0xF0)
			lo = 0x90;
		else if (b0 == 0xF4)
			hi = 0x8F;
	} else {
		return RE_BAD;
	}
	if (len < need + 1 || s[1] < lo || s[1] > hi)
		return RE_BAD;
	for (size_t i = 1; i <= need; i++) {
		if (i > 1 && (s[i] < 0x80 || s[i] > 0xBF))
			return RE_BAD;
		c = (c << 6) | (s[i] & 0x3F);
	}
	*n = need + 1;
	return c;
}

bool re_is_word(unsigned c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       c == '_';
}

void re_free(struct re *re)
{
	if (!re)
		return;
	free(re->prog);
	free(re->classes);
	free(re->ranges);
	free(re);
}

int re_ngroups(const struct re *re)
{
	return re->ngroups;
}

size_t re_prog_size(const struct re *re)
{
	return re->ninst;
}

/* ---- VM ---- */

struct re_vm {
	const struct re *re;
	const unsigned char *s;
	size_t len;
	uint32_t nslots;
	uint32_t gen;
	uint32_t *mark;            /* mark[pc] == gen: pc is in the list being built */
	uint32_t *dense[2];        /* the lists: program counters in priority order */
	uint32_t n[2];
	uint32_t *tcaps[2];        /* capture slots of each list entry, nslots each */
	uint32_t *stack;           /* (pc or slot | RESTORE, value) pairs */
	uint32_t *work;            /* the slots of the thread being followed */
	uint64_t steps;
};

#define RE_RESTORE 0x80000000u

static bool re_class_has(const struct re *re, uint32_t ci, uint32_t c)
{
	const struct re_class *cl = &re->classes[ci];
	const struct re_range *r = re->ranges + cl->first;
	uint32_t lo = 0, hi = cl->n;

	if (c < 128)
		return (cl->ascii[c >> 5] >> (c & 31)) & 1;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (c < r[mid].lo)
			hi = mid;
		else if (c > r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static bool re_assert_ok(const struct re_vm *vm, uint32_t kind, size_t pos)
{
	bool wb, wa;

	switch (kind) {
	case A_BOT: return pos == 0;
	case A_EOT: return pos == vm->len;
	case A_BOL: return pos == 0 || vm->s[pos - 1] == '\n';
	case A_EOL: return pos == vm->len || vm->s[pos] == '\n';
	default:
		wb = pos > 0 && re_is_word(vm->s[pos - 1]);
		wa = pos < vm->len && re_is_word(vm->s[pos]);
		return (wb != wa) == (kind == A_WB);
	}
}

/* Adds pc and everything reachable from it without consuming input to list l, at
 * position pos, with vm->work as the thread's slots (restored on return). */
static void re_addthread(struct re_vm *vm, int l, uint32_t pc0, size_t pos)
{
	const struct re_inst *prog = vm->re->prog;
	uint32_t sp = 0;

	vm->stack[sp++] = pc0;
	vm->stack[sp++] = 0;
	while (sp) {
		uint32_t v = vm->stack[--sp], pc = vm->stack[--sp];

		if (pc & RE_RESTORE) {
			vm->work[pc & ~RE_RESTORE] = v;
			continue;
		}
		for (;;) {
			const struct re_inst *in;
			uint32_t i;

			vm->steps++;
			if (vm->mark[pc] == vm->gen)
				break;
			vm->mark[pc] = vm->gen;
			in = &prog[pc];
			switch (in->op) {
			case OP_JMP:
				pc = in->x;
				continue;
			case OP_SPLIT:
				vm->stack[sp++] = in->y;
				vm->stack[sp++] = 0;
				pc = in->x;
				continue;
			case OP_SAVE:
				if (in->x < vm->nslots) {
					vm->stack[sp++] = in->x | RE_RESTORE;
					vm->stack[sp++] = vm->work[in->x];
					vm->work[in->x] = (uint32_t)pos;
				}
				pc++;
				continue;
			case OP_ASSERT:
				if (!re_assert_ok(vm, in->x, pos))
					break;
				pc++;
				continue;
			default:
				i = vm->n[l]++;
				vm->dense[l][i] = pc;
				if (vm->nslots)
					memcpy(vm->tcaps[l] + (size_t)i * vm->nslots, vm->work,
					       vm->nslots * sizeof(uint32_t));
				break;
			}
			break;
		}
	}
}

/* Is s[pos..len) plain ASCII that the tail loop `in` (re_mark_tails) surely takes? */
static bool re_tail_rest(const struct re_vm *vm, const struct re_inst *in, size_t pos)
{
	const struct re_class *cl = in->op == OP_CLASS ? &vm->re->classes[in->x] : NULL;

	for (size_t i = pos; i < vm->len; i++) {
		unsigned b = vm->s[i];

		if (b >= 0x80)
			return false;
		if (cl ? !((cl->ascii[b >> 5] >> (b & 31)) & 1) :
		    in->op == OP_CHAR ? !(b == in->x || (in->fold && (b | 0x20) == in->x)) :
		    (b == '\n' && in->op == OP_ANY))
			return false;
	}
	return true;
}

/* Runs the program over s from start. full: the match must span start..len (used with
 * start 0 by re_full_match). best gets the winning thread's slots. */
static bool re_exec(struct re_vm *vm, size_t start, bool full, uint32_t *best)
{
	const struct re *re = vm->re;
	const struct re_inst *prog = re->prog;
	bool matched = false;
	int cur = 0;
	size_t pos = start;

	memset(vm->mark, 0, re->ninst * sizeof(uint32_t));
	vm->gen = 1;
	vm->n[0] = vm->n[1] = 0;
	for (;;) {
		uint32_t c = 0;
		size_t clen = 1;
		int nxt = 1 - cur;

		if (!matched && (pos == start || !full)) {
			/* A new thread starting here, after (below) those started earlier. */
			memset(vm->work, 0xff, vm->nslots * sizeof(uint32_t));
			re_addthread(vm, cur, 0, pos);
		}
		if (pos < vm->len)
			c = re_decode(vm->s + pos, vm->len - pos, &clen);
		if (vm->n[cur] == 0) {
			/* No thread alive: done, unless a search may still start further on. */
			if (matched || full || pos >= vm->len)
				break;
			pos += clen;
			vm->gen++;    /* the failed start's marks are not the next position's */
			continue;
		}
		vm->gen++;
		vm->n[nxt] = 0;
		for (uint32_t i = 0; i < vm->n[cur]; i++) {
			uint32_t pc = vm->dense[cur][i];
			const struct re_inst *in = &prog[pc];
			uint32_t *tc = vm->tcaps[cur] + (size_t)i * vm->nslots;
			bool ok;

			vm->steps++;
			switch (in->op) {
			case OP_MATCH:
				if (full && pos != vm->len)
					continue;
				matched = true;
				if (vm->nslots)
					memcpy(best, tc, vm->nslots * sizeof(uint32_t));
				/* Threads after this one have lower priority: cut them. */
				i = vm->n[cur];
				continue;
			case OP_CHAR:
				ok = pos < vm->len &&
				     (c == in->x || (in->fold && c < 128 && (c | 0x20) == in->x));
				if (ok && full && in->y && re_tail_rest(vm, in, pos))
					return true;
				break;
			case OP_CLASS:
				ok = pos < vm->len && re_class_has(re, in->x, c);
				if (ok && full && in->y && re_tail_rest(vm, in, pos))
					return true;
				break;
			case OP_ANY:
			default: /* OP_ANYNL */
				ok = pos < vm->len && c != RE_BAD && (in->op == OP_ANYNL || c != '\n');
				if (ok && full && in->y && re_tail_rest(vm, in, pos))
					return true;
				break;
			}
			if (!ok)
				continue;
			if (vm->nslots)
				memcpy(vm->work, tc, vm->nslots * sizeof(uint32_t));
			re_addthread(vm, nxt, pc + 1, pos + clen);
		}
		if (pos >= vm->len)
			break;
		pos += clen;
		cur = nxt;
	}
	return matched;
}

/* Lays the VM out in buf (RE_STACK_VM bytes) or, for a larger program, in memory it
 * allocates (returned, for the caller to free). */
static void *re_vm_init(struct re_vm *vm, const struct re *re, const char *s, size_t len,
                        uint32_t nslots, uint32_t *buf)
{
	size_t n = re->ninst, words = n + 2 * n + 2 * n * nslots + 2 * (n + 1) + 2 * nslots;
	uint32_t *p = buf;
	void *heap = NULL;

	if (words * sizeof(uint32_t) > RE_STACK_VM)
		p = heap = xmalloc(words * sizeof(uint32_t));
	memset(vm, 0, sizeof(*vm));
	vm->re = re;
	vm->s = (const unsigned char *)s;
	vm->len = len;
	vm->nslots = nslots;
	vm->mark = p;
	p += n;
	vm->dense[0] = p;
	p += n;
	vm->dense[1] = p;
	p += n;
	vm->tcaps[0] = p;
	p += n * nslots;
	vm->tcaps[1] = p;
	p += n * nslots;
	vm->stack = p;
	p += 2 * (n + 1);
	vm->work = p;
	return heap;
}

bool re_full_match(const struct re *re, const char *s, size_t len)
{
	uint32_t buf[RE_STACK_VM / sizeof(uint32_t)];
	struct re_vm vm;
	void *heap;
	bool ok;

	if (len >= UINT32_MAX)
		return false;
	heap = re_vm_init(&vm, re, s, len, 0, buf);
	ok = re_exec(&vm, 0, true, NULL);
	free(heap);
	return ok;
}

bool re_search(const struct re *re, const char *s, size_t len, size_t start, long *caps,
               int ncap, uint64_t *steps)
{
	uint32_t buf[RE_STACK_VM / sizeof(uint32_t)], best[2 * 11];
	struct re_vm vm;
	uint32_t nslots;
	void *heap;
	bool ok;

	if (len >= UINT32_MAX || start > len)
		return false;
	if (ncap > re->ngroups + 1)
		ncap = re->ngroups + 1;
	if (ncap > 11)
		ncap = 11;
	nslots = ncap > 0 ? (uint32_t)ncap * 2 : 0;
	heap = re_vm_init(&vm, re, s, len, nslots, buf);
	ok = re_exec(&vm, start, false, best);
	if (steps)
		*steps = vm.steps;
	for (uint32_t i = 0; ok && i < nslots; i += 2) {
		bool set = best[i] != UINT32_MAX && best[i + 1] != UINT32_MAX;

		caps[i] = set ? (long)best[i] : -1;
		caps[i + 1] = set ? (long)best[i + 1] : -1;
	}
	free(heap);
	return ok;
}

int re_check_rewrite(const struct re *re, const char *rw, char *err, size_t errlen)
{
	int maxref = -1;

	for (const char *p = rw; *p; p++) {
		if (*p != '\\')
			continue;
		p++;
		if (*p == '\\')
			continue;
		if (*p >= '0' && *p <= '9') {
			if (*p - '0' > maxref)
				maxref = *p - '0';
			continue;
		}
		if (!*p)
			snprintf(err, errlen, "invalid rewrite pattern: \\ not allowed at end");
		else
			snprintf(err, errlen, "invalid rewrite pattern: \\%c (only \\0 to \\9 and \\\\)",
			         *p);
		return -1;
	}
	if (maxref > re->ngroups) {
		snprintf(err, errlen, "rewrite requests \\%d, but the regexp only has %d "
		         "parenthesized subexpressions", maxref, re->ngroups);
		return -1;
	}
	return 0;
}

static void re_rewrite(struct sbuf *out, const char *rw, const char *s, const long *caps, int ncap)
{
	const char *lit = rw;

	for (const char *p = rw; *p; p++) {
		int g;

		if (*p != '\\')
			continue;
		sbuf_add(out, lit, (size_t)(p - lit));
		p++;
		if (*p == '\\') {
			sbuf_addc(out, '\\');
		} else {
			g = *p - '0';
			if (g < ncap && caps[2 * g] >= 0)
				sbuf_add(out, s + caps[2 * g], (size_t)(caps[2 * g + 1] - caps[2 * g]));
		}
		lit = p + 1;
	}
	sbuf_adds(out, lit);
}

int re_global_replace(const struct re *re, const char *s, size_t len, const char *rw,
                      struct sbuf *out)
{
	long caps[2 * 10];
	int ncap = re->ngroups + 1 < 10 ? re->ngroups + 1 : 10, count = 0;
	size_t p = 0, lastend = (size_t)-1;

	while (p <= len) {
		size_t m0, m1;

		if (!re_search(re, s, len, p, caps, ncap, NULL))
			break;
		m0 = (size_t)caps[0];
		m1 = (size_t)caps[1];
		if (p < m0)
			sbuf_add(out, s + p, m0 - p);
		if (m0 == m1 && m0 == lastend) {
			/* An empty match where the previous one ended: RE2 copies one character
			 * and looks again after it. */
			size_t n = 1;

			if (p < len) {
				(void)re_decode((const unsigned char *)s + p, len - p, &n);
				sbuf_add(out, s + p, n);
			}
			p += n;
			continue;
		}
		re_rewrite(out, rw, s, caps, ncap);
		p = m1;
		lastend = p;
		count++;
	}
	if (count == 0) {
		sbuf_add(out, s, len);
		return 0;
	}
	if (p < len)
		sbuf_add(out, s + p, len - p);
	return count;
}
