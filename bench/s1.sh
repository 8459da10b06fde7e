# Scenario 1: plain HTTP in, mutual TLS out to a keep-alive upstream (nginx on 8443), a
# 100-byte and a 16 KiB response. Sourced by bench/run.sh.

s1_run() {
	local store="$W/s1-store" path sys k e h n ec hc nc rss table ratios=""
	make_store "$store" 18080 8443 0
	start_egressgw s1-egressgw "$store" "$WORKERS" 18000 18080
	start_haproxy s1-haproxy 18081 8443 "$WORKERS"
	start_nginx s1-nginx 18082 8443 "$WORKERS"
	for sys in egressgw haproxy nginx; do wait_ok "s1-$sys" /small; done
	for sys in egressgw haproxy nginx; do warm "s1-$sys" /small; done

	for path in /small /large; do
		for _ in $(seq "$ROUNDS"); do
			for sys in egressgw haproxy nginx; do measure "s1$path/$sys" "s1-$sys" "$path"; done
		done
	done

	table="| response | proxy | requests/s | p50 ms | p99 ms | CPU µs/request | of which system | upstream's CPU µs/request | errors |
|---|---|---|---|---|---|---|---|---|"
	for path in /small /large; do
		for sys in egressgw haproxy nginx; do
			k="s1$path/$sys"
			table+="
| ${path#/} | $sys | $(med_rps "$k") | $(med P50 "$k") | $(med P99 "$k") | $(med CPU "$k") | $(med SYSCPU "$k") | $(med UPCPU "$k") | $(echo "${ERR[$k]}" | sum) |"
		done
		e=$(med_rps "s1$path/egressgw"); h=$(med_rps "s1$path/haproxy"); n=$(med_rps "s1$path/nginx")
		ec=$(med CPU "s1$path/egressgw"); hc=$(med CPU "s1$path/haproxy"); nc=$(med CPU "s1$path/nginx")
		ratios+="- ${path#/} response: requests/s egressgw/HAProxy $(ratio "$e" "$h"), egressgw/nginx $(ratio "$e" "$n"); CPU per request egressgw/HAProxy $(ratio "$ec" "$hc"), egressgw/nginx $(ratio "$ec" "$nc"); user-space CPU per request (total minus system) egressgw/HAProxy $(awk -v a="$ec" -v b="$(med SYSCPU "s1$path/egressgw")" -v c="$hc" -v d="$(med SYSCPU "s1$path/haproxy")" 'BEGIN {if (c - d > 0) printf "%.2f", (a - b) / (c - d); else print "-"}')
"
	done
	rss=$(awk '/VmHWM/ {print $2 " kB"}' "/proc/${SYS_PID[s1-egressgw]}/status")
	stop_sys s1-egressgw s1-haproxy s1-nginx

	section 1 "## Scenario 1: plain HTTP in, mutual TLS out (keep-alive), $WORKERS worker(s)

The upstream (nginx, 1 worker, client certificate required) keeps connections open; the
responses are a 100-byte (small) and a 16 KiB (large) static file. \"Of which system\": the
part of the CPU time spent in the kernel (/proc utime and stime), mostly the TCP send and
receive work of the four socket calls each proxy makes per request, which on loopback
includes the receiving side's processing. \"Upstream's CPU\": the upstream nginx's CPU per
request while it served that proxy (it shares the two cores with wrk and the proxy, so what
a proxy makes it spend limits requests/s too).

$table

Ratios (same run):
${ratios}
egressgw peak RSS during the run: $rss."
}
