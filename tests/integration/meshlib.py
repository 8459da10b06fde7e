"""A small mesh for feature tests: the mesh CA, a sidecar (HTTP proxy on loopback, as
curl's http_proxy) and, when asked, the egress gateway, with a hosts file naming the
test's upstreams. The configuration is what the test applies with egressctl; upstreams
are the test's own (recorder.Recorder, nginx)."""
import os
import subprocess

from gwlib import free_port, loopback_ip
from sidecarlib import EGW_HOST, Egressgw, NxDns, issue


def dns_service_entry_yaml(host, name="api"):
    """A ServiceEntry for host on port 80 (HTTP), resolved by DNS (the mesh's hosts file)."""
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
spec:
  hosts: [{host}]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
"""


def egress_gateway_yaml(host):
    """The egress gateway's half of a mesh hop for host, as the Istio task pages write it:
    a Gateway on port 80 for host and a DestinationRule with the subset "api" for the
    gateway's service; the test's VirtualService, which routes through it, follows."""
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts: [{host}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-api
spec:
  host: {EGW_HOST}
  subsets:
  - name: api
---
"""


def mesh_hop_vs_head(host):
    """The head of the test's VirtualService "api" for host on a mesh hop, bound to the
    egress gateway and mesh, its first route taking the mesh's traffic to the gateway
    (subset "api", port 80) as the Istio task pages write it; the test appends the
    gateway's own routes (a `  - match:` on gateways [istio-egressgateway])."""
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{host}]
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
"""

class Mesh:
    def __init__(self, tmp, ctl, egressctl_bin, store, hosts, gateway=False,
                 policy="ALLOW_ANY", sidecar_extra=(), gw_extra=()):
        """hosts: {name: ip} for the hosts file (the gateway's service is added)."""
        self.tmp, self.ctl, self.store, self.egressctl = tmp, ctl, store, egressctl_bin
        self.gw_ip = loopback_ip()
        self.hosts_file = tmp / "hosts"
        self.hosts_file.write_text("".join(f"{ip} {name}\n" for name, ip in
                                           {**hosts, EGW_HOST: self.gw_ip}.items()))
        ca = tmp / "mesh-ca"
        self.gw_id = issue(egressctl_bin, ca, "istio-system",
                           "istio-egressgateway-service-account", tmp / "gw-id", create_ca=True)
        self.app_id = issue(egressctl_bin, ca, "default", "sleep", tmp / "sleep-id")
        self.gateway = self.sidecar = self.dns = None
        try:
            self.dns = NxDns(loopback_ip())
            if gateway:
                self.gateway = Egressgw(tmp, "gateway", "gateway", store, self.gw_id,
                                        self.hosts_file, self.dns,
                                        extra=["--namespace", "istio-system", "--labels",
                                               "istio=egressgateway", "--listen-address",
                                               self.gw_ip, *gw_extra])
            port = free_port()
            self.sidecar = Egressgw(tmp, "sidecar", "sidecar", store, self.app_id,
                                    self.hosts_file, self.dns,
                                    extra=["--namespace", "default", "--outbound",
                                           f"127.0.0.1:{port}", "--outbound-policy", policy,
                                           *sidecar_extra])
            self.sidecar.outbound = port
        except BaseException:
            self.stop()
            raise

    def apply(self, yaml, ns=None):
        """egressctl apply -f - (in namespace ns); returns its stderr (warnings)."""
        args = ["apply", "-f", "-"] + (["-n", ns] if ns else [])
        r = self.ctl(*args, input=yaml)
        assert r.rc == 0, f"apply failed: {r.err}"
        return r.err

    def reloads(self):
        return [p.stat("config_reloads_total") for p in (self.sidecar, self.gateway) if p]

    def wait_applied(self, before):
        """Waits until every proxy has reloaded since `before` (from reloads())."""
        for p, n in zip([p for p in (self.sidecar, self.gateway) if p], before):
            p.wait_reloads(n + 1)

    def curl(self, *args, timeout=30):
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["http_proxy"] = env["https_proxy"] = f"http://127.0.0.1:{self.sidecar.outbound}"
        return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                              text=True, env=env, timeout=timeout)

    def stop(self):
        rcs = []
        for p in (self.sidecar, self.gateway):
            if p:
                rcs.append(p.stop())
        if self.dns:
            self.dns.stop()
        return rcs
