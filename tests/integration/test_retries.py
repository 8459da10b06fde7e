"""VirtualService `retries`, applied as Envoy's router applies what Istio makes of it
(retry.ConvertPolicy): attempts, retryOn (5xx, gateway-error, reset, connect-failure,
retriable-status-codes, retriable-4xx, gRPC), perTryTimeout, previous_hosts, Istio's
default policy when `retries` is absent and none for `attempts: 0`, request bodies
replayed up to 64 KiB and never beyond, maxRetries and the retry budget, URX and the
retry counters. Checked at scripted upstreams (flaky.Flaky) that record every attempt:
the sidecar alone, the gateway alone, and sidecar -> gateway over the HTTP/2 mesh hop,
with HTTP/1.1 and HTTP/2 clients."""
import json
import re
import subprocess
import time

import pytest

from flaky import Flaky
from gwlib import loopback_ip, scaled
from meshlib import Mesh, dns_service_entry_yaml, egress_gateway_yaml

API = "api.example.test"

SE = dns_service_entry_yaml(API)

VS = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  http:
  - name: five
    match:
    - uri:
        prefix: /5xx
    retries:
      attempts: 3
      retryOn: 5xx
    route:
    - destination:
        host: {API}
  - name: gw
    match:
    - uri:
        prefix: /gw
    retries:
      attempts: 2
      retryOn: gateway-error
    route:
    - destination:
        host: {API}
  - name: codes
    match:
    - uri:
        prefix: /codes
    retries:
      attempts: 2
      retryOn: "418,retriable-4xx"
    route:
    - destination:
        host: {API}
  - name: reset
    match:
    - uri:
        prefix: /reset
    retries:
      attempts: 2
      retryOn: reset
    route:
    - destination:
        host: {API}
  - name: pertry
    match:
    - uri:
        prefix: /slow
    timeout: 10s
    retries:
      attempts: 2
      perTryTimeout: 300ms
      retryOn: 5xx
    route:
    - destination:
        host: {API}
  - name: grpc
    match:
    - uri:
        prefix: /grpc
    retries:
      attempts: 1
      retryOn: unavailable
    route:
    - destination:
        host: {API}
  - name: disabled
    match:
    - uri:
        prefix: /off
    retries:
      attempts: 0
    route:
    - destination:
        host: {API}
  - name: default
    route:
    - destination:
        host: {API}
