# bench/lib.sh: what the scenario files share. Sourced by bench/run.sh, never run alone.
#
# Certificates, the upstream nginx, the three proxies (started and stopped by instance
# name), wrk runs with the proxy's CPU time, medians, RSS. Every address is on loopback:
# the proxies listen on $PX_IP, the upstream on $UP_IP. The caller sets BUILD, W, SECS,
# CONNS and the PIDS array (killed at exit).

# BENCH_UP_IP, BENCH_PX_IP and BENCH_CNN_IP move them, so that two runs on one machine
# (another worktree's) do not meet on a port.
UP_IP=${BENCH_UP_IP:-127.0.0.91}
UP_NAME=upstream.bench.local
PX_IP=${BENCH_PX_IP:-127.0.0.90}
# Names the proxies resolve (egressgw through --hosts-file): the upstream, the route-scaling
# hosts host-N.bench.local, and the walkthrough's edition.cnn.com (never connected to: the
# memory scenario only idles; the address has no listener).
HOSTS_MAX=1000
CNN_IP=${BENCH_CNN_IP:-127.0.0.93}

declare -A SYS_PID SYS_PORT SYS_KIND SYS_ADMIN
EG_WRAP=()
declare -A RPS P50 P99 CPU SYSCPU ERR REQS UPCPU

die() { echo "bench: $*" >&2; exit 1; }

# ---- certificates: a CA, the upstream's server certificate, the proxies' client one ----
bench_certs() {
	( cd "$W" || exit 1
	  openssl req -x509 -sha256 -nodes -days 30 -newkey rsa:2048 -subj '/CN=bench-ca' \
		-keyout ca.key -out ca.crt 2>/dev/null
	  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$UP_NAME" > srv.ext
	  openssl req -newkey rsa:2048 -nodes -subj "/CN=$UP_NAME" -keyout srv.key -out srv.csr 2>/dev/null
	  openssl x509 -req -sha256 -days 30 -CA ca.crt -CAkey ca.key -set_serial 2 -in srv.csr \
		-out srv.crt -extfile srv.ext 2>/dev/null
	  openssl req -newkey rsa:2048 -nodes -subj '/CN=bench-client' -keyout cli.key -out cli.csr 2>/dev/null
	  openssl x509 -req -sha256 -days 30 -CA ca.crt -CAkey ca.key -set_serial 3 -in cli.csr \
		-out cli.crt 2>/dev/null
	  cat cli.crt cli.key > cli.pem
	  mkdir -p www
	  head -c 100 /dev/zero | tr '\0' 'x' > www/small
	  head -c 16384 /dev/zero | tr '\0' 'y' > www/large
	  head -c 1048576 /dev/zero | tr '\0' 'z' > www/bulk
	  { echo "$UP_IP $UP_NAME"
	    for i in $(seq "$HOSTS_MAX"); do echo "$UP_IP host-$i.bench.local"; done
	    echo "$CNN_IP edition.cnn.com"; } > hosts )
}

# Fails if something already listens on ip:port (another run, another helper's test):
# egressgw listens with SO_REUSEPORT and would silently share the port.
port_free() {
	! ss -Hltn "src $1 and sport = :$2" | grep -q .
}

