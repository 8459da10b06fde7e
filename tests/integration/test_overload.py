"""The heap budget (issue 17: "memory bounded as a whole, as Envoy's overload manager
does"): --overload-max-heap with Envoy's fixed_heap monitor and its shrink_heap,
stop_accepting_requests and reject_incoming_connections actions (proxy/overload.c).

A plain-HTTP Gateway server (port 80) routes om.test to a Python upstream that answers
/big with 8 MiB. Slow clients ask for /big and read nothing: the gateway holds up to
256 KiB of each response before it stops reading the upstream, so every one of them
costs heap. Without a budget that grows with the number of clients; with one, the
gateway answers new requests 503 "envoy overloaded" (flag OM) once the heap reaches the
stop_accepting_requests threshold, so the heap and RSS stay bounded however many slow
clients come, and it serves again once they are gone."""
import re
import socket
import subprocess
import time

import pytest

from gwlib import BUILD, Gateway, loopback_ip, mesh_request, scaled, wait_port, wait_until
from hardlib import RawClient, log_entry, plain_env, respond, start_gateway
from test_gateway import CNN, LOG_RE, apply_first_half, mesh  # noqa: F401 (fixture)
from test_h2_mesh import H2Client, site  # noqa: F401 (fixture)

HOST = "om.test"
BIG = 8 << 20
MiB = 1 << 20
ASAN = b"__asan_init" in (BUILD / "egressgw").read_bytes()


def handler(sock, req):
    if req.target == "/big":
        try:
            respond(sock, 200, b"x" * BIG)
        except OSError:
            return False
        return True
    respond(sock, 200, b"small\n")
    return True


@pytest.fixture
def env(tmp_path, egressctl_bin):
    yield from plain_env(tmp_path, egressctl_bin, HOST, handler=handler)


def prom(gw):
    code, body = gw.admin("/stats/prometheus")
    assert code == 200
    return {m[1]: int(m[2]) for m in re.finditer(r"^((?:envoy|egressgw)_[^\s{]+) (\d+)$", body, re.M)}


def action(gw, name):
    return prom(gw)[f"envoy_overload_envoy_overload_actions_{name}_active"]


