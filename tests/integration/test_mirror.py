"""VirtualService `mirror` / `mirrors` / `mirrorPercentage` (and the deprecated
`mirrorPercent`), applied as Envoy applies what Istio makes of them
(request_mirror_policies): a shadow copy of the request, after the route's rewrite and
header operations, with "-shadow" appended to the authority's host, sent fire-and-forget
to the mirror's cluster, its response discarded. Checked at recording upstreams (the main
one answers, the mirrors record method, path, fields and body): the gateway alone
(HTTP/1.1), the gateway behind the sidecar (the HTTP/2 mesh hop), the sidecar alone with
HTTP/1.1 and HTTP/2 (h2c) clients; a mirror that is down or slow never touches the main
request; percentages, two mirrors, the 64 KiB body bound, descriptors after 200 shadows,
and a mirror host that a mesh route sends to the gateway (never bypassed)."""
import http.server
import json
import os
import re
import socketserver
import subprocess
import threading
import time

import pytest

from gwlib import loopback_ip, scaled
from meshlib import Mesh, dns_service_entry_yaml, egress_gateway_yaml

API = "api.example.test"
MIRROR = "mirror.example.test"
MIRROR2 = "mirror2.example.test"
SLOW = "slow.example.test"
DOWN = "down.example.test"

SES = "---\n".join(dns_service_entry_yaml(h, name=n) for h, n in
                   [(API, "api"), (MIRROR, "mirror"), (MIRROR2, "mirror2"), (SLOW, "slow"),
                    (DOWN, "down")])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _any(self):
        body = self._body()
        srv = self.server
        with srv.lock:
            srv.requests.append({"method": self.command, "path": self.path, "body": body,
                                 "headers": {k.lower(): v for k, v in self.headers.items()}})
        if srv.delay:
            time.sleep(srv.delay)
        out = f"{srv.name}\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any


