"""egressctl apply in a store large enough to keep an index (ROOT/..egressctl-index,
src/config/store_index.h): applies running at the same time, files added, replaced and
edited behind the index's back, and a torn index. Whatever happened, each object applied is
updated in the file that holds it (never created a second time in a file of its own), and
the index is not needed for correctness: the store read whole agrees."""
import os
import subprocess
import time

INDEX = "..egressctl-index"
N = 300          # the index is kept from 256 config files on


def se(name, port=443, ns=None):
    meta = f"  name: {name}\n" + (f"  namespace: {ns}\n" if ns else "")
    return (f"apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n{meta}"
            f"spec:\n  hosts: [{name}.example.com]\n  resolution: DNS\n  ports:\n"
            f"  - number: {port}\n    name: https\n    protocol: HTTPS\n")


def big_store(store):
    """N ServiceEntries s0..s{N-1}, each in a file of the user's (config/team/fNNN.yaml),
    not where egressctl would create it."""
    d = store / "config" / "team"
    d.mkdir(parents=True)
    for i in range(N):
        (d / f"f{i:03d}.yaml").write_text(se(f"s{i}"))


def port_of(path, name):
    """The port of object name in the file at path (of several documents: its own)."""
    text = path.read_text()
    docs = [doc for doc in text.split("---\n") if f"name: {name}\n" in doc]
    assert docs, text
    return int(docs[0].split("number: ")[1].split("\n")[0])


def created_files(store):
    """Files egressctl made under config/NS/serviceentries/ (where it creates objects)."""
    d = store / "config" / "default" / "serviceentries"
    return sorted(os.listdir(d)) if d.exists() else []


def get_names(ctl):
    out = ctl.ok("get", "serviceentries", "-o", "name")
    return sorted(out.split())


