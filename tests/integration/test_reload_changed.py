"""A reload reads only the config files the watcher saw change (config/store_changed.c):
the last full walk is replayed without listing or stat()ing the store, and the summary line
says "changed files only". What the watcher cannot name (a file made or removed, a
directory, new watches, SIGHUP) walks the store as before ("store walked"). Either way what
is served is what a full read of the store gives: after a row of such reloads, a SIGHUP
(which walks) serves the same configuration."""
import json
import os
import signal
import time

from gwlib import BUILD, loopback_ip, scaled
from test_scale import ReadyPoller, cluster_dump, gen, identity, wait_applied  # noqa: F401
from test_scale import scale_ready

N = 200
FILES = 3 * N + 1


def summary(err, version):
    lines = [l for l in err.read_text().splitlines()
             if f"configuration version {version} applied" in l]
    assert len(lines) == 1, err.read_text()[-3000:]
    return lines[0]


def replace(path, text):
    """As egressctl writes a file: a temporary NAME.tmp.PID renamed over it."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def add_san(path, name):
    return path.read_text().replace("mode: SIMPLE", f"mode: SIMPLE\n        subjectAltNames: "
                                    f"[{name}]")


def served(port):
    """The configuration served, without what changes with each version."""
    code, body = scale_ready.get(port, "/config_dump", timeout=30)
    assert code == 200
    d = json.loads(body)
    d.pop("version", None)
    d.pop("version_info", None)
    return json.dumps(d, sort_keys=True)


def test_reload_reads_only_changed_files(tmp_path, identity):  # noqa: F811
    store, hosts = gen(tmp_path, N)
    drs = store / "config" / "default" / "destinationrules"
    err = tmp_path / "gw.err"
    proc, port, t0 = scale_ready.start(str(BUILD / "egressgw"), str(store), str(hosts),
                                       str(identity), listen=loopback_ip(), errlog=str(err))
    try:
        scale_ready.wait_ready(proc, port, t0, timeout=scaled(60))
        poller = ReadyPoller(port)
        # The first reload after start walks: the watches were made after the first read.
        replace(drs / "svc000000.yaml", add_san(drs / "svc000000.yaml", "a.example.com"))
        wait_applied(err, proc, 2)
        assert summary(err, 2).endswith("; store walked"), summary(err, 2)
        # Replaced as egressctl does: that file read, nothing else.
        replace(drs / "svc000001.yaml", add_san(drs / "svc000001.yaml", "b.example.com"))
        wait_applied(err, proc, 3)
        line = summary(err, 3)
        assert f"in {FILES} file(s) (1 parsed, {FILES - 1} unchanged)" in line, line
        assert line.endswith("; changed files only"), line
        assert cluster_dump(port, "outbound|443||svc000001.example.com")["tls"]["sans"] == [
            "b.example.com"]
        # Written in place (an editor): the same.
        p = drs / "svc000002.yaml"
        p.write_text(add_san(p, "c.example.com"))
        wait_applied(err, proc, 4)
        assert summary(err, 4).endswith("; changed files only"), summary(err, 4)
        assert cluster_dump(port, "outbound|443||svc000002.example.com")["tls"]["sans"] == [
            "c.example.com"]
        # A file made: the walk (its place among the others is the walk's to say).
        (drs / "zz-extra.yaml").write_text(
            (drs / "svc000003.yaml").read_text().replace("name: svc000003", "name: extra")
            .replace("host: svc000003.example.com", "host: svc000004.example.com"))
        wait_applied(err, proc, 5)
        line = summary(err, 5)
        assert line.endswith("; store walked") and f"in {FILES + 1} file(s)" in line, line
        # A file removed: the walk, and its rule is gone.
        (drs / "svc000005.yaml").unlink()
        wait_applied(err, proc, 6)
        assert summary(err, 6).endswith("; store walked"), summary(err, 6)
        assert cluster_dump(port, "outbound|443||svc000005.example.com")[
            "destination_rule"] is None
        # A directory renamed in: the walk (new watches), then changed names again.
        side = tmp_path / "side"
        side.mkdir()
        (side / "x.yaml").write_text(
            (drs / "svc000006.yaml").read_text().replace("name: svc000006", "name: side"))
        os.rename(side, store / "config" / "side")
        wait_applied(err, proc, 7)
        assert summary(err, 7).endswith("; store walked"), summary(err, 7)
        replace(drs / "svc000007.yaml", add_san(drs / "svc000007.yaml", "d.example.com"))
        wait_applied(err, proc, 8)
        assert summary(err, 8).endswith("; changed files only"), summary(err, 8)
        # The file in the renamed directory is watched: changing it is a changed name.
        x = store / "config" / "side" / "x.yaml"
        replace(x, add_san(x, "s.example.com"))
        wait_applied(err, proc, 9)
        assert summary(err, 9).endswith("; changed files only"), summary(err, 9)
        # Requests to the admin endpoint were answered throughout.
        assert poller.codes == {200}, poller.codes
        poller.finish()
        # What the replays built is what a full read builds.
        before = served(port)
        proc.send_signal(signal.SIGHUP)
        wait_applied(err, proc, 10)
        assert summary(err, 10).endswith("; store walked"), summary(err, 10)
        time.sleep(0.1)
        assert served(port) == before
    finally:
        proc.terminate()
        proc.wait(scaled(30))
    assert proc.returncode == 0, err.read_text()[-2000:]
