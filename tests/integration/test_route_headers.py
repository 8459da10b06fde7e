"""VirtualService `headers` (HTTPRoute.headers and HTTPRouteDestination.headers), applied
as Envoy applies what Istio makes of them: request/response_headers_to_add (set:
overwrite, add: append) and _to_remove, the picked destination's level evaluated before
the route's (so the route's set wins), removes before adds in a level. Checked at a Python
upstream that records every request field it received (repeats kept) and sends fields of
its own, through the sidecar alone over HTTP/1.1 and HTTP/2 (h2c) from the client, and
through sidecar -> gateway, whose mesh hop is an HTTP/2 upstream of the sidecar; replies
made by the proxy after routing carry the route's response operations; operations the
proxy cannot apply are refused at apply with file:line and field."""
import json
import re

import pytest

from gwlib import loopback_ip
from meshlib import Mesh, dns_service_entry_yaml, egress_gateway_yaml
from recorder import Recorder

API = "api.example.test"

SE = dns_service_entry_yaml(API)

VS = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  http:
  - name: ops
    match:
    - uri:
        prefix: /ops
    headers:
      request:
        set:
          x-api-key: secret-1
          x-both: route
          x-pct: 100%%
        add:
          x-multi: r1
        remove: [x-internal, X-Dest]
      response:
        set:
          x-resp-set: rs
        add:
          x-resp-add: ra
        remove: [x-up-secret]
    route:
    - destination:
        host: {API}
      headers:
        request:
          set:
            x-both: dest
            x-dest: d1
            x-dest-kept: d2
          add:
            x-multi: d1
        response:
          add:
            x-dest-resp: dr
          remove: [x-up-other]
  - name: host
    match:
    - uri:
        prefix: /host
    headers:
      request:
        set:
          host: internal.example.test
  - name: nowhere
    match:
    - uri:
        prefix: /nowhere
    headers:
      response:
        set:
          x-route-resp: "yes"
    route:
    - destination:
        host: nowhere.example.test
      headers:
        response:
          set:
            x-dest-resp: "no"
  - name: moved
    match:
    - uri:
        prefix: /moved
    headers:
      response:
        set:
          x-moved: m
    redirect:
      uri: /elsewhere
  - name: direct
    match:
    - uri:
        prefix: /direct
    headers:
      response:
        set:
          x-direct: d
    directResponse:
      status: 418
      body:
        string: teapot
  - name: plain
    route:
    - destination:
        host: {API}
"""
# The "host" route's destination: the same as the others (kept apart for the YAML above).
VS = VS.replace("""          host: internal.example.test
""", f"""          host: internal.example.test
    route:
    - destination:
        host: {API}
