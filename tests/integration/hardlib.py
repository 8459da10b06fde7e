"""Helpers shared by the hardening tests (issue 6): Istio YAML for a plain-HTTP gateway
front, a small private CA driven by `openssl ca` (so certificates can have any validity
window and be revoked), recording servers that keep every byte they receive, and raw
client connections.

Every server binds a loopback address of its own, as gwlib does."""
import re
import socket
import ssl
import subprocess
import threading
import time

from gwlib import Gateway, loopback_ip, scaled, wait_port
from test_gateway import LOG_RE

# ---------------------------------------------------------------- configuration

GATEWAY_NAME = "istio-egressgateway"


def plain_gateway_yaml(port=80, name=GATEWAY_NAME):
    """A Gateway server speaking plain HTTP on port for every host."""
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: {name}
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: {port}
      name: http-{port}
      protocol: HTTP
    hosts:
    - "*"
"""


def service_entry_yaml(host, port, protocol):
    """A ServiceEntry resolved by DNS (the gateway's --hosts-file answers it)."""
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se-{host.replace('.', '-')}
spec:
  hosts:
  - {host}
  ports:
  - number: {port}
    name: {protocol.lower()}-{port}
    protocol: {protocol}
  resolution: DNS
"""


def virtual_service_yaml(front, dest, dest_port, gw_port=80):
    """Requests for front on the gateway's port gw_port go to dest:dest_port."""
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs-{front.replace('.', '-')}
spec:
  hosts:
  - {front}
  gateways:
  - {GATEWAY_NAME}
  http:
  - match:
    - gateways:
      - {GATEWAY_NAME}
      port: {gw_port}
    route:
    - destination:
        host: {dest}
        port:
          number: {dest_port}
"""


def destination_rule_yaml(host, tls_lines):
    """A DestinationRule for host whose trafficPolicy.tls is tls_lines (a dict)."""
    body = "".join(f"      {k}: {v}\n" for k, v in tls_lines.items())
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr-{host.replace('.', '-')}
spec:
  host: {host}
  trafficPolicy:
    tls:
{body}"""


def write_hosts(path, entries):
    path.write_text("".join(f"{ip} {name}\n" for name, ip in entries.items()))


def start_gateway(tmp, store, hosts, ca_file="/dev/null", ip=None, port=80, extra=(),
                  workers=1, nofile=None):
    """A gateway (no mesh identity: the front is plain HTTP) that is listening. ca_file
    is its system trust store (SSL_CERT_FILE)."""
    ident = tmp / "no-identity"
    ident.mkdir(exist_ok=True)
    ip = ip or loopback_ip()
    g = Gateway(tmp, store, ident, ip, hosts, ca_file, extra=extra, workers=workers,
                nofile=nofile)
    wait_port(ip, port, proc=g.proc)
    return g


def stats(gw):
    """Every egressgw_* sample of /stats/prometheus: {"name" or "name{labels}": value}."""
    code, body = gw.admin("/stats/prometheus")
    assert code == 200, body
    out = {}
    for m in re.finditer(r"^(egressgw_[^\s]+) (\d+)$", body, re.M):
        out[m[1]] = int(m[2])
    return out


def tls_failures(gw, reason):
    return stats(gw)[f'egressgw_upstream_tls_failure_total{{reason="{reason}"}}']


def log_entry(gw, needle, timeout=5.0):
    """The parsed access log line (LOG_RE) that contains needle (e.g. a request id)."""
    deadline = time.time() + scaled(timeout)
    while time.time() < deadline:
        for line in gw.log_lines():
            if needle in line:
                m = LOG_RE.match(line)
                assert m, line
                return m
        time.sleep(0.05)
    raise AssertionError(f"no access log line with {needle!r}: {gw.log_lines()[-5:]}")


# ---------------------------------------------------------------- certificates

CA_CNF = """[ ca ]
default_ca = local
[ local ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
crlnumber = {dir}/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 30
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
organizationName = optional
"""


def sh(cmd, cwd):
    p = subprocess.run(cmd, shell=True, cwd=str(cwd), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{cmd}: {p.stderr}"
    return p.stdout


class MiniCA:
    """A CA made with `openssl req -x509` (root) or signed by a parent (intermediate),
    issuing with `openssl ca`, which, unlike `openssl x509 -req`, can set any start and
    end date (OpenSSL 3.0's x509 has no -not_before) and keeps the database that -revoke
    and -gencrl need."""

    def __init__(self, d, name, parent=None):
        self.dir = d / f"ca-{name}"
        (self.dir / "newcerts").mkdir(parents=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        (self.dir / "crlnumber").write_text("1000\n")
        (self.dir / "ca.cnf").write_text(CA_CNF.format(dir=self.dir))
        self.name = name
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.crt"
        ext = self.dir / "ca.ext"
        ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n")
        if parent is None:
            sh(f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
               f"-days 30 -subj '/O=hardening/CN={name}' -keyout {self.key} -out {self.cert} "
               f"-addext basicConstraints=critical,CA:TRUE "
               f"-addext keyUsage=critical,keyCertSign,cRLSign", self.dir)
        else:
            sh(f"openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
               f"-subj '/O=hardening/CN={name}' -keyout {self.key} -out ca.csr", self.dir)
            parent._ca(f"-in {self.dir}/ca.csr -out {self.cert} -extfile {ext}")

    def _ca(self, args):
        sh(f"openssl ca -config {self.dir}/ca.cnf -batch -notext -cert {self.cert} "
           f"-keyfile {self.key} {args}", self.dir)

    def issue(self, name, cn=None, sans=None, eku="serverAuth", start=None, end=None,
              rsa=False):
        """A leaf for cn (default name) with DNS SANs (default [cn]; [] for none).
        start/end: 'YYYYMMDDHHMMSSZ'. Returns (cert, key) paths."""
        cn = cn or name
        sans = [cn] if sans is None else sans
        d = self.dir
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={eku}", "authorityKeyIdentifier=keyid"]
        if sans:
            lines.append("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans))
        (d / f"{name}.ext").write_text("\n".join(lines) + "\n")
        newkey = "rsa:2048" if rsa else "ec -pkeyopt ec_paramgen_curve:prime256v1"
        sh(f"openssl req -newkey {newkey} -nodes -subj '/CN={cn}' -keyout {name}.key "
           f"-out {name}.csr", d)
        dates = ""
        if start:
            dates += f" -startdate {start}"
        if end:
            dates += f" -enddate {end}"
        self._ca(f"-in {name}.csr -out {name}.crt -extfile {name}.ext{dates}")
        return d / f"{name}.crt", d / f"{name}.key"

    def revoke(self, cert):
        self._ca(f"-revoke {cert}")

    def crl(self):
        out = self.dir / "crl.pem"
        self._ca(f"-gencrl -out {out}")
        return out


# ---------------------------------------------------------------- servers

class SServer:
    """`openssl s_server -www` on ip:port (it answers any request with an HTML status
    page), with its output kept in a file."""

    def __init__(self, d, ip, cert, key, args=(), port=443):
        self.log = d / f"s_server-{ip}.log"
        cmd = ["openssl", "s_server", "-www", "-accept", f"{ip}:{port}", "-cert", str(cert),
               "-key", str(key), *args]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.ip, self.port = ip, port
        wait_port(ip, port, proc=self.proc)

    def output(self):
        return self.log.read_text(errors="replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ConnRecord:
    """What one accepted connection delivered: every byte, the requests parsed from it,
    and whether the peer closed it."""

    def __init__(self, n):
        self.n = n
        self.raw = bytearray()
        self.requests = []
        self.closed_by_peer = False
        self.sni = None


class Request:
    def __init__(self, method, target, version, headers, body, conn):
        self.method, self.target, self.version = method, target, version
        self.headers, self.body, self.conn = headers, body, conn

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name]
        return vals[0] if vals else None


class _Reader:
    """Buffered reads from a socket that record every byte received."""

    def __init__(self, sock, rec):
        self.s, self.rec, self.buf = sock, rec, b""

    def _more(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.rec.raw += d
        self.buf += d

    def line(self, limit=1 << 20):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._more()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _read_request(r, rec):
    """A strict-enough HTTP/1.1 request reader (what a backend would do); raises on
    anything it does not understand."""
    line = r.line()
    while line == b"\r\n":
        line = r.line()
    parts = line.rstrip(b"\r\n").decode("latin-1").split(" ")
    if len(parts) != 3:
        raise ValueError(f"bad request line {line!r}")
    headers = []
    while True:
        h = r.line()
        if h == b"\r\n":
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k, v.strip()))
    req = Request(parts[0], parts[1], parts[2], headers, b"", rec.n)
    te = req.header("transfer-encoding")
    if te is not None:
        body = b""
        while True:
            size = int(r.line().split(b";")[0], 16)
            if size == 0:
                while r.line() != b"\r\n":
                    pass
                break
            body += r.read(size)
            if r.read(2) != b"\r\n":
                raise ValueError("chunk without CRLF")
        req.body = body
    elif req.header("content-length") is not None:
        req.body = r.read(int(req.header("content-length")))
    return req


def respond(sock, code, body=b"", headers=(), reason="OK"):
    head = f"HTTP/1.1 {code} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)


def default_handler(sock, req):
    """Answers with what was seen: connection number, request number, method, target."""
    respond(sock, 200, f"conn={req.conn} {req.method} {req.target} body={len(req.body)}\n".encode())
    return True


class RecordingServer:
    """A threaded HTTP/1.1 server (plain, or TLS with ctx) that records every connection.
    handler(sock, req) answers one request; it returns False to stop reading that
    connection (the server then waits for the peer to close it, and records that)."""

    def __init__(self, ip, port, handler=default_handler, ctx=None, raw=False):
        self.ip, self.port, self.ctx, self.handler, self.raw = ip, port, ctx, handler, raw
        self.lock = threading.Lock()
        self.conns = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((ip, port))
        self.ls.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                rec = ConnRecord(len(self.conns) + 1)
                self.conns.append(rec)
            threading.Thread(target=self._serve, args=(c, rec), daemon=True).start()

    def _serve(self, c, rec):
        s = c
        try:
            c.settimeout(30)
            if self.ctx is not None:
                s = self.ctx.wrap_socket(c, server_side=True)
                rec.sni = getattr(s, "sni_seen", None)
            r = _Reader(s, rec)
            if self.raw:
                # Raw mode: keep every byte, answer nothing (see PlaintextOnTlsPort).
                self.handler(s, r)
                return
            while True:
                try:
                    req = _read_request(r, rec)
                except EOFError:
                    rec.closed_by_peer = True
                    return
                with self.lock:
                    rec.requests.append(req)
                if self.handler(s, req) is False:
                    # Wait for the peer to close (that is what the test looks at).
                    try:
                        while True:
                            r._more()
                    except EOFError:
                        rec.closed_by_peer = True
                    return
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def snapshot(self):
        with self.lock:
            return list(self.conns)

    def total_bytes(self):
        with self.lock:
            return sum(len(c.raw) for c in self.conns)

    def requests(self):
        with self.lock:
            return [r for c in self.conns for r in c.requests]

    def stop(self):
        self.ls.close()


# ---------------------------------------------------------------- client side

class RawClient:
    """A plain TCP connection to the gateway that sends bytes as given."""

    def __init__(self, ip, port=80, timeout=10):
        self.s = socket.create_connection((ip, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _more(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def response(self, method="GET"):
        """(status, headers dict, body) of the next response (Content-Length, chunked or
        close-delimited)."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), v.strip())
        if method == "HEAD" or status in (204, 304) or status < 200:
            return status, headers, b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._more()
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._more()
                line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._more()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        else:
            try:
                while True:
                    self._more()
            except EOFError:
                pass
            body, self.buf = self.buf, b""
        return status, headers, body

    def at_eof(self, timeout=3.0):
        """True when the gateway has closed the connection (nothing more arrives)."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def plain_env(tmp, egressctl_bin, host, also=(), handler=default_handler):
    """A pytest fixture's body (use with yield from): a RecordingServer on a loopback address
    of its own as host (and as the names in also), and a store routing host's port 80 to it
    through the plain-HTTP Gateway. Yields e with tmp, up, hosts, store, ctl, gw (None: the
    test starts it) and clients (closed at the end); stops gw (asserting exit 0) and up."""
    from conftest import Ctl

    e = type("Env", (), {})()
    e.tmp = tmp
    e.up = RecordingServer(loopback_ip(), 80, handler=handler)
    e.hosts = tmp / "hosts"
    write_hosts(e.hosts, {h: e.up.ip for h in (host, *also)})
    e.store = tmp / "store"
    e.ctl = Ctl(egressctl_bin, e.store, tmp)
    e.ctl.ok("apply", "-f", "-", input="---\n".join([
        plain_gateway_yaml(), service_entry_yaml(host, 80, "HTTP"),
        virtual_service_yaml(host, host, 80)]))
    e.gw = None
    e.clients = []
    yield e
    for c in e.clients:
        c.close()
    try:
        if e.gw:
            rc = e.gw.stop()
            assert rc == 0, e.gw.stderr()[-3000:]
    finally:
        e.up.stop()
