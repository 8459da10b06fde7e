"""The Kubernetes Gateway API flavour of Istio's egress pages: the "Gateway API" tab of
"Egress Gateways with TLS Origination" (its YAML unchanged, in gwapi/), through the
sidecar and a gateway that a Gateway API Gateway selects; the same observable results as
the "Istio APIs" twin (test_sidecar.run_walkthrough); "Egress Gateways", HTTP and HTTPS
(TLS passthrough: TLSRoutes) parts; a TCP listener with a TCPRoute; both APIs at once for
different hosts; the refusals; route status as `egressctl get -o yaml` shows it."""
import os
import pathlib
import re
import subprocess
import time

import pytest

from gwlib import loopback_ip, wait_until
from sidecarlib import CNN, LOG_RE, Egressgw, NxDns, Site, cnn_site, demo_cert, heads, issue

GWAPI = pathlib.Path(__file__).parent / "gwapi"
GTW_HOST = "cnn-egress-gateway-istio.default.svc.cluster.local"
OTHER = "other.example.com"


class Topology:
    """edition.cnn.com (nginx), the gateway Istio would deploy for Gateway
    cnn-egress-gateway (deployment and service cnn-egress-gateway-istio in default, pods
    labelled gateway.networking.k8s.io/gateway-name=cnn-egress-gateway), the sleep pod's
    sidecar; optionally a classic istio-egressgateway and a second site."""

    def __init__(self, tmp, ctl, egressctl_bin, store, classic=False):
        self.tmp, self.ctl, self.store = tmp, ctl, store
        self.cnn_ip, self.gw_ip, self.other_ip, self.egw_ip = (loopback_ip() for _ in range(4))
        certs = tmp / "site-certs"
        certs.mkdir()
        cert, key, self.demo_ca = demo_cert(certs, CNN)
        self.cnn_cert, self.cnn_key = cert, key
        self.hosts = tmp / "hosts"
        self.hosts.write_text(f"{self.cnn_ip} {CNN}\n{self.gw_ip} {GTW_HOST}\n"
                              f"{self.other_ip} {OTHER}\n"
                              f"{self.egw_ip} istio-egressgateway.istio-system.svc.cluster.local\n")
        ca = tmp / "mesh-ca"
        gw_id = issue(egressctl_bin, ca, "default", "cnn-egress-gateway-istio", tmp / "gw-id",
                      create_ca=True)
        sleep_id = issue(egressctl_bin, ca, "default", "sleep", tmp / "sleep-id")
        self.procs, self.sites, self.dns = [], [], None
        try:
            self.sites.append(cnn_site(tmp, self.cnn_ip, cert, key))
            html = tmp / "other-html"
            html.mkdir()
            (html / "index.html").write_text("other site\n")
            self.sites.append(Site(tmp, "other", f"server {{ listen {self.other_ip}:80; "
                                   f"root {html}; }}", self.other_ip, 80))
            self.dns = NxDns(loopback_ip())
            env = {"SSL_CERT_FILE": str(self.demo_ca)}
            self.gateway = Egressgw(tmp, "gateway", "gateway", store, gw_id, self.hosts, self.dns,
                                    env=env, extra=["--namespace", "default", "--labels",
                                                    "gateway.networking.k8s.io/gateway-name="
                                                    "cnn-egress-gateway",
                                                    "--listen-address", self.gw_ip])
            self.procs.append(self.gateway)
            if classic:
                egw_id = issue(egressctl_bin, ca, "istio-system",
                               "istio-egressgateway-service-account", tmp / "egw-id")
                self.classic = Egressgw(tmp, "classic", "gateway", store, egw_id, self.hosts,
                                        self.dns, env=env,
                                        extra=["--namespace", "istio-system", "--labels",
                                               "istio=egressgateway", "--listen-address",
                                               self.egw_ip])
                self.procs.append(self.classic)
            self.outbound = _free_port()
            self.sidecar = Egressgw(tmp, "sidecar", "sidecar", store, sleep_id, self.hosts,
                                    self.dns, extra=["--namespace", "default", "--outbound",
                                                     f"127.0.0.1:{self.outbound}"])
            self.procs.append(self.sidecar)
        except BaseException:
            self.stop()
            raise

    def curl(self, *args):
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["http_proxy"] = env["https_proxy"] = f"http://127.0.0.1:{self.outbound}"
        env["CURL_CA_BUNDLE"] = str(self.demo_ca)
        return subprocess.run(["curl", "--max-time", "20", *args], capture_output=True,
                              text=True, env=env, timeout=30)

    def settle(self, want_url=f"http://{CNN}/politics", want="200", timeout=10.0):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            r = self.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", want_url)
            last = (r.stdout, r.stderr)
            if r.stdout == want:
                return
            time.sleep(0.1)
        raise AssertionError(f"never {want}: {last}\n{self.sidecar.stderr()[-2000:]}\n"
                             f"{self.gateway.stderr()[-2000:]}")

    def stop(self):
        rcs = [p.stop() for p in self.procs]
        for s in self.sites:
            s.stop()
        if self.dns:
            self.dns.stop()
        return rcs


