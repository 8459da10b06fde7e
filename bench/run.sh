#!/usr/bin/env bash
# Side-by-side benchmark: plain HTTP/1.1 in, mutual TLS out to an nginx upstream with
# keep-alive, the same job for egressgw, HAProxy and nginx. All on loopback.
#
# Every proxy: one worker (BENCH_WORKERS), access logs off, upstream verified (CA + name),
# SNI sent, client certificate presented, upstream keep-alive and TLS session reuse on.
# The systems are interleaved and each is run BENCH_ROUNDS times; the table gives medians.
#
# Usage: bench/run.sh            (make bench)
# Env:   BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_CONNS (50), BENCH_WORKERS (1),
#        BENCH_OUT (docs/BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${EGRESSGW_BUILD:-$PWD/build}
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-50}
WORKERS=${BENCH_WORKERS:-1}
OUT=${BENCH_OUT:-docs/BENCHMARKS.md}
W=$(mktemp -d /tmp/egressgw-bench.XXXXXX)
UP_IP=127.0.0.91
UP_NAME=upstream.bench.local
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

# ---- certificates: a CA, the upstream's server cert, the proxies' client cert ----
cd "$W"
openssl req -x509 -sha256 -nodes -days 30 -newkey rsa:2048 -subj '/CN=bench-ca' -keyout ca.key -out ca.crt 2>/dev/null
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$UP_NAME" > srv.ext
openssl req -newkey rsa:2048 -nodes -subj "/CN=$UP_NAME" -keyout srv.key -out srv.csr 2>/dev/null
openssl x509 -req -sha256 -days 30 -CA ca.crt -CAkey ca.key -set_serial 2 -in srv.csr -out srv.crt -extfile srv.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj '/CN=bench-client' -keyout cli.key -out cli.csr 2>/dev/null
openssl x509 -req -sha256 -days 30 -CA ca.crt -CAkey ca.key -set_serial 3 -in cli.csr -out cli.crt 2>/dev/null
cat cli.crt cli.key > cli.pem
head -c 100 /dev/zero | tr '\0' 'x' > small
head -c 16384 /dev/zero | tr '\0' 'y' > large
echo "$UP_IP $UP_NAME" > hosts
cd - >/dev/null

# ---- the upstream: nginx requiring a client certificate ----
mkdir -p "$W/up/tmp"
cat > "$W/up/nginx.conf" <<NGX
$( [ "$(id -u)" = 0 ] && echo "user root;") worker_processes 1; daemon off; pid $W/up/pid; error_log $W/up/error.log;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $W/up/tmp; proxy_temp_path $W/up/tmp;
  server {
    listen $UP_IP:8443 ssl;
    ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_client_certificate $W/ca.crt; ssl_verify_client on;
    ssl_session_cache shared:up:10m; ssl_session_tickets on;
    root $W;
  }
}
NGX
nginx -p "$W/up" -c "$W/up/nginx.conf" & PIDS+=($!)

