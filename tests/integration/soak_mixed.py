"""A soak (issue 17: "A 10-minute soak (keep-alive and new connection per request, mixed
sizes): RSS and descriptors flat after warm-up, reported as a curve").

Not part of `make test` (it takes SOAK_SECONDS, default 600): `make soak` runs it. The
file name does not match pytest's test_*.py on purpose; named on the command line, it
runs.

Through the gateway's MUTUAL origination to the walkthrough's nginx (two workers), four
client threads for the whole run: two keep one mesh mTLS connection each and send
request after request on it, two open a new connection per request; each asks in turn
for 1 KiB, 64 KiB and 1 MiB files. Every SAMPLE seconds the gateway's RSS and descriptor
count are sampled (printed as the curve). After the warm-up (the first tenth of the run,
at least 30 s), the mean of the last three samples may exceed the mean of the first three
by at most 10% + 2 MiB of RSS and 4 descriptors; no request may fail."""
import os
import re
import socket
import threading
import time

from gwlib import mesh_context, read_response
from test_mtls import NGINX_HOST, apply_mutual_dr, certs, env, mesh  # noqa: F401
from test_pool_follow import fds

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
SAMPLE = max(1.0, SOAK_SECONDS / 60)
SIZES = {"/s1k.bin": 1 << 10, "/s64k.bin": 64 << 10, "/s1m.bin": 1 << 20}


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)[1]) * 1024


class Soak:
    def __init__(self, env):
        self.env, self.stop_ev = env, threading.Event()
        self.ok, self.failed = 0, []
        self.lock = threading.Lock()

    def one(self, s, path):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {NGINX_HOST}\r\n\r\n".encode())
        status, _, body = read_response(s)
        if status != 200 or len(body) != SIZES[path]:
            raise AssertionError(f"{path}: {status}, {len(body)} bytes")

    def client(self, keepalive):
        ctx = mesh_context(self.env.mesh["client"])
        paths = list(SIZES)
        i, s = 0, None
        while not self.stop_ev.is_set():
            path = paths[i % len(paths)]
            i += 1
            try:
                if s is None:
                    raw = socket.create_connection((self.env.gw.ip, 443), timeout=10)
                    s = ctx.wrap_socket(raw, server_hostname=NGINX_HOST)
                self.one(s, path)
                with self.lock:
                    self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.failed.append(repr(exc))
                if s:
                    s.close()
                s = None
                continue
            if not keepalive:
                s.close()
                s = None
        if s:
            s.close()


def test_soak_keepalive_and_new_connections_mixed_sizes(env, certs):  # noqa: F811
    html = env.nginx.dir / "html"
    for path, n in SIZES.items():
        (html / path[1:]).write_bytes(os.urandom(n))
    apply_mutual_dr(env, "")
    env.create_credential()
    gw = env.start(workers=2)
    soak = Soak(env)
    threads = [threading.Thread(target=soak.client, args=(ka,)) for ka in (True, True, False, False)]
    t_start = time.time()
    for t in threads:
        t.start()
    curve = []
    try:
        while time.time() - t_start < SOAK_SECONDS:
            time.sleep(SAMPLE)
            curve.append((time.time() - t_start, rss(gw.proc.pid), fds(gw.proc.pid), soak.ok))
            assert gw.proc.poll() is None, "the gateway died"
    finally:
        soak.stop_ev.set()
        for t in threads:
            t.join(30)
    print(f"\nsoak: {SOAK_SECONDS:.0f}s, {soak.ok} requests, {len(soak.failed)} failed")
    print("  t(s)   RSS(KiB)  fds  requests")
    for t, r, f, n in curve:
        print(f"  {t:5.0f}  {r >> 10:8d}  {f:3d}  {n}")
    warm = max(30.0, SOAK_SECONDS / 10)
    after = [c for c in curve if c[0] >= warm]
    assert len(after) >= 6, "the run is too short to compare after the warm-up"
    first, last = after[:3], after[-3:]
    rss_first = sum(c[1] for c in first) / 3
    rss_last = sum(c[1] for c in last) / 3
    fd_first = max(c[2] for c in first)
    fd_last = sum(c[2] for c in last) / 3
    assert not soak.failed, soak.failed[:10]
    assert rss_last <= rss_first * 1.1 + (2 << 20), (rss_first, rss_last)
    assert fd_last <= fd_first + 4, (fd_first, fd_last)
