"""HTTP/2 between a mesh client and the gateway (ALPN h2 over ISTIO_MUTUAL): many streams on
one connection, large bodies both ways, a stream reset that leaves the others alone, the
access log's HTTP/2, and HTTP/1.1 for a client that does not offer h2. The upstream is a
small HTTPS/1.1 server playing edition.cnn.com that can echo a body's digest."""
import hashlib
import http.server
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest

from gwlib import Gateway, loopback_ip, make_server_ca, make_server_cert, mesh_context, \
    mesh_request, wait_port
from test_gateway import CNN, LOG_RE, apply_first_half, mesh  # noqa: F401 (fixture)

MiB = 1024 * 1024


def payload(n):
    """n deterministic bytes."""
    block = hashlib.sha256(b"egressgw").digest() * 128
    return (block * (n // len(block) + 1))[:n]


class SiteHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, code, body, chunked=False):
        self.send_response(code)
        self.send_header("content-type", "application/octet-stream")
        if chunked:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 100000):
                part = body[i:i + 100000]
                self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "12345")
        self.end_headers()

    def _head_case(self):
        """The response heads test_response_heads_over_h2 checks; True when answered."""
        if self.path == "/ust":
            # An upstream proxy's own service time: the gateway's replaces it.
            self.send_response(200)
            self.send_header("x-envoy-upstream-service-time", "99999")
            self.send_header("content-length", "3")
            self.end_headers()
            self.wfile.write(b"ust")
        elif self.path == "/continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
            self._send(200, b"after the interim head\n")
        elif self.path == "/nocontent":
            self.send_response(204)
            self.end_headers()
        else:
            return False
        return True

    def do_GET(self):
        if self._head_case():
            return
        m = re.match(r"^/(big|chunked|slow)/(\d+)$", self.path)
        if not m:
            self._send(200, b"politics page from the demo site\n")
            return
        n = int(m[2])
        if m[1] == "slow":
            # A long answer dribbled out: the client resets it midway.
            self.send_response(200)
            self.send_header("content-length", str(n))
            self.end_headers()
            try:
                for _ in range(n // 1000):
                    self.wfile.write(b"x" * 1000)
                    self.wfile.flush()
                    time.sleep(0.02)
            except OSError:
                self.server.slow_aborted.set()
            return
        self._send(200, payload(n), chunked=m[1] == "chunked")

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        h = hashlib.sha256()
        while n > 0:
            chunk = self.rfile.read(min(n, 65536))
            if not chunk:
                break
            h.update(chunk)
            n -= len(chunk)
        self._send(200, h.hexdigest().encode())


class Site(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a gateway opening a hundred upstream
    # connections at once (many streams) overflowed it, and under load a dropped
    # handshake outlasted the connect. A real server's is hundreds (nginx: 511).
    request_queue_size = 511


def tls_site(tmp_path, handler):
    """A generator for fixtures: a Python HTTPS/1.1 server with handler playing
    edition.cnn.com:443 on a loopback address of its own (demo CA in certs)."""
    ip = loopback_ip()
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, CNN)
    srv = Site((ip, 443), handler)
    srv.slow_aborted = threading.Event()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{ip} {CNN}\n")
    yield {"ip": ip, "ca": ca, "certs": certs, "hosts": hosts, "server": srv}
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def site(tmp_path):
    yield from tls_site(tmp_path, SiteHandler)


@pytest.fixture
def gateway(tmp_path, store, ctl, walkthrough, mesh, site):  # noqa: F811
    apply_first_half(ctl, walkthrough)
    gw_ip = loopback_ip()
    g = Gateway(tmp_path, store, mesh["gw"], gw_ip, site["hosts"], site["ca"])
    wait_port(gw_ip, 80, proc=g.proc)
    yield g
    g.stop()


class H2Client:
    """A python-h2 client on one mesh mTLS connection to the gateway."""

    def __init__(self, ip, client_dir):
        ctx = mesh_context(client_dir)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.create_connection((ip, 80), timeout=8)
        self.sock = ctx.wrap_socket(raw, server_hostname=CNN)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(16 * MiB)
        self.sock.sendall(self.conn.data_to_send())
        self.streams = {}
        self.pending = {}     # stream id -> body bytes still to send

    def request(self, path, method="GET", body=None, reset_after=None):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "https"), (":authority", CNN),
                   (":path", path), ("user-agent", "h2-test")]
        if body is not None:
            headers.append(("content-length", str(len(body))))
        self.conn.send_headers(sid, headers, end_stream=body is None)
        self.streams[sid] = {"status": None, "body": bytearray(), "ended": False,
                             "reset": None, "reset_after": reset_after}
        if body is not None:
            self.pending[sid] = memoryview(body)
        self._pump_send()
        return sid

    def _pump_send(self):
        for sid, rest in list(self.pending.items()):
            while len(rest) > 0:
                window = min(self.conn.local_flow_control_window(sid),
                             self.conn.max_outbound_frame_size)
                if window <= 0:
                    break
                self.conn.send_data(sid, rest[:window].tobytes())
                rest = rest[window:]
            if len(rest) == 0:
                self.conn.end_stream(sid)
                del self.pending[sid]
            else:
                self.pending[sid] = rest
        self.sock.sendall(self.conn.data_to_send())

    def run(self, timeout=30):
        """Until every stream has ended or been reset."""
        deadline = time.time() + timeout
        while any(not s["ended"] and s["reset"] is None for s in self.streams.values()):
            assert time.time() < deadline, "timed out"
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError("timed out: %r" % self.summary())
            assert data, "connection closed by the gateway"
            for ev in self.conn.receive_data(data):
                self._event(ev)
            self._pump_send()

    def summary(self):
        return {sid: (s["status"], len(s["body"]), s["ended"], s["reset"],
                      len(self.pending.get(sid, b"")))
                for sid, s in self.streams.items()}

    def _event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.streams[ev.stream_id]["status"] = int(dict(ev.headers)[":status"])
            self.streams[ev.stream_id]["headers"] = list(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams[ev.stream_id]
            st["body"] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if st["reset_after"] is not None and len(st["body"]) >= st["reset_after"] \
                    and st["reset"] is None and not st["ended"]:
                self.conn.reset_stream(ev.stream_id, 8)
                st["reset"] = "local"
        elif isinstance(ev, h2.events.StreamEnded):
            self.streams[ev.stream_id]["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            if self.streams[ev.stream_id]["reset"] is None:
                self.streams[ev.stream_id]["reset"] = ev.error_code

    def close(self):
        self.conn.close_connection()
        try:
            self.sock.sendall(self.conn.data_to_send())
        except OSError:
            pass
        self.sock.close()


def h2_lines(g, n):
    return [LOG_RE.match(line) for line in g.wait_log(n)]


def test_many_concurrent_streams_on_one_connection(gateway, mesh):  # noqa: F811
    c = H2Client(gateway.ip, mesh["client"])
    ids = [c.request("/politics") for _ in range(50)]
    c.run()
    for sid in ids:
        st = c.streams[sid]
        assert st["status"] == 200 and st["reset"] is None, (sid, st, gateway.stderr())
        assert bytes(st["body"]) == b"politics page from the demo site\n"
    c.close()
    lines = h2_lines(gateway, 50)
    assert len(lines) == 50
    for m in lines:
        assert m is not None
        assert m["proto"] == "HTTP/2" and m["code"] == "200" and m["flags"] == "-"
        assert m["authority"] == CNN and m["ua"] == "h2-test"
        assert m["sni"] == CNN
    # All from the same downstream connection.
    assert len({m["dremote"] for m in lines}) == 1


def test_large_bodies_both_ways(gateway, mesh):  # noqa: F811
    c = H2Client(gateway.ip, mesh["client"])
    up = payload(5 * MiB + 17)
    a = c.request("/upload", method="POST", body=up)
    b = c.request(f"/big/{5 * MiB + 3}")
    d = c.request(f"/chunked/{3 * MiB + 5}")
    c.run(timeout=60)
    assert c.streams[a]["status"] == 200, gateway.stderr()
    assert bytes(c.streams[a]["body"]).decode() == hashlib.sha256(up).hexdigest()
    assert c.streams[b]["status"] == 200
    assert hashlib.sha256(c.streams[b]["body"]).digest() == \
        hashlib.sha256(payload(5 * MiB + 3)).digest()
    assert bytes(c.streams[d]["body"]) == payload(3 * MiB + 5)
    c.close()
    lines = h2_lines(gateway, 3)
    by_path = {m["path"]: m for m in lines}
    assert by_path["/upload"]["method"] == "POST"
    assert int(by_path["/upload"]["rx"]) == len(up)
    assert int(by_path[f"/big/{5 * MiB + 3}"]["tx"]) == 5 * MiB + 3


def test_stream_reset_does_not_disturb_the_others(gateway, mesh, site):  # noqa: F811
    c = H2Client(gateway.ip, mesh["client"])
    slow = c.request("/slow/2000000", reset_after=5000)
    others = [c.request(f"/big/{200000 + i}") for i in range(10)]
    c.run(timeout=60)
    assert c.streams[slow]["reset"] == "local"
    for i, sid in enumerate(others):
        assert c.streams[sid]["status"] == 200 and c.streams[sid]["reset"] is None
        assert bytes(c.streams[sid]["body"]) == payload(200000 + i)
    # The connection still carries new streams after the reset.
    again = c.request("/politics")
    c.run()
    assert c.streams[again]["status"] == 200
    c.close()
    # The reset stream's upstream connection was closed, and it is logged DC.
    assert site["server"].slow_aborted.wait(10)
    lines = h2_lines(gateway, 12)
    slow_lines = [m for m in lines if m["path"] == "/slow/2000000"]
    assert len(slow_lines) == 1 and "DC" in slow_lines[0]["flags"], lines


def test_not_found_route_answered_over_h2(gateway, mesh):  # noqa: F811
    c = H2Client(gateway.ip, mesh["client"])
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                              (":authority", "other.example.com"), (":path", "/")],
                        end_stream=True)
    c.streams[sid] = {"status": None, "body": bytearray(), "ended": False, "reset": None,
                      "reset_after": None}
    c.sock.sendall(c.conn.data_to_send())
    c.run()
    assert c.streams[sid]["status"] == 404
    c.close()
    m = h2_lines(gateway, 1)[-1]
    assert m["proto"] == "HTTP/2" and m["flags"] == "NR"


