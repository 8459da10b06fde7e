"""Upstream connections follow what made them (issue 17): a change to a cluster's TLS
settings or a rotated client credential drains the connections made under the old ones
(in-flight requests finish, idle ones close at once, none is reused), and nothing made for
an old snapshot outlives it.

Against the walkthrough's nginx (ssl_verify_client on, the client certificate's serial in
its access log), through the gateway's MUTUAL origination, under steady load."""
import os
import re
import socket
import threading
import time

from conftest import Ctl
from gwlib import loopback_ip, mesh_context, wait_until
from hardlib import (RawClient, RecordingServer, plain_gateway_yaml, service_entry_yaml,
                     start_gateway, virtual_service_yaml, write_hosts)
from test_mtls import (NGINX_HOST, WELCOME, Env, apply_mutual_dr, assert_welcome,  # noqa: F401
                       certs, mesh, env)

SAN_LINE = f"        subjectAltNames:\n        - {NGINX_HOST}\n"


def prom(gw):
    status, body = gw.admin("/stats/prometheus")
    assert status == 200, body
    return body


def stat(gw, name):
    m = re.search(rf"^egressgw_{name} (\d+)$", prom(gw), re.M)
    assert m, name
    return int(m.group(1))


def draining(gw):
    """The draining gauge per cluster name."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^egressgw_cluster_upstream_cx_draining\{cluster_name="([^"]*)"\} (\d+)$',
        prom(gw), re.M)}


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def established_to(ip, port):
    """Established TCP connections whose local end is ip:port (nginx's side)."""
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(ip), "little"), port)
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want and parts[3] == "01":
                n += 1
    return n


class Load:
    """Threads sending one request each on a new client connection, in a loop; each
    result is (start, end, status)."""

    def __init__(self, env, threads=4):
        self.env, self.stop_ev, self.results = env, threading.Event(), []
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.time()
            try:
                status, _, body = self.env.request()
                r = status if WELCOME in body or status != 200 else -1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                r = repr(exc)
            self.results.append((t0, time.time(), r))

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(20)


def start_under_load(env):
    """The credential, a gateway with two workers, and a second of steady load."""
    env.create_credential()
    gw = env.start(workers=2)
    assert_welcome(env)
    load = Load(env)
    time.sleep(1.0)
    return gw, load


def reload_after(env, gw, change):
    """Runs change() and returns (when it started, when its configuration was seen applied).
    The gateway applies it somewhere between the two: a request that ended before the first
    had the old settings, one that started after the second has the new ones."""
    before = stat(gw, "config_reloads_total")
    started = time.time()
    change()
    wait_until(lambda: stat(gw, "config_reloads_total") > before, timeout=5, what="reload")
    return started, time.time()


def test_san_tightening_fails_closed_at_once_under_load(env, certs):
    """Pooled connections and cached sessions were verified without the SAN list: the
    first request after subjectAltNames appear must fail the check (503 UF with the
    reason), not ride a connection (or resume a session) verified before."""
    apply_mutual_dr(env, "")
    gw, load = start_under_load(env)
    try:
        started, landed = reload_after(env, gw, lambda: apply_mutual_dr(env, SAN_LINE))
        time.sleep(1.0)
    finally:
        load.stop()
    before = [r for t0, t1, r in load.results if t1 < started]
    after = [(t0, r) for t0, t1, r in load.results if t0 > landed]
    assert before and all(r == 200 for r in before), before[-5:]
    assert after, "the load did not run past the change"
    assert all(r == 503 for _, r in after), [r for _, r in after if r != 503][:5]
    status, _, body = env.request()
    assert status == 503, body
    lines = [ln for ln in gw.log_lines() if " 503 UF,URX " in ln]   # retried: Istio's default
    assert lines and all("TLS_error:" in ln for ln in lines), lines[:3]
    # Nothing left from before the change: no connection open to nginx, none draining.
    wait_until(lambda: established_to(env.nginx.ip, 443) == 0, timeout=2,
               what="nginx's connections from the old settings closed")
    assert all(v == 0 for v in draining(gw).values()), draining(gw)


