"""gRPC through the sidecar and the gateway, with Python grpcio (Debian python3-grpcio) at
both ends: the application's channel speaks plaintext HTTP/2 (prior knowledge, h2c) to the
sidecar's outbound port; the sidecar routes edition.cnn.com to the gateway over HTTP/2
inside ISTIO_MUTUAL; the gateway originates TLS with ALPN h2 (DestinationRule
h2UpgradePolicy: UPGRADE) to a real gRPC server playing edition.cnn.com:443.

gRPC needs what plain HTTP does not: the response's trailers (grpc-status, grpc-message)
must cross both proxies, "te: trailers" must reach the server, a trailers-only answer
(HEADERS with END_STREAM) must stay one, and a deadline that expires at the client must
cancel the stream all the way to the server. Generic handlers with raw bytes (no
serializers), so no protoc step is needed."""
import threading
import time
from concurrent import futures

import grpc
import pytest

from sidecarlib import CNN
from test_sidecar import Topology, apply_cnn

SVC = "test.Echo"


class Servicer:
    """The server's side: records what it saw so the test can check the proxies."""

    def __init__(self):
        self.metadata = []           # invocation metadata of each call
        self.cancelled = threading.Event()
        self.slow_started = threading.Event()
        self.slow_remaining = None

    def unary(self, req, ctx):
        self.metadata.append(dict(ctx.invocation_metadata()))
        ctx.set_trailing_metadata((("x-echo-trailer", "t-" + req.decode()),))
        return b"echo:" + req

    def stream(self, req, ctx):
        n = int(req)
        for i in range(n):
            yield b"part %d " % i + b"x" * (i * 1000)

    def fail(self, req, ctx):
        ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "no access to " + req.decode())

    def fail_late(self, req, ctx):
        # Trailers after DATA: an error status once the response has started.
        yield b"first"
        ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota gone after the first message")

    def slow(self, req, ctx):
        self.slow_remaining = ctx.time_remaining()
        ctx.add_callback(self.cancelled.set)
        self.slow_started.set()
        deadline = time.time() + 20
        while ctx.is_active() and time.time() < deadline:
            time.sleep(0.02)
        return b"too late"


def _handlers(sv):
    h = grpc.method_handlers_generic_handler(SVC, {
        "Unary": grpc.unary_unary_rpc_method_handler(sv.unary),
        "Stream": grpc.unary_stream_rpc_method_handler(sv.stream),
        "Fail": grpc.unary_unary_rpc_method_handler(sv.fail),
        "FailLate": grpc.unary_stream_rpc_method_handler(sv.fail_late),
        "Slow": grpc.unary_unary_rpc_method_handler(sv.slow),
    })
    return h


class GrpcCnn:
    """A TLS gRPC server on edition.cnn.com:443 (the address and certificate nginx had)."""

    def __init__(self, t):
        t.sites[0].stop()            # nginx playing edition.cnn.com (80 and 443)
        t.sites.remove(t.sites[0])
        self.sv = Servicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((_handlers(self.sv),))
        cert = (t.site_certs / f"{CNN}.crt").read_bytes()
        key = (t.site_certs / f"{CNN}.key").read_bytes()
        port = self.server.add_secure_port(f"{t.cnn_ip}:443",
                                           grpc.ssl_server_credentials([(key, cert)]))
        assert port == 443
        self.server.start()

    def stop(self):
        self.server.stop(0).wait(5)


def _upgrade_dr(t):
    """The walkthrough's DestinationRule for edition.cnn.com, asking for HTTP/2 to it (gRPC
    servers speak nothing else)."""
    dr = (t.wt / "03-virtualservice-destinationrule-cnn.yaml").read_text()
    marker = "      tls:\n        mode: SIMPLE"
    assert dr.count(marker) == 1
    return dr.replace(marker, "      connectionPool:\n        http:\n"
                      "          h2UpgradePolicy: UPGRADE\n" + marker)


