"""egressgw --role sidecar as an HTTP proxy on loopback (curl -x / http_proxy): the whole
walkthrough end to end with curl, the gateway, and nginx sites playing edition.cnn.com and
my-nginx.mesh-external.svc.cluster.local; mesh identity checks both ways; the outbound
traffic policies; forward-proxy details; egressctl iptables; examples/ in step with the
test data. Transparent capture (iptables, network namespaces) is in test_transparent.py."""
import filecmp
import hashlib
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import REPO
from gwlib import loopback_ip, scaled
from sidecarlib import (CNN, EGW_HOST, GW_SPIFFE, NGINX_HOST, Egressgw, NxDns, Site, cnn_site,
                        demo_cert, heads, issue, mtls_site, run_walkthrough)


class Topology:
    """Everything on loopback addresses of its own: the two sites, the gateway, and the
    sidecar's capture port on 127.0.0.1."""

    def __init__(self, tmp, ctl, egressctl_bin, store, walkthrough_dir, certs, sleep_sa="sleep",
                 gw_sa="istio-egressgateway-service-account", policy="ALLOW_ANY", gw_extra=()):
        self.mode = "proxy"
        self.tmp, self.ctl, self.wt, self.certs, self.store = tmp, ctl, walkthrough_dir, certs, store
        self.egressctl = egressctl_bin
        self.cnn_ip, self.nginx_ip, self.gw_ip = loopback_ip(), loopback_ip(), loopback_ip()
        self.other_ip = loopback_ip()      # other.test: a host no ServiceEntry names
        self.site_certs = tmp / "site-certs"
        self.site_certs.mkdir()
        cert, key, self.demo_ca = demo_cert(self.site_certs, CNN)
        self.hosts = tmp / "hosts"
        self.hosts.write_text(f"{self.cnn_ip} {CNN}\n{self.nginx_ip} {NGINX_HOST}\n"
                              f"{self.gw_ip} {EGW_HOST}\n{self.other_ip} other.test\n")
        self.ca = tmp / "mesh-ca"
        self.gw_id = issue(egressctl_bin, self.ca, "istio-system", gw_sa, tmp / "gw-id",
                           create_ca=True)
        self.sleep_id = issue(egressctl_bin, self.ca, "default", sleep_sa, tmp / "sleep-id")
        self.sites, self.sidecars, self.gateway, self.dns = [], [], None, None
        try:
            self.sites += [cnn_site(tmp, self.cnn_ip, cert, key),
                           mtls_site(tmp, self.nginx_ip, certs)]
            self.dns = NxDns(loopback_ip())
            self.gateway = Egressgw(tmp, "gateway", "gateway", store, self.gw_id, self.hosts,
                                    self.dns, env={"SSL_CERT_FILE": str(self.demo_ca)},
                                    extra=["--namespace", "istio-system", "--labels",
                                           "istio=egressgateway", "--listen-address", self.gw_ip,
                                           *gw_extra])
            self.sidecar = self.start_sidecar("sidecar", self.sleep_id, policy)
        except BaseException:
            self.stop()          # what did start must not outlive the test
            raise

    def start_sidecar(self, name, identity, policy="ALLOW_ANY", extra=()):
        port = _free_port()
        sc = Egressgw(self.tmp, name, "sidecar", self.store, identity, self.hosts, self.dns,
                      extra=["--namespace", "default", "--outbound", f"127.0.0.1:{port}",
                             "--outbound-policy", policy, *extra])
        sc.outbound = port
        self.sidecars.append(sc)
        return sc

    def curl(self, *args, sidecar=None, timeout=30):
        """curl as the sleep pod's application runs it: through the sidecar as its
        http_proxy/https_proxy, trusting the demo public CA."""
        sc = sidecar or self.sidecar
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["http_proxy"] = env["https_proxy"] = f"http://127.0.0.1:{sc.outbound}"
        env["CURL_CA_BUNDLE"] = str(self.demo_ca)
        return subprocess.run(["curl", "--max-time", "20", *args], capture_output=True,
                              text=True, env=env, timeout=timeout)

    def proxyctl(self, *args):
        env = dict(os.environ)
        env["EGRESSGW_ADMIN"] = f"127.0.0.1:{self.gateway.admin_port}"
        return subprocess.run([str(self.egressctl), "--store", str(self.store), *args],
                              capture_output=True, text=True, env=env, timeout=30)

    def stop(self):
        rcs = [sc.stop() for sc in self.sidecars] + ([self.gateway.stop()] if self.gateway else [])
        for s in self.sites:
            s.stop()
        if self.dns:
            self.dns.stop()
        return rcs


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    yield t
    assert t.stop() == [0] * (1 + len(t.sidecars)), "egressgw did not exit 0 on SIGTERM"


