"""egressgw --role sidecar with transparent capture, as in a pod: the application's
outbound TCP is redirected to the sidecar by the iptables rules `egressctl iptables`
installs, and the sidecar reads each connection's original destination (SO_ORIGINAL_DST).

Two network namespaces that the test creates and removes (even when it fails), joined by a
veth pair (capturelib.py); their 10.250.x addresses never leave them:
  app  (10.250.0.1)  the sidecar (uid 0, excluded from capture) and curl (run as nobody,
                     captured), with the iptables rules
  ext  (10.250.0.2)  the "outside": nginx as edition.cnn.com (10.250.1.1) and as
                     my-nginx.mesh-external.svc.cluster.local (10.250.1.2), the egress
                     gateway (10.250.1.3), other.test (10.250.1.4), which no ServiceEntry
                     names, and a server-first TCP service on other.test:2525
The whole walkthrough runs here as it does through the HTTP proxy (test_sidecar.py), and
istio.io "Egress Gateways" HTTPS part (TLS passthrough by SNI through the gateway, and its
older form with mutual TLS to the gateway), with curl connecting to the sites' addresses
(curl --resolve plays the cluster's DNS)."""
import os
import socket
import subprocess
import threading

import pytest

from capturelib import EXT_ADDRS, NOBODY, OUTBOUND, Capture, nets  # noqa: F401 (nets: fixture)
from sidecarlib import (CNN, EGW_HOST, NGINX_HOST, Egressgw, NxDns, Site, cnn_site, demo_cert,
                        heads, in_netns, issue, mtls_site, run_walkthrough)

CNN_IP, NGINX_IP, GW_IP, OTHER_IP = EXT_ADDRS


class Banner:
    """A server-first TCP service (an SMTP-like greeting) on ip:port in namespace ns."""

    def __init__(self, ip_, port, ns):
        def make():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip_, port))
            s.listen(8)
            return s
        self.s = in_netns(ns, make)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            with c:
                c.sendall(b"220 other.test ESMTP\r\n")
                data = c.recv(100)
                c.sendall(b"250 got " + data)

    def stop(self):
        self.s.close()


