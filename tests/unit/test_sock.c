/* Tests for net/sock: address parsing and formatting, listeners (SO_REUSEPORT), accept,
 * nonblocking connect, socket flags, original destination. Loopback only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/sock.h"

static void parse_ok(const char *in, const char *want)
{
	struct sock_addr a;
	char buf[SOCK_ADDR_STRLEN];

	if (sock_addr_parse(in, &a) != 0)
		fail_msg("parse failed: %s", in);
	assert_string_equal(sock_addr_str(&a, buf, sizeof(buf)), want);
}

static void parse_bad(const char *in)
{
	struct sock_addr a;

	errno = 0;
	if (sock_addr_parse(in, &a) != -1)
		fail_msg("parse accepted: %s", in);
	assert_int_equal(errno, EINVAL);
}

static void test_parse(void **state)
{
	(void)state;
	parse_ok("127.0.0.1:443", "127.0.0.1:443");
	parse_ok("0.0.0.0:0", "0.0.0.0:0");
	parse_ok("8080", "0.0.0.0:8080");
	parse_ok("[::1]:8443", "[::1]:8443");
	parse_ok("[::]:80", "[::]:80");
	parse_ok("[2001:db8::1]:65535", "[2001:db8::1]:65535");
	parse_ok("[fe80::1%1]:80", "[fe80::1%1]:80");
	parse_bad("");
	parse_bad("::1:80");              /* IPv6 needs brackets */
	parse_bad("1.2.3.4");             /* no port */
	parse_bad("1.2.3.4:");
	parse_bad(":80");
	parse_bad("1.2.3.4:65536");
	parse_bad("1.2.3.4:-1");
	parse_bad("1.2.3.4:8o");
	parse_bad("[::1]");
	parse_bad("[::1]80");
	parse_bad("[1.2.3.4]:80");
	parse_bad("localhost:80");        /* names are dns.h's job */
	parse_bad("999999");
	parse_bad("1.2.3.4%1:80");
}

static void test_format(void **state)
{
	struct sock_addr a, b;
	char buf[SOCK_ADDR_STRLEN];

	(void)state;
	assert_int_equal(sock_addr_from_ip("10.1.2.3", 15001, &a), 0);
	assert_string_equal(sock_addr_str(&a, buf, sizeof(buf)), "10.1.2.3:15001");
	assert_string_equal(sock_addr_ip_str(&a, buf, sizeof(buf)), "10.1.2.3");
	assert_int_equal(sock_addr_port(&a), 15001);
	assert_int_equal(sock_addr_family(&a), AF_INET);
	sock_addr_set_port(&a, 443);
	assert_string_equal(sock_addr_str(&a, buf, sizeof(buf)), "10.1.2.3:443");
	/* IPv4-mapped IPv6 prints as IPv4. */
	assert_int_equal(sock_addr_from_ip("::ffff:192.0.2.7", 80, &b), 0);
	assert_int_equal(sock_addr_family(&b), AF_INET6);
	assert_string_equal(sock_addr_str(&b, buf, sizeof(buf)), "192.0.2.7:80");
	assert_int_equal(sock_addr_from_ip("::1", 9, &b), 0);
	assert_string_equal(sock_addr_ip_str(&b, buf, sizeof(buf)), "::1");
	assert_int_equal(sock_addr_from_ip("my-host", 9, &b), -1);
	assert_true(sock_is_ip_literal("127.0.0.1"));
	assert_true(sock_is_ip_literal("::1"));
	assert_false(sock_is_ip_literal("edition.cnn.com"));
	assert_false(sock_is_ip_literal("[::1]"));
	/* equality */
	assert_int_equal(sock_addr_parse("127.0.0.1:443", &a), 0);
	assert_int_equal(sock_addr_parse("127.0.0.1:443", &b), 0);
	assert_true(sock_addr_equal(&a, &b));
	sock_addr_set_port(&b, 444);
	assert_false(sock_addr_equal(&a, &b));
	/* a zeroed address formats as "-" */
	memset(&a, 0, sizeof(a));
	assert_string_equal(sock_addr_str(&a, buf, sizeof(buf)), "-");
	assert_string_equal(sock_addr_ip_str(&a, buf, sizeof(buf)), "-");
	/* IPv4 is formatted without inet_ntop: every digit count, the extremes, a scope id,
	 * and a buffer too small cut as snprintf cuts. */
	assert_int_equal(sock_addr_from_ip("255.255.255.255", 65535, &a), 0);
	assert_string_equal(sock_addr_str(&a, buf, sizeof(buf)), "255.255.255.255:65535");
	assert_int_equal(sock_addr_from_ip("0.9.10.199", 0, &a), 0);
	assert_string_equal(sock_addr_str(&a, buf, sizeof(buf)), "0.9.10.199:0");
	assert_string_equal(sock_addr_ip_str(&a, buf, sizeof(buf)), "0.9.10.199");
	assert_int_equal(sock_addr_from_ip("::ffff:0.0.0.1", 1, &b), 0);
	assert_string_equal(sock_addr_ip_str(&b, buf, sizeof(buf)), "0.0.0.1");
	assert_int_equal(sock_addr_parse("[fe80::1%4294967295]:80", &b), 0);
	assert_string_equal(sock_addr_str(&b, buf, sizeof(buf)), "[fe80::1%4294967295]:80");
	assert_string_equal(sock_addr_ip_str(&b, buf, sizeof(buf)), "fe80::1%4294967295");
	{
		char small[8];

		assert_string_equal(sock_addr_str(&a, small, sizeof(small)), "0.9.10.");
		assert_string_equal(sock_addr_ip_str(&a, small, 1), "");
	}
}

