"""egressctl proxy-config cluster|route|listener against a running egressgw: istioctl's
tables (exact header lines and rows, padding included), -o json|yaml, the filters, the
ADMIN_ADDR forms, and the errors when the admin endpoint cannot be used."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from gwlib import BUILD, Gateway, free_port, loopback_ip, wait_port

CLUSTER_HEADER = ("SERVICE FQDN        PORT     SUBSET     DIRECTION     TYPE           "
                  "DESTINATION RULE")
CLUSTERS_FIRST_HALF = [
    CLUSTER_HEADER,
    "edition.cnn.com     80       -          outbound      STRICT_DNS     "
    "originate-tls-for-edition-cnn-com.default",
    "edition.cnn.com     443      -          outbound      STRICT_DNS     "
    "originate-tls-for-edition-cnn-com.default",
]
ROUTES_FIRST_HALF = [
    "NAME        VHOST NAME             DOMAINS             MATCH     VIRTUAL SERVICE",
    "http.80     edition.cnn.com:80     edition.cnn.com     /*        "
    "direct-cnn-through-egress-gateway.default",
]


def listener_lines(ip, rows):
    """The listener table istioctl prints (tabwriter padding 1) for rows of
    (port, match, destination) on address ip."""
    cells = [("ADDRESSES", "PORT", "MATCH", "DESTINATION")] + [(ip, str(p), m, d) for p, m, d in rows]
    widths = [max(len(r[i]) for r in cells) + 1 for i in range(3)]
    return ["".join(r[i].ljust(widths[i]) for i in range(3)) + r[3] for r in cells]


def run(*args, env=None):
    """egressctl ARGS with EGRESSGW_ADMIN unset unless env sets it."""
    e = {k: v for k, v in os.environ.items() if k not in ("EGRESSGW_ADMIN", "EGRESSGW_STORE")}
    e.update(env or {})
    p = subprocess.run([str(BUILD / "egressctl"), *map(str, args)], capture_output=True,
                       text=True, timeout=60, env=e)
    return p.returncode, p.stdout, p.stderr


def ok(*args, env=None):
    rc, out, err = run(*args, env=env)
    assert rc == 0 and err == "", (args, rc, err)
    return out


def make_mesh(d, egressctl):
    ca, gw = d / "mesh-ca", d / "gw-identity"
    subprocess.run([egressctl, "ca", "init", "--dir", ca], check=True, capture_output=True)
    subprocess.run([egressctl, "ca", "issue", "--dir", ca, "--namespace", "istio-system",
                    "--service-account", "istio-egressgateway-service-account", "--out", gw],
                   check=True, capture_output=True)
    return gw


def start_gateway(d, egressctl, walkthrough, files, extra_yaml=None):
    """Applies the walkthrough files (06 into istio-system, as the walkthrough does) and
    extra_yaml to a fresh store, and starts a gateway on a loopback address of its own.
    The external names resolve to an address where nothing listens: proxy-config only
    reads the configuration."""
    store = d / "store"
    for f in files:
        ns = ["-n", "istio-system"] if f.startswith("06-") else []
        subprocess.run([egressctl, "--store", store, *ns, "apply", "-f", walkthrough / f],
                       check=True, capture_output=True)
    if extra_yaml:
        subprocess.run([egressctl, "--store", store, "apply", "-f", "-"], input=extra_yaml,
                       text=True, check=True, capture_output=True)
    hosts = d / "hosts"
    hosts.write_text("127.0.0.1 edition.cnn.com my-nginx.mesh-external.svc.cluster.local\n")
    gw_id = make_mesh(d, egressctl)
    ip = loopback_ip()
    g = Gateway(d, store, gw_id, ip, hosts, gw_id / "root-cert.pem")
    wait_port(ip, 80 if "02-gateway-destinationrule-cnn.yaml" in files else 443, proc=g.proc)
    g.store = store
    return g


FIRST_HALF = ["01-serviceentry-cnn.yaml", "02-gateway-destinationrule-cnn.yaml",
              "03-virtualservice-destinationrule-cnn.yaml"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory, egressctl_bin, walkthrough):
    """A gateway serving the walkthrough's first half, shared by the read-only tests."""
    g = start_gateway(tmp_path_factory.mktemp("pc-first-half"), egressctl_bin, walkthrough,
                      FIRST_HALF)
    g.addr = f"127.0.0.1:{g.admin_port}"
    yield g
    g.stop()


