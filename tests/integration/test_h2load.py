"""nghttp2's own clients against both proxies: h2load (many streams on a few connections,
every request must succeed) and nghttp -v (the frames and fields of single exchanges).

- The gateway's HTTP/2 listener: a SIMPLE TLS server (h2gwlib.py; h2load cannot present a
  client certificate) in front of nginx playing edition.cnn.com.
- The sidecar with its HTTP/2 mesh hop: the application side is HTTP/1.1 here (the sidecar
  also takes h2c, test_grpc.py), so h2load runs with --h1 there, 10
  requests pipelined per connection, and the sidecar → gateway hop must be one HTTP/2
  connection. nghttp speaks only HTTP/2, so it runs against the gateway alone."""
import http.server
import re
import subprocess

import pytest

from h2gwlib import CNN, H2_PORT, h2load, start_h2_gateway
from test_h2_mesh import tls_site
from test_gateway import mesh, site  # noqa: F401 (fixtures)
from test_sidecar import Topology, apply_cnn, wait_routed

POLITICS = "politics page from the demo site\n"


@pytest.fixture
def h2gw(tmp_path, ctl, walkthrough, mesh, site, store):  # noqa: F811
    g = start_h2_gateway(tmp_path, ctl, walkthrough, mesh, site, store)
    yield g
    assert g.stop() == 0


def h2load_summary(out):
    """h2load's 'requests:' and 'status codes:' lines as numbers."""
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert m and s, out
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    r = dict(zip(keys, map(int, m.groups())))
    r.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, s.groups())))
    return r


def assert_all_succeeded(out, n):
    r = h2load_summary(out)
    assert r["succeeded"] == n and r["2xx"] == n and r["failed"] == 0 and \
        r["errored"] == 0 and r["timeout"] == 0, out


def test_h2load_against_the_gateway(h2gw):
    rc, out = h2load(h2gw.ip, "-n", "2000", "-c", "4", "-m", "10")
    assert rc == 0, out
    assert "Application protocol: h2" in out, out
    assert_all_succeeded(out, 2000)
    lines = h2gw.wait_log(2000)
    assert sum('"GET /politics HTTP/2" 200 ' in ln for ln in lines) == 2000, lines[-3:]


def test_h2load_posts_against_the_gateway(h2gw, tmp_path):
    """Request bodies on many streams at once (16 KiB each, more than one DATA frame)."""
    body = tmp_path / "body"
    body.write_bytes(b"b" * 16384)
    rc, out = h2load(h2gw.ip, "-n", "400", "-c", "2", "-m", "20", "-d", str(body),
                     path="/echo-headers")
    assert rc == 0, out
    # nginx answers a POST to a static location 405; what matters is that every stream
    # got its answer, whole: no reset, no error.
    r = h2load_summary(out)
    assert r["done"] == 400 and r["errored"] == 0 and r["timeout"] == 0, out
    assert r["2xx"] + r["4xx"] == 400, out


def test_nghttp_against_the_gateway(h2gw):
    """nghttp -v: the response HEADERS with :status 200 and the gateway's own field,
    the body in DATA ending the stream, and a clean GOAWAY(NO_ERROR) at the end."""
    p = subprocess.run(["nghttp", "-v", "-H", f":authority: {CNN}",
                        f"https://{h2gw.ip}:{H2_PORT}/politics"],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(r"recv \(stream_id=13\) :status: 200", out), out
    assert re.search(r"recv \(stream_id=13\) x-envoy-upstream-service-time: \d+", out), out
    assert re.search(r"recv DATA frame <length=\d+, flags=0x01, stream_id=13>", out), out
    assert POLITICS in out
    assert "send GOAWAY frame" in out and "error_code=NO_ERROR" in out, out


def test_nghttp_post_with_request_trailers(h2gw, tmp_path):
    """A request body followed by trailers (HEADERS with END_STREAM after DATA): the
    gateway answers the request (nginx's 405 for a POST to a file) and does not reset the
    stream over the trailers."""
    body = tmp_path / "body"
    body.write_bytes(b"t" * 1000)
    p = subprocess.run(["nghttp", "-v", "-H", f":authority: {CNN}", "-d", str(body),
                        "--trailer", "x-checksum: 42", f"https://{h2gw.ip}:{H2_PORT}/politics"],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "x-checksum: 42" in out            # nghttp sent the trailer
    assert re.search(r"recv \(stream_id=13\) :status: (200|405)", out), out
    assert "RST_STREAM" not in out, out


@pytest.fixture
def mesh_topo(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    try:
        apply_cnn(t)
        wait_routed(t)
        yield t
    finally:
        assert t.stop() == [0] * (1 + len(t.sidecars))


def sidecar_h2load(t, n, extra=()):
    p = subprocess.run(["h2load", "--h1", f"--connect-to=127.0.0.1:{t.sidecar.outbound}",
                        "-n", str(n), *extra, f"http://{CNN}/politics"],
                       capture_output=True, text=True, timeout=180)
    return p.returncode, p.stdout + p.stderr


def test_h2load_through_the_sidecar_and_its_http2_hop(mesh_topo):
    t = mesh_topo
    h2_before = t.sidecar.stat("upstream_cx_http2_total")
    assert h2_before == 1
    rc, out = sidecar_h2load(t, 2000, ["-c", "4", "-m", "10"])
    assert rc == 0, out
    assert_all_succeeded(out, 2000)
    # One HTTP/2 connection carried them all to the gateway.
    assert t.sidecar.stat("upstream_cx_http2_total") == 1
    lines = [ln for ln in t.gateway.log_lines() if '"GET /politics HTTP/2" 200 ' in ln]
    assert len(lines) >= 2000, len(lines)


class TrailerHandler(http.server.BaseHTTPRequestHandler):
    """edition.cnn.com answering every GET with a chunked body and a trailer field, as a
    gRPC server's grpc-status would come over HTTP/1.1."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("trailer", "x-checksum")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n0\r\nx-checksum: 42\r\n\r\n" % (len(POLITICS), POLITICS.encode()))


@pytest.fixture
def trailer_site(tmp_path):
    yield from tls_site(tmp_path, TrailerHandler)


@pytest.fixture
def trailer_gw(tmp_path, ctl, walkthrough, mesh, trailer_site, store):  # noqa: F811
    g = start_h2_gateway(tmp_path, ctl, walkthrough, mesh, trailer_site, store)
    yield g
    assert g.stop() == 0


def nghttp_get(g):
    p = subprocess.run(["nghttp", "-v", "-H", f":authority: {CNN}",
                        f"https://{g.ip}:{H2_PORT}/politics"],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    return out


def test_nghttp_chunked_response_with_a_trailer_arrives_whole(trailer_gw):
    """The body of a chunked response that ends with a trailer reaches the HTTP/2 client
    whole, the stream ended cleanly."""
    out = nghttp_get(trailer_gw)
    assert re.search(r"recv \(stream_id=13\) :status: 200", out), out
    assert POLITICS in out
    assert "RST_STREAM" not in out, out


def test_nghttp_response_trailer_reaches_the_http2_client(trailer_gw):
    """The upstream's trailer field comes to the HTTP/2 client as a trailing HEADERS frame
    with END_STREAM (RFC 9113 8.1)."""
    out = nghttp_get(trailer_gw)
    assert re.search(r"recv \(stream_id=13\) x-checksum: 42", out), out
    assert re.search(r"recv HEADERS frame <length=\d+, flags=0x05, stream_id=13>", out), out
