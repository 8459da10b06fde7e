# Scenario 5: scaling. (a) Scenario 1's small response with 1 and 2 workers for all three
# proxies. (b) egressgw with N routes: N ServiceEntries host-1..N.bench.local, each with
# its VirtualService and DestinationRule, requests to the last one (BENCH_ROUTES).
# Sourced by bench/run.sh.

s5_workers() {
	local sys w k table="" r1 r2
	make_store "$W/s5-store-1" 18480 8443 0
	make_store "$W/s5-store-2" 18580 8443 0
	start_egressgw s5-egressgw-1 "$W/s5-store-1" 1 18400 18480
	start_egressgw s5-egressgw-2 "$W/s5-store-2" 2 18500 18580
	start_haproxy s5-haproxy-1 18481 8443 1
	start_haproxy s5-haproxy-2 18581 8443 2
	start_nginx s5-nginx-1 18482 8443 1
	start_nginx s5-nginx-2 18582 8443 2
	for sys in egressgw haproxy nginx; do
		for w in 1 2; do wait_ok "s5-$sys-$w" /small; warm "s5-$sys-$w" /small; done
	done
	for _ in $(seq "$ROUNDS"); do
		for sys in egressgw haproxy nginx; do
			for w in 1 2; do measure "s5w/$sys/$w" "s5-$sys-$w" /small; done
		done
	done
	stop_sys s5-egressgw-1 s5-egressgw-2 s5-haproxy-1 s5-haproxy-2 s5-nginx-1 s5-nginx-2
	table="| proxy | requests/s, 1 worker | requests/s, 2 workers | 2 workers / 1 | CPU µs/request, 1 worker | CPU µs/request, 2 workers | p99 ms, 1 / 2 workers | errors |
|---|---|---|---|---|---|---|---|"
	for sys in egressgw haproxy nginx; do
		k="s5w/$sys"
		r1=$(med_rps "$k/1"); r2=$(med_rps "$k/2")
		table+="
| $sys | $r1 | $r2 | $(ratio "$r2" "$r1") | $(med CPU "$k/1") | $(med CPU "$k/2") | $(med P99 "$k/1") / $(med P99 "$k/2") | $(( $(echo "${ERR[$k/1]}" | sum) + $(echo "${ERR[$k/2]}" | sum) )) |"
	done
	S5_WORKERS=$table
}

s5_routes() {
	local n i=0 t0 t1 name table first last
	local -A ready rss applied
	for n in $ROUTES; do
		name="s5-routes-$n"
		eg_yaml $((18600 + i)) 8443 "$n" > "$W/$name.yaml"
		t0=$(date +%s%N)
		"$BUILD/egressctl" --store "$W/$name-store" apply -f "$W/$name.yaml" >/dev/null
		t1=$(date +%s%N)
		applied[$n]=$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.2f", d / 1e9}')
		t0=$(date +%s%N)
		start_egressgw "$name" "$W/$name-store" "$WORKERS" $((18700 + i)) $((18600 + i))
		wait_ok "$name" /small "host-$n.bench.local"
		t1=$(date +%s%N)
		ready[$n]=$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.2f", d / 1e9}')
		rss[$n]=$(rss_kb "${SYS_PID[$name]}")
		warm "$name" /small "host-$n.bench.local"
		i=$((i + 1))
	done
	for _ in $(seq "$ROUNDS"); do
		for n in $ROUTES; do measure "s5r/$n" "s5-routes-$n" /small "host-$n.bench.local"; done
	done
	table="| routes | requests/s | p50 ms | p99 ms | CPU µs/request | egressctl apply s | start to first 200 s | RSS after start | errors |
|---|---|---|---|---|---|---|---|---|"
	for n in $ROUTES; do
		stop_sys "s5-routes-$n"
		table+="
| $n | $(med_rps "s5r/$n") | $(med P50 "s5r/$n") | $(med P99 "s5r/$n") | $(med CPU "s5r/$n") | ${applied[$n]} | ${ready[$n]} | $((rss[$n] / 1024)) MiB | $(echo "${ERR[s5r/$n]}" | sum) |"
	done
	first=${ROUTES%% *}; last=${ROUTES##* }
	S5_ROUTES="$table

Throughput with $last routes / with $first: **$(ratio "$(med_rps "s5r/$last")" "$(med_rps "s5r/$first")")**
(CPU per request: $(ratio "$(med CPU "s5r/$last")" "$(med CPU "s5r/$first")"))."
}

s5_run() {
	s5_workers
	s5_routes
	section 5 "## Scenario 5: scaling

### Workers

Scenario 1's job and small response with 1 and 2 workers (egressgw \`--workers\`, HAProxy
\`nbthread\`, nginx \`worker_processes\` with \`reuseport\`). On a 2-core machine the load
generator and the upstream nginx (1 worker) share the cores with the proxy, so 2 workers
show contention as much as scaling.

$S5_WORKERS

### Routes (egressgw, $WORKERS worker(s))

N ServiceEntries host-1..N.bench.local, each with its VirtualService (bound to the plain HTTP
Gateway) and its MUTUAL DestinationRule; wrk sends \`Host: host-N.bench.local\`, the last
one. \"egressctl apply\" is the time to write the N×3 resources to the store; \"start to
first 200\" is from egressgw's start to the first 200 for host-N (polled every 0.1 s).

$S5_ROUTES"
}