def rss(gw):
    with open(f"/proc/{gw.proc.pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)[1]) * 1024


def get(gw, path="/small"):
    c = RawClient(gw.ip)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nx-request-id: {path[1:]}-{time.time()}\r\n\r\n".encode())
        return c.response()
    finally:
        c.close()


def slow_client(gw):
    """Asks for /big and reads nothing but the first bytes: the status line, to tell a
    response being held (200) from a refusal (503)."""
    s = socket.create_connection((gw.ip, 80), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET /big HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    head = s.recv(12)
    return s, int(head.split()[1])


def test_budget_holds_with_many_slow_clients_and_recovers(env):
    budget = 24 * MiB
    gw = env.gw = start_gateway(env.tmp, env.store, env.hosts, extra=[
        "--overload-max-heap", str(budget), "--overload-shrink-heap", "0.7",
        "--overload-stop-requests", "0.8", "--overload-reject-connections", "1",
        "--overload-refresh-interval", "50ms"])
    assert get(gw)[0] == 200
    assert action(gw, "stop_accepting_requests") == 0
    rss0 = rss(gw)
    st = prom(gw)
    assert st["egressgw_overload_max_heap_bytes"] == budget
    assert 0 < st["envoy_server_memory_allocated"] < 0.7 * budget, st

    # 250 slow clients, unbounded, would hold at least 250 x 256 KiB = 62 MiB.
    codes = []
    for _ in range(250):
        s, code = slow_client(gw)
        env.clients.append(s)
        codes.append(code)
        time.sleep(0.01)
    held, refused = codes.count(200), codes.count(503)
    assert held + refused == len(codes), codes
    assert refused > 0 and held < 150, (held, refused)

    # The budget holds: what the heap holds, and RSS, stay near the budget.
    st = prom(gw)
    assert st["envoy_overload_envoy_overload_actions_stop_accepting_requests_active"] == 1
    assert st["envoy_overload_envoy_resource_monitors_fixed_heap_pressure"] >= 80
    assert st["envoy_server_memory_allocated"] <= budget, st
    if not ASAN:   # ASan's RSS holds its shadow memory and quarantine
        assert rss(gw) - rss0 <= budget + 8 * MiB, (rss0, rss(gw))
    assert st["egressgw_downstream_rq_overload_refused_total"] >= refused

    # A new request gets Envoy's answer: 503, "envoy overloaded", OM, details overload.
    status, _, body = get(gw, "/fresh")
    assert status == 503 and body == b"envoy overloaded", (status, body)
    entry = log_entry(gw, "fresh-")
    assert entry["code"] == "503" and entry["flags"] == "OM" and entry["details"] == "overload"
    code, text = gw.admin("/stats")
    assert "overload.envoy.overload_actions.stop_accepting_requests.active: 1" in text
    assert "overload.envoy.resource_monitors.fixed_heap.pressure:" in text
    code, text = gw.admin("/server_info")
    assert '"name": "envoy.overload_actions.stop_accepting_requests"' in text, text
    assert re.search(r"warn overload: heap \d+ KiB of 24576 KiB .* active:.* stop_accepting_requests",
                     gw.stderr()), gw.stderr()[-2000:]
    print(f"slow clients: {held} held, {refused} refused 503 OM; allocated "
          f"{st['envoy_server_memory_allocated'] >> 10} KiB of {budget >> 10} KiB; RSS "
          f"{rss0 >> 10} KiB idle, {rss(gw) >> 10} KiB under pressure")

    # Recovery: the slow clients go, the pressure goes, requests are served again and
    # the heap given back to the system.
    for s in env.clients:
        s.close()
    env.clients = []
    wait_until(lambda: action(gw, "stop_accepting_requests") == 0, timeout=scaled(10),
               what="stop_accepting_requests inactive")
    wait_until(lambda: action(gw, "shrink_heap") == 0, timeout=scaled(10), what="shrink_heap inactive")
    assert get(gw)[0] == 200
    st = prom(gw)
    assert st["envoy_overload_envoy_overload_actions_shrink_heap_shrink_count_total"] >= 1
    assert st["envoy_server_memory_allocated"] < 0.7 * budget
    if not ASAN:
        assert rss(gw) - rss0 <= 8 * MiB, (rss0, rss(gw))
    for name in ("shrink_heap", "stop_accepting_requests"):
        assert re.search(rf"info overload: .*no longer active:.* {name}", gw.stderr())
    print(f"after: RSS {rss(gw) >> 10} KiB, allocated {st['envoy_server_memory_allocated'] >> 10} KiB")


def test_reject_incoming_connections(env):
    """A budget the idle gateway already passes: every new connection is accepted and
    closed (reject_incoming_connections) and counted; the admin endpoint still answers."""
    # start_gateway waits for port 80 by connecting: a connection accepted and closed
    # passes that wait.
    gw = env.gw = start_gateway(env.tmp, env.store, env.hosts, extra=["--overload-max-heap", "64Ki"])
    wait_until(lambda: action(gw, "reject_incoming_connections") == 1, timeout=scaled(5),
               what="reject_incoming_connections active")
    before = prom(gw)["egressgw_downstream_cx_overload_reject_total"]
    for _ in range(5):
        c = RawClient(gw.ip)
        try:
            c.send(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        except OSError:
            pass
        assert c.at_eof(scaled(2)), "a connection over the budget was served"
        c.close()
    assert prom(gw)["egressgw_downstream_cx_overload_reject_total"] >= before + 5
    assert env.up.requests() == []


@pytest.mark.parametrize("args,problem", [
    (["--overload-max-heap", "lots"], "--overload-max-heap: want bytes"),
    (["--overload-max-heap", "1Gi", "--overload-stop-requests", "1.5"],
     "--overload-stop-requests: want a fraction"),
    (["--overload-refresh-interval", "1h"], "--overload-refresh-interval: want 10ms..60s"),
])
def test_bad_overload_flags_are_refused(env, args, problem):
    p = subprocess.run([str(BUILD / "egressgw"), "--role", "gateway", "--store", str(env.store),
                        *args], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and problem in p.stderr, p.stderr


def test_http2_and_mesh_requests_get_503_om(tmp_path, store, ctl, walkthrough, mesh, site):  # noqa: F811
    """stop_accepting_requests on the ISTIO_MUTUAL listener, for an HTTP/2 stream and an
    HTTP/1.1 request alike (a threshold the idle gateway passes; connections are still
    accepted: reject_incoming_connections is at the whole budget)."""
    apply_first_half(ctl, walkthrough)
    gw_ip = loopback_ip()
    g = Gateway(tmp_path, store, mesh["gw"], gw_ip, site["hosts"], site["ca"], extra=[
        "--overload-max-heap", "64Mi", "--overload-shrink-heap", "1",
        "--overload-stop-requests", "0.01", "--overload-reject-connections", "1"])
    try:
        wait_port(gw_ip, 80, proc=g.proc)
        wait_until(lambda: action(g, "stop_accepting_requests") == 1, timeout=scaled(5),
                   what="stop_accepting_requests active")
        assert action(g, "reject_incoming_connections") == 0
        c = H2Client(gw_ip, mesh["client"])
        sid = c.request("/politics")
        c.run()
        c.close()
        assert c.streams[sid]["status"] == 503 and bytes(c.streams[sid]["body"]) == b"envoy overloaded"
        status, _, body = mesh_request(gw_ip, 80, CNN, mesh["client"])
        assert status == 503 and body == b"envoy overloaded"
        lines = [LOG_RE.match(ln) for ln in g.wait_log(2)]
        assert [(m["proto"], m["code"], m["flags"], m["details"]) for m in lines] == [
            ("HTTP/2", "503", "OM", "overload"), ("HTTP/1.1", "503", "OM", "overload")], lines
        assert prom(g)["egressgw_downstream_rq_overload_refused_total"] == 2
    finally:
        assert g.stop() == 0
