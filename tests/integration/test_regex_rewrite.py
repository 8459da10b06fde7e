"""Istio's regexes are RE2 (Envoy's safe_regex), and egressgw now runs them on its own
RE2-syntax engine (src/core/re.c): rewrite.uriRegexRewrite applied as Envoy's regex_rewrite
(every match in the path replaced, \\1 substituting a group, the query string kept), an
RE2-only route match (\\d) that POSIX could not read, CORS origins in RE2, /stats?filter=
in RE2, and a regex the engine cannot compile refused at `egressctl apply` with
file:line:col and the field. A recording upstream checks what arrived: through the
sidecar (HTTP/1.1 and h2c), the gateway alone, the sidecar -> gateway mesh (the gateway's
HTTP/2 downstream), and the gateway's HTTP/2 upstream (python3-h2 origin)."""
import json
import re
import urllib.parse

import pytest

from gwlib import Gateway, loopback_ip, make_server_ca, make_server_cert, wait_port
from h2origin import H2Origin
from meshlib import Mesh, dns_service_entry_yaml, egress_gateway_yaml, mesh_hop_vs_head
from recorder import Recorder
from test_envoy_admin import request
from test_gateway import CNN, apply_first_half, mesh as gwmesh  # noqa: F401 (fixture)
from test_upstream_h2_exact import exchange, split_head

API = "api.example.test"

SE = dns_service_entry_yaml(API)

ROUTES = r"""  - name: versioned
    match:
    - uri:
        regex: ^/v\d+/.*
    rewrite:
      uriRegexRewrite:
        match: ^/v(\d+)/([^/]+)/(.*)$
        rewrite: /api/\2/version-\1/\3
    route:
    - destination:
        host: {api}
        port:
          number: 80
  - name: every
    match:
    - uri:
        prefix: /g/
    rewrite:
      uriRegexRewrite:
        match: o+
        rewrite: "0"
    route:
    - destination:
        host: {api}
        port:
          number: 80
  - name: rest
    route:
    - destination:
        host: {api}
        port:
          number: 80
"""

VS = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  http:
""" + ROUTES.replace("{api}", API)

# (what the client asks, what the upstream must see)
CASES = [
    # captures reordered; the query string is neither matched nor changed
    ("/v2/users/42?x=1&y=/v9/a/b", "/api/users/version-2/42?x=1&y=/v9/a/b"),
    ("/v10/items/a/b", "/api/items/version-10/a/b"),
    # every non-overlapping match in the path (RE2::GlobalReplace), not in the query
    ("/g/foo/boo?q=oo", "/g/f0/b0?q=oo"),
    # \d is RE2: /vx/ is not versioned, so the catch-all route (no rewrite) takes it
    ("/vx/users/42", "/vx/users/42"),
]


@pytest.fixture
def api(tmp_path):
    ip = loopback_ip()
    rec = Recorder(ip, 80, "api")
    yield ip, rec
    rec.stop()


@pytest.fixture
def mesh(tmp_path, ctl, egressctl_bin, store, api):
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + VS)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: api[0]})
    yield m
    assert m.stop() == [0]


def check(rec, path, want):
    got = rec.last()
    assert got["path"] == want, (path, got["path"])
    if want != path:
        assert got["headers"]["x-envoy-original-path"] == path
    else:
        assert "x-envoy-original-path" not in got["headers"]
    assert got["headers"]["host"] == API


def h2c_to(port):
    return ("--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
            f"{API}:80:127.0.0.1:{port}")


@pytest.mark.parametrize("path,want", CASES)
def test_sidecar_http1(mesh, api, path, want):
    _, rec = api
    r = mesh.curl(f"http://{API}{path}")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    check(rec, path, want)
    line = mesh.sidecar.wait_log(lambda x: x["path"] == path)
    assert line["code"] == "200"


@pytest.mark.parametrize("path,want", CASES)
def test_sidecar_http2_client(mesh, api, path, want):
    """h2c to the sidecar (fwd_h2.c): the same rewrite on the HTTP/1.1 upstream."""
    _, rec = api
    r = mesh.curl(*h2c_to(mesh.sidecar.outbound), "-D", "-", f"http://{API}{path}")
    assert r.returncode == 0 and r.stdout.startswith("HTTP/2 200"), (r.stdout, r.stderr)
    check(rec, path, want)


def test_rewrite_does_not_leak_to_next_request(mesh, api):
    """Keep-alive: the rewritten route, then the catch-all on the same connection."""
    _, rec = api
    r = mesh.curl(f"http://{API}/v1/a/b", "--next", f"http://{API}/plain")
    assert r.returncode == 0 and r.stdout == "api\napi\n", r.stderr
    a, b = rec.requests[-2:]
    assert a["path"] == "/api/a/version-1/b" and b["path"] == "/plain"
    assert "x-envoy-original-path" not in b["headers"]


def test_proxy_config_shows_regex_rewrite(mesh, ctl):
    r = ctl("proxy-config", "route", f"127.0.0.1:{mesh.sidecar.admin_port}", "-o", "json")
    assert r.rc == 0, r.err
    routes = {rt.get("name"): rt for t in json.loads(r.out) for vh in t["virtual_hosts"]
              for rt in vh["routes"]}
    assert routes["versioned"]["rewrite"]["uri_regex_rewrite"] == {
        "match": r"^/v(\d+)/([^/]+)/(.*)$", "rewrite": r"/api/\2/version-\1/\3"}
    assert routes["versioned"]["match"][0]["uri"] == {"regex": r"^/v\d+/.*"}
    assert "rewrite" not in routes["rest"]


def test_stats_filter_is_re2(mesh, api):
    """/stats?filter= is an RE2 search, as Envoy's: \\d and (?i) work; a bad one is 400."""
    r = mesh.curl(f"http://{API}/plain")
    assert r.returncode == 0
    q = urllib.parse.quote(r"(?i)CONFIG_RELOADS_\w+")
    code, _, body = request(mesh.sidecar, "GET", f"/stats?filter={q}")
    assert code == 200 and body.splitlines() and \
        all("config_reloads" in ln for ln in body.splitlines()), body
    code, _, body = request(mesh.sidecar, "GET",
                            "/stats?filter=" + urllib.parse.quote(r"upstream_rq_\dxx"))
    assert code == 200 and re.search(r"upstream_rq_2xx: [1-9]", body), body
    code, _, body = request(mesh.sidecar, "GET", "/stats?filter=" + urllib.parse.quote("a(?=b)"))
    assert code == 400 and "invalid or unsupported Perl syntax" in body, body


