# Scenario 6, the mesh path: sidecar -> gateway -> upstream with the application's TLS end
# to end, as Istio's "Egress Gateways" HTTPS part runs it in a pod. The application's
# connection to the external name's address is redirected to its sidecar by iptables (a
# sidecar learns where it was going from SO_ORIGINAL_DST and the ClientHello's SNI, which
# needs the redirect); the sidecar routes it by SNI to its gateway, which routes it by SNI
# to the upstream. Nothing terminates the application's TLS. The same job for the three:
#   egressgw  --role sidecar (a mesh tls: route on sniHosts to the gateway's subset) and
#             --role gateway (Gateway tls.mode PASSTHROUGH, tls: route), one store;
#   HAProxy   a sidecar and a gateway, both mode tcp + req.ssl_sni;
#   nginx     a sidecar and a gateway, both stream + ssl_preread.
# Everything runs in a network namespace the bench creates and deletes (the iptables rules
# live there): its own upstream (nginx, the application's TLS server for $UP_NAME), the
# proxies, and h2load, which connects to one address per chain ($S6C_VIP_*:443); the
# namespace's nat OUTPUT chain redirects each address to that chain's sidecar. CPU is the
# sidecar's plus the gateway's. Sourced by bench/s6.sh (needs root: ip netns, iptables).

S6C_NS=""
S6C_GW_HOST=istio-egressgateway.istio-system.svc.cluster.local
declare -A S6C_VIP=([egressgw]=10.251.0.1 [haproxy]=10.251.0.2 [nginx]=10.251.0.3)
declare -A S6C_SC_PORT=([egressgw]=18894 [haproxy]=18896 [nginx]=18897)
declare -A S6C_GW_PORT=([egressgw]=18890 [haproxy]=18892 [nginx]=18893)

s6c_ns() { ip netns exec "$S6C_NS" "$@"; }

s6c_cleanup() {
	[ -n "$S6C_NS" ] && ip netns del "$S6C_NS" 2>/dev/null
	S6C_NS=""
}

# The namespace, its loopback (127.0.0.0/8 is local there too, so $PX_IP and $UP_IP serve
# as they do outside), the chains' addresses and the rules sending each to its sidecar.
s6c_netns() {
	local sys
	S6C_NS="egw-bench-$$"
	ip netns add "$S6C_NS" || die "ip netns add $S6C_NS failed (scenario 6's mesh path needs root)"
	s6c_ns ip link set lo up
	for sys in egressgw haproxy nginx; do
		s6c_ns ip addr add "${S6C_VIP[$sys]}/32" dev lo
		s6c_ns iptables -t nat -A OUTPUT -p tcp -d "${S6C_VIP[$sys]}" --dport 443 \
			-j REDIRECT --to-ports "${S6C_SC_PORT[$sys]}"
	done
}

# egressgw's store: istio.io "Egress Gateways" HTTPS part (tests/data/egress-gateways-https)
# with the bench's names and ports: the mesh route sends SNI $UP_NAME on port 443 to the
# gateway's subset, the gateway passes it through to $UP_NAME:$UP_PT_PORT.
s6c_yaml() {
	cat <<YAML
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pt-upstream, namespace: istio-system}
spec:
  hosts: [$UP_NAME]
  ports:
  - {number: 443, name: tls, protocol: TLS}
  - {number: $UP_PT_PORT, name: tls-up, protocol: TLS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: ${S6C_GW_PORT[egressgw]}, name: tls, protocol: TLS}
    hosts: [$UP_NAME]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-upstream, namespace: istio-system}
spec:
  host: $S6C_GW_HOST
  subsets:
  - name: up
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: upstream-through-egress-gateway, namespace: istio-system}
spec:
  hosts: [$UP_NAME]
  gateways: [mesh, istio-egressgateway]
  tls:
  - match:
    - gateways: [mesh]
      port: 443
      sniHosts: [$UP_NAME]
    route:
    - destination:
        host: $S6C_GW_HOST
        subset: up
        port: {number: ${S6C_GW_PORT[egressgw]}}
  - match:
    - gateways: [istio-egressgateway]
      port: ${S6C_GW_PORT[egressgw]}
      sniHosts: [$UP_NAME]
    route:
    - destination: {host: $UP_NAME, port: {number: $UP_PT_PORT}}
YAML
}

# s6c_start NAME CMD...: CMD in the namespace, as instance NAME.
s6c_start() {
	local name=$1
	shift
	# Not through s6c_ns: a function in the background is a subshell, and $! would be
	# its pid rather than the proxy's (whose CPU is measured).
	ip netns exec "$S6C_NS" "$@" 2>"$W/$name.err" & PIDS+=($!)
	SYS_PID[$name]=$!
}

# The application's TLS server in the namespace (start_upstream's port $UP_PT_PORT server).
s6c_upstream() {
	mkdir -p "$W/s6c-up/tmp"
	cat > "$W/s6c-up/nginx.conf" <<NGX
user root; worker_processes ${BENCH_UP_WORKERS:-1}; daemon off;
pid $W/s6c-up/pid; error_log $W/s6c-up/error.log; worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $W/s6c-up/tmp;
  server {
    listen $UP_IP:$UP_PT_PORT ssl;
    ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_session_cache shared:pt:10m; ssl_protocols TLSv1.2 TLSv1.3;
    root $W/www;
  }
}
NGX
	s6c_start s6c-upstream nginx -p "$W/s6c-up" -c "$W/s6c-up/nginx.conf"
}

# HAProxy in TCP mode routing SNI $UP_NAME to backend ADDR, listening on BIND.
s6c_haproxy() { # name bind addr
	s6_haproxy_cfg "$@"
	s6c_start "$1" haproxy -f "$W/$1.cfg" -db
}