static void assert_fd_flags(int fd)
{
	int one = 0;
	socklen_t len = sizeof(one);

	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, &len), 0);
	assert_int_not_equal(one, 0);
}

static int wait_fd(int fd, short ev, int ms)
{
	struct pollfd p = { .fd = fd, .events = ev };

	return poll(&p, 1, ms);
}

static void test_listen_connect_accept(void **state)
{
	struct sock_addr a, bound, peer, local, orig;
	char buf[SOCK_ADDR_STRLEN], pb[SOCK_ADDR_STRLEN];
	int lfd, cfd, afd, rc;

	(void)state;
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &a), 0);
	lfd = sock_listen(&a, 0, SOCK_REUSEPORT);
	assert_true(lfd >= 0);
	assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(sock_local_addr(lfd, &bound), 0);
	assert_true(sock_addr_port(&bound) > 0);

	/* Nothing pending yet. */
	errno = 0;
	assert_int_equal(sock_accept(lfd, NULL), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

	rc = sock_connect(&bound, NULL, &cfd);
	assert_true(rc == 0 || rc == 1);
	assert_true(cfd >= 0);
	if (rc == 1)
		assert_int_equal(wait_fd(cfd, POLLOUT, 2000), 1);
	assert_int_equal(sock_connect_result(cfd), 0);
	assert_fd_flags(cfd);
	assert_int_equal(wait_fd(lfd, POLLIN, 2000), 1);
	afd = sock_accept(lfd, &peer);
	assert_true(afd >= 0);
	assert_fd_flags(afd);
	assert_int_equal(sock_local_addr(cfd, &local), 0);
	assert_string_equal(sock_addr_str(&peer, buf, sizeof(buf)),
	                    sock_addr_str(&local, pb, sizeof(pb)));
	assert_int_equal(sock_peer_addr(afd, &peer), 0);
	assert_true(sock_addr_equal(&peer, &local));

	/* Not redirected: the original destination is the listener's address (from
	 * conntrack if it is loaded, else from getsockname). */
	rc = sock_original_dst(afd, &orig);
	assert_true(rc == 0 || rc == 1);
	assert_true(sock_addr_equal(&orig, &bound));

	assert_int_equal(write(cfd, "hi", 2), 2);
	assert_int_equal(wait_fd(afd, POLLIN, 2000), 1);
	assert_int_equal(read(afd, buf, sizeof(buf)), 2);
	close(afd);
	close(cfd);
	close(lfd);
}

/* The spare-descriptor drop: with RLIMIT_NOFILE at its current use, accept() fails with
 * EMFILE; sock_accept_drop takes the pending connection off the queue on the spare
 * descriptor and closes it (the client sees EOF or a reset), then holds the spare again.
 * Runs in a child: the limit must not outlive the test. */
