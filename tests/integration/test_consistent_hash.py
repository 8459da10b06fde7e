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
