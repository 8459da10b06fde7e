"""DestinationRule loadBalancer.consistentHash, as Envoy applies what Istio makes of it
(lb_policy RING_HASH or MAGLEV, a hash_policy on the route): four recording upstreams on
their own loopback addresses behind a STATIC ServiceEntry, each answering with its name,
so every test counts where its requests arrived. The same key always reaches the same
endpoint and different keys spread; an httpCookie with a ttl is made up for a client
without one (Set-Cookie) and honoured when sent back; useSourceIp follows the client's
address; a removed endpoint moves only its own keys. Through the sidecar alone, the
gateway alone, and sidecar -> gateway (the gateway applies the rule of the external
cluster), over HTTP/1.1 and HTTP/2 (h2c prior knowledge; the mesh hop is HTTP/2)."""
import json
import re
import subprocess

import pytest

from gwlib import loopback_ip
from meshlib import Mesh
import recorder
from recorder import Recorder

SVC = "svc.example.test"
N = 4


def se(ips):
    eps = "".join(f"  - address: {ip}\n" for ip in ips)
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc
spec:
  hosts: [{SVC}]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
{eps}"""


def dr(hash_yaml):
    body = "".join(f"        {line}\n" for line in hash_yaml.strip().splitlines())
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc
spec:
  host: {SVC}
  trafficPolicy:
    loadBalancer:
      consistentHash:
{body}"""


HEADER = "httpHeaderName: x-user"
QUERY = "httpQueryParameterName: user"
COOKIE = """httpCookie:
  name: sticky
  path: /
  ttl: 3600s"""
SOURCE_IP = "useSourceIp: true"
MAGLEV = "\nmaglev:\n  tableSize: 1021"
RING = "\nringHash:\n  minimumRingSize: 2048"


@pytest.fixture
def eps():
    recs = [Recorder(loopback_ip(), 80, f"e{i}") for i in range(N)]
    yield recs
    for r in recs:
        r.stop()


def ips(recs):
    return [r.server_address[0] for r in recs]


def curl_many(mesh, urls, headers_of=lambda i: (), extra=()):
    """One curl, one keep-alive connection, a request per URL; the names that answered."""
    args = []
    for i, u in enumerate(urls):
        if i:
            args.append("--next")
        args += [*extra, u]
        for h in headers_of(i):
            args += ["-H", h]
    r = mesh.curl(*args, timeout=60)
    names = r.stdout.split()
    assert r.returncode == 0 and len(names) == len(urls), (r.returncode, r.stderr, names)
    return names


@pytest.fixture
def sidecar(tmp_path, ctl, egressctl_bin, store, eps, request):
    """Sidecar alone (it routes to the ServiceEntry's endpoints itself), with the key
    and algorithm of the test's parameter."""
    ctl.ok("apply", "-f", "-", input=se(ips(eps)) + "---\n" + dr(request.param))
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    yield m
    assert m.stop() == [0]


def sticks_and_spreads(send):
    """send(key, n) -> names of n requests carrying key. The same key: one endpoint over
    50 requests; 24 keys: at least three of the four endpoints."""
    for key in ("alice", "bob"):
        got = send(key, 50)
        assert len(set(got)) == 1, (key, got)
    owners = {k: send(k, 1)[0] for k in (f"user-{i}" for i in range(24))}
    assert len(set(owners.values())) >= 3, owners
    return owners


@pytest.mark.parametrize("sidecar", [HEADER, HEADER + MAGLEV, HEADER + RING],
                         indirect=True, ids=["ring-default", "maglev", "ring"])
def test_header_sticks_and_spreads(sidecar):
    sticks_and_spreads(lambda key, n: curl_many(sidecar, [f"http://{SVC}/{i}" for i in range(n)],
                                                lambda i: (f"x-user: {key}",)))
    # Without the header: random picks, as Envoy does (all four within 80 requests).
    assert len(set(curl_many(sidecar, [f"http://{SVC}/r{i}" for i in range(80)]))) == N
    assert sidecar.sidecar.stat("lb_hash_no_key_total") == 80
    assert sidecar.sidecar.stat("lb_hash_cookie_generated_total") == 0


