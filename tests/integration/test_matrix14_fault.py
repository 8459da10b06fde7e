"""Issue 14's matrix, `fault` (abort, delay), `directResponse` and `redirect` on the
egress-gateway-bound route, in each of the four client paths (matrix14lib.GW_CELLS): the
gateway alone over HTTP/1.1 and HTTP/2 (ALPN h2, mTLS), sidecar -> gateway from an
HTTP/1.1 and an h2c application. Checked at a recording upstream (an abort, a direct
response, a redirect reach nothing; a delayed request arrives only after the delay), in
the gateway's access log (FI, DI, details) and in what the client got. The abort status
is 418, not 503, so that the sidecar's default retry policy (503) leaves it alone and
exactly one request reaches the gateway. Then the same rules on a `mesh`-bound route,
applied by the sidecar itself to HTTP/1.1 and h2c applications. (The sidecar alone:
test_fault.py.)"""
import time

import pytest

from gwlib import loopback_ip
from matrix14lib import GW_CELLS, Stamped, gw_proto, hop_mesh, log_lines_for, send
from meshlib import dns_service_entry_yaml, egress_gateway_yaml, mesh_hop_vs_head
from recorder import Recorder

API = "api.example.test"
SIDE = "side.example.test"
DELAY = 0.6


def rules(gw):
    """The feature rules, each matched on a prefix (and the gateway when gw)."""
    def rule(prefix, body, dest=True):
        m = "    - gateways: [istio-egressgateway]\n      uri:\n" if gw else "    - uri:\n"
        host = API if gw else SIDE
        return (f"  - match:\n{m}        prefix: {prefix}\n{body}" +
                (f"    route:\n    - destination:\n        host: {host}\n"
                 "        port:\n          number: 80\n" if dest else ""))
    return "".join([
        rule("/abort", "    fault:\n      abort:\n        httpStatus: 418\n"
             "        percentage:\n          value: 100\n"),
        rule("/delay", f"    fault:\n      delay:\n        fixedDelay: {int(DELAY * 1000)}ms\n"
             "        percentage:\n          value: 100\n"),
        rule("/direct", "    directResponse:\n      status: 418\n      body:\n"
             "        string: \"gateway says no\\n\"\n", dest=False),
        rule("/redirect", "    redirect:\n      uri: /there\n      scheme: https\n", dest=False),
    ])


YAML = (dns_service_entry_yaml(API) + "---\n" + dns_service_entry_yaml(SIDE, "side") + "---\n" +
        egress_gateway_yaml(API) + mesh_hop_vs_head(API) + f"""{rules(True)}  - match:
    - gateways: [istio-egressgateway]
    route:
    - destination:
        host: {API}
        port:
          number: 80
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: side
spec:
  hosts: [{SIDE}]
  http:
{rules(False)}  - route:
    - destination:
        host: {SIDE}
""")


@pytest.fixture(scope="module")
def env(tmp_path_factory, egressctl_bin):
    ip = loopback_ip()
    rec = Recorder(ip, 80, "api")
    rec.requests = Stamped()
    try:
        with hop_mesh(tmp_path_factory.mktemp("m14-fault"), egressctl_bin, YAML,
                      {API: ip, SIDE: ip}, API) as m:
            yield m, rec
    finally:
        rec.stop()


def reached(rec, path):
    with rec.lock:
        return [r for r in rec.requests if r["path"] == path]


@pytest.mark.parametrize("cell", GW_CELLS)
def test_abort(env, cell):
    m, rec = env
    path = f"/abort/{cell}"
    r = send(m, cell, path)
    assert (r.status, r.body) == (418, b"fault filter abort"), r
    assert r.headers.get("content-type") == "text/plain", r
    assert reached(rec, path) == []
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"], gl["flags"], gl["details"]) == \
        (gw_proto(cell), "418", "FI", "fault_filter_abort"), gl.string
    assert len(log_lines_for(m.gateway, path)) == 1
    if cell.startswith("mesh"):
        # The sidecar relays what the gateway injected; its own route has no fault.
        sl = m.sidecar.wait_log(lambda x: x["path"] == path)
        assert (sl["code"], sl["flags"], sl["details"]) == ("418", "-", "via_upstream"), \
            sl.string


