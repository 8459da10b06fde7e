"""Issue 14's matrix, `retries`: the policy on the egress-gateway-bound route (as the Istio
egress pages bind it), checked at a scripted upstream (flaky.Flaky) that records every
attempt, in each of the four client paths (matrix14lib.GW_CELLS): the gateway alone over
HTTP/1.1 and over HTTP/2 (ALPN h2, mTLS), and sidecar -> gateway from an HTTP/1.1 and an
h2c application. The attempts that reached the upstream, each one's x-envoy-attempt-count
(the client's own replaced), a POST body replayed intact, the gateway's URX when the
attempts run out, what the client got; then the same over the gateway's HTTP/2 upstream
(h2UpgradePolicy: UPGRADE to a python3-h2 origin: a 503 and a REFUSED_STREAM retried).
(The sidecar alone: test_retries.py; the HTTP/2 upstream with Istio's default policy:
test_retries_h2.py.)"""
import pytest

from flaky import Flaky
from gwlib import loopback_ip
from matrix14lib import GW_CELLS, gw_proto, h2_origin_hop, hop_mesh, log_lines_for, send
from meshlib import dns_service_entry_yaml, egress_gateway_yaml, mesh_hop_vs_head

API = "api.example.test"

YAML = dns_service_entry_yaml(API) + "---\n" + egress_gateway_yaml(API) + mesh_hop_vs_head(API) + f"""  - match:
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


@pytest.fixture(scope="module")
def env(tmp_path_factory, egressctl_bin):
    ip = loopback_ip()
    up = Flaky(ip, 80, "api")
    try:
        with hop_mesh(tmp_path_factory.mktemp("m14-retries"), egressctl_bin, YAML,
                      {API: ip}, API) as m:
            yield m, up
    finally:
        up.stop()


@pytest.mark.parametrize("cell", GW_CELLS)
def test_retried_until_success(env, cell):
    m, up = env
    path = f"/{cell}/ok"
    up.script(path, ["503", "500", "ok"])
    r = send(m, cell, path, headers=[("x-envoy-attempt-count", "7")])
    assert (r.status, r.body) == (200, b"api 3\n"), r
    got = up.attempts(path)
    assert len(got) == 3
    assert [a["headers"]["x-envoy-attempt-count"] for a in got] == ["1", "2", "3"]
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"], gl["flags"]) == (gw_proto(cell), "200", "-"), gl.string
    assert len(log_lines_for(m.gateway, path)) == 1
    if cell.startswith("mesh"):
        sl = m.sidecar.wait_log(lambda x: x["path"] == path)
        assert (sl["code"], sl["flags"]) == ("200", "-"), sl.string


@pytest.mark.parametrize("cell", GW_CELLS)
def test_attempts_run_out(env, cell):
    """1 + 2 attempts, then the upstream's 500 with URX in the gateway's log; the
    sidecar's own policy (Istio's default: 503 only) leaves a 500 alone."""
    m, up = env
    path = f"/{cell}/out"
    up.script(path, ["500"] * 6)
    r = send(m, cell, path)
    assert r.status == 500, r
    got = up.attempts(path)
    assert [a["headers"]["x-envoy-attempt-count"] for a in got] == ["1", "2", "3"]
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"], gl["flags"]) == (gw_proto(cell), "500", "URX"), gl.string


@pytest.mark.parametrize("cell", GW_CELLS)
def test_post_body_replayed(env, cell):
    m, up = env
    path = f"/{cell}/post"
    body = bytes(range(256)) * 20
    up.script(path, ["502", "ok"])
    r = send(m, cell, path, method="POST", body=body,
             headers=[("content-type", "application/octet-stream")])
    assert r.status == 200, r
    got = up.attempts(path)
    assert len(got) == 2 and all(a["method"] == "POST" and a["body"] == body for a in got)


# ---- the gateway's HTTP/2 upstream (h2UpgradePolicy: UPGRADE to a python3-h2 origin)

def h2_flaky(actions):
    """An origin script answering a path's attempts as actions says ("503", "refused":
    RST_STREAM REFUSED_STREAM, "ok"), then 200; every attempt kept in script.seen[path]."""
    seen = {}

    def script(c, req):
        path = req.get(b":path").decode()
        n = len(seen.setdefault(path, []))
        seen[path].append(req)
        act = actions[n] if n < len(actions) else "ok"
        if act == "refused":
            c.reset(req.sid, 7)
            return
        code = 200 if act == "ok" else int(act)
        body = b"h2 %d\n" % (n + 1)
        c.head(req.sid, code, [("content-length", str(len(body)))])
        c.data(req.sid, body, end=True)
    script.seen = seen
    return script


H2_OK = h2_flaky(["503", "refused", "ok"])
H2_OUT = h2_flaky(["500"] * 6)


@pytest.fixture(scope="module")
def h2env(tmp_path_factory, egressctl_bin):
    with h2_origin_hop(tmp_path_factory.mktemp("m14-retries-h2"), egressctl_bin,
                       {"/ok": H2_OK, "/out": H2_OUT},
                       route_extra="    retries:\n      attempts: 2\n      retryOn: 5xx\n") as env:
        yield env


@pytest.mark.parametrize("cell", GW_CELLS)
def test_http2_upstream_retried(h2env, cell):
    """A 503 and a refused stream from the HTTP/2 origin, retried; a POST body replayed
    intact in each attempt's DATA; x-envoy-attempt-count in each attempt's HEADERS."""
    m, _ = h2env
    path = f"/ok/{cell}"
    body = bytes(range(256)) * 8
    r = send(m, cell, path, method="POST", body=body, headers=[("x-envoy-attempt-count", "7")])
    assert (r.status, r.body) == (200, b"h2 3\n"), r
    got = H2_OK.seen[path]
    assert [q.get(b"x-envoy-attempt-count") for q in got] == [b"1", b"2", b"3"]
    assert all(bytes(q.body) == body and q.get(b":method") == b"POST" for q in got)
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["proto"], gl["code"], gl["flags"]) == (gw_proto(cell), "200", "-"), gl.string
    path = f"/out/{cell}"
    r = send(m, cell, path)
    assert r.status == 500, r
    assert len(H2_OUT.seen[path]) == 3
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert (gl["code"], gl["flags"]) == ("500", "URX"), gl.string