@pytest.mark.parametrize("sidecar", [QUERY, QUERY + MAGLEV], indirect=True,
                         ids=["ring", "maglev"])
def test_query_parameter(sidecar):
    owners = sticks_and_spreads(lambda key, n: curl_many(
        sidecar, [f"http://{SVC}/p?a=1&user={key}&z={i}" for i in range(n)]))
    # Only the named parameter counts: its position and the others do not.
    k = "user-3"
    assert curl_many(sidecar, [f"http://{SVC}/q?user={k}", f"http://{SVC}/x?b=2&user={k}#f"]) \
        == [owners[k]] * 2


def set_cookie_of(mesh, url, *extra):
    r = mesh.curl("-D", "-", *extra, url)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.replace("\r\n", "\n").partition("\n\n")
    cookies = re.findall(r"^set-cookie: (.*)$", head, re.M | re.I)
    return head, cookies, body.strip()


@pytest.mark.parametrize("sidecar", [COOKIE, COOKIE + MAGLEV], indirect=True,
                         ids=["ring", "maglev"])
def test_cookie_generated_then_honoured(sidecar):
    head, cookies, first = set_cookie_of(sidecar, f"http://{SVC}/login")
    assert len(cookies) == 1, head
    m = re.fullmatch(r'sticky="([0-9a-f]{16})"; Max-Age=3600; Path=/; HttpOnly', cookies[0])
    assert m, cookies
    value = m.group(1)
    # Sent back: the same endpoint every time, and no new cookie.
    got = curl_many(sidecar, [f"http://{SVC}/{i}" for i in range(30)],
                    lambda i: (f'cookie: a=b; sticky="{value}"; c=d',))
    assert set(got) == {first}, got
    _, again, _ = set_cookie_of(sidecar, f"http://{SVC}/x", "-H", f"cookie: sticky={value}")
    assert again == []
    assert sidecar.sidecar.stat("lb_hash_cookie_generated_total") == 1
    # Other cookie values spread over the endpoints.
    sticks_and_spreads(lambda key, n: curl_many(sidecar, [f"http://{SVC}/{i}" for i in range(n)],
                                                lambda i: (f"cookie: sticky={key}",)))


@pytest.mark.parametrize("sidecar", [SOURCE_IP, SOURCE_IP + MAGLEV], indirect=True,
                         ids=["ring", "maglev"])
def test_source_ip(sidecar):
    owners = {}
    for _ in range(10):
        src = loopback_ip()
        got = curl_many(sidecar, [f"http://{SVC}/{i}" for i in range(15)],
                        extra=("--interface", src))
        assert len(set(got)) == 1, (src, got)
        owners[src] = got[0]
    assert len(set(owners.values())) >= 2, owners


def owners_of(mesh, keys, extra=()):
    return dict(zip(keys, curl_many(mesh, [f"http://{SVC}/k" for _ in keys],
                                    lambda i: (f"x-user: {keys[i]}",), extra)))


