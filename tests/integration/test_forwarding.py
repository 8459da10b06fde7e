"""egressgw's HTTP/1.1 data path against real peers: bodies streamed both ways with bounded
memory, response framings (chunked with trailers, HEAD, 204/304, close-delimited), the
retry of a request that raced an upstream's close of a pooled connection, route timeouts,
weighted destinations, reloads under load, the JSON access log, DNS failure and
re-resolution, downstream protocol errors, keep-alive semantics and several workers.

Peers: nginx (a static site with a 20 MiB file) and small Python servers written here,
each on a loopback address of its own, speaking TLS with Python's ssl, whose behaviour per
request is a plain function (so an upstream can misbehave on purpose) and which record
every connection and request they get. A tiny DNS server answers NXDOMAIN to everything,
so no lookup ever leaves the machine.

One gateway serves most tests (module scope); tests that need their own process (memory
measurement, JSON log, two workers) start one. Everything goes mesh client -> gateway
(ISTIO_MUTUAL) -> upstream (TLS origination, DestinationRule SIMPLE)."""
import collections
import hashlib
import json
import os
import random
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import Ctl
from gwlib import (Gateway, Nginx, loopback_ip, make_server_ca, make_server_cert,
                   mesh_context, wait_port)
from test_gateway import LOG_RE

MIB = 1024 * 1024

# Front names (what clients ask the gateway for) and where each one's upstream is.
UPSTREAM_NAMES = ["nginx.test", "load.test", "echo.test", "slow.test", "stale.test",
                  "idle.test", "wa.test", "wb.test", "wc.test", "rec.test", "dns.test"]
FRONT_NAMES = [n for n in UPSTREAM_NAMES if n not in ("wa.test", "wb.test", "wc.test")] + ["w.test"]


# ---------------------------------------------------------------- upstream servers

class Req:
    """A request as an upstream saw it."""

    def __init__(self, method, target, version, headers):
        self.method, self.target, self.version, self.headers = method, target, version, headers
        self.conn = 0       # connection number at that server (1, 2, ...)
        self.nreq = 0       # request number on that connection
        self.body_len = 0
        self.body = b""     # kept when small
        self.trailers = []  # raw trailer field lines of a chunked body

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None


def read_head(rf):
    """Reads a request head from a buffered file; None at a clean EOF."""
    line = rf.readline(65536)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise ValueError(f"bad request line {line!r}")
    headers = []
    while True:
        h = rf.readline(65536)
        if not h:
            raise ValueError("EOF in head")
        if h == b"\r\n":
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip().lower(), v.strip()))
    return Req(parts[0], parts[1], parts[2], headers)


def consume_body(rf, req, keep=4096):
    """Reads the request body (Content-Length or chunked) in pieces; returns (length,
    sha256 hex). Keeps the first `keep` bytes in req.body."""
    h = hashlib.sha256()
    n = 0
    te = req.header("transfer-encoding")
    if te is not None:
        assert te.lower() == "chunked", te
        while True:
            size_line = rf.readline(4096)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while True:
                    t = rf.readline(65536)
                    if t in (b"\r\n", b""):
                        break
                    req.trailers.append(t)
                break
            left = size
            while left:
                piece = rf.read(min(left, 256 * 1024))
                if not piece:
                    raise ValueError("EOF in chunk")
                h.update(piece)
                if len(req.body) < keep:
                    req.body += piece[:keep - len(req.body)]
                left -= len(piece)
                n += len(piece)
            assert rf.read(2) == b"\r\n"
    else:
        left = int(req.header("content-length") or 0)
        while left:
            piece = rf.read(min(left, 256 * 1024))
            if not piece:
                raise ValueError("EOF in body")
            h.update(piece)
            if len(req.body) < keep:
                req.body += piece[:keep - len(req.body)]
            left -= len(piece)
            n += len(piece)
    req.body_len = n
    return n, h.hexdigest()


def respond(sock, code, body=b"", headers=(), reason="OK"):
    head = f"HTTP/1.1 {code} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)


class Upstream:
    """A threaded HTTP/1.1 server over TLS. handler(server, sock, rfile, req) answers one
    request (it must consume the body) and returns False to close the connection."""

    def __init__(self, ip, ctx, handler, name, port=443):
        self.ip, self.port, self.ctx, self.handler, self.name = ip, port, ctx, handler, name
        self.lock = threading.Lock()
        self.nconns = 0
        self.requests = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((ip, port))
        self.ls.listen(256)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with self.lock:
            self.nconns += 1
            cno = self.nconns
        s = c
        try:
            c.settimeout(30)
            s = self.ctx.wrap_socket(c, server_side=True)
            rf = s.makefile("rb")
            nreq = 0
            while True:
                req = read_head(rf)
                if req is None:
                    break
                nreq += 1
                req.conn, req.nreq = cno, nreq
                with self.lock:
                    self.requests.append(req)
                if self.handler(self, s, rf, req) is False:
                    break
        except (OSError, ValueError):
            pass
        finally:
            s.close()

    def snapshot(self):
        with self.lock:
            return self.nconns, list(self.requests)

    def stop(self):
        self.ls.close()


