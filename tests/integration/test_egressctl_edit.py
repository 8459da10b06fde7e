"""egressctl edit KIND NAME (issue 16), driven by an editor script: kubectl edit's
header, validation as apply validates (FILE:LINE:COL in the file being edited, the
"Warning:" lines of unapplied fields), the file reopened with the errors as comments at
the top, kubectl's messages for no change, an empty file and a repeated invalid save,
$EDITOR before $VISUAL before vi, and nothing written unless the edit is valid."""
import json
import os
import re
import stat
import sys

HEADER = ("# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
          "# and an empty file will abort the edit. If an error occurs while saving this file will be\n"
          "# reopened with the relevant failures.\n"
          "#\n")

# The editor: on its Nth run, keeps a copy of what it was given (seen-N.yaml) and applies
# step N of $EDIT_PLAN: ["sub", OLD, NEW] replaces text, "keep" saves it unchanged,
# "empty" saves nothing, "fail" exits 1.
EDITOR = r'''import json, os, sys
d = os.environ["EDIT_DIR"]
n = len([f for f in os.listdir(d) if f.startswith("seen-")])
path = sys.argv[1]
text = open(path).read()
open(os.path.join(d, f"seen-{n}.yaml"), "w").write(text)
step = json.loads(os.environ["EDIT_PLAN"])[n]
if step == "fail":
    sys.exit(1)
if step == "empty":
    text = ""
elif step != "keep":
    assert step[1] in text, (step, text)
    text = text.replace(step[1], step[2])
open(path, "w").write(text)
'''


def editor(tmp_path, plan, var="EDITOR"):
    d = tmp_path / f"ed-{len(list(tmp_path.glob('ed-*')))}"
    d.mkdir()
    script = d / "editor.py"
    script.write_text(EDITOR)
    env = {"EDIT_DIR": str(d), "EDIT_PLAN": json.dumps(plan), "TMPDIR": str(d),
           "EDITOR": "", "VISUAL": ""}
    env[var] = f"{sys.executable} {script}"
    return env, d


def seen(d):
    return [(d / f"seen-{i}.yaml").read_text()
            for i in range(len(list(d.glob("seen-*.yaml"))))]


def stored(store):
    return {p: p.read_text() for p in sorted(store.rglob("*.yaml"))}


def test_edit_applies_a_valid_change(ctl, walkthrough, store, tmp_path):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    env, d = editor(tmp_path, [["sub", "number: 443", "number: 8443"]])
    r = ctl("edit", "serviceentry", "cnn", env=env)
    assert (r.rc, r.out, r.err) == (0, "serviceentry.networking.istio.io/cnn edited\n", ""), r
    # What the editor got: kubectl's header, then the object as get -o yaml shows it.
    (first,) = seen(d)
    assert first == HEADER + ctl.ok("get", "serviceentry", "cnn", "-o", "yaml").replace(
        "number: 8443", "number: 443")
    assert "number: 8443" in ctl.ok("get", "se", "cnn", "-o", "yaml")
    # KIND/NAME, $VISUAL when $EDITOR is unset; the temporary file is gone.
    env, d = editor(tmp_path, [["sub", "resolution: DNS", "resolution: NONE"]], var="VISUAL")
    assert ctl.ok("edit", "se/cnn", env=env) == "serviceentry.networking.istio.io/cnn edited\n"
    assert "resolution: NONE" in ctl.ok("get", "se", "cnn", "-o", "yaml")
    assert list(d.glob("egressctl-edit-*")) == []


def test_edit_reopens_with_the_errors_then_applies_the_fix(ctl, walkthrough, store, tmp_path):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    before = stored(store)
    env, d = editor(tmp_path, [["sub", "resolution: DNS", "resolution: SOMETIMES"],
                               ["sub", "resolution: SOMETIMES", "resolution: STATIC\n  endpoints:\n  - address: 127.0.0.9"]])
    r = ctl("edit", "serviceentry", "cnn", env=env)
    assert r.rc == 0, r
    assert r.out == ('error: serviceentries.networking.istio.io "cnn" is invalid\n'
                     "serviceentry.networking.istio.io/cnn edited\n"), r.out
    first, second = seen(d)
    # Reopened: the header, kubectl's reason line, each error as FILE:LINE:COL in the file
    # being edited (its line is the edited line: the comments count), then the text.
    head, _, body = second.partition("#\napiVersion")
    assert head.startswith(HEADER + '# serviceentries.networking.istio.io "cnn" was not valid:\n# * ')
    m = re.search(r"^# \* (\S+egressctl-edit-\w+\.yaml):(\d+):(\d+): .*resolution", head, re.M)
    assert m, head
    assert first.splitlines()[int(m[2]) - 1].strip() == "resolution: DNS"
    assert "SOMETIMES" in head and "resolution: SOMETIMES" in body
    assert stored(store) != before
    assert "127.0.0.9" in ctl.ok("get", "se", "cnn", "-o", "yaml")


