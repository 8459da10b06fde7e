"""The gateway's HTTP/2 request heads reach the request path decoded once (h2_req.c
h2_request_msg), not rendered as HTTP/1.1 text and parsed again: what the upstream gets is
what the client sent, field for field, and the refusals are the ones h1_parse gave the
rendered text where they still apply (400 for a bad :authority or :path, 431 past 100
fields, CONNECT refused on a stream).

Each test fails on the text bridge: it added "connection: close", which made a field named
"close" disappear, and its added host/framing/connection lines counted against the 100
fields h1_parse allows."""
import http.client
import http.server
import json
import threading

import pytest

from test_gateway import CNN, LOG_RE, mesh  # noqa: F401 (fixture)
# gateway: test_h2_mesh's, in front of this file's site (the echo server).
from test_h2_mesh import H2Client, gateway, tls_site  # noqa: F401 (fixture)


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers with the request line, the fields in order and the body's length and
    framing, as JSON (latin-1 keeps every byte of a value)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data, "chunked"
                data += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("content-length", "0"))
        return self.rfile.read(n), "length"

    def _echo(self):
        body, framing = self._body()
        out = json.dumps({"line": self.requestline, "fields": list(self.headers.items()),
                          "body": body.decode("latin-1"), "framing": framing}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_OPTIONS = _echo


@pytest.fixture
def site(tmp_path, monkeypatch):
    # The upstream must be able to take every field the test sends plus the gateway's own
    # (http.client refuses more than 100 by default).
    monkeypatch.setattr(http.client, "_MAXHEADERS", 1000)
    yield from tls_site(tmp_path, EchoHandler)


def send(c, headers, data=None):
    """A request with exactly these header fields (bytes, in order, no validation or
    normalisation by python-h2: cookie crumbs stay apart); data ends the stream."""
    c.conn.config.validate_outbound_headers = False
    c.conn.config.normalize_outbound_headers = False
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(k.encode() if isinstance(k, str) else k,
                               v.encode() if isinstance(v, str) else v)
                              for k, v in headers], end_stream=data is None)
    c.streams[sid] = {"status": None, "body": bytearray(), "ended": False, "reset": None,
                      "reset_after": None}
    if data is not None:
        c.pending[sid] = memoryview(data)
    c._pump_send()
    return sid


def pseudo(path="/echo", method="GET", authority=f"{CNN}:80", scheme="https"):
    return [(":method", method), (":scheme", scheme), (":authority", authority),
            (":path", path)]


def echoed(c, sid):
    s = c.streams[sid]
    assert s["status"] == 200 and s["reset"] is None, c.summary()
    return json.loads(bytes(s["body"]))


def fields(e, name):
    return [v for k, v in e["fields"] if k.lower() == name]


def test_fields_reach_the_upstream_as_sent(gateway, mesh):  # noqa: F811
    """Order, duplicates, obs-text bytes, a field named "close", cookie crumbs joined
    (RFC 9113 8.2.3), te: trailers kept, an :authority with a port as Host."""
    c = H2Client(gateway.ip, mesh["client"])
    obs = b"caf\xc3\xa9 \x80\xff\tend"
    sid = send(c, pseudo("/echo?q=%20&r=1") + [
        ("cookie", "a=1"), ("x-dup", "one"), ("cookie", "b=2"), ("x-obs", obs),
        ("close", "still here"), ("x-dup", "two"), ("cookie", "c=3"), ("te", "trailers"),
        ("user-agent", "h2-head-test")])
    c.run()
    e = echoed(c, sid)
    c.close()
    assert e["line"] == "GET /echo?q=%20&r=1 HTTP/1.1"
    assert fields(e, "host") == [f"{CNN}:80"]
    assert fields(e, "cookie") == ["a=1; b=2; c=3"]
    assert fields(e, "x-dup") == ["one", "two"]
    assert fields(e, "x-obs") == [obs.decode("latin-1")]
    assert fields(e, "close") == ["still here"]
    assert fields(e, "te") == ["trailers"]
    assert fields(e, "connection") == [] or fields(e, "connection") == ["keep-alive"], e
    names = [k.lower() for k, _ in e["fields"]]
    assert names.index("cookie") < names.index("x-dup") < names.index("x-obs") \
        < names.index("close"), names
    m = LOG_RE.match(gateway.wait_log(1)[-1])
    assert m["proto"] == "HTTP/2" and m["code"] == "200" and m["authority"] == f"{CNN}:80"
    assert m["path"] == "/echo?q=%20&r=1" and m["ua"] == "h2-head-test"


