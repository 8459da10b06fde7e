#!/usr/bin/python3
"""check_structure: the shape rules of issue 13, as a ratchet (make check).

For the enforced directory (default src/proxy) it reports
  - files over MAX_FILE_LINES (1,200) lines,
  - functions over MAX_FUNC_LINES (80) lines, counted from the line holding the
    function's name to its closing brace,
  - call cycles between files: file A calls a function defined in B and B (directly or
    through other files of the directory) calls one defined in A; each strongly connected
    set of files is one cycle,
and, anywhere under src/, calls of h1_parse outside the HTTP/1.1 codec files (a file
whose name starts with "h1" or has "_h1" in it, e.g. src/http/h1.c, src/proxy/codec_h1.c,
and the admin endpoint's own HTTP/1.1 server, src/admin/admin.c, which parses the bytes
of its sockets as a codec does: what the rule forbids is a head rendered to text and
parsed again).
The same file, function and cycle reports for all of src/ are printed for information
(--all) and never fail the check.

Today's violations are listed in an allow-list (scripts/structure-allow.txt) so the check
passes now and fails on any new one; an entry no longer needed is reported, so the list
only shrinks. Entries, one a line ('#' starts a comment):
    file      PATH                 PATH may be over MAX_FILE_LINES lines
    function  PATH NAME            NAME in PATH may be over MAX_FUNC_LINES lines
    cycle     PATH PATH...         a cycle among a subset of these files is allowed
    h1_parse  PATH                 PATH may call h1_parse

How calls are found (python3 only, no compiler): comments, strings and character
literals are blanked; a function definition is a top-level "NAME(...) {"; a call is an
identifier followed by "(" inside a body that names a function defined, not static, in
another .c file of src/ (a static function of the same name in the calling file wins).
Calls made only through function pointers or hidden in macros are not edges: a cycle
through callbacks is a run-time path, not a dependency of the source.

Usage: scripts/check_structure.py [--root DIR] [--allow FILE] [--dir src/proxy] [--all]
Exit status: 0 clean (or only allowed), 1 a new violation, 2 usage error.
"""
import argparse
import pathlib
import re
import sys

MAX_FILE_LINES = 1200
MAX_FUNC_LINES = 80

KEYWORDS = {
    "if", "for", "while", "switch", "return", "sizeof", "do", "else", "case", "goto",
    "_Alignof", "_Static_assert", "_Generic", "defined", "__attribute__", "typeof",
    "__typeof__", "alignof", "static_assert", "__builtin_expect", "va_arg", "offsetof",
}

IDENT_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
DECL_NAME = re.compile(r"([A-Za-z_]\w*)\s*\(")


def blank_comments_and_strings(text):
    """text with comments, string and char literals replaced by spaces (newlines kept),
    and preprocessor lines blanked (a macro body is not a function)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    lines = "".join(out).split("\n")
    # Preprocessor directives, with their backslash continuations.
    cont = False
    for k, line in enumerate(lines):
        if cont or line.lstrip().startswith("#"):
            cont = line.rstrip().endswith("\\")
            lines[k] = ""
    return "\n".join(lines)


class Func:
    def __init__(self, path, name, static, start, end, body):
        self.path, self.name, self.static = path, name, static
        self.start, self.end, self.body = start, end, body

    @property
    def lines(self):
        return self.end - self.start + 1


def parse_functions(path, text):
    """The function definitions of one C file."""
    clean = blank_comments_and_strings(text)
    funcs = []
    depth = 0
    head_start = 0          # offset where the current top-level declaration began
    i = 0
    n = len(clean)
    while i < n:
        c = clean[i]
        if c == "{" and depth == 0:
            head = clean[head_start:i]
            # The last "NAME(" of the head whose parentheses close right before "{".
            m = None
            if head.rstrip().endswith(")") and "=" not in head:
                names = list(DECL_NAME.finditer(head))
                for cand in names:
                    if cand.group(1) not in KEYWORDS:
                        m = cand
                        break
            # Find the matching brace.
            j, d = i, 0
            while j < n:
                if clean[j] == "{":
                    d += 1
                elif clean[j] == "}":
                    d -= 1
                    if d == 0:
                        break
                j += 1
            if m is not None:
                name_off = head_start + m.start(1)
                start = clean.count("\n", 0, name_off) + 1
                end = clean.count("\n", 0, j) + 1
                static = re.search(r"\bstatic\b", head[:m.start(1)]) is not None
                funcs.append(Func(path, m.group(1), static, start, end, clean[i:j + 1]))
            i = j + 1
            head_start = i
            continue
        if c == ";" and depth == 0:
            head_start = i + 1
        i += 1
    return funcs


def calls_in(func):
    """The names func calls, sorted (so the example edges reported are stable)."""
    return sorted({m.group(1) for m in IDENT_CALL.finditer(func.body)
                   if m.group(1) not in KEYWORDS})


def scc(nodes, edges):
    """Strongly connected components (Tarjan, iterative) with more than one node."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in nodes:
                    continue
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


# HTTP/1.1 servers that are not named as codecs: they read their own sockets with h1_parse.
H1_SERVER_FILES = {"src/admin/admin.c"}


def is_h1_codec(path):
    base = pathlib.PurePath(path).name
    return base.startswith("h1") or "_h1" in base or path in H1_SERVER_FILES


