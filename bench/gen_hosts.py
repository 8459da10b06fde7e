#!/usr/bin/env python3
"""Generates a store with N external hosts, the configuration of issue 15's scale scenario.

Each host gets a ServiceEntry (resolution DNS, port 443 HTTPS), a VirtualService bound to one
Gateway with two HTTP routes to it, and a DestinationRule originating TLS (mode SIMPLE) on 443.
One Gateway (istio-system, selector istio=egressgateway, plain HTTP on --port) takes them all.
The names go into a hosts file (for egressgw --hosts-file), all at --ip.

Layouts: "files" writes one file per resource where `egressctl apply` would put it
(config/NS/PLURAL/NAME.yaml); "one-file" writes every document into config/all.yaml, which is
also what `egressctl apply -f` of one large file reads.

    bench/gen_hosts.py --hosts 10000 --store /tmp/s --hosts-file /tmp/s.hosts [--ip 127.0.0.1]
"""
import argparse
import os
import sys

NS = "default"


def host_name(i):
    return f"svc{i:06d}.example.com"


def gateway_doc(port):
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
  namespace: istio-system
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: {port}
      name: http
      protocol: HTTP
    hosts:
    - "*"
"""


def host_docs(i):
    h = host_name(i)
    n = f"svc{i:06d}"
    se = f"""apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: {n}
  namespace: {NS}
spec:
  hosts:
  - {h}
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
"""
    vs = f"""apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: {n}
  namespace: {NS}
spec:
  hosts:
  - {h}
  gateways:
  - istio-system/istio-egressgateway
  http:
  - match:
    - uri:
        prefix: /api/
    route:
    - destination:
        host: {h}
        port:
          number: 443
    timeout: 5s
  - route:
    - destination:
        host: {h}
        port:
          number: 443
"""
    dr = f"""apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: {n}
  namespace: {NS}
spec:
  host: {h}
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: SIMPLE
        sni: {h}
"""
    return [("serviceentries", n, se), ("virtualservices", n, vs), ("destinationrules", n, dr)]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--hosts-file", required=True)
    ap.add_argument("--ip", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=80, help="the Gateway's server port")
    ap.add_argument("--layout", choices=("files", "one-file"), default="files")
    ap.add_argument("--first", type=int, default=0, help="index of the first host")
    a = ap.parse_args()

    cfg = os.path.join(a.store, "config")
    os.makedirs(os.path.join(a.store, "secrets"), exist_ok=True)
    if a.layout == "files":
        write(os.path.join(cfg, "istio-system", "gateways", "istio-egressgateway.yaml"),
              gateway_doc(a.port))
        for i in range(a.first, a.first + a.hosts):
            for plural, name, text in host_docs(i):
                write(os.path.join(cfg, NS, plural, name + ".yaml"), text)
    else:
        docs = [gateway_doc(a.port)]
        for i in range(a.first, a.first + a.hosts):
            docs.extend(t for _, _, t in host_docs(i))
        write(os.path.join(cfg, "all.yaml"), "---\n".join(docs))
    with open(a.hosts_file, "w") as f:
        for i in range(a.first, a.first + a.hosts):
            f.write(f"{a.ip} {host_name(i)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