def echo_handler(srv, s, rf, req):
    """The echo site: what each path does is what the tests need of an upstream."""
    path = req.target
    if path in ("/upload", "/upload-slow"):
        if path == "/upload-slow":
            time.sleep(0.5)     # a slow reader: the gateway must stop reading the client
        n, digest = consume_body(rf, req, keep=0)
        respond(s, 200, f"{n} {digest}\n".encode(), [("Content-Type", "text/plain")])
        return True
    consume_body(rf, req)
    if path == "/id":
        respond(s, 200, srv.name.encode() + b"\n")
    elif path == "/chunked":
        # Several writes, a chunk extension, an empty-looking line inside the data, and a
        # trailer section whose fields must never reach the client as fields.
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                  b"Trailer: x-checksum\r\n\r\n")
        for part in CHUNKED_PARTS:
            s.sendall(b"%x;ext=\"v\"\r\n%s\r\n" % (len(part), part))
            time.sleep(0.005)
        s.sendall(b"0\r\nx-checksum: abc123\r\ncontent-length: 5\r\n\r\n")
    elif path == "/head" and req.method == "HEAD":
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n")
    elif path == "/204":
        s.sendall(b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n")
    elif path == "/304":
        s.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 99\r\n\r\n")
    elif path == "/close":
        # HTTP/1.1 without Content-Length or chunked: the body ends when the server closes.
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        for i in range(0, len(CLOSE_BODY), 50000):
            s.sendall(CLOSE_BODY[i:i + 50000])
        return False
    elif path == "/slow":
        time.sleep(3)
        respond(s, 200, b"too late\n")
    else:
        respond(s, 404, b"no such path\n")
    return True


def stale_handler(srv, s, rf, req):
    """Answers the first request of each connection, advertising keep-alive; the second
    request on a connection is read in full and then the connection is closed unanswered:
    the server closed an idle connection just as the gateway reused it."""
    consume_body(rf, req)
    if req.nreq >= 2:
        return False
    respond(s, 200, f"{req.method} {req.target} on connection {req.conn}\n".encode())
    return True


def idle_close_handler(srv, s, rf, req):
    """Answers with keep-alive semantics (no Connection: close) and closes right after."""
    consume_body(rf, req)
    respond(s, 200, f"{req.target} {req.conn}\n".encode())
    return False


CHUNKED_PARTS = [b"first chunk\n", b"\r\n", bytes(range(256)) * 300, b"x" * 70000, b"last\n"]
CLOSE_BODY = random.Random(7).randbytes(300000)


class NxDns:
    """A DNS server on UDP port 53 of a loopback address answering NXDOMAIN to everything."""

    def __init__(self, ip):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((ip, 53))
        self.addr = f"{ip}:53"
        self.queries = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                q, peer = self.s.recvfrom(1500)
            except OSError:
                return
            if len(q) < 12:
                continue
            self.queries += 1
            i = 12
            while i < len(q) and q[i] != 0:
                i += 1 + q[i]
            question = q[12:i + 5]
            # QR, the query's opcode and RD; RA; rcode 3 (NXDOMAIN); one question, no answers.
            head = q[0:2] + bytes([0x80 | (q[2] & 0x79), 0x83]) + b"\x00\x01" + b"\x00" * 6
            self.s.sendto(head + question, peer)

    def stop(self):
        self.s.close()


# ---------------------------------------------------------------- configuration

def site_yaml(host, dr_extra=""):
    """A ServiceEntry for host (DNS, port 443) and a DestinationRule originating TLS."""
    n = host.replace(".", "-")
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se-{n}
spec:
  hosts:
  - {host}
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr-{n}
spec:
  host: {host}
  trafficPolicy:
{dr_extra}    tls:
      mode: SIMPLE
"""


def vs_yaml(front, dests, timeout=None):
    """A VirtualService for the gateway: front -> dests [(host, weight)] on port 443."""
    n = front.replace(".", "-")
    route = "".join(f"""    - destination:
        host: {h}
        port:
          number: 443
      weight: {w}
""" for h, w in dests)
    to = f"    timeout: {timeout}\n" if timeout else ""
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs-{n}
spec:
  hosts:
  - {front}
  gateways:
  - istio-egressgateway
  http:
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
{route}{to}"""


def gateway_yaml():
    hosts = "".join(f"    - {h}\n" for h in FRONT_NAMES)
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: https
      protocol: HTTPS
    hosts:
{hosts}    tls:
      mode: ISTIO_MUTUAL
"""


def all_config():
    docs = [gateway_yaml()]
    for h in UPSTREAM_NAMES:
        docs.append(site_yaml(h))
    for h in FRONT_NAMES:
        if h == "w.test":
            docs.append(vs_yaml(h, [("wa.test", 80), ("wb.test", 20), ("wc.test", 0)]))
        elif h == "slow.test":
            docs.append(vs_yaml(h, [(h, 100)], timeout="1s"))
        else:
            docs.append(vs_yaml(h, [(h, 100)]))
    return "---\n".join(docs)


def write_hosts(path, entries):
    """Replaces the hosts file atomically (the gateway may read it at any moment)."""
    tmp = path.with_suffix(".new")
    tmp.write_text("".join(f"{ip} {name}\n" for name, ip in entries.items()))
    os.replace(tmp, path)


# ---------------------------------------------------------------- client side

Resp = collections.namedtuple("Resp", "status headers body trailers")


def read_resp(rf, method="GET"):
    """Reads one response from a buffered file, framed as RFC 9112 says (HEAD, 1xx, 204
    and 304 have no body). Trailer lines of a chunked body are returned raw."""
    line = rf.readline(65536)
    if not line:
        raise EOFError("connection closed before a response")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = rf.readline(65536)
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    trailers = []
    if method == "HEAD" or status in (204, 304) or status < 200:
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(rf.readline(4096).split(b";")[0], 16)
            if size == 0:
                break
            parts.append(rf.read(size))
            assert rf.read(2) == b"\r\n"
        while True:
            t = rf.readline(65536)
            if t in (b"\r\n", b""):
                break
            trailers.append(t)
        body = b"".join(parts)
    elif "content-length" in headers:
        body = rf.read(int(headers["content-length"]))
    else:
        body = rf.read()
    return Resp(status, headers, body, trailers)


class Client:
    """One mesh client connection to the gateway (ISTIO_MUTUAL)."""

    def __init__(self, env, gw, sni, timeout=30):
        raw = socket.create_connection((gw.ip, 80), timeout=timeout)
        self.s = env.client_ctx.wrap_socket(raw, server_hostname=sni)
        self.rf = self.s.makefile("rb")
        self.sni = sni

    def send(self, data):
        self.s.sendall(data)

    def request(self, method="GET", path="/id", host=None, headers="", body=None,
                version="HTTP/1.1"):
        h = f"{method} {path} {version}\r\n"
        if host is not False:
            h += f"Host: {host or self.sni}\r\n"
        h += headers
        if body is not None:
            h += f"Content-Length: {len(body)}\r\n"
        self.send(h.encode() + b"\r\n" + (body or b""))
        return read_resp(self.rf, method)

    def at_eof(self, timeout=3.0):
        """True when the gateway closed the connection (clean TLS close or plain EOF)."""
        self.s.settimeout(timeout)
        try:
            return self.rf.read(1) == b""
        except (ssl.SSLError, ConnectionResetError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.rf.close()
        self.s.close()


class Env:
    pass


def stats(gw):
    code, body = gw.admin("/stats/prometheus")
    assert code == 200
    return {m[1]: int(m[2]) for m in re.finditer(r"^egressgw_(\w+) (\d+)$", body, re.M)}


def log_for(gw, rid, timeout=5.0):
    """The access log entry (LOG_RE match) of the request whose x-request-id is rid."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in gw.log_lines():
            if f'"{rid}"' in line:
                m = LOG_RE.match(line)
                assert m, line
                return m
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {rid}: {gw.log_lines()[-5:]}")


def vm_hwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def env(tmp_path_factory, egressctl_bin):
    e = Env()
    tmp = e.tmp = tmp_path_factory.mktemp("fwd")
    ca = tmp / "mesh-ca"
    e.gw_id, e.client_id = tmp / "gw-identity", tmp / "sleep-identity"
    subprocess.run([egressctl_bin, "ca", "init", "--dir", ca], check=True, capture_output=True)
    subprocess.run([egressctl_bin, "ca", "issue", "--dir", ca, "--namespace", "istio-system",
                    "--service-account", "istio-egressgateway-service-account", "--out", e.gw_id],
                   check=True, capture_output=True)
    subprocess.run([egressctl_bin, "ca", "issue", "--dir", ca, "--namespace", "default",
                    "--service-account", "sleep", "--out", e.client_id], check=True,
                   capture_output=True)
    e.client_ctx = mesh_context(e.client_id)

    certs = tmp / "site-certs"
    certs.mkdir()
    e.server_ca = make_server_ca(certs)
    # w.test too: the upstream's name is checked against the request's Host (Istio's
    # auto SNI and SAN validation), which for the weighted route is w.test.
    cert, key = make_server_cert(certs, "upstreams", sans=UPSTREAM_NAMES + ["w.test"])
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(str(cert), str(key))

    e.ips = {}
    e.servers = []
    e.ips["nginx.test"] = e.ips["load.test"] = loopback_ip()
    e.nginx = Nginx(tmp, e.ips["nginx.test"], cert, key)
    e.big = os.urandom(20 * MIB)
    (e.nginx.dir / "html" / "big").write_bytes(e.big)

    def serve(name, handler, ident=None):
        ip = loopback_ip()
        srv = Upstream(ip, sctx, handler, ident or name)
        e.servers.append(srv)
        return ip, srv

    e.ips["echo.test"], e.echo = serve("echo.test", echo_handler)
    e.ips["slow.test"] = e.ips["echo.test"]
    e.ips["stale.test"], e.stale = serve("stale.test", stale_handler)
    e.ips["idle.test"], e.idle = serve("idle.test", idle_close_handler)
    e.ips["rec.test"], e.rec = serve("rec.test", echo_handler)
    for n in ("wa", "wb", "wc"):
        e.ips[f"{n}.test"], _ = serve(f"{n}.test", echo_handler)
    # dns.test is not in the hosts file at first; these two take turns being it.
    e.dns_a_ip, _ = serve("dns-a", echo_handler)
    e.dns_b_ip, _ = serve("dns-b", echo_handler)
    e.dns = NxDns(loopback_ip())

    e.hosts = tmp / "hosts"
    e.host_entries = {n: ip for n, ip in e.ips.items()}
    write_hosts(e.hosts, e.host_entries)
    e.store = tmp / "store"
    e.ctl = Ctl(egressctl_bin, e.store, tmp)
    e.ctl.ok("apply", "-f", "-", input=all_config())
    e.gateways = []

    def start(extra=(), workers=1):
        d = tmp / f"gw-{len(e.gateways)}"
        d.mkdir()
        ip = loopback_ip()
        g = Gateway(d, e.store, e.gw_id, ip, e.hosts, e.server_ca, workers=workers,
                    extra=("--dns-servers", e.dns.addr, *extra))
        e.gateways.append(g)
        wait_port(ip, 80, proc=g.proc)
        return g
    e.start_gateway = start
    e.gw = start()
    yield e
    try:
        for g in e.gateways:
            g.stop()
    finally:
        e.nginx.stop()
        for s in e.servers:
            s.stop()
        e.dns.stop()


@pytest.fixture
def gw(env):
    """The shared gateway; checked to be still running after each test."""
    yield env.gw
    assert env.gw.proc.poll() is None, env.gw.stderr()[-3000:]


# ---------------------------------------------------------------- 1. streaming bodies

def test_large_bodies_stream_both_ways_with_bounded_memory(env, monkeypatch):
    """20 MiB up (Content-Length, to an upstream slow to start reading), 20 MiB up
    (chunked) and 20 MiB down (to a client slow to start reading), byte-exact, while the
    gateway's peak RSS grows by far less than one body: nothing is buffered whole, and a
    slow side stops the gateway reading from the other (back-pressure)."""
    # ASan keeps freed memory in quarantine (256 MiB by default), which would count in RSS
    # without any buffering by the gateway; a small quarantine still catches use-after-free.
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":quarantine_size_mb=1").lstrip(":"))
    g = env.start_gateway()
    c = Client(env, g, "echo.test")
    # Warm up (TLS both sides, buffers at their working size) before the baseline.
    assert c.request("POST", "/upload", body=b"x" * 300000).status == 200
    base = vm_hwm_kib(g.proc.pid)

    data = env.big
    digest = hashlib.sha256(data).hexdigest()
    c.send(f"POST /upload-slow HTTP/1.1\r\nHost: echo.test\r\nContent-Length: {len(data)}\r\n"
           f"X-Request-Id: up-cl\r\n\r\n".encode())
    for i in range(0, len(data), MIB):
        c.send(data[i:i + MIB])
    r = read_resp(c.rf)
    assert (r.status, r.body) == (200, f"{len(data)} {digest}\n".encode())

    c.send(b"POST /upload HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n"
           b"X-Request-Id: up-chunked\r\n\r\n")
    rnd = random.Random(1)
    i = 0
    while i < len(data):
        n = rnd.randint(1, 200000)
        part = data[i:i + n]
        c.send(b"%x\r\n%s\r\n" % (len(part), part))
        i += n
    c.send(b"0\r\n\r\n")
    r = read_resp(c.rf)
    assert (r.status, r.body) == (200, f"{len(data)} {digest}\n".encode())
    c.close()

    d = Client(env, g, "nginx.test")
    d.send(b"GET /big HTTP/1.1\r\nHost: nginx.test\r\nX-Request-Id: down\r\n\r\n")
    time.sleep(0.5)     # a slow client: the gateway must stop reading nginx meanwhile
    r = read_resp(d.rf)
    assert r.status == 200 and int(r.headers["content-length"]) == len(data)
    assert hashlib.sha256(r.body).hexdigest() == digest
    d.close()

    grown = vm_hwm_kib(g.proc.pid) - base
    assert grown < 8 * 1024, f"peak RSS grew by {grown} KiB while moving 60 MiB"
    m = log_for(g, "up-cl")
    assert m["code"] == "200" and int(m["rx"]) == len(data)
    m = log_for(g, "up-chunked")
    assert m["code"] == "200" and int(m["rx"]) == len(data)
    m = log_for(g, "down")
    assert m["code"] == "200" and int(m["tx"]) == len(data)
    assert m["cluster"] == "outbound|443||nginx.test"


