/* l4tls: a TLS layer under a tunnel (tunnel.h), for the older form of Istio's egress
 * gateway task, where the sidecar wraps the application's own TLS in mutual TLS to the
 * gateway and the gateway forwards the inner bytes by tcp:/tls: routes:
 *
 *   app ─TLS─▶ sidecar tunnel ─plain─▶ [l4tls client] ═ISTIO_MUTUAL═▶ [l4tls server]
 *        ─plain─▶ gateway tunnel ─TLS (the app's)─▶ upstream
 *
 * The tunnel relays plain bytes on an fd as it always does; this module sits between that
 * fd (one end of a socketpair) and the TLS connection on the real socket, and copies
 * bytes both ways: decrypted ones to the socketpair, the socketpair's into TLS. An end of
 * stream is passed on as a half-close (shutdown(SHUT_WR) on the socketpair, close_notify
 * on TLS); the relay frees itself once both directions have ended, or at once on an
 * error (the tunnel then sees its end closed, and logs). Each direction holds one buffer
 * at most and stops reading while it is not written out (back-pressure).
 *
 * Worker thread only. The relays of a worker are on a list its owner frees with
 * l4tls_close_all (after the worker's loop has stopped). */
#ifndef EGRESS_PROXY_L4TLS_H
#define EGRESS_PROXY_L4TLS_H

#include "net/loop.h"
#include "net/tls.h"

struct worker;
struct cluster;

/* Client side (sidecar): io's fd is connected to the cluster's endpoint; a TLS client of
 * the cluster's context (its SNI, else host; its subjectAltNames, else host when it
 * verifies the host name) is started on it, and io is given the plain end of a socketpair
 * instead (unregistered; the caller sets its interest). Returns 0, or -1 with errno (io
 * unchanged). */
int l4tls_wrap_client(struct worker *w, struct loop_io *io, const struct cluster *cl,
                      const char *host);

/* Server side (gateway): tls is a finished server handshake on fd (unregistered). The
 * relay takes both; returns the plain fd for the tunnel, or -1 (tls and fd then still
 * the caller's). */
int l4tls_wrap_server(struct worker *w, struct tls_conn *tls, int fd);

/* Frees every relay of the worker, closing their sockets (the worker's loop has
 * stopped). */
void l4tls_close_all(struct worker *w);

#endif
