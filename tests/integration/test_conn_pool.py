"""DestinationRule connectionPool limits (circuit breaking) and outlierDetection in the
data path, against real peers.

Path: plain HTTP client -> gateway (Gateway server HTTP on port 80) -> a ServiceEntry host
with STATIC endpoints, each a small threaded Python HTTP/1.1 server on a loopback address
of its own that records every connection and request it gets (and when), and answers per
path: /slow waits before answering, anything else answers the server's current status.
Each test writes its own configuration and runs its own gateway with one worker (the
limits and the outlier state are per worker), and asserts what the upstreams saw, not
only what the client got.
"""
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import Ctl
from gwlib import Gateway, loopback_ip, read_response, wait_port, wait_until
from test_gateway import LOG_RE

PORT = 8080
HOST = "pool.test"
OVERFLOW_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: overflow"


class Upstream:
    """A threaded plain HTTP/1.1 server on ip:PORT. Records (connection number, request
    number on it, path, arrival time, answer time) per request."""

    def __init__(self, ip, name, status=200):
        self.ip, self.name, self.status = ip, name, status
        self.lock = threading.Lock()
        self.nconns = 0
        self.reqs = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((ip, PORT))
        self.ls.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with self.lock:
            self.nconns += 1
            cno = self.nconns
        try:
            c.settimeout(30)
            rf = c.makefile("rb")
            n = 0
            while True:
                line = rf.readline(65536)
                if not line:
                    break
                path = line.split()[1].decode()
                while rf.readline(65536) not in (b"\r\n", b""):
                    pass
                n += 1
                rec = {"conn": cno, "n": n, "path": path, "at": time.time()}
                with self.lock:
                    self.reqs.append(rec)
                status = self.status
                if path.startswith("/slow"):
                    time.sleep(float(path.partition("=")[2].partition("&")[0] or "1"))
                    status = 200
                body = f"{self.name} {path}\n".encode()
                rec["done"] = time.time()
                c.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def seen(self):
        with self.lock:
            return self.nconns, [dict(r) for r in self.reqs]

    def stop(self):
        self.ls.close()


def config(endpoints, traffic_policy):
    eps = "".join(f"  - address: {ip}\n" for ip in endpoints)
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - {HOST}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se-pool
spec:
  hosts:
  - {HOST}
  ports:
  - number: {PORT}
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
{eps}---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs-pool
spec:
  hosts:
  - {HOST}
  gateways:
  - istio-egressgateway
  http:
  - retries:
      attempts: 0     # one attempt per request: the pool and outlier detection as such
    route:            # (Istio's default retry policy: test_retries.py)
    - destination:
        host: {HOST}
        port:
          number: {PORT}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr-pool