MESH_HOP = egress_gateway_yaml(API) + mesh_hop_vs_head(API) + ROUTES.replace("{api}", API).replace(
    "  - name: versioned\n    match:\n    - uri:",
    "  - name: versioned\n    match:\n    - gateways: [istio-egressgateway]\n      uri:").replace(
    "  - name: every\n    match:\n    - uri:",
    "  - name: every\n    match:\n    - gateways: [istio-egressgateway]\n      uri:")


@pytest.mark.parametrize("client", ["sidecar-h1", "sidecar-h2c", "gateway-alone"])
def test_through_gateway(tmp_path, ctl, egressctl_bin, store, api, client):
    """The gateway rewrites: on a request that came over the sidecar's HTTP/2 mesh hop
    (the client speaking HTTP/1.1 or h2c to the sidecar), and on one an HTTP/1.1 client
    sent to the gateway alone (its plaintext port)."""
    ip, rec = api
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + MESH_HOP)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: ip}, gateway=True)
    try:
        for path, want in CASES:
            if client == "sidecar-h1":
                extra = ()
            elif client == "sidecar-h2c":
                extra = h2c_to(m.sidecar.outbound)
            else:
                extra = ("--noproxy", "*", "--connect-to", f"{API}:80:{m.gw_ip}:80")
            r = m.curl(*extra, "-D", "-", f"http://{API}{path}")
            assert r.returncode == 0 and " 200" in r.stdout.split("\n")[0], (r.stdout, r.stderr)
            check(rec, path, want)
            gl = m.gateway.wait_log(lambda x: x["path"] == path)
            assert gl["code"] == "200"
            assert gl["proto"] == ("HTTP/1.1" if client == "gateway-alone" else "HTTP/2")
    finally:
        assert m.stop() == [0, 0]


def s_ok(c, req):
    c.head(req.sid, 200, [("content-type", "text/plain"), ("content-length", "2")])
    c.data(req.sid, b"ok", end=True)


