# Scenario 3: the mesh path. The application's plain HTTP goes to a sidecar, which sends it
# over mutual TLS with its workload certificate (ISTIO_MUTUAL, HTTP/2 where the pair can)
# to the egress gateway, which originates mutual TLS to the upstream nginx. At a fixed rate
# (h2load, 1,000 requests/s over 4 keep-alive connections): the latency the two proxies add
# to the application calling the upstream directly, and the CPU each proxy spends per
# 1,000 requests/s. Four chains, each a sidecar and a gateway of the same kind: egressgw
# (--role sidecar, --role gateway; HTTP/2 between them), the same with --no-http2 (HTTP/1.1
# between them), HAProxy (HTTP/2 between them) and nginx (HTTP/1.1: its proxy_pass has no
# HTTP/2). Sourced by bench/run.sh.
#
# Names: the application asks for http://edition.cnn.com/small, as the walkthrough's sleep
# pod does; edition.cnn.com is the bench's upstream (UP_IP, port 8443 with TLS, 8080
# plain), and the gateway's service name is PX_IP. Certificates: a mesh CA of
# egressctl's (ECDSA P-256) issues the sidecar's identity (default/sleep) and the gateway's
# (istio-system/istio-egressgateway-service-account, with its service name as a DNS SAN as
# well, so that HAProxy and nginx, which check names and not SPIFFE URIs, can verify it);
# all three chains use these same files. The gateway → upstream hop is the bench's usual
# MUTUAL one (bench CA, RSA-2048 client certificate), as in scenario 1.
#
# SYS_*, P50 and P99 are lib.sh's associative arrays, which shellcheck cannot see from here.
# shellcheck disable=SC2004,SC2034

S3_CONNS=4
S3_RATE=250          # requests/s per connection: 1,000 in all
S3_HOST=edition.cnn.com
S3_GW_HOST=istio-egressgateway.istio-system.svc.cluster.local
S3_GW_SPIFFE=spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account
# Sidecar ports (the application connects there), gateway ports, egressgw's admin ports.
declare -A S3_SC_PORT=([egressgw]=18280 [haproxy]=18281 [nginx]=18282 [egressgw-h1]=18285)
# The floor row: two bench/relay.c byte relays chained in front of the upstream's plain port.
S3_RELAY_PORTS=(18283 18284)
declare -A S3_GW_PORT=([egressgw]=18290 [haproxy]=18291 [nginx]=18292 [egressgw-h1]=18293)
# The chains, in the order they are measured and listed.
S3_SYSTEMS=(egressgw egressgw-h1 haproxy nginx)
declare -A S3_P90 S3_CPU_SC S3_CPU_GW S3_RPS S3_ERR

# s3_yaml GWPORT: the walkthrough's steps 01-03 (tests/data/walkthrough), changed only
# where the bench needs it: the Gateway listens on GWPORT instead of 80 (and the sidecar's
# route and DestinationRule name that port); edition.cnn.com's HTTPS port is the
# upstream's 8443 instead of 443, and the gateway originates MUTUAL TLS there with the
# bench's client certificate, checking the upstream's name (the walkthrough's SIMPLE has
# no client certificate; HAProxy's and nginx's gateways present one too); the sidecar's
# DestinationRule checks the gateway's SPIFFE identity (subjectAltNames), as HAProxy and
# nginx check its name.
s3_yaml() {
	local gp=$1
	cat <<YAML
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: cnn}
spec:
  hosts: [$S3_HOST]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 8443, name: https, protocol: HTTPS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: $gp, name: https-port-for-tls-origination, protocol: HTTPS}
    hosts: [$S3_HOST]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: egressgateway-for-cnn}
spec:
  host: $S3_GW_HOST
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
      portLevelSettings:
      - port: {number: $gp}
        tls:
          mode: ISTIO_MUTUAL
          sni: $S3_HOST
          subjectAltNames: [$S3_GW_SPIFFE]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: direct-cnn-through-egress-gateway}