# ---- egressgw: a plain HTTP Gateway server, a route, MUTUAL origination from files ----
STORE="$W/store"
"$BUILD/egressctl" --store "$STORE" apply -f - >/dev/null <<YAML
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: upstream, namespace: istio-system}
spec:
  hosts: [$UP_NAME]
  ports: [{number: 8443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: bench, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 18080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: bench, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [bench]
  http:
  - route:
    - destination: {host: $UP_NAME, port: {number: 8443}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: bench, namespace: istio-system}
spec:
  host: $UP_NAME
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: $W/cli.crt
      privateKey: $W/cli.key
      caCertificates: $W/ca.crt
      sni: $UP_NAME
YAML
"$BUILD/egressgw" --role gateway --store "$STORE" --namespace istio-system \
  --listen-address 127.0.0.1 --admin 127.0.0.1:18000 --hosts-file "$W/hosts" \
  --workers "$WORKERS" --log-level warn 2>"$W/egressgw.err" & PIDS+=($!); EG_PID=$!

# ---- HAProxy ----
cat > "$W/haproxy.cfg" <<HAP
global
  nbthread $WORKERS
  maxconn 4000
defaults
  mode http
  timeout connect 10s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:18081
  default_backend be
backend be
  http-reuse always
  server s1 $UP_IP:8443 ssl crt $W/cli.pem ca-file $W/ca.crt verify required sni str($UP_NAME) verifyhost $UP_NAME
HAP
haproxy -f "$W/haproxy.cfg" -db & PIDS+=($!); HA_PID=$!

# ---- nginx as a proxy ----
mkdir -p "$W/px/tmp"
cat > "$W/px/nginx.conf" <<NGX
worker_processes $WORKERS; daemon off; master_process off; pid $W/px/pid; error_log $W/px/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/px/tmp; proxy_temp_path $W/px/tmp;
  upstream up { server $UP_IP:8443; keepalive 64; }
  server {
    listen 127.0.0.1:18082;
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
nginx -p "$W/px" -c "$W/px/nginx.conf" & PIDS+=($!); NX_PID=$!

for port in 18080 18081 18082; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/small" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/small" || {
    echo "bench: proxy on port $port does not answer 200:" >&2
    curl -sS -i "http://127.0.0.1:$port/small" >&2 || true
    exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A RPS P50 P99 CPU
run_one() { # name pid port path
  local name=$1 pid=$2 port=$3 path=$4 out t0 t1 rq
  t0=$(cpu_ticks "$pid")
  out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$port$path")
  t1=$(cpu_ticks "$pid")
  rq=$(echo "$out" | awk '/requests in/ {print $1}')
  RPS[$name]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
  P50[$name]+="$(echo "$out" | awk '$1=="50%" {print $2}') "
  P99[$name]+="$(echo "$out" | awk '$1=="99%" {print $2}') "
  CPU[$name]+="$(awk -v t=$((t1 - t0)) -v r="$rq" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}') "
}
median() { tr ' ' '\n' | grep -v '^$' | sed 's/ms$//; s/us$/e-3/' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
to_ms() { awk '{v=$1; if (v ~ /e-3$/) {sub(/e-3$/, "", v); v=v/1000} print v}'; }

TABLE="| scenario | proxy | requests/s | p50 ms | p99 ms | CPU µs/request |
|---|---|---|---|---|---|"
for path in /small /large; do
  for _ in $(seq "$ROUNDS"); do
    run_one "egressgw$path" "$EG_PID" 18080 "$path"
    run_one "haproxy$path" "$HA_PID" 18081 "$path"
    run_one "nginx$path" "$NX_PID" 18082 "$path"
  done
  for sys in egressgw haproxy nginx; do
    k="$sys$path"
    TABLE+="
| ${path#/} response | $sys | $(echo "${RPS[$k]}" | median) | $(echo "${P50[$k]}" | median | to_ms) | $(echo "${P99[$k]}" | median | to_ms) | $(echo "${CPU[$k]}" | median) |"
  done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
RATIOS=""
for path in /small /large; do
  e=$(echo "${RPS[egressgw$path]}" | median); h=$(echo "${RPS[haproxy$path]}" | median); n=$(echo "${RPS[nginx$path]}" | median)
  ec=$(echo "${CPU[egressgw$path]}" | median); hc=$(echo "${CPU[haproxy$path]}" | median); nc=$(echo "${CPU[nginx$path]}" | median)
  RATIOS+="- ${path#/} response: requests/s egressgw/HAProxy $(ratio "$e" "$h"), egressgw/nginx $(ratio "$e" "$n"); CPU per request egressgw/HAProxy $(ratio "$ec" "$hc"), egressgw/nginx $(ratio "$ec" "$nc")
"
done
RSS=$(awk '/VmHWM/ {print $2 " kB"}' "/proc/$EG_PID/status")
REPORT="## Scenario 1: plain HTTP in, mutual TLS out (keep-alive), $WORKERS worker(s)

Run on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); wrk -t1 -c$CONNS -d${SECS}s --latency; medians of $ROUNDS interleaved rounds.

$TABLE

Ratios (same run):
$RATIOS
egressgw peak RSS during the run: $RSS.

Command: \`BENCH_SECONDS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_WORKERS=$WORKERS make bench\`"
echo "$REPORT"
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`make bench\` (bench/run.sh), which starts every system itself on loopback."
  echo "The load generator, the proxy and the upstream share the machine's cores, so absolute"
  echo "numbers move by ±20% between runs: compare ratios from the same run."
  echo
  echo "$REPORT"
} > "$OUT"