spec:
  host: {HOST}
  trafficPolicy:
{traffic_policy}"""


class Env:
    pass


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, egressctl_bin):
    e = Env()
    tmp = e.tmp = tmp_path_factory.mktemp("pool")
    ca = tmp / "mesh-ca"
    e.gw_id = tmp / "gw-identity"
    subprocess.run([egressctl_bin, "ca", "init", "--dir", ca], check=True, capture_output=True)
    subprocess.run([egressctl_bin, "ca", "issue", "--dir", ca, "--namespace", "istio-system",
                    "--service-account", "istio-egressgateway-service-account", "--out", e.gw_id],
                   check=True, capture_output=True)
    e.hosts = tmp / "hosts"
    e.hosts.write_text("")
    e.ctl_bin = egressctl_bin
    return e


@pytest.fixture
def setup(mesh, tmp_path):
    """setup(n_upstreams, traffic_policy, statuses) -> (gateway, [Upstream])."""
    started = []

    def go(traffic_policy, statuses=(200,), dead=0):
        ups = [Upstream(loopback_ip(), f"u{i}", s) for i, s in enumerate(statuses)]
        started.extend(ups)
        ips = [u.ip for u in ups] + [loopback_ip() for _ in range(dead)]
        store = tmp_path / "store"
        Ctl(mesh.ctl_bin, store, tmp_path).ok("apply", "-f", "-", input=config(ips, traffic_policy))
        gw = Gateway(tmp_path, store, mesh.gw_id, loopback_ip(), mesh.hosts,
                     mesh.gw_id / "root-cert.pem")
        started.append(gw)
        wait_port(gw.ip, 80, proc=gw.proc)
        return gw, ups

    yield go
    for x in started:
        if isinstance(x, Gateway):
            assert x.proc.poll() is None, x.stderr()[-3000:]
            assert x.stop() == 0
        else:
            x.stop()


def request(gw, path, rid, timeout=10):
    """One request on a connection of its own: (status, body, seconds taken)."""
    t0 = time.time()
    with socket.create_connection((gw.ip, 80), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nx-request-id: {rid}\r\n"
                  f"Connection: close\r\n\r\n".encode())
        status, _, body = read_response(s)
    return status, body, time.time() - t0


def in_background(gw, path, rid):
    out = {}

    def run():
        out["r"] = request(gw, path, rid)
    t = threading.Thread(target=run)
    t.start()
    return t, out


def stats(gw):
    code, body = gw.admin("/stats/prometheus")
    assert code == 200
    return {m[1]: int(m[2]) for m in re.finditer(r"^egressgw_(\w+) (\d+)$", body, re.M)}


def log_for(gw, rid, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in gw.log_lines():
            if f'"{rid}"' in line:
                m = LOG_RE.match(line)
                assert m, line
                return m
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {rid}: {gw.log_lines()[-5:]}")


# ---------------------------------------------------------------- circuit breaking

POOL_1_1 = """    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
"""


def test_max_connections_queues_one_and_overflows_the_next(setup):
    gw, (up,) = setup(POOL_1_1)
    a, ares = in_background(gw, "/slow=1.0", "rid-a")
    wait_until(lambda: len(up.seen()[1]) == 1, what="request A at the upstream")
    # B needs a connection while the only one is busy: it waits (pending).
    b, bres = in_background(gw, "/slow=0.2", "rid-b")
    wait_until(lambda: stats(gw)["upstream_rq_pending_active"] == 1, what="B pending")
    # C finds the pending queue full: 503 UO at once, never sent upstream.
    status, body, took = request(gw, "/c", "rid-c")
    assert status == 503 and body == OVERFLOW_BODY, (status, body)
    assert took < 0.5
    a.join(10)
    b.join(10)
    assert ares["r"][0] == 200 and bres["r"][0] == 200
    nconns, reqs = up.seen()
    # One connection, both requests on it in turn; C never arrived.
    assert nconns == 1, reqs
    assert [(r["conn"], r["n"], r["path"]) for r in reqs] == [(1, 1, "/slow=1.0"), (1, 2, "/slow=0.2")]
    assert reqs[1]["at"] >= reqs[0]["done"]
    m = log_for(gw, "rid-c")
    assert m["code"] == "503" and m["flags"] == "UO"
    assert m["details"] == "upstream_reset_before_response_started{overflow}"
    assert m["cluster"] == f"outbound|{PORT}||{HOST}"
    assert log_for(gw, "rid-b")["code"] == "200" and log_for(gw, "rid-b")["flags"] == "-"
    st = stats(gw)
    assert st["upstream_rq_pending_overflow_total"] == 1
    assert st["upstream_cx_overflow_total"] >= 1
    assert st["upstream_rq_pending_active"] == 0
    assert st["upstream_cx_total"] == 1


def test_pending_requests_are_served_in_arrival_order(setup):
    gw, (up,) = setup("""    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 10
""")
    threads = [in_background(gw, "/slow=0.5", "rid-0")]
    wait_until(lambda: len(up.seen()[1]) == 1, what="first request at the upstream")
    for i in range(1, 5):
        threads.append(in_background(gw, f"/slow=0.05&{i}", f"rid-{i}"))
        wait_until(lambda: stats(gw)["upstream_rq_pending_active"] == i, what=f"{i} pending")
    for t, out in threads:
        t.join(10)
        assert out["r"][0] == 200
    nconns, reqs = up.seen()
    assert nconns == 1
    assert [r["path"] for r in reqs] == ["/slow=0.5"] + [f"/slow=0.05&{i}" for i in range(1, 5)]
    assert stats(gw)["upstream_rq_pending_overflow_total"] == 0


def test_http2_max_requests_overflow(setup):
    gw, (up,) = setup("""    connectionPool:
      http:
        http2MaxRequests: 1