spec:
  hosts: [$S3_HOST]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: $S3_GW_HOST, subset: cnn, port: {number: $gp}}
      weight: 100
  - match: [{gateways: [istio-egressgateway], port: $gp}]
    route:
    - destination: {host: $S3_HOST, port: {number: 8443}}
      weight: 100
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: originate-tls-for-edition-cnn-com}
spec:
  host: $S3_HOST
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings:
    - port: {number: 8443}
      tls:
        mode: MUTUAL
        clientCertificate: $W/cli.crt
        privateKey: $W/cli.key
        caCertificates: $W/ca.crt
        sni: $UP_NAME
        subjectAltNames: [$UP_NAME]
YAML
}

# s3_certs: the mesh CA and the two identities (egressctl's layout: cert-chain.pem,
# key.pem, root-cert.pem), plus certificate + key in one file for HAProxy.
s3_certs() {
	"$BUILD/egressctl" ca init --dir "$W/s3-mesh-ca" >/dev/null
	"$BUILD/egressctl" ca issue --dir "$W/s3-mesh-ca" --namespace default \
		--service-account sleep --out "$W/s3-sleep-id" >/dev/null
	"$BUILD/egressctl" ca issue --dir "$W/s3-mesh-ca" --namespace istio-system \
		--service-account istio-egressgateway-service-account --dns "$S3_GW_HOST" \
		--out "$W/s3-gw-id" >/dev/null
	cat "$W/s3-sleep-id/cert-chain.pem" "$W/s3-sleep-id/key.pem" > "$W/s3-sleep-id/both.pem"
	cat "$W/s3-gw-id/cert-chain.pem" "$W/s3-gw-id/key.pem" > "$W/s3-gw-id/both.pem"
	{ echo "$UP_IP $S3_HOST"; echo "$PX_IP $S3_GW_HOST"; } > "$W/s3-hosts"
}

# ---- HAProxy: sidecar (HTTP in, HTTP/2 + mutual TLS out) and gateway ----
# s3_haproxy NAME PORT BIND_OPTIONS SERVER_LINE [RULES]: one frontend routing the
# application's Host (as the VirtualService does) to one backend with one server; RULES,
# lines for the backend.
s3_haproxy() {
	local name=$1 port=$2 bind=$3 server=$4 rule=${5:-}
	port_free "$PX_IP" "$port" || die "$PX_IP:$port is in use"
	cat > "$W/$name.cfg" <<HAP
global
  nbthread $WORKERS
  maxconn 4000
defaults
  mode http
  timeout connect 10s
  timeout client 60s
  timeout server 60s
frontend fe
  bind $PX_IP:$port$bind
  use_backend be if { hdr(host) -i $S3_HOST }
backend be
  http-reuse always
  server $server
$rule
HAP
	haproxy -f "$W/$name.cfg" -db 2>"$W/$name.err" & PIDS+=($!)
	SYS_PID[$name]=$!; SYS_PORT[$name]=$port; SYS_KIND[$name]=haproxy
}

# ---- nginx: sidecar (HTTP in, HTTP/1.1 + mutual TLS out: nginx's proxy_pass has no
# HTTP/2) and gateway ----
# s3_nginx NAME PORT LISTEN_OPTIONS UPSTREAM_ADDR SSL_LINES: a server for the application's
# Host, proxying to one upstream with keep-alive. Neither side closes a connection after
# N requests (nginx's default keepalive_requests is 1,000; HAProxy and egressgw have no
# such limit), so no hop makes new handshakes during the run.
s3_nginx() {
	local name=$1 port=$2 listen=$3 up=$4 ssl=$5
	port_free "$PX_IP" "$port" || die "$PX_IP:$port is in use"
	mkdir -p "$W/$name/tmp"
	cat > "$W/$name/nginx.conf" <<NGX
$( [ "$(id -u)" = 0 ] && echo "user root;") worker_processes $WORKERS; daemon off; master_process $( [ "$WORKERS" -gt 1 ] && echo on || echo off);
pid $W/$name/pid; error_log $W/$name/error.log;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $W/$name/tmp; proxy_temp_path $W/$name/tmp;
  upstream up { server $up; keepalive 64; keepalive_requests 1000000; }
  server {
    listen $PX_IP:$port$listen; server_name $S3_HOST;
$ssl
    location / {
      proxy_pass https://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3; proxy_ssl_server_name on; proxy_ssl_verify on;
    }
  }
}
NGX
	nginx -p "$W/$name" -c "$W/$name/nginx.conf" 2>"$W/$name.err" & PIDS+=($!)
	SYS_PID[$name]=$!; SYS_PORT[$name]=$port; SYS_KIND[$name]=nginx
}

