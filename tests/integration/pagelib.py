"""Helpers shared by the tests of Istio's egress task pages (test_page_*.py): the sleep
pod's curl, with the sidecar as its proxy, and kubectl apply that waits until the
proxies have the change."""
import os
import subprocess


def sleep_curl(outbound_port, ca_file, *args):
    """kubectl exec sleep -- curl ARGS: the sidecar (127.0.0.1:outbound_port) is curl's
    proxy for http and https; ca_file is the trust curl has (the sites' test CA)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["http_proxy"] = env["https_proxy"] = f"http://127.0.0.1:{outbound_port}"
    env["CURL_CA_BUNDLE"] = str(ca_file)
    return subprocess.run(["curl", "--max-time", "15", *args], capture_output=True,
                          text=True, env=env, timeout=30)


def apply_wait(ctl, path, *procs):
    """egressctl apply -f path; returns its output once each of procs has reloaded."""
    before = [p.stat("config_reloads_total") for p in procs]
    out = ctl.ok("apply", "-f", path)
    for p, n in zip(procs, before):
        p.wait_reloads(n + 1)
    return out
