"""Trailers across the HTTP/2 hops, against a scripted python3-h2 origin (h2origin.py)
that records what it received: the application speaks h2c (prior knowledge) to the
sidecar, the sidecar HTTP/2 inside ISTIO_MUTUAL to the gateway, the gateway HTTP/2 over TLS
to the origin (DestinationRule h2UpgradePolicy: UPGRADE). A request's trailing HEADERS
reach the origin as trailing HEADERS after the whole body (gRPC's client streaming with
trailing metadata, which grpcio's client cannot send), the response's trailers reach the
application; an HTTP/1.1 application's request trailers are dropped (Envoy's HTTP/1
codec default)."""
import socket
import time

import h2.config
import h2.connection
import h2.events
import pytest

from gwlib import scaled
from h2origin import H2Origin
from sidecarlib import CNN
from test_grpc import _upgrade_dr
from test_h2_mesh import payload
from test_sidecar import Topology, apply_cnn


def s_collect(c, req):
    body = b"got %d" % len(req.body)
    c.head(req.sid, 200, [("content-type", "application/grpc")])
    c.data(req.sid, body)
    c.trailers(req.sid, [("grpc-status", "0"), ("x-resp-trailer", "r1")])


def s_collect_cl(c, req):
    body = b"got %d" % len(req.body)
    c.head(req.sid, 200, [("content-type", "application/grpc"),
                          ("content-length", str(len(body)))])
    c.data(req.sid, body)
    c.trailers(req.sid, [("grpc-status", "0"), ("x-resp-trailer", "with-length")])


def s_ping(c, req):
    c.head(req.sid, 200, [("content-length", "4")])
    c.data(req.sid, b"pong", end=True)