"""


@pytest.fixture
def api():
    ip = loopback_ip()
    up = Flaky(ip, 80, "api")
    yield ip, up
    up.stop()


@pytest.fixture
def mesh(tmp_path, ctl, egressctl_bin, store, api):
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + VS)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: api[0]})
    yield m
    assert m.stop() == [0]


def cluster_stat(proxy, name, cluster_part="api.example.test"):
    """The sum of envoy_cluster_<name> over the clusters whose name has cluster_part."""
    _, text = proxy.admin("/stats/prometheus")
    total = 0
    for line in text.splitlines():
        if line.startswith(f"envoy_cluster_{name}{{") and cluster_part in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


@pytest.mark.parametrize("path,script,code,tries,urx", [
    ("/5xx/a", ["503", "500", "ok"], 200, 3, False),   # any 5xx, until it succeeds
    ("/5xx/b", ["500"] * 4, 500, 4, True),             # 1 + 3 retries, then the answer
    ("/gw/a", ["502", "504", "ok"], 200, 3, False),
    ("/gw/b", ["500", "ok"], 500, 1, False),           # 500 is no gateway error
    ("/codes/a", ["418", "409", "ok"], 200, 3, False), # a listed code, then retriable-4xx
    ("/codes/b", ["503", "ok"], 503, 1, False),        # retryOn replaced the default list
    ("/reset/a", ["reset", "reset", "ok"], 200, 3, False),
    ("/grpc/a", ["grpc:14", "ok"], 200, 2, False),     # gRPC unavailable
    ("/grpc/b", ["grpc:2", "ok"], 200, 1, False),      # not listed
    ("/off/a", ["503", "ok"], 503, 1, False),          # attempts: 0: never retried
    ("/dflt/a", ["503", "503", "ok"], 200, 3, False),  # Istio's default: 503, twice
    ("/dflt/b", ["503", "503", "503", "ok"], 503, 3, True),
    ("/dflt/c", ["500", "ok"], 500, 1, False),         # the default retries 503 only
])
def test_retry_on(mesh, api, path, script, code, tries, urx):
    _, up = api
    up.script(path, script)
    r = mesh.curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "x-envoy-attempt-count: 7",
                  f"http://{API}{path}")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == code
    assert len(up.attempts(path)) == tries
    line = mesh.sidecar.wait_log(lambda m: m["path"] == path)
    assert int(line["code"]) == code
    assert ("URX" in line["flags"].split(",")) == urx, line["flags"]
    # x-envoy-attempt-count (Istio's include_request_attempt_count), the client's replaced
    assert [a["headers"]["x-envoy-attempt-count"] for a in up.attempts(path)] == \
        [str(i + 1) for i in range(tries)]


def test_retry_counters_and_attempt_log(mesh, api):
    _, up = api
    up.script("/5xx/c", ["503", "ok"])
    up.script("/5xx/d", ["500"] * 4)
    for p in ("/5xx/c", "/5xx/d"):
        mesh.curl("-o", "/dev/null", f"http://{API}{p}")
    assert cluster_stat(mesh.sidecar, "upstream_rq_retry_total") == 4
    assert cluster_stat(mesh.sidecar, "upstream_rq_retry_success_total") == 1
    assert cluster_stat(mesh.sidecar, "upstream_rq_retry_limit_exceeded_total") == 1
    assert cluster_stat(mesh.sidecar, "upstream_rq_retry_overflow_total") == 0
    # Envoy's own names in /stats
    _, text = mesh.sidecar.admin("/stats")
    assert re.search(r"cluster\.outbound\|80\|\|api\.example\.test\.upstream_rq_retry: 4", text), \
        text[:2000]
    assert re.search(r"\.upstream_rq_retry_limit_exceeded: 1", text)


def test_per_try_timeout(mesh, api):
    _, up = api
    up.script("/slow/a", ["slow:2", "slow:2", "ok"])
    t0 = time.monotonic()
    r = mesh.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{API}/slow/a")
    took = time.monotonic() - t0
    assert r.stdout == "200", r.stderr
    assert len(up.attempts("/slow/a")) == 3
    assert took < scaled(1.9), took                     # not one 2 s wait
    up.script("/slow/b", ["slow:2"] * 3)
    r = mesh.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{API}/slow/b")
    assert r.stdout == "504"
    line = mesh.sidecar.wait_log(lambda m: m["path"] == "/slow/b")
    assert line["details"] == "upstream_per_try_timeout"
    assert set(line["flags"].split(",")) == {"UT", "URX"}
    assert len(up.attempts("/slow/b")) == 3


def test_post_body_replayed_intact(mesh, api):
    _, up = api
    body = bytes(range(256)) * 100           # 25.6 KiB
    up.script("/5xx/post", ["503", "503", "ok"])
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                        "-x", f"http://127.0.0.1:{mesh.sidecar.outbound}",
                        "--data-binary", "@-", "-H", "content-type: application/octet-stream",
                        f"http://{API}/5xx/post"], input=body, capture_output=True)
    assert r.stdout == b"200", r.stderr
    got = up.attempts("/5xx/post")
    assert len(got) == 3 and all(a["body"] == body for a in got)
    # chunked, from an HTTP/1.1 client that does not say its length
    up.script("/5xx/chunked", ["500", "ok"])
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                        "-x", f"http://127.0.0.1:{mesh.sidecar.outbound}",
                        "-H", "transfer-encoding: chunked", "--data-binary", "@-",
                        f"http://{API}/5xx/chunked"], input=body[:5000], capture_output=True)
    assert r.stdout == b"200", r.stderr
    got = up.attempts("/5xx/chunked")
    assert len(got) == 2 and all(a["body"] == body[:5000] for a in got)


def test_large_body_not_retried(mesh, api):
    _, up = api
    body = b"x" * (200 * 1024)
    up.script("/5xx/big", ["503", "ok"])
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                        "-x", f"http://127.0.0.1:{mesh.sidecar.outbound}",
                        "--data-binary", "@-", f"http://{API}/5xx/big"],
                       input=body, capture_output=True)
    assert r.stdout == b"503", r.stderr
    got = up.attempts("/5xx/big")
    assert len(got) == 1 and got[0]["body"] == body
    line = mesh.sidecar.wait_log(lambda m: m["path"] == "/5xx/big")
    assert "URX" not in line["flags"]


def test_http2_client(mesh, api):
    """An HTTP/2 client of the sidecar (h2c prior knowledge to its outbound listener as
    a forward proxy is not curl's; the request is sent to the listener directly with
    the Host the route matches)."""
    _, up = api
    up.script("/5xx/h2", ["503", "reset", "ok"])
    up.script("/5xx/h2post", ["500", "ok"])
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                        "-w", "%{http_code} %{http_version}", "-H", f"host: {API}",
                        f"http://127.0.0.1:{mesh.sidecar.outbound}/5xx/h2"],
                       capture_output=True, text=True)
    assert r.stdout == "200 2", r.stderr
    assert len(up.attempts("/5xx/h2")) == 3
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                        "-w", "%{http_code} %{http_version}", "-H", f"host: {API}",
                        "--data-binary", "hello body",
                        f"http://127.0.0.1:{mesh.sidecar.outbound}/5xx/h2post"],
                       capture_output=True, text=True)
    assert r.stdout == "200 2", r.stderr
    got = up.attempts("/5xx/h2post")
    assert len(got) == 2 and all(a["body"] == b"hello body" for a in got)


def test_config_dump_shows_policies(mesh):
    code, body = mesh.sidecar.admin("/config_dump")
    assert code == 200
    routes = {r["name"]: r for rc in json.loads(body)["route_configs"]
              for vh in rc["virtual_hosts"] for r in vh["routes"]}
    assert routes["disabled"]["retry_policy"] is None
    d = routes["default"]["retry_policy"]
    assert d["retry_on"] == ("connect-failure,refused-stream,retriable-status-codes,"
                             "cancelled,unavailable")
    assert d["num_retries"] == 2 and d["retriable_status_codes"] == [503]
    assert d["previous_hosts"] and d["host_selection_retry_max_attempts"] == 5
    assert (d["backoff_base_ms"], d["backoff_max_ms"]) == (25, 250)
    p = routes["pertry"]["retry_policy"]
    assert p["retry_on"] == "5xx" and p["num_retries"] == 2 and p["per_try_timeout_ms"] == 300
    c = routes["codes"]["retry_policy"]
    assert c["retry_on"] == "retriable-4xx,retriable-status-codes"
    assert c["retriable_status_codes"] == [418]


MESH_HOP = egress_gateway_yaml(API) + f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  gateways: [istio-egressgateway, mesh]
  http:
  - match:
    - gateways: [mesh]
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: api
        port:
          number: 80
  - match:
    - gateways: [istio-egressgateway]
    retries:
      attempts: 2
      retryOn: 5xx
    route:
    - destination:
        host: {API}
        port:
          number: 80
"""


