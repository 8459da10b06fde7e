"""HTTP/1.1 upstream connections and the descriptor limit (issue 17: "a global budget for
buffered bytes and for upstream connections"). At `ulimit -n 1024` with the default
--max-connections (478 with one worker) the downstream side is bounded, and each busy
HTTP/1.1 downstream connection holds at most one upstream connection; but idle pooled
upstream connections are held beyond that (an upstream's keep-alive, 1 h by default).

One source (its own loopback address) sends waves of WAVE concurrent slow requests, each
on a connection of its own closed after its answer, to upstream A, then B, then A...:
every wave leaves WAVE idle connections to its upstream in the pool, and the next wave to
the other upstream needs WAVE new ones on top of them. Meanwhile a well-behaved client
(another address) sends one request at a time, a new downstream connection each, to a
third upstream; it must get >= 99% 200s, and no descriptor may run out.

A plain-HTTP Gateway server routes a.test, b.test and good.test to three asyncio
upstreams on loopback addresses of their own; the slow upstreams answer after SLOW_S
and keep every connection open."""
import asyncio
import os
import socket
import threading
import time

import pytest

from gwlib import loopback_ip
from hardlib import (plain_gateway_yaml, service_entry_yaml, start_gateway, stats,
                     virtual_service_yaml, write_hosts)

WAVE = 470
WAVES = 6
SLOW_S = 1.0


class Upstream:
    """HTTP/1.1 on ip:80 in a thread of its own (asyncio: hundreds of connections without
    a thread each); answers every request after delay seconds, keeps connections open."""

    def __init__(self, ip, delay):
        self.ip, self.delay = ip, delay
        self.conns = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert self.ready.wait(10)

    async def _conn(self, reader, writer):
        self.conns += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._conn, self.ip, 80, backlog=1024, limit=1 << 16))
        self.ready.set()
        self.loop.run_forever()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.t.join(10)


def request(src, dst, host, timeout=15):
    """One request on a new connection from src; the status code (0: no answer)."""
    with socket.socket() as s:
        s.settimeout(timeout)
        s.bind((src, 0))
        try:
            s.connect(dst)
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while b"\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except OSError:
            return 0
    return int(got.split(b" ")[1]) if got.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture
def env(tmp_path, egressctl_bin):
    from conftest import Ctl

    e = type("Env", (), {})()
    e.tmp = tmp_path
    e.ups = {"a.test": Upstream(loopback_ip(), SLOW_S), "b.test": Upstream(loopback_ip(), SLOW_S),
             "good.test": Upstream(loopback_ip(), 0)}
    e.hosts = tmp_path / "hosts"
    write_hosts(e.hosts, {h: u.ip for h, u in e.ups.items()})
    e.store = tmp_path / "store"
    e.ctl = Ctl(egressctl_bin, e.store, tmp_path)
    docs = [plain_gateway_yaml()]
    for h in e.ups:
        docs += [service_entry_yaml(h, 80, "HTTP"), virtual_service_yaml(h, h, 80)]
    e.ctl.ok("apply", "-f", "-", input="---\n".join(docs))
    e.gw = None
    yield e
    try:
        if e.gw:
            assert e.gw.stop() == 0, e.gw.stderr()[-3000:]
    finally:
        for u in e.ups.values():
            u.stop()


def test_idle_pooled_upstreams_do_not_starve_a_good_client_at_ulimit_1024(env):
    env.gw = start_gateway(env.tmp, env.store, env.hosts, nofile=1024)
    dst = (env.gw.ip, 80)
    bad_src, good_src = loopback_ip(), loopback_ip()
    stop = threading.Event()
    good = []
    waves = []

    peak = [0]

    def good_client():
        while not stop.is_set():
            good.append(request(good_src, dst, "good.test"))
            try:
                peak[0] = max(peak[0], len(os.listdir(f"/proc/{env.gw.proc.pid}/fd")))
            except OSError:
                pass
            time.sleep(0.02)

    def wave(host):
        """WAVE requests at once: every connection made first, then every request sent,
        then every answer read (the upstream holds each for SLOW_S)."""
        socks, codes = [], []
        for _ in range(WAVE):
            s = socket.socket()
            s.settimeout(30)
            s.bind((bad_src, 0))
            try:
                s.connect(dst)
            except OSError:
                pass
            socks.append(s)
        for s in socks:
            try:
                s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            except OSError:
                pass
        for s in socks:
            try:
                got = s.recv(4096)
                codes.append(int(got.split(b" ")[1]) if got.startswith(b"HTTP/1.1 ") else 0)
            except OSError:
                codes.append(0)
            s.close()
        return codes

    g = threading.Thread(target=good_client)
    g.start()
    try:
        for i in range(WAVES):
            host = "a.test" if i % 2 == 0 else "b.test"
            codes = wave(host)
            waves.append((host, sum(1 for c in codes if c == 200), len(codes)))
    finally:
        stop.set()
        g.join(30)
    st = stats(env.gw)
    ok = sum(1 for c in good if c == 200)
    err = env.gw.stderr()
    print(f"\nwaves (host, 200s, sent): {waves}; good client {ok}/{len(good)}; "
          f"upstream connections made A {env.ups['a.test'].conns} B {env.ups['b.test'].conns}; "
          f"gateway descriptors at most {peak[0]}; "
          + ", ".join(f"{k[9:]} {st.get(k)}" for k in (
              "egressgw_downstream_cx_no_fd_total", "egressgw_downstream_cx_overflow_total",
              "egressgw_downstream_cx_evicted_total", "egressgw_upstream_cx_connect_fail_total",
              "egressgw_upstream_cx_total", "egressgw_upstream_cx_budget_shed_total",
            "egressgw_upstream_cx_budget_overflow_total"))
          + f"; 'Too many open files' in log: {err.count('Too many open files')}")
    assert len(good) >= 50, len(good)
    assert ok >= 0.99 * len(good), (ok, len(good), sorted(set(good)))
    assert "Too many open files" not in err, err[-2000:]
    assert st["egressgw_downstream_cx_no_fd_total"] == 0, st
    # Each wave stays under the budget (478): the idle connections of the wave before
    # give way, so it is served whole.
    for host, n200, sent in waves:
        assert n200 == sent, waves
    assert st["egressgw_upstream_cx_budget_shed_total"] >= WAVE, st
    assert st["egressgw_overload_max_upstream_connections"] == 478, st