""")

UP_FIELDS = [("x-up-secret", "s"), ("x-up-other", "o"), ("x-resp-set", "upstream"),
             ("x-keep", "k")]


@pytest.fixture
def api():
    ip = loopback_ip()
    rec = Recorder(ip, 80, "api", resp_headers=UP_FIELDS)
    yield ip, rec
    rec.stop()


@pytest.fixture
def mesh(tmp_path, ctl, egressctl_bin, store, api):
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + VS)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: api[0]})
    yield m
    assert m.stop() == [0]


def values(fields, name):
    return [v for k, v in fields if k == name]


def resp_fields(head):
    """[(name, value)] of the last head curl -D printed (lower-case names)."""
    block = head.replace("\r\n", "\n").strip().split("\n\n")[-1]
    out = []
    for line in block.split("\n")[1:]:
        k, _, v = line.partition(":")
        out.append((k.strip().lower(), v.strip()))
    return out


CLIENT = ["-H", "x-api-key: client", "-H", "x-internal: leak", "-H", "x-multi: c",
          "-H", "x-dest: from-client", "-H", "x-both: client", "-H", "x-other: o"]


def check_ops(rec, head):
    got = rec.last()["fields"]
    # set overwrites whatever the client sent; the route's set wins over the destination's.
    assert values(got, "x-api-key") == ["secret-1"]
    assert values(got, "x-both") == ["route"]
    assert values(got, "x-pct") == ["100%"]
    # add appends: the client's, then the destination level's, then the route's.
    assert values(got, "x-multi") == ["c", "d1", "r1"]
    # remove: the client's field, and (route level, after the destination's level) the
    # destination's own set of it.
    assert values(got, "x-internal") == []
    assert values(got, "x-dest") == []
    assert values(got, "x-dest-kept") == ["d2"]
    assert values(got, "x-other") == ["o"]
    assert values(got, "host") == [API]
    f = resp_fields(head)
    assert values(f, "x-up-secret") == [] and values(f, "x-up-other") == []
    assert values(f, "x-resp-set") == ["rs"]
    assert values(f, "x-resp-add") == ["ra"]
    assert values(f, "x-dest-resp") == ["dr"]
    assert values(f, "x-keep") == ["k"]


def test_ops_http1(mesh, api):
    _, rec = api
    r = mesh.curl("-D", "-", "-o", "/dev/null", *CLIENT, f"http://{API}/ops")
    assert r.returncode == 0 and " 200" in r.stdout.split("\n")[0], (r.stdout, r.stderr)
    check_ops(rec, r.stdout)


def test_ops_http2_client(mesh, api):
    """The client speaks HTTP/2 (h2c, prior knowledge) to the sidecar: the response
    operations go out as HEADERS (h2d_send_head), the request to the HTTP/1.1 upstream."""
    _, rec = api
    r = mesh.curl("--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
                  f"{API}:80:127.0.0.1:{mesh.sidecar.outbound}", "-D", "-", "-o", "/dev/null",
                  *CLIENT, f"http://{API}/ops")
    assert r.returncode == 0 and r.stdout.startswith("HTTP/2 200"), (r.stdout, r.stderr)
    check_ops(rec, r.stdout)


def test_untouched_route_and_next_request(mesh, api):
    """A route without operations, after one with them on the same connection: nothing
    of the first applies to the second."""
    _, rec = api
    r = mesh.curl("-D", "-", "-o", "/dev/null", *CLIENT, f"http://{API}/ops",
                  "--next", "-D", "-", "-o", "/dev/null", *CLIENT, f"http://{API}/plain")
    assert r.returncode == 0, r.stderr
    got = rec.last()["fields"]
    assert values(got, "x-api-key") == ["client"] and values(got, "x-internal") == ["leak"]
    assert values(got, "x-multi") == ["c"] and values(got, "x-dest") == ["from-client"]
    f = resp_fields(r.stdout)
    assert values(f, "x-up-secret") == ["s"] and values(f, "x-resp-set") == ["upstream"]
    assert values(f, "x-resp-add") == []


def test_host_set_is_the_route_host_rewrite(mesh, api):
    """Istio makes headers.request.set[host] the route's host_rewrite_literal."""
    _, rec = api
    r = mesh.curl(f"http://{API}/host/x")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    assert values(rec.last()["fields"], "host") == ["internal.example.test"]


@pytest.mark.parametrize("h2", [False, True])
def test_local_replies_after_routing_have_response_ops(mesh, api, h2):
    """Replies the proxy makes after the route was chosen carry its response operations,
    as Envoy's router's do: a 503 for a picked destination that cannot be reached gets the
    destination's level and the route's (the route entry then is Envoy's weighted
    cluster entry), a redirect or a direct response the route's."""
    args = ["--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
            f"{API}:80:127.0.0.1:{mesh.sidecar.outbound}"] if h2 else []
    r = mesh.curl(*args, "-D", "-", "-o", "/dev/null", f"http://{API}/nowhere")
    assert r.returncode == 0, r.stderr
    assert re.match(r"HTTP/[12.]+ 503", r.stdout), r.stdout
    f = resp_fields(r.stdout)
    assert values(f, "x-route-resp") == ["yes"]
    assert values(f, "x-dest-resp") == ["no"]
    r = mesh.curl(*args, "-D", "-", "-o", "/dev/null", f"http://{API}/moved")
    assert r.returncode == 0, r.stderr
    assert re.match(r"HTTP/[12.]+ 301", r.stdout), r.stdout
    f = resp_fields(r.stdout)
    assert values(f, "x-moved") == ["m"]
    assert values(f, "location") == [f"http://{API}/elsewhere"]
    # A direct response is the router's too (Envoy's direct_response route action).
    r = mesh.curl(*args, "-D", "-", "-o", "/dev/null", f"http://{API}/direct")
    assert r.returncode == 0, r.stderr
    assert re.match(r"HTTP/[12.]+ 418", r.stdout), r.stdout
    assert values(resp_fields(r.stdout), "x-direct") == ["d"]


