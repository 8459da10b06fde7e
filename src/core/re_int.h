/* re_int.h: what the compiler (re_comp.c) and the VM (re.c) share: the program's
 * instructions and classes, and UTF-8 decoding. Not for use outside src/core/re*.c. */
#ifndef EGRESS_CORE_RE_INT_H
#define EGRESS_CORE_RE_INT_H

#include "core/re.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RE_NONE UINT32_MAX
#define RE_BAD 0x110000u       /* an input byte that starts no valid UTF-8 sequence */
#define RE_MAXCP 0x10FFFFu

enum re_flag { F_I = 1, F_M = 2, F_S = 4, F_U = 8 };
enum re_kind { N_EMPTY, N_LIT, N_CLASS, N_ANY, N_ASSERT, N_CAT, N_ALT, N_REP, N_CAP };
enum re_assert { A_BOT, A_EOT, A_BOL, A_EOL, A_WB, A_NWB };
enum re_op { OP_CHAR, OP_CLASS, OP_ANY, OP_ANYNL, OP_SPLIT, OP_JMP, OP_SAVE, OP_ASSERT, OP_MATCH };

struct re_range {
	uint32_t lo, hi;
};

struct re_node {
	uint8_t kind;
	bool fold, greedy, nl;     /* N_LIT: ASCII case fold; N_REP: greedy; N_ANY: matches \n */
	int32_t a, b;              /* LIT: code point; CLASS: class index; REP: min, max (-1);
	                            * CAP: group; ASSERT: kind */
	uint32_t child, next;      /* first child, next sibling (RE_NONE: none) */
	uint32_t last;             /* CAT/ALT: last child, for appending */
};

struct re_class {
	uint32_t ascii[4];         /* bitmap of code points < 128 */
	uint32_t first, n;         /* ranges in re->ranges, sorted, disjoint */
};

struct re_inst {
	uint8_t op;
	uint8_t fold;              /* OP_CHAR */
	uint32_t x, y;
};

struct re {
	struct re_inst *prog;
	uint32_t ninst;
	int ngroups;
	struct re_class *classes;
	size_t nclasses;
	struct re_range *ranges;
	size_t nranges;
};

/* Decodes one UTF-8 character of s (len > 0 bytes). An invalid sequence is RE_BAD, one
 * byte long. */
uint32_t re_decode(const unsigned char *s, size_t len, size_t *n);
/* [0-9A-Za-z_], for \\b and named groups. */
bool re_is_word(unsigned c);

#endif
