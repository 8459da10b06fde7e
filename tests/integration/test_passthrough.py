"""TLS passthrough and TCP routes (VirtualService tls:/tcp:), both roles, on loopback.

The main test is istio.io's "Egress Gateways" task, HTTPS part, with its YAML unchanged
(tests/data/egress-gateways-https): curl through the sidecar (as an HTTP proxy: CONNECT)
to https://edition.cnn.com/politics, an nginx playing edition.cnn.com that logs the SNI
and TLS session it served; the application's own TLS goes sidecar -> gateway (port 443,
PASSTHROUGH, routed on the ClientHello's SNI) -> nginx, never terminated in between. With
the gateway stopped, the request fails and nothing reaches nginx: the gateway cannot be
bypassed. The other tests: refusals at the gateway (a name no server has, not TLS at
all), routes the proxy cannot serve (refused, never sent elsewhere), sourceSubnet, the
older form of the task (ISTIO_MUTUAL between sidecar and gateway around the application's
TLS, tcp: routes at a protocol TLS server), AUTO_PASSTHROUGH, a gateway TCP server with
tcp: routes, and what proxy-config and /config_dump show."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import REPO
from gwlib import loopback_ip, wait_until
from sidecarlib import CNN, EGW_HOST, Egressgw, NxDns, Site, demo_cert, issue, wait_port

DATA = REPO / "tests" / "data" / "egress-gateways-https"


def cnn_tls_site(tmp, ip, cert, key):
    """edition.cnn.com on 443: serves /politics, and logs for each request the SNI it
    was asked for, the TLS version and session id (the application's own session)."""
    html = tmp / "cnn-html"
    html.mkdir(exist_ok=True)
    (html / "politics").write_text("<html><body>CNN politics (test)</body></html>\n")
    log = tmp / "cnn-tls.log"
    body = f"""
  log_format tlsinfo 'sni=$ssl_server_name proto=$ssl_protocol session=$ssl_session_id '
                     'req="$request" status=$status';
  server {{ listen {ip}:443 ssl; server_name {CNN}; root {html};
           access_log {log} tlsinfo;
           ssl_certificate {cert}; ssl_certificate_key {key}; }}
"""
    site = Site(tmp, "cnn-tls", body, ip, 443)
    site.log = log
    return site


def site_lines(site):
    return site.log.read_text().splitlines() if site.log.exists() else []


class Topo:
    def __init__(self, tmp, ctl, egressctl_bin, store):
        self.tmp, self.ctl, self.store, self.egressctl = tmp, ctl, store, egressctl_bin
        self.cnn_ip, self.gw_ip, self.echo_ip = loopback_ip(), loopback_ip(), loopback_ip()
        certs = tmp / "site-certs"
        certs.mkdir()
        cert, key, self.demo_ca = demo_cert(certs, CNN)
        self.hosts = tmp / "hosts"
        self.hosts.write_text(f"{self.cnn_ip} {CNN}\n{self.gw_ip} {EGW_HOST}\n"
                              f"{self.echo_ip} tcp-echo.test\n")
        ca = tmp / "mesh-ca"
        self.gw_id = issue(egressctl_bin, ca, "istio-system",
                           "istio-egressgateway-service-account", tmp / "gw-id", create_ca=True)
        self.sleep_id = issue(egressctl_bin, ca, "default", "sleep", tmp / "sleep-id")
        self.site = self.dns = self.gateway = self.sidecar = None
        try:
            self.site = cnn_tls_site(tmp, self.cnn_ip, cert, key)
            self.dns = NxDns(loopback_ip())
            self.gateway = self.start_gateway()
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.outbound = s.getsockname()[1]
            s.close()
            self.sidecar = Egressgw(tmp, "sidecar", "sidecar", store, self.sleep_id, self.hosts,
                                    self.dns, extra=["--namespace", "default", "--outbound",
                                                     f"127.0.0.1:{self.outbound}",
                                                     "--outbound-policy", "ALLOW_ANY"])
        except BaseException:
            self.stop()
            raise

    def start_gateway(self, name="gateway", identity=None):
        return Egressgw(self.tmp, name, "gateway", self.store, identity or self.gw_id, self.hosts,
                        self.dns, extra=["--namespace", "istio-system", "--labels", "istio=egressgateway",
                               "--listen-address", self.gw_ip])

    def curl(self, *args):
        """curl as the sleep pod runs it, with the sidecar as its https_proxy."""
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["https_proxy"] = f"http://127.0.0.1:{self.outbound}"
        env["CURL_CA_BUNDLE"] = str(self.demo_ca)
        return subprocess.run(["curl", "--max-time", "15", *args], capture_output=True,
                              text=True, env=env, timeout=30)

    def proxyctl(self, *args):
        env = dict(os.environ)
        env["EGRESSGW_ADMIN"] = f"127.0.0.1:{self.gateway.admin_port}"
        return subprocess.run([str(self.egressctl), "--store", str(self.store), *args],
                              capture_output=True, text=True, env=env, timeout=30)

    def apply(self, text_or_path, *procs):
        """egressctl apply, then waits until each of procs has reloaded."""
        before = [p.stat("config_reloads_total") for p in procs]
        if isinstance(text_or_path, str):
            out = self.ctl.ok("apply", "-f", "-", input=text_or_path)
        else:
            out = self.ctl.ok("apply", "-f", text_or_path)
        for p, n in zip(procs, before):
            p.wait_reloads(n + 1)
        # A reload still pending from an earlier apply can be the one counted: the last
        # reload after the write carries it, so wait until the count stays put.
        for p in procs:
            deadline = time.time() + 10
            last = p.stat("config_reloads_total")
            while time.time() < deadline:
                time.sleep(0.3)
                now = p.stat("config_reloads_total")
                if now == last:
                    break
                last = now
        return out

    def stop(self):
        rcs = []
        for p in (self.sidecar, self.gateway):
            if p is not None:
                rcs.append(p.stop())
        if self.site:
            self.site.stop()
        if self.dns:
            self.dns.stop()
        return rcs


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store):
    t = Topo(tmp_path, ctl, egressctl_bin, store)
    yield t
    assert t.stop() == [0, 0], "egressgw did not exit 0 on SIGTERM"