@pytest.fixture
def grpc_topo(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    try:
        t.grpc = GrpcCnn(t)
        apply_cnn(t)
        ctl.ok("apply", "-f", "-", input=_upgrade_dr(t))
        t.channel = grpc.insecure_channel(
            f"127.0.0.1:{t.sidecar.outbound}",
            options=[("grpc.default_authority", CNN), ("grpc.enable_http_proxy", 0),
                     ("grpc.enable_retries", 0)])
        _wait_served(t)
    except BaseException:
        t.stop()
        raise
    yield t
    t.channel.close()
    t.grpc.stop()
    assert t.stop() == [0] * (1 + len(t.sidecars)), "egressgw did not exit 0 on SIGTERM"


def _call(t, method, req, timeout=10, **kw):
    return t.channel.unary_unary(f"/{SVC}/{method}")(req, timeout=timeout, **kw)


def _wait_served(t, timeout=15.0):
    """Until both proxies run the configuration (UNAVAILABLE / UNIMPLEMENTED before)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if _call(t, "Unary", b"ping", timeout=5) == b"echo:ping":
                return
        except grpc.RpcError as e:
            last = (e.code(), e.details())
        time.sleep(0.2)
    raise AssertionError(f"gRPC never served through sidecar and gateway: {last}\n"
                         f"sidecar: {t.sidecar.stderr()[-2000:]}\n"
                         f"gateway: {t.gateway.stderr()[-2000:]}")


def test_unary_with_trailing_metadata(grpc_topo):
    t = grpc_topo
    resp, call = t.channel.unary_unary(f"/{SVC}/Unary").with_call(b"hello", timeout=10,
                                                                  metadata=(("x-app", "a1"),))
    assert resp == b"echo:hello"
    assert call.code() == grpc.StatusCode.OK
    assert ("x-echo-trailer", "t-hello") in tuple(call.trailing_metadata())
    md = t.grpc.sv.metadata[-1]
    assert md.get("x-app") == "a1"
    # Both proxies were on the path, and each logged the call as HTTP/2.
    for p in (t.sidecar, t.gateway):
        p.wait_log(lambda m: m["path"] == "/test.Echo/Unary" and m["proto"] == "HTTP/2"
                   and m["code"] == "200")


def test_server_streaming(grpc_topo):
    t = grpc_topo
    got = list(t.channel.unary_stream(f"/{SVC}/Stream")(b"40", timeout=20))
    assert got == [b"part %d " % i + b"x" * (i * 1000) for i in range(40)]


def test_error_status_and_message_reach_the_client(grpc_topo):
    t = grpc_topo
    with pytest.raises(grpc.RpcError) as ei:
        _call(t, "Fail", b"/secret")
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ei.value.details() == "no access to /secret"


def test_error_status_after_messages(grpc_topo):
    t = grpc_topo
    got = []
    with pytest.raises(grpc.RpcError) as ei:
        for m in t.channel.unary_stream(f"/{SVC}/FailLate")(b"", timeout=10):
            got.append(m)
    assert got == [b"first"]
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ei.value.details() == "quota gone after the first message"


def test_deadline_exceeded_ends_the_call_on_every_hop(grpc_topo):
    t = grpc_topo
    t0 = time.time()
    with pytest.raises(grpc.RpcError) as ei:
        _call(t, "Slow", b"", timeout=1.0)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.time() - t0 < 5
    assert t.grpc.sv.slow_started.is_set()
    # The server's call ends at once, not at its own 20 s: the client's RST_STREAM crossed
    # both proxies (logged DC), or the server's own deadline (grpc-timeout reached it
    # through both proxies) answered first, which under a slow build (ASan) can win the
    # race. test_cancel_reaches_the_server checks the reset path alone.
    assert t.grpc.sv.cancelled.wait(5), "the server's call never ended"
    for p in (t.sidecar, t.gateway):
        p.wait_log(lambda m: m["path"] == "/test.Echo/Slow" and
                   ("DC" in m["flags"] or m["code"] == "200"))
    rem = t.grpc.sv.slow_remaining
    assert rem is not None and rem < 2, rem     # the deadline crossed both proxies
    # The channel still works afterwards.
    assert _call(t, "Unary", b"after") == b"echo:after"


def test_cancel_reaches_the_server(grpc_topo):
    """Without a deadline (no grpc-timeout the server could act on by itself), only the
    proxies' reset of the upstream stream can end the server's call early."""
    t = grpc_topo
    fut = t.channel.unary_unary(f"/{SVC}/Slow").future(b"")
    assert t.grpc.sv.slow_started.wait(10)
    fut.cancel()
    assert fut.cancelled()
    assert t.grpc.sv.cancelled.wait(5), "the server's call was not cancelled"


def test_connect_over_h2c_is_refused_not_tunnelled(grpc_topo):
    """CONNECT on a prior-knowledge HTTP/2 stream: a stream has no socket to tunnel, so the
    sidecar refuses it on that stream and the connection goes on serving."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    t = grpc_topo
    with socket.create_connection(("127.0.0.1", t.sidecar.outbound), timeout=10) as s:
        c = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False))
        c.initiate_connection()
        c.send_headers(1, [(":method", "CONNECT"), (":authority", f"{CNN}:443")])
        c.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":authority", CNN),
                           (":path", "/test.Echo/Unary")], end_stream=True)
        s.sendall(c.data_to_send())
        status, ended = {}, set()
        while len(ended) < 2:
            data = s.recv(65536)
            assert data, "the sidecar closed the connection"
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status[ev.stream_id] = dict(ev.headers)[b":status"]
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended.add(ev.stream_id)
            s.sendall(c.data_to_send())
    # 400 from the HTTP/1.1 rendering's parser (a CONNECT with body framing), or 405 from
    # st_begin's refusal of CONNECT on a stream: either way, no tunnel.
    assert status.get(1) in (b"400", b"405"), status
    assert 3 in status, status      # the other stream was served (by the gRPC server)
