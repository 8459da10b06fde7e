"""Issue 14's matrix, `corsPolicy` on the egress-gateway-bound route, in each of the four
client paths (matrix14lib.GW_CELLS): the gateway alone over HTTP/1.1 and HTTP/2 (ALPN h2,
mTLS), sidecar -> gateway from an HTTP/1.1 and an h2c application. A preflight from an
allowed origin is answered by the gateway and never reaches the recording upstream; an
actual request from it is forwarded and its response gets the allowed origin (replacing
the upstream's access-control-allow-origin) and the exposed fields; another origin's
request is untouched. (The sidecar alone: test_route_cors.py.)"""
import pytest

from gwlib import loopback_ip
from matrix14lib import GW_CELLS, gw_proto, hop_mesh, send
from meshlib import dns_service_entry_yaml, egress_gateway_yaml, mesh_hop_vs_head
from recorder import Recorder

API = "api.example.test"
ORIGIN = "https://a.example"

YAML = dns_service_entry_yaml(API) + "---\n" + egress_gateway_yaml(API) + mesh_hop_vs_head(API) + f"""  - match:
    - gateways: [istio-egressgateway]
    corsPolicy:
      allowOrigins:
      - exact: {ORIGIN}
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-exp]
      maxAge: 1h
      allowCredentials: true
    route:
    - destination:
        host: {API}
        port:
          number: 80
"""

UP = [("access-control-allow-origin", "upstream"), ("x-exp", "1")]


@pytest.fixture(scope="module")
def env(tmp_path_factory, egressctl_bin):
    ip = loopback_ip()
    rec = Recorder(ip, 80, "api", resp_headers=UP)
    try:
        with hop_mesh(tmp_path_factory.mktemp("m14-cors"), egressctl_bin, YAML,
                      {API: ip}, API) as m:
            yield m, rec
    finally:
        rec.stop()


def reached(rec, path):
    with rec.lock:
        return [r for r in rec.requests if r["path"] == path]


@pytest.mark.parametrize("cell", GW_CELLS)
def test_preflight_answered_by_the_gateway(env, cell):
    m, rec = env
    path = f"/pre/{cell}"
    r = send(m, cell, path, method="OPTIONS",
             headers=[("origin", ORIGIN), ("access-control-request-method", "POST"),
                      ("access-control-request-headers", "x-custom")])
    assert r.status == 200, r
    h = r.headers
    assert h.get("access-control-allow-origin") == ORIGIN, r
    assert h.get("access-control-allow-methods") == "GET,POST", r
    assert h.get("access-control-allow-headers") == "x-custom", r
    assert h.get("access-control-allow-credentials") == "true", r
    assert h.get("access-control-max-age") == "3600", r
    assert "access-control-expose-headers" not in h, r
    assert reached(rec, path) == []
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["method"], gl["code"]) == (gw_proto(cell), "OPTIONS", "200"), \
        gl.string


@pytest.mark.parametrize("cell", GW_CELLS)
def test_actual_request_gets_the_fields(env, cell):
    m, rec = env
    path = f"/get/{cell}"
    r = send(m, cell, path, headers=[("origin", ORIGIN)])
    assert (r.status, r.body) == (200, b"api\n"), r
    assert r.headers.get("access-control-allow-origin") == ORIGIN, r
    assert r.headers.get("access-control-allow-credentials") == "true", r
    assert r.headers.get("access-control-expose-headers") == "x-exp", r
    got = reached(rec, path)
    assert len(got) == 1 and got[0]["headers"]["origin"] == ORIGIN


@pytest.mark.parametrize("cell", GW_CELLS)
def test_other_origin_untouched(env, cell):
    """Another origin: its preflight is forwarded as any request, and the upstream's own
    fields come back as they were."""
    m, rec = env
    path = f"/other/{cell}"
    r = send(m, cell, path, method="OPTIONS",
             headers=[("origin", "https://b.example"), ("access-control-request-method", "POST")])
    assert r.status == 200 and r.body == b"api\n", r
    assert r.headers.get("access-control-allow-origin") == "upstream", r
    assert "access-control-allow-methods" not in r.headers, r
    assert "access-control-expose-headers" not in r.headers, r
    got = reached(rec, path)
    assert len(got) == 1 and got[0]["method"] == "OPTIONS", got
