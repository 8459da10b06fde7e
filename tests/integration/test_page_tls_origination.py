"""istio.io's "Egress TLS Origination" task, with its YAML unchanged
(tests/data/egress-tls-origination), on loopback.

The sleep pod is curl with the sidecar as its http_proxy/https_proxy; edition.cnn.com is
an nginx on a loopback address of its own (hosts file) that answers port 80 with a 301 to
https and serves /politics on 443 (HTTP/2 and HTTP/1.1, a certificate from a test CA the
sidecar trusts through SSL_CERT_FILE, as Envoy trusts the system roots). nginx logs, per
request, the port, the SNI and the request, so the test sees what the page only describes:
after the DestinationRule, the application's plain-HTTP request leaves the sidecar as TLS
to port 443 (targetPort), and port 80 is never used.

Steps, as the page has them: (1) ServiceEntry only: curl -L on http:// shows the 301 and
then the HTTPS answer; (2) ServiceEntry with targetPort 443 + DestinationRule SIMPLE on
port 80: the same curl shows 200 with no redirect, https:// still works (the
application's own TLS, tunnelled); (3) the page's cleanup (kubectl delete), after which
the 301 is back (the mesh's default outbound policy, ALLOW_ANY); (4) mutual TLS
origination at the sidecar: the page's client-credential Secret and DestinationRule
(workloadSelector app: sleep) against an nginx requiring client certificates, plain
http://my-nginx...:443 from the application answered by nginx's welcome page.

test_page_egress_tls_origination_transparent runs the same steps as in a pod: curl with
no proxy settings, its connections redirected to the sidecar by iptables (capturelib.py's
namespaces); the page's own output there (https:// answers "HTTP/2 200" with no CONNECT
line before it)."""
import re

import pytest

from capturelib import EXT_ADDRS, OUTBOUND, Capture, nets  # noqa: F401 (nets: fixture)
from conftest import REPO
from pagelib import apply_wait, sleep_curl
from gwlib import free_port, loopback_ip, wait_until
from sidecarlib import CNN, NGINX_HOST, Egressgw, NxDns, Site, demo_cert, heads, issue, mtls_site

DATA = REPO / "tests" / "data" / "egress-tls-origination"


# A stand-in for the page's Kubernetes Service my-nginx (see step 4).
MY_NGINX_SERVICE = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: my-nginx
spec:
  hosts:
  - {NGINX_HOST}
  ports:
  - number: 443
    name: http
    protocol: HTTP
  resolution: DNS