def get_politics(t):
    return t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{CNN}/politics")


def test_egress_gateways_https_passthrough(topo):
    t = topo
    # 1. The ServiceEntry alone: HTTPS straight to edition.cnn.com (the page's first curl).
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.sidecar, t.gateway)
    r = get_politics(t)
    assert r.stdout == "200", (r.stdout, r.stderr, t.sidecar.stderr()[-2000:])
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
    assert (m["code"], m["cluster"]) == ("200", f"outbound|443||{CNN}"), m.string

    # 2. Gateway (PASSTHROUGH), DestinationRule and VirtualService, as the page has them.
    out = t.apply(DATA / "02-gateway-destinationrule-virtualservice-cnn.yaml", t.sidecar,
                  t.gateway)
    assert "gateway.networking.istio.io/istio-egressgateway created" in out
    assert "virtualservice.networking.istio.io/direct-cnn-through-egress-gateway created" in out
    assert "not served" not in t.gateway.stderr() and "not served" not in t.sidecar.stderr()
    wait_port(t.gw_ip, 443)
    n_side, n_gw, n_site = len(t.sidecar.log_lines()), len(t.gateway.log_lines()), \
        len(site_lines(t.site))
    passthrough = t.sidecar.stat("passthrough_total")
    r = t.curl("-sS", "-o", "/dev/null", "-D", "-", f"https://{CNN}/politics")
    assert r.returncode == 0, (r.stdout, r.stderr, t.sidecar.stderr()[-2000:],
                               t.gateway.stderr()[-2000:])
    assert "HTTP/1.1 200 Connection established" in r.stdout, r.stdout
    assert r.stdout.rstrip().splitlines()[-1].startswith("content-type") or " 200" in \
        r.stdout.split("Connection established", 1)[1], r.stdout

    # The sidecar sent it to the gateway by the mesh tls: route...
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT" and "|cnn|" in m["cluster"])
    assert (m["code"], m["cluster"], m["uhost"]) == \
        ("200", f"outbound|443|cnn|{EGW_HOST}", f"{t.gw_ip}:443"), m.string
    # ...the gateway passed it through by SNI to edition.cnn.com (Envoy's TCP line)...
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN)
    assert (g["method"], g["path"], g["proto"], g["code"]) == ("-", "-", "-", "0"), g.string
    assert (g["cluster"], g["uhost"]) == (f"outbound|443||{CNN}", f"{t.cnn_ip}:443"), g.string
    assert g["dlocal"] == f"{t.gw_ip}:443", g.string
    assert int(g["rx"]) > 0 and int(g["tx"]) > 0, g.string
    assert g["flags"] == "-", g.string
    # ...and nginx served the application's own TLS session: its SNI, its handshake
    # (curl verified edition.cnn.com's certificate against the demo CA: nobody in between
    # holds that key).
    wait_until(lambda: len(site_lines(t.site)) > n_site, what="nginx log line")
    line = site_lines(t.site)[-1]
    assert f"sni={CNN} " in line and 'req="GET /politics HTTP/1.1" status=200' in line, line
    assert len(t.sidecar.log_lines()) == n_side + 1, t.sidecar.log_lines()
    assert len(t.gateway.log_lines()) == n_gw + 1, t.gateway.log_lines()
    assert t.sidecar.stat("passthrough_total") == passthrough
    assert t.sidecar.stat("l4_route_total") >= 1 and t.gateway.stat("l4_route_total") >= 1

    # Not naming the host is no way around the gateway: a CONNECT to edition.cnn.com's
    # address (curl sends no SNI for an IP) is refused, and nginx sees nothing.
    n_site = len(site_lines(t.site))
    r = t.curl("-sSk", "-o", "/dev/null", "-w", "%{http_code}", f"https://{t.cnn_ip}/politics")
    assert r.stdout != "200", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["authority"] == f"{t.cnn_ip}:443")
    assert (m["code"], m["flags"], m["details"]) == ("503", "NR", "filter_chain_not_found"), \
        m.string
    assert len(site_lines(t.site)) == n_site
    assert t.sidecar.stat("passthrough_total") == passthrough

    # proxy-config listener shows the gateway's filter chain by SNI, as istioctl does.
    pc = t.proxyctl("proxy-config", "listener", "--port", "443")
    assert pc.returncode == 0, pc.stderr
    rows = [ln.split() for ln in pc.stdout.splitlines()]
    assert rows[0] == ["ADDRESSES", "PORT", "MATCH", "DESTINATION"], pc.stdout
    assert [t.gw_ip, "443", "SNI:", CNN, "Cluster:", f"outbound|443||{CNN}"] in rows, pc.stdout
    code, body = t.gateway.admin("/config_dump")
    assert code == 200
    lst = [x for x in json.loads(body)["listeners"] if x["port"] == 443][0]
    assert lst["l4_mode"] == "SNI"
    assert lst["l4_routes"][0]["matches"][0]["sni_hosts"] == [CNN], lst
    code, body = t.sidecar.admin("/config_dump")
    mesh = json.loads(body)["mesh_l4_routes"]
    assert mesh[0]["route"] == [{"cluster": f"outbound|443|cnn|{EGW_HOST}", "weight": 100}]

    # 3. The gateway stopped: the request fails, and nothing goes to edition.cnn.com
    # directly (nginx logs nothing new, the sidecar passes nothing through).
    assert t.gateway.stop() == 0
    n_site = len(site_lines(t.site))
    r = get_politics(t)
    assert r.returncode != 0 and r.stdout != "200", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT" and m["code"] == "503" and
                           m["authority"] == f"{CNN}:443")
    assert (m["flags"], m["cluster"]) == ("UF", f"outbound|443|cnn|{EGW_HOST}"), m.string
    assert m["uhost"] == f"{t.gw_ip}:443", m.string
    assert len(site_lines(t.site)) == n_site, site_lines(t.site)
    assert t.sidecar.stat("passthrough_total") == passthrough


