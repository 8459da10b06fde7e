"""AuthorizationPolicy on connections no HTTP is seen on (Envoy's network RBAC filter):
the gateway's PASSTHROUGH port (decided on the ClientHello's SNI) and TCP port (at
accept), on loopback with real peers: nginx playing edition.cnn.com and another playing a
second external TLS site, curl as the client, a server-first echo for TCP.

A denied connection is closed before anything connects upstream: the site's own log and
the gateway's upstream connection counter stay as they were, the gateway's access log
has Envoy's TCP line with rbac_access_denied_matched_policy[...], rbac_denied counts it.
Istio's rule for HTTP-only fields on TCP holds (a DENY ignores them, so it covers every
connection; an ALLOW using them never matches), and a policy change applies to the next
connection."""
import os
import socket
import subprocess
import threading

import pytest

from gwlib import loopback_ip, wait_until
from sidecarlib import CNN, demo_cert, wait_port
from test_passthrough import DATA, TCP_CONFIG, Topo, cnn_tls_site, site_lines
from test_transparent import NOBODY, OTHER_IP, Transparent, nets  # noqa: F401 (nets: fixture)

OTHER = "www.other.test"


def other_config(ip):
    """Gateway passthrough for edition.cnn.com (DNS, as the walkthrough) and OTHER (a
    STATIC endpoint at ip), on port 443."""
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
  namespace: istio-system
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: tls
      protocol: TLS
    hosts:
    - {CNN}
    - {OTHER}
    tls:
      mode: PASSTHROUGH
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: other
  namespace: istio-system
spec:
  hosts:
  - {OTHER}
  ports:
  - number: 443
    name: tls
    protocol: TLS
  resolution: STATIC
  endpoints:
  - address: {ip}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: passthrough
  namespace: istio-system
spec:
  hosts:
  - {CNN}
  - {OTHER}
  gateways:
  - istio-egressgateway
  tls:
  - match:
    - port: 443
      sniHosts:
      - {CNN}
    route:
    - destination:
        host: {CNN}
        port:
          number: 443
  - match:
    - port: 443
      sniHosts:
      - {OTHER}
    route:
    - destination:
        host: {OTHER}
        port:
          number: 443
"""


def policy(name, body):
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: {name}
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: egressgateway
{body}"""


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store):
    t = Topo(tmp_path, ctl, egressctl_bin, store)
    yield t
    assert t.stop() == [0, 0], "egressgw did not exit 0 on SIGTERM"


def direct(t, host, path="/"):
    """curl straight to the gateway's PASSTHROUGH port (the SNI is host's)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(t.demo_ca),
                           "--resolve", f"{host}:443:{t.gw_ip}", "-o", "/dev/null", "-w",
                           "%{http_code}", f"https://{host}{path}"],
                          capture_output=True, text=True, env=env, timeout=30)


def test_gateway_passthrough_policy_on_sni(topo, tmp_path):
    t = topo
    other_ip = loopback_ip()
    certs = tmp_path / "site-certs"       # Topo's demo CA signs OTHER's certificate too
    cert, key, _ = demo_cert(certs, OTHER)
    (tmp_path / "other").mkdir()
    # An nginx of its own (its own directory and log) serving OTHER's certificate.
    other = cnn_tls_site(tmp_path / "other", other_ip, cert, key)
    try:
        t.apply(DATA / "01-serviceentry-cnn.yaml", t.gateway)
        t.ctl.ok("apply", "-f", "-", input=other_config(other_ip))
        wait_port(t.gw_ip, 443)
        wait_until(lambda: direct(t, OTHER, "/politics").stdout == "200", what="OTHER through the gateway")
        r = direct(t, CNN, "/politics")
        assert r.stdout == "200", (r.stdout, r.stderr, t.gateway.stderr()[-2000:])
        assert t.gateway.stat("rbac_denied_total") == 0

        # DENY on connection.sni: edition.cnn.com is refused, OTHER goes through.
        t.apply(policy("no-cnn-sni", """  action: DENY
  rules:
  - when:
    - key: connection.sni
      values: ["edition.cnn.com"]
