"""HTTP/2 from the gateway to an external server when the DestinationRule asks for it
(connectionPool.http.h2UpgradePolicy: UPGRADE) and the server offers h2 by ALPN: nginx with
http2 plays edition.cnn.com; its access log says which protocol each request came in.
Without UPGRADE nothing changes (HTTP/1.1, no ALPN); a server without h2 gets HTTP/1.1
after one look (the key is remembered)."""
import re
import subprocess
import time

import pytest

from gwlib import Gateway, loopback_ip, make_server_ca, make_server_cert, mesh_request, \
    nginx_conf, wait_port
from test_gateway import CNN, apply_first_half, mesh  # noqa: F401 (fixture)
from test_h2_mesh import MiB, payload


class H2Nginx:
    def __init__(self, tmp, ip, cert, key, http2=True):
        self.dir = tmp / f"nginx-h2-{ip}"
        (self.dir / "html").mkdir(parents=True)
        (self.dir / "tmp").mkdir()
        (self.dir / "html" / "politics").write_text("politics over whatever nginx speaks\n")
        (self.dir / "html" / "big").write_bytes(payload(2 * MiB))
        (self.dir / "html" / "up").mkdir()
        body = f"""
  log_format proto '$server_protocol $request_method $uri $status $request_length';
  server {{
    listen {ip}:443 ssl{" http2" if http2 else ""};
    server_name {CNN};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {self.dir}/html;
    access_log {self.dir}/proto.log proto;
    client_max_body_size 10m;
    client_body_temp_path {self.dir}/tmp;
    location /up/ {{ dav_methods PUT; }}
  }}
"""
        (self.dir / "nginx.conf").write_text(nginx_conf(self.dir, body))
        self.proc = subprocess.Popen(["nginx", "-p", str(self.dir), "-c",
                                      str(self.dir / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(ip, 443, proc=self.proc)

    def lines(self, n, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            p = self.dir / "proto.log"
            got = p.read_text().splitlines() if p.exists() else []
            if len(got) >= n or time.time() > deadline:
                return got
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def _setup(tmp_path, store, ctl, walkthrough, mesh, upgrade, http2):  # noqa: F811
    apply_first_half(ctl, walkthrough)
    if upgrade:
        dr = (walkthrough / "03-virtualservice-destinationrule-cnn.yaml").read_text()
        marker = "      tls:\n        mode: SIMPLE"
        assert dr.count(marker) == 1
        dr = dr.replace(marker, "      connectionPool:\n        http:\n"
                        "          h2UpgradePolicy: UPGRADE\n" + marker)
        ctl.ok("apply", "-f", "-", input=dr)
    ip = loopback_ip()
    certs = tmp_path / "site-certs"
    certs.mkdir()
    ca = make_server_ca(certs)
    cert, key = make_server_cert(certs, CNN)
    site = H2Nginx(tmp_path, ip, cert, key, http2=http2)
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{ip} {CNN}\n")
    gw_ip = loopback_ip()
    g = Gateway(tmp_path, store, mesh["gw"], gw_ip, hosts, ca)
    wait_port(gw_ip, 80, proc=g.proc)
    return site, g


def _stats(g):
    _, text = g.admin("/stats/prometheus")
    return {m[1]: int(m[2]) for m in re.finditer(r"^egressgw_(\w+) (\d+)$", text, re.M)}


@pytest.mark.parametrize("upgrade,http2,want", [(True, True, "HTTP/2.0"),
                                                (False, True, "HTTP/1.1"),
                                                (True, False, "HTTP/1.1")])
def test_h2_upgrade_policy(tmp_path, store, ctl, walkthrough, mesh, upgrade, http2,  # noqa: F811
                           want):
    site, g = _setup(tmp_path, store, ctl, walkthrough, mesh, upgrade, http2)
    try:
        for _ in range(3):
            status, _, body = mesh_request(g.ip, 80, CNN, mesh["client"])
            assert status == 200 and body == b"politics over whatever nginx speaks\n"
        status, hdrs, body = mesh_request(g.ip, 80, CNN, mesh["client"], path="/big")
        assert status == 200 and body == payload(2 * MiB), (status, hdrs, len(body))
        # A body upstream: nginx's WebDAV PUT stores it, byte for byte.
        put = payload(300001)
        status, _, body = mesh_request(
            g.ip, 80, CNN, mesh["client"], path="/up/file", method="PUT",
            extra_headers=f"Content-Length: {len(put)}\r\n", body=put)
        assert status == 201, (status, body)
        assert (site.dir / "html" / "up" / "file").read_bytes() == put
        lines = site.lines(5)
        assert len(lines) == 5 and all(ln.startswith(want + " ") for ln in lines), lines
        st = _stats(g)
        if want == "HTTP/2.0":
            # One connection carried the five requests.
            assert st["upstream_cx_http2_total"] == 1 and st["upstream_cx_total"] == 1, st
        else:
            assert st["upstream_cx_http2_total"] == 0, st
            assert st["upstream_cx_http2_fallback_total"] == (1 if upgrade else 0), st
        assert len(g.log_lines()) == 5, g.log_lines()
        assert all(re.search(r'" 20[01] - via_upstream ', ln) for ln in g.log_lines()), g.log_lines()
    finally:
        site.stop()
        assert g.stop() == 0
