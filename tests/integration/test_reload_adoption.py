"""A reload is reported applied only once every worker serves it (issue 17; note-17: one
ASan storm run under heavy load saw a request answered under a superseded state).

The main thread publishes a new snapshot to the workers and waits for each to take it
(proxy_wait_adopted) before it says "configuration version N applied", counts the
reload, serves the new version on /config_dump and logs a credential "in use". That wait
used to give up after 1 s and report the reload applied anyway, while a worker that had
been busy for longer still served the previous version to its next requests. A worker
late by more than a second is made here by stopping one worker thread with ptrace
(PTRACE_SEIZE + PTRACE_INTERRUPT: only that thread stops; the other worker and the main
thread run on), then changing the route. Asserted: while the worker is stopped the new
version is not reported applied (and the wait is logged as such, every second); once it
runs again the version is applied, and requests follow the new route.

The gateway runs with --allow-core-dumps so that it stays ptrace-able by its parent
without privileges (Yama ptrace_scope 1 allows a parent to trace its child)."""
import ctypes
import os

import pytest

from gwlib import scaled, wait_until
from hardlib import RawClient, RecordingServer, loopback_ip, plain_env, service_entry_yaml, \
    start_gateway, virtual_service_yaml, write_hosts

HOST = "adopt.test"
OTHER = "adopt-other.test"
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def ptrace(req, tid):
    if libc.ptrace(req, tid, None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")


def stop_thread(tid):
    ptrace(PTRACE_SEIZE, tid)
    ptrace(PTRACE_INTERRUPT, tid)
    _, status = os.waitpid(tid, WALL)
    assert os.WIFSTOPPED(status), status


def resume_thread(tid):
    ptrace(PTRACE_DETACH, tid)


def worker_threads(pid):
    """The gateway's threads other than the main one that wait in epoll_wait or
    epoll_pwait (x86-64 232, 281; aarch64 22): its workers, before any reload starts the
    configuration loading thread."""
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        if int(t) == pid:
            continue
        try:
            with open(f"/proc/{pid}/task/{t}/syscall") as f:
                nr = f.read().split()[0]
        except (OSError, IndexError):
            continue
        if nr in ("232", "281", "22"):
            out.append(int(t))
    return sorted(out)


@pytest.fixture
def env(tmp_path, egressctl_bin):
    yield from plain_env(tmp_path, egressctl_bin, HOST)


def served_by(env, gw_ip):
    """The upstream that answered a request for HOST: 'first' or 'other'."""
    before = len(env.other.requests())
    c = RawClient(gw_ip)
    try:
        c.send(f"GET /which HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        status, _, _ = c.response()
    finally:
        c.close()
    assert status == 200, status
    return "other" if len(env.other.requests()) > before else "first"


def test_reload_is_applied_only_when_every_worker_took_it(env):
    other = RecordingServer(loopback_ip(), 80)
    env.other = other
    try:
        write_hosts(env.hosts, {HOST: env.up.ip, OTHER: other.ip})
        env.gw = gw = start_gateway(env.tmp, env.store, env.hosts, workers=2,
                                    extra=("--allow-core-dumps",))
        pid = gw.proc.pid
        # The listeners accept (into their backlog) before the workers start: wait for
        # both worker threads, each in its loop's epoll_wait.
        wait_until(lambda: len(worker_threads(pid)) == 2, scaled(10), "two worker threads")
        workers = worker_threads(pid)
        gw_ip = gw.ip
        assert served_by(env, gw_ip) == "first"
        applied_before = gw.stderr().count(" applied:")
        stop_thread(workers[0])
        stopped = True
        try:
            # Route HOST to the other upstream: a reload the stopped worker cannot take.
            env.ctl.ok("apply", "-f", "-", input="---\n".join([
                service_entry_yaml(OTHER, 80, "HTTP"),
                virtual_service_yaml(HOST, OTHER, 80)]))
            # Published (the main thread waited its first second for the late worker)...
            wait_until(lambda: "not every worker" in gw.stderr(), scaled(15),
                       "the reload published and the late worker reported")
            # ... and, a slice later (its wait counts 0.2 ms sleeps: longer on a loaded
            # machine), still waited for, not reported applied while a worker serves the
            # old version.
            second = "not every worker has taken it after 2000 ms; not applied until they have"
            wait_until(lambda: second in gw.stderr() or
                       gw.stderr().count(" applied:") > applied_before, scaled(30),
                       "a second slice of waiting, or the reload reported applied")
            assert gw.stderr().count(" applied:") == applied_before, gw.stderr()[-2000:]
            assert second in gw.stderr(), gw.stderr()[-2000:]
            resume_thread(workers[0])
            stopped = False
        finally:
            if stopped:
                resume_thread(workers[0])
        wait_until(lambda: gw.stderr().count(" applied:") > applied_before, scaled(5),
                   "the reload applied once the worker runs")
        # Every worker serves it now: each of a few requests (spread over both workers'
        # accepts) goes to the other upstream.
        for _ in range(6):
            assert served_by(env, gw_ip) == "other"
    finally:
        other.stop()