# ---------------------------------------------------------------------------------------
# the walkthrough's first half


def test_cluster_table(gw):
    assert ok("proxy-config", "cluster", gw.addr).splitlines() == CLUSTERS_FIRST_HALF


def test_route_table(gw):
    assert ok("proxy-config", "route", gw.addr).splitlines() == ROUTES_FIRST_HALF


def test_listener_table(gw):
    out = ok("proxy-config", "listener", gw.addr)
    # The server is HTTPS (ISTIO_MUTUAL) on port 80: its filter chain matches the SNI.
    assert out.splitlines() == listener_lines(gw.ip, [(80, "SNI: edition.cnn.com", "Route: http.80")])


def test_plural_and_short_kind_names(gw):
    assert ok("proxy-config", "clusters", gw.addr) == ok("proxy-config", "c", gw.addr)
    assert ok("proxy-config", "routes", gw.addr) == ok("proxy-config", "r", gw.addr)
    assert ok("proxy-config", "listeners", gw.addr) == ok("proxy-config", "l", gw.addr)
    assert ok("proxy-config", "-o", "short", "cluster", gw.addr).splitlines() == CLUSTERS_FIRST_HALF


def test_admin_address_forms(gw):
    port = str(gw.admin_port)
    for word in [port, f"localhost:{port}", f"http://127.0.0.1:{port}/"]:
        assert ok("proxy-config", "cluster", word).splitlines() == CLUSTERS_FIRST_HALF, word


def test_istioctl_command_pasted(gw):
    """istioctl's pod argument and -n are accepted and ignored; the admin address comes
    from $EGRESSGW_ADMIN."""
    env = {"EGRESSGW_ADMIN": gw.addr}
    out = ok("-n", "istio-system", "proxy-config", "cluster", "deploy/istio-egressgateway", env=env)
    assert out.splitlines() == CLUSTERS_FIRST_HALF
    out = ok("proxy-config", "routes", "istio-egressgateway-5b7f9c6d4-x2x7k.istio-system",
             "-n", "istio-system", env=env)
    assert out.splitlines() == ROUTES_FIRST_HALF
    # An explicit address wins over the environment.
    env = {"EGRESSGW_ADMIN": f"127.0.0.1:{free_port()}"}
    assert ok("proxy-config", "cluster", gw.addr, env=env).splitlines() == CLUSTERS_FIRST_HALF


# ---------------------------------------------------------------------------------------
# filters


def test_cluster_filters(gw):
    def rows(*flags):
        return ok("proxy-config", "cluster", gw.addr, *flags).splitlines()

    assert rows("--fqdn", "edition.cnn.com", "--port", "443") == [CLUSTERS_FIRST_HALF[0], CLUSTERS_FIRST_HALF[2]]
    assert rows("--port", "80") == CLUSTERS_FIRST_HALF[:2]
    assert rows("--fqdn", "cnn") == CLUSTERS_FIRST_HALF
    assert rows("--direction", "outbound") == CLUSTERS_FIRST_HALF
    # Nothing selected: the header alone, its columns as wide as their titles plus 5.
    empty = ["SERVICE FQDN     PORT     SUBSET     DIRECTION     TYPE     DESTINATION RULE"]
    assert rows("--fqdn", "httpbin.org") == empty
    assert rows("--subset", "cnn") == empty
    assert rows("--direction", "inbound") == empty
    assert rows("--port", "8443") == empty


def test_route_and_listener_filters(gw):
    assert ok("proxy-config", "route", gw.addr, "--name", "http.80").splitlines() == ROUTES_FIRST_HALF
    assert ok("proxy-config", "route", gw.addr, "--name", "http.443").splitlines() == [
        "NAME     VHOST NAME     DOMAINS     MATCH     VIRTUAL SERVICE"]
    full = listener_lines(gw.ip, [(80, "SNI: edition.cnn.com", "Route: http.80")])
    assert ok("proxy-config", "listener", gw.addr, "--port", "80").splitlines() == full
    assert ok("proxy-config", "listener", gw.addr, "--address", gw.ip).splitlines() == full
    assert ok("proxy-config", "listener", gw.addr, "--port", "443").splitlines() == [
        "ADDRESSES PORT MATCH DESTINATION"]


