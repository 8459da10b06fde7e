"""Istio's egress task pages under an ALLOW AuthorizationPolicy (issue 18: "every Istio
egress page test still passes ... with an ALLOW policy that admits them"), on the
topologies, YAML and helpers of the page tests (test_page_wildcard.py, test_passthrough.py,
test_page_tls_origination.py, test_page_accessing_external.py, test_auto_mtls.py,
test_se_addresses.py), with real peers on loopback. Each case also shows what the policy
refuses, so that a policy not enforced fails the test.

The passthrough pages ("Egress using Wildcard Hosts", "Egress Gateways" for HTTPS) hand the
application's own TLS to the gateway, with no ISTIO_MUTUAL on that hop: the gateway sees no
mesh identity (neither would Envoy), so an ALLOW naming the sleep workload's principal
closes their connections (fails closed, logged), and the ALLOW that admits them names what
the gateway does see, the SNI; a site the policy does not list is closed at the gateway
before anything reaches it, with Envoy's rbac_access_denied_matched_policy[none] in the
gateway's log. (The walkthrough, whose hop is ISTIO_MUTUAL, is admitted by principal, and
another service account refused, in test_authz.py.)

"Egress Gateways", HTTP part: the sidecar's hop to the gateway is ISTIO_MUTUAL without a
DestinationRule asking for it (automatic mutual TLS), so the gateway's ALLOW names the
sleep workload's principal and the page's request goes through as without a policy; the
same policy naming another principal answers 403 at the gateway (logged with
rbac_access_denied_matched_policy[none]), nothing reaching nginx.

The pages with no gateway ("Egress TLS Origination", "Accessing External Services",
"Using an External HTTPS Proxy") get a policy at the sleep pod's own sidecar (namespace
default, selector app: sleep) admitting the page's destinations by host: for plain HTTP
the Host, for https the authority of the CONNECT curl sends to the sidecar (for the
external proxy page, the proxy's address:port). "Accessing External Services" runs whole
(ALLOW_ANY, REGISTRY_ONLY, its ServiceEntries, timeout and cleanup) with the policy in
force. A destination the policy does not list gets 403 from the sidecar, as plain HTTP
and as a CONNECT (egressgw's HTTP proxy port answers the CONNECT, where a captured TLS
connection would be closed), before any connection is made upstream."""
import os
import re
import subprocess

import pytest

import test_auto_mtls as am
import test_page_accessing_external as ae
import test_page_tls_origination as tlso
import test_page_wildcard as wild
import test_passthrough as pt
import test_se_addresses as se
from connectproxy import ConnectProxy
from gwlib import loopback_ip, make_server_ca, make_server_cert, wait_until
from meshlib import Mesh
from recorder import Recorder
from sidecarlib import CNN, EGW_HOST, NGINX_HOST, cnn_site, demo_cert, heads, wait_port
from test_authz import SLEEP_ANYWHERE, policy
from test_transparent import CNN_IP, NOBODY, OTHER_IP, Transparent, nets  # noqa: F401 (fixture)

# test_authz's: the gateway's (selector istio: egressgateway), ALLOW for the sleep identity.
ALLOW_SLEEP_AT_GATEWAY = policy("allow-sleep", SLEEP_ANYWHERE)

DENIED_NONE = "rbac_access_denied_matched_policy[none]"
FR = "fr.wikipedia.org"


def curl_via(port, ca, *args):
    """curl with the sidecar at 127.0.0.1:port as its https_proxy."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["https_proxy"] = f"http://127.0.0.1:{port}"
    env["CURL_CA_BUNDLE"] = str(ca)
    env["LC_ALL"] = "C.UTF-8"
    return subprocess.run(["curl", "--max-time", "15", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=30)


@pytest.fixture
def wild_topo(tmp_path, ctl, egressctl_bin, store):
    t = wild.Topo(tmp_path, ctl, egressctl_bin, store)
    yield t
    rcs = t.stop()
    assert all(rc == 0 for rc in rcs), f"egressgw did not exit 0 on SIGTERM: {rcs}"


def allow_sni(names):
    """An ALLOW policy at the gateway admitting TLS connections by the SNI they ask for."""
    gateway_allow = SLEEP_ANYWHERE.split("  rules:")[0]
    return policy("allow-sni", gateway_allow + f"""  rules:
  - when:
    - key: connection.sni
      values: {names}