static void test_accept_drop_when_out_of_fds(void **state)
{
	struct sock_addr a, bound;
	int lfd, cfd, spare, rc, status;
	pid_t pid;

	(void)state;
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &a), 0);
	lfd = sock_listen(&a, 0, 0);
	assert_true(lfd >= 0);
	assert_int_equal(sock_local_addr(lfd, &bound), 0);
	rc = sock_connect(&bound, NULL, &cfd);
	assert_true(rc == 0 || rc == 1);
	assert_int_equal(wait_fd(lfd, POLLIN, 2000), 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl;
		int top = -1, ok = 1;

		spare = sock_spare_open();
		/* Fill the table up to a limit just above the highest descriptor in use. */
		for (int fd = 0; fd < 1024; fd++)
			if (fcntl(fd, F_GETFD) >= 0)
				top = fd;
		rl.rlim_cur = (rlim_t)top + 1;
		rl.rlim_max = 4096;
		ok &= setrlimit(RLIMIT_NOFILE, &rl) == 0;
		while (open("/dev/null", O_RDONLY) >= 0)
			;
		ok &= sock_accept(lfd, NULL) == -1 && errno == EMFILE;
		ok &= sock_accept_drop(lfd, &spare) == 0;     /* dropped the pending one */
		ok &= spare >= 0;                              /* and holds the spare again */
		ok &= sock_accept_drop(lfd, &spare) == 1;     /* nothing pending any more */
		ok &= spare >= 0;
		close(spare);
		spare = -1;
		ok &= sock_accept_drop(lfd, &spare) == -1;    /* no spare: no room */
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The client learns at once: EOF or reset, not a connection left waiting. */
	if (rc == 1)
		assert_int_equal(wait_fd(cfd, POLLOUT, 2000), 1);
	assert_int_equal(wait_fd(cfd, POLLIN, 2000), 1);
	{
		char b[8];
		ssize_t n = read(cfd, b, sizeof(b));

		assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
	}
	close(cfd);
	close(lfd);
}

static void test_reuseport(void **state)
{
	struct sock_addr a, bound;
	int l1, l2, l3;

	(void)state;
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &a), 0);
	l1 = sock_listen(&a, 16, SOCK_REUSEPORT);
	assert_true(l1 >= 0);
	assert_int_equal(sock_local_addr(l1, &bound), 0);
	/* A second worker's listener on the same port. */
	l2 = sock_listen(&bound, 16, SOCK_REUSEPORT);
	assert_true(l2 >= 0);
	/* Without SO_REUSEPORT the port is taken. */
	errno = 0;
	l3 = sock_listen(&bound, 16, 0);
	assert_int_equal(l3, -1);
	assert_int_equal(errno, EADDRINUSE);
	close(l1);
	close(l2);
}

static void test_ipv6_loopback(void **state)
{
	struct sock_addr a, bound, orig;
	int lfd, cfd, afd, rc;

	(void)state;
	assert_int_equal(sock_addr_parse("[::1]:0", &a), 0);
	lfd = sock_listen(&a, 0, SOCK_REUSEPORT | SOCK_V6ONLY);
	assert_true(lfd >= 0);
	assert_int_equal(sock_local_addr(lfd, &bound), 0);
	rc = sock_connect(&bound, NULL, &cfd);
	assert_true(rc == 0 || rc == 1);
	if (rc == 1)
		assert_int_equal(wait_fd(cfd, POLLOUT, 2000), 1);
	assert_int_equal(sock_connect_result(cfd), 0);
	assert_int_equal(wait_fd(lfd, POLLIN, 2000), 1);
	afd = sock_accept(lfd, NULL);
	assert_true(afd >= 0);
	rc = sock_original_dst(afd, &orig);
	assert_true(rc == 0 || rc == 1);
	assert_true(sock_addr_equal(&orig, &bound));
	close(afd);
	close(cfd);
	close(lfd);
}

static void test_connect_refused(void **state)
{
	struct sock_addr a, bound;
	int lfd, fd, rc;

	(void)state;
	/* A port that was just free: bind, read the port, close. */
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &a), 0);
	lfd = sock_listen(&a, 0, 0);
	assert_true(lfd >= 0);
	assert_int_equal(sock_local_addr(lfd, &bound), 0);
	close(lfd);
	rc = sock_connect(&bound, NULL, &fd);
	if (rc == -1) {
		assert_int_equal(errno, ECONNREFUSED);
		assert_int_equal(fd, -1);
		return;
	}
	assert_int_equal(rc, 1);
	assert_int_equal(wait_fd(fd, POLLOUT, 2000), 1);
	assert_int_equal(sock_connect_result(fd), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(fd);
}