# ---- the upstream: nginx requiring a client certificate ----
# TLS 1.2 and 1.3 (nginx 1.22's default has no TLS 1.3). Port 8443 keeps connections
# alive. Ports 8444-8446 close after every response (keepalive_requests 1), one port per
# proxy so that each proxy's upstream handshakes are logged apart: per connection,
# $ssl_session_reused ("r" or "."), the protocol, cipher and key exchange group. Port
# 8080 serves the same files over plain HTTP: scenario 3's baseline, the application
# calling the upstream with no proxy in between. Port 9443 is the application's own TLS
# server for scenario 6 (passthrough): the client's TLS ends there, no client certificate.
UP_CLOSE_PORTS=(8444 8445 8446)
UP_PLAIN_PORT=8080
UP_PT_PORT=9443
start_upstream() {
	local p srv=""
	mkdir -p "$W/up/tmp"
	for p in 8443 "$UP_PLAIN_PORT" "$UP_PT_PORT" "${UP_CLOSE_PORTS[@]}"; do port_free "$UP_IP" "$p" || die "$UP_IP:$p is in use"; done
	for p in "${UP_CLOSE_PORTS[@]}"; do
		srv+="
  server {
    listen $UP_IP:$p ssl; keepalive_requests 1; access_log $W/up/hs-$p.log hs;
    ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_client_certificate $W/ca.crt; ssl_verify_client on;
    ssl_session_cache shared:up:10m; ssl_session_tickets on; ssl_protocols TLSv1.2 TLSv1.3;
    root $W/www;
  }"
	done
	cat > "$W/up/nginx.conf" <<NGX
$( [ "$(id -u)" = 0 ] && echo "user root;") worker_processes ${BENCH_UP_WORKERS:-1}; daemon off;
pid $W/up/pid; error_log $W/up/error.log; worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $W/up/tmp; proxy_temp_path $W/up/tmp;
  log_format hs '\$ssl_session_reused \$ssl_protocol \$ssl_cipher \$ssl_curve';
  server {
    listen $UP_IP:8443 ssl;
    ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_client_certificate $W/ca.crt; ssl_verify_client on;
    ssl_session_cache shared:up:10m; ssl_session_tickets on; ssl_protocols TLSv1.2 TLSv1.3;
    root $W/www;
  }
  server { listen $UP_IP:$UP_PLAIN_PORT; root $W/www; }
  server {
    listen $UP_IP:$UP_PT_PORT ssl;
    ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_session_cache shared:pt:10m; ssl_protocols TLSv1.2 TLSv1.3;
    root $W/www;
  }$srv
}
NGX
	nginx -p "$W/up" -c "$W/up/nginx.conf" & PIDS+=($!)
	SYS_PID[upstream]=$!
}

# ---- egressgw ----
# The resources of a store: a plain HTTP Gateway server on gwport (hosts "*"), and
#   routes = 0: one VirtualService for "*" to upstream.bench.local:upport (scenario 1);
#   routes = N: N ServiceEntries host-1..N.bench.local, each with its VirtualService and
#               DestinationRule (the Istio pattern of one of each per external host).
# Every DestinationRule originates MUTUAL TLS with the client certificate, checks the
# upstream's chain against the bench CA and its name against upstream.bench.local (what
# HAProxy's verifyhost and nginx's proxy_ssl_verify/proxy_ssl_name do), and sends that SNI.
eg_yaml() {
	local gwport=$1 upport=$2 routes=$3 i h
	cat <<YAML
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: bench, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: $gwport, name: http, protocol: HTTP}
    hosts: ["*"]
YAML
	if [ "$routes" = 0 ]; then
		eg_yaml_host bench "$UP_NAME" '"*"' "$upport"
		return
	fi
	for i in $(seq "$routes"); do
		h="host-$i.bench.local"
		eg_yaml_host "host-$i" "$h" "$h" "$upport"
	done
}
eg_yaml_host() { # name destination-host vs-host upport
	cat <<YAML
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: $1, namespace: istio-system}
spec:
  hosts: [$2]
  ports: [{number: $4, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: $1, namespace: istio-system}
spec:
  hosts: [$3]
  gateways: [bench]
  http:
  - route:
    - destination: {host: $2, port: {number: $4}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: $1, namespace: istio-system}
spec:
  host: $2
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: $W/cli.crt
      privateKey: $W/cli.key
      caCertificates: $W/ca.crt
      sni: $UP_NAME
      subjectAltNames: [$UP_NAME]
YAML
}

# make_store DIR GWPORT UPPORT ROUTES: a fresh store holding eg_yaml's resources.
make_store() {
	eg_yaml "$2" "$3" "$4" > "$1.yaml"
	"$BUILD/egressctl" --store "$1" apply -f "$1.yaml" >/dev/null
}