def _free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store):
    t = Topology(tmp_path, ctl, egressctl_bin, store)
    yield t
    assert t.stop() == [0] * len(t.procs), "egressgw did not exit 0 on SIGTERM"


def apply_page(t):
    """The page's steps 1, 4, 6 and 7 (Gateway API tab), as the user applies them."""
    out = t.ctl.ok("apply", "-f", GWAPI / "01-serviceentry-cnn.yaml")
    assert "serviceentry.networking.istio.io/cnn created" in out
    out = t.ctl.ok("apply", "-f", GWAPI / "02-gateway-destinationrule-cnn.yaml")
    assert "gateway.gateway.networking.k8s.io/cnn-egress-gateway created" in out, out
    assert "destinationrule.networking.istio.io/egressgateway-for-cnn created" in out
    out = t.ctl.ok("apply", "-f", GWAPI / "03-httproutes-cnn.yaml")
    assert "httproute.gateway.networking.k8s.io/direct-cnn-to-egress-gateway created" in out
    assert "httproute.gateway.networking.k8s.io/forward-cnn-from-egress-gateway created" in out
    out = t.ctl.ok("apply", "-f", GWAPI / "04-destinationrule-originate-tls-cnn.yaml")
    assert "destinationrule.networking.istio.io/originate-tls-for-edition-cnn-com created" in out


def test_tls_origination_page_gateway_api_tab(topo):
    t = topo
    apply_page(t)
    t.settle()
    # Step 8: 200 OK, no 301 (the gateway originated TLS).
    r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert heads(r.stdout) == ["HTTP/1.1 200 OK"], r.stdout
    # The sidecar sent it to the gateway's service (HTTPRoute whose parent is the
    # ServiceEntry), the gateway to edition.cnn.com:443 (HTTPRoute on the Gateway).
    m = t.sidecar.wait_log(lambda m: m["authority"] == CNN and m["code"] == "200")
    assert m["cluster"] == f"outbound|80||{GTW_HOST}", m.string
    assert m["route"] == "default.direct-cnn-to-egress-gateway.0", m.string
    assert m["uhost"] == f"{t.gw_ip}:80", m.string
    # Step 10: the gateway's log line, as the page shows it.
    g = t.gateway.wait_log(lambda g: g["rid"] == m["rid"])
    assert (g["method"], g["path"], g["proto"], g["code"]) == \
        ("GET", "/politics", "HTTP/2", "200"), g.string
    assert g["cluster"] == f"outbound|443||{CNN}" and g["uhost"].endswith(":443"), g.string
    assert g["dlocal"] == f"{t.gw_ip}:80" and g["sni"] == CNN, g.string
    assert g["route"] == "default.forward-cnn-from-egress-gateway.0", g.string
    assert "peer identity spiffe://cluster.local/ns/default/sa/sleep" in t.gateway.stderr()
    # istioctl proxy-config shows the route under the VirtualService Istio generates.
    out = t.ctl.ok("proxy-config", "route", f"127.0.0.1:{t.gateway.admin_port}")
    assert re.search(r"^\S+\s+edition\.cnn\.com:80\s+edition\.cnn\.com\s+/\*\s+"
                     r"forward-cnn-from-egress-gateway-0-istio-autogenerated-k8s-gateway\.default$",
                     out, re.M), out

    # The gateway cannot be bypassed: with it stopped the request fails, it does not go
    # straight to edition.cnn.com.
    n_gw = len(t.gateway.log_lines())
    assert t.gateway.stop() == 0
    t.procs.remove(t.gateway)
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{CNN}/politics")
    assert r.stdout == "503", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["code"] == "503")
    assert m["cluster"] == f"outbound|80||{GTW_HOST}" and "UF" in m["flags"], m.string
    assert len(t.gateway.log_lines()) == n_gw

    # Cleanup, as the page writes it.
    for args, what in [
        (("delete", "serviceentry", "cnn"), 'serviceentry.networking.istio.io "cnn" deleted'),
        (("delete", "gtw", "cnn-egress-gateway"),
         'gateway.gateway.networking.k8s.io "cnn-egress-gateway" deleted'),
        (("delete", "httproute", "direct-cnn-to-egress-gateway"),
         'httproute.gateway.networking.k8s.io "direct-cnn-to-egress-gateway" deleted'),
        (("delete", "httproute", "forward-cnn-from-egress-gateway"),
         'httproute.gateway.networking.k8s.io "forward-cnn-from-egress-gateway" deleted'),
        (("delete", "destinationrule", "egressgateway-for-cnn"),
         'destinationrule.networking.istio.io "egressgateway-for-cnn" deleted'),
        (("delete", "destinationrule", "originate-tls-for-edition-cnn-com"),
         'destinationrule.networking.istio.io "originate-tls-for-edition-cnn-com" deleted'),
    ]:
        assert what in t.ctl.ok(*args)


