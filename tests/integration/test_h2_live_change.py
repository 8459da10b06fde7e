"""A live change of what made a pooled HTTP/2 upstream connection (issue 17: "pools that
follow what made them", on HTTP/2): while a stream is open on the gateway's pooled h2
connection to the external server, the DestinationRule changes the connection's SNI, its
ALPN (h2UpgradePolicy) or maxRequestsPerConnection. The open stream finishes on its
connection, byte for byte; the next request goes over a new connection made with the new
settings; the old connection is counted draining until its stream ends, then closes.

nginx with http2 plays edition.cnn.com (the walkthrough's first half, SIMPLE origination
with h2UpgradePolicy: UPGRADE); its access log names each request's connection (nginx's
$connection serial), protocol and SNI. A client that asks for a large file and stops
reading keeps the stream open: the gateway stops consuming it once 256 KiB wait for
the client."""
import json
import re
import socket
import subprocess
import time

import pytest

from gwlib import (Gateway, loopback_ip, make_server_ca, make_server_cert, mesh_context,
                   mesh_request, nginx_conf, wait_port, wait_until)
from test_gateway import CNN, apply_first_half, mesh  # noqa: F401 (fixture)
from test_h2_mesh import payload

CLUSTER = f"outbound|443||{CNN}"
ALT_SNI = "alt.cnn.test"
BIG = 16 << 20