""")


def test_wildcard_hosts_page_under_an_allow_policy(wild_topo):
    t = wild_topo
    # The page's gateway step (PASSTHROUGH on *.wikipedia.org).
    t.apply(wild.DATA / "02-gateway-destinationrule-virtualservice-wikipedia.yaml",
            t.sidecar, t.gateway)
    t.apply(wild.DATA / "03-serviceentry-www-wikipedia.yaml", t.sidecar, t.gateway)
    wait_port(t.gw_ip, 443)

    # A principal-only ALLOW cannot admit this page's traffic: the sidecar hands the
    # application's own TLS to the gateway (the page's DestinationRule has no
    # ISTIO_MUTUAL), so the gateway sees no identity, as Envoy's would not; it fails
    # closed, visibly.
    out = t.ctl.ok("apply", "-f", "-", input=ALLOW_SLEEP_AT_GATEWAY)
    assert out.strip() == "authorizationpolicy.security.istio.io/allow-sleep created", out
    wait_until(lambda: re.search(r'"name":\s*"allow-sleep"',
                                 t.gateway.admin("/config_dump")[1]),
               timeout=10, what="the gateway's snapshot with the policy")
    n = len(t.site_lines())
    r = t.page_curls()
    assert r.stdout == "", (r.stdout, r.stderr)
    for host in (wild.EN, wild.DE):
        g = t.gateway.wait_log(lambda m, h=host: m["sni"] == h)
        assert (g["details"], g["uhost"], g["tx"]) == (DENIED_NONE, "-", "0"), g.string
    assert t.gateway.stat("rbac_denied_total") == 2
    assert len(t.site_lines()) == n

    # An ALLOW on what the gateway does see, the SNI of the page's two sites: the page's
    # curls print the two titles again, on the next connections.
    t.ctl.ok("delete", "authorizationpolicy", "allow-sleep", "-n", "istio-system")
    pol = t.tmp / "allow-sni.yaml"
    pol.write_text(allow_sni(f'["{wild.EN}", "{wild.DE}"]'))
    t.apply(pol, t.sidecar, t.gateway)
    wait_until(lambda: re.search(r'"name":\s*"allow-sni"', t.gateway.admin("/config_dump")[1])
               and not re.search(r'"name":\s*"allow-sleep"', t.gateway.admin("/config_dump")[1]),
               timeout=10, what="the gateway's snapshot with the SNI policy only")
    n, n_gw = len(t.site_lines()), len(t.gateway.log_lines())
    r = t.page_curls()
    assert r.stdout == f"{wild.EN_TITLE}\n{wild.DE_TITLE}\n", (r.stdout, r.stderr,
                                                                t.gateway.stderr()[-2000:])
    wild.site_saw(t, n)
    # The access log is written in batches (the worker's tick): wait for both lines.
    wait_until(lambda: len(t.gateway.log_lines()) >= n_gw + 2, what="the gateway's two lines")
    lines = t.gateway.log_lines()[n_gw:]
    assert len(lines) == 2 and all(f"outbound|443||{wild.WWW}" in ln and "rbac" not in ln
                                   for ln in lines), lines
    assert t.gateway.stat("rbac_allowed_total") == 2
    # The policy is the gateway's (selector): the sidecar decides nothing.
    assert t.sidecar.stat("rbac_allowed_total") == 0

    # Another wikipedia site the gateway's *.wikipedia.org route would carry, not listed:
    # closed at the gateway before anything reaches the site.
    n = len(t.site_lines())
    r = curl_via(t.outbound, t.demo_ca, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                 f"https://{FR}/wiki/Accueil")
    assert r.returncode != 0 and r.stdout == "000", (r.stdout, r.stderr)
    g = t.gateway.wait_log(lambda m: m["sni"] == FR)
    assert (g["details"], g["uhost"], g["tx"]) == (DENIED_NONE, "-", "0"), g.string
    m = t.sidecar.wait_log(lambda m: m["authority"] == f"{FR}:443")
    assert m["cluster"] == f"outbound|443|wikipedia|{EGW_HOST}", m.string
    assert t.gateway.stat("rbac_denied_total") == 3
    assert len(t.site_lines()) == n


@pytest.fixture
def pt_topo(tmp_path, ctl, egressctl_bin, store):
    t = pt.Topo(tmp_path, ctl, egressctl_bin, store)
    yield t
    assert t.stop() == [0, 0], "egressgw did not exit 0 on SIGTERM"


def test_egress_gateways_https_passthrough_page_under_an_allow_policy(pt_topo):
    t = pt_topo
    t.apply(pt.DATA / "01-serviceentry-cnn.yaml", t.sidecar, t.gateway)
    t.apply(pt.DATA / "02-gateway-destinationrule-virtualservice-cnn.yaml", t.sidecar,
            t.gateway)
    out = t.apply(allow_sni(f'["{CNN}"]'), t.gateway)
    assert "authorizationpolicy.security.istio.io/allow-sni created" in out, out
    wait_port(t.gw_ip, 443)
    n_site = len(pt.site_lines(t.site))
    r = pt.get_politics(t)
    assert r.stdout == "200", (r.stdout, r.stderr, t.gateway.stderr()[-2000:])
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN)
    assert (g["details"], g["cluster"]) == ("-", f"outbound|443||{CNN}"), g.string
    wait_until(lambda: len(pt.site_lines(t.site)) > n_site, what="nginx log line")
    assert t.gateway.stat("rbac_allowed_total") == 1
    assert t.gateway.stat("rbac_denied_total") == 0

    # The policy changed to admit only the sleep identity: the passthrough hop carries
    # none (the application's TLS, no ISTIO_MUTUAL), so the next connection is closed
    # before any byte goes upstream.
    t.apply(ALLOW_SLEEP_AT_GATEWAY.replace("name: allow-sleep", "name: allow-sni"), t.gateway)
    n_site, ucx = len(pt.site_lines(t.site)), t.gateway.stat("upstream_cx_total")
    n_side = len(t.sidecar.log_lines())
    r = pt.get_politics(t)
    assert r.returncode != 0 and r.stdout == "000", (r.stdout, r.stderr)
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN and "rbac" in m["details"])
    assert (g["details"], g["uhost"], g["tx"]) == (DENIED_NONE, "-", "0"), g.string
    assert t.gateway.stat("rbac_denied_total") == 1
    assert t.gateway.stat("upstream_cx_total") == ucx
    assert len(pt.site_lines(t.site)) == n_site
    # The sidecar did send it to the gateway: refused there, not lost on the way.
    wait_until(lambda: len(t.sidecar.log_lines()) > n_side, what="the sidecar's log line")
    line = t.sidecar.log_lines()[n_side]
    assert f"outbound|443|cnn|{EGW_HOST}" in line and f"{t.gw_ip}:443" in line, line


ALLOW_PAGE_HOSTS_AT_SLEEP = policy("sleep-destinations", f"""  selector:
    matchLabels:
      app: sleep
  action: ALLOW
  rules:
  - to:
    - operation:
        hosts: ["{CNN}"]
