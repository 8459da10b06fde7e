/* tunnel: opaque TCP relays of the sidecar (TLS passed through by SNI, CONNECT tunnels,
 * protocols the sidecar does not understand), as Envoy's tcp_proxy.
 *
 * fwd_down_h1.c accepts the connection, fwd_sidecar.c looks at its first bytes, routes
 * it, and hands the socket over with tun_start(): from then on the tunnel owns it. A tunnel picks an
 * endpoint (the cluster's, the original destination, or a name resolved on the worker's
 * resolver), connects, and copies bytes both ways until both directions have ended
 * (half-close is passed on with shutdown(SHUT_WR)) or either side fails. Each direction
 * holds at most one buffer of bytes: while it is not written out, the other side is not
 * read (back-pressure without unbounded memory).
 *
 * A CONNECT tunnel answers "HTTP/1.1 200 Connection established" once the upstream
 * connection is made, or an HTTP error (503 UF, 503 DF, 503 UH) when it cannot be; other
 * tunnels simply close on failure. One access log line per tunnel, when it ends: for
 * CONNECT the request's line, for the others Envoy's TCP line ("- - -", response code 0).
 *
 * Tunnels count as downstream connections of their worker (drain waits for them, up to
 * --drain-timeout). Worker thread only. */
#ifndef EGRESS_PROXY_TUNNEL_H
#define EGRESS_PROXY_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/loop.h"
#include "net/sock.h"

struct worker;
struct snap;
struct cluster;

/* What a tunnel needs; everything is copied (except snap, which gets a reference, and
 * cl, which must belong to snap or be one of sidecar.h's static clusters). */
struct tun_req {
	int fd;                          /* the downstream socket; the tunnel owns it now */
	/* fd's registration with the worker's loop, when it has one (the HTTP side's): the
	 * tunnel takes it over (loop_io_move; *reg is left unregistered with fd -1). */
	struct loop_io *reg;
	const char *local_s, *remote_s;  /* downstream addresses as logged */
	const char *initial;             /* bytes already read from the client, sent first */
	size_t ninitial;
	struct snap *snap;
	struct cluster *cl;              /* PassthroughCluster, BlackHoleCluster or a cluster */
	const char *route_name;          /* "allow_any" or NULL */
	/* Where to connect when the cluster has no endpoints of its own (original
	 * destination): dst when known, else name:port resolved on the worker. */
	const struct sock_addr *dst;
	const char *name;
	uint16_t port;
	const char *sni;                 /* REQUESTED_SERVER_NAME, or NULL */
	/* A tls:/tcp: route's destination whose DestinationRule originates TLS: the upstream
	 * connection gets that TLS (l4tls.c). Other tunnels relay bytes as they are. */
	bool originate_tls;
	/* CONNECT: answer with a status line; the request's fields for the log line. */
	bool connect;
	const char *authority, *user_agent, *request_id, *protocol;
	/* A refusal decided before the tunnel (fail_flags != 0, or fail_denied): the tunnel
	 * only answers (CONNECT: fail_code), logs with these, and closes, never connecting
	 * upstream. cl may then be NULL. fail_denied: an AuthorizationPolicy denial, which
	 * Envoy logs with details but no response flag. */
	int fail_code;
	unsigned fail_flags;
	const char *fail_details, *fail_reason;
	bool fail_denied;
	int64_t start_wall_ms;           /* when the connection (or CONNECT request) began */
	uint64_t start_ms;               /* same, on the loop's monotonic clock */
};

/* Starts a tunnel. Never fails: problems end it (and are logged) later. */
void tun_start(struct worker *w, const struct tun_req *r);
/* Closes every tunnel of the worker (shutdown, after its thread stopped). */
void tun_close_all(struct worker *w);

#endif
