"""Heap allocations per HTTP/2 request and memory per open HTTP/2 stream (issue 13's
targets: 0 allocations per request in the steady state, at most 8 KiB per stream).

Allocations are counted by build/tests/malloc_count.so (tests/tools/malloc_count.c),
preloaded into the egressgw processes only: malloc + calloc + realloc + the aligned
allocators, over N_REQUESTS requests after WARMUP requests (connections, pools, caches and
free lists are all made by then), read from the shared counter file while the process
runs. Three paths:
  - the gateway's HTTP/2 listener from an HTTP/2 client (h2load, h2gwlib.py's SIMPLE TLS
    server), upstream HTTP/1.1 over TLS to nginx;
  - the mesh hop: application → sidecar (HTTP/1.1) → HTTP/2 over ISTIO_MUTUAL → gateway,
    counted on the sidecar and on the gateway.
Memory per stream: 1,000 streams held open on the gateway's HTTP/2 listener (10
connections of 100; the cluster's connectionPool allows one upstream connection, kept busy
by a slow download, so 999 requests wait in the gateway's queue and no upstream connection
is made for them), and the growth of the heap in use (the /memory admin endpoint's
"allocated", glibc's mallinfo2) and of VmRSS, divided by the streams.

The bounds below are today's measured values plus a margin, so that the test passes now
and catches a regression; issue 13 lowers them to its targets (0 and 8 KiB) when the
request core lands. Every measured value is printed (pytest -s shows them).

Under the sanitizer build (EGRESSGW_BUILD ending in build-san) and under EGRESSGW_VALGRIND
the test is skipped: ASan and memcheck replace malloc, so neither the preloaded counter nor
mallinfo2 sees the allocations."""
import os
import pathlib
import socket
import ssl
import struct
import subprocess
import time

import pytest

from gwlib import BUILD, VALGRIND
from h2gwlib import CNN, H2_PORT, h2load, preload_env, start_h2_gateway
from h2raw import (ACK, END_HEADERS, END_STREAM, HEADERS, RST_STREAM, SETTINGS, RawH2, frame,
                   request)
from test_gateway import mesh, site  # noqa: F401 (fixtures)
from test_h2load import assert_all_succeeded, sidecar_h2load
from test_sidecar import Topology, apply_cnn, wait_routed

# ---- the bounds (today's values plus a margin; issue 13's targets in the comments) ----
# Heap calls per request in the steady state. History: 13.1 (h2 client), 22.0 (gateway mesh
# hop), 17.1 (sidecar) before the free lists; then 4.2-5.8, 7.4-9.6, 4.1-5.5, depending on
# the machine's load (OpenSSL's record buffers, allocated per SSL_read/SSL_write under
# SSL_MODE_RELEASE_BUFFERS: fewer when more requests share one read). Since net/tls_mem.c
# keeps OpenSSL's record buffers and 40-byte WPACKET blocks per thread and up_h2.c submits
# a head without copying it: 0.00 on both ends of the mesh hop; the HTTP/2 client's 0.24
# are its 4 new connections (handshakes), 0.00 per request beyond them (MAX_ALLOCS_NET).
MAX_ALLOCS_GATEWAY_H2_CLIENT = 0.6     # with 4 connections' set-up in 10,000 requests
# Issue 13's target is 0 (measured 0.000-0.004): the margin is for new upstream connections
# a loaded machine may need in the measured run (about 150 allocations each: 10 would be 0.15),
# not for any allocation per request.
MAX_ALLOCS_NET = 0.2
MAX_ALLOCS_GATEWAY_MESH_HOP = 0.05
MAX_ALLOCS_SIDECAR_MESH_HOP = 0.05
# Heap bytes in use per open gateway HTTP/2 stream (waiting for its upstream connection).
# Measured 25,567 at first, 9,109-9,143 with a stream's two heads inline, 7,031 since the
# response head is taken when the response arrives (fwd_core.c st_resp): issue 13's 8 KiB.
MAX_HEAP_PER_STREAM = 8192
MAX_RSS_PER_STREAM = 10 * 1024         # 15,454 and 15,442 at first, 11,166, then 7,246

