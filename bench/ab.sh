#!/usr/bin/env bash
# A/B of two egressgw builds on scenario 1's job (plain HTTP in, mutual TLS out to the
# keep-alive upstream nginx), to decide whether a change to the request path pays before
# running the whole of make bench. The two builds run interleaved, one at a time, against
# the same upstream, certificates and store; each round starts each build afresh, warms it,
# then measures one wrk run. Prints every run and the medians: requests/s, p99, and CPU
# µs per request split into user and system (/proc). Run-to-run noise on this machine is
# ±15%: use 5 rounds or more, and trust only differences the medians and most runs agree on.
# Counts that do not depend on the machine's load, per request of the measured wrk run:
# instructions (user, kernel) and system calls of the egressgw process, by `perf stat -p`;
# where perf has no hardware counters (a VM without a PMU) only the system calls, and
# AB_CALLGRIND gives user-space instructions instead.
#
# Usage: bench/ab.sh BUILD_DIR_A BUILD_DIR_B [PATH]
#   BUILD_DIR_*: directories holding an egressgw and egressctl (e.g. build/ of two git
#   worktrees); PATH: /small (default) or /large.
# Env:   AB_ROUNDS (5), BENCH_SECONDS (5), BENCH_CONNS (50), BENCH_WARMUP (2)
#        AB_PERF=0: no perf stat. AB_CALLGRIND=N: after the rounds, N more per build under
#        valgrind's callgrind: user-space instructions per request over AB_CG_REQUESTS
#        (10000) requests of h2load (a fixed count, all complete), not counting upstream TLS
#        handshakes (their number varies; printed apart). AB_KEEP=DIR keeps the callgrind
#        profiles there (callgrind_annotate; compare functions per request).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
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

# ---- perf stat: counts per request that the machine's load does not change ----
# Hardware counters are probed once: in a VM without a PMU, perf answers "<not supported>"
# for instructions, but tracepoints (system calls) still count.
declare -A INSU INSK SYSC
PERF_EV=()
if [ "${AB_PERF:-1}" != 0 ] && command -v perf >/dev/null; then
	probe=$(perf stat -x, -e instructions:u,instructions:k,raw_syscalls:sys_enter -- true 2>&1 >/dev/null || true)
	if echo "$probe" | grep -q '^[0-9][0-9]*,,instructions:u'; then
		PERF_EV=(instructions:u instructions:k)
	else
		echo "ab: perf counts no instructions here (no hardware counters: \"$(echo "$probe" |
			awk -F, '$3 ~ /^instructions/ {print $1; exit}')\"); AB_CALLGRIND=N counts user-space instructions" >&2
	fi
	echo "$probe" | grep -q '^[0-9][0-9]*,,raw_syscalls:sys_enter' && PERF_EV+=(raw_syscalls:sys_enter)
	[ ${#PERF_EV[@]} -gt 0 ] || echo "ab: perf stat counts nothing here: $probe" >&2
fi
has_ev() { local e; for e in "${PERF_EV[@]}"; do [ "$e" = "$1" ] && return 0; done; return 1; }
# perf_measure KEY NAME PATH: measure() with perf stat attached to the instance's process
# (all its threads) for the wrk run; per request into INSU, INSK, SYSC under KEY.
perf_measure() {
	local key=$1 name=$2 out=$W/perf.$1 pp rq v ev
	if [ ${#PERF_EV[@]} -eq 0 ]; then measure "$@"; return; fi
	perf stat -x, -o "$out" -e "$(IFS=,; echo "${PERF_EV[*]}")" -p "${SYS_PID[$name]}" & pp=$!
	sleep 0.3                       # attached before the first request
	measure "$@"
	kill -INT "$pp" 2>/dev/null || true; wait "$pp" || true
	rq=$(last "${REQS[$key]}")
	for ev in instructions:u instructions:k raw_syscalls:sys_enter; do
		v=$(awk -F, -v e="$ev" '$3 == e {print $1}' "$out")
		case $v in ''|*[!0-9]*) v=-;; *) v=$(awk -v c="$v" -v r="$rq" 'BEGIN {printf (c / r >= 100 ? "%.0f" : "%.2f"), c / r}');; esac
		case $ev in
		instructions:u) INSU[$key]+="$v ";;
		instructions:k) INSK[$key]+="$v ";;
		*) SYSC[$key]+="$v ";;
		esac
	done
}
# Median of numbers among the values ("-": none counted).
medn() { local -n arr=$1; echo "${arr[$2]:-}" | tr ' ' '\n' | grep -E '^[0-9.]+$' | median; }

bench_certs
start_upstream
BUILD=$A make_store "$W/store" 18080 8443 0
printf '%-3s %-6s %10s %8s %8s %8s %8s %10s %10s %8s\n' build round 'req/s' 'p99 ms' 'CPU µs' 'user' 'system' \
	'insn/rq u' 'insn/rq k' 'sysc/rq'
for r in $(seq "$ROUNDS"); do
	for side in a b; do
		if [ $side = a ]; then BUILD=$A; else BUILD=$B; fi
		start_egressgw "ab-$side" "$W/store" 1 18000 18080
		wait_ok "ab-$side" "$URLPATH"
		warm "ab-$side" "$URLPATH"
		perf_measure "$side" "ab-$side" "$URLPATH"
		stop_sys "ab-$side"
		rps=$(last "${RPS[$side]}"); p99=$(last "${P99[$side]}")
		cpu=$(last "${CPU[$side]}"); sys=$(last "${SYSCPU[$side]}")
		printf '%-3s %-6s %10s %8s %8s %8s %8s %10s %10s %8s\n' "$side" "$r" "$rps" "$p99" "$cpu" \
			"$(awk -v a="$cpu" -v b="$sys" 'BEGIN {printf "%.1f", a - b}')" "$sys" \
			"$(last "${INSU[$side]:--}")" "$(last "${INSK[$side]:--}")" "$(last "${SYSC[$side]:--}")"
	done