class Shadow(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A mirror's upstream: records every request with its body; delay: seconds it
    waits before answering."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ip, name, delay=0):
        super().__init__((ip, 80), _Handler)
        self.name, self.delay, self.requests, self.lock = name, delay, [], threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def wait_path(self, path, timeout=5.0):
        """The requests for path, once there is one (or the timeout passed)."""
        deadline = time.time() + scaled(timeout)
        while time.time() < deadline:
            with self.lock:
                got = [r for r in self.requests if r["path"] == path]
            if got:
                return got
            time.sleep(0.02)
        return []

    def wait(self, n, timeout=5.0):
        deadline = time.time() + scaled(timeout)
        while self.count() < n and time.time() < deadline:
            time.sleep(0.02)
        with self.lock:
            return list(self.requests)

    def stop(self):
        self.shutdown()
        self.server_close()


def rule(name, prefix, extra, gw):
    m = "    - gateways: [istio-egressgateway]\n      uri:\n" if gw else "    - uri:\n"
    return (f"  - name: {name}\n    match:\n{m}        prefix: {prefix}\n{extra}"
            f"    route:\n    - destination:\n        host: {API}\n")


def mirror_to(host, pct=None):
    y = f"    mirror:\n      host: {host}\n"
    if pct is not None:
        y += f"    mirrorPercentage:\n      value: {pct}\n"
    return y


def rules(gw):
    return "".join([
        rule("m", "/m/", mirror_to(MIRROR), gw),
        rule("rw", "/rw/", mirror_to(MIRROR) + "    rewrite:\n      uri: /new/\n"
             "    headers:\n      request:\n        set:\n          x-route-op: set-here\n",
             gw),
        rule("pct0", "/pct0/", mirror_to(MIRROR, 0), gw),
        rule("pct50", "/pct50/", mirror_to(MIRROR, 50), gw),
        rule("old", "/old/", f"    mirror:\n      host: {MIRROR}\n    mirrorPercent: 100\n", gw),
        rule("two", "/two/", f"    mirrors:\n    - destination:\n        host: {MIRROR}\n"
             f"    - destination:\n        host: {MIRROR2}\n      percentage:\n"
             "        value: 100\n", gw),
        rule("down", "/down/", mirror_to(DOWN), gw),
        rule("slow", "/slow/", mirror_to(SLOW) + "    timeout: 1s\n", gw),
        rule("plain", "/", "", gw),
    ])


def vs_sidecar():
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  http:
{rules(False)}"""


def vs_gateway():
    return egress_gateway_yaml(API) + f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  gateways: [istio-egressgateway, mesh]
  http:
  - name: to-gateway
    match:
    - gateways: [mesh]
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: api
        port:
          number: 80
{rules(True)}"""


class Ups:
    def __init__(self):
        self.ips = {h: loopback_ip() for h in (API, MIRROR, MIRROR2, SLOW, DOWN)}
        # The main upstream reads the whole body before it answers (a chunked one too):
        # a request whose response ends before its body is whole is not mirrored.
        self.api = Shadow(self.ips[API], "api")
        self.mirror = Shadow(self.ips[MIRROR], "mirror")
        self.mirror2 = Shadow(self.ips[MIRROR2], "mirror2")
        self.slow = Shadow(self.ips[SLOW], "slow", delay=2)
        # DOWN: nothing listens on its address (connection refused).

    def stop(self):
        for s in (self.api, self.mirror, self.mirror2, self.slow):
            s.stop()


@pytest.fixture
def ups():
    u = Ups()
    yield u
    u.stop()


@pytest.fixture
def gwmesh(tmp_path, ctl, egressctl_bin, store, ups):
    r = ctl("apply", "-f", "-", input=SES + "---\n" + vs_gateway())
    assert r.rc == 0, r.err
    m = Mesh(tmp_path, ctl, egressctl_bin, store, ups.ips, gateway=True)
    yield m
    assert m.stop() == [0, 0]


@pytest.fixture
def sidecar(tmp_path, ctl, egressctl_bin, store, ups):
    r = ctl("apply", "-f", "-", input=SES + "---\n" + vs_sidecar())
    assert r.rc == 0, r.err
    m = Mesh(tmp_path, ctl, egressctl_bin, store, ups.ips)
    yield m
    assert m.stop() == [0]


def gw_curl(m, *args):
    """curl straight to the gateway's port 80 (HTTP/1.1)."""
    return m.curl("--noproxy", "*", "--connect-to", f"{API}:80:{m.gw_ip}:80", *args)


def h2c_curl(m, *args):
    """curl speaking HTTP/2 (h2c, prior knowledge) to the sidecar."""
    return m.curl("--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
                  f"{API}:80:127.0.0.1:{m.sidecar.outbound}", *args)


def check_copy(ups, path, want_path=None, body=b"", method="GET"):
    """The mirror got one copy of the request for path: -shadow authority, same method,
    path, fields and body; the main upstream got the original authority."""
    got = ups.mirror.wait_path(want_path or path)
    assert len(got) == 1, ups.mirror.requests
    s = got[0]
    assert s["method"] == method and s["body"] == body
    assert s["headers"]["host"] == f"{API}-shadow"
    assert s["headers"]["x-test"] == "copied"
    main = [r for r in ups.api.requests if r["path"] == (want_path or path)]
    assert len(main) == 1 and main[0]["headers"]["host"] == API
    # Every field as the main upstream got it (x-request-id, x-forwarded-*, the route's
    # operations, x-envoy-attempt-count), but the authority.
    assert {k: v for k, v in s["headers"].items() if k != "host"} == \
        {k: v for k, v in main[0]["headers"].items() if k != "host"}
    return s


def exercise(curl, ups, proxy, tag):
    """GET, POST with a length and chunked POST on /m/, the rewrite route, a mirror that is
    down, and one that takes 2 s: the client gets the main upstream's answer at once."""
    r = curl("-H", "x-test: copied", f"http://{API}/m/get-{tag}?q=1")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    check_copy(ups, f"/m/get-{tag}?q=1")
    body = os.urandom(3000).hex().encode()
    r = curl("-H", "x-test: copied", "--data-binary", body.decode(), f"http://{API}/m/len-{tag}")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    check_copy(ups, f"/m/len-{tag}", body=body, method="POST")
    r = curl("-H", "x-test: copied", "-H", "transfer-encoding: chunked", "--data-binary",
             "chunked body", f"http://{API}/m/ck-{tag}")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    check_copy(ups, f"/m/ck-{tag}", body=b"chunked body", method="POST")
    # The route's rewrite and header operations: the shadow gets the request as the
    # upstream does.
    r = curl("-H", "x-test: copied", f"http://{API}/rw/{tag}")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    s = check_copy(ups, f"/rw/{tag}", want_path=f"/new/{tag}")
    assert s["headers"]["x-route-op"] == "set-here"
    assert s["headers"]["x-envoy-original-path"] == f"/rw/{tag}"
    # A mirror that refuses connections, and one that answers after 2 s, past the route's
    # 1 s timeout, which the shadow keeps (504 UT, counted as failed).
    failed = proxy.stat("mirror_failed_total")
    for path in (f"/down/{tag}", f"/slow/{tag}"):
        t0 = time.monotonic()
        r = curl("-i", f"http://{API}{path}")
        took = time.monotonic() - t0
        assert r.returncode == 0 and r.stdout.endswith("\napi\n"), r.stderr
        assert re.match(r"HTTP/[12.]+ 200", r.stdout), r.stdout
        assert took < 0.5, f"{path}: the main request waited {took:.2f}s for its mirror"
    deadline = time.time() + scaled(5)
    while proxy.stat("mirror_failed_total") < failed + 2 and time.time() < deadline:
        time.sleep(0.05)
    assert proxy.stat("mirror_failed_total") == failed + 2
    assert len(ups.slow.wait_path(f"/slow/{tag}")) == 1
    line = proxy.wait_log(lambda x: x["path"] == f"/down/{tag}")
    assert (line["code"], line["flags"]) == ("200", "-"), line.string
    assert not any("-shadow" in ln for ln in proxy.log_lines()), "a shadow was logged"


def test_gateway_alone(gwmesh, ups):
    """A client straight to the gateway's port 80 (HTTP/1.1)."""
    exercise(lambda *a: gw_curl(gwmesh, *a), ups, gwmesh.gateway, "g")
    g = gwmesh.gateway
    assert g.stat("mirror_requests_total") == 6
    deadline = time.time() + scaled(5)
    while g.stat("mirror_active") and time.time() < deadline:
        time.sleep(0.05)
    assert g.stat("mirror_responses_total") == 4      # the down and the slow one failed
    assert gwmesh.sidecar.stat("mirror_requests_total") == 0


def test_gateway_behind_the_sidecar(gwmesh, ups):
    """The gateway mirrors requests that came over the HTTP/2 mesh hop (fwd_h2.c's
    streams); the sidecar, whose route has no mirror, sends none."""
    exercise(gwmesh.curl, ups, gwmesh.gateway, "m")
    line = gwmesh.gateway.wait_log(lambda x: x["path"] == "/m/get-m?q=1")
    assert line["proto"] == "HTTP/2"
    assert gwmesh.sidecar.stat("mirror_requests_total") == 0


def test_sidecar_http1(sidecar, ups):
    exercise(sidecar.curl, ups, sidecar.sidecar, "s1")


def test_sidecar_http2_client(sidecar, ups):
    """An HTTP/2 (h2c) client of the sidecar: the request is an HTTP/2 stream's."""
    exercise(lambda *a: h2c_curl(sidecar, *a), ups, sidecar.sidecar, "s2")
    line = sidecar.sidecar.wait_log(lambda x: x["path"] == "/m/get-s2?q=1")
    assert line["proto"] == "HTTP/2"


def wait_count(srv, n, settle=0.5):
    srv.wait(n)
    time.sleep(scaled(settle))     # anything more would have arrived by now
    return srv.count()


def test_percentages_and_two_mirrors(sidecar, ups):
    """mirrorPercentage 0: none; absent and the deprecated mirrorPercent 100: every one;
    50: about half (a wide bound); mirrors: each of its two targets gets every request."""
    def many(path, n):
        r = sidecar.curl(*[f"http://{API}{path}{i}" for i in range(n)])
        assert r.returncode == 0 and r.stdout == "api\n" * n, r.stderr
    many("/pct0/", 20)
    many("/m/all", 20)
    assert wait_count(ups.mirror, 20) == 20
    many("/old/", 20)
    assert wait_count(ups.mirror, 40) == 40
    many("/pct50/", 200)
    half = wait_count(ups.mirror, 140) - 40
    assert 60 <= half <= 140, half
    n = ups.mirror.count()
    many("/two/", 10)
    assert wait_count(ups.mirror, n + 10) == n + 10
    assert wait_count(ups.mirror2, 10) == 10
    assert all(r["headers"]["host"] == f"{API}-shadow" for r in ups.mirror2.requests)
    assert not any(r["path"].startswith("/pct0/") for r in ups.mirror.requests)


def test_body_over_bound_not_mirrored(sidecar, ups):
    """A body over 64 KiB: the main upstream gets it, the mirror nothing (counted)."""
    big = "x" * (100 * 1024)
    r = sidecar.curl("--data-binary", big, "-H", "content-type: text/plain",
                     f"http://{API}/m/big")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    exact = "y" * (64 * 1024)
    r = sidecar.curl("--data-binary", exact, f"http://{API}/m/exact")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    got = ups.mirror.wait(1)
    time.sleep(scaled(0.5))
    assert [x["path"] for x in ups.mirror.requests] == ["/m/exact"], got
    assert ups.mirror.requests[0]["body"] == exact.encode()
    assert sidecar.sidecar.stat("mirror_skipped_body_total") == 1
    assert any(x["path"] == "/m/big" for x in ups.api.requests)


def fds(proc):
    return len(os.listdir(f"/proc/{proc.pid}/fd"))


def test_descriptors_return_after_200_shadows(gwmesh, ups):
    """200 mirrored requests (half of them to a mirror that is down) through the gateway:
    its descriptors come back to what they were after the first few."""
    g = gwmesh.gateway
    warm = [f"http://{API}/m/warm{i}" for i in range(5)] + \
           [f"http://{API}/down/warm{i}" for i in range(5)]
    assert gw_curl(gwmesh, *warm).returncode == 0
    ups.mirror.wait(5)
    time.sleep(scaled(0.5))
    before = fds(g.proc)
    urls = [f"http://{API}/{'m' if i % 2 else 'down'}/n{i}" for i in range(200)]
    r = gw_curl(gwmesh, *urls)
    assert r.returncode == 0 and r.stdout == "api\n" * 200, r.stderr
    assert wait_count(ups.mirror, 105) == 105
    deadline = time.time() + scaled(5)
    while g.stat("mirror_active") and time.time() < deadline:
        time.sleep(0.05)
    assert g.stat("mirror_active") == 0
    assert g.stat("mirror_requests_total") == 210
    after = fds(g.proc)
    assert after <= before + 1, (before, after)


MIRROR_VIA_GW = egress_gateway_yaml(MIRROR) + f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: mirror-via-gateway
spec:
  hosts: [{MIRROR}]
  gateways: [mesh]
  http:
  - route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: api
        port:
          number: 80
"""


def test_sidecar_mirror_host_routed_via_gateway(tmp_path, ctl, egressctl_bin, store, ups):
    """In the sidecar, a mirror host that a mesh route sends to the egress gateway: the
    shadow goes to the gateway (which has no route for the -shadow authority), never
    straight to the mirror host."""
    r = ctl("apply", "-f", "-", input=SES + "---\n" + vs_sidecar() + "---\n" + MIRROR_VIA_GW)
    assert r.rc == 0, r.err
    m = Mesh(tmp_path, ctl, egressctl_bin, store, ups.ips, gateway=True)
    try:
        r = m.curl(f"http://{API}/m/via")
        assert r.returncode == 0 and r.stdout == "api\n", r.stderr
        line = m.gateway.wait_log(lambda x: x["authority"] == f"{API}-shadow")
        assert line["path"] == "/m/via" and line["proto"] == "HTTP/2", line.string
        time.sleep(scaled(0.3))
        assert ups.mirror.count() == 0
        shadows = [x for x in m.gateway.log_lines() if f'"{API}-shadow"' in x]
        assert len(shadows) == 1, shadows
        assert m.sidecar.stat("mirror_requests_total") == 1
    finally:
        assert m.stop() == [0, 0]


def test_proxy_config_shows_mirror_policies(sidecar, ctl):
    out = ctl.ok("proxy-config", "route", f"127.0.0.1:{sidecar.sidecar.admin_port}", "-o", "json")
    routes = {r["name"]: r for t in json.loads(out) for vh in t["virtual_hosts"]
              for r in vh["routes"]}
    pol = routes["m"]["request_mirror_policies"]
    assert pol == [{"cluster": f"outbound|80||{MIRROR}",
                    "runtime_fraction": {"default_value": {"numerator": 1000000,
                                                           "denominator": "MILLION"}},
                    "trace_sampled": False}]
    assert routes["pct50"]["request_mirror_policies"][0]["runtime_fraction"][
        "default_value"]["numerator"] == 500000
    assert "request_mirror_policies" not in routes["pct0"]      # Istio: 0% is no policy
    assert [p["cluster"] for p in routes["two"]["request_mirror_policies"]] == [
        f"outbound|80||{MIRROR}", f"outbound|80||{MIRROR2}"]
    assert "request_mirror_policies" not in routes["plain"]


def test_mirror_and_mirrors_refused(ctl, tmp_path):
    """Istio refuses mirror together with mirrors: refused at apply, file:line:col."""
    f = tmp_path / "bad.yaml"
    f.write_text(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bad
spec:
  hosts: [{API}]
  http:
  - mirror:
      host: {MIRROR}
    mirrors:
    - destination:
        host: {MIRROR2}
    route:
    - destination:
        host: {API}
""")
    r = ctl("apply", "-f", str(f))
    assert r.rc != 0
    assert re.search(rf"{re.escape(str(f))}:\d+:\d+: VirtualService default/bad: "
                     r"spec\.http\[0\]\.mirror: HTTP route cannot contain both mirror and "
                     r"mirrors", r.err), r.err
    g = tmp_path / "bad2.yaml"
    g.write_text(f.read_text().replace(f"  - mirror:\n      host: {MIRROR}\n    mirrors:",
                                       "  - mirrors:").replace(
        f"    - destination:\n        host: {MIRROR2}\n", "    - percentage:\n        value: 5\n"))
    r = ctl("apply", "-f", str(g))
    assert r.rc != 0 and "destination" in r.err, r.err