# ---------------------------------------------------------------- 2. response framing

def test_chunked_response_is_relayed_and_trailers_dropped(env, gw):
    c = Client(env, gw, "echo.test")
    r = c.request("GET", "/chunked", headers="X-Request-Id: ck\r\n")
    assert r.status == 200
    assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
    assert r.body == b"".join(CHUNKED_PARTS)
    # As Envoy's HTTP/1 codec by default: trailers are not forwarded (a field such as
    # content-length received as a trailer must never reach the client).
    assert r.trailers == []
    # The framing was right: the connection carries the next request.
    assert c.request("GET", "/id").body == b"echo.test\n"
    c.close()
    m = log_for(gw, "ck")
    assert m["code"] == "200" and int(m["tx"]) == len(r.body)


def test_chunked_response_trailers_reach_a_client_that_takes_them(env, gw):
    # TE: trailers (as gRPC-over-HTTP/1.1 bridges send): the trailer fields are relayed,
    # except those that must never be acted on as trailers (framing: content-length).
    c = Client(env, gw, "echo.test")
    r = c.request("GET", "/chunked", headers="X-Request-Id: ck-te\r\nTE: trailers\r\n")
    assert r.status == 200 and r.body == b"".join(CHUNKED_PARTS)
    assert [t.lower() for t in r.trailers] == [b"x-checksum: abc123\r\n"], r.trailers
    assert c.request("GET", "/id").body == b"echo.test\n"
    c.close()


