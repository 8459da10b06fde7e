"""A gateway whose HTTP/2 listener needs no client certificate, for clients that cannot
present one (h2load): a Gateway server on port 8443 with `tls: {mode: SIMPLE,
credentialName: h2-gw-cred}` for edition.cnn.com, routed to the site playing
edition.cnn.com:443 (test_gateway's nginx, or any site dict with ip/ca/certs/hosts) with
TLS originated as the walkthrough does. The gateway's server certificate is the site's
(demo CA, name edition.cnn.com).

preload_env(env) runs a block with extra environment variables set for the processes
started inside it only (the malloc counter's LD_PRELOAD must not reach egressctl, curl
or the load generators the test runs afterwards)."""
import contextlib
import os
import subprocess

from gwlib import Gateway, loopback_ip, make_server_cert, wait_port

CNN = "edition.cnn.com"
H2_PORT = 8443

H2_YAML = f"""apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {{name: h2-in, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: {H2_PORT}, name: https-h2, protocol: HTTPS}}
    hosts: [{CNN}]
    tls: {{mode: SIMPLE, credentialName: h2-gw-cred}}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: cnn-over-h2, namespace: istio-system}}
spec:
  hosts: [{CNN}]
  gateways: [h2-in]
  http:
  - route:
    - destination: {{host: {CNN}, port: {{number: 443}}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: originate-tls-for-cnn, namespace: istio-system}}
spec:
  host: {CNN}
  trafficPolicy:
    portLevelSettings:
    - port: {{number: 443}}
      tls: {{mode: SIMPLE}}
CONNECTION_POOL
"""


@contextlib.contextmanager
def preload_env(env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_h2_gateway(tmp_path, ctl, walkthrough, mesh, site, store, env=None,
                     connection_pool="", extra=()):
    """Applies the ServiceEntry, the credential and H2_YAML; starts the gateway (with env
    for it alone) and waits for its h2 port. connection_pool: YAML lines under the
    DestinationRule's port-level entry (indented 6 spaces), e.g. a connectionPool."""
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    certs = site["certs"]
    if not (certs / f"{CNN}.crt").exists():
        make_server_cert(certs, CNN)
    ctl("create", "namespace", "istio-system")
    ctl.ok("create", "-n", "istio-system", "secret", "tls", "h2-gw-cred",
           "--cert", certs / f"{CNN}.crt", "--key", certs / f"{CNN}.key")
    ctl.ok("apply", "-f", "-", input=H2_YAML.replace("CONNECTION_POOL\n", connection_pool))
    ip = loopback_ip()
    with preload_env(env or {}):
        g = Gateway(tmp_path, store, mesh["gw"], ip, site["hosts"], site["ca"], extra=extra)
    wait_port(ip, H2_PORT, proc=g.proc)
    return g


def h2load(gw_ip, *args, path="/politics", timeout=120):
    """h2load against the gateway's h2 port; returns (returncode, output)."""
    cmd = ["h2load", f"--connect-to={gw_ip}:{H2_PORT}", *args,
           f"https://{CNN}:{H2_PORT}{path}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr
