# Scenario 6: TLS passthrough by SNI. The application's own TLS goes through the proxy to
# the upstream (nginx on $UP_PT_PORT, its certificate for $UP_NAME) without being
# terminated: each proxy reads the ClientHello's server name, picks the backend by it and
# relays bytes. The same job for the three:
#   egressgw  a Gateway server protocol TLS, tls.mode PASSTHROUGH, and a VirtualService
#             tls: route on sniHosts (Istio's "Egress Gateways" HTTPS form);
#   HAProxy   mode tcp, tcp-request inspect-delay + req.ssl_hello_type, use_backend on
#             req.ssl_sni;
#   nginx     stream { ssl_preread on; map $ssl_preread_server_name -> proxy_pass }
#             (Debian's libnginx-mod-stream).
# No access logs. The load is h2load (HTTP/1.1 over TLS, SNI $UP_NAME, --connect-to the
# proxy), interleaved rounds:
#   short  one request per TLS connection (Connection: close): every request is a new TCP
#          connection and a full handshake relayed through the proxy; CPU µs per connection;
#   bulk   keep-alive connections fetching a 1 MiB file: CPU µs per MB relayed.
# Sourced by bench/run.sh.

S6_BULK_CONNS=${BENCH_BULK_CONNS:-10}
# A fixed job per run (h2load's -D mode does not end when the server closes connections):
# short connections, and 1 MiB responses.
S6_SHORT_N=${BENCH_PT_SHORT:-4000}
S6_BULK_N=${BENCH_PT_BULK:-1000}
S6_STREAM_MOD=/usr/lib/nginx/modules/ngx_stream_module.so
# The mesh path's instances (bench/s6chain.sh): S6_VIA[NAME], the address h2load connects
# to (port 443, in the chains' namespace) instead of $PX_IP:port; S6_ALSO[NAME], the
# instance whose CPU is added to NAME's (the sidecar's gateway).
declare -A S6_VIA S6_ALSO
# shellcheck source=bench/s6chain.sh
. bench/s6chain.sh

# egressgw's store: the passthrough Gateway, the upstream's ServiceEntry and the tls: route.
s6_yaml() { # gwport
	cat <<YAML
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: pt, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: $1, name: tls, protocol: TLS}
    hosts: [$UP_NAME]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: pt-upstream, namespace: istio-system}
spec:
  hosts: [$UP_NAME]
  ports: [{number: $UP_PT_PORT, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: pt, namespace: istio-system}
spec:
  hosts: [$UP_NAME]
  gateways: [pt]
  tls:
  - match:
    - port: $1
      sniHosts: [$UP_NAME]
    route:
    - destination: {host: $UP_NAME, port: {number: $UP_PT_PORT}}
YAML
}

# s6_haproxy_cfg NAME BIND BACKEND: HAProxy's configuration, mode tcp, SNI $UP_NAME from
# BIND to BACKEND (the gateway alone, and each hop of the mesh path, s6chain.sh).
s6_haproxy_cfg() {
	cat > "$W/$1.cfg" <<HAP
global
  nbthread $WORKERS
  maxconn 4000
defaults
  mode tcp
  timeout connect 10s
  timeout client 60s
  timeout server 60s
frontend fe
  bind $2
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend up if { req.ssl_sni -i $UP_NAME }
backend up
  server s1 $3
HAP
}

s6_haproxy() { # name port
	port_free "$PX_IP" "$2" || die "$PX_IP:$2 is in use"
	s6_haproxy_cfg "$1" "$PX_IP:$2" "$UP_IP:$UP_PT_PORT"
	haproxy -f "$W/$1.cfg" -db 2>"$W/$1.err" & PIDS+=($!)
	SYS_PID[$1]=$!; SYS_PORT[$1]=$2; SYS_KIND[$1]=haproxy
}

s6_nginx() { # name port
	local master=off rp=""
	port_free "$PX_IP" "$2" || die "$PX_IP:$2 is in use"
	[ "$WORKERS" -gt 1 ] && { master=on; rp=" reuseport"; }
	mkdir -p "$W/$1"
	cat > "$W/$1/nginx.conf" <<NGX
load_module $S6_STREAM_MOD;
$( [ "$(id -u)" = 0 ] && echo "user root;") worker_processes $WORKERS; daemon off; master_process $master;
pid $W/$1/pid; error_log $W/$1/error.log; worker_rlimit_nofile $(ulimit -Hn);
events { worker_connections 4096; }
stream {
  # No default: a name not listed has no backend and its connection is closed.
  map \$ssl_preread_server_name \$backend { $UP_NAME $UP_IP:$UP_PT_PORT; }
  server { listen $PX_IP:$2$rp; ssl_preread on; proxy_pass \$backend; }
}
NGX
	nginx -p "$W/$1" -c "$W/$1/nginx.conf" 2>"$W/$1.err" & PIDS+=($!)
	SYS_PID[$1]=$!; SYS_PORT[$1]=$2; SYS_KIND[$1]=nginx
}

