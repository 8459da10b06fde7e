/* tls_mem: OpenSSL's memory for private keys kept out of core files (see tls_mem.h). */
#define OPENSSL_SUPPRESS_DEPRECATED     /* RSA_set_default_method: no provider equivalent */

#include "net/tls_mem.h"

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>

/* Per-thread caches in front of malloc for the two kinds of block OpenSSL allocates and
 * frees around every SSL_read/SSL_write of a busy connection (found with gdb on malloc
 * under tests/integration/test_alloc.py; they were the last heap calls of an HTTP/2
 * request, bench/findings.md):
 *   - small: the 40-byte WPACKET_SUB each record written (and some read) builds;
 *   - record buffers: net/tls.c sets SSL_MODE_RELEASE_BUFFERS so that an idle connection
 *     holds none (about 34 KiB each otherwise), and OpenSSL then allocates a read or
 *     write buffer for each call that needs one and frees it once empty.
 * A block is wiped when freed (mem_free), as every block OpenSSL frees is, before it is
 * kept; the caches give back only blocks of their own class. What a thread keeps is
 * bounded: MEM_SMALL_SLOTS x 56 B and MEM_REC_SLOTS x 40 KiB; a thread's caches are
 * freed when it exits. Under the shipped GLIBC_TUNABLES (tcache_count=1, deploy/) glibc's
 * own per-thread cache holds one block per size, so these calls would reach the arena. */
#define MEM_SMALL_MIN   25u             /* requests of 25..56 bytes get 56-byte blocks */
#define MEM_SMALL_SIZE  56u
#define MEM_SMALL_SLOTS 64
#define MEM_REC_MIN     (16u * 1024)    /* record buffers: 16..40 KiB */
#define MEM_REC_MAX     (40u * 1024)
#define MEM_REC_SLACK   (8u * 1024)     /* a kept block serves requests this much smaller */
#define MEM_REC_SLOTS   8

struct mem_cache {
	unsigned nsmall, nrec;
	void *small[MEM_SMALL_SLOTS];
	void *rec[MEM_REC_SLOTS];
	size_t rec_size[MEM_REC_SLOTS];         /* malloc_usable_size of rec[i] */
};

static _Thread_local struct mem_cache *mem_cache;
static pthread_key_t mem_cache_key;     /* its destructor frees a thread's cache at exit */
static pthread_once_t mem_cache_once = PTHREAD_ONCE_INIT;
static int mem_cache_key_ok;

static void mem_cache_free(void *arg)
{
	struct mem_cache *c = arg;

	for (unsigned i = 0; i < c->nsmall; i++)
		free(c->small[i]);
	for (unsigned i = 0; i < c->nrec; i++)
		free(c->rec[i]);
	free(c);
	mem_cache = NULL;
}

static void mem_cache_key_make(void)
{
	mem_cache_key_ok = pthread_key_create(&mem_cache_key, mem_cache_free) == 0;
}

/* This thread's caches, made at the first block kept (NULL: none can be made). */
static struct mem_cache *mem_cache_get(void)
{
	struct mem_cache *c = mem_cache;

	if (c)
		return c;
	pthread_once(&mem_cache_once, mem_cache_key_make);
	if (!mem_cache_key_ok || !(c = calloc(1, sizeof(*c))))
		return NULL;
	if (pthread_setspecific(mem_cache_key, c) != 0) {
		free(c);
		return NULL;
	}
	mem_cache = c;
	return c;
}

static void *mem_malloc(size_t n, const char *file, int line)
{
	struct mem_cache *c = mem_cache;

	(void)file;
	(void)line;
	if (n >= MEM_SMALL_MIN && n <= MEM_SMALL_SIZE) {
		if (c && c->nsmall)
			return c->small[--c->nsmall];
		return malloc(MEM_SMALL_SIZE);
	}
	if (c && n >= MEM_REC_MIN && n <= MEM_REC_MAX) {
		for (unsigned i = c->nrec; i-- > 0;) {
			if (c->rec_size[i] >= n && c->rec_size[i] - n <= MEM_REC_SLACK) {
				void *p = c->rec[i];

				c->nrec--;
				c->rec[i] = c->rec[c->nrec];
				c->rec_size[i] = c->rec_size[c->nrec];
				return p;
			}
		}
	}
	return malloc(n);
}

/* Keeps a freed (wiped) block of size usable bytes in this thread's cache of its class;
 * false when it is of neither class or that cache is full. */
static bool mem_keep(void *p, size_t size)
{
	struct mem_cache *c;

	if (size >= MEM_SMALL_SIZE && size < MEM_SMALL_SIZE + 16) {
		if (!(c = mem_cache_get()) || c->nsmall >= MEM_SMALL_SLOTS)
			return false;
		c->small[c->nsmall++] = p;
		return true;
	}
	if (size >= MEM_REC_MIN && size <= MEM_REC_MAX + MEM_REC_SLACK) {
		if (!(c = mem_cache_get()) || c->nrec >= MEM_REC_SLOTS)
			return false;
		c->rec[c->nrec] = p;
		c->rec_size[c->nrec] = size;
		c->nrec++;
		return true;
	}
	return false;
}

static void mem_free(void *p, const char *file, int line)
{
	size_t size;

	(void)file;
	(void)line;
	if (!p)
		return;
	size = malloc_usable_size(p);
	/* explicit_bzero: a memset before free could be optimised away. */
	explicit_bzero(p, size);
	if (!mem_keep(p, size))
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