def test_chunked_request_is_relayed_and_trailers_dropped(env, gw):
    c = Client(env, gw, "echo.test")
    c.send(b"POST /id HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n"
           b"X-Request-Id: req-trailers\r\n\r\n5;a=b\r\nhello\r\n6\r\n world\r\n"
           b"0\r\nx-sum: 1\r\ncontent-length: 3\r\n\r\n")
    assert read_resp(c.rf).body == b"echo.test\n"
    assert c.request("GET", "/id").status == 200
    c.close()
    _, reqs = env.echo.snapshot()
    q = [q for q in reqs if q.header("x-request-id") == "req-trailers"][0]
    assert q.header("transfer-encoding") == "chunked" and q.header("content-length") is None
    assert q.body == b"hello world" and q.trailers == []


def test_bodiless_responses_keep_the_connection_in_step(env, gw):
    c = Client(env, gw, "echo.test")
    r = c.request("HEAD", "/head")
    assert r.status == 200 and r.headers["content-length"] == "1234"
    r = c.request("GET", "/204")
    assert r.status == 204 and r.headers["x-kind"] == "none"
    assert "content-length" not in r.headers and "transfer-encoding" not in r.headers
    r = c.request("GET", "/304")
    assert r.status == 304 and r.headers["etag"] == '"v1"'
    # No body bytes were invented or left over: the next response is the right one.
    r = c.request("GET", "/id")
    assert (r.status, r.body) == (200, b"echo.test\n")
    c.close()


