"""The sidecar's hop to the gateway over HTTP/2 (ALPN h2 inside ISTIO_MUTUAL): the
application's requests, each on its own connection to the sidecar, share one upstream
connection; large bodies both ways; a request the application abandons is reset on its own
stream while the others finish; HTTP/1.1 when the gateway does not offer h2 (a request body
waiting for the connection is not lost) or the DestinationRule says DO_NOT_UPGRADE.

The gateway's upstream playing edition.cnn.com:443 is test_h2_mesh's Python HTTPS server
(it serves /big/N, /chunked/N, /slow/N and answers a POST with its body's sha256)."""
import concurrent.futures
import hashlib
import socket
import ssl
import threading
import time

import pytest

from gwlib import read_response, wait_port
from sidecarlib import CNN, EGW_HOST, Egressgw
from test_h2_mesh import MiB, SiteHandler, payload
from test_h2_mesh import Site as PySite
from test_sidecar import Topology, apply_cnn, wait_routed


class PyCnn:
    """The Python site on the address nginx had, with the same certificate."""

    def __init__(self, t):
        t.sites[0].stop()            # nginx playing edition.cnn.com (80 and 443)
        t.sites.remove(t.sites[0])
        self.srv = PySite((t.cnn_ip, 443), SiteHandler)
        self.srv.slow_aborted = threading.Event()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(t.site_certs / f"{CNN}.crt"), str(t.site_certs / f"{CNN}.key"))
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def _topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs, **kw):
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs, **kw)
    try:
        t.py = PyCnn(t)
    except BaseException:
        t.stop()
        raise
    return t


def _stop(t):
    t.py.stop()
    assert t.stop() == [0] * (1 + len(t.sidecars)), "egressgw did not exit 0 on SIGTERM"


