"""Automatic mutual TLS, with Istio's "Egress Gateways" task, HTTP part, applied as the
page writes it (only edition.cnn.com's address is the test's: an nginx on loopback that
answers 301 to https on port 80 and serves /politics on 443). The page's DestinationRule
for the gateway has a subset and no `tls`: the sidecar speaks ISTIO_MUTUAL to the
gateway anyway, because the gateway's service is a mesh workload, and the gateway's
plain HTTP server accepts the mesh's mutual TLS besides plain HTTP (PERMISSIVE). The
gateway's log shows the request arriving over HTTP/2 (the mesh hop's ALPN) and leaving
through outbound|80||edition.cnn.com, as the page's log line does."""
import subprocess

import pytest

from gwlib import loopback_ip, wait_until
from meshlib import Mesh
from sidecarlib import CNN, EGW_HOST, cnn_site, demo_cert, heads

SE = """apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
"""

GW_DR = """apiVersion: networking.istio.io/v1alpha3
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
    hosts:
    - edition.cnn.com
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
"""

VS = """apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 80
      weight: 100
"""


@pytest.fixture
def world(tmp_path, ctl, egressctl_bin, store):
    certs = tmp_path / "site-certs"
    certs.mkdir()
    cert, key, ca = demo_cert(certs, CNN)
    cnn_ip = loopback_ip()
    site = cnn_site(tmp_path, cnn_ip, cert, key)
    ctl.ok("apply", "-f", "-", input=SE)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {CNN: cnn_ip}, gateway=True)
    yield m, ca, cnn_ip
    rcs = m.stop()
    site.stop()
    assert rcs == [0, 0]


def apply_and_wait(m, ctl, yaml):
    """Applies, then waits until both proxies serve it: the sidecar routes to the
    gateway's subset, the gateway has its listener."""
    ctl.ok("apply", "-f", "-", input=yaml)
    wait_until(lambda: f"outbound|80|cnn|{EGW_HOST}" in m.sidecar.admin("/config_dump")[1] and
               "direct-cnn-through-egress-gateway" in m.sidecar.admin("/config_dump")[1],
               timeout=10, what="sidecar config")
    wait_until(lambda: "direct-cnn-through-egress-gateway" in m.gateway.admin("/config_dump")[1],
               timeout=10, what="gateway config")


def statuses(r):
    """The status lines curl printed, without the https_proxy's CONNECT answer."""
    return [h for h in heads(r.stdout) if "Connection established" not in h]


def politics(m, ca):
    return m.curl("-sSL", "-o", "/dev/null", "-D", "-", "--cacert", str(ca),
                  f"http://{CNN}/politics")


def test_egress_gateway_http(world, ctl):
    m, ca, cnn_ip = world
    # Before the gateway: straight out (the page's first curl).
    r = politics(m, ca)
    assert statuses(r) == ["HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 OK"], r.stderr
    assert "location: https://edition.cnn.com/politics" in r.stdout.lower()

    apply_and_wait(m, ctl, GW_DR + "---\n" + VS)
    through_the_gateway(m, ca, cnn_ip)


def through_the_gateway(m, ca, cnn_ip):
    """The page's curl once the gateway is in place, and what the proxies log
    (test_page_authz.py runs it under an ALLOW policy too)."""
    peers = m.gateway.stat("downstream_cx_peer_identity_total")
    r = politics(m, ca)
    assert statuses(r) == ["HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 OK"], r.stderr
    # The sidecar sent it to the gateway's cnn subset ...
    sl = m.sidecar.wait_log(lambda x: x["path"] == "/politics" and
                            x["cluster"] == f"outbound|80|cnn|{EGW_HOST}")
    assert sl["code"] == "301"
    assert sl["uhost"] == f"{m.gw_ip}:80"
    # ... over the mesh's mutual TLS (no DestinationRule asked for it) and HTTP/2 ...
    assert m.gateway.stat("downstream_cx_peer_identity_total") == peers + 1
    gl = m.gateway.wait_log(lambda x: x["path"] == "/politics")
    assert gl["proto"] == "HTTP/2" and gl["code"] == "301"
    # ... and the gateway sent it on to edition.cnn.com, as the page's log line shows.
    assert gl["cluster"] == "outbound|80||edition.cnn.com"
    assert gl["uhost"] == f"{cnn_ip}:80"
    assert gl["authority"] == CNN
    # The cluster says why: automatic mutual TLS.
    _, dump = m.sidecar.admin("/config_dump")
    assert "ISTIO_MUTUAL" in dump