@pytest.mark.parametrize("algo", ["", MAGLEV], ids=["ring", "maglev"])
def test_removed_endpoint_moves_mostly_its_own_keys(tmp_path, ctl, egressctl_bin, store, eps,
                                                    algo):
    """An endpoint leaves: its keys go elsewhere, the others' mostly stay. (Envoy rescales
    the ring by the endpoint count: each remaining endpoint gains a quarter more entries
    that take some keys; hashing modulo the count would move two thirds.)"""
    ctl.ok("apply", "-f", "-", input=se(ips(eps)) + "---\n" + dr(HEADER + algo))
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        keys = [f"k{i}" for i in range(60)]
        before = owners_of(m, keys)
        assert len(set(before.values())) == N, before
        gone = "e2"
        n = m.reloads()
        m.apply(se([ip for r, ip in zip(eps, ips(eps)) if r.name != gone]))
        m.wait_applied(n)
        after = owners_of(m, keys)
        assert gone not in after.values()
        others = [k for k in keys if before[k] != gone]
        stayed = [k for k in others if after[k] == before[k]]
        assert len(stayed) >= 0.6 * len(others), (before, after)
        # Back: every key returns to where it was (the table is a function of the set).
        n = m.reloads()
        m.apply(se(ips(eps)))
        m.wait_applied(n)
        assert owners_of(m, keys) == before
    finally:
        assert m.stop() == [0]


def test_dns_cluster_and_proxy_config(tmp_path, ctl, egressctl_bin, store, eps):
    """A DNS ServiceEntry whose endpoints are names (the hosts file): the table is built
    when the resolver publishes the addresses. proxy-config cluster -o json shows the
    policy as Envoy's cluster dump does."""
    names = {f"ep{i}.backends.test": ip for i, ip in enumerate(ips(eps))}
    cfg = se(list(names)).replace("resolution: STATIC", "resolution: DNS")
    ctl.ok("apply", "-f", "-", input=cfg + "---\n" + dr(HEADER + MAGLEV))
    m = Mesh(tmp_path, ctl, egressctl_bin, store, names)
    try:
        sticks_and_spreads(lambda key, n: curl_many(m, [f"http://{SVC}/{i}" for i in range(n)],
                                                    lambda i: (f"x-user: {key}",)))
        r = ctl("proxy-config", "cluster", f"127.0.0.1:{m.sidecar.admin_port}", "--fqdn", SVC,
                "-o", "json")
        assert r.rc == 0, r.err
        c = [x for x in json.loads(r.out) if x["name"] == f"outbound|80||{SVC}"][0]
        assert c["lb"] == "MAGLEV"
        assert c["maglev_lb_config"] == {"table_size": 1021, "entries": 1021}
        assert c["hash_policy"] == [{"header": {"header_name": "x-user"}}]
    finally:
        assert m.stop() == [0]


def test_ring_hash_in_config_dump(tmp_path, ctl, egressctl_bin, store, eps):
    ctl.ok("apply", "-f", "-", input=se(ips(eps)) + "---\n" + dr(COOKIE))
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        code, body = m.sidecar.admin("/config_dump")
        assert code == 200
        c = [x for x in json.loads(body)["clusters"] if x["name"] == f"outbound|80||{SVC}"][0]
        assert c["lb"] == "RING_HASH"
        # Envoy's default minimum (Istio sets 1024): 256 entries for each of 4 endpoints.
        assert c["ring_hash_lb_config"] == {"minimum_ring_size": 1024,
                                            "maximum_ring_size": 8388608, "entries": 1024}
        assert c["hash_policy"] == [{"cookie": {"name": "sticky", "path": "/", "ttl_s": 3600}}]
        r = ctl("explain-request", f"http://{SVC}/", f"127.0.0.1:{m.sidecar.admin_port}",
                "-o", "json")
        assert r.rc == 0, r.err
        e = json.loads(r.out)
        assert e["cluster"]["load_balancer"] == "RING_HASH", e
        assert re.search(r'"endpoint_pick": "RING_HASH by cookie sticky over 4 endpoints',
                         r.out), r.out
    finally:
        assert m.stop() == [0]


