"""The gateway's HTTP/2 origination (DestinationRule h2UpgradePolicy: UPGRADE) against a
scripted python3-h2 origin (h2origin.py): an HTTP/2 response reaches the client exactly as
the server framed it, now that no HTTP/1.1 text is rendered and parsed in between (up_h2.c
keeps the decoded head, fwd_up_h1.c's u_process_h2 fills the parsed head from it):
fields in order with repetitions, empty and obs-text values (Cookie fields stay apart:
the text rendering joined them); interim 1xx heads; HEAD, 204 and 304 without a body; a content-length
body whose DATA comes in odd-sized frames; a body until END_STREAM; trailers; and a reset
in the middle of a body seen by the client as a failure (a short body and a closed
connection, or RST_STREAM), never as a complete response."""
import re
import socket
import time

import h2.events
import pytest

from gwlib import Gateway, loopback_ip, make_server_ca, make_server_cert, mesh_context, wait_port
from h2origin import H2Origin
from test_gateway import CNN, apply_first_half, mesh  # noqa: F401 (fixture)
from test_h2_mesh import H2Client, payload


def s_fields(c, req):
    c.head(req.sid, 200, [("content-type", "text/plain"), ("set-cookie", "a=1"),
                          ("set-cookie", "b=2"), ("cookie", "x=1"), ("cookie", "y=2"),
                          ("x-empty", ""), ("x-obs", b"caf\xc3\xa9"), ("content-length", "5")])
    c.data(req.sid, b"hello", end=True)


def s_early(c, req):
    c.head(req.sid, 100)
    c.head(req.sid, 103, [("link", "</style.css>; rel=preload")])
    c.head(req.sid, 200, [("content-length", "2")])
    c.data(req.sid, b"ok", end=True)


def s_head(c, req):
    c.head(req.sid, 200, [("content-length", "1234"), ("x-kind", "head")], end=True)


def s_204(c, req):
    c.head(req.sid, 204, [("x-kind", "nothing")], end=True)


def s_304(c, req):
    c.head(req.sid, 304, [("etag", '"v1"')], end=True)


SPLIT = 300001


def s_split(c, req):
    c.head(req.sid, 200, [("content-length", str(SPLIT))])
    c.data(req.sid, payload(SPLIT), frames=(1, 7, 16384, 1000, 5, 9000), end=True)


def s_stream(c, req):
    c.head(req.sid, 200, [("content-type", "application/octet-stream")])
    c.data(req.sid, payload(70000), frames=(3, 16384, 100), end=True)


def s_trailers(c, req):
    c.head(req.sid, 200, [("content-type", "application/grpc")])
    c.data(req.sid, b"message", frames=(3,))
    c.trailers(req.sid, [("grpc-status", "0"), ("grpc-message", "fine"), ("x-t", "1")])


def s_trailers_cl(c, req):
    c.head(req.sid, 200, [("content-type", "application/grpc"), ("content-length", "7")])
    c.data(req.sid, b"message", frames=(4,))
    c.trailers(req.sid, [("grpc-status", "0"), ("x-t", "cl")])


def s_reset_cl(c, req):
    c.head(req.sid, 200, [("content-length", "100000")])
    c.data(req.sid, payload(30000))
    time.sleep(0.2)
    c.reset(req.sid, 2)


def s_reset_stream(c, req):
    c.head(req.sid, 200, [])
    c.data(req.sid, payload(30000))
    time.sleep(0.2)
    c.reset(req.sid, 2)


def s_bad(field):
    """A response head with one field nghttp2's checks refuse (sent unchecked: h2origin
    turns python3-h2's own validation off)."""
    def script(c, req):
        c.head(req.sid, 200, [("content-type", "text/plain"), field, ("content-length", "2")])
        c.data(req.sid, b"ok", end=True)
    return script


BAD_FIELDS = {"/bad-ctl": ("x-bad", b"a\x01b"), "/bad-del": ("x-bad", b"a\x7fb"),
              "/bad-name": ("x(bad)", "v"), "/bad-upper": ("X-Bad", "v"),
              "/bad-space": ("x-bad", " v")}


SCRIPTS = {**{p: s_bad(f) for p, f in BAD_FIELDS.items()}, "/fields": s_fields, "/early": s_early, "/head": s_head, "/204": s_204,
           "/304": s_304, "/split": s_split, "/stream": s_stream, "/trailers": s_trailers, "/trailers-cl": s_trailers_cl,
           "/reset-cl": s_reset_cl, "/reset-stream": s_reset_stream}