def test_gateway_api_gateway_and_istio_gateway_are_kept_apart(topo):
    t = topo
    apply_page(t)
    out = t.ctl.ok("get", "gtw")
    assert re.search(r"^cnn-egress-gateway\s", out, re.M), out
    r = t.ctl("get", "gw")
    assert r.err.startswith("No resources found"), (r.out, r.err)
    out = t.ctl.ok("get", "gateways.gateway.networking.k8s.io", "-o", "name")
    assert out == "gateway.gateway.networking.k8s.io/cnn-egress-gateway\n", out
    # An Istio Gateway of the same name is another object.
    t.ctl.ok("apply", "-f", "-", input="apiVersion: networking.istio.io/v1\nkind: Gateway\n"
             "metadata:\n  name: cnn-egress-gateway\nspec:\n  selector:\n    istio: none\n"
             "  servers:\n  - port: {number: 81, name: http, protocol: HTTP}\n"
             "    hosts: ['*']\n")
    assert "gateway.networking.istio.io \"cnn-egress-gateway\" deleted" in \
        t.ctl.ok("delete", "gw", "cnn-egress-gateway")
    assert re.search(r"^cnn-egress-gateway\s", t.ctl.ok("get", "gtw"), re.M)


def test_route_status_is_shown_by_get_o_yaml(topo):
    t = topo
    apply_page(t)
    out = t.ctl.ok("get", "httproute", "forward-cnn-from-egress-gateway", "-o", "yaml")
    st = out[out.index("\nstatus:"):]
    assert "parentRef:" in st and "name: cnn-egress-gateway" in st, out
    assert re.search(r"type: Accepted\n", st) and re.search(r"type: ResolvedRefs\n", st), st
    assert "reason: NoMatchingParent" not in st and "status: \"False\"" not in st, st
    assert "controllerName: istio.io/gateway-controller" in st, st
    # A parent that does not exist: Accepted False, NoMatchingParent; a Service in another
    # namespace without a ReferenceGrant: ResolvedRefs False, RefNotPermitted.
    r = t.ctl("apply", "-f", "-", input="""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: dangling
spec:
  parentRefs:
  - name: no-such-gateway
  rules:
  - backendRefs:
    - name: my-nginx
      namespace: mesh-external
      port: 443
""")
    assert r.rc == 0, r.err
    out = t.ctl.ok("get", "httproute", "dangling", "-o", "yaml")
    assert "reason: NoMatchingParent" in out and "reason: RefNotPermitted" in out, out
    assert "status: \"False\"" in out, out
    # The proxies log it too, at the field.
    deadline = time.time() + 10
    want = "HTTPRoute default/dangling: parentRefs[0]: not accepted (NoMatchingParent)"
    while (want not in t.gateway.stderr() or want not in t.sidecar.stderr()) and \
            time.time() < deadline:
        time.sleep(0.1)
    assert want in t.gateway.stderr() and want in t.sidecar.stderr(), t.gateway.stderr()[-2000:]
    assert re.search(r"warn config: \S+/dangling\.yaml:\d+:\d+: warning: " + re.escape(want),
                     t.gateway.stderr()), \
        t.gateway.stderr()[-2000:]
    # analyze says the same, with istioctl's code and the place.
    r = t.ctl("analyze", "-o", "json")
    assert r.rc == 79, (r.out, r.err)
    assert '"code":"IST0101"' in r.out.replace(" ", "") and "Gateway default/no-such-gateway " \
        "not found" in r.out and "RefNotPermitted" in r.out, r.out
    assert "httproutes.gateway.networking.k8s.io/dangling.yaml:" in r.out, r.out
    # The ReferenceGrant of the mutual TLS part of the page makes the reference resolve.
    t.ctl.ok("create", "namespace", "mesh-external")
    t.ctl.ok("apply", "-f", "-", input="""apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: my-nginx-reference-grant
  namespace: mesh-external
spec:
  from:
    - group: gateway.networking.k8s.io
      kind: HTTPRoute
      namespace: default
  to:
    - group: ""
      kind: Service
      name: my-nginx
""")
    out = t.ctl.ok("get", "httproute", "dangling", "-o", "yaml")
    assert "reason: RefNotPermitted" not in out and "reason: ResolvedRefs" in out, out
    # The tables kubectl shows for these kinds.
    out = t.ctl.ok("get", "gtw")
    assert re.match(r"NAME\s+CLASS\s+ADDRESS\s+PROGRAMMED\s+AGE\ncnn-egress-gateway\s+istio\s+True\s",
                    out), out
    out = t.ctl.ok("get", "httproutes")
    assert re.search(r'^forward-cnn-from-egress-gateway\s+\["edition.cnn.com"\]\s', out, re.M), out


def test_both_apis_for_different_hosts(tmp_path, ctl, egressctl_bin, store):
    """edition.cnn.com through the Gateway API gateway, other.example.com through the
    classic istio-egressgateway with the Istio APIs, in one store."""
    t = Topology(tmp_path, ctl, egressctl_bin, store, classic=True)
    try:
        apply_page(t)
        ctl.ok("apply", "-f", "-", input=f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: other
spec:
  hosts: [{OTHER}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
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
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{OTHER}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: other-through-egress-gateway
spec:
  hosts: [{OTHER}]
  gateways: [istio-egressgateway, mesh]
  http:
  - match:
    - gateways: [mesh]
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        port: {{number: 80}}
  - match:
    - gateways: [istio-egressgateway]
      port: 80
    route:
    - destination:
        host: {OTHER}
        port: {{number: 80}}
""")
        t.settle()
        # other.example.com answers 200 straight (ALLOW_ANY) until the routes are in
        # force: wait for the classic gateway to see it.
        deadline = time.time() + 20
        while not t.classic.log_lines() and time.time() < deadline:
            t.curl("-sS", "-o", "/dev/null", f"http://{OTHER}/")
            time.sleep(0.1)
        n_classic = len(t.classic.log_lines())
        r = t.curl("-sS", f"http://{OTHER}/")
        assert r.stdout == "other site\n", (r.stdout, r.stderr)
        t.classic.wait_log(lambda g: len(t.classic.log_lines()) > n_classic)
        c = LOG_RE.match(t.classic.log_lines()[n_classic])
        assert c["authority"] == OTHER, c.string
        assert c["cluster"] == f"outbound|80||{OTHER}" and c["code"] == "200", c.string
        g = t.gateway.wait_log(lambda g: g["authority"] == CNN and g["code"] == "200")
        assert g["cluster"] == f"outbound|443||{CNN}", g.string
        # Neither gateway saw the other's host.
        assert not [ln for ln in t.gateway.log_lines() if OTHER in ln]
        assert not [ln for ln in t.classic.log_lines() if CNN in ln]
    finally:
        assert t.stop() == [0] * len(t.procs)


@pytest.mark.parametrize("doc,want", [
    ("""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: g}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x, value: y}]}
    backendRefs: [{name: s, port: 80}]
""", "<stdin>:8:13: HTTPRoute default/r: spec.rules[0].filters[0].type: RequestHeaderModifier "
     "is not applied by the request core yet (refused rather than accepted and ignored)"),
    ("""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: g, sectionNam: x}]
""", "<stdin>:5:26: HTTPRoute default/r: spec.parentRefs[0].sectionNam: unknown field"),
    ("""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g}
spec:
  gatewayClassName: istio
  listeners:
  - name: tls
    port: 443
    protocol: TLS
    tls: {mode: Terminate, certificateRefs: [{name: c}]}
