"""egressctl's kubectl verbs added for issue 16: "Did you mean this?" for a mistyped
command (cobra's wording and rule), apply --dry-run=client|server (kubectl's suffixes,
nothing written), diff -f (kubectl diff's layout: diff -u -N of LIVE and MERGED
directories; exit 0 no differences, 1 differences, >1 errors)."""
import os
import re
import subprocess


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
    assert re.search(r'^Warning: \S*03-virtualservice-destinationrule-cnn\.yaml:\d+:\d+: .*'
                     r'Gateway "default/istio-egressgateway" not found', r.err, re.M), r.err
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


def se_yaml(name, labels):
    lab = "".join(f"    {k}: \"{v}\"\n" for k, v in labels.items())
    return (f"apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata:\n"
            f"  name: {name}\n" + (f"  labels:\n{lab}" if labels else "") +
            f"spec:\n  hosts: [{name}.example.com]\n  ports:\n  - number: 443\n"
            f"    name: https\n    protocol: HTTPS\n  resolution: DNS\n")


def test_get_selector_as_kubectl(ctl):
    ctl.ok("apply", "-f", "-", input="---\n".join([
        se_yaml("a", {"app": "web", "tier": "front"}), se_yaml("b", {"app": "web", "tier": "back"}),
        se_yaml("c", {"app": "db"}), se_yaml("d", {})]))

    def names(*sel):
        return ctl.ok("get", "se", "-o", "name", *sel).split()

    assert names("-l", "app=web") == ["serviceentry.networking.istio.io/a",
                                      "serviceentry.networking.istio.io/b"]
    assert names("--selector", "app==web,tier!=front") == ["serviceentry.networking.istio.io/b"]
    assert names("-l", "tier") == ["serviceentry.networking.istio.io/a",
                                   "serviceentry.networking.istio.io/b"]
    assert names("-l", "!app") == ["serviceentry.networking.istio.io/d"]
    assert names("-l", "app in (db, web),tier notin (back)") == \
        ["serviceentry.networking.istio.io/a", "serviceentry.networking.istio.io/c"]
    assert names("-l", "app!=web") == ["serviceentry.networking.istio.io/c",
                                       "serviceentry.networking.istio.io/d"]
    r = ctl("get", "se", "-l", "app=nothing")
    assert (r.rc, r.out, r.err) == (0, "", "No resources found in default namespace.\n")
    r = ctl("get", "se", "a", "-l", "app=web")
    assert r.rc == 1 and r.err == "error: name cannot be provided when a selector is specified\n"
    r = ctl("get", "se", "-l", "app in (web")
    assert r.rc == 1 and r.err.startswith("error: unable to parse requirement")


def vs_mesh_yaml(name, host):
    return (f"apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata:\n"
            f"  name: {name}\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n"
            f"    - destination: {{host: {host}}}\n")


def test_analyze_file_before_apply_and_new_codes(ctl, walkthrough, tmp_path):
    # The walkthrough's SIMPLE origination without caCertificates, at port 443: IST0129 (a
    # Warning, exit 0), found in the file before it is applied; nothing is written.
    f = walkthrough / "03-virtualservice-destinationrule-cnn.yaml"
    r = ctl("analyze", "-f", walkthrough / "01-serviceentry-cnn.yaml", "-f",
            walkthrough / "02-gateway-destinationrule-cnn.yaml", "-f", f)
    assert r.rc == 0, r.err
    assert r.out == ("Warning [IST0129] (DestinationRule default/originate-tls-for-edition-cnn-com) "
                     "DestinationRule originate-tls-for-edition-cnn-com in namespace default has "
                     "TLS mode set to SIMPLE but no caCertificates are set to validate server "
                     "identity for host: edition.cnn.com at port 443\n"), r.out
    assert "No resources found" in ctl("get", "dr").err
    # Destination level: IST0128; port level: IST0129.
    top = ("apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n"
           "  name: t\nspec:\n  host: y.example.com\n  trafficPolicy:\n    tls: {mode: SIMPLE}\n")
    # Each host has its ServiceEntry (else IST0174 would be reported too).
    def se(host):
        return ("---\napiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\n"
                f"metadata:\n  name: se-{host.split('.')[0]}\nspec:\n  hosts: [{host}]\n"
                "  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: DNS\n")
    r = ctl("analyze", "-f", "-", input=top + se("y.example.com"))
    assert r.out == ("Warning [IST0128] (DestinationRule default/t) DestinationRule t in namespace "
                     "default has TLS mode set to SIMPLE but no caCertificates are set to "
                     "validate server identity for host: y.example.com\n"), r.out
    dr = ("apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n"
          "  name: p\nspec:\n  host: x.example.com\n  trafficPolicy:\n    portLevelSettings:\n"
          "    - port: {number: 8443}\n      tls: {mode: MUTUAL, clientCertificate: /c.pem, "
          "privateKey: /k.pem}\n")
    r = ctl("analyze", "-f", "-", input=dr + se("x.example.com"))
    assert r.out == ("Warning [IST0129] (DestinationRule default/p) DestinationRule p in namespace "
                     "default has TLS mode set to MUTUAL but no caCertificates are set to "
                     "validate server identity for host: x.example.com at port 8443\n"), r.out
    r = ctl("analyze", "-f", "-", input=dr.replace("privateKey: /k.pem", "privateKey: /k.pem, "
                                                   "caCertificates: /ca.pem") + se("x.example.com"))
    assert (r.rc, r.out) == (0, "")
    # IST0109: two mesh VirtualServices for one host, on each of them; an Error (79).
    ctl.ok("apply", "-f", "-", input=vs_mesh_yaml("a", "svc.example.com"))
    r = ctl("analyze", "-f", "-", input=vs_mesh_yaml("b", "svc.example.com"))
    assert r.rc == 79
    msg = ("The VirtualServices default/a,default/b associated with mesh gateway define the same "
           "host svc.example.com which can lead to undefined behavior. This can be fixed by "
           "merging the conflicting VirtualServices into a single resource.")
    assert r.out.splitlines() == [f"Error [IST0109] (VirtualService default/a) {msg}",
                                  f"Error [IST0109] (VirtualService default/b) {msg}"], r.out
    # The same file applied over itself (a replaces a) is no conflict.
    assert ctl("analyze", "-f", "-", input=vs_mesh_yaml("a", "svc.example.com")).rc == 0
    # IST0101 names the namespace it searched.
    cred = dr.replace("clientCertificate: /c.pem, privateKey: /k.pem", "credentialName: cc")
    r = ctl("analyze", "-f", "-", input=cred)
    assert 'Referenced credentialName not found: "cc" (no Secret cc in namespace istio-system, ' \
           'where the gateway reads it)' in r.out, r.out
    assert ctl("analyze", "-f", tmp_path / "missing.yaml").rc == 1


