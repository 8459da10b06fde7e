"""VirtualService corsPolicy, applied as Envoy's CORS filter applies what Istio makes of
it: a preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed
origin is answered by the proxy (200 and the access-control-allow-* fields) and never
reaches the upstream; an actual request from an allowed origin is forwarded and its
response gets access-control-allow-origin (the request's Origin, replacing the
upstream's), -allow-credentials and -expose-headers; a request from another origin is
untouched, and its preflight forwarded, or under unmatchedPreflights: IGNORE answered
without access-control-allow-origin. Checked at a recording upstream through the sidecar
over HTTP/1.1 and HTTP/2 (h2c), and at the gateway behind a sidecar."""
import json
import re

import pytest

from gwlib import loopback_ip
from meshlib import Mesh, dns_service_entry_yaml, egress_gateway_yaml
from recorder import Recorder

API = "api.example.test"

SE = dns_service_entry_yaml(API)

CORS = """    corsPolicy:
      allowOrigins:
      - exact: https://a.example
      - prefix: https://pre.
      - regex: https://[a-z]+\\.re\\.example
      allowMethods: [GET, POST]
      allowHeaders: [x-custom, content-type]
      exposeHeaders: [x-exp]
      maxAge: 24h
      allowCredentials: true
"""

VS = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  http:
  - name: cors
    match:
    - uri:
        prefix: /cors
{CORS}    route:
    - destination:
        host: {API}
  - name: ignore
    match:
    - uri:
        prefix: /ignore
    corsPolicy:
      allowOrigins:
      - exact: https://a.example
      allowMethods: [GET]
      unmatchedPreflights: IGNORE
    route:
    - destination:
        host: {API}
  - name: star
    match:
    - uri:
        prefix: /star
    corsPolicy:
      allowOrigins:
      - exact: "*"
      allowHeaders: ["*"]
    route:
    - destination:
        host: {API}
  - name: plain
    route:
    - destination:
        host: {API}
