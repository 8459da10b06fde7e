"""Operating egressgw as operators operate Envoy and daemons (issue 20): SIGUSR1 and admin
POST /reopen_logs reopen the access log (logrotate's postrotate), SIGHUP reloads and
reopens, SIGTERM/SIGINT drain (/ready 503 at once, listeners open for --drain-announce,
then closed, requests in flight finish within --drain-timeout, admin up to the end),
POST /healthcheck/fail|ok and /drain_listeners (POST only), and a listener address another
process holds is refused at start while the process's own workers share theirs."""
import os
import signal
import socket
import subprocess
import threading
import time
import types

import pytest

from conftest import Ctl
from gwlib import BUILD, Gateway, free_port, loopback_ip, scaled, wait_until
from hardlib import (RawClient, RecordingServer, default_handler, plain_gateway_yaml,
                     service_entry_yaml, start_gateway, stats, virtual_service_yaml, write_hosts)

HOST = "up.test"
SLOW = {"delay": 0.0}


def slow_handler(sock, req):
    """The upstream: /slow waits SLOW["delay"] seconds before answering."""
    if req.target.startswith("/slow"):
        time.sleep(SLOW["delay"])
    return default_handler(sock, req)


@pytest.fixture
def site(tmp_path, egressctl_bin):
    up_ip = loopback_ip()
    up = RecordingServer(up_ip, 80, handler=slow_handler)
    hosts = tmp_path / "hosts"
    write_hosts(hosts, {HOST: up_ip})
    store = tmp_path / "store"
    ctl = Ctl(egressctl_bin, store, tmp_path)
    ctl.ok("apply", "-f", "-", input="---\n".join(
        [plain_gateway_yaml(), service_entry_yaml(HOST, 80, "HTTP"), virtual_service_yaml(HOST, HOST, 80)]))
    e = type("Site", (), {})()
    e.dir, e.hosts, e.store, e.ctl, e.up = tmp_path, hosts, store, ctl, up
    e.gateways = []

    def start(extra=(), workers=1, ip=None):
        g = start_gateway(tmp_path, store, hosts, extra=extra, workers=workers, ip=ip)
        e.gateways.append(g)
        return g
    e.start = start
    yield e
    try:
        for g in e.gateways:
            g.stop()
    finally:
        up.stop()


def get(gw, path="/x"):
    c = RawClient(gw.ip, 80)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        return c.response()
    finally:
        c.close()


def refuses(ip, port=80):
    try:
        with socket.create_connection((ip, port), timeout=1):
            return False
    except OSError:
        return True


def wait_exit(gw, timeout):
    try:
        return gw.proc.wait(scaled(timeout))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"egressgw still running {timeout}s later:\n{gw.stderr()[-3000:]}")


# ---------------------------------------------------------------- SIGTERM, SIGINT

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_announces_then_drains(site, sig):
    """/ready is 503 at once while the listener still serves new connections for the
    announce period; then the listener closes, the request in flight finishes, the admin
    endpoint answers (503) during the whole drain, and the process exits 0."""
    gw = site.start(extra=("--drain-announce", "1.5s", "--drain-timeout", "10s"), workers=2)
    assert gw.admin("/ready") == (200, "LIVE\n")
    SLOW["delay"] = 3.0
    result = {}

    def slow():
        result["r"] = get(gw, "/slow")
    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: any(r.target == "/slow" for r in site.up.requests()), 5, "the slow request upstream")
    t0 = time.time()
    os.kill(gw.proc.pid, sig)
    wait_until(lambda: gw.admin("/ready")[0] == 503, 1, "/ready 503 at once")
    assert time.time() - t0 < 1.0
    assert gw.admin("/ready") == (503, "DRAINING\n")
    # Announce period: new connections are still accepted and served.
    assert time.time() - t0 < 1.2
    code, _, body = get(gw, "/during-announce")
    assert code == 200, body
    assert gw.proc.poll() is None
    # Then the listener closes, while the slow request is still in flight.
    wait_until(lambda: refuses(gw.ip), 5, "the listener to close after the announce period")
    assert time.time() - t0 >= 1.4
    assert t.is_alive(), "the slow request should still be in flight"
    assert gw.admin("/ready")[0] == 503, "the admin endpoint stays up during the drain"
    assert "egressgw_server_state 1" in gw.admin("/stats/prometheus")[1]
    t.join(10)
    assert result["r"][0] == 200, result
    assert wait_exit(gw, 5) == 0
    err = gw.stderr()
    assert "draining: /ready answers 503" in err and "drain: every connection is closed" in err


