"""Helpers for the sidecar tests: egressgw processes (either role) that may run inside a
network namespace, nginx sites playing the walkthrough's external services, and the
walkthrough itself as a sequence of steps that both capture modes run (HTTP proxy on
loopback, transparent capture with iptables inside namespaces).

Network namespaces: the test process stays in its own namespace; what must happen inside
another one (waiting for a port, an admin request) runs in a short-lived thread that
joins it with setns(2) (a network namespace belongs to a thread, not to the process).
"""
import ctypes
import os
import pathlib
import random
import re
import shutil
import socket
import subprocess
import threading
import time

from gwlib import (BUILD, assert_no_sanitizer_report, assert_valgrind_clean, nginx_conf, scaled,
                   valgrind_prefix)

CNN = "edition.cnn.com"
NGINX_HOST = "my-nginx.mesh-external.svc.cluster.local"
EGW_HOST = "istio-egressgateway.istio-system.svc.cluster.local"
GW_SPIFFE = "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"

# Istio's default access log line (see test_gateway.LOG_RE), fields by name.
LOG_RE = re.compile(
    r'^\[(?P<start>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] '
    r'"(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" (?P<code>\d+) (?P<flags>\S+) '
    r'(?P<details>\S+) (?P<term>\S+) "(?P<tls>[^"]*)" (?P<rx>\d+) (?P<tx>\d+) (?P<dur>\d+) '
    r'(?P<ust>\S+) "(?P<xff>[^"]*)" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" '
    r'"(?P<uhost>[^"]*)" (?P<cluster>\S+) (?P<ulocal>\S+) (?P<dlocal>\S+) (?P<dremote>\S+) '
    r'(?P<sni>\S+) (?P<route>\S+)$')

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def in_netns(ns, fn, *args):
    """Runs fn(*args) in network namespace ns (None: here) and returns its result."""
    if ns is None:
        return fn(*args)
    out = {}

    def run():
        try:
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            out["v"] = fn(*args)
        except BaseException as e:   # noqa: B036 - re-raised in the caller's thread
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out.get("v")


def ns_prefix(ns):
    return ["ip", "netns", "exec", ns] if ns else []


def _wait_port(ip, port, timeout, proc):
    deadline = time.time() + scaled(timeout)
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before listening "
                                 f"on {ip}:{port}")
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {ip}:{port} after {timeout}s")


def wait_port(ip, port, ns=None, timeout=10.0, proc=None):
    in_netns(ns, _wait_port, ip, port, timeout, proc)


def _http_get(port, path):
    # Scaled under valgrind: memcheck runs one thread at a time, so the admin thread can
    # wait out a reload's build for longer than 5 s.
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def sh(cmd, cwd, ns=None):
    subprocess.run(ns_prefix(ns) + ["sh", "-c", cmd], check=True, cwd=str(cwd),
                   capture_output=True, timeout=120)


class NxDns:
    """A DNS server on UDP port 53 of ip (in namespace ns) answering NXDOMAIN to every
    query, so that no lookup ever leaves the machine."""

    def __init__(self, ip, ns=None):
        def make():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, 53))
            return s
        self.s = in_netns(ns, make)
        self.addr = f"{ip}:53"
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                q, peer = self.s.recvfrom(1500)
            except OSError:
                return
            if len(q) < 12:
                continue
            i = 12
            while i < len(q) and q[i] != 0:
                i += 1 + q[i]
            self.s.sendto(self.reply(q, i), peer)

    def reply(self, q, end):
        """The answer to query q, whose question's name ends at q[end]: NXDOMAIN."""
        # QR, the query's opcode and RD; RA; rcode 3; the question, no answers.
        head = q[0:2] + bytes([0x80 | (q[2] & 0x79), 0x83]) + b"\x00\x01" + b"\x00" * 6
        return head + q[12:end + 5]

    def stop(self):
        self.s.close()


