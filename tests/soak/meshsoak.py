"""The mesh the storm and the soak run against (tests/soak/storm.py, tests/soak/soak.py):
Istio's "mutual TLS origination with an egress gateway" walkthrough end to end, built from
the integration tests' helpers (imported from tests/integration, not copied):

  client --HTTP proxy--> sidecar --ISTIO_MUTUAL, HTTP/2--> egress gateway
         --MUTUAL (credentialName client-credential)--> nginx (ssl_verify_client on)

A temporary store holds the walkthrough's files 04-06 and the credential Secret; nginx
logs each request's client certificate serial, so a rotation is visible at the far end.
Clients are Python threads that count every failure (a status other than 200, a short
body, a connection error); samplers read /proc/PID/fd and VmRSS of both proxies."""
import http.client
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
os.environ.setdefault("EGRESSGW_BUILD", str(REPO / "build"))

from conftest import WALKTHROUGH, Ctl                     # noqa: E402
from gwlib import BUILD, loopback_ip                      # noqa: E402
from meshlib import Mesh                                  # noqa: E402
from test_mtls import NGINX_HOST, MtlsNginx, secret_yaml  # noqa: E402

ASAN = b"__asan_init" in (BUILD / "egressgw").read_bytes()

# The walkthrough's openssl commands (conftest.walkthrough_certs) plus a second client
# certificate of serial 2 for rotation (test_mtls.certs).
CERT_CMDS = [
    "openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 "
    "-subj '/O=example Inc./CN=example.com' -keyout example.com.key -out example.com.crt",
    f"openssl req -out {NGINX_HOST}.csr -newkey rsa:2048 -nodes -keyout {NGINX_HOST}.key "
    f"-subj \"/CN={NGINX_HOST}/O=some organization\"",
    f"openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key "
    f"-set_serial 0 -in {NGINX_HOST}.csr -out {NGINX_HOST}.crt",
]
for _serial, _name in ((1, "client.example.com"), (2, "client2")):
    CERT_CMDS += [
        f"openssl req -out {_name}.csr -newkey rsa:2048 -nodes -keyout {_name}.key "
        "-subj \"/CN=client.example.com/O=client organization\"",
        f"openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key "
        f"-set_serial {_serial} -in {_name}.csr -out {_name}.crt"]
CLIENT_CERTS = {1: ("client.example.com.key", "client.example.com.crt"),
                2: ("client2.key", "client2.crt")}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)[1])


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def wait_body(proxy, path, want, timeout=20.0):
    """Asks through the sidecar until the answer is 200 with body want (the
    configuration just applied is served end to end); returns how long it took."""
    t0 = time.time()
    last = None
    while time.time() - t0 < timeout:
        try:
            conn = http.client.HTTPConnection(*proxy, timeout=10)
            conn.request("GET", f"http://{NGINX_HOST}{path}")
            resp = conn.getresponse()
            last = (resp.status, resp.read()[:200])
            conn.close()
            if last == (200, want):
                return f"{time.time() - t0:.2f}s"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"the mesh never answered {want!r} for {path}: last {last}")


class MeshRig:
    """nginx, the store, the sidecar and the egress gateway (gw_workers workers), in a
    temporary directory removed by stop() unless keep is set."""

    def __init__(self, gw_workers=2, keep=False):
        self.keep = keep
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="egressgw-soak-"))
        self.mesh = self.nginx = None
        try:
            self._start(gw_workers)
        except BaseException:
            self.stop()
            raise

    def _start(self, gw_workers):
        certs = self.certs = self.tmp / "certs"
        certs.mkdir()
        for cmd in CERT_CMDS:
            subprocess.run(cmd, shell=True, check=True, cwd=certs, capture_output=True, timeout=120)
        self.store = self.tmp / "store"
        self.ctl = Ctl(BUILD / "egressctl", self.store, self.tmp)
        self.nginx = MtlsNginx(self.tmp, loopback_ip(), certs / f"{NGINX_HOST}.crt",
                               certs / f"{NGINX_HOST}.key", certs / "example.com.crt")
        self.html = self.nginx.dir / "html"
        self.ctl.ok("apply", "-f", WALKTHROUGH / "04-gateway-destinationrule-nginx.yaml")
        self.ctl.ok("apply", "-f", WALKTHROUGH / "05-virtualservice-nginx.yaml")
        self.ctl.ok("-n", "istio-system", "apply", "-f",
                    WALKTHROUGH / "06-destinationrule-originate-mtls-nginx.yaml")
        self.rotate(1)
        # The sidecar resolves my-nginx to nginx too (the hosts file); the VirtualService
        # sends it to the gateway all the same (mesh match on port 80).
        self.mesh = Mesh(self.tmp, self.ctl, BUILD / "egressctl", self.store,
                         {NGINX_HOST: self.nginx.ip}, gateway=True,
                         gw_extra=["--workers", str(gw_workers)])
        self.sidecar, self.gateway = self.mesh.sidecar, self.mesh.gateway
        self.proxy = ("127.0.0.1", self.sidecar.outbound)

    def rotate(self, serial):
        """`kubectl apply` of the credentialName Secret with client certificate serial."""
        key, crt = CLIENT_CERTS[serial]
        c = self.certs
        r = self.ctl("apply", "-f", "-", input=secret_yaml(
            "client-credential", {"tls.key": c / key, "tls.crt": c / crt,
                                  "ca.crt": c / "example.com.crt"}))
        if r.rc != 0:
            raise RuntimeError(f"rotation to serial {serial} failed: {r.err}")

    def pids(self):
        return {"sidecar": self.sidecar.proc.pid, "gateway": self.gateway.proc.pid}

    def sample(self):
        """{name: (fds, RSS KiB)} of both proxies."""
        return {n: (fds(p), rss_kib(p)) for n, p in self.pids().items()}

    def alive(self):
        return all(p.proc.poll() is None for p in (self.sidecar, self.gateway))

    def serials(self):
        """Client certificate serials nginx saw, with their counts."""
        out = {}
        for s in self.nginx.serials():
            out[s] = out.get(s, 0) + 1
        return out

    def stop_checked(self, problems):
        """stop(), with a sanitizer report or an exit code other than 0 added to
        problems."""
        try:
            rcs = self.stop()
        except AssertionError as exc:   # a sanitizer report
            problems.append(f"sanitizer: {exc}")
            return
        if rcs != [0, 0]:
            problems.append(f"exit codes (sidecar, gateway) {rcs}")

    def stop(self):
        """Stops everything; returns the proxies' exit codes (a sanitizer report in
        their stderr raises, as in the integration tests)."""
        rcs = []
        try:
            if self.mesh:
                rcs = self.mesh.stop()
        finally:
            if self.nginx:
                self.nginx.stop()
            if not self.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
        return rcs


def verdict(what, problems):
    """Prints each problem and the verdict; returns the exit code."""
    for p in problems:
        print(f"{what}: FAIL: {p}")
    print(f"{what}: " + ("FAIL" if problems else "PASS"))
    return 1 if problems else 0


class Clients:
    """Client threads through the sidecar (curl's http_proxy way: an absolute URI). Each
    thread either keeps one connection for request after request (keepalive) or opens a
    new one per request; each asks for the paths given, in turn, and check(path, body)
    says whether the answer is right. Every failure is counted, with its reason."""

    def __init__(self, proxy, paths, check):
        self.proxy, self.paths, self.check = proxy, paths, check
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = []        # (time, reason)
        self.closed_by_proxy = 0
        self.threads = []

    def start(self, keepalive, new_conn):
        for ka in [True] * keepalive + [False] * new_conn:
            t = threading.Thread(target=self._run, args=(ka, len(self.threads)), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, keepalive, idx):
        conn, i = None, idx
        while not self.stop_ev.is_set():
            path = self.paths[i % len(self.paths)]
            i += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(*self.proxy, timeout=30)
                conn.request("GET", f"http://{NGINX_HOST}{path}",
                             headers={} if keepalive else {"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read()
                why = None if resp.status == 200 else f"{resp.status} {body[:200]!r}"
                why = why or self.check(path, body)
                if resp.will_close and keepalive:
                    # Connection: close (a drain says so on a response): not a failure,
                    # http.client opens a new connection for the next request.
                    with self.lock:
                        self.closed_by_proxy += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                why = f"{path}: {exc!r}"
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                if why:
                    self.failed.append((time.time(), why))
                else:
                    self.ok += 1
            if conn is not None and (not keepalive or why):
                conn.close()
                conn = None
        if conn:
            conn.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(60)