""", "<stdin>:10:10: Gateway default/g: spec.listeners[0].tls: a TLS listener is served with "
     "tls.mode Passthrough only (Terminate is not served yet; use protocol HTTPS)"),
    ("""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g}
spec:
  gatewayClassName: istio
  listeners:
  - {name: dns, port: 53, protocol: UDP}
""", "<stdin>:7:37: Gateway default/g: spec.listeners[0].protocol: UDP listeners are not "
     "served by egressgw yet"),
    ("""apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: t}
spec:
  parentRefs: [{name: g}]
  hostnames: [a.example.com]
  rules: [{backendRefs: [{name: s, port: 9000}]}]
""", "<stdin>:6:3: TCPRoute default/t: spec.hostnames: unknown field"),
    ("""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: g}]
  rules:
  - timeouts: {backendRequest: 2s}
    backendRefs: [{kind: Hostname, group: networking.istio.io, name: a.example.com}]
""", "spec.rules[0].backendRefs[0].port: must be specified for a Hostname reference"),
])
def test_what_egressgw_cannot_serve_is_refused(ctl, doc, want):
    r = ctl("apply", "-f", "-", input=doc)
    assert r.rc != 0 and want in r.err, r.err
    assert ctl("get", "httproute,gtw,tcproute", "-A").err.startswith("No resources found")


def test_egress_gateways_page_http_part_gateway_api_tab(topo):
    """"Egress Gateways", HTTP traffic, Gateway API tab: the 301 comes back through the
    gateway, whose log line is the page's (HTTP/1.1, outbound|80||edition.cnn.com, route
    default.forward-cnn-from-egress-gateway.0)."""
    t = topo
    for f in ("eg-01-serviceentry-cnn.yaml", "eg-02-gateway-cnn.yaml", "eg-03-httproutes-cnn.yaml"):
        t.ctl.ok("apply", "-f", GWAPI / f)
    # A 301 also comes straight from the site before the routes are in force: wait for
    # the gateway to see one.
    deadline = time.time() + 10
    while not t.gateway.log_lines() and time.time() < deadline:
        t.curl("-sS", "-o", "/dev/null", f"http://{CNN}/politics")
        time.sleep(0.1)
    n_sidecar = len(t.sidecar.log_lines())
    r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert heads(r.stdout)[0] == "HTTP/1.1 301 Moved Permanently", r.stdout
    assert re.search(rf"^location: https://{CNN}/politics\r?$", r.stdout, re.M | re.I), r.stdout
    assert heads(r.stdout)[-1] == "HTTP/1.1 200 OK", r.stdout
    t.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
    m = LOG_RE.match(t.sidecar.log_lines()[n_sidecar])
    assert m["code"] == "301" and m["cluster"] == f"outbound|80||{GTW_HOST}", m.string
    assert m["route"] == "default.direct-cnn-to-egress-gateway.0", m.string
    g = t.gateway.wait_log(lambda g: g["rid"] == m["rid"])
    assert (g["method"], g["path"], g["proto"], g["code"]) == \
        ("GET", "/politics", "HTTP/1.1", "301"), g.string
    assert g["cluster"] == f"outbound|80||{CNN}" and g["uhost"] == f"{t.cnn_ip}:80", g.string
    assert g["dlocal"] == f"{t.gw_ip}:80", g.string
    assert g["route"] == "default.forward-cnn-from-egress-gateway.0", g.string


def log_after(proc, n, pred):
    """The first access log line of proc after its first n for which pred is true."""
    def find():
        for line in proc.log_lines()[n:]:
            m = LOG_RE.match(line)
            if m and pred(m):
                return m
        return None
    wait_until(lambda: find() is not None, what=f"{proc.name} access log line")
    return find()


def test_egress_gateways_page_https_part_gateway_api_tab(topo):
    """"Egress Gateways", HTTPS traffic, Gateway API tab (a TLS Passthrough listener, a
    TLSRoute from the ServiceEntry to the gateway, one from the gateway to the site), its
    YAML unchanged: the same observable results as the Istio-API twin
    (test_passthrough.test_egress_gateways_https_passthrough): the application's own TLS
    reaches edition.cnn.com through the gateway, which logs the connection by SNI; the
    gateway stopped, the request fails and nothing reaches the site."""
    from test_passthrough import cnn_tls_site, site_lines
    t = topo
    # The site as test_passthrough's: it logs the SNI and TLS session it served.
    t.sites[0].stop()
    site = t.sites[0] = cnn_tls_site(t.tmp, t.cnn_ip, t.cnn_cert, t.cnn_key)
    t.ctl.ok("apply", "-f", GWAPI / "eg-https-01-serviceentry-cnn.yaml")
    out = t.ctl.ok("apply", "-f", GWAPI / "eg-https-gateway-tlsroutes-cnn.yaml")
    assert "gateway.gateway.networking.k8s.io/cnn-egress-gateway created" in out, out
    assert "tlsroute.gateway.networking.k8s.io/direct-cnn-to-egress-gateway created" in out
    assert "tlsroute.gateway.networking.k8s.io/forward-cnn-from-egress-gateway created" in out
    assert "Warning" not in out, out
    st = t.ctl.ok("get", "tlsroute", "forward-cnn-from-egress-gateway", "-o", "yaml")
    assert "reason: Accepted" in st and "reason: ResolvedRefs" in st, st
    deadline = time.time() + 10
    while not t.gateway.log_lines() and time.time() < deadline:
        t.curl("-sS", "-o", "/dev/null", f"https://{CNN}/politics")
        time.sleep(0.1)
    n_side, n_gw, n_site = len(t.sidecar.log_lines()), len(t.gateway.log_lines()), \
        len(site_lines(site))
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{CNN}/politics")
    assert r.stdout == "200", (r.stdout, r.stderr, t.sidecar.stderr()[-2000:],
                               t.gateway.stderr()[-2000:])
    # The sidecar sent it to the gateway's Service by the mesh tls: route...
    m = log_after(t.sidecar, n_side, lambda m: m["method"] == "CONNECT")
    assert (m["code"], m["cluster"], m["uhost"]) == \
        ("200", f"outbound|443||{GTW_HOST}", f"{t.gw_ip}:443"), m.string
    # ...the gateway passed it through by SNI to edition.cnn.com...
    g = log_after(t.gateway, n_gw, lambda g: g["sni"] == CNN)
    assert (g["method"], g["path"], g["proto"], g["code"]) == ("-", "-", "-", "0"), g.string
    assert (g["cluster"], g["uhost"]) == (f"outbound|443||{CNN}", f"{t.cnn_ip}:443"), g.string
    assert g["dlocal"] == f"{t.gw_ip}:443", g.string
    assert int(g["rx"]) > 0 and int(g["tx"]) > 0, g.string
    # ...and the site served the application's own TLS (curl verified its certificate).
    wait_until(lambda: len(site_lines(site)) > n_site, what="nginx log line")
    line = site_lines(site)[-1]
    assert f"sni={CNN} " in line and 'req="GET /politics HTTP/1.1" status=200' in line, line

    # The gateway stopped: the request fails and nothing reaches edition.cnn.com.
    assert t.gateway.stop() == 0
    t.procs.remove(t.gateway)
    n_side, n_site = len(t.sidecar.log_lines()), len(site_lines(site))
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{CNN}/politics")
    assert r.returncode != 0 and r.stdout != "200", (r.stdout, r.stderr)
    m = log_after(t.sidecar, n_side, lambda m: m["method"] == "CONNECT" and m["code"] == "503")
    assert (m["flags"], m["cluster"]) == ("UF", f"outbound|443||{GTW_HOST}"), m.string
    assert len(site_lines(site)) == n_site, site_lines(site)


def test_matches_and_redirect_in_the_sidecar(topo):
    """The page's configuration with the mesh route replaced by one with matches: an
    element-wise PathPrefix, a header, a RequestRedirect that keeps the path."""
    t = topo
    apply_page(t)
    t.settle()
    t.ctl.ok("apply", "-f", "-", input="""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: direct-cnn-to-egress-gateway