"""

UP = [("access-control-allow-origin", "upstream"), ("x-exp", "1")]


@pytest.fixture
def api():
    ip = loopback_ip()
    rec = Recorder(ip, 80, "api", resp_headers=UP)
    yield ip, rec
    rec.stop()


@pytest.fixture
def mesh(tmp_path, ctl, egressctl_bin, store, api):
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + VS)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: api[0]})
    yield m
    assert m.stop() == [0]


def head(r):
    """(status, [(name, value)]) of the last head curl -D printed."""
    block = r.stdout.replace("\r\n", "\n").strip().split("\n\n")[-1].split("\n")
    status = int(block[0].split()[1])
    out = []
    for line in block[1:]:
        k, _, v = line.partition(":")
        out.append((k.strip().lower(), v.strip()))
    return status, out


def values(fields, name):
    return [v for k, v in fields if k == name]


def h2args(m, h2):
    return ["--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
            f"{API}:80:127.0.0.1:{m.sidecar.outbound}"] if h2 else []


def preflight(m, path, origin, h2=False, extra=()):
    return m.curl(*h2args(m, h2), "-X", "OPTIONS", "-D", "-", "-o", "/dev/null",
                  "-H", f"origin: {origin}", "-H", "access-control-request-method: POST",
                  *extra, f"http://{API}{path}")


@pytest.mark.parametrize("h2", [False, True])
def test_preflight_answered_by_proxy(mesh, api, h2):
    _, rec = api
    before = rec.count()
    valid = mesh.sidecar.stat("cors_origin_valid_total")
    r = preflight(mesh, "/cors/x", "https://a.example", h2,
                  ["-H", "access-control-request-headers: x-custom"])
    assert r.returncode == 0, r.stderr
    status, f = head(r)
    assert status == 200
    assert values(f, "access-control-allow-origin") == ["https://a.example"]
    assert values(f, "access-control-allow-credentials") == ["true"]
    assert values(f, "access-control-allow-methods") == ["GET,POST"]
    assert values(f, "access-control-allow-headers") == ["x-custom,content-type"]
    assert values(f, "access-control-max-age") == ["86400"]
    assert values(f, "access-control-expose-headers") == []
    assert rec.count() == before                          # never reached the upstream
    assert mesh.sidecar.stat("cors_origin_valid_total") == valid + 1
    line = mesh.sidecar.wait_log(lambda x: x["path"] == "/cors/x" and x["method"] == "OPTIONS")
    assert line["code"] == "200"


@pytest.mark.parametrize("h2", [False, True])
@pytest.mark.parametrize("origin", ["https://a.example", "https://pre.example.org",
                                    "https://abc.re.example"])
def test_actual_request_gets_cors_fields(mesh, api, h2, origin):
    _, rec = api
    r = mesh.curl(*h2args(mesh, h2), "-D", "-", "-o", "/dev/null", "-H", f"origin: {origin}",
                  f"http://{API}/cors/y")
    assert r.returncode == 0, r.stderr
    status, f = head(r)
    assert status == 200
    assert values(f, "access-control-allow-origin") == [origin]   # the upstream's replaced
    assert values(f, "access-control-allow-credentials") == ["true"]
    assert values(f, "access-control-expose-headers") == ["x-exp"]
    assert values(f, "access-control-allow-methods") == []
    got = rec.last()
    assert got["path"] == "/cors/y" and got["headers"]["origin"] == origin


@pytest.mark.parametrize("origin", ["https://b.example", "https://a.example.evil",
                                    "https://x.re.exampleZ", "http://a.example"])
def test_other_origin_untouched(mesh, api, origin):
    _, rec = api
    invalid = mesh.sidecar.stat("cors_origin_invalid_total")
    r = mesh.curl("-D", "-", "-o", "/dev/null", "-H", f"origin: {origin}", f"http://{API}/cors/z")
    assert r.returncode == 0, r.stderr
    status, f = head(r)
    assert status == 200
    assert values(f, "access-control-allow-origin") == ["upstream"]
    assert values(f, "access-control-allow-credentials") == []
    assert mesh.sidecar.stat("cors_origin_invalid_total") == invalid + 1
    # Its preflight goes to the upstream (unmatchedPreflights: FORWARD, the default).
    before = rec.count()
    r = preflight(mesh, "/cors/z", origin)
    status, f = head(r)
    assert status == 200 and rec.count() == before + 1
    assert rec.last()["method"] == "OPTIONS"
    assert values(f, "access-control-allow-origin") == ["upstream"]


def test_unmatched_preflight_ignored(mesh, api):
    _, rec = api
    before = rec.count()
    r = preflight(mesh, "/ignore", "https://b.example")
    status, f = head(r)
    assert status == 200 and rec.count() == before
    # Envoy's answer: the policy's fields, no access-control-allow-origin.
    assert [k for k, _ in f if k.startswith("access-control-")] == \
        ["access-control-allow-methods"]
    # An actual request from that origin is still forwarded, untouched.
    r = mesh.curl("-D", "-", "-o", "/dev/null", "-H", "origin: https://b.example",
                  f"http://{API}/ignore")
    status, f = head(r)
    assert status == 200 and rec.count() == before + 1
    assert values(f, "access-control-allow-origin") == ["upstream"]


def test_star_and_no_origin(mesh, api):
    _, rec = api
    before = rec.count()
    r = preflight(mesh, "/star", "https://any.example", extra=[
        "-H", "access-control-request-headers: x-a, x-b"])
    status, f = head(r)
    assert status == 200 and rec.count() == before
    assert values(f, "access-control-allow-origin") == ["https://any.example"]
    assert values(f, "access-control-allow-headers") == ["x-a, x-b"]   # "*": echoed
    assert values(f, "access-control-allow-credentials") == []
    # No Origin: not a CORS request, even an OPTIONS with the request method.
    r = mesh.curl("-X", "OPTIONS", "-D", "-", "-o", "/dev/null", "-H",
                  "access-control-request-method: POST", f"http://{API}/star")
    status, f = head(r)
    assert status == 200 and rec.count() == before + 1
    # A route without a policy: nothing.
    r = mesh.curl("-D", "-", "-o", "/dev/null", "-H", "origin: https://a.example",
                  f"http://{API}/plain")
    status, f = head(r)
    assert values(f, "access-control-allow-origin") == ["upstream"]


def test_proxy_config_shows_cors(mesh, ctl):
    r = ctl("proxy-config", "route", f"127.0.0.1:{mesh.sidecar.admin_port}", "-o", "json")
    assert r.rc == 0, r.err
    routes = [rt for t in json.loads(r.out) for vh in t["virtual_hosts"]
              for rt in vh["routes"] if rt.get("name") == "cors"]
    c = routes[0]["cors"]
    assert c["allow_origins"] == [{"exact": "https://a.example"}, {"prefix": "https://pre."},
                                  {"regex": "https://[a-z]+\\.re\\.example"}]
    assert c["allow_methods"] == "GET,POST" and c["max_age"] == "86400"
    assert c["allow_credentials"] is True and c["forward_not_matching_preflights"] is True


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
{CORS}    route:
    - destination:
        host: {API}
        port:
          number: 80
"""