def test_busy_connection_drains_and_is_counted(env, certs):
    """A response in flight when the settings change finishes on its connection, which
    is counted in egressgw_cluster_upstream_cx_draining until it closes."""
    big = env.nginx.dir / "html" / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 24)
    env.create_credential()
    gw = env.start()
    assert_welcome(env)
    cluster = f"outbound|443||{NGINX_HOST}"
    assert draining(gw).get(cluster) == 0, draining(gw)
    ctx = mesh_context(env.mesh["client"])
    with socket.create_connection((gw.ip, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=NGINX_HOST) as s:
            s.sendall(f"GET /big.bin HTTP/1.1\r\nHost: {NGINX_HOST}\r\n"
                      "Connection: close\r\n\r\n".encode())
            got = s.recv(65536)
            assert got.startswith(b"HTTP/1.1 200"), got[:100]
            # The gateway stops reading nginx once our side's buffer is full: the
            # upstream connection stays busy while we do not read.
            reload_after(env, gw, lambda: apply_mutual_dr(env, SAN_LINE))
            wait_until(lambda: draining(gw).get(cluster) == 1, timeout=3,
                       what="one draining connection")
            total = len(got)
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
    assert total > 24 << 20, total
    wait_until(lambda: draining(gw).get(cluster) == 0, timeout=2, what="drained")
    wait_until(lambda: established_to(env.nginx.ip, 443) == 0, timeout=2,
               what="the drained connection closed, not pooled")


def rotate(env, certs, serial):
    key, crt = ("client2.key", "client2.crt") if serial == 2 else \
        ("client.example.com.key", "client.example.com.crt")
    env.apply_secret({"tls.key": key, "tls.crt": crt, "ca.crt": "example.com.crt"})


def test_rotations_under_load_leak_nothing_and_use_the_new_certificate(env, certs):
    """100 rotations of the credentialName Secret under load: after each one lands, a
    fresh request carries the new certificate; after the last, the gateway's descriptors
    and nginx's open connections are back to the working set within 2 s."""
    gw, load = start_under_load(env)
    try:
        base_fd, base_up = 0, 0
        for _ in range(10):
            base_fd = max(base_fd, fds(gw.proc.pid))
            base_up = max(base_up, established_to(env.nginx.ip, 443))
            time.sleep(0.05)
        wrong = []
        for i in range(100):
            serial = 2 if i % 2 == 0 else 1
            n = gw.stderr().count("certificate serial")
            rotate(env, certs, serial)
            wait_until(lambda: gw.stderr().count("certificate serial") > n, timeout=5,
                       what=f"rotation {i}")
            status, _, body = env.request("/?probe=%d" % i)
            assert status == 200, body
            # nginx logs a request after answering it.
            m = wait_until(lambda: re.search(rf"probe={i} HTTP[^\n]*serial=(\S*)$",
                                             env.nginx.access_log.read_text(), re.M),
                           timeout=2, what=f"probe {i} in nginx's log")
            if m.group(1) != "%02X" % serial:
                wrong.append((i, m.group(1)))
        end = time.time()
        # The load keeps running: the working set is what it uses.
        deadline = end + 2.0
        while time.time() < deadline:
            now_fd, now_up = fds(gw.proc.pid), established_to(env.nginx.ip, 443)
            if now_fd <= base_fd + 4 and now_up <= base_up + 4:
                break
            time.sleep(0.05)
    finally:
        load.stop()
    failures = [r for _, _, r in load.results if r != 200]
    assert not wrong, wrong[:10]
    assert not failures, failures[:5]
    assert now_fd <= base_fd + 4, (now_fd, base_fd)
    assert now_up <= base_up + 4, (now_up, base_up)
    wait_until(lambda: all(v == 0 for v in draining(gw).values()), timeout=2,
               what="nothing draining")


def test_endpoint_change_closes_pooled_connections_to_the_old_endpoint(tmp_path, egressctl_bin):
    """A DNS cluster whose name moves to another address (the --hosts-file is re-read every
    5 s): the idle pooled connection to the old address is closed, and the next request
    goes to the new one."""
    host = "ep.test"
    up1, up2 = RecordingServer(loopback_ip(), 80), RecordingServer(loopback_ip(), 80)
    hosts = tmp_path / "hosts"
    write_hosts(hosts, {host: up1.ip})
    store = tmp_path / "store"
    Ctl(egressctl_bin, store, tmp_path).ok("apply", "-f", "-", input="---\n".join([
        plain_gateway_yaml(), service_entry_yaml(host, 80, "HTTP"),
        virtual_service_yaml(host, host, 80)]))
    gw = start_gateway(tmp_path, store, hosts)
    try:
        for _ in range(2):
            c = RawClient(gw.ip)
            c.send(f"GET /a HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            assert c.response()[0] == 200
            c.close()
        conns = up1.snapshot()
        assert len(conns) == 1 and len(conns[0].requests) == 2, "not pooled"
        write_hosts(hosts, {host: up2.ip})
        wait_until(lambda: conns[0].closed_by_peer, timeout=8,
                   what="the connection to the old endpoint closed")
        c = RawClient(gw.ip)
        c.send(f"GET /b HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert c.response()[0] == 200
        c.close()
        assert [r.target for r in up2.requests()] == ["/b"], up2.requests()
        assert all(v == 0 for v in draining(gw).values()), draining(gw)
    finally:
        assert gw.stop() == 0, gw.stderr()[-2000:]
        up1.stop()
        up2.stop()
