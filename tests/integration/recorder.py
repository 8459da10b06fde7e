"""A small HTTP/1.1 upstream that records what it received (method, path, headers) and
answers with its own name, so a test can tell which endpoint a request reached and what
the proxy sent it (`fields`: every field in order, repeated names kept). resp_headers:
fields every response also carries. Optionally TLS (then it also records the SNI the client sent)."""
import http.server
import socketserver
import ssl
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _any(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        srv = self.server
        with srv.lock:
            srv.requests.append({"method": self.command, "path": self.path,
                                 "headers": {k.lower(): v for k, v in self.headers.items()},
                                 "fields": [(k.lower(), v) for k, v in self.headers.items()],
                                 "sni": getattr(self.connection, "sni", None)})
        body = f"{srv.name}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        for k, v in srv.resp_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _any


class Recorder(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves on (ip, port) in a thread until stop(). name is what every response says;
    requests is the list of what arrived, in order."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ip, port, name, cert=None, key=None, resp_headers=()):
        super().__init__((ip, port), _Handler)
        self.name, self.requests, self.lock = name, [], threading.Lock()
        self.resp_headers = list(resp_headers)
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert), str(key))

            def on_sni(sock, sni, _ctx):
                sock.sni = sni
            ctx.sni_callback = on_sni
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def last(self):
        with self.lock:
            return self.requests[-1]

    def stop(self):
        self.shutdown()
        self.server_close()