def test_apply_warns_only_deprecated_mirror_percent(ctl):
    r = ctl("apply", "-f", "-", input=SES + "---\n" + vs_sidecar())
    assert r.rc == 0, r.err
    assert "not applied" not in r.err and "not supported" not in r.err, r.err
    assert re.search(r"spec\.http\[4\]\.mirrorPercent: using deprecated setting", r.err), r.err


H2M = "h2mirror.example.test"


def test_mirror_over_http2_upstream(tmp_path, ctl, egressctl_bin, store, ups):
    """A mirror whose DestinationRule originates TLS with h2UpgradePolicy UPGRADE: the
    shadow is an HTTP/2 stream (up_h2.c) to a python3-h2 origin that records it, with the
    -shadow :authority and the body; the SNI is the mirror's own host."""
    from gwlib import make_server_ca, make_server_cert
    from h2origin import H2Origin

    def ok(c, req):
        c.head(req.sid, 200, [("content-length", "2")])
        c.data(req.sid, b"ok", end=True)
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, H2M)
    ip = loopback_ip()
    origin = H2Origin(ip, cert, key, {"/m/h2": ok})
    yaml = SES + "---\n" + vs_sidecar().replace(f"host: {MIRROR}\n", f"host: {H2M}\n      port:\n"
                                                "        number: 443\n", 1) + f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: h2mirror