def raw_hello(ip, port, sni):
    """Sends a ClientHello for sni (None: none) and returns what comes back before the
    connection closes (b"" when the peer closes without answering)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((ip, port), timeout=5) as s:
        try:
            with ctx.wrap_socket(s, server_hostname=sni):
                return b"handshake"
        except (ssl.SSLError, ConnectionError, OSError):
            return b""


def test_gateway_refuses_what_no_route_has(topo):
    t = topo
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.gateway)
    t.apply(DATA / "02-gateway-destinationrule-virtualservice-cnn.yaml", t.gateway)
    wait_port(t.gw_ip, 443)
    n_site = len(site_lines(t.site))
    # A name the PASSTHROUGH server does not have: closed, NR, nothing upstream.
    assert raw_hello(t.gw_ip, 443, "other.example") == b""
    g = t.gateway.wait_log(lambda m: m["sni"] == "other.example")
    assert (g["code"], g["flags"], g["details"], g["cluster"]) == \
        ("0", "NR", "filter_chain_not_found", "-"), g.string
    # Not TLS at all (an HTTP request on the PASSTHROUGH port): closed, not a 400.
    with socket.create_connection((t.gw_ip, 443), timeout=5) as s:
        s.sendall(b"GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n")
        assert s.recv(100) == b""
    t.gateway.wait_log(lambda m: m["flags"] == "NR" and m["sni"] == "-")
    assert len(site_lines(t.site)) == n_site
    assert t.gateway.stat("l4_refused_total") == 2
    assert "refused a connection on" in t.gateway.stderr()


UNSERVED = """apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: tcp-without-port
spec:
  hosts:
  - edition.cnn.com
  tcp:
  - route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
