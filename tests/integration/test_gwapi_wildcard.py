"""istio.io's "Egress using Wildcard Hosts", Gateway API tab (issue 19), its YAML unchanged
(gwapi/wc-*.yaml; the www-wikipedia ServiceEntry is the same in both tabs), through the
sleep pod's sidecar and the gateway Istio deploys for Gateway wikipedia-egress-gateway
(deployment and Service wikipedia-egress-gateway-istio in default, pods labelled
gateway.networking.k8s.io/gateway-name=wikipedia-egress-gateway), on loopback.

The same observable results as the Istio-API twin (test_page_wildcard.py): with
outboundTrafficPolicy REGISTRY_ONLY, the page's two curls print the en. and de. titles;
the sidecar sends both to the gateway's Service by the TLSRoute whose parent is the
ServiceEntry, the gateway passes each through on its SNI to www.wikipedia.org (the
TLSRoute whose parent is the Gateway, backendRef of kind Hostname), the site sees the
application's own SNI; /clusters lists outbound|443||www.wikipedia.org; with the gateway
stopped both curls fail and nothing reaches the site; the page's cleanup blocks them
again."""
import pathlib

import pytest

from gwlib import wait_until
from pagelib import apply_wait
from sidecarlib import wait_port
import test_page_wildcard as wild

GWAPI = pathlib.Path(__file__).parent / "gwapi"
GTW = "wikipedia-egress-gateway"
GTW_HOST = f"{GTW}-istio.default.svc.cluster.local"


class Topo(wild.Topo):
    """test_page_wildcard's topology with the Gateway API gateway instead of
    istio-egressgateway."""

    GW_HOST = GTW_HOST
    GW_NS, GW_SA = "default", f"{GTW}-istio"
    GW_LABELS = f"gateway.networking.k8s.io/gateway-name={GTW}"


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store):
    t = Topo(tmp_path, ctl, egressctl_bin, store)
    yield t
    rcs = t.stop()
    assert all(rc == 0 for rc in rcs), f"egressgw did not exit 0 on SIGTERM: {rcs}"


TITLES = f"{wild.EN_TITLE}\n{wild.DE_TITLE}\n"


def test_wildcard_hosts_page_gateway_api_tab(topo):
    t = topo
    # REGISTRY_ONLY and nothing applied: nothing goes out.
    r = t.page_curls()
    assert r.stdout == "", (r.stdout, r.stderr)

    # snip_configure_egress_gateway_traffic_to_a_wildcard_host_2 (Gateway API tab), then _3.
    out = apply_wait(t.ctl, GWAPI / "wc-02-gateway-tlsroutes-serviceentry-wikipedia.yaml",
                     t.sidecar, t.gateway)
    assert out.splitlines() == [
        f"gateway.gateway.networking.k8s.io/{GTW} created",
        "tlsroute.gateway.networking.k8s.io/direct-wikipedia-to-egress-gateway created",
        "tlsroute.gateway.networking.k8s.io/forward-wikipedia-from-egress-gateway created",
        "serviceentry.networking.istio.io/wikipedia created"], out
    out = apply_wait(t.ctl, wild.DATA / "03-serviceentry-www-wikipedia.yaml", t.sidecar,
                     t.gateway)
    assert out.strip() == "serviceentry.networking.istio.io/www-wikipedia created", out
    for route in ("direct-wikipedia-to-egress-gateway", "forward-wikipedia-from-egress-gateway"):
        st = t.ctl.ok("get", "tlsroute", route, "-o", "yaml")
        assert "reason: Accepted" in st and "reason: ResolvedRefs" in st, st
    a = t.ctl("analyze")
    assert a.rc == 0, (a.out, a.err)
    wait_port(t.gw_ip, 443)

    # snip_..._4: the page's two curls print the two titles, through the gateway.
    wait_until(lambda: t.page_curls().stdout == TITLES, timeout=10,
               what="the titles through the gateway")
    n, n_side, n_gw = len(t.site_lines()), len(t.sidecar.log_lines()), \
        len(t.gateway.log_lines())
    r = t.page_curls()
    assert r.stdout == TITLES, (r.stdout, r.stderr, t.sidecar.stderr()[-2000:],
                                t.gateway.stderr()[-2000:])
    wild.site_saw(t, n)
    # The sidecar sent both to the gateway's Service (the TLSRoute from the ServiceEntry)...
    lines = t.sidecar.log_lines()[n_side:]
    assert len(lines) == 2, lines
    for host in (wild.EN, wild.DE):
        m = t.sidecar.wait_log(lambda m, h=host: m["authority"] == f"{h}:443" and
                               GTW_HOST in m["cluster"])
        assert (m["code"], m["cluster"], m["uhost"]) == \
            ("200", f"outbound|443||{GTW_HOST}", f"{t.gw_ip}:443"), m.string
        # ...and the gateway passed each through, on its SNI, to www.wikipedia.org.
        g = t.gateway.wait_log(lambda m, h=host: m["sni"] == h)
        assert (g["method"], g["code"], g["flags"], g["cluster"], g["uhost"]) == \
            ("-", "0", "-", f"outbound|443||{wild.WWW}", f"{t.wiki_ip}:443"), g.string
        assert int(g["rx"]) > 0 and int(g["tx"]) > 0, g.string
    assert len(t.gateway.log_lines()) == n_gw + 2, t.gateway.log_lines()
    # snip_..._6 (pilot-agent request GET clusters on the Gateway API gateway's pod): the
    # cluster and its endpoint, as Envoy lists them (no per-endpoint cx_total counters).
    code, body = t.gateway.admin("/clusters")
    assert code == 200, code
    assert f"outbound|443||{wild.WWW}::{t.wiki_ip}:443::" in body, body

    # The gateway cannot be bypassed: stopped, both curls fail and nothing arrives.
    assert t.gateway.stop() == 0
    n = len(t.site_lines())
    r = t.page_curls()
    assert r.stdout == "", (r.stdout, r.stderr)
    assert len(t.site_lines()) == n
    t.gateway = t.start_gateway("gateway2")
    wait_port(t.gw_ip, 443)
    wait_until(lambda: t.page_curls().stdout == TITLES, timeout=10, what="titles again")

    # snip_cleanup_egress_gateway_traffic_to_a_wildcard_host_2, as the page writes it.
    tlsroute = "tlsroute.gateway.networking.k8s.io"
    for args, want in ((("se", "wikipedia"), 'serviceentry.networking.istio.io "wikipedia"'),
                       (("se", "www-wikipedia"),
                        'serviceentry.networking.istio.io "www-wikipedia"'),
                       (("gtw", GTW), f'gateway.gateway.networking.k8s.io "{GTW}"'),
                       (("tlsroute", "direct-wikipedia-to-egress-gateway"),
                        f'{tlsroute} "direct-wikipedia-to-egress-gateway"'),
                       (("tlsroute", "forward-wikipedia-from-egress-gateway"),
                        f'{tlsroute} "forward-wikipedia-from-egress-gateway"')):
        out = t.ctl.ok("delete", *args)
        assert f"{want} deleted" in out, out
    # Requests made before the deletions reach the proxies still pass: wait for the
    # reload, then nothing more arrives.
    wait_until(lambda: t.page_curls().stdout == "", what="blocked again after cleanup")
    n = len(t.site_lines())
    r = t.page_curls()
    assert r.stdout == "", (r.stdout, r.stderr)
    assert len(t.site_lines()) == n