""")
    a, ares = in_background(gw, "/slow=0.8", "rid-a")
    wait_until(lambda: len(up.seen()[1]) == 1, what="request A at the upstream")
    status, body, took = request(gw, "/b", "rid-b")
    assert status == 503 and body == OVERFLOW_BODY and took < 0.5
    a.join(10)
    assert ares["r"][0] == 200
    # Once A is done there is room again.
    assert request(gw, "/c", "rid-c")[0] == 200
    _, reqs = up.seen()
    assert [r["path"] for r in reqs] == ["/slow=0.8", "/c"]
    m = log_for(gw, "rid-b")
    assert m["flags"] == "UO" and m["details"] == "upstream_reset_before_response_started{overflow}"
    assert stats(gw)["upstream_rq_pending_overflow_total"] == 1


def test_queued_request_that_times_out_or_leaves_frees_its_place(setup):
    gw, (up,) = setup(POOL_1_1)
    a, ares = in_background(gw, "/slow=1.0", "rid-a")
    wait_until(lambda: len(up.seen()[1]) == 1, what="request A at the upstream")
    # A client that gives up while queued: its place frees up for the next one.
    s = socket.create_connection((gw.ip, 80))
    s.sendall(f"GET /gone HTTP/1.1\r\nHost: {HOST}\r\nx-request-id: rid-gone\r\n\r\n".encode())
    wait_until(lambda: stats(gw)["upstream_rq_pending_active"] == 1, what="pending")
    s.close()
    wait_until(lambda: stats(gw)["upstream_rq_pending_active"] == 0, what="pending freed")
    b, bres = in_background(gw, "/b", "rid-b")
    a.join(10)
    b.join(10)
    assert ares["r"][0] == 200 and bres["r"][0] == 200
    _, reqs = up.seen()
    assert [r["path"] for r in reqs] == ["/slow=1.0", "/b"]
    m = log_for(gw, "rid-gone")
    assert "DC" in m["flags"].split(",")


# ---------------------------------------------------------------- outlier detection

def od_policy(extra):
    return """    loadBalancer:
      simple: ROUND_ROBIN
    outlierDetection:
""" + extra


def paths_at(up):
    return [r["path"] for r in up.seen()[1]]


def test_consecutive_5xx_ejects_the_endpoint_until_its_time_is_served(setup):
    gw, (good, bad) = setup(od_policy("""      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 1s
      maxEjectionPercent: 50
