"""Envoy's admin endpoints on egressgw's admin port (issue 16): /clusters (text, as
cluster::endpoint::field::value, and ?format=json), /server_info, /stats (Envoy's
`name: value` text, ?filter=, ?format=json), /listeners, /memory, /logging (GET lists,
POST ?level= changes the process's level); mutations are POST-only."""
import json
import re
import socket
import time

from gwlib import wait_until
from sidecarlib import CNN, EGW_HOST
from test_sidecar import apply_cnn, topo, wait_routed  # noqa: F401 (topo: the fixture)


def request(proxy, method, path):
    with socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n"
                  f"Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    ctype = re.search(rb"^content-type: (.*?)\r$", head, re.M | re.I)
    return int(head.split()[1]), (ctype[1].decode() if ctype else ""), body.decode()


def bad_handshake(t):
    """Not TLS, to the gateway's mutual TLS listener: a debug line says it failed."""
    with socket.create_connection((t.gw_ip, 80), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        s.recv(100)
    time.sleep(0.3)


def test_envoy_admin_endpoints(topo):
    t = topo
    apply_cnn(t)
    wait_routed(t)
    gw, sc = t.gateway, t.sidecar
    cl = f"outbound|443||{CNN}"

    # /clusters: Envoy's text, one line per cluster::[endpoint::]field::value.
    code, _, text = request(gw, "GET", "/clusters")
    assert code == 200
    lines = text.splitlines()
    assert f"{cl}::observability_name::{cl}" in lines
    assert f"{cl}::default_priority::max_connections::4294967295" in lines
    assert f"{cl}::added_via_api::true" in lines
    ep = f"{t.cnn_ip}:443"
    assert f"{cl}::{ep}::hostname::{CNN}" in lines, text
    assert f"{cl}::{ep}::health_flags::healthy" in lines
    assert f"{cl}::{ep}::weight::1" in lines
    assert all(len(line.split("::")) in (3, 4) for line in lines), text
    code, ctype, body = request(gw, "GET", "/clusters?format=json")
    assert code == 200 and ctype == "application/json"
    st = {c["name"]: c for c in json.loads(body)["cluster_statuses"]}
    hs = st[cl]["host_statuses"]
    assert [h["address"]["socket_address"] for h in hs] == \
        [{"address": t.cnn_ip, "port_value": 443}]
    assert hs[0]["health_status"] == {"eds_health_status": "HEALTHY"}
    # Envoy's per-host counters: the requests of wait_routed, on pooled connections.
    def host(text, pre, field):
        return int(re.search(rf"^{re.escape(pre)}{field}::(\d+)$", text, re.M)[1])
    gtext = request(gw, "GET", "/clusters")[2]
    pre = f"{cl}::{ep}::"
    assert host(gtext, pre, "rq_total") == host(gtext, pre, "rq_success") + \
        host(gtext, pre, "rq_error") >= 1, gtext
    assert 1 <= host(gtext, pre, "cx_total") <= host(gtext, pre, "rq_total")
    # The sidecar's cluster for the gateway, with the gateway's address; its connection
    # is HTTP/2 (ISTIO_MUTUAL), counted all the same.
    code, _, text = request(sc, "GET", "/clusters")
    assert f"outbound|80|cnn|{EGW_HOST}::{t.gw_ip}:80::hostname::{EGW_HOST}" in text.splitlines()
    pre = f"outbound|80|cnn|{EGW_HOST}::{t.gw_ip}:80::"
    assert host(text, pre, "cx_total") >= 1 and host(text, pre, "rq_total") >= 1, text

    # /server_info
    code, ctype, body = request(gw, "GET", "/server_info")
    info = json.loads(body)
    assert code == 200 and ctype == "application/json"
    assert info["state"] == "LIVE" and info["version"].startswith("egressgw/")
    assert re.fullmatch(r"\d+s", info["uptime_current_epoch"])
    assert info["command_line_options"]["concurrency"] == 1
    assert "--role" in info["command_line_options"]["argv"]

    # /stats: name: value, sorted; Envoy's cluster names.
    code, _, text = request(gw, "GET", "/stats")
    assert code == 200
    names = [line.split(": ")[0] for line in text.splitlines()]
    assert names == sorted(names)
    assert [ln for ln in text.splitlines() if not re.fullmatch(r"\S+: \d+", ln)] == []
    ok = int(re.search(rf"^cluster\.{re.escape(cl)}\.upstream_rq_2xx: (\d+)$", text, re.M)[1])
    assert ok >= 1
    assert int(re.search(rf"^cluster\.{re.escape(cl)}\.upstream_rq_total: (\d+)$", text, re.M)[1]) >= ok
    assert re.search(r"^egressgw\.downstream_rq_total: [1-9]", text, re.M)
    code, _, text = request(gw, "GET", "/stats?filter=upstream_rq_2xx")
    assert text.splitlines() == [f"cluster.{cl}.upstream_rq_2xx: {ok}"], text
    code, _, body = request(gw, "GET", "/stats?format=json&filter=config_reloads")
    assert json.loads(body)["stats"][0]["name"] == "egressgw.config_reloads_total"
    assert request(gw, "GET", "/stats?filter=(")[0] == 400
    assert request(gw, "GET", "/stats?filter=^matches_nothing$")[:3:2] == (200, "")

    # /listeners
    code, _, text = request(gw, "GET", "/listeners")
    assert code == 200 and re.search(rf"^\S+_80::{re.escape(t.gw_ip)}:80$", text, re.M), text
    code, _, text = request(sc, "GET", "/listeners?format=json")
    names = [ls["name"] for ls in json.loads(text)["listener_statuses"]]
    assert "virtualOutbound" in names

    # /memory
    code, ctype, body = request(gw, "GET", "/memory")
    mem = json.loads(body)
    # Envoy's fields, as decimal strings; RSS is never 0 (malloc's own numbers are, under
    # ASan, whose allocator glibc's mallinfo2 does not see).
    assert code == 200 and set(mem) == {"allocated", "heap_size", "pageheap_unmapped",
                                        "pageheap_free", "total_thread_cache",
                                        "total_physical_bytes"}
    assert all(v.isdigit() for v in mem.values()) and int(mem["total_physical_bytes"]) > 0

    # /logging: GET lists; a change needs POST; then debug lines appear, and stop.
    code, _, text = request(gw, "GET", "/logging")
    assert code == 200 and text.startswith("active loggers:") and "  fwd: debug" in text
    assert request(gw, "GET", "/logging?level=info")[0] == 405
    assert request(gw, "PUT", "/logging?level=info")[0] == 405
    assert request(gw, "POST", "/logging?fwd=info")[0] == 400
    assert request(gw, "POST", "/logging?level=loud")[0] == 400
    code, _, text = request(gw, "POST", "/logging?level=warning")
    assert code == 200 and "  fwd: warning" in text
    before = gw.stderr().count("downstream TLS from")
    bad_handshake(t)
    assert gw.stderr().count("downstream TLS from") == before
    assert request(gw, "POST", "/logging?level=debug")[0] == 200
    bad_handshake(t)
    wait_until(lambda: gw.stderr().count("downstream TLS from") > before, what="debug line")
    assert json.loads(request(gw, "GET", "/server_info")[2])["command_line_options"][
        "log_level"] == "debug"

    # The other Envoy endpoints answer GET only.
    for path in ("/clusters", "/server_info", "/stats", "/listeners", "/memory"):
        assert request(gw, "POST", path)[0] == 405, path


def test_proxy_config_file_reads_a_saved_config_dump(topo, tmp_path):
    t = topo
    apply_cnn(t)
    wait_routed(t)
    code, _, dump = request(t.gateway, "GET", "/config_dump")
    assert code == 200
    saved = tmp_path / "dump.json"
    saved.write_text(dump)
    for kind in ("cluster", "route", "listener"):
        live = t.proxyctl("proxy-config", kind)
        assert live.returncode == 0, live.stderr
        r = t.ctl("proxy-config", kind, "--file", saved)
        assert (r.rc, r.out) == (0, live.stdout), (kind, r.err)
    assert "originate-tls-for-edition-cnn-com.default" in \
        t.ctl.ok("proxy-config", "cluster", "-f", saved)
    # The proxy can be gone: the file is all it needs.
    t.gateway.stop()
    r = t.ctl("proxy-config", "route", "--file", saved, "-o", "json")
    assert r.rc == 0 and json.loads(r.out)
    r = t.ctl("proxy-config", "secret", "--file", saved)
    assert r.rc == 1 and "--file holds a config_dump" in r.err
    r = t.ctl("proxy-config", "cluster", "--file", tmp_path / "missing.json")
    assert r.rc == 1 and "missing.json" in r.err


def test_proxy_config_all(topo, tmp_path):
    t = topo
    apply_cnn(t)
    wait_routed(t)
    parts = [t.proxyctl("proxy-config", k).stdout for k in ("cluster", "listener", "route")]
    r = t.proxyctl("proxy-config", "all")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "\n".join(parts), r.stdout
    code, _, dump = request(t.gateway, "GET", "/config_dump")
    saved = tmp_path / "dump.json"
    saved.write_text(dump)
    assert t.ctl.ok("proxy-config", "all", "--file", saved) == r.stdout
    # proxy-config log: the loggers, then a new level for all of them (POST /logging).
    r = t.proxyctl("proxy-config", "log")
    assert r.returncode == 0 and r.stdout.startswith("active loggers:\n") and \
        "  fwd: debug\n" in r.stdout, (r.stdout, r.stderr)
    r = t.proxyctl("proxy-config", "log", "--level", "warning")
    assert r.returncode == 0 and "  fwd: warning\n" in r.stdout, (r.stdout, r.stderr)
    assert "  fwd: warning\n" in request(t.gateway, "GET", "/logging")[2]
    r = t.proxyctl("proxy-config", "log", "--level", "loud")
    assert r.returncode == 1 and "answered 400 to POST /logging?level=loud" in r.stderr
