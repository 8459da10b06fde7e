"""egressctl explain-request (issue 16): a running proxy says how it would handle one
request without sending it, for every route shape of the walkthrough (sidecar to gateway
over ISTIO_MUTUAL, gateway to edition.cnn.com with SIMPLE origination, gateway to my-nginx
with MUTUAL origination from a credentialName) and for refusals (NR, DF, UF for a credential
that does not load, no listener, PassthroughCluster under ALLOW_ANY, BlackHoleCluster under
REGISTRY_ONLY, CONNECT tunnels); text and -o json; the answer matches what a real request
then gets (access log)."""
import json
import re
import time

from sidecarlib import CNN, EGW_HOST, NGINX_HOST
from test_sidecar import apply_cnn, topo, wait_routed  # noqa: F401 (topo: the fixture)

NR_YAML = """apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: nr}
spec:
  hosts: [nr.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: nr}
spec:
  hosts: [nr.example.com]
  http:
  - match: [{uri: {prefix: /only}}]
    route: [{destination: {host: nr.example.com}}]
"""


def wait_explain(t, proxy, url, want, rc=0, timeout=10.0):
    """explain until want(answer) (the proxy has reloaded what was just applied)."""
    deadline = time.time() + timeout
    while True:
        r = t.ctl("explain-request", url, f"127.0.0.1:{proxy.admin_port}", "-o", "json")
        e = json.loads(r.out) if r.out else {}
        if want(e):
            assert r.rc == rc, (r.rc, r.out, r.err)
            return e
        assert time.time() < deadline, (r.out, r.err)
        time.sleep(0.2)


def explain(t, proxy, url, *args, rc=0):
    r = t.ctl("explain-request", url, f"127.0.0.1:{proxy.admin_port}", "-o", "json", *args)
    assert r.rc == rc, (r.rc, r.out, r.err)
    return json.loads(r.out)