WARMUP = 2000
N_REQUESTS = 10000
N_STREAMS = 1000

SHIM = BUILD / "tests" / "malloc_count.so"

pytestmark = [
    pytest.mark.skipif(
        "build-san" in str(BUILD),
        reason="sanitizer build: ASan replaces malloc, so an LD_PRELOAD allocation counter "
               "and mallinfo2 see nothing; this test runs with the native build"),
    pytest.mark.skipif(
        VALGRIND, reason="EGRESSGW_VALGRIND: memcheck replaces malloc, so the counter sees "
                         "nothing; this test runs with the native build"),
]


@pytest.fixture
def shim():
    assert SHIM.is_file(), f"{SHIM} is missing: make {SHIM.relative_to(BUILD.parent)} " \
        "(make integration builds it)"
    return SHIM


class Counter:
    """The malloc_count file of one process."""
    FIELDS = ("malloc", "calloc", "realloc", "free", "aligned", "live")

    def __init__(self, tmpl, pid):
        self.path = pathlib.Path(str(tmpl).replace("%p", str(pid)))

    def read(self):
        data = self.path.read_bytes()[:56]
        magic, *vals = struct.unpack("=8s5Qq", data)
        assert magic == b"MALCNT01", f"{self.path}: not a malloc_count file"
        return dict(zip(self.FIELDS, vals))

    @staticmethod
    def allocs(c):
        return c["malloc"] + c["calloc"] + c["realloc"] + c["aligned"]


def preload(tmp_path, name):
    tmpl = tmp_path / f"{name}.malloc.%p"
    return tmpl, {"LD_PRELOAD": str(SHIM), "MALLOC_COUNT_FILE": str(tmpl),
                  "MALLOC_COUNT_EXE": "egressgw"}


def per_request(before, after, n):
    d = {k: after[k] - before[k] for k in Counter.FIELDS}
    return Counter.allocs(d) / n, d


def report(what, allocs, d):
    print(f"\n{what}: {allocs:.2f} heap allocations per request "
          f"(malloc {d['malloc']}, calloc {d['calloc']}, realloc {d['realloc']}, "
          f"aligned {d['aligned']}, free {d['free']} over {N_REQUESTS} requests; "
          f"heap in use {d['live']:+d} bytes)")


def keep_upstream_connections(*nginxes):
    """nginx closes a keep-alive connection after 1,000 requests (keepalive_requests): the
    proxy's next upstream connection then costs a TLS handshake's allocations (about 150),
    which are per connection, not per request. The counts here are of the steady state."""
    for n in nginxes:
        conf = n.dir / "nginx.conf"
        text = conf.read_text()
        assert "default_type text/html;" in text, conf
        conf.write_text(text.replace("default_type text/html;",
                                     "default_type text/html;\n  keepalive_requests 1000000;", 1))
        subprocess.run(["nginx", "-p", str(n.dir), "-c", str(conf), "-s", "reload"],
                       check=True, capture_output=True, timeout=20)
    time.sleep(0.5)