class H2cClient:
    """One prior-knowledge h2c connection to the sidecar's outbound port."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(16 << 20)
        self.sock.sendall(self.conn.data_to_send())

    def call(self, path, body, trailers, timeout=20):
        """POST path with body (no content-length) then trailers; returns (status,
        headers, body, trailers, reset)."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                     (":authority", CNN), (":path", path),
                                     ("content-type", "application/grpc"), ("te", "trailers")])
        view = memoryview(body)
        out = {"status": None, "headers": None, "body": bytearray(), "trailers": None,
               "ended": False, "reset": None}
        sent_trailers = False
        deadline = time.time() + scaled(timeout)
        while not out["ended"] and out["reset"] is None:
            while len(view):
                w = min(self.conn.local_flow_control_window(sid),
                        self.conn.max_outbound_frame_size, len(view))
                if w <= 0:
                    break
                self.conn.send_data(sid, view[:w].tobytes())
                view = view[w:]
            if not len(view) and not sent_trailers and trailers is not None:
                self.conn.send_headers(sid, trailers, end_stream=True)
                sent_trailers = True
            elif not len(view) and not sent_trailers:
                self.conn.end_stream(sid)
                sent_trailers = True
            self.sock.sendall(self.conn.data_to_send())
            assert time.time() < deadline, out
            data = self.sock.recv(65536)
            assert data, "connection closed"
            for ev in self.conn.receive_data(data):
                if getattr(ev, "stream_id", sid) != sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    out["headers"] = list(ev.headers)
                    out["status"] = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    out["body"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.TrailersReceived):
                    out["trailers"] = list(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    out["ended"] = True
                elif isinstance(ev, h2.events.StreamReset):
                    out["reset"] = ev.error_code
        return out

    def close(self):
        self.sock.close()


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    try:
        t.sites[0].stop()            # nginx playing edition.cnn.com (80 and 443)
        t.sites.remove(t.sites[0])
        t.origin = H2Origin(t.cnn_ip, t.site_certs / f"{CNN}.crt", t.site_certs / f"{CNN}.key",
                            {"/collect": s_collect, "/collect-cl": s_collect_cl,
                             "/ping": s_ping})
        apply_cnn(t)
        ctl.ok("apply", "-f", "-", input=_upgrade_dr(t))
        deadline = time.time() + scaled(15)
        while True:
            c = H2cClient(t.sidecar.outbound)
            try:
                r = c.call("/ping", b"", None, timeout=5)
            finally:
                c.close()
            if r["status"] == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert r["status"] == 200, r
    except BaseException:
        t.stop()
        raise
    yield t
    t.origin.stop()
    assert t.stop() == [0] * (1 + len(t.sidecars)), "egressgw did not exit 0 on SIGTERM"


@pytest.mark.parametrize("size", [0, 5, 300001])
def test_request_trailers_reach_the_origin_through_both_proxies(topo, size):
    t = topo
    c = H2cClient(t.sidecar.outbound)
    try:
        r = c.call("/collect", payload(size), [("x-client-trailer", "v1"),
                                               ("grpc-timeout-ish", "late metadata")])
    finally:
        c.close()
    assert r["status"] == 200 and r["ended"], r
    assert bytes(r["body"]) == b"got %d" % size
    assert r["trailers"] == [("grpc-status", "0"), ("x-resp-trailer", "r1")], r
    req = [q for q in t.origin.requests if q.get(b":path") == b"/collect"][-1]
    assert bytes(req.body) == payload(size)
    assert req.trailers == [(b"x-client-trailer", b"v1"),
                            (b"grpc-timeout-ish", b"late metadata")], req.trailers
    # It crossed both proxies over HTTP/2.
    for p in (t.sidecar, t.gateway):
        p.wait_log(lambda m: m["path"] == "/collect" and m["proto"] == "HTTP/2"
                   and m["code"] == "200")


def test_response_trailers_after_a_content_length_body(topo):
    """The origin frames its body with content-length and still sends trailers: the
    application gets both, through both proxies."""
    t = topo
    c = H2cClient(t.sidecar.outbound)
    try:
        r = c.call("/collect-cl", payload(777), [("x-client-trailer", "v2")])
    finally:
        c.close()
    assert r["status"] == 200 and r["ended"] and bytes(r["body"]) == b"got 777", r
    assert ("content-length", "7") in r["headers"], r["headers"]
    assert r["trailers"] == [("grpc-status", "0"), ("x-resp-trailer", "with-length")], r
    req = [q for q in t.origin.requests if q.get(b":path") == b"/collect-cl"][-1]
    assert req.trailers == [(b"x-client-trailer", b"v2")]


def test_oversized_request_trailers_are_dropped_not_refused(topo):
    """More trailer bytes than an HTTP/1.1 trailer section may hold (16 KiB): the request
    still succeeds, without them (as before trailers were passed at all)."""
    t = topo
    c = H2cClient(t.sidecar.outbound)
    try:
        r = c.call("/collect", payload(10), [("x-big", "v" * 20000)])
    finally:
        c.close()
    assert r["status"] == 200 and bytes(r["body"]) == b"got 10", r
    req = [q for q in t.origin.requests if q.get(b":path") == b"/collect"][-1]
    assert bytes(req.body) == payload(10) and req.trailers is None


def test_no_trailers_ends_the_request_as_before(topo):
    t = topo
    c = H2cClient(t.sidecar.outbound)
    try:
        r = c.call("/collect", payload(1000), None)
    finally:
        c.close()
    assert r["status"] == 200 and bytes(r["body"]) == b"got 1000"
    req = [q for q in t.origin.requests if q.get(b":path") == b"/collect"][-1]
    assert bytes(req.body) == payload(1000) and req.trailers is None


def test_http11_request_trailers_are_dropped(topo):
    t = topo
    with socket.create_connection(("127.0.0.1", t.sidecar.outbound), timeout=10) as s:
        s.sendall(f"POST http://{CNN}/collect HTTP/1.1\r\nHost: {CNN}\r\n"
                  "Transfer-Encoding: chunked\r\nTE: trailers\r\nConnection: close\r\n\r\n"
                  "5\r\nhello\r\n0\r\nx-client-trailer: v1\r\n\r\n".encode())
        raw = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            raw += d
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    assert b"\r\n0\r\ngrpc-status: 0\r\nx-resp-trailer: r1\r\n\r\n" in raw, raw
    req = [q for q in t.origin.requests if q.get(b":path") == b"/collect"][-1]
    assert bytes(req.body) == b"hello" and req.trailers is None
