/* linger: the lingering close of a downstream connection (nginx's lingering_close,
 * Apache's lingering close).
 *
 * When a server close()s a TCP socket whose receive queue holds unread bytes, or which
 * receives bytes after the close, the kernel answers with a reset, and a reset discards
 * what the server had written but the client had not yet received: the GOAWAY
 * (ENHANCE_YOUR_CALM) that says why an HTTP/2 flood was cut off, the 400/413/431 of an
 * HTTP/1.1 request whose body was still arriving. So a connection we end while the client
 * may still be sending is not closed at once: its write side is shut (FIN after the last
 * byte written), and what the client still sends is read and dropped until it closes its
 * end or LINGER_MS pass. The descriptor stays counted against --max-connections until it
 * is closed (worker_dcx_closed), and at most LINGER_MAX connections per worker linger:
 * past that, or when the proxy's connections are within 1/8 of --max-connections, a
 * close is immediate, so lingering cannot be used to hold descriptors.
 *
 * Worker thread only. The lingering sockets of a worker are on a list its owner frees
 * with linger_close_all (after the worker's loop has stopped). */
#ifndef EGRESS_PROXY_LINGER_H
#define EGRESS_PROXY_LINGER_H

#include <stdbool.h>

struct worker;

#define LINGER_MS  2000
#define LINGER_MAX 256

/* Closes fd, a downstream socket whose TLS (if any) has been shut down already, and
 * calls worker_dcx_closed for it (now or when the linger ends). It lingers when the
 * client has sent bytes we did not read, or when may_send says the protocol lets the
 * client go on sending without waiting for us (HTTP/2); never when the client has closed
 * its end already. The caller forgets fd (it must have been removed from the loop). */
void linger_close(struct worker *w, int fd, bool may_send);

/* Closes every lingering socket of w (worker stopped). */
void linger_close_all(struct worker *w);

#endif