# s6_wait NAME: polls until a TLS request through the instance, verified against the bench
# CA for $UP_NAME (the application's own check, end to end), answers 200 (10 s at most).
s6_wait() {
	local port=${SYS_PORT[$1]}
	for _ in $(seq 100); do
		curl -sf -o /dev/null --cacert "$W/ca.crt" --resolve "$UP_NAME:$port:$PX_IP" \
			"https://$UP_NAME:$port/small" && return 0
		kill -0 "${SYS_PID[$1]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: $1 does not relay TLS for $UP_NAME to the upstream:" >&2
	curl -sS -o /dev/null --cacert "$W/ca.crt" --resolve "$UP_NAME:$port:$PX_IP" \
		"https://$UP_NAME:$port/small" >&2 || true
	tail -n 20 "$W/$1.err" >&2 2>/dev/null || true
	exit 1
}

# s6_h2load NAME MODE N: one h2load run of N requests through the instance; prints its
# output.
s6_h2load() {
	local conns=$CONNS hdr=() path=/small
	[ "$2" = bulk ] && { conns=$S6_BULK_CONNS; path=/bulk; }
	[ "$2" = short ] && hdr=(-H 'Connection: close')
	if [ -n "${S6_VIA[$1]:-}" ]; then
		s6c_ns h2load --h1 -n "$3" -c "$conns" "${hdr[@]}" --connect-to="${S6_VIA[$1]}:443" \
			"https://$UP_NAME$path" 2>&1
		return
	fi
	h2load --h1 -n "$3" -c "$conns" "${hdr[@]}" --connect-to="$PX_IP:${SYS_PORT[$1]}" \
		"https://$UP_NAME$path" 2>&1
}

# s6_ticks NAME: CPU clock ticks of the instance, and of S6_ALSO[NAME]'s.
s6_ticks() {
	local t
	t=$(cpu_ticks "${SYS_PID[$1]}")
	[ -n "${S6_ALSO[$1]:-}" ] && t=$((t + $(cpu_ticks "${SYS_PID[${S6_ALSO[$1]}]}")))
	echo "$t"
}

# s6_measure KEY NAME MODE: appends to the arrays under KEY the rate (connections/s for
# short, MB/s for bulk), the proxy's CPU µs per connection or per MB, and the errors.
s6_measure() {
	local key=$1 name=$2 mode=$3 out t0 t1 ok bytes hz n e secs reqs=$S6_SHORT_N
	[ "$mode" = bulk ] && reqs=$S6_BULK_N
	alive "$name"
	hz=$(getconf CLK_TCK)
	t0=$(s6_ticks "$name")
	out=$(s6_h2load "$name" "$mode" "$reqs") || { alive "$name"; die "$name: h2load failed: $out"; }
	t1=$(s6_ticks "$name")
	secs=$(echo "$out" | awk '/^finished in/ {v = $3; sub(/,$/, "", v); u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		if (u == "ms") v /= 1000; else if (u == "us") v /= 1e6; print v}')
	ok=$(echo "$out" | awk '/^requests:/ {print $8}')
	bytes=$(echo "$out" | sed -n 's/^traffic:.* (\([0-9]*\)) data.*/\1/p')
	[ -n "$ok" ] && [ "$ok" -gt 0 ] || { echo "$out" >&2; die "$name: h2load completed no request"; }
	# short: a connection per request; bulk: the bytes h2load read (TLS payload).
	if [ "$mode" = short ]; then n=$ok; else n=$(awk -v b="$bytes" 'BEGIN {print b / 1e6}'); fi
	RPS[$key]+="$(awk -v n="$n" -v s="$secs" 'BEGIN {printf "%.0f", n / s}') "
	CPU[$key]+="$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}') "
	e=$(echo "$out" | awk '/^requests:/ {print $10 + $12 + $14}')
	ERR[$key]+="$e "
	[ "$e" = 0 ] || ANOMALIES+=("$key ($name): $e failed/errored/timed-out requests in an h2load run of $reqs")
}

