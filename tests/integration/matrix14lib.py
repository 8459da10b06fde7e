"""Issue 14's feature matrix: one request function that takes a VirtualService feature's
request through any of the four paths a client has to it, so each feature's test runs the
same checks in every cell:

  gw-h1    a client straight to the egress gateway's port 80, HTTP/1.1 (plaintext)
  gw-h2    a mesh workload straight to the gateway's port 80: ISTIO_MUTUAL with ALPN h2
           (the gateway serves HTTP/2 over mTLS only)
  mesh-h1  the application's HTTP/1.1 to the sidecar (as its HTTP proxy), the sidecar's
           HTTP/2 mesh hop to the gateway
  mesh-h2  the application's h2c (prior knowledge) to the sidecar's outbound port, then
           the same mesh hop
  side-h1, side-h2  the same two application paths to a sidecar whose route is bound to
           `mesh` (the feature applies in the sidecar)

The HTTP/2 client is python3-h2 (curl 7.88 fails the second request on a reused h2c
connection). hop_mesh() starts a sidecar and a gateway once per module (meshlib.Mesh)
with the module's configuration applied through egressctl."""
import contextlib
import socket
import time

import h2.config
import h2.connection
import h2.events

from conftest import Ctl
from gwlib import loopback_ip, make_server_ca, make_server_cert, mesh_context, read_response, \
    wait_port
from h2origin import H2Origin
from meshlib import Mesh, egress_gateway_yaml
from sidecarlib import EGW_HOST

GW_CELLS = ["gw-h1", "gw-h2", "mesh-h1", "mesh-h2"]


class Resp:
    """What the client got: status, fields (lower-case name -> first value), body, and
    the HTTP version it was spoken in."""

    def __init__(self, status, headers, body, proto):
        self.status, self.headers, self.body, self.proto = status, headers, body, proto

    def __repr__(self):
        return f"Resp({self.status}, {self.headers}, {self.body[:200]!r}, {self.proto})"


def _h1(sock, method, target, host, headers, body):
    fields = "".join(f"{k}: {v}\r\n" for k, v in headers)
    if body or method in ("POST", "PUT"):
        fields += f"content-length: {len(body)}\r\n"
    sock.sendall(f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n{fields}"
                 "connection: close\r\n\r\n".encode() + body)
    status, hdrs, data = read_response(sock)
    return Resp(status, hdrs, data, "HTTP/1.1")


def h2_exchange(sock, authority, reqs, scheme="http", timeout=20.0):
    """Sends reqs [(method, path, [(name, value)], body)] as concurrent streams of one
    HTTP/2 connection on sock and returns a Resp per request, in order (status 0: the
    stream was reset). At most 100 requests: they are all sent before the server's
    SETTINGS are read, and a server may refuse streams beyond its
    SETTINGS_MAX_CONCURRENT_STREAMS (100 is what RFC 9113 recommends at least)."""
    assert len(reqs) <= 100, len(reqs)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                 header_encoding="utf-8"))
    conn.initiate_connection()
    order = []
    for method, path, hdrs, body in reqs:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", method), (":scheme", scheme),
                                (":authority", authority), (":path", path),
                                *[(k.lower(), v) for k, v in hdrs]], end_stream=not body)
        if body:
            conn.send_data(sid, body, end_stream=True)
        order.append(sid)
    sock.sendall(conn.data_to_send())
    got = {sid: {"status": None, "headers": {}, "body": b"", "done": False} for sid in order}
    sock.settimeout(timeout)
    while not all(g["done"] for g in got.values()):
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed with streams open: {got}")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                for k, v in ev.headers:
                    if k == ":status":
                        got[ev.stream_id]["status"] = int(v)
                    else:
                        got[ev.stream_id]["headers"].setdefault(k, v)
            elif isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id]["body"] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                got[ev.stream_id]["done"] = True
            elif isinstance(ev, h2.events.StreamReset):
                got[ev.stream_id].update(done=True, status=0)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise AssertionError(f"GOAWAY {ev.error_code} with streams open: {got}")
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    return [Resp(got[s]["status"], got[s]["headers"], got[s]["body"], "HTTP/2") for s in order]


def _connect(m, cell):
    """(socket, kind) for a cell: kind h1proxy, h1, h2c or h2tls."""
    side = cell.startswith(("mesh", "side"))
    ip, port = ("127.0.0.1", m.sidecar.outbound) if side else (m.gw_ip, 80)
    raw = socket.create_connection((ip, port), timeout=20)
    if cell == "gw-h2":
        ctx = mesh_context(m.app_id)
        ctx.set_alpn_protocols(["h2"])
        s = ctx.wrap_socket(raw, server_hostname=m.host)
        assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
        return s
    return raw


