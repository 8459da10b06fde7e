"""Issue 14's matrix, VirtualService `headers` (route and destination level, request and
response, set/add/remove) on the egress-gateway-bound route, in each of the four client
paths (matrix14lib.GW_CELLS): the gateway alone over HTTP/1.1 and HTTP/2 (ALPN h2, mTLS),
sidecar -> gateway from an HTTP/1.1 and an h2c application. Checked at a recording
upstream (every field it received, repeats kept) and in the response the client got.
Then the same operations over the gateway's HTTP/2 upstream (h2UpgradePolicy: UPGRADE
to a python3-h2 origin that records the HEADERS it received). (The sidecar alone and
sidecar -> gateway with operations at both proxies: test_route_headers.py.)"""
import pytest

from gwlib import loopback_ip
from matrix14lib import GW_CELLS, gw_proto, h2_origin_hop, hop_mesh, send
from meshlib import dns_service_entry_yaml, egress_gateway_yaml, mesh_hop_vs_head
from recorder import Recorder

API = "api.example.test"

ROUTE_OPS = """    headers:
      request:
        set:
          x-api-key: egress-key
          x-both: route
        add:
          x-multi: r1
        remove: [x-internal]
      response:
        set:
          x-resp-set: rs
        add:
          x-resp-add: ra
        remove: [x-up-secret]
"""
DEST_OPS = """      headers:
        request:
          set:
            x-both: dest
            x-dest: d1
          add:
            x-multi: d1
        response:
          set:
            x-dest-resp: dr
"""

YAML = dns_service_entry_yaml(API) + "---\n" + egress_gateway_yaml(API) + mesh_hop_vs_head(API) + f"""  - match:
    - gateways: [istio-egressgateway]
{ROUTE_OPS}    route:
    - destination:
        host: {API}
        port:
          number: 80
{DEST_OPS}"""

UP = [("x-up-secret", "s"), ("x-resp-set", "upstream"), ("x-keep", "k")]


@pytest.fixture(scope="module")
def env(tmp_path_factory, egressctl_bin):
    ip = loopback_ip()
    rec = Recorder(ip, 80, "api", resp_headers=UP)
    try:
        with hop_mesh(tmp_path_factory.mktemp("m14-headers"), egressctl_bin, YAML,
                      {API: ip}, API) as m:
            yield m, rec
    finally:
        rec.stop()


def values(fields, name):
    return [v for k, v in fields if k == name]


CLIENT = [("x-api-key", "client"), ("x-internal", "leak"), ("x-multi", "c"),
          ("x-both", "client"), ("x-other", "o")]


def check(f, r, host):
    """f: the request fields the upstream received, in order; r: the client's Resp."""
    assert values(f, "x-api-key") == ["egress-key"]
    assert values(f, "x-both") == ["route"]          # the route's set wins
    assert values(f, "x-dest") == ["d1"]
    assert values(f, "x-multi") == ["c", "d1", "r1"]  # client's, destination's, route's
    assert values(f, "x-internal") == []
    assert values(f, "x-other") == ["o"]
    assert values(f, "host") + values(f, ":authority") == [host]
    h = r.headers
    assert "x-up-secret" not in h, r
    assert h.get("x-resp-set") == "rs", r
    assert h.get("x-resp-add") == "ra", r
    assert h.get("x-dest-resp") == "dr", r
    assert h.get("x-keep") == "k", r


@pytest.mark.parametrize("cell", GW_CELLS)
def test_request_and_response_operations(env, cell):
    m, rec = env
    path = f"/h/{cell}"
    r = send(m, cell, path, headers=CLIENT)
    assert (r.status, r.body) == (200, b"api\n"), r
    with rec.lock:
        got = [q for q in rec.requests if q["path"] == path]
    assert len(got) == 1, got
    check(got[0]["fields"], r, API)
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"]) == (gw_proto(cell), "200"), gl.string


def s_fields(c, req):
    c.head(req.sid, 200, [("content-type", "text/plain"), *UP, ("content-length", "3")])
    c.data(req.sid, b"h2\n", end=True)


@pytest.fixture(scope="module")
def h2env(tmp_path_factory, egressctl_bin):
    with h2_origin_hop(tmp_path_factory.mktemp("m14-headers-h2"), egressctl_bin,
                       {"/": s_fields}, route_extra=ROUTE_OPS, dest_extra=DEST_OPS) as env:
        yield env


@pytest.mark.parametrize("cell", GW_CELLS)
def test_http2_upstream(h2env, cell):
    """The request operations in the HEADERS the gateway sends its HTTP/2 origin, the
    response operations on the origin's HTTP/2 head, in every client path."""
    m, (origin,) = h2env
    path = f"/h2/{cell}"
    r = send(m, cell, path, headers=CLIENT)
    assert (r.status, r.body) == (200, b"h2\n"), r
    got = [q for q in list(origin.requests) if q.get(b":path") == path.encode()]
    assert len(got) == 1, got
    check([(k.decode(), v.decode()) for k, v in got[0].headers], r, m.host)
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"]) == (gw_proto(cell), "200"), gl.string