def test_flag_of_another_kind_is_unknown(gw):
    rc, out, err = run("proxy-config", "route", gw.addr, "--fqdn", "edition.cnn.com")
    assert rc == 1 and out == ""
    assert err.startswith("error: unknown flag: --fqdn\n")
    rc, _, err = run("proxy-config", "cluster", gw.addr, "--port", "http")
    assert rc == 1 and 'invalid argument "http" for "--port" flag' in err


# ---------------------------------------------------------------------------------------
# -o json|yaml


def test_json_output(gw):
    clusters = json.loads(ok("proxy-config", "cluster", gw.addr, "-o", "json"))
    assert [c["name"] for c in clusters] == ["outbound|80||edition.cnn.com",
                                             "outbound|443||edition.cnn.com"]
    c443 = clusters[1]
    assert c443["port"] == 443 and c443["discovery"] == "STRICT_DNS"
    assert c443["destination_rule"] == "default/originate-tls-for-edition-cnn-com"
    assert c443["tls"]["mode"] == "SIMPLE" and c443["tls"]["sni"] is None
    assert c443["tls"]["verify_host_auto"] is True

    routes = json.loads(ok("proxy-config", "route", gw.addr, "-o", "json"))
    assert [r["name"] for r in routes] == ["http.80"]
    route = routes[0]["virtual_hosts"][0]["routes"][0]
    assert route["route"] == [{"cluster": "outbound|443||edition.cnn.com", "weight": 100}]

    listeners = json.loads(ok("proxy-config", "listener", gw.addr, "-o", "json"))
    assert len(listeners) == 1
    assert listeners[0]["address"] == f"{gw.ip}:80" and listeners[0]["route_config"] == "http.80"
    assert listeners[0]["servers"][0]["tls_mode"] == "ISTIO_MUTUAL"

    # The filters select what -o json shows.
    only = json.loads(ok("proxy-config", "cluster", gw.addr, "--port", "443", "-o", "json"))
    assert [c["name"] for c in only] == ["outbound|443||edition.cnn.com"]
    assert json.loads(ok("proxy-config", "route", gw.addr, "--name", "x", "-o", "json")) == []


def test_yaml_output(gw):
    out = ok("proxy-config", "route", gw.addr, "-o", "yaml")
    assert out.startswith("- name: http.80\n  virtual_hosts:\n  - name: edition.cnn.com:80\n"), out
    out = ok("proxy-config", "cluster", gw.addr, "--port", "443", "-o", "yaml")
    assert out.startswith("- name: outbound|443||edition.cnn.com\n"), out
    assert "\n  discovery: STRICT_DNS\n" in out


def test_unknown_output_format(gw):
    rc, out, err = run("proxy-config", "cluster", gw.addr, "-o", "wide")
    assert rc == 1 and out == ""
    assert err == 'error: output format "wide" not supported (want short, json or yaml)\n'


# ---------------------------------------------------------------------------------------
# errors


def test_unreachable_admin_endpoint():
    port = free_port()
    rc, out, err = run("proxy-config", "cluster", f"127.0.0.1:{port}")
    assert rc == 1 and out == ""
    assert err == f"error: cannot reach the admin endpoint at 127.0.0.1:{port}: Connection refused\n"
    # Through $EGRESSGW_ADMIN and a pasted pod name, the same message names the address used.
    rc, _, err = run("proxy-config", "listener", "deploy/istio-egressgateway",
                     env={"EGRESSGW_ADMIN": f"127.0.0.1:{port}"})
    assert rc == 1
    assert err == f"error: cannot reach the admin endpoint at 127.0.0.1:{port}: Connection refused\n"


def test_invalid_admin_address():
    rc, out, err = run("proxy-config", "cluster", "127.0.0.1:99999")
    assert rc == 1 and out == ""
    assert err.startswith('error: invalid admin address "127.0.0.1:99999"')


class FakeAdmin:
    """A loopback server answering every connection with the same bytes, to see what
    proxy-config makes of answers a gateway would not give."""

    def __init__(self, answer):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.answer = answer
        self.requests = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data.decode("latin-1"))
                conn.sendall(self.answer)

    def close(self):
        self.sock.close()


def http_answer(status, body, ctype="application/json"):
    return (f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n{body}").encode()


@pytest.mark.parametrize("answer, message", [
    (http_answer("404 Not Found", "no such page\n", "text/plain"),
     "error: the admin endpoint at {addr} answered 404 to GET /config_dump: no such page\n"),
    (b"SSH-2.0-OpenSSH_9.2\r\n",
     "error: the admin endpoint at {addr} did not answer with HTTP (is {addr} the gateway's "
     "--admin address?)\n"),
    (http_answer("200 OK", "{}\n"), "error: no clusters found\n"),
    (http_answer("200 OK", '{"clusters": []}\n'), "error: no clusters found\n"),
])
def test_admin_answers_that_are_not_a_dump(answer, message):
    fake = FakeAdmin(answer)
    try:
        rc, out, err = run("proxy-config", "cluster", fake.addr)
        assert rc == 1 and out == ""
        assert err == message.format(addr=fake.addr)
        assert fake.requests[0].startswith("GET /config_dump HTTP/1.1\r\n")
    finally:
        fake.close()


def test_admin_answer_that_is_not_json():
    fake = FakeAdmin(http_answer("200 OK", '{"clusters": [ {"name": ]}\n'))
    try:
        rc, out, err = run("proxy-config", "cluster", fake.addr)
        assert rc == 1 and out == ""
        assert err.startswith(f"error: cannot read the configuration dump: http://{fake.addr}/config_dump:1:")
    finally:
        fake.close()


# ---------------------------------------------------------------------------------------
# usage


def test_help_for_proxy_config_and_each_kind():
    top = ok("proxy-config", "--help")
    assert "Usage:\n  egressctl proxy-config cluster|endpoint|route|listener|secret|authz [ADMIN_ADDR]" in top
    assert ok("help", "proxy-config") == top
    assert "  proxy-config " in ok("--help")
    for kind, flags in [("cluster", ["--fqdn", "--port", "--subset", "--direction"]),
                        ("route", ["--name"]), ("listener", ["--address", "--port"]),
                        ("secret", []), ("authz", []),
                        ("endpoint", ["--cluster", "--address", "--port", "--status"])]:
        out = ok("proxy-config", kind, "--help")
        assert f"Usage:\n  egressctl proxy-config {kind} [ADMIN_ADDR]" in out, out
        for f in flags + ["--output", "deploy/istio-egressgateway", "EGRESSGW_ADMIN"]:
            assert f in out, (kind, f)


def test_missing_or_unknown_kind():
    rc, out, err = run("proxy-config")
    assert rc == 1 and out == "" and err.startswith(
        "error: say what to show: cluster, endpoint, route, listener, secret or authz\n")
    rc, out, err = run("proxy-config", "bootstrap")
    assert rc == 1 and out == ""
    assert err.startswith('error: unknown kind "bootstrap" for "egressctl proxy-config"')
    # A filter of another kind is an unknown flag, as for istioctl's subcommands.
    rc, out, err = run("proxy-config", "cluster", "--status", "healthy")
    assert rc == 1 and out == "" and err.startswith("error: unknown flag: --status\n")
    rc, out, err = run("proxy-config", "endpoint", "--fqdn", "x")
    assert rc == 1 and out == "" and err.startswith("error: unknown flag: --fqdn\n")
    # Endpoints and their state live in the running proxy only, not in a config_dump.
    rc, out, err = run("proxy-config", "endpoint", "--file", "/dev/null")
    assert rc == 1 and out == "" and "needs a running proxy" in err


# ---------------------------------------------------------------------------------------
# the whole walkthrough, more routes, and a reload


EXTRA = """\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: plain-gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin.example.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin.example.com
  subsets:
  - name: v1
    labels:
      version: v1
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin.example.com
  gateways:
  - plain-gw
  http:
  - match:
    - uri:
        prefix: /get
    - uri:
        exact: /status
    - uri:
        regex: "^/delay/[0-9]+$"
    route:
    - destination:
        host: httpbin.example.com
        subset: v1
  - route:
    - destination:
        host: httpbin.example.com
"""


@pytest.fixture
def full_gw(tmp_path, egressctl_bin, walkthrough):
    files = FIRST_HALF[:1] + ["04-gateway-destinationrule-nginx.yaml", "05-virtualservice-nginx.yaml",
                              "06-destinationrule-originate-mtls-nginx.yaml"]
    g = start_gateway(tmp_path, egressctl_bin, walkthrough, files, EXTRA)
    g.addr = f"127.0.0.1:{g.admin_port}"
    wait_port(g.ip, 8080, proc=g.proc)
    yield g
    g.stop()


def test_second_half_and_more_routes(full_gw):
    a = full_gw.addr
    assert ok("proxy-config", "cluster", a).splitlines() == [
        "SERVICE FQDN                                 PORT     SUBSET     DIRECTION     TYPE           DESTINATION RULE",
        "edition.cnn.com                              80       -          outbound      STRICT_DNS     ",
        "edition.cnn.com                              443      -          outbound      STRICT_DNS     ",
        "httpbin.example.com                          80       -          outbound      STATIC         httpbin.default",
        "httpbin.example.com                          80       v1         outbound      STATIC         httpbin.default",
        "my-nginx.mesh-external.svc.cluster.local     443      -          outbound      STRICT_DNS     originate-mtls-for-nginx.istio-system",
    ]
    assert ok("proxy-config", "route", a).splitlines() == [
        "NAME          VHOST NAME                                       DOMAINS                                      MATCH                     VIRTUAL SERVICE",
        "http.443      my-nginx.mesh-external.svc.cluster.local:443     my-nginx.mesh-external.svc.cluster.local     /*                        direct-nginx-through-egress-gateway.default",
        "http.8080     httpbin.example.com:8080                         httpbin.example.com                          /get*                     httpbin.default",
        "http.8080     httpbin.example.com:8080                         httpbin.example.com                          /status                   httpbin.default",
        "http.8080     httpbin.example.com:8080                         httpbin.example.com                          regex ^/delay/[0-9]+$     httpbin.default",
        "http.8080     httpbin.example.com:8080                         httpbin.example.com                          /*                        httpbin.default",
    ]
    assert ok("proxy-config", "listener", a).splitlines() == listener_lines(full_gw.ip, [
        (443, "SNI: my-nginx.mesh-external.svc.cluster.local", "Route: http.443"),
        (8080, "ALL", "Route: http.8080"),
    ])
    assert ok("proxy-config", "cluster", a, "--subset", "v1").splitlines() == [
        "SERVICE FQDN            PORT     SUBSET     DIRECTION     TYPE       DESTINATION RULE",
        "httpbin.example.com     80       v1         outbound      STATIC     httpbin.default",
    ]
    assert ok("proxy-config", "route", a, "--name", "http.443").splitlines() == [
        "NAME         VHOST NAME                                       DOMAINS                                      MATCH     VIRTUAL SERVICE",
        "http.443     my-nginx.mesh-external.svc.cluster.local:443     my-nginx.mesh-external.svc.cluster.local     /*        direct-nginx-through-egress-gateway.default",
    ]


def test_tables_follow_a_reload(full_gw):
    """proxy-config shows the configuration the gateway serves now: after a change to the
    store, the next table shows the new snapshot."""
    a = full_gw.addr
    subprocess.run([BUILD / "egressctl", "--store", full_gw.store, "delete", "destinationrule",
                    "httpbin"], check=True, capture_output=True)
    want = [
        "SERVICE FQDN            PORT     SUBSET     DIRECTION     TYPE       DESTINATION RULE",
        "httpbin.example.com     80       -          outbound      STATIC     ",
    ]
    deadline = time.time() + 10
    while True:
        rows = ok("proxy-config", "cluster", a, "--fqdn", "httpbin").splitlines()
        if rows == want or time.time() > deadline:
            break
        time.sleep(0.1)
    # The subset's cluster is gone with its rule; the VirtualService's route to it stays.
    assert rows == want
