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
struct l4tls;

/* Client side (sidecar): io's fd is connected to the cluster's endpoint; a TLS client of
 * the cluster's context (its SNI, else host; its subjectAltNames, else host when it
 * verifies the host name) is started on it, and io is given the plain end of a socketpair
 * instead (unregistered). done(arg, err) is called once, from the loop (never before this
 * returns), when the handshake has ended: err NULL, the plain end then relays; or the
 * failure's reason (tls_conn_error's, or a timeout), the relay then ends. The owner
 * should not use the plain end before that (the connection is not made yet: Envoy's
 * upstream connection is connected once its TLS is). *out gets the relay, for
 * l4tls_cancel. Returns 0, or -1 with errno (io unchanged, done never called). */
int l4tls_wrap_client(struct worker *w, struct loop_io *io, const struct cluster *cl,
                      const char *host, void (*done)(void *arg, const char *err), void *arg,
                      struct l4tls **out);

/* The owner of a client relay whose done has not been called yet goes away: done will
 * not be called, and a relay still in its handshake ends (there is nothing to relay). */
void l4tls_cancel(struct l4tls *r);

/* Server side (gateway): tls is a finished server handshake on fd (unregistered). The
 * relay takes both; returns the plain fd for the tunnel, or -1 (tls and fd then still
 * the caller's). */
int l4tls_wrap_server(struct worker *w, struct tls_conn *tls, int fd);

/* Frees every relay of the worker, closing their sockets (the worker's loop has
 * stopped). */
void l4tls_close_all(struct worker *w);

#endif
