#!/usr/bin/python3
"""Draws the benchmark report's figures from its own tables (no re-run): for scenarios 1, 2
and 3, latency percentiles and CPU per request side by side for egressgw, HAProxy and nginx,
as SVG next to the report (bench-sN.svg), with gnuplot (Debian's gnuplot-nox).

Usage: bench/figures.py [REPORT]   (default docs/BENCHMARKS.md; bench/run.sh calls it last)

The numbers are read from REPORT's markdown tables by column title, so a figure always shows
the run the report describes; a scenario the run skipped ("Not run") gets no figure, and an
older figure of it is removed."""
import os
import subprocess
import sys
import tempfile

# Per scenario: the table (found by its first column title), the row label column, the
# latency columns and the CPU columns (title in the report, legend), and the axis titles.
FIGURES = {
    1: dict(first="response", label=("proxy", "response"),
            lat=[("p50 ms", "p50"), ("p99 ms", "p99")],
            cpu=[("CPU µs/request", "CPU µs/request")],
            lat_title="latency (ms), small and large responses",
            cpu_title="proxy CPU per request (µs)"),
    2: dict(first="proxy", label=("proxy",),
            lat=[("p50 ms", "p50"), ("p99 ms", "p99")],
            cpu=[("CPU µs/request", "proxy"), ("upstream CPU µs/request", "upstream")],
            lat_title="latency (ms), a new mutual-TLS connection per request",
            cpu_title="CPU per request (µs)"),
    3: dict(first="path", label=("path",),
            lat=[("p50 ms", "p50"), ("p90 ms", "p90"), ("p99 ms", "p99")],
            cpu=[("vCPU per 1,000 req/s: sidecar", "sidecar"), ("gateway", "gateway")],
            lat_title="latency (ms) at 1,000 requests/s, application to upstream",
            cpu_title="vCPU per 1,000 requests/s"),
}


def sections(text):
    """{scenario number: its lines}."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            cur = None
            if line.startswith("## Scenario "):
                num = line[len("## Scenario "):].split(":")[0]
                cur = int(num) if num.isdigit() else None
                if cur is not None:
                    out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def table(lines, first):
    """The first markdown table whose first column title is `first`: (titles, rows)."""
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return cells, rows
    return None, None


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def data_file(path, rows, titles, label, cols):
    """Tab-separated: label, then each column (NaN where the report has none)."""
    with open(path, "w") as f:
        for r in rows:
            name = " ".join(r[titles.index(c)] for c in reversed(label)) if len(label) > 1 \
                else r[titles.index(label[0])]
            vals = [num(r[titles.index(c)]) for c, _ in cols]
            f.write("\t".join([f'"{name}"'] + ["NaN" if v is None else repr(v) for v in vals])
                    + "\n")


def plot_cmds(dat, cols, title):
    series = ", ".join(
        f"'{dat}' using {i + 2}:xtic(1) title '{legend}'" if i == 0 else
        f"'' using {i + 2} title '{legend}'" for i, (_, legend) in enumerate(cols))
    return f"set title '{title}'\nplot {series}\n"


def draw(n, spec, titles, rows, out, tmp):
    lat_dat, cpu_dat = os.path.join(tmp, f"s{n}-lat.dat"), os.path.join(tmp, f"s{n}-cpu.dat")
    data_file(lat_dat, rows, titles, spec["label"], spec["lat"])
    data_file(cpu_dat, rows, titles, spec["label"], spec["cpu"])
    script = f"""set terminal svg size 1000,380 dynamic font 'sans,11' background '#ffffff'
set output '{out}'
set datafile separator '\\t'
set datafile missing 'NaN'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left
set grid ytics
set yrange [0:*]
set xtics rotate by -25 font 'sans,10'
set multiplot layout 1,2
{plot_cmds(lat_dat, spec['lat'], spec['lat_title'])}{plot_cmds(cpu_dat, spec['cpu'], spec['cpu_title'])}unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    report = sys.argv[1] if len(sys.argv) > 1 else "docs/BENCHMARKS.md"
    outdir = os.path.dirname(os.path.abspath(report))
    secs = sections(open(report, encoding="utf-8").read())
    with tempfile.TemporaryDirectory() as tmp:
        for n, spec in FIGURES.items():
            out = os.path.join(outdir, f"bench-s{n}.svg")
            titles, rows = table(secs.get(n, []), spec["first"])
            if not rows:
                if os.path.exists(out):
                    os.remove(out)
                continue
            draw(n, spec, titles, rows, out, tmp)
            print(f"bench: figure {out}")


if __name__ == "__main__":
    main()
