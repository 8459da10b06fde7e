"""istio.io's "Egress using Wildcard Hosts" task (Istio APIs), with its YAML unchanged
(tests/data/wildcard-egress-hosts), on loopback.

The mesh is installed with outboundTrafficPolicy REGISTRY_ONLY, as the page does. The
sleep pod is curl with the sidecar as its https_proxy (CONNECT). *.wikipedia.org is one
nginx (as the page says, all wikipedia sites are served by the same servers) on one
loopback address that en.wikipedia.org, de.wikipedia.org and www.wikipedia.org all
resolve to; it serves each language's page under its own certificate (from a test CA
curl trusts) and logs the SNI of each request, so the application's TLS session is seen
to end there.

Steps: (1) direct traffic to a wildcard host: ServiceEntry *.wikipedia.org, the page's
two curls print the two titles; (2) the page's cleanup of it, then Gateway (PASSTHROUGH
on *.wikipedia.org), DestinationRule and VirtualService (tls: mesh -> gateway, gateway ->
www.wikipedia.org), and the ServiceEntry for www.wikipedia.org: the same curls print the
same titles, through the gateway (its access log: the application's SNI, cluster
outbound|443||www.wikipedia.org); with the gateway stopped they fail and nothing reaches
the site; (3) the page's cleanup."""
import os
import subprocess

import pytest

from conftest import REPO
from pagelib import apply_wait
from gwlib import free_port, loopback_ip, wait_until
from sidecarlib import EGW_HOST, Egressgw, NxDns, Site, demo_cert, issue, wait_port

DATA = REPO / "tests" / "data" / "wildcard-egress-hosts"
EN, DE, WWW = "en.wikipedia.org", "de.wikipedia.org", "www.wikipedia.org"
EN_TITLE = "<title>Wikipedia, the free encyclopedia</title>"
DE_TITLE = "<title>Wikipedia – Die freie Enzyklopädie</title>"
# kubectl exec "$SOURCE_POD" -c sleep -- sh -c '...', as the page writes it.
PAGE_CURLS = ('curl -s https://en.wikipedia.org/wiki/Main_Page | grep -o "<title>.*</title>"; '
              'curl -s https://de.wikipedia.org/wiki/Wikipedia:Hauptseite | '
              'grep -o "<title>.*</title>"')


def wikipedia_site(tmp, ip, certs):
    """en. and de.wikipedia.org's main pages, each under its own certificate."""
    log = tmp / "wikipedia.log"
    body = f"""
  log_format sniinfo 'server=$server_name sni=$ssl_server_name req="$request" status=$status';
  access_log {log} sniinfo;
  charset utf-8;
"""
    for name, page, title in ((EN, "Main_Page", EN_TITLE), (DE, "Wikipedia:Hauptseite", DE_TITLE)):
        root = tmp / f"html-{name}"
        (root / "wiki").mkdir(parents=True)
        (root / "wiki" / page).write_text(f"<html><head>{title}</head><body></body></html>\n",
                                          encoding="utf-8")
        cert, key, _ = demo_cert(certs, name)
        body += f"""
  server {{ listen {ip}:443 ssl; server_name {name}; root {root}; default_type text/html;
           ssl_certificate {cert}; ssl_certificate_key {key}; }}
"""
    site = Site(tmp, "wikipedia", body, ip, 443)
    site.log = log
    return site