def apply_cnn(t, subject_alt_names=None, gateway_sans=None, at_once=False):
    """The walkthrough's first half; optionally subjectAltNames on the sidecar's
    DestinationRule for the gateway, or on the Gateway server (allowed clients).
    at_once: one `egressctl apply` of the three files, so that each proxy reloads once
    into the whole configuration (three applies can land in two or three reloads when
    egressctl is slow, as under ASan, and a request between them follows the
    ServiceEntry alone)."""
    se = (t.wt / "01-serviceentry-cnn.yaml").read_text()
    gw = (t.wt / "02-gateway-destinationrule-cnn.yaml").read_text()
    if gateway_sans:
        gw = gw.replace("      mode: ISTIO_MUTUAL\n---",
                        "      mode: ISTIO_MUTUAL\n      subjectAltNames:\n" +
                        "".join(f"      - {s}\n" for s in gateway_sans) + "---")
    if subject_alt_names:
        gw = gw.replace("          sni: edition.cnn.com\n",
                        "          sni: edition.cnn.com\n          subjectAltNames:\n" +
                        "".join(f"          - {s}\n" for s in subject_alt_names))
    vs = (t.wt / "03-virtualservice-destinationrule-cnn.yaml").read_text()
    if at_once:
        t.ctl.ok("apply", "-f", "-", input="\n---\n".join((se, gw, vs)))
        return
    t.ctl.ok("apply", "-f", "-", input=se)
    t.ctl.ok("apply", "-f", "-", input=gw)
    t.ctl.ok("apply", "-f", "-", input=vs)


def apply_se(t):
    """The ServiceEntry alone, waited for until every sidecar has reloaded."""
    before = [sc.stat("config_reloads_total") for sc in t.sidecars]
    t.ctl.ok("apply", "-f", t.wt / "01-serviceentry-cnn.yaml")
    for sc, n in zip(t.sidecars, before):
        sc.wait_reloads(n + 1)


def wait_routed(t, sidecar=None, host=CNN, want=200, timeout=10.0):
    """Waits until the stores's latest configuration is in force in both proxies: the
    request answers want (the wait scaled under valgrind, where the first requests
    through both proxies take longer than 10 s)."""
    deadline = time.time() + scaled(timeout)
    last = None
    while time.time() < deadline:
        r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{host}/politics",
                   sidecar=sidecar)
        last = (r.stdout, r.stderr)
        if r.stdout == str(want):
            return
        time.sleep(0.1)
    raise AssertionError(f"never {want}: {last}")


# ---------------------------------------------------------------- the walkthrough

def test_walkthrough_end_to_end_through_the_http_proxy(topo):
    run_walkthrough(topo)
    _, stats = topo.sidecar.admin("/stats/prometheus")
    assert re.search(r"^egressgw_tunnel_total [1-9]", stats, re.M), stats
    assert re.search(r"^egressgw_passthrough_total [1-9]", stats, re.M), stats


# ---------------------------------------------------------------- identity

def test_sidecar_presents_its_workload_identity_and_verifies_the_gateway(topo):
    apply_cnn(topo, subject_alt_names=[GW_SPIFFE])
    wait_routed(topo)
    assert topo.gateway.stat("downstream_cx_peer_identity_total") >= 1


def test_default_sni_is_istios_outbound_name(topo):
    """Without sni in the DestinationRule, the sidecar sends Istio's default SNI; a Gateway
    server for "*" accepts it (the walkthrough sets sni because its server names
    edition.cnn.com)."""
    topo.ctl.ok("apply", "-f", topo.wt / "01-serviceentry-cnn.yaml")
    gw = (topo.wt / "02-gateway-destinationrule-cnn.yaml").read_text()
    gw = gw.replace("    hosts:\n    - edition.cnn.com\n", "    hosts:\n    - \"*\"\n")
    gw = gw.replace("          sni: edition.cnn.com\n", "")
    assert "sni:" not in gw and '"*"' in gw
    topo.ctl.ok("apply", "-f", "-", input=gw)
    topo.ctl.ok("apply", "-f", topo.wt / "03-virtualservice-destinationrule-cnn.yaml")
    wait_routed(topo)
    g = topo.gateway.wait_log(lambda g: g["code"] == "200")
    assert g["sni"] == f"outbound_.80_.cnn_.{EGW_HOST}", g.string


