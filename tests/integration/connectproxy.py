"""A small HTTP CONNECT proxy (the "external HTTPS proxy" of Istio's task, as squid plays
it there): answers CONNECT host:port with 200 and relays bytes both ways. Names are
looked up in its own table (no DNS). Records each CONNECT target, as squid's access log
does ("TCP_TUNNEL/200 ... CONNECT en.wikipedia.org:443"). With ns, it listens and
connects inside that network namespace."""
import socket
import threading

from sidecarlib import in_netns


class ConnectProxy:
    def __init__(self, ip, port, names, ns=None):
        self.names, self.log, self.lock, self.ns = dict(names), [], threading.Lock(), ns

        def make():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
            s.listen(16)
            return s
        self.sock = in_netns(ns, make)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, peer), daemon=True).start()

    def _serve(self, c, peer):
        head = b""
        while b"\r\n\r\n" not in head:
            b = c.recv(4096)
            if not b:
                c.close()
                return
            head += b
        line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = line.split(" ", 2)
        host, port = target.rsplit(":", 1)
        with self.lock:
            self.log.append((peer[0], method, target))
        if method != "CONNECT" or host not in self.names:
            c.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            c.close()
            return
        up = in_netns(self.ns, socket.create_connection, (self.names[host], int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        rest = head.split(b"\r\n\r\n", 1)[1]
        if rest:
            up.sendall(rest)
        threading.Thread(target=self._pipe, args=(up, c), daemon=True).start()
        self._pipe(c, up)

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (b,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def targets(self):
        with self.lock:
            return [t for _, _, t in self.log]

    def stop(self):
        self.sock.close()
