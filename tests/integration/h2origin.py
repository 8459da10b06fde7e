"""A scripted HTTP/2 origin (python3-h2 over TLS with ALPN h2) for tests of the proxies'
HTTP/2 upstream side: each path answers with exactly the frames its script says (fields in
any order and form HTTP/2 allows, interim heads, DATA split as asked, a reset mid-body,
trailers with or without content-length), and every request is recorded as received
(pseudo-fields and fields in order, body, trailers) so a test can check what a proxy sent.
One thread per connection; a stream's script runs once its request has ended."""
import socket
import ssl
import threading
import time

import h2.config
import h2.connection
import h2.events


class Request:
    def __init__(self, sid, headers):
        self.sid = sid
        self.headers = headers          # [(name, value)] as bytes, in order
        self.body = bytearray()
        self.trailers = None

    def get(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None


class _Conn:
    def __init__(self, origin, sock):
        self.origin = origin
        self.sock = sock
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding=None,
                                             validate_outbound_headers=False,
                                             normalize_outbound_headers=False))
        self.reqs = {}
        self.ready = []

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.reqs[ev.stream_id] = Request(ev.stream_id, list(ev.headers))
            elif isinstance(ev, h2.events.DataReceived):
                self.reqs[ev.stream_id].body += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                self.reqs[ev.stream_id].trailers = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ready.append(self.reqs[ev.stream_id])
            elif isinstance(ev, h2.events.StreamReset):
                self.origin.resets.append(ev.stream_id)
        self.flush()

    # ---- what scripts call ----
    def head(self, sid, status, fields=(), end=False):
        hdrs = [(b":status", str(status).encode())] + \
            [(k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
             for k, v in fields]
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self.flush()

    def data(self, sid, payload, frames=(16384,), end=False, pause=0.0):
        """payload in DATA frames of the sizes given (cycled), each flushed on its own."""
        i = 0
        view = memoryview(payload)
        while len(view):
            want = min(frames[i % len(frames)], len(view), self.conn.max_outbound_frame_size)
            while self.conn.local_flow_control_window(sid) < want:
                self.pump()
            self.conn.send_data(sid, view[:want].tobytes())
            self.flush()
            view = view[want:]
            i += 1
            if pause:
                time.sleep(pause)
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def trailers(self, sid, fields):
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in fields],
                               end_stream=True)
        self.flush()

    def reset(self, sid, code=2):
        self.conn.reset_stream(sid, error_code=code)
        self.flush()

    def run(self):
        self.conn.initiate_connection()
        self.flush()
        try:
            while True:
                while self.ready:
                    req = self.ready.pop(0)
                    self.origin.requests.append(req)
                    path = req.get(b":path").decode()
                    script = self.origin.scripts.get(path.split("?")[0])
                    if script is None:
                        self.head(req.sid, 404, [("content-length", "0")], end=True)
                    else:
                        script(self, req)
                self.pump()
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            self.sock.close()


class H2Origin:
    def __init__(self, ip, cert, key, scripts):
        self.scripts = scripts          # path -> fn(conn, request)
        self.requests = []
        self.resets = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.ctx.set_alpn_protocols(["h2"])
        self.lsock = socket.create_server((ip, 443), backlog=128)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        _Conn(self, s).run()

    def stop(self):
        self.lsock.close()
