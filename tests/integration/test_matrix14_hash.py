"""Issue 14's matrix, DestinationRule `consistentHash` (httpHeaderName) of the external
service, applied by the egress gateway, in each of the four client paths
(matrix14lib.GW_CELLS): the gateway alone over HTTP/1.1 and HTTP/2 (ALPN h2, mTLS), sidecar
-> gateway from an HTTP/1.1 and an h2c application. Four recording endpoints behind a
STATIC ServiceEntry (test_consistent_hash's): a key reaches the same endpoint whichever
path it comes by (the gateway's table decides), and keys spread. Then the same over the
gateway's HTTP/2 upstream (h2UpgradePolicy: UPGRADE, TLS originated) to four python3-h2
origins that record what they received. (The sidecar alone, ring/maglev, cookies, source
IP: test_consistent_hash.py.) Last, the sidecar alone with HTTP/1.1 and h2c applications."""
import pytest

from gwlib import loopback_ip
from matrix14lib import GW_CELLS, H2SVC, gw_proto, h2_origin_hop, hop_mesh, send, send_many
from recorder import Recorder
from test_consistent_hash import GW, HEADER, N, SVC, dr, ips, se

KEYS = [f"user-{i}" for i in range(24)]


@pytest.fixture(scope="module")
def env(tmp_path_factory, egressctl_bin):
    eps = [Recorder(loopback_ip(), 80, f"e{i}") for i in range(N)]
    try:
        with hop_mesh(tmp_path_factory.mktemp("m14-hash"), egressctl_bin,
                      se(ips(eps)) + "---\n" + dr(HEADER) + "---\n" + GW, {}, SVC) as m:
            yield m, eps
    finally:
        for e in eps:
            e.stop()


@pytest.fixture(scope="module")
def owners(env):
    """The endpoint each key reached when first asked over the gateway alone (HTTP/1.1);
    the tests check that every later request of the key goes there."""
    m, _ = env
    got = {}
    for k in KEYS:
        r = send(m, "gw-h1", "/owner", headers=[("x-user", k)])
        assert r.status == 200, r
        got[k] = r.body.decode().strip()
    return got


def test_keys_spread(owners):
    assert len(set(owners.values())) >= 3, owners


@pytest.mark.parametrize("cell", GW_CELLS)
def test_key_reaches_its_endpoint(env, owners, cell):
    """Every key, two or three times (HTTP/2 cells: as streams of one connection), at the
    endpoint the gateway's table gives it; the endpoint recorded the request with its
    key."""
    m, eps = env
    path = f"/k/{cell}"
    # Another order than the owners were learnt in, each key more than once in a row,
    # so that no other balancing could give every key its owner.
    per = 2 if cell.endswith("h1") else 3       # HTTP/1.1: a connection a request
    reqs = [("GET", path, [("x-user", k)], b"") for k in reversed(KEYS) for _ in range(per)]
    rs = send_many(m, cell, reqs)
    for (_, _, hdrs, _), r in zip(reqs, rs):
        assert r.status == 200 and r.body.decode().strip() == owners[hdrs[0][1]], (hdrs, r)
    by_ep = {}
    for e in eps:
        with e.lock:
            for q in e.requests:
                if q["path"] == path:
                    by_ep.setdefault(q["headers"]["x-user"], set()).add(e.name)
    assert by_ep == {k: {owners[k]} for k in KEYS}, by_ep
    gl = m.gateway.wait_log(lambda x: x["path"] == path)
    assert gl["proto"] == gw_proto(cell), gl.string


def s_name(name):
    def script(c, req):
        body = f"{name}\n".encode()
        c.head(req.sid, 200, [("content-type", "text/plain"),
                              ("content-length", str(len(body)))])
        c.data(req.sid, body, end=True)
    return script


@pytest.fixture(scope="module")
def h2env(tmp_path_factory, egressctl_bin):
    """Four origins, each answering with its name (the script is chosen per origin)."""
    scripts = {"/k": None}
    with h2_origin_hop(tmp_path_factory.mktemp("m14-hash-h2"), egressctl_bin, scripts, n=N,
                       port_extra="      loadBalancer:\n        consistentHash:\n"
                                  "          httpHeaderName: x-user\n") as (m, origins):
        for o in origins:
            o.scripts["/k"] = s_name(o.name)
        yield m, origins


@pytest.mark.parametrize("cell", GW_CELLS)
def test_http2_upstream(h2env, cell):
    """The gateway's HTTP/2 upstream: each key's requests reach one origin over HTTP/2
    (the origin recorded them with the key), keys spread, and the cells agree."""
    m, origins = h2env
    keys = KEYS[:12]
    per = 2 if cell.endswith("h1") else 3
    reqs = [("GET", "/k", [("x-user", k), ("x-cell", cell)], b"") for k in keys
            for _ in range(per)]
    rs = send_many(m, cell, reqs)
    assert all(r.status == 200 for r in rs), rs
    seen = {}
    for o in origins:
        for q in list(o.requests):
            if q.get(b"x-cell") == cell.encode():
                seen.setdefault(q.get(b"x-user").decode(), set()).add(o.name)
                assert q.get(b":authority") == H2SVC.encode()
    assert set(seen) == set(keys), seen
    assert all(len(v) == 1 for v in seen.values()), seen
    assert len({next(iter(v)) for v in seen.values()}) >= 3, seen
    for (_, _, hdrs, _), r in zip(reqs, rs):
        assert r.body.decode().strip() in seen[hdrs[0][1]], (hdrs, r)
    # The cells agree: the owners the first cell saw are every later cell's.
    owners = {k: next(iter(v)) for k, v in seen.items()}
    if not hasattr(m, "owners_h2"):
        m.owners_h2 = owners
    assert owners == m.owners_h2, (owners, m.owners_h2)


@pytest.fixture(scope="module")
def side(tmp_path_factory, egressctl_bin):
    """The sidecar alone (no gateway): it routes to the endpoints and hashes itself."""
    eps = [Recorder(loopback_ip(), 80, f"s{i}") for i in range(N)]
    try:
        with hop_mesh(tmp_path_factory.mktemp("m14-hash-side"), egressctl_bin,
                      se(ips(eps)) + "---\n" + dr(HEADER), {}, SVC, gateway=False) as m:
            yield m, eps
    finally:
        for e in eps:
            e.stop()


def test_sidecar_alone_http1_and_h2c_agree(side):
    """In the sidecar: a key's requests from an HTTP/1.1 application and as concurrent
    h2c streams reach the same recorded endpoint, and keys spread."""
    m, eps = side
    owners = {}
    for k in KEYS:
        r = send(m, "side-h1", "/s1", headers=[("x-user", k)])
        assert r.status == 200, r
        owners[k] = r.body.decode().strip()
    assert len(set(owners.values())) >= 3, owners
    reqs = [("GET", "/s2", [("x-user", k)], b"") for k in KEYS for _ in range(2)]
    rs = send_many(m, "side-h2", reqs)
    for (_, _, hdrs, _), r in zip(reqs, rs):
        assert r.status == 200 and r.body.decode().strip() == owners[hdrs[0][1]], (hdrs, r)
    for e in eps:
        with e.lock:
            for q in e.requests:
                assert owners[q["headers"]["x-user"]] == e.name, (e.name, q)
    sl = m.sidecar.wait_log(lambda x: x["path"] == "/s2")
    assert sl["proto"] == "HTTP/2", sl.string
