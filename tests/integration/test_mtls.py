"""The walkthrough's second half: mutual TLS origination from the egress gateway to an
nginx configured exactly as the walkthrough's nginx.conf (ssl_verify_client on), with the
walkthrough's certificates (its own openssl commands), and egressctl in place of kubectl
and istioctl. Then what the issue asks beyond it: every Secret layout, the file form,
rotation under load, CRLs, a wrong client certificate, a missing credential, invalid new
versions, key file modes, `proxy-config secret` and `analyze`."""
import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from gwlib import BUILD, Gateway, loopback_ip, mesh_request, sh, wait_port, wait_until

NGINX_HOST = "my-nginx.mesh-external.svc.cluster.local"
CLUSTER = f"outbound|443||{NGINX_HOST}"
WELCOME = b"<title>Welcome to nginx!</title>"
SECRET_HEADER = ("RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER",
                 "NOT AFTER", "NOT BEFORE")


# ---------------------------------------------------------------------------------------
# peers


class MtlsNginx:
    """nginx as the walkthrough deploys it: its nginx.conf, with the paths of the mounted
    Secrets pointing at files here and `listen` on a loopback address of its own. The
    access log format is the walkthrough's with the client certificate's serial added."""

    def __init__(self, tmp, ip, server_crt, server_key, ca_crt, verify="on"):
        self.dir = tmp / f"nginx-{ip}"
        self.dir.mkdir(parents=True, exist_ok=True)
        html = self.dir / "html"
        html.mkdir(exist_ok=True)
        (html / "index.html").write_text(
            "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n"
            "<body>\n<h1>Welcome to nginx!</h1>\n</body>\n</html>\n")
        certs = self.dir / "nginx-server-certs"
        cas = self.dir / "nginx-ca-certs"
        certs.mkdir(exist_ok=True)
        cas.mkdir(exist_ok=True)
        shutil.copy(server_crt, certs / "tls.crt")
        shutil.copy(server_key, certs / "tls.key")
        shutil.copy(ca_crt, cas / "example.com.crt")
        (self.dir / "tmp").mkdir(exist_ok=True)
        self.access_log = self.dir / "access.log"
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""{user}
daemon off;
pid {self.dir}/nginx.pid;
events {{
}}

http {{
  log_format main '$remote_addr - $remote_user [$time_local]  $status '
  '"$request" $body_bytes_sent "$http_referer" '
  '"$http_user_agent" "$http_x_forwarded_for" serial=$ssl_client_serial';
  access_log {self.access_log} main;
  error_log  {self.dir}/error.log;
  client_body_temp_path {self.dir}/tmp;
  proxy_temp_path {self.dir}/tmp;
  fastcgi_temp_path {self.dir}/tmp;
  uwsgi_temp_path {self.dir}/tmp;
  scgi_temp_path {self.dir}/tmp;

  server {{
    listen {ip}:443 ssl;

    root {html};
    index index.html;

    server_name {NGINX_HOST};
    ssl_certificate {certs}/tls.crt;
    ssl_certificate_key {certs}/tls.key;
    ssl_client_certificate {cas}/example.com.crt;
    ssl_verify_client {verify};
  }}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(ip, 443, proc=self.proc)
        self.ip = ip

    def serials(self):
        """The client certificate serial of each request logged (hex, as nginx logs it)."""
        if not self.access_log.exists():
            return []
        return re.findall(r"serial=(\S*)$", self.access_log.read_text(), re.M)

    def wait_serials(self, n, timeout=5.0):
        """The serials once at least n requests are logged (nginx logs a request after
        it has answered it)."""
        deadline = time.time() + timeout
        while len(self.serials()) < n and time.time() < deadline:
            time.sleep(0.02)
        return self.serials()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def egressctl(*args, input=None, check=True, env=None):
    e = {k: v for k, v in os.environ.items() if k not in ("EGRESSGW_ADMIN", "EGRESSGW_STORE")}
    e.update(env or {})
    p = subprocess.run([str(BUILD / "egressctl"), *map(str, args)], input=input,
                       capture_output=True, text=True, timeout=60, env=e)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def secret_yaml(name, data, ns="istio-system", type_="Opaque"):
    """A v1 Secret document (what `kubectl create secret ... --dry-run=client -o yaml`
    prints) with data from files."""
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"  name: {name}",
             f"  namespace: {ns}", f"type: {type_}", "data:"]
    for key, path in data.items():
        lines.append(f"  {key}: {base64.b64encode(open(path, 'rb').read()).decode()}")
    return "\n".join(lines) + "\n"


def serial_of(cert):
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"],
                         capture_output=True, text=True, check=True).stdout
    return str(int(out.strip().split("=")[1], 16))


