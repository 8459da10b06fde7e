#!/usr/bin/env bash
# Side-by-side benchmark of egressgw, HAProxy 2.6 and nginx 1.22 doing the same job: plain
# HTTP/1.1 in, mutual TLS out to an nginx upstream, all on loopback. The one entry point
# (make bench); the scenarios live in bench/s*.sh, what they share in bench/lib.sh.
#
#   1  keep-alive upstream: requests/s, latency, CPU per request (small and 16 KiB responses)
#   2  handshake-bound: the upstream closes after every response, so every request needs a
#      new mutual-TLS connection; TLS session resumption of each proxy
#   3  the mesh path: application → sidecar → (mutual TLS) → gateway → upstream at a fixed
#      1,000 requests/s: latency added to calling the upstream directly, CPU of each proxy
#   4  memory: RSS idle, and per idle downstream keep-alive connection (10,000 held)
#   5  scaling: 1 and 2 workers; egressgw with 1, 10, 100 and 1,000 routes
#   6  TLS passthrough by SNI (the application's TLS relayed unterminated): CPU per short
#      connection and per MB of bulk transfer, and system calls per connection, beside
#      HAProxy req.ssl_sni and nginx stream ssl_preread; the gateway alone, then the mesh
#      path sidecar -> gateway -> upstream with iptables capture (in a network namespace
#      the bench makes: needs root)
#   7  access rules: scenario 1 through 100 AuthorizationPolicies of 10 rules (the request
#      admitted by the last), beside HAProxy's and nginx's equivalents (a map of the hosts)
#   8  configuration at scale: 1,000 and 10,000 external hosts, start time, CPU and memory
#      of egressgw, HAProxy and nginx, and egressgw's reload of one changed DestinationRule
#
# The report (BENCH_OUT) gets figures of scenarios 1-3 next to their tables (bench-sN.svg
# beside it), drawn by bench/figures.py with gnuplot from the report's own tables.
#
# Every proxy: access logs off, upstream verified (CA + name), SNI sent, client certificate
# presented, upstream keep-alive and TLS session reuse on. The systems are interleaved and
# each is run BENCH_ROUNDS times; tables give medians.
#
# Usage: bench/run.sh            (make bench)
# Env:   BENCH_SCENARIOS ("1 2 3 4 5 6 7 8"), BENCH_SCALE_HOSTS ("1000 10000", scenario 8), BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_CONNS (50),
#        BENCH_WORKERS (1, scenarios 1-4), BENCH_WARMUP (2 seconds per system),
#        BENCH_IDLE_CONNS (10000, scenario 4), BENCH_ROUTES ("1 10 100 1000", scenario 5),
#        BENCH_BULK_CONNS (10), BENCH_PT_SHORT (4000), BENCH_PT_BULK (1000), BENCH_PT_STRACE (1000) (scenario 6),
#        BENCH_UP_WORKERS (1, the upstream nginx), BENCH_OUT (docs/BENCHMARKS.md),
#        BENCH_KEEP (set: keep the work directory with configurations and logs),
#        BENCH_UP_IP, BENCH_PX_IP, BENCH_CNN_IP (the loopback addresses, bench/lib.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${EGRESSGW_BUILD:-$PWD/build}
# Every scenario, in the report's order: the one list the default, the check below and the
# report's sections read (a scenario is a bench/sN.sh defining sN_run).
ALL_SCENARIOS="1 2 3 4 5 6 7 8"
SCENARIOS=${BENCH_SCENARIOS:-$ALL_SCENARIOS}
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-50}
WORKERS=${BENCH_WORKERS:-1}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
ROUTES=${BENCH_ROUTES:-1 10 100 1000}
SCALE_HOSTS=${BENCH_SCALE_HOSTS:-1000 10000}
OUT=${BENCH_OUT:-docs/BENCHMARKS.md}
W=$(mktemp -d /tmp/egressgw-bench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	# Scenario 6's network namespace (bench/s6chain.sh), if it made one.
	if declare -F s6c_cleanup >/dev/null; then s6c_cleanup; fi
	if [ -n "${BENCH_KEEP:-}" ]; then echo "bench: kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

# Scenario 4 holds 10,000 connections: the proxies and the client inherit this limit.
ulimit -n "$(ulimit -Hn)"

. bench/lib.sh
for s in $SCENARIOS; do
	# shellcheck source=/dev/null
	case " $ALL_SCENARIOS " in
	*" $s "*) . "bench/s$s.sh" ;;
	*) die "unknown scenario $s (BENCH_SCENARIOS takes $ALL_SCENARIOS)" ;;
	esac