spec:
  parentRefs:
  - kind: ServiceEntry
    group: networking.istio.io
    name: cnn
  rules:
  - matches:
    - path: {type: PathPrefix, value: /old}
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: other.example.com, statusCode: 301}
  - matches:
    - path: {type: PathPrefix, value: /politics/}
      headers: [{name: X-Team, value: news}]
    - path: {type: Exact, value: /politics}
    backendRefs:
    - name: cnn-egress-gateway-istio
      port: 80
""")
    t.settle(f"http://{CNN}/old/a?b=1", "301")
    r = t.curl("-sS", "-o", "/dev/null", "-D", "-", f"http://{CNN}/old/a?b=1")
    assert re.search(r"^location: http://other\.example\.com/old/a\?b=1\r?$", r.stdout,
                     re.M | re.I), r.stdout
    # The same redirect to an HTTP/2 client (h2c, prior knowledge): HEADERS built from the
    # redirect's fields (h2d_send_reply), no HTTP/1.1 text in between.
    r = t.curl("-sS", "--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
               f"{CNN}:80:127.0.0.1:{t.outbound}", "-o", "/dev/null", "-D", "-",
               f"http://{CNN}/old/a?b=1")
    assert r.stdout.startswith("HTTP/2 301"), (r.stdout, r.stderr)
    assert re.search(r"^location: http://other\.example\.com/old/a\?b=1\r?$", r.stdout,
                     re.M), r.stdout
    assert re.search(r"^content-length: 0\r?$", r.stdout, re.M), r.stdout
    code = lambda path, *h: t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                   *[a for x in h for a in ("-H", x)],
                                   f"http://{CNN}{path}").stdout
    assert code("/politics") == "200"
    assert code("/politics/index.html", "X-Team: news") == "404"   # reached the site: 404
    m = t.gateway.wait_log(lambda g: g["path"] == "/politics/index.html")
    assert m["code"] == "404" and m["details"] == "via_upstream", m.string
    # Without the header, and for /politicsX (not an element of /politics/), no route.
    for path, hdr in (("/politics/index.html", ()), ("/politicsX", ("X-Team: news",))):
        assert code(path, *hdr) == "404"
        m = t.sidecar.wait_log(lambda m: m["path"] == path and m["flags"] == "NR")
        assert m["details"] == "route_not_found", m.string
    assert not [ln for ln in t.gateway.log_lines() if "/politicsX" in ln]


def test_delete_f_deletes_the_kind_of_the_documents_group(ctl):
    """delete -f of the page's Gateway API Gateway leaves an Istio Gateway of the same
    name alone (and the other way round)."""
    ctl.ok("apply", "-f", GWAPI / "eg-02-gateway-cnn.yaml")
    istio_gw = ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n"
                "  name: cnn-egress-gateway\nspec:\n  selector: {istio: x}\n  servers:\n"
                "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n")
    ctl.ok("apply", "-f", "-", input=istio_gw)
    out = ctl.ok("delete", "-f", GWAPI / "eg-02-gateway-cnn.yaml")
    assert out == 'gateway.gateway.networking.k8s.io "cnn-egress-gateway" deleted\n', out
    assert ctl.ok("get", "gw", "-o", "name") == "gateway.networking.istio.io/cnn-egress-gateway\n"
    assert ctl("get", "gtw").err.startswith("No resources found")
    out = ctl.ok("delete", "-f", "-", input=istio_gw)
    assert out == 'gateway.networking.istio.io "cnn-egress-gateway" deleted\n', out


def test_a_gateway_of_another_class_is_reported_not_served(ctl):
    r = ctl("apply", "-f", "-", input="apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
            "metadata: {name: g}\nspec:\n  gatewayClassName: envoy\n"
            "  listeners: [{name: h, port: 80, protocol: HTTP}]\n")
    assert r.rc == 0 and "gateway.gateway.networking.k8s.io/g created" in r.out, r.err
    assert ('Warning: <stdin>:5:21: Gateway default/g: spec.gatewayClassName: class "envoy" is '
            'not istio: egressgw does not serve this Gateway (nor its routes)') in r.err, r.err
    out = ctl("get", "gtw", "g", "-o", "yaml").out
    assert "reason: InvalidParameters" in out and 'status: "False"' in out, out


def test_https_listener_terminates_with_the_certificate_ref_secret(topo):
    """An HTTPS listener (tls.mode Terminate, certificateRefs: a Secret in the Gateway's
    namespace) is served with that Secret, as a credentialName: a client speaking TLS to
    the gateway directly reaches edition.cnn.com through it."""
    t = topo
    t.ctl.ok("apply", "-f", GWAPI / "01-serviceentry-cnn.yaml")
    t.ctl.ok("apply", "-f", GWAPI / "04-destinationrule-originate-tls-cnn.yaml")
    assert "secret/cnn-cert created" in t.ctl.ok(
        "create", "secret", "tls", "cnn-cert", "--cert", t.cnn_cert, "--key", t.cnn_key)
    t.ctl.ok("apply", "-f", "-", input="""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: cnn-egress-gateway
