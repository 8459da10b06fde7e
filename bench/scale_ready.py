#!/usr/bin/env python3
"""Starts egressgw on a store and reports how long it took to answer /ready and its RSS then.

    bench/scale_ready.py --egressgw build/egressgw --store S --hosts-file H --identity ID
        [--workers 1] [--keep SECONDS] [--listen 127.0.0.1] [--reload]

Prints one line: "ready_s=0.123 cpu_s=0.11 rss_kb=45678 log_lines=12". Start-to-ready is
measured from just before exec to the first 200 from /ready (polled every 2 ms); CPU (user +
system, which a loaded machine does not stretch) and RSS (VmRSS) are the process's at that
moment. With --reload, one DestinationRule (the first host's) is then replaced as
egressctl replaces a file (a new file renamed over it) and "reload_s=... rss_after_kb=..."
follow: seconds from the rename to the gateway's "configuration version 2 applied" line
(logged once every worker serves it), and the RSS one second later. Used by bench/s8.sh and by
tests/integration/test_scale.py.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=2.0):
    """(status, body) of GET path on the admin port, or (None, '') when it does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
            # A bytearray grows in place: bytes concatenation copied a 19 MB /config_dump
            # (6,000 hosts) ~300 times, slow enough under load for the admin endpoint's
            # 10 s connection timeout to cut it short.
            data = bytearray()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None, ""
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    try:
        return int(head.split()[1]), body.decode(errors="replace")
    except (IndexError, ValueError):
        return None, ""


def cpu_s(pid):
    """User + system CPU seconds of pid so far (a loaded machine stretches wall time, not this)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start(egressgw, store, hosts_file, identity, workers=1, listen="127.0.0.1", errlog=None,
          extra=(), log_level="info"):
    """Starts the gateway; returns (proc, admin_port, t0)."""
    port = free_port()
    cmd = [egressgw, "--role", "gateway", "--store", store, "--namespace", "istio-system",
           "--labels", "istio=egressgateway", "--identity", identity, "--listen-address", listen,
           "--admin", f"127.0.0.1:{port}", "--hosts-file", hosts_file,
           "--workers", str(workers), "--log-level", log_level, *extra]
    err = open(errlog, "w") if errlog else subprocess.DEVNULL
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    return proc, port, t0


def wait_ready(proc, port, t0, timeout=120.0):
    """Seconds from t0 to the first 200 from /ready; raises when the process exits first."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"egressgw exited {proc.returncode} before it was ready")
        code, _ = get(port, "/ready", timeout=0.5)
        if code == 200:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("egressgw not ready in time")
        time.sleep(0.002)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--egressgw", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--hosts-file", required=True)
    ap.add_argument("--identity", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--errlog", default=None)
    ap.add_argument("--keep", type=float, default=0.0, help="seconds to keep it running after")
    ap.add_argument("--reload", action="store_true", help="then time one DestinationRule change")
    ap.add_argument("--reloads", type=int, default=1,
                    help="with --reload: this many changes one after the other (the first "
                         "after start walks the store; later ones read only the changed file)")
    a = ap.parse_args()
    errlog = a.errlog or ("/tmp/scale_ready.%d.log" % os.getpid() if a.reload else "/dev/null")
    proc, port, t0 = start(a.egressgw, a.store, a.hosts_file, a.identity, a.workers, a.listen, errlog)
    extra = ""
    try:
        t = wait_ready(proc, port, t0)
        rss = rss_kb(proc.pid)
        cpu = cpu_s(proc.pid)
        if a.reload:
            extra = " " + " ".join(reload_one(proc, a.store, errlog, version=v)
                                   for v in range(2, 2 + max(1, a.reloads)))
        if a.keep:
            time.sleep(a.keep)
    finally:
        proc.terminate()
        proc.wait(30)
    lines = sum(1 for _ in open(errlog)) if a.errlog else -1
    if a.reload and not a.errlog:
        os.unlink(errlog)
    print(f"ready_s={t:.3f} cpu_s={cpu:.2f} rss_kb={rss} log_lines={lines}{extra}")
    return 0


def reload_one(proc, store, errlog, timeout=120.0, version=2):
    """Replaces the first host's DestinationRule; 'reload_s=... rss_after_kb=...' (for
    versions after 2, prefixed with the version: 'reload3_s=...'), and the summary
    line's read and compile times ('read3=MS/CPUMS compile3=MS/CPUMS walk3=full|changed')."""
    while "DNS cluster(s) resolved" not in open(errlog).read():
        if proc.poll() is not None:
            raise RuntimeError("egressgw exited")
        time.sleep(0.01)
    dr = os.path.join(store, "config", "default", "destinationrules", "svc000000.yaml")
    with open(dr) as f:
        text = f.read()
    if "subjectAltNames" in text:
        text = text.replace("\n        subjectAltNames: [svc000000.example.com]", "")
    else:
        text = text.replace("mode: SIMPLE", "mode: SIMPLE\n        "
                            "subjectAltNames: [svc000000.example.com]")
    # Named as egressctl names its temporary file (core/util.c file_write_atomic), which
    # the watcher knows is not configuration.
    tmp = f"{dr}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    t0 = time.monotonic()
    os.rename(tmp, dr)
    while f"configuration version {version} applied" not in open(errlog).read():
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            raise RuntimeError("no reload")
        time.sleep(0.002)
    t = time.monotonic() - t0
    time.sleep(1.0)   # the replaced snapshot is freed (and trimmed) just after
    line = [l for l in open(errlog) if f"configuration version {version} applied" in l][0]
    m = re.search(r"read (\d+) ms \((\d+) ms CPU\), compile (\d+) ms \((\d+) ms CPU\)", line)
    tag = "" if version == 2 else str(version)
    extra = ""
    if m:
        extra = (f" read{tag}={m.group(1)}/{m.group(2)} compile{tag}={m.group(3)}/{m.group(4)}"
                 f" walk{tag}={'full' if 'store walked' in line else 'changed'}")
    return f"reload{tag}_s={t:.3f} rss_after_kb={rss_kb(proc.pid)}{extra}"


if __name__ == "__main__":
    sys.exit(main())