# s6_syscalls KEY NAME: the system calls the instance (and S6_ALSO[NAME]) makes per short
# connection, counted by `strace -c -f` attached to its processes (every thread) for
# S6_STRACE_N connections.
# The count does not depend on the machine's load, unlike CPU time; strace slows the proxy
# down, which changes no count. Appends the calls per connection to SYSC[KEY] and keeps
# the instance's five most frequent calls (per connection) in SYSC_TOP[KEY].
S6_STRACE_N=${BENCH_PT_STRACE:-1000}
declare -A SYSC SYSC_TOP
s6_syscalls() {
	local key=$1 name=$2 p args=() sp out="$W/$2.strace"
	alive "$name"
	for p in $(sys_pids "${SYS_PID[$name]}"); do args+=(-p "$p"); done
	if [ -n "${S6_ALSO[$name]:-}" ]; then
		for p in $(sys_pids "${SYS_PID[${S6_ALSO[$name]}]}"); do args+=(-p "$p"); done
	fi
	strace -c -f -o "$out" "${args[@]}" 2>"$W/$name.strace.err" & sp=$!
	# Attached once strace has said so for the first process (5 s at most).
	for _ in $(seq 50); do grep -q attached "$W/$name.strace.err" 2>/dev/null && break; sleep 0.1; done
	s6_h2load "$name" short "$S6_STRACE_N" >/dev/null
	kill -INT "$sp"; wait "$sp" || true
	SYSC[$key]+="$(awk -v n="$S6_STRACE_N" '$NF == "total" {printf "%.1f", $4 / n}' "$out") "
	SYSC_TOP[$key]=$(awk -v n="$S6_STRACE_N" '$1 ~ /^[0-9.]+$/ && $NF != "total" {
		printf "%s %.2f\n", $NF, $4 / n}' "$out" | sort -k2 -nr | head -5 | awk '{printf "%s%s %s", s, $1, $2; s = ", "}')
}

# s6_table PREFIX WHAT NOTE: the table of the measurements under PREFIX/MODE/SYS (S6_TABLE)
# and the ratios of egressgw's CPU to the others' (S6_RATIOS).
s6_table() {
	local mode sys k unit rate e h n
	S6_TABLE="| load | $2 | rate | CPU µs per unit$3 | errors |
|---|---|---|---|---|"
	S6_RATIOS=""
	for mode in short bulk; do
		unit="connection"; rate="connections/s"
		[ "$mode" = bulk ] && { unit="MB"; rate="MB/s"; }
		for sys in egressgw haproxy nginx; do
			k="$1/$mode/$sys"
			S6_TABLE+="
| $mode | $sys | $(med RPS "$k") $rate | $(med CPU "$k") per $unit | $(echo "${ERR[$k]}" | sum) |"
		done
		e=$(med CPU "$1/$mode/egressgw"); h=$(med CPU "$1/$mode/haproxy"); n=$(med CPU "$1/$mode/nginx")
		S6_RATIOS+="- $mode: CPU per $unit egressgw/HAProxy $(ratio "$e" "$h"), egressgw/nginx $(ratio "$e" "$n")
"
	done
}