def secret_rows(out):
    """proxy-config secret's table as {resource: [cells]} (cells split on 2+ spaces)."""
    rows = {}
    for line in out.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


# ---------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def certs(tmp_path_factory, walkthrough_certs):
    """The walkthrough's certificates, plus what the tests below need besides: a second
    client certificate (serial 2) for rotation, a client certificate from another CA,
    and CRLs of example.com (one revoking the server certificate, one empty)."""
    d = tmp_path_factory.mktemp("mtls-certs")
    for f in walkthrough_certs.iterdir():
        shutil.copy(f, d / f.name)
    sh("openssl req -out client2.csr -newkey rsa:2048 -nodes -keyout client2.key "
       "-subj '/CN=client.example.com/O=client organization' 2>/dev/null", d)
    sh("openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key "
       "-set_serial 2 -in client2.csr -out client2.crt 2>/dev/null", d)
    sh("openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=evil Inc./CN=evil.com' "
       "-keyout evil.key -out evil.crt 2>/dev/null", d)
    sh("openssl req -out intruder.csr -newkey rsa:2048 -nodes -keyout intruder.key "
       "-subj '/CN=client.example.com/O=client organization' 2>/dev/null", d)
    sh("openssl x509 -req -sha256 -days 365 -CA evil.crt -CAkey evil.key -set_serial 1 "
       "-in intruder.csr -out intruder.crt 2>/dev/null", d)
    (d / "index.txt").write_text("")
    (d / "crlnumber").write_text("01\n")
    (d / "ca.cnf").write_text("[ ca ]\ndefault_ca = CA_default\n[ CA_default ]\n"
                              "database = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\n"
                              "default_crl_days = 30\nprivate_key = example.com.key\n"
                              "certificate = example.com.crt\n")
    sh("openssl ca -config ca.cnf -gencrl -out empty.crl 2>/dev/null", d)
    sh(f"openssl ca -config ca.cnf -revoke {NGINX_HOST}.crt 2>/dev/null", d)
    sh("openssl ca -config ca.cnf -gencrl -out revoked.crl 2>/dev/null", d)
    (d / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                               "-----END CERTIFICATE-----\n")
    return d


@pytest.fixture
def mesh(tmp_path):
    ca = tmp_path / "mesh-ca"
    egressctl("ca", "init", "--dir", ca)
    gw, client = tmp_path / "gw-identity", tmp_path / "sleep-identity"
    egressctl("ca", "issue", "--dir", ca, "--namespace", "istio-system", "--service-account",
              "istio-egressgateway-service-account", "--out", gw)
    egressctl("ca", "issue", "--dir", ca, "--namespace", "default", "--service-account",
              "sleep", "--out", client)
    return {"gw": gw, "client": client}


class Env:
    """A store with the walkthrough's files 04-06 applied, nginx, and (once started) the
    gateway. Every egressctl call goes to this store."""

    def __init__(self, tmp, certs, mesh, walkthrough, verify="on", apply_06=True):
        self.tmp, self.certs, self.mesh = tmp, certs, mesh
        self.store = tmp / "store"
        self.nginx = MtlsNginx(tmp, loopback_ip(), certs / f"{NGINX_HOST}.crt",
                               certs / f"{NGINX_HOST}.key", certs / "example.com.crt", verify)
        self.hosts = tmp / "hosts"
        self.hosts.write_text(f"{self.nginx.ip} {NGINX_HOST}\n")
        self.ctl("apply", "-f", walkthrough / "04-gateway-destinationrule-nginx.yaml")
        self.ctl("apply", "-f", walkthrough / "05-virtualservice-nginx.yaml")
        if apply_06:
            self.ctl("-n", "istio-system", "apply", "-f",
                     walkthrough / "06-destinationrule-originate-mtls-nginx.yaml")
        self.gw = None

    def ctl(self, *args, input=None, check=True):
        return egressctl("--store", self.store, *args, input=input, check=check)

    def create_credential(self, name="client-credential", key="client.example.com.key",
                          crt="client.example.com.crt", ca="example.com.crt"):
        """The walkthrough's `kubectl create secret -n istio-system generic ...`."""
        c = self.certs
        self.ctl("create", "secret", "-n", "istio-system", "generic", name,
                 f"--from-file=tls.key={c / key}", f"--from-file=tls.crt={c / crt}",
                 f"--from-file=ca.crt={c / ca}")

    def apply_secret(self, data, name="client-credential", type_="Opaque"):
        self.ctl("apply", "-f", "-", input=secret_yaml(name, {k: self.certs / v for k, v in data.items()},
                                                        type_=type_))

    def start(self, workers=1):
        gw_ip = loopback_ip()
        self.gw = Gateway(self.tmp, self.store, self.mesh["gw"], gw_ip, self.hosts,
                          self.mesh["gw"] / "root-cert.pem", workers=workers)
        wait_port(gw_ip, 443, proc=self.gw.proc)
        self.admin = f"127.0.0.1:{self.gw.admin_port}"
        return self.gw

    def request(self, path="/"):
        return mesh_request(self.gw.ip, 443, NGINX_HOST, self.mesh["client"], path=path)

    def secrets(self):
        p = egressctl("proxy-config", "secret", self.admin, check=False)
        assert p.returncode == 0, p.stderr
        return p

    def last_log(self):
        return self.gw.wait_log(1)[-1]

    def stop(self):
        if self.gw:
            self.gw.stop()
        self.nginx.stop()


