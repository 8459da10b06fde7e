"""Downstream and upstream HTTP/1.1 strictness, end to end (issue 6).

A plain-HTTP Gateway server (port 80, every host) routes rec.test to a Python upstream
(plain HTTP, no DestinationRule) that records every byte it receives on every connection.
Each malformed request must get its status (400/414/431/505), the connection must be
closed after it, and the upstream must receive NOTHING. When a chunked body turns bad
after the head was forwarded, the upstream has seen only bytes the gateway validated
and never a smuggled second request. Malformed upstream responses give the client a 502
and the upstream connection is closed, never pooled."""
import time

import pytest

from conftest import Ctl
from gwlib import loopback_ip
from hardlib import (RawClient, RecordingServer, log_entry, plain_gateway_yaml, respond,
                     service_entry_yaml, start_gateway, virtual_service_yaml, write_hosts)

HOST = "rec.test"
H = f"Host: {HOST}\r\n"
SMUGGLED = f"GET /smuggled HTTP/1.1\r\n{H}\r\n"

BAD_RESPONSES = {
    "/resp/cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "/resp/te-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxxxx",
    "/resp/two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "/resp/status-4-digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "/resp/status-not-http": b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "/resp/bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "/resp/obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "/resp/big-head": b"HTTP/1.1 200 OK\r\n" + b"".join(
        b"X-Filler-%03d: %s\r\n" % (i, b"f" * 700) for i in range(90)) + b"Content-Length: 0\r\n\r\n",
    "/resp/too-many-headers": b"HTTP/1.1 200 OK\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(101)) + b"Content-Length: 0\r\n\r\n",
}


# Well-formed heads with more bytes than their framing allows: the client gets exactly
# the framed response, and the connection is not pooled (the extra bytes would otherwise
# be read as the answer to the next request: response queue poisoning).
OVERLONG = {
    "/resp/extra-bytes": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
    "/resp/204-with-body": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "/resp/head-with-body": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
}


def upstream_handler(sock, req):
    over = OVERLONG.get(req.target)
    if over is not None:
        sock.sendall(over)
        return True
    bad = BAD_RESPONSES.get(req.target)
    if bad is not None:
        sock.sendall(bad)
        return False        # keep the connection open: the gateway must be the one to close
    heads = ";".join(f"{k.lower()}={v}" for k, v in req.headers)
    respond(sock, 200, f"conn={req.conn} {req.method} {req.target} body={len(req.body)}\n".encode(),
            [("X-Seen-Headers", heads)])
    return True


@pytest.fixture(scope="module")
def env(tmp_path_factory, egressctl_bin):
    tmp = tmp_path_factory.mktemp("h1strict")
    e = type("Env", (), {})()
    up_ip = loopback_ip()
    e.up = RecordingServer(up_ip, 80, upstream_handler)
    hosts = tmp / "hosts"
    write_hosts(hosts, {HOST: up_ip})
    docs = [plain_gateway_yaml(), service_entry_yaml(HOST, 80, "HTTP"),
            virtual_service_yaml(HOST, HOST, 80)]
    store = tmp / "store"
    Ctl(egressctl_bin, store, tmp).ok("apply", "-f", "-", input="---\n".join(docs))
    e.gw = start_gateway(tmp, store, hosts)
    yield e
    try:
        e.gw.stop()
    finally:
        e.up.stop()


@pytest.fixture
def gw(env):
    yield env.gw
    assert env.gw.proc.poll() is None, env.gw.stderr()[-3000:]


def exchange(env, data, method="GET"):
    """Sends data on a new connection; returns (client, status, headers, body)."""
    c = RawClient(env.gw.ip)
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass            # the gateway may answer and close before all of it was sent
    status, headers, body = c.response(method)
    return c, status, headers, body


