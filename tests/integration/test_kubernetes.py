"""deploy/kubernetes (issue 20): every overlay renders with `kubectl kustomize` and
validates against the Kubernetes API's OpenAPI schemas and, for the Istio resources in
the egressgw-config ConfigMap, Istio's CRD schemas (npm kubernetes-models and
@kubernetes-models/istio, tests/k8s/validate.mjs), and egressctl accepts the same Istio
YAML. The properties the issue asks of the gateway Deployment are checked on the
rendered objects, and its container arguments are run by this build's egressgw."""
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO
from gwlib import BUILD, free_port, loopback_ip, scaled, wait_port, wait_until
from hardlib import (RawClient, RecordingServer, plain_gateway_yaml, service_entry_yaml,
                     start_gateway, virtual_service_yaml, write_hosts)
from test_replicas import Traffic

K8S = REPO / "deploy" / "kubernetes"
VALIDATOR = REPO / "tests" / "k8s"
OVERLAYS = ["walkthrough", "walkthrough-mtls", "sidecar"]


def need(tool, package):
    if not shutil.which(tool):
        pytest.fail(f"{tool} is missing: install {package}")


def render(overlay, tool=None):
    """The overlay rendered by `kubectl kustomize`, or where kubectl is missing (it is not
    in Debian 12) by tests/k8s/kustomize.py, the subset deploy/kubernetes uses;
    test_renderer_matches_kubectl keeps the two in step."""
    tool = tool or ("kubectl" if shutil.which("kubectl") else "kustomize.py")
    cmd = (["kubectl", "kustomize"] if tool == "kubectl"
           else ["/usr/bin/python3", str(VALIDATOR / "kustomize.py")])
    r = subprocess.run(cmd + [str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def objects(text):
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def validator():
    need("node", "nodejs")
    need("npm", "npm")
    if not (VALIDATOR / "node_modules" / "kubernetes-models").is_dir():
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                           cwd=str(VALIDATOR), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
    return VALIDATOR / "validate.mjs"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay, validator):
    text = render(overlay)
    r = subprocess.run(["node", str(validator)], input=text, capture_output=True, text=True,
                       cwd=str(VALIDATOR), timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    assert "valid apps/v1 Deployment" in r.stdout
    assert "networking.istio.io/v1alpha3 Gateway" in r.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_matches_kubectl(overlay):
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed (not in Debian 12): tests/k8s/kustomize.py "
                    "rendered the overlays without a comparison")

    def norm(text):
        docs = sorted(objects(text), key=lambda d: (d["kind"], d["metadata"]["name"]))
        return re.sub(r"egressgw-config-[a-z0-9]{10}", "egressgw-config-HASH",
                      yaml.safe_dump(docs, sort_keys=True))
    assert norm(render(overlay, "kustomize.py")) == norm(render(overlay, "kubectl"))


def test_validator_can_fail(validator):
    """The schemas are enforced: a wrong type and a bad Istio enum are refused."""
    text = render("walkthrough")
    for bad in (text.replace("  replicas: 2\n", "  replicas: two\n"),
                text.replace("mode: ISTIO_MUTUAL", "mode: MUTUALLY")):
        assert bad != text
        r = subprocess.run(["node", str(validator)], input=bad, capture_output=True, text=True,
                           cwd=str(VALIDATOR), timeout=120)
        assert r.returncode == 1 and "must be" in r.stderr, r.stderr


@pytest.mark.parametrize("config", ["walkthrough", "walkthrough-mtls"])
def test_egressctl_accepts_the_configmaps_yaml(config, ctl):
    """The ConfigMap's files as one set, as the gateway reads them: no error, no warning."""
    files = sorted((K8S / "config" / config).glob("0*.yaml"))
    args = [a for f in files for a in ("-f", f)]
    out = ctl.ok("apply", *args)
    docs = sum(f.read_text().count("\nkind: ") + f.read_text().startswith("kind: ") for f in files)
    assert out.count(" created") == docs, out


def test_configmaps_hold_the_examples():
    """config/ holds examples/ as they are (06 with the namespace its kubectl apply -n
    istio-system gives it in the walkthrough)."""
    for f in list((K8S / "config" / "walkthrough").glob("0*.yaml")) + \
            list((K8S / "config" / "walkthrough-mtls").glob("0*.yaml")):
        ex = (REPO / "examples" / f.name).read_text()
        got = f.read_text()
        if f.name.startswith("06-"):
            got = got.replace("  # kubectl apply -n istio-system in the walkthrough\n"
                              "  namespace: istio-system\n", "")
        assert got == ex, f.name


def gateway_objects():
    return {o["kind"]: o for o in objects(render("walkthrough-mtls"))}


def test_gateway_deployment_properties():
    o = gateway_objects()
    dep, spec = o["Deployment"], o["Deployment"]["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    args = dict(a[2:].split("=", 1) for a in c["args"])
    assert spec["replicas"] >= 2 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert o["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    hpa = o["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    # Readiness on the read-only status port, which is where --status listens.
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    assert args["status"].endswith(":15021") and args["admin"].startswith("127.0.0.1:")
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz/live"
    # The grace period covers the drain: announce + drain timeout.
    secs = lambda v: float(v.rstrip("s"))  # noqa: E731
    assert pod["terminationGracePeriodSeconds"] > secs(args["drain-announce"]) + secs(args["drain-timeout"])
    # Non-root, read-only, no capability: ports below 1024 through the pod sysctl.
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in psc["sysctls"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    # The store's layout: config/ from the ConfigMap, secrets/NS/NAME from the Secret.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["istio-config"] == args["store"] + "/config/istio"
    assert mounts["client-credential"] == args["store"] + "/secrets/istio-system/client-credential"
    assert mounts["workload-identity"] == args["identity"]
    assert o["Service"]["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_sidecar_pod():
    o = {x["kind"]: x for x in objects(render("sidecar"))}
    pod = o["Deployment"]["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    side = [c for c in pod["containers"] if c["name"] == "egressgw-sidecar"][0]
    uid = side["securityContext"]["runAsUser"]
    assert init["command"][1:3] == ["iptables", f"--uid={uid}"] and "--apply" in init["command"]
    assert set(init["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "NET_RAW"}
    assert "--outbound=127.0.0.1:15001" in side["args"]
    assert "--outbound-port=15001" in init["command"]


def test_the_deployments_arguments_run(ctl, tmp_path, egressctl_bin):
    """The gateway container's arguments, as rendered, start this build's egressgw, with
    the mounts made as a kubelet makes them (..data symlinks) under a temporary root, and
    /healthz/ready answers on the status port."""
    o = gateway_objects()
    c = o["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    root = tmp_path / "pod"
    args = []
    status_port, admin_port, ip = free_port(), free_port(), loopback_ip()
    for a in c["args"]:
        k, v = a[2:].split("=", 1)
        if k in ("store", "identity"):
            v = str(root) + v
        elif k == "status":
            v = f"127.0.0.1:{status_port}"
        elif k == "admin":
            v = f"127.0.0.1:{admin_port}"
        elif k == "namespace":
            v = "istio-system"          # $(POD_NAMESPACE)
        args.append(f"--{k}={v}")
    cfg = o["ConfigMap"]
    mount = root / (c["args"][1].split("=", 1)[1].lstrip("/") + "/config/istio")
    data = mount / "..2026_01_01_00_00_00.1"
    data.mkdir(parents=True)
    for name, text in cfg["data"].items():
        (data / name).write_text(text)
        os.symlink(f"..data/{name}", mount / name)
    os.symlink(data.name, mount / "..data")
    ident = root / "etc/istio/identity"
    subprocess.run([str(egressctl_bin), "ca", "init", "--dir", str(tmp_path / "ca")], check=True,
                   capture_output=True)
    subprocess.run([str(egressctl_bin), "ca", "issue", "--dir", str(tmp_path / "ca"), "--namespace",
                    "istio-system", "--service-account", "istio-egressgateway-service-account",
                    "--out", str(ident)], check=True, capture_output=True)
    err = tmp_path / "gw.err"
    # Names answered here, so that nothing asks a DNS server off this machine.
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{loopback_ip()} my-nginx.mesh-external.svc.cluster.local edition.cnn.com\n")
    p = subprocess.Popen([str(BUILD / "egressgw"), *args, f"--listen-address={ip}", "--workers=1",
                          f"--hosts-file={hosts}", "--drain-announce=0"],
                         stdout=subprocess.DEVNULL, stderr=open(err, "w"),
                         env={**os.environ, "SSL_CERT_FILE": "/dev/null"})
    try:
        wait_port("127.0.0.1", status_port, proc=p)
        wait_port(ip, 443, proc=p)      # the Gateway server of 04
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/healthz/ready", timeout=5) as r:
            assert r.status == 200 and r.read() == b"LIVE\n"
    finally:
        p.terminate()
        assert p.wait(scaled(15)) == 0, err.read_text()[-2000:]
    text = err.read_text()
    assert "has errors" not in text and "egressgw gateway serving" in text, text[-2000:]


def kubelet_configmap(mount, version, files):
    """Writes a ConfigMap volume's new version as the kubelet's AtomicWriter does: a new
    ..VERSION directory, ..data swapped to it by one rename, visible names as links,
    the old directory removed."""
    data = mount / f"..{version}"
    data.mkdir(parents=True)
    for name, text in files.items():
        (data / name).write_text(text)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    os.symlink(data.name, mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")
    for name in files:
        if not (mount / name).is_symlink():
            os.symlink(f"..data/{name}", mount / name)
    if old:
        shutil.rmtree(mount / old)


def test_configmap_swap_under_load(tmp_path):
    """The Istio configuration mounted from a ConfigMap, updated by the kubelet's ..data
    swap while requests flow: the next requests follow the new route, none fails."""
    ups = {h: RecordingServer(loopback_ip(), 80) for h in ("a.test", "b.test")}
    hosts = tmp_path / "hosts"
    write_hosts(hosts, {h: s.ip for h, s in ups.items()})
    store = tmp_path / "store"
    mount = store / "config" / "istio"

    def version(dest):
        return {"istio.yaml": "---\n".join(
            [plain_gateway_yaml(), service_entry_yaml("a.test", 80, "HTTP"),
             service_entry_yaml("b.test", 80, "HTTP"), virtual_service_yaml("svc.test", dest, 80)])}
    kubelet_configmap(mount, "2026_01_01_00_00_00.1", version("a.test"))
    gw = start_gateway(tmp_path, store, hosts, workers=2)

    def request(state):
        if "c" not in state:
            state["c"] = RawClient(gw.ip, 80)
        state["c"].send(b"GET /x HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        status, _, body = state["c"].response()
        return status, body
    load = Traffic(request, 4)
    try:
        wait_until(lambda: len(ups["a.test"].requests()) > 50, 5, "load on the first route")
        kubelet_configmap(mount, "2026_01_01_00_01_00.2", version("b.test"))
        wait_until(lambda: len(ups["b.test"].requests()) > 50, 5, "load on the new route")
    finally:
        ok, failures = load.finish()
        rc = gw.stop()
        for s in ups.values():
            s.stop()
    print(f"ConfigMap ..data swap under load: {ok} requests, {len(failures)} failed")
    assert not failures, failures[:5]
    assert rc == 0