class Topo:
    # The egress gateway: its Service's name (in the hosts file), its workload identity
    # (namespace, service account) and the labels its Gateway selects. The Gateway API
    # twin (test_gwapi_wildcard.py) changes only these.
    GW_HOST = EGW_HOST
    GW_NS, GW_SA = "istio-system", "istio-egressgateway-service-account"
    GW_LABELS = "istio=egressgateway"

    def __init__(self, tmp, ctl, egressctl_bin, store):
        self.tmp, self.ctl, self.store = tmp, ctl, store
        self.wiki_ip, self.gw_ip = loopback_ip(), loopback_ip()
        certs = tmp / "site-certs"
        certs.mkdir()
        self.demo_ca = certs / "demo-ca.crt"
        self.hosts = tmp / "hosts"
        self.hosts.write_text(f"{self.wiki_ip} {EN}\n{self.wiki_ip} {DE}\n{self.wiki_ip} {WWW}\n"
                              f"{self.gw_ip} {self.GW_HOST}\n")
        ca = tmp / "mesh-ca"
        self.gw_id = issue(egressctl_bin, ca, self.GW_NS, self.GW_SA, tmp / "gw-id",
                           create_ca=True)
        self.sleep_id = issue(egressctl_bin, ca, "default", "sleep", tmp / "sleep-id")
        self.site = self.dns = self.gateway = self.sidecar = None
        try:
            self.site = wikipedia_site(tmp, self.wiki_ip, certs)
            self.dns = NxDns(loopback_ip())
            self.gateway = self.start_gateway("gateway")
            self.outbound = free_port()
            # istioctl install --set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY
            self.sidecar = Egressgw(tmp, "sidecar", "sidecar", store, self.sleep_id, self.hosts,
                                    self.dns, extra=["--namespace", "default", "--labels",
                                                     "app=sleep", "--outbound",
                                                     f"127.0.0.1:{self.outbound}",
                                                     "--outbound-policy", "REGISTRY_ONLY"])
        except BaseException:
            self.stop()
            raise

    def start_gateway(self, name):
        return Egressgw(self.tmp, name, "gateway", self.store, self.gw_id, self.hosts, self.dns,
                        extra=["--namespace", self.GW_NS, "--labels", self.GW_LABELS,
                               "--listen-address", self.gw_ip])

    def page_curls(self):
        """The page's two curls in the sleep pod, the sidecar as https_proxy."""
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["https_proxy"] = f"http://127.0.0.1:{self.outbound}"
        env["CURL_CA_BUNDLE"] = str(self.demo_ca)
        env["LC_ALL"] = "C.UTF-8"
        return subprocess.run(["sh", "-c", PAGE_CURLS], capture_output=True, text=True,
                              encoding="utf-8", env=env, timeout=60)

    def apply(self, path, *procs):
        return apply_wait(self.ctl, path, *procs)

    def delete(self, *args):
        before = [p.stat("config_reloads_total") for p in (self.sidecar, self.gateway)]
        out = self.ctl.ok("delete", *args)
        for p, n in zip((self.sidecar, self.gateway), before):
            p.wait_reloads(n + 1)
        return out

    def site_lines(self):
        return self.site.log.read_text().splitlines() if self.site.log.exists() else []

    def stop(self):
        rcs = [p.stop() for p in (self.sidecar, self.gateway) if p is not None]
        for s in (self.site, self.dns):
            if s:
                s.stop()
        return rcs


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store):
    t = Topo(tmp_path, ctl, egressctl_bin, store)
    yield t
    rcs = t.stop()
    assert all(rc == 0 for rc in rcs), f"egressgw did not exit 0 on SIGTERM: {rcs}"


def site_saw(t, n):
    """The site's log lines since n: one per curl, each the application's own SNI."""
    wait_until(lambda: len(t.site_lines()) >= n + 2, what="two wikipedia log lines")
    assert t.site_lines()[n:] == [
        f'server={EN} sni={EN} req="GET /wiki/Main_Page HTTP/1.1" status=200',
        f'server={DE} sni={DE} req="GET /wiki/Wikipedia:Hauptseite HTTP/1.1" status=200'], \
        t.site_lines()


