/* sni: reads the server name of a TLS ClientHello from the first bytes of a connection,
 * without terminating anything (Envoy's tls_inspector).
 *
 * The reader is given everything received so far and answers each time from the start:
 * callers append and ask again until the answer is not SNI_NEED_MORE. It reassembles a
 * ClientHello split across TCP reads and across several handshake records (large
 * post-quantum key shares do that), and never reads past len. Bounded: a hello larger
 * than SNI_HELLO_MAX (records included) is SNI_TOO_LONG rather than waited for. The name
 * is returned lower-cased, without a trailing dot, and only when it is a plausible host
 * name (letters, digits, '-', '.', '_', at most 253 bytes): anything else is
 * SNI_BAD_NAME, so that a caller routing on names cannot be steered by a name that does
 * not mean what it looks like. */
#ifndef EGRESS_NET_SNI_H
#define EGRESS_NET_SNI_H

#include <stddef.h>

/* Real ClientHellos are well under 4 KiB, even with post-quantum key shares. */
#define SNI_HELLO_MAX (16 * 1024)

enum sni_status {
	SNI_OK,          /* a complete ClientHello with a server_name: in sni */
	SNI_NEED_MORE,   /* a plausible beginning: read more */
	SNI_NO_NAME,     /* a complete ClientHello without server_name (or no extensions) */
	SNI_BAD_NAME,    /* a server_name that is not a host name (or does not fit in n) */
	SNI_NOT_TLS,     /* not a TLS handshake record, or a handshake that is not a ClientHello */
	SNI_MALFORMED,   /* a ClientHello whose lengths do not add up */
	SNI_TOO_LONG,    /* over SNI_HELLO_MAX */
};

/* Reads buf[0..len). sni (size n) receives the name for SNI_OK and "" otherwise. */
enum sni_status sni_read(const unsigned char *buf, size_t len, char *sni, size_t n);
/* "ok", "need_more", "no_name", "bad_name", "not_tls", "malformed", "too_long". */
const char *sni_status_name(enum sni_status s);

#endif