@pytest.mark.parametrize("bad,msg", [
    ("httpHeaderName: x-a\nuseSourceIp: true", "only one of httpHeaderName"),
    ("httpCookie:\n  name: c", "ttl required for HttpCookie"),
    ("httpCookie:\n  ttl: 10s", "name required for HttpCookie"),
    ("httpHeaderName: x-a\nmaglev:\n  tableSize: 1000", "not a prime number"),
    ("httpHeaderName: x-a\nmaglev: {}\nringHash: {}", "only one of ringHash or maglev"),
    ("httpHeaderName: x-a\nringHash:\n  minimumRingSize: 8388609", "minimumRingSize"),
])
def test_invalid_rules_refused(ctl, bad, msg):
    r = ctl("apply", "-f", "-", input=dr(bad))
    assert r.rc != 0 and msg in r.err, r.err


def test_simple_and_consistent_hash_refused(ctl):
    r = ctl("apply", "-f", "-", input=dr(HEADER).replace("      consistentHash:",
                                                         "      simple: RANDOM\n"
                                                         "      consistentHash:"))
    assert r.rc != 0 and "only one of simple or consistentHash" in r.err, r.err


def test_no_key_warned(ctl):
    r = ctl("apply", "-f", "-", input=dr("ringHash:\n  minimumRingSize: 64"))
    assert r.rc == 0 and "without a hash key" in r.err, r.err


