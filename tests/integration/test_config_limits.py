"""Hostile and large configuration: answered in well under a second, honest large files
accepted.

YAML limits are per document (nodes, alias expansion, anchors, nesting), never per stream, so
a file of many documents applies as kubectl applies it; a limit passed ends the parse at
once (libyaml's scanner is quadratic in flow nesting). VirtualService host overlap is
checked with sorted indexes, not pairwise. Cost is measured as the child's CPU time, which
a machine loaded by other work stretches far less than wall time.
"""
import os
import re
import subprocess
import time

import pytest

from gwlib import BUILD, Gateway, loopback_ip, wait_until

# AddressSanitizer runs this code 2-5x slower: the bounds below are the targets for
# the native build and that much wider for `make SANITIZE=1`.
SLOW = 5.0 if b"__asan_init" in (BUILD / "egressctl").read_bytes() else 1.0

VS_HEAD = """apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts:
"""
VS_TAIL = """  http:
  - route:
    - destination:
        host: h0.example.com
"""


@pytest.fixture
def mesh_identity(tmp_path, egressctl_bin):
    ca, gw = tmp_path / "mesh-ca", tmp_path / "gw-identity"
    subprocess.run([egressctl_bin, "ca", "init", "--dir", ca], check=True, capture_output=True)
    subprocess.run([egressctl_bin, "ca", "issue", "--dir", ca, "--namespace", "istio-system",
                    "--service-account", "istio-egressgateway-service-account", "--out", gw],
                   check=True, capture_output=True)
    return gw


def vs_doc(name, hosts):
    return VS_HEAD.format(name=name) + "".join(f"  - \"{h}\"\n" for h in hosts) + VS_TAIL


def deep_doc(levels=100000):
    return ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: deep\nstringData:\n  x: "
            + "[" * levels + "\n")


def alias_bomb(n=100000):
    body = "".join(f"  k{i}: *v\n" for i in range(n))
    return ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: bomb\nstringData:\n"
            f"  k: &v {'A' * 1024}\n" + body)


def timed(ctl, *args):
    """(result, CPU seconds of the egressctl run)."""
    before = os.times()
    r = ctl(*args)
    after = os.times()
    return r, (after.children_user - before.children_user) + (after.children_system -
                                                              before.children_system)


def test_virtualservice_with_40k_hosts_applies_in_linear_time(ctl, tmp_path):
    f = tmp_path / "vs.yaml"
    f.write_text(vs_doc("big", [f"h{i}.example.com" for i in range(40000)]))
    r, cpu = timed(ctl, "apply", "-f", f)
    assert r.rc == 0, r.err[-2000:]
    assert "virtualservice.networking.istio.io/big created" in r.out
    assert cpu < 1.0 * SLOW, f"40,000 hosts took {cpu:.2f} s of CPU"


def test_overlapping_hosts_each_reported_once_against_the_first(ctl, tmp_path):
    f = tmp_path / "vs.yaml"
    f.write_text(vs_doc("dup", ["a.example.com", "*.example.com", "A.EXAMPLE.COM",
                                "*.b.example.com", "x.org", "*.org", "b.x.org", "y.net"]))
    r = ctl("apply", "-f", f)
    assert r.rc != 0
    errs = re.findall(r"spec\.hosts\[(\d)\]: duplicate hosts in virtual service: (\S+) & (\S+)",
                      r.err)
    assert errs == [("1", "a.example.com", "*.example.com"),
                    ("2", "a.example.com", "A.EXAMPLE.COM"),
                    ("3", "*.example.com", "*.b.example.com"),
                    ("5", "x.org", "*.org"),
                    ("6", "*.org", "b.x.org")], r.err
    # The same overlap at scale: one error, at the last host, in linear time.
    f.write_text(vs_doc("dup", [f"h{i}.example.com" for i in range(40000)] + ["*.example.com"]))
    r, cpu = timed(ctl, "apply", "-f", f)
    assert r.rc != 0
    assert r.err.count("duplicate hosts") == 1, r.err[-2000:]
    assert "spec.hosts[40000]: duplicate hosts in virtual service: h0.example.com & *.example.com" \
        in r.err
    assert cpu < 1.0 * SLOW, f"took {cpu:.2f} s of CPU"


