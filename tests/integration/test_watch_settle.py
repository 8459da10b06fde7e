"""When the store watcher reads a change (issue 15: one DestinationRule served <= 100 ms
after the write).

It used to wait 100 ms after the last inotify event before it read the store, so no change
was ever served sooner. It now reads RELOAD_SETTLE_MS (5 ms) after a quiet store's change,
at most 100 ms after the first change of a burst; and while a writer's marker
(`..egressctl-applying.PID.RANDOM` in the store's root, which `egressctl apply` of several
objects leaves while it writes them) is present, only once the marker is gone, so that an
apply is never served in halves; a marker left by a writer that died holds changes back
for 2 s of quiet at most. Asserted: a change to a small store is applied within the old
debounce (the fastest of several: load moves the median, the old debounce was a floor);
with a marker present nothing is applied until it goes, then exactly one reload is; a
stale marker delays a change by about 2 s, not forever; egressctl leaves no marker
behind; a file written in place is read once it is closed."""
import os
import signal
import time

import pytest

from gwlib import scaled, wait_until
from hardlib import plain_env, start_gateway, virtual_service_yaml

HOST = "settle.test"
MARK = "..egressctl-applying"


@pytest.fixture
def env(tmp_path, egressctl_bin):
    yield from plain_env(tmp_path, egressctl_bin, HOST)


def applied(gw):
    return gw.stderr().count(" applied:")


def watching(gw):
    """Waits for the start-up line, logged once the store is watched."""
    wait_until(lambda: "egressgw gateway serving" in gw.stderr(), scaled(10), "the gateway serving")


def vs_path(env):
    return env.store / "config" / "default" / "virtualservices" / f"vs-{HOST.replace('.', '-')}.yaml"


def change(env, rev):
    """Replaces the VirtualService's file as egressctl does (a new file renamed over it),
    with a label that differs each time; returns the monotonic time of the rename."""
    text = virtual_service_yaml(HOST, HOST, 80).replace(
        "metadata:\n", f"metadata:\n  labels:\n    rev: \"{rev}\"\n", 1)
    p = vs_path(env)
    tmp = p.with_name(p.name + f".tmp.{rev}")
    tmp.write_text(text)
    t = time.monotonic()
    os.rename(tmp, p)
    return t


def time_to_applied(gw, before, t0, timeout):
    deadline = t0 + timeout
    while applied(gw) == before:
        assert time.monotonic() < deadline, gw.stderr()[-2000:]
        time.sleep(0.001)
    return time.monotonic() - t0


def test_a_change_is_served_without_waiting_out_a_debounce(env):
    env.gw = gw = start_gateway(env.tmp, env.store, env.hosts)
    watching(gw)
    took = []
    for rev in range(7):
        before = applied(gw)
        t0 = change(env, rev)
        took.append(time_to_applied(gw, before, t0, scaled(5)))
        time.sleep(0.15)   # a quiet store again: the next change starts a new burst
    # The old watcher: never under 100 ms, its debounce a floor that no load lowers. A
    # build of this store takes a few ms (natively, under ASan and on a loaded machine the
    # median moves; the fastest of seven stays well under the floor).
    assert min(took) < 0.09, took


def test_a_marked_apply_is_read_once_its_marker_is_gone(env):
    env.gw = gw = start_gateway(env.tmp, env.store, env.hosts)
    watching(gw)
    before = applied(gw)
    mark = env.store / f"{MARK}.4242"
    mark.write_text("")
    change(env, "a")
    time.sleep(0.1)
    change(env, "b")
    time.sleep(0.5)
    assert applied(gw) == before, gw.stderr()[-2000:]
    t0 = time.monotonic()
    mark.unlink()
    took = time_to_applied(gw, before, t0, scaled(5))
    assert took < 1.0, took   # not the 2 s a dead writer's marker costs
    time.sleep(0.3)
    assert applied(gw) == before + 1, gw.stderr()[-2000:]
    # egressctl's own apply of several objects: one reload, and no marker left.
    env.ctl.ok("apply", "-f", "-", input="---\n".join([
        virtual_service_yaml(HOST, HOST, 80).replace("metadata:\n", "metadata:\n  labels:\n    x: \"z\"\n"),
        virtual_service_yaml("other.test", HOST, 80)]))
    wait_until(lambda: applied(gw) == before + 2, scaled(5), "the apply's reload")
    time.sleep(0.3)
    assert applied(gw) == before + 2, gw.stderr()[-2000:]
    assert not [n for n in os.listdir(env.store) if n.startswith(MARK)]