static void test_connect_from_source(void **state)
{
	struct sock_addr a, bound, src, local;
	int lfd, fd, rc, afd;

	(void)state;
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &a), 0);
	lfd = sock_listen(&a, 0, 0);
	assert_true(lfd >= 0);
	assert_int_equal(sock_local_addr(lfd, &bound), 0);
	assert_int_equal(sock_addr_parse("127.0.0.2:0", &src), 0);
	rc = sock_connect(&bound, &src, &fd);
	assert_true(rc == 0 || rc == 1);
	if (rc == 1)
		assert_int_equal(wait_fd(fd, POLLOUT, 2000), 1);
	assert_int_equal(sock_connect_result(fd), 0);
	assert_int_equal(sock_local_addr(fd, &local), 0);
	sock_addr_set_port(&local, 0);
	assert_true(sock_addr_equal(&local, &src));
	assert_int_equal(wait_fd(lfd, POLLIN, 2000), 1);
	afd = sock_accept(lfd, NULL);
	assert_true(afd >= 0);
	close(afd);
	close(fd);
	close(lfd);
}

/* Transparent (sidecar) mode: a connection to PORT1 redirected by iptables to our
 * listener on PORT2 reports 127.0.0.1:PORT1 (and [::1]:PORT1 with ip6tables) as its
 * original destination. Needs root and iptables/ip6tables with the nat table, as the
 * sidecar itself does (scripts/deps.sh installs iptables for tests). */
static char redirect_rule[2][160];

static int remove_redirects(void **state)
{
	char cmd[200];

	(void)state;
	for (int i = 0; i < 2; i++) {
		if (!redirect_rule[i][0])
			continue;
		snprintf(cmd, sizeof(cmd), "%s -t nat -D %s 2>/dev/null",
		         i ? "ip6tables" : "iptables", redirect_rule[i]);
		(void)system(cmd);
		redirect_rule[i][0] = '\0';
	}
	return 0;
}

static uint16_t free_port(const char *any)
{
	struct sock_addr a;
	int fd;

	assert_int_equal(sock_addr_parse(any, &a), 0);
	fd = sock_listen(&a, 0, 0);
	assert_true(fd >= 0);
	assert_int_equal(sock_local_addr(fd, &a), 0);
	close(fd);
	return sock_addr_port(&a);
}

static void check_redirect(int v6)
{
	const char *lo = v6 ? "::1" : "127.0.0.1";
	struct sock_addr a, bound, target, orig;
	char cmd[256], buf[SOCK_ADDR_STRLEN];
	uint16_t p1 = free_port(v6 ? "[::1]:0" : "127.0.0.1:0");
	int lfd, fd, afd, rc;

	assert_int_equal(sock_addr_from_ip(lo, 0, &a), 0);
	lfd = sock_listen(&a, 0, 0);
	assert_true(lfd >= 0);
	assert_int_equal(sock_local_addr(lfd, &bound), 0);
	snprintf(redirect_rule[v6], sizeof(redirect_rule[v6]),
	         "OUTPUT -p tcp -d %s --dport %u -j REDIRECT --to-ports %u", lo, (unsigned)p1,
	         (unsigned)sock_addr_port(&bound));
	snprintf(cmd, sizeof(cmd), "%s -t nat -A %s", v6 ? "ip6tables" : "iptables",
	         redirect_rule[v6]);
	if (system(cmd) != 0) {
		redirect_rule[v6][0] = '\0';
		fail_msg("cannot add a nat rule (needs root and %s): %s",
		         v6 ? "ip6tables" : "iptables", cmd);
	}
	assert_int_equal(sock_addr_from_ip(lo, p1, &target), 0);
	rc = sock_connect(&target, NULL, &fd);
	assert_true(rc == 0 || rc == 1);
	assert_int_equal(wait_fd(lfd, POLLIN, 2000), 1);
	afd = sock_accept(lfd, NULL);
	assert_true(afd >= 0);
	rc = sock_original_dst(afd, &orig);
	assert_int_equal(rc, 0);
	assert_string_equal(sock_addr_str(&orig, buf, sizeof(buf)),
	                    sock_addr_str(&target, (char[SOCK_ADDR_STRLEN]){ 0 }, SOCK_ADDR_STRLEN));
	close(afd);
	close(fd);
	close(lfd);
	remove_redirects(NULL);
}

static void test_original_dst_redirect(void **state)
{
	(void)state;
	check_redirect(0);
	check_redirect(1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_listen_connect_accept),
		cmocka_unit_test(test_accept_drop_when_out_of_fds),
		cmocka_unit_test(test_reuseport),
		cmocka_unit_test(test_ipv6_loopback),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_connect_from_source),
		cmocka_unit_test_teardown(test_original_dst_redirect, remove_redirects),
	};

	return cmocka_run_group_tests_name("sock", tests, NULL, NULL);
}