# eg_start ROLE NAME STORE WORKERS ADMINPORT PORT HOSTS [egressgw options...]: egressgw in
# either role, the admin on $PX_IP:ADMINPORT. PORT is where the instance takes requests (a
# Gateway listener on $PX_IP, or the sidecar's --outbound, given among the options), checked
# free first; HOSTS is its --hosts-file. DNS goes to a closed port: nothing leaves loopback.
eg_start() {
	local role=$1 name=$2 store=$3 workers=$4 admin=$5 port=$6 hosts=$7
	shift 7
	port_free "$PX_IP" "$port" || die "$PX_IP:$port is in use"
	port_free "$PX_IP" "$admin" || die "$PX_IP:$admin is in use"
	# EG_WRAP: a command the proxy runs under (bench/ab.sh's AB_CALLGRIND: valgrind).
	"${EG_WRAP[@]}" "$BUILD/egressgw" --role "$role" --store "$store" --admin "$PX_IP:$admin" \
		--hosts-file "$hosts" --dns-servers 127.0.0.1:9 --workers "$workers" --log-level warn \
		"$@" 2>"$W/$name.err" & PIDS+=($!)
	SYS_PID[$name]=$!; SYS_PORT[$name]=$port; SYS_KIND[$name]=egressgw
	SYS_ADMIN[$name]=$admin
}

# start_egressgw NAME STORE WORKERS ADMINPORT PORT [egressgw options...]: a gateway whose
# Gateway listeners bind $PX_IP, names from $W/hosts.
start_egressgw() {
	local name=$1 store=$2 workers=$3 admin=$4 port=$5
	shift 5
	eg_start gateway "$name" "$store" "$workers" "$admin" "$port" "$W/hosts" \
		--namespace istio-system --listen-address "$PX_IP" "$@"
}

# egressgw's counter or gauge NAME (with its labels, e.g. 'x{resumed="true"}') from the admin.
eg_stat() {
	curl -sf "http://$PX_IP:${SYS_ADMIN[$1]}/stats/prometheus" |
		awk -v n="egressgw_$2" '$1 == n {print $2; f=1} END {if (!f) print 0}'
}

# ---- HAProxy ----
# start_haproxy NAME PORT UPPORT WORKERS [MAXCONN]. One process, WORKERS threads.
# HAP_FRONTEND_EXTRA: lines added to the frontend (scenario 7's access rules).
# With MAXCONN above what the descriptor limit fits for HAProxy's 2-per-connection estimate,
# "no strict-limits" lets it start anyway (idle client connections need one descriptor each:
# server connections go back to the shared idle pool).
start_haproxy() {
	local name=$1 port=$2 upport=$3 workers=$4 maxconn=${5:-4000} extra=""
	port_free "$PX_IP" "$port" || die "$PX_IP:$port is in use"
	[ "$maxconn" -gt 4000 ] && extra="  ulimit-n $(ulimit -Hn)
  no strict-limits"
	cat > "$W/$name.cfg" <<HAP
global
  nbthread $workers
  maxconn $maxconn
$extra
defaults
  mode http
  timeout connect 10s
  timeout client 60s
  timeout server 60s
frontend fe
  bind $PX_IP:$port
${HAP_FRONTEND_EXTRA:-}
  default_backend be
backend be
  http-reuse always
  server s1 $UP_IP:$upport ssl crt $W/cli.pem ca-file $W/ca.crt verify required sni str($UP_NAME) verifyhost $UP_NAME
HAP
	haproxy -f "$W/$name.cfg" -db 2>"$W/$name.err" & PIDS+=($!)
	SYS_PID[$name]=$!; SYS_PORT[$name]=$port; SYS_KIND[$name]=haproxy
}

