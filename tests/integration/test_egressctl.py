"""egressctl, driven as a user would: the walkthrough's apply, get, delete and create
secret commands with their exact output, exit codes and errors; atomicity; the Kubernetes
ConfigMap/Secret mount layout; the mesh CA checked with openssl."""
import base64
import json
import os
import re
import stat
import subprocess
import time

import pytest

NGINX = "my-nginx.mesh-external.svc.cluster.local"

# ---------------------------------------------------------------------------------------
# helpers


def read(path):
    with open(path) as f:
        return f.read()


def assert_table(out, expected):
    """Compares a kubectl-style table line by line; the trailing AGE cell of each data
    row is matched loosely (a fresh resource is "0s" to a few seconds old)."""
    lines = out.splitlines()
    assert len(lines) == len(expected), out
    assert lines[0] == expected[0], f"\n{lines[0]!r}\n{expected[0]!r}"
    for got, want in zip(lines[1:], expected[1:]):
        assert want.endswith("AGE"), want
        prefix = want[:-len("AGE")]
        assert got.startswith(prefix), f"\n{got!r}\n{prefix!r}"
        assert re.fullmatch(r"[0-9]+s", got[len(prefix):]), got


def store_files(store):
    """Every file under the store (relative paths), for "the store is untouched"."""
    found = []
    for dirpath, dirnames, filenames in os.walk(store):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.append(os.path.relpath(os.path.join(dirpath, n), store))
    return sorted(found)


def get_json(ctl, *args):
    return json.loads(ctl.ok("get", *args, "-o", "json"))


def apply_walkthrough(ctl, walkthrough):
    """The walkthrough's first part, as its kubectl commands (stdin heredocs)."""
    out = ""
    for f in ["01-serviceentry-cnn.yaml", "02-gateway-destinationrule-cnn.yaml",
              "03-virtualservice-destinationrule-cnn.yaml"]:
        out += ctl.ok("apply", "-f", "-", input=read(walkthrough / f))
    return out


# ---------------------------------------------------------------------------------------
# usage


def test_help_for_egressctl_and_every_command(ctl):
    out = ctl.ok("--help")
    for cmd in ["apply", "create", "get", "delete", "ca"]:
        assert re.search(rf"^  {cmd} ", out, re.M), out
    for cmd in ["apply", "create", "get", "delete", "ca"]:
        out = ctl.ok(cmd, "--help")
        assert "Usage:" in out and f"egressctl {cmd}" in out
        assert ctl.ok("help", cmd) == out
    assert "namespace" in ctl.ok("create", "--help")


def test_no_command_and_unknown_command_fail(ctl):
    r = ctl()
    assert r.rc == 1 and "Usage:" in r.err
    r = ctl("frobnicate")
    assert r.rc == 1
    assert r.err.startswith('error: unknown command "frobnicate" for "egressctl"')
    r = ctl("get", "gw", "--bogus")
    assert r.rc == 1 and r.err == "error: unknown flag: --bogus\n"


# ---------------------------------------------------------------------------------------
# apply


def test_walkthrough_apply_prints_kubectl_lines(ctl, walkthrough, store):
    assert apply_walkthrough(ctl, walkthrough) == (
        "serviceentry.networking.istio.io/cnn created\n"
        "gateway.networking.istio.io/istio-egressgateway created\n"
        "destinationrule.networking.istio.io/egressgateway-for-cnn created\n"
        "virtualservice.networking.istio.io/direct-cnn-through-egress-gateway created\n"
        "destinationrule.networking.istio.io/originate-tls-for-edition-cnn-com created\n")
    # One file per resource, at config/NAMESPACE/PLURAL/NAME.yaml.
    assert store_files(store) == [
        "config/default/destinationrules/egressgateway-for-cnn.yaml",
        "config/default/destinationrules/originate-tls-for-edition-cnn-com.yaml",
        "config/default/gateways/istio-egressgateway.yaml",
        "config/default/serviceentries/cnn.yaml",
        "config/default/virtualservices/direct-cnn-through-egress-gateway.yaml",
    ]
    # Applying the same again changes nothing.
    out = ctl.ok("apply", "-f", walkthrough / "02-gateway-destinationrule-cnn.yaml")
    assert out == ("gateway.networking.istio.io/istio-egressgateway unchanged\n"
                   "destinationrule.networking.istio.io/egressgateway-for-cnn unchanged\n")


def test_apply_second_part_configures_the_gateway(ctl, walkthrough):
    apply_walkthrough(ctl, walkthrough)
    out = ctl.ok("apply", "-f", "-", input=read(walkthrough / "04-gateway-destinationrule-nginx.yaml"))
    assert out == ("gateway.networking.istio.io/istio-egressgateway configured\n"
                   "destinationrule.networking.istio.io/egressgateway-for-nginx created\n")
    out = ctl.ok("apply", "-f", "-", input=read(walkthrough / "05-virtualservice-nginx.yaml"))
    assert out == "virtualservice.networking.istio.io/direct-nginx-through-egress-gateway created\n"
    out = ctl.ok("apply", "-n", "istio-system", "-f", "-",
                 input=read(walkthrough / "06-destinationrule-originate-mtls-nginx.yaml"))
    assert out == "destinationrule.networking.istio.io/originate-mtls-for-nginx created\n"
    gw = get_json(ctl, "gateway", "istio-egressgateway")
    assert gw["spec"]["servers"][0]["port"] == {"number": 443, "name": "https", "protocol": "HTTPS"}
    dr = get_json(ctl, "dr", "originate-mtls-for-nginx", "-n", "istio-system")
    assert dr["metadata"] == {"name": "originate-mtls-for-nginx", "namespace": "istio-system"}
    assert dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["credentialName"] == \
        "client-credential"