s3_start() {
	local sc gw sid="$W/s3-sleep-id" gid="$W/s3-gw-id"
	# egressgw: one store holding the walkthrough, read by both roles.
	s3_yaml "${S3_GW_PORT[egressgw]}" > "$W/s3-store.yaml"
	"$BUILD/egressctl" --store "$W/s3-store" apply -f "$W/s3-store.yaml" >/dev/null
	eg_start gateway s3-egressgw-gw "$W/s3-store" "$WORKERS" 18201 "${S3_GW_PORT[egressgw]}" \
		"$W/s3-hosts" --namespace istio-system --labels istio=egressgateway \
		--listen-address "$PX_IP" --identity "$gid"
	eg_start sidecar s3-egressgw-sc "$W/s3-store" "$WORKERS" 18200 "${S3_SC_PORT[egressgw]}" \
		"$W/s3-hosts" --namespace default --identity "$sid" \
		--outbound "$PX_IP:${S3_SC_PORT[egressgw]}"
	# The same chain with HTTP/2 off on both proxies (HTTP/1.1 over the same mutual TLS): a
	# store of its own, whose Gateway and mesh route name this chain's gateway port.
	s3_yaml "${S3_GW_PORT[egressgw-h1]}" > "$W/s3-store-h1.yaml"
	"$BUILD/egressctl" --store "$W/s3-store-h1" apply -f "$W/s3-store-h1.yaml" >/dev/null
	eg_start gateway s3-egressgw-h1-gw "$W/s3-store-h1" "$WORKERS" 18203 "${S3_GW_PORT[egressgw-h1]}" \
		"$W/s3-hosts" --namespace istio-system --labels istio=egressgateway \
		--listen-address "$PX_IP" --identity "$gid" --no-http2
	eg_start sidecar s3-egressgw-h1-sc "$W/s3-store-h1" "$WORKERS" 18202 "${S3_SC_PORT[egressgw-h1]}" \
		"$W/s3-hosts" --namespace default --identity "$sid" \
		--outbound "$PX_IP:${S3_SC_PORT[egressgw-h1]}" --no-http2

	sc=${S3_SC_PORT[haproxy]} gw=${S3_GW_PORT[haproxy]}
	# The rule answers, only to a request that asks (x-want-proto), the HTTP version the
	# request reached the gateway with: s3_run checks that the hop is HTTP/2.
	s3_haproxy s3-haproxy-gw "$gw" \
		" ssl crt $gid/both.pem ca-file $gid/root-cert.pem verify required alpn h2,http/1.1" \
		"s1 $UP_IP:8443 ssl crt $W/cli.pem ca-file $W/ca.crt verify required sni str($UP_NAME) verifyhost $UP_NAME" \
		"  http-request set-var(txn.hop_proto) req.ver if { req.hdr(x-want-proto) -m found }
  http-response set-header x-hop-proto %[var(txn.hop_proto)] if { var(txn.hop_proto) -m found }"
	# A response that came over HTTP/2 has no reason phrase, and HAProxy 2.6 sends its
	# HTTP/1.1 status line with an empty one ("HTTP/1.1 200 "): valid, but h2load then
	# records no status and counts the request as failed. The rule puts "OK" back.
	s3_haproxy s3-haproxy-sc "$sc" "" \
		"gw $PX_IP:$gw ssl crt $sid/both.pem ca-file $sid/root-cert.pem verify required sni str($S3_GW_HOST) verifyhost $S3_GW_HOST alpn h2" \
		"  http-response set-status 200 reason OK if { status 200 }"

	sc=${S3_SC_PORT[nginx]} gw=${S3_GW_PORT[nginx]}
	s3_nginx s3-nginx-gw "$gw" " ssl" "$UP_IP:8443" "    ssl_certificate $gid/cert-chain.pem; ssl_certificate_key $gid/key.pem;
    ssl_client_certificate $gid/root-cert.pem; ssl_verify_client on; ssl_protocols TLSv1.2 TLSv1.3;
    proxy_ssl_certificate $W/cli.crt; proxy_ssl_certificate_key $W/cli.key;
    proxy_ssl_trusted_certificate $W/ca.crt; proxy_ssl_name $UP_NAME;"
	s3_nginx s3-nginx-sc "$sc" "" "$PX_IP:$gw" "    proxy_ssl_certificate $sid/cert-chain.pem; proxy_ssl_certificate_key $sid/key.pem;
    proxy_ssl_trusted_certificate $sid/root-cert.pem; proxy_ssl_name $S3_GW_HOST;"
}

