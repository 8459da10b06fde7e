"""The sidecar cannot be turned against itself (issue 17): a CONNECT to its own capture
listener or admin address (by any address that reaches it: 127.0.0.1, 0.0.0.0, a
localhost name) and a proxy request to its admin are refused at once with 403 and a log
line, so nothing nests tunnels without end or hands the application the proxy's
configuration; a connection made to the capture port whose request line is malformed gets
the parser's 400 rather than a silent close. (The redirected connection whose original
destination is the sidecar itself is in test_transparent.py, which has iptables.)"""
import os
import socket
import time

import pytest

from gwlib import loopback_ip, read_response
from sidecarlib import Egressgw, NxDns, issue
from test_sidecar import _raw


@pytest.fixture
def sidecar(tmp_path, ctl, egressctl_bin, store, walkthrough):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost egressgw-self.test\n")
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    ident = issue(egressctl_bin, tmp_path / "ca", "default", "sleep", tmp_path / "id",
                  create_ca=True)
    dns = NxDns(loopback_ip())
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sc = Egressgw(tmp_path, "sidecar", "sidecar", store, ident, hosts, dns,
                  extra=["--namespace", "default", "--outbound", f"127.0.0.1:{port}",
                         "--outbound-policy", "ALLOW_ANY"])
    sc.outbound = port
    yield sc
    rc = sc.stop()
    dns.stop()
    assert rc == 0


def exchange(port, data):
    """Sends data on a new connection; returns (status or None, whole answer, seconds)."""
    t0 = time.time()
    got = _raw(port, data)
    status = int(got.split()[1]) if got.startswith(b"HTTP/1.") else None
    return status, got, time.time() - t0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("target", ["127.0.0.1:{out}", "localhost:{out}", "0.0.0.0:{out}",
                                    "egressgw-self.test:{out}", "127.0.0.1:{admin}",
                                    "localhost:{admin}"])
def test_connect_to_itself_is_refused(sidecar, target):
    t = target.format(out=sidecar.outbound, admin=sidecar.admin_port)
    status, got, took = exchange(sidecar.outbound,
                                 f"CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n".encode())
    assert status == 403, got
    assert b"proxy_loop_detected" in got, got
    assert took < 1.0, took
    assert "refused" in sidecar.stderr() and "own listener or admin address" in sidecar.stderr()


def test_nested_self_connect_does_not_multiply_descriptors(sidecar):
    """The issue's attack: CONNECT to itself, then again inside the tunnel, 100 levels
    deep on one client connection (2 descriptors per level before)."""
    base = fds(sidecar.proc.pid)
    with socket.create_connection(("127.0.0.1", sidecar.outbound), timeout=5) as s:
        for _ in range(100):
            try:
                s.sendall(f"CONNECT 127.0.0.1:{sidecar.outbound} HTTP/1.1\r\n"
                          f"Host: 127.0.0.1\r\n\r\n".encode())
            except OSError:
                break
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 403"), head
        assert fds(sidecar.proc.pid) <= base + 2
    assert fds(sidecar.proc.pid) <= base + 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:{admin}/config_dump",
                                 "http://localhost:{admin}/config_dump",
                                 "http://0.0.0.0:{admin}/stats/prometheus",
                                 "http://127.0.0.1:{out}/"])
def test_proxy_request_to_itself_is_refused(sidecar, url):
    u = url.format(out=sidecar.outbound, admin=sidecar.admin_port)
    host = u.split("/")[2]
    status, got, took = exchange(sidecar.outbound,
                                 f"GET {u} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert status == 403, got
    assert b"the proxy's own address" in got and b"clusters" not in got, got
    assert took < 1.0, took
    m = sidecar.wait_log(lambda m: m["code"] == "403")
    assert "proxy_loop_detected" in m.string, m.string
    assert "own listener or admin address" in sidecar.stderr()
    # The admin still serves its own clients.
    assert sidecar.admin("/ready")[0] == 200


@pytest.mark.parametrize("method", [b"GE\x01T", b"G\x7fET", b"GET\x00", b"\x05GET", b"GE(T"])
def test_malformed_method_at_the_capture_port_is_a_400(sidecar, method):
    status, got, _ = exchange(sidecar.outbound,
                              method + b" http://edition.cnn.com/ HTTP/1.1\r\n"
                              b"Host: edition.cnn.com\r\n\r\n")
    assert status == 400, got