def test_edit_gives_up_on_the_same_invalid_save_and_keeps_the_file(ctl, walkthrough, store,
                                                                   tmp_path):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    before = stored(store)
    env, d = editor(tmp_path, [["sub", "hosts:", "hostz:"], "keep"])
    r = ctl("edit", "serviceentry", "cnn", env=env)
    assert r.rc == 1
    assert r.out == 'error: serviceentries.networking.istio.io "cnn" is invalid\n'
    m = re.fullmatch(r'A copy of your changes has been stored to "(\S+)"\n'
                     r"error: Edit cancelled, no valid changes were saved\.\n", r.err)
    assert m, r.err
    assert "hostz:" in open(m[1]).read() and os.path.dirname(m[1]) == str(d)
    assert stored(store) == before
    # A change of name is refused the same way (edit changes one object in place).
    env, d = editor(tmp_path, [["sub", "name: cnn", "name: cnn2"], "keep"])
    r = ctl("edit", "serviceentry", "cnn", env=env)
    assert r.rc == 1 and "the kind, namespace or name was changed" in seen(d)[1]
    assert stored(store) == before


def test_edit_cancelled_without_changes_or_when_empty(ctl, walkthrough, store, tmp_path):
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    before = stored(store)
    env, _ = editor(tmp_path, ["keep"])
    r = ctl("edit", "serviceentry", "cnn", env=env)
    assert (r.rc, r.out, r.err) == (0, "", "Edit cancelled, no changes made.\n")
    # Comments only: the same.
    env, _ = editor(tmp_path, [["sub", "spec:", "# a note\nspec:"]])
    assert ctl("edit", "serviceentry", "cnn", env=env).err == "Edit cancelled, no changes made.\n"
    env, _ = editor(tmp_path, ["empty"])
    r = ctl("edit", "serviceentry", "cnn", env=env)
    assert (r.rc, r.out, r.err) == (0, "Edit cancelled, saved file was empty.\n", "")
    env, _ = editor(tmp_path, ["fail"])
    r = ctl("edit", "serviceentry", "cnn", env=env)
    assert r.rc == 1 and r.err.startswith("error: there was a problem with the editor")
    assert stored(store) == before


def test_edit_warns_as_apply_and_refuses_what_it_cannot_edit(ctl, walkthrough, store, tmp_path):
    # The ServiceEntry first: a DestinationRule for a host no ServiceEntry lists is itself
    # warned about at apply (IST0174), and this test wants apply's stderr empty.
    ctl.ok("apply", "-f", walkthrough / "01-serviceentry-cnn.yaml")
    ctl.ok("apply", "-f", walkthrough / "03-virtualservice-destinationrule-cnn.yaml")
    # A field accepted and not applied: applied with apply's Warning line.
    env, _ = editor(tmp_path, [["sub", "  http:\n", "  http:\n  - retries:\n      attempts: 3\n"
                                "      retryRemoteLocalities: true\n"
                                "    route:\n    - destination:\n        host: x.example\n"]])
    r = ctl("edit", "virtualservice", "direct-cnn-through-egress-gateway", env=env)
    assert r.rc == 0 and r.out.endswith(" edited\n"), r
    assert re.search(r"^Warning: \S+egressctl-edit-\w+\.yaml:\d+:\d+: .*retries\.retryRemoteLocalities.*not applied", r.err,
                     re.M), r.err
    r = ctl("edit", "virtualservice", "nope", env=env)
    assert (r.rc, r.err) == (1, 'Error from server (NotFound): virtualservices.networking.istio.io '
                                '"nope" not found\n')
    assert ctl("create", "secret", "generic", "s1", "--from-literal=k=v").rc == 0
    r = ctl("edit", "secret", "s1", env=env)
    assert r.rc == 1 and r.err.startswith("error: secrets are not edited")
    r = ctl("edit", "virtualservice", env=env)
    assert r.rc == 1 and "KIND NAME" in r.err
    assert "Usage:\n  egressctl edit KIND NAME" in ctl.ok("edit", "--help")
    assert stat.S_ISDIR(os.stat(store).st_mode)