done

# ---- callgrind: user-space instructions per request, exactly, whatever the load ----
declare -A CGI CGH
# cg_run KEY: one run of the current BUILD under callgrind; appends instructions per request
# without and with the upstream TLS handshakes to CGI and CGH.
cg_run() {
	local key=$1 name=cg-$1 pid out n tot hs i
	n=${AB_CG_REQUESTS:-10000}
	EG_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$W/cg.$key.%p")
	start_egressgw "$name" "$W/store" 1 18000 18080
	EG_WRAP=()
	pid=${SYS_PID[$name]}
	for i in $(seq 600); do
		curl -sf -o /dev/null "http://$PX_IP:18080$URLPATH" && break
		alive "$name"
		[ "$i" = 600 ] && die "$name: no answer under valgrind after 120 s"
		sleep 0.2
	done
	# The warm run brings the upstream pool to the size this load keeps.
	h2load --h1 -t1 -c"$CONNS" -n "$n" "http://$PX_IP:18080$URLPATH" >/dev/null
	callgrind_control -z "$pid" >/dev/null 2>&1
	out=$(h2load --h1 -t1 -c"$CONNS" -n "$n" "http://$PX_IP:18080$URLPATH" 2>&1)
	callgrind_control -d "$pid" >/dev/null 2>&1
	echo "$out" | grep -q "^requests: $n total, $n started, $n done, $n succeeded" ||
		die "$name: h2load did not complete $n requests: $(echo "$out" | grep -E '^(requests|status codes):')"
	stop_sys "$name"
	out=$W/cg.$key.$pid.1         # the dump since the zeroing
	tot=$(awk '/^summary:/ {print $2}' "$out")
	hs=$(callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$out" 2>/dev/null |
		awk '/[\/ ]tls\.c:tls_handshake / {gsub(/,/, "", $1); print $1; exit}')
	CGI[$key]+="$(awk -v t="$tot" -v h="${hs:-0}" -v n="$n" 'BEGIN {printf "%.0f", (t - h) / n}') "
	CGH[$key]+="$(awk -v t="$tot" -v n="$n" 'BEGIN {printf "%.0f", t / n}') "
	if [ -n "${AB_KEEP:-}" ]; then mkdir -p "$AB_KEEP"; cp "$out" "$AB_KEEP/callgrind.$key.$(last "${CGI[$key]}")"; fi
	rm -f "$W/cg.$key.$pid".*
}
if [ "${AB_CALLGRIND:-0}" -gt 0 ]; then
	for t in valgrind callgrind_control callgrind_annotate h2load; do
		command -v "$t" >/dev/null || die "$t is missing (scripts/deps.sh bench installs it)"
	done
	echo
	printf '%-3s %-6s %14s %14s\n' build round 'Ir/rq' 'with handshakes'
	for r in $(seq "$AB_CALLGRIND"); do
		for side in a b; do
			if [ $side = a ]; then BUILD=$A; else BUILD=$B; fi
			cg_run "$side"
			printf '%-3s %-6s %14s %14s\n' "$side" "cg$r" "$(last "${CGI[$side]}")" "$(last "${CGH[$side]}")"
		done
	done
fi

echo
echo "medians over $ROUNDS rounds ($URLPATH, wrk -t1 -c$CONNS -d${SECS}s):"
for side in a b; do
	dir=$A; [ $side = b ] && dir=$B
	printf '  %s  req/s %s  p99 %s ms  CPU %s µs/request (system %s)  %s\n' "$side" \
		"$(med_rps "$side")" "$(med P99 "$side")" "$(med CPU "$side")" "$(med SYSCPU "$side")" "$dir"
	printf '     instructions/request user %s kernel %s, system calls/request %s (perf stat)\n' \
		"$(medn INSU "$side")" "$(medn INSK "$side")" "$(medn SYSC "$side")"
	[ "${AB_CALLGRIND:-0}" -gt 0 ] &&
		printf '     user-space instructions/request %s, %s with upstream TLS handshakes (callgrind, %s runs of %s requests)\n' \
			"$(medn CGI "$side")" "$(medn CGH "$side")" "$AB_CALLGRIND" "${AB_CG_REQUESTS:-10000}"
done
echo "  b/a CPU per request: $(ratio "$(med CPU b)" "$(med CPU a)"), requests/s: $(ratio "$(med RPS b)" "$(med RPS a)")"
has_ev instructions:u &&
	echo "  b/a instructions per request: user $(ratio "$(medn INSU b)" "$(medn INSU a)"), kernel $(ratio "$(medn INSK b)" "$(medn INSK a)")"
has_ev raw_syscalls:sys_enter &&
	echo "  b/a system calls per request: $(ratio "$(medn SYSC b)" "$(medn SYSC a)")"
[ "${AB_CALLGRIND:-0}" -gt 0 ] &&
	echo "  b/a user-space instructions per request (callgrind, without handshakes): $(awk -v a="$(medn CGI a)" -v b="$(medn CGI b)" 'BEGIN {printf "%.3f", b / a}')"
[ ${#ANOMALIES[@]} -eq 0 ] || printf 'anomaly: %s\n' "${ANOMALIES[@]}"
