"""Replicas behind a load balancer (issue 20): three gateways behind HAProxy, which plays
the Kubernetes Service and health-checks each gateway's /ready as a readiness probe does;
steady load from the application through the sidecar (HTTP/2 over ISTIO_MUTUAL to the
Service address); each gateway rolled in turn (SIGTERM, then a new process on the same
address). The drain must make this lossless: /ready turns 503 at once, HAProxy stops
sending new connections during --drain-announce, then the gateway's GOAWAY moves the
sidecar's pooled connection to another replica. 0 failed requests."""
import subprocess
import threading
import time

import pytest

from gwlib import free_port, loopback_ip, mesh_request, scaled, wait_until
from hardlib import RawClient
from sidecarlib import CNN, EGW_HOST, Egressgw, wait_port
from test_sidecar import Topology, apply_cnn, wait_routed

REPLICAS = 3
ANNOUNCE = "1s"
# The walkthrough Gateway's ISTIO_MUTUAL server (02-gateway-destinationrule-cnn.yaml).
GW_PORT = 80


class HAProxy:
    """TCP load balancing on the gateway Service's address, as kube-proxy does, with a
    health check of each gateway's /ready (a readiness probe) every 100 ms."""

    def __init__(self, tmp, ip, backends):
        cfg = tmp / "haproxy.cfg"
        servers = "".join(
            f"  server g{i} {bip}:{GW_PORT} check addr 127.0.0.1 port {aport}\n"
            for i, (bip, aport) in enumerate(backends))
        cfg.write_text(f"""global
  maxconn 2000
defaults
  mode tcp
  # No retry on another server: kube-proxy's DNAT has none either.
  retries 0
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend egressgateway
  bind {ip}:{GW_PORT}
  default_backend gateways
backend gateways
  balance roundrobin
  option httpchk GET /ready
  http-check expect status 200
  default-server inter 100ms fall 1 rise 2
{servers}""")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=open(tmp / "haproxy.err", "w"))
        wait_port(ip, GW_PORT, proc=self.proc)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


class Traffic:
    """n threads calling request(state) back to back until finish(); state is a dict per
    thread (a kept connection). Anything but a 200 is a failure; after an exception the
    thread's state is dropped (its connection closed) and it goes on."""

    def __init__(self, request, n):
        self.request, self.ok, self.failures = request, 0, []
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(n)]
        for th in self.threads:
            th.start()

    def run(self):
        state = {}
        while not self.stop_ev.is_set():
            try:
                status, body = self.request(state)
                with self.lock:
                    if status == 200:
                        self.ok += 1
                    else:
                        self.failures.append((time.time(), status, body[:200]))
            except Exception as exc:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.failures.append((time.time(), repr(exc)))
                if "c" in state:
                    state.pop("c").close()
        if "c" in state:
            state.pop("c").close()

    def finish(self):
        self.stop_ev.set()
        for th in self.threads:
            th.join(30)
        return self.ok, self.failures


def through_sidecar(port):
    """The application: GET http://edition.cnn.com/politics to the sidecar (HTTP proxy),
    on a keep-alive connection of its own."""
    def request(state):
        if "c" not in state:
            state["c"] = RawClient("127.0.0.1", port)
        state["c"].send(f"GET http://{CNN}/politics HTTP/1.1\r\nHost: {CNN}\r\n\r\n".encode())
        status, _, body = state["c"].response()
        return status, body
    return request


def direct_mesh_client(t):
    """A workload that opens a new ISTIO_MUTUAL connection to the gateway Service for each
    request (HTTP/1.1, Connection: close): it meets every listener as it closes."""
    def request(state):
        status, _, body = mesh_request(t.gw_ip, GW_PORT, CNN, t.sleep_id, path="/politics",
                                       host=CNN)
        return status, body
    return request


@pytest.fixture
def fleet(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    # The Topology's own gateway listens elsewhere; EGW_HOST (its hosts file entry, gw_ip)
    # is HAProxy's address, the Service's.
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs,
                 gw_extra=["--listen-address", loopback_ip()])
    t.replicas, t.lb = [], None
    try:
        apply_cnn(t)
        t.backends = [(loopback_ip(), free_port()) for _ in range(REPLICAS)]

        def start_replica(i, gen):
            ip, aport = t.backends[i]
            g = Egressgw(tmp_path, f"replica{i}-{gen}", "gateway", store, t.gw_id, t.hosts, t.dns,
                         env={"SSL_CERT_FILE": str(t.demo_ca)}, admin_port=aport,
                         extra=["--namespace", "istio-system", "--labels", "istio=egressgateway",
                                "--listen-address", ip, "--log-level", "info",
                                "--drain-announce", ANNOUNCE, "--drain-timeout", "5s"])
            wait_port(ip, GW_PORT, proc=g.proc)
            return g
        t.start_replica = start_replica
        t.replicas = [start_replica(i, 0) for i in range(REPLICAS)]
        t.lb = HAProxy(tmp_path, t.gw_ip, t.backends)
        yield t
    finally:
        if t.lb:
            t.lb.stop()
        rcs = [g.stop() for g in t.replicas]
        assert t.stop() == [0] * (1 + len(t.sidecars))
        assert rcs == [0] * len(rcs)


def test_rolling_restart_behind_a_load_balancer_loses_no_request(fleet):
    t = fleet
    wait_routed(t, host=CNN)
    load = Traffic(through_sidecar(t.sidecar.outbound), 4)
    direct = Traffic(direct_mesh_client(t), 2)
    try:
        time.sleep(1.0)
        for i in range(REPLICAS):
            old = t.replicas[i]
            old.proc.terminate()
            wait_until(lambda: old.admin("/ready")[0] == 503, 1, "/ready 503 at once")
            assert old.proc.wait(scaled(15)) == 0, old.stderr()[-2000:]
            assert "drain: every connection is closed" in old.stderr(), old.stderr()[-2000:]
            new = t.start_replica(i, 1)
            t.replicas[i] = new
            wait_until(lambda: new.admin("/ready")[0] == 200, 5, "the new replica ready")
            time.sleep(0.5)      # two health checks: HAProxy sends to it again
        time.sleep(1.0)
    finally:
        ok, failures = load.finish()
        dok, dfailures = direct.finish()
    # What each process served, from its access log: the rolled ones carried the load
    # (the sidecar's pooled HTTP/2 connection moves on each GOAWAY), then the new ones.
    rolled = [len((t.tmp / f"replica{i}-0-access.log").read_text().splitlines())
              for i in range(REPLICAS)]
    served = [int(g.stat("downstream_rq_total")) for g in t.replicas]
    print(f"rolling restart of {REPLICAS} gateways behind HAProxy: through the sidecar {ok} "
          f"requests, {len(failures)} failed; direct mesh clients (a connection per request) "
          f"{dok}, {len(dfailures)} failed; the rolled processes served {rolled}, the new "
          f"ones {served}")
    assert not failures, failures[:5]
    assert not dfailures, dfailures[:5]
    assert dok > 20, dok
    assert ok > 100, ok
    assert sum(1 for n in rolled if n > 0) >= 2, rolled
    assert sum(served) > 0