def test_stored_document_is_the_normalised_input(ctl, walkthrough, store):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    text = read(store / "config/default/serviceentries/cnn.yaml")
    assert text.startswith("apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\n"
                           "metadata:\n  name: cnn\n  namespace: default\nspec:\n"), text
    assert get_json(ctl, "se", "cnn") == {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "ServiceEntry",
        "metadata": {"name": "cnn", "namespace": "default"},
        "spec": {
            "hosts": ["edition.cnn.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"},
                      {"number": 443, "name": "https", "protocol": "HTTPS"}],
            "resolution": "DNS",
        },
    }
    # The stored text is what `get -o yaml` prints for the one resource.
    assert ctl.ok("get", "se", "cnn", "-o", "yaml") == text


def test_apply_changed_resource_is_configured(ctl, walkthrough):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    changed = read(walkthrough / "01-serviceentry-cnn.yaml").replace("resolution: DNS",
                                                                     "resolution: NONE")
    assert ctl.ok("apply", "-f", "-", input=changed) == \
        "serviceentry.networking.istio.io/cnn configured\n"
    assert get_json(ctl, "se", "cnn")["spec"]["resolution"] == "NONE"
    assert ctl.ok("apply", "-f", "-", input=changed) == \
        "serviceentry.networking.istio.io/cnn unchanged\n"


def test_apply_namespace_from_metadata_flag_default(ctl, walkthrough, store):
    doc = read(walkthrough / "01-serviceentry-cnn.yaml")
    with_ns = doc.replace("  name: cnn\n", "  name: cnn\n  namespace: istio-system\n")
    ctl.ok("apply", "-f", "-", input=with_ns)
    assert (store / "config/istio-system/serviceentries/cnn.yaml").is_file()
    # -n before the command, as a global flag, and a matching metadata.namespace.
    assert ctl.ok("-n", "istio-system", "apply", "-f", "-", input=with_ns) == \
        "serviceentry.networking.istio.io/cnn unchanged\n"
    ctl.ok("apply", "-n", "other", "-f", "-", input=doc)
    assert (store / "config/other/serviceentries/cnn.yaml").is_file()


def test_apply_namespace_conflict_is_kubectls_error(ctl, walkthrough, store):
    doc = read(walkthrough / "01-serviceentry-cnn.yaml").replace(
        "  name: cnn\n", "  name: cnn\n  namespace: a\n")
    r = ctl("apply", "-n", "b", "-f", "-", input=doc)
    assert r.rc == 1
    assert r.out == ""
    assert r.err == ('error: the namespace from the provided object "a" does not match the '
                     'namespace "b". You must pass \'--namespace=a\' to perform this operation.\n')
    assert not store.exists()


BROKEN = """\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: fine
spec:
  hosts:
  - example.com
  resolution: DNS
  ports:
  - number: 443
    name: https
    protocol: HTTPS
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: broken
spec:
  host: example.com
  trafficPolicy:
    tls:
      mode: SIMPEL
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: also-broken
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 99999
      name: http
      protocol: HTTP
    hosts:
    - "*"
"""


def test_failed_multi_document_apply_writes_nothing(ctl, walkthrough, store):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    before = store_files(store)
    mtimes = {f: os.stat(store / f).st_mtime_ns for f in before}
    r = ctl("apply", "-f", "-", input=BROKEN)
    assert r.rc == 1
    assert r.out == ""
    # Every error, each located as FILE:LINE:COL and naming the resource and the field.
    lines = r.err.splitlines()
    simpel = [l for l in lines if "SIMPEL" in l]
    assert len(simpel) == 1, r.err
    assert simpel[0].startswith("<stdin>:22:13: DestinationRule default/broken: "
                                "spec.trafficPolicy.tls.mode: "), simpel[0]
    port = [l for l in lines if "99999" in l]
    assert port and port[0].startswith("<stdin>:33:15: Gateway default/also-broken: "
                                       "spec.servers[0].port.number: "), r.err
    # Nothing of it was written, not even the valid first document.
    assert store_files(store) == before
    assert {f: os.stat(store / f).st_mtime_ns for f in before} == mtimes
    r = ctl("get", "se", "fine")
    assert r.rc == 1


def test_invalid_file_error_names_the_file(ctl, tmp_path, store):
    f = tmp_path / "dr.yaml"
    f.write_text(BROKEN)
    r = ctl("apply", "-f", f)
    assert r.rc == 1
    assert re.search(rf"^{re.escape(str(f))}:22:13: DestinationRule default/broken: "
                     r"spec\.trafficPolicy\.tls\.mode: ", r.err, re.M), r.err
    assert not store.exists()


def test_yaml_syntax_error_is_located(ctl, store):
    r = ctl("apply", "-f", "-", input="apiVersion: v1\nkind: [Secret\n")
    assert r.rc == 1
    assert r.err.startswith("<stdin>:"), r.err
    assert not store.exists()


def test_apply_errors_without_input(ctl, tmp_path):
    r = ctl("apply")
    assert r.rc == 1 and r.err.startswith("error: must specify -f")
    r = ctl("apply", "-f", tmp_path / "nope.yaml")
    assert r.rc == 1
    assert r.err == f'error: the path "{tmp_path / "nope.yaml"}" does not exist\n'
    r = ctl("apply", "-f", "-", input="# nothing\n")
    assert r.rc == 1 and r.err == "error: no objects passed to apply\n"