GW = f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts: [{SVC}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-svc
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: svc
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc
spec:
  hosts: [{SVC}]
  gateways: [istio-egressgateway, mesh]
  http:
  - match:
    - gateways: [mesh]
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: svc
        port:
          number: 80
  - match:
    - gateways: [istio-egressgateway]
    route:
    - destination:
        host: {SVC}
        port:
          number: 80
"""


@pytest.fixture
def gwmesh(tmp_path, ctl, egressctl_bin, store, eps, request):
    """Sidecar -> gateway -> endpoints; the DestinationRule (the test's parameter) is the
    external cluster's, applied by the gateway."""
    ctl.ok("apply", "-f", "-", input=se(ips(eps)) + "---\n" + dr(request.param) + "---\n" + GW)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {}, gateway=True)
    yield m
    assert m.stop() == [0, 0]


def h2c_to(port_ip, port):
    """curl options for h2c prior knowledge straight to a proxy port (not as a proxy).
    One request per curl: curl 7.88 fails the second request it sends on a reused h2c
    prior-knowledge connection (error 16), whatever the server (main's egressgw too)."""
    return ("--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
            f"{SVC}:80:{port_ip}:{port}")


def h2_many(ip, port, n, header):
    """n requests carrying header as concurrent streams of one h2c connection (nghttp);
    the names that answered."""
    r = subprocess.run(["nghttp", "-H", f":authority: {SVC}", "-H", header,
                        *[f"http://{ip}:{port}/s{i}" for i in range(n)]],
                       capture_output=True, text=True, timeout=60)
    names = r.stdout.split()
    assert r.returncode == 0 and len(names) == n, (r.returncode, r.stderr, names)
    return names


def h1_to(ip, port):
    return ("--noproxy", "*", "--connect-to", f"{SVC}:80:{ip}:{port}")


@pytest.mark.parametrize("gwmesh", [HEADER, HEADER + MAGLEV], indirect=True,
                         ids=["ring", "maglev"])
def test_header_through_sidecar_and_gateway(gwmesh):
    """HTTP/1.1 to the sidecar, HTTP/2 on the mesh hop (the gateway's HTTP/2
    downstream), the gateway picks; then HTTP/2 (h2c) to the sidecar; then HTTP/1.1 to
    the gateway alone (its plaintext port takes no h2c). A key lands on the same
    endpoint whichever way it comes: the gateway's table decides."""
    m = gwmesh
    owners = sticks_and_spreads(lambda key, n: curl_many(
        m, [f"http://{SVC}/{i}" for i in range(n)], lambda i: (f"x-user: {key}",)))
    gl = m.gateway.wait_log(lambda x: x["path"] == "/0")
    assert gl["proto"] == "HTTP/2" and gl["code"] == "200"
    for k in ("user-1", "user-5", "user-9"):
        got = curl_many(m, [f"http://{SVC}/{i}" for i in range(10)],
                        lambda i: (f"x-user: {k}",), h1_to(m.gw_ip, 80))
        assert set(got) == {owners[k]}, ("gateway", k, got)
        got = h2_many("127.0.0.1", m.sidecar.outbound, 10, f"x-user: {k}")
        assert set(got) == {owners[k]}, ("h2c", k, got)


@pytest.mark.parametrize("gwmesh", [COOKIE], indirect=True)
def test_cookie_through_sidecar_and_gateway(gwmesh):
    """The gateway makes the cookie up: its Set-Cookie comes back through the sidecar
    (on the HTTP/2 mesh hop: fwd_h2.c's head) to HTTP/1.1 and HTTP/2 clients, and to an
    HTTP/1.1 client of the gateway alone."""
    m = gwmesh
    for extra in ((), h2c_to("127.0.0.1", m.sidecar.outbound), h1_to(m.gw_ip, 80)):
        head, cookies, first = set_cookie_of(m, f"http://{SVC}/login", *extra)
        assert len(cookies) == 1, (extra, head)
        mm = re.fullmatch(r'sticky="([0-9a-f]{16})"; Max-Age=3600; Path=/; HttpOnly',
                          cookies[0])
        assert mm, (extra, cookies)
        if "--http2-prior-knowledge" in extra:
            got = h2_many(extra[-1].split(":")[2], int(extra[-1].split(":")[3]), 10,
                          f'cookie: sticky="{mm.group(1)}"')
        else:
            got = curl_many(m, [f"http://{SVC}/{i}" for i in range(10)],
                            lambda i: (f"cookie: sticky={mm.group(1)}",), extra)
        assert set(got) == {first}, (extra, got)


@pytest.mark.parametrize("sidecar", [COOKIE.replace("3600s", "0s")], indirect=True)
def test_session_cookie_over_http2(sidecar):
    """ttl 0s: a session cookie (no Max-Age), here to an HTTP/2 client of the sidecar."""
    head, cookies, _ = set_cookie_of(sidecar, f"http://{SVC}/",
                                     *h2c_to("127.0.0.1", sidecar.sidecar.outbound))
    assert head.startswith("HTTP/2 200"), head
    assert len(cookies) == 1 and re.fullmatch(r'sticky="[0-9a-f]{16}"; Path=/; HttpOnly',
                                              cookies[0]), head


class _Failing(recorder._Handler):
    """A recorder's handler that answers 503 once its server's `failing` is set."""

    def _any(self):
        if not getattr(self.server, "failing", False):
            return super()._any()
        self.send_response(503)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = _any


@pytest.mark.parametrize("algo", ["", MAGLEV], ids=["ring", "maglev"])
def test_ejected_endpoint_skipped(tmp_path, ctl, egressctl_bin, store, eps, algo):
    """Outlier detection ejects the endpoint that owns a key (it answers 503): the key's
    requests go to one other endpoint, and no other key moves."""
    od = """  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 30s
      baseEjectionTime: 60s
      maxEjectionPercent: 100
"""
    rule = dr(HEADER + algo).replace("  trafficPolicy:\n", od)
    for r in eps:       # before any connection: a handler serves its connection's requests
        r.RequestHandlerClass = _Failing
    ctl.ok("apply", "-f", "-", input=se(ips(eps)) + "---\n" + rule)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        keys = [f"k{i}" for i in range(40)]
        before = owners_of(m, keys)
        victim = before["k0"]
        bad = [r for r in eps if r.name == victim][0]
        bad.failing = True
        r = m.curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "x-user: k0",
                   f"http://{SVC}/eject")
        # Its 503 ejects it; Istio's default retry policy (503 retriable) then serves the
        # request from another endpoint.
        assert r.stdout == "200", r.stdout
        got = curl_many(m, [f"http://{SVC}/{i}" for i in range(10)], lambda i: ("x-user: k0",))
        assert len(set(got)) == 1 and victim not in got, got
        after = owners_of(m, keys)
        for k in keys:
            if before[k] != victim:
                assert after[k] == before[k], (k, before, after)
            else:
                assert after[k] != victim
    finally:
        assert m.stop() == [0]