# nginx stream + ssl_preread routing SNI $UP_NAME to ADDR, listening on BIND.
s6c_nginx() { # name bind addr
	mkdir -p "$W/$1"
	cat > "$W/$1/nginx.conf" <<NGX
load_module $S6_STREAM_MOD;
user root; worker_processes $WORKERS; daemon off; master_process off;
pid $W/$1/pid; error_log $W/$1/error.log; worker_rlimit_nofile $(ulimit -Hn);
events { worker_connections 4096; }
stream {
  map \$ssl_preread_server_name \$backend { $UP_NAME $3; }
  server { listen $2; ssl_preread on; proxy_pass \$backend; }
}
NGX
	s6c_start "$1" nginx -p "$W/$1" -c "$W/$1/nginx.conf"
}

s6c_egressgw() {
	local store="$W/s6c-store" hosts="$W/s6c-hosts"
	printf '%s %s\n%s %s\n' "$UP_IP" "$UP_NAME" "$PX_IP" "$S6C_GW_HOST" > "$hosts"
	s6c_yaml > "$store.yaml"
	"$BUILD/egressctl" --store "$store" apply -f "$store.yaml" >/dev/null
	"$BUILD/egressctl" ca init --dir "$W/s6c-mesh-ca" >/dev/null
	"$BUILD/egressctl" ca issue --dir "$W/s6c-mesh-ca" --namespace default \
		--service-account sleep --out "$W/s6c-sleep-id" >/dev/null
	"$BUILD/egressctl" ca issue --dir "$W/s6c-mesh-ca" --namespace istio-system \
		--service-account istio-egressgateway-service-account --out "$W/s6c-gw-id" >/dev/null
	s6c_start s6c-egressgw-gw "$BUILD/egressgw" --role gateway --store "$store" \
		--admin "$PX_IP:18891" --hosts-file "$hosts" --dns-servers 127.0.0.1:9 \
		--workers "$WORKERS" --log-level warn --namespace istio-system \
		--labels istio=egressgateway --listen-address "$PX_IP" --identity "$W/s6c-gw-id"
	s6c_start s6c-egressgw-sc "$BUILD/egressgw" --role sidecar --store "$store" \
		--admin "$PX_IP:18895" --hosts-file "$hosts" --dns-servers 127.0.0.1:9 \
		--workers "$WORKERS" --log-level warn --namespace default \
		--identity "$W/s6c-sleep-id" --outbound "127.0.0.1:${S6C_SC_PORT[egressgw]}"
}

# s6c_wait SYS: polls until a TLS request through the chain (to its address, redirected),
# verified against the bench CA for $UP_NAME, answers 200 (10 s at most).
s6c_wait() {
	local url="https://$UP_NAME/small" r=(--resolve "$UP_NAME:443:${S6C_VIP[$1]}")
	for _ in $(seq 100); do
		s6c_ns curl -sf -o /dev/null --cacert "$W/ca.crt" "${r[@]}" "$url" && return 0
		sleep 0.1
	done
	echo "bench: the $1 chain does not relay TLS for $UP_NAME to the upstream:" >&2
	s6c_ns curl -sS -o /dev/null --cacert "$W/ca.crt" "${r[@]}" "$url" >&2 || true
	tail -n 20 "$W/s6c-$1"*.err >&2 2>/dev/null || true
	exit 1
}

# Starts the three chains and the upstream in a new namespace; S6_VIA and S6_ALSO make
# s6_measure drive h2load through instance s6c-SYS-sc's address and add its gateway's CPU.
s6c_up() {
	local sys
	s6c_netns
	s6c_upstream
	s6c_egressgw
	s6c_haproxy s6c-haproxy-gw "$PX_IP:${S6C_GW_PORT[haproxy]}" "$UP_IP:$UP_PT_PORT"
	s6c_haproxy s6c-haproxy-sc "127.0.0.1:${S6C_SC_PORT[haproxy]}" "$PX_IP:${S6C_GW_PORT[haproxy]}"
	s6c_nginx s6c-nginx-gw "$PX_IP:${S6C_GW_PORT[nginx]}" "$UP_IP:$UP_PT_PORT"
	s6c_nginx s6c-nginx-sc "127.0.0.1:${S6C_SC_PORT[nginx]}" "$PX_IP:${S6C_GW_PORT[nginx]}"
	for sys in egressgw haproxy nginx; do
		S6_VIA["s6c-$sys-sc"]=${S6C_VIP[$sys]}
		S6_ALSO["s6c-$sys-sc"]=s6c-$sys-gw
		s6c_wait "$sys"
	done
}

# s6c_tunnels ADMINPORT: egressgw's tunnel_total (connections relayed) at that admin port.
s6c_tunnels() {
	s6c_ns curl -sf "http://$PX_IP:$1/stats/prometheus" |
		awk '$1 == "egressgw_tunnel_total" {print $2; f=1} END {if (!f) print 0}'
}

# s6c_check SC0 GW0 N: both egressgw proxies relayed at least N more connections than
# their counts SC0 and GW0 (the chain went through the gateway, nothing around it).
s6c_check() {
	local sc gw
	sc=$(s6c_tunnels 18895); gw=$(s6c_tunnels 18891)
	[ $((sc - $1)) -ge "$3" ] && [ $((gw - $2)) -ge "$3" ] && return 0
	ANOMALIES+=("s6 mesh path: egressgw's sidecar relayed $((sc - $1)) and its gateway $((gw - $2)) connections, fewer than the $3 short ones measured")
}

s6c_down() {
	stop_sys s6c-egressgw-sc s6c-egressgw-gw s6c-haproxy-sc s6c-haproxy-gw s6c-nginx-sc \
		s6c-nginx-gw s6c-upstream
	s6c_cleanup
}
