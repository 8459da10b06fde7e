"""ServiceEntry `addresses` (IPs and CIDRs): Istio's "Using an External HTTPS Proxy" with
egressgw as the sidecar. The page's ServiceEntry (host ignored, addresses [PROXY_IP/32],
port 3128 TCP, resolution NONE), applied unchanged but for the address; the application
CONNECTs through the sidecar to the external proxy at that IP, and through the proxy to
the site over TLS, under REGISTRY_ONLY. Before the ServiceEntry the sidecar refuses it
(502 BlackHoleCluster); after, the proxy's log shows the application's CONNECT to the
site and the sidecar's log the proxy's cluster. A CIDR covers every address in it and
none outside."""
import os
import socket
import ssl
import subprocess

import pytest

from connectproxy import ConnectProxy
from gwlib import loopback_ip, make_server_ca, make_server_cert
from meshlib import Mesh
from recorder import Recorder
from sidecarlib import CNN
from test_transparent import CNN_IP, NOBODY, Transparent, nets  # noqa: F401 (fixture)

SITE = "en.wikipedia.example"


def proxy_se(addresses, port=3128):
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: proxy
spec:
  hosts:
  - my-company-proxy.com # ignored
  addresses:
{"".join(f"  - {a}{chr(10)}" for a in addresses)}  ports:
  - number: {port}
    name: tcp
    protocol: TCP
  location: MESH_EXTERNAL
  resolution: NONE
"""


def connect(sock, target):
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = sock.recv(1)
        if not b:
            break
        head += b
    return int(head.split()[1]) if head else 0


def https_via_proxy(sidecar_port, proxy, ca):
    """What `HTTPS_PROXY=PROXY_IP:PROXY_PORT curl https://SITE/wiki/Main_Page` does, with
    the sidecar as the pod's proxy for the first hop (egressgw's HTTP proxy capture
    mode): CONNECT to the proxy's IP through the sidecar, CONNECT to the site through
    the proxy, TLS to the site. Returns (first status, second status, body)."""
    s = socket.create_connection(("127.0.0.1", sidecar_port), timeout=10)
    try:
        first = connect(s, proxy)
        if first != 200:
            return first, None, None
        second = connect(s, f"{SITE}:443")
        if second != 200:
            return first, second, None
        ctx = ssl.create_default_context(cafile=str(ca))
        t = ctx.wrap_socket(s, server_hostname=SITE)
        t.sendall(f"GET /wiki/Main_Page HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while True:
            b = t.recv(65536)
            if not b:
                break
            data += b
        return first, second, data.split(b"\r\n\r\n", 1)[1].decode()
    finally:
        s.close()


@pytest.fixture
def world(tmp_path):
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, SITE)
    site_ip, proxy_ip = loopback_ip(), loopback_ip()
    site = Recorder(site_ip, 443, "Wikipedia, the free encyclopedia", cert=cert, key=key)
    proxy = ConnectProxy(proxy_ip, 3128, {SITE: site_ip})
    yield {"ca": ca, "site": site, "proxy": proxy, "proxy_ip": proxy_ip}
    proxy.stop()
    site.stop()


def mesh_with(tmp_path, ctl, egressctl_bin, store, yaml):
    ctl.ok("apply", "-f", "-", input=yaml)
    return Mesh(tmp_path, ctl, egressctl_bin, store, {}, policy="REGISTRY_ONLY")


PLACEHOLDER = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: unrelated
spec:
  hosts: [unrelated.example]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
"""


def test_external_https_proxy(tmp_path, ctl, egressctl_bin, store, world):
    m = mesh_with(tmp_path, ctl, egressctl_bin, store, PLACEHOLDER)
    try:
        target = f"{world['proxy_ip']}:3128"
        # Without the page's ServiceEntry: REGISTRY_ONLY refuses the proxy's address.
        assert https_via_proxy(m.sidecar.outbound, target, world["ca"]) == (502, None, None)
        assert world["proxy"].targets() == []
        n = m.sidecar.stat("config_reloads_total")
        ctl.ok("apply", "-f", "-", input=proxy_se([f"{world['proxy_ip']}/32"]))
        m.sidecar.wait_reloads(n + 1)
        first, second, body = https_via_proxy(m.sidecar.outbound, target, world["ca"])
        assert (first, second) == (200, 200)
        assert body == "Wikipedia, the free encyclopedia\n"
        # The proxy's log: the application's CONNECT to the site (squid's TCP_TUNNEL).
        assert world["proxy"].targets() == [f"{SITE}:443"]
        # The site saw the application's own TLS session (its SNI) and request.
        assert world["site"].last()["sni"] == SITE
        assert world["site"].last()["path"] == "/wiki/Main_Page"
        # The sidecar's log: the proxy's cluster, the proxy's address as upstream host.
        line = m.sidecar.wait_log(lambda x: x["cluster"] == "outbound|3128||my-company-proxy.com")
        assert line["uhost"] == target
    finally:
        assert m.stop() == [0]