class Transparent:
    def __init__(self, tmp, nets, ctl, egressctl_bin, store, walkthrough_dir, certs,
                 policy="ALLOW_ANY"):
        self.mode = "transparent"
        self.tmp, self.ctl, self.wt, self.certs, self.store = tmp, ctl, walkthrough_dir, certs, store
        self.nets, self.egressctl = nets, egressctl_bin
        self.gw_ip = GW_IP
        self.procs = []
        self.stoppers = []
        site_certs = tmp / "site-certs"
        site_certs.mkdir()
        cert, key, demo_ca = demo_cert(site_certs, CNN)
        ocert, okey, _ = demo_cert(site_certs, "other.test")
        resolve = {(h, p): a for h, a, ports in ((CNN, CNN_IP, (80, 443)),
                                                 (NGINX_HOST, NGINX_IP, (80,)),
                                                 ("other.test", OTHER_IP, (80, 443)))
                   for p in ports}
        self.cap = Capture(nets, egressctl_bin, demo_ca, resolve)
        self.pub, self.demo_ca = self.cap.pub, self.cap.demo_ca
        self.hosts = tmp / "hosts"
        self.hosts.write_text(f"{CNN_IP} {CNN}\n{NGINX_IP} {NGINX_HOST}\n{GW_IP} {EGW_HOST}\n"
                              f"{OTHER_IP} other.test\n")
        ca = tmp / "mesh-ca"
        gw_id = issue(egressctl_bin, ca, "istio-system", "istio-egressgateway-service-account",
                      tmp / "gw-id", create_ca=True)
        sleep_id = issue(egressctl_bin, ca, "default", "sleep", tmp / "sleep-id")
        self.gateway = self.sidecar = self.ext_dns = self.app_dns = None
        try:
            self._start(tmp, nets, store, demo_ca, cert, key, ocert, okey, certs, gw_id,
                        sleep_id, policy)
        except BaseException:
            self.stop(check=False)      # what did start must not outlive the test
            raise

    def _start(self, tmp, nets, store, demo_ca, cert, key, ocert, okey, certs, gw_id, sleep_id,
               policy):
        ext, app = nets.ext, nets.app
        # One at a time: whatever started is stopped even if a later one fails.
        self.stoppers.append(cnn_site(tmp, CNN_IP, cert, key, ns=ext).stop)
        self.stoppers.append(mtls_site(tmp, NGINX_IP, certs, ns=ext).stop)
        self.stoppers.append(Site(tmp, "other", f"""
  server {{ listen {OTHER_IP}:80; location / {{ default_type text/plain; return 200 "other plain\\n"; }} }}
  server {{ listen {OTHER_IP}:443 ssl; ssl_certificate {ocert}; ssl_certificate_key {okey};
           location / {{ default_type text/plain; return 200 "other tls\\n"; }} }}
""", OTHER_IP, 443, ns=ext).stop)
        self.stoppers.append(Banner(OTHER_IP, 2525, ext).stop)
        self.ext_dns = NxDns("127.0.0.53", ns=ext)
        self.app_dns = NxDns("127.0.0.53", ns=app)
        self.gateway = Egressgw(tmp, "gateway", "gateway", store, gw_id, self.hosts, self.ext_dns,
                                ns=ext, env={"SSL_CERT_FILE": str(demo_ca)},
                                extra=["--namespace", "istio-system", "--labels",
                                       "istio=egressgateway", "--listen-address", GW_IP])
        self.sidecar = Egressgw(tmp, "sidecar", "sidecar", store, sleep_id, self.hosts,
                                self.app_dns, ns=app,
                                extra=["--namespace", "default", "--outbound",
                                       f"127.0.0.1:{OUTBOUND}", "--outbound-policy", policy])
        # The sidecar runs as root: uid 0 is what the rules exclude.
        self.cap.apply()

    def in_app(self, argv, user=None, **kw):
        return self.cap.in_app(argv, user, **kw)

    def curl(self, *args):
        """curl as the application runs it: as nobody, captured by the rules."""
        return self.cap.curl(*args)

    def proxyctl(self, *args):
        env = dict(os.environ)
        env["EGRESSGW_ADMIN"] = f"127.0.0.1:{self.gateway.admin_port}"
        return subprocess.run(["ip", "netns", "exec", self.nets.ext, str(self.egressctl),
                               "--store", str(self.store), *args], capture_output=True,
                              text=True, env=env, timeout=30)

    def stop(self, check=True):
        rcs = [p.stop() for p in (self.sidecar, self.gateway) if p]
        r, rules = self.cap.clean()
        for stop in self.stoppers:
            stop()
        for dns in (self.ext_dns, self.app_dns):
            if dns:
                dns.stop()
        if check:
            assert r.returncode == 0 and "EGRESSGW" not in rules, (r.stdout, r.stderr, rules)
        return rcs


