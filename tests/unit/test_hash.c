/* Tests for core/util's hash_bytes and hash_bytes_lower: the case-insensitive one must equal
 * the plain one over the lower-cased bytes (route and snapshot tables rely on it), every
 * length and every byte counts (the word-at-a-time tail is zero-padded), and the LOW bits,
 * which the open-addressing tables use as the bucket, spread keys that differ in one byte
 * (pool keys differ only in an address or a name near their end). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

static void lower_equals_plain_over_lowered_bytes(void **state)
{
	unsigned char s[80], l[80];
	uint32_t r = 12345;

	(void)state;
	for (int round = 0; round < 2000; round++) {
		size_t n = (size_t)(round % 70);

		for (size_t i = 0; i < n; i++) {
			r = r * 1103515245u + 12345u;
			/* mostly letters of both cases, some digits, punctuation and high bytes */
			s[i] = (unsigned char)((r >> 16) & 0xff);
			if ((r >> 8) % 4 != 0)
				s[i] = (unsigned char)((r >> 16) % 2 ? 'A' + (r >> 18) % 26 : 'a' + (r >> 18) % 26);
			l[i] = (unsigned char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
		}
		assert_true(hash_bytes_lower(s, n) == hash_bytes(l, n));
		assert_true(hash_bytes_lower(l, n) == hash_bytes(l, n));
	}
	/* the bytes just outside A-Z are not changed: '@', '[' (Z+1), 0xc1, 0xda */
	assert_true(hash_bytes_lower("@[", 2) == hash_bytes("@[", 2));
	assert_true(hash_bytes_lower("\xc1\xda", 2) == hash_bytes("\xc1\xda", 2));
	assert_true(hash_bytes_lower("@[", 2) != hash_bytes("`{", 2));
}

static void every_byte_and_the_length_count(void **state)
{
	char a[64], b[64];

	(void)state;
	assert_true(hash_bytes("a", 1) != hash_bytes("a\0", 2));
	assert_true(hash_bytes("", 0) != hash_bytes("\0", 1));
	for (size_t n = 1; n <= 40; n++) {
		memset(a, 'x', n);
		for (size_t i = 0; i < n; i++) {
			memcpy(b, a, n);
			b[i] ^= 1;
			assert_true(hash_bytes(a, n) != hash_bytes(b, n));
		}
	}
}

/* 4096 pool-key-like strings that differ only in the last octet and port, into 1024 buckets
 * by the low bits: no bucket may hold more than a handful (a weak low half would put them
 * into a few buckets). */
static void low_bits_spread_keys_that_differ_at_the_end(void **state)
{
	unsigned count[1024] = { 0 }, max = 0;
	char k[96];

	(void)state;
	for (int i = 0; i < 4096; i++) {
		int n = snprintf(k, sizeof(k), "9f3c2a71d04e5b68|10.1.%d.%d:443|api.example.com|api.example.com",
		                 i / 256, i % 256);
		unsigned c = ++count[hash_bytes(k, (size_t)n) & 1023];

		if (c > max)
			max = c;
	}
	assert_true(max <= 14);   /* a uniform hash gives about 10 at most here */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lower_equals_plain_over_lowered_bytes),
		cmocka_unit_test(every_byte_and_the_length_count),
		cmocka_unit_test(low_bits_spread_keys_that_differ_at_the_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
