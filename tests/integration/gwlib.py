"""Helpers for tests that run egressgw against real peers: nginx playing the external
service, Python's ssl playing a mesh client with a workload certificate.

Every server binds a loopback address of its own (127.x.y.z chosen at random per test),
so tests can use the walkthrough's real port numbers (80, 443) without clashing.
"""
import os
import pathlib
import random
import re
import resource
import socket
import ssl
import subprocess
import time

BUILD = pathlib.Path(os.environ.get("EGRESSGW_BUILD", "/work/main/build"))

# EGRESSGW_VALGRIND=1 runs every egressgw the fixtures start under valgrind's memcheck
# (scripts/valgrind-suite.sh): each process writes its report next to its stderr log, and
# stopping the process fails the test if the report shows an error or a leak (definite or
# indirect). Startup and shutdown waits are multiplied by EGRESSGW_TIMEOUT_SCALE (default
# 10 under valgrind, which runs the code 20-50 times slower, else 1).
VALGRIND = os.environ.get("EGRESSGW_VALGRIND", "") not in ("", "0")
TIMEOUT_SCALE = float(os.environ.get("EGRESSGW_TIMEOUT_SCALE", "10" if VALGRIND else "1"))
VALGRIND_ERROR_EXIT = 99


def scaled(seconds):
    """A wait for egressgw to start or stop, scaled for valgrind."""
    return seconds * TIMEOUT_SCALE


def valgrind_prefix(log_path):
    """The command-line prefix that runs a process under memcheck, or [] without
    EGRESSGW_VALGRIND. log_path receives the report (%p: the process id)."""
    if not VALGRIND:
        return []
    return ["valgrind", f"--error-exitcode={VALGRIND_ERROR_EXIT}", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect", "--show-leak-kinds=definite,indirect",
            "--track-fds=no", "--num-callers=30", "--child-silent-after-fork=yes",
            f"--log-file={log_path}"]


# EGRESSGW_ROOTFS=DIR runs the gateways the fixtures start from a container image's file
# system exported to DIR (deploy/container/smoke.sh): its own egressgw, libraries and CA
# bundle, nothing of the host's, with the tests' /tmp, /dev and /proc mounted into it in
# a mount namespace of its own. Where an OCI runtime works, `podman run` does the same.
ROOTFS = os.environ.get("EGRESSGW_ROOTFS", "")


def rootfs_prefix():
    """The command-line prefix that runs /usr/bin/egressgw inside EGRESSGW_ROOTFS, or []
    (then the build's binary runs)."""
    if not ROOTFS:
        return [str(BUILD / "egressgw")]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            # /dev and /proc as a container runtime provides them (/dev/null for the
            # spare descriptors, /proc for the process's own files).
            'mkdir -p "$0/dev" "$0/proc" && mount --rbind /dev "$0/dev" && '
            'mount -t proc proc "$0/proc" && mount --bind /tmp "$0/tmp" && '
            'exec chroot "$0" /usr/bin/egressgw "$@"', ROOTFS]


def valgrind_logs(log_path):
    """The reports a valgrind_prefix(log_path) run wrote."""
    p = pathlib.Path(log_path)
    return sorted(p.parent.glob(p.name.replace("%p", "*")))


def assert_valgrind_clean(log_path, returncode=None):
    """Fails when a valgrind report shows errors or definitely/indirectly lost memory.
    Nothing to check without EGRESSGW_VALGRIND."""
    if not VALGRIND:
        return
    logs = valgrind_logs(log_path)
    assert logs, f"no valgrind report at {log_path}"
    for log in logs:
        text = log.read_text(errors="replace")
        m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        assert m, f"{log}: valgrind did not finish (no ERROR SUMMARY):\n{text[-3000:]}"
        leaks_ok = ("All heap blocks were freed" in text or
                    (re.search(r"definitely lost: 0 bytes", text) and
                     re.search(r"indirectly lost: 0 bytes", text)))
        assert m.group(1) == "0" and leaks_ok, f"valgrind report {log}:\n{text[-6000:]}"
    assert returncode != VALGRIND_ERROR_EXIT, f"valgrind exit status {returncode}"


def nofile_preexec(n):
    """A preexec_fn that sets RLIMIT_NOFILE in the child: soft and hard to n (as a shell's
    `ulimit -n n` does), or to (soft, hard) when n is a pair."""
    if n is None:
        return None
    soft, hard = n if isinstance(n, tuple) else (n, n)

    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return set_limit


def loopback_ip():
    return "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255), random.randint(2, 254))