@pytest.fixture
def topo(tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    t = Transparent(tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    yield t
    assert t.stop() == [0, 0]


def test_rules_capture_the_application_but_not_the_sidecar(topo):
    rules = topo.in_app(["iptables", "-t", "nat", "-S"]).stdout
    assert "-A EGRESSGW_OUTPUT -m owner --uid-owner 0 -j RETURN" in rules, rules
    assert "-A EGRESSGW_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in rules, rules


def test_walkthrough_end_to_end_with_transparent_capture(topo):
    run_walkthrough(topo)


def test_allow_any_passes_http_tls_and_server_first_protocols_through(topo):
    r = topo.curl("-sS", "http://other.test/x")
    assert r.stdout == "other plain\n", (r.stdout, r.stderr, topo.sidecar.stderr()[-2000:])
    m = topo.sidecar.wait_log(lambda m: m["authority"] == "other.test")
    assert (m["cluster"], m["route"], m["dlocal"]) == \
        ("PassthroughCluster", "allow_any", f"{OTHER_IP}:80"), m.string
    r = topo.curl("-sS", "https://other.test/y")
    assert r.stdout == "other tls\n", (r.stdout, r.stderr)
    m = topo.sidecar.wait_log(lambda m: m["sni"] == "other.test")
    assert (m["method"], m["code"], m["cluster"], m["uhost"]) == \
        ("-", "0", "PassthroughCluster", f"{OTHER_IP}:443"), m.string
    # A protocol whose server speaks first: the sidecar waits for the client's first
    # bytes only so long, then relays opaquely.
    script = ("import socket\n"
              f"s = socket.create_connection(('{OTHER_IP}', 2525), timeout=10)\n"
              "g = s.recv(100)\n"
              "s.sendall(b'EHLO app\\r\\n')\n"
              "print(g.decode().strip(), '|', s.recv(100).decode().strip())\n")
    r = topo.in_app(["/usr/bin/python3", "-c", script], user=NOBODY)
    assert r.stdout.strip() == "220 other.test ESMTP | 250 got EHLO app", (r.stdout, r.stderr)
    m = topo.sidecar.wait_log(lambda m: m["dlocal"] == f"{OTHER_IP}:2525")
    assert (m["cluster"], m["rx"], m["tx"]) == ("PassthroughCluster", "10", "40"), m.string


def test_registry_only_refuses_what_the_registry_does_not_name(tmp_path, nets, ctl, egressctl_bin,
                                                               store, walkthrough,
                                                               walkthrough_certs):
    t = Transparent(tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs,
                    policy="REGISTRY_ONLY")
    try:
        n = t.sidecar.stat("config_reloads_total")
        ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
        t.sidecar.wait_reloads(n + 1)
        r = t.curl("-sS", "-D", "-", "-o", "/dev/null", "http://other.test/x")
        assert heads(r.stdout) == ["HTTP/1.1 502 Bad Gateway"], (r.stdout, r.stderr)
        m = t.sidecar.wait_log(lambda m: m["authority"] == "other.test")
        assert (m["cluster"], m["route"]) == ("BlackHoleCluster", "block_all"), m.string
        r = t.curl("-sS", "https://other.test/y")
        assert r.returncode == 35, (r.returncode, r.stdout, r.stderr)   # TLS connect error
        m = t.sidecar.wait_log(lambda m: m["sni"] == "other.test")
        assert (m["cluster"], m["flags"], m["uhost"]) == ("BlackHoleCluster", "UH", "-"), m.string
        r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
        assert heads(r.stdout) == ["HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 OK"], \
            (r.stdout, r.stderr)
        assert t.sidecar.stat("blackhole_total") == 2
    finally:
        assert t.stop() == [0, 0]


def test_connection_redirected_to_the_sidecar_itself_is_refused(topo):
    """Rules that capture loopback traffic (here one added for the test: the application's
    connections to the sidecar's admin port go to the capture port) must not let the
    application read the admin through the sidecar: the original destination is the
    sidecar's own, so the connection is closed when accepted, with a log line."""
    admin = topo.sidecar.admin_port
    rule = ["-p", "tcp", "-d", "127.0.0.1", "--dport", str(admin), "-m", "owner",
            "--uid-owner", "65534", "-j", "REDIRECT", "--to-ports", str(OUTBOUND)]
    r = topo.in_app(["iptables", "-t", "nat", "-I", "OUTPUT", "1", *rule])
    assert r.returncode == 0, r.stderr
    try:
        script = ("import socket, time\n"
                  f"s = socket.create_connection(('127.0.0.1', {admin}), timeout=10)\n"
                  "t = time.time()\n"
                  "s.sendall(b'GET /config_dump HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
                  "got = b''\n"
                  "try:\n"
                  "    while True:\n"
                  "        c = s.recv(65536)\n"
                  "        if not c: break\n"
                  "        got += c\n"
                  "except ConnectionResetError:\n"
                  "    pass\n"
                  "print(len(got), round(time.time() - t, 3))\n")
        r = topo.in_app(["/usr/bin/python3", "-c", script], user=NOBODY)
        n, took = r.stdout.split()
        assert n == "0" and float(took) < 1.0, (r.stdout, r.stderr)
        assert f"redirected to 127.0.0.1:{admin}, this proxy's own" in topo.sidecar.stderr()
    finally:
        topo.in_app(["iptables", "-t", "nat", "-D", "OUTPUT", *rule])


def site_lines(t):
    """The access log of the nginx playing edition.cnn.com (cnn_tls_site in the topology)."""
    log = t.tmp / "nginx-cnn" / "access.log"
    return log.read_text().splitlines() if log.exists() else []


def assert_nameless_tls_is_refused(t, passthrough):
    """Leaving out the SNI (curl to the address) is no way around the gateway: the sidecar
    refuses it (NR filter_chain_not_found), nothing reaches the site, nothing goes direct."""
    n_site = len(site_lines(t))
    r = t.in_app(["curl", "--max-time", "20", "-sSk", "-o", "/dev/null", "-w", "%{http_code}",
                  f"https://{CNN_IP}/politics"], user=NOBODY)
    assert r.stdout != "200", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["sni"] == "-" and m["dlocal"] == f"{CNN_IP}:443")
    assert (m["flags"], m["details"]) == ("NR", "filter_chain_not_found"), m.string
    assert len(site_lines(t)) == n_site
    assert t.sidecar.stat("passthrough_total") == passthrough


def assert_fails_without_the_gateway(t, cluster, passthrough):
    """The gateway stopped: the request fails at the sidecar (UF on the gateway's cluster),
    nothing reaches edition.cnn.com and nothing goes direct."""
    assert t.gateway.stop() == 0
    n_site = len(site_lines(t))
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{CNN}/politics")
    assert r.returncode != 0 and r.stdout != "200", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["sni"] == CNN and m["flags"] == "UF")
    assert (m["cluster"], m["uhost"]) == (cluster, f"{GW_IP}:443"), m.string
    assert len(site_lines(t)) == n_site
    assert t.sidecar.stat("passthrough_total") == passthrough