def test_apply_directory_and_json(ctl, walkthrough, tmp_path):
    # A directory: every file in name order, later documents win, as with kubectl.
    out = ctl.ok("apply", "-f", walkthrough)
    assert "gateway.networking.istio.io/istio-egressgateway created\n" in out
    assert "gateway.networking.istio.io/istio-egressgateway configured\n" in out
    j = tmp_path / "gw.json"
    j.write_text(json.dumps({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "json-gw", "namespace": "istio-system"},
        "spec": {"selector": {"istio": "egressgateway"},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                              "hosts": ["*"]}]}}))
    assert ctl.ok("apply", "-f", j) == "gateway.networking.istio.io/json-gw created\n"
    assert get_json(ctl, "gw", "json-gw", "-n", "istio-system")["apiVersion"] == \
        "networking.istio.io/v1beta1"


def test_apply_v1_secret_to_the_mount_layout(ctl, store):
    doc = """\
apiVersion: v1
kind: Secret
metadata:
  name: api-token
  namespace: istio-system
type: Opaque
data:
  token: c2VjcmV0LXZhbHVl
stringData:
  user: admin
"""
    assert ctl.ok("apply", "-f", "-", input=doc) == "secret/api-token created\n"
    d = store / "secrets/istio-system/api-token"
    assert read(d / "token") == "secret-value"
    assert read(d / "user") == "admin"
    assert ctl.ok("apply", "-f", "-", input=doc) == "secret/api-token unchanged\n"
    old_version = os.readlink(d / "..data")
    changed = doc.replace("user: admin", "user: root").replace(
        "  token: c2VjcmV0LXZhbHVl\n", "")
    assert ctl.ok("apply", "-f", "-", input=changed) == "secret/api-token configured\n"
    new_version = os.readlink(d / "..data")
    assert new_version != old_version and new_version.startswith("..")
    # The old version is gone, the removed key too; the layout is the kubelet's.
    assert not (d / old_version).exists()
    assert not os.path.lexists(d / "token")
    assert os.readlink(d / "user") == "..data/user"
    assert read(d / "user") == "root"


# ---------------------------------------------------------------------------------------
# get


def test_get_tables_like_kubectl(ctl, walkthrough):
    apply_walkthrough(ctl, walkthrough)
    assert_table(ctl.ok("get", "serviceentry"), [
        "NAME   HOSTS                 LOCATION   RESOLUTION   AGE",
        'cnn    ["edition.cnn.com"]              DNS          AGE',
    ])
    assert_table(ctl.ok("get", "gw"), [
        "NAME                  AGE",
        "istio-egressgateway   AGE",
    ])
    assert_table(ctl.ok("get", "virtualservices"), [
        "NAME                                GATEWAYS                         HOSTS                 AGE",
        'direct-cnn-through-egress-gateway   ["istio-egressgateway","mesh"]   ["edition.cnn.com"]   AGE',
    ])
    assert_table(ctl.ok("get", "dr"), [
        "NAME                                HOST                                                 AGE",
        "egressgateway-for-cnn               istio-egressgateway.istio-system.svc.cluster.local   AGE",
        "originate-tls-for-edition-cnn-com   edition.cnn.com                                      AGE",
    ])


def test_get_all_namespaces_name_and_yaml(ctl, walkthrough):
    apply_walkthrough(ctl, walkthrough)
    ctl.ok("apply", "-n", "istio-system", "-f",
           walkthrough / "06-destinationrule-originate-mtls-nginx.yaml")
    out = ctl.ok("get", "destinationrules", "-A")
    lines = out.splitlines()
    host_w = len("istio-egressgateway.istio-system.svc.cluster.local") + 3
    assert lines[0] == "NAMESPACE      NAME                                " + \
        "HOST".ljust(host_w) + "AGE"
    assert lines[1].startswith("default        egressgateway-for-cnn               "
                               "istio-egressgateway.istio-system.svc.cluster.local   ")
    assert lines[3].startswith("istio-system   originate-mtls-for-nginx            " +
                               NGINX.ljust(host_w))
    assert len(lines) == 4
    assert ctl.ok("get", "gw", "-o", "name") == "gateway.networking.istio.io/istio-egressgateway\n"
    assert ctl.ok("get", "dr", "-n", "istio-system", "-o", "name") == \
        "destinationrule.networking.istio.io/originate-mtls-for-nginx\n"
    listing = ctl.ok("get", "dr", "-o", "yaml")
    assert listing.startswith("apiVersion: v1\nitems:\n- apiVersion: networking.istio.io/v1alpha3\n")
    assert listing.endswith("kind: List\nmetadata:\n  resourceVersion: \"\"\n")
    as_json = get_json(ctl, "dr")
    assert as_json["kind"] == "List"
    assert [i["metadata"]["name"] for i in as_json["items"]] == [
        "egressgateway-for-cnn", "originate-tls-for-edition-cnn-com"]
    # KIND/NAME and several kinds at once, as kubectl prints them.
    assert ctl.ok("get", "gw/istio-egressgateway", "se/cnn", "-o", "name") == (
        "gateway.networking.istio.io/istio-egressgateway\n"
        "serviceentry.networking.istio.io/cnn\n")
    out = ctl.ok("get", "gw,se")
    assert "gateway.networking.istio.io/istio-egressgateway" in out
    assert "\n\nNAME" in out


def test_get_not_found_and_empty(ctl, walkthrough):
    r = ctl("get", "gw")
    assert (r.rc, r.out, r.err) == (0, "", "No resources found in default namespace.\n")
    r = ctl("get", "gw", "-A")
    assert (r.rc, r.out, r.err) == (0, "", "No resources found\n")
    r = ctl("get", "gw", "-n", "istio-system")
    assert r.err == "No resources found in istio-system namespace.\n"
    r = ctl("get", "gateway", "missing")
    assert r.rc == 1 and r.out == ""
    assert r.err == 'Error from server (NotFound): gateways.networking.istio.io "missing" not found\n'
    r = ctl("get", "secret", "missing")
    assert r.err == 'Error from server (NotFound): secrets "missing" not found\n'
    r = ctl("get", "pods")
    assert r.rc == 1 and r.err == 'error: the server doesn\'t have a resource type "pods"\n'
    r = ctl("get", "gw", "x", "-A")
    assert r.rc == 1
    r = ctl("get", "gw", "-o", "wide-ish")
    assert r.rc == 1 and "allowed formats are: custom-columns,json,jsonpath,name,wide,yaml" in r.err


