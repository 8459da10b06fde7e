"""Istio's egress task pages under an ALLOW AuthorizationPolicy (issue 18: "every Istio
egress page test still passes ... with an ALLOW policy that admits them"), on the
topologies and YAML of the page tests (test_page_wildcard.py, test_passthrough.py,
test_page_tls_origination.py), with real peers on loopback.

The passthrough pages ("Egress using Wildcard Hosts", "Egress Gateways" for HTTPS) hand the
application's own TLS to the gateway, with no ISTIO_MUTUAL on that hop: the gateway sees no
mesh identity (neither would Envoy), so an ALLOW naming the sleep workload's principal
closes their connections (fails closed, logged), and the ALLOW that admits them names what
the gateway does see, the SNI; a site the policy does not list is closed at the gateway
before anything reaches it, with Envoy's rbac_access_denied_matched_policy[none] in the
gateway's log. (The walkthrough, whose hop is ISTIO_MUTUAL, is admitted by principal, and
another service account refused, in test_authz.py.) The "Egress TLS Origination" page has
no gateway: there the policy is the sleep pod's own (namespace default, selector app:
sleep) and admits the page's destination by host; any other destination gets 403 from the
sidecar."""
import os
import re
import subprocess

import pytest

import test_page_tls_origination as tlso
import test_page_wildcard as wild
import test_passthrough as pt
from gwlib import wait_until
from sidecarlib import CNN, EGW_HOST, NGINX_HOST, heads, wait_port
from test_authz import SLEEP_ANYWHERE, policy

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
