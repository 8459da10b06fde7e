"""A scripted HTTP/1.1 upstream for retry tests: each request takes the next action of
its path's script (then "ok" once the script is used up, or the server's default) and
every attempt is recorded as received (method, path, headers, body), so a test counts
the attempts a proxy made and checks what each carried.

Actions: "ok" (200, body "<name> <n>\n" with n the attempt number of that path), a
status code ("503", "409", ...), "reset" (close the connection without a response, after
reading the request), "slow:<seconds>" (answer 200 after that long), "grpc:<status>"
(200 with grpc-status in the head)."""
import http.server
import random
import socketserver
import threading
import time


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _any(self):
        srv = self.server
        n = int(self.headers.get("content-length") or 0)
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
            body = bytes(body)
        else:
            body = self.rfile.read(n) if n else b""
        with srv.lock:
            script = srv.scripts.get(self.path.split("?")[0])
            action = script.pop(0) if script else srv.default()
            srv.requests.append({"method": self.command, "path": self.path, "body": body,
                                 "headers": {k.lower(): v for k, v in self.headers.items()},
                                 "action": action})
            nth = sum(1 for r in srv.requests if r["path"] == self.path)
        if action == "reset":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        code, extra = 200, []
        if action.startswith("slow:"):
            time.sleep(float(action[5:]))
        elif action.startswith("grpc:"):
            extra = [("grpc-status", action[5:]), ("content-type", "application/grpc")]
        elif action != "ok":
            code = int(action)
        out = f"{srv.name} {nth}\n".encode()
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


class Flaky(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves on (ip, port) until stop(). scripts: {path: [action, ...]}; fail_ratio: the
    share of requests to unscripted paths answered 503 (the storm test's upstream)."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, ip, port, name, fail_ratio=0.0, seed=1):
        super().__init__((ip, port), _Handler)
        self.name, self.requests, self.lock = name, [], threading.Lock()
        self.scripts = {}
        self.fail_ratio = fail_ratio
        self.rng = random.Random(seed)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def default(self):
        return "503" if self.fail_ratio and self.rng.random() < self.fail_ratio else "ok"

    def script(self, path, actions):
        with self.lock:
            self.scripts[path] = list(actions)

    def attempts(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"].split("?")[0] == path]

    def count(self):
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.shutdown()
        self.server_close()
