"""Shared fixtures for the integration tests.

The binaries come from $EGRESSGW_BUILD (the Makefile's `make integration` sets it),
default /work/main/build. A missing binary is a failure, never a skip.
"""
import collections
import os
import pathlib
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EGRESSGW_BUILD", "/work/main/build"))
WALKTHROUGH = REPO / "tests" / "data" / "walkthrough"

Result = collections.namedtuple("Result", "rc out err")


def _binary(name):
    path = BUILD / name
    assert path.is_file() and os.access(path, os.X_OK), (
        f"{path} is missing: build it first (make), or set EGRESSGW_BUILD")
    return path


def _children(pid):
    """PIDs whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces: the parent PID follows its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes():
    """Stops what the tests started and left running. Fixtures stop their servers in
    their teardown, but a fixture whose setup fails half-way (say its gateway does not
    come up) never reaches it, and its nginx would outlive the run and hold its ports."""
    yield
    left = _children(os.getpid())
    for pid in left:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            os.kill(pid, 15)
            print(f"\nconftest: stopped a leftover process {pid}: {cmd}")
        except OSError:
            pass
    for pid in left:
        for _ in range(50):
            try:
                os.waitpid(pid, os.WNOHANG)
                os.kill(pid, 0)
            except (OSError, ChildProcessError):
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, 9)
            except OSError:
                pass


@pytest.fixture(scope="session")
def build_dir():
    return BUILD


@pytest.fixture(scope="session")
def egressctl_bin():
    return _binary("egressctl")


@pytest.fixture
def store(tmp_path):
    """A fresh store directory per test (not created: egressctl must create it)."""
    return tmp_path / "store"


class Ctl:
    """Runs egressctl as a user would, with --store pointing at the test's store."""

    def __init__(self, binary, store, cwd):
        self.binary = binary
        self.store = store
        self.cwd = cwd

    def __call__(self, *args, input=None, env=None, use_store=True, cwd=None):
        cmd = [str(self.binary)]
        if use_store:
            cmd += ["--store", str(self.store)]
        cmd += [str(a) for a in args]
        run_env = {k: v for k, v in os.environ.items() if k != "EGRESSGW_STORE"}
        if env:
            run_env.update(env)
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60,
                           cwd=str(cwd or self.cwd), env=run_env)
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(self, *args, **kw):
        """Runs and asserts exit status 0 and an empty stderr; returns stdout."""
        r = self(*args, **kw)
        assert r.rc == 0, f"egressctl {args} failed ({r.rc}): {r.err}"
        assert r.err == "", f"egressctl {args} wrote to stderr: {r.err}"
        return r.out


@pytest.fixture
def ctl(egressctl_bin, store, tmp_path):
    return Ctl(egressctl_bin, store, tmp_path)


@pytest.fixture(scope="session")
def walkthrough():
    """The walkthrough's YAML, one file per `kubectl apply` (see its README.md)."""
    assert WALKTHROUGH.is_dir()
    return WALKTHROUGH


def _sh(cmd, cwd):
    subprocess.run(cmd, shell=True, check=True, cwd=str(cwd), capture_output=True,
                   timeout=120)


@pytest.fixture(scope="session")
def walkthrough_certs(tmp_path_factory):
    """The certificates and keys the walkthrough makes, with its own openssl commands:
    example.com root, the my-nginx server certificate, the client certificate."""
    d = tmp_path_factory.mktemp("walkthrough-certs")
    nginx = "my-nginx.mesh-external.svc.cluster.local"
    for cmd in [
        "openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 "
        "-subj '/O=example Inc./CN=example.com' -keyout example.com.key -out example.com.crt",
        f"openssl req -out {nginx}.csr -newkey rsa:2048 -nodes -keyout {nginx}.key "
        f"-subj \"/CN={nginx}/O=some organization\"",
        f"openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key "
        f"-set_serial 0 -in {nginx}.csr -out {nginx}.crt",
        "openssl req -out client.example.com.csr -newkey rsa:2048 -nodes "
        "-keyout client.example.com.key -subj \"/CN=client.example.com/O=client organization\"",
        "openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key "
        "-set_serial 1 -in client.example.com.csr -out client.example.com.crt",
    ]:
        _sh(cmd, d)
    return d