def test_hundred_fields_with_host(gateway, mesh):  # noqa: F811
    """Host and 99 fields are the 100 h1_parse allows: forwarded; one more is 431."""
    c = H2Client(gateway.ip, mesh["client"])
    many = [(f"x-f{i}", str(i)) for i in range(99)]
    ok = send(c, pseudo() + many)
    over = send(c, pseudo() + many + [("x-one-more", "1")])
    c.run()
    e = echoed(c, ok)
    assert [fields(e, f"x-f{i}") for i in range(99)] == [[str(i)] for i in range(99)]
    assert c.streams[over]["status"] == 431, c.summary()
    c.close()


def test_bodies_with_and_without_length(gateway, mesh):  # noqa: F811
    """content-length and DATA: relayed with that length; DATA without a length: relayed
    chunked; both byte for byte."""
    c = H2Client(gateway.ip, mesh["client"])
    body = bytes(range(256)) * 300
    sized = send(c, pseudo(method="POST") + [("content-length", str(len(body)))], body)
    unsized = send(c, pseudo(method="PUT"), body)
    c.run()
    a, b = echoed(c, sized), echoed(c, unsized)
    c.close()
    assert a["framing"] == "length" and fields(a, "content-length") == [str(len(body))]
    assert b["framing"] == "chunked" and fields(b, "content-length") == []
    assert a["body"].encode("latin-1") == body and b["body"].encode("latin-1") == body


def test_refused_heads(gateway, mesh):  # noqa: F811
    """What h1_parse refused in the rendered text is refused the same way (400, logged
    DPE); a :path that is not origin-form is 400 whatever the :scheme (nghttp2 resets
    such streams itself for http and https; with another scheme the text bridge took an
    absolute URI as the request's authority); CONNECT on a stream is 405; the connection
    goes on serving."""
    c = H2Client(gateway.ip, mesh["client"])
    userinfo = send(c, pseudo(authority=f"user@{CNN}"))
    comma = send(c, pseudo(authority=f"{CNN},other.example"))
    absolute = send(c, pseudo(path="http://other.example/echo", scheme="foo"))
    star = send(c, pseudo(path="*", scheme="foo"))
    connect = send(c, [(":method", "CONNECT"), (":authority", f"{CNN}:443")])
    options = send(c, pseudo(path="*", method="OPTIONS"))
    after = send(c, pseudo())
    c.run()
    s = c.streams
    got = {k: s[v]["status"] for k, v in (("userinfo", userinfo), ("comma", comma),
                                          ("absolute", absolute), ("star", star),
                                          ("connect", connect))}
    assert got == {"userinfo": 400, "comma": 400, "absolute": 400, "star": 400,
                   "connect": 405}, c.summary()
    assert echoed(c, options)["line"] == "OPTIONS * HTTP/1.1"
    assert echoed(c, after)["line"] == "GET /echo HTTP/1.1"
    c.close()
    lines = [LOG_RE.match(x) for x in gateway.wait_log(7)]
    bad = [m for m in lines if m["code"] == "400"]
    assert len(bad) == 4 and all(m["flags"] == "DPE" and m["details"] ==
                                 "http2.invalid_request" for m in bad), lines


def test_local_replies_as_headers(gateway, mesh):  # noqa: F811
    """A reply the gateway makes itself goes out as HEADERS built from its fields
    (h2d_send_reply), not as HTTP/1.1 text parsed back: status, content-length,
    content-type and x-request-id; a body of that length, none for HEAD."""
    c = H2Client(gateway.ip, mesh["client"])
    nr = send(c, pseudo(authority="other.example.com") + [("x-request-id", "rid-404")])
    bad = send(c, pseudo(authority=f"user@{CNN}"))
    head = send(c, pseudo(authority=f"user@{CNN}", method="HEAD"))
    c.run()
    s = c.streams
    c.close()

    def hdrs(sid):
        return dict(s[sid]["headers"])

    assert s[nr]["status"] == 404 and s[nr]["ended"] and not s[nr]["body"], c.summary()
    assert hdrs(nr)["content-length"] == "0" and hdrs(nr)["x-request-id"] == "rid-404"
    assert hdrs(nr)["content-type"] == "text/plain"
    assert s[bad]["status"] == 400 and bytes(s[bad]["body"]) == b"invalid :authority"
    assert hdrs(bad)["content-length"] == "18" and hdrs(bad)["x-request-id"] == "-"
    assert s[head]["status"] == 400 and s[head]["ended"] and not s[head]["body"]
    assert hdrs(head)["content-length"] == "18"
    for sid in (nr, bad, head):
        assert sorted(k for k, _ in s[sid]["headers"]) == \
            [":status", "content-length", "content-type", "x-request-id"], s[sid]["headers"]