"""


def test_sidecar_refuses_a_route_it_cannot_serve(topo):
    """A tcp: route whose destination has no port (the match gives none, the host has no
    single registry port) would take edition.cnn.com:443: refused, visibly, never passed
    to edition.cnn.com directly."""
    t = topo
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.sidecar)
    t.apply(UNSERVED, t.sidecar)
    assert "route[].destination.port.number is needed" in t.sidecar.stderr()
    n_site = len(site_lines(t.site))
    r = get_politics(t)
    assert r.stdout != "200", r.stdout
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
    assert (m["code"], m["flags"], m["details"]) == ("503", "NR", "filter_chain_not_found"), \
        m.string
    assert len(site_lines(t.site)) == n_site
    assert t.sidecar.stat("l4_refused_total") == 1


SOURCE_SUBNET = """apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: tcp-with-source-subnet
spec:
  hosts:
  - edition.cnn.com
  tcp:
  - match:
    - port: 443
      sourceSubnet: {subnet}
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        port:
          number: 443
"""


def test_sidecar_tcp_route_source_subnet(topo):
    """sourceSubnet is matched against the application's address (Envoy's
    source_prefix_ranges): a subnet the application is not in leaves the route out (the
    ServiceEntry's own cluster serves it, as in Istio), one it is in sends it to the
    route's destination (here the egress gateway, which has no server on 443 in this
    test: 503 UF, and nothing reaches edition.cnn.com)."""
    t = topo
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.sidecar)
    out = t.ctl("apply", "-f", "-", input=SOURCE_SUBNET.format(subnet="10.0.0.0/8"))
    assert out.rc == 0 and "sourceSubnet" not in out.err, out.err
    an = t.ctl("analyze")
    assert "sourceSubnet" not in an.out, an.out
    wait_until(lambda: "tcp-with-source-subnet" in t.sidecar.admin("/config_dump")[1],
               what="the route in the sidecar's snapshot")
    assert "sourceSubnet" not in t.sidecar.stderr()
    # curl connects from 127.0.0.1: not in 10.0.0.0/8.
    n_site = len(site_lines(t.site))
    r = get_politics(t)
    assert r.stdout == "200", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
    assert (m["code"], m["cluster"]) == ("200", f"outbound|443||{CNN}"), m.string
    assert len(site_lines(t.site)) == n_site + 1

    t.apply(SOURCE_SUBNET.format(subnet="127.0.0.0/8"), t.sidecar)
    wait_until(lambda: "127.0.0.0/8" in t.sidecar.admin("/config_dump")[1],
               what="the new subnet in the sidecar's snapshot")
    n_side, n_site = len(t.sidecar.log_lines()), len(site_lines(t.site))
    r = get_politics(t)
    assert r.stdout != "200", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT" and m["code"] != "200")
    assert (m["code"], m["flags"], m["cluster"]) == ("503", "UF", f"outbound|443||{EGW_HOST}"), \
        m.string
    assert len(t.sidecar.log_lines()) == n_side + 1
    assert len(site_lines(t.site)) == n_site


MESH_TCP = """apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: tcp-echo-to-egress-gateway
spec:
  hosts:
  - tcp-echo.test
  tcp:
  - match:
    - port: 9000
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        port:
          number: 9000
"""

TCP_CONFIG = """apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: tcp-echo
spec:
  hosts:
  - tcp-echo.test
  ports:
  - number: 9000
    name: tcp
    protocol: TCP
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway-tcp
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 9000
      name: tcp
      protocol: TCP
    hosts:
    - tcp-echo.test
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: tcp-echo-through-egress-gateway
spec:
  hosts:
  - tcp-echo.test
  gateways:
  - istio-egressgateway-tcp
  tcp:
  - match:
    - gateways:
      - istio-egressgateway-tcp
      port: 9000
    route:
    - destination:
        host: tcp-echo.test
        port:
          number: 9000