# ---- nginx as a proxy ----
# start_nginx NAME PORT UPPORT WORKERS [WORKER_CONNECTIONS]. NGX_HTTP_EXTRA and
# NGX_SERVER_EXTRA: lines added to the http and server blocks. One worker runs without a
# master process; more than one runs the usual master + workers, each worker with its own
# SO_REUSEPORT listener (as egressgw's workers have).
start_nginx() {
	local name=$1 port=$2 upport=$3 workers=$4 wconns=${5:-4096} master=off rp=""
	port_free "$PX_IP" "$port" || die "$PX_IP:$port is in use"
	[ "$workers" -gt 1 ] && { master=on; rp=" reuseport"; }
	mkdir -p "$W/$name/tmp"
	cat > "$W/$name/nginx.conf" <<NGX
$( [ "$(id -u)" = 0 ] && echo "user root;") worker_processes $workers; daemon off; master_process $master;
pid $W/$name/pid; error_log $W/$name/error.log; worker_rlimit_nofile $(ulimit -Hn);
events { worker_connections $wconns; }
http {
  access_log off;
  client_body_temp_path $W/$name/tmp; proxy_temp_path $W/$name/tmp;
  # nginx closes a keep-alive connection after 1,000 requests by default, both the client's
  # and the upstream's (a new mutual-TLS handshake); HAProxy and egressgw do not.
  keepalive_requests 1000000;
  upstream up { server $UP_IP:$upport; keepalive 64; keepalive_requests 1000000; }
${NGX_HTTP_EXTRA:-}
  server {
    listen $PX_IP:$port$rp;
${NGX_SERVER_EXTRA:-}
    location / {
      proxy_pass https://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_certificate $W/cli.crt; proxy_ssl_certificate_key $W/cli.key;
      proxy_ssl_trusted_certificate $W/ca.crt; proxy_ssl_verify on;
      proxy_ssl_name $UP_NAME; proxy_ssl_server_name on; proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
    }
  }
}
NGX
	nginx -p "$W/$name" -c "$W/$name/nginx.conf" 2>"$W/$name.err" & PIDS+=($!)
	SYS_PID[$name]=$!; SYS_PORT[$name]=$port; SYS_KIND[$name]=nginx
}

# wait_ok NAME PATH [HOST]: polls until the instance answers 200 (10 s at most).
wait_ok() {
	local name=$1 path=$2 host=${3:-}
	local url="http://$PX_IP:${SYS_PORT[$name]}$path" hh=()
	[ -n "$host" ] && hh=(-H "Host: $host")
	for _ in $(seq 100); do
		curl -sf -o /dev/null "${hh[@]}" "$url" && return 0
		kill -0 "${SYS_PID[$name]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: $name ($url) does not answer 200:" >&2
	curl -sS -i "${hh[@]}" "$url" >&2 || true
	tail -n 20 "$W/$name.err" >&2 2>/dev/null || true
	exit 1
}

# stop_sys NAME...: stops the instances. One that had already exited is an anomaly (a
# crash, or something else killed it): noted in ANOMALIES for the report.
ANOMALIES=()
stop_sys() {
	local name st
	for name in "$@"; do
		if kill "${SYS_PID[$name]}" 2>/dev/null; then
			wait "${SYS_PID[$name]}" 2>/dev/null || true
		else
			st=0
			wait "${SYS_PID[$name]}" 2>/dev/null || st=$?
			ANOMALIES+=("$name exited before the end of its scenario (status $st)")
			echo "bench: warning: ${ANOMALIES[-1]}" >&2
		fi
	done
}

