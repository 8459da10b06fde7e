"""Workload identity rotation (issue 20): a new certificate written into --identity
(cert-chain.pem, key.pem, root-cert.pem) is served within seconds with no other store
change, whether written in place (`egressctl ca issue` renewing it) or by a kubelet-style
..data symlink swap, with 0 failed requests under load; a certificate close to expiry is
warned about in the log, exported as egressgw_cert_expiry_seconds, and flagged by
`egressctl proxy-config secret`."""
import shutil
import socket
import ssl
import threading
import time

from gwlib import mesh_context, wait_until
from hardlib import stats
from test_mtls import (NGINX_HOST, WELCOME, certs, egressctl, env, kubelet_swap,  # noqa: F401
                       mesh)

GW_SA = ("--namespace", "istio-system", "--service-account", "istio-egressgateway-service-account")


def served_cert(e):
    """The DER certificate the gateway presents on its ISTIO_MUTUAL listener."""
    ctx = mesh_context(e.mesh["client"])
    with socket.create_connection((e.gw.ip, 443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=NGINX_HOST) as s:
            return s.getpeercert(binary_form=True)


def file_cert(path):
    pem = path.read_text()
    first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


def issue(e, out, ttl="24h"):
    egressctl("ca", "issue", "--dir", e.mesh["ca"], *GW_SA, "--out", out, "--ttl", ttl)


class Load:
    """Mesh requests through the gateway in a loop, every result kept."""

    def __init__(self, e):
        self.e, self.results, self.stop = e, [], threading.Event()
        self.t = threading.Thread(target=self.run)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            try:
                status, _, body = self.e.request()
                self.results.append(status if WELCOME in body or status != 200 else -1)
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.results.append(repr(exc))

    def finish(self):
        self.stop.set()
        self.t.join(10)
        failures = [r for r in self.results if r != 200]
        assert not failures, failures[:5]
        assert len(self.results) > 5, "the load did not run"
        return len(self.results)


def start(e, identity=None):
    e.mesh["ca"] = e.mesh["gw"].parent / "mesh-ca"
    if identity:
        e.mesh["gw"] = identity
    e.create_credential()
    e.start(workers=2)
    status, _, body = e.request()
    assert status == 200 and WELCOME in body


def test_renewed_in_place_is_picked_up(env):
    start(env)
    before = served_cert(env)
    assert before == file_cert(env.mesh["gw"] / "cert-chain.pem")
    load = Load(env)
    time.sleep(0.3)
    t0 = time.time()
    issue(env, env.mesh["gw"])
    new = file_cert(env.mesh["gw"] / "cert-chain.pem")
    assert new != before
    wait_until(lambda: served_cert(env) == new, 3, "the renewed certificate served")
    took = time.time() - t0
    time.sleep(0.3)
    n = load.finish()
    assert took < 3, took
    print(f"identity renewed in place: served after {took:.2f}s, {n} requests, 0 failed")


def test_kubelet_swap_is_picked_up(env, tmp_path):
    # The identity as a kubelet mounts a Secret: KEY -> ..data/KEY, ..data -> ..TIMESTAMP.
    first, second = tmp_path / "issued-1", tmp_path / "issued-2"
    env.mesh["ca"] = env.mesh["gw"].parent / "mesh-ca"
    issue(env, first)
    names = ("cert-chain.pem", "key.pem", "root-cert.pem")
    (tmp_path / "secrets" / "pod" / "istio-certs").mkdir(parents=True)
    kubelet_swap(tmp_path, "pod", "istio-certs", {n: first / n for n in names})
    ident = tmp_path / "secrets" / "pod" / "istio-certs"
    assert (ident / "..data").is_symlink() and (ident / "cert-chain.pem").is_symlink()
    start(env, identity=ident)
    assert served_cert(env) == file_cert(first / "cert-chain.pem")
    load = Load(env)
    time.sleep(0.3)
    issue(env, second)
    t0 = time.time()
    kubelet_swap(tmp_path, "pod", "istio-certs", {n: second / n for n in names})
    new = file_cert(second / "cert-chain.pem")
    wait_until(lambda: served_cert(env) == new, 3, "the swapped certificate served")
    took = time.time() - t0
    time.sleep(0.3)
    n = load.finish()
    print(f"identity ..data swap: served after {took:.2f}s, {n} requests, 0 failed")


def test_expiring_identity_is_warned_then_renewed(env):
    env.mesh["ca"] = env.mesh["gw"].parent / "mesh-ca"
    # Valid for 75 s (notBefore is backdated 60 s) with 15 s left: less than a quarter.
    issue(env, env.mesh["gw"], ttl="15s")
    start(env)
    wait_until(lambda: "certificate default" in env.gw.stderr(), 5, "the expiry warning")
    err = env.gw.stderr()
    assert "expires in 0h00m" in err and "renew it" in err, err[-2000:]
    left = stats(env.gw)['egressgw_cert_expiry_seconds{resource_name="default"}']
    assert 0 < left <= 15
    p = egressctl("proxy-config", "secret", env.admin, check=False)
    assert p.returncode == 0
    assert "warning: default: the certificate expires in 0h00m" in p.stderr, p.stderr
    # Renewed in place for a day: picked up, the warning and the metric follow.
    issue(env, env.mesh["gw"])
    new = file_cert(env.mesh["gw"] / "cert-chain.pem")
    wait_until(lambda: served_cert(env) == new, 3, "the renewed certificate served")
    left = stats(env.gw)['egressgw_cert_expiry_seconds{resource_name="default"}']
    assert 86000 < left <= 86400
    p = egressctl("proxy-config", "secret", env.admin, check=False)
    assert p.returncode == 0 and "warning: default" not in p.stderr, p.stderr
