#!/usr/bin/env bash
# A/B of two egressgw builds on scenario 1's job (plain HTTP in, mutual TLS out to the
# keep-alive upstream nginx), to decide whether a change to the request path pays before
# running the whole of make bench. The two builds run interleaved, one at a time, against
# the same upstream, certificates and store; each round starts each build afresh, warms it,
# then measures one wrk run. Prints every run and the medians: requests/s, p99, and CPU
# µs per request split into user and system (/proc). Run-to-run noise on this machine is
# ±15%: use 5 rounds or more, and trust only differences the medians and most runs agree on.
#
# Usage: bench/ab.sh BUILD_DIR_A BUILD_DIR_B [PATH]
#   BUILD_DIR_*: directories holding an egressgw and egressctl (e.g. build/ of two git
#   worktrees); PATH: /small (default) or /large.
# Env:   AB_ROUNDS (5), BENCH_SECONDS (5), BENCH_CONNS (50), BENCH_WARMUP (2)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd); URLPATH=${3:-/small}
ROUNDS=${AB_ROUNDS:-5}
SECS=${BENCH_SECONDS:-5}
CONNS=${BENCH_CONNS:-50}
for b in "$A" "$B"; do
	if ! [ -x "$b/egressgw" ] || ! [ -x "$b/egressctl" ]; then echo "ab: no egressgw/egressctl in $b" >&2; exit 2; fi
done
W=$(mktemp -d /tmp/egressgw-ab.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
ANOMALIES=()
. bench/lib.sh
for t in wrk nginx openssl ss curl; do command -v "$t" >/dev/null || die "$t is missing (scripts/deps.sh bench installs it)"; done

# The newest of the values measure() appends to an array entry.
last() { local a; read -ra a <<< "$1"; echo "${a[-1]}"; }

bench_certs
start_upstream
BUILD=$A make_store "$W/store" 18080 8443 0
printf '%-3s %-6s %10s %8s %8s %8s %8s\n' build round 'req/s' 'p99 ms' 'CPU µs' 'user' 'system'
for r in $(seq "$ROUNDS"); do
	for side in a b; do
		if [ $side = a ]; then BUILD=$A; else BUILD=$B; fi
		start_egressgw "ab-$side" "$W/store" 1 18000 18080
		wait_ok "ab-$side" "$URLPATH"
		warm "ab-$side" "$URLPATH"
		measure "$side" "ab-$side" "$URLPATH"
		stop_sys "ab-$side"
		rps=$(last "${RPS[$side]}"); p99=$(last "${P99[$side]}")
		cpu=$(last "${CPU[$side]}"); sys=$(last "${SYSCPU[$side]}")
		printf '%-3s %-6s %10s %8s %8s %8s %8s\n' "$side" "$r" "$rps" "$p99" "$cpu" \
			"$(awk -v a="$cpu" -v b="$sys" 'BEGIN {printf "%.1f", a - b}')" "$sys"
	done
done
echo
echo "medians over $ROUNDS rounds ($URLPATH, wrk -t1 -c$CONNS -d${SECS}s):"
for side in a b; do
	dir=$A; [ $side = b ] && dir=$B
	printf '  %s  req/s %s  p99 %s ms  CPU %s µs/request (system %s)  %s\n' "$side" \
		"$(med_rps "$side")" "$(med P99 "$side")" "$(med CPU "$side")" "$(med SYSCPU "$side")" "$dir"
done
echo "  b/a CPU per request: $(ratio "$(med CPU b)" "$(med CPU a)"), requests/s: $(ratio "$(med RPS b)" "$(med RPS a)")"
[ ${#ANOMALIES[@]} -eq 0 ] || printf 'anomaly: %s\n' "${ANOMALIES[@]}"
