"""Process hygiene of egressgw (issue 6): not dumpable unless --allow-core-dumps (a core
file or a same-user ptrace would expose private keys), --user privilege drop after the
listeners are bound and the access log is open, and close-on-exec on every descriptor."""
import os
import pathlib
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import Ctl
from gwlib import BUILD, free_port, loopback_ip, wait_port, wait_until
from hardlib import (RawClient, RecordingServer, plain_gateway_yaml, service_entry_yaml,
                     start_gateway, virtual_service_yaml, write_hosts)

HOST = "up.test"


@pytest.fixture
def site(tmp_path, egressctl_bin):
    """A store routing up.test (plain HTTP) to a recording upstream, in a directory any
    user can read (pytest's own temporary directories are private to root)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="egressgw-hyg-"))
    os.chmod(d, 0o755)
    up_ip = loopback_ip()
    up = RecordingServer(up_ip, 80)
    hosts = d / "hosts"
    write_hosts(hosts, {HOST: up_ip})
    store = d / "store"
    ctl = Ctl(egressctl_bin, store, d)
    ctl.ok("apply", "-f", "-", input="---\n".join(
        [plain_gateway_yaml(), service_entry_yaml(HOST, 80, "HTTP"), virtual_service_yaml(HOST, HOST, 80)]))
    e = type("Site", (), {})()
    e.dir, e.hosts, e.store, e.ctl, e.up = d, hosts, store, ctl, up
    e.gateways = []

    def start(extra=(), port=80):
        g = start_gateway(d, store, hosts, extra=extra, port=port)
        e.gateways.append(g)
        return g
    e.start = start
    yield e
    try:
        for g in e.gateways:
            g.stop()
    finally:
        up.stop()
        shutil.rmtree(d, ignore_errors=True)


def get(gw, path="/x", port=80):
    c = RawClient(gw.ip, port)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        return c.response()
    finally:
        c.close()


def status_fields(pid):
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


def proc_owner(pid):
    """The owner of /proc/PID/environ: the process's uid when it is dumpable, root when
    it is not (the kernel's task_dump_owner). Tells the two apart for a non-root process
    only."""
    return os.stat(f"/proc/{pid}/environ").st_uid


def quit_and_wait(site, extra=()):
    """Starts egressgw in a directory of its own with RLIMIT_CORE unlimited, waits until
    it serves, sends SIGQUIT (whose default action dumps core) and returns (core dumped
    according to the wait status, files left in its directory)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="egressgw-core-", dir=site.dir))
    ip = loopback_ip()
    env = dict(os.environ)
    env["SSL_CERT_FILE"] = "/dev/null"
    # ASan turns core dumps off by itself (RLIMIT_CORE 0) unless told not to.
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":disable_coredump=0").lstrip(":")

    def unlimited_core():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    p = subprocess.Popen([str(BUILD / "egressgw"), "--role", "gateway", "--store", str(site.store),
                          "--hosts-file", str(site.hosts), "--listen-address", ip, "--workers", "1",
                          "--admin", f"127.0.0.1:{free_port()}", *extra], cwd=str(d), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=unlimited_core)
    try:
        wait_port(ip, 80, proc=p)
        os.kill(p.pid, signal.SIGQUIT)
        _, status = os.waitpid(p.pid, 0)
        p.returncode = -signal.SIGQUIT
        return os.WCOREDUMP(status), sorted(f.name for f in d.iterdir())
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- core dumps

def test_help_documents_the_options():
    out = subprocess.run([str(BUILD / "egressgw"), "--help"], capture_output=True, text=True).stdout
    assert "--user NAME" in out and "--allow-core-dumps" in out, out


def test_no_core_dump_by_default(site):
    dumped, files = quit_and_wait(site)
    assert not dumped and files == [], \
        f"egressgw dumped core ({files}): a core file would hold its private keys"


def test_allow_core_dumps_writes_a_core(site):
    """The positive control of the test above: the same process and signal with
    --allow-core-dumps does dump core on this machine."""
    dumped, files = quit_and_wait(site, ("--allow-core-dumps",))
    pattern = pathlib.Path("/proc/sys/kernel/core_pattern").read_text().strip()
    assert dumped, f"no core dump with --allow-core-dumps (core_pattern {pattern!r}, files {files})"


# ---------------------------------------------------------------- --user