def test_egress_gateways_https_passthrough_transparent(topo):
    """istio.io "Egress Gateways", HTTPS part, with the application's connection captured:
    the sidecar reads the SNI of its ClientHello and follows the mesh tls: route to the
    gateway's PASSTHROUGH port; with the gateway stopped, nothing reaches edition.cnn.com."""
    from conftest import REPO
    from gwlib import wait_until
    data = REPO / "tests" / "data" / "egress-gateways-https"
    t = topo
    n, gn = t.sidecar.stat("config_reloads_total"), t.gateway.stat("config_reloads_total")
    t.ctl.ok("apply", "-f", data / "01-serviceentry-cnn.yaml")
    t.ctl.ok("apply", "-f", data / "02-gateway-destinationrule-virtualservice-cnn.yaml")
    wait_until(lambda: '"l4_mode": "SNI"' in t.gateway.admin("/config_dump")[1], timeout=10,
               what="the gateway's PASSTHROUGH listener")
    wait_until(lambda: "|cnn|" in t.sidecar.admin("/config_dump")[1], timeout=10,
               what="the sidecar's mesh tls: route")
    assert t.sidecar.stat("config_reloads_total") > n and t.gateway.stat("config_reloads_total") > gn
    passthrough = t.sidecar.stat("passthrough_total")
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{CNN}/politics")
    assert r.stdout == "200", (r.stdout, r.stderr, t.sidecar.stderr()[-2000:])
    m = t.sidecar.wait_log(lambda m: m["sni"] == CNN and "|cnn|" in m["cluster"])
    assert (m["method"], m["code"], m["cluster"], m["uhost"], m["dlocal"]) == \
        ("-", "0", f"outbound|443|cnn|{EGW_HOST}", f"{GW_IP}:443", f"{CNN_IP}:443"), m.string
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN and m["method"] == "-")
    assert (g["cluster"], g["uhost"], g["flags"]) == \
        (f"outbound|443||{CNN}", f"{CNN_IP}:443", "-"), g.string
    assert int(g["rx"]) > 0 and int(g["tx"]) > 0, g.string
    assert t.sidecar.stat("passthrough_total") == passthrough
    assert_nameless_tls_is_refused(t, passthrough)
    assert_fails_without_the_gateway(t, f"outbound|443|cnn|{EGW_HOST}", passthrough)