def test_concurrent_applies_update_objects_where_they_are(ctl, store, tmp_path):
    big_store(store)
    assert ctl.ok("apply", "-f", "-", input=se("s0", 8443)) == (
        "serviceentry.networking.istio.io/s0 configured\n")
    assert (store / INDEX).exists()
    # 12 applies at once, each changing one object (in its own file of the user's) and
    # creating one; meanwhile files appear behind the index's back.
    procs = []
    for k in range(1, 13):
        f = tmp_path / f"in{k}.yaml"
        f.write_text(se(f"s{k}", 9000 + k) + "---\n" + se(f"n{k}"))
        procs.append(subprocess.Popen(
            [str(ctl.binary), "--store", str(store), "apply", "-f", str(f)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        (store / "config" / "team" / f"extra{k}.yaml").write_text(se(f"x{k}"))
    for k, p in enumerate(procs, 1):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out == (f"serviceentry.networking.istio.io/s{k} configured\n"
                       f"serviceentry.networking.istio.io/n{k} created\n"), out
    for k in range(1, 13):
        assert port_of(store / "config" / "team" / f"f{k:03d}.yaml", f"s{k}") == 9000 + k
    assert created_files(store) == sorted(f"n{k}.yaml" for k in range(1, 13))
    # The files added behind its back: updated where they are.
    for k in range(1, 13):
        assert ctl.ok("apply", "-f", "-", input=se(f"x{k}", 7000 + k)) == (
            f"serviceentry.networking.istio.io/x{k} configured\n")
        assert port_of(store / "config" / "team" / f"extra{k}.yaml", f"x{k}") == 7000 + k
    # Every object once, as the whole store reads it.
    want = sorted([f"serviceentry.networking.istio.io/s{i}" for i in range(N)] +
                  [f"serviceentry.networking.istio.io/{p}{k}" for p in "nx"
                   for k in range(1, 13)])
    assert get_names(ctl) == want
    assert created_files(store) == sorted(f"n{k}.yaml" for k in range(1, 13))


def test_edits_behind_its_back_and_a_torn_index(ctl, store):
    big_store(store)
    ctl.ok("apply", "-f", "-", input=se("s0", 8443))
    team = store / "config" / "team"
    # Edited in place (same inode; the directory does not change): s5 renamed to s5b and
    # an object added. Applying them updates that file.
    f5 = team / "f005.yaml"
    ino = f5.stat().st_ino
    with open(f5, "r+") as f:
        f.truncate(0)
        f.write(se("s5b") + "---\n" + se("added"))
    assert f5.stat().st_ino == ino
    assert ctl.ok("apply", "-f", "-", input=se("added", 8001)) == (
        "serviceentry.networking.istio.io/added configured\n")
    assert ctl.ok("apply", "-f", "-", input=se("s5b", 8002)) == (
        "serviceentry.networking.istio.io/s5b configured\n")
    text = f5.read_text()
    assert "number: 8001" in text and "number: 8002" in text, text
    # s5 is gone from the file the index had it in: created anew, in a file of its own.
    assert ctl.ok("apply", "-f", "-", input=se("s5")) == (
        "serviceentry.networking.istio.io/s5 created\n")
    assert created_files(store) == ["s5.yaml"]
    # Replaced by rename and removed behind its back.
    tmp = team / "f007.yaml.new"
    tmp.write_text(se("s7", 8007).replace("name: s7", "name: s7r"))
    os.rename(tmp, team / "f007.yaml")
    (team / "f008.yaml").unlink()
    assert ctl.ok("apply", "-f", "-", input=se("s7r", 8017)) == (
        "serviceentry.networking.istio.io/s7r configured\n")
    assert port_of(team / "f007.yaml", "s7r") == 8017
    assert ctl.ok("apply", "-f", "-", input=se("s8")) == (
        "serviceentry.networking.istio.io/s8 created\n")
    # Torn, or garbage: rebuilt, and right.
    text = (store / INDEX).read_text()
    for bad in (text[:len(text) // 2], "not an index\n", ""):
        (store / INDEX).write_text(bad)
        assert ctl.ok("apply", "-f", "-", input=se("s9", 8009)) == (
            "serviceentry.networking.istio.io/s9 configured\n")
        assert port_of(team / "f009.yaml", "s9") == 8009
        ctl.ok("apply", "-f", "-", input=se("s9"))
    assert created_files(store) == ["s5.yaml", "s8.yaml"]
    names = get_names(ctl)
    assert len(names) == len(set(names)) == N + 2   # s5b, added; s7 -> s7r; s5, s8 anew


def test_small_store_and_dry_run_keep_no_index(ctl, store):
    ctl.ok("apply", "-f", "-", input=se("a"))
    assert not (store / INDEX).exists()
    big_store(store)
    ctl.ok("apply", "--dry-run=client", "-f", "-", input=se("s1", 8443))
    ctl.ok("apply", "--dry-run=server", "-f", "-", input=se("s1", 8443))
    assert not (store / INDEX).exists()
    ctl.ok("apply", "-f", "-", input=se("s1", 8443))
    assert (store / INDEX).exists()


def spread_store(store):
    """N ServiceEntries in 100 directories of 3 files (config/tDD/fK.yaml), s{DD}{K}."""
    for d in range(100):
        sub = store / "config" / f"t{d:02d}"
        sub.mkdir(parents=True)
        for k in range(3):
            (sub / f"f{k}.yaml").write_text(se(f"s{d:02d}{k}"))


def apply_limited(ctl, text, nofile):
    """egressctl apply with RLIMIT_NOFILE at nofile (`ulimit -n`)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    p = subprocess.run([str(ctl.binary), "--store", str(ctl.store), "apply", "-f", "-"],
                       input=text, capture_output=True, text=True, timeout=60,
                       preexec_fn=limit)
    return p


def test_out_of_descriptors_loses_nothing(ctl, store):
    # One apply that cannot open every directory at once (ulimit -n 40, 100 directories)
    # must not save an index without their files: the next apply of an object in one of
    # them then created it a second time.
    spread_store(store)
    ctl.ok("apply", "-f", "-", input=se("s000", 8443))
    assert (store / INDEX).exists()
    time.sleep(0.3)
    p = apply_limited(ctl, se("brandnew"), 40)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "serviceentry.networking.istio.io/brandnew created\n"
    assert ctl.ok("apply", "-f", "-", input=se("s992", 9999)) == (
        "serviceentry.networking.istio.io/s992 configured\n")
    assert port_of(store / "config" / "t99" / "f2.yaml", "s992") == 9999
    assert created_files(store) == ["brandnew.yaml"]
    names = get_names(ctl)
    assert len(names) == len(set(names)) == N + 1


def test_unreadable_entries_are_looked_at_again(ctl, store, tmp_path):
    # A link whose target does not exist when the index is built (a ConfigMap mount's
    # ..data swap under way), then appears without its directory changing.
    spread_store(store)
    ext = tmp_path / "ext"
    ext.mkdir()
    links = store / "config" / "links"
    links.mkdir()
    (links / "x.yaml").symlink_to(ext / "x.yaml")
    time.sleep(0.3)     # the directories' times old enough to be trusted
    ctl.ok("apply", "-f", "-", input=se("s000", 8443))
    assert (store / INDEX).exists()
    (ext / "x.yaml").write_text(se("ext1"))
    assert ctl.ok("get", "serviceentries", "ext1", "-o", "name") == (
        "serviceentry.networking.istio.io/ext1\n")
    assert ctl.ok("apply", "-f", "-", input=se("ext1", 9443)) == (
        "serviceentry.networking.istio.io/ext1 configured\n")
    assert port_of(ext / "x.yaml", "ext1") == 9443
    assert created_files(store) == []
    names = get_names(ctl)
    assert len(names) == len(set(names)) == N + 1


def test_file_made_again_under_its_name(ctl, store):
    # A file removed and made again under the same name, now also defining an object the
    # index places in another file. ext4 gives the freed inode number back to the new
    # file, so its directory's listing must compare inode and change time, not the inode
    # alone. The answer is the full read's: the first definition (by path) is updated and
    # the second reported, never a definition missed.
    big_store(store)
    ctl.ok("apply", "-f", "-", input=se("s0", 8443))
    time.sleep(0.3)     # the directory's and files' times old enough to be trusted
    team = store / "config" / "team"
    f3 = team / "f003.yaml"
    f3.unlink()
    f3.write_text(se("s3") + "---\n" + se("s50", 7050))
    r = ctl("apply", "-f", "-", input=se("s50", 9999))
    assert r.out == "serviceentry.networking.istio.io/s50 configured\n", r
    assert port_of(f3, "s50") == 9999
    assert r.err == (f"Warning: {team / 'f050.yaml'}:1: ServiceEntry default/s50: already "
                     f"defined at {f3}:12\n"), r.err
    assert port_of(team / "f050.yaml", "s50") == 443
    assert created_files(store) == []