def test_unknown_user_is_refused(site):
    p = subprocess.run([str(BUILD / "egressgw"), "--role", "gateway", "--store", str(site.store),
                        "--user", "no-such-user-egressgw"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, p.stderr
    assert "--user no-such-user-egressgw" in p.stderr, p.stderr


def test_user_drops_privileges_after_binding(site):
    if os.geteuid() != 0:
        # Not root: dropping to another user must fail loudly, never run half-dropped.
        p = subprocess.run([str(BUILD / "egressgw"), "--role", "gateway", "--store", str(site.store),
                            "--listen-address", loopback_ip(), "--user", "nobody", "--admin",
                            "127.0.0.1:0"], capture_output=True, text=True, timeout=10)
        assert p.returncode == 1 and "--user nobody" in p.stderr, p.stderr
        return
    g = site.start(extra=("--user", "nobody"))
    # Port 80 was bound before the drop; the access log was opened before it too.
    status, _, body = get(g, "/after-drop")
    assert status == 200, body
    st = status_fields(g.proc.pid)
    assert st["Uid"] == ["65534"] * 4 and st["Gid"] == ["65534"] * 4, st
    assert set(st.get("Groups", [])) <= {"65534"}, st["Groups"]
    assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0, st
    assert any("/after-drop" in ln for ln in g.wait_log(1))
    assert "running as user nobody (uid 65534, gid 65534)" in g.stderr()
    # The uid change resets the dumpable flag to fs.suid_dumpable: egressgw sets it again,
    # so its /proc files stay root's, out of reach of other processes running as nobody.
    assert proc_owner(g.proc.pid) == 0


def test_user_with_allow_core_dumps_is_dumpable_for_that_user(site):
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges and must run as root (CI does)")
    g = site.start(extra=("--user", "nobody", "--allow-core-dumps"))
    assert get(g)[0] == 200
    # The workers serve from the moment their listeners are bound, which is before the
    # main thread drops privileges and sets the dumpable flag again: wait for that.
    wait_until(lambda: proc_owner(g.proc.pid) == 65534, timeout=5,
               what="/proc/PID owned by nobody (dumpable after the drop)")


def unprivileged_port_start():
    return int(pathlib.Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())


def test_reload_after_drop_explains_privileged_listeners(site):
    """After the drop, reloads still work (the store is readable by nobody): a new
    listener on 8080 serves; a new one on 81 cannot be bound, and the log says why."""
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges and must run as root (CI does)")
    g = site.start(extra=("--user", "nobody"))
    site.ctl.ok("apply", "-f", "-", input="---\n".join(
        [plain_gateway_yaml(8080, "gw-8080"), plain_gateway_yaml(81, "gw-81"),
         virtual_service_yaml("alt.test", HOST, 80, gw_port=8080).replace(
             "istio-egressgateway", "gw-8080")]))
    wait_port(g.ip, 8080, proc=g.proc)
    c = RawClient(g.ip, 8080)
    try:
        c.send(b"GET /on-8080 HTTP/1.1\r\nHost: alt.test\r\n\r\n")
        assert c.response()[0] == 200
    finally:
        c.close()
    if unprivileged_port_start() > 81:
        deadline = time.time() + 5
        while "port 81 is privileged" not in g.stderr() and time.time() < deadline:
            time.sleep(0.05)
        err = g.stderr()
        assert (f"listener {g.ip}_81: port 81 is privileged and this process runs as user "
                "nobody (--user): it cannot be bound until egressgw is restarted") in err, err
        with pytest.raises(OSError):
            socket.create_connection((g.ip, 81), timeout=1).close()
    else:
        # This network namespace lets anyone bind low ports: the listener just works.
        wait_port(g.ip, 81, proc=g.proc)
    assert g.proc.poll() is None


# ---------------------------------------------------------------- close-on-exec

class SilentDns:
    """A DNS server that never answers: the gateway's query (and c-ares's socket) stays
    open while the descriptors are inspected."""

    def __init__(self, ip):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((ip, 53))
        self.addr = f"{ip}:53"
        self.queries = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                self.s.recvfrom(1500)
                self.queries += 1
            except OSError:
                return

    def stop(self):
        self.s.close()


O_CLOEXEC = 0o2000000


def fd_table(pid):
    """{fd: (target, flags)} of every descriptor of pid."""
    out = {}
    for e in pathlib.Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            info = e.read_text()
            target = os.readlink(f"/proc/{pid}/fd/{e.name}")
        except (FileNotFoundError, ProcessLookupError):
            continue    # closed meanwhile
        flags = int(next(ln.split()[1] for ln in info.splitlines() if ln.startswith("flags:")), 8)
        out[int(e.name)] = (target, flags)
    return out


def test_every_descriptor_is_close_on_exec(site):
    """With two workers, a downstream keep-alive connection, a pooled upstream
    connection, the access log, inotify, signalfd, epoll, eventfds, the admin listener
    and a DNS query in flight, every descriptor above 2 has O_CLOEXEC."""
    dns = SilentDns(loopback_ip())
    try:
        site.ctl.ok("apply", "-f", "-", input="---\n".join(
            [service_entry_yaml("nx.test", 80, "HTTP"), virtual_service_yaml("nx.test", "nx.test", 80)]))
        g = site.start(extra=("--workers", "2", "--dns-servers", dns.addr))
        c = RawClient(g.ip)
        try:
            c.send(f"GET /keep HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            assert c.response()[0] == 200
            deadline = time.time() + 5
            while dns.queries == 0 and time.time() < deadline:
                time.sleep(0.05)
            assert dns.queries > 0, "no DNS query was made"
            table = fd_table(g.proc.pid)
        finally:
            c.close()
    finally:
        dns.stop()
    kinds = " ".join(t for t, _ in table.values())
    for want in ["socket:", "eventpoll", "eventfd", "signalfd", "inotify", "gateway-access.log"]:
        assert want in kinds, (want, table)
    sockets = sum(1 for t, _ in table.values() if t.startswith("socket:"))
    # admin + 2 listeners + downstream + upstream + c-ares at least
    assert sockets >= 6, table
    leaks = {fd: t for fd, (t, flags) in table.items() if fd > 2 and not flags & O_CLOEXEC}
    assert not leaks, f"descriptors without O_CLOEXEC: {leaks}"