s6_run() {
	local store="$W/s6-store" sys mode table ratios ctable cratios sc0 gw0
	[ -f "$S6_STREAM_MOD" ] || die "$S6_STREAM_MOD is missing (scripts/deps.sh bench installs libnginx-mod-stream)"
	s6_yaml 18880 > "$store.yaml"
	"$BUILD/egressctl" --store "$store" apply -f "$store.yaml" >/dev/null
	start_egressgw s6-egressgw "$store" "$WORKERS" 18800 18880
	s6_haproxy s6-haproxy 18881
	s6_nginx s6-nginx 18882
	for sys in egressgw haproxy nginx; do s6_wait "s6-$sys"; done
	for sys in egressgw haproxy nginx; do
		s6_h2load "s6-$sys" short $((S6_SHORT_N / 4)) >/dev/null
		s6_h2load "s6-$sys" bulk $((S6_BULK_N / 4)) >/dev/null
	done

	for mode in short bulk; do
		for _ in $(seq "$ROUNDS"); do
			for sys in egressgw haproxy nginx; do s6_measure "s6/$mode/$sys" "s6-$sys" "$mode"; done
		done
	done
	for sys in egressgw haproxy nginx; do s6_syscalls "s6/$sys" "s6-$sys"; done
	stop_sys s6-egressgw s6-haproxy s6-nginx

	# The mesh path: sidecar -> gateway -> upstream (bench/s6chain.sh).
	s6c_up
	for sys in egressgw haproxy nginx; do
		s6_h2load "s6c-$sys-sc" short $((S6_SHORT_N / 4)) >/dev/null
		s6_h2load "s6c-$sys-sc" bulk $((S6_BULK_N / 4)) >/dev/null
	done
	sc0=$(s6c_tunnels 18895); gw0=$(s6c_tunnels 18891)
	for mode in short bulk; do
		for _ in $(seq "$ROUNDS"); do
			for sys in egressgw haproxy nginx; do
				s6_measure "s6c/$mode/$sys" "s6c-$sys-sc" "$mode"
			done
		done
	done
	s6c_check "$sc0" "$gw0" $((ROUNDS * S6_SHORT_N))
	for sys in egressgw haproxy nginx; do s6_syscalls "s6c/$sys" "s6c-$sys-sc"; done
	s6c_down

	s6_table s6 proxy ""; table=$S6_TABLE; ratios=$S6_RATIOS
	s6_table s6c chain " (sidecar + gateway)"; ctable=$S6_TABLE; cratios=$S6_RATIOS

	section 6 "## Scenario 6: TLS passthrough by SNI, $WORKERS worker(s)

The application's TLS (h2load, HTTP/1.1, SNI $UP_NAME) goes through the proxy unterminated
to nginx, which holds the certificate; each proxy reads the ClientHello's server name and
routes by it: egressgw as an Istio egress gateway (Gateway \`tls.mode: PASSTHROUGH\`,
VirtualService \`tls:\` route on \`sniHosts\`), HAProxy \`mode tcp\` with \`req.ssl_sni\`,
nginx \`stream\` with \`ssl_preread\`. \"short\": one request per connection (\`Connection:
close\`), $CONNS concurrent, so the proxy's work is accepting, reading the ClientHello,
connecting upstream, relaying the handshake and closing: CPU per connection. \"bulk\": $S6_BULK_CONNS
keep-alive connections fetching a 1 MiB file: CPU per MB relayed (h2load's bytes read).
Rate: connections/s or MB/s, bound by the load generator's and the upstream's TLS work on
the shared cores, not by the proxy.

\`h2load --h1 -n $S6_SHORT_N -c $CONNS -H 'Connection: close' --connect-to=$PX_IP:PORT https://$UP_NAME/small\`;
\`h2load --h1 -n $S6_BULK_N -c $S6_BULK_CONNS --connect-to=$PX_IP:PORT https://$UP_NAME/bulk\`
(a quarter of each, unmeasured, per system first)

$table

Ratios (same run, medians of $ROUNDS rounds):
${ratios}
System calls per short connection (\`strace -c -f\` attached to each proxy's processes
for $S6_STRACE_N connections of the short load; load-independent):

| proxy | calls per connection | most frequent (per connection) |
|---|---|---|
$(for sys in egressgw haproxy nginx; do echo "| $sys | ${SYSC[s6/$sys]} | ${SYSC_TOP[s6/$sys]} |"; done)

### The mesh path: sidecar -> gateway -> upstream

istio.io \"Egress Gateways\", HTTPS part, as it runs in a pod: h2load's connection to
the external name's address (one per chain, port 443) is redirected by iptables to the
chain's sidecar, which routes it by SNI to its gateway, which routes it by SNI to the
upstream; the application's TLS is terminated only there. egressgw: \`--role sidecar\`
(a mesh \`tls:\` route on \`sniHosts\` to the gateway's subset, the SNI and the original
destination read from the redirected connection) and \`--role gateway\` (PASSTHROUGH);
HAProxy: two instances, \`mode tcp\` + \`req.ssl_sni\`; nginx: two instances,
\`stream\` + \`ssl_preread\`. All of it (and its own upstream) in a network namespace
the bench creates (bench/s6chain.sh). CPU is the sidecar's plus the gateway's. Same loads
and h2load command lines as above, \`--connect-to=ADDRESS:443\`.

$ctable

Ratios (same run, medians of $ROUNDS rounds):
${cratios}
System calls per short connection, sidecar and gateway together (as above):

| chain | calls per connection | most frequent (per connection) |
|---|---|---|
$(for sys in egressgw haproxy nginx; do echo "| $sys | ${SYSC[s6c/$sys]} | ${SYSC_TOP[s6c/$sys]} |"; done)
"
}
