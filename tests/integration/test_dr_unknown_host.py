"""A DestinationRule whose host no ServiceEntry lists (Istio's analyzer IST0174,
UnknownDestinationRuleHost) is a policy that applies to nothing, usually a typo or a
missing ServiceEntry: said on all three channels, a `Warning:` line at `egressctl apply`
naming FILE:LINE:COL, an `egressctl analyze` finding IST0174 (its JSON reference is
FILE:LINE), and a line in the proxy's log. A ServiceEntry for the host makes it go away; a host of the cluster
domain (a Kubernetes Service, which the store does not hold) is never reported."""
import json
import re

from meshlib import Mesh

DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: originate-tls-for-edition-cnn-com
spec:
  host: edition.cnn.com
  trafficPolicy:
    tls:
      mode: SIMPLE
"""

SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts: [edition.cnn.com]
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
"""

KUBE_DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
"""

WHAT = 'DestinationRule default/originate-tls-for-edition-cnn-com: spec.host: no ServiceEntry ' \
       'has host "edition.cnn.com" (IST0174): its traffic policy applies to nothing'


def test_dr_without_serviceentry_is_reported(ctl, tmp_path, egressctl_bin, store):
    f = tmp_path / "dr.yaml"
    f.write_text(DR)
    r = ctl("apply", "-f", f)
    assert r.rc == 0, r.err
    assert re.search(rf"^Warning: {re.escape(str(f))}:\d+:\d+: {re.escape(WHAT)}$", r.err,
                     re.M), r.err

    an = ctl("analyze")
    assert an.rc == 0, an.err        # a warning, not an error
    assert "Warning [IST0174] (DestinationRule default/originate-tls-for-edition-cnn-com) " \
        "The host edition.cnn.com defined in the DestinationRule does not match any services " \
        "in the mesh.\n" in an.out, an.out
    # istioctl's JSON: the reference is the file and line of the resource.
    an = ctl("analyze", "-o", "json")
    found = [x for x in json.loads(an.out) if x["code"] == "IST0174"]
    assert len(found) == 1, an.out
    assert re.fullmatch(r"config/default/destinationrules/originate-tls-for-edition-cnn-com"
                        r"\.yaml:\d+", found[0]["reference"]), found

    m = Mesh(tmp_path, ctl, egressctl_bin, store, {})
    try:
        assert WHAT in m.sidecar.stderr(), m.sidecar.stderr()[-3000:]
        # The ServiceEntry arrives: apply, analyze and the next build are quiet.
        before = m.reloads()
        err = m.apply(SE)
        assert "IST0174" not in err, err
        m.wait_applied(before)
        r = ctl("apply", "-f", f)
        assert r.rc == 0 and "IST0174" not in r.err, r.err
        an = ctl("analyze")
        assert "IST0174" not in an.out, an.out
        n = m.sidecar.stderr().count("IST0174")
        before = m.reloads()
        err = m.apply(KUBE_DR)
        m.wait_applied(before)
        # A Kubernetes Service's name (reviews.default.svc.cluster.local) is never reported.
        assert "IST0174" not in err, err
        assert m.sidecar.stderr().count("IST0174") == n, m.sidecar.stderr()[-3000:]
    finally:
        assert m.stop() == [0]
