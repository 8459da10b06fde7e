"""Differential test of the request-head parser (src/http/h1.c) against Debian's
http-parser (issue 6). tests/diff/h1_diff.c runs the fuzz corpus
(tests/fuzz/corpus/h1_request/) and a set of crafted cases through both parsers; every
disagreement must be listed, with its reason, in tests/diff/h1_diff_expected.txt. A new
disagreement fails, and so does a listed one that went away (the file stays exact)."""
import os
import pathlib
import subprocess

import pytest

from conftest import BUILD, REPO

DIFF_DIR = REPO / "tests" / "diff"
CORPUS = REPO / "tests" / "fuzz" / "corpus" / "h1_request"


def _asan_archive(lib):
    """True when the library was built with sanitizers (make SANITIZE=1): the program
    linking it then needs the same runtime."""
    p = subprocess.run(["nm", "-A", str(lib)], capture_output=True, text=True)
    return "__asan_" in p.stdout or "__ubsan_" in p.stdout


@pytest.fixture(scope="module")
def h1_diff(tmp_path_factory):
    lib = BUILD / "libegress.a"
    assert lib.is_file(), f"{lib} is missing: build first (make), or set EGRESSGW_BUILD"
    out = tmp_path_factory.mktemp("h1diff") / "h1_diff"
    cc = os.environ.get("CC", "cc")
    flags = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes",
             "-Wmissing-prototypes", "-Werror", "-g", "-O1", f"-I{REPO / 'src'}"]
    if _asan_archive(lib):
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    cmd = [cc, *flags, str(DIFF_DIR / "h1_diff.c"), str(lib), "-lhttp_parser", "-o", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stderr}\n(libhttp-parser-dev: scripts/deps.sh test)"
    return out


def run(binary):
    files = sorted(str(f) for f in CORPUS.iterdir() if f.is_file())
    assert files, CORPUS
    p = subprocess.run([str(binary), *files], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    rows = {}
    for line in p.stdout.splitlines():
        name, ours, theirs, diff = line.split("\t")
        assert name not in rows, f"duplicate case {name}"
        rows[name] = (ours, theirs, diff)
    return files, rows


def verdict(view):
    return view.split(" ", 1)[0]


def expected():
    out = {}
    for n, line in enumerate((DIFF_DIR / "h1_diff_expected.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        assert len(parts) == 4 and parts[3].strip(), f"h1_diff_expected.txt:{n}: want CASE, OURS/THEIRS, DIFF, why"
        assert parts[0] not in out, f"h1_diff_expected.txt:{n}: {parts[0]} listed twice"
        out[parts[0]] = (parts[1], parts[2])
    return out


def test_every_disagreement_is_known_and_explained(h1_diff):
    files, rows = run(h1_diff)
    assert len(rows) >= len(files) + 80, len(rows)
    want = expected()
    got = {name: (f"{verdict(o)}/{verdict(t)}", d) for name, (o, t, d) in rows.items() if d != "-"}
    new = {k: rows[k] for k in got if want.get(k) != got[k]}
    gone = {k: want[k] for k in want if k not in got}
    msg = ""
    if new:
        msg += "new or changed disagreements (explain them in tests/diff/h1_diff_expected.txt):\n"
        msg += "".join(f"  {k}\t{got[k][0]}\t{got[k][1]}\n    ours:   {o[:200]}\n    theirs: {t[:200]}\n"
                       for k, (o, t, _) in new.items())
    if gone:
        msg += "listed disagreements that no longer occur (remove them):\n"
        msg += "".join(f"  {k}\t{v[0]}\t{v[1]}\n" for k, v in gone.items())
    assert not msg, msg


def test_corpus_and_basic_requests_agree_exactly(h1_diff):
    """The seeds and the well-formed crafted requests parse the same way in both, down
    to method, target, version, field count and framing."""
    files, rows = run(h1_diff)
    for f in files:
        name = "corpus/" + pathlib.Path(f).name
        assert rows[name][2] == "-", (name, rows[name])
    for name in ["crafted/get", "crafted/post_length", "crafted/post_chunked",
                 "crafted/absolute_form", "crafted/connect", "crafted/leading_crlf"]:
        ours, theirs, diff = rows[name]
        assert diff == "-" and verdict(ours) == "accept", rows[name]


def test_we_never_accept_a_framing_http_parser_reads_differently(h1_diff):
    """Where both accept, the body framing is the same; where only we accept, it is one of
    the listed cases where http-parser is stricter than RFC 9110 (repeated identical
    Content-Length, methods outside its fixed list)."""
    _, rows = run(h1_diff)
    for name, (ours, theirs, diff) in rows.items():
        if verdict(ours) == "accept" and verdict(theirs) == "accept":
            assert "body" not in diff.split(","), (name, ours, theirs)
        if verdict(ours) == "accept" and verdict(theirs) != "accept":
            assert name in ("crafted/cl_same_twice", "crafted/cl_same_list",
                            "crafted/custom_method", "crafted/lowercase_method"), (name, ours, theirs)