def free_port(ip="127.0.0.1"):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(cond, timeout=5.0, what="condition"):
    """Polls cond() until it returns something true, and returns that; fails the test
    after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_port(ip, port, timeout=10.0, proc=None):
    timeout = scaled(timeout)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before listening on {ip}:{port}")
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {ip}:{port} after {timeout}s")


def sh(cmd, cwd):
    subprocess.run(cmd, shell=True, check=True, cwd=str(cwd), capture_output=True, timeout=120)


def make_server_ca(d):
    """A demo CA (the trust anchor the gateway gets through SSL_CERT_FILE)."""
    sh("openssl req -x509 -sha256 -nodes -days 30 -newkey rsa:2048 -subj '/O=demo/CN=demo-ca' "
       "-keyout demo-ca.key -out demo-ca.crt 2>/dev/null", d)
    return d / "demo-ca.crt"


def make_server_cert(d, name, sans=None, days=30, extra=""):
    """A server certificate for name signed by the demo CA, with DNS SANs (default [name])."""
    sans = [name] if sans is None else sans
    ext = d / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "extendedKeyUsage=serverAuth"]
    if sans:
        lines.append("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans))
    ext.write_text("\n".join(lines) + "\n" + extra)
    sh(f"openssl req -newkey rsa:2048 -nodes -subj '/CN={name}' -keyout {name}.key -out {name}.csr 2>/dev/null", d)
    sh(f"openssl x509 -req -sha256 -days {days} -CA demo-ca.crt -CAkey demo-ca.key -set_serial "
       f"{random.randint(2, 1 << 30)} -in {name}.csr -out {name}.crt -extfile {name}.ext 2>/dev/null", d)
    return d / f"{name}.crt", d / f"{name}.key"


def nginx_conf(d, http_body, worker_connections=1024):
    """An nginx.conf that keeps everything (pid, logs, temp files) under d, with http_body
    inside http {}. As root, nginx's workers would otherwise run as www-data and could not
    read a test's private temporary directory."""
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections {worker_connections}; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp;
  proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp;
  scgi_temp_path {d}/tmp;
  default_type text/html;
{http_body}
}}
"""


class Nginx:
    """nginx playing an external site: HTTP on http_port (301 to https unless body_http),
    HTTPS on https_port serving fixed content at every path."""

    def __init__(self, tmp, ip, cert, key, http_port=80, https_port=443, extra_https="",
                 server_name="_"):
        self.dir = tmp / f"nginx-{ip}"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "html").mkdir(exist_ok=True)
        (self.dir / "html" / "politics").write_text("politics page from the demo site\n")
        (self.dir / "html" / "index.html").write_text("<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head></html>\n")
        servers = f"""
  server {{
    listen {ip}:{http_port};
    server_name {server_name};
    location / {{ return 301 https://$host$request_uri; }}
  }}
  server {{
    listen {ip}:{https_port} ssl;
    server_name {server_name};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {self.dir}/html;
    location = /echo-headers {{ default_type text/plain; return 200 "xff=$http_x_forwarded_for rid=$http_x_request_id proto=$http_x_forwarded_proto host=$host conn=$http_connection\\n"; }}
    location = /big {{ alias {self.dir}/html/big; }}
    {extra_https}
  }}
"""
        conf = nginx_conf(self.dir, servers)
        (self.dir / "tmp").mkdir(exist_ok=True)
        (self.dir / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(ip, https_port, proc=self.proc)
        self.ip = ip

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Gateway:
    """egressgw --role gateway, with its stderr kept for assertions."""

    def __init__(self, tmp, store, identity, ip, hosts_file, ca_file, extra=(), workers=1,
                 wait=True, nofile=None):
        self.admin_port = free_port()
        self.alog = tmp / "gateway-access.log"
        self.errlog = tmp / "gateway.err"
        self.vglog = tmp / "gateway.valgrind.%p"
        env = dict(os.environ)
        env["SSL_CERT_FILE"] = str(ca_file)
        env.pop("SSL_CERT_DIR", None)
        cmd = valgrind_prefix(self.vglog) + rootfs_prefix() + [
               "--role", "gateway", "--store", str(store),
               "--namespace", "istio-system", "--labels", "istio=egressgateway",
               "--identity", str(identity), "--listen-address", ip,
               "--admin", f"127.0.0.1:{self.admin_port}", "--access-log", str(self.alog),
               "--hosts-file", str(hosts_file), "--workers", str(workers),
               "--log-level", "info",
               # Tests stop their gateways at once; test_lifecycle.py tests the announce.
               "--drain-announce", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.errlog, "w"), env=env,
                                     preexec_fn=nofile_preexec(nofile))
        self.ip = ip
        if wait:
            wait_port("127.0.0.1", self.admin_port, proc=self.proc)

    def admin(self, path, method="GET"):
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=5) as s:
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    def log_lines(self):
        return self.alog.read_text().splitlines() if self.alog.exists() else []

    def wait_log(self, n, timeout=5.0):
        deadline = time.time() + scaled(timeout)
        while time.time() < deadline:
            lines = self.log_lines()
            if len(lines) >= n:
                return lines
            time.sleep(0.05)
        raise AssertionError(f"expected {n} access log lines, got {self.log_lines()}")

    def stderr(self):
        return self.errlog.read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert_no_sanitizer_report(self.errlog)
        assert_valgrind_clean(self.vglog, self.proc.returncode)
        return self.proc.returncode


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def assert_no_sanitizer_report(path):
    """Under `make SANITIZE=1` a sanitizer report in a server's stderr fails the test."""
    text = pathlib.Path(path).read_text() if pathlib.Path(path).exists() else ""
    for mark in SANITIZER_MARKS:
        assert mark not in text, f"{mark} in {path}:\n{text[-4000:]}"


def mesh_context(client_dir, root=None):
    """A TLS client context with a workload identity (ISTIO_MUTUAL), verifying the
    gateway against the mesh root."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(client_dir / "cert-chain.pem"), str(client_dir / "key.pem"))
    ctx.load_verify_locations(str(root or (client_dir / "root-cert.pem")))
    # The gateway's certificate carries a SPIFFE identity, not a DNS name.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def read_response(sock):
    """Reads one HTTP/1.1 response (Content-Length or chunked or until close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        body = rest[:n]
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        buf = rest
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            line, _, buf = buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += sock.recv(65536)
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                break
    else:
        body = rest
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def mesh_request(ip, port, sni, client_dir, path="/politics", host=None, extra_headers="",
                 method="GET", body=b""):
    ctx = mesh_context(client_dir)
    with socket.create_connection((ip, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            req = (f"{method} {path} HTTP/1.1\r\nHost: {host or sni}\r\nUser-Agent: curl/7.88.1\r\n"
                   f"{extra_headers}Connection: close\r\n\r\n")
            s.sendall(req.encode() + body)
            return read_response(s)