def test_response_delimited_by_close(env, gw):
    c = Client(env, gw, "echo.test")
    r = c.request("GET", "/close", headers="X-Request-Id: until-close\r\n")
    # The client cannot know the length either: the gateway closes after the body.
    assert r.status == 200 and r.headers["connection"] == "close"
    assert "content-length" not in r.headers and "transfer-encoding" not in r.headers
    assert r.body == CLOSE_BODY
    assert c.at_eof()
    c.close()
    m = log_for(gw, "until-close")
    assert m["code"] == "200" and m["flags"] == "-" and int(m["tx"]) == len(CLOSE_BODY)


# ---------------------------------------------------------------- 3. stale pooled connections

def test_request_racing_an_upstream_close_is_retried_once_if_safe(env, gw):
    """The stale upstream answers one request per connection, then closes the connection
    when the next request arrives (an idle close racing the reuse)."""
    before = stats(gw)
    c = Client(env, gw, "stale.test")
    r = c.request("GET", "/a")
    assert (r.status, r.body) == (200, b"GET /a on connection 1\n")
    # /b goes out on the pooled connection 1, which closes: a bodiless GET is sent again
    # on a fresh connection.
    r = c.request("GET", "/b", headers="X-Request-Id: retried\r\n")
    assert (r.status, r.body) == (200, b"GET /b on connection 2\n")
    mid = stats(gw)
    assert mid["upstream_rq_retry_total"] == before["upstream_rq_retry_total"] + 1
    m = log_for(gw, "retried")
    assert (m["code"], m["flags"], m["details"]) == ("200", "-", "via_upstream")

    # A POST with a body is not replayed (it may have been acted on): 503 UC, as Envoy
    # answers a reset before the response headers. The client's connection stays usable.
    r = c.request("POST", "/c", body=b"hello", headers="X-Request-Id: not-retried\r\n")
    assert r.status == 503
    assert r.body.startswith(b"upstream connect error or disconnect/reset before headers. "
                             b"reset reason: connection termination")
    m = log_for(gw, "not-retried")
    assert (m["code"], m["flags"]) == ("503", "UC")
    assert m["details"] == "upstream_reset_before_response_started{connection_termination}"
    assert stats(gw)["upstream_rq_retry_total"] == mid["upstream_rq_retry_total"]
    r = c.request("GET", "/d")
    assert (r.status, r.body) == (200, b"GET /d on connection 3\n")
    c.close()
    _, reqs = env.stale.snapshot()
    seen = [(q.conn, q.method, q.target) for q in reqs]
    assert seen == [(1, "GET", "/a"), (1, "GET", "/b"), (2, "GET", "/b"), (2, "POST", "/c"),
                    (3, "GET", "/d")]
    assert [q.body for q in reqs if q.method == "POST"] == [b"hello"]


