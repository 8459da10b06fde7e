"""scripts/check_structure.py (make check) on small C trees written here: each rule must
fail on a tree that breaks it, pass when the allow-list names the violation, and say when
an allow-list entry is no longer needed. The last test runs it on the real tree, as
`make check` does."""
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CHECK = REPO / "scripts" / "check_structure.py"


def run(root, *args):
    r = subprocess.run([sys.executable, str(CHECK), "--root", str(root), *args],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def write(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def long_function(name, n):
    """A function of exactly n lines (name line to closing brace)."""
    body = "".join(f"\tx += {i};\n" for i in range(n - 4))
    return f"int {name}(int x)\n{{\n{body}\treturn x;\n}}\n"


@pytest.fixture
def tree(tmp_path):
    """A clean tree: two proxy files, one calling the other, an HTTP/1.1 codec."""
    write(tmp_path, "src/http/h1.c", "int h1_parse(const char *p)\n{\n\treturn p != 0;\n}\n")
    write(tmp_path, "src/proxy/a.c",
          "/* a() calls b() */\nint b(int);\nint a(int x)\n{\n\treturn b(x) + 1;\n}\n")
    write(tmp_path, "src/proxy/b.c", "int b(int x)\n{\n\treturn x * 2;\n}\n")
    write(tmp_path, "scripts/structure-allow.txt", "# nothing allowed\n")
    return tmp_path


def test_clean_tree_passes(tree):
    rc, out = run(tree)
    assert rc == 0, out
    assert "0 violation(s)" in out


def test_cycle_between_files_fails(tree):
    write(tree, "src/proxy/b.c", "int a(int);\nint b(int x)\n{\n\treturn x ? a(x - 1) : 0;\n}\n")
    rc, out = run(tree)
    assert rc == 1, out
    assert "NEW cycle: call cycle among 2 files: src/proxy/a.c src/proxy/b.c" in out
    assert "src/proxy/b.c -> src/proxy/a.c (b calls a)" in out


def test_transitive_cycle_fails_and_is_allowed_by_a_superset(tree):
    write(tree, "src/proxy/b.c", "int c(int);\nint b(int x)\n{\n\treturn c(x);\n}\n")
    write(tree, "src/proxy/c.c", "int a(int);\nint c(int x)\n{\n\treturn x ? a(x) : 0;\n}\n")
    rc, out = run(tree)
    assert rc == 1 and "among 3 files: src/proxy/a.c src/proxy/b.c src/proxy/c.c" in out, out
    write(tree, "scripts/structure-allow.txt",
          "cycle src/proxy/a.c src/proxy/b.c src/proxy/c.c src/proxy/d.c\n")
    rc, out = run(tree)
    assert rc == 0, out


def test_static_function_of_the_same_name_is_no_edge(tree):
    """b.c calls its own static a(): no edge to a.c, no cycle."""
    write(tree, "src/proxy/b.c", "static int a(int x)\n{\n\treturn x;\n}\n"
          "int b(int x)\n{\n\treturn a(x);\n}\n")
    rc, out = run(tree)
    assert rc == 0, out


def test_calls_in_comments_and_strings_are_not_calls(tree):
    write(tree, "src/proxy/b.c", "int b(int x)\n{\n\t/* a(x) */\n\tconst char *s = \"a(1)\";\n"
          "\treturn x + (s != 0); // a(2)\n}\n")
    rc, out = run(tree)
    assert rc == 0, out


def test_long_function_fails_at_81_lines_not_80(tree):
    write(tree, "src/proxy/c.c", long_function("eighty", 80))
    rc, out = run(tree)
    assert rc == 0, out
    write(tree, "src/proxy/c.c", long_function("eighty_one", 81))
    rc, out = run(tree)
    assert rc == 1, out
    assert "NEW function: src/proxy/c.c:1: eighty_one: 81 lines (limit 80)" in out
    write(tree, "scripts/structure-allow.txt", "function src/proxy/c.c eighty_one\n")
    rc, out = run(tree)
    assert rc == 0, out


def test_long_file_fails(tree):
    write(tree, "src/proxy/big.c", "int big;\n" * 1201)
    rc, out = run(tree)
    assert rc == 1 and "NEW file: src/proxy/big.c: 1201 lines (limit 1200)" in out, out


def test_long_file_outside_the_enforced_directory_is_information(tree):
    write(tree, "src/config/big.c", "int big;\n" * 1300)
    rc, out = run(tree, "--all")
    assert rc == 0, out
    assert "file: src/config/big.c: 1300 lines" in out


def test_h1_parse_outside_a_codec_fails(tree):
    write(tree, "src/proxy/fwd.c", "int h1_parse(const char *);\nint f(void)\n{\n"
          "\treturn h1_parse(\"x\");\n}\n")
    rc, out = run(tree)
    assert rc == 1 and "NEW h1_parse: src/proxy/fwd.c: f calls h1_parse" in out, out
    # The same call from an HTTP/1.1 codec file is fine.
    (tree / "src/proxy/fwd.c").rename(tree / "src/proxy/codec_h1.c")
    rc, out = run(tree)
    assert rc == 0, out


def test_stale_allow_entry_is_reported(tree):
    write(tree, "scripts/structure-allow.txt", "file src/proxy/a.c\n")
    rc, out = run(tree)
    assert rc == 0
    assert "'file src/proxy/a.c' is no longer needed" in out


def test_bad_allow_entry_is_an_error(tree):
    write(tree, "scripts/structure-allow.txt", "function src/proxy/a.c\n")
    rc, out = run(tree)
    assert rc != 0 and "bad entry" in out, out


def test_the_real_tree_passes_with_its_allow_list():
    rc, out = run(REPO)
    assert rc == 0, out