"""


def test_gateway_tcp_route(topo):
    t = topo
    srv = socket.socket()
    srv.bind((t.echo_ip, 9000))
    srv.listen(4)
    seen = []

    def serve(c):
        with c:
            try:
                c.sendall(b"hello from the server first\n")    # a server-first protocol
                while True:
                    data = c.recv(4096)
                    if not data:
                        break
                    c.sendall(data)
            except OSError:
                pass

    def echo():
        while True:
            try:
                c, peer = srv.accept()
            except OSError:
                return
            seen.append(peer)
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    try:
        t.apply(TCP_CONFIG, t.gateway)
        wait_port(t.gw_ip, 9000)
        with socket.create_connection((t.gw_ip, 9000), timeout=5) as s:
            f = s.makefile("rb")
            assert f.readline() == b"hello from the server first\n"
            s.sendall(b"ping\n")
            assert f.readline() == b"ping\n"
            s.shutdown(socket.SHUT_WR)
            assert f.read() == b""
        g = t.gateway.wait_log(lambda m: m["cluster"] == "outbound|9000||tcp-echo.test"
                               and m["rx"] == "5")
        assert (g["method"], g["code"], g["flags"]) == ("-", "0", "-"), g.string
        assert (g["rx"], g["tx"]) == ("5", str(len(b"hello from the server first\nping\n"))), \
            g.string
        assert g["uhost"] == f"{t.echo_ip}:9000", g.string
        pc = t.proxyctl("proxy-config", "listener", "--port", "9000")
        rows = [ln.split() for ln in pc.stdout.splitlines()]
        assert [t.gw_ip, "9000", "ALL", "Cluster:", "outbound|9000||tcp-echo.test"] in rows, \
            pc.stdout

        # Through the sidecar, with a mesh tcp: route to the gateway: even bytes that look
        # like HTTP (a proxy request) follow the route, whole, to the gateway and on.
        t.apply(MESH_TCP, t.sidecar)
        req = b"GET http://tcp-echo.test:9000/x HTTP/1.1\r\nHost: tcp-echo.test:9000\r\n\r\n"
        with socket.create_connection(("127.0.0.1", t.outbound), timeout=5) as s:
            s.sendall(req)
            f = s.makefile("rb")
            assert f.readline() == b"hello from the server first\n"
            got = b""
            while len(got) < len(req):
                got += f.read1(4096)
            assert got == req
            s.shutdown(socket.SHUT_WR)
            assert f.read() == b""
        m = t.sidecar.wait_log(lambda m: m["cluster"] == f"outbound|9000||{EGW_HOST}")
        assert (m["method"], m["code"], m["uhost"]) == ("-", "0", f"{t.gw_ip}:9000"), m.string
        assert m["rx"] == str(len(req)), m.string
        t.gateway.wait_log(lambda m: m["cluster"] == "outbound|9000||tcp-echo.test"
                           and m["rx"] == str(len(req)))
        assert t.sidecar.stat("passthrough_total") == 0
    finally:
        srv.close()


OLDER_FORM = (REPO / "tests" / "data" / "egress-gateways-https-mutual" /
              "02-gateway-destinationrule-virtualservice-cnn.yaml").read_text()


def test_older_form_with_mutual_tls_to_the_gateway(topo):
    """The older form of the task (istio.io's "Egress Gateways" HTTPS part with mutual TLS
    before Istio 1.5, and the blog "Enforcing Egress traffic using Istio's authorization
    policies"): the sidecar wraps the application's TLS in ISTIO_MUTUAL to the gateway
    (the DestinationRule subset's tls, SNI edition.cnn.com), the gateway's protocol TLS
    server terminates that hop and forwards the bytes inside by the tcp: route. nginx
    serves the application's own session; with the gateway stopped the request fails and
    nothing goes to edition.cnn.com directly."""
    t = topo
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.sidecar, t.gateway)
    t.apply(OLDER_FORM, t.sidecar, t.gateway)
    for p in (t.sidecar, t.gateway):
        assert "not served" not in p.stderr() and "originates TLS" not in p.stderr(), \
            p.stderr()[-2000:]
    wait_port(t.gw_ip, 443)
    n_site, n_side = len(site_lines(t.site)), len(t.sidecar.log_lines())
    passthrough = t.sidecar.stat("passthrough_total")
    peers = t.gateway.stat("downstream_cx_peer_identity_total")
    r = get_politics(t)
    assert r.stdout == "200", (r.stdout, r.stderr, t.sidecar.stderr()[-3000:],
                               t.gateway.stderr()[-3000:], t.sidecar.log_lines(),
                               t.gateway.log_lines())
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
    assert (m["code"], m["cluster"], m["uhost"]) == \
        ("200", f"outbound|443|cnn|{EGW_HOST}", f"{t.gw_ip}:443"), m.string
    # The gateway took the sidecar's mutual TLS (its SPIFFE identity checked) and sent
    # the bytes inside to edition.cnn.com by the tcp: route (Envoy's TCP line).
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN)
    assert (g["method"], g["code"], g["flags"]) == ("-", "0", "-"), g.string
    assert (g["cluster"], g["uhost"]) == (f"outbound|443||{CNN}", f"{t.cnn_ip}:443"), g.string
    assert int(g["rx"]) > 0 and int(g["tx"]) > 0, g.string
    assert t.gateway.stat("downstream_cx_peer_identity_total") == peers + 1
    # nginx served the application's TLS session: its SNI, curl's certificate check.
    wait_until(lambda: len(site_lines(t.site)) > n_site, what="nginx log line")
    line = site_lines(t.site)[-1]
    assert f"sni={CNN} " in line and 'req="GET /politics HTTP/1.1" status=200' in line, line
    assert len(t.sidecar.log_lines()) == n_side + 1
    assert t.sidecar.stat("passthrough_total") == passthrough
    # proxy-config shows the tcp: route as the port's filter chain.
    pc = t.proxyctl("proxy-config", "listener", "--port", "443")
    assert pc.returncode == 0, pc.stderr
    rows = [ln.split() for ln in pc.stdout.splitlines()]
    assert rows[1:] == [[t.gw_ip, "443", "ALL", "Cluster:", f"outbound|443||{CNN}"]], pc.stdout

    # The gateway stopped: the request fails, nothing reaches edition.cnn.com.
    assert t.gateway.stop() == 0
    n_site = len(site_lines(t.site))
    r = get_politics(t)
    assert r.returncode != 0 and r.stdout != "200", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT" and m["code"] == "503")
    assert (m["flags"], m["cluster"]) == ("UF", f"outbound|443|cnn|{EGW_HOST}"), m.string
    assert len(site_lines(t.site)) == n_site, site_lines(t.site)
    assert t.sidecar.stat("passthrough_total") == passthrough


def test_older_form_gateway_not_trusted_is_uf(topo):
    """The older form when the sidecar cannot verify the gateway (its mesh certificate is
    from another CA than the sidecar's root): the sidecar -> gateway handshake fails, and
    the sidecar logs it as Envoy does a failed upstream TLS connection: flag UF, the TLS
    reason as UPSTREAM_TRANSPORT_FAILURE_REASON, and the application's CONNECT answered
    503, not 200 and then a close. Nothing reaches edition.cnn.com, nothing goes direct."""
    t = topo
    assert t.gateway.stop() == 0
    other_id = issue(t.egressctl, t.tmp / "other-ca", "istio-system",
                     "istio-egressgateway-service-account", t.tmp / "gw-other-id",
                     create_ca=True)
    t.gateway = t.start_gateway("gateway-other-ca", other_id)
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.sidecar, t.gateway)
    t.apply(OLDER_FORM, t.sidecar, t.gateway)
    wait_port(t.gw_ip, 443)
    n_site, n_side = len(site_lines(t.site)), len(t.sidecar.log_lines())
    passthrough = t.sidecar.stat("passthrough_total")
    fails = t.sidecar.stat("upstream_cx_connect_fail_total")
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_connect}", f"https://{CNN}/politics")
    assert (r.returncode, r.stdout) == (56, "503"), (r.returncode, r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
    assert (m["code"], m["flags"], m["cluster"], m["uhost"]) == \
        ("503", "UF", f"outbound|443|cnn|{EGW_HOST}", f"{t.gw_ip}:443"), m.string
    assert m["tls"].startswith("TLS_error:|CERTIFICATE_VERIFY_FAILED:"), m.string
    assert m["tls"].endswith(":TLS_error_end"), m.string
    assert t.sidecar.stat("upstream_cx_connect_fail_total") == fails + 1
    assert len(t.sidecar.log_lines()) == n_side + 1, t.sidecar.log_lines()
    assert len(site_lines(t.site)) == n_site, site_lines(t.site)
    assert t.sidecar.stat("passthrough_total") == passthrough


def test_terminated_hop_ends_after_its_tunnel_is_refused(topo):
    """The older form's terminated hop (l4tls.c) when the gateway refuses what is inside (a
    DENY AuthorizationPolicy for the client's principal): the gateway ends its TLS with
    close_notify, and a client that completes the mesh handshake and then stays silent is
    closed within the linger (5 s), not held open for ever with the relay's descriptors."""
    from gwlib import mesh_context
    from test_authz import policy
    t = topo
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.sidecar, t.gateway)
    t.apply(OLDER_FORM, t.sidecar, t.gateway)
    t.apply(policy("deny-sleep", SLEEP_DENIED), t.gateway)
    wait_port(t.gw_ip, 443)
    with socket.create_connection((t.gw_ip, 443), timeout=10) as raw0:
        s = mesh_context(t.sleep_id).wrap_socket(raw0, server_hostname=CNN)
        s.settimeout(10)
        assert s.recv(1) == b"", "the refused hop should end with close_notify"
        start = time.time()
        with socket.socket(fileno=os.dup(s.fileno())) as raw:
            raw.settimeout(15)
            assert raw.recv(1) == b"", "the gateway should close the connection"
        assert time.time() - start < 10, time.time() - start
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN)
    assert "rbac_access_denied" in g.string, g.string


SLEEP_DENIED = """  selector:
    matchLabels:
      istio: egressgateway
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
"""


def test_older_form_on_an_https_server_is_not_served(topo):
    """The same with the Gateway server's protocol HTTPS: Istio serves what it terminates
    as HTTP there, so the tcp: route does not apply. Said by the gateway when it builds
    the configuration; the request fails and nothing reaches edition.cnn.com."""
    t = topo
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.sidecar, t.gateway)
    t.apply(OLDER_FORM.replace("name: tls\n      protocol: TLS", "name: https\n      protocol: HTTPS"),
            t.sidecar, t.gateway)
    assert "tls/tcp routes for Gateway default/istio-egressgateway port 443 are not served" \
        in t.gateway.stderr(), t.gateway.stderr()[-2000:]
    wait_port(t.gw_ip, 443)
    n_site, n_gw = len(site_lines(t.site)), len(t.gateway.log_lines())
    r = get_politics(t)
    assert r.stdout != "200", (r.stdout, r.stderr)
    assert len(site_lines(t.site)) == n_site
    assert not any(f"outbound|443||{CNN}" in x for x in t.gateway.log_lines()[n_gw:])