def complete(ctl, line, store):
    """What bash offers for the last word of line, with `egressctl completion bash`
    sourced (the script as a user installs it)."""
    script = ctl.ok("completion", "bash")
    words = line.split(" ")
    prog = (f'{script}\nCOMP_WORDS=({" ".join(repr(w) for w in words)})\n'
            f'COMP_CWORD={len(words) - 1}\n_egressctl\nprintf "%s\\n" "${{COMPREPLY[@]}}"\n')
    env = dict(os.environ, PATH=f"{ctl.binary.parent}:{os.environ['PATH']}")
    p = subprocess.run(["bash", "--norc", "-c", prog], capture_output=True, text=True, env=env,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return sorted(x for x in p.stdout.splitlines() if x)


def test_completion_bash(ctl, store):
    assert complete(ctl, "egressctl ap", store) == ["apply"]
    assert complete(ctl, "egressctl pro", store) == ["proxy-config"]
    assert "explain-request" in complete(ctl, "egressctl ", store)
    assert complete(ctl, "egressctl get virtual", store) == ["virtualservice"]
    ctl.ok("apply", "-f", "-", input="---\n".join([se_yaml("alpha", {}), se_yaml("beta", {})]))
    assert complete(ctl, f"egressctl --store {store} get se ", store) == ["alpha", "beta"]
    assert complete(ctl, f"egressctl --store {store} get se al", store) == ["alpha"]
    assert complete(ctl, f"egressctl --store {store} edit se al", store) == ["alpha"]
    assert complete(ctl, "egressctl proxy-config end", store) == ["endpoint"]
    assert complete(ctl, "egressctl apply --dry-run ", store) == ["client", "none", "server"]
    assert complete(ctl, "egressctl completion ", store) == ["bash", "zsh"]
    zsh = ctl.ok("completion", "zsh")
    assert zsh.startswith("#compdef egressctl\n") and "bashcompinit" in zsh
    r = ctl("completion")
    assert r.rc == 1 and r.err.startswith("error: Shell not specified.")
    r = ctl("completion", "fish")
    assert r.rc == 1 and r.err == 'error: Unsupported shell type "fish".\n'


def test_explain_kind_fields_from_the_decoder_tables(ctl):
    out = ctl.ok("explain", "destinationrule.spec.trafficPolicy.tls")
    assert out.startswith("GROUP:      networking.istio.io\nKIND:       DestinationRule\n"
                          "VERSION:    v1\n\nFIELD: tls <Object>\n\nDESCRIPTION:\n")
    fields = re.findall(r"^  (\w+)\t(<[^>]+>)$", out, re.M)
    assert ("mode", "<string>") in fields and ("subjectAltNames", "<[]string>") in fields
    assert ("insecureSkipVerify", "<boolean>") in fields and ("credentialName", "<string>") in fields
    assert [f for f, _ in fields] == sorted(f for f, _ in fields)     # kubectl sorts them
    assert "One of: DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL" in out
    # Every field explain lists is one apply accepts, and an unknown one apply refuses.
    out = ctl.ok("explain", "se.spec")
    assert re.search(r"^  hosts\t<\[\]string>$", out, re.M)
    assert re.search(r"^  ports\t<\[\]Object>$", out, re.M)
    # A field of Istio's API egressgw does not implement says so (and apply warns).
    out = ctl.ok("explain", "vs.spec.http")
    assert re.search(r"^  delegate\t<Object>\n    Not implemented by egressgw", out, re.M)
    r = ctl("apply", "-f", "-", input=(
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: c}\n"
        "spec:\n  hosts: [c.example.com]\n  http:\n  - delegate: {name: d}\n"
        "    route: [{destination: {host: c.example.com}}]\n"))
    assert r.rc == 0 and "delegate" in r.err and "arning" in r.err, r.err
    out = ctl.ok("explain", "gateway.networking.istio.io.spec.servers.port.number")
    assert "FIELD: number <integer>" in out and "A port number, 1-65535." in out
    out = ctl.ok("explain", "secret")
    assert re.search(r"^  data\t<map\[string\]string>$", out, re.M)
    r = ctl("explain", "vs.spec.http.bogus")
    assert (r.rc, r.err) == (1, 'error: field "bogus" does not exist\n')
    r = ctl("explain", "nope.spec")
    assert (r.rc, r.err) == (1, 'error: the server doesn\'t have a resource type "nope"\n')


