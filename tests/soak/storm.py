#!/usr/bin/env python3
"""A reload storm and a rotation storm together, under load, through the mesh (issue 17:
"A 60 s reload storm and a 60 s rotation storm together: 0 failed requests, no descriptor
or RSS growth"). `make storm` / `make soak` / .ci/nightly run it; not part of `make test`.

The mesh is tests/soak/meshsoak.py's: client -> sidecar -> egress gateway (2 workers) ->
nginx by MUTUAL origination with credentialName. For DURATION seconds, concurrently:

- load: KEEPALIVE clients that keep their connection to the sidecar and NEWCONN clients
  that open one per request, every answer checked (200 and a page "gen=N" of a generation
  already written);
- a reload storm: `egressctl apply` of a changed VirtualService (the gateway's route
  rewrites to /gN/, so each answer names a generation) together with a changed
  DestinationRule (the sidecar's subset for the gateway switches its load balancer, so
  the sidecar's cluster to the gateway is rebuilt), every INTERVAL seconds;
- a rotation storm: `egressctl apply` of the credentialName Secret alternating between
  the client certificates of serial 1 and 2, every INTERVAL seconds.

Before the storm the load runs alone for PRE seconds (the working set of descriptors);
after it, alone again for POST seconds. Both proxies' descriptors and RSS are sampled
every second. Fails (exit 1) on: any failed request; a proxy that died or exits non-zero
or with a sanitizer report; a generation never served or a serial never seen by nginx
(the storm did not take effect); descriptors at the end above the pre-storm working set
+ FD_SLACK; RSS at the end above RSS_GROWTH (10%) over the RSS after the warm-up (the
first WARMUP seconds of the storm; not checked under ASan, whose quarantine holds
freed memory)."""
import argparse
import re
import sys
import threading
import time

import meshsoak

FD_SLACK = 4
RSS_GROWTH = 0.10


def vs_and_dr(gen):
    """The walkthrough's 05 VirtualService with a rewrite on the gateway's route, and its
    04 DestinationRule for the gateway with the load balancer switched each generation."""
    lb = "ROUND_ROBIN" if gen % 2 == 0 else "LEAST_REQUEST"
    host, egw = meshsoak.NGINX_HOST, "istio-egressgateway.istio-system.svc.cluster.local"
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-nginx-through-egress-gateway
spec:
  hosts:
  - {host}
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: {egw}
        subset: nginx
        port:
          number: 443
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
    rewrite:
      uri: /g{gen}/
    route:
    - destination:
        host: {host}
        port:
          number: 443
      weight: 100
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-nginx
spec:
  host: {egw}
  subsets:
  - name: nginx
    trafficPolicy:
      loadBalancer:
        simple: {lb}
      portLevelSettings:
      - port:
          number: 443
        tls:
          mode: ISTIO_MUTUAL
          sni: {host}
