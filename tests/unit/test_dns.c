/* Tests for net/dns: IP literals, hosts file (lookup, case, aliases, reload), and c-ares
 * against a tiny DNS server written in Python on 127.0.0.1 (A/AAAA with TTLs, CNAME,
 * NXDOMAIN, SERVFAIL, no answer at all), cancellation, and callbacks never running
 * inside dns_resolve. No external DNS server is used. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/sbuf.h"
#include "net/dns.h"
#include "net/loop.h"

static const char dns_server_py[] =
"import socket, struct, sys\n"
"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
"s.bind(('127.0.0.1', 0))\n"
"print(s.getsockname()[1], flush=True)\n"
"A = {'a.test': [('10.1.2.3', 42)], 'multi.test': [('10.0.0.1', 30), ('10.0.0.2', 31)],\n"
"     'v4only.test': [('10.9.9.9', 7)]}\n"
"AAAA = {'a.test': [('fd00::1', 43)], 'v6only.test': [('fd00::6', 60)]}\n"
"def rr(name, typ, ttl, rdata):\n"
"    return name + struct.pack('!HHIH', typ, 1, ttl, len(rdata)) + rdata\n"
"while True:\n"
"    data, peer = s.recvfrom(4096)\n"
"    qid, = struct.unpack('!H', data[:2])\n"
"    i = 12\n"
"    labels = []\n"
"    while data[i]:\n"
"        l = data[i]\n"
"        labels.append(data[i+1:i+1+l].decode())\n"
"        i += 1 + l\n"
"    i += 1\n"
"    qtype, = struct.unpack('!H', data[i:i+2])\n"
"    q = data[12:i+4]\n"
"    name = '.'.join(labels).lower()\n"
"    if name == 'slow.test':\n"
"        continue\n"
"    rcode, ans = 0, []\n"
"    if name == 'fail.test':\n"
"        rcode = 2\n"
"    elif name == 'cname.test':\n"
"        target = b'\\x01a\\x04test\\x00'\n"
"        ans.append(rr(b'\\xc0\\x0c', 5, 5, target))\n"
"        off = 12 + len(q) + 12\n"
"        if qtype == 1:\n"
"            ans.append(rr(struct.pack('!H', 0xc000 | off), 1, 42, socket.inet_aton('10.1.2.3')))\n"
"    elif name in A or name in AAAA:\n"
"        if qtype == 1:\n"
"            for ip, ttl in A.get(name, []):\n"
"                ans.append(rr(b'\\xc0\\x0c', 1, ttl, socket.inet_pton(socket.AF_INET, ip)))\n"
"        elif qtype == 28:\n"
"            for ip, ttl in AAAA.get(name, []):\n"
"                ans.append(rr(b'\\xc0\\x0c', 28, ttl, socket.inet_pton(socket.AF_INET6, ip)))\n"
"    else:\n"
"        rcode = 3\n"
"    hdr = struct.pack('!HHHHHH', qid, 0x8180 | rcode, 1, len(ans), 0, 0)\n"
"    s.sendto(hdr + q + b''.join(ans), peer)\n";

static char tmpdir[64];
static pid_t srv_pid = -1;
static int srv_port;

static int group_setup(void **state)
{
	char path[128], line[32];
	int out[2];
	FILE *f;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/egdns.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(path, sizeof(path), "%s/dns.py", tmpdir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(dns_server_py, f);
	fclose(f);
	if (pipe(out) < 0)
		return -1;
	srv_pid = fork();
	if (srv_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);   /* dies with the test, even on a crash */
		dup2(out[1], 1);
		close(out[0]);
		execl("/usr/bin/python3", "python3", path, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	f = fdopen(out[0], "r");
	if (!f || !fgets(line, sizeof(line), f))
		return -1;
	fclose(f);
	srv_port = atoi(line);
	return srv_port > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	if (srv_pid > 0) {
		kill(srv_pid, SIGTERM);
		waitpid(srv_pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---- */

struct answer {
	bool done;
	int calls;
	enum dns_status status;
	enum dns_source source;
	char reason[200];
	char addrs[8][64];
	uint32_t ttls[8];
	size_t n;
};

static void on_answer(void *arg, const struct dns_result *r)
{
	struct answer *a = arg;

	a->calls++;
	a->done = true;
	a->status = r->status;
	a->source = r->source;
	snprintf(a->reason, sizeof(a->reason), "%s", r->reason);
	a->n = r->n;
	for (size_t i = 0; i < r->n && i < 8; i++) {
		sock_addr_ip_str(&r->addrs[i].addr, a->addrs[i], sizeof(a->addrs[i]));
		a->ttls[i] = r->addrs[i].ttl;
		assert_int_equal(sock_addr_port(&r->addrs[i].addr), 0);
	}
}

static void run_until(struct loop *loop, bool *flag, int ms)
{
	uint64_t end;

	loop_update_time(loop);
	end = loop_now_ms(loop) + (uint64_t)ms;
	while (!*flag && loop_now_ms(loop) < end)
		assert_true(loop_run_once(loop, 50) >= 0);
	assert_true(*flag);
}

static struct dns *new_resolver(struct loop *loop, const char *hosts, int timeout_ms)
{
	struct dns_opts o = { .hosts_file = hosts, .timeout_ms = timeout_ms, .tries = 1 };
	char servers[64];
	struct sbuf err = SBUF_INIT;
	struct dns *d;

	d = dns_new(loop, &o, &err);
	if (!d)
		fail_msg("dns_new: %s", sbuf_str(&err));
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", srv_port);
	if (dns_set_servers(d, servers, &err) < 0)
		fail_msg("dns_set_servers: %s", sbuf_str(&err));
	sbuf_free(&err);
	return d;
}

static void resolve_wait(struct loop *loop, struct dns *d, const char *name, int family,
                         struct answer *a)
{
	memset(a, 0, sizeof(*a));
	dns_resolve(d, name, family, on_answer, a);
	/* Never called back from inside dns_resolve. */
	assert_false(a->done);
	run_until(loop, &a->done, 3000);
	assert_int_equal(a->calls, 1);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* ---- tests ---- */

static void test_literals(void **state)
{
	struct loop *loop = loop_new();
	struct dns *d = new_resolver(loop, NULL, 0);
	struct answer a;
	struct dns_result r;

	(void)state;
	resolve_wait(loop, d, "127.0.0.1", AF_UNSPEC, &a);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.source, DNS_SRC_LITERAL);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addrs[0], "127.0.0.1");
	assert_int_equal(a.ttls[0], 0);
	resolve_wait(loop, d, "::1", AF_UNSPEC, &a);
	assert_int_equal(a.status, DNS_OK);
	assert_string_equal(a.addrs[0], "::1");
	resolve_wait(loop, d, "::1", AF_INET, &a);
	assert_int_equal(a.status, DNS_NODATA);
	assert_int_equal(a.n, 0);
	/* The synchronous local path. */
	assert_int_equal(dns_resolve_local(d, "10.0.0.7", AF_UNSPEC, &r), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(dns_resolve_local(d, "a.test", AF_UNSPEC, &r), 1);
	assert_int_equal(dns_pending(d), 0);
	dns_free(d);
	loop_free(loop);
}

static void test_hosts_file(void **state)
{
	struct loop *loop = loop_new();
	char path[128];
	struct dns *d;
	struct answer a;
	struct sbuf err = SBUF_INIT;
	struct dns_opts o = { 0 };
	struct timespec ts = { 1, 100 * 1000000 };

	(void)state;
	snprintf(path, sizeof(path), "%s/hosts", tmpdir);
	write_file(path,
	           "# comment line\n"
	           "127.0.0.1 localhost\n"
	           "::2 edition.cnn.com   # v6 first in the file\n"
	           "127.0.0.2\tEdition.CNN.com cnn-alias\n"
	           "not-an-ip ignored.test\n"
	           "\n"
	           "127.0.0.3 a.test\n");
	d = new_resolver(loop, path, 0);
	/* IPv4 first, then IPv6; case-insensitive; trailing dot accepted. */
	resolve_wait(loop, d, "EDITION.cnn.com.", AF_UNSPEC, &a);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.source, DNS_SRC_HOSTS);
	assert_int_equal(a.n, 2);
	assert_string_equal(a.addrs[0], "127.0.0.2");
	assert_string_equal(a.addrs[1], "::2");
	resolve_wait(loop, d, "edition.cnn.com", AF_INET6, &a);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addrs[0], "::2");
	resolve_wait(loop, d, "cnn-alias", AF_UNSPEC, &a);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addrs[0], "127.0.0.2");
	/* The hosts file wins over DNS (the DNS server says 10.1.2.3). */
	resolve_wait(loop, d, "a.test", AF_UNSPEC, &a);
	assert_int_equal(a.source, DNS_SRC_HOSTS);
	assert_string_equal(a.addrs[0], "127.0.0.3");
	/* Not in the file: falls through to DNS. */
	resolve_wait(loop, d, "ignored.test", AF_UNSPEC, &a);
	assert_int_equal(a.source, DNS_SRC_DNS);
	assert_int_equal(a.status, DNS_NXDOMAIN);

	/* Reload after a change (checked at most once a second). */
	write_file(path, "127.0.0.9 edition.cnn.com\n");
	nanosleep(&ts, NULL);
	loop_update_time(loop);
	resolve_wait(loop, d, "edition.cnn.com", AF_UNSPEC, &a);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addrs[0], "127.0.0.9");
	dns_free(d);

	/* A missing hosts file is an error at creation. */
	o.hosts_file = "/nonexistent/hosts";
	assert_null(dns_new(loop, &o, &err));
	assert_non_null(strstr(sbuf_str(&err), "/nonexistent/hosts"));
	sbuf_free(&err);
	loop_free(loop);
}

