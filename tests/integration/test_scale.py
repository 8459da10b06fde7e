"""Configuration at scale: start-up and reload cost grows linearly with the configuration.

The store is bench/gen_hosts.py's (per host a ServiceEntry, a VirtualService with two HTTP
routes bound to one Gateway, a DestinationRule originating TLS; names in a --hosts-file).
Cost is the gateway's CPU time (user + system), which a machine loaded by other work
stretches far less than wall time. 4x the hosts must cost less than 6x the CPU: a step that
is quadratic again (a linear look-up inside a loop over the configuration, as the hosts
file, store_find and the YAML arenas were) fails it at these sizes.

A reload reads only the files that changed (the summary line counts the files parsed and
the unchanged ones taken from the cache), serves what the change says, and /ready keeps
answering within 50 ms (p99) while it runs.
"""
import json
import re
import resource
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO
from gwlib import BUILD, loopback_ip, scaled

sys.path.insert(0, str(REPO / "bench"))
import scale_ready  # noqa: E402  (bench/scale_ready.py: start, wait_ready, cpu_s, rss_kb)

SMALL = 1500
RATIO = 6.0
# The target is 50 ms. The main thread's own work during a 6,000-host reload is
# about 15 ms of CPU (perf: dns_jobs_start, the store watcher's rebuild); on this 2-core
# machine shared with other builds /ready was seen at 40-235 ms, waiting for a CPU. The
# bound fails a build that runs on the main thread again (1.5-2 s at 6,000 hosts).
# AddressSanitizer makes the main thread's part about 10x slower (1 s seen).
SANITIZED = b"__asan_init" in (BUILD / "egressgw").read_bytes()
READY_MAX_S = 2.0 if SANITIZED else 0.5
# The 50 ms for the p99 of the polls during the reloads, over the p99 of the same
# polls for a second before them (the idle gateway's: what waiting for a CPU that other
# builds hold costs on this machine); 10x under AddressSanitizer, as above.
READY_P99_S = 0.5 if SANITIZED else 0.05


@pytest.fixture(scope="module")
def identity(tmp_path_factory, egressctl_bin):
    d = tmp_path_factory.mktemp("scale-id")
    subprocess.run([egressctl_bin, "ca", "init", "--dir", d / "ca"], check=True,
                   capture_output=True)
    subprocess.run([egressctl_bin, "ca", "issue", "--dir", d / "ca", "--namespace", "istio-system",
                    "--service-account", "istio-egressgateway-service-account", "--out", d / "id"],
                   check=True, capture_output=True)
    return d / "id"


def gen(tmp, n, layout="files"):
    store, hosts = tmp / f"store{n}", tmp / f"hosts{n}"
    subprocess.run([sys.executable, REPO / "bench" / "gen_hosts.py", "--hosts", str(n),
                    "--store", store, "--hosts-file", hosts, "--layout", layout], check=True)
    return store, hosts


def wait_line(path, pattern, proc, timeout):
    deadline = time.monotonic() + scaled(timeout)
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            m = rx.search(line)
            if m:
                return m
        assert proc.poll() is None, f"egressgw exited {proc.returncode}: {path.read_text()[-2000:]}"
        time.sleep(0.01)
    raise AssertionError(f"no line matching {pattern!r} in {path}: {path.read_text()[-2000:]}")


class ReadyPoller:
    """Polls /ready every 5 ms on a thread of its own and keeps each answer's latency."""

    def __init__(self, port):
        self.port, self.lat, self.codes = port, [], set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            code, _ = scale_ready.get(self.port, "/ready")
            self.lat.append(time.monotonic() - t)
            self.codes.add(code)
            time.sleep(0.005)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return sorted(self.lat)


def cluster_dump(port, name):
    code, body = scale_ready.get(port, "/config_dump", timeout=30)
    assert code == 200
    return next(c for c in json.loads(body)["clusters"] if c["name"] == name)


def wait_applied(err, proc, version):
    deadline = time.monotonic() + scaled(120)
    while f"configuration version {version} applied" not in err.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, err.read_text()[-2000:]
        time.sleep(0.005)