def send_many(m, cell, reqs, host=None):
    """reqs [(method, path, [(name, value)], body)] in cell; HTTP/2 cells send them as
    streams of one connection, HTTP/1.1 cells one connection each. A Resp per request."""
    host = host or m.host
    if cell.endswith("h2"):
        with _connect(m, cell) as s:
            return h2_exchange(s, host, reqs)
    out = []
    for method, path, hdrs, body in reqs:
        with _connect(m, cell) as s:
            # The sidecar is the application's HTTP proxy: absolute-form, as curl sends.
            target = f"http://{host}{path}" if cell.startswith(("mesh", "side")) else path
            out.append(_h1(s, method, target, host, hdrs, body))
    return out


def send(m, cell, path, method="GET", headers=(), body=b"", host=None):
    return send_many(m, cell, [(method, path, list(headers), body)], host)[0]


def gw_proto(cell):
    """The protocol the gateway's access log shows for a request of this cell (the mesh
    hop is HTTP/2 whatever the application spoke)."""
    return "HTTP/1.1" if cell == "gw-h1" else "HTTP/2"


@contextlib.contextmanager
def hop_mesh(tmp, egressctl_bin, yaml, hosts, host, gateway=True):
    """A sidecar and (gateway=True) an egress gateway sharing a store to which yaml was
    applied (no warning allowed); m.host: the external host the requests name, m.ctl."""
    store = tmp / "store"
    ctl = Ctl(egressctl_bin, store, tmp)
    ctl.ok("apply", "-f", "-", input=yaml)
    m = Mesh(tmp, ctl, egressctl_bin, store, hosts, gateway=gateway)
    m.host, m.ctl = host, ctl
    try:
        if gateway:
            wait_port(m.gw_ip, 80, proc=m.gateway.proc)
        yield m
    finally:
        assert m.stop() == ([0, 0] if gateway else [0])


class Stamped(list):
    """A recorder's request list that stamps each request with its arrival time
    (time.monotonic()) as the recorder's handler appends it."""

    def append(self, x):
        x["t"] = time.monotonic()
        super().append(x)


def log_lines_for(proxy, path):
    """The access log lines (raw) of proxy whose request path is path."""
    return [ln for ln in proxy.log_lines() if f" {path} HTTP/" in ln]


H2SVC = "h2svc.example.test"


def _h2_hop_yaml(ca, endpoints, route_extra, dest_extra, port_extra):
    """The mesh hop for H2SVC, the gateway's route to its port 443 (route_extra: YAML
    lines of the route, indented 4; dest_extra: of its destination, indented 6), and the rule's port-level entry for 443: HTTP/2
    upgrade, TLS with the test's CA, and port_extra (indented 6). Everything for 443 is
    in the port-level entry, since such an entry replaces the rule's top level (Istio:
    fields it omits take their defaults, not the top level's)."""
    eps = "".join(f"  - address: {ip}\n" for ip in endpoints)
    return egress_gateway_yaml(H2SVC) + f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: h2svc
spec:
  hosts: [{H2SVC}]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: STATIC
  endpoints:
{eps}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: h2svc
spec:
  hosts: [{H2SVC}]
  gateways: [istio-egressgateway, mesh]
  http:
  - match:
    - gateways: [mesh]
    route:
    - destination:
        host: {EGW_HOST}
        subset: api
        port:
          number: 80
  - match:
    - gateways: [istio-egressgateway]
{route_extra}    route:
    - destination:
        host: {H2SVC}
        port:
          number: 443
{dest_extra}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: h2svc
spec:
  host: {H2SVC}
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 443
{port_extra}      connectionPool:
        http:
          h2UpgradePolicy: UPGRADE
      tls:
        mode: SIMPLE
        caCertificates: {ca}
"""


class PrefixScripts(dict):
    """h2origin scripts chosen by the longest prefix of the path that has one."""

    def get(self, path, default=None):
        best = max((p for p in self if path.startswith(p)), key=len, default=None)
        return self[best] if best is not None else default


@contextlib.contextmanager
def h2_origin_hop(tmp, egressctl_bin, scripts, n=1, route_extra="", dest_extra="",
                  port_extra=""):
    """sidecar -> gateway -> n python3-h2 origins (h2origin.H2Origin, TLS with ALPN h2 on
    port 443 of their own addresses, each with .name o<i>) behind a STATIC ServiceEntry
    for H2SVC; the gateway originates TLS and HTTP/2 (h2UpgradePolicy: UPGRADE). scripts:
    {path prefix: fn(conn, request)}. Yields (mesh, origins); m.host is H2SVC."""
    certs = tmp / "certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, H2SVC)
    origins = []
    try:
        for i in range(n):
            origins.append(H2Origin(loopback_ip(), cert, key, PrefixScripts(scripts)))
            origins[-1].name = f"o{i}"
        yaml = _h2_hop_yaml(ca, [o.lsock.getsockname()[0] for o in origins], route_extra,
                            dest_extra, port_extra)
        with hop_mesh(tmp, egressctl_bin, yaml, {}, H2SVC) as m:
            yield m, origins
    finally:
        for o in origins:
            o.stop()
