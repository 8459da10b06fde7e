/* tls_mem: where OpenSSL keeps private keys, so that none reaches a core file.
 *
 * tls_mem_init, first thing in a process that loads keys (before any OpenSSL call):
 *   - OpenSSL's secure heap (CRYPTO_secure_malloc_init: an mmap'ed arena, mlocked when
 *     RLIMIT_MEMLOCK allows, MADV_DONTDUMP always): the private BIGNUMs of every key
 *     OpenSSL loads, the PEM text it reads for them, and the temporaries of private-key
 *     operations are allocated there; egressgw puts the Secret values it caches for keys
 *     there too (secrets/secret.c);
 *   - OpenSSL's other allocations are wiped when freed (CRYPTO_set_mem_functions): the
 *     decoders pass DER and octet strings through ordinary buffers, which would otherwise
 *     linger in freed heap memory; of those, the blocks OpenSSL allocates around every
 *     SSL_read/SSL_write (record buffers, 56-byte WPACKET blocks) are kept, wiped, per
 *     thread for its next ones (bounded; freed at the thread's exit);
 *   - RSA keys do not cache Montgomery contexts for their primes (the default RSA
 *     method without RSA_FLAG_CACHE_PRIVATE): the cache holds a copy of p and q in
 *     ordinary memory for the key's lifetime. It is built per private operation instead
 *     (one per handshake with a client certificate) and wiped when freed. */
#ifndef EGRESS_NET_TLS_MEM_H
#define EGRESS_NET_TLS_MEM_H

#include <stddef.h>

/* What tls_mem_init could set up (bits). */
#define TLS_MEM_SECURE_HEAP   1u      /* the secure heap exists (never dumped) */
#define TLS_MEM_LOCKED        2u      /* and is locked in memory (never swapped) */
#define TLS_MEM_WIPE_ON_FREE  4u      /* OpenSSL's freed memory is wiped */
#define TLS_MEM_RSA_NO_CACHE  8u      /* RSA keys keep no copy of their primes */

/* secure_size: a power of two. Returns the TLS_MEM_* bits that hold. */
unsigned tls_mem_init(size_t secure_size);

#endif