static void test_cares_addresses(void **state)
{
	struct loop *loop = loop_new();
	struct dns *d = new_resolver(loop, NULL, 1000);
	struct answer a;

	(void)state;
	resolve_wait(loop, d, "a.test", AF_UNSPEC, &a);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.source, DNS_SRC_DNS);
	assert_string_equal(a.reason, "");
	assert_int_equal(a.n, 2);
	assert_string_equal(a.addrs[0], "10.1.2.3");
	assert_int_equal(a.ttls[0], 42);
	assert_string_equal(a.addrs[1], "fd00::1");
	assert_int_equal(a.ttls[1], 43);

	resolve_wait(loop, d, "a.test", AF_INET, &a);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addrs[0], "10.1.2.3");

	resolve_wait(loop, d, "multi.test", AF_UNSPEC, &a);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.n, 2);
	assert_string_equal(a.addrs[0], "10.0.0.1");
	assert_string_equal(a.addrs[1], "10.0.0.2");
	assert_int_equal(a.ttls[1], 31);

	resolve_wait(loop, d, "v4only.test", AF_UNSPEC, &a);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.ttls[0], 7);

	/* Through a CNAME (TTL 5): the address lives no longer than the alias. */
	resolve_wait(loop, d, "cname.test", AF_INET, &a);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addrs[0], "10.1.2.3");
	assert_int_equal(a.ttls[0], 5);
	assert_int_equal(dns_pending(d), 0);
	dns_free(d);
	loop_free(loop);
}