def test_older_form_with_mutual_tls_to_the_gateway_transparent(topo):
    """The older form of the task, the application's connection captured: the sidecar
    wraps its TLS in ISTIO_MUTUAL to the gateway (the DestinationRule subset's tls), the
    gateway's protocol TLS server terminates that hop and sends the bytes inside by the
    tcp: route to edition.cnn.com; with the gateway stopped, nothing reaches it."""
    from conftest import REPO
    from gwlib import wait_until
    data = REPO / "tests" / "data"
    t = topo
    t.ctl.ok("apply", "-f", data / "egress-gateways-https" / "01-serviceentry-cnn.yaml")
    t.ctl.ok("apply", "-f", data / "egress-gateways-https-mutual" /
             "02-gateway-destinationrule-virtualservice-cnn.yaml")
    wait_until(lambda: "direct-cnn-through-egress-gateway" in
               t.gateway.admin("/config_dump")[1], timeout=10, what="the gateway's tcp: route")
    wait_until(lambda: "|cnn|" in t.sidecar.admin("/config_dump")[1], timeout=10,
               what="the sidecar's mesh tls: route")
    passthrough = t.sidecar.stat("passthrough_total")
    n_site = len(site_lines(t))
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{CNN}/politics")
    assert r.stdout == "200", (r.stdout, r.stderr, t.sidecar.stderr()[-2000:],
                               t.gateway.stderr()[-2000:])
    m = t.sidecar.wait_log(lambda m: m["sni"] == CNN and "|cnn|" in m["cluster"])
    assert (m["method"], m["code"], m["uhost"], m["dlocal"]) == \
        ("-", "0", f"{GW_IP}:443", f"{CNN_IP}:443"), m.string
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN and m["method"] == "-")
    assert (g["cluster"], g["uhost"], g["flags"]) == \
        (f"outbound|443||{CNN}", f"{CNN_IP}:443", "-"), g.string
    assert len(site_lines(t)) == n_site + 1
    assert t.sidecar.stat("passthrough_total") == passthrough
    assert_fails_without_the_gateway(t, f"outbound|443|cnn|{EGW_HOST}", passthrough)


PORTLESS_TLS_ROUTE = """apiVersion: networking.istio.io/v1alpha3
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
    name: tls
    protocol: TLS
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: cnn-tls-to-gateway
spec:
  hosts:
  - edition.cnn.com
  tls:
  - match:
    - sniHosts:
      - edition.cnn.com
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        port:
          number: 443
"""


def test_http_to_a_tls_routed_host_is_routed_as_http(topo):
    """A tls: route (any port) for edition.cnn.com does not make plain HTTP to it, which
    names its host in Host, look like an attempt to leave out the SNI: routed as HTTP."""
    t = topo
    n = t.sidecar.stat("config_reloads_total")
    t.ctl.ok("apply", "-f", "-", input=PORTLESS_TLS_ROUTE)
    t.sidecar.wait_reloads(n + 1)
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{CNN}/politics")
    assert r.stdout == "301", (r.stdout, r.stderr, t.sidecar.stderr()[-2000:])
    m = t.sidecar.wait_log(lambda m: m["authority"] == CNN)
    assert (m["code"], m["cluster"]) == ("301", f"outbound|80||{CNN}"), m.string
    # TLS to the same address without its name is still refused.
    r = t.in_app(["curl", "--max-time", "20", "-sSk", "-o", "/dev/null", "-w", "%{http_code}",
                  f"https://{CNN_IP}/politics"], user=NOBODY)
    assert r.stdout != "200", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["sni"] == "-" and m["dlocal"] == f"{CNN_IP}:443")
    assert m["flags"] == "NR", m.string
