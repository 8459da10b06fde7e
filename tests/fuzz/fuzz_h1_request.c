/* libFuzzer harness: HTTP/1.1 request heads. Checks that parsing never reads out of
 * bounds, that spans stay inside the head, that one call and many calls agree, and runs
 * the chunked decoder and the next pipelined request on what follows the head. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h1_fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct h1_msg m, m2;
	size_t off = 0;

	/* up to three pipelined messages */
	for (int n = 0; n < 3 && off <= size; n++) {
		int rc = fz_parse_both_ways(data + off, size - off, true, 0, &m, &m2);

		if (rc != H1_OK)
			break;
		off += m.head_len;
		if (m.body == H1_BODY_CHUNKED) {
			size_t used;
			uint64_t payload, hash = 0;
			if (fz_chunked_all((const char *)data + off, size - off, &used, &payload,
			                   &hash) != H1_OK)
				break;
			off += used;
		} else if (m.body == H1_BODY_LENGTH) {
			if (m.content_length > size - off)
				break;
			off += (size_t)m.content_length;
		}
	}
	return 0;
}
