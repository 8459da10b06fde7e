"""A raw HTTP/2 client for conformance tests: it writes frames byte by byte (so it can send
what python-h2 refuses to: bad prefaces, frames on the wrong stream, broken header blocks,
floods) and reads the peer's frames back, decoding response header blocks with hpack.

    c = RawH2(sock)                  # a socket that negotiated h2 (ALPN), preface sent
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.block(request("/"))))
    ev = c.until(lambda ev: ev.kind == "rst" and ev.sid == 1)

Every event read is also kept in c.events; SETTINGS and PING are acknowledged as a
client must, so the server never times us out. A closed connection is an event too
(kind "closed"), so a wait never hangs on a server that hung up."""
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

import hpack

from gwlib import scaled

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)

END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# RFC 9113 section 7.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, \
    STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, \
    CONNECT_ERROR, ENHANCE_YOUR_CALM = range(12)
ERROR_NAMES = {v: k for k, v in dict(
    NO_ERROR=0, PROTOCOL_ERROR=1, INTERNAL_ERROR=2, FLOW_CONTROL_ERROR=3,
    SETTINGS_TIMEOUT=4, STREAM_CLOSED=5, FRAME_SIZE_ERROR=6, REFUSED_STREAM=7, CANCEL=8,
    COMPRESSION_ERROR=9, CONNECT_ERROR=10, ENHANCE_YOUR_CALM=11).items()}

# SETTINGS identifiers (RFC 9113 section 6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, \
    MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)


def frame(ftype, flags, sid, payload=b""):
    """One frame: 9-byte header + payload (any length, even one the peer must refuse)."""
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0xFFFFFFFF) + payload


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def rst_stream(sid, code):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def request(path="/politics", authority="edition.cnn.com", method="GET", extra=()):
    """A request's header list, pseudo-fields first."""
    return [(":method", method), (":scheme", "https"), (":authority", authority),
            (":path", path)] + list(extra)


@dataclass
class Event:
    kind: str                # "frame", "headers" (a whole decoded block), "closed"
    ftype: int = -1
    flags: int = 0
    sid: int = 0
    payload: bytes = b""
    headers: list = field(default_factory=list)

    @property
    def code(self):
        """The error code of a RST_STREAM or GOAWAY."""
        if self.ftype == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.ftype == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        return None

    @property
    def status(self):
        return dict(self.headers).get(":status")

    def __repr__(self):
        if self.kind != "frame":
            return f"<{self.kind} sid={self.sid} {self.headers}>"
        extra = f" code={ERROR_NAMES.get(self.code, self.code)}" if self.code is not None else ""
        return f"<frame type={self.ftype} flags={self.flags:#x} sid={self.sid} len={len(self.payload)}{extra}>"


class RawH2:
    def __init__(self, sock, preface=PREFACE, client_settings=((ENABLE_PUSH, 0),)):
        self.sock = sock
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.buf = b""
        self.events = []
        self.closed = False       # the server's end: EOF or reset read (every byte before it read)
        self.send_failed = False  # a send hit a reset or a closed pipe: stop sending, keep reading
        self.reset = False        # the connection ended by a reset (or a TLS error), not an EOF
        self._block = None        # (sid, bytes) of a header block awaiting CONTINUATION
        if preface is not None:
            self.send(preface + (settings(*client_settings) if client_settings is not None else b""))

    def block(self, headers):
        """HPACK-encodes a header list (names as given: the encoder does not lower-case)."""
        return self.enc.encode(headers)

    def send(self, data):
        """Sends unless an earlier send failed. A failed send does not mark the connection
        closed: what the server wrote before it hung up (a GOAWAY) may still wait in our
        receive queue, and until() reads it before the "closed" event."""
        if self.send_failed:
            return
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.send_failed = True

    def get(self, sid, path="/politics", end_stream=True, extra=(), method="GET"):
        """A request on sid in one HEADERS frame (END_STREAM unless a body follows)."""
        self.send(frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid,
                        self.block(request(path, method=method, extra=extra))))

    def _parse(self):
        out = []
        while len(self.buf) >= 9:
            n = (self.buf[0] << 16) | (self.buf[1] << 8) | self.buf[2]
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
            payload = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            ev = Event("frame", ftype, flags, sid, payload)
            out.append(ev)
            if ftype == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK:
                self.send(frame(PING, ACK, 0, payload))
            elif ftype in (HEADERS, PUSH_PROMISE):
                p = payload
                if flags & PADDED:
                    p = p[1:len(p) - p[0]]
                if ftype == HEADERS and flags & PRIORITY_FLAG:
                    p = p[5:]
                if ftype == PUSH_PROMISE:
                    p = p[4:]
                self._block = (sid, p)
            elif ftype == CONTINUATION and self._block:
                self._block = (sid, self._block[1] + payload)
            if ftype in (HEADERS, PUSH_PROMISE, CONTINUATION) and flags & END_HEADERS \
                    and self._block:
                hs = [(k.decode(), v.decode()) for k, v in
                      self.dec.decode(self._block[1], raw=True)]
                out.append(Event("headers", ftype, flags, sid, b"", hs))
                self._block = None
        return out

    def until(self, pred, timeout=10.0):
        """Reads until an event satisfies pred (returned) or the connection closes (the
        "closed" event, returned whether pred accepts it or not) or timeout (None; scaled
        under valgrind, gwlib.scaled)."""
        for ev in self.events:
            if pred(ev):
                return ev
        deadline = time.time() + scaled(timeout)
        while not self.closed:
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                data = b""
                self.reset = True
            if not data:
                self.closed = True
                ev = Event("closed")
                self.events.append(ev)
                return ev
            self.buf += data
            new = self._parse()
            self.events += new       # all of them, also those after the one that matches
            for ev in new:
                if pred(ev):
                    return ev
        return Event("closed")

    def frames(self, ftype):
        return [e for e in self.events if e.kind == "frame" and e.ftype == ftype]

    def goaway(self, timeout=10.0):
        """The GOAWAY the server sends (None if it closed without one, or never did)."""
        ev = self.until(lambda e: e.kind == "frame" and e.ftype == GOAWAY, timeout)
        return ev if ev is not None and ev.kind == "frame" else None

    def wait_closed(self, timeout=10.0):
        """True once the server has closed the connection."""
        return self.until(lambda e: e.kind == "closed", timeout) is not None

    def response(self, sid, timeout=10.0):
        """The response HEADERS event on sid, or its RST_STREAM, or the closing event."""
        return self.until(lambda e: (e.kind == "headers" and e.sid == sid) or
                          (e.kind == "frame" and e.ftype in (RST_STREAM, GOAWAY) and
                           (e.sid == sid or e.ftype == GOAWAY)), timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