@pytest.fixture
def env(tmp_path, certs, mesh, walkthrough):
    e = Env(tmp_path, certs, mesh, walkthrough)
    yield e
    e.stop()


def assert_welcome(e):
    status, _, body = e.request()
    assert status == 200, (status, body, e.gw.log_lines()[-3:], e.gw.stderr()[-2000:])
    assert WELCOME in body


def assert_no_key_material(*texts):
    for t in texts:
        assert "PRIVATE KEY" not in t
        assert "MII" not in t          # base64 DER of a key or certificate


# ---------------------------------------------------------------------------------------
# the walkthrough


def test_walkthrough_mutual_tls_origination(env, certs):
    env.create_credential()
    gw = env.start()
    # istioctl -n istio-system proxy-config secret deploy/istio-egressgateway | grep client-credential
    # (deploy/... names a pod: egressctl takes the admin address from $EGRESSGW_ADMIN.)
    p = egressctl("-n", "istio-system", "proxy-config", "secret", "deploy/istio-egressgateway",
                  env={"EGRESSGW_ADMIN": env.admin})
    assert p.stderr == ""
    lines = [l for l in p.stdout.splitlines() if "client-credential" in l]
    assert len(lines) == 2, p.stdout
    rows = secret_rows(p.stdout)
    chain = rows["kubernetes://client-credential"]
    ca = rows["kubernetes://client-credential-cacert"]
    assert chain[1:5] == ["Cert Chain", "ACTIVE", "true", "1"], chain
    assert ca[1:5] == ["Cert Chain", "ACTIVE", "true", serial_of(certs / "example.com.crt")], ca
    for row in (chain, ca):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[5]) and \
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[6]), row
    # curl -sS http://my-nginx.mesh-external.svc.cluster.local (through the mesh client)
    assert_welcome(env)
    line = env.last_log()
    assert '"GET / HTTP/1.1" 200 - via_upstream' in line, line
    assert CLUSTER in line and f'"{NGINX_HOST}"' in line
    # nginx saw the walkthrough's client certificate (serial 1).
    assert env.nginx.wait_serials(1) == ["01"]
    _, dump = gw.admin("/config_dump")
    _, certs_json = gw.admin("/certs")
    assert_no_key_material(dump, certs_json, gw.stderr(), p.stdout)
    # The whole store analyzes clean.
    p = env.ctl("analyze", check=False)
    assert p.returncode == 0 and p.stdout == "", (p.stdout, p.stderr)
    assert p.stderr == "\u2714 No validation issues found when analyzing all namespaces.\n"


def test_proxy_config_secret_table_layout(env, certs):
    env.create_credential()
    env.start()
    out = env.secrets().stdout
    lines = out.splitlines()
    # istioctl's tabwriter: each column as wide as its widest cell plus 5 spaces.
    cells = [list(SECRET_HEADER)] + [re.split(r"\s{2,}", l.rstrip()) for l in lines[1:]]
    widths = [max(len(r[i]) for r in cells if len(r) > i) + 5 for i in range(6)]
    expect = ["".join(r[i].ljust(widths[i]) for i in range(6)) + r[6] for r in cells]
    assert lines == expect, out
    names = [c[0] for c in cells[1:]]
    assert names == ["default", "ROOTCA", "kubernetes://client-credential",
                     "kubernetes://client-credential-cacert"], names
    rows = secret_rows(out)
    assert rows["ROOTCA"][1:3] == ["CA", "ACTIVE"]
    assert rows["default"][1:4] == ["Cert Chain", "ACTIVE", "true"]
    # -o json: the raw items, as the admin endpoint has them.
    items = json.loads(egressctl("proxy-config", "secret", env.admin, "-o", "json").stdout)
    by = {i["name"]: i for i in items}
    assert by["kubernetes://client-credential"]["serial"] == "1"
    assert by["kubernetes://client-credential"]["source"] == "Secret istio-system/client-credential"
    assert by["kubernetes://client-credential"]["subject"] == "O=client organization,CN=client.example.com"
    assert re.fullmatch(r"[0-9a-f]{16}", by["kubernetes://client-credential"]["version"])
    assert "rejected" not in by["kubernetes://client-credential"]
    yaml_out = egressctl("proxy-config", "secrets", env.admin, "-o", "yaml").stdout
    assert "name: kubernetes://client-credential-cacert" in yaml_out
    assert egressctl("proxy-config", "s", env.admin).stdout == out


