"""A Gateway API page with transparent capture (issue 19): istio.io "Egress Gateways",
HTTPS part, Gateway API tab (gwapi/eg-https-*.yaml, unchanged), with the application's
connection redirected to the sidecar by `egressctl iptables` (test_transparent.py's two
network namespaces) instead of curl using the sidecar as its proxy. The gateway is the
one Istio deploys for Gateway cnn-egress-gateway (cnn-egress-gateway-istio in default,
pods labelled gateway.networking.k8s.io/gateway-name=cnn-egress-gateway).

The same observable results as the Istio-API twin with capture
(test_transparent.test_egress_gateways_https_passthrough_transparent): the sidecar reads
the ClientHello's SNI and follows the TLSRoute whose parent is the ServiceEntry to the
gateway's Service, the gateway passes it through by SNI to edition.cnn.com (the TLSRoute
whose parent is the Gateway); leaving out the SNI is refused; with the gateway stopped
nothing reaches edition.cnn.com."""
import pytest

from gwlib import wait_until
from sidecarlib import CNN, Egressgw, issue
from test_gwapi import GTW_HOST, GWAPI
from test_transparent import (CNN_IP, GW_IP, Transparent, assert_fails_without_the_gateway,
                              assert_nameless_tls_is_refused, nets, site_lines)  # noqa: F401 (nets)

GTW = "cnn-egress-gateway"


class GwapiTransparent(Transparent):
    """test_transparent's namespaces and sites, the gateway being the Gateway API one."""

    def _start(self, tmp, nets, store, demo_ca, *rest):
        # The cluster's DNS for the gateway's Service, before any proxy reads the file.
        with open(self.hosts, "a") as f:
            f.write(f"{GW_IP} {GTW_HOST}\n")
        super()._start(tmp, nets, store, demo_ca, *rest)
        # istio-egressgateway out (no Istio Gateway is applied here: it served nothing),
        # the gateway Istio deploys for the Gateway API Gateway in, on the same address.
        assert self.gateway.stop() == 0
        self.gateway = None
        gw_id = issue(self.egressctl, tmp / "mesh-ca", "default", f"{GTW}-istio",
                      tmp / "gtw-id")
        self.gateway = Egressgw(tmp, "gtw", "gateway", store, gw_id, self.hosts, self.ext_dns,
                                ns=nets.ext, env={"SSL_CERT_FILE": str(demo_ca)},
                                extra=["--namespace", "default", "--labels",
                                       f"gateway.networking.k8s.io/gateway-name={GTW}",
                                       "--listen-address", GW_IP])


@pytest.fixture
def topo(tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):  # noqa: F811
    t = GwapiTransparent(tmp_path, nets, ctl, egressctl_bin, store, walkthrough,
                         walkthrough_certs)
    yield t
    assert t.stop() == [0, 0]


def test_egress_gateways_https_gateway_api_tab_transparent(topo):
    t = topo
    t.ctl.ok("apply", "-f", GWAPI / "eg-https-01-serviceentry-cnn.yaml")
    out = t.ctl.ok("apply", "-f", GWAPI / "eg-https-gateway-tlsroutes-cnn.yaml")
    assert f"gateway.gateway.networking.k8s.io/{GTW} created" in out, out
    assert "Warning" not in out, out
    wait_until(lambda: '"l4_mode": "SNI"' in t.gateway.admin("/config_dump")[1], timeout=10,
               what="the gateway's TLS Passthrough listener")
    wait_until(lambda: GTW_HOST in t.sidecar.admin("/config_dump")[1], timeout=10,
               what="the sidecar's route to the gateway's Service")
    passthrough = t.sidecar.stat("passthrough_total")

    # Captured, not proxied: curl connects to edition.cnn.com's address itself.
    n_site = len(site_lines(t))
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{CNN}/politics")
    assert r.stdout == "200", (r.stdout, r.stderr, t.sidecar.stderr()[-2000:],
                               t.gateway.stderr()[-2000:])
    m = t.sidecar.wait_log(lambda m: m["sni"] == CNN and GTW_HOST in m["cluster"])
    assert (m["method"], m["code"], m["cluster"], m["uhost"], m["dlocal"]) == \
        ("-", "0", f"outbound|443||{GTW_HOST}", f"{GW_IP}:443", f"{CNN_IP}:443"), m.string
    g = t.gateway.wait_log(lambda m: m["sni"] == CNN and m["method"] == "-")
    assert (g["cluster"], g["uhost"], g["flags"], g["dlocal"]) == \
        (f"outbound|443||{CNN}", f"{CNN_IP}:443", "-", f"{GW_IP}:443"), g.string
    assert int(g["rx"]) > 0 and int(g["tx"]) > 0, g.string
    wait_until(lambda: len(site_lines(t)) > n_site, what="the site's log line")
    assert 'GET /politics HTTP/1.1" 200' in site_lines(t)[-1], site_lines(t)[-1]
    # Not one connection went out directly.
    assert t.sidecar.stat("passthrough_total") == passthrough

    assert_nameless_tls_is_refused(t, passthrough)
    assert_fails_without_the_gateway(t, f"outbound|443||{GTW_HOST}", passthrough)