"""), t.gateway)
        n_site, ucx = len(site_lines(t.site)), t.gateway.stat("upstream_cx_total")
        denied, allowed = t.gateway.stat("rbac_denied_total"), t.gateway.stat("rbac_allowed_total")
        r = direct(t, CNN, "/politics")
        assert r.returncode != 0 and r.stdout == "000", (r.stdout, r.stderr)
        g = t.gateway.wait_log(lambda m: m["sni"] == CNN and "rbac" in m["details"])
        assert g["details"] == \
            "rbac_access_denied_matched_policy[ns[istio-system]-policy[no-cnn-sni]-rule[0]]", \
            g.string
        assert (g["method"], g["code"], g["uhost"], g["tx"]) == ("-", "0", "-", "0"), g.string
        assert t.gateway.stat("rbac_denied_total") == denied + 1
        # Nothing reached edition.cnn.com: no connection left the gateway.
        assert t.gateway.stat("upstream_cx_total") == ucx
        assert len(site_lines(t.site)) == n_site
        acc = len(site_lines(other))
        r = direct(t, OTHER, "/politics")
        assert r.stdout == "200", (r.stdout, r.stderr)
        wait_until(lambda: len(site_lines(other)) == acc + 1, what="OTHER's log line")
        assert f"sni={OTHER} " in site_lines(other)[-1]
        assert t.gateway.stat("rbac_allowed_total") == allowed + 1
        assert t.gateway.stat("upstream_cx_total") == ucx + 1

        # The same policy on OTHER instead: the next connections follow the change.
        t.apply(policy("no-cnn-sni", """  action: DENY
  rules:
  - when:
    - key: connection.sni
      values: ["*.other.test"]
"""), t.gateway)
        acc = len(site_lines(other))
        r = direct(t, OTHER, "/politics")
        assert r.returncode != 0, (r.stdout, r.stderr)
        t.gateway.wait_log(lambda m: m["sni"] == OTHER and "rbac" in m["details"])
        assert len(site_lines(other)) == acc
        r = direct(t, CNN, "/politics")
        assert r.stdout == "200", (r.stdout, r.stderr)

        # to.operation.hosts is HTTP-only: a DENY ignores it on a connection (Istio's
        # rule, so that a DENY is never weakened), so it covers both names.
        t.apply(policy("no-cnn-sni", """  action: DENY
  rules:
  - to:
    - operation:
        hosts: ["edition.cnn.com"]
"""), t.gateway)
        n_site, acc, ucx = len(site_lines(t.site)), len(site_lines(other)), \
            t.gateway.stat("upstream_cx_total")
        assert direct(t, CNN, "/politics").stdout == "000"
        assert direct(t, OTHER, "/politics").stdout == "000"
        assert (len(site_lines(t.site)), len(site_lines(other))) == (n_site, acc)
        assert t.gateway.stat("upstream_cx_total") == ucx

        # An ALLOW on the SNI (and the DENY gone): only that name.
        t.ctl.ok("delete", "authorizationpolicy", "no-cnn-sni", "-n", "istio-system")
        t.apply(policy("only-other", f"""  action: ALLOW
  rules:
  - when:
    - key: connection.sni
      values: ["{OTHER}"]
"""), t.gateway)
        assert direct(t, OTHER, "/politics").stdout == "200"
        assert direct(t, CNN, "/politics").stdout == "000"
        g = t.gateway.wait_log(lambda m: m["sni"] == CNN and m["details"].endswith("[none]"))
        assert g["details"] == "rbac_access_denied_matched_policy[none]", g.string
    finally:
        other.stop()


def test_gateway_tcp_policy_on_destination_port(topo):
    t = topo
    srv = socket.socket()
    srv.bind((t.echo_ip, 9000))
    srv.listen(8)
    seen = []

    def serve(c):
        with c:
            try:
                c.sendall(b"hello\n")
                while c.recv(4096):
                    pass
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

    threading.Thread(target=echo, daemon=True).start()

    def talk():
        """The server's greeting through the gateway, or b"" when closed unanswered;
        checks that the echo server saw a connection exactly when it answered."""
        n = len(seen)
        with socket.create_connection((t.gw_ip, 9000), timeout=5) as s:
            f = s.makefile("rb")
            line = f.readline()
            s.shutdown(socket.SHUT_WR)
            f.read()
        assert len(seen) == n + (1 if line else 0), (line, seen)
        return line

    try:
        t.apply(TCP_CONFIG, t.gateway)
        wait_port(t.gw_ip, 9000)
        # wait_port's own connection went through (no policy yet).
        wait_until(lambda: len(seen) == 1, what="wait_port's connection at the echo server")
        assert talk() == b"hello\n"

        # ALLOW on another destination.port: the TCP port's connections are refused at
        # accept, before the echo server hears of them.
        t.apply(policy("tcp-port", """  action: ALLOW
  rules:
  - when:
    - key: destination.port
      values: ["9001"]
