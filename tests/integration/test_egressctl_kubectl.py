"""egressctl's kubectl verbs added for issue 16: "Did you mean this?" for a mistyped
command (cobra's wording and rule), apply --dry-run=client|server (kubectl's suffixes,
nothing written), diff -f (kubectl diff's layout: diff -u -N of LIVE and MERGED
directories; exit 0 no differences, 1 differences, >1 errors)."""
import re


def test_mistyped_command_suggests_as_kubectl(ctl):
    r = ctl("aply", "-f", "x.yaml")
    assert r.rc == 1 and r.out == ""
    assert r.err == ('error: unknown command "aply" for "egressctl"\n\nDid you mean this?\n'
                     '\tapply\n\nRun \'egressctl --help\' for usage.\n')
    r = ctl("proxy")          # a prefix of proxy-config
    assert "Did you mean this?\n\tproxy-config\n" in r.err
    r = ctl("frobnicate")
    assert r.rc == 1 and "Did you mean" not in r.err
    assert r.err == ('error: unknown command "frobnicate" for "egressctl"\n'
                     "Run 'egressctl --help' for usage.\n")


def test_apply_dry_run_writes_nothing(ctl, walkthrough, store):
    se = walkthrough / "01-serviceentry-cnn.yaml"
    assert ctl.ok("apply", "-f", se, "--dry-run=client") == \
        "serviceentry.networking.istio.io/cnn created (dry run)\n"
    assert not store.exists() or not any(store.rglob("*.yaml"))
    assert ctl.ok("apply", "-f", se) == "serviceentry.networking.istio.io/cnn created\n"
    assert ctl.ok("apply", "-f", se, "--dry-run", "server") == \
        "serviceentry.networking.istio.io/cnn unchanged (server dry run)\n"
    changed = se.read_text().replace("number: 443", "number: 8443")
    assert ctl.ok("apply", "-f", "-", "--dry-run=client", input=changed) == \
        "serviceentry.networking.istio.io/cnn configured (dry run)\n"
    assert "8443" not in ctl.ok("get", "serviceentry", "cnn", "-o", "yaml")
    # server: checked with the rest of the store, as a reload checks references.
    r = ctl("apply", "-f", walkthrough / "03-virtualservice-destinationrule-cnn.yaml",
            "--dry-run=server")
    assert r.rc == 0
    assert "virtualservice.networking.istio.io/direct-cnn-through-egress-gateway created " \
           "(server dry run)\n" in r.out
    assert re.search(r'03-virtualservice-destinationrule-cnn\.yaml:\d+:\d+: warning: .*'
                     r'Gateway "default/istio-egressgateway" not found', r.err), r.err
    assert "No resources found" in ctl("get", "virtualservice").err
    r = ctl("apply", "-f", se, "--dry-run=maybe")
    assert r.rc == 1 and r.err == \
        'error: Invalid dry-run value (maybe). Must be "none", "server", or "client".\n'
    # Invalid input fails the same way with or without --dry-run.
    r = ctl("apply", "-f", "-", "--dry-run=client", input=changed.replace("hosts:", "hostz:"))
    assert r.rc == 1 and "hostz" in r.err


def test_diff_prints_kubectl_layout_and_exit_codes(ctl, walkthrough, tmp_path):
    se = walkthrough / "01-serviceentry-cnn.yaml"
    # Absent from the store: the whole object is added.
    r = ctl("diff", "-f", se)
    assert r.rc == 1, r.err
    name = "networking.istio.io.v1alpha3.ServiceEntry.default.cnn"
    head = r.out.splitlines()[0]
    assert re.fullmatch(rf"diff -u -N \S+/LIVE-\w+/{re.escape(name)} \S+/MERGED-\w+/{re.escape(name)}",
                        head), head
    assert "@@ -0,0 +1," in r.out and "+kind: ServiceEntry" in r.out
    ctl.ok("apply", "-f", se)
    r = ctl("diff", "-f", se)
    assert (r.rc, r.out) == (0, "")
    changed = tmp_path / "se.yaml"
    changed.write_text(se.read_text().replace("number: 443", "number: 8443"))
    r = ctl("diff", "-f", changed)
    assert r.rc == 1
    assert "\n-  - number: 443\n+  - number: 8443\n" in r.out, r.out
    assert "8443" not in ctl.ok("get", "serviceentry", "cnn", "-o", "yaml")
    assert ctl("diff", "-f", tmp_path / "missing.yaml").rc > 1
    assert ctl("diff", "-f", "-", input="kind: Nope\n").rc > 1