def test_page_wildcard_hosts(topo):
    t = topo
    # REGISTRY_ONLY and no ServiceEntry yet: nothing goes out.
    r = t.page_curls()
    assert r.stdout == "", (r.stdout, r.stderr)
    assert t.site_lines() == []

    # 1. Configure direct traffic to a wildcard host.
    out = t.apply(DATA / "01-serviceentry-wikipedia.yaml", t.sidecar, t.gateway)
    assert out.strip() == "serviceentry.networking.istio.io/wikipedia created", out
    r = t.page_curls()
    assert r.stdout == f"{EN_TITLE}\n{DE_TITLE}\n", (r.stdout, r.stderr,
                                                      t.sidecar.stderr()[-2000:])
    site_saw(t, 0)
    for host in (EN, DE):
        m = t.sidecar.wait_log(lambda m, h=host: m["authority"] == f"{h}:443" and
                               m["code"] == "200")
        assert (m["method"], m["code"], m["cluster"], m["uhost"]) == \
            ("CONNECT", "200", "outbound|443||*.wikipedia.org", f"{t.wiki_ip}:443"), m.string
    assert t.gateway.log_lines() == []
    out = t.delete("serviceentry", "wikipedia")
    assert 'serviceentry.networking.istio.io "wikipedia" deleted' in out, out

    # 2. Configure egress gateway traffic to a wildcard host.
    out = t.apply(DATA / "02-gateway-destinationrule-virtualservice-wikipedia.yaml",
                  t.sidecar, t.gateway)
    assert out.splitlines() == [
        "gateway.networking.istio.io/istio-egressgateway created",
        "destinationrule.networking.istio.io/egressgateway-for-wikipedia created",
        "virtualservice.networking.istio.io/direct-wikipedia-through-egress-gateway created"], out
    out = t.apply(DATA / "03-serviceentry-www-wikipedia.yaml", t.sidecar, t.gateway)
    assert out.strip() == "serviceentry.networking.istio.io/www-wikipedia created", out
    wait_port(t.gw_ip, 443)
    n, n_side = len(t.site_lines()), len(t.sidecar.log_lines())
    r = t.page_curls()
    assert r.stdout == f"{EN_TITLE}\n{DE_TITLE}\n", (r.stdout, r.stderr,
                                                      t.sidecar.stderr()[-2000:],
                                                      t.gateway.stderr()[-2000:])
    site_saw(t, n)
    # The sidecar sent both to the gateway (subset wikipedia), by the mesh tls: route...
    # The access log is written in batches (the worker's tick): wait for both lines.
    wait_until(lambda: len(t.sidecar.log_lines()) >= n_side + 2, what="the sidecar's two lines")
    lines = t.sidecar.log_lines()[n_side:]
    assert len(lines) == 2, lines
    for host in (EN, DE):
        m = t.sidecar.wait_log(lambda m, h=host: m["authority"] == f"{h}:443" and
                               "|wikipedia|" in m["cluster"])
        assert (m["code"], m["cluster"], m["uhost"]) == \
            ("200", f"outbound|443|wikipedia|{EGW_HOST}", f"{t.gw_ip}:443"), m.string
        # ...and the gateway passed each through, on its SNI, to www.wikipedia.org.
        g = t.gateway.wait_log(lambda m, h=host: m["sni"] == h)
        assert (g["method"], g["code"], g["flags"], g["cluster"], g["uhost"]) == \
            ("-", "0", "-", f"outbound|443||{WWW}", f"{t.wiki_ip}:443"), g.string
        assert int(g["rx"]) > 0 and int(g["tx"]) > 0, g.string
    assert len(t.gateway.log_lines()) == 2, t.gateway.log_lines()
    # The page then reads the gateway's cluster counters (pilot-agent request GET clusters
    # | grep '^outbound|443||www.wikipedia.org.*cx_total:'), and sees its two connections:
    # "outbound|443||www.wikipedia.org::208.80.154.224:443::cx_total::2".
    code, body = t.gateway.admin("/clusters")
    assert code == 200, code
    lines = [ln for ln in body.splitlines()
             if ln.startswith(f"outbound|443||{WWW}") and "cx_total:" in ln]
    assert lines == [f"outbound|443||{WWW}::{t.wiki_ip}:443::cx_total::2"], body

    # The gateway cannot be bypassed: with it stopped, both curls fail, nothing arrives.
    assert t.gateway.stop() == 0
    n = len(t.site_lines())
    r = t.page_curls()
    assert r.stdout == "", (r.stdout, r.stderr)
    assert len(t.site_lines()) == n
    t.gateway = Egressgw(t.tmp, "gateway2", "gateway", t.store, t.gw_id, t.hosts, t.dns,
                         extra=["--namespace", "istio-system", "--labels",
                                "istio=egressgateway", "--listen-address", t.gw_ip])
    wait_port(t.gw_ip, 443)
    r = t.page_curls()
    assert r.stdout == f"{EN_TITLE}\n{DE_TITLE}\n", (r.stdout, r.stderr)

    # 3. Cleanup, as the page writes it.
    for kind, name in (("serviceentry", "www-wikipedia"), ("gateway", "istio-egressgateway"),
                       ("virtualservice", "direct-wikipedia-through-egress-gateway"),
                       ("destinationrule", "egressgateway-for-wikipedia")):
        out = t.ctl.ok("delete", kind, name)
        assert f'{kind}.networking.istio.io "{name}" deleted' in out, out
    wait_until(lambda: t.page_curls().stdout == "", what="blocked again after cleanup")