spec:
  hosts: [{H2M}]
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: h2mirror
spec:
  host: {H2M}
  trafficPolicy:
    connectionPool:
      http:
        h2UpgradePolicy: UPGRADE
    tls:
      mode: SIMPLE
      caCertificates: {ca}
"""
    r = ctl("apply", "-f", "-", input=yaml)
    assert r.rc == 0, r.err
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {**ups.ips, H2M: ip})
    try:
        r = m.curl("--data-binary", "to both", f"http://{API}/m/h2")
        assert r.returncode == 0 and r.stdout == "api\n", r.stderr
        deadline = time.time() + scaled(5)
        while not origin.requests and time.time() < deadline:
            time.sleep(0.02)
        assert len(origin.requests) == 1, m.sidecar.stderr()[-2000:]
        req = origin.requests[0]
        assert req.get(b":authority") == f"{API}-shadow".encode()
        assert req.get(b":path") == b"/m/h2" and req.get(b":method") == b"POST"
        assert bytes(req.body) == b"to both"
        assert m.sidecar.stat("upstream_cx_http2_total") >= 1
        deadline = time.time() + scaled(5)
        while m.sidecar.stat("mirror_responses_total") < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert m.sidecar.stat("mirror_responses_total") == 1
    finally:
        origin.stop()
        assert m.stop() == [0]
