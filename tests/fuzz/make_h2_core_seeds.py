#!/usr/bin/python3
"""Makes fuzz_h2_core's seeds (tests/fuzz/fuzz_h2_core.c) with python3-h2: each file is one
mode byte (high nibble: how the upstream answers; low nibble: bytes per write) then an
HTTP/2 client's frames after the connection preface. Run from tests/fuzz/corpus/h2_core/."""
import h2.config
import h2.connection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def conn():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    return c


def req(c, sid, path, host="up.test", method="GET", extra=(), body=None, trailers=None):
    h = [(":method", method), (":scheme", "http"), (":authority", host), (":path", path)]
    h += list(extra)
    if body is not None and trailers is None:
        h.append(("content-length", str(len(body))))
    c.send_headers(sid, h, end_stream=body is None)
    if body is not None:
        c.send_data(sid, body, end_stream=trailers is None)
        if trailers:
            c.send_headers(sid, trailers, end_stream=True)


def write(name, mode, c):
    out = c.data_to_send()
    assert out.startswith(PREFACE)
    with open(name, "wb") as f:
        f.write(bytes([mode]) + out[len(PREFACE):])


c = conn(); req(c, 1, "/"); write("get.bin", 0x00, c)
c = conn(); req(c, 1, "/echo", method="POST", body=b"hello"); write("post.bin", 0x10, c)
c = conn(); req(c, 1, "/deny/x"); write("deny.bin", 0x00, c)
c = conn(); req(c, 1, "/slow/1"); write("slow.bin", 0x40, c)
c = conn(); req(c, 1, "/redir"); write("redir.bin", 0x00, c)
c = conn(); req(c, 1, "/rw/a", extra=[("x-a", "b")]); write("rewrite.bin", 0x10, c)
c = conn(); req(c, 1, "/p", method="PUT", body=b"x" * 100); write("retry.bin", 0x20, c)
c = conn(); req(c, 1, "/", host="down.test"); write("refused.bin", 0x00, c)
c = conn(); req(c, 1, "/", host="nowhere.test"); write("unknown.bin", 0x00, c)
c = conn()
for i in range(6):
    req(c, 1 + 2 * i, "/cb%d" % i, host="cb.test")
write("overflow.bin", 0x03, c)
c = conn()
req(c, 1, "/grpc.Svc/Call", method="POST", extra=[("te", "trailers"),
    ("content-type", "application/grpc")], body=b"\0\0\0\0\x02hi",
    trailers=[("grpc-timeout", "1S")])
write("trailers.bin", 0x10, c)
c = conn(); req(c, 1, "/", method="POST", body=b"abc" * 10); c.reset_stream(1)
write("reset.bin", 0x00, c)
c = conn()
for i in range(20):
    req(c, 1 + 2 * i, "/many/%d" % i)
write("many.bin", 0x05, c)
c = conn(); req(c, 1, "/close"); write("until_close.bin", 0x30, c)
