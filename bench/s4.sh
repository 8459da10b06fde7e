# Scenario 4: memory. egressgw's RSS idle with the walkthrough's configuration, then, for
# all three proxies, the RSS with BENCH_IDLE_CONNS idle downstream keep-alive connections
# (each has served one request) and the bytes each connection costs. Sourced by
# bench/run.sh.

# s4_hold NAME: opens the connections to NAME and sets H_IDLE, H_HELD, H_RELEASED (RSS in
# kB before, while held, after the client left), H_COUNT (connections held) and H_ACTIVE
# (egressgw's downstream_cx_active while held; n/a for the others). Runs in this shell, not
# a subshell, so that die stops the run.
s4_hold() {
	local name=$1 pid=${SYS_PID[$1]} hp
	H_ACTIVE=n/a
	sleep 1
	H_IDLE=$(rss_kb "$pid")
	/usr/bin/python3 "$ROOT/bench/hold_conns.py" "$PX_IP" "${SYS_PORT[$name]}" "$IDLE_CONNS" /small \
		> "$W/$name.hold" 2> "$W/$name.hold.err" & PIDS+=($!)
	hp=$!
	while kill -0 "$hp" 2>/dev/null && ! grep -q '^held' "$W/$name.hold"; do sleep 0.2; done
	grep -q '^held' "$W/$name.hold" ||
		die "$name: the client could not open $IDLE_CONNS connections: $(cat "$W/$name.hold.err")"
	sleep 1
	H_HELD=$(rss_kb "$pid")
	H_COUNT=$(awk '{print $2}' "$W/$name.hold")
	if [ "${SYS_KIND[$name]}" = egressgw ]; then H_ACTIVE=$(eg_stat "$name" downstream_cx_active); fi
	alive "$name"
	kill "$hp"; wait "$hp" 2>/dev/null || true
	sleep 2
	H_RELEASED=$(rss_kb "$pid")
}

s4_run() {
	local walk="$W/s4-walk-store" store="$W/s4-store" f sys rss_walk table
	local id="$W/s4-identity"
	"$BUILD/egressctl" ca init --dir "$W/mesh-ca" >/dev/null
	"$BUILD/egressctl" ca issue --dir "$W/mesh-ca" --namespace istio-system \
		--service-account istio-egressgateway-service-account --out "$id" >/dev/null
	# The walkthrough's steps 01-03, as its kubectl apply commands run them.
	for f in "$ROOT"/tests/data/walkthrough/0[123]-*.yaml; do
		"$BUILD/egressctl" --store "$walk" apply -f "$f" >/dev/null
		"$BUILD/egressctl" --store "$store" apply -f "$f" >/dev/null
	done
	# 1. Idle with exactly the walkthrough's configuration: the ISTIO_MUTUAL Gateway on port 80.
	start_egressgw s4-walk "$walk" "$WORKERS" 18300 80 --identity "$id"
	for _ in $(seq 100); do
		curl -sf -o /dev/null "http://$PX_IP:18300/ready" &&
			timeout 1 bash -c "exec 3<>/dev/tcp/$PX_IP/80" 2>/dev/null && break
		sleep 0.1
	done
	timeout 1 bash -c "exec 3<>/dev/tcp/$PX_IP/80" 2>/dev/null ||
		die "s4-walk: the walkthrough's Gateway does not listen on $PX_IP:80: $(tail -5 "$W/s4-walk.err")"
	sleep 1
	rss_walk=$(rss_kb "${SYS_PID[s4-walk]}")
	stop_sys s4-walk

	# 2. The walkthrough plus a plain HTTP Gateway server (port 18380) to hold connections on;
	#    HAProxy and nginx sized to accept them (maxconn, worker_connections).
	eg_yaml 18380 8443 0 > "$store-bench.yaml"
	"$BUILD/egressctl" --store "$store" apply -f "$store-bench.yaml" >/dev/null
	# Sized like HAProxy's maxconn below (egressgw's default cap is half the descriptor
	# limit, which leaves room for as many upstream connections).
	start_egressgw s4-egressgw "$store" "$WORKERS" 18301 18380 --identity "$id" \
		--max-connections $((IDLE_CONNS + 100))
	start_haproxy s4-haproxy 18381 8443 "$WORKERS" $((IDLE_CONNS + 100))
	start_nginx s4-nginx 18382 8443 "$WORKERS" $((IDLE_CONNS + 200))
	for sys in egressgw haproxy nginx; do wait_ok "s4-$sys" /small; done
	table="| proxy | RSS idle | RSS with the connections | connections held | bytes per connection | RSS after the clients left |
|---|---|---|---|---|---|"
	for sys in egressgw haproxy nginx; do
		s4_hold "s4-$sys"
		[ "$H_ACTIVE" = n/a ] || [ "$H_ACTIVE" = "$H_COUNT" ] ||
			ANOMALIES+=("s4-egressgw: downstream_cx_active was $H_ACTIVE with $H_COUNT connections held")
		table+="
| $sys | $((H_IDLE / 1024)) MiB ($H_IDLE kB) | $((H_HELD / 1024)) MiB ($H_HELD kB) | $H_COUNT | $(( (H_HELD - H_IDLE) * 1024 / H_COUNT )) | $((H_RELEASED / 1024)) MiB ($H_RELEASED kB) |"
	done
	stop_sys s4-egressgw s4-haproxy s4-nginx

	section 4 "## Scenario 4: memory, $WORKERS worker(s)

egressgw idle with the walkthrough's configuration (tests/data/walkthrough/01-03 applied, the
ISTIO_MUTUAL Gateway on port 80, identity from \`egressctl ca issue\`), 1 s after /ready: **RSS
$((rss_walk / 1024)) MiB ($rss_walk kB)**.

Then each proxy with scenario 1's job (egressgw: the same walkthrough configuration plus a
plain HTTP Gateway server and its route), after one request: RSS idle, then with
$IDLE_CONNS downstream keep-alive connections each of which has served one small response
and now waits (\`bench/hold_conns.py\`), and 2 s after the client closed them (reset). Bytes
per connection = (RSS with − RSS idle) / connections. HAProxy runs with \`maxconn
$((IDLE_CONNS + 100))\` (and \`no strict-limits\`: its 2-descriptors-per-connection estimate
exceeds this machine's hard limit of $(ulimit -Hn) descriptors), nginx with
\`worker_connections $((IDLE_CONNS + 200))\`, which it allocates up front.

$table"
}