@pytest.fixture
def env(tmp_path, store, ctl, walkthrough, mesh):  # noqa: F811
    apply_first_half(ctl, walkthrough)
    dr = (walkthrough / "03-virtualservice-destinationrule-cnn.yaml").read_text()
    marker = "      tls:\n        mode: SIMPLE"
    assert dr.count(marker) == 1
    ctl.ok("apply", "-f", "-", input=dr.replace(
        marker, "      connectionPool:\n        http:\n          h2UpgradePolicy: UPGRADE\n" + marker))
    ip = loopback_ip()
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, CNN)
    origin = H2Origin(ip, cert, key, SCRIPTS)
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{ip} {CNN}\n")
    gw_ip = loopback_ip()
    g = Gateway(tmp_path, store, mesh["gw"], gw_ip, hosts, ca)
    wait_port(gw_ip, 80, proc=g.proc)
    yield {"g": g, "origin": origin, "mesh": mesh}
    origin.stop()
    assert g.stop() == 0


def exchange(env, path, method="GET", extra=""):
    """One HTTP/1.1 request over the mesh (Connection: close); everything the gateway
    sent until it closed, raw."""
    ctx = mesh_context(env["mesh"]["client"])
    with socket.create_connection((env["g"].ip, 80), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=CNN) as s:
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {CNN}\r\n{extra}"
                      "Connection: close\r\n\r\n".encode())
            out = b""
            while True:
                try:
                    d = s.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not d:
                    break
                out += d
            return out


def split_head(raw):
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, raw[:300]
    lines = head.split(b"\r\n")
    return lines[0], [tuple(ln.split(b": ", 1)) if b": " in ln else (ln[:-1], b"")
                      for ln in lines[1:]], rest


def upstream_fields(fields):
    """The fields that came from the origin (the gateway adds its own three)."""
    return [f for f in fields if f[0].lower() not in
            (b"x-envoy-upstream-service-time", b"connection", b"content-length",
             b"transfer-encoding")]


def dechunk(rest):
    """(payload, trailer lines, complete) of a chunked body."""
    body = b""
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return body, [], False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            tr, sep, _ = rest.partition(b"\r\n\r\n")
            if rest.startswith(b"\r\n"):
                return body, [], True
            return body, tr.split(b"\r\n") if sep else [], bool(sep)
        if len(rest) < size + 2:
            return body + rest[:size], [], False
        body += rest[:size]
        rest = rest[size + 2:]


def test_fields_pass_exactly(env):
    status, fields, body = split_head(exchange(env, "/fields"))
    assert status == b"HTTP/1.1 200 OK"
    assert upstream_fields(fields) == [
        (b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
        (b"cookie", b"x=1"), (b"cookie", b"y=2"), (b"x-empty", b""),
        (b"x-obs", b"caf\xc3\xa9")], fields
    assert (b"content-length", b"5") in fields and body == b"hello"
    assert any(f[0] == b"x-envoy-upstream-service-time" for f in fields)
    # It went over HTTP/2.
    assert env["origin"].requests and env["origin"].requests[-1].get(b":path") == b"/fields"


def test_interim_heads_then_the_response(env):
    raw = exchange(env, "/early")
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"
                          b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
                          b"HTTP/1.1 200 OK\r\n"), raw
    status, fields, body = split_head(raw.split(b"\r\n\r\n", 2)[2])
    assert (b"content-length", b"2") in fields and body == b"ok"


@pytest.mark.parametrize("method,path,status,want", [
    ("HEAD", "/head", b"HTTP/1.1 200 OK", [(b"x-kind", b"head"), (b"content-length", b"1234")]),
    ("GET", "/204", b"HTTP/1.1 204 No Content", [(b"x-kind", b"nothing")]),
    ("GET", "/304", b"HTTP/1.1 304 Not Modified", [(b"etag", b'"v1"')]),
])
def test_bodiless_responses(env, method, path, status, want):
    got_status, fields, body = split_head(exchange(env, path, method))
    assert got_status == status and body == b"", (got_status, fields, body[:100])
    assert [f for f in fields if f[0] not in (b"x-envoy-upstream-service-time",
                                               b"connection")] == want, fields
    line = env["g"].wait_log(1)[-1]
    assert re.search(r'" %s - via_upstream ' % status.split()[1].decode(), line), line


def test_length_with_data_in_odd_frames(env):
    status, fields, body = split_head(exchange(env, "/split"))
    assert status == b"HTTP/1.1 200 OK"
    assert (b"content-length", str(SPLIT).encode()) in fields
    assert not any(f[0] == b"transfer-encoding" for f in fields)
    assert body == payload(SPLIT)


