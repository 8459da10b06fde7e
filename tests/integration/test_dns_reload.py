"""A reload asks the DNS only about what changed (gw_dns_restart): a cluster whose namesake
resolved the same names by query keeps its endpoints and its refresh time; a cluster whose
names changed, or that is new, is resolved at once. Against a DNS server on a loopback
address of the test's own that answers A records with a TTL and counts the questions."""
import socket
import struct
import time

from conftest import Ctl
from gwlib import loopback_ip, scaled, wait_until
from hardlib import (RecordingServer, plain_gateway_yaml, service_entry_yaml,
                     start_gateway, virtual_service_yaml)
from sidecarlib import NxDns

TTL = 300


class ADns(NxDns):
    """Answers an A query for a name of `answers` (name -> IPv4) with TTL, NXDOMAIN for
    other names (no data for other types of a known name); counts the A questions per
    name."""

    def __init__(self, ip, answers):
        self.answers = answers
        self.asked = {}
        super().__init__(ip)

    def reply(self, q, end):
        labels, i = [], 12
        while i < end:
            labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
            i += 1 + q[i]
        name = ".".join(labels).lower()
        qtype = struct.unpack("!H", q[end + 1:end + 3])[0] if end + 3 <= len(q) else 0
        ip = self.answers.get(name)
        if not ip:
            return super().reply(q, end)
        if qtype == 1:
            self.asked[name] = self.asked.get(name, 0) + 1
        flags = bytes([0x80 | (q[2] & 0x79), 0x80])   # QR, opcode, RD; RA; rcode 0
        if qtype != 1:
            return q[0:2] + flags + b"\x00\x01" + b"\x00" * 6 + q[12:end + 5]
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, TTL, 4) + socket.inet_aton(ip)
        return (q[0:2] + flags + b"\x00\x01\x00\x01" + b"\x00" * 4 + q[12:end + 5] +
                answer)


def test_reload_asks_only_about_changed_clusters(tmp_path, egressctl_bin):
    up = RecordingServer(loopback_ip(), 80)
    dns = ADns(loopback_ip(), {"a.dns.test": up.ip, "b.dns.test": up.ip,
                               "c.dns.test": up.ip})
    hosts = tmp_path / "hosts"
    hosts.write_text("")                     # nothing local: every name is a query
    ctl = Ctl(egressctl_bin, tmp_path / "store", tmp_path)
    ctl.ok("apply", "-f", "-", input="---\n".join(
        [plain_gateway_yaml()] +
        [service_entry_yaml(h, 80, "HTTP") + "---\n" + virtual_service_yaml(h, h, 80)
         for h in ("a.dns.test", "b.dns.test")]))
    gw = start_gateway(tmp_path, ctl.store, hosts, extra=("--dns-servers", dns.addr))
    try:
        wait_until(lambda: "2 DNS cluster(s) resolved" in gw.stderr(), what="first round")
        assert dns.asked == {"a.dns.test": 1, "b.dns.test": 1}, dns.asked
        # A reload that changes neither cluster's names (a new site c): a and b keep
        # their endpoints and refresh, c is asked about.
        ctl.ok("apply", "-f", "-", input=service_entry_yaml("c.dns.test", 80, "HTTP") +
               "---\n" + virtual_service_yaml("c.dns.test", "c.dns.test", 80))
        wait_until(lambda: "configuration version 2 applied" in gw.stderr(), what="v2")
        wait_until(lambda: dns.asked.get("c.dns.test") == 1, what="c resolved")
        wait_until(lambda: "2 of them kept their endpoints" in gw.stderr(), what="kept")
        time.sleep(scaled(1.0))
        assert dns.asked == {"a.dns.test": 1, "b.dns.test": 1, "c.dns.test": 1}, dns.asked
        # They still serve, with the endpoints they kept.
        for h in ("a.dns.test", "b.dns.test", "c.dns.test"):
            with socket.create_connection((gw.ip, 80), timeout=5) as s:
                s.sendall(f"GET /x HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n".encode())
                assert s.recv(100).startswith(b"HTTP/1.1 200"), h
        # A cluster whose names change (b's ServiceEntry now resolves an endpoint name)
        # is asked about at once.
        ctl.ok("apply", "-f", "-", input=service_entry_yaml("b.dns.test", 80, "HTTP") +
               "  endpoints:\n  - address: c.dns.test\n")
        wait_until(lambda: "configuration version 3 applied" in gw.stderr(), what="v3")
        wait_until(lambda: dns.asked.get("c.dns.test") == 2, what="b's new name resolved")
        time.sleep(scaled(0.5))
        assert dns.asked["a.dns.test"] == 1, dns.asked
        assert dns.asked["b.dns.test"] == 1, dns.asked   # b's name left the cluster
    finally:
        rc = gw.stop()
        dns.stop()
        up.stop()
    assert rc == 0


def get_via(gw, host):
    with socket.create_connection((gw.ip, 80), timeout=5) as s:
        s.sendall(f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200"), host


def test_reload_resolves_hosts_file_names_again(tmp_path, egressctl_bin):
    # A cluster mixing a name the hosts file answers and one the DNS answers is not kept
    # whole on reload: a hosts file changed before the reload shows in it at once, not at
    # its DNS refresh (TTL 300 s).
    old, new, far = (RecordingServer(loopback_ip(), 80) for _ in range(3))
    dns = ADns(loopback_ip(), {"d.dns.test": far.ip, "c.dns.test": far.ip})
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{old.ip} local.test\n")
    ctl = Ctl(egressctl_bin, tmp_path / "store", tmp_path)
    ctl.ok("apply", "-f", "-", input=plain_gateway_yaml() + "---\n" +
           service_entry_yaml("m.dns.test", 80, "HTTP") +
           "  endpoints:\n  - address: local.test\n  - address: d.dns.test\n" +
           "---\n" + virtual_service_yaml("m.dns.test", "m.dns.test", 80))
    gw = start_gateway(tmp_path, ctl.store, hosts, extra=("--dns-servers", dns.addr))
    try:
        wait_until(lambda: "1 DNS cluster(s) resolved" in gw.stderr(), what="first round")
        for _ in range(4):
            get_via(gw, "m.dns.test")
        assert len(old.conns) >= 1 and len(far.conns) >= 1, (len(old.conns), len(far.conns))
        tmp = tmp_path / "hosts.new"
        tmp.write_text(f"{new.ip} local.test\n")
        tmp.rename(hosts)
        time.sleep(scaled(1.2))              # the hosts file is looked at once a second
        ctl.ok("apply", "-f", "-", input=service_entry_yaml("c.dns.test", 80, "HTTP"))
        wait_until(lambda: "configuration version 2 applied" in gw.stderr(), what="v2")
        wait_until(lambda: dns.asked.get("c.dns.test") == 1, what="c resolved")
        time.sleep(scaled(0.5))
        n_old = len(old.conns)
        for _ in range(6):
            get_via(gw, "m.dns.test")
        assert len(new.conns) >= 1, (len(new.conns), len(old.conns) - n_old)
        assert len(old.conns) == n_old
    finally:
        rc = gw.stop()
        dns.stop()
        for s in (old, new, far):
            s.stop()
    assert rc == 0