def test_response_heads_over_h2(gateway, mesh):  # noqa: F811
    """The upstream's response head reaches an HTTP/2 client as HEADERS: the gateway's
    x-envoy-upstream-service-time replacing the upstream's, a HEAD response's
    content-length without a body, an interim 100 dropped before the final head, a 204
    ending the stream at once."""
    c = H2Client(gateway.ip, mesh["client"])
    ust = c.request("/ust")
    head = c.request("/", method="HEAD")
    cont = c.request("/continue")
    nocontent = c.request("/nocontent")
    c.run()
    c.close()
    s = c.streams

    def fields(sid, name):
        return [v for k, v in s[sid]["headers"] if k == name]

    assert s[ust]["status"] == 200 and bytes(s[ust]["body"]) == b"ust", c.summary()
    times = fields(ust, "x-envoy-upstream-service-time")
    assert len(times) == 1 and times[0].isdigit() and times[0] != "99999", s[ust]["headers"]
    assert s[head]["status"] == 200 and s[head]["ended"] and not s[head]["body"]
    assert fields(head, "content-length") == ["12345"], s[head]["headers"]
    assert s[cont]["status"] == 200 and s[cont]["ended"]
    assert bytes(s[cont]["body"]) == b"after the interim head\n"
    assert s[nocontent]["status"] == 204 and s[nocontent]["ended"]
    assert not s[nocontent]["body"] and not fields(nocontent, "content-length")
    assert all(s[sid]["reset"] is None for sid in (ust, head, cont, nocontent)), c.summary()


