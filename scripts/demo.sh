#!/usr/bin/env bash
# The Istio task "Egress Gateways with TLS Origination", run on this machine with egressgw
# and egressctl in place of Istio and kubectl. Processes play the pods:
#   - nginx on 127.0.0.10 plays edition.cnn.com (port 80 answers 301 to https; port 443
#     serves /politics with a certificate from a demo CA);
#   - egressgw --role gateway on 127.0.0.11 plays istio-egressgateway (identity from the
#     mesh CA, trusts the demo CA through SSL_CERT_FILE as a real gateway trusts public CAs);
#   - scripts/mesh-client.py plays the sleep pod's sidecar: ISTIO_MUTUAL to the gateway.
# Usage: make demo   (or EGRESSGW_BUILD=build scripts/demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${EGRESSGW_BUILD:-$PWD/build}
W=$(mktemp -d /tmp/egressgw-demo.XXXXXX)
CNN_IP=127.0.0.10
GW_IP=127.0.0.11
ADMIN=127.0.0.1:15000
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
export EGRESSGW_STORE="$W/store"
PATH="$BUILD:$PATH"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
apply_file() { printf '$ egressctl apply -f - <<EOF\n'; sed 's/^/    /' "$1"; printf 'EOF\n'; egressctl apply -f "$1"; }

step "Before you begin: a mesh CA and the workloads' identities"
run egressctl ca init --dir "$W/mesh-ca"
run egressctl ca issue --dir "$W/mesh-ca" --namespace istio-system \
    --service-account istio-egressgateway-service-account --out "$W/gateway-identity"
run egressctl ca issue --dir "$W/mesh-ca" --namespace default --service-account sleep --out "$W/sleep-identity"

step "The external service: nginx playing edition.cnn.com on $CNN_IP"
mkdir -p "$W/cnn/html" "$W/cnn/tmp"
echo "<html><body>CNN politics (demo)</body></html>" > "$W/cnn/html/politics"
openssl req -x509 -sha256 -nodes -days 30 -newkey rsa:2048 -subj '/O=demo/CN=demo public CA' \
    -keyout "$W/demo-ca.key" -out "$W/demo-ca.crt" 2>/dev/null
printf 'subjectAltName=DNS:edition.cnn.com\nextendedKeyUsage=serverAuth\n' > "$W/cnn.ext"
openssl req -newkey rsa:2048 -nodes -subj '/CN=edition.cnn.com' -keyout "$W/cnn.key" -out "$W/cnn.csr" 2>/dev/null
openssl x509 -req -sha256 -days 30 -CA "$W/demo-ca.crt" -CAkey "$W/demo-ca.key" -set_serial 42 \
    -in "$W/cnn.csr" -out "$W/cnn.crt" -extfile "$W/cnn.ext" 2>/dev/null
cat > "$W/cnn/nginx.conf" <<NGX
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1; daemon off; pid $W/cnn/pid; error_log $W/cnn/error.log;
events { worker_connections 256; }
http {
  access_log off; client_body_temp_path $W/cnn/tmp; proxy_temp_path $W/cnn/tmp;
  default_type text/html;
  server { listen $CNN_IP:80; server_name edition.cnn.com;
           location / { return 301 https://\$host\$request_uri; } }
  server { listen $CNN_IP:443 ssl; server_name edition.cnn.com; root $W/cnn/html;
           ssl_certificate $W/cnn.crt; ssl_certificate_key $W/cnn.key; }
}
NGX
nginx -p "$W/cnn" -c "$W/cnn/nginx.conf" & PIDS+=($!)
echo "$CNN_IP edition.cnn.com" > "$W/hosts"
echo "(names resolve through $W/hosts: $(cat "$W/hosts"))"
sleep 0.5

step "1. Define a ServiceEntry for edition.cnn.com"
apply_file tests/data/walkthrough/01-serviceentry-cnn.yaml

step "2. Without the egress gateway, http://edition.cnn.com/politics answers 301"
run curl -sS -o /dev/null -D - --resolve "edition.cnn.com:80:$CNN_IP" http://edition.cnn.com/politics

step "3. The egress Gateway and the DestinationRule for the sidecars' traffic to it"
apply_file tests/data/walkthrough/02-gateway-destinationrule-cnn.yaml

step "4. The VirtualService through the gateway, and TLS origination at the gateway"
apply_file tests/data/walkthrough/03-virtualservice-destinationrule-cnn.yaml

step "The egress gateway (istio-egressgateway in istio-system)"
printf '$ egressgw --role gateway --namespace istio-system --labels istio=egressgateway \\\n'
printf '    --identity gateway-identity --listen-address %s --admin %s --access-log gateway.log --hosts-file hosts\n' "$GW_IP" "$ADMIN"
SSL_CERT_FILE="$W/demo-ca.crt" egressgw --role gateway --namespace istio-system \
    --labels istio=egressgateway --identity "$W/gateway-identity" --listen-address "$GW_IP" \
    --admin "$ADMIN" --access-log "$W/gateway.log" --hosts-file "$W/hosts" --workers 1 \
    --log-level warn & PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://$ADMIN/ready" >/dev/null && break; sleep 0.1; done
run egressctl get gateway,virtualservice,destinationrule,serviceentry -A 2>/dev/null || run egressctl get gateways -A

step "5. The request, sent as the sidecar sends it (ISTIO_MUTUAL, SNI edition.cnn.com): 200, no 301"
run scripts/mesh-client.py --identity "$W/sleep-identity" --gateway "$GW_IP:80" --sni edition.cnn.com \
    --expect-identity spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account \
    http://edition.cnn.com/politics

step "6. The gateway's access log"
sleep 0.3
run tail -n 1 "$W/gateway.log"

step "Cleanup"
run egressctl delete gateway istio-egressgateway
run egressctl delete serviceentry cnn
run egressctl delete virtualservice direct-cnn-through-egress-gateway
run egressctl delete destinationrule originate-tls-for-edition-cnn-com
run egressctl delete destinationrule egressgateway-for-cnn
echo
echo "demo: done"
