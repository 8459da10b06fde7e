"""Never silent: every field egressgw accepts but does not apply is reported, from the one
list the keyword tables keep (KW_UNSUPPORTED, KWF_UNAPPLIED in src/config/res_tables.c),
on all three channels: a kubectl-style `Warning:` line at `egressctl apply` naming
FILE:LINE:COL and the field, an `egressctl analyze` finding with a code and FILE:LINE, and
a line in the proxy's log when it loads the configuration."""
import re

import pytest

from meshlib import Mesh

YAML = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [api.example.test]
  http:
  - match:
    - uri:
        prefix: /a
      statPrefix: a
    retries: {attempts: 3, retryRemoteLocalities: true,
      retryIgnorePreviousHosts: true}
    fault:
      abort:
        httpStatus: 503
        percentage:
          value: 10
    mirror:
      host: mirror.example.test
    mirrorPercentage:
      value: 5
    headers:
      request:
        set:
          x-a: "1"
    corsPolicy:
      allowOrigins:
      - exact: https://a.example
    rewrite:
      uriRegexRewrite:
        match: ^/a(.*)
        rewrite: /b\\1
    route:
    - destination:
        host: api.example.test
      headers:
        response:
          remove: [x-b]
  - match:
    - uri:
        prefix: /r
    redirect:
      uri: /s
      scheme: https
      port: 8443
  - match:
    - uri:
        prefix: /d
    directResponse:
      status: 503
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: api
spec:
  host: api.example.test
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: s, ttl: 0s, attributes: [{name: SameSite, value: Strict}]}
    connectionPool:
      tcp:
        tcpKeepalive:
          time: 10s
        maxConnectionDuration: 1h
      http:
        maxRetries: 2
        useClientProtocol: true
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api
spec:
  hosts: [api.example.test]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    locality: us-east1/a
    network: net1
    serviceAccount: api
"""

# (YAML line of the field, its path): what every channel must name.
FIELDS = [
    (11, "VirtualService default/api: spec.http[0].match[0].statPrefix"),
    (12, "VirtualService default/api: spec.http[0].retries.retryRemoteLocalities"),
    (13, "VirtualService default/api: spec.http[0].retries.retryIgnorePreviousHosts"),
    (62, "DestinationRule default/api: spec.trafficPolicy.loadBalancer.consistentHash"
         ".httpCookie.attributes"),
    (65, "DestinationRule default/api: spec.trafficPolicy.connectionPool.tcp.tcpKeepalive"),
    (67, "DestinationRule default/api: spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration"),
    (70, "DestinationRule default/api: spec.trafficPolicy.connectionPool.http.useClientProtocol"),
    (85, "ServiceEntry default/api: spec.endpoints[0].locality"),
    (86, "ServiceEntry default/api: spec.endpoints[0].network"),
    (87, "ServiceEntry default/api: spec.endpoints[0].serviceAccount"),
]

NOT_APPLIED = r"(not applied|not supported) by egressgw; ignored"


@pytest.fixture
def applied(ctl, tmp_path):
    f = tmp_path / "api.yaml"
    f.write_text(YAML)
    r = ctl("apply", "-f", f)
    assert r.rc == 0, r.err
    return f, r


def test_apply_warns_each_field(applied):
    f, r = applied
    lines = r.err.splitlines()
    for line, field in FIELDS:
        want = re.compile(rf"^Warning: {re.escape(str(f))}:{line}:\d+: {re.escape(field)}: "
                          rf"{NOT_APPLIED}$")
        assert any(want.match(x) for x in lines), f"no warning for {field}:\n{r.err}"
    assert len([x for x in lines if x.startswith("Warning: ")]) == len(FIELDS), r.err


def test_analyze_reports_each_field(applied, ctl):
    r = ctl("analyze")
    assert r.rc == 0, r.err      # warnings, not errors (istioctl's exit status)
    for _, field in FIELDS:
        kind = field.split()[0]
        path = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules",
                "ServiceEntry": "serviceentries"}[kind]
        want = re.compile(rf"^Warning \[IST0133\] \(config/default/{path}/api\.yaml:\d+\) "
                          rf".*{re.escape(field)}: {NOT_APPLIED}$", re.M)
        assert want.search(r.out), f"analyze does not report {field}:\n{r.out}"


def test_proxy_logs_each_field_at_load(applied, tmp_path, ctl, egressctl_bin, store):
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        log = m.sidecar.stderr()
        for _, field in FIELDS:
            assert re.search(rf"{re.escape(field)}: {NOT_APPLIED}", log), \
                f"the sidecar's log does not report {field}:\n{log[-3000:]}"
    finally:
        assert m.stop() == [0]