@pytest.mark.parametrize("age,shown", [
    (5, ("5s", "6s")), (150, ("2m30s", "2m31s")), (600, ("10m",)), (4 * 3600 + 120, ("4h2m",)),
    (30 * 3600, ("30h",)), (3 * 86400 + 7200, ("3d2h",)), (400 * 86400, ("400d",)),
    (3 * 365 * 86400 + 86400 * 10, ("3y10d",)),
])
def test_get_age_column(ctl, walkthrough, store, age, shown):
    """The age column as kubectl prints it. Where seconds show, egressctl may read the clock
    in the next second after the test set the file's time: one second more is right too."""
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    f = store / "config/default/serviceentries/cnn.yaml"
    t = time.time() - age
    os.utime(f, (t, t))
    row = ctl.ok("get", "se").splitlines()[1]
    assert row.split()[-1] in shown, row


# ---------------------------------------------------------------------------------------
# delete


def test_walkthrough_cleanup_commands(ctl, walkthrough, store):
    apply_walkthrough(ctl, walkthrough)
    for args, line in [
        (("gateway", "istio-egressgateway"),
         'gateway.networking.istio.io "istio-egressgateway" deleted\n'),
        (("serviceentry", "cnn"), 'serviceentry.networking.istio.io "cnn" deleted\n'),
        (("virtualservice", "direct-cnn-through-egress-gateway"),
         'virtualservice.networking.istio.io "direct-cnn-through-egress-gateway" deleted\n'),
        (("destinationrule", "originate-tls-for-edition-cnn-com"),
         'destinationrule.networking.istio.io "originate-tls-for-edition-cnn-com" deleted\n'),
        (("destinationrule", "egressgateway-for-cnn"),
         'destinationrule.networking.istio.io "egressgateway-for-cnn" deleted\n'),
    ]:
        assert ctl.ok("delete", *args) == line
    assert store_files(store) == []
    for kind in ["gw", "se", "vs", "dr"]:
        assert ctl("get", kind).err == "No resources found in default namespace.\n"


@pytest.mark.parametrize("kind", [
    "gw", "gateway", "gateways", "Gateway", "gateway.networking.istio.io",
    "gateways.networking.istio.io",
])
def test_delete_accepts_kubectl_kind_names(ctl, walkthrough, kind):
    ctl.ok("apply", "-f", walkthrough / "02-gateway-destinationrule-cnn.yaml")
    assert ctl.ok("delete", kind, "istio-egressgateway") == \
        'gateway.networking.istio.io "istio-egressgateway" deleted\n'


def test_delete_short_names(ctl, walkthrough):
    apply_walkthrough(ctl, walkthrough)
    assert ctl.ok("delete", "se", "cnn") == 'serviceentry.networking.istio.io "cnn" deleted\n'
    assert ctl.ok("delete", "vs", "direct-cnn-through-egress-gateway") == \
        'virtualservice.networking.istio.io "direct-cnn-through-egress-gateway" deleted\n'
    assert ctl.ok("delete", "dr", "egressgateway-for-cnn", "originate-tls-for-edition-cnn-com") == (
        'destinationrule.networking.istio.io "egressgateway-for-cnn" deleted\n'
        'destinationrule.networking.istio.io "originate-tls-for-edition-cnn-com" deleted\n')
    assert ctl.ok("delete", "gw/istio-egressgateway") == \
        'gateway.networking.istio.io "istio-egressgateway" deleted\n'


def test_delete_missing_is_not_found(ctl, walkthrough):
    r = ctl("delete", "gateway", "istio-egressgateway")
    assert r.rc == 1 and r.out == ""
    assert r.err == ('Error from server (NotFound): gateways.networking.istio.io '
                     '"istio-egressgateway" not found\n')
    r = ctl("delete", "secret", "nope", "-n", "mesh-external")
    assert r.rc == 1 and r.err == 'Error from server (NotFound): secrets "nope" not found\n'
    # One missing among several: the others are deleted, the status is still 1. (The
    # ServiceEntry first: a DestinationRule for a host none lists is warned about.)
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    ctl.ok("apply", "-f", walkthrough / "03-virtualservice-destinationrule-cnn.yaml")
    r = ctl("delete", "dr", "nope", "originate-tls-for-edition-cnn-com")
    assert r.rc == 1
    assert r.out == 'destinationrule.networking.istio.io "originate-tls-for-edition-cnn-com" deleted\n'
    assert "destinationrules.networking.istio.io \"nope\" not found" in r.err
    r = ctl("delete", "dr", "nope", "--ignore-not-found")
    assert (r.rc, r.out, r.err) == (0, "", "")
    r = ctl("delete", "gw")
    assert r.rc == 1 and "no name was specified" in r.err


def test_delete_from_file_and_in_namespace(ctl, walkthrough, store):
    ctl.ok("apply", "-f", walkthrough / "02-gateway-destinationrule-cnn.yaml")
    assert ctl.ok("delete", "-f", walkthrough / "02-gateway-destinationrule-cnn.yaml") == (
        'gateway.networking.istio.io "istio-egressgateway" deleted\n'
        'destinationrule.networking.istio.io "egressgateway-for-cnn" deleted\n')
    f = walkthrough / "06-destinationrule-originate-mtls-nginx.yaml"
    ctl.ok("apply", "-n", "istio-system", "-f", f)
    r = ctl("delete", "destinationrule", "originate-mtls-for-nginx")
    assert r.rc == 1  # it is in istio-system, not default
    assert ctl.ok("delete", "destinationrule", "-n", "istio-system", "originate-mtls-for-nginx") == \
        'destinationrule.networking.istio.io "originate-mtls-for-nginx" deleted\n'
    assert store_files(store) == []