# ---------------------------------------------------------------------------------------
# Secret layouts and the file form


LAYOUTS = {
    "generic-tls.crt": [("client-credential", "Opaque", {"tls.key": "client.example.com.key",
                                                         "tls.crt": "client.example.com.crt",
                                                         "ca.crt": "example.com.crt"})],
    "generic-cert-key-cacert": [("client-credential", "Opaque", {"key": "client.example.com.key",
                                                                 "cert": "client.example.com.crt",
                                                                 "cacert": "example.com.crt"})],
    "tls-type-and-cacert-secret": [
        ("client-credential", "kubernetes.io/tls", {"tls.key": "client.example.com.key",
                                                    "tls.crt": "client.example.com.crt"}),
        ("client-credential-cacert", "Opaque", {"ca.crt": "example.com.crt"})],
    "generic-and-cacert-secret-key-cacert": [
        ("client-credential", "Opaque", {"cert": "client.example.com.crt",
                                         "key": "client.example.com.key"}),
        ("client-credential-cacert", "Opaque", {"cacert": "example.com.crt"})],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_secret_layouts(env, layout):
    for name, type_, data in LAYOUTS[layout]:
        env.apply_secret(data, name=name, type_=type_)
    env.start()
    assert_welcome(env)
    rows = secret_rows(env.secrets().stdout)
    assert rows["kubernetes://client-credential"][2:5] == ["ACTIVE", "true", "1"]
    assert rows["kubernetes://client-credential-cacert"][2] == "ACTIVE"
    assert env.nginx.wait_serials(1) == ["01"]
    items = json.loads(egressctl("proxy-config", "secret", env.admin, "-o", "json").stdout)
    ca_source = {i["name"]: i["source"] for i in items}["kubernetes://client-credential-cacert"]
    ca_secret = LAYOUTS[layout][-1][0]
    assert ca_source == f"Secret istio-system/{ca_secret}"


def test_tls_secret_made_by_create_secret_tls(env, certs):
    """kubectl create secret tls + a separate NAME-cacert Secret."""
    env.ctl("create", "secret", "-n", "istio-system", "tls", "client-credential",
            "--key", certs / "client.example.com.key", "--cert", certs / "client.example.com.crt")
    env.ctl("create", "secret", "-n", "istio-system", "generic", "client-credential-cacert",
            f"--from-file=ca.crt={certs / 'example.com.crt'}")
    assert "kubernetes.io/tls" in env.ctl("get", "secret", "-n", "istio-system").stdout
    env.start()
    assert_welcome(env)


def test_file_form(tmp_path, certs, mesh, walkthrough):
    e = Env(tmp_path, certs, mesh, walkthrough, apply_06=False)
    key = tmp_path / "client.key"
    shutil.copy(certs / "client.example.com.key", key)
    os.chmod(key, 0o600)
    e.ctl("-n", "istio-system", "apply", "-f", "-", input=f"""
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: originate-mtls-for-nginx
spec:
  host: {NGINX_HOST}
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: MUTUAL
        clientCertificate: {certs / 'client.example.com.crt'}
        privateKey: {key}
        caCertificates: {certs / 'example.com.crt'}
        sni: {NGINX_HOST}
""")
    try:
        e.start()
        assert_welcome(e)
        rows = secret_rows(e.secrets().stdout)
        cert_row = f"file-cert:{certs / 'client.example.com.crt'}~{key}"
        assert rows[cert_row][1:5] == ["Cert Chain", "ACTIVE", "true", "1"], rows
        assert rows[f"file-root:{certs / 'example.com.crt'}"][1:3] == ["CA", "ACTIVE"]
        assert "readable by" not in e.gw.stderr()
    finally:
        e.stop()


def test_file_form_with_crl(tmp_path, certs, mesh, walkthrough):
    e = Env(tmp_path, certs, mesh, walkthrough, apply_06=False)
    e.ctl("-n", "istio-system", "apply", "-f", "-", input=f"""
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: originate-mtls-for-nginx
spec:
  host: {NGINX_HOST}
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: {certs / 'client.example.com.crt'}
      privateKey: {certs / 'client.example.com.key'}
      caCertificates: {certs / 'example.com.crt'}
      caCrl: {certs / 'revoked.crl'}
      sni: {NGINX_HOST}
""")
    try:
        e.start()
        status, _, body = e.request()
        assert status == 503, body
        assert "revoked" in e.last_log().lower()
    finally:
        e.stop()


def test_simple_with_credential_uses_only_the_ca(env, certs):
    """SIMPLE + credentialName: the server is verified with the credential's CA and no
    client certificate is sent, so nginx (ssl_verify_client on) answers its 400."""
    env.ctl("-n", "istio-system", "apply", "-f", "-", input=f"""
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: originate-mtls-for-nginx
spec:
  host: {NGINX_HOST}
  trafficPolicy:
    tls:
      mode: SIMPLE
      credentialName: client-credential
      sni: {NGINX_HOST}
""")
    env.create_credential()
    env.start()
    status, _, body = env.request()
    assert status == 400, body
    assert b"No required SSL certificate was sent" in body
    rows = secret_rows(env.secrets().stdout)
    assert "kubernetes://client-credential" not in rows
    assert rows["kubernetes://client-credential-cacert"][2] == "ACTIVE"


# ---------------------------------------------------------------------------------------
# rotation


def kubelet_swap(store, ns, name, files):
    """Writes a new version of a Secret the way the kubelet does: a new timestamped
    directory, then the ..data symlink swapped by rename, then visible names as links."""
    d = store / "secrets" / ns / name
    ts = d / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{os.getpid()}{int(time.time() * 1000) % 100000}"
    ts.mkdir(mode=0o700)
    for key, src in files.items():
        shutil.copy(src, ts / key)
        os.chmod(ts / key, 0o600)
    old = os.readlink(d / "..data") if (d / "..data").is_symlink() else None
    tmp = d / "..data_tmp"
    os.symlink(ts.name, tmp)
    os.rename(tmp, d / "..data")
    for key in files:
        link = d / key
        if not link.is_symlink():
            if link.exists():
                link.unlink()
            os.symlink(f"..data/{key}", link)
    if old and (d / old).is_dir():
        shutil.rmtree(d / old)


def run_load(env, stop, results):
    while not stop.is_set():
        try:
            status, _, body = env.request()
            results.append(status if WELCOME in body or status != 200 else -1)
        except Exception as exc:  # noqa: BLE001 - every failure counts
            results.append(repr(exc))


@pytest.mark.parametrize("how", ["apply", "kubelet"])
def test_rotation_under_load(env, certs, how):
    env.create_credential()
    env.start(workers=2)
    assert_welcome(env)
    stop, results = threading.Event(), []
    t = threading.Thread(target=run_load, args=(env, stop, results))
    t.start()
    try:
        time.sleep(0.5)
        before = len(results)
        if how == "apply":
            env.apply_secret({"tls.key": "client2.key", "tls.crt": "client2.crt",
                              "ca.crt": "example.com.crt"})
        else:
            kubelet_swap(env.store, "istio-system", "client-credential",
                         {"tls.key": certs / "client2.key", "tls.crt": certs / "client2.crt",
                          "ca.crt": certs / "example.com.crt"})
        swapped = time.time()
        wait_until(lambda: "02" in env.nginx.serials(), timeout=3, what="serial 2 at nginx")
        took = time.time() - swapped
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(10)
    failures = [r for r in results if r != 200]
    assert not failures, failures[:5]
    assert len(results) > before + 5, "the load did not run through the rotation"
    assert took < 2.0, took
    serials = env.nginx.serials()
    first = serials.index("02")
    # After the first request with the new certificate, no pooled connection or session
    # made with the old one is used again.
    assert set(serials[first:]) == {"02"}, serials[first - 3:]
    rows = secret_rows(env.secrets().stdout)
    assert rows["kubernetes://client-credential"][4] == "2"
    assert "version" in env.gw.stderr() and "certificate serial 2" in env.gw.stderr()


def test_open_connections_are_not_cut_by_rotation(env, certs):
    """A keep-alive client connection keeps working across a rotation; its next request
    uses the new certificate."""
    from gwlib import mesh_context, read_response
    import socket
    env.create_credential()
    env.start()
    ctx = mesh_context(env.mesh["client"])
    with socket.create_connection((env.gw.ip, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=NGINX_HOST) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {NGINX_HOST}\r\n\r\n".encode())
            assert read_response(s)[0] == 200
            env.apply_secret({"tls.key": "client2.key", "tls.crt": "client2.crt",
                              "ca.crt": "example.com.crt"})
            wait_until(lambda: "certificate serial 2" in env.gw.stderr(), what="rotation")
            time.sleep(0.2)
            s.sendall(f"GET / HTTP/1.1\r\nHost: {NGINX_HOST}\r\n\r\n".encode())
            assert read_response(s)[0] == 200
    assert env.nginx.wait_serials(2) == ["01", "02"]


def test_invalid_new_version_keeps_the_last_good_one(env, certs):
    env.create_credential()
    env.start()
    assert_welcome(env)
    # The key of another certificate: rejected, named, and the old version stays.
    env.apply_secret({"tls.key": "client2.key", "tls.crt": "client.example.com.crt",
                      "ca.crt": "example.com.crt"})
    wait_until(lambda: "rejected" in env.gw.stderr(), what="rejection")
    err = env.gw.stderr()
    assert ("warn secret: Secret istio-system/client-credential rejected: private key tls.key: "
            "does not match the certificate tls.crt; keeping the previous version") in err, err
    assert_welcome(env)
    p = env.secrets()
    rows = secret_rows(p.stdout)
    assert rows["kubernetes://client-credential"][2:5] == ["ACTIVE", "true", "1"]
    assert "was rejected" in p.stderr and "does not match" in p.stderr
    _, body = env.gw.admin("/certs")
    item = [i for i in json.loads(body)["secrets"] if i["name"] == "kubernetes://client-credential"][0]
    assert item["rejected"]["reason"] == "private key tls.key: does not match the certificate tls.crt"
    assert item["serial"] == "1"
    # Bad PEM, then keys missing: each rejected in turn.
    env.apply_secret({"tls.key": "client.example.com.key", "tls.crt": "bad.pem",
                      "ca.crt": "example.com.crt"})
    wait_until(lambda: env.gw.stderr().count("rejected") >= 2, what="second rejection")
    assert_welcome(env)
    env.apply_secret({"ca.crt": "example.com.crt"})
    wait_until(lambda: env.gw.stderr().count("rejected") >= 3, what="third rejection")
    assert "has no tls.crt/tls.key or cert/key (found: ca.crt)" in env.gw.stderr()
    assert_welcome(env)
    assert set(env.nginx.serials()) == {"01"}
    # A good new version is taken.
    env.apply_secret({"tls.key": "client2.key", "tls.crt": "client2.crt",
                      "ca.crt": "example.com.crt"})
    wait_until(lambda: "certificate serial 2" in env.gw.stderr(), what="new version")
    assert_welcome(env)
    wait_until(lambda: env.nginx.serials()[-1:] == ["02"], what="serial 2 logged")
    _, body = env.gw.admin("/certs")
    assert "rejected" not in body
    assert_no_key_material(env.gw.stderr(), body)


# ---------------------------------------------------------------------------------------
# CRL, wrong client certificate, missing credential


def test_revoked_server_certificate(env, certs):
    env.apply_secret({"tls.key": "client.example.com.key", "tls.crt": "client.example.com.crt",
                      "ca.crt": "example.com.crt", "ca.crl": "revoked.crl"})
    env.start()
    status, _, body = env.request()
    assert status == 503, body
    line = env.last_log()
    assert " 503 UF,URX " in line, line   # retried twice: Istio's default policy
    assert "revoked" in line.lower() and "TLS_error:" in line, line
    assert b"revoked" in body.lower()
    # The CRL key removed from the Secret: the CRL is gone with it.
    env.apply_secret({"tls.key": "client.example.com.key", "tls.crt": "client.example.com.crt",
                      "ca.crt": "example.com.crt"})
    wait_until(lambda: env.request()[0] == 200, what="CRL cleared")
    # A CRL that revokes nothing lets the server through.
    env.apply_secret({"tls.key": "client.example.com.key", "tls.crt": "client.example.com.crt",
                      "ca.crt": "example.com.crt", "ca.crl": "empty.crl"})
    wait_until(lambda: env.gw.stderr().count("in use") >= 3, what="third version")
    assert_welcome(env)


def test_wrong_client_certificate_gets_nginx_400(env, certs):
    env.create_credential(key="intruder.key", crt="intruder.crt")
    env.start()
    status, _, body = env.request()
    assert status == 400, body
    assert b"The SSL certificate error" in body
    line = env.last_log()
    assert " 400 - via_upstream " in line, line


def test_missing_credential_then_created(env, certs):
    env.start()
    t0 = time.time()
    status, _, body = env.request()
    assert status == 503 and time.time() - t0 < 1.0, body
    line = env.last_log()
    assert " 503 UF,URX " in line   # retried twice: Istio's default policy
    assert "secret kubernetes://client-credential not found" in line, line
    assert "secret kubernetes://client-credential not found" in env.gw.stderr()
    p = env.secrets()
    rows = secret_rows(p.stdout)
    assert rows["kubernetes://client-credential"][1:4] == ["Cert Chain", "WARMING", "false"]
    assert rows["kubernetes://client-credential-cacert"][2] == "WARMING"
    assert "WARMING: secret kubernetes://client-credential not found" in p.stderr
    p = env.ctl("analyze", check=False)
    assert p.returncode == 79
    assert p.stdout == ('Error [IST0101] (DestinationRule istio-system/originate-mtls-for-nginx) '
                        'Referenced credentialName not found: "client-credential" (no Secret '
                        'client-credential in namespace istio-system, where the gateway reads '
                        'it)\n'), p.stdout
    assert p.stderr.startswith("Error: Analyzers found issues when analyzing all namespaces.\n")
    # The Secret arrives: it works without a restart.
    env.create_credential()
    wait_until(lambda: env.request()[0] == 200, timeout=3, what="credential loaded")
    rows = secret_rows(env.secrets().stdout)
    assert rows["kubernetes://client-credential"][2] == "ACTIVE"
    assert env.gw.proc.poll() is None


def test_deleted_credential_fails_fast(env, certs):
    env.create_credential()
    env.start()
    assert_welcome(env)
    env.ctl("delete", "secret", "-n", "istio-system", "client-credential")
    wait_until(lambda: env.request()[0] == 503, what="credential dropped")
    assert "not found" in env.last_log()


# ---------------------------------------------------------------------------------------
# key material and file modes


def test_key_file_readable_by_others_is_warned_about(env, certs):
    env.create_credential()
    key = env.store / "secrets" / "istio-system" / "client-credential" / "tls.key"
    os.chmod(os.path.realpath(key), 0o644)
    env.start()
    assert_welcome(env)
    err = env.gw.stderr()
    m = re.search(r"warn secret: private key file (\S+) is readable by group and others "
                  r"\(mode 0644\)", err)
    assert m, err
    assert m.group(1).endswith("client-credential/tls.key")
    assert_no_key_material(err)
    assert open(certs / "client.example.com.key").read().splitlines()[1] not in err


# ---------------------------------------------------------------------------------------
# analyze


def test_analyze_findings(env, certs):
    store_yaml = f"""
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: nginx-se
spec:
  hosts: [{NGINX_HOST}]
  ports:
  - {{number: 443, name: https, protocol: HTTPS}}
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: broken
spec:
  hosts: [other.example.com]
  gateways: [istio-egressgateway, no-such-gateway]
  http:
  - route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: nope
        port: {{number: 443}}
  - route:
    - destination:
        host: {NGINX_HOST}
        port: {{number: 8443}}
"""
    env.ctl("apply", "-f", "-", input=store_yaml)
    env.apply_secret({"ca.crt": "example.com.crt"})
    p = env.ctl("analyze", check=False)
    assert p.returncode == 79, (p.stdout, p.stderr)
    assert p.stdout.splitlines() == [
        "Error [IST0161] (DestinationRule istio-system/originate-mtls-for-nginx) The credential "
        "referenced by the DestinationRule originate-mtls-for-nginx in namespace istio-system is "
        "invalid, which can cause the traffic not to work as expected: secret "
        "kubernetes://client-credential has no tls.crt/tls.key or cert/key (found: ca.crt)",
        "Warning [IST0132] (VirtualService default/broken) one or more host [other.example.com] "
        "defined in VirtualService default/broken not found in Gateway default/istio-egressgateway.",
        'Error [IST0101] (VirtualService default/broken) Referenced gateway not found: "no-such-gateway"',
        "Error [IST0101] (VirtualService default/broken) Referenced host+subset in destinationrule "
        'not found: "istio-egressgateway.istio-system.svc.cluster.local+nope"',
        'Error [IST0101] (VirtualService default/broken) Referenced host:port not found: '
        f'"{NGINX_HOST}:8443"',
    ], p.stdout
    assert p.stderr == ("Error: Analyzers found issues when analyzing all namespaces.\n"
                        "See https://istio.io/latest/docs/reference/config/analysis for more "
                        "information about causes and resolutions.\n")
    # -n limits the report to one namespace; -o json gives istioctl's JSON.
    p = env.ctl("analyze", "-n", "istio-system", check=False)
    assert p.returncode == 79 and len(p.stdout.splitlines()) == 1 and "IST0161" in p.stdout
    msgs = json.loads(env.ctl("analyze", "-o", "json", check=False).stdout)
    assert [m["code"] for m in msgs] == ["IST0161", "IST0132", "IST0101", "IST0101", "IST0101"]
    assert msgs[0]["level"] == "Error" and msgs[1]["level"] == "Warning"
    assert msgs[0]["origin"] == "DestinationRule istio-system/originate-mtls-for-nginx"
    assert msgs[0]["reference"].startswith("config/istio-system/destinationrules/")
    # Fixed: clean.
    env.ctl("delete", "virtualservice", "broken")
    env.ctl("delete", "secret", "-n", "istio-system", "client-credential")
    env.create_credential()
    p = env.ctl("analyze", "-n", "default", check=False)
    assert p.returncode == 0 and p.stdout == ""
    assert p.stderr == "\u2714 No validation issues found when analyzing namespace: default.\n"


def test_analyze_invalid_key_and_gateway_credential(env, certs):
    env.create_credential(key="client2.key")
    env.ctl("apply", "-f", "-", input="""
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: tls-in
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: server-credential}
""")
    p = env.ctl("analyze", check=False)
    assert p.returncode == 79
    assert p.stdout.splitlines() == [
        "Error [IST0161] (DestinationRule istio-system/originate-mtls-for-nginx) The credential "
        "referenced by the DestinationRule originate-mtls-for-nginx in namespace istio-system is "
        "invalid, which can cause the traffic not to work as expected: secret "
        "kubernetes://client-credential: private key tls.key: does not match the certificate tls.crt",
        'Error [IST0101] (Gateway default/tls-in) Referenced credentialName not found: '
        '"server-credential" (no Secret server-credential in namespace istio-system, where '
        'the gateway reads it)',
    ], p.stdout


# ---------------------------------------------------------------------------------------
# verification options, as for SIMPLE


def apply_mutual_dr(env, extra):
    env.ctl("-n", "istio-system", "apply", "-f", "-", input=f"""
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: originate-mtls-for-nginx
spec:
  host: {NGINX_HOST}
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: MUTUAL
        credentialName: client-credential
        sni: {NGINX_HOST}
{extra}""")


def test_subject_alt_names_are_checked(env, certs):
    """The walkthrough's commented-out subjectAltNames: its CN-only certificate has no SAN,
    so the check fails."""
    apply_mutual_dr(env, f"        subjectAltNames:\n        - {NGINX_HOST}\n")
    env.create_credential()
    env.start()
    status, _, body = env.request()
    assert status == 503, body
    line = env.last_log()
    assert " 503 UF,URX " in line and "TLS_error:" in line, line
    assert "san" in line.lower() or "subject" in line.lower(), line


def test_insecure_skip_verify_without_a_ca(env, certs):
    """A credential without a CA verifies against the system store (here the mesh root,
    which did not sign nginx's certificate); insecureSkipVerify skips that."""
    env.apply_secret({"tls.key": "client.example.com.key", "tls.crt": "client.example.com.crt"})
    env.start()
    status, _, _ = env.request()
    assert status == 503
    assert "TLS_error:" in env.last_log()
    apply_mutual_dr(env, "        insecureSkipVerify: true\n")
    wait_until(lambda: env.request()[0] == 200, what="insecureSkipVerify applied")
    assert env.nginx.wait_serials(1)[-1] == "01"


def test_unreadable_secret_keeps_the_last_good_version(env, certs):
    """A Secret the store cannot read (here a key over Kubernetes' 1 MiB limit, written
    the kubelet's way) is a rejected version: the rest of the configuration still reloads
    and the last good version stays in use."""
    env.create_credential()
    env.start()
    assert_welcome(env)
    big = env.tmp / "big.key"
    big.write_bytes(b"A" * (1 << 21))
    kubelet_swap(env.store, "istio-system", "client-credential",
                 {"tls.key": big, "tls.crt": certs / "client.example.com.crt",
                  "ca.crt": certs / "example.com.crt"})
    wait_until(lambda: "rejected" in env.gw.stderr(), what="rejection")
    err = env.gw.stderr()
    assert "Secret istio-system/client-credential rejected: the Secret's directory" in err, err
    assert "secret key larger than 1MiB" in err
    assert_welcome(env)
    rows = secret_rows(env.secrets().stdout)
    assert rows["kubernetes://client-credential"][2:5] == ["ACTIVE", "true", "1"]


def test_analyze_reports_documents_that_do_not_decode(tmp_path):
    store = tmp_path / "store"
    (store / "config" / "default").mkdir(parents=True)
    (store / "config" / "default" / "broken.yaml").write_text(
        "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\n"
        "metadata:\n  name: broken\nspec:\n  host: x.example.com\n"
        "  trafficPolicy:\n    tls:\n      mode: SIMPEL\n")
    p = egressctl("--store", store, "analyze", check=False)
    assert p.returncode == 79, p
    assert p.stdout.startswith("Error [IST0106] (config/default/broken.yaml:9) Schema validation "
                               "error: DestinationRule default/broken: spec.trafficPolicy.tls.mode: "
                               "unknown value \"SIMPEL\""), p.stdout
    # An empty store has nothing to report.
    p = egressctl("--store", tmp_path / "empty", "analyze", check=False)
    assert (p.returncode, p.stdout) == (0, "")
    assert p.stderr == "\u2714 No validation issues found when analyzing all namespaces.\n"