@pytest.fixture
def h2env(tmp_path, store, ctl, walkthrough, gwmesh):  # noqa: F811
    """The walkthrough's gateway and its route to edition.cnn.com:443 with a
    uriRegexRewrite, HTTP/2 to the origin (h2UpgradePolicy: UPGRADE)."""
    apply_first_half(ctl, walkthrough)
    y = (walkthrough / "03-virtualservice-destinationrule-cnn.yaml").read_text()
    dest = "        host: edition.cnn.com\n        port:\n          number: 443\n      weight: 100\n"
    route = "    route:\n    - destination:\n" + dest
    assert y.count(route) == 1
    y = y.replace(route, "    rewrite:\n      uriRegexRewrite:\n"
                         "        match: ^/politics/(\\w+)\n"
                         "        rewrite: /world/\\1/today\n" + route)
    marker = "      tls:\n        mode: SIMPLE"
    y = y.replace(marker, "      connectionPool:\n        http:\n"
                          "          h2UpgradePolicy: UPGRADE\n" + marker)
    ctl.ok("apply", "-f", "-", input=y)
    ip = loopback_ip()
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, CNN)
    origin = H2Origin(ip, cert, key, {"/world/europe/today": s_ok})
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{ip} {CNN}\n")
    gw_ip = loopback_ip()
    g = Gateway(tmp_path, store, gwmesh["gw"], gw_ip, hosts, ca)
    wait_port(gw_ip, 80, proc=g.proc)
    yield {"g": g, "origin": origin, "mesh": gwmesh, "cnn": CNN}
    origin.stop()
    assert g.stop() == 0


def test_gateway_http2_upstream(h2env):
    """The rewritten :path in the HEADERS the gateway sends its HTTP/2 upstream."""
    raw = exchange(h2env, "/politics/europe?page=2")
    status, _, body = split_head(raw)
    assert status == b"HTTP/1.1 200 OK" and body == b"ok", raw[:500]
    req = h2env["origin"].requests[-1]
    got = {k.decode(): v.decode() for k, v in req.headers}
    assert got[":path"] == "/world/europe/today?page=2"
    assert got["x-envoy-original-path"] == "/politics/europe?page=2"


BAD = [
    # an invalid RE2 route match: refused, not "never matches"
    ("    match:\n    - uri:\n        regex: ^/v(\\d+\n", None,
     r":11:\d+: .*spec\.http\[0\]\.match\[0\]\.uri\.regex.*missing closing \): \^/v\(\\d\+"),
    ("    match:\n    - headers:\n        x-a:\n          regex: a**\n", None,
     r"headers\[\"?x-a\"?\]\.regex.*bad repetition operator: \*\*|x-a.*bad repetition operator"),
    ("    match:\n    - uri:\n        regex: (a)\\1\n", None, r"invalid escape sequence: \\1"),
    (None, "      uri: /x\n      uriRegexRewrite:\n        match: a\n        rewrite: b\n",
     r"rewrite may only contain one of uri or uriRegexRewrite"),
    (None, "      uriRegexRewrite:\n        match: ^/(a)\n        rewrite: /\\2\n",
     r"uriRegexRewrite\.rewrite.*only has 1 parenthesized"),
    (None, "      uriRegexRewrite:\n        match: ^/(a\n        rewrite: /x\n",
     r":11:\d+: .*uriRegexRewrite\.match.*missing closing \): \^/\(a"),
]


@pytest.mark.parametrize("match,rewrite,err", BAD)
def test_refused_at_apply(ctl, tmp_path, match, rewrite, err):
    y = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bad\n"
         "spec:\n  hosts: [a.example.test]\n  http:\n  - name: r\n" + (match or "") +
         ("    rewrite:\n" + rewrite if rewrite else "") +
         "    route:\n    - destination:\n        host: a.example.test\n")
    f = tmp_path / "bad.yaml"
    f.write_text(y)
    r = ctl("apply", "-f", f)
    assert r.rc != 0, r.err
    assert re.search(err, r.err), r.err
    assert re.search(re.escape(str(f)) + r":\d+:\d+", r.err), r.err


CORS_VS = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  http:
  - corsPolicy:
      allowOrigins:
      - regex: (?i)https://\\d+\\.example
      allowMethods: [GET]
    route:
    - destination:
        host: {API}
"""


def test_cors_origin_regex_is_re2(tmp_path, ctl, egressctl_bin, store, api):
    """An RE2-only origin regex (\\d, (?i)) is accepted and applied (it was refused)."""
    ip, rec = api
    r = ctl("apply", "-f", "-", input=SE + "---\n" + CORS_VS)
    assert r.rc == 0, r.err
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: ip})
    try:
        for origin, allowed in (("HTTPS://42.example", True), ("https://x.example", False)):
            r = m.curl("-D", "-", "-o", "/dev/null", "-H", f"origin: {origin}",
                       f"http://{API}/c")
            assert r.returncode == 0, r.stderr
            got = re.findall(r"^access-control-allow-origin: (.*?)\r?$", r.stdout, re.M | re.I)
            assert got == ([origin] if allowed else []), r.stdout
    finally:
        assert m.stop() == [0]