def test_drain_timeout_bounds_the_drain(site):
    gw = site.start(extra=("--drain-announce", "0", "--drain-timeout", "1s"))
    SLOW["delay"] = 8.0
    t = threading.Thread(target=lambda: pytest.raises(EOFError, get, gw, "/slow"), daemon=True)
    t.start()
    wait_until(lambda: any(r.target == "/slow" for r in site.up.requests()), 5, "the slow request upstream")
    t0 = time.time()
    gw.proc.terminate()
    assert wait_exit(gw, 6) == 0
    assert 0.9 <= time.time() - t0 < 4
    assert "--drain-timeout passed with requests still in flight" in gw.stderr()


def test_second_stop_signal_cuts_the_announce_short(site):
    gw = site.start(extra=("--drain-announce", "30s"))
    gw.proc.terminate()
    wait_until(lambda: gw.admin("/ready")[0] == 503, 2, "/ready 503")
    assert gw.proc.poll() is None
    time.sleep(0.3)
    gw.proc.send_signal(signal.SIGINT)
    assert wait_exit(gw, 5) == 0
    assert "announce period cut short" in gw.stderr()


# ---------------------------------------------------------------- logs and reload

def rotate_and_check(site, gw, reopen):
    """Moves the access log aside as logrotate does, asks for a reopen, and checks that
    the next request's line goes to a new file at the old path and none is lost."""
    assert get(gw, "/before")[0] == 200
    wait_until(lambda: any("/before" in l for l in gw.log_lines()), 5, "the first log line")
    rotated = gw.alog.with_name(gw.alog.name + ".1")
    os.rename(gw.alog, rotated)
    assert get(gw, "/between")[0] == 200
    reopen()
    wait_until(gw.alog.exists, 5, "the access log reopened at its path")
    assert get(gw, "/after")[0] == 200
    wait_until(lambda: any("/after" in l for l in gw.log_lines()), 5, "the next line in the new file")
    old = rotated.read_text()
    new = gw.alog.read_text()
    assert "/before" in old and "/after" not in old
    assert "/after" in new and "/before" not in new
    assert "/between" in old + new, "a line written around the rotation is lost"
    assert gw.proc.poll() is None


def test_sigusr1_reopens_the_access_log(site):
    gw = site.start(workers=2)
    rotate_and_check(site, gw, lambda: os.kill(gw.proc.pid, signal.SIGUSR1))
    assert "access log" in gw.stderr() and "reopened" in gw.stderr()


def test_admin_reopen_logs(site):
    gw = site.start()
    assert gw.admin("/reopen_logs", "GET")[0] == 405
    rotate_and_check(site, gw, lambda: gw.admin("/reopen_logs", "POST") == (200, "OK\n") or
                     pytest.fail("POST /reopen_logs"))


def test_sighup_reloads_and_reopens(site):
    gw = site.start()
    before = stats(gw)["egressgw_config_reloads_total"]
    rotate_and_check(site, gw, lambda: os.kill(gw.proc.pid, signal.SIGHUP))
    wait_until(lambda: stats(gw)["egressgw_config_reloads_total"] == before + 1, 5,
               "one configuration reload after SIGHUP")
    assert "SIGHUP" in gw.stderr()


def test_sighup_reload_applies_a_change_made_without_inotify(site):
    """What SIGHUP reads is the store as it is: a route added while the gateway runs is
    served after the HUP (the watcher would find it too; the counter shows the HUP's)."""
    gw = site.start()
    assert get(gw, "/x")[0] == 200
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_until(lambda: "configuration version" in gw.stderr().split("SIGHUP", 1)[-1], 5,
               "a configuration applied after SIGHUP")
    assert get(gw, "/x")[0] == 200


def test_sigusr2_does_not_kill(site):
    gw = site.start()
    os.kill(gw.proc.pid, signal.SIGUSR2)
    wait_until(lambda: "ignored" in gw.stderr(), 5, "SIGUSR2 logged as ignored")
    assert gw.proc.poll() is None and get(gw)[0] == 200


# ---------------------------------------------------------------- admin endpoints

def test_healthcheck_fail_and_ok(site):
    gw = site.start()
    # A GET changes nothing.
    code, body = gw.admin("/healthcheck/fail", "GET")
    assert code == 405 and "POST" in body
    assert gw.admin("/ready") == (200, "LIVE\n")
    assert gw.admin("/healthcheck/fail", "POST") == (200, "OK\n")
    assert gw.admin("/ready") == (503, "HEALTH_CHECK_FAILED\n")
    assert stats(gw)["egressgw_healthcheck_failed"] == 1
    # Failing the health check drains nothing: traffic is still served.
    assert get(gw)[0] == 200
    assert gw.admin("/healthcheck/ok", "GET")[0] == 405
    assert gw.admin("/ready")[0] == 503
    assert gw.admin("/healthcheck/ok", "POST") == (200, "OK\n")
    assert gw.admin("/ready") == (200, "LIVE\n")
    assert stats(gw)["egressgw_healthcheck_failed"] == 0