"""


class Storm:
    def __init__(self, rig, interval):
        self.rig, self.interval = rig, interval
        self.stop_ev = threading.Event()
        # The highest generation whose apply has begun: the proxies may read the store
        # before egressctl returns, so an answer may name it as soon as the write starts.
        self.gen_started = 0
        self.applies = self.rotations = 0
        self.errors = []

    def page(self, gen):
        d = self.rig.html / f"g{gen}"
        d.mkdir(exist_ok=True)
        (d / "index.html").write_text(f"gen={gen}\n")

    def check(self, path, body):
        m = re.fullmatch(rb"gen=(\d+)\n", body)
        if not m:
            return f"unexpected body {body[:100]!r}"
        if int(m[1]) > self.gen_started:
            return f"generation {int(m[1])} before it was written"
        return None

    def reloads(self):
        gen = self.gen_started
        while not self.stop_ev.is_set():
            gen += 1
            self.page(gen)
            self.gen_started = gen
            r = self.rig.ctl("apply", "-f", "-", input=vs_and_dr(gen))
            if r.rc != 0:
                self.errors.append(f"apply of generation {gen}: {r.err}")
            else:
                self.applies += 1
            self.stop_ev.wait(self.interval)

    def rotate(self):
        serial = 1
        while not self.stop_ev.is_set():
            serial = 3 - serial
            try:
                self.rig.rotate(serial)
                self.rotations += 1
            except RuntimeError as exc:
                self.errors.append(str(exc))
            self.stop_ev.wait(self.interval)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="storm seconds (60)")
    ap.add_argument("--interval", type=float, default=0.15,
                    help="seconds between two applies, and between two rotations (0.15)")
    ap.add_argument("--pre", type=float, default=5.0, help="load alone before (5)")
    ap.add_argument("--post", type=float, default=5.0, help="load alone after (5)")
    ap.add_argument("--warmup", type=float, default=10.0, help="storm warm-up seconds (10)")
    ap.add_argument("--keepalive", type=int, default=2)
    ap.add_argument("--newconn", type=int, default=2)
    ap.add_argument("--no-reload", action="store_true", help="rotations only (bisecting)")
    ap.add_argument("--no-rotate", action="store_true", help="reloads only (bisecting)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()

    rig = meshsoak.MeshRig(gw_workers=2, keep=a.keep)
    storm = Storm(rig, a.interval)
    storm.page(0)
    rig.ctl.ok("apply", "-f", "-", input=vs_and_dr(0))
    first = meshsoak.wait_body(rig.proxy, "/", b"gen=0\n")
    print(f"storm: the mesh serves generation 0 ({first})")
    clients = meshsoak.Clients(rig.proxy, ["/"], storm.check)
    samples = []        # (t, {name: (fds, rss)}, requests)
    problems = []
    t0 = time.time()
    reloads0 = {n: p.stat("config_reloads_total") for n, p in
                (("sidecar", rig.sidecar), ("gateway", rig.gateway))}
    try:
        clients.start(a.keepalive, a.newconn)
        workers = [threading.Thread(target=f) for f, off in
                   ((storm.reloads, a.no_reload), (storm.rotate, a.no_rotate)) if not off]
        phase_ends = [a.pre, a.pre + a.duration, a.pre + a.duration + a.post]
        started = False
        while time.time() - t0 < phase_ends[2]:
            time.sleep(1.0)
            now = time.time() - t0
            if not rig.alive():
                problems.append("a proxy died")
                break
            samples.append((now, rig.sample(), clients.ok))
            if not started and now >= phase_ends[0]:
                for w in workers:
                    w.start()
                started = True
            if started and now >= phase_ends[1] and not storm.stop_ev.is_set():
                storm.stop_ev.set()
                for w in workers:
                    w.join(30)
    finally:
        storm.stop_ev.set()
        clients.stop()
        reloads = {}
        if rig.alive():
            reloads = {n: p.stat("config_reloads_total") - reloads0[n] for n, p in
                       (("sidecar", rig.sidecar), ("gateway", rig.gateway))}
        serials = rig.serials()
        rig.stop_checked(problems)

    pre = [s for s in samples if s[0] < a.pre]
    warm = [s for s in samples if a.pre <= s[0] < a.pre + a.warmup]
    after = [s for s in samples if s[0] >= a.pre + a.warmup]
    print(f"storm: {a.duration:.0f}s storm ({a.pre:.0f}s load before, {a.post:.0f}s after), "
          f"load average {meshsoak.loadavg()}, ASan={meshsoak.ASAN}")
    print(f"  requests {clients.ok + len(clients.failed)}, failed {len(clients.failed)}, "
          f"keep-alive connections closed by the sidecar {clients.closed_by_proxy}")
    print(f"  applies {storm.applies} (generations 1..{storm.gen_started}), rotations "
          f"{storm.rotations}, reloads seen {reloads}, nginx saw client serials {serials}")
    for err in storm.errors[:5]:
        problems.append(f"storm: {err}")
    for t, why in clients.failed[:10]:
        print(f"  FAILED at {t - t0:.1f}s: {why}")
    if clients.failed:
        problems.append(f"{len(clients.failed)} failed requests")
    if (storm.applies < 10 and not a.no_reload) or (storm.rotations < 10 and not a.no_rotate):
        problems.append("too few changes for a storm")
    if set(serials) != {"01", "02"} and not a.no_rotate:
        problems.append(f"nginx did not see both client certificates: {serials}")
    if not pre or not warm or not after:
        problems.append("too few samples")
    else:
        for name in ("sidecar", "gateway"):
            ws = max(s[1][name][0] for s in pre)
            fd_end = after[-1][1][name][0]
            fd_max = max(s[1][name][0] for s in after)
            rss_warm = max(s[1][name][1] for s in warm)
            rss_after = [s[1][name][1] for s in after]
            print(f"  {name}: fds working set {ws}, after warm-up first {after[0][1][name][0]} "
                  f"max {fd_max} last {fd_end}; RSS KiB at warm-up {rss_warm}, after: first "
                  f"{rss_after[0]} max {max(rss_after)} last {rss_after[-1]} "
                  f"({100.0 * (rss_after[-1] - rss_warm) / rss_warm:+.1f}%)")
            if fd_end > ws + FD_SLACK:
                problems.append(f"{name}: {fd_end} descriptors at the end, working set {ws}")
            if not meshsoak.ASAN and rss_after[-1] > rss_warm * (1 + RSS_GROWTH):
                problems.append(f"{name}: RSS {rss_after[-1]} KiB at the end, "
                                f"{rss_warm} KiB after the warm-up")
    print("  t(s)  sidecar fds RSS(KiB)  gateway fds RSS(KiB)  requests")
    for t, s, n in samples:
        print(f"  {t:4.0f}  {s['sidecar'][0]:11d} {s['sidecar'][1]:8d}  "
              f"{s['gateway'][0]:11d} {s['gateway'][1]:8d}  {n}")
    return meshsoak.verdict("storm", problems)


if __name__ == "__main__":
    sys.exit(main())