@pytest.mark.parametrize("cell", GW_CELLS)
def test_delay(env, cell):
    m, rec = env
    path = f"/delay/{cell}"
    t0 = time.monotonic()
    r = send(m, cell, path)
    took = time.monotonic() - t0
    assert (r.status, r.body) == (200, b"api\n"), r
    got = reached(rec, path)
    assert len(got) == 1, got
    # Held at the gateway before the upstream saw it.
    assert got[0]["t"] - t0 >= DELAY, (got[0]["t"] - t0)
    assert took >= DELAY
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"], gl["flags"]) == (gw_proto(cell), "200", "DI"), gl.string
    assert int(gl["dur"]) >= DELAY * 1000, gl.string
    if cell.startswith("mesh"):
        sl = m.sidecar.wait_log(lambda x: x["path"] == path)
        assert sl["flags"] == "-", sl.string


@pytest.mark.parametrize("cell", GW_CELLS)
def test_direct_response(env, cell):
    m, rec = env
    path = f"/direct/{cell}"
    r = send(m, cell, path)
    assert (r.status, r.body) == (418, b"gateway says no\n"), r
    assert r.headers.get("content-length") == "16", r
    assert reached(rec, path) == []
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"], gl["flags"], gl["details"]) == \
        (gw_proto(cell), "418", "-", "direct_response"), gl.string


@pytest.mark.parametrize("cell", GW_CELLS)
def test_redirect(env, cell):
    m, rec = env
    path = f"/redirect/{cell}"
    r = send(m, cell, path)
    assert r.status == 301, r
    assert r.headers.get("location") == f"https://{API}/there", r
    assert reached(rec, path) == [] and reached(rec, "/there") == []
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"]) == (gw_proto(cell), "301"), gl.string


@pytest.mark.parametrize("cell", ["side-h1", "side-h2"])
def test_mesh_bound_rules_apply_in_the_sidecar(env, cell):
    """The same rules on a VirtualService bound to `mesh` (no gateway on the way): the
    sidecar aborts, delays, answers and redirects, for HTTP/1.1 and h2c applications."""
    m, rec = env
    proto = "HTTP/1.1" if cell == "side-h1" else "HTTP/2"
    r = send(m, cell, f"/abort/{cell}", host=SIDE)
    assert (r.status, r.body) == (418, b"fault filter abort"), r
    r = send(m, cell, f"/direct/{cell}", host=SIDE)
    assert (r.status, r.body) == (418, b"gateway says no\n"), r
    r = send(m, cell, f"/redirect/{cell}", host=SIDE)
    assert (r.status, r.headers.get("location")) == (301, f"https://{SIDE}/there"), r
    t0 = time.monotonic()
    r = send(m, cell, f"/delay/{cell}", host=SIDE)
    assert (r.status, r.body) == (200, b"api\n"), r
    got = reached(rec, f"/delay/{cell}")
    assert len(got) == 1 and got[0]["t"] - t0 >= DELAY, got
    for path in (f"/abort/{cell}", f"/direct/{cell}", f"/redirect/{cell}"):
        assert reached(rec, path) == [], path
    s = m.sidecar
    sl = s.wait_log(lambda x: x["path"] == f"/abort/{cell}" and x["authority"] == SIDE)
    assert (sl["proto"], sl["flags"], sl["details"]) == (proto, "FI", "fault_filter_abort")
    sl = s.wait_log(lambda x: x["path"] == f"/delay/{cell}" and x["authority"] == SIDE)
    assert (sl["proto"], sl["flags"], sl["code"]) == (proto, "DI", "200"), sl.string
    sl = s.wait_log(lambda x: x["path"] == f"/direct/{cell}" and x["authority"] == SIDE)
    assert sl["details"] == "direct_response", sl.string