# s3_load KEY ADDR:PORT SECONDS: h2load at the fixed rate, the application's request
# (GET /small, Host: edition.cnn.com) sent to ADDR:PORT; per-request log in $W/KEY.log
# (start µs, status, µs to the end of the response). Output in S3_OUT.
s3_load() {
	local log="$W/${1//\//-}.log"
	rm -f "$log"     # h2load appends to an existing log: one run per file
	S3_OUT=$(h2load --h1 -t1 -c"$S3_CONNS" --rps="$S3_RATE" -D "$3" --log-file="$log" \
		--connect-to="$2" "http://$S3_HOST/small" 2>&1) || die "$1: h2load failed: $S3_OUT"
	S3_LOG=$log
}

# s3_measure KEY ADDR:PORT [SIDECAR GATEWAY]: one measured run. Appends to the arrays under
# KEY: p50/p90/p99 (ms, nearest rank over the 2xx responses), requests/s done, errors
# (responses other than 2xx, failed streams), and each proxy's CPU in vCPU per 1,000
# requests/s (CPU seconds over wall seconds, scaled by the rate achieved).
s3_measure() {
	local key=$1 addr=$2 sc=${3:-} gw=${4:-} hz t0 t1 sc0 gw0 sc1 gw1 p50 p90 p99 n rps q
	hz=$(getconf CLK_TCK)
	[ -z "$sc" ] || { alive "$sc"; alive "$gw"; sc0=$(cpu_ticks "${SYS_PID[$sc]}"); gw0=$(cpu_ticks "${SYS_PID[$gw]}"); }
	t0=$(date +%s.%N)
	s3_load "$key" "$addr" "$SECS"
	t1=$(date +%s.%N)
	[ -z "$sc" ] || { sc1=$(cpu_ticks "${SYS_PID[$sc]}"); gw1=$(cpu_ticks "${SYS_PID[$gw]}"); alive "$sc"; alive "$gw"; }
	read -r p50 p90 p99 n < <(awk -F'\t' '$2 >= 200 && $2 < 300 {print $3}' "$S3_LOG" | sort -n |
		awk '{a[NR] = $1}
		     function q(p,  i) {i = int(p * NR); if (i < p * NR) i++; if (i < 1) i = 1; return a[i] / 1000}
		     END {if (NR) printf "%.3f %.3f %.3f %d\n", q(0.5), q(0.9), q(0.99), NR; else print "- - - 0"}')
	[ "$n" -gt 0 ] || die "$key: no 2xx response: $S3_OUT"
	rps=$(awk -v n="$n" -v s="$SECS" 'BEGIN {printf "%.0f", n / s}')
	P50[$key]+="$p50 "; S3_P90[$key]+="$p90 "; P99[$key]+="$p99 "; S3_RPS[$key]+="$rps "
	q=$(awk -F'\t' '!($2 >= 200 && $2 < 300) {e++} END {print e + 0}' "$S3_LOG")
	S3_ERR[$key]+="$q "
	[ "$q" = 0 ] || ANOMALIES+=("s3 $key: $q of the requests in a ${SECS} s h2load run failed or were not 2xx: $(echo "$S3_OUT" | grep -E '^(requests|status codes):' | tr '\n' ';')")
	[ "$rps" -ge $((S3_CONNS * S3_RATE * 95 / 100)) ] ||
		ANOMALIES+=("s3 $key: $rps requests/s done, below the $((S3_CONNS * S3_RATE)) asked for")
	[ -n "$sc" ] || return 0
	S3_CPU_SC[$key]+="$(s3_vcpu $((sc1 - sc0)) "$hz" "$t0" "$t1" "$rps") "
	S3_CPU_GW[$key]+="$(s3_vcpu $((gw1 - gw0)) "$hz" "$t0" "$t1" "$rps") "
}
# s3_vcpu TICKS HZ T0 T1 RPS: vCPU per 1,000 requests/s.
s3_vcpu() {
	awk -v t="$1" -v hz="$2" -v a="$3" -v b="$4" -v r="$5" \
		'BEGIN {if (r > 0 && b > a) printf "%.3f", t / hz / (b - a) * 1000 / r; else print "-"}'
}
# s3_us_more H2 H1: how many µs per request H2 costs more than H1, both in vCPU per 1,000
# requests/s (1 vCPU per 1,000 requests/s = 1,000 µs per request).
s3_us_more() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "-" || b == "-") print "-"; else printf "%.1f", (a - b) * 1000}'; }
# s3_sub A B: A - B in ms (3 decimals), "-" when either is missing.
s3_sub() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "-" || b == "-") print "-"; else printf "%.3f", a - b}'; }
s3_add() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "-" || b == "-") print "-"; else printf "%.3f", a + b}'; }