def test_gateway_behind_sidecar(tmp_path, ctl, egressctl_bin, store, api):
    """The policy on the gateway's route: the preflight crosses the sidecar and the HTTP/2
    mesh hop and is answered by the gateway; an actual request's response gets the fields
    there and keeps them through the sidecar."""
    ip, rec = api
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + MESH_HOP)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: ip}, gateway=True)
    try:
        before = rec.count()
        r = preflight(m, "/p", "https://a.example")
        status, f = head(r)
        assert status == 200 and rec.count() == before, r.stdout
        assert values(f, "access-control-allow-origin") == ["https://a.example"]
        assert values(f, "access-control-allow-methods") == ["GET,POST"]
        gl = m.gateway.wait_log(lambda x: x["path"] == "/p")
        assert gl["proto"] == "HTTP/2" and gl["code"] == "200" and gl["method"] == "OPTIONS"
        r = m.curl("-D", "-", "-o", "/dev/null", "-H", "origin: https://a.example",
                   f"http://{API}/q")
        status, f = head(r)
        assert status == 200 and rec.last()["path"] == "/q"
        assert values(f, "access-control-allow-origin") == ["https://a.example"]
        assert values(f, "access-control-expose-headers") == ["x-exp"]
    finally:
        assert m.stop() == [0, 0]


BAD = [
    # RE2 (\\d, (?i)) is accepted now (test_regex_rewrite.py); what RE2 refuses is refused.
    ("      - regex: https://(\\d+\\.example\n", r"allowOrigins\[0\]\.regex.*missing closing \)"),
    ("      - regex: (?=https)\n", r"allowOrigins\[0\]\.regex.*invalid or unsupported Perl syntax"),
    ("      maxAge: 1500ms\n", r"maxAge.*seconds precision"),
    ("      allowMethods: [FETCH]\n", r"allowMethods.*FETCH is not a valid HTTP method"),
    ("      exposeHeaders: [\"x y\"]\n", r"not a valid header name"),
]


@pytest.mark.parametrize("snippet,err", BAD)
def test_refused_at_apply(ctl, tmp_path, snippet, err):
    origins = "      allowOrigins:\n" + (snippet if snippet.startswith("      - ") else
                                         "      - exact: https://a.example\n" + snippet)
    y = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bad\n"
         "spec:\n  hosts: [a.example.test]\n  http:\n  - corsPolicy:\n" + origins +
         "    route:\n    - destination:\n        host: a.example.test\n")
    f = tmp_path / "bad.yaml"
    f.write_text(y)
    r = ctl("apply", "-f", f)
    assert r.rc != 0, r.err
    assert re.search(err, r.err), r.err
    assert re.search(re.escape(str(f)) + r":\d+:\d+", r.err), r.err
