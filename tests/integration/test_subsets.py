"""DestinationRule subsets select ServiceEntry endpoints by their labels; a subset's
trafficPolicy overrides the rule's; a weighted route across subsets splits as weighted;
ServiceEntry endpoint weights share the picks. Each endpoint is a Python upstream that
answers with its own name, so the split is counted where the requests arrived."""
import pytest

from meshlib import Mesh
from recorder import Recorder
from gwlib import loopback_ip

SVC = "svc.example.test"


def config(policy=""):
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc
spec:
  hosts: [{SVC}]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: {{v1}}
    labels:
      version: v1
  - address: {{v2}}
    labels:
      version: v2
      track: canary
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc
spec:
  host: {SVC}
{policy}  subsets:
  - name: v1
    labels:
      version: v1
    trafficPolicy:
      tls:
        mode: DISABLE
  - name: v2
    labels:
      version: v2
  - name: canary
    labels:
      track: canary
      version: v2
  - name: none
    labels:
      version: v3
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc
spec:
  hosts: [{SVC}]
  http:
{{routes}}  - route:
    - destination:
        host: {SVC}
        subset: v1
      weight: 80
    - destination:
        host: {SVC}
        subset: v2
      weight: 20
"""


def by_header_vs():
    rules = "".join(f"""  - match:
    - headers:
        x-subset:
          exact: {s}
    route:
    - destination:
        host: {SVC}
        subset: {s}
""" for s in ("v1", "v2", "canary", "none"))
    return rules


@pytest.fixture
def eps():
    a, b = Recorder(loopback_ip(), 80, "v1"), Recorder(loopback_ip(), 80, "v2")
    yield a, b
    a.stop()
    b.stop()


def start(tmp_path, ctl, egressctl_bin, store, eps, policy=""):
    cfg = config(policy).replace("{v1}", eps[0].server_address[0]) \
                        .replace("{v2}", eps[1].server_address[0]) \
                        .replace("{routes}", by_header_vs())   # then the 80/20 split
    ctl.ok("apply", "-f", "-", input=cfg)
    return Mesh(tmp_path, ctl, egressctl_bin, store, {})


def statuses(mesh, n, *headers):
    args = []
    for i in range(n):
        if i:
            args.append("--next")
        args += ["-s", "-o", "/dev/null", "-w", "%{http_code} ", f"http://{SVC}/{i}"]
        for h in headers:
            args += ["-H", h]
    r = mesh.curl(*args)
    return r.stdout.split()


@pytest.fixture
def mesh(tmp_path, ctl, egressctl_bin, store, eps):
    m = start(tmp_path, ctl, egressctl_bin, store, eps)
    yield m
    assert m.stop() == [0]


def test_subset_selects_endpoints_by_labels(mesh, eps):
    v1, v2 = eps
    for subset, want in (("v1", v1), ("v2", v2), ("canary", v2)):
        before = (v1.count(), v2.count())
        assert statuses(mesh, 20, f"x-subset: {subset}") == ["200"] * 20
        other = v2 if want is v1 else v1
        assert want.count() - before[want is v2] == 20, subset
        assert other.count() == before[other is v2], f"{subset} reached the other endpoint"
    # A subset whose labels no endpoint has: no healthy upstream, nothing sent.
    before = (v1.count(), v2.count())
    assert statuses(mesh, 3, "x-subset: none") == ["503"] * 3
    assert (v1.count(), v2.count()) == before
    line = mesh.sidecar.wait_log(lambda m: m["cluster"] == f"outbound|80|none|{SVC}")
    assert line["flags"] == "UH"


def test_weighted_split_across_subsets(mesh, eps):
    v1, v2 = eps
    n = 400
    assert statuses(mesh, n) == ["200"] * n
    share = v1.count() / n
    # 80/20 by weight; at 50/50 (every endpoint in both subsets) this cannot pass:
    # 3 standard deviations of a binomial(400, 0.8) are 0.06.
    assert abs(share - 0.8) < 0.07, f"v1 got {share:.2f} of the requests"
    assert v1.count() + v2.count() == n


def test_subset_policy_overrides_rule(tmp_path, ctl, egressctl_bin, store, eps):
    """The rule's top level originates TLS (the endpoints speak plain HTTP, so it fails
    UF); subset v1 sets tls DISABLE and works; v2 inherits the rule's."""
    policy = "  trafficPolicy:\n    tls:\n      mode: SIMPLE\n      insecureSkipVerify: true\n"
    m = start(tmp_path, ctl, egressctl_bin, store, eps, policy)
    try:
        assert statuses(m, 5, "x-subset: v1") == ["200"] * 5
        assert statuses(m, 2, "x-subset: v2") == ["503"] * 2
        line = m.sidecar.wait_log(lambda x: x["cluster"] == f"outbound|80|v2|{SVC}")
        assert line["flags"] == "UF,URX"         # retried twice: Istio's default policy
        assert eps[1].count() == 0
    finally:
        assert m.stop() == [0]


def test_endpoint_weights(tmp_path, ctl, egressctl_bin, store, eps):
    """ServiceEntry endpoints weighted 3:1, no subset: the picks follow the weights."""
    cfg = config().replace("{v1}", eps[0].server_address[0] + "\n    weight: 3") \
                  .replace("{v2}", eps[1].server_address[0] + "\n    weight: 1")
    cfg = cfg[:cfg.index("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule")]
    ctl.ok("apply", "-f", "-", input=cfg)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        assert statuses(m, 200) == ["200"] * 200
        assert eps[0].count() == 150 and eps[1].count() == 50   # round robin: exact
    finally:
        assert m.stop() == [0]