@pytest.fixture
def hop(tmp_path, ctl, egressctl_bin, store, api):
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + MESH_HOP)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: api[0]}, gateway=True)
    yield m
    assert m.stop() == [0, 0]


def test_mesh_hop_gateway_retries(hop, api):
    """sidecar -(HTTP/2, mTLS)-> gateway -> upstream: the gateway's policy (5xx, 2
    retries) on a request that came over HTTP/2; the sidecar's is Istio's default."""
    _, up = api
    up.script("/m/a", ["503", "ok"])
    r = hop.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{API}/m/a")
    assert r.stdout == "200", r.stderr
    assert len(up.attempts("/m/a")) == 2
    gl = hop.gateway.wait_log(lambda x: x["path"] == "/m/a")
    assert gl["proto"] == "HTTP/2" and gl["code"] == "200" and gl["flags"] == "-"
    assert cluster_stat(hop.gateway, "upstream_rq_retry_success_total") == 1
    assert cluster_stat(hop.sidecar, "upstream_rq_retry_total", "egressgateway") == 0
    # 500: the gateway gives up after 2 retries (URX); the sidecar's default policy does
    # not retry a 500.
    up.script("/m/b", ["500"] * 5)
    r = hop.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{API}/m/b")
    assert r.stdout == "500"
    assert len(up.attempts("/m/b")) == 3
    gl = hop.gateway.wait_log(lambda x: x["path"] == "/m/b")
    assert gl["flags"] == "URX"


def test_mesh_hop_both_retry_503_over_http2_upstream(hop, api):
    """A 503 the gateway gives up on is retried by the sidecar (Istio's default policy),
    whose upstream is the HTTP/2 mesh hop: 3 x 3 attempts reach the upstream."""
    _, up = api
    up.script("/m/c", ["503"] * 9 + ["ok"])
    r = hop.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{API}/m/c")
    assert r.stdout == "503"
    assert len(up.attempts("/m/c")) == 9
    # the gateway's count of its own attempts, each time the sidecar's came over HTTP/2
    assert [a["headers"]["x-envoy-attempt-count"] for a in up.attempts("/m/c")] == \
        ["1", "2", "3"] * 3
    sl = hop.sidecar.wait_log(lambda x: x["path"] == "/m/c")
    assert sl["code"] == "503" and sl["flags"] == "URX"
    assert cluster_stat(hop.sidecar, "upstream_rq_retry_total", "egressgateway") == 2
    up.script("/m/d", ["503"] * 4 + ["ok"])
    r = hop.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{API}/m/d")
    assert r.stdout == "200"
    assert len(up.attempts("/m/d")) == 5


def test_gateway_alone(hop, api):
    """client -> gateway -> upstream over HTTP/1.1, a POST body replayed. (The gateway's
    HTTP/2 downstream is the mesh hop's: test_mesh_hop_*; it speaks HTTP/2 over mTLS
    only.)"""
    _, up = api
    path = "/g/post"
    up.script(path, ["reset", "502", "ok"])
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                        "-H", f"host: {API}", "--data-binary", "payload-" + path,
                        f"http://{hop.gw_ip}:80{path}"], capture_output=True, text=True)
    assert r.stdout == "200", r.stderr
    got = up.attempts(path)
    assert len(got) == 3 and all(a["body"] == ("payload-" + path).encode() for a in got)


def test_mesh_hop_post_replayed_by_gateway(hop, api):
    """A body that reached the gateway as HTTP/2 DATA (from the sidecar's HTTP/2 upstream)
    is replayed intact on each of the gateway's attempts."""
    _, up = api
    body = bytes(range(256)) * 40
    up.script("/m/post", ["503", "500", "ok"])
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                        "-x", f"http://127.0.0.1:{hop.sidecar.outbound}",
                        "--data-binary", "@-", f"http://{API}/m/post"],
                       input=body, capture_output=True)
    assert r.stdout == b"200", r.stderr
    got = up.attempts("/m/post")
    assert len(got) == 3 and all(a["body"] == body for a in got)


TWO = "two.example.test"