def test_delete_all_and_namespace(ctl, walkthrough, store):
    apply_walkthrough(ctl, walkthrough)
    ctl.ok("apply", "-n", "istio-system", "-f",
           walkthrough / "06-destinationrule-originate-mtls-nginx.yaml")
    assert ctl.ok("delete", "dr", "--all") == (
        'destinationrule.networking.istio.io "egressgateway-for-cnn" deleted\n'
        'destinationrule.networking.istio.io "originate-tls-for-edition-cnn-com" deleted\n')
    assert ctl.ok("get", "dr", "-A", "-o", "name") == \
        "destinationrule.networking.istio.io/originate-mtls-for-nginx\n"
    assert ctl.ok("create", "namespace", "mesh-external") == "namespace/mesh-external created\n"
    assert ctl.ok("delete", "namespace", "istio-system") == 'namespace "istio-system" deleted\n'
    assert ctl("get", "dr", "-A").err == "No resources found\n"
    assert ctl.ok("get", "gw", "-o", "name") == "gateway.networking.istio.io/istio-egressgateway\n"


# ---------------------------------------------------------------------------------------
# resources in other files: multi-document files, a mounted ConfigMap


MULTI = """\
# Hand-written file with three resources.
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin.org   # the public one
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: httpbin-tls
spec:
  host: httpbin.org
  trafficPolicy:
    tls:
      mode: SIMPLE
---
# keep me
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: edge
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - httpbin.org
"""


def test_delete_and_update_inside_a_multi_document_file(ctl, store):
    f = store / "config" / "hand" / "httpbin.yaml"
    f.parent.mkdir(parents=True)
    f.write_text(MULTI)
    assert ctl.ok("get", "dr", "-o", "name") == "destinationrule.networking.istio.io/httpbin-tls\n"
    # Update in place: the document changes where it is, the others keep their text.
    changed = MULTI.split("---\n")[1].replace("mode: SIMPLE", "mode: DISABLE")
    assert ctl.ok("apply", "-f", "-", input=changed) == \
        "destinationrule.networking.istio.io/httpbin-tls configured\n"
    text = read(f)
    assert "mode: DISABLE" in text and "# the public one" in text and "# keep me" in text
    assert store_files(store) == ["config/hand/httpbin.yaml"]
    # Delete from the middle: the other two stay, comments and all.
    assert ctl.ok("delete", "dr", "httpbin-tls") == \
        'destinationrule.networking.istio.io "httpbin-tls" deleted\n'
    text = read(f)
    assert "httpbin-tls" not in text and "# the public one" in text and "# keep me" in text
    assert ctl.ok("get", "se,gw", "-o", "name") == (
        "serviceentry.networking.istio.io/httpbin\n"
        "gateway.networking.istio.io/edge\n")
    assert ctl.ok("delete", "se", "httpbin") == 'serviceentry.networking.istio.io "httpbin" deleted\n'
    assert ctl.ok("delete", "gw", "edge") == 'gateway.networking.istio.io "edge" deleted\n'
    assert not f.exists()


def test_update_keeps_the_comments_of_a_hand_written_file(ctl, walkthrough, store):
    f = store / "config" / "cnn.yaml"
    f.parent.mkdir(parents=True)
    f.write_text("# owner: team-a\n" + read(walkthrough / "01-serviceentry-cnn.yaml"))
    changed = read(walkthrough / "01-serviceentry-cnn.yaml").replace("resolution: DNS",
                                                                     "resolution: NONE")
    assert ctl.ok("apply", "-f", "-", input=changed) == \
        "serviceentry.networking.istio.io/cnn configured\n"
    text = read(f)
    assert text.startswith("# owner: team-a\napiVersion:") and "resolution: NONE" in text
    assert store_files(store) == ["config/cnn.yaml"]


def kubelet_mount(directory, files, version="..2024_01_01_00_00_00.123456789"):
    """Lays files out the way the kubelet mounts a ConfigMap or Secret volume."""
    directory.mkdir(parents=True)
    (directory / version).mkdir()
    for name, content in files.items():
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(directory / version / name, mode) as fh:
            fh.write(content)
    os.symlink(version, directory / "..data")
    for name in files:
        os.symlink(f"..data/{name}", directory / name)


