/* sock: socket addresses and the few socket calls a proxy makes.
 *
 * Every socket made here is nonblocking and close-on-exec, and TCP sockets get
 * TCP_NODELAY (a proxy forwards what it has; Nagle would only add latency). Functions
 * return 0 or a file descriptor on success and -1 with errno set on failure; the caller
 * formats errno (strerror) into whatever reason it reports. */
#ifndef EGRESS_NET_SOCK_H
#define EGRESS_NET_SOCK_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 socket address with its length. Plain value: copy it freely. */
struct sock_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
		struct sockaddr_storage ss;
	} u;
	socklen_t len;
};

/* Longest "[ffff:...:255.255.255.255%scope]:65535" plus NUL, with room to spare. */
#define SOCK_ADDR_STRLEN 80

/* Parses "ADDR:PORT" (IPv4 dotted quad), "[V6]:PORT" (brackets required for IPv6; a
 * "%scope" suffix is accepted), or a bare "PORT" (meaning 0.0.0.0:PORT). Names are not
 * resolved here (see dns.h). Port 0..65535. Returns 0, or -1 with errno = EINVAL. */
int sock_addr_parse(const char *s, struct sock_addr *out);
/* Builds an address from an IP literal without brackets ("10.0.0.1", "::1") and a port.
 * Returns 0, or -1 with errno = EINVAL if ip is not an IP literal. */
int sock_addr_from_ip(const char *ip, uint16_t port, struct sock_addr *out);
/* True if s is an IPv4 or IPv6 literal (no brackets, no port). */
bool sock_is_ip_literal(const char *s);

uint16_t sock_addr_port(const struct sock_addr *a);
void sock_addr_set_port(struct sock_addr *a, uint16_t port);
int sock_addr_family(const struct sock_addr *a);            /* AF_INET or AF_INET6 */
/* Same family, address and port (and scope for IPv6). */
bool sock_addr_equal(const struct sock_addr *a, const struct sock_addr *b);

/* Formats "127.0.0.1:443" or "[::1]:443" into buf (size n, SOCK_ADDR_STRLEN is enough) and
 * returns buf. An IPv4-mapped IPv6 address prints as IPv4 ("::ffff:1.2.3.4" -> "1.2.3.4"),
 * as it does in Envoy's access log. Never fails: an unknown family prints "-". */
const char *sock_addr_str(const struct sock_addr *a, char *buf, size_t n);
/* The address alone, without port or brackets: "127.0.0.1", "::1". */
const char *sock_addr_ip_str(const struct sock_addr *a, char *buf, size_t n);

/* Flags for sock_listen. */
#define SOCK_REUSEPORT   0x01u  /* SO_REUSEPORT: one listener per worker on the same port */
#define SOCK_V6ONLY      0x02u  /* IPV6_V6ONLY on an IPv6 listener (default: dual stack) */
#define SOCK_TRANSPARENT 0x04u  /* IP_TRANSPARENT, for a TPROXY sidecar listener (needs
                                 * CAP_NET_ADMIN) */

/* socket + SO_REUSEADDR (+ the flags) + bind + listen, nonblocking and close-on-exec.
 * backlog <= 0 means SOMAXCONN. Returns the fd or -1 with errno (EADDRINUSE...). */
int sock_listen(const struct sock_addr *a, int backlog, unsigned flags);
/* Whether some socket already listens on a (another process's, or one of ours): binds a
 * socket without SO_REUSEPORT (with SO_REUSEADDR, so TIME_WAIT leftovers do not count),
 * which the kernel refuses next to a listening socket even when that one has
 * SO_REUSEPORT, and closes it again without listening. Returns 1 (in use), 0 (free), or
 * -1 with errno for any other failure (EADDRNOTAVAIL, EACCES...). */
int sock_addr_in_use(const struct sock_addr *a);
/* accept4(NONBLOCK|CLOEXEC) + TCP_NODELAY. peer may be NULL. Returns the fd, or -1 with
 * errno; EAGAIN/EWOULDBLOCK means no more pending connections (normal with a nonblocking
 * listener), ECONNABORTED/EPROTO mean one connection died in the queue (go on accepting),
 * EMFILE/ENFILE mean out of descriptors (back off: the listener stays readable). */
int sock_accept(int lfd, struct sock_addr *peer);
/* Out of descriptors: the spare-descriptor trick. *spare is a descriptor the caller keeps
 * open for this moment (sock_spare_open); it is closed to make room, one pending
 * connection is accepted and closed at once (the client sees the connection close instead
 * of waiting in the backlog), and the spare is opened again. Returns 0 when a connection
 * was dropped, 1 when none was pending, -1 when no room could be made (no spare, the
 * slot was taken by another thread, or another error: errno); *spare is -1 whenever it
 * could not be reopened, and the caller retries sock_spare_open later. */
int sock_accept_drop(int lfd, int *spare);
/* True for the errno values that mean the process or the kernel ran short of descriptors
 * or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): a condition that passes, not a fault of the
 * connection or address at hand. */
bool sock_err_no_resources(int err);
/* A descriptor to keep in reserve for sock_accept_drop (/dev/null, close-on-exec), or -1
 * with errno. */
int sock_spare_open(void);

/* Starts a nonblocking TCP connect to a, optionally from source address src (may be NULL).
 * On success *fd is set and the return is 0 if already connected (possible on loopback)
 * or 1 if in progress: wait for LOOP_WRITE, then call sock_connect_result(). Returns -1 with
 * errno on immediate failure (ECONNREFUSED, ENETUNREACH, EMFILE...); *fd is then -1. */
int sock_connect(const struct sock_addr *a, const struct sock_addr *src, int *fd);
/* After a writable event on a connecting socket: 0 if connected, or -1 with errno set to
 * the connect error (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH...). */
int sock_connect_result(int fd);

int sock_local_addr(int fd, struct sock_addr *out);    /* getsockname; 0 or -1/errno */
/* The local address of a socket accepted on a listener bound to listen_addr: that address
 * itself when it names one address and port (no system call: the accepted socket's local
 * address is the bound one, as nginx's ngx_connection_local_sockaddr takes it), else
 * getsockname (a wildcard or port 0). 0 or -1/errno. */
int sock_accepted_local(int fd, const struct sock_addr *listen_addr, struct sock_addr *out);
int sock_peer_addr(int fd, struct sock_addr *out);     /* getpeername; 0 or -1/errno */

/* The destination the client originally connected to, for a sidecar that receives
 * traffic redirected by iptables REDIRECT/DNAT (SO_ORIGINAL_DST for IPv4,
 * IP6T_SO_ORIGINAL_DST for IPv6, from conntrack). Returns 0 with *out set from conntrack;
 * 1 when the connection was not redirected (no conntrack entry, or conntrack not loaded,
 * or a TPROXY listener) with *out set to the socket's local address, which is then the
 * original destination; -1 with errno if even getsockname fails. */
int sock_original_dst(int fd, struct sock_addr *out);
/* The same for a socket whose local address is already known (sock_accepted_local):
 * one getsockopt, no getsockname. */
int sock_original_dst_at(int fd, const struct sock_addr *local, struct sock_addr *out);

int sock_set_nonblock(int fd);           /* 0 or -1/errno */
int sock_set_nodelay(int fd);            /* 0 or -1/errno */

#endif
