/* libFuzzer harness: chunked body decoder. Decodes the input in one go, then again with
 * reads split at input-derived points, each call seeing an exact-size heap copy of the
 * unconsumed bytes (so ASan catches reads past len), and checks that both agree on the
 * verdict, the bytes consumed, the payload (hashed) and the trailer fields. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h1_fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct h1_chunked c;
	char *whole = malloc(size ? size : 1);
	uint64_t payload, hash = 1469598103934665603ull, hash2 = hash, payload2 = 0;
	uint64_t rs = fz_seed(data, size);
	size_t consumed, base = 0, end = 0;
	int rc, rc2 = H1_AGAIN;
	const char *reason = NULL;

	memcpy(whole, data, size);
	rc = fz_chunked_all(whole, size, &consumed, &payload, &hash);
	free(whole);

	h1_chunked_init(&c);
	while (rc2 == H1_AGAIN && end < size) {
		end += 1 + fz_next(&rs) % (size / 6 + 2);
		if (end > size)
			end = size;
		for (;;) {
			size_t n = end - base, used;
			char *piece = malloc(n ? n : 1);
			struct h1_span d, t;

			memcpy(piece, data + base, n);
			rc2 = h1_chunked_feed(&c, piece, n, &used, &d, &t);
			FZ_CHECK(used <= n);
			if (rc2 == H1_DATA) {
				FZ_CHECK(d.len > 0 && d.off + d.len == used);
				for (uint32_t i = 0; i < d.len; i++)
					hash2 = (hash2 ^ (unsigned char)piece[d.off + i]) * 1099511628211ull;
				payload2 += d.len;
			}
			if (rc2 == H1_OK) {
				struct h1_header f[H1_MAX_HEADERS];
				unsigned nf;
				FZ_CHECK(t.off + t.len == used);
				FZ_CHECK(h1_parse_trailers(piece + t.off, t.len, f, H1_MAX_HEADERS, &nf) == 0);
				for (unsigned i = 0; i < nf; i++)
					hash2 = (hash2 ^ f[i].name.len ^ ((uint64_t)f[i].value.len << 20)) *
					        1099511628211ull;
			}
			free(piece);
			base += used;
			if (rc2 != H1_DATA)
				break;
		}
		reason = c.reason;
	}
	if (size == 0) {
		size_t used;
		struct h1_span d;
		rc2 = h1_chunked_feed(&c, (const char *)data, 0, &used, &d, NULL);
	}
	FZ_CHECK(rc2 == rc);
	FZ_CHECK(base == consumed);
	FZ_CHECK(payload2 == payload);
	FZ_CHECK(hash2 == hash);
	if (rc == H1_ERROR)
		FZ_CHECK(reason != NULL);
	return 0;
}