def test_explicit_disable_stays_plain(world, ctl):
    """A DestinationRule that sets tls DISABLE wins over automatic mutual TLS; the
    gateway's plain listener still serves plain HTTP."""
    m, ca, _ = world
    dr = GW_DR.replace("  - name: cnn\n", "  - name: cnn\n    trafficPolicy:\n      tls:\n"
                                          "        mode: DISABLE\n")
    apply_and_wait(m, ctl, dr + "---\n" + VS)
    peers = m.gateway.stat("downstream_cx_peer_identity_total")
    r = politics(m, ca)
    assert statuses(r)[0] == "HTTP/1.1 301 Moved Permanently", r.stderr
    gl = m.gateway.wait_log(lambda x: x["path"] == "/politics")
    assert gl["proto"] == "HTTP/1.1" and gl["cluster"] == "outbound|80||edition.cnn.com"
    assert m.gateway.stat("downstream_cx_peer_identity_total") == peers


def test_gateway_refuses_foreign_client_cert(world, tmp_path):
    """The mesh side of the plain listener is ISTIO_MUTUAL: a client certificate from
    outside the mesh does not get in."""
    m, _, _ = world
    d = tmp_path / "foreign"
    d.mkdir()
    subprocess.run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=foreign "
                   "-keyout k.pem -out c.pem", shell=True, check=True, cwd=d,
                   capture_output=True)
    r = subprocess.run(["openssl", "s_client", "-connect", f"{m.gw_ip}:80", "-cert",
                        str(d / "c.pem"), "-key", str(d / "k.pem"), "-CAfile",
                        str(m.gw_id / "root-cert.pem")], input="GET / HTTP/1.0\r\n\r\n",
                       capture_output=True, text=True, timeout=20)
    assert "HTTP/1." not in r.stdout


@pytest.mark.parametrize("sign", ["location", "label", "none"])
def test_mesh_workload_signs(sign, tmp_path, ctl, egressctl_bin, store):
    """The other signs of a mesh workload: a ServiceEntry with location MESH_INTERNAL, or
    endpoints labelled security.istio.io/tlsMode=istio. The workload here is the gateway
    (its plain HTTP port takes mutual TLS too), which routes on to a recording upstream;
    without either sign the hop stays plain."""
    from recorder import Recorder

    up_ip = loopback_ip()
    rec = Recorder(up_ip, 80, "backend")
    m = None
    try:
        m = Mesh(tmp_path, ctl, egressctl_bin, store, {"backend.example.test": up_ip},
                 gateway=True, sidecar_extra=["--mesh-hosts", "none.invalid"])
        location = "MESH_INTERNAL" if sign == "location" else "MESH_EXTERNAL"
        labels = ("\n    labels:\n      security.istio.io/tlsMode: istio"
                  if sign == "label" else "")
        ctl.ok("apply", "-f", "-", input=f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: workload
spec:
  hosts: [workload.mesh.test]
  location: {location}
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: {m.gw_ip}{labels}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: backend
spec:
  hosts: [backend.example.test]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
---
apiVersion: networking.istio.io/v1
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
    hosts: [workload.mesh.test]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: workload
spec:
  hosts: [workload.mesh.test]
  gateways: [istio-egressgateway]
  http:
  - route:
    - destination:
        host: backend.example.test
""")
        wait_until(lambda: "outbound|80||workload.mesh.test" in m.sidecar.admin("/config_dump")[1]
                   and "workload" in m.gateway.admin("/config_dump")[1], timeout=10,
                   what="config")
        peers = m.gateway.stat("downstream_cx_peer_identity_total")
        r = m.curl("http://workload.mesh.test/x")
        assert r.stdout == "backend\n", (r.stdout, r.stderr)
        gl = m.gateway.wait_log(lambda x: x["path"] == "/x")
        mtls = sign != "none"
        assert m.gateway.stat("downstream_cx_peer_identity_total") == peers + (1 if mtls else 0)
        assert gl["proto"] == ("HTTP/2" if mtls else "HTTP/1.1")
    finally:
        rcs = m.stop() if m else [0, 0]
        rec.stop()
        assert rcs == [0, 0]
