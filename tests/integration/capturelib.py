"""Transparent capture as in a pod, for the integration tests: the application's outbound
TCP redirected to the sidecar by the iptables rules `egressctl iptables` installs, and the
sidecar reading each connection's original destination (SO_ORIGINAL_DST).

Two network namespaces that the test creates and removes (even when it fails), joined by a
veth pair; their 10.250.x addresses never leave them:
  app  (10.250.0.1)  the sidecar (uid 0, excluded from capture) and the application's
                     commands (run as nobody, captured), with the iptables rules
  ext  (10.250.0.2)  the "outside", with EXT_ADDRS on its loopback for the test's sites
Used by test_transparent.py (its walkthrough and "Egress Gateways" topology) and by the
page tests' captured variants (test_page_accessing_external.py,
test_page_tls_origination.py), so that the page's requests run unchanged: no proxy
settings in the client, curl --resolve playing the cluster's DNS."""
import os
import random
import shutil
import subprocess
import tempfile

import pytest

APP_IP, EXT_IP = "10.250.0.1", "10.250.0.2"
EXT_ADDRS = ("10.250.1.1", "10.250.1.2", "10.250.1.3", "10.250.1.4")
OUTBOUND = 15001
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Namespaces:
    """The two namespaces and the veth pair between them."""

    def __init__(self):
        tag = "%06x" % random.randrange(1 << 24)
        self.app, self.ext = f"egw-app-{tag}", f"egw-ext-{tag}"
        va, ve = f"egwa{tag}", f"egwe{tag}"
        ip("netns", "add", self.app)
        try:
            ip("netns", "add", self.ext)
            ip("link", "add", va, "type", "veth", "peer", "name", ve)
            ip("link", "set", va, "netns", self.app)
            ip("link", "set", ve, "netns", self.ext)
            for ns in (self.app, self.ext):
                ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", self.app, "addr", "add", f"{APP_IP}/30", "dev", va)
            ip("-n", self.app, "link", "set", va, "up")
            ip("-n", self.app, "route", "add", "default", "via", EXT_IP)
            ip("-n", self.ext, "addr", "add", f"{EXT_IP}/30", "dev", ve)
            ip("-n", self.ext, "link", "set", ve, "up")
            for a in EXT_ADDRS:
                ip("-n", self.ext, "addr", "add", f"{a}/32", "dev", "lo")
        except BaseException:
            self.remove()
            raise

    def remove(self):
        # Deleting a namespace deletes its end of the veth pair, the other end with it,
        # and its iptables rules.
        for ns in (self.app, self.ext):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture
def nets():
    n = Namespaces()
    try:
        yield n
    finally:
        n.remove()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert n.app not in left and n.ext not in left, left


class Capture:
    """The application's side of the app namespace: the rules, and its commands run as
    nobody. demo_ca is copied where nobody can read it (self.demo_ca); resolve maps
    (host, port) to the address curl connects to."""

    def __init__(self, nets, egressctl, demo_ca, resolve):
        self.nets, self.egressctl, self.resolve = nets, egressctl, resolve
        self.pub = tempfile.mkdtemp(prefix="egressgw-transparent-")
        os.chmod(self.pub, 0o755)
        self.demo_ca = os.path.join(self.pub, "demo-ca.crt")
        shutil.copyfile(demo_ca, self.demo_ca)
        os.chmod(self.demo_ca, 0o644)

    def apply(self):
        """`egressctl iptables` in the app namespace: everything but uid 0 (the sidecar)
        goes to the sidecar's OUTBOUND port."""
        r = self.in_app([str(self.egressctl), "iptables", "--uid", "0", "--outbound-port",
                         str(OUTBOUND), "--apply"])
        assert r.returncode == 0, (r.stdout, r.stderr)

    def in_app(self, argv, user=None, **kw):
        return subprocess.run(["ip", "netns", "exec", self.nets.app, *(user or []), *argv],
                              capture_output=True, text=True, timeout=60, **kw)

    def curl(self, *args, max_time=20):
        """curl as the application runs it: as nobody, captured, no proxy settings."""
        resolve = []
        for (host, port), addr in self.resolve.items():
            resolve += ["--resolve", f"{host}:{port}:{addr}"]
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["CURL_CA_BUNDLE"] = self.demo_ca
        return self.in_app(["curl", "--max-time", str(max_time), *resolve, *args], user=NOBODY,
                           env=env)

    def clean(self):
        """Removes the rules; returns (egressctl's result, the nat table after)."""
        r = self.in_app([str(self.egressctl), "iptables", "--clean", "--apply"])
        rules = self.in_app(["iptables", "-t", "nat", "-S"]).stdout
        shutil.rmtree(self.pub, ignore_errors=True)
        return r, rules