@pytest.fixture
def h2topo(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    t = _topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    apply_cnn(t)
    wait_routed(t)
    yield t
    _stop(t)


def proxy_request(port, method, path, body=b"", timeout=20):
    """One request to the sidecar as an HTTP proxy (absolute-form), on its own
    connection. Returns (status, headers dict, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall((f"{method} http://{CNN}{path} HTTP/1.1\r\nHost: {CNN}\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
        return read_response(s)


def test_concurrent_requests_share_one_http2_connection(h2topo):
    t = h2topo
    gw_cx = t.gateway.stat("downstream_cx_total")
    sc_cx = t.sidecar.stat("upstream_cx_total")
    # (upstream_cx_total also counts attempts made before the gateway listened.)
    assert t.sidecar.stat("upstream_cx_http2_total") == 1
    n = 40

    def one(i):
        return proxy_request(t.sidecar.outbound, "GET", f"/slow/{20000 + i * 1000}")

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        results = list(ex.map(one, range(n)))
    for i, (status, _, body) in enumerate(results):
        assert status == 200 and body == b"x" * (20000 + i * 1000), (i, status, len(body))
    # Forty application connections, one sidecar -> gateway connection, no new one.
    assert t.sidecar.stat("upstream_cx_total") == sc_cx
    assert t.sidecar.stat("upstream_cx_http2_total") == 1
    # The gauge counts connections, not the requests' streams on them.
    assert t.sidecar.stat("upstream_cx_active") == 1
    assert t.gateway.stat("downstream_cx_total") == gw_cx
    lines = [ln for ln in t.gateway.log_lines() if "/slow/" in ln]
    assert len(lines) == n and all('HTTP/2" 200 ' in ln for ln in lines), lines[:3]


def test_large_bodies_both_ways(h2topo):
    t = h2topo
    body = payload(5 * MiB + 7)
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        up = ex.submit(proxy_request, t.sidecar.outbound, "POST", "/upload", body, 60)
        down = ex.submit(proxy_request, t.sidecar.outbound, "GET", f"/big/{5 * MiB}", b"", 60)
        chunked = ex.submit(proxy_request, t.sidecar.outbound, "GET", f"/chunked/{3 * MiB}",
                            b"", 60)
        status, _, digest = up.result()
        assert status == 200 and digest.decode() == hashlib.sha256(body).hexdigest()
        status, hdrs, got = down.result()
        assert status == 200 and hdrs["content-length"] == str(5 * MiB)
        assert got == payload(5 * MiB)
        status, hdrs, got = chunked.result()
        assert status == 200 and got == payload(3 * MiB), (status, hdrs, len(got))
    assert t.sidecar.stat("upstream_cx_http2_total") == 1
    post = t.gateway.wait_log(lambda g: g["method"] == "POST")
    assert post["proto"] == "HTTP/2" and int(post["rx"]) == len(body), post.string


def test_an_abandoned_request_is_reset_and_the_others_finish(h2topo):
    t = h2topo
    s = socket.create_connection(("127.0.0.1", t.sidecar.outbound), timeout=10)
    s.sendall(f"GET http://{CNN}/slow/400000 HTTP/1.1\r\nHost: {CNN}\r\n\r\n".encode())
    assert s.recv(100).startswith(b"HTTP/1.1 200 ")
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        futs = [ex.submit(proxy_request, t.sidecar.outbound, "GET", f"/big/{100000 + i}")
                for i in range(10)]
        s.close()                      # the application gives up on the slow answer
        for i, f in enumerate(futs):
            status, _, body = f.result()
            assert status == 200 and body == payload(100000 + i)
    # The gateway saw the stream reset (a client disconnect for it) and let go of the
    # upstream request; the shared connection carried on.
    assert t.py.srv.slow_aborted.wait(10), "the upstream request was not cancelled"
    g = t.gateway.wait_log(lambda g: "/slow/400000" in g["path"])
    assert g["flags"] == "DC" and g["proto"] == "HTTP/2", g.string
    m = t.sidecar.wait_log(lambda m: "/slow/400000" in m["path"])
    assert "DC" in m["flags"], m.string
    assert t.sidecar.stat("upstream_cx_http2_total") == 1
    status, _, body = proxy_request(t.sidecar.outbound, "GET", "/politics")
    assert status == 200


def test_http11_when_the_gateway_does_not_offer_h2(tmp_path, ctl, egressctl_bin, store,
                                                    walkthrough, walkthrough_certs):
    t = _topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs,
                  gw_extra=["--no-http2"])
    try:
        # Both proxies reload once into the whole configuration: a request before the
        # VirtualService lands would follow the ServiceEntry alone (503 UF, refused).
        before = [p.stat("config_reloads_total") for p in (t.sidecar, t.gateway)]
        apply_cnn(t, at_once=True)
        t.sidecar.wait_reloads(before[0] + 1)
        t.gateway.wait_reloads(before[1] + 1)
        wait_port(t.gw_ip, 80, proc=t.gateway.proc)
        # The first request carries a body: it waited for the connection, which turned
        # out to speak HTTP/1.1, and goes on a new one whole.
        body = payload(300000)
        deadline = time.time() + 10
        while True:
            status, _, digest = proxy_request(t.sidecar.outbound, "POST", "/upload", body)
            if status == 200 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert status == 200 and digest.decode() == hashlib.sha256(body).hexdigest()
        # The POST that met the fallback was not lost on the way (no 503 before the 200).
        # Only the POSTs the sidecar sent to the gateway count: the one apply still lands
        # in more than one reload when writing its files outlasts the 100 ms debounce
        # (under load), and a POST between them goes where that configuration says
        # (PassthroughCluster, or outbound|80||edition.cnn.com from the ServiceEntry
        # alone) and is refused there (503 UF, connection refused), as it should be.
        posts = [ln for ln in t.sidecar.log_lines() if '"POST /upload' in ln]
        via_gw = [ln for ln in posts if f"outbound|80|cnn|{EGW_HOST}" in ln]
        assert via_gw and not any('" 503 ' in ln for ln in via_gw), posts
        assert '" 200 ' in via_gw[0], posts
        assert t.sidecar.stat("upstream_cx_http2_fallback_total") == 1
        assert t.sidecar.stat("upstream_cx_http2_total") == 0
        for _ in range(3):
            assert proxy_request(t.sidecar.outbound, "GET", "/politics")[0] == 200
        # Remembered: no further attempt at h2.
        assert t.sidecar.stat("upstream_cx_http2_fallback_total") == 1
        lines = [ln for ln in t.gateway.log_lines() if '" 200 ' in ln]
        assert lines and all("HTTP/1.1\" 200" in ln for ln in lines), lines
    finally:
        _stop(t)


def test_do_not_upgrade_keeps_the_mesh_hop_on_http11(tmp_path, ctl, egressctl_bin, store,
                                                     walkthrough, walkthrough_certs):
    t = _topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    try:
        dr = (t.wt / "02-gateway-destinationrule-cnn.yaml").read_text()
        # In the port-level entry that sets ISTIO_MUTUAL: a port-level policy replaces
        # the subset's wholesale (Istio's mergeTrafficPolicy with hasPortLevel).
        marker = "        tls:\n          mode: ISTIO_MUTUAL\n"
        assert dr.count(marker) == 1, dr
        dr = dr.replace(marker, "        connectionPool:\n          http:\n"
                        "            h2UpgradePolicy: DO_NOT_UPGRADE\n" + marker)
        # The page's three files with the gateway's DestinationRule already saying
        # DO_NOT_UPGRADE, in one apply: no configuration the sidecar ever holds routes to
        # the gateway under a DestinationRule that allows h2 (applied after the walkthrough,
        # a reload of the walkthrough's last apply could count as the change's and the
        # first request go out under the old rule, as happened under ASan and load).
        se = (t.wt / "01-serviceentry-cnn.yaml").read_text()
        vs = (t.wt / "03-virtualservice-destinationrule-cnn.yaml").read_text()
        t.ctl.ok("apply", "-f", "-", input="\n---\n".join((se, dr, vs)))
        wait_routed(t)
        assert t.sidecar.stat("upstream_cx_http2_total") == 0
        assert t.sidecar.stat("upstream_cx_http2_fallback_total") == 0
        g = t.gateway.wait_log(lambda g: g["code"] == "200")
        assert g["proto"] == "HTTP/1.1", g.string
    finally:
        _stop(t)


def test_after_a_fallback_http11_connections_do_not_offer_h2(tmp_path, ctl, egressctl_bin,
                                                             store, walkthrough,
                                                             walkthrough_certs):
    """The key is remembered as HTTP/1.1 only; the gateway then restarts with HTTP/2 on.
    The sidecar's HTTP/1.1 connections must offer only http/1.1 by ALPN, or the gateway
    would pick h2 and read an HTTP/1.1 request as a broken connection preface."""
    t = _topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs,
                  gw_extra=["--no-http2"])
    try:
        apply_cnn(t)
        wait_routed(t)
        assert t.sidecar.stat("upstream_cx_http2_fallback_total") == 1
        assert t.gateway.stop() == 0
        t.gateway = Egressgw(tmp_path, "gateway2", "gateway", store, t.gw_id, t.hosts, t.dns,
                             env={"SSL_CERT_FILE": str(t.demo_ca)},
                             extra=["--namespace", "istio-system", "--labels",
                                    "istio=egressgateway", "--listen-address", t.gw_ip])
        wait_port(t.gw_ip, 80, proc=t.gateway.proc)
        for _ in range(5):
            status, _, _ = proxy_request(t.sidecar.outbound, "GET", "/politics")
            assert status == 200, t.sidecar.log_lines()[-3:]
        lines = t.gateway.log_lines()
        assert len(lines) == 5 and all('HTTP/1.1" 200 ' in ln for ln in lines), lines
    finally:
        _stop(t)


def test_slow_readers_do_not_starve_the_shared_connection(h2topo):
    """Twenty application clients stop reading large responses: each stream holds its
    window (256 KiB) at the sidecar, 5 MiB together, more than a 4 MiB connection window
    would allow. A request next to them must still complete."""
    t = h2topo
    stalled = []
    try:
        for _ in range(20):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(10)
            s.connect(("127.0.0.1", t.sidecar.outbound))
            s.sendall(f"GET http://{CNN}/big/{6 * MiB} HTTP/1.1\r\nHost: {CNN}\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.1 200 ")
            stalled.append(s)
        time.sleep(1)     # the upstream has pushed what the windows allow
        t0 = time.time()
        status, _, body = proxy_request(t.sidecar.outbound, "GET", f"/big/{1 * MiB}", timeout=10)
        assert status == 200 and body == payload(1 * MiB)
        assert time.time() - t0 < 5
        assert t.sidecar.stat("upstream_cx_http2_total") == 1
    finally:
        for s in stalled:
            s.close()


def test_a_malformed_chunked_body_on_a_ready_stream(h2topo):
    """A request whose chunked body is bad from its first bytes, on an HTTP/2 connection
    already up: 400 and closed, the stream cancelled; the sidecar keeps serving (this
    freed the request's upstream state twice, which ASan builds catch)."""
    t = h2topo
    with socket.create_connection(("127.0.0.1", t.sidecar.outbound), timeout=10) as s:
        s.sendall(f"POST http://{CNN}/upload HTTP/1.1\r\nHost: {CNN}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\nzz\r\n".encode())
        status, _, _ = read_response(s)
    assert status == 400
    for _ in range(3):
        assert proxy_request(t.sidecar.outbound, "GET", "/politics")[0] == 200
    assert t.sidecar.proc.poll() is None
