/* libFuzzer harness: HTTP/1.1 response heads. The first byte picks the method of the
 * request being answered (GET, HEAD, CONNECT, POST), since it changes the framing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h1_fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int methods[4] = { H1_M_GET, H1_M_HEAD, H1_M_CONNECT, H1_M_POST };
	static struct h1_msg m, m2;
	int method, rc;

	if (size == 0)
		return 0;
	method = methods[data[0] & 3];
	rc = fz_parse_both_ways(data + 1, size - 1, false, method, &m, &m2);
	if (rc == H1_OK) {
		FZ_CHECK(m.method_id == method);
		if (method == H1_M_HEAD || m.status < 200 || m.status == 204 || m.status == 304)
			FZ_CHECK(m.body == H1_BODY_NONE);
		if (m.body == H1_BODY_CHUNKED) {
			size_t used;
			uint64_t payload, hash = 0;
			(void)fz_chunked_all((const char *)data + 1 + m.head_len,
			                     size - 1 - m.head_len, &used, &payload, &hash);
		}
	}
	return 0;
}
