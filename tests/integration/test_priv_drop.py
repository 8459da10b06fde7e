"""--user: no worker serves a request before the privilege drop (issue 17).

The listeners are bound as root at start, so the kernel queues connections (and their
requests) from that moment; the workers must not take them before the process runs as
--user. What a worker does while serving shows who it was: the upstream socket it creates
belongs to the thread's user at socket() time, and /proc/net/tcp says so (its uid column).
A client that connects and sends its request in a loop from the moment egressgw is
spawned gets into the backlog before the workers run; every upstream connection of every
start must then be nobody's."""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import Ctl
from gwlib import BUILD, free_port, loopback_ip, wait_port
from hardlib import (RecordingServer, plain_gateway_yaml, service_entry_yaml,
                     virtual_service_yaml, write_hosts)

HOST = "up.test"
NOBODY = 65534
STARTS = 8


def proc_addr(ip, port):
    """ip:port as /proc/net/tcp writes it."""
    return "%s:%04X" % ("".join("%02X" % int(b) for b in reversed(ip.split("."))), port)


def tcp_uid(local, remote):
    """The uid /proc/net/tcp gives the socket from local to remote (both (ip, port)), or
    None. Both ends are matched: a client socket of the test's own (a knocker's, closed and
    in TIME_WAIT, whose uid column reads 0) may have held the same local port."""
    want_l, want_r = proc_addr(*local), proc_addr(*remote)
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == want_l and f[2] == want_r:
            return int(f[7])
    return None


class UidRecorder(RecordingServer):
    """The upstream: records, for each connection it accepts, the uid of the gateway's
    socket that made it."""

    def __init__(self, ip, port):
        self.uids = []
        super().__init__(ip, port)

    def _serve(self, c, rec):
        peer, me = c.getpeername(), c.getsockname()
        self.uids.append(tcp_uid(peer[:2], me[:2]))
        super()._serve(c, rec)


@pytest.fixture
def site(tmp_path, egressctl_bin):
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges and must run as root (CI does)")
    d = pathlib.Path(tempfile.mkdtemp(prefix="egressgw-priv-"))
    os.chmod(d, 0o755)
    up_ip = loopback_ip()
    up = UidRecorder(up_ip, 80)
    hosts = d / "hosts"
    write_hosts(hosts, {HOST: up_ip})
    store = d / "store"
    Ctl(egressctl_bin, store, d).ok("apply", "-f", "-", input="---\n".join(
        [plain_gateway_yaml(), service_entry_yaml(HOST, 80, "HTTP"),
         virtual_service_yaml(HOST, HOST, 80)]))
    yield type("Site", (), {"dir": d, "hosts": hosts, "store": store, "up": up})()
    up.stop()
    shutil.rmtree(d, ignore_errors=True)


def knock(ip, stop, answered):
    """Connects and sends a request again and again until one is answered."""
    while not stop.is_set():
        try:
            s = socket.create_connection((ip, 80), timeout=5)
        except OSError:
            time.sleep(0.0005)
            continue
        try:
            s.sendall(f"GET /early HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            if s.recv(12).startswith(b"HTTP/1.1 200"):
                answered.append(True)
                stop.set()
        except OSError:
            pass
        finally:
            s.close()


def test_no_request_is_served_before_the_drop(site):
    for _ in range(STARTS):
        ip = loopback_ip()
        stop, answered = threading.Event(), []
        knockers = [threading.Thread(target=knock, args=(ip, stop, answered)) for _ in range(4)]
        for k in knockers:
            k.start()
        p = subprocess.Popen([str(BUILD / "egressgw"), "--role", "gateway", "--store", str(site.store),
                              "--hosts-file", str(site.hosts), "--listen-address", ip,
                              "--workers", "2", "--admin", f"127.0.0.1:{free_port()}",
                              "--user", "nobody", "--drain-announce", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            stop.wait(10)
            stop.set()
            for k in knockers:
                k.join()
            assert answered, "no request was served"
        finally:
            p.terminate()
            _, err = p.communicate(timeout=10)
        assert p.returncode == 0, err
        assert "running as user nobody" in err
    uids = site.up.uids
    assert uids and all(u == NOBODY for u in uids), \
        (len(uids), [(i, u) for i, u in enumerate(uids) if u != NOBODY])
