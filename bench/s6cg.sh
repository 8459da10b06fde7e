#!/usr/bin/env bash
# Scenario 6's gateway under callgrind: user-space instructions per relayed TLS connection,
# exactly, whatever the machine's load (the CPU time of bench/run.sh's scenario 6 moves
# with the load of a shared machine; this does not). The A/B tool for the passthrough path:
# the same job as scenario 6's "short" load (one request per connection, the application's
# TLS relayed unterminated to the upstream nginx by a Gateway tls.mode PASSTHROUGH and a
# tls: route on sniHosts), egressgw alone under valgrind --tool=callgrind, counted between
# callgrind_control -z and -d around N connections (after N/4 unmeasured ones), for each
# build given. Also prints the system calls per connection of the same builds (strace -c -f,
# without valgrind), as scenario 6 counts them.
#
# Usage: bench/s6cg.sh BUILD_DIR [BUILD_DIR...]   e.g. bench/s6cg.sh /tmp/before/build build
# Env:   S6CG_N (2000 connections), S6CG_RUNS (1 per build), BENCH_CONNS (50),
#        BENCH_UP_IP, BENCH_PX_IP, BENCH_CNN_IP (bench/lib.sh), S6CG_KEEP=DIR (keep profiles)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n 2,15p "$0" >&2; exit 2; }
ROOT=$PWD
CONNS=${BENCH_CONNS:-50}
WORKERS=1
SECS=10
N=${S6CG_N:-2000}
RUNS=${S6CG_RUNS:-1}
W=$(mktemp -d /tmp/egressgw-s6cg.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
. bench/lib.sh
# shellcheck source=bench/s6.sh
. bench/s6.sh
for t in valgrind callgrind_control h2load strace nginx; do
	command -v "$t" >/dev/null || die "$t is missing (scripts/deps.sh bench installs it)"
done
bench_certs
start_upstream

# cg_one BUILD: one run; prints instructions per connection.
cg_one() {
	local name=s6cg pid out tot
	BUILD=$1
	EG_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$W/cg.%p")
	start_egressgw "$name" "$W/store" 1 18870 18871
	EG_WRAP=()
	pid=${SYS_PID[$name]}
	for i in $(seq 600); do
		curl -sf -o /dev/null --cacert "$W/ca.crt" --resolve "$UP_NAME:18871:$PX_IP" \
			"https://$UP_NAME:18871/small" && break
		alive "$name"
		[ "$i" = 600 ] && die "$name: no answer under valgrind after 120 s"
		sleep 0.2
	done
	s6_h2load "$name" short $((N / 4)) >/dev/null
	callgrind_control -z "$pid" >/dev/null 2>&1
	out=$(s6_h2load "$name" short "$N")
	callgrind_control -d "$pid" >/dev/null 2>&1
	echo "$out" | grep -q "^requests: $N total, $N started, $N done, $N succeeded" ||
		die "$name: h2load did not complete $N connections: $(echo "$out" | grep -E '^(requests|status codes):')"
	stop_sys "$name"
	out=$W/cg.$pid.1
	tot=$(awk '/^summary:/ {print $2}' "$out")
	if [ -n "${S6CG_KEEP:-}" ]; then mkdir -p "$S6CG_KEEP"; cp "$out" "$S6CG_KEEP/callgrind.$(basename "$(dirname "$BUILD")").$pid"; fi
	rm -f "$W/cg.$pid".*
	awk -v t="$tot" -v n="$N" 'BEGIN {printf "%.0f", t / n}'
}

# sc_one BUILD: system calls per connection (scenario 6's s6_syscalls).
sc_one() {
	local name=s6sc
	BUILD=$1
	start_egressgw "$name" "$W/store" 1 18872 18873
	for _ in $(seq 100); do
		curl -sf -o /dev/null --cacert "$W/ca.crt" --resolve "$UP_NAME:18873:$PX_IP" \
			"https://$UP_NAME:18873/small" && break
		sleep 0.1
	done
	s6_h2load "$name" short $((N / 4)) >/dev/null
	S6_STRACE_N=$N
	s6_syscalls "$BUILD" "$name"
	stop_sys "$name"
	echo "${SYSC[$BUILD]} (${SYSC_TOP[$BUILD]})"
}

s6_yaml 18871 > "$W/store.yaml"
sed 's/18871/18873/' "$W/store.yaml" > "$W/store2.yaml"
for b in "$@"; do
	b=$(cd "$b" && pwd)
	"$b/egressctl" --store "$W/store" apply -f "$W/store.yaml" >/dev/null
	echo "$b: load $(cut -d' ' -f1 /proc/loadavg)"
	for _ in $(seq "$RUNS"); do
		echo "  user-space instructions per connection (callgrind, $N connections): $(cg_one "$b")"
	done
	rm -rf "$W/store"
	"$b/egressctl" --store "$W/store" apply -f "$W/store2.yaml" >/dev/null
	echo "  system calls per connection (strace -c -f, $N connections): $(sc_one "$b")"
	rm -rf "$W/store"
done
