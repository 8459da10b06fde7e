#!/usr/bin/env python3
"""A soak through the mesh (issue 17: "A 10-minute soak (keep-alive and new connection
per request, mixed sizes): RSS and descriptors flat after warm-up, reported as a curve").
`make soak` / .ci/nightly run it after tests/soak/storm.py; not part of `make test`.

The mesh is tests/soak/meshsoak.py's: client -> sidecar -> egress gateway (2 workers) ->
nginx by MUTUAL origination with credentialName. For DURATION seconds (600), KEEPALIVE
clients keep one connection to the sidecar each and NEWCONN clients open one per request;
each asks in turn for a small page, 16 KiB and 1 MiB (random bytes, checked byte for
byte). Every SAMPLE seconds (10) both proxies' RSS and descriptors are sampled; the curve
is printed as a table (t, RSS KiB, fds, requests so far).

Fails (exit 1) on: any failed request; a proxy that died, exits non-zero or with a
sanitizer report; RSS at the end more than RSS_GROWTH (10%) above RSS at WARMUP (60 s;
not checked under ASan, whose quarantine holds freed memory); descriptors at the end above
the working set (the most seen up to WARMUP) + FD_SLACK. One sample of RSS swings by a
1 MiB response's buffers, so "RSS at" a time is the highest of the three samples up to
it (at the end: the last three)."""
import argparse
import os
import sys
import time

import meshsoak

FD_SLACK = 4
RSS_GROWTH = 0.10


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (600)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples (10)")
    ap.add_argument("--warmup", type=float, default=60.0, help="warm-up seconds (60)")
    ap.add_argument("--keepalive", type=int, default=2)
    ap.add_argument("--newconn", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    if a.duration < a.warmup + 3 * a.sample:
        ap.error("the run must last at least the warm-up and three samples")

    rig = meshsoak.MeshRig(gw_workers=2, keep=a.keep)
    files = {"/small.txt": os.urandom(100), "/s16k.bin": os.urandom(16 << 10),
             "/s1m.bin": os.urandom(1 << 20)}
    for p, data in files.items():
        (rig.html / p[1:]).write_bytes(data)

    def check(path, body):
        if body == files[path]:
            return None
        return f"{path}: {len(body)} bytes, not the {len(files[path])} of the file"

    print(f"soak: the mesh serves ({meshsoak.wait_body(rig.proxy, '/small.txt', files['/small.txt'])})")
    clients = meshsoak.Clients(rig.proxy, list(files), check)
    curve = []        # (t, {name: (fds, rss)}, requests, load average)
    problems = []
    t0 = time.time()
    try:
        clients.start(a.keepalive, a.newconn)
        while time.time() - t0 < a.duration:
            time.sleep(min(a.sample, max(0.0, a.duration - (time.time() - t0))))
            if not rig.alive():
                problems.append("a proxy died")
                break
            curve.append((time.time() - t0, rig.sample(), clients.ok, meshsoak.loadavg()))
    finally:
        clients.stop()
        rig.stop_checked(problems)

    n = clients.ok + len(clients.failed)
    print(f"soak: {a.duration:.0f}s, {a.keepalive} keep-alive + {a.newconn} new-connection "
          f"clients, sizes 100 B / 16 KiB / 1 MiB, ASan={meshsoak.ASAN}")
    print(f"  requests {n}, failed {len(clients.failed)}, keep-alive connections closed by "
          f"the sidecar {clients.closed_by_proxy}")
    print("  t(s)  sidecar RSS(KiB) fds  gateway RSS(KiB) fds  requests  load")
    for t, s, k, load in curve:
        print(f"  {t:4.0f}  {s['sidecar'][1]:16d} {s['sidecar'][0]:3d}  "
              f"{s['gateway'][1]:16d} {s['gateway'][0]:3d}  {k:8d}  {load}")
    for t, why in clients.failed[:10]:
        print(f"  FAILED at {t - t0:.1f}s: {why}")
    if clients.failed:
        problems.append(f"{len(clients.failed)} failed requests")
    warm = [c for c in curve if c[0] <= a.warmup + 1]
    after = [c for c in curve if c[0] > a.warmup + 1]
    if not warm or len(after) < 3:
        problems.append("too few samples")
    else:
        for name in ("sidecar", "gateway"):
            ws = max(c[1][name][0] for c in warm)
            rss_warm = max(c[1][name][1] for c in warm[-3:])
            rss_end = max(c[1][name][1] for c in curve[-3:])
            fd_end = curve[-1][1][name][0]
            rss_max = max(c[1][name][1] for c in after)
            print(f"  {name}: RSS KiB at {warm[-1][0]:.0f}s {rss_warm}, max after {rss_max}, "
                  f"end {rss_end} ({100.0 * (rss_end - rss_warm) / rss_warm:+.1f}%); fds "
                  f"working set {ws}, max after {max(c[1][name][0] for c in after)}, end {fd_end}")
            if fd_end > ws + FD_SLACK:
                problems.append(f"{name}: {fd_end} descriptors at the end, working set {ws}")
            if not meshsoak.ASAN and rss_end > rss_warm * (1 + RSS_GROWTH):
                problems.append(f"{name}: RSS {rss_end} KiB at the end, {rss_warm} KiB at "
                                f"{warm[-1][0]:.0f}s")
    return meshsoak.verdict("soak", problems)


if __name__ == "__main__":
    sys.exit(main())