static void test_cares_failures(void **state)
{
	struct loop *loop = loop_new();
	struct dns *d = new_resolver(loop, NULL, 300);
	struct answer a;
	uint64_t t0;

	(void)state;
	resolve_wait(loop, d, "nx.test", AF_UNSPEC, &a);
	assert_int_equal(a.status, DNS_NXDOMAIN);
	assert_int_equal(a.n, 0);
	assert_non_null(strstr(a.reason, "NXDOMAIN"));
	assert_string_equal(dns_status_str(a.status), "nxdomain");

	resolve_wait(loop, d, "v6only.test", AF_INET, &a);
	assert_true(a.status == DNS_NODATA);
	assert_non_null(strstr(a.reason, "NODATA"));

	resolve_wait(loop, d, "fail.test", AF_INET, &a);
	if (a.status != DNS_SERVFAIL)
		fail_msg("fail.test: %s", a.reason);
	assert_non_null(strstr(a.reason, "SERVFAIL"));

	loop_update_time(loop);
	t0 = loop_now_ms(loop);
	resolve_wait(loop, d, "slow.test", AF_INET, &a);
	assert_int_equal(a.status, DNS_TIMEOUT);
	assert_non_null(strstr(a.reason, "timeout"));
	assert_true(loop_now_ms(loop) - t0 >= 250);
	assert_true(loop_now_ms(loop) - t0 < 2500);

	resolve_wait(loop, d, "", AF_INET, &a);
	assert_int_equal(a.status, DNS_BADNAME);
	dns_free(d);
	loop_free(loop);
}