def test_allocations_per_request_gateway_from_an_h2_client(tmp_path, ctl, walkthrough, mesh,  # noqa: F811
                                                           site, store, shim):
    tmpl, env = preload(tmp_path, "gateway")
    keep_upstream_connections(site["nginx"])
    g = start_h2_gateway(tmp_path, ctl, walkthrough, mesh, site, store, env=env)
    try:
        c = Counter(tmpl, g.proc.pid)
        rc, out = h2load(g.ip, "-n", str(WARMUP), "-c", "4", "-m", "10")
        assert rc == 0, out
        # Each h2load run opens 4 new connections (TLS handshakes, HTTP/2 sessions: a few
        # hundred allocations each); a run of 40 requests counts that cost, the run of
        # N_REQUESTS less it is what the requests themselves cost.
        before = c.read()
        rc, out = h2load(g.ip, "-n", "40", "-c", "4", "-m", "10")
        mid = c.read()
        assert rc == 0, out
        rc, out = h2load(g.ip, "-n", str(N_REQUESTS), "-c", "4", "-m", "10")
        after = c.read()
        assert rc == 0, out
        assert_all_succeeded(out, N_REQUESTS)
        allocs, d = per_request(mid, after, N_REQUESTS)
        report("gateway, HTTP/2 client (h2load -c 4 -m 10)", allocs, d)
        conns = Counter.allocs(per_request(before, mid, 1)[1])
        net = (Counter.allocs(d) - conns) / (N_REQUESTS - 40)
        print(f"gateway, HTTP/2 client: 4 connections and 40 requests {conns} allocations; "
              f"{net:.3f} per request beyond them")
        assert allocs <= MAX_ALLOCS_GATEWAY_H2_CLIENT, (allocs, d)
        assert net <= MAX_ALLOCS_NET, (net, conns, d)
    finally:
        assert g.stop() == 0


def test_allocations_per_request_on_the_mesh_hop(tmp_path, ctl, egressctl_bin, store,
                                                 walkthrough, walkthrough_certs, shim):
    tmpl, env = preload(tmp_path, "mesh")
    with preload_env(env):
        t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    try:
        keep_upstream_connections(*t.sites)
        apply_cnn(t)
        wait_routed(t)
        sc, gw = Counter(tmpl, t.sidecar.proc.pid), Counter(tmpl, t.gateway.proc.pid)
        rc, out = sidecar_h2load(t, WARMUP, ["-c", "4", "-m", "1"])
        assert rc == 0, out
        b_sc, b_gw = sc.read(), gw.read()
        rc, out = sidecar_h2load(t, N_REQUESTS, ["-c", "4", "-m", "1"])
        a_sc, a_gw = sc.read(), gw.read()
        assert rc == 0, out
        assert_all_succeeded(out, N_REQUESTS)
        assert t.sidecar.stat("upstream_cx_http2_total") == 1
        s_allocs, s_d = per_request(b_sc, a_sc, N_REQUESTS)
        g_allocs, g_d = per_request(b_gw, a_gw, N_REQUESTS)
        report("sidecar, HTTP/1.1 in, HTTP/2 mesh hop out", s_allocs, s_d)
        report("gateway, HTTP/2 mesh hop in", g_allocs, g_d)
        assert s_allocs <= MAX_ALLOCS_SIDECAR_MESH_HOP, (s_allocs, s_d)
        assert g_allocs <= MAX_ALLOCS_GATEWAY_MESH_HOP, (g_allocs, g_d)
    finally:
        assert t.stop() == [0] * (1 + len(t.sidecars))


# One upstream connection for the cluster, and room for every stream in its queue.
ONE_CONNECTION = """      connectionPool:
        tcp: {maxConnections: 1}
        http: {http1MaxPendingRequests: 5000}
"""


def h2_connection(ip):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection((ip, H2_PORT), timeout=10),
                        server_hostname=CNN)
    assert s.selected_alpn_protocol() == "h2"
    c = RawH2(s)
    assert c.until(lambda e: e.kind == "frame" and e.ftype == SETTINGS and e.flags & ACK)
    return c


