"""VirtualService `headers` on the gateway's HTTP/2 upstream (DestinationRule
h2UpgradePolicy: UPGRADE, a python3-h2 origin that records the fields it received): the
request operations of both levels in the HEADERS the gateway sends (st_send_head_h2), the
response operations on the origin's HTTP/2 response head relayed to an HTTP/1.1 client.
The client is a mesh workload talking to the gateway alone (test_route_headers.py covers
the sidecar and the sidecar -> gateway mesh)."""
import pytest

from gwlib import Gateway, loopback_ip, make_server_ca, make_server_cert, wait_port
from h2origin import H2Origin
from test_gateway import CNN, apply_first_half, mesh  # noqa: F401 (fixture)
from test_upstream_h2_exact import exchange, split_head


def values(fields, name):
    return [v for k, v in fields if k == name]


def s_ok(c, req):
    c.head(req.sid, 200, [("content-type", "text/plain"), ("x-up-secret", "s"),
                          ("x-keep", "k"), ("content-length", "2")])
    c.data(req.sid, b"ok", end=True)


@pytest.fixture
def h2env(tmp_path, store, ctl, walkthrough, mesh):  # noqa: F811
    """The walkthrough's gateway, its route to edition.cnn.com:443 with header operations
    at both levels, HTTP/2 to the origin."""
    apply_first_half(ctl, walkthrough)
    y = (walkthrough / "03-virtualservice-destinationrule-cnn.yaml").read_text()
    dest = "        host: edition.cnn.com\n        port:\n          number: 443\n      weight: 100\n"
    route = "    route:\n    - destination:\n" + dest
    assert y.count(route) == 1
    y = y.replace(route, """    headers:
      request:
        set:
          authorization: Bearer egress-key
        remove: [x-internal]
      response:
        remove: [x-up-secret]
""" + route + """      headers:
        request:
          add:
            x-dest: d1
        response:
          set:
            x-dest-resp: dr
""")
    marker = "      tls:\n        mode: SIMPLE"
    y = y.replace(marker, "      connectionPool:\n        http:\n"
                          "          h2UpgradePolicy: UPGRADE\n" + marker)
    ctl.ok("apply", "-f", "-", input=y)
    ip = loopback_ip()
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, CNN)
    origin = H2Origin(ip, cert, key, {"/h": s_ok})
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{ip} {CNN}\n")
    gw_ip = loopback_ip()
    g = Gateway(tmp_path, store, mesh["gw"], gw_ip, hosts, ca)
    wait_port(gw_ip, 80, proc=g.proc)
    yield {"g": g, "origin": origin, "mesh": mesh, "cnn": CNN}
    origin.stop()
    assert g.stop() == 0


def test_gateway_http2_upstream(h2env):
    """The request as HEADERS on the gateway's HTTP/2 upstream (st_send_head_h2), the
    origin's HTTP/2 response head edited on its way to the HTTP/1.1 client."""
    raw = exchange(h2env, "/h", extra="x-internal: 1\r\nauthorization: Basic client\r\n")
    status, fields, body = split_head(raw)
    assert status == b"HTTP/1.1 200 OK" and body == b"ok", raw[:500]
    req = h2env["origin"].requests[-1]
    got = [(k.decode(), v.decode()) for k, v in req.headers]
    assert values(got, "authorization") == ["Bearer egress-key"]
    assert values(got, "x-internal") == []
    assert values(got, "x-dest") == ["d1"]
    assert values(got, ":authority") == [h2env["cnn"]]
    f = [(k.decode().lower(), v.decode()) for k, v in fields]
    assert values(f, "x-up-secret") == [] and values(f, "x-keep") == ["k"]
    assert values(f, "x-dest-resp") == ["dr"]
