"""Shipping egressgw (issue 20): `make install` with PREFIX and DESTDIR on the built tree,
the version baked in from git describe (and "unknown" outside git), a plain `make` that
installs no package, the systemd unit (systemd-analyze verify and security) and the
logrotate snippet (logrotate -d, then a real rotation whose postrotate makes the running
gateway reopen its access log)."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO
from gwlib import BUILD, wait_until
from test_lifecycle import get, site  # noqa: F401 (site is a fixture)


def make(*args, cwd=REPO, env=None):
    """make with the build directory under test (build-san is SANITIZE=1's)."""
    build = ["SANITIZE=1"] if BUILD.name == "build-san" else [f"BUILD={BUILD}"]
    return subprocess.run(["make", "-s", *build, *args], cwd=str(cwd), capture_output=True,
                          text=True, timeout=600, env=env)


def git(*args):
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """make install DESTDIR=ROOT PREFIX=/usr, once for the module."""
    d = tmp_path_factory.mktemp("destdir")
    r = make("install", f"DESTDIR={d}", "PREFIX=/usr")
    assert r.returncode == 0, r.stderr
    return d


def test_install_layout(root):
    want = {
        "usr/bin/egressgw": 0o755, "usr/bin/egressctl": 0o755,
        "usr/share/man/man1/egressgw.1": 0o644, "usr/share/man/man1/egressctl.1": 0o644,
        "usr/share/doc/egressgw/LICENSE": 0o644, "usr/share/doc/egressgw/CHANGELOG.md": 0o644,
        "usr/share/doc/egressgw/README.md": 0o644,
        "usr/share/doc/egressgw/examples/01-serviceentry-cnn.yaml": 0o644,
        "usr/share/doc/egressgw/examples/systemd/gateway.env": 0o644,
        "usr/lib/systemd/system/egressgw@.service": 0o644,
        # PREFIX=/usr puts configuration under /etc, not /usr/etc.
        "etc/logrotate.d/egressgw": 0o644, "etc/egressgw/gateway.env": 0o644,
        "etc/egressgw/sidecar.env": 0o644,
    }
    for path, mode in want.items():
        p = root / path
        assert p.is_file(), f"{path} not installed"
        assert p.stat().st_mode & 0o777 == mode, f"{path}: mode {oct(p.stat().st_mode)}"
    assert not (root / "usr/etc").exists()
    assert "Apache License" in (root / "usr/share/doc/egressgw/LICENSE").read_text()
    unit = (root / "usr/lib/systemd/system/egressgw@.service").read_text()
    assert "ExecStart=/usr/bin/egressgw --role %i" in unit and "@BINDIR@" not in unit
    # The examples are the walkthrough's and egressctl accepts them.
    ex = sorted((root / "usr/share/doc/egressgw/examples").glob("*.yaml"))
    assert len(ex) == len(list((REPO / "examples").glob("*.yaml"))) > 0


def test_installed_version_is_git_describe(root):
    describe = git("describe", "--tags", "--always", "--dirty")
    commit = git("rev-parse", "HEAD")
    out = subprocess.run([str(root / "usr/bin/egressgw"), "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith(f"egressgw version {describe} (commit {commit}, "), out
    assert "OpenSSL 3" in out and "nghttp2" in out
    out = subprocess.run([str(root / "usr/bin/egressctl"), "version", "--client"],
                         capture_output=True, text=True, check=True).stdout
    assert out == f"Client Version: {describe}\n"
    out = subprocess.run([str(root / "usr/bin/egressctl"), "version", "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    v = json.loads(out)["clientVersion"]
    assert v["gitVersion"] == describe and v["gitCommit"] == commit
    assert v["gitTreeState"] == ("dirty" if describe.endswith("-dirty") else "clean")
    assert v["platform"].startswith("linux/")


def test_man_pages_render_without_warnings(root):
    for name, needle in (("egressgw", "--drain-announce"), ("egressctl", "EGRESSCTL VERSION")):
        page = root / f"usr/share/man/man1/{name}.1"
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(page)], capture_output=True,
                           text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        text = re.sub(".\x08", "", r.stdout)   # grotty's overstriking (bold)
        assert needle in text.replace("\u2010", "-").replace("\u2212", "-")


def test_plain_make_installs_no_package():
    plain = make("-n", "all").stdout + make("-n", "install", "DESTDIR=/nonexistent").stdout
    assert "deps.sh" not in plain
    assert "scripts/deps.sh build test" in make("-B", "-n", "test").stdout
    assert "scripts/deps.sh build test" in make("-B", "-n", "deps").stdout


def test_tree_without_git_says_unknown(tmp_path):
    """A release tarball (no .git) builds with version "unknown", or what VERSION= says."""
    src = tmp_path / "tree"
    for f in git("ls-files").splitlines() + ["src/core/version.c", "src/core/version.h"]:
        p = REPO / f
        if p.is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src / f)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # Not a git checkout of its own, even inside one (tmp is not, but be sure).
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    for args, want in (((), '"unknown"'), (("VERSION=1.2.3",), '"1.2.3"')):
        r = subprocess.run(["make", "-s", "BUILD=b", *args, "b/src/core/version.o"], cwd=str(src),
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        h = (src / "b/gen/build_version.h").read_text()
        assert f"#define EGRESS_VERSION {want}" in h, h
        assert '#define EGRESS_COMMIT "unknown"' in h


# ---------------------------------------------------------------- systemd, logrotate

def test_systemd_unit_verifies(root, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    # verify checks that ExecStart's binary exists and the Documentation= man pages
    # resolve: point both at the installed tree.
    unit = (root / "usr/lib/systemd/system/egressgw@.service").read_text()
    unit = unit.replace("/usr/bin/egressgw", str(root / "usr/bin/egressgw"))
    d = tmp_path / "units"
    d.mkdir()
    (d / "egressgw@.service").write_text(unit)
    env = dict(os.environ, MANPATH=str(root / "usr/share/man"))
    for inst in ("gateway", "sidecar"):
        r = subprocess.run(["systemd-analyze", "verify", str(d / f"egressgw@{inst}.service")],
                           capture_output=True, text=True, env=env, cwd=str(tmp_path))
        assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    # The sandbox: systemd's own exposure score, lower is better (10 = none).
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={root}",
                        "egressgw@gateway.service"], capture_output=True, text=True,
                       cwd=str(tmp_path))
    line = [l for l in r.stdout.splitlines() if "Overall exposure level" in l]
    assert line, r.stdout + r.stderr
    score = float(line[0].split(":")[1].split()[0])
    assert score <= 3.0, line[0]


def test_logrotate_snippet_parses(root, tmp_path):
    conf = root / "etc/logrotate.d/egressgw"
    r = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)],
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "error" not in out.lower(), out
    assert "/var/log/egressgw/*.log" in out


def test_logrotate_postrotate_reopens(root, site, tmp_path):  # noqa: F811
    """A real rotation with the installed snippet, its path and its postrotate command
    aimed at this test's gateway (systemctl cannot reach it): the next request's line
    lands in a new file at the old path, the earlier ones in the rotated file."""
    gw = site.start(workers=2)
    assert get(gw, "/before")[0] == 200
    wait_until(lambda: any("/before" in l for l in gw.log_lines()), 5, "the first log line")
    conf = (root / "etc/logrotate.d/egressgw").read_text()
    assert "systemctl kill --kill-whom=main --signal=SIGUSR1 'egressgw@*.service'" in conf
    conf = conf.replace("/var/log/egressgw/*.log", str(gw.alog))
    conf = conf.replace("systemctl kill --kill-whom=main --signal=SIGUSR1 'egressgw@*.service'",
                        f"kill -USR1 {gw.proc.pid}")
    conf = conf.replace("create 0644 root root", "create 0644")
    (tmp_path / "lr.conf").write_text(conf)
    r = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(tmp_path / "lr.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    rotated = gw.alog.with_name(gw.alog.name + ".1")
    assert rotated.is_file() and "/before" in rotated.read_text()
    wait_until(lambda: "reopened" in gw.stderr(), 5, "the gateway reopening its log")
    assert get(gw, "/after")[0] == 200
    wait_until(lambda: any("/after" in l for l in gw.log_lines()), 5, "the line in the new file")
    assert "/before" not in gw.alog.read_text() and "/after" not in rotated.read_text()
    assert gw.proc.poll() is None