def test_upstream_closing_idle_connections_after_each_response(env, gw):
    """An upstream that advertises keep-alive but closes right after each response: every
    request still succeeds (the close is noticed in the pool, or the request retried)."""
    c = Client(env, gw, "idle.test")
    for i in range(6):
        r = c.request("GET", f"/n{i}")
        assert r.status == 200 and r.body.startswith(f"/n{i} ".encode()), r
        time.sleep(0.02 if i % 2 else 0)
    c.close()
    nconns, reqs = env.idle.snapshot()
    assert [q.target for q in reqs if q.nreq == 1][-6:] == [f"/n{i}" for i in range(6)]


# ---------------------------------------------------------------- 4. route timeout

def test_route_timeout_is_504_ut(env, gw):
    before = stats(gw)
    c = Client(env, gw, "slow.test")
    t0 = time.time()
    r = c.request("GET", "/slow", headers="X-Request-Id: slow\r\n")
    took = time.time() - t0
    assert r.status == 504 and r.body == b"upstream request timeout"
    assert 0.9 <= took < 2.5, took
    c.close()
    m = log_for(gw, "slow")
    assert (m["code"], m["flags"], m["details"]) == ("504", "UT", "response_timeout")
    assert 900 <= int(m["dur"]) < 2500
    assert m["cluster"] == "outbound|443||slow.test"
    assert stats(gw)["upstream_rq_timeout_total"] == before["upstream_rq_timeout_total"] + 1


# ---------------------------------------------------------------- 5. weights

def test_weighted_destinations(env, gw):
    c = Client(env, gw, "w.test")
    counts = collections.Counter()
    for _ in range(200):
        r = c.request("GET", "/id")
        assert r.status == 200
        counts[r.body.decode().strip()] += 1
    c.close()
    # 80/20/0: the binomial standard deviation for 200 draws at 0.8 is 5.7; allow 4 of them.
    assert counts["wc.test"] == 0, counts
    assert 137 <= counts["wa.test"] <= 183, counts
    assert counts["wa.test"] + counts["wb.test"] == 200, counts


# ---------------------------------------------------------------- 6. reloads under load