def test_a_dead_writers_marker_holds_a_change_back_two_seconds_only(env):
    env.gw = gw = start_gateway(env.tmp, env.store, env.hosts)
    watching(gw)
    before = applied(gw)
    (env.store / f"{MARK}.4243").write_text("")
    t0 = change(env, "c")
    took = time_to_applied(gw, before, t0, scaled(10))
    assert 1.9 <= took, took
    # The marker is forgotten, not the watcher: the next change is read at once.
    time.sleep(0.2)
    before = applied(gw)
    t0 = change(env, "d")
    assert time_to_applied(gw, before, t0, scaled(5)) < 1.0


def test_a_file_written_in_place_is_read_once_it_is_closed(env):
    """An editor writing in place truncates the file, then writes it: read between the
    two, the store would lack the VirtualService for a moment. The watcher waits for the
    close (up to 100 ms into the burst)."""
    env.gw = gw = start_gateway(env.tmp, env.store, env.hosts)
    watching(gw)
    for rev in range(3):
        before = applied(gw)
        text = virtual_service_yaml(HOST, HOST, 80).replace(
            "metadata:\n", f"metadata:\n  labels:\n    inplace: \"{rev}\"\n", 1)
        with open(vs_path(env), "w") as f:
            f.flush()
            os.truncate(vs_path(env), 0)
            time.sleep(0.04)
            f.write(text)
        wait_until(lambda: applied(gw) > before, scaled(5), "the in-place write applied")
        time.sleep(0.3)
        assert applied(gw) == before + 1, gw.stderr()[-2000:]
        assert "0 listener(s)" not in gw.stderr() and " 0 route" not in gw.stderr()


def test_a_temporary_file_is_not_a_change(env):
    """A writer's temporary file (NAME.tmp.*) is not configuration: only its rename over
    the file's name is a change. Counted as one, a writer descheduled between writing it
    and renaming it (5 ms is enough on a loaded machine) had the store read as it was, a
    reload of the old configuration that a waiting client took for the new one."""
    env.gw = gw = start_gateway(env.tmp, env.store, env.hosts)
    watching(gw)
    before = applied(gw)
    p = vs_path(env)
    tmp = p.with_name(p.name + ".tmp.slow")
    tmp.write_text(virtual_service_yaml(HOST, HOST, 80).replace(
        "metadata:\n", "metadata:\n  labels:\n    rev: \"slow\"\n", 1))
    time.sleep(0.4)
    assert applied(gw) == before, gw.stderr()[-2000:]
    t0 = time.monotonic()
    os.rename(tmp, p)
    time_to_applied(gw, before, t0, scaled(5))
    time.sleep(0.3)
    assert applied(gw) == before + 1, gw.stderr()[-2000:]


def test_sighup_waits_for_a_writers_marker(env):
    """A reload asked for at once (SIGHUP) while a writer's marker is present waits for the
    marker like a change does: the store is never read in the middle of an apply."""
    env.gw = gw = start_gateway(env.tmp, env.store, env.hosts)
    watching(gw)
    before = applied(gw)
    mark = env.store / f"{MARK}.4244"
    mark.write_text("")
    change(env, "e")
    time.sleep(0.1)
    os.kill(gw.proc.pid, signal.SIGHUP)
    time.sleep(0.1)
    change(env, "f")
    time.sleep(0.5)
    assert applied(gw) == before, gw.stderr()[-2000:]
    t0 = time.monotonic()
    mark.unlink()
    assert time_to_applied(gw, before, t0, scaled(5)) < 1.0
    time.sleep(0.3)
    assert applied(gw) == before + 1, gw.stderr()[-2000:]


def test_a_stale_marker_removed_by_hand_does_not_end_a_live_one(env):
    """Markers are kept by name: removing one that was there before the gateway started
    (a writer that died) while a live writer's marker is present does not release the live
    writer's half-written apply. (Counted by creations and removals, it did.)"""
    stale = env.store / f"{MARK}.4244"
    stale.write_text("")
    env.gw = gw = start_gateway(env.tmp, env.store, env.hosts)
    watching(gw)
    before = applied(gw)
    live = env.store / f"{MARK}.4245.0000abcd"
    live.write_text("")
    change(env, "e")
    time.sleep(0.2)
    stale.unlink()
    time.sleep(0.6)
    assert applied(gw) == before, gw.stderr()[-2000:]
    t0 = time.monotonic()
    live.unlink()
    assert time_to_applied(gw, before, t0, scaled(5)) < 1.0
