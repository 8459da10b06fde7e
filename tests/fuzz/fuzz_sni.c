/* libFuzzer harness: the ClientHello server-name reader (net/sni.c), which reads the first
 * bytes of every connection on a gateway PASSTHROUGH port and of every TLS connection the
 * sidecar captures, before anything is authenticated. Checks, beyond no crash and no
 * read past the input: the status is one of the enum's; a name is returned only with
 * SNI_OK and is a lower-case host name; and the answer is stable as bytes arrive: when a
 * prefix of the input already gives a final answer, the whole input gives the same one
 * (the data path decides on the first final answer). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(enum sni_status st, const char *sni)
{
	size_t n = strlen(sni);

	if (st > SNI_TOO_LONG)
		abort();
	if (st != SNI_OK) {
		if (n)
			abort();
		return;
	}
	if (n == 0 || n > 253)
		abort();
	for (size_t i = 0; i < n; i++) {
		char c = sni[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == '_'))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char full[256], part[256];
	enum sni_status st = sni_read(data, size, full, sizeof(full));
	size_t cuts[3] = { size / 3, size / 2, size ? size - 1 : 0 };

	check_name(st, full);
	for (size_t i = 0; i < 3 && size; i++) {
		enum sni_status ps = sni_read(data, cuts[i], part, sizeof(part));

		check_name(ps, part);
		if (ps != SNI_NEED_MORE && (ps != st || strcmp(part, full) != 0))
			abort();
	}
	return 0;
}