spec:
  gatewayClassName: istio
  listeners:
  - name: https
    hostname: edition.cnn.com
    port: 8443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - name: cnn-cert
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: forward-cnn-from-egress-gateway
spec:
  parentRefs:
  - name: cnn-egress-gateway
    sectionName: https
  hostnames:
  - edition.cnn.com
  rules:
  - backendRefs:
    - kind: Hostname
      group: networking.istio.io
      name: edition.cnn.com
      port: 443
""")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    cmd = ["curl", "-sS", "--max-time", "10", "--cacert", str(t.demo_ca), "--resolve",
           f"{CNN}:8443:{t.gw_ip}", "-o", "/dev/null", "-w", "%{http_code}",
           f"https://{CNN}:8443/politics"]
    deadline = time.time() + 10
    while True:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        if r.stdout == "200" or time.time() > deadline:
            break
        time.sleep(0.1)
    assert r.stdout == "200", (r.stdout, r.stderr, t.gateway.stderr()[-2000:])
    g = t.gateway.wait_log(lambda g: g["path"] == "/politics")
    assert g["cluster"] == f"outbound|443||{CNN}" and g["sni"] == CNN, g.string
    assert g["dlocal"] == f"{t.gw_ip}:8443", g.string
    assert g["route"] == "default.forward-cnn-from-egress-gateway.0", g.string


TCP_GWAPI = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [{OTHER}]
  ports: [{{number: 9000, name: tcp, protocol: TCP}}]
  resolution: DNS
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: cnn-egress-gateway}}
spec:
  gatewayClassName: istio
  listeners:
  - {{name: tcp, port: 9000, protocol: TCP}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: echo}}
spec:
  parentRefs: [{{name: cnn-egress-gateway, sectionName: tcp}}]
  rules:
  - backendRefs: [{{kind: Hostname, group: networking.istio.io, name: {OTHER}, port: 9000}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: wrong-listener}}
spec:
  parentRefs: [{{name: cnn-egress-gateway, sectionName: tcp}}]
  rules:
  - backendRefs: [{{kind: Hostname, group: networking.istio.io, name: {OTHER}, port: 9000}}]
"""