class LogNginx:
    """nginx with http2 whose log says connection, requests on it, protocol, SNI, uri."""

    def __init__(self, tmp, ip, cert, key):
        self.dir = tmp / f"nginx-h2live-{ip}"
        (self.dir / "html").mkdir(parents=True)
        (self.dir / "tmp").mkdir()
        (self.dir / "html" / "politics").write_text("politics\n")
        (self.dir / "html" / "big").write_bytes(payload(BIG))
        body = f"""
  log_format conn '$connection $connection_requests $server_protocol $ssl_server_name $uri $status';
  server {{
    listen {ip}:443 ssl http2;
    server_name {CNN} {ALT_SNI};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {self.dir}/html;
    access_log {self.dir}/conn.log conn;
    client_body_temp_path {self.dir}/tmp;
  }}
"""
        (self.dir / "nginx.conf").write_text(nginx_conf(self.dir, body))
        self.proc = subprocess.Popen(["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(ip, 443, proc=self.proc)

    def entries(self):
        p = self.dir / "conn.log"
        out = []
        for line in (p.read_text().splitlines() if p.exists() else []):
            conn, nreq, proto, sni, uri, status = line.split()
            out.append({"conn": int(conn), "nreq": int(nreq), "proto": proto, "sni": sni,
                        "uri": uri, "status": int(status)})
        return out

    def wait_uri(self, uri, n=1, timeout=5.0):
        """The log entries for uri once there are n (nginx logs after answering)."""
        def got():
            v = [e for e in self.entries() if e["uri"] == uri]
            return v if len(v) >= n else None
        return wait_until(got, timeout=timeout, what=f"{n} x {uri} in nginx's log")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def dr_yaml(sni=None, upgrade="UPGRADE", max_rq=None):
    pool = f"          h2UpgradePolicy: {upgrade}\n"
    if max_rq is not None:
        pool += f"          maxRequestsPerConnection: {max_rq}\n"
    tls = "        mode: SIMPLE\n" + (f"        sni: {sni}\n" if sni else "")
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: originate-tls-for-edition-cnn-com
spec:
  host: {CNN}
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 443
      connectionPool:
        http:
{pool}      tls:
{tls}"""


def find_cluster(obj):
    if isinstance(obj, dict):
        if obj.get("name") == CLUSTER and "tls" in obj:
            return obj
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            found = find_cluster(v)
            if found:
                return found
    return None


def cluster_dump(g):
    code, body = g.admin("/config_dump")
    assert code == 200
    return find_cluster(json.loads(body))


def draining(g):
    _, text = g.admin("/stats/prometheus")
    m = re.search(r'^egressgw_cluster_upstream_cx_draining\{cluster_name="%s"\} (\d+)$'
                  % re.escape(CLUSTER), text, re.M)
    return int(m[1]) if m else 0


@pytest.fixture
def site(tmp_path, store, ctl, walkthrough, mesh):  # noqa: F811
    apply_first_half(ctl, walkthrough)
    ctl.ok("apply", "-f", "-", input=dr_yaml())
    ip = loopback_ip()
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, CNN, sans=[CNN, ALT_SNI])
    nginx = LogNginx(tmp_path, ip, cert, key)
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{ip} {CNN}\n")
    gw_ip = loopback_ip()
    g = Gateway(tmp_path, store, mesh["gw"], gw_ip, hosts, ca, workers=1)
    wait_port(gw_ip, 80, proc=g.proc)
    yield type("Site", (), {"nginx": nginx, "gw": g, "ctl": ctl, "mesh": mesh})()
    nginx.stop()
    assert g.stop() == 0


CHANGES = {
    # name: (the new DestinationRule, what the dump shows once it is served, what the
    # next request's nginx entry must show)
    "sni": (dr_yaml(sni=ALT_SNI), lambda c: c["tls"]["sni"] == ALT_SNI,
            lambda e: e["sni"] == ALT_SNI and e["proto"] == "HTTP/2.0"),
    "h2UpgradePolicy": (dr_yaml(upgrade="DO_NOT_UPGRADE"), lambda c: c["h2_upgrade"] is False,
                        lambda e: e["proto"] == "HTTP/1.1"),
    "maxRequestsPerConnection": (dr_yaml(max_rq=1), lambda c: c["max_requests_per_connection"] == 1,
                                 lambda e: e["proto"] == "HTTP/2.0" and e["nreq"] == 1),
}


@pytest.mark.parametrize("change", [
    "sni", "h2UpgradePolicy",
    "maxRequestsPerConnection",
])
def test_open_stream_finishes_next_request_gets_new_settings(site, change):
    g, nginx = site.gw, site.nginx
    status, _, body = mesh_request(g.ip, 80, CNN, site.mesh["client"], path="/politics")
    assert status == 200 and body == b"politics\n"
    first = nginx.wait_uri("/politics")[0]
    assert first["proto"] == "HTTP/2.0" and first["sni"] == CNN, first
    assert draining(g) == 0

    # A stream left open on the pooled connection.
    ctx = mesh_context(site.mesh["client"])
    raw = socket.create_connection((g.ip, 80), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=CNN)
    try:
        s.sendall(f"GET /big HTTP/1.1\r\nHost: {CNN}\r\nConnection: close\r\n\r\n".encode())
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
        time.sleep(0.3)

        new_dr, served, want = CHANGES[change]
        site.ctl.ok("apply", "-f", "-", input=new_dr)
        wait_until(lambda: served(cluster_dump(g)), timeout=5, what=f"the {change} change served")
        # The old connection still carries the open stream: counted draining (for a
        # change that the pool follows).
        if change != "maxRequestsPerConnection":
            assert draining(g) == 1, draining(g)

        status, _, body = mesh_request(g.ip, 80, CNN, site.mesh["client"], path="/politics")
        assert status == 200 and body == b"politics\n"
        nxt = nginx.wait_uri("/politics", n=2)[1]
        assert nxt["conn"] != first["conn"], ("the next request rode the old connection", first, nxt)
        assert want(nxt), nxt

        # The open stream finishes, whole.
        head, _, rest = got.partition(b"\r\n\r\n")
        total = rest
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            total += chunk
    finally:
        s.close()
    assert len(total) == BIG and total == payload(BIG), len(total)
    big = nginx.wait_uri("/big")[0]
    assert big["conn"] == first["conn"] and big["status"] == 200, big
    wait_until(lambda: draining(g) == 0, timeout=2, what="the old connection closed")