def test_gateway_with_the_wrong_spiffe_identity_is_refused(tmp_path, ctl, egressctl_bin, store,
                                                           walkthrough, walkthrough_certs):
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs,
                 gw_sa="impostor")
    try:
        apply_cnn(t, subject_alt_names=[GW_SPIFFE])
        deadline = time.time() + 10
        while True:
            r = t.curl("-sS", "-D", "-", f"http://{CNN}/politics")
            if heads(r.stdout) and heads(r.stdout)[0] == "HTTP/1.1 503 Service Unavailable":
                break
            assert time.time() < deadline, (r.stdout, r.stderr)
            time.sleep(0.1)
        assert "transport failure reason: TLS_error:|CERTIFICATE_VERIFY_FAILED" in r.stdout, r.stdout
        m = t.sidecar.wait_log(lambda m: m["code"] == "503")
        assert m["flags"] == "UF,URX", m.string     # retried twice: Istio's default policy
        assert m["cluster"] == f"outbound|80|cnn|{EGW_HOST}", m.string
        assert "no SubjectAltName matches" in m["tls"] and GW_SPIFFE in m["tls"], m.string
        _, stats = t.sidecar.admin("/stats/prometheus")
        assert re.search(r'^egressgw_upstream_tls_failure_total\{reason="san_mismatch"\} [1-9]', stats,
                         re.M), stats
        # Without subjectAltNames only the chain is checked: the same gateway is accepted.
        apply_cnn(t)
        wait_routed(t)
    finally:
        assert t.stop() == [0] * (1 + len(t.sidecars))


def test_client_certificate_from_another_mesh_ca_is_refused_by_the_gateway(topo):
    apply_cnn(topo)
    wait_routed(topo)
    other = issue(topo.egressctl, topo.tmp / "other-ca", "default", "sleep",
                  topo.tmp / "other-id", create_ca=True)
    # The other CA's workload trusts the gateway (same root file, to isolate the check).
    (other / "root-cert.pem").write_bytes((topo.ca / "root-cert.pem").read_bytes())
    rogue = topo.start_sidecar("rogue", other)
    fails = topo.gateway.stat("downstream_cx_ssl_handshake_failed_total")
    r = topo.curl("-sS", "-D", "-", "-o", "/dev/null", f"http://{CNN}/politics", sidecar=rogue)
    assert heads(r.stdout) == ["HTTP/1.1 503 Service Unavailable"], (r.stdout, r.stderr)
    m = rogue.wait_log(lambda m: m["code"] == "503")
    # With TLS 1.3 the client's handshake is over before the server has checked its
    # certificate: the refusal arrives as an alert (UF) or, when the server's close races
    # our request, as a reset of the connection (UC).
    assert {"UF", "UC"} & set(m["flags"].split(",")), m.string
    assert m["tls"].startswith("TLS_error:|"), m.string
    # The gateway's worker counts the failure right after sending its alert: the sidecar
    # may have answered curl before that.
    deadline = time.time() + 5
    while topo.gateway.stat("downstream_cx_ssl_handshake_failed_total") == fails:
        assert time.time() < deadline, topo.gateway.stderr()[-3000:]
        time.sleep(0.05)


def test_gateway_server_subject_alt_names_restrict_client_identities(topo):
    apply_cnn(topo, gateway_sans=["spiffe://cluster.local/ns/default/sa/sleep"])
    wait_routed(topo)
    intruder = topo.start_sidecar("intruder", issue(topo.egressctl, topo.ca, "default",
                                                    "intruder", topo.tmp / "intruder-id"))
    r = topo.curl("-sS", "-D", "-", "-o", "/dev/null", f"http://{CNN}/politics", sidecar=intruder)
    assert heads(r.stdout) == ["HTTP/1.1 503 Service Unavailable"], (r.stdout, r.stderr)
    m = intruder.wait_log(lambda m: m["code"] == "503")
    assert {"UF", "UC"} & set(m["flags"].split(",")), m.string
    # The allowed identity still gets through.
    r = topo.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{CNN}/politics")
    assert r.stdout == "200"
    assert "peer identity spiffe://cluster.local/ns/default/sa/sleep" in topo.gateway.stderr()


# ---------------------------------------------------------------- outbound traffic policy