""").replace("namespace: istio-system", "namespace: default")


@pytest.fixture
def tlso_topo(tmp_path, ctl, egressctl_bin, store, walkthrough_certs):
    t = tlso.Topo(tmp_path, ctl, egressctl_bin, store, walkthrough_certs)
    yield t
    assert t.stop() == 0, "egressgw did not exit 0 on SIGTERM"


def test_egress_tls_origination_page_under_an_allow_policy(tlso_topo):
    """The page's steps 1 and 2 with an ALLOW policy at the sleep pod's sidecar that admits
    edition.cnn.com (as http:// and as the CONNECT curl sends for https://, port or not):
    the same answers as without it; my-nginx, not listed, gets 403 from the sidecar."""
    t = tlso_topo
    out = t.ctl.ok("apply", "-f", "-", input=ALLOW_PAGE_HOSTS_AT_SLEEP)
    assert "authorizationpolicy.security.istio.io/sleep-destinations created" in out, out
    t.apply(tlso.DATA / "01-serviceentry-cnn.yaml")
    wait_until(lambda: re.search(r'"name":\s*"sleep-destinations"',
                                 t.sidecar.admin("/config_dump")[1]),
               timeout=10, what="the sidecar's snapshot with the policy")
    # 1. 301 on port 80, then HTTPS through CONNECT: both admitted.
    r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
    assert heads(r.stdout) == ["HTTP/1.1 301 Moved Permanently",
                               "HTTP/1.1 200 Connection established", "HTTP/2 200 "], \
        (r.stdout, r.stderr)
    # 2. TLS origination: the plain request leaves as TLS on 443, admitted.
    t.apply(tlso.DATA / "02-serviceentry-destinationrule-origination.yaml")
    n = len(tlso.site_lines(t.site))
    r = t.curl("-sS", f"http://{CNN}/politics")
    assert r.stdout == "<html><body>CNN politics (test)</body></html>\n", (r.stdout, r.stderr)
    lines = tlso.new_site_lines(t, n)
    assert lines[-1].startswith(f"port=443 sni={CNN} "), lines
    allowed = t.sidecar.stat("rbac_allowed_total")
    assert allowed >= 3, allowed
    assert t.sidecar.stat("rbac_denied_total") == 0

    # A destination the policy does not list: 403 from the sidecar, nothing sent.
    ucx = t.sidecar.stat("upstream_cx_total")
    r = t.curl("-sS", "-o", "-", "-w", " %{http_code}", f"http://{NGINX_HOST}:443/")
    assert r.stdout == "RBAC: access denied 403", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["authority"] == f"{NGINX_HOST}:443")
    assert (m["code"], m["details"]) == ("403", DENIED_NONE), m.string
    assert t.sidecar.stat("rbac_denied_total") == 1
    assert t.sidecar.stat("upstream_cx_total") == ucx
    # Removing the policy (allowed by default again): my-nginx is reached (400: plain HTTP
    # to its TLS port, as the page test sees before its ServiceEntry).
    n_rel = t.sidecar.stat("config_reloads_total")
    t.ctl.ok("delete", "authorizationpolicy", "sleep-destinations", "-n", "default")
    t.sidecar.wait_reloads(n_rel + 1)
    wait_until(lambda: t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}",
                              f"http://{NGINX_HOST}:443").stdout == "400",
               what="my-nginx reached without the policy")


# --- "Accessing External Services": an ALLOW at the sleep pod's sidecar for the page's
# three destinations, by host.

ALLOW_AE_HOSTS_AT_SLEEP = policy("sleep-destinations", f"""  selector:
    matchLabels:
      app: sleep
  action: ALLOW
  rules:
  - to:
    - operation:
        hosts: ["{ae.GOOGLE}", "{CNN}", "{ae.HTTPBIN}"]
""").replace("namespace: istio-system", "namespace: default")


def has_policy(proc, name):
    return re.search(rf'"name":\s*"{name}"', proc.admin("/config_dump")[1])


@pytest.fixture
def ae_topo(tmp_path, ctl, egressctl_bin, store):
    t = ae.Topo(tmp_path, ctl, egressctl_bin, store)
    yield t
    assert t.stop() == 0, "egressgw did not exit 0 on SIGTERM"


def refused_at_sidecar(t, rec, ip):
    """http://IP/ and a CONNECT to IP:80 (curl -p), a destination the policy does not
    list: 403 from the sidecar for both, no connection made, nothing reaches rec."""
    ucx, denied = t.sidecar.stat("upstream_cx_total"), t.sidecar.stat("rbac_denied_total")
    r = t.curl("-sS", "-o", "-", "-w", " %{http_code}", f"http://{ip}/unlisted")
    assert r.stdout == "RBAC: access denied 403", (r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["path"] == "/unlisted")
    assert (m["code"], m["details"]) == ("403", DENIED_NONE), m.string
    r = t.curl("-sS", "-p", "-o", "/dev/null", f"http://{ip}/unlisted-tunnel")
    assert r.returncode == 56 and "403" in r.stderr, (r.returncode, r.stdout, r.stderr)
    m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT" and m["authority"] == f"{ip}:80")
    assert (m["code"], m["details"]) == ("403", DENIED_NONE), m.string
    assert t.sidecar.stat("rbac_denied_total") == denied + 2
    assert t.sidecar.stat("upstream_cx_total") == ucx
    assert rec.count() == 0


def test_accessing_external_services_page_under_an_allow_policy(ae_topo):
    """The whole page (test_page_accessing_external.run_page: ALLOW_ANY, REGISTRY_ONLY,
    the two ServiceEntries, the VirtualService's timeout, the cleanup) with an ALLOW policy
    at the sleep pod's sidecar admitting www.google.com, edition.cnn.com and httpbin.org:
    every step answers as without it. Another destination (an address the sidecar would
    pass through under ALLOW_ANY) gets 403 from the sidecar, as plain HTTP and as a
    CONNECT, and nothing reaches it."""
    t = ae_topo
    other_ip = loopback_ip()
    rec = Recorder(other_ip, 80, "unlisted")
    try:
        # Without the policy the other destination is reached (ALLOW_ANY passthrough).
        r = t.curl("-sS", f"http://{other_ip}/before")
        assert r.stdout == "unlisted\n", (r.stdout, r.stderr)
        assert rec.count() == 1
        rec.requests.clear()
        out = t.ctl.ok("apply", "-f", "-", input=ALLOW_AE_HOSTS_AT_SLEEP)
        assert "authorizationpolicy.security.istio.io/sleep-destinations created" in out, out
        wait_until(lambda: has_policy(t.sidecar, "sleep-destinations"), timeout=10,
                   what="the sidecar's snapshot with the policy")
        refused_at_sidecar(t, rec, other_ip)

        ae.run_page(t)
        # The page ran on the REGISTRY_ONLY sidecar (restarted by the page) with the
        # policy in force: each of its requests was decided and admitted.
        assert has_policy(t.sidecar, "sleep-destinations")
        assert t.sidecar.stat("rbac_allowed_total") >= 8, t.sidecar.stat("rbac_allowed_total")
        assert t.sidecar.stat("rbac_denied_total") == 0
        # Under REGISTRY_ONLY the unlisted destination is refused by the policy (403),
        # before the registry would have answered 502.
        refused_at_sidecar(t, rec, other_ip)
    finally:
        rec.stop()


# --- "Egress Gateways", HTTP part (test_auto_mtls.py): an ALLOW at the gateway for the
# sleep workload's principal, carried by the automatic ISTIO_MUTUAL hop.

@pytest.fixture
def gw_world(tmp_path, ctl, egressctl_bin, store):
    certs = tmp_path / "site-certs"
    certs.mkdir()
    cert, key, ca = demo_cert(certs, CNN)
    cnn_ip = loopback_ip()
    site = cnn_site(tmp_path, cnn_ip, cert, key)
    ctl.ok("apply", "-f", "-", input=am.SE)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {CNN: cnn_ip}, gateway=True)
    yield m, ca, cnn_ip, site
    rcs = m.stop()
    site.stop()
    assert rcs == [0, 0]


def nginx_lines(site):
    log = site.dir / "access.log"
    return log.read_text().splitlines() if log.exists() else []


def test_egress_gateways_http_page_under_an_allow_policy(gw_world, ctl):
    m, ca, cnn_ip, site = gw_world
    out = ctl.ok("apply", "-f", "-", input=ALLOW_SLEEP_AT_GATEWAY)
    assert "authorizationpolicy.security.istio.io/allow-sleep created" in out, out
    am.apply_and_wait(m, ctl, am.GW_DR + "---\n" + am.VS)
    wait_until(lambda: has_policy(m.gateway, "allow-sleep"), timeout=10,
               what="the gateway's snapshot with the policy")
    n_site = len(nginx_lines(site))
    # The page's curl and log lines, as test_auto_mtls checks them without a policy.
    am.through_the_gateway(m, ca, cnn_ip)
    wait_until(lambda: len(nginx_lines(site)) >= n_site + 2, what="nginx's two log lines")
    assert m.gateway.stat("rbac_allowed_total") == 1
    assert m.gateway.stat("rbac_denied_total") == 0
    # The policy is the gateway's (selector): the sidecar decides nothing.
    assert m.sidecar.stat("rbac_allowed_total") == 0

    # The same policy naming another principal: the sleep workload is refused at the
    # gateway, with Envoy's details in the gateway's log; nothing reaches nginx.
    other = ALLOW_SLEEP_AT_GATEWAY.replace("sa/sleep", "sa/other")
    assert other != ALLOW_SLEEP_AT_GATEWAY
    ctl.ok("apply", "-f", "-", input=other)
    wait_until(lambda: "cluster.local/ns/default/sa/other" in m.gateway.admin("/config_dump")[1],
               timeout=10, what="the gateway's snapshot with the changed policy")
    n_site, ucx = len(nginx_lines(site)), m.gateway.stat("upstream_cx_total")
    n_gw = len(m.gateway.log_lines())
    r = am.politics(m, ca)
    assert am.statuses(r) == ["HTTP/1.1 403 Forbidden"], (r.stdout, r.stderr)
    gl = m.gateway.wait_log(lambda x: x["path"] == "/politics" and x["code"] == "403")
    assert (gl["details"], gl["proto"], gl["uhost"]) == (DENIED_NONE, "HTTP/2", "-"), gl.string
    assert len([ln for ln in m.gateway.log_lines()[n_gw:] if DENIED_NONE in ln]) == 1
    sl = m.sidecar.wait_log(lambda x: x["path"] == "/politics" and x["code"] == "403")
    assert sl["cluster"] == f"outbound|80|cnn|{EGW_HOST}", sl.string
    assert m.gateway.stat("rbac_denied_total") == 1
    assert m.gateway.stat("upstream_cx_total") == ucx
    assert len(nginx_lines(site)) == n_site


# --- "Using an External HTTPS Proxy" (test_se_addresses.py): an ALLOW at the sleep pod's
# sidecar admitting the proxy's address, which the application's CONNECT names.

@pytest.fixture
def proxy_world(tmp_path):
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, se.SITE)
    site_ip, proxy_ip, other_ip = loopback_ip(), loopback_ip(), loopback_ip()
    site = Recorder(site_ip, 443, "Wikipedia, the free encyclopedia", cert=cert, key=key)
    proxy = ConnectProxy(proxy_ip, 3128, {se.SITE: site_ip})
    other = ConnectProxy(other_ip, 3128, {se.SITE: site_ip})
    yield {"ca": ca, "site": site, "proxy": proxy, "proxy_ip": proxy_ip, "other": other,
           "other_ip": other_ip}
    other.stop()
    proxy.stop()
    site.stop()


def test_external_https_proxy_page_under_an_allow_policy(tmp_path, ctl, egressctl_bin, store,
                                                         proxy_world):
    """The page's ServiceEntry (here with a second proxy's address beside the page's, so
    that REGISTRY_ONLY would admit both) and an ALLOW at the sleep pod's sidecar naming
    the page's proxy as the host of the application's CONNECT: the page's request goes
    through that proxy to the site; a CONNECT to the other proxy is refused at the
    sidecar (403), which that proxy never sees."""
    w = proxy_world
    target, other = f"{w['proxy_ip']}:3128", f"{w['other_ip']}:3128"
    ctl.ok("apply", "-f", "-", input=se.proxy_se([f"{w['proxy_ip']}/32", f"{w['other_ip']}/32"]))
    ctl.ok("apply", "-f", "-", input=policy("sleep-proxy", f"""  selector:
    matchLabels:
      app: sleep
  action: ALLOW
  rules:
  - to:
    - operation:
        hosts: ["{target}"]
""").replace("namespace: istio-system", "namespace: default"))
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {}, policy="REGISTRY_ONLY",
             sidecar_extra=["--labels", "app=sleep"])
    try:
        wait_until(lambda: has_policy(m.sidecar, "sleep-proxy"), timeout=10,
                   what="the sidecar's snapshot with the policy")
        first, second, body = se.https_via_proxy(m.sidecar.outbound, target, w["ca"])
        assert (first, second) == (200, 200)
        assert body == "Wikipedia, the free encyclopedia\n"
        assert w["proxy"].targets() == [f"{se.SITE}:443"]
        assert w["site"].last()["sni"] == se.SITE
        line = m.sidecar.wait_log(lambda x: x["authority"] == target)
        assert (line["cluster"], line["uhost"], line["details"]) == \
            ("outbound|3128||my-company-proxy.com", target, "via_upstream"), line.string
        assert m.sidecar.stat("rbac_allowed_total") == 1
        assert m.sidecar.stat("rbac_denied_total") == 0

        # The other registered proxy, not listed: refused at the sidecar.
        n_site, ucx = w["site"].count(), m.sidecar.stat("upstream_cx_total")
        assert se.https_via_proxy(m.sidecar.outbound, other, w["ca"]) == (403, None, None)
        line = m.sidecar.wait_log(lambda x: x["authority"] == other)
        assert (line["code"], line["details"]) == ("403", DENIED_NONE), line.string
        assert m.sidecar.stat("rbac_denied_total") == 1
        assert m.sidecar.stat("upstream_cx_total") == ucx
        assert w["other"].targets() == [] and w["site"].count() == n_site
    finally:
        assert m.stop() == [0]


def test_external_https_proxy_page_transparent_under_an_allow_policy(
        tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    """The page as it runs in a pod (iptables, test_se_addresses'
    test_external_https_proxy_transparent), under REGISTRY_ONLY, with an ALLOW in the
    sleep pod's namespace written as it must be for Istio on a TCP port (no `hosts`, an
    HTTP-only field there): the proxy's port and address. The application's connection to
    the page's proxy is admitted; one to a second proxy the ServiceEntry also lists is
    closed by the sidecar before anything is connected, and that proxy sees nothing."""
    subprocess.run(["ip", "-n", nets.ext, "addr", "add", f"{se.PROXY_IP}/32", "dev", "lo"],
                   check=True, capture_output=True, timeout=30)
    ctl.ok("apply", "-f", "-", input=se.proxy_se([f"{se.PROXY_IP}/32", f"{OTHER_IP}/32"]))
    # The Transparent topology's sidecar has no labels: the policy has no selector (every
    # workload of namespace default, the sleep pod's).
    ctl.ok("apply", "-f", "-", input=policy("sleep-proxy", f"""  action: ALLOW
  rules:
  - to:
    - operation:
        ports: ["3128"]
    when:
    - key: destination.ip
      values: ["{se.PROXY_IP}"]