def test_explain_request_walkthrough_shapes_and_refusals(topo, walkthrough_certs):
    t = topo
    apply_cnn(t)
    wait_routed(t)
    gw, sc = t.gateway, t.sidecar

    # Sidecar: the mesh route of the VirtualService, to the gateway over ISTIO_MUTUAL.
    e = explain(t, sc, f"http://{CNN}/politics")
    assert (e["proxy"], e["listener"], e["route_table"], e["virtual_host"]) == \
        ("sidecar", "virtualOutbound", "80", f"{CNN}:80"), e
    assert e["route"]["virtual_service"] == "default/direct-cnn-through-egress-gateway"
    src, line = e["route"]["source"].rsplit(":", 1)
    assert src.endswith(f"config/default/virtualservices/direct-cnn-through-egress-gateway.yaml") \
        or src.endswith(".yaml"), src
    assert int(line) > 0
    assert e["destinations"] == [{"cluster": f"outbound|80|cnn|{EGW_HOST}", "weight": 100}]
    assert e["cluster"]["tls"]["mode"] == "ISTIO_MUTUAL"
    assert e["cluster"]["tls"]["sni"] == CNN
    assert e["cluster"]["endpoints"] == [f"{t.gw_ip}:80"]
    assert (e["result"], e["endpoint"]) == ("forward", f"{t.gw_ip}:80")

    # Gateway: the listener's ISTIO_MUTUAL server, the route to edition.cnn.com:443 with
    # SIMPLE origination, the endpoint from the hosts file.
    e = explain(t, gw, f"http://{CNN}/politics")
    assert e["proxy"] == "gateway"
    assert e["listener"]["tls"] is True and e["listener"]["server_tls"] == "ISTIO_MUTUAL"
    assert e["listener"]["gateway"] == "default/istio-egressgateway"
    assert e["route"]["virtual_service"] == "default/direct-cnn-through-egress-gateway"
    assert e["destinations"] == [{"cluster": f"outbound|443||{CNN}", "weight": 100}]
    tls = e["cluster"]["tls"]
    assert (tls["mode"], tls["sni"], tls["error"]) == ("SIMPLE", CNN, None), tls
    assert (e["result"], e["endpoint"]) == ("forward", f"{t.cnn_ip}:443")

    # The text form says the same.
    r = t.ctl("explain-request", f"http://{CNN}/politics", str(gw.admin_port))
    assert r.rc == 0, r.err
    assert re.search(rf"^Route:\s+.*VirtualService default/direct-cnn-through-egress-gateway at "
                     rf"\S+:\d+$", r.out, re.M), r.out
    assert re.search(rf"^Cluster:\s+outbound\|443\|\|{re.escape(CNN)}, ROUND_ROBIN$", r.out, re.M)
    assert re.search(rf"^Upstream TLS:\s+SIMPLE, SNI {re.escape(CNN)}$", r.out, re.M), r.out
    assert re.search(rf"^Result:\s+forwarded to {re.escape(t.cnn_ip)}:443 \(the only endpoint\)$",
                     r.out, re.M), r.out

    # Refusals at the gateway: no route for the host (404 NR), no listener on the port.
    e = explain(t, gw, "http://other.test/", rc=1)
    assert e["response_code_details"] == "tls_handshake_refused", e
    e = explain(t, gw, "http://other.test:8081/", rc=1)
    assert e["listener"] is None and "no Gateway server listens on port 8081" in e["reason"]
    r = t.ctl("explain-request", "http://other.test:8081/", str(gw.admin_port))
    assert r.rc == 1 and "Result:       refused:" in r.out

    # A virtual host whose routes do not match the request: 404 NR.
    t.ctl.ok("apply", "-f", "-", input=NR_YAML)
    e = wait_explain(t, sc, "http://nr.example.com/other", lambda e: "virtual_host" in e and
                     e["virtual_host"], rc=1)
    assert (e["virtual_host"], e["response_code"], e["response_flags"]) == \
        ("nr.example.com:80", 404, "NR"), e
    # The route matches, but its host does not resolve (not in the hosts file): 503 DF.
    e = explain(t, sc, "http://nr.example.com/only/this", rc=1)
    assert e["route"]["virtual_service"] == "default/nr"
    assert (e["response_code"], e["response_flags"]) == (503, "DF"), e

    # Sidecar, a host without a route: ALLOW_ANY passes it through; REGISTRY_ONLY 502.
    e = explain(t, sc, "http://other.test/x")
    assert e["route"]["name"] == "allow_any" and e["cluster"]["name"] == "PassthroughCluster"
    assert (e["result"], e["endpoint"]) == ("forward", "other.test:80")
    strict = t.start_sidecar("strict", t.sleep_id, policy="REGISTRY_ONLY")
    e = explain(t, strict, "http://other.test/x", rc=1)
    assert e["route"]["name"] == "block_all" and e["cluster"]["name"] == "BlackHoleCluster"
    assert e["response_code"] == 502
    # https through the sidecar is a CONNECT tunnel, routed by host and port.
    e = explain(t, sc, f"https://{CNN}/politics")
    assert e["handling"].startswith("TCP tunnel")
    assert e["cluster"]["name"] == f"outbound|443||{CNN}" and e["result"] == "forward"

    # describe --admin: what the gateway made of the objects.
    out = t.ctl.ok("describe", "dr", "originate-tls-for-edition-cnn-com", "--admin",
                   str(gw.admin_port))
    assert re.search(r"^Proxy:        gateway 127\.0\.0\.1:\d+, configuration version \d+$", out,
                     re.M), out
    assert f"  Cluster:    outbound|443||{CNN}\n" in out
    out = t.ctl.ok("describe", "vs", "direct-cnn-through-egress-gateway", "--admin",
                   str(gw.admin_port))
    assert re.search(rf"^  Route:      \S+ {re.escape(CNN)}:80 -> outbound\|443\|\|{re.escape(CNN)}$",
                     out, re.M), out
    out = t.ctl.ok("describe", "gw", "istio-egressgateway", "--admin", str(gw.admin_port))
    assert re.search(r"^  Listener:   \S+_80 \(ISTIO_MUTUAL\)$", out, re.M), out

    # What explain said is what a request gets.
    wait_routed(t)
    m = gw.wait_log(lambda m: m["code"] == "200" and m["authority"] == CNN)
    assert m["cluster"] == f"outbound|443||{CNN}" and m["uhost"] == f"{t.cnn_ip}:443"

    # The walkthrough's mutual TLS origination: first without its credential (UF, the
    # reason the gateway has), then with it.
    # As the walkthrough: the TLS origination example is cleaned up first (its
    # DestinationRule for the gateway's host would shadow the new one's subset).
    t.ctl.ok("delete", "destinationrule", "egressgateway-for-cnn")
    t.ctl.ok("delete", "virtualservice", "direct-cnn-through-egress-gateway")
    t.ctl.ok("apply", "-f", t.wt / "04-gateway-destinationrule-nginx.yaml")
    t.ctl.ok("apply", "-f", t.wt / "05-virtualservice-nginx.yaml")
    t.ctl.ok("apply", "-n", "istio-system", "-f",
             t.wt / "06-destinationrule-originate-mtls-nginx.yaml")
    url = f"http://{NGINX_HOST}/"
    url_gw = f"http://{NGINX_HOST}:443/"     # the sidecar sends it to the gateway's 443

    def gw_answer(want):
        deadline = time.time() + 10
        while time.time() < deadline:
            r = t.ctl("explain-request", url_gw, str(gw.admin_port), "-o", "json")
            if r.out:
                e = json.loads(r.out)
                if want(e):
                    return e
            time.sleep(0.2)
        raise AssertionError(r.out + r.err)

    e = gw_answer(lambda e: e.get("response_flags") == "UF")
    assert e["destinations"][0]["cluster"] == f"outbound|443||{NGINX_HOST}"
    tls = e["cluster"]["tls"]
    assert (tls["mode"], tls["credential"]) == ("MUTUAL", "client-credential"), tls
    assert "client-credential" in tls["error"] and e["reason"] == tls["error"]
    certs = walkthrough_certs
    t.ctl.ok("create", "secret", "-n", "istio-system", "generic", "client-credential",
             "--from-file=tls.key=client.example.com.key",
             "--from-file=tls.crt=client.example.com.crt",
             "--from-file=ca.crt=example.com.crt", cwd=certs)
    e = gw_answer(lambda e: e.get("result") == "forward")
    assert e["cluster"]["tls"]["error"] is None
    assert e["endpoint"] == f"{t.nginx_ip}:443"
    e = wait_explain(t, sc, url, lambda e: e.get("result") == "forward")
    assert e["destinations"][0]["cluster"].endswith(f"|{EGW_HOST}"), e
    assert e["cluster"]["tls"]["mode"] == "ISTIO_MUTUAL"


