# Scenario 2: handshake-bound. The upstream closes after every response (keepalive_requests
# 1), so every request costs the proxy a new TCP connection and a mutual-TLS handshake; what
# the proxy saves is TLS session resumption. Each proxy has its own upstream port (8444
# egressgw, 8445 HAProxy, 8446 nginx) whose log records, per connection, whether the
# session was resumed and the protocol: the same measure for all three. egressgw's own
# counters (egressgw_upstream_tls_handshake_total{resumed=...}) are reported beside it.
# Sourced by bench/run.sh.

# s2_log_stats FILE FROM_LINE: "resumed% total protocol" over the lines after FROM_LINE.
s2_log_stats() {
	tail -n +"$(($2 + 1))" "$1" | awk '
		{n++; if ($1 == "r") r++; p[$2]++}
		END {best = "-"; for (k in p) if (best == "-" || p[k] > p[best]) best = k
		     if (n) printf "%.1f %d %s\n", 100 * r / n, n, best; else print "- 0 -"}'
}

s2_run() {
	local store="$W/s2-store" sys k table f0 r0 f1 r1 eg_pct
	local -A upport=([egressgw]=8444 [haproxy]=8445 [nginx]=8446) line0 lstat
	make_store "$store" 18180 8444 0
	start_egressgw s2-egressgw "$store" "$WORKERS" 18100 18180
	start_haproxy s2-haproxy 18181 8445 "$WORKERS"
	start_nginx s2-nginx 18182 8446 "$WORKERS"
	for sys in egressgw haproxy nginx; do wait_ok "s2-$sys" /small; done
	# Warm-up: the first handshakes are full ones; resumption is counted after it.
	for sys in egressgw haproxy nginx; do warm "s2-$sys" /small; done
	f0=$(eg_stat s2-egressgw 'upstream_tls_handshake_total{resumed="false"}')
	r0=$(eg_stat s2-egressgw 'upstream_tls_handshake_total{resumed="true"}')
	for sys in egressgw haproxy nginx; do
		line0[$sys]=$(wc -l < "$W/up/hs-${upport[$sys]}.log")
	done

	for _ in $(seq "$ROUNDS"); do
		for sys in egressgw haproxy nginx; do measure "s2/$sys" "s2-$sys" /small; done
	done

	f1=$(eg_stat s2-egressgw 'upstream_tls_handshake_total{resumed="false"}')
	r1=$(eg_stat s2-egressgw 'upstream_tls_handshake_total{resumed="true"}')
	eg_pct=$(awk -v f=$((f1 - f0)) -v r=$((r1 - r0)) \
		'BEGIN {if (f + r) printf "%.1f%% of %d", 100 * r / (f + r), f + r; else print "-"}')
	for sys in egressgw haproxy nginx; do
		lstat[$sys]=$(s2_log_stats "$W/up/hs-${upport[$sys]}.log" "${line0[$sys]}")
	done
	stop_sys s2-egressgw s2-haproxy s2-nginx

	table="| proxy | requests/s | p50 ms | p99 ms | CPU µs/request | upstream CPU µs/request | upstream connections per request | TLS | resumed (upstream's log) | resumed (egressgw's counters) | errors |
|---|---|---|---|---|---|---|---|---|---|---|"
	for sys in egressgw haproxy nginx; do
		k="s2/$sys"
		read -r pct n proto <<< "${lstat[$sys]}"
		table+="
| $sys | $(med_rps "$k") | $(med P50 "$k") | $(med P99 "$k") | $(med CPU "$k") | $(med UPCPU "$k") | $(ratio "$n" "$(echo "${REQS[$k]}" | sum)") | $proto | $pct% of $n | $( [ "$sys" = egressgw ] && echo "$eg_pct" || echo "n/a") | $(echo "${ERR[$k]}" | sum) |"
	done

	section 2 "## Scenario 2: handshake-bound (the upstream closes after every response), $WORKERS worker(s)

The upstream nginx answers each request with \`Connection: close\` (\`keepalive_requests 1\`),
so every request makes the proxy open a new TCP connection and run a mutual-TLS handshake
(RSA-2048 server and client certificates). Small (100-byte) responses. TLS session reuse is
on for every proxy (egressgw: per-worker session cache; HAProxy: its default per-server
session reuse; nginx: \`proxy_ssl_session_reuse on\`). \"Resumed\" counts, after a
${BENCH_WARMUP:-2} s warm-up, the share of upstream handshakes that resumed a session, as the
upstream logged them (\`\$ssl_session_reused\`) and, for egressgw, from its
\`egressgw_upstream_tls_handshake_total{resumed=\"true|false\"}\` counters. \"Upstream CPU\" is the
upstream nginx's CPU per request: the server's side of the handshakes the proxy caused.

$table"
}
