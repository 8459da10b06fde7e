/* tls_mem: OpenSSL's memory for private keys kept out of core files (see tls_mem.h). */
#define OPENSSL_SUPPRESS_DEPRECATED     /* RSA_set_default_method: no provider equivalent */

#include "net/tls_mem.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>

static void *mem_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n);
}

static void mem_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (!p)
		return;
	/* explicit_bzero: a memset before free could be optimised away. */
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

/* realloc without leaving the old block's bytes behind when it moves. */
static void *mem_realloc(void *p, size_t n, const char *file, int line)
{
	size_t old;
	void *q;

	if (!p)
		return mem_malloc(n, file, line);
	if (n == 0) {
		mem_free(p, file, line);
		return NULL;
	}
	old = malloc_usable_size(p);
	if (n <= old)
		return p;
	q = malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, old);
	mem_free(p, file, line);
	return q;
}

static int (*rsa_init_orig)(RSA *rsa);

/* OpenSSL's RSA init turns RSA_FLAG_CACHE_PRIVATE on; this turns it off again. */
static int rsa_init_no_cache(RSA *rsa)
{
	int ok = rsa_init_orig ? rsa_init_orig(rsa) : 1;

	RSA_clear_flags(rsa, RSA_FLAG_CACHE_PRIVATE);
	return ok;
}

unsigned tls_mem_init(size_t secure_size)
{
	unsigned got = 0;
	int rc;

	if (CRYPTO_set_mem_functions(mem_malloc, mem_realloc, mem_free))
		got |= TLS_MEM_WIPE_ON_FREE;
	rc = CRYPTO_secure_malloc_init(secure_size, 32);
	if (rc == 1)
		got |= TLS_MEM_SECURE_HEAP | TLS_MEM_LOCKED;
	else if (rc == 2)
		got |= TLS_MEM_SECURE_HEAP;
	{
		RSA_METHOD *m = RSA_meth_dup(RSA_PKCS1_OpenSSL());

		/* Kept for the process's lifetime: every RSA key made from now on uses it. */
		if (m) {
			rsa_init_orig = RSA_meth_get_init(m);
			if (RSA_meth_set_init(m, rsa_init_no_cache)) {
				RSA_set_default_method(m);
				got |= TLS_MEM_RSA_NO_CACHE;
			}
		}
	}
	return got;
}