# s3_relays_start: the floor's two relays (built here from bench/relay.c), the first
# listening on S3_RELAY_PORTS[0] and sending to the second, which sends to the upstream.
s3_relays_start() {
	local p
	for p in "${S3_RELAY_PORTS[@]}"; do port_free "$PX_IP" "$p" || die "$PX_IP:$p is in use"; done
	cc -std=c11 -O2 -o "$W/relay" bench/relay.c || die "cannot build bench/relay.c"
	local name=s3-relay-2
	"$W/relay" "$PX_IP" "${S3_RELAY_PORTS[1]}" "$UP_IP" "$UP_PLAIN_PORT" 2>"$W/$name.err" & PIDS+=($!)
	SYS_PID[$name]=$!
	name=s3-relay-1
	"$W/relay" "$PX_IP" "${S3_RELAY_PORTS[0]}" "$PX_IP" "${S3_RELAY_PORTS[1]}" 2>"$W/$name.err" & PIDS+=($!)
	SYS_PID[$name]=$!
	for _ in $(seq 50); do
		curl -sf -o /dev/null -H "Host: $S3_HOST" "http://$PX_IP:${S3_RELAY_PORTS[0]}/small" && return 0
		sleep 0.1
	done
	die "the relays on $PX_IP:${S3_RELAY_PORTS[0]} do not answer"
}