def test_cidr_addresses(tmp_path, ctl, egressctl_bin, store, world):
    """addresses: [NET/24] covers any IP in it, not one outside; the port must match."""
    ip = world["proxy_ip"]
    net = ip.rsplit(".", 1)[0] + ".0/24"
    m = mesh_with(tmp_path, ctl, egressctl_bin, store, proxy_se([net]))
    try:
        assert https_via_proxy(m.sidecar.outbound, f"{ip}:3128", world["ca"])[:2] == (200, 200)
        a, b, c = (int(x) for x in ip.split(".")[1:])
        outside = f"127.{a}.{(b + 1) % 256}.{c}:3128"
        assert https_via_proxy(m.sidecar.outbound, outside, world["ca"]) == (502, None, None)
        other_port = f"{ip}:3129"
        assert https_via_proxy(m.sidecar.outbound, other_port, world["ca"]) == (502, None, None)
    finally:
        assert m.stop() == [0]


PROXY_IP = "10.250.1.5"     # the external proxy, beside test_transparent's sites


def https_proxy_curl(t):
    """`HTTPS_PROXY=PROXY_IP:3128 curl https://edition.cnn.com/politics` in the pod."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["CURL_CA_BUNDLE"] = t.demo_ca
    env["HTTPS_PROXY"] = f"{PROXY_IP}:3128"
    return t.in_app(["curl", "-sS", "--max-time", "20", f"https://{CNN}/politics"],
                    user=NOBODY, env=env)


def test_application_proxy_is_not_bypassed(tmp_path, nets, ctl, egressctl_bin, store,
                                          walkthrough, walkthrough_certs):
    """ALLOW_ANY, no ServiceEntry for the proxy: the application's CONNECT, redirected to
    the sidecar, still goes to the application's proxy (PassthroughCluster to the
    original destination), not straight to the CONNECT target around it."""
    subprocess.run(["ip", "-n", nets.ext, "addr", "add", f"{PROXY_IP}/32", "dev", "lo"],
                   check=True, capture_output=True, timeout=30)
    t = Transparent(tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    proxy = ConnectProxy(PROXY_IP, 3128, {CNN: CNN_IP}, ns=nets.ext)
    try:
        r = https_proxy_curl(t)
        assert r.returncode == 0 and "CNN politics" in r.stdout, (r.stdout, r.stderr)
        assert proxy.targets() == [f"{CNN}:443"]
        m = t.sidecar.wait_log(lambda x: x["dlocal"] == f"{PROXY_IP}:3128")
        assert (m["method"], m["cluster"], m["uhost"]) == ("-", "PassthroughCluster",
                                                           f"{PROXY_IP}:3128"), m.string
    finally:
        proxy.stop()
        assert t.stop() == [0, 0]


def test_external_https_proxy_transparent(tmp_path, nets, ctl, egressctl_bin, store,
                                          walkthrough, walkthrough_certs):
    """The page as it runs in a pod: iptables redirects the application's connection to
    PROXY_IP:3128, and `HTTPS_PROXY=PROXY_IP:3128 curl https://edition.cnn.com/politics`
    goes through the sidecar (opaque: the port is TCP, the CONNECT inside is the
    proxy's business) to the proxy and on to the site, under REGISTRY_ONLY."""
    subprocess.run(["ip", "-n", nets.ext, "addr", "add", f"{PROXY_IP}/32", "dev", "lo"],
                   check=True, capture_output=True, timeout=30)
    t = Transparent(tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs,
                    policy="REGISTRY_ONLY")
    proxy = ConnectProxy(PROXY_IP, 3128, {CNN: CNN_IP}, ns=nets.ext)
    try:
        r = https_proxy_curl(t)
        assert r.returncode != 0 and proxy.targets() == [], (r.stdout, r.stderr)
        n = t.sidecar.stat("config_reloads_total")
        ctl.ok("apply", "-f", "-", input=proxy_se([f"{PROXY_IP}/32"]))
        t.sidecar.wait_reloads(n + 1)
        r = https_proxy_curl(t)
        assert r.returncode == 0 and "CNN politics" in r.stdout, (r.stdout, r.stderr)
        assert proxy.targets() == [f"{CNN}:443"]
        m = t.sidecar.wait_log(lambda x: x["cluster"] == "outbound|3128||my-company-proxy.com")
        assert (m["method"], m["uhost"], m["dlocal"]) == ("-", f"{PROXY_IP}:3128",
                                                          f"{PROXY_IP}:3128"), m.string
    finally:
        proxy.stop()
        assert t.stop() == [0, 0]


def test_address_with_static_endpoints(tmp_path, ctl, egressctl_bin, store):
    """An address whose ServiceEntry resolves STATIC: the CONNECT to the address reaches
    the endpoint, not the address (which nothing listens on)."""
    vip, ep_ip = loopback_ip(), loopback_ip()
    rec = Recorder(ep_ip, 9000, "endpoint")
    se = proxy_se([f"{vip}/32"], port=9000).replace("resolution: NONE", f"""resolution: STATIC
  endpoints:
  - address: {ep_ip}""")
    m = mesh_with(tmp_path, ctl, egressctl_bin, store, se)
    try:
        s = socket.create_connection(("127.0.0.1", m.sidecar.outbound), timeout=10)
        try:
            assert connect(s, f"{vip}:9000") == 200
            s.sendall(b"GET /via-vip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        finally:
            s.close()
        assert data.endswith(b"\r\n\r\nendpoint\n"), data
        assert rec.last()["path"] == "/via-vip"
        line = m.sidecar.wait_log(lambda x: x["cluster"] == "outbound|9000||my-company-proxy.com")
        assert line["uhost"] == f"{ep_ip}:9000"
    finally:
        assert m.stop() == [0]
        rec.stop()