def _other_site(t):
    """A site the registry does not know: other.test, in the hosts file only, with a
    certificate from the same demo CA as edition.cnn.com (curl trusts it)."""
    ip = t.other_ip
    cert, key, _ = demo_cert(t.site_certs, "other.test")
    body = f"""
  server {{ listen {ip}:80; location / {{ default_type text/plain; return 200 "other plain\\n"; }} }}
  server {{ listen {ip}:443 ssl; ssl_certificate {cert}; ssl_certificate_key {key};
           location / {{ default_type text/plain; return 200 "other tls\\n"; }} }}
"""
    t.sites.append(Site(t.tmp, "other", body, ip, 443))
    return ip


def test_allow_any_passes_unknown_hosts_through(topo):
    ip = _other_site(topo)
    apply_se(topo)
    r = topo.curl("-sS", "http://other.test/x")
    assert r.stdout == "other plain\n", (r.stdout, r.stderr)
    m = topo.sidecar.wait_log(lambda m: m["authority"] == "other.test")
    assert (m["code"], m["cluster"], m["route"], m["flags"]) == \
        ("200", "PassthroughCluster", "allow_any", "-"), m.string
    assert m["uhost"] == f"{ip}:80", m.string
    r = topo.curl("-sS", "https://other.test/y")
    assert r.stdout == "other tls\n", (r.stdout, r.stderr)
    m = topo.sidecar.wait_log(lambda m: m["method"] == "CONNECT" and m["authority"] == "other.test:443")
    assert (m["code"], m["cluster"], m["route"]) == ("200", "PassthroughCluster", "allow_any"), m.string
    # A name nobody knows: 503 DF from the passthrough lookup.
    r = topo.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://nxdomain.invalid/")
    assert r.stdout == "503", (r.stdout, r.stderr)
    m = topo.sidecar.wait_log(lambda m: m["authority"] == "nxdomain.invalid")
    assert (m["flags"], m["cluster"]) == ("DF", "PassthroughCluster"), m.string


def test_registry_only_refuses_unknown_hosts_with_502(tmp_path, ctl, egressctl_bin, store,
                                                      walkthrough, walkthrough_certs):
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs,
                 policy="REGISTRY_ONLY")
    try:
        _other_site(t)
        apply_se(t)
        r = t.curl("-sS", "-D", "-", "-o", "/dev/null", "http://other.test/x")
        assert heads(r.stdout) == ["HTTP/1.1 502 Bad Gateway"], (r.stdout, r.stderr)
        m = t.sidecar.wait_log(lambda m: m["authority"] == "other.test")
        assert (m["code"], m["cluster"], m["route"], m["details"]) == \
            ("502", "BlackHoleCluster", "block_all", "direct_response"), m.string
        r = t.curl("-sS", "https://other.test/y")
        assert r.returncode != 0 and "502" in r.stderr, (r.stdout, r.stderr)
        m = t.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
        assert (m["code"], m["cluster"], m["route"]) == ("502", "BlackHoleCluster", "block_all"), m.string
        # Registered hosts still pass, both ways: HTTP on 80 and CONNECT to 443.
        r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
        assert heads(r.stdout) == ["HTTP/1.1 301 Moved Permanently",
                                   "HTTP/1.1 200 Connection established", "HTTP/1.1 200 OK"], r.stdout
        assert t.sidecar.stat("blackhole_total") == 2
    finally:
        assert t.stop() == [0] * (1 + len(t.sidecars))


# ---------------------------------------------------------------- the proxy itself

def _raw(port, data, read_until_close=True):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                break
        return out


def test_forward_proxy_routes_by_the_url_not_the_host_header(topo):
    apply_se(topo)
    out = _raw(topo.sidecar.outbound,
               f"GET http://{CNN}/by-url HTTP/1.1\r\nHost: other.example\r\n"
               f"Proxy-Connection: keep-alive\r\nConnection: close\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 301 "), out
    m = topo.sidecar.wait_log(lambda m: m["path"] == "/by-url")
    assert m["authority"] == CNN, m.string
    assert m["cluster"] == f"outbound|80||{CNN}", m.string


def test_origin_form_to_the_capture_port_routes_by_host(topo):
    apply_se(topo)
    out = _raw(topo.sidecar.outbound,
               f"GET /politics HTTP/1.1\r\nHost: {CNN}\r\nConnection: close\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 301 "), out