s3_run() {
	local sys k proto table d50 d90 d99 m50 m90 m99 csc cgw h2b cxa cxb eg_h2 target floor99
	local hap_proto h1sc h1gw
	local direct="$UP_IP:$UP_PLAIN_PORT"
	s3_certs
	s3_start
	curl -sf -o /dev/null -H "Host: $S3_HOST" "http://$direct/small" ||
		die "the upstream's plain port $direct does not answer"
	for sys in "${S3_SYSTEMS[@]}"; do wait_ok "s3-$sys-sc" /small "$S3_HOST"; done
	# HAProxy's hop speaks HTTP/2 (its sidecar offers only h2 by ALPN; this proves it).
	hap_proto=$(curl -sf -o /dev/null -D - -H "Host: $S3_HOST" -H "x-want-proto: 1" \
		"http://$PX_IP:${S3_SC_PORT[haproxy]}/small" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-hop-proto" {print $2}')
	[ "$hap_proto" = "2.0" ] ||
		ANOMALIES+=("s3: HAProxy's sidecar reached its gateway with HTTP '$hap_proto', not 2.0")
	s3_relays_start
	local relays="$PX_IP:${S3_RELAY_PORTS[0]}"
	# Warm-up at the same rate: connections on every hop, caches, pages.
	s3_load warm-direct "$direct" "${BENCH_WARMUP:-2}"
	s3_load warm-relays "$relays" "${BENCH_WARMUP:-2}"
	for sys in "${S3_SYSTEMS[@]}"; do
		s3_load "warm-$sys" "$PX_IP:${S3_SC_PORT[$sys]}" "${BENCH_WARMUP:-2}"
	done
	cxa=$(eg_stat s3-egressgw-sc upstream_cx_total)

	for _ in $(seq "$ROUNDS"); do
		s3_measure s3/direct "$direct"
		s3_measure s3/relays "$relays"
		for sys in "${S3_SYSTEMS[@]}"; do
			s3_measure "s3/$sys" "$PX_IP:${S3_SC_PORT[$sys]}" "s3-$sys-sc" "s3-$sys-gw"
		done
	done

	cxb=$(eg_stat s3-egressgw-sc upstream_cx_total); h2b=$(eg_stat s3-egressgw-sc upstream_cx_http2_total)
	[ "$cxb" = "$cxa" ] || ANOMALIES+=("s3: egressgw's sidecar opened $((cxb - cxa)) connection(s) to the gateway during the measured runs")
	eg_h2="$cxb connection(s) opened in all ($h2b HTTP/2), $((cxb - cxa)) of
  them during the measured runs"
	[ "$h2b" -gt 0 ] ||
		ANOMALIES+=("s3: egressgw's sidecar made no HTTP/2 connection to the gateway")
	[ "$(eg_stat s3-egressgw-h1-sc upstream_cx_http2_total)" = 0 ] ||
		ANOMALIES+=("s3: egressgw's --no-http2 sidecar made an HTTP/2 connection")
	stop_sys s3-egressgw-sc s3-egressgw-gw s3-egressgw-h1-sc s3-egressgw-h1-gw s3-haproxy-sc \
		s3-haproxy-gw s3-nginx-sc s3-nginx-gw s3-relay-1 s3-relay-2

	d50=$(med P50 s3/direct); d90=$(med S3_P90 s3/direct); d99=$(med P99 s3/direct)
	table="| path | sidecar → gateway | p50 ms | p90 ms | p99 ms | added p50 ms | added p90 ms | added p99 ms | requests/s | vCPU per 1,000 req/s: sidecar | gateway | both | errors |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| direct (no proxy) | - | $d50 | $d90 | $d99 | - | - | - | $(med S3_RPS s3/direct) | - | - | - | $(echo "${S3_ERR[s3/direct]}" | sum) |"
	m50=$(med P50 s3/relays); m90=$(med S3_P90 s3/relays); m99=$(med P99 s3/relays)
	floor99=$(s3_sub "$m99" "$d99")
	table+="
| floor: two byte relays | plain TCP, no HTTP | $m50 | $m90 | $m99 | $(s3_sub "$m50" "$d50") | $(s3_sub "$m90" "$d90") | $floor99 | $(med S3_RPS s3/relays) | - | - | - | $(echo "${S3_ERR[s3/relays]}" | sum) |"
	for sys in "${S3_SYSTEMS[@]}"; do
		k="s3/$sys"
		m50=$(med P50 "$k"); m90=$(med S3_P90 "$k"); m99=$(med P99 "$k")
		csc=$(med S3_CPU_SC "$k"); cgw=$(med S3_CPU_GW "$k")
		case $sys in
		nginx) proto="HTTP/1.1, mTLS" ;;
		egressgw-h1) proto="HTTP/1.1, mTLS (\`--no-http2\`)" ;;
		*) proto="HTTP/2, mTLS" ;;
		esac
		table+="
