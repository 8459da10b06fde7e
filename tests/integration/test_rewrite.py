"""VirtualService rewrite.uri and rewrite.authority, applied as Envoy applies what Istio
makes of them (prefix_rewrite, host_rewrite_literal): checked at a Python upstream that
records the request line and Host it received, and in the access log, which keeps the
original path (X-ENVOY-ORIGINAL-PATH) and shows the rewritten authority. HTTP/1.1 from
the sidecar straight to the upstream, and the HTTP/2 mesh hop sidecar -> gateway."""
import pytest

from gwlib import free_port, loopback_ip
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
  - name: prefix
    match:
    - uri:
        prefix: /old/
    rewrite:
      uri: /new/
    route:
    - destination:
        host: {API}
  - name: exact
    match:
    - uri:
        exact: /exact
    rewrite:
      uri: /whole
    route:
    - destination:
        host: {API}
  - name: regex
    match:
    - uri:
        regex: /re/[0-9]+
    rewrite:
      uri: /numbered
    route:
    - destination:
        host: {API}
  - name: host
    match:
    - uri:
        prefix: /host
    rewrite:
      authority: internal.example.test:8080
    route:
    - destination:
        host: {API}
  - name: rest
    rewrite:
      uri: /v1/
    route:
    - destination:
        host: {API}
"""


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


@pytest.mark.parametrize("path,want", [
    ("/old/page?x=1", "/new/page?x=1"),      # the matched prefix replaced
    ("/old/", "/new/"),
    ("/exact?q=2", "/whole?q=2"),            # exact: the whole path, the query stays
    ("/re/42", "/numbered"),                 # regex: the whole path
    ("/other", "/v1/other"),                 # no uri match: Istio's prefix "/"
    ("/", "/v1/"),
])
def test_uri_rewrite_reaches_upstream(mesh, api, path, want):
    _, rec = api
    r = mesh.curl(f"http://{API}{path}")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    got = rec.last()
    assert got["path"] == want
    assert got["headers"]["host"] == API
    assert got["headers"]["x-envoy-original-path"] == path
    line = mesh.sidecar.wait_log(lambda m: m["path"] == path)
    assert line["code"] == "200" and line["authority"] == API


def test_authority_rewrite(mesh, api):
    _, rec = api
    r = mesh.curl(f"http://{API}/host/a", "-H", "x-envoy-original-path: /forged")
    assert r.returncode == 0 and r.stdout == "api\n", r.stderr
    got = rec.last()
    assert got["path"] == "/host/a"                       # no uri rewrite on this route
    assert got["headers"]["host"] == "internal.example.test:8080"
    assert got["headers"]["x-envoy-original-path"] == "/forged"   # not ours: passed on
    line = mesh.sidecar.wait_log(lambda m: m["path"] == "/host/a")
    assert line["authority"] == "internal.example.test:8080"


def test_rewrite_does_not_leak_to_next_request(mesh, api):
    """A keep-alive connection: the rewritten route first, then a plain one."""
    _, rec = api
    r = mesh.curl(f"http://{API}/host/1", "--next", f"http://{API}/old/x")
    assert r.returncode == 0 and r.stdout == "api\napi\n", r.stderr
    a, b = rec.requests[-2:]
    assert a["headers"]["host"] == "internal.example.test:8080" and a["path"] == "/host/1"
    assert b["headers"]["host"] == API and b["path"] == "/new/x"


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
      uri:
        prefix: /app/
    rewrite:
      uri: /mid/
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: api
        port:
          number: 80
  - match:
    - gateways: [istio-egressgateway]
      uri:
        prefix: /mid/
    rewrite:
      uri: /final/
      authority: backend.example.test
    route:
    - destination:
        host: {API}
        port:
          number: 80
"""


def test_rewrite_on_both_hops_over_http2(tmp_path, ctl, egressctl_bin, store, api):
    """The sidecar rewrites on its HTTP/2 mesh hop to the gateway (up_h2.c's :path), the
    gateway rewrites again on a request that came in over HTTP/2 (fwd_h2.c), and the
    upstream sees the second rewrite, the new Host, and the path the gateway received as
    x-envoy-original-path."""
    ip, rec = api
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + MESH_HOP)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: ip}, gateway=True)
    try:
        r = m.curl(f"http://{API}/app/x?q=1")
        assert r.returncode == 0 and r.stdout == "api\n", r.stderr
        got = rec.last()
        assert got["path"] == "/final/x?q=1"
        assert got["headers"]["host"] == "backend.example.test"
        assert got["headers"]["x-envoy-original-path"] == "/mid/x?q=1"
        gl = m.gateway.wait_log(lambda x: x["path"] == "/mid/x?q=1")
        assert gl["proto"] == "HTTP/2" and gl["code"] == "200"
        assert gl["authority"] == "backend.example.test"
        sl = m.sidecar.wait_log(lambda x: x["path"] == "/app/x?q=1")
        assert sl["code"] == "200"
    finally:
        assert m.stop() == [0, 0]