def test_configmap_and_secret_mounts_read_back(ctl, walkthrough, store, walkthrough_certs):
    kubelet_mount(store / "config" / "istio-config", {
        "cnn.yaml": read(walkthrough / "01-serviceentry-cnn.yaml"),
        "gateway.yaml": read(walkthrough / "02-gateway-destinationrule-cnn.yaml"),
        "mtls.yaml": read(walkthrough / "06-destinationrule-originate-mtls-nginx.yaml").replace(
            "  name: originate-mtls-for-nginx\n",
            "  name: originate-mtls-for-nginx\n  namespace: istio-system\n"),
        "README.txt": "not yaml, ignored\n",
    })
    certs = walkthrough_certs
    client = {
        "tls.crt": read(certs / "client.example.com.crt"),
        "tls.key": read(certs / "client.example.com.key"),
        "ca.crt": read(certs / "example.com.crt"),
    }
    kubelet_mount(store / "secrets" / "istio-system" / "client-credential", client)
    kubelet_mount(store / "secrets" / "mesh-external" / "nginx-server-certs", {
        "tls.crt": read(certs / f"{NGINX}.crt"),
        "tls.key": read(certs / f"{NGINX}.key"),
    })
    # Everything reads once (..data and the timestamped directory are skipped), without
    # a warning.
    assert ctl.ok("get", "se,gw,dr", "-A", "-o", "name") == (
        "serviceentry.networking.istio.io/cnn\n"
        "gateway.networking.istio.io/istio-egressgateway\n"
        "destinationrule.networking.istio.io/egressgateway-for-cnn\n"
        "destinationrule.networking.istio.io/originate-mtls-for-nginx\n")
    assert_table(ctl.ok("get", "secrets", "-n", "istio-system"), [
        "NAME                TYPE     DATA   AGE",
        "client-credential   Opaque   3      AGE",
    ])
    assert_table(ctl.ok("get", "secret", "-n", "mesh-external"), [
        "NAME                 TYPE                DATA   AGE",
        "nginx-server-certs   kubernetes.io/tls   2      AGE",
    ])
    doc = get_json(ctl, "secret", "client-credential", "-n", "istio-system")
    assert doc["kind"] == "Secret" and doc["type"] == "Opaque"
    assert doc["metadata"] == {"name": "client-credential", "namespace": "istio-system"}
    assert {k: base64.b64decode(v).decode() for k, v in doc["data"].items()} == client
    # kubectl's layout for a Secret's YAML.
    y = ctl.ok("get", "secret", "client-credential", "-n", "istio-system", "-o", "yaml")
    assert re.match(r"apiVersion: v1\ndata:\n  ca\.crt: \S+\n  tls\.crt: \S+\n  tls\.key: \S+\n"
                    r"kind: Secret\nmetadata:\n  name: client-credential\n"
                    r"  namespace: istio-system\ntype: Opaque\n$", y), y
    # A kubelet "update": a new version directory and an atomic ..data swap.
    d = store / "secrets" / "istio-system" / "client-credential"
    new = "..2024_01_02_00_00_00.987654321"
    (d / new).mkdir()
    for k, v in client.items():
        (d / new / k).write_text(v if k != "ca.crt" else read(certs / "client.example.com.crt"))
    os.symlink(new, d / "..data_tmp")
    os.rename(d / "..data_tmp", d / "..data")
    doc = get_json(ctl, "secret", "client-credential", "-n", "istio-system")
    assert base64.b64decode(doc["data"]["ca.crt"]).decode() == client["tls.crt"]
    # Deleting a mounted resource and Secret works too.
    assert ctl.ok("delete", "secret", "client-credential", "-n", "istio-system") == \
        'secret "client-credential" deleted\n'
    assert not d.exists()
    assert ctl.ok("delete", "gw", "istio-egressgateway") == \
        'gateway.networking.istio.io "istio-egressgateway" deleted\n'
    assert ctl.ok("get", "dr", "-o", "name") == \
        "destinationrule.networking.istio.io/egressgateway-for-cnn\n"


def test_broken_stored_file_is_a_warning_not_a_blocker(ctl, walkthrough, store):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    bad = store / "config" / "bad.yaml"
    bad.write_text(BROKEN)
    r = ctl("get", "se")
    assert r.rc == 0
    assert "cnn" in r.out and "fine" in r.out
    assert re.search(rf"^Warning: {re.escape(str(bad))}:22:13: ", r.err, re.M), r.err


# ---------------------------------------------------------------------------------------
# secrets


def test_walkthrough_secrets(ctl, walkthrough_certs, store):
    c = walkthrough_certs
    assert ctl.ok("create", "namespace", "mesh-external") == "namespace/mesh-external created\n"
    assert ctl.ok("create", "-n", "mesh-external", "secret", "tls", "nginx-server-certs",
                  "--key", f"{NGINX}.key", "--cert", f"{NGINX}.crt", cwd=c) == \
        "secret/nginx-server-certs created\n"
    assert ctl.ok("create", "-n", "mesh-external", "secret", "generic", "nginx-ca-certs",
                  "--from-file=example.com.crt", cwd=c) == "secret/nginx-ca-certs created\n"
    assert ctl.ok("create", "secret", "-n", "istio-system", "generic", "client-credential",
                  "--from-file=tls.key=client.example.com.key",
                  "--from-file=tls.crt=client.example.com.crt",
                  "--from-file=ca.crt=example.com.crt", cwd=c) == \
        "secret/client-credential created\n"

    # The Kubernetes Secret volume layout, key files 0600 in 0700 directories.
    d = store / "secrets" / "istio-system" / "client-credential"
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    version = os.readlink(d / "..data")
    assert re.fullmatch(r"\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+", version), version
    assert stat.S_IMODE(os.stat(d / version).st_mode) == 0o700
    for key, src in [("tls.key", "client.example.com.key"), ("tls.crt", "client.example.com.crt"),
                     ("ca.crt", "example.com.crt")]:
        assert os.readlink(d / key) == f"..data/{key}"
        assert read(d / key) == read(c / src)
        assert stat.S_IMODE(os.stat(d / key).st_mode) == 0o600
    assert sorted(p for p in os.listdir(d) if not p.startswith("..")) == \
        ["ca.crt", "tls.crt", "tls.key"]
    assert sorted(os.listdir(store / "secrets" / "mesh-external" / "nginx-server-certs")) == \
        sorted(["..data", "..type", "tls.crt", "tls.key", os.readlink(
            store / "secrets" / "mesh-external" / "nginx-server-certs" / "..data")])
    assert sorted(os.listdir(store / "secrets" / "mesh-external" / "nginx-ca-certs" / "..data")) \
        == ["..type", "example.com.crt"]

    assert_table(ctl.ok("get", "secret", "-n", "mesh-external"), [
        "NAME                 TYPE                DATA   AGE",
        "nginx-ca-certs       Opaque              1      AGE",
        "nginx-server-certs   kubernetes.io/tls   2      AGE",
    ])
    assert_table(ctl.ok("get", "secrets", "-A"), [
        "NAMESPACE       NAME                 TYPE                DATA   AGE",
        "istio-system    client-credential    Opaque              3      AGE",
        "mesh-external   nginx-ca-certs       Opaque              1      AGE",
        "mesh-external   nginx-server-certs   kubernetes.io/tls   2      AGE",
    ])
    doc = get_json(ctl, "secret", "nginx-server-certs", "-n", "mesh-external")
    assert doc["type"] == "kubernetes.io/tls"
    assert base64.b64decode(doc["data"]["tls.key"]).decode() == read(c / f"{NGINX}.key")

    r = ctl("create", "secret", "-n", "istio-system", "generic", "client-credential",
            "--from-file=ca.crt=example.com.crt", cwd=c)
    assert r.rc == 1 and r.out == ""
    assert r.err == 'error: failed to create secret secrets "client-credential" already exists\n'

    # The walkthrough's cleanup.
    assert ctl.ok("delete", "secret", "nginx-server-certs", "nginx-ca-certs", "-n",
                  "mesh-external") == ('secret "nginx-server-certs" deleted\n'
                                       'secret "nginx-ca-certs" deleted\n')
    assert ctl.ok("delete", "secret", "client-credential", "-n", "istio-system") == \
        'secret "client-credential" deleted\n'
    assert ctl.ok("delete", "namespace", "mesh-external") == 'namespace "mesh-external" deleted\n'
    assert [f for f in store_files(store) if not f.startswith("secrets/")] == []
    assert ctl("get", "secrets", "-A").err == "No resources found\n"