def test_explain_request_from_the_sidecar_follows_the_mesh_to_the_gateway(topo):
    t = topo
    apply_cnn(t)
    wait_routed(t)
    gw, sc = t.gateway, t.sidecar
    gwa, sca = f"127.0.0.1:{gw.admin_port}", f"127.0.0.1:{sc.admin_port}"

    # The whole path: the sidecar's mesh route to the gateway's listener, then the
    # gateway's route to edition.cnn.com:443 with SIMPLE origination.
    r = t.ctl("explain-request", f"http://{CNN}/politics", gwa, "--from-sidecar", sca, "-o", "json")
    assert r.rc == 0, (r.out, r.err)
    e = json.loads(r.out)
    assert (e["sidecar"]["proxy"], e["sidecar"]["endpoint"]) == ("sidecar", f"{t.gw_ip}:80")
    assert e["sidecar"]["cluster"]["tls"]["mode"] == "ISTIO_MUTUAL"
    g = e["gateway"]
    assert g["proxy"] == "gateway" and g["request"]["url"] == f"http://{CNN}:80/politics"
    assert g["listener"]["server_tls"] == "ISTIO_MUTUAL"
    assert g["destinations"] == [{"cluster": f"outbound|443||{CNN}", "weight": 100}]
    assert (g["result"], g["endpoint"]) == ("forward", f"{t.cnn_ip}:443")
    assert e["path"].startswith(f"the sidecar sends the request to {t.gw_ip}:80, the gateway's "
                                f"listener "), e["path"]
    # Text: both answers, in order, and the hop between them.
    r = t.ctl("explain-request", f"http://{CNN}/politics", gwa, "--from-sidecar", sca)
    assert r.rc == 0, r.err
    side, _, rest = r.out.partition("\nThen the gateway at ")
    assert side.startswith(f"From the sidecar at {sca}:\n") and rest.startswith(f"{gwa}:\n")
    assert re.search(rf"^Result:\s+forwarded to {re.escape(t.gw_ip)}:80 ", side, re.M), side
    assert re.search(r"^Path:\s+the sidecar sends the request to ", side, re.M), side
    assert re.search(rf"^Result:\s+forwarded to {re.escape(t.cnn_ip)}:443 ", rest, re.M), rest
    # --from WORKLOAD: a pod word means $EGRESSGW_SIDECAR_ADMIN.
    r = t.ctl("explain-request", f"http://{CNN}/politics", gwa, "--from", "deploy/sleep",
              "-o", "json", env={"EGRESSGW_SIDECAR_ADMIN": sca})
    assert r.rc == 0 and json.loads(r.out)["gateway"]["endpoint"] == f"{t.cnn_ip}:443", r.err
    r = t.ctl("explain-request", f"http://{CNN}/politics", gwa, "--from", "deploy/sleep",
              env={"EGRESSGW_SIDECAR_ADMIN": ""})
    assert r.rc == 1 and "EGRESSGW_SIDECAR_ADMIN" in r.err

    # A host the sidecar passes through (ALLOW_ANY): said to bypass the gateway, which is
    # not asked.
    r = t.ctl("explain-request", "http://other.test/x", gwa, "--from-sidecar", sca, "-o", "json")
    e = json.loads(r.out)
    assert e["gateway"] is None and e["sidecar"]["cluster"]["name"] == "PassthroughCluster"
    assert e["path"].startswith("NOT through the gateway: the sidecar sends the request to "
                                "other.test:80 (cluster PassthroughCluster)"), e["path"]
    # A refusal at the sidecar stops there (exit 1), and so does one at the gateway.
    t.ctl.ok("apply", "-f", "-", input=NR_YAML)
    e = None
    for _ in range(50):
        r = t.ctl("explain-request", "http://nr.example.com/other", gwa, "--from-sidecar", sca,
                  "-o", "json")
        e = json.loads(r.out)
        if e["sidecar"].get("virtual_host"):
            break
        time.sleep(0.2)
    assert r.rc == 1 and e["gateway"] is None and e["sidecar"]["response_flags"] == "NR", e
    assert e["path"].startswith("the sidecar does not forward the request")