def vm_rss(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def heap_allocated(g):
    import json
    status, body = g.admin("/memory")
    assert status == 200, body
    return int(json.loads(body)["allocated"])


def test_memory_per_open_gateway_stream(tmp_path, ctl, walkthrough, mesh, site, store):  # noqa: F811
    # nginx sends /big (2 MiB) at 10 KiB/s: the one upstream connection stays busy.
    html = site["nginx"].dir / "html"
    (html / "big").write_bytes(b"z" * (2 * 1024 * 1024))
    conf = site["nginx"].dir / "nginx.conf"
    conf.write_text(conf.read_text().replace(
        "location = /big {", "location = /big { limit_rate 10k;"))
    subprocess.run(["nginx", "-p", str(site["nginx"].dir), "-c", str(conf), "-s", "reload"],
                   check=True, capture_output=True, timeout=20)
    time.sleep(0.5)
    g = start_h2_gateway(tmp_path, ctl, walkthrough, mesh, site, store,
                         connection_pool=ONE_CONNECTION)
    conns = []
    try:
        # Warm-up: the upstream connection, the caches, one stream per connection slot.
        conns = [h2_connection(g.ip) for _ in range(N_STREAMS // 100)]
        for c in conns:
            c.get(1)
            assert c.response(1).status == "200"
        time.sleep(0.3)
        heap0, rss0 = heap_allocated(g), vm_rss(g.proc.pid)
        # The slow download takes the one connection; then 999 requests queue behind it.
        conns[0].get(3, path="/big")
        ev = conns[0].response(3)
        assert ev.kind == "headers" and ev.status == "200", ev
        n = 1
        for i, c in enumerate(conns):
            batch = b""
            for k in range(99 if i == 0 else 100):
                sid = 5 + 2 * k if i == 0 else 3 + 2 * k
                batch += frame(HEADERS, END_HEADERS | END_STREAM, sid, c.block(request()))
                n += 1
            c.send(batch)
        assert n == N_STREAMS
        deadline = time.time() + 20
        while True:
            text = g.admin("/stats/prometheus")[1]
            pending = [ln for ln in text.splitlines()
                       if ln.startswith("egressgw_upstream_rq_pending_active ")]
            if pending and int(pending[0].split()[1]) >= N_STREAMS - 1:
                break
            assert time.time() < deadline, f"streams not all queued: {pending}"
            time.sleep(0.1)
        time.sleep(0.3)
        heap1, rss1 = heap_allocated(g), vm_rss(g.proc.pid)
        # None of them was answered or reset meanwhile: they are all open.
        for c in conns:
            assert not c.closed and not c.send_failed
            assert [e.sid for e in c.events if e.kind == "headers"] in ([1], [1, 3]), c.events[-3:]
            assert not [e for e in c.events if e.kind == "frame" and e.ftype == RST_STREAM]
        heap_per, rss_per = (heap1 - heap0) / N_STREAMS, (rss1 - rss0) / N_STREAMS
        print(f"\ngateway: {N_STREAMS} open HTTP/2 streams (queued for the upstream "
              f"connection): heap in use +{heap1 - heap0} bytes ({heap_per:.0f} per stream), "
              f"VmRSS +{rss1 - rss0} bytes ({rss_per:.0f} per stream)")
        assert heap_per <= MAX_HEAP_PER_STREAM, heap_per
        assert rss_per <= MAX_RSS_PER_STREAM, rss_per
    finally:
        for c in conns:
            c.close()
        assert g.stop() == 0


def test_counter_counts(tmp_path, shim):
    """The shim itself: a process that makes a known number of allocations is counted."""
    tmpl = tmp_path / "py.malloc.%p"
    code = ("import ctypes, sys; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; "
            "ps = [libc.malloc(100) for _ in range(5000)]; "
            "[libc.free(ctypes.c_void_p(p)) for p in ps]; print('ok')")
    env = dict(os.environ, LD_PRELOAD=str(shim), MALLOC_COUNT_FILE=str(tmpl))
    p = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
    files = list(tmp_path.glob("py.malloc.*"))
    assert len(files) == 1
    c = Counter(tmpl, files[0].name.rsplit(".", 1)[1]).read()
    assert c["malloc"] >= 5000 and c["free"] >= 5000, c
    # MALLOC_COUNT_EXE: another executable is not counted (no file).
    env["MALLOC_COUNT_EXE"] = "egressgw"
    env["MALLOC_COUNT_FILE"] = str(tmp_path / "other.%p")
    subprocess.run(["/usr/bin/python3", "-c", "print(1)"], env=env, check=True,
                   capture_output=True, timeout=60)
    assert not list(tmp_path.glob("other.*"))