def test_create_secret_errors_never_show_key_material(ctl, walkthrough_certs, store, tmp_path):
    c = walkthrough_certs
    key_text = read(c / "client.example.com.key")
    # A key that does not belong to the certificate.
    r = ctl("create", "secret", "tls", "mismatch", "--cert", c / f"{NGINX}.crt",
            "--key", c / "client.example.com.key")
    assert r.rc == 1 and "does not match" in r.err
    # Certificate and key swapped.
    r = ctl("create", "secret", "tls", "swapped", "--cert", c / "client.example.com.key",
            "--key", c / "client.example.com.crt")
    assert r.rc == 1 and r.err.startswith("error: failed to load key pair tls:")
    for err in [r.err]:
        assert "PRIVATE KEY" not in err and key_text.splitlines()[1] not in err
    r = ctl("create", "secret", "tls", "nokey", "--cert", c / f"{NGINX}.crt")
    assert r.rc == 1 and r.err == 'error: required flag(s) "key" not set\n'
    r = ctl("create", "secret", "generic", "x", f"--from-file=missing={tmp_path / 'nope'}")
    assert r.rc == 1 and r.err.startswith(f"error: error reading {tmp_path / 'nope'}: ")
    r = ctl("create", "secret", "generic", "x", f"--from-file=bad key={c / 'example.com.crt'}")
    assert r.rc == 1 and r.err.startswith('error: "bad key" is not a valid key name for a Secret')
    r = ctl("create", "secret", "generic", "Bad_Name", f"--from-file={c / 'example.com.crt'}")
    assert r.rc == 1 and "metadata.name" in r.err
    assert not store.exists() or store_files(store) == []


def test_create_secret_from_literal_and_directory(ctl, walkthrough_certs, store):
    assert ctl.ok("create", "secret", "generic", "lit", "--from-literal=user=admin",
                  "--from-literal=password=s3cr=t") == "secret/lit created\n"
    d = store / "secrets" / "default" / "lit"
    assert read(d / "user") == "admin" and read(d / "password") == "s3cr=t"
    assert ctl.ok("create", "secret", "generic", "dir", f"--from-file={walkthrough_certs}") == \
        "secret/dir created\n"
    names = sorted(os.listdir(store / "secrets" / "default" / "dir"))
    assert "example.com.crt" in names and "client.example.com.key" in names


# ---------------------------------------------------------------------------------------
# where the store is


def test_store_location_flag_env_default(ctl, walkthrough, tmp_path):
    f = walkthrough / "01-serviceentry-cnn.yaml"
    env_store = tmp_path / "from-env"
    ctl.ok("apply", "-f", f, use_store=False, env={"EGRESSGW_STORE": str(env_store)})
    assert (env_store / "config/default/serviceentries/cnn.yaml").is_file()
    # --store wins over the environment, before or after the command.
    flag_store = tmp_path / "from-flag"
    ctl.ok("apply", "-f", f, "--store", flag_store, use_store=False,
           env={"EGRESSGW_STORE": str(env_store)})
    assert (flag_store / "config/default/serviceentries/cnn.yaml").is_file()
    ctl.ok("--store", flag_store, "delete", "se", "cnn", use_store=False)
    assert not (flag_store / "config/default/serviceentries/cnn.yaml").exists()
    # Neither: ./egressgw-store.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    ctl.ok("apply", "-f", f, use_store=False, cwd=cwd)
    assert (cwd / "egressgw-store/config/default/serviceentries/cnn.yaml").is_file()
    assert ctl.ok("get", "se", "-o", "name", use_store=False, cwd=cwd) == \
        "serviceentry.networking.istio.io/cnn\n"


def test_writes_leave_no_temporary_files(ctl, walkthrough, walkthrough_certs, store):
    apply_walkthrough(ctl, walkthrough)
    ctl.ok("create", "secret", "generic", "s", f"--from-file={walkthrough_certs / 'example.com.crt'}")
    ctl.ok("apply", "-f", "-", input=read(walkthrough / "04-gateway-destinationrule-nginx.yaml"))
    for f in store_files(store):
        assert ".tmp." not in f and "..new." not in f and "_tmp" not in f, f


