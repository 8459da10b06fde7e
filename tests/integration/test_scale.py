"""Configuration at scale: start-up and reload cost grows linearly with the configuration.

The store is bench/gen_hosts.py's (per host a ServiceEntry, a VirtualService with two HTTP
routes bound to one Gateway, a DestinationRule originating TLS; names in a --hosts-file).
Cost is the gateway's CPU time (user + system), which a machine loaded by other work
stretches far less than wall time. 4x the hosts must cost less than 6x the CPU: a step that
is quadratic again (a linear look-up inside a loop over the configuration, as the hosts
file, store_find and the YAML arenas were) fails it at these sizes.
"""
import re
import subprocess
import sys
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


def start_and_reload(tmp, identity, n):
    """(CPU to ready with the first DNS round done, CPU of one reload, the log, the slowest
    /ready during the reload) for n hosts."""
    store, hosts = gen(tmp, n)
    err = tmp / f"gw{n}.err"
    proc, port, t0 = scale_ready.start(str(BUILD / "egressgw"), str(store), str(hosts),
                                       str(identity), listen=loopback_ip(), errlog=str(err))
    try:
        scale_ready.wait_ready(proc, port, t0, timeout=scaled(120))
        wait_line(err, r"DNS cluster\(s\) resolved", proc, 60)
        start_cpu = scale_ready.cpu_s(proc.pid)
        # One DestinationRule changed, as `egressctl apply` writes it.
        dr = store / "config" / "default" / "destinationrules" / "svc000000.yaml"
        dr.write_text(dr.read_text().replace("mode: SIMPLE", "mode: SIMPLE\n        "
                                             "subjectAltNames: [svc000000.example.com]"))
        # /ready keeps answering while the reload reads and compiles on its own thread.
        worst, deadline = 0.0, time.monotonic() + scaled(120)
        while "configuration version 2 applied" not in err.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text()[-2000:]
            t = time.monotonic()
            code, _ = scale_ready.get(port, "/ready")
            worst = max(worst, time.monotonic() - t)
            assert code == 200
            time.sleep(0.005)
        reload_cpu = scale_ready.cpu_s(proc.pid) - start_cpu
        log = err.read_text()
    finally:
        proc.terminate()
        proc.wait(scaled(30))
    assert proc.returncode == 0, log[-2000:]
    return start_cpu, reload_cpu, log, worst


def test_start_and_reload_grow_linearly(tmp_path, identity):
    small = start_and_reload(tmp_path, identity, SMALL)
    big = start_and_reload(tmp_path, identity, 4 * SMALL)
    print(f"\n{SMALL} hosts: start {small[0]:.2f} s CPU, reload {small[1]:.2f} s; "
          f"{4 * SMALL} hosts: start {big[0]:.2f} s, reload {big[1]:.2f} s; slowest /ready "
          f"during a reload {small[3] * 1000:.0f} / {big[3] * 1000:.0f} ms")
    assert big[0] < RATIO * small[0], (small[0], big[0])
    assert big[1] < RATIO * max(small[1], 0.05), (small[1], big[1])
    # Start-up logs a summary, not a line per cluster.
    assert "4 cluster(s)" not in big[2]
    assert f"{4 * SMALL} cluster(s) from {12 * SMALL + 1} resource(s)" in big[2]
    assert len(big[2].splitlines()) < 20, big[2][:3000]
    assert max(small[3], big[3]) < READY_MAX_S, (small[3], big[3])