def mixed_gateway(cert, key):
    """The page's Gateway with a second, TLS-terminating server on the same port 443."""
    gw = (DATA / "02-gateway-destinationrule-virtualservice-cnn.yaml").read_text()
    head, rest = gw.split("---\n", 1)
    head += f"""  - port:
      number: 443
      name: https-term
      protocol: HTTPS
    hosts:
    - term.example
    tls:
      mode: SIMPLE
      serverCertificate: {cert}
      privateKey: {key}
"""
    return head + "---\n" + rest


def split_hello_handshake(ip, port, sni, cafile, cut=40, pause=0.3):
    """A TLS handshake whose ClientHello is sent in two writes, pause seconds apart.
    Returns the server certificate's subject CN (the handshake completed)."""
    import ssl
    import time
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    with socket.create_connection((ip, port), timeout=5) as s:
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        s.sendall(hello[:cut])
        time.sleep(pause)
        s.sendall(hello[cut:])
        while True:
            data = s.recv(65536)
            assert data, "the server closed during the handshake"
            inc.write(data)
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(out.read())
        s.sendall(out.read())
        subject = dict(x[0] for x in obj.getpeercert()["subject"])
        return subject["commonName"]


def test_passthrough_and_terminating_servers_share_a_port(topo):
    """Port 443 with a PASSTHROUGH server (edition.cnn.com) and a SIMPLE one
    (term.example): the gateway peeks at the ClientHello; edition.cnn.com passes through
    (the application's session reaches nginx), term.example is terminated here."""
    import ssl
    t = topo
    cert, key = t.tmp / "site-certs" / f"{CNN}.crt", t.tmp / "site-certs" / f"{CNN}.key"
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.sidecar, t.gateway)
    t.apply(mixed_gateway(cert, key), t.sidecar, t.gateway)
    wait_port(t.gw_ip, 443)
    code, body = t.gateway.admin("/config_dump")
    lst = [x for x in json.loads(body)["listeners"] if x["port"] == 443][0]
    assert lst["l4_mode"] == "SNI_PEEK" and lst["tls"], lst
    n_site = len(site_lines(t.site))
    r = get_politics(t)
    assert r.stdout == "200", (r.stdout, r.stderr, t.gateway.stderr()[-2000:])
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN)
    assert (g["method"], g["cluster"], g["uhost"]) == \
        ("-", f"outbound|443||{CNN}", f"{t.cnn_ip}:443"), g.string
    wait_until(lambda: len(site_lines(t.site)) > n_site, what="nginx log line")
    assert f"sni={CNN} " in site_lines(t.site)[-1]
    # term.example: the gateway's own certificate (it is the demo CA's for edition.cnn.com,
    # so the client checks the chain only); no http route: 404 NR from the gateway.
    ctx = ssl.create_default_context(cafile=str(t.demo_ca))
    ctx.check_hostname = False
    with socket.create_connection((t.gw_ip, 443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="term.example") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: term.example\r\nConnection: close\r\n\r\n")
            head = s.recv(100)
    assert head.startswith(b"HTTP/1.1 404 "), head
    g = t.gateway.wait_log(lambda m: m["authority"] == "term.example")
    assert (g["code"], g["flags"], g["sni"]) == ("404", "NR", "term.example"), g.string
    # A ClientHello that arrives in two pieces is waited for (without spinning) and then
    # goes where its name says, both ways.
    cpu0 = sum(int(x) for x in open(f"/proc/{t.gateway.proc.pid}/stat").read()
               .rsplit(")", 1)[1].split()[11:13])
    def passed_through():
        return sum(f" {CNN} -" in ln and '"- - -"' in ln for ln in t.gateway.log_lines())

    n_pass = passed_through()
    assert split_hello_handshake(t.gw_ip, 443, CNN, t.demo_ca) == CNN
    wait_until(lambda: passed_through() == n_pass + 1, what="the split hello passed through")
    assert split_hello_handshake(t.gw_ip, 443, "term.example", t.demo_ca) == CNN
    cpu1 = sum(int(x) for x in open(f"/proc/{t.gateway.proc.pid}/stat").read()
               .rsplit(")", 1)[1].split()[11:13])
    assert cpu1 - cpu0 < 30, "the gateway spun while waiting for the rest of a ClientHello"
    # A name neither server has: refused by the TLS server (no filter chain).
    assert raw_hello(t.gw_ip, 443, "other.example") == b""
    pc = t.proxyctl("proxy-config", "listener", "--port", "443")
    rows = [ln.split() for ln in pc.stdout.splitlines()]
    assert [t.gw_ip, "443", "SNI:", CNN, "Cluster:", f"outbound|443||{CNN}"] in rows, pc.stdout
    assert [t.gw_ip, "443", "SNI:", "term.example", "Route:", "http.443"] in rows, pc.stdout


AUTO_PASSTHROUGH = """apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: cross-network-gateway
  namespace: istio-system
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 15443
      name: tls
      protocol: TLS
    tls:
      mode: AUTO_PASSTHROUGH
    hosts:
    - "*.cnn.com"
"""


def auto_get(ip, port, sni, ca):
    """GET /politics over TLS with SNI sni (Istio's outbound_.PORT_.SUBSET_.HOST, as a
    sidecar of another network sends it); the server's certificate is checked against
    the demo CA for edition.cnn.com. Returns the response's first line, or "" when the
    connection is closed first."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    with socket.create_connection((ip, port), timeout=5) as s:
        try:
            with ctx.wrap_socket(s, server_hostname=sni) as c:
                cert = c.getpeercert()
                assert ("DNS", CNN) in cert.get("subjectAltName", ()), cert
                c.sendall(f"GET /politics HTTP/1.1\r\nHost: {CNN}\r\n"
                          "Connection: close\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return data.split(b"\r\n", 1)[0].decode()
        except (ssl.SSLError, ConnectionError, OSError):
            return ""


def test_gateway_auto_passthrough(topo):
    """Gateway tls.mode AUTO_PASSTHROUGH: no VirtualService; the SNI
    outbound_.443_._.edition.cnn.com names the cluster outbound|443||edition.cnn.com,
    which gets the client's TLS as it is (nginx logs that SNI); a host the server's
    hosts do not admit, or a port the registry does not have, is refused (NR)."""
    t = topo
    t.apply(DATA / "01-serviceentry-cnn.yaml", t.gateway)
    r = t.ctl("apply", "-f", "-", input=AUTO_PASSTHROUGH)
    assert r.rc == 0 and "AUTO_PASSTHROUGH" not in r.err, r.err
    wait_port(t.gw_ip, 15443)
    assert "AUTO_PASSTHROUGH" not in t.gateway.stderr()
    n_site = len(site_lines(t.site))
    sni = f"outbound_.443_._.{CNN}"
    assert auto_get(t.gw_ip, 15443, sni, t.demo_ca) == "HTTP/1.1 200 OK"
    g = t.gateway.wait_log(lambda m: m["sni"] == sni)
    assert (g["code"], g["flags"], g["cluster"], g["uhost"]) == \
        ("0", "-", f"outbound|443||{CNN}", f"{t.cnn_ip}:443"), g.string
    wait_until(lambda: len(site_lines(t.site)) > n_site, what="nginx log line")
    assert f"sni={sni} " in site_lines(t.site)[-1], site_lines(t.site)[-1]

    n_site = len(site_lines(t.site))
    for bad in ("outbound_.443_._.other.example", f"outbound_.8443_._.{CNN}", CNN):
        assert auto_get(t.gw_ip, 15443, bad, t.demo_ca) == "", bad
        g = t.gateway.wait_log(lambda m, bad=bad: m["sni"] == bad)
        assert (g["flags"], g["details"], g["cluster"]) == \
            ("NR", "filter_chain_not_found", "-"), g.string
    assert len(site_lines(t.site)) == n_site
    code, body = t.gateway.admin("/config_dump")
    lst = [x for x in json.loads(body)["listeners"] if x["port"] == 15443][0]
    assert lst["servers"][0]["tls_mode"] == "AUTO_PASSTHROUGH", lst