def test_proxy_config_shows_ops(mesh, ctl):
    r = ctl("proxy-config", "route", f"127.0.0.1:{mesh.sidecar.admin_port}", "-o", "json")
    assert r.rc == 0, r.err
    routes = [rt for t in json.loads(r.out) for vh in t["virtual_hosts"]
              for rt in vh["routes"] if rt.get("name") == "ops"]
    assert routes, r.out
    h = routes[0]["headers"]
    assert h["request"]["remove"] == ["x-api-key", "x-both", "x-pct", "x-internal", "x-dest"] \
        or sorted(h["request"]["remove"]) == sorted(["x-api-key", "x-both", "x-pct",
                                                     "x-internal", "x-dest"])
    d = h["destinations"][0]
    assert {"name": "x-both", "value": "route"} in d["request"]["add"]
    assert {"name": "x-both", "value": "dest"} not in d["request"]["add"]
    assert [a["name"] for a in d["request"]["add"]].count("x-multi") == 2


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
    headers:
      request:
        set:
          x-sidecar: s1
          x-hop-secret: internal
        remove: [x-app-internal]
      response:
        add:
          x-sidecar-resp: s
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: api
        port:
          number: 80
  - match:
    - gateways: [istio-egressgateway]
    headers:
      request:
        add:
          authorization: Bearer egress-key
        remove: [x-hop-secret]
      response:
        remove: [x-up-secret]
    route:
    - destination:
        host: {API}
        port:
          number: 80
      headers:
        response:
          set:
            x-gw-resp: g
"""


@pytest.mark.parametrize("h2", [False, True])
def test_sidecar_to_gateway(tmp_path, ctl, egressctl_bin, store, api, h2):
    """The sidecar's operations travel on its HTTP/2 mesh hop (st_send_head_h2); the
    gateway's apply to a request that came in over HTTP/2 and to the upstream's response,
    then the sidecar's to the gateway's response."""
    ip, rec = api
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + MESH_HOP)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: ip}, gateway=True)
    try:
        args = ["--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
                f"{API}:80:127.0.0.1:{m.sidecar.outbound}"] if h2 else []
        r = m.curl(*args, "-D", "-", "-o", "/dev/null", "-H", "x-app-internal: 1",
                   "-H", "x-hop-secret: from-app", f"http://{API}/p")
        assert r.returncode == 0 and " 200" in r.stdout.split("\n")[0], (r.stdout, r.stderr)
        got = rec.last()["fields"]
        assert values(got, "x-sidecar") == ["s1"]
        assert values(got, "x-app-internal") == []
        assert values(got, "x-hop-secret") == []          # set by the sidecar, gone at the gw
        assert values(got, "authorization") == ["Bearer egress-key"]
        gl = m.gateway.wait_log(lambda x: x["path"] == "/p")
        assert gl["proto"] == "HTTP/2" and gl["code"] == "200"
        f = resp_fields(r.stdout)
        assert values(f, "x-up-secret") == []
        assert values(f, "x-up-other") == ["o"]
        assert values(f, "x-gw-resp") == ["g"]
        assert values(f, "x-sidecar-resp") == ["s"]
    finally:
        assert m.stop() == [0, 0]


BAD = [
    ("    headers:\n      request:\n        set:\n          connection: close\n",
     r"spec\.http\[0\]\.headers\.request\.set.*hop-by-hop"),
    ("    headers:\n      response:\n        remove: [Transfer-Encoding]\n",
     r"spec\.http\[0\]\.headers\.response\.remove.*hop-by-hop"),
    ("    headers:\n      request:\n        add:\n          content-length: \"5\"\n",
     r"hop-by-hop"),
    ("    headers:\n      request:\n        set:\n          x-client: \"%DOWNSTREAM_REMOTE_ADDRESS%\"\n",
     r"DOWNSTREAM_REMOTE_ADDRESS% substitution is not supported"),
    ("    headers:\n      request:\n        set:\n          \"x bad\": v\n",
     r"not a valid header name"),
    ("    headers:\n      response:\n        set:\n          host: h\n",
     r"cannot set Host header"),
    ("    route:\n    - destination:\n        host: a.example.test\n      headers:\n"
     "        request:\n          set:\n            host: b\n",
     r"spec\.http\[0\]\.route\[0\]\.headers\.request\.set.*host rewrite is not supported"),
]


@pytest.mark.parametrize("snippet,err", BAD)
def test_refused_at_apply(ctl, tmp_path, snippet, err):
    route = "" if "route:" in snippet else (
        "    route:\n    - destination:\n        host: a.example.test\n")
    y = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bad\n"
         "spec:\n  hosts: [a.example.test]\n  http:\n  - name: r\n" + snippet + route)
    f = tmp_path / "bad.yaml"
    f.write_text(y)
    r = ctl("apply", "-f", f)
    assert r.rc != 0, r.err
    assert re.search(err, r.err), r.err
    assert re.search(re.escape(str(f)) + r":\d+:\d+", r.err), r.err

