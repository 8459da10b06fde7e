"""Window shrinking as back-pressure (issue 17, src/proxy/overload.h): while the HTTP/2
stream budget is past its high-water mark (half of it), downstream connections advertise
a stream window (SETTINGS_INITIAL_WINDOW_SIZE) of 16 KiB instead of 256 KiB, the ones
open already too, and get their window back once the streams in flight fall to the
low-water mark (a quarter). So a burst of uploads cannot make every stream buffer a full
window of request body in the gateway.

Against real peers: python3-h2-framed raw clients (h2raw.py) over mutual TLS to the
gateway's ISTIO_MUTUAL listener, nginx as the upstream (test_h2_stall's site). Pressure
is made as the stalled-streams attack makes it: connections with a zero stream window
asking for 1 MiB, so their streams stay in flight. Asserted, on a connection opened before
the pressure: the lowered SETTINGS arrive at its next read, the gateway applies it (a
stream's 20,000 bytes of body, more than half of 16 KiB, draw a stream WINDOW_UPDATE,
which under 256 KiB they do not: nghttp2 tops a window up once half of it is consumed),
and the 256 KiB come back after the pressure; a connection opened under pressure starts with 16 KiB; the
state shows in /stats/prometheus."""
import re
import socket
import struct

from gwlib import Gateway, loopback_ip, mesh_context, scaled, wait_port, wait_until
from h2raw import (ACK, DATA, END_HEADERS, END_STREAM, ENABLE_PUSH, HEADERS,
                   INITIAL_WINDOW_SIZE, PING, SETTINGS, WINDOW_UPDATE, RawH2, frame, request)
from test_gateway import CNN, apply_first_half, mesh  # noqa: F401 (fixture)
from test_h2_stall import site  # noqa: F401 (fixture)

BUDGET = 40               # --max-h2-streams: high water 20, low water 10
NORMAL, SHRUNK = 256 * 1024, 16 * 1024


def connect(gw_ip, client_dir, client_settings=((ENABLE_PUSH, 0),)):
    ctx = mesh_context(client_dir)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((gw_ip, 80), timeout=scaled(10))
    s = ctx.wrap_socket(raw, server_hostname=CNN)
    assert s.selected_alpn_protocol() == "h2"
    c = RawH2(s, client_settings=client_settings)
    assert c.until(lambda e: e.kind == "frame" and e.ftype == SETTINGS and e.flags & ACK)
    return c


def windows(c):
    """Every SETTINGS_INITIAL_WINDOW_SIZE the server has announced on c, in order."""
    out = []
    for e in c.frames(SETTINGS):
        if e.flags & ACK:
            continue
        for i in range(0, len(e.payload), 6):
            k, v = struct.unpack(">HI", e.payload[i:i + 6])
            if k == INITIAL_WINDOW_SIZE:
                out.append(v)
    return out


def window_now(c, want, timeout=10):
    """Pings c (the gateway reads, and applies the window of the moment) until the last
    window announced is want; returns the windows announced."""
    def acks():
        return sum(1 for e in c.frames(PING) if e.flags & ACK)

    def seen():
        n = acks()
        c.send(frame(PING, 0, 0, b"windowsz"))
        c.until(lambda e: acks() > n, 1)
        w = windows(c)
        return w and w[-1] == want
    wait_until(seen, scaled(timeout), f"window {want} announced")
    return windows(c)


def stalled_streams(gw_ip, client_dir, conns, streams):
    """conns connections with a zero window, streams requests for /big each: they stay in
    flight until closed."""
    out = []
    for _ in range(conns):
        c = connect(gw_ip, client_dir, ((ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 0)))
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i,
                              c.block(request("/big"))) for i in range(streams)))
        out.append(c)
    return out


def prom(gw, name):
    code, text = gw.admin("/stats/prometheus")
    assert code == 200
    return int(re.search(rf"^{name} (\d+)$", text, re.M)[1])


def stream_updates(c, sid):
    return [e for e in c.frames(WINDOW_UPDATE) if e.sid == sid]


def upload(c, sid, n):
    """A POST whose n bytes of body are sent at once, in DATA frames of up to 16 KiB (the
    smallest frame size a server must take), with no regard to the stream window."""
    c.send(frame(HEADERS, END_HEADERS, sid, c.block(request(
        "/politics", method="POST", extra=[("content-length", str(n))]))))
    body = b"x" * n
    chunks = [body[i:i + 16384] for i in range(0, n, 16384)]
    c.send(b"".join(frame(DATA, END_STREAM if i == len(chunks) - 1 else 0, sid, ch)
                    for i, ch in enumerate(chunks)))


def test_stream_window_shrinks_under_pressure_and_comes_back(tmp_path, store, ctl,
                                                             walkthrough, mesh, site):  # noqa: F811
    apply_first_half(ctl, walkthrough)
    gw_ip = loopback_ip()
    gw = Gateway(tmp_path, store, mesh["gw"], gw_ip, site["hosts"], site["ca"], workers=2,
                 extra=("--max-h2-streams", str(BUDGET)))
    wait_port(gw_ip, 80, proc=gw.proc)
    attackers = []
    try:
        observer = connect(gw_ip, mesh["client"])
        assert windows(observer) == [NORMAL]
        assert prom(gw, "egressgw_overload_h2_window_shrunk") == 0
        # Under the high-water mark nothing changes: 20 KiB of body in one go is taken.
        upload(observer, 1, 20000)
        r = observer.response(1)
        assert r is not None and r.kind == "headers", r
        assert windows(observer) == [NORMAL]
        assert stream_updates(observer, 1) == []

        # 3 x 9 = 27 streams in flight: past half the budget (20), under its whole.
        attackers = stalled_streams(gw_ip, mesh["client"], 3, 9)
        wait_until(lambda: prom(gw, "egressgw_overload_h2_streams") >= 27, scaled(10),
                   "the stalled streams in flight")
        assert prom(gw, "egressgw_overload_h2_window_shrunk") == 1
        assert prom(gw, "egressgw_overload_h2_window_shrink_total") == 1
        # The connection opened before: the lowered window at its next read...
        assert window_now(observer, SHRUNK) == [NORMAL, SHRUNK]
        # ... and applied once acknowledged (the PING above came after our ACK): the
        # same 20,000 bytes on a new stream are more than half its window now.
        upload(observer, 3, 20000)
        r = observer.response(3)
        assert r is not None and r.kind == "headers", (r, observer.events[-5:])
        assert stream_updates(observer, 3), observer.events[-8:]
        # A connection opened under pressure ends its SETTINGS at 16 KiB.
        late = connect(gw_ip, mesh["client"])
        assert window_now(late, SHRUNK)[-1] == SHRUNK
        late.close()

        # The pressure gone (the streams closed: under a quarter), the window comes back.
        for c in attackers:
            c.close()
        attackers = []
        wait_until(lambda: prom(gw, "egressgw_overload_h2_window_shrunk") == 0, scaled(10),
                   "the window restored")
        assert window_now(observer, NORMAL) == [NORMAL, SHRUNK, NORMAL]
        upload(observer, 5, 20000)
        r = observer.response(5)
        assert r is not None and r.kind == "headers", (r, observer.events[-5:])
        assert stream_updates(observer, 5) == [], observer.events[-8:]
        assert "window of 16384 bytes" in gw.stderr()
        assert "get their stream window back" in gw.stderr()
        observer.close()
    finally:
        for c in attackers:
            c.close()
        rc = gw.stop()
    assert rc == 0, gw.stderr()[-3000:]