static void test_cancel_and_free(void **state)
{
	struct loop *loop = loop_new();
	struct dns *d = new_resolver(loop, NULL, 300);
	struct answer a1, a2, a3;
	struct dns_query *q1, *q2;
	struct sbuf err = SBUF_INIT;

	(void)state;
	memset(&a1, 0, sizeof(a1));
	memset(&a2, 0, sizeof(a2));
	memset(&a3, 0, sizeof(a3));
	q1 = dns_resolve(d, "a.test", AF_UNSPEC, on_answer, &a1);
	q2 = dns_resolve(d, "127.0.0.1", AF_UNSPEC, on_answer, &a2);
	dns_resolve(d, "multi.test", AF_UNSPEC, on_answer, &a3);
	dns_cancel(q1);
	dns_cancel(q2);
	run_until(loop, &a3.done, 3000);
	/* Let the cancelled DNS query finish inside c-ares. */
	for (int i = 0; i < 40 && dns_pending(d) > 0; i++)
		loop_run_once(loop, 50);
	assert_int_equal(dns_pending(d), 0);
	assert_int_equal(a1.calls, 0);
	assert_int_equal(a2.calls, 0);
	assert_int_equal(a3.calls, 1);

	/* Freeing with a query in flight: no callback, nothing leaked (ASan). */
	memset(&a1, 0, sizeof(a1));
	dns_resolve(d, "slow.test", AF_UNSPEC, on_answer, &a1);
	dns_resolve(d, "10.0.0.1", AF_UNSPEC, on_answer, &a1);
	assert_int_equal(dns_pending(d), 2);
	dns_free(d);
	assert_int_equal(a1.calls, 0);
	assert_int_equal(loop_timer_count(loop), 0);
	assert_int_equal(loop_io_count(loop), 0);

	/* Bad server list. */
	d = dns_new(loop, NULL, &err);
	assert_non_null(d);
	assert_int_equal(dns_set_servers(d, "not an address", &err), -1);
	assert_non_null(strstr(sbuf_str(&err), "not an address"));
	sbuf_free(&err);
	dns_free(d);
	loop_free(loop);
}

/* A callback that resolves again (the usual refresh pattern) works. */
struct chain {
	struct dns *d;
	struct answer second;
	int first_calls;
};

static void on_first(void *arg, const struct dns_result *r)
{
	struct chain *c = arg;

	assert_int_equal(r->status, DNS_OK);
	c->first_calls++;
	dns_resolve(c->d, "multi.test", AF_INET, on_answer, &c->second);
}

static void test_resolve_from_callback(void **state)
{
	struct loop *loop = loop_new();
	struct chain c;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.d = new_resolver(loop, NULL, 1000);
	dns_resolve(c.d, "a.test", AF_INET, on_first, &c);
	run_until(loop, &c.second.done, 3000);
	assert_int_equal(c.first_calls, 1);
	assert_int_equal(c.second.n, 2);
	dns_free(c.d);
	loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_hosts_file),
		cmocka_unit_test(test_cares_addresses),
		cmocka_unit_test(test_cares_failures),
		cmocka_unit_test(test_cancel_and_free),
		cmocka_unit_test(test_resolve_from_callback),
	};

	return cmocka_run_group_tests_name("dns", tests, group_setup, group_teardown);
}