"""


def cnn_site(tmp, ip, cert, key, ns=None):
    """edition.cnn.com (in namespace ns, or here): 80 answers 301 to https, 443 serves
    /politics; one log line per request with the port, SNI, protocol and request."""
    html = tmp / "cnn-html"
    html.mkdir(exist_ok=True)
    (html / "politics").write_text("<html><body>CNN politics (test)</body></html>\n")
    log = tmp / "cnn.log"
    body = f"""
  log_format portinfo 'port=$server_port sni=$ssl_server_name tls=$ssl_protocol '
                      'req="$request" status=$status';
  access_log {log} portinfo;
  server {{ listen {ip}:80; server_name {CNN};
           location / {{ return 301 https://$host$request_uri; }} }}
  server {{ listen {ip}:443 ssl http2; server_name {CNN}; root {html};
           ssl_certificate {cert}; ssl_certificate_key {key}; }}
"""
    site = Site(tmp, "cnn", body, ip, 443, ns=ns)
    site.log = log
    return site


def site_lines(site):
    return site.log.read_text().splitlines() if site.log.exists() else []


class Topo:
    """The page's world on loopback, curl using the sidecar as its proxy; or, with nets
    (capturelib.Namespaces), the sites in nets.ext, the sidecar in nets.app with the
    iptables rules, and curl captured (self.cap)."""

    def __init__(self, tmp, ctl, egressctl_bin, store, certs_dir, nets=None):
        self.tmp, self.ctl, self.certs = tmp, ctl, certs_dir
        self.cap = None
        if nets:
            self.cnn_ip, self.nginx_ip = EXT_ADDRS[0], EXT_ADDRS[1]
        else:
            self.cnn_ip, self.nginx_ip = loopback_ip(), loopback_ip()
        ext, app = (nets.ext, nets.app) if nets else (None, None)
        certs = tmp / "site-certs"
        certs.mkdir()
        cert, key, self.demo_ca = demo_cert(certs, CNN)
        hosts = tmp / "hosts"
        hosts.write_text(f"{self.cnn_ip} {CNN}\n{self.nginx_ip} {NGINX_HOST}\n")
        sleep_id = issue(egressctl_bin, tmp / "mesh-ca", "default", "sleep", tmp / "sleep-id",
                         create_ca=True)
        self.site = self.nginx = self.dns = self.sidecar = None
        try:
            self.site = cnn_site(tmp, self.cnn_ip, cert, key, ns=ext)
            self.nginx = mtls_site(tmp, self.nginx_ip, certs_dir, ns=ext)
            self.dns = NxDns("127.0.0.53", ns=app) if nets else NxDns(loopback_ip())
            self.outbound = OUTBOUND if nets else free_port()
            self.sidecar = Egressgw(tmp, "sidecar", "sidecar", store, sleep_id, hosts, self.dns,
                                    ns=app, env={"SSL_CERT_FILE": str(self.demo_ca)},
                                    extra=["--namespace", "default", "--labels", "app=sleep",
                                           "--outbound", f"127.0.0.1:{self.outbound}",
                                           "--outbound-policy", "ALLOW_ANY"])
            if nets:
                self.cap = Capture(nets, egressctl_bin, self.demo_ca,
                                   {(CNN, 80): self.cnn_ip, (CNN, 443): self.cnn_ip,
                                    (NGINX_HOST, 443): self.nginx_ip})
                self.cap.apply()
        except BaseException:
            self.stop()
            raise

    def curl(self, *args):
        if self.cap:
            return self.cap.curl(*args, max_time=15)
        return sleep_curl(self.outbound, self.demo_ca, *args)

    def apply(self, path):
        return apply_wait(self.ctl, path, self.sidecar)

    def stop(self):
        rc = self.sidecar.stop() if self.sidecar else 0
        if self.cap:
            r, rules = self.cap.clean()
            assert r.returncode == 0 and "EGRESSGW" not in rules, (r.stdout, r.stderr, rules)
        for site in (self.site, self.nginx):
            if site:
                site.stop()
        if self.dns:
            self.dns.stop()
        return rc


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store, walkthrough_certs):
    t = Topo(tmp_path, ctl, egressctl_bin, store, walkthrough_certs)
    yield t
    assert t.stop() == 0, "egressgw did not exit 0 on SIGTERM"


def new_site_lines(t, n):
    wait_until(lambda: len(site_lines(t.site)) > n, what="nginx log line")
    return site_lines(t.site)[n:]


def test_page_egress_tls_origination(topo):
    run_page(topo)


def test_page_egress_tls_origination_transparent(tmp_path, nets, ctl, egressctl_bin, store,
                                                 walkthrough_certs):
    t = Topo(tmp_path, ctl, egressctl_bin, store, walkthrough_certs, nets=nets)
    try:
        run_page(t)
    finally:
        assert t.stop() == 0, "egressgw did not exit 0 on SIGTERM"


def run_page(t):
    """The page's steps; t.cap: curl captured (the page's output for https:// is then
    "HTTP/2 200" alone, and the sidecar logs the application's TLS as Envoy's TCP line:
    - - -, code 0, its SNI), else curl's https_proxy is the sidecar (a CONNECT first)."""
    https_heads = ["HTTP/2 200 "] if t.cap else ["HTTP/1.1 200 Connection established",
                                                 "HTTP/2 200 "]
    # 1. snip_apply_simple, snip_curl_simple: 301 from port 80, then HTTP/2 200 over https.
    out = t.apply(DATA / "01-serviceentry-cnn.yaml")
    assert "serviceentry.networking.istio.io/edition-cnn-com created" in out, out
    n = len(site_lines(t.site))
    r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
    assert r.returncode == 0, (r.stdout, r.stderr, t.sidecar.stderr()[-2000:])
    assert heads(r.stdout) == ["HTTP/1.1 301 Moved Permanently", *https_heads], r.stdout
    assert re.search(rf"^location: https://{re.escape(CNN)}/politics\r?$", r.stdout,
                     re.M | re.I), r.stdout
    lines = new_site_lines(t, n)
    assert len(lines) == 2, lines
    assert lines[0] == 'port=80 sni=- tls=- req="GET /politics HTTP/1.1" status=301', lines
    assert re.fullmatch(rf'port=443 sni={re.escape(CNN)} tls=TLSv1\.[23] '
                        r'req="GET /politics HTTP/2\.0" status=200', lines[1]), lines
    m = t.sidecar.wait_log(lambda m: m["method"] == "GET" and m["code"] == "301")
    assert (m["path"], m["cluster"], m["uhost"]) == \
        ("/politics", f"outbound|80||{CNN}", f"{t.cnn_ip}:80"), m.string
    if t.cap:
        m = t.sidecar.wait_log(lambda m: m["sni"] == CNN)
        assert (m["method"], m["code"], m["cluster"], m["uhost"]) == \
            ("-", "0", f"outbound|443||{CNN}", f"{t.cnn_ip}:443"), m.string
    else:
        m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
        assert (m["code"], m["cluster"]) == ("200", f"outbound|443||{CNN}"), m.string

    # 2. snip_apply_origination, snip_curl_origination_http: no redirect any more; the
    # sidecar sent the plain-HTTP request as TLS to port 443 (targetPort), with SNI.
    out = t.apply(DATA / "02-serviceentry-destinationrule-origination.yaml")
    assert "serviceentry.networking.istio.io/edition-cnn-com configured" in out, out
    assert "destinationrule.networking.istio.io/edition-cnn-com created" in out, out
    assert "Warning" not in out, out
    n, n_log = len(site_lines(t.site)), len(t.sidecar.log_lines())
    r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
    assert r.returncode == 0, (r.stdout, r.stderr, t.sidecar.stderr()[-2000:])
    assert heads(r.stdout) == ["HTTP/1.1 200 OK"], r.stdout
    lines = new_site_lines(t, n)
    assert len(lines) == 1 and lines[0].startswith(f"port=443 sni={CNN} tls=TLSv1."), lines
    assert 'req="GET /politics HTTP/1.1" status=200' in lines[0], lines
    wait_until(lambda: len(t.sidecar.log_lines()) > n_log, what="sidecar log line")
    m = t.sidecar.wait_log(lambda m: m["method"] == "GET" and m["code"] == "200")
    assert (m["path"], m["proto"], m["cluster"], m["uhost"], m["flags"]) == \
        ("/politics", "HTTP/1.1", f"outbound|80||{CNN}", f"{t.cnn_ip}:443", "-"), m.string
    # The body is the page's, not a redirect.
    r = t.curl("-sS", f"http://{CNN}/politics")
    assert r.stdout == "<html><body>CNN politics (test)</body></html>\n", (r.stdout, r.stderr)

    # snip_curl_origination_https: HTTPS from the application still works as before.
    r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"https://{CNN}/politics")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert heads(r.stdout) == https_heads, r.stdout

    # 3. snip_cleanup_the_tls_origination_configuration_1, then the 301 is back.
    out = t.ctl.ok("delete", "serviceentry", "edition-cnn-com")
    assert 'serviceentry.networking.istio.io "edition-cnn-com" deleted' in out, out
    n_rel = t.sidecar.stat("config_reloads_total")
    out = t.ctl.ok("delete", "destinationrule", "edition-cnn-com")
    assert 'destinationrule.networking.istio.io "edition-cnn-com" deleted' in out, out
    t.sidecar.wait_reloads(n_rel + 1)
    wait_until(lambda: heads(t.curl("-sS", "-o", "/dev/null", "-D", "-",
                                    f"http://{CNN}/politics").stdout)
               == ["HTTP/1.1 301 Moved Permanently"], what="301 after cleanup")

    # 4. Mutual TLS origination for egress traffic, at the sidecar: my-nginx (the page's
    # nginx.conf: client certificates required, verified against example.com.crt), the
    # page's own certificates (conftest.walkthrough_certs runs its openssl commands).
    out = t.ctl.ok("create", "secret", "generic", "client-credential",
                   "--from-file=tls.key=client.example.com.key",
                   "--from-file=tls.crt=client.example.com.crt",
                   "--from-file=ca.crt=example.com.crt", cwd=t.certs)
    assert out.strip() == "secret/client-credential created", out
    # (kubectl create role/rolebinding: Kubernetes RBAC for the sidecar to list Secrets;
    # egressgw's sidecar reads the store it is given, there is no RBAC to grant.)
    n = t.sidecar.stat("config_reloads_total")
    out = t.ctl.ok("apply", "-f", DATA / "03-destinationrule-originate-mtls-for-nginx.yaml")
    assert out.strip() == "destinationrule.networking.istio.io/originate-mtls-for-nginx created", \
        out
    t.sidecar.wait_reloads(n + 1)
    # The Secret is the sleep pod's (namespace default), where the sidecar reads it; so
    # does egressctl analyze for a rule with a workloadSelector.
    a = t.ctl("analyze")
    assert a.rc == 0 and "IST0101" not in a.out, (a.out, a.err)

    # The page's my-nginx is a Kubernetes Service (namespace mesh-external, port 443):
    # it puts the host in the sidecar's registry, and a DestinationRule applies to the
    # clusters of registry hosts only (Istio's too). Without it the request is nobody's
    # service: ALLOW_ANY passes it through as it is, plain HTTP, which nginx refuses.
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{NGINX_HOST}:443")
    assert r.stdout == "400", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["authority"] == f"{NGINX_HOST}:443")
    assert (m["code"], m["cluster"], m["route"]) == ("400", "PassthroughCluster", "allow_any"), \
        m.string
    # egressgw has no Kubernetes Services: the same registry entry is a ServiceEntry (the
    # test's, not the page's YAML; Istio's protocol sniffing finds HTTP on the Service's
    # unnamed port, so HTTP here).
    n, n_log = t.sidecar.stat("config_reloads_total"), len(t.sidecar.log_lines())
    t.ctl.ok("apply", "-n", "mesh-external", "-f", "-", input=MY_NGINX_SERVICE)
    t.sidecar.wait_reloads(n + 1)
    r = t.curl("-sS", f"http://{NGINX_HOST}:443")
    assert r.returncode == 0, (r.stdout, r.stderr, t.sidecar.stderr()[-2000:])
    assert r.stdout.startswith("<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>"), \
        (r.stdout, t.sidecar.log_lines()[-3:])
    # kubectl logs -l app=sleep -c istio-proxy | grep my-nginx.mesh-external.svc.cluster.local
    lines = t.sidecar.log_lines()[n_log:]
    assert len(lines) == 1 and NGINX_HOST in lines[0], lines
    m = t.sidecar.wait_log(lambda m: m["authority"] == f"{NGINX_HOST}:443" and
                           m["code"] == "200")
    assert (m["method"], m["path"], m["cluster"], m["uhost"]) == \
        ("GET", "/", f"outbound|443||{NGINX_HOST}", f"{t.nginx_ip}:443"), m.string