# The instance's processes: itself and its children (nginx's workers).
sys_pids() { echo "$1"; pgrep -P "$1" || true; }
# cpu_ticks PID [sys]: CPU time (user + system, all threads; with "sys", the system part
# only) of the instance's processes, in clock ticks.
cpu_ticks() {
	# shellcheck disable=SC2016 # awk's fields, not the shell's
	local p t=0 fields='$14 + $15'
	# shellcheck disable=SC2016
	[ "${2:-}" = sys ] && fields='$15'
	for p in $(sys_pids "$1"); do
		t=$((t + $(awk "{print $fields}" "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
# Resident memory of the instance's processes, in kB.
rss_kb() {
	local p t=0
	for p in $(sys_pids "$1"); do
		t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# Latency as wrk prints it (850.00us, 1.20ms, 2.00s) in milliseconds.
lat_ms() {
	awk '{v=$1; u=v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
	      if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
	      printf "%.3g\n", v}'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
sum() { tr ' ' '\n' | grep -v '^$' | awk '{s+=$1} END {print s+0}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }

# measure KEY NAME PATH [HOST]: one wrk run against instance NAME. Appends requests/s,
# p50, p99 (ms), the proxy's CPU µs per request, the upstream's CPU µs per request and the
# errors (non-2xx responses + socket errors) to the arrays under KEY.
WRK_CMDS=()
declare -A WRK_SEEN
measure() {
	local key=$1 name=$2 path=$3 host=${4:-} out t0 t1 s0 s1 u0 u1 rq hz e hh=()
	local pid=${SYS_PID[$name]} upid=${SYS_PID[upstream]}
	[ -n "$host" ] && hh=(-H "Host: $host")
	alive "$name"
	hz=$(getconf CLK_TCK)
	t0=$(cpu_ticks "$pid"); s0=$(cpu_ticks "$pid" sys); u0=$(cpu_ticks "$upid")
	out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "${hh[@]}" "http://$PX_IP:${SYS_PORT[$name]}$path" 2>&1) ||
		{ alive "$name"; die "$name: wrk failed: $out"; }
	t1=$(cpu_ticks "$pid"); s1=$(cpu_ticks "$pid" sys); u1=$(cpu_ticks "$upid")
	rq=$(echo "$out" | awk '/requests in/ {print $1}')
	[ -n "$rq" ] && [ "$rq" -gt 0 ] || { echo "$out" >&2; die "$name: wrk made no request"; }
	REQS[$key]+="$rq "
	RPS[$key]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
	P50[$key]+="$(echo "$out" | awk '$1=="50%" {print $2}' | lat_ms) "
	P99[$key]+="$(echo "$out" | awk '$1=="99%" {print $2}' | lat_ms) "
	CPU[$key]+="$(awk -v t=$((t1 - t0)) -v r="$rq" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}') "
	SYSCPU[$key]+="$(awk -v t=$((s1 - s0)) -v r="$rq" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}') "
	UPCPU[$key]+="$(awk -v t=$((u1 - u0)) -v r="$rq" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}') "
	e=$(echo "$out" | awk '/Non-2xx/ {e += $NF} /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10} END {print e+0}')
	ERR[$key]+="$e "
	[ "$e" = 0 ] || ANOMALIES+=("$key ($name): $e errors in a ${SECS} s wrk run: $(echo "$out" | grep -E 'Non-2xx|Socket errors' | tr -s ' ' | tr '\n' ';')")
	local cmd="wrk -t1 -c$CONNS -d${SECS}s --latency"
	[ -n "$host" ] && cmd+=" -H 'Host: $host'"
	cmd+=" http://$PX_IP:PORT$path"
	[ -n "${WRK_SEEN[$cmd]:-}" ] || { WRK_SEEN[$cmd]=1; WRK_CMDS+=("$cmd"); }
}
# alive NAME: stops the run, with the instance's exit status and log, if it has exited.
alive() {
	local st=0
	kill -0 "${SYS_PID[$1]}" 2>/dev/null && return 0
	wait "${SYS_PID[$1]}" || st=$?
	tail -n 20 "$W/$1.err" >&2 2>/dev/null || true
	die "$1 (pid ${SYS_PID[$1]}) has exited, status $st"
}
# warm NAME PATH [HOST]: a short unmeasured wrk run (connections, session caches, pages).
warm() {
	local hh=() out
	alive "$1"
	[ -n "${3:-}" ] && hh=(-H "Host: $3")
	out=$(wrk -t1 -c"$CONNS" -d"${BENCH_WARMUP:-2}s" "${hh[@]}" "http://$PX_IP:${SYS_PORT[$1]}$2" 2>&1) ||
		{ alive "$1"; die "$1: wrk failed: $out"; }
}
med() { local -n arr=$1; echo "${arr[$2]:-}" | median; }
# Median requests/s, rounded.
med_rps() { med RPS "$1" | awk '{if ($1 == "-") print; else printf "%.0f\n", $1}'; }
