"""egressctl apply records its own write in the store index (src/config/store_index_own.c):
the directory it wrote into, as the write left it, so that the next apply does not list that
directory again. The index must never hide a change made by another writer: a file added,
replaced or removed next to the one written (before or after the write) is seen by the next
apply, and a torn append is ignored and the index rewritten whole."""
import os
import time

from test_store_index import INDEX, N, big_store, created_files, get_names, port_of, se


def records(store):
    """The index file's lines after its "end" line (the appended records)."""
    lines = (store / INDEX).read_text().split("\n")
    ends = [i for i, l in enumerate(lines) if l.startswith("end ")]
    assert ends, lines[-3:]
    return [l for l in lines[ends[0] + 1:] if l]


def dir_number(store, rel):
    """The number of directory rel in the index file (its D lines, in order)."""
    ds = [l.split(" ") for l in (store / INDEX).read_text().split("\n") if l.startswith("D ")]
    return [d[6] for d in ds].index(rel)


def settle(ctl, store):
    """The index built, then saved once the directories' times are old enough to be
    trusted (an index built in the same instant lists them again at the next open)."""
    ctl.ok("apply", "-f", "-", input=se("s0", 8443))
    time.sleep(0.1)
    assert ctl.ok("apply", "-f", "-", input=se("s0", 8443)) == (
        "serviceentry.networking.istio.io/s0 unchanged\n")
    assert records(store) == []


def test_own_write_recorded_with_the_directory_as_it_left_it(ctl, store):
    big_store(store)
    settle(ctl, store)
    team = store / "config" / "team"
    assert ctl.ok("apply", "-f", "-", input=se("s1", 8001)) == (
        "serviceentry.networking.istio.io/s1 configured\n")
    rec = records(store)
    st = os.stat(team)
    f1 = os.stat(team / "f001.yaml")
    n = dir_number(store, "team")
    assert rec[0].startswith(f"F {n} {f1.st_ino} ") and rec[0].endswith(" f001.yaml"), rec
    assert rec[1].startswith("R ") and " default s1 s1.example.com" in rec[1], rec
    assert rec[2] == (f"W {n} {st.st_dev} {st.st_ino} {st.st_ctime_ns // 10**9} "
                      f"{st.st_ctime_ns % 10**9}"), (rec, st)
    # The next apply into the same directory appends again; the index stays right.
    assert ctl.ok("apply", "-f", "-", input=se("s2", 8002)) == (
        "serviceentry.networking.istio.io/s2 configured\n")
    assert len(records(store)) == 6
    assert port_of(team / "f001.yaml", "s1") == 8001
    assert port_of(team / "f002.yaml", "s2") == 8002
    # A create is recorded too, and the object is then found where it was made.
    assert ctl.ok("apply", "-f", "-", input=se("new1")) == (
        "serviceentry.networking.istio.io/new1 created\n")
    assert ctl.ok("apply", "-f", "-", input=se("new1", 8443)) == (
        "serviceentry.networking.istio.io/new1 configured\n")
    assert created_files(store) == ["new1.yaml"]
    names = get_names(ctl)
    assert len(names) == len(set(names)) == N + 1


def test_foreign_writes_between_applies_are_seen(ctl, store):
    big_store(store)
    settle(ctl, store)
    team = store / "config" / "team"
    ctl.ok("apply", "-f", "-", input=se("s1", 8001))
    assert records(store)[-1].startswith("W ")
    # At once (within the clock tick of the write), behind egressctl's back: a file added,
    # one replaced by rename with another object in it, one removed.
    (team / "zz-added.yaml").write_text(se("foreign1"))
    tmp = team / "f003.yaml.new"
    tmp.write_text(se("s3r"))
    os.rename(tmp, team / "f003.yaml")
    (team / "f004.yaml").unlink()
    assert ctl.ok("apply", "-f", "-", input=se("foreign1", 9001)) == (
        "serviceentry.networking.istio.io/foreign1 configured\n")
    assert port_of(team / "zz-added.yaml", "foreign1") == 9001
    assert ctl.ok("apply", "-f", "-", input=se("s3r", 9003)) == (
        "serviceentry.networking.istio.io/s3r configured\n")
    assert port_of(team / "f003.yaml", "s3r") == 9003
    assert ctl.ok("apply", "-f", "-", input=se("s4")) == (
        "serviceentry.networking.istio.io/s4 created\n")
    assert created_files(store) == ["s4.yaml"]
    # The same after an own write that was recorded and a foreign file added right after.
    ctl.ok("apply", "-f", "-", input=se("s5", 8005))
    (team / "zz-added2.yaml").write_text(se("foreign2"))
    assert ctl.ok("apply", "-f", "-", input=se("foreign2", 9002)) == (
        "serviceentry.networking.istio.io/foreign2 configured\n")
    assert port_of(team / "zz-added2.yaml", "foreign2") == 9002
    assert created_files(store) == ["s4.yaml"]
    names = get_names(ctl)
    assert len(names) == len(set(names)) == N + 2   # s3 -> s3r; foreign1, foreign2


def test_torn_append_is_ignored_and_the_index_rewritten(ctl, store):
    big_store(store)
    settle(ctl, store)
    team = store / "config" / "team"
    ctl.ok("apply", "-f", "-", input=se("s1", 8001))
    text = (store / INDEX).read_text()
    assert text.split("\n")[-2].startswith("W ")
    # A crash while appending: the W line cut short. Meanwhile a file was added.
    (store / INDEX).write_text(text[:-7])
    (team / "zz-late.yaml").write_text(se("late"))
    assert ctl.ok("apply", "-f", "-", input=se("late", 9100)) == (
        "serviceentry.networking.istio.io/late configured\n")
    assert port_of(team / "zz-late.yaml", "late") == 9100
    # Rewritten whole: no appended records left.
    assert records(store) == []
    assert ctl.ok("apply", "-f", "-", input=se("s1", 8101)) == (
        "serviceentry.networking.istio.io/s1 configured\n")
    assert port_of(team / "f001.yaml", "s1") == 8101
    assert created_files(store) == []
    names = get_names(ctl)
    assert len(names) == len(set(names)) == N + 1