def test_deep_nesting_rejected_at_once(ctl, tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text(deep_doc())
    r, cpu = timed(ctl, "apply", "-f", f)
    assert r.rc != 0
    assert "deep.yaml:6:260: YAML nesting deeper than 256 levels" in r.err, r.err[-2000:]
    assert len(r.err.splitlines()) == 1, r.err[-2000:]
    assert cpu < 1.0 * SLOW, f"took {cpu:.2f} s of CPU"
    assert not (ctl.store / "secrets" / "default" / "deep").exists()


def test_alias_bomb_rejected_at_once(ctl, tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(alias_bomb())
    r, cpu = timed(ctl, "apply", "-f", f)
    assert r.rc != 0
    # Named at the alias that passed the limit: 1 MiB of 1 KiB values is the 1,025th.
    assert re.search(r"bomb\.yaml:1031:\d+: YAML alias expansion too large", r.err), r.err[-2000:]
    assert cpu < 1.0 * SLOW, f"took {cpu:.2f} s of CPU"
    assert not (ctl.store / "secrets" / "default" / "bomb").exists()


def test_aliases_within_the_limits_still_expand(ctl, tmp_path):
    f = tmp_path / "ok.yaml"
    f.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: ok\nstringData:\n"
                 "  a: &v hello\n" + "".join(f"  k{i}: *v\n" for i in range(1000)))
    ctl.ok("apply", "-f", f)
    assert (ctl.store / "secrets" / "default" / "ok" / "k999").read_text() == "hello"


def test_many_documents_in_one_file_apply(ctl, tmp_path):
    """A file of many documents applies, at a cost linear in the file (test_ydoc checks that
    a stream may hold more nodes than one document may)."""
    doc = vs_doc("many", [f"h{i}.example.com" for i in range(20)])
    f = tmp_path / "many.yaml"
    f.write_text("---\n".join([doc] * 2000))
    out = ctl.ok("apply", "-f", f).splitlines()
    assert out[0] == "virtualservice.networking.istio.io/many created"
    assert len(out) == 2000 and all(line.endswith("/many unchanged") for line in out[1:]), out[:3]


def test_gateway_rejects_hostile_files_at_once_and_stays_ready(ctl, tmp_path, mesh_identity):
    ip = loopback_ip()
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    ca = mesh_identity / "root-cert.pem"
    (ctl.store / "config").mkdir(parents=True)
    gw = Gateway(tmp_path, ctl.store, mesh_identity, ip, hosts, ca)
    try:
        wait_until(lambda: "configuration version 1 applied" in gw.stderr(), what="version 1")
        cases = [("deep.yaml", deep_doc(), "YAML nesting deeper than 256 levels"),
                 ("bomb.yaml", alias_bomb(), "YAML alias expansion too large"),
                 ("vs.yaml", vs_doc("big", [f"h{i}.example.com" for i in range(40000)] +
                                    ["*.example.com"]), "duplicate hosts")]
        for n, (name, text, want) in enumerate(cases, 1):
            path = ctl.store / "config" / name
            path.write_text(text)
            t0 = time.monotonic()
            worst = 0.0
            while gw.stderr().count("configuration rejected") < n:
                s = time.monotonic()
                code, _ = gw.admin("/ready")
                worst = max(worst, time.monotonic() - s)
                assert code == 200
                assert time.monotonic() - t0 < 10, gw.stderr()[-2000:]
                time.sleep(0.005)
            # Debounce (100 ms) plus the rejection itself.
            assert time.monotonic() - t0 < 1.5 * SLOW, \
                f"{name}: rejected after {time.monotonic() - t0:.2f} s"
            assert worst < 0.1 * SLOW, f"{name}: /ready took {worst * 1000:.0f} ms during the reload"
            assert want in gw.stderr()
            assert gw.stderr().count("configuration rejected") == n
            path.unlink()
    finally:
        assert gw.stop() == 0