def test_keep_alive_through_the_proxy(topo):
    apply_se(topo)
    reused = topo.sidecar.stat("upstream_rq_reused_total")
    r = topo.curl("-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code}\n",
                  f"http://{CNN}/a", f"http://{CNN}/b")
    assert r.stdout == "301\n301\n", r.stdout
    assert topo.sidecar.stat("upstream_rq_reused_total") >= reused + 1


def test_tls_to_the_capture_port_without_redirection_is_closed(topo):
    ctx = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", topo.sidecar.outbound), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            with ctx.wrap_socket(raw, server_hostname=CNN):
                pass


def _serve_one(server):
    """Gives server a listening socket on a loopback address of its own (ip, port, ls) and
    runs its _run (which accepts) in a thread."""
    server.ip = loopback_ip()
    server.ls = socket.socket()
    server.ls.bind((server.ip, 0))
    server.ls.listen(4)
    server.port = server.ls.getsockname()[1]
    threading.Thread(target=server._run, daemon=True).start()


class EchoUntilEof:
    """Reads everything until the client's half-close, then sends it all back and closes:
    a tunnel must pass the half-close on and keep the other direction open."""

    def __init__(self):
        _serve_one(self)

    def _run(self):
        c, _ = self.ls.accept()
        with c:
            data = bytearray()
            while True:
                chunk = c.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
            c.sendall(bytes(data))


def _connect_tunnel(port, target):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    return s, head


def test_connect_tunnel_streams_both_ways_and_passes_the_half_close_on(topo):
    echo = EchoUntilEof()
    s, head = _connect_tunnel(topo.sidecar.outbound, f"{echo.ip}:{echo.port}")
    assert head == b"HTTP/1.1 200 Connection established\r\n\r\n", head
    payload = os.urandom(8 << 20)     # far more than the tunnel's buffers
    sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
    sender.start()
    got = bytearray()
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    sender.join()
    s.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    m = topo.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
    assert (m["code"], m["cluster"], m["rx"], m["tx"]) == \
        ("200", "PassthroughCluster", str(len(payload)), str(len(payload))), m.string


class SendThenWait:
    """Sends data as fast as the connection takes it, then holds the connection open (no
    more bytes, no end) until told to close."""

    def __init__(self, data):
        self.data = data
        self.done = threading.Event()
        _serve_one(self)

    def _run(self):
        c, _ = self.ls.accept()
        with c:
            c.sendall(self.data)
            self.done.wait(120)


def test_connect_tunnel_bulk_download_beside_a_short_exchange(topo):
    """A download that the client starts reading only once the upstream has sent it all
    and gone quiet: megabytes wait in the tunnel's upstream socket, more than one event's
    budget of reads, and no new byte will come to make the (edge-triggered) socket report
    again: the tunnel must go on by its posted task, and meanwhile another tunnel of the
    same worker is answered. A tunnel that stalled when its budget ran out would leave
    the download unfinished."""
    payload = os.urandom(16 << 20)
    bulk = SendThenWait(payload)
    s, head = _connect_tunnel(topo.sidecar.outbound, f"{bulk.ip}:{bulk.port}")
    assert head == b"HTTP/1.1 200 Connection established\r\n\r\n", head
    time.sleep(1)        # the buffers on the way fill up; the upstream blocks, then waits
    got = bytearray()

    def download():
        while len(got) < len(payload):
            chunk = s.recv(1 << 20)
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=download)
    reader.start()
    echo = EchoUntilEof()
    s2, head2 = _connect_tunnel(topo.sidecar.outbound, f"{echo.ip}:{echo.port}")
    assert head2 == b"HTTP/1.1 200 Connection established\r\n\r\n", head2
    s2.sendall(b"ping")
    s2.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        chunk = s2.recv(64)
        if not chunk:
            break
        answer += chunk
    s2.close()
    assert answer == b"ping"
    reader.join(timeout=scaled(60))
    assert not reader.is_alive(), f"the download stalled at {len(got)} of {len(payload)} bytes"
    assert len(got) == len(payload), f"the download stalled at {len(got)} of {len(payload)} bytes"
    bulk.done.set()
    s.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    m = topo.sidecar.wait_log(lambda m: m["method"] == "CONNECT"
                              and m["tx"] == str(len(payload)))
    assert (m["code"], m["cluster"]) == ("200", "PassthroughCluster"), m.string


def test_connect_to_a_closed_port_is_503_uf(topo):
    port = _free_port()
    s, head = _connect_tunnel(topo.sidecar.outbound, f"127.0.0.1:{port}")
    s.close()
    assert head.startswith(b"HTTP/1.1 503 "), head
    m = topo.sidecar.wait_log(lambda m: m["method"] == "CONNECT")
    assert (m["code"], m["flags"]) == ("503", "UF"), m.string
    assert "Connection refused" in m["tls"], m.string