class Tree:
    """Every .c file under ROOT/src, parsed."""

    def __init__(self, root):
        self.root = root
        self.files = {}          # rel path -> (line count, [Func])
        for p in sorted((root / "src").rglob("*.c")):
            rel = p.relative_to(root).as_posix()
            text = p.read_text(errors="replace")
            self.files[rel] = (text.count("\n") + (0 if text.endswith("\n") else 1),
                               parse_functions(rel, text))
        # Global (non-static) definitions: name -> files.
        self.defs = {}
        for rel, (_, funcs) in self.files.items():
            for f in funcs:
                if not f.static:
                    self.defs.setdefault(f.name, set()).add(rel)
        self.edges = {}          # file -> {file: (caller, callee)} (one example each)
        self.callers = {}        # callee name -> {file: caller function}
        for rel, (_, funcs) in self.files.items():
            local_static = {f.name for f in funcs if f.static}
            local = {f.name for f in funcs}
            for f in funcs:
                for callee in calls_in(f):
                    self.callers.setdefault(callee, {}).setdefault(rel, f.name)
                    if callee in local_static or callee in local:
                        continue
                    for target in self.defs.get(callee, ()):
                        if target != rel:
                            self.edges.setdefault(rel, {}).setdefault(target, (f.name, callee))

    def under(self, d):
        d = d.rstrip("/") + "/"
        return [r for r in self.files if r.startswith(d)]


def violations(tree, scope_files):
    """(kind, key, message) for files, functions and cycles within scope_files."""
    out = []
    scope = set(scope_files)
    for rel in sorted(scope):
        nlines, funcs = tree.files[rel]
        if nlines > MAX_FILE_LINES:
            out.append(("file", (rel,), f"{rel}: {nlines} lines (limit {MAX_FILE_LINES})"))
        for f in funcs:
            if f.lines > MAX_FUNC_LINES:
                out.append(("function", (rel, f.name),
                            f"{rel}:{f.start}: {f.name}: {f.lines} lines (limit {MAX_FUNC_LINES})"))
    edges = {a: set(bs) for a, bs in tree.edges.items() if a in scope}
    for comp in scc(scope, edges):
        detail = []
        for a in comp:
            for b in comp:
                if b in tree.edges.get(a, {}):
                    caller, callee = tree.edges[a][b]
                    detail.append(f"    {a} -> {b} ({caller} calls {callee})")
        out.append(("cycle", tuple(comp),
                    f"call cycle among {len(comp)} files: {' '.join(comp)}\n" + "\n".join(detail)))
    return out


def h1_parse_violations(tree):
    out = []
    for rel, caller in sorted(tree.callers.get("h1_parse", {}).items()):
        if not is_h1_codec(rel):
            out.append(("h1_parse", (rel,), f"{rel}: {caller} calls h1_parse outside the "
                        "HTTP/1.1 codec files"))
    return out


def read_allow(path):
    allow = []
    if path is None or not path.exists():
        return allow
    for k, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].split()
        if not line:
            continue
        kind, args = line[0], tuple(line[1:])
        want = {"file": 1, "function": 2, "h1_parse": 1}.get(kind)
        if kind == "cycle":
            if len(args) < 2:
                raise SystemExit(f"{path}:{k}: cycle needs two files or more")
        elif want is None or len(args) != want:
            raise SystemExit(f"{path}:{k}: bad entry {' '.join(line)!r} "
                             "(file PATH | function PATH NAME | cycle PATH... | h1_parse PATH)")
        allow.append((kind, args, k))
    return allow


def allowed_by(v, entry):
    kind, key, _ = v
    ekind, eargs, _ = entry
    if kind != ekind:
        return False
    if kind == "cycle":
        return set(key) <= set(eargs)
    return tuple(key) == tuple(eargs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parents[1]))
    ap.add_argument("--allow", default=None,
                    help="allow-list (default ROOT/scripts/structure-allow.txt)")
    ap.add_argument("--dir", default="src/proxy", help="the enforced directory")
    ap.add_argument("--all", action="store_true",
                    help="also print the reports for all of src/ (information only)")
    a = ap.parse_args(argv)
    root = pathlib.Path(a.root)
    allow_path = pathlib.Path(a.allow) if a.allow else root / "scripts" / "structure-allow.txt"
    allow = read_allow(allow_path)
    tree = Tree(root)
    scope = tree.under(a.dir)
    if not scope:
        print(f"check_structure: no .c file under {root / a.dir}", file=sys.stderr)
        return 2

    found = violations(tree, scope) + h1_parse_violations(tree)
    used = set()
    new = []
    for v in found:
        hit = [e for e in allow if allowed_by(v, e)]
        if hit:
            used.update(e[2] for e in hit)
        else:
            new.append(v)
    nfunc = sum(len(f) for _, f in (tree.files[r] for r in scope))
    print(f"check_structure: {a.dir}: {len(scope)} files, {nfunc} functions; "
          f"{len(found)} violation(s), {len(found) - len(new)} allowed by {allow_path.name}")
    for v in found:
        if v in new:
            print(f"  NEW {v[0]}: {v[2]}")
        else:    # the first line only: the details of an accepted cycle are noise
            print(f"  allowed {v[0]}: {v[2].splitlines()[0]}")
    for kind, args, k in allow:
        if k not in used:
            print(f"  note: {allow_path.name}:{k}: '{kind} {' '.join(args)}' is no longer "
                  "needed: remove it")
    if a.all:
        everything = list(tree.files)
        info = violations(tree, everything)
        print(f"check_structure: information, all of src/ ({len(everything)} files): "
              f"{len(info)} report(s)")
        for v in info:
            print(f"  {v[0]}: {v[2]}")
    if new:
        print(f"check_structure: {len(new)} new violation(s): fix them (split the file or "
              "function, break the cycle, move the h1_parse call into an HTTP/1.1 codec)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