def test_port_level_and_subset_precedence(tmp_path, ctl, egressctl_bin, store, eps):
    """consistentHash follows Istio's policy precedence: the port-level entry replaces the
    rule's top level, a subset's loadBalancer replaces the rule's, and a subset without
    one keeps the rule's."""
    rule = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc
spec:
  host: {SVC}
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-top
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        consistentHash:
          httpHeaderName: x-port
          maglev:
            tableSize: 1021
  subsets:
  - name: plain
    labels: {{}}
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
  - name: keyed
    labels: {{}}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          useSourceIp: true
  - name: inherits
    labels: {{}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc
spec:
  hosts: [{SVC}]
  http:
  - match:
    - headers:
        x-subset:
          exact: plain
    route:
    - destination:
        host: {SVC}
        subset: plain
  - match:
    - headers:
        x-subset:
          exact: keyed
    route:
    - destination:
        host: {SVC}
        subset: keyed
  - match:
    - headers:
        x-subset:
          exact: inherits
    route:
    - destination:
        host: {SVC}
        subset: inherits
  - route:
    - destination:
        host: {SVC}
"""
    ctl.ok("apply", "-f", "-", input=se(ips(eps)) + "---\n" + rule)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        code, body = m.sidecar.admin("/config_dump")
        assert code == 200
        cl = {x["name"]: x for x in json.loads(body)["clusters"]}
        top = cl[f"outbound|80||{SVC}"]
        assert top["lb"] == "MAGLEV" and top["hash_policy"] == [
            {"header": {"header_name": "x-port"}}]
        assert cl[f"outbound|80|plain|{SVC}"]["lb"] == "ROUND_ROBIN"
        assert "hash_policy" not in cl[f"outbound|80|plain|{SVC}"]
        keyed = cl[f"outbound|80|keyed|{SVC}"]
        assert keyed["lb"] == "RING_HASH"
        assert keyed["hash_policy"] == [{"connection_properties": {"source_ip": True}}]
        assert cl[f"outbound|80|inherits|{SVC}"]["lb"] == "MAGLEV"
        # And the requests follow: the plain subset round-robins whatever x-port says.
        got = curl_many(m, [f"http://{SVC}/{i}" for i in range(8)],
                        lambda i: ("x-subset: plain", "x-port: same"))
        assert len(set(got)) == N, got
        got = curl_many(m, [f"http://{SVC}/{i}" for i in range(8)],
                        lambda i: ("x-subset: inherits", "x-port: same"))
        assert len(set(got)) == 1, got
    finally:
        assert m.stop() == [0]


def test_original_destination_cluster_says_not_applied(tmp_path, ctl, egressctl_bin, store):
    """resolution NONE: no endpoints to hash over (Istio leaves the cluster
    CLUSTER_PROVIDED): the proxy says so instead of ignoring it silently."""
    cfg = se(["127.0.0.1"]).replace("resolution: STATIC", "resolution: NONE") \
                           .replace("  endpoints:\n  - address: 127.0.0.1\n", "")
    ctl.ok("apply", "-f", "-", input=cfg + "---\n" + dr(HEADER))
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        assert re.search(rf"consistentHash not applied to cluster outbound\|80\|\|{SVC}: an "
                         r"original-destination cluster", m.sidecar.stderr()), \
            m.sidecar.stderr()[-3000:]
        code, body = m.sidecar.admin("/config_dump")
        c = [x for x in json.loads(body)["clusters"] if x["name"] == f"outbound|80||{SVC}"][0]
        assert c["lb"] == "PASSTHROUGH" and "hash_policy" not in c
    finally:
        assert m.stop() == [0]