def p99(lat):
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def start_and_reload(tmp, identity, n):
    """(CPU to ready with the first DNS round done, CPU of one reload, the log, the /ready
    latencies during the reloads, sorted, the p99 of /ready on the idle gateway) for n
    hosts."""
    store, hosts = gen(tmp, n)
    err = tmp / f"gw{n}.err"
    proc, port, t0 = scale_ready.start(str(BUILD / "egressgw"), str(store), str(hosts),
                                       str(identity), listen=loopback_ip(), errlog=str(err))
    try:
        scale_ready.wait_ready(proc, port, t0, timeout=scaled(120))
        wait_line(err, r"DNS cluster\(s\) resolved", proc, 60)
        start_cpu = scale_ready.cpu_s(proc.pid)
        name = "outbound|443||svc000000.example.com"
        assert cluster_dump(port, name)["tls"]["sans"] == []
        # The machine's own noise: the idle gateway's /ready for a second.
        poller = ReadyPoller(port)
        time.sleep(1.0)
        idle = poller.finish()
        # /ready keeps answering while the reload reads and compiles on its own thread
        # (polled during the reloads only: /config_dump is rendered on the main thread).
        poller = ReadyPoller(port)
        # One DestinationRule changed in place (an editor; egressctl renames a new file).
        dr = store / "config" / "default" / "destinationrules" / "svc000000.yaml"
        dr.write_text(dr.read_text().replace("mode: SIMPLE", "mode: SIMPLE\n        "
                                             "subjectAltNames: [svc000000.example.com]"))
        wait_applied(err, proc, 2)
        lat = poller.finish()
        reload_cpu = scale_ready.cpu_s(proc.pid) - start_cpu
        # What the change says is what is served.
        assert cluster_dump(port, name)["tls"]["sans"] == ["svc000000.example.com"]
        # Another removed: its file goes out of the cache, its rule out of the cluster.
        codes, poller = poller.codes, ReadyPoller(port)
        (store / "config" / "default" / "destinationrules" / "svc000001.yaml").unlink()
        wait_applied(err, proc, 3)
        lat = sorted(lat + poller.finish())
        assert cluster_dump(port, "outbound|443||svc000001.example.com")[
            "destination_rule"] is None
        assert codes | poller.codes == {200}, codes | poller.codes
        log = err.read_text()
    finally:
        proc.terminate()
        proc.wait(scaled(30))
    assert proc.returncode == 0, log[-2000:]
    return start_cpu, reload_cpu, log, lat, p99(idle)


def apply_cpu(egressctl_bin, store, name):
    """User + system CPU of `egressctl apply` of DestinationRule name (a subjectAltNames
    line added) into store."""
    text = (store / "config" / "default" / "destinationrules" / f"{name}.yaml").read_text()
    doc = store.parent / f"{name}-{time.monotonic_ns()}.yaml"
    doc.write_text(text.replace("mode: SIMPLE", "mode: SIMPLE\n        subjectAltNames: "
                                f"[{name}-{time.monotonic_ns()}.example.com]"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([egressctl_bin, "--store", store, "apply", "-f", doc],
                       capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0 and r.stdout.endswith(" configured\n"), r.stdout + r.stderr
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_start_and_reload_grow_linearly(tmp_path, identity, egressctl_bin):
    small = start_and_reload(tmp_path, identity, SMALL)
    big = start_and_reload(tmp_path, identity, 4 * SMALL)
    p = [p99(small[3]), p99(big[3])]
    print(f"\n{SMALL} hosts: start {small[0]:.2f} s CPU, reload {small[1]:.2f} s; "
          f"{4 * SMALL} hosts: start {big[0]:.2f} s, reload {big[1]:.2f} s; /ready during "
          f"the reloads: p99 {p[0] * 1000:.0f} / {p[1] * 1000:.0f} ms (idle: "
          f"{small[4] * 1000:.0f} / {big[4] * 1000:.0f} ms), slowest "
          f"{small[3][-1] * 1000:.0f} / {big[3][-1] * 1000:.0f} ms "
          f"({len(small[3])} / {len(big[3])} polls)")
    assert big[0] < RATIO * small[0], (small[0], big[0])
    assert big[1] < RATIO * max(small[1], 0.05), (small[1], big[1])
    # Start-up logs a summary, not a line per cluster.
    assert "4 cluster(s)" not in big[2]
    assert f"{4 * SMALL} cluster(s) from {12 * SMALL + 1} resource(s)" in big[2]
    assert len(big[2].splitlines()) < 20, big[2][:3000]
    # A reload reads only what changed: the changed file, then nothing (one removed).
    for n, (_, _, log, _, _) in ((SMALL, small), (4 * SMALL, big)):
        files = 3 * n + 1
        assert f"in {files} file(s) (1 parsed, {files - 1} unchanged)" in log, log[-3000:]
        assert f"in {files - 1} file(s) (0 parsed, {files - 1} unchanged)" in log, log[-3000:]
    # egressctl apply of one DestinationRule reads the store index and the file holding it,
    # not the store: once the first apply has built the index, one costs a small part of
    # the gateway's start, whose reading of the whole store is about three quarters (seen:
    # 40 ms of 0.88 s natively, 0.84 of 5.2 s under AddressSanitizer).
    big_store = tmp_path / f"store{4 * SMALL}"
    apply_cpu(egressctl_bin, big_store, "svc000003")
    cost = min(apply_cpu(egressctl_bin, big_store, f"svc00000{i}") for i in (4, 5, 6))
    print(f"apply into {4 * SMALL} hosts: {cost * 1000:.0f} ms CPU")
    assert cost < big[0] / 3, (cost, big[0])
    assert max(small[3][-1], big[3][-1]) < READY_MAX_S, (small[3][-5:], big[3][-5:])
    # Over the polls of both sizes' reloads (a few hundred): with a hundred polls the p99 is
    # the slowest one, which one wait for a CPU decides on a loaded machine.
    both = p99(sorted(small[3] + big[3]))
    assert both < READY_P99_S + max(small[4], big[4]), (both, p, small[4], big[4])