def test_http11_client_still_served(gateway, mesh):  # noqa: F811
    status, _, body = mesh_request(gateway.ip, 80, CNN, mesh["client"])
    assert status == 200 and body == b"politics page from the demo site\n"
    m = LOG_RE.match(gateway.wait_log(1)[-1])
    assert m["proto"] == "HTTP/1.1"


def test_curl_http2_with_client_certificate(gateway, mesh):  # noqa: F811
    cl = mesh["client"]
    out = subprocess.run(
        ["curl", "-sS", "--http2", "-k", "--cert", str(cl / "cert-chain.pem"),
         "--key", str(cl / "key.pem"), "--resolve", f"{CNN}:80:{gateway.ip}",
         "-w", "\\n%{http_version} %{http_code}", f"https://{CNN}:80/politics",
         f"https://{CNN}:80/politics"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("politics page from the demo site\n\n2 200") == 2, out.stdout
    lines = h2_lines(gateway, 2)
    assert [m["proto"] for m in lines] == ["HTTP/2", "HTTP/2"]
    assert lines[0]["dremote"] == lines[1]["dremote"]   # one connection, two streams


def test_idle_connection_closed_on_drain(gateway, mesh):  # noqa: F811
    c = H2Client(gateway.ip, mesh["client"])
    sid = c.request("/politics")
    c.run()
    assert c.streams[sid]["status"] == 200
    gateway.proc.send_signal(signal.SIGTERM)
    # Draining: the gateway sends GOAWAY and closes the idle HTTP/2 connection.
    goaway = False
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            data = c.sock.recv(65536)
        except (TimeoutError, OSError):
            break
        if not data:
            break
        goaway |= any(isinstance(ev, h2.events.ConnectionTerminated)
                      for ev in c.conn.receive_data(data))
    assert goaway
    assert gateway.proc.wait(10) == 0


def test_trickled_header_block_is_cut_at_the_deadline(tmp_path, store, ctl, walkthrough, mesh,  # noqa: F811
                                                      site):
    """Slowloris over HTTP/2: a HEADERS frame without END_HEADERS and no CONTINUATION after
    it. With --request-headers-timeout 1s the gateway closes the connection about a second
    later (as it does for an HTTP/1.1 head), while a connection that sent its request
    whole and then idles is not cut by that deadline."""
    apply_first_half(ctl, walkthrough)
    gw_ip = loopback_ip()
    g = Gateway(tmp_path, store, mesh["gw"], gw_ip, site["hosts"], site["ca"],
                extra=["--request-headers-timeout", "1s"])
    try:
        wait_port(gw_ip, 80, proc=g.proc)
        idle = H2Client(gw_ip, mesh["client"])
        sid = idle.request("/politics")
        idle.run()
        assert idle.streams[sid]["status"] == 200
        c = H2Client(gw_ip, mesh["client"])
        # HEADERS, stream 1, flags 0 (neither END_HEADERS nor END_STREAM), one HPACK byte
        # (":method: GET", static index 2): the block waits for CONTINUATION forever.
        c.sock.sendall(b"\x00\x00\x01\x01\x00\x00\x00\x00\x01\x82")
        t0 = time.time()
        c.sock.settimeout(10)
        closed = False
        while time.time() - t0 < 10:
            try:
                data = c.sock.recv(65536)
            except (ConnectionError, ssl.SSLError):
                closed = True
                break
            if not data:
                closed = True
                break
        waited = time.time() - t0
        assert closed and 0.5 < waited < 5, (closed, waited)
        # The idle connection with a complete request is still there and usable.
        sid = idle.request("/politics")
        idle.run()
        assert idle.streams[sid]["status"] == 200
    finally:
        g.stop()