done
for n in $ROUTES; do [ "$n" -gt "$HOSTS_MAX" ] && HOSTS_MAX=$n; done
for t in wrk h2load haproxy nginx curl openssl ss /usr/bin/python3 gnuplot strace; do
	command -v "$t" >/dev/null || die "$t is missing (scripts/deps.sh bench installs it)"
done
[ -x "$BUILD/egressgw" ] && [ -x "$BUILD/egressctl" ] || die "no $BUILD/egressgw (run make)"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
bench_certs
# Scenario 8 measures start-up only: no upstream needed.
[ "$SCENARIOS" = 8 ] || start_upstream

# Each scenario function s<n>_run stores its section (markdown) in SECTION[n] and prints it.
declare -A SECTION
section() { SECTION[$1]=$2; printf '\n%s\n' "$2"; }
for s in $SCENARIOS; do "s${s}_run"; done

# ---- the report ----
not_run() { echo "## Scenario $1

Not run (BENCH_SCENARIOS=\"$SCENARIOS\")."; }
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || GIT_REV+=" with uncommitted changes in src/"
LOAD_NOTE=""
awk -v l="${LOAD_START%% *}" 'BEGIN {exit !(l > 0.5)}' && LOAD_NOTE="
**The machine was not idle when this run started (1-minute load average ${LOAD_START%% *}): these
numbers check that the benchmark works; they are not results.**
"
fig_alt() { echo "Scenario $1: latency percentiles and CPU per request of egressgw, HAProxy and nginx, from the table above"; }
ANOM="None: no instance exited early, no wrk or h2load run had errors."
if [ ${#ANOMALIES[@]} -gt 0 ]; then ANOM=$(printf -- '- %s\n' "${ANOMALIES[@]}"); fi
CMD="BENCH_SCENARIOS=\"$SCENARIOS\" BENCH_SECONDS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_CONNS=$CONNS BENCH_WORKERS=$WORKERS BENCH_IDLE_CONNS=$IDLE_CONNS BENCH_ROUTES=\"$ROUTES\" BENCH_BULK_CONNS=${BENCH_BULK_CONNS:-10} BENCH_PT_SHORT=${BENCH_PT_SHORT:-4000} BENCH_PT_BULK=${BENCH_PT_BULK:-1000} BENCH_PT_STRACE=${BENCH_PT_STRACE:-1000} BENCH_SCALE_HOSTS=\"$SCALE_HOSTS\" make bench"
{
	echo "# Benchmarks"
	echo
	echo "Produced by \`make bench\` (bench/run.sh and bench/s*.sh), which starts every system"
	echo "itself on loopback. The load generator, the proxy and the upstream share the machine's"
	echo "cores, so absolute numbers move by ±20% between runs: compare ratios from the same run."
	echo
	echo "## Machine, versions, command"
	echo
	echo "- Run on $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - T_START )) s in all"
	echo "- $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
	echo "- Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- egressgw $GIT_REV (binaries from $(basename "$BUILD")/); $(openssl version | cut -d' ' -f1-2)"
	echo "- $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(/usr/bin/python3 --version)"
	echo "- Command: \`$CMD\`"
	echo "- Load (scenario 3 has its own, in its section): \`wrk -t1 -c$CONNS -d${SECS}s --latency\`, ${ROUNDS} interleaved rounds, medians; a ${BENCH_WARMUP:-2} s unmeasured wrk run per system first."
	echo "  CPU µs/request: the proxy's user + system time from /proc/PID/stat (all threads and"
	echo "  worker processes) over the run, divided by the requests wrk completed."
	echo "  Errors: non-2xx responses plus wrk's socket errors, summed over the rounds."
	echo "- Configurations: generated by bench/lib.sh (eg_yaml for egressgw, start_haproxy,"
	echo "  start_nginx, start_upstream); BENCH_KEEP=1 keeps them in the work directory."
	echo "$LOAD_NOTE"
	for s in $ALL_SCENARIOS; do
		if [ -n "${SECTION[$s]:-}" ]; then
			echo "${SECTION[$s]}"
			# bench/figures.py draws it from the table above once the report is written.
			case $s in 1 | 2 | 3) echo; echo "![$(fig_alt "$s")](bench-s$s.svg)" ;; esac
		else not_run "$s"; fi
		echo
	done
	echo "## Anomalies"
	echo
	echo "$ANOM"
	echo
	if [ -f "$ROOT/bench/findings.md" ]; then cat "$ROOT/bench/findings.md"; echo; fi
	echo "## wrk command lines"
	echo
	echo "PORT is the proxy's port (bench/s*.sh); the proxies listen on $PX_IP."
	echo
	for c in "${WRK_CMDS[@]}"; do echo "    $c"; done
} > "$OUT"
echo
echo "bench: report written to $OUT"
/usr/bin/python3 bench/figures.py "$OUT"