class Egressgw:
    """egressgw in either role, in namespace ns or here; stderr and the access log kept.
    dns: the only DNS server it may ask (an NxDns)."""

    def __init__(self, tmp, name, role, store, identity, hosts, dns, ns=None, extra=(),
                 env=None, admin_port=None):
        self.ns = ns
        self.name = name
        self.admin_port = admin_port or (random.randint(20000, 29999) if ns else _free_port())
        self.alog = tmp / f"{name}-access.log"
        self.errlog = tmp / f"{name}.err"
        self.vglog = tmp / f"{name}.valgrind.%p"
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("EGRESSGW_")}
        run_env.pop("SSL_CERT_DIR", None)
        run_env.update(env or {})
        cmd = valgrind_prefix(self.vglog) + [str(BUILD / "egressgw"), "--role", role, "--store", str(store),
               "--identity", str(identity), "--admin", f"127.0.0.1:{self.admin_port}",
               "--access-log", str(self.alog), "--hosts-file", str(hosts), "--workers", "1",
               "--dns-servers", dns.addr, "--log-level", "debug", "--drain-announce", "0", *extra]
        self.proc = subprocess.Popen(ns_prefix(ns) + cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.errlog, "w"), env=run_env)
        try:
            wait_port("127.0.0.1", self.admin_port, ns=ns, proc=self.proc)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def admin(self, path):
        return in_netns(self.ns, _http_get, self.admin_port, path)

    def stat(self, name):
        _, text = self.admin("/stats/prometheus")
        m = re.search(rf"^egressgw_{name} (\d+)$", text, re.M)
        assert m, f"no egressgw_{name} in stats"
        return int(m.group(1))

    def wait_reloads(self, n, timeout=10.0):
        """Waits until the configuration has been reloaded n times in all."""
        deadline = time.time() + scaled(timeout)
        while time.time() < deadline:
            if self.stat("config_reloads_total") >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: fewer than {n} reloads:\n{self.stderr()[-3000:]}")

    def log_lines(self):
        return self.alog.read_text().splitlines() if self.alog.exists() else []

    def wait_log(self, pred, timeout=5.0):
        """The first access log line (parsed) for which pred(match) is true."""
        deadline = time.time() + scaled(timeout)
        while time.time() < deadline:
            for line in self.log_lines():
                m = LOG_RE.match(line)
                assert m, f"{self.name}: malformed access log line {line!r}"
                if pred(m):
                    return m
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no matching access log line in "
                             f"{self.log_lines()}")

    def stderr(self):
        return self.errlog.read_text() if self.errlog.exists() else ""

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


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Site:
    """nginx with a given http{} body, in namespace ns or here."""

    def __init__(self, tmp, name, http_body, ip, port, ns=None):
        self.dir = tmp / f"nginx-{name}"
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        (self.dir / "nginx.conf").write_text(nginx_conf(self.dir, http_body, 256))
        self.proc = subprocess.Popen(ns_prefix(ns) + ["nginx", "-p", str(self.dir), "-c",
                                                      str(self.dir / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(ip, port, ns=ns, proc=self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cnn_site(tmp, ip, cert, key, ns=None):
    """edition.cnn.com: port 80 answers 301 to https, port 443 serves /politics."""
    html = tmp / "cnn-html"
    html.mkdir(exist_ok=True)
    (html / "politics").write_text("<html><body>CNN politics (test)</body></html>\n")
    body = f"""
  server {{ listen {ip}:80; server_name {CNN};
           location / {{ return 301 https://$host$request_uri; }} }}
  server {{ listen {ip}:443 ssl; server_name {CNN}; root {html};
           ssl_certificate {cert}; ssl_certificate_key {key}; }}
"""
    return Site(tmp, "cnn", body, ip, 443, ns=ns)


def mtls_site(tmp, ip, certs, ns=None):
    """my-nginx.mesh-external.svc.cluster.local as the walkthrough's nginx.conf has it:
    HTTPS on 443 with the walkthrough's server certificate (CN only, no SAN), client
    certificates required and verified against example.com.crt."""
    html = tmp / "my-nginx-html"
    html.mkdir(exist_ok=True)
    (html / "index.html").write_text("<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to "
                                      "nginx!</title>\n</head>\n<body>\n</body>\n</html>\n")
    body = f"""
  server {{
    listen {ip}:443 ssl;
    root {html};
    index index.html;
    server_name {NGINX_HOST};
    ssl_certificate {certs}/{NGINX_HOST}.crt;
    ssl_certificate_key {certs}/{NGINX_HOST}.key;
    ssl_client_certificate {certs}/example.com.crt;
    ssl_verify_client on;
  }}
"""
    return Site(tmp, "my-nginx", body, ip, 443, ns=ns)


def demo_cert(d, name):
    """A server certificate for name (DNS SAN) from the demo public CA of directory d
    (demo-ca.crt, made on first use). Returns (cert, key, CA certificate)."""
    if not (d / "demo-ca.crt").exists():
        subprocess.run("openssl req -x509 -sha256 -nodes -days 30 -newkey rsa:2048 "
                       "-subj '/O=demo/CN=demo public CA' -keyout demo-ca.key -out demo-ca.crt",
                       shell=True, check=True, cwd=d, capture_output=True)
    (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
    subprocess.run(f"openssl req -newkey rsa:2048 -nodes -subj '/CN={name}' -keyout {name}.key "
                   f"-out {name}.csr && openssl x509 -req -sha256 -days 30 -CA demo-ca.crt "
                   f"-CAkey demo-ca.key -set_serial {random.randint(2, 1 << 30)} -in {name}.csr "
                   f"-out {name}.crt -extfile {name}.ext", shell=True, check=True, cwd=d,
                   capture_output=True)
    return d / f"{name}.crt", d / f"{name}.key", d / "demo-ca.crt"


def issue(egressctl, ca, ns, sa, out, create_ca=False):
    if create_ca:
        subprocess.run([str(egressctl), "ca", "init", "--dir", str(ca)], check=True,
                       capture_output=True)
    subprocess.run([str(egressctl), "ca", "issue", "--dir", str(ca), "--namespace", ns,
                    "--service-account", sa, "--out", str(out)], check=True,
                   capture_output=True)
    return out


def copy_readable(src, dst_dir):
    """A copy of src that any user can read (for commands run as nobody)."""
    dst = pathlib.Path(dst_dir) / pathlib.Path(src).name
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    return dst


# ---------------------------------------------------------------- the walkthrough

def heads(curl_out):
    """The status lines of every response head curl -D - printed."""
    return [ln for ln in curl_out.splitlines() if ln.startswith("HTTP/")]


def run_walkthrough(t):
    """Istio's "Egress Gateways with TLS Origination", step by step, as the user runs it,
    with egressctl for kubectl and curl through the sidecar. t provides: ctl (egressctl on
    the store), curl(*args) -> CompletedProcess (curl as the sleep pod runs it), proxyctl
    (*args) -> CompletedProcess (egressctl talking to the gateway's admin endpoint),
    sidecar and gateway (Egressgw), wt (the walkthrough's YAML), certs (the walkthrough's
    certificates), mode ("proxy" or "transparent")."""
    ctl, sidecar, gateway, wt = t.ctl, t.sidecar, t.gateway, t.wt
    s_reloads = sidecar.stat("config_reloads_total")
    g_reloads = gateway.stat("config_reloads_total")

    def settle():
        """Waits until both proxies have reloaded since the last settle and then stayed
        quiet for a while: the changes just made are all in force (several egressctl
        commands may be one reload or several, as the debounce timer falls)."""
        nonlocal s_reloads, g_reloads
        sidecar.wait_reloads(s_reloads + 1)
        gateway.wait_reloads(g_reloads + 1)
        while True:
            s_now, g_now = sidecar.stat("config_reloads_total"), gateway.stat("config_reloads_total")
            time.sleep(0.5)
            if (s_now, g_now) == (sidecar.stat("config_reloads_total"), gateway.stat("config_reloads_total")):
                break
        s_reloads, g_reloads = s_now, g_now

    # 1. A ServiceEntry for edition.cnn.com: 301 from the plain-HTTP site, then https.
    assert "serviceentry.networking.istio.io/cnn created" in ctl.ok(
        "apply", "-f", wt / "01-serviceentry-cnn.yaml")
    settle()
    r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
    assert r.returncode == 0, (r.stdout, r.stderr, sidecar.stderr()[-3000:])
    assert heads(r.stdout)[0] == "HTTP/1.1 301 Moved Permanently", r.stdout
    assert re.search(rf"^location: https://{CNN}/politics\r?$", r.stdout, re.M | re.I), r.stdout
    assert heads(r.stdout)[-1] == "HTTP/1.1 200 OK", r.stdout
    m = sidecar.wait_log(lambda m: m["code"] == "301")
    assert (m["method"], m["path"], m["cluster"], m["route"]) == \
        ("GET", "/politics", f"outbound|80||{CNN}", "default"), m.string
    assert m["xff"] == "-", m.string      # a sidecar does not append to x-forwarded-for
    if t.mode == "proxy":
        # curl -L through an HTTP proxy: CONNECT edition.cnn.com:443.
        assert "HTTP/1.1 200 Connection established" in heads(r.stdout), r.stdout
        m = sidecar.wait_log(lambda m: m["method"] == "CONNECT")
        assert (m["code"], m["authority"], m["cluster"]) == \
            ("200", f"{CNN}:443", f"outbound|443||{CNN}"), m.string
    else:
        # Transparent: TLS passed through unterminated, routed by its SNI.
        m = sidecar.wait_log(lambda m: m["method"] == "-" and m["sni"] == CNN)
        assert (m["code"], m["cluster"]) == ("0", f"outbound|443||{CNN}"), m.string
        assert m["dlocal"].endswith(":443") and not m["dlocal"].startswith("127.0.0.1:"), \
            m.string
    assert int(m["rx"]) > 0 and int(m["tx"]) > 0, m.string

    # 2. The Gateway, DestinationRules and VirtualService: 200, no 301.
    out = ctl.ok("apply", "-f", wt / "02-gateway-destinationrule-cnn.yaml")
    assert "gateway.networking.istio.io/istio-egressgateway created" in out
    assert "destinationrule.networking.istio.io/egressgateway-for-cnn created" in out
    out = ctl.ok("apply", "-f", wt / "03-virtualservice-destinationrule-cnn.yaml")
    assert "virtualservice.networking.istio.io/direct-cnn-through-egress-gateway created" in out
    settle()
    wait_port(t.gw_ip, 80, ns=gateway.ns)
    n_sidecar = len(sidecar.log_lines())
    r = t.curl("-sSL", "-o", "/dev/null", "-D", "-", f"http://{CNN}/politics")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert heads(r.stdout) == ["HTTP/1.1 200 OK"], (r.stdout, sidecar.stderr()[-2000:],
                                                     gateway.stderr()[-2000:])
    assert "301" not in r.stdout
    assert r.stdout.count("x-envoy-upstream-service-time") == 1, r.stdout
    m = sidecar.wait_log(lambda m: m["cluster"].startswith("outbound|80|cnn|"))
    assert m["cluster"] == f"outbound|80|cnn|{EGW_HOST}", m.string
    assert (m["code"], m["authority"]) == ("200", CNN), m.string
    assert m["uhost"] == f"{t.gw_ip}:80", m.string
    assert len(sidecar.log_lines()) == n_sidecar + 1
    g = gateway.wait_log(lambda g: g["rid"] == m["rid"])
    assert (g["method"], g["path"], g["code"]) == ("GET", "/politics", "200"), g.string
    assert g["proto"] == "HTTP/2", g.string
    assert g["cluster"] == f"outbound|443||{CNN}" and g["sni"] == CNN, g.string
    assert g["authority"] == CNN and g["uhost"].endswith(":443"), g.string
    # The gateway appends its peer (the sidecar) to x-forwarded-for.
    assert g["xff"] == m["ulocal"].rsplit(":", 1)[0], (g.string, m.string)
    assert gateway.stat("downstream_cx_peer_identity_total") >= 1
    assert "peer identity spiffe://cluster.local/ns/default/sa/sleep" in gateway.stderr()

    # Cleanup of the TLS origination example.
    for args, what in [
        (("delete", "gateway", "istio-egressgateway"),
         'gateway.networking.istio.io "istio-egressgateway" deleted'),
        (("delete", "serviceentry", "cnn"), 'serviceentry.networking.istio.io "cnn" deleted'),
        (("delete", "virtualservice", "direct-cnn-through-egress-gateway"),
         'virtualservice.networking.istio.io "direct-cnn-through-egress-gateway" deleted'),
        (("delete", "destinationrule", "originate-tls-for-edition-cnn-com"),
         'destinationrule.networking.istio.io "originate-tls-for-edition-cnn-com" deleted'),
        (("delete", "destinationrule", "egressgateway-for-cnn"),
         'destinationrule.networking.istio.io "egressgateway-for-cnn" deleted'),
    ]:
        assert what in ctl.ok(*args)
    settle()

    # 3. Mutual TLS origination, against nginx requiring client certificates.
    certs = t.certs
    assert "namespace/mesh-external created" in ctl.ok("create", "namespace", "mesh-external")
    assert "secret/nginx-server-certs created" in ctl.ok(
        "create", "-n", "mesh-external", "secret", "tls", "nginx-server-certs",
        "--key", certs / f"{NGINX_HOST}.key", "--cert", certs / f"{NGINX_HOST}.crt")
    assert "secret/nginx-ca-certs created" in ctl.ok(
        "create", "-n", "mesh-external", "secret", "generic", "nginx-ca-certs",
        "--from-file=example.com.crt", cwd=certs)
    assert "secret/client-credential created" in ctl.ok(
        "create", "secret", "-n", "istio-system", "generic", "client-credential",
        "--from-file=tls.key=client.example.com.key", "--from-file=tls.crt=client.example.com.crt",
        "--from-file=ca.crt=example.com.crt", cwd=certs)
    out = ctl.ok("apply", "-f", wt / "04-gateway-destinationrule-nginx.yaml")
    assert "gateway.networking.istio.io/istio-egressgateway created" in out
    assert "virtualservice.networking.istio.io/direct-nginx-through-egress-gateway created" in \
        ctl.ok("apply", "-f", wt / "05-virtualservice-nginx.yaml")
    assert "destinationrule.networking.istio.io/originate-mtls-for-nginx created" in \
        ctl.ok("apply", "-n", "istio-system", "-f", wt / "06-destinationrule-originate-mtls-nginx.yaml")
    settle()
    wait_port(t.gw_ip, 443, ns=gateway.ns)
    r = t.proxyctl("-n", "istio-system", "proxy-config", "secret", "deploy/istio-egressgateway")
    assert r.returncode == 0, (r.stdout, r.stderr)
    rows = [ln for ln in r.stdout.splitlines() if "client-credential" in ln]
    assert len(rows) == 2, r.stdout
    assert re.match(r"^kubernetes://client-credential\s+Cert Chain\s+ACTIVE\s+true\s+1\s+\S+Z\s+\S+Z$",
                    rows[0]), rows
    assert re.match(r"^kubernetes://client-credential-cacert\s+Cert Chain\s+ACTIVE\s+true\s+\d+\s+",
                    rows[1]), rows
    r = t.curl("-sS", f"http://{NGINX_HOST}")
    assert r.returncode == 0, (r.stderr, sidecar.stderr()[-2000:], gateway.stderr()[-2000:])
    assert "<title>Welcome to nginx!</title>" in r.stdout, (r.stdout, gateway.log_lines())
    m = sidecar.wait_log(lambda m: m["authority"] == NGINX_HOST)
    assert m["cluster"] == f"outbound|443|nginx|{EGW_HOST}" and m["code"] == "200", m.string
    # The sidecar speaks HTTP/2 to the gateway (ALPN h2), as in the walkthrough's log line.
    g = gateway.wait_log(lambda g: g["authority"] == NGINX_HOST and g["proto"] == "HTTP/2")
    assert (g["method"], g["path"], g["code"]) == ("GET", "/", "200"), g.string
    assert g["cluster"] == f"outbound|443||{NGINX_HOST}" and g["sni"] == NGINX_HOST, g.string

    # Cleanup of the mutual TLS origination example (the Kubernetes-only objects,
    # configmap, service and deployment, are the nginx process here).
    for args in [("delete", "secret", "nginx-server-certs", "nginx-ca-certs", "-n", "mesh-external"),
                 ("delete", "secret", "client-credential", "-n", "istio-system"),
                 ("delete", "namespace", "mesh-external"),
                 ("delete", "gateway", "istio-egressgateway"),
                 ("delete", "virtualservice", "direct-nginx-through-egress-gateway"),
                 ("delete", "destinationrule", "-n", "istio-system", "originate-mtls-for-nginx"),
                 ("delete", "destinationrule", "egressgateway-for-nginx")]:
        assert "deleted" in ctl.ok(*args)
    settle()
    assert ctl("get", "gateway,virtualservice,destinationrule,serviceentry", "-A").err.startswith(
        "No resources found")
    # With the configuration gone, the host has no route: ALLOW_ANY passes it through.
    r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{CNN}/politics")
    assert r.stdout == "301", (r.stdout, r.stderr)
    m = sidecar.wait_log(lambda m: m["cluster"] == "PassthroughCluster")
    assert m["route"] == "allow_any", m.string