| $sys | $proto | $m50 | $m90 | $m99 | $(s3_sub "$m50" "$d50") | $(s3_sub "$m90" "$d90") | $(s3_sub "$m99" "$d99") | $(med S3_RPS "$k") | $csc | $cgw | $(s3_add "$csc" "$cgw") | $(echo "${S3_ERR[$k]}" | sum) |"
	done
	m99=$(s3_sub "$(med P99 s3/egressgw)" "$d99")
	csc=$(med S3_CPU_SC s3/egressgw); cgw=$(med S3_CPU_GW s3/egressgw)
	h1sc=$(med S3_CPU_SC s3/egressgw-h1); h1gw=$(med S3_CPU_GW s3/egressgw-h1)
	target="- Added p99 of the two proxies below 0.3 ms (Istio's published figure for its
  two-proxy path): egressgw $m99 ms, $(awk -v v="$m99" 'BEGIN {print (v != "-" && v < 0.3) ? "met" : "not met"}'). The floor
  on this machine (two relays that only copy bytes) adds $floor99 ms at p99.
- Under 0.1 vCPU per 1,000 requests/s per proxy (Envoy: about 0.2): egressgw sidecar
  $csc, gateway $cgw, $(awk -v a="$csc" -v b="$cgw" 'BEGIN {print (a != "-" && b != "-" && a < 0.1 && b < 0.1) ? "met" : "not met"}').