def test_connect_refused_endpoint_retried_elsewhere(tmp_path, ctl, egressctl_bin, store, api):
    """Two endpoints, one refusing connections: Istio's default policy (connect-failure,
    previous_hosts) takes every request to the other; attempts: 0 lets the failures
    through."""
    ip, up = api
    dead = loopback_ip()
    ctl.ok("apply", "-f", "-", input=f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: two
spec:
  hosts: [{TWO}]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: {ip}
  - address: {dead}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: two
spec:
  hosts: [{TWO}]
  http:
  - name: once
    match:
    - uri:
        prefix: /once
    retries:
      attempts: 0
    route:
    - destination:
        host: {TWO}
  - name: default
    route:
    - destination:
        host: {TWO}
""")
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        codes = []
        for i in range(10):
            r = m.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{TWO}/r{i}")
            codes.append(r.stdout)
        assert codes == ["200"] * 10
        assert cluster_stat(m.sidecar, "upstream_cx_connect_fail_total", TWO) >= 3
        assert cluster_stat(m.sidecar, "upstream_rq_retry_total", TWO) == \
            cluster_stat(m.sidecar, "upstream_cx_connect_fail_total", TWO)
        assert up.count() == 10
        codes = []
        for i in range(10):
            r = m.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{TWO}/once{i}")
            codes.append(r.stdout)
        assert "503" in codes and "200" in codes
        line = m.sidecar.wait_log(lambda x: x["path"].startswith("/once") and x["code"] == "503")
        assert line["flags"] == "UF"
    finally:
        assert m.stop() == [0]


STORM_VS = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  http:
  - name: storm
    match:
    - uri:
        prefix: /storm
    retries:
      attempts: 3
      retryOn: 5xx
    route:
    - destination:
        host: {API}
  - name: plain
    retries:
      attempts: 0
    route:
    - destination:
        host: {API}
"""


def wrk(tmp_path, port, path, seconds, conns):
    """wrk through the sidecar as the application's HTTP proxy (absolute-form targets)."""
    script = tmp_path / "proxy.lua"
    script.write_text(f'wrk.path = "http://{API}{path}"\n')
    r = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                        "-s", str(script), f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True, timeout=seconds + 30)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(m.group(1)) if m else 0
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    return total, bad, p99


def test_retry_storm_bounded_by_budget(tmp_path, ctl, egressctl_bin, store, capsys):
    """An upstream failing half of its requests, under load (wrk, 32 connections through
    the sidecar): with retries (attempts 3, 5xx) more requests succeed than without, and
    the retry budget (no maxRetries: 20 % of active requests, at least 3) keeps the
    upstream's load near 1.2x the client's; DestinationRule maxRetries set high lifts the
    bound (the ~1.9x of unbounded retries, nearly every request served)."""
    ip = loopback_ip()
    up = Flaky(ip, 80, "api", fail_ratio=0.5)
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + STORM_VS)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: ip})
    try:
        port = m.sidecar.outbound
        runs = {}
        for name, path in (("plain", "/plain"), ("budget", "/storm"), ("max", "/storm")):
            if name == "max":
                before = m.reloads()
                m.apply(f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: api
spec:
  host: {API}
  trafficPolicy:
    connectionPool:
      http:
        maxRetries: 1000
""")
                m.wait_applied(before)
            up0, of0 = up.count(), cluster_stat(m.sidecar, "upstream_rq_retry_overflow_total")
            rs0 = cluster_stat(m.sidecar, "upstream_rq_retry_success_total")
            n, bad, p99 = wrk(tmp_path, port, path, 4, 32)
            runs[name] = (n, 1 - bad / n, (up.count() - up0) / n, p99,
                          cluster_stat(m.sidecar, "upstream_rq_retry_overflow_total") - of0,
                          cluster_stat(m.sidecar, "upstream_rq_retry_success_total") - rs0)
        with capsys.disabled():
            for name, (n, ok, load, p99, of, rs) in runs.items():
                print(f"\nstorm {name}: {n} requests, success {ok:.3f}, upstream load "
                      f"{load:.2f}x, p99 {p99}, retry overflow {of}, saved by a retry {rs}",
                      end="")
            print()
        plain, budget, top = runs["plain"], runs["budget"], runs["max"]
        assert min(plain[0], budget[0], top[0]) > 150
        assert 0.35 < plain[1] < 0.65                   # the upstream fails half
        assert plain[2] < 1.05 and plain[4] == 0        # one attempt each
        assert budget[1] > plain[1]                     # retries help: requests a retry
        assert budget[5] > 0.02 * budget[0]             # saved (measured ~7 %)
        assert budget[2] < 1.45                         # ... within the budget
        assert budget[4] > 0                            # which refused some
        assert top[1] > 0.85 and top[2] > 1.6 and top[4] == 0
    finally:
        assert m.stop() == [0]
        up.stop()

