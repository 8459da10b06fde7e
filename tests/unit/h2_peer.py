"""Real HTTP/2 peers for tests/unit/test_h2.c (python3-h2, hyperframe, hpack).

    /usr/bin/python3 h2_peer.py SCENARIO FD

FD is this end of a socketpair whose other end is driven by an h2_session in the C test.
Each scenario plays a client (against the C server) or a server (against the C client),
checks what it can see from its side, prints "key=value" lines on stdout for the C side to
assert on, and exits 0; on a failed check it prints "error=..." and exits 1. Abusive
scenarios write raw frames (hyperframe + hpack): the h2 library refuses to misbehave.
"""
import hashlib
import os
import select
import socket
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame,
                              HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
OUT = {}


def out(k, v):
    OUT[k] = v


def fail(msg):
    for k, v in OUT.items():
        print('%s=%s' % (k, v))
    print('error=%s' % msg)
    sys.stdout.flush()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def pattern(n, start=0):
    """byte i of a /bytes/N body is i & 255"""
    base = bytes(range(256))
    off = start & 255
    rep = base[off:] + base[:off]
    return (rep * (n // 256 + 1))[:n]


# ---------------------------------------------------------------- h2 library client

class Client:
    def __init__(self, sock, **cfg):
        self.sock = sock
        c = h2.config.H2Configuration(client_side=True, header_encoding='utf-8', **cfg)
        self.conn = h2.connection.H2Connection(config=c)
        self.conn.initiate_connection()
        self.resp = {}
        self.pending = {}
        self.goaway = None
        self.goaway_last = None
        self.closed = False
        self.broken = False
        self.flush()

    def flush(self):
        """Sends what h2 has queued; a peer that hung up is noted, not raised: what it
        sent before (a GOAWAY) is still to be read."""
        d = self.conn.data_to_send()
        if d and not self.broken:
            try:
                self.sock.sendall(d)
            except (BrokenPipeError, ConnectionResetError):
                self.broken = True

    def request(self, method, path, body=None, headers=(), end=True, authority='test.local',
                pad=None, raw_headers=None):
        sid = self.conn.get_next_available_stream_id()
        if raw_headers is not None:
            hs = raw_headers
        else:
            hs = [(':method', method), (':scheme', 'http'), (':authority', authority),
                  (':path', path)] + list(headers)
        self.conn.send_headers(sid, hs, end_stream=(body is None and end))
        self.resp[sid] = {'status': None, 'headers': [], 'data': bytearray(), 'ended': False,
                          'reset': None, 'trailers': None}
        if body is not None:
            self.pending[sid] = [memoryview(body), end, pad]
        self.push()
        self.flush()
        return sid

    def push(self):
        for sid, p in list(self.pending.items()):
            mv, end, pad = p
            if self.resp[sid]['reset'] is not None:
                del self.pending[sid]
                continue
            while len(mv) > 0:
                over = (pad + 1) if pad else 0
                w = min(self.conn.local_flow_control_window(sid) - over,
                        self.conn.max_outbound_frame_size - over, len(mv))
                if w <= 0:
                    break
                if pad:
                    self.conn.send_data(sid, mv[:w].tobytes(), pad_length=pad)
                else:
                    self.conn.send_data(sid, mv[:w].tobytes())
                mv = mv[w:]
            p[0] = mv
            if len(mv) == 0:
                if end:
                    self.conn.end_stream(sid)
                del self.pending[sid]

    def on_event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            r = self.resp[ev.stream_id]
            r['headers'] = ev.headers
            r['status'] = int(dict(ev.headers)[':status'])
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            pass
        elif isinstance(ev, h2.events.DataReceived):
            if ev.stream_id in self.resp:
                self.resp[ev.stream_id]['data'] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.resp[ev.stream_id]['trailers'] = ev.headers
        elif isinstance(ev, h2.events.StreamEnded):
            self.resp[ev.stream_id]['ended'] = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.resp:
                self.resp[ev.stream_id]['reset'] = ev.error_code
            self.pending.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = int(ev.error_code)
            self.goaway_last = ev.last_stream_id

    def step(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 16)
        except ConnectionResetError:
            data = b''
        if not data:
            self.closed = True
            return True
        for ev in self.conn.receive_data(data):
            self.on_event(ev)
        self.push()
        self.flush()
        return True

    def run_until(self, cond, timeout=30.0):
        end = time.time() + timeout
        while not cond() and not self.closed:
            left = end - time.time()
            if left <= 0:
                return False
            self.step(left)
        return cond()

    def done(self, sid):
        r = self.resp[sid]
        return r['ended'] or r['reset'] is not None

    def hdr(self, sid, name):
        for k, v in self.resp[sid]['headers']:
            if k == name:
                return v
        return None


# ---------------------------------------------------------------- raw frames

class Raw:
    """Frame-level client for what the h2 library will not send."""

    def __init__(self, sock, settings=True, ack=True):
        self.sock = sock
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b''
        self.ack = ack
        self.goaway = None
        self.goaways = []
        self.rst = {}
        self.status = {}
        self.ended = set()
        self.got_settings = False
        self.settings_acked = False
        self.closed = False
        if settings:
            self.sock.sendall(PREFACE + SettingsFrame(0).serialize())

    def send(self, *frames):
        self.sock.sendall(b''.join(f.serialize() for f in frames))

    def headers_frame(self, sid, headers, end_stream=True, end_headers=True):
        f = HeadersFrame(sid)
        f.data = self.enc.encode(headers)
        if end_stream:
            f.flags.add('END_STREAM')
        if end_headers:
            f.flags.add('END_HEADERS')
        return f

    def handle(self, f):
        if isinstance(f, SettingsFrame):
            if 'ACK' in f.flags:
                self.settings_acked = True
            else:
                self.got_settings = True
                if self.ack:
                    s = SettingsFrame(0)
                    s.flags.add('ACK')
                    self.send(s)
        elif isinstance(f, GoAwayFrame):
            self.goaway = f.error_code
            self.goaways.append((f.last_stream_id, f.error_code))
        elif isinstance(f, RstStreamFrame):
            self.rst[f.stream_id] = f.error_code
        elif isinstance(f, HeadersFrame):
            hs = dict(self.dec.decode(f.data))
            st = hs.get(b':status') or hs.get(':status')
            if st is not None:
                self.status[f.stream_id] = int(st)
            if 'END_STREAM' in f.flags:
                self.ended.add(f.stream_id)
        elif isinstance(f, DataFrame):
            if 'END_STREAM' in f.flags:
                self.ended.add(f.stream_id)
            if f.flow_controlled_length:
                self.send(WindowUpdateFrame(0, window_increment=f.flow_controlled_length))

    def read(self, cond=lambda: False, timeout=10.0):
        end = time.time() + timeout
        while not cond():
            left = end - time.time()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return False
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionResetError:
                data = b''
            if not data:
                self.closed = True
                return cond()
            self.buf += data
            while len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                f.parse_body(memoryview(self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
                try:
                    self.handle(f)
                except (BrokenPipeError, ConnectionResetError):
                    pass
        return True


def req_headers(path, method='GET', extra=()):
    return [(':method', method), (':scheme', 'http'), (':authority', 'test.local'),
            (':path', path)] + list(extra)


# ---------------------------------------------------------------- client scenarios

def sc_concurrent(sock):
    c = Client(sock)
    want = {}
    for i in range(100):
        if i % 5 == 0:
            body = os.urandom(1000 * i + 1)
            sid = c.request('POST', '/echo', body=body)
            want[sid] = body
        else:
            n = i * 997
            sid = c.request('GET', '/bytes/%d' % n)
            want[sid] = pattern(n)
    ok = c.run_until(lambda: all(c.done(s) for s in want), 30)
    check(ok, 'not all 100 streams completed')
    for sid, body in want.items():
        r = c.resp[sid]
        check(r['status'] == 200, 'stream %d status %s' % (sid, r['status']))
        check(bytes(r['data']) == body, 'stream %d body mismatch (%d vs %d bytes)'
              % (sid, len(r['data']), len(body)))
    out('streams', len(want))


def sc_bigbody(sock):
    c = Client(sock)
    body = os.urandom(5 * 1024 * 1024)
    e = c.request('POST', '/echo', body=body, pad=16)
    g = c.request('GET', '/bytes/%d' % (5 * 1024 * 1024))
    ok = c.run_until(lambda: c.done(e) and c.done(g), 60)
    check(ok, 'big transfers did not complete')
    check(c.resp[e]['status'] == 200 and c.resp[g]['status'] == 200, 'status')
    check(hashlib.sha256(c.resp[e]['data']).digest() == hashlib.sha256(body).digest(),
          'echo of 5 MiB differs (%d bytes back)' % len(c.resp[e]['data']))
    check(bytes(c.resp[g]['data']) == pattern(5 * 1024 * 1024), '5 MiB download differs')
    out('echoed', len(c.resp[e]['data']))
    out('downloaded', len(c.resp[g]['data']))


def sc_reset(sock):
    c = Client(sock)
    sids = []
    bodies = {}
    for i in range(10):
        b1 = os.urandom(10000)
        sid = c.request('POST', '/echo', body=b1, end=False)
        sids.append(sid)
        bodies[sid] = b1
    c.run_until(lambda: not c.pending, 10)
    victim = sids[4]
    c.conn.reset_stream(victim, h2.errors.ErrorCodes.CANCEL)
    c.flush()
    for sid in sids:
        if sid == victim:
            continue
        b2 = os.urandom(10000)
        bodies[sid] += b2
        c.pending[sid] = [memoryview(b2), True, None]
    c.push()
    c.flush()
    ok = c.run_until(lambda: all(c.done(s) for s in sids if s != victim), 20)
    check(ok, 'other streams did not complete after a reset')
    for sid in sids:
        if sid == victim:
            continue
        check(c.resp[sid]['ended'] and bytes(c.resp[sid]['data']) == bodies[sid],
              'stream %d disturbed' % sid)
    check(c.goaway is None, 'GOAWAY after one reset')
    out('victim', victim)
    out('completed', len(sids) - 1)


def sc_rapid_reset(sock):
    c = Client(sock)
    sent = 0
    for i in range(5000):
        if c.goaway is not None or c.closed:
            break
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, req_headers('/hello'), end_stream=True)
        c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        sent += 1
        if i % 50 == 49:
            try:
                c.flush()
            except (BrokenPipeError, ConnectionResetError):
                break
            while c.step(0):
                if c.closed:
                    break
    try:
        c.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass
    c.run_until(lambda: c.goaway is not None, 10)
    out('sent', sent)
    out('goaway', c.goaway)
    check(c.goaway == 11, 'no GOAWAY(ENHANCE_YOUR_CALM) after %d resets: %s' % (sent, c.goaway))


def wait_eof(sock, what):
    """The peer must give up on us: EOF (possibly after some frames)."""
    end = time.time() + 20
    while time.time() < end:
        rd, _, _ = select.select([sock], [], [], 1)
        if rd:
            try:
                if not sock.recv(1 << 20):
                    break
            except ConnectionResetError:
                break
    else:
        fail('connection not closed by %s' % what)
    out('closed', 1)


def flood(sock, frame):
    r = Raw(sock, ack=False)
    chunk = frame.serialize() * 10000
    n = 0
    try:
        for _ in range(60):
            r.sock.sendall(chunk)
            n += 10000
    except (BrokenPipeError, ConnectionResetError):
        pass
    out('sent', n)
    wait_eof(sock, 'a %s flood' % type(frame).__name__)


def sc_no_read(sock):
    """Requests, never reading the answers."""
    r = Raw(sock, ack=False)
    n = 0
    try:
        for _ in range(40):
            frames = [r.headers_frame(2 * (n + i) + 1, req_headers('/hello'))
                      for i in range(500)]
            r.sock.sendall(b''.join(f.serialize() for f in frames))
            n += 500
    except (BrokenPipeError, ConnectionResetError):
        pass
    out('sent', n)
    wait_eof(sock, 'requests without reading')


def sc_settings_flood(sock):
    flood(sock, SettingsFrame(0))


def sc_ping_flood(sock):
    flood(sock, PingFrame(0, opaque_data=b'12345678'))


def sc_empty_data(sock):
    c = Client(sock)
    sid = c.request('POST', '/echo', body=b'', end=False)
    for _ in range(100):
        c.conn.send_data(sid, b'')
    try:
        c.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass
    c.run_until(lambda: c.goaway is not None, 10)
    out('goaway', c.goaway)
    check(c.goaway == 11, 'no GOAWAY(ENHANCE_YOUR_CALM) after 100 empty DATA frames')


def sc_empty_spread(sock):
    """10 empty frames per stream (under the per-stream bound), many streams."""
    c = Client(sock)
    total = 0
    for batch in range(60):
        if c.goaway is not None or c.closed:
            break
        sids = []
        for _ in range(50):
            sid = c.request('POST', '/echo', body=b'', end=False)
            for _ in range(10):
                c.conn.send_data(sid, b'')
                total += 1
            c.conn.send_data(sid, b'x', end_stream=True)
            sids.append(sid)
        try:
            c.flush()
        except (BrokenPipeError, ConnectionResetError):
            break
        c.run_until(lambda: c.goaway is not None or all(c.done(s) for s in sids), 10)
    c.run_until(lambda: c.goaway is not None, 5)
    out('empty', total)
    out('goaway', c.goaway)
    check(c.goaway == 11, 'no GOAWAY(ENHANCE_YOUR_CALM) after %d spread empty frames' % total)


def sc_continuation_flood(sock):
    r = Raw(sock)
    hs = req_headers('/hello') + [('x-h%d' % i, 'v%d' % i * 8) for i in range(400)]
    block = r.enc.encode(hs)
    pieces = 60
    step = len(block) // pieces + 1
    parts = [block[i:i + step] for i in range(0, len(block), step)]
    h = HeadersFrame(1)
    h.data = parts[0]
    h.flags.add('END_STREAM')
    frames = [h]
    for i, p in enumerate(parts[1:]):
        cf = ContinuationFrame(1)
        cf.data = p
        if i == len(parts) - 2:
            cf.flags.add('END_HEADERS')
        frames.append(cf)
    try:
        r.send(*frames)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r.read(lambda: r.goaway is not None and r.closed, 10)
    out('continuations', len(parts) - 1)
    out('goaway', r.goaway)
    check(r.goaway is not None, 'no GOAWAY after %d CONTINUATION frames' % (len(parts) - 1))
    check(1 not in r.status, 'the flooded request was answered')


def sc_too_many_preack(sock):
    """110 requests before the client has even read the server's SETTINGS."""
    r = Raw(sock)
    frames = [r.headers_frame(2 * i + 1, req_headers('/hold')) for i in range(110)]
    r.send(*frames)
    ids = [2 * i + 1 for i in range(110)]
    r.read(lambda: all(i in r.rst or i in r.ended for i in ids), 20)
    refused = sum(1 for i in ids if r.rst.get(i) == 7)
    answered = sum(1 for i in ids if r.status.get(i) == 200 and i in r.ended)
    out('refused', refused)
    out('answered', answered)
    out('goaway', r.goaway)
    check(refused == 10 and answered == 100, 'want 10 refused, 100 answered')


def sc_too_many_postack(sock):
    """101 requests after both SETTINGS were acknowledged."""
    r = Raw(sock)
    r.read(lambda: r.got_settings and r.settings_acked, 10)
    check(r.got_settings and r.settings_acked, 'settings exchange')
    # a PING round trip guarantees the server has processed our SETTINGS ACK
    r.send(PingFrame(0, opaque_data=b'syncsync'))
    time.sleep(0.2)
    frames = [r.headers_frame(2 * i + 1, req_headers('/hold')) for i in range(101)]
    try:
        r.send(*frames)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r.read(lambda: r.goaway is not None or 201 in r.rst, 10)
    out('refused', sum(1 for c in r.rst.values() if c == 7))
    out('goaway', r.goaway)
    check(r.goaway is not None or r.rst.get(201) == 7, 'the 101st stream was accepted')


def sc_big_headers(sock):
    c = Client(sock)
    big = [('x-big-%d' % i, 'v' * 1000) for i in range(70)]
    s1 = c.request('GET', '/hello', headers=big)
    bomb = [('x-bomb', 'a' * 4000)] * 200   # indexed once, then 1-byte references
    s2 = c.request('GET', '/hello', headers=bomb)
    s3 = c.request('GET', '/hello', headers=[('x-small', 'ok')])
    # a body still coming when the 431 goes out: RST_STREAM(NO_ERROR) stops it
    s4 = c.request('POST', '/echo', headers=big, body=b'b' * 4000000)
    c.run_until(lambda: c.done(s1) and c.done(s2) and c.done(s3) and
                c.resp[s4]['reset'] is not None, 10)
    out('big_body_left', len(c.pending[s4][0]) if s4 in c.pending else 0)
    out('big_body', c.resp[s4]['status'])
    out('big_body_rst', c.resp[s4]['reset'])
    out('big', c.resp[s1]['status'])
    out('bomb', c.resp[s2]['status'])
    out('after', c.resp[s3]['status'])
    check(c.resp[s1]['status'] == 431, 'oversized header list not 431')
    check(c.resp[s2]['status'] == 431, 'HPACK bomb not 431')
    check(c.resp[s3]['status'] == 200, 'session broken after 431')


def sc_bad_headers(sock):
    """Each request on its own stream; code: RST code, or 0 for a 200."""
    c = Client(sock, validate_outbound_headers=False, normalize_outbound_headers=False)
    cases = [
        ('upper', [('X-Upper', 'v')]),
        ('lead_ws', [('x-ws', ' v')]),
        ('connection', [('connection', 'keep-alive')]),
        ('keep_alive', [('keep-alive', 'timeout=5')]),
        ('proxy_connection', [('proxy-connection', 'keep-alive')]),
        ('transfer_encoding', [('transfer-encoding', 'chunked')]),
        ('upgrade', [('upgrade', 'websocket')]),
        ('te_gzip', [('te', 'gzip')]),
        ('te_trailers', [('te', 'trailers')]),
        ('host_mismatch', [('host', 'other.example')]),
        ('host_same_case', [('host', 'TEST.local')]),
        ('plain', [('x-fine', 'yes')]),
    ]
    sids = {}
    for name, extra in cases:
        sids[name] = c.request('GET', '/hello', headers=extra)
    # :authority absent, Host only (RFC 9113 8.3.1 allows it)
    sids['host_only'] = c.request('GET', '/hello', raw_headers=[
        (':method', 'GET'), (':scheme', 'http'), (':path', '/hello'), ('host', 'h.example')])
    # pseudo-field rules (nghttp2): a request without :path, a pseudo-field after a field
    sids['no_path'] = c.request('GET', '/hello', raw_headers=[
        (':method', 'GET'), (':scheme', 'http'), (':authority', 'a.example')])
    sids['pseudo_after'] = c.request('GET', '/hello', raw_headers=[
        (':method', 'GET'), (':scheme', 'http'), ('x-a', '1'), (':path', '/'),
        (':authority', 'a.example')])
    c.run_until(lambda: all(c.done(s) for s in sids.values()), 10)
    for name, sid in sids.items():
        r = c.resp[sid]
        out(name, r['reset'] if r['reset'] is not None else (0 if r['status'] == 200 else -1))
    out('host_only_authority', c.hdr(sids['host_only'], 'x-authority'))
    check(c.goaway is None, 'GOAWAY for stream errors')


def sc_content_length(sock):
    c = Client(sock, validate_outbound_headers=False, normalize_outbound_headers=False)
    s_short = c.request('POST', '/echo', body=b'12345', headers=[('content-length', '10')])
    s_long = c.request('POST', '/echo', body=b'0123456789', headers=[('content-length', '3')])
    s_ok = c.request('POST', '/echo', body=b'abcd', headers=[('content-length', '4')])
    c.run_until(lambda: c.done(s_short) and c.done(s_long) and c.done(s_ok), 10)
    out('short', c.resp[s_short]['reset'])
    out('long', c.resp[s_long]['reset'])
    out('ok', c.resp[s_ok]['status'])
    check(bytes(c.resp[s_ok]['data']) == b'abcd', 'matching content-length echo')


def sc_trailers(sock):
    c = Client(sock)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, req_headers('/trailers', 'POST', [('te', 'trailers')]))
    c.resp[sid] = {'status': None, 'headers': [], 'data': bytearray(), 'ended': False,
                   'reset': None, 'trailers': None}
    c.conn.send_data(sid, b'payload')
    c.conn.send_headers(sid, [('x-req-trailer', 'yes')], end_stream=True)
    c.flush()
    c.run_until(lambda: c.done(sid), 10)
    r = c.resp[sid]
    check(r['status'] == 200 and bytes(r['data']) == b'payload', 'trailers echo body')
    t = dict(r['trailers'] or [])
    out('resp_trailer', t.get('x-checksum'))
    out('upper_trailer', t.get('x-upper-trailer'))
    check(t.get('x-checksum') == '42', 'response trailers missing: %s' % r['trailers'])


def sc_drain(sock):
    """Raw frames: the h2 library treats any GOAWAY as the end and would refuse the
    response that a graceful shutdown still delivers."""
    r = Raw(sock)
    r.send(r.headers_frame(1, req_headers('/drain')))
    r.read(lambda: 1 in r.ended and r.closed, 15)
    out('goaways', ','.join('%d:%d' % g for g in r.goaways))
    out('status', r.status.get(1))
    out('closed', int(r.closed))
    check(len(r.goaways) == 2 and r.goaways[0] == (2**31 - 1, 0) and r.goaways[1] == (1, 0),
          'want GOAWAY(2^31-1) then GOAWAY(1), both NO_ERROR')
    check(r.status.get(1) == 200 and 1 in r.ended, 'in-flight stream not finished')


# ---------------------------------------------------------------- server scenario

def sc_server(sock):
    """An h2 server for the C client: /bytes/N, /echo, /trailers, /reset, /bighead,
    /goaway (GOAWAY with this stream as the last, then answers it), /hold (never)."""
    cfg = h2.config.H2Configuration(client_side=False, header_encoding='utf-8')
    conn = h2.connection.H2Connection(config=cfg)
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100})
    sock.sendall(conn.data_to_send())
    bodies = {}
    paths = {}
    sending = {}   # sid -> [memoryview, trailers]
    served = 0

    def respond(sid, status, body, headers=(), trailers=None):
        conn.send_headers(sid, [(':status', str(status))] + list(headers))
        sending[sid] = [memoryview(body), trailers]

    def pump():
        for sid, p in list(sending.items()):
            mv, tr = p
            try:
                while len(mv) > 0:
                    w = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size,
                            len(mv))
                    if w <= 0:
                        break
                    conn.send_data(sid, mv[:w].tobytes())
                    mv = mv[w:]
                p[0] = mv
                if len(mv) == 0:
                    if tr:
                        conn.send_headers(sid, tr, end_stream=True)
                    else:
                        conn.end_stream(sid)
                    del sending[sid]
            except h2.exceptions.StreamClosedError:
                del sending[sid]

    while True:
        r, _, _ = select.select([sock], [], [], 30)
        if not r:
            fail('server: client went silent')
        try:
            data = sock.recv(1 << 16)
        except ConnectionResetError:
            break
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                h = dict(ev.headers)
                paths[ev.stream_id] = h[':path']
                bodies[ev.stream_id] = bytearray()
                p = h[':path']
                if p == '/reset':
                    conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.CANCEL)
                elif p == '/bighead':
                    respond(ev.stream_id, 200, b'x',
                            [('x-big-%d' % i, 'v' * 1000) for i in range(70)])
                elif p == '/goaway':
                    # raw GOAWAY: the h2 state machine would refuse later frames
                    sock.sendall(conn.data_to_send() + GoAwayFrame(
                        0, last_stream_id=ev.stream_id, error_code=0).serialize())
                    respond(ev.stream_id, 200, b'last one')
                elif p.startswith('/bytes/'):
                    n = int(p[7:])
                    respond(ev.stream_id, 200, pattern(n), [('content-length', str(n))])
                elif p == '/continue':
                    conn.send_headers(ev.stream_id, [(':status', '100')])
                    respond(ev.stream_id, 200, b'done')
                elif p.startswith('/info'):
                    respond(ev.stream_id, 200, b'', [
                        ('x-method', h[':method']), ('x-authority', h.get(':authority', '')),
                        ('x-cookie', ';'.join(v for k, v in ev.headers if k == 'cookie')),
                        ('x-names', ','.join(k for k, v in ev.headers if not k.startswith(':')))])
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                p = paths.get(ev.stream_id, '')
                if p == '/echo':
                    respond(ev.stream_id, 200, bytes(bodies[ev.stream_id]))
                elif p == '/trailers':
                    respond(ev.stream_id, 200, bytes(bodies[ev.stream_id]),
                            trailers=[('x-checksum', '42')])
                served += 1
            elif isinstance(ev, h2.events.ConnectionTerminated):
                out('client_goaway', int(ev.error_code))
        pump()
        try:
            d = conn.data_to_send()
            if d:
                sock.sendall(d)
        except (BrokenPipeError, ConnectionResetError):
            break
    out('served', served)


SCENARIOS = {k[3:]: v for k, v in globals().items() if k.startswith('sc_')}


def main():
    name, fd = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    try:
        SCENARIOS[name](sock)
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
    for k, v in OUT.items():
        print('%s=%s' % (k, v))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