def test_until_end_of_stream_is_chunked_for_http11(env):
    status, fields, rest = split_head(exchange(env, "/stream"))
    assert (b"transfer-encoding", b"chunked") in fields
    body, trailers, complete = dechunk(rest)
    assert complete and body == payload(70000) and trailers == []


def test_trailers_to_an_http11_client_that_takes_them(env):
    _, fields, rest = split_head(exchange(env, "/trailers", extra="TE: trailers\r\n"))
    body, trailers, complete = dechunk(rest)
    assert complete and body == b"message"
    assert trailers == [b"grpc-status: 0", b"grpc-message: fine", b"x-t: 1"], trailers
    # A body framed by its length has no place for them in HTTP/1.1: dropped, the body
    # exact.
    _, fields, rest = split_head(exchange(env, "/trailers-cl", extra="TE: trailers\r\n"))
    assert (b"content-length", b"7") in fields and rest == b"message", (fields, rest)
    # Without TE: trailers they are dropped, the body is whole.
    _, fields, rest = split_head(exchange(env, "/trailers"))
    body, trailers, complete = dechunk(rest)
    assert complete and body == b"message" and trailers == []


@pytest.mark.parametrize("path", ["/reset-cl", "/reset-stream"])
def test_reset_mid_body_is_a_failure_for_http11(env, path):
    status, fields, rest = split_head(exchange(env, path))
    assert status == b"HTTP/1.1 200 OK"
    if path == "/reset-cl":
        assert (b"content-length", b"100000") in fields
        assert 0 < len(rest) < 100000          # short, then closed
    else:
        body, _, complete = dechunk(rest)
        assert not complete and len(body) <= 30000    # no last chunk: not a success
    line = env["g"].wait_log(1)[-1]
    assert re.search(r'" 200 UR upstream_reset_after_response_started\{remote_reset\} ',
                     line), line


@pytest.mark.parametrize("path", sorted(BAD_FIELDS))
def test_a_field_nghttp2_refuses_never_reaches_the_client(env, path):
    """h2head_pack trusts the fields' characters to nghttp2's checks (h2.c resets the
    stream in on_invalid_header rather than let nghttp2 drop the field): a control
    character, DEL, a non-token or upper-case name, or surrounding whitespace in a response
    field is a failed response, never a response relayed with or without that field."""
    status, fields, rest = split_head(exchange(env, path))
    assert status.startswith(b"HTTP/1.1 50"), (status, fields)
    assert not any(k.lower() in (b"x-bad", b"x(bad)") for k, _ in fields), fields
    line = env["g"].wait_log(1)[-1]
    assert re.search(r'" 50[23] \S+ upstream_reset_before_response_started', line), line


def test_over_http2_downstream(env):
    """The same responses to an HTTP/2 client of the gateway: exact fields, trailers as
    trailing HEADERS, a reset mid-body as RST_STREAM."""
    c = H2Client(env["g"].ip, env["mesh"]["client"])
    trailers = {}
    orig = c._event

    def event(ev):
        if isinstance(ev, h2.events.TrailersReceived):
            trailers[ev.stream_id] = list(ev.headers)
        orig(ev)
    c._event = event
    try:
        f = c.request("/fields")
        sp = c.request("/split")
        tr = c.request("/trailers")
        trcl = c.request("/trailers-cl")
        rs = c.request("/reset-cl")
        c.run()
        st = c.streams
        assert st[f]["status"] == 200 and bytes(st[f]["body"]) == b"hello"
        # (Cookie crumbs are the HTTP/2 downstream codec's to join or not.)
        got = [h for h in st[f]["headers"] if h[0] in ("set-cookie", "x-empty", "x-obs",
                                                        "content-type", "content-length")]
        assert got == [("content-type", "text/plain"), ("set-cookie", "a=1"),
                       ("set-cookie", "b=2"), ("x-empty", ""), ("x-obs", "caf\xe9"),
                       ("content-length", "5")], st[f]["headers"]
        assert bytes(st[sp]["body"]) == payload(SPLIT)
        assert st[tr]["ended"] and bytes(st[tr]["body"]) == b"message"
        assert trailers.get(tr) == [("grpc-status", "0"), ("grpc-message", "fine"),
                                    ("x-t", "1")], trailers
        # Trailers after a body framed by content-length (HTTP/2 allows them).
        assert st[trcl]["ended"] and bytes(st[trcl]["body"]) == b"message"
        assert ("content-length", "7") in st[trcl]["headers"], st[trcl]["headers"]
        assert trailers.get(trcl) == [("grpc-status", "0"), ("x-t", "cl")], trailers
        assert st[rs]["reset"] is not None and not st[rs]["ended"], st[rs]
        assert len(st[rs]["body"]) < 100000
    finally:
        c.close()