"""), t.gateway)
        denied, ucx = t.gateway.stat("rbac_denied_total"), t.gateway.stat("upstream_cx_total")
        assert talk() == b""
        g = t.gateway.wait_log(lambda m: m["details"] == "rbac_access_denied_matched_policy[none]")
        assert (g["dlocal"], g["code"], g["rx"], g["tx"]) == (f"{t.gw_ip}:9000", "0", "0", "0"), \
            g.string
        assert t.gateway.stat("rbac_denied_total") == denied + 1
        assert t.gateway.stat("upstream_cx_total") == ucx

        # The policy changed to this port: the next connection passes.
        t.apply(policy("tcp-port", """  action: ALLOW
  rules:
  - when:
    - key: destination.port
      values: ["9000"]
"""), t.gateway)
        assert talk() == b"hello\n"

        # An ALLOW using an HTTP-only field never matches a connection (Istio's rule).
        t.apply(policy("tcp-port", """  action: ALLOW
  rules:
  - to:
    - operation:
        ports: ["9000"]
        methods: ["GET"]
"""), t.gateway)
        assert talk() == b""

        # AUDIT marks the connection in the log; the decision stays ALLOW's.
        t.apply(policy("tcp-port", """  action: ALLOW
  rules:
  - to:
    - operation:
        ports: ["9000"]
"""), t.gateway)
        t.apply(policy("tcp-audit", """  action: AUDIT
  rules:
  - when:
    - key: destination.port
      values: ["9000"]
"""), t.gateway)
        assert talk() == b"hello\n"
        wait_until(lambda: "audit: ns[istio-system]-policy[tcp-audit]-rule[0] matched"
                   in t.gateway.stderr(), what="the AUDIT line")
    finally:
        srv.close()


def test_sidecar_decides_captured_tls_and_opaque_connections(tmp_path, nets, ctl, egressctl_bin,
                                                             store, walkthrough,
                                                             walkthrough_certs):
    """The sidecar (transparent capture, test_transparent.py's namespaces) decides the TLS
    it passes through by SNI and opaque TCP by destination port, with its namespace's
    policies; plain HTTP stays decided per request."""
    t = Transparent(tmp_path, nets, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    try:
        assert t.curl("-sS", "https://other.test/y").stdout == "other tls\n"
        s0 = t.sidecar.stat("config_reloads_total")
        ctl.ok("apply", "-f", "-", input="""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: no-other-tls
  namespace: default
spec:
  action: DENY
  rules:
  - when:
    - key: connection.sni
      values: ["other.test"]
  - to:
    - operation:
        ports: ["2525"]
""")
        t.sidecar.wait_reloads(s0 + 1)
        assert "not on TLS" not in t.sidecar.stderr()
        ucx, denied = t.sidecar.stat("upstream_cx_total"), t.sidecar.stat("rbac_denied_total")
        r = t.curl("-sS", "https://other.test/y")
        assert r.returncode != 0 and r.stdout == "", (r.stdout, r.stderr)
        m = t.sidecar.wait_log(lambda m: m["sni"] == "other.test" and "rbac" in m["details"])
        assert m["details"] == \
            "rbac_access_denied_matched_policy[ns[default]-policy[no-other-tls]-rule[0]]", m.string
        assert (m["method"], m["code"], m["uhost"]) == ("-", "0", "-"), m.string
        # A server-first protocol on the denied port: closed, the banner never relayed.
        script = ("import socket\n"
                  f"s = socket.create_connection(('{OTHER_IP}', 2525), timeout=10)\n"
                  "print(repr(s.recv(100)))\n")
        r = t.in_app(["/usr/bin/python3", "-c", script], user=NOBODY)
        assert r.stdout.strip() == "b''", (r.stdout, r.stderr)
        m = t.sidecar.wait_log(lambda m: m["dlocal"] == f"{OTHER_IP}:2525")
        assert m["details"] == \
            "rbac_access_denied_matched_policy[ns[default]-policy[no-other-tls]-rule[1]]", m.string
        assert t.sidecar.stat("upstream_cx_total") == ucx
        assert t.sidecar.stat("rbac_denied_total") == denied + 2
        # Plain HTTP to the same host has no SNI and another port: allowed.
        assert t.curl("-sS", "http://other.test/x").stdout == "other plain\n"
    finally:
        rcs = t.stop()
    assert rcs == [0, 0]