def wait_for(pred, timeout=3.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


# ---------------------------------------------------------------- requests refused

def te_case(value, version="1.1"):
    return f"POST / HTTP/{version}\r\n{H}Transfer-Encoding: {value}\r\n\r\n0\r\n\r\n"


def cl_case(*values):
    return f"POST / HTTP/1.1\r\n{H}" + "".join(f"Content-Length: {v}\r\n" for v in values) + "\r\nhello"


def field_case(line):
    return f"GET / HTTP/1.1\r\n{H}{line}\r\n\r\n"


REJECTS = [
    # framing
    ("cl_and_te", f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_and_cl", f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("te_chunked_chunked", te_case("chunked, chunked"), 400),
    ("te_chunked_twice", f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_gzip", te_case("gzip"), 400),
    ("te_gzip_chunked", te_case("gzip, chunked"), 400),
    ("te_identity", te_case("identity"), 400),
    ("te_empty", te_case(""), 400),
    ("te_chunked_in_http10", te_case("chunked", "1.0"), 400),
    ("te_xchunked", te_case("xchunked"), 400),
    ("cl_two_different", cl_case("5", "6"), 400),
    ("cl_list_different", cl_case("5, 6"), 400),
    ("cl_plus", cl_case("+5"), 400),
    ("cl_hex", cl_case("0x5"), 400),
    ("cl_two_numbers", cl_case("5 5"), 400),
    ("cl_25_digits", cl_case("1" * 25), 400),
    ("cl_negative", cl_case("-1"), 400),
    ("cl_empty", cl_case(""), 400),
    ("cl_empty_list_element", cl_case("5,,5"), 400),
    # field lines
    ("obs_fold", f"GET / HTTP/1.1\r\n{H}X-A: a\r\n b\r\n\r\n", 400),
    ("obs_fold_tab", f"GET / HTTP/1.1\r\n{H}X-A: a\r\n\tb\r\n\r\n", 400),
    ("space_before_first_field", f"GET / HTTP/1.1\r\n {H}\r\n", 400),
    ("space_before_colon", field_case("X-A : a"), 400),
    ("tab_before_colon", field_case("X-A\t: a"), 400),
    ("space_before_colon_cl", f"POST / HTTP/1.1\r\n{H}Content-Length : 5\r\n\r\nhello", 400),
    ("nul_in_name", field_case("X-\x00A: a"), 400),
    ("nul_in_value", field_case("X-A: a\x00b"), 400),
    ("ctl_in_name", field_case("X-\x01A: a"), 400),
    ("ctl_in_value", field_case("X-A: a\x01b"), 400),
    ("del_in_value", field_case("X-A: a\x7fb"), 400),
    ("cr_in_value", field_case("X-A: a\rb"), 400),
    ("empty_name", field_case(": a"), 400),
    ("no_colon", field_case("X-A a"), 400),
    ("bare_lf_in_head", f"GET / HTTP/1.1\r\n{H}X-A: a\n\r\n", 400),
    ("bare_lf_everywhere", f"GET / HTTP/1.1\nHost: {HOST}\n\n", 400),
    # Host
    ("empty_host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    ("two_hosts", f"GET / HTTP/1.1\r\n{H}{H}\r\n", 400),
    ("two_different_hosts", f"GET / HTTP/1.1\r\n{H}Host: other.test\r\n\r\n", 400),
    ("host_list", f"GET / HTTP/1.1\r\nHost: {HOST}, other.test\r\n\r\n", 400),
    ("host_userinfo", f"GET / HTTP/1.1\r\nHost: user@{HOST}\r\n\r\n", 400),
    ("no_host_http11", "GET / HTTP/1.1\r\n\r\n", 400),
    # request line
    ("double_space", f"GET  / HTTP/1.1\r\n{H}\r\n", 400),
    ("tab_separator", f"GET\t/ HTTP/1.1\r\n{H}\r\n", 400),
    ("trailing_space", f"GET / HTTP/1.1 \r\n{H}\r\n", 400),
    ("leading_space", f" GET / HTTP/1.1\r\n{H}\r\n", 400),
    ("missing_version", f"GET /\r\n{H}\r\n", 400),
    ("lowercase_version", f"GET / http/1.1\r\n{H}\r\n", 400),
    ("version_two_digits", f"GET / HTTP/1.10\r\n{H}\r\n", 400),
    ("space_in_target", f"GET /a b HTTP/1.1\r\n{H}\r\n", 400),
    ("nul_in_target", f"GET /a\x00b HTTP/1.1\r\n{H}\r\n", 400),
    ("high_byte_in_target", f"GET /a\xffb HTTP/1.1\r\n{H}\r\n", 400),
    ("method_not_a_token", f"G(T / HTTP/1.1\r\n{H}\r\n", 400),
    ("absolute_with_userinfo", f"GET http://user@{HOST}/ HTTP/1.1\r\n{H}\r\n", 400),
    ("authority_form_without_connect", f"GET {HOST}:80 HTTP/1.1\r\n{H}\r\n", 400),
    ("asterisk_without_options", f"GET * HTTP/1.1\r\n{H}\r\n", 400),
    ("http_1_2", f"GET / HTTP/1.2\r\n{H}\r\n", 505),
    ("http_2_0", f"GET / HTTP/2.0\r\n{H}\r\n", 505),
    ("h2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # limits
    ("request_line_over_8k", f"GET /{'a' * 8200} HTTP/1.1\r\n{H}\r\n", 414),
    ("101_fields", f"GET / HTTP/1.1\r\n{H}" + "".join(f"X-H{i}: v\r\n" for i in range(100)) + "\r\n", 431),
    ("head_over_60k", f"GET / HTTP/1.1\r\n{H}" + "".join(f"X-F{i}: {'v' * 1000}\r\n" for i in range(62)) + "\r\n", 431),
]


@pytest.mark.parametrize("name,data,code", REJECTS, ids=[r[0] for r in REJECTS])
def test_malformed_request_is_refused_and_never_forwarded(env, gw, name, data, code):
    before_conns, before_bytes = len(env.up.snapshot()), env.up.total_bytes()
    c, status, headers, body = exchange(env, data.encode("latin-1"))
    try:
        assert status == code, (status, body)
        assert headers.get("connection") == "close", headers
        assert c.at_eof(), "the connection stayed open after the error"
        assert c.buf == b"", c.buf
    finally:
        c.close()
    time.sleep(0.05)
    assert len(env.up.snapshot()) == before_conns and env.up.total_bytes() == before_bytes, \
        "the upstream received something"


def test_refusals_are_logged_as_downstream_protocol_errors(env, gw):
    c, status, _, _ = exchange(env, f"GET / HTTP/1.2\r\n{H}x-request-id: dpe-check\r\n\r\n".encode())
    c.close()
    assert status == 505
    lines = [ln for ln in gw.log_lines() if '"GET / HTTP/1.1" 505' in ln or " 505 DPE " in ln]
    assert lines and " DPE http1.codec_error " in lines[-1], gw.log_lines()[-3:]


def test_limits_are_exact(env, gw):
    """The limits are the documented ones, not approximations: 100 fields and a request
    line of 8192 bytes pass."""
    fields = "".join(f"X-H{i}: v\r\n" for i in range(98))   # + Host + Connection = 100
    c, status, _, body = exchange(env, f"GET /at-limit HTTP/1.1\r\n{H}{fields}Connection: close\r\n\r\n".encode())
    c.close()
    assert status == 200, body
    target = "/" + "a" * (8192 - len("GET  HTTP/1.1") - 1)
    line = f"GET {target} HTTP/1.1"
    assert len(line) == 8192
    c, status, _, body = exchange(env, f"{line}\r\n{H}Connection: close\r\n\r\n".encode())
    c.close()
    assert status == 200, body


# ---------------------------------------------------------------- bad chunked bodies

BAD_CHUNKS = [
    ("size_negative", "-1\r\nx\r\n0\r\n\r\n"),
    ("size_hex_prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
    ("size_17_hex_digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("size_with_trailing_space", "5 \r\nhello\r\n0\r\n\r\n"),
    ("size_two_numbers", "5 5\r\nhello\r\n0\r\n\r\n"),
    ("data_without_crlf", "5\r\nhelloXX0\r\n\r\n"),
    ("data_longer_than_size", "5\r\nhello world\r\n0\r\n\r\n"),
    ("bare_lf_after_size", "5\nhello\r\n0\r\n\r\n"),
    ("bare_lf_after_data", "5\r\nhello\n0\r\n\r\n"),
    ("bare_cr_after_size", "5\rhello\r\n0\r\n\r\n"),
    ("oversized_extension", "5;" + "e" * 5000 + "\r\nhello\r\n0\r\n\r\n"),
    ("bad_extension", "5;=x\r\nhello\r\n0\r\n\r\n"),
    ("obs_fold_in_trailer", "0\r\nX-T: a\r\n b\r\n\r\n"),
]


@pytest.mark.parametrize("name,bad", BAD_CHUNKS, ids=[b[0] for b in BAD_CHUNKS])
def test_bad_chunk_after_forwarded_head_never_smuggles(env, gw, name, bad):
    """The head and a valid chunk reach the upstream first; then the bad chunk and a
    request hidden behind it. The client gets 400 and a close, the upstream gets exactly
    the validated prefix, then a close, and never the hidden request."""
    marker = f"POST /chunked-{name} ".encode()

    def upstream_conn():
        found = [x for x in env.up.snapshot() if marker in x.raw]
        return found[0] if found else None
    c = RawClient(env.gw.ip)
    try:
        c.send(f"POST /chunked-{name} HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n".encode())
        assert wait_for(lambda: upstream_conn() is not None and
                        upstream_conn().raw.endswith(b"3\r\nabc\r\n")), \
            "the head and first chunk were not forwarded"
        try:
            c.send(bad.encode() + SMUGGLED.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body = c.response()
        assert status == 400, (status, body)
        assert headers.get("connection") == "close"
        assert c.at_eof()
    finally:
        c.close()
    up = upstream_conn()
    assert wait_for(lambda: up.closed_by_peer), "the upstream connection was left open"
    raw = bytes(up.raw)
    head_at = raw.index(marker)
    assert raw.endswith(b"\r\n\r\n3\r\nabc\r\n"), raw[-200:]
    assert b"smuggled" not in raw[head_at:]
    assert all(r.target != f"/chunked-{name}" for r in up.requests)
    assert all(r.target != "/smuggled" for r in env.up.requests())


def test_bad_chunk_in_one_packet_never_smuggles(env, gw):
    """The same with everything in one packet: at most the head goes upstream."""
    c, status, _, _ = exchange(env, (f"POST /oneshot HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                                     f"0x5\r\nhello\r\n0\r\n\r\n{SMUGGLED}").encode())
    assert status == 400 and c.at_eof()
    c.close()
    time.sleep(0.1)
    for x in env.up.snapshot():
        raw = bytes(x.raw)
        assert b"smuggled" not in raw
        if b"POST /oneshot " in raw:
            assert raw.endswith(b"\r\n\r\n"), raw[-100:]
            assert wait_for(lambda: x.closed_by_peer)
    assert all(r.target not in ("/oneshot", "/smuggled") for r in env.up.requests())


# ---------------------------------------------------------------- what is forwarded

def test_hop_by_hop_and_connection_listed_fields_are_removed(env, gw):
    c = RawClient(env.gw.ip)
    try:
        c.send((f"GET /hop HTTP/1.1\r\n{H}Connection: keep-alive, X-Conn-Listed, X-Other\r\n"
                "X-Conn-Listed: secret\r\nX-Other: secret2\r\nKeep-Alive: timeout=5\r\n"
                "Proxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nUpgrade: websocket\r\n"
                "X-Kept: yes\r\n\r\n").encode())
        status, headers, body = c.response()
    finally:
        c.close()
    assert status == 200, body
    seen = dict(kv.split("=", 1) for kv in headers["x-seen-headers"].split(";"))
    for gone in ["connection", "x-conn-listed", "x-other", "keep-alive", "proxy-connection",
                 "upgrade"]:
        assert gone not in seen, (gone, seen)
    assert seen.get("te") == "trailers", seen      # only "trailers" survives, re-added
    assert seen.get("x-kept") == "yes" and seen.get("host") == HOST, seen


def test_pipelined_requests_are_answered_in_order(env, gw):
    c = RawClient(env.gw.ip)
    try:
        c.send((f"GET /p1 HTTP/1.1\r\n{H}\r\n"
                f"POST /p2 HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"
                f"POST /p3 HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                f"GET /p4 HTTP/1.1\r\n{H}\r\n").encode())
        got = [c.response()[2].decode().split(" ", 1)[1] for _ in range(4)]
    finally:
        c.close()
    assert got == ["GET /p1 body=0\n", "POST /p2 body=5\n", "POST /p3 body=3\n", "GET /p4 body=0\n"]


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_is_never_parsed_as_a_request(env, gw, framing):
    inner = f"GET /inner-{framing} HTTP/1.1\r\n{H}\r\n".encode()
    if framing == "length":
        req = f"POST /outer HTTP/1.1\r\n{H}Content-Length: {len(inner)}\r\n\r\n".encode() + inner
    else:
        req = (f"POST /outer HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n".encode() +
               b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n")
    c = RawClient(env.gw.ip)
    try:
        c.send(req + f"GET /after-{framing} HTTP/1.1\r\n{H}\r\n".encode())
        first = c.response()[2].decode()
        second = c.response()[2].decode()
    finally:
        c.close()
    assert first.endswith(f"POST /outer body={len(inner)}\n"), first
    assert second.endswith(f"GET /after-{framing} body=0\n"), second
    assert all(r.target != f"/inner-{framing}" for r in env.up.requests())


# ---------------------------------------------------------------- upstream responses

@pytest.mark.parametrize("path", sorted(BAD_RESPONSES))
def test_malformed_response_is_502_and_the_connection_is_not_pooled(env, gw, path):
    c = RawClient(env.gw.ip)
    try:
        c.send(f"GET {path} HTTP/1.1\r\n{H}x-request-id: bad-{path}\r\n\r\n".encode())
        status, headers, body = c.response()
        assert status == 502, (status, body)
        assert c.at_eof()
    finally:
        c.close()
    m = log_entry(gw, f'"bad-{path}"')
    assert m["flags"] == "UPE" and m["details"] == "upstream_protocol_error", m.string
    bad = [x for x in env.up.snapshot() if any(r.target == path for r in x.requests)]
    assert len(bad) == 1
    assert wait_for(lambda: bad[0].closed_by_peer), "the gateway kept the upstream connection"
    # The next request gets a connection of its own, never the bad one.
    c = RawClient(env.gw.ip)
    try:
        c.send(f"GET /after-bad HTTP/1.1\r\n{H}\r\n".encode())
        status, _, body = c.response()
    finally:
        c.close()
    assert status == 200 and not body.startswith(b"conn=%d " % bad[0].n), body


@pytest.mark.parametrize("path,method,status,body", [
    ("/resp/extra-bytes", "GET", 200, b"hello"),
    ("/resp/204-with-body", "GET", 204, b""),
    ("/resp/head-with-body", "HEAD", 200, b""),
])
def test_bytes_beyond_the_response_framing_are_never_relayed(env, gw, path, method, status, body):
    c = RawClient(env.gw.ip)
    try:
        c.send(f"{method} {path} HTTP/1.1\r\n{H}\r\n".encode())
        st, _, got = c.response(method)
        assert (st, got) == (status, body)
        # The same client connection goes on, and its next answer is its own.
        c.send(f"GET /next-after{path} HTTP/1.1\r\n{H}\r\n".encode())
        st, _, got = c.response()
        assert st == 200 and got.endswith(f"GET /next-after{path} body=0\n".encode()), got
    finally:
        c.close()
    bad = [x for x in env.up.snapshot() if any(r.target == path for r in x.requests)]
    assert len(bad) == 1 and wait_for(lambda: bad[0].closed_by_peer), \
        "a connection with unread response bytes went back to the pool"
    assert all(r.target != f"/next-after{path}" for r in bad[0].requests)


def test_absolute_form_target_overrides_host(env, gw):
    """RFC 9112 3.2.2: with an absolute-form target the Host field is ignored and a proxy
    generates Host from the target. Routing follows the target's authority."""
    c, status, _, body = exchange(env, f"GET http://{HOST}/abs?q=1 HTTP/1.1\r\nHost: unrouted.test\r\n"
                                       f"Connection: close\r\n\r\n".encode())
    c.close()
    assert status == 200, body
    req = [r for r in env.up.requests() if r.target == "/abs?q=1"]
    assert len(req) == 1 and req[0].header("host") == HOST, [(r.target, r.headers) for r in req]