- The HTTP/2 mesh hop costs at most 3 µs CPU per request more than \`--no-http2\` on each
  proxy (issue 13): sidecar $(s3_us_more "$csc" "$h1sc") µs, gateway $(s3_us_more "$cgw" "$h1gw") µs more; $(awk -v a="$(s3_us_more "$csc" "$h1sc")" -v b="$(s3_us_more "$cgw" "$h1gw")" 'BEGIN {print (a != "-" && b != "-" && a <= 3 && b <= 3) ? "met" : "not met"}').
  p50 $(med P50 s3/egressgw) ms over HTTP/2, $(med P50 s3/egressgw-h1) ms over HTTP/1.1: $(awk -v a="$(med P50 s3/egressgw)" -v b="$(med P50 s3/egressgw-h1)" 'BEGIN {print (a != "-" && b != "-" && a <= b) ? "met" : "not met"}') (no higher)."

	section 3 "## Scenario 3: the mesh path through the sidecar, $WORKERS worker(s) per proxy

The application (h2load) sends \`GET /small\` with \`Host: $S3_HOST\` (plain HTTP/1.1,
origin-form) to a sidecar at a fixed $((S3_CONNS * S3_RATE)) requests/s over $S3_CONNS keep-alive connections;
the sidecar sends it over mutual TLS with its workload certificate to the egress
gateway, which originates mutual TLS to the upstream nginx (client certificate required,
100-byte file). Four chains, each a sidecar and a gateway of one kind:

- egressgw: \`--role sidecar\` (the request routed by its Host header, port 80, through the
  walkthrough's mesh VirtualService) → ISTIO_MUTUAL, HTTP/2 by ALPN → \`--role gateway\` (the
  walkthrough's Gateway, VirtualService and DestinationRules of steps 01-03, with the
  gateway's port at ${S3_GW_PORT[egressgw]} instead of 80, and MUTUAL TLS to the upstream's 8443
  instead of SIMPLE to 443; the sidecar's DestinationRule checks the gateway's SPIFFE
  identity).
  Sidecar → gateway (egressgw's counters): $eg_h2.
- egressgw-h1: the same two proxies and resources (the gateway on port ${S3_GW_PORT[egressgw-h1]}), both started
  with \`--no-http2\`: HTTP/1.1 between them over the same mutual TLS, the pair HTTP/2 is
  judged against.
- HAProxy: a frontend routing the Host to a backend \`server ... ssl crt sleep.pem ca-file
  root-cert.pem verify required verifyhost GATEWAY alpn h2\`, \`http-reuse always\`; the
  gateway binds \`ssl crt gw.pem ca-file root-cert.pem verify required alpn h2,http/1.1\`.
  One more rule in the sidecar, \`http-response set-status 200 reason OK if { status 200 }\`:
  HAProxy 2.6 relays a response that came over HTTP/2 with an empty reason phrase
  (\`HTTP/1.1 200 \`), which h2load counts as a failed request. The hop is checked to be
  HTTP/2 before the runs (the gateway reports \`req.ver\` to a request that asks for it; $( [ "$hap_proto" = 2.0 ] && echo "it was 2.0" || echo "it was '$hap_proto': see Anomalies")).
- nginx: \`proxy_pass https://\` with \`proxy_ssl_certificate\`, \`proxy_ssl_verify on\`,
  \`proxy_ssl_name GATEWAY\`, keep-alive upstream: HTTP/1.1 between the proxies (nginx
  cannot speak HTTP/2 to an upstream); the gateway listens \`ssl\` with \`ssl_verify_client on\`.

GATEWAY is the gateway's service name, $S3_GW_HOST.

Floor: two copies of bench/relay.c (one thread, epoll, one read() and one write() per
wake-up, no parsing, no TLS) chained in front of the upstream's plain port: what two more
processes on the path cost on this machine before any proxy work (two more wake-ups and
loopback hops each way). No proxy can add less than this row.

Identities: a mesh CA made by \`egressctl ca init\`, workload certificates (ECDSA P-256,
SPIFFE URI SANs) from \`egressctl ca issue\` for default/sleep and for
istio-system/istio-egressgateway-service-account, the latter with the DNS SAN GATEWAY too:
HAProxy and nginx check names, not SPIFFE URIs, so each chain checks the gateway's
chain against the mesh root and one name, and each gateway requires and verifies the
sidecar's certificate against the mesh root. Gateway → upstream: as in scenario 1 (RSA-2048
client certificate; the upstream's chain and name, $UP_NAME, checked; SNI sent).
Every hop keeps its connections open for the whole run (nginx's keepalive_requests raised
from its default 1,000).

Baseline (direct): the same h2load run against the upstream nginx's plain-HTTP port
$UP_PLAIN_PORT (same worker, same files): what the application costs without a proxy. h2load
cannot present a client certificate, and calling the upstream over TLS would charge the
baseline a hop the mesh path does not have on the application's side; so the added
latency below is everything the two proxies do: two more loopback hops, mutual TLS between
them and to the upstream, routing. Istio's published latency figures compare with the same
kind of baseline (the client calling the server with no sidecar).

Latency: per request from h2load's log (\`--log-file\`: start to the end of the response),
nearest-rank percentiles over the 2xx responses of a run; medians over $ROUNDS interleaved
round(s) of ${SECS} s (direct, relays, egressgw, egressgw-h1, HAProxy, nginx), after a ${BENCH_WARMUP:-2} s unmeasured
run per path at the same rate. Added = the chain's median minus the direct median. CPU: each
proxy's user + system time (/proc, all threads and processes) over the run's wall time,
scaled to 1,000 requests/s by the rate achieved.

$table

Targets (egressgw):
$target

h2load command line (ADDR:PORT the sidecar's, or $direct for direct):

    h2load --h1 -t1 -c$S3_CONNS --rps=$S3_RATE -D $SECS --log-file=LOG --connect-to=ADDR:PORT http://$S3_HOST/small"
}
