/* libFuzzer harness: the credential loader's PEM handling. The input is split into up to
 * four parts (certificate chain, private key, CA bundle, CRL) at lines "--8<--"; each part
 * goes, as a credential's bytes would, to tls_cert_info_pem (what /certs and proxy-config
 * secret show) and all of them to tls_client_ctx_new and tls_server_ctx_new (what a
 * DestinationRule or a Gateway server builds). Checks: no crash, no leak, and an error
 * message never repeats key material: no base64 line of the key part (20 bytes or more)
 * may appear in it (the messages name sources and checks, never bytes). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "net/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEP "\n--8<--\n"

/* A line of PEM body: base64 only (no spaces, colons or dots, which every message has). */
static bool base64_line(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') ||
		      (p[i] >= '0' && p[i] <= '9') || p[i] == '+' || p[i] == '/' || p[i] == '='))
			return false;
	return true;
}

/* True if err holds a base64 line (20 bytes or more) of the key part: key material. */
static bool leaks_key(const char *err, const char *key, size_t klen)
{
	size_t start = 0;

	for (size_t i = 0; i <= klen; i++) {
		if (i == klen || key[i] == '\n' || key[i] == '\r') {
			size_t l = i - start;

			if (l >= 20 && base64_line(key + start, l)) {
				char *line = strndup(key + start, l);
				bool hit = line && strstr(err, line) != NULL;

				free(line);
				if (hit)
					return true;
			}
			start = i + 1;
		}
	}
	return false;
}

static void check_err(const struct sbuf *err, const struct tls_pem *key)
{
	if (err->len && key->data && leaks_key(sbuf_str(err), key->data, key->len))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_pem part[4];
	const char *p = (const char *)data, *end = p + size;
	int n = 0;

	if (size > 64 * 1024)
		return 0;
	memset(part, 0, sizeof(part));
	while (n < 4 && p <= end) {
		const char *q = memmem(p, (size_t)(end - p), SEP, sizeof(SEP) - 1);
		size_t l = q ? (size_t)(q - p) : (size_t)(end - p);

		part[n].data = p;
		part[n].len = l;
		part[n].label = "fuzz";
		n++;
		if (!q)
			break;
		p = q + sizeof(SEP) - 1;
	}
	for (int i = 0; i < n; i++) {
		struct tls_cert_info info;
		struct sbuf err = SBUF_INIT;

		if (part[i].len)
			tls_cert_info_pem(part[i].data, part[i].len, &info, &err);
		check_err(&err, &part[1]);
		sbuf_free(&err);
	}
	{
		struct tls_client_params cp;
		struct sbuf err = SBUF_INIT;
		struct tls_ctx *ctx;

		memset(&cp, 0, sizeof(cp));
		if (n > 0 && part[0].len)
			cp.cert = part[0];
		if (n > 1 && part[1].len)
			cp.key = part[1];
		if (n > 2 && part[2].len)
			cp.ca = part[2];
		if (n > 3 && part[3].len)
			cp.crl = part[3];
		/* Without a CA part the system store would be loaded on every input: a
		 * hundredfold slower and nothing of the input exercised. */
		cp.insecure_skip_verify = !cp.ca.data && !cp.crl.data;
		ctx = tls_client_ctx_new(&cp, &err);
		check_err(&err, &part[1]);
		tls_ctx_unref(ctx);
		sbuf_free(&err);
	}
	if (n > 1 && part[0].len && part[1].len) {
		struct tls_server_params sp;
		struct sbuf err = SBUF_INIT;
		struct tls_ctx *ctx;

		memset(&sp, 0, sizeof(sp));
		sp.cert = part[0];
		sp.key = part[1];
		if (n > 2 && part[2].len)
			sp.client_ca = part[2];
		if (n > 3 && part[3].len && sp.client_ca.data)
			sp.crl = part[3];
		ctx = tls_server_ctx_new(&sp, &err);
		check_err(&err, &part[1]);
		tls_ctx_unref(ctx);
		sbuf_free(&err);
	}
	return 0;
}