def test_reloads_under_load_fail_no_request(env, gw):
    stop = threading.Event()
    ok = [0] * 4
    failures = []

    def loop(i):
        c = None
        try:
            c = Client(env, gw, "load.test")
            while not stop.is_set():
                r = c.request("GET", "/politics")
                if r.status != 200 or r.body != b"politics page from the demo site\n":
                    failures.append((i, r.status, r.body[:200]))
                    return
                ok[i] += 1
        except Exception as ex:     # any failure, including a closed connection
            failures.append((i, repr(ex)))
        finally:
            if c:
                c.close()

    before = stats(gw)
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        for i in range(10):
            if i % 2 == 0:
                env.ctl.ok("apply", "-f", "-", input=f"""apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: unrelated-{i}
spec:
  hosts:
  - unrelated-{i}.example.com
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  resolution: STATIC
  endpoints:
  - address: 127.0.0.9
""")
            else:
                lb = "LEAST_REQUEST" if i % 4 == 1 else "ROUND_ROBIN"
                env.ctl.ok("apply", "-f", "-", input=site_yaml(
                    "load.test", dr_extra=f"    loadBalancer:\n      simple: {lb}\n"))
            time.sleep(0.3)
        deadline = time.time() + 5
        want = before["config_reloads_total"] + 10
        while stats(gw)["config_reloads_total"] < want and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    after = stats(gw)
    assert failures == [], failures
    assert all(n > 20 for n in ok), ok
    assert after["config_reloads_total"] >= before["config_reloads_total"] + 10, (before, after)
    assert after["config_rejects_total"] == before["config_rejects_total"]


# ---------------------------------------------------------------- 7. JSON access log

def test_json_access_log(env):
    g = env.start_gateway(extra=("--access-log-format", "json"))
    c = Client(env, g, "echo.test")
    assert c.request("GET", "/id", headers="X-Request-Id: j1\r\nUser-Agent: t/1\r\n").status == 200
    assert c.request("GET", "/id", host="nowhere.test").status == 404
    c.close()
    lines = g.wait_log(2)
    entries = [json.loads(line) for line in lines]
    assert len(lines) == 2
    keys = {"start_time", "method", "path", "protocol", "response_code", "response_flags",
            "response_code_details", "connection_termination_details",
            "upstream_transport_failure_reason", "bytes_received", "bytes_sent", "duration",
            "upstream_service_time", "x_forwarded_for", "user_agent", "request_id",
            "authority", "upstream_host", "upstream_cluster", "upstream_local_address",
            "downstream_local_address", "downstream_remote_address",
            "requested_server_name", "route_name"}
    for e in entries:
        assert set(e) == keys, set(e) ^ keys
    a, b = entries
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["start_time"])
    assert (a["method"], a["path"], a["protocol"]) == ("GET", "/id", "HTTP/1.1")
    assert (a["response_code"], a["response_flags"]) == (200, "-")
    assert a["response_code_details"] == "via_upstream"
    assert a["request_id"] == "j1" and a["user_agent"] == "t/1" and a["authority"] == "echo.test"
    assert a["upstream_cluster"] == "outbound|443||echo.test"
    assert a["upstream_host"] == f"{env.ips['echo.test']}:443"
    assert a["bytes_sent"] == len(b"echo.test\n") and isinstance(a["duration"], int)
    assert a["requested_server_name"] == "echo.test"
    assert a["downstream_local_address"] == f"{g.ip}:80"
    assert (b["response_code"], b["response_flags"]) == (404, "NR")
    assert b["response_code_details"] == "route_not_found"
    assert b["upstream_cluster"] is None and b["upstream_service_time"] is None


# ---------------------------------------------------------------- 8. DNS

def test_dns_failure_then_hosts_file_changes_are_picked_up(env, gw):
    c = Client(env, gw, "dns.test")
    r = c.request("GET", "/id", headers="X-Request-Id: df\r\n")
    assert r.status == 503 and r.body == b"dns resolution failure"
    m = log_for(gw, "df")
    assert (m["flags"], m["details"]) == ("DF", "dns_resolution_failure")
    assert m["cluster"] == "outbound|443||dns.test" and m["uhost"] == "-"
    assert env.dns.queries > 0    # asked the (fake) DNS server, not the outside world

    def wait_for(body, timeout=12):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = c.request("GET", "/id")
            if r.status == 200 and r.body == body:
                return
            time.sleep(0.2)
        raise AssertionError(f"still {r} after {timeout}s")

    # Added to the hosts file: resolved at the next refresh, without a restart.
    env.host_entries["dns.test"] = env.dns_a_ip
    write_hosts(env.hosts, env.host_entries)
    wait_for(b"dns-a\n")
    # A new address for the name: re-resolution moves traffic there.
    env.host_entries["dns.test"] = env.dns_b_ip
    write_hosts(env.hosts, env.host_entries)
    wait_for(b"dns-b\n")
    c.close()


# ---------------------------------------------------------------- 9. protocol errors