def test_get_jsonpath_and_custom_columns(ctl, walkthrough):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    ctl.ok("apply", "-f", "-", input=se_yaml("alpha", {"app": "web"}))
    assert ctl.ok("get", "se", "-o", "jsonpath={.items[*].metadata.name}") == "alpha cnn"
    assert ctl.ok("get", "se", "cnn", "-o", "jsonpath={.spec.hosts[0]}") == "edition.cnn.com"
    assert ctl.ok("get", "se", "cnn", "-o", "jsonpath={.spec.hosts}") == '["edition.cnn.com"]'
    assert ctl.ok("get", "se", "cnn", "-o", "jsonpath={.spec.ports[0]}") == \
        '{"number":80,"name":"http","protocol":"HTTP"}'
    out = ctl.ok("get", "se", "-o",
                 'jsonpath={range .items[*]}{.metadata.name}{"\\t"}{.spec.ports[*].number}{"\\n"}{end}')
    assert out == "alpha\t443\ncnn\t80 443\n"
    assert ctl.ok("get", "se", "-l", "app=web", "-o",
                  "jsonpath={.items[*].metadata.labels['app']}") == "web"
    out = ctl.ok("get", "se", "-o", "custom-columns=NAME:.metadata.name,HOSTS:.spec.hosts,"
                 "PORTS:.spec.ports[*].number,NONE:.spec.nope")
    assert out.splitlines() == ["NAME    HOSTS                 PORTS    NONE",
                                "alpha   [alpha.example.com]   443      <none>",
                                "cnn     [edition.cnn.com]     80,443   <none>"], out
    assert ctl.ok("get", "se", "cnn", "--no-headers", "-o",
                  "custom-columns=N:metadata.name") == "cnn\n"
    # -o wide: Istio's kinds have no extra columns (their printer columns are all shown).
    def no_age(out):        # AGE may tick between the two commands
        return [ln.rsplit(None, 1)[0] for ln in out.splitlines()]

    assert no_age(ctl.ok("get", "se", "-o", "wide")) == no_age(ctl.ok("get", "se"))
    r = ctl("get", "se", "-o", "jsonpath={.items[0")
    assert r.rc == 1 and r.err.startswith("error: ")
    r = ctl("get", "se", "-o", "custom-columns=NAME")
    assert r.rc == 1 and "expected <header>:<json-path-expr>" in r.err
    r = ctl("get", "se", "-o", "table")
    assert r.rc == 1 and "custom-columns,json,jsonpath,name,wide,yaml" in r.err


def test_describe_kubectl_layout_and_warnings(ctl, walkthrough):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    out = ctl.ok("describe", "serviceentry", "cnn")
    assert out.splitlines() == [
        "Name:         cnn", "Namespace:    default", "Labels:       <none>",
        "Annotations:  <none>", "API Version:  networking.istio.io/v1alpha3",
        "Kind:         ServiceEntry", "Spec:", "  Hosts:", "    edition.cnn.com", "  Ports:",
        "    Name:      http", "    Number:    80", "    Protocol:  HTTP",
        "    Name:      https", "    Number:    443", "    Protocol:  HTTPS",
        "  Resolution:  DNS", "Warnings:     <none>", "Events:       <none>"], out
    ctl.ok("apply", "-f", walkthrough / "03-virtualservice-destinationrule-cnn.yaml")
    out = ctl.ok("describe", "vs", "direct-cnn-through-egress-gateway")
    assert "  HTTP:\n    Match:\n      Gateways:\n        mesh\n      Port:  80\n" in out, out
    assert re.search(r'^Warnings:     spec\.gateways\[0\]: Gateway "default/istio-egressgateway" '
                     r'not found$', out, re.M), out
    r = ctl("describe", "dr", "nope")
    assert r.rc == 1 and r.err == \
        'Error from server (NotFound): destinationrules.networking.istio.io "nope" not found\n'
    ctl.ok("create", "secret", "generic", "s1", "--from-literal=k=secretvalue")
    out = ctl.ok("describe", "secret", "s1")
    assert "Data\n====\nk:  11 bytes\n" in out and "secretvalue" not in out, out