def test_tcp_listener_and_tcproute_through_the_gateway(topo):
    """A Gateway API TCP listener with a TCPRoute: the gateway's tcp: route carries the
    bytes both ways to the backend (a server-first protocol) and logs the connection; a
    TLSRoute on that TCP listener is not accepted (NotAllowedByListeners), and says so."""
    import socket
    import threading
    t = topo
    srv = socket.socket()
    srv.bind((t.other_ip, 9000))
    srv.listen(4)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.sendall(b"hello first\n")
                while (data := c.recv(4096)):
                    c.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    try:
        r = t.ctl("apply", "-f", "-", input=TCP_GWAPI)
        assert r.rc == 0, r.err
        assert "tcproute.gateway.networking.k8s.io/echo created" in r.out, r.out
        st = t.ctl.ok("get", "tlsroute", "wrong-listener", "-o", "yaml")
        assert "reason: NotAllowedByListeners" in st, st
        an = t.ctl("analyze")
        assert "(TLSRoute default/wrong-listener) parentRefs[0] not accepted " \
            "(NotAllowedByListeners)" in an.out, an.out + an.err
        st = t.ctl.ok("get", "tcproute", "echo", "-o", "yaml")
        assert "reason: Accepted" in st and 'status: "True"' in st, st
        wait_until(lambda: _connects(t.gw_ip, 9000), timeout=10, what="gateway on :9000")
        with socket.create_connection((t.gw_ip, 9000), timeout=5) as s:
            f = s.makefile("rb")
            assert f.readline() == b"hello first\n"
            s.sendall(b"ping\n")
            assert f.readline() == b"ping\n"
            s.shutdown(socket.SHUT_WR)
            assert f.read() == b""
        g = log_after(t.gateway, 0, lambda g: g["cluster"] == f"outbound|9000||{OTHER}")
        assert (g["method"], g["code"], g["uhost"]) == ("-", "0", f"{t.other_ip}:9000"), \
            g.string
        assert g["dlocal"] == f"{t.gw_ip}:9000", g.string
    finally:
        srv.close()


def _connects(ip, port):
    import socket
    try:
        socket.create_connection((ip, port), timeout=1).close()
        return True
    except OSError:
        return False