def test_sigterm_with_an_open_tunnel_exits_after_the_drain_timeout(topo):
    echo = EchoUntilEof()
    sc = topo.start_sidecar("draining", topo.sleep_id, extra=["--drain-timeout", "1s"])
    s, head = _connect_tunnel(sc.outbound, f"{echo.ip}:{echo.port}")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert sc.stat("tunnel_active") == 1
    t0 = time.time()
    sc.proc.terminate()
    assert sc.proc.wait(10) == 0
    assert 0.8 < time.time() - t0 < 5
    s.close()
    # The tunnel still open at exit is logged, and no memory is left behind (ASan).
    assert any('"CONNECT - HTTP/1.1" 200' in ln for ln in sc.log_lines()), sc.log_lines()


def test_connect_without_a_port_is_400(topo):
    out = _raw(topo.sidecar.outbound, b"CONNECT edition.cnn.com HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out


# ---------------------------------------------------------------- command line, files

def test_sidecar_command_line(build_dir, tmp_path):
    gw = str(build_dir / "egressgw")
    out = subprocess.run([gw, "--help"], capture_output=True, text=True).stdout
    assert "--outbound ADDR:PORT" in out and "--outbound-policy ALLOW_ANY|REGISTRY_ONLY" in out
    r = subprocess.run([gw, "--role", "sidecar", "--outbound-policy", "DENY"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "want ALLOW_ANY or REGISTRY_ONLY" in r.stderr
    r = subprocess.run([gw, "--role", "sidecar", "--store", str(tmp_path / "s"), "--outbound",
                        "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "--outbound: bad address" in r.stderr


def test_egressctl_iptables_prints_istio_like_rules(ctl):
    out = ctl.ok("iptables", "--uid", "1337", "--exclude-ports", "22,53",
                 "--exclude-cidr", "169.254.169.254/32")
    assert out.splitlines() == [
        "iptables -t nat -N EGRESSGW_REDIRECT",
        "iptables -t nat -A EGRESSGW_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "iptables -t nat -N EGRESSGW_OUTPUT",
        "iptables -t nat -A OUTPUT -p tcp -j EGRESSGW_OUTPUT",
        "iptables -t nat -A EGRESSGW_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "iptables -t nat -A EGRESSGW_OUTPUT -o lo -j RETURN",
        "iptables -t nat -A EGRESSGW_OUTPUT -d 169.254.169.254/32 -j RETURN",
        "iptables -t nat -A EGRESSGW_OUTPUT -p tcp -m multiport --dports 22,53 -j RETURN",
        "iptables -t nat -A EGRESSGW_OUTPUT -j EGRESSGW_REDIRECT",
    ]
    out = ctl.ok("iptables", "--gid", "1337", "--outbound-port", "15006", "--include-ports",
                 "80,443", "--ipv6")
    assert "ip6tables -t nat -A EGRESSGW_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in out
    assert "iptables -t nat -A EGRESSGW_OUTPUT -m owner --gid-owner 1337 -j RETURN" in out
    assert "iptables -t nat -A EGRESSGW_OUTPUT -p tcp -m multiport --dports 80,443 -j EGRESSGW_REDIRECT" in out
    assert ctl.ok("iptables", "--clean").splitlines()[0] == \
        "iptables -t nat -D OUTPUT -p tcp -j EGRESSGW_OUTPUT"
    r = ctl("iptables")
    assert r.rc == 1 and "--uid or --gid is required" in r.err
    r = ctl("iptables", "--uid", "1337; rm -rf /")
    assert r.rc == 1 and "invalid --uid" in r.err
    r = ctl("iptables", "--uid", "1", "--exclude-ports", "0")
    assert r.rc == 1 and "invalid --exclude-ports" in r.err


def test_examples_are_the_walkthrough_test_data(walkthrough):
    """examples/ (what make demo and the user guide apply) and tests/data/walkthrough (what
    the tests apply) hold the same YAML, byte for byte."""
    ex = REPO / "examples"
    names = sorted(p.name for p in walkthrough.glob("*.yaml"))
    assert names == sorted(p.name for p in ex.glob("*.yaml"))
    match, mismatch, errors = filecmp.cmpfiles(walkthrough, ex, names, shallow=False)
    assert mismatch == [] and errors == [], (mismatch, errors)