""").replace("namespace: istio-system", "namespace: default"))
    t = Transparent(tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs,
                    policy="REGISTRY_ONLY")
    proxy = ConnectProxy(se.PROXY_IP, 3128, {CNN: CNN_IP}, ns=nets.ext)
    other = ConnectProxy(OTHER_IP, 3128, {CNN: CNN_IP}, ns=nets.ext)
    try:
        wait_until(lambda: has_policy(t.sidecar, "sleep-proxy"), timeout=10,
                   what="the sidecar's snapshot with the policy")
        r = se.https_proxy_curl(t)
        assert r.returncode == 0 and "CNN politics" in r.stdout, (r.stdout, r.stderr)
        assert proxy.targets() == [f"{CNN}:443"]
        m = t.sidecar.wait_log(lambda x: x["dlocal"] == f"{se.PROXY_IP}:3128")
        assert (m["cluster"], m["uhost"]) == ("outbound|3128||my-company-proxy.com",
                                              f"{se.PROXY_IP}:3128"), m.string
        assert t.sidecar.stat("rbac_allowed_total") == 1
        assert t.sidecar.stat("rbac_denied_total") == 0

        ucx = t.sidecar.stat("upstream_cx_total")
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["CURL_CA_BUNDLE"] = t.demo_ca
        env["HTTPS_PROXY"] = f"{OTHER_IP}:3128"
        r = t.in_app(["curl", "-sS", "--max-time", "20", f"https://{CNN}/politics"],
                     user=NOBODY, env=env)
        assert r.returncode != 0 and "CNN politics" not in r.stdout, (r.stdout, r.stderr)
        m = t.sidecar.wait_log(lambda x: x["dlocal"] == f"{OTHER_IP}:3128")
        assert m["details"] == DENIED_NONE, m.string
        assert t.sidecar.stat("rbac_denied_total") == 1
        assert t.sidecar.stat("upstream_cx_total") == ucx
        assert other.targets() == []
    finally:
        other.stop()
        proxy.stop()
        assert t.stop() == [0, 0]