# ---------------------------------------------------------------------------------------
# the mesh CA


def openssl(*args, **kw):
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                          timeout=30, **kw)


def test_ca_init_and_issue_verify_with_openssl(ctl, tmp_path):
    ca = tmp_path / "mesh-ca"
    out = tmp_path / "gw-certs"
    assert ctl.ok("ca", "init", "--dir", ca) == f"root CA created in {ca} (trust domain cluster.local)\n"
    assert sorted(os.listdir(ca)) == ["root-cert.pem", "root-key.pem", "trust-domain"]
    assert stat.S_IMODE(os.stat(ca / "root-key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca).st_mode) == 0o700
    root = openssl("x509", "-in", ca / "root-cert.pem", "-noout", "-text").stdout
    assert "CA:TRUE" in root and "Certificate Sign" in root and "prime256v1" in root
    assert "Subject: O = cluster.local" in root

    sa = "istio-egressgateway-service-account"
    msg = ctl.ok("ca", "issue", "--dir", ca, "--namespace", "istio-system", "--service-account",
                 sa, "--out", out, "--ttl", "2h", "--dns", "gw.example.test")
    assert msg.startswith(f"issued spiffe://cluster.local/ns/istio-system/sa/{sa} (valid until ")
    assert sorted(os.listdir(out)) == ["cert-chain.pem", "key.pem", "root-cert.pem"]
    assert stat.S_IMODE(os.stat(out / "key.pem").st_mode) == 0o600
    assert read(out / "root-cert.pem") == read(ca / "root-cert.pem")

    v = openssl("verify", "-CAfile", ca / "root-cert.pem", out / "cert-chain.pem")
    assert v.returncode == 0 and v.stdout.strip().endswith(": OK"), v.stdout + v.stderr
    san = openssl("x509", "-in", out / "cert-chain.pem", "-noout", "-ext", "subjectAltName").stdout
    assert f"URI:spiffe://cluster.local/ns/istio-system/sa/{sa}" in san
    assert "DNS:gw.example.test" in san
    assert "critical" in san
    text = openssl("x509", "-in", out / "cert-chain.pem", "-noout", "-text").stdout
    assert "prime256v1" in text and "ecdsa-with-SHA256" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    # The key is the certificate's key.
    pub_cert = openssl("x509", "-in", out / "cert-chain.pem", "-noout", "-pubkey").stdout
    pub_key = openssl("pkey", "-in", out / "key.pem", "-pubout").stdout
    assert pub_cert == pub_key and pub_cert.startswith("-----BEGIN PUBLIC KEY-----")
    # Validity: from a minute ago to two hours from now.
    assert openssl("x509", "-in", out / "cert-chain.pem", "-noout", "-checkend", 7000).returncode == 0
    assert openssl("x509", "-in", out / "cert-chain.pem", "-noout", "-checkend", 7300).returncode == 1
    # A random 128-bit serial: two certificates never share one.
    ctl.ok("ca", "issue", "--dir", ca, "-n", "default", "--service-account", "sleep",
           "--out", tmp_path / "sleep")
    s1 = openssl("x509", "-in", out / "cert-chain.pem", "-noout", "-serial").stdout
    s2 = openssl("x509", "-in", tmp_path / "sleep" / "cert-chain.pem", "-noout", "-serial").stdout
    assert s1 != s2
    # Default TTL 24h.
    assert openssl("x509", "-in", tmp_path / "sleep" / "cert-chain.pem", "-noout", "-checkend",
                   86400 - 120).returncode == 0
    assert openssl("x509", "-in", tmp_path / "sleep" / "cert-chain.pem", "-noout", "-checkend",
                   86400 + 120).returncode == 1


def test_ca_trust_domain_and_errors(ctl, tmp_path):
    ca = tmp_path / "ca"
    ctl.ok("ca", "init", "--dir", ca, "--trust-domain", "example.org")
    assert read(ca / "trust-domain") == "example.org\n"
    r = ctl("ca", "init", "--dir", ca)
    assert r.rc == 1 and "already holds a CA" in r.err
    ctl.ok("ca", "issue", "--dir", ca, "--namespace", "ns1", "--service-account", "sa1",
           "--out", tmp_path / "o", "--ttl", "90m")
    san = openssl("x509", "-in", tmp_path / "o" / "cert-chain.pem", "-noout", "-ext",
                  "subjectAltName").stdout
    assert "URI:spiffe://example.org/ns/ns1/sa/sa1" in san
    assert openssl("verify", "-CAfile", ca / "root-cert.pem",
                   tmp_path / "o" / "cert-chain.pem").returncode == 0
    for bad in (["--ttl", "soon"], ["--ttl", "-1h"], ["--ttl", "0s"]):
        r = ctl("ca", "issue", "--dir", ca, "--namespace", "ns1", "--service-account", "sa1",
                "--out", tmp_path / "x", *bad)
        assert r.rc == 1 and r.err.startswith("error: "), (bad, r.err)
    r = ctl("ca", "issue", "--dir", ca, "--namespace", "a/b", "--service-account", "sa1",
            "--out", tmp_path / "x")
    assert r.rc == 1 and "invalid namespace" in r.err
    r = ctl("ca", "issue", "--dir", ca, "--namespace", "ns1", "--out", tmp_path / "x")
    assert r.rc == 1 and "required" in r.err
    r = ctl("ca", "issue", "--dir", tmp_path / "no-ca", "--namespace", "ns1",
            "--service-account", "sa1", "--out", tmp_path / "x")
    assert r.rc == 1 and "root-cert.pem" in r.err
    r = ctl("ca", "init", "--dir", tmp_path / "td", "--trust-domain", "Bad/Domain")
    assert r.rc == 1 and "invalid trust domain" in r.err
    assert not (tmp_path / "x").exists()