"""), statuses=(200, 503))
    codes = []
    i = 0
    # Round robin: the bad endpoint gets every other request until its third 503.
    while len(paths_at(bad)) < 3:
        codes.append(request(gw, f"/r{i}", f"rid-{i}")[0])
        i += 1
        assert i < 20
    ejected_at = time.time()
    assert codes.count(503) == 3
    for j in range(12):
        status, body, _ = request(gw, f"/after{j}", f"rid-after-{j}")
        assert status == 200 and body.startswith(b"u0 ")
    assert len(paths_at(bad)) == 3
    st = stats(gw)
    assert st["outlier_detection_ejections_enforced_total"] == 1
    assert st["outlier_detection_ejections_active"] == 1
    assert "ejected from outbound|8080||pool.test" in gw.stderr()
    # Back at the first sweep (every 1 s) at least 1 s after the ejection.
    wait_until(lambda: request(gw, "/probe", "rid-probe")[0] == 503 or None, timeout=4,
               what="the bad endpoint back in service")
    back = time.time() - ejected_at
    assert 0.9 <= back <= 3.5, back
    # The count restarted when it came back: two more 503s (with the probe's, three)
    # eject it again, for twice the base time now.
    n0 = len(paths_at(bad))
    while len(paths_at(bad)) < n0 + 2:
        request(gw, "/again", "rid-again")
    again_at = time.time()
    n_bad = len(paths_at(bad))
    assert stats(gw)["outlier_detection_ejections_enforced_total"] == 2
    time.sleep(1.3)
    for j in range(6):
        assert request(gw, f"/second{j}", f"rid-second-{j}")[0] == 200
    assert len(paths_at(bad)) == n_bad, "requests reached the endpoint during its 2 s ejection"
    wait_until(lambda: request(gw, "/probe2", "rid-probe2")[0] == 503 or None, timeout=4,
               what="the bad endpoint back after its second ejection")
    assert time.time() - again_at >= 1.9


def test_max_ejection_percent_keeps_endpoints_in_service(setup):
    # Both endpoints fail; with 50% only one of the two may be out at a time.
    gw, (a, b) = setup(od_policy("""      consecutive5xxErrors: 2
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
"""), statuses=(503, 503))
    for i in range(12):
        assert request(gw, f"/r{i}", f"rid-{i}")[0] == 503
    na, nb = len(paths_at(a)), len(paths_at(b))
    # One was ejected after its 2nd error and got nothing more; the other got the rest.
    assert sorted([na, nb]) == [2, 10], (na, nb)
    st = stats(gw)
    assert st["outlier_detection_ejections_enforced_total"] == 1
    assert st["outlier_detection_ejections_overflow_total"] >= 1


def test_connect_failures_are_gateway_errors(setup):
    # The second endpoint has nothing listening: connect failures (503 UF) count as
    # consecutive gateway errors when local and external errors are not split.
    gw, (good,) = setup(od_policy("""      consecutive5xxErrors: 0
      consecutiveGatewayErrors: 2
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
"""), statuses=(200,), dead=1)
    results = [request(gw, f"/r{i}", f"rid-{i}")[0] for i in range(4)]
    assert results.count(503) == 2, results
    for i in range(10):
        assert request(gw, f"/ok{i}", f"rid-ok-{i}")[0] == 200
    assert len(paths_at(good)) == 12
    failed = [log_for(gw, f"rid-{i}") for i in range(4) if results[i] == 503]
    assert all(m["flags"] == "UF" for m in failed)
    assert stats(gw)["outlier_detection_ejections_enforced_total"] == 1


@pytest.mark.parametrize("min_health", [0, 50])
def test_all_ejected_is_no_healthy_upstream_unless_panic(setup, min_health):
    gw, (bad,) = setup(od_policy(f"""      consecutive5xxErrors: 2
      baseEjectionTime: 30s
      maxEjectionPercent: 100
      minHealthPercent: {min_health}
"""), statuses=(503,))
    for i in range(2):
        assert request(gw, f"/r{i}", f"rid-{i}")[0] == 503
    status, body, _ = request(gw, "/next", "rid-next")
    m = log_for(gw, "rid-next")
    if min_health == 0:
        # Envoy with a panic threshold of 0: no endpoint may be used.
        assert status == 503 and m["flags"] == "UH" and m["details"] == "no_healthy_upstream"
        assert paths_at(bad) == ["/r0", "/r1"]
    else:
        # Below minHealthPercent: panic, every endpoint is used again.
        assert status == 503 and m["flags"] == "-" and m["details"] == "via_upstream"
        assert paths_at(bad) == ["/r0", "/r1", "/next"]


def test_config_dump_shows_limits_and_outlier_detection(setup):
    gw, _ = setup("""    connectionPool:
      tcp:
        maxConnections: 3
      http:
        http1MaxPendingRequests: 4
        http2MaxRequests: 5
    outlierDetection:
      consecutiveGatewayErrors: 7
""")
    code, body = gw.admin("/config_dump")
    assert code == 200
    import json
    c = [c for c in json.loads(body)["clusters"] if c["name"] == f"outbound|{PORT}||{HOST}"][0]
    assert (c["max_connections"], c["max_pending_requests"], c["max_requests"]) == (3, 4, 5)
    od = c["outlier_detection"]
    assert od["consecutive_5xx"] == 5 and od["consecutive_gateway_errors"] == 7
    assert od["interval_ms"] == 10000 and od["base_ejection_time_ms"] == 30000
    assert od["max_ejection_percent"] == 10 and od["min_health_percent"] == 0