def test_drain_listeners(site):
    gw = site.start(workers=2)
    assert gw.admin("/drain_listeners", "GET")[0] == 405
    assert get(gw)[0] == 200 and not refuses(gw.ip)
    assert gw.admin("/drain_listeners", "POST") == (200, "OK\n")
    wait_until(lambda: refuses(gw.ip), 5, "the listeners closed")
    assert gw.admin("/ready") == (503, "DRAINING\n")
    time.sleep(0.5)
    # The process and its admin endpoint stay up; a reload opens no listener again.
    assert gw.proc.poll() is None
    os.kill(gw.proc.pid, signal.SIGHUP)
    time.sleep(0.5)
    assert refuses(gw.ip) and gw.admin("/ready")[0] == 503
    gw.proc.terminate()
    assert wait_exit(gw, 3) == 0


# ---------------------------------------------------------------- ports held by others

def run_gateway(site, ip, extra=()):
    """egressgw that is expected to refuse to start: (returncode, stderr)."""
    p = subprocess.run([str(BUILD / "egressgw"), "--role", "gateway", "--store", str(site.store),
                        "--hosts-file", str(site.hosts), "--listen-address", ip, "--workers", "2",
                        "--admin", f"127.0.0.1:{free_port()}", *extra],
                       capture_output=True, text=True, timeout=scaled(10),
                       env={**os.environ, "SSL_CERT_FILE": "/dev/null"})
    return p.returncode, p.stderr


@pytest.mark.parametrize("reuseport", [True, False])
def test_foreign_listener_is_refused(site, reuseport):
    ip = loopback_ip()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        # The case the kernel would let egressgw share silently.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((ip, 80))
    s.listen(8)
    try:
        rc, err = run_gateway(site, ip)
    finally:
        s.close()
    assert rc == 1, err
    assert "egressgw: gateway listener " in err
    assert f"{ip}:80: address already in use by another process" in err, err
    assert "(Gateway default/istio-egressgateway, server http-80)" in err, err


def test_second_egressgw_is_refused_and_first_keeps_serving(site):
    ip = loopback_ip()
    first = site.start(workers=2, ip=ip)
    # The first one's two workers share the port through SO_REUSEPORT.
    for i in range(6):
        assert get(first, f"/first-{i}")[0] == 200
    rc, err = run_gateway(site, ip)
    assert rc == 1 and f"{ip}:80: address already in use by another process" in err, err
    for i in range(6):
        assert get(first, f"/still-{i}")[0] == 200
    assert first.proc.poll() is None


def test_sidecar_outbound_held_is_refused(site):
    ip = loopback_ip()
    port = free_port(ip)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((ip, port))
    s.listen(8)
    try:
        p = subprocess.run([str(BUILD / "egressgw"), "--role", "sidecar", "--store", str(site.store),
                            "--outbound", f"{ip}:{port}", "--admin", f"127.0.0.1:{free_port()}"],
                           capture_output=True, text=True, timeout=scaled(10))
    finally:
        s.close()
    assert p.returncode == 1
    assert f"sidecar capture listener --outbound {ip}:{port}: address already in use" in p.stderr


def test_status_port_is_read_only(site):
    """--status: what probes and scrapers need, on an address the pod exposes, and
    nothing that changes state."""
    port = free_port()
    gw = site.start(extra=("--status", f"127.0.0.1:{port}"))
    status = types.SimpleNamespace(admin_port=port)

    def st(path, method="GET"):
        return Gateway.admin(status, path, method)
    assert st("/healthz/ready") == (200, "LIVE\n")
    assert st("/healthz/live") == (200, "LIVE\n")
    assert "egressgw_downstream_rq_total" in st("/stats/prometheus")[1]
    for path in ("/drain_listeners", "/healthcheck/fail", "/reopen_logs"):
        assert st(path, "POST")[0] == 405
    assert st("/config_dump")[0] == 404 and st("/certs")[0] == 404
    assert gw.admin("/ready") == (200, "LIVE\n"), "a POST to the status port changed state"
    # Failing the health check fails readiness, not liveness.
    assert gw.admin("/healthcheck/fail", "POST")[0] == 200
    assert st("/healthz/ready")[0] == 503 and st("/healthz/live")[0] == 200
    gw.proc.terminate()
    assert wait_exit(gw, 5) == 0