def test_content_length_with_transfer_encoding_is_400_and_never_forwarded(env, gw):
    c = Client(env, gw, "rec.test")
    c.send(b"POST /x HTTP/1.1\r\nHost: rec.test\r\nContent-Length: 4\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
           b"GET /smuggled HTTP/1.1\r\nHost: rec.test\r\n\r\n")
    r = read_resp(c.rf)
    assert r.status == 400 and r.headers["connection"] == "close"
    assert c.at_eof()
    c.close()
    assert env.rec.snapshot() == (0, [])
    # The upstream is there and reachable: it then sees exactly the one good request.
    c = Client(env, gw, "rec.test")
    assert c.request("GET", "/id").status == 200
    c.close()
    nconns, reqs = env.rec.snapshot()
    assert [(q.method, q.target) for q in reqs] == [("GET", "/id")]


def test_header_block_over_60k_is_431(env, gw):
    c = Client(env, gw, "rec.test")
    before = len(env.rec.snapshot()[1])
    filler = "".join(f"X-Filler-{i}: {'v' * 1000}\r\n" for i in range(62))
    c.send(f"GET /id HTTP/1.1\r\nHost: rec.test\r\nX-Request-Id: big-head\r\n{filler}\r\n".encode())
    r = read_resp(c.rf)
    assert r.status == 431 and r.headers["connection"] == "close"
    assert c.at_eof()
    c.close()
    assert len(env.rec.snapshot()[1]) == before
    m = [LOG_RE.match(line) for line in gw.wait_log(1)][-1]
    assert (m["code"], m["flags"]) == ("431", "DPE")


def test_http10_without_host_is_400(env, gw):
    """As Envoy with HTTP/1.0 accepted and no default host: 400 missing_host_header (HTTP/1.1
    without Host is already a codec error). Nothing goes upstream."""
    before = len(env.rec.snapshot()[1])
    c = Client(env, gw, "rec.test")
    r = c.request("GET", "/id", host=False, version="HTTP/1.0", headers="X-Request-Id: nohost\r\n")
    assert r.status == 400 and r.body == b""
    assert c.at_eof()
    c.close()
    m = log_for(gw, "nohost")
    assert (m["code"], m["flags"], m["details"]) == ("400", "-", "missing_host_header")
    assert m["proto"] == "HTTP/1.0"
    assert len(env.rec.snapshot()[1]) == before


# ---------------------------------------------------------------- 10. keep-alive semantics

def test_http10_closes_unless_keep_alive_asked(env, gw):
    c = Client(env, gw, "echo.test")
    r = c.request("GET", "/id", version="HTTP/1.0")
    assert (r.status, r.body) == (200, b"echo.test\n") and r.headers["connection"] == "close"
    assert c.at_eof()
    c.close()

    c = Client(env, gw, "echo.test")
    for _ in range(2):
        r = c.request("GET", "/id", version="HTTP/1.0", headers="Connection: keep-alive\r\n")
        assert (r.status, r.body) == (200, b"echo.test\n")
        assert r.headers["connection"] == "keep-alive"
    # A chunked upstream response cannot be sent to an HTTP/1.0 client as such: the body
    # goes unframed and the connection closes after it (as Envoy does).
    r = c.request("GET", "/chunked", version="HTTP/1.0", headers="Connection: keep-alive\r\n")
    assert r.status == 200 and "transfer-encoding" not in r.headers
    assert r.headers["connection"] == "close"
    assert r.body == b"".join(CHUNKED_PARTS)
    assert c.at_eof()
    c.close()


def test_connection_close_from_client(env, gw):
    c = Client(env, gw, "echo.test")
    assert c.request("GET", "/id").status == 200
    r = c.request("GET", "/id", headers="Connection: close\r\n")
    assert (r.status, r.body) == (200, b"echo.test\n") and r.headers["connection"] == "close"
    assert c.at_eof()
    c.close()
    # And a plain HTTP/1.1 request keeps the connection open.
    c = Client(env, gw, "echo.test")
    r = c.request("GET", "/id")
    assert r.status == 200 and "connection" not in r.headers
    assert not c.at_eof(timeout=0.3)
    c.close()


# ---------------------------------------------------------------- 11. workers

def test_two_workers_share_the_connections(env):
    g = env.start_gateway(workers=2)
    # The readiness probe made one connection; wait until it is counted.
    deadline = time.time() + 5
    while stats(g)["downstream_cx_total"] < 1 and time.time() < deadline:
        time.sleep(0.05)
    before = stats(g)
    for i in range(30):
        c = Client(env, g, "echo.test")
        r = c.request("GET", "/id", headers="Connection: close\r\n")
        assert (r.status, r.body) == (200, b"echo.test\n")
        c.close()
    st = stats(g)
    assert st["downstream_rq_total"] == 30
    assert st["downstream_cx_total"] - before["downstream_cx_total"] == 30
    # Each worker has its own upstream pool: one upstream connection per worker means both
    # workers took connections (30 connections all to one worker: odds 2^-29).
    assert st["upstream_cx_total"] == 2, st
    assert st["upstream_rq_reused_total"] == 28, st
