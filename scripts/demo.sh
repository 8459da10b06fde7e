#!/usr/bin/env bash
# The Istio task "Egress Gateways with TLS Origination", end to end, on this machine, with
# egressgw and egressctl in place of Istio, kubectl and istioctl. Processes play the pods:
#   - nginx on 127.0.0.10 plays edition.cnn.com (port 80 answers 301 to https; port 443
#     serves /politics with a certificate from a demo public CA);
#   - egressgw --role gateway on 127.0.0.11 plays istio-egressgateway (identity from the
#     mesh CA; trusts the demo CA through SSL_CERT_FILE as a real gateway trusts public CAs);
#   - egressgw --role sidecar on 127.0.0.1:15001 plays the sleep pod's istio-proxy; the
#     sleep pod's curl reaches it as its HTTP proxy (http_proxy / https_proxy);
#   - nginx on 127.0.0.12 plays my-nginx.mesh-external.svc.cluster.local, with the
#     walkthrough's own nginx.conf and the Secrets' files where the Deployment mounts them.
# Names resolve through one hosts file (--hosts-file) standing in for the cluster's DNS.
# The YAML applied is the walkthrough's own, from examples/.
# Usage: make demo   (or EGRESSGW_BUILD=build scripts/demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BUILD=${EGRESSGW_BUILD:-$PWD/build}
W=$(mktemp -d /tmp/egressgw-demo.XXXXXX)
CNN_IP=127.0.0.10
GW_IP=127.0.0.11
NGINX_IP=127.0.0.12
SIDECAR=127.0.0.1:15001
GW_ADMIN=127.0.0.1:15000
SIDECAR_ADMIN=127.0.0.1:15010
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
export EGRESSGW_STORE="$W/store"
PATH="$BUILD:$PATH"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '\033[2m(%s)\033[0m\n' "$*"; }
# Prints a command as the walkthrough shows it, then runs it.
run() { printf '$ %s\n' "$*"; "$@"; }
# The same for a command line with pipes or redirections.
run_sh() { printf '$ %s\n' "$1"; bash -c "$1"; }
# The same, without the command's stderr (openssl's key generation progress).
run_q() { printf '$ %s\n' "$1"; bash -c "$1" 2>/dev/null; }
apply_file() {
  printf '$ egressctl apply %s-f - <<EOF\n' "${2:+$2 }"; cat "$1"; printf 'EOF\n'
  # shellcheck disable=SC2086
  egressctl apply ${2:-} -f "$1"
}
wait_admin() { for _ in $(seq 100); do curl -sf "http://$1/ready" >/dev/null && return; sleep 0.1; done; echo "demo: $1 not ready" >&2; exit 1; }
# A change to the store reaches both proxies within a fraction of a second (inotify).
settle() { sleep 0.5; }

step "Before you begin: the mesh CA, and the workloads' identities"
run egressctl ca init --dir "$W/mesh-ca"
run egressctl ca issue --dir "$W/mesh-ca" --namespace istio-system \
    --service-account istio-egressgateway-service-account --out "$W/gateway-identity"
run egressctl ca issue --dir "$W/mesh-ca" --namespace default --service-account sleep \
    --out "$W/sleep-identity"

step "Before you begin: nginx playing edition.cnn.com on $CNN_IP"
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
cat > "$W/hosts" <<HOSTS
$CNN_IP edition.cnn.com
$GW_IP istio-egressgateway.istio-system.svc.cluster.local
$NGINX_IP my-nginx.mesh-external.svc.cluster.local
HOSTS
note "names resolve through $W/hosts, the stand-in for the cluster's DNS:"
sed 's/^/    /' "$W/hosts"

step "Before you begin: deploy the egress gateway (istio-egressgateway in istio-system)"
printf '$ egressgw --role gateway --namespace istio-system --labels istio=egressgateway \\\n'
printf '    --identity gateway-identity --listen-address %s --admin %s \\\n' "$GW_IP" "$GW_ADMIN"
printf '    --access-log gateway.log --hosts-file hosts &\n'
SSL_CERT_FILE="$W/demo-ca.crt" egressgw --role gateway --namespace istio-system \
    --labels istio=egressgateway --identity "$W/gateway-identity" --listen-address "$GW_IP" \
    --admin "$GW_ADMIN" --access-log "$W/gateway.log" --hosts-file "$W/hosts" --workers 1 \
    --log-level warn & PIDS+=($!)
wait_admin "$GW_ADMIN"

step "Before you begin: the sleep pod's sidecar, and its curl"
printf '$ egressgw --role sidecar --namespace default --identity sleep-identity \\\n'
printf '    --outbound %s --admin %s --access-log sidecar.log --hosts-file hosts &\n' "$SIDECAR" "$SIDECAR_ADMIN"
egressgw --role sidecar --namespace default --identity "$W/sleep-identity" \
    --outbound "$SIDECAR" --admin "$SIDECAR_ADMIN" --access-log "$W/sidecar.log" \
    --hosts-file "$W/hosts" --workers 1 --log-level warn & PIDS+=($!)
wait_admin "$SIDECAR_ADMIN"
note "the sleep container's environment: its sidecar is its HTTP proxy, and it trusts the demo public CA"
run_sh "export http_proxy=http://$SIDECAR https_proxy=http://$SIDECAR CURL_CA_BUNDLE=$W/demo-ca.crt"
export http_proxy=http://$SIDECAR https_proxy=http://$SIDECAR CURL_CA_BUNDLE=$W/demo-ca.crt
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy NO_PROXY no_proxy
note "kubectl exec \"\${SOURCE_POD}\" -c sleep -- curl ...  is plain curl here"

step "Perform TLS origination with an egress gateway"
step "1. Define a ServiceEntry for edition.cnn.com"
apply_file examples/01-serviceentry-cnn.yaml
settle

step "2. Verify that the ServiceEntry was applied: 301 Moved Permanently (then https, through a CONNECT tunnel)"
run curl -sSL -o /dev/null -D - http://edition.cnn.com/politics

step "3. An egress Gateway for edition.cnn.com, port 80, and a DestinationRule for the sidecar's requests to it"
apply_file examples/02-gateway-destinationrule-cnn.yaml

step "4. A VirtualService through the egress gateway, and a DestinationRule for TLS origination"
apply_file examples/03-virtualservice-destinationrule-cnn.yaml
settle

step "5. Send an HTTP request to http://edition.cnn.com/politics: 200 OK, no 301"
run curl -sSL -o /dev/null -D - http://edition.cnn.com/politics

step "6. The egress gateway's log shows the request"
sleep 0.3
note "kubectl logs -l istio=egressgateway -c istio-proxy -n istio-system | tail  is the gateway's access log"
run tail -n 1 "$W/gateway.log"
note "and the sidecar's own access log:"
run tail -n 1 "$W/sidecar.log"

step "Cleanup the TLS origination example"
run egressctl delete gateway istio-egressgateway
run egressctl delete serviceentry cnn
run egressctl delete virtualservice direct-cnn-through-egress-gateway
run egressctl delete destinationrule originate-tls-for-edition-cnn-com
run egressctl delete destinationrule egressgateway-for-cnn

step "Perform mutual TLS origination with an egress gateway"
step "Generate client and server certificates and keys"
mkdir -p "$W/certs"
cd "$W/certs"
run_q "openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=example Inc./CN=example.com' -keyout example.com.key -out example.com.crt"
run_q 'openssl req -out my-nginx.mesh-external.svc.cluster.local.csr -newkey rsa:2048 -nodes -keyout my-nginx.mesh-external.svc.cluster.local.key -subj "/CN=my-nginx.mesh-external.svc.cluster.local/O=some organization"'
run_sh 'openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key -set_serial 0 -in my-nginx.mesh-external.svc.cluster.local.csr -out my-nginx.mesh-external.svc.cluster.local.crt'
run_q 'openssl req -out client.example.com.csr -newkey rsa:2048 -nodes -keyout client.example.com.key -subj "/CN=client.example.com/O=client organization"'
run_sh 'openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key -set_serial 1 -in client.example.com.csr -out client.example.com.crt'

step "Deploy a mutual TLS server"
run egressctl create namespace mesh-external
run egressctl create -n mesh-external secret tls nginx-server-certs --key my-nginx.mesh-external.svc.cluster.local.key --cert my-nginx.mesh-external.svc.cluster.local.crt
run egressctl create -n mesh-external secret generic nginx-ca-certs --from-file=example.com.crt
printf '$ cat <<\\EOF > ./nginx.conf\n'
cat > ./nginx.conf <<\EOF
events {
}

http {
  log_format main '$remote_addr - $remote_user [$time_local]  $status '
  '"$request" $body_bytes_sent "$http_referer" '
  '"$http_user_agent" "$http_x_forwarded_for"';
  access_log /var/log/nginx/access.log main;
  error_log  /var/log/nginx/error.log;

  server {
    listen 443 ssl;

    root /usr/share/nginx/html;
    index index.html;

    server_name my-nginx.mesh-external.svc.cluster.local;
    ssl_certificate /etc/nginx-server-certs/tls.crt;
    ssl_certificate_key /etc/nginx-server-certs/tls.key;
    ssl_client_certificate /etc/nginx-ca-certs/example.com.crt;
    ssl_verify_client on;
  }
}
EOF
cat ./nginx.conf; printf 'EOF\n'
note "no ConfigMap, Service or Deployment: the pod is an nginx process on $NGINX_IP, and the Secrets' files are mounted where the Deployment mounts them (a store keeps a Secret as a directory of files, as a Secret volume does)"
mkdir -p "$W/my-nginx/logs"
sed -e "s|listen 443 ssl;|listen $NGINX_IP:443 ssl;|" \
    -e "s|/var/log/nginx/|$W/my-nginx/logs/|" \
    -e "s|/etc/nginx-server-certs/|$EGRESSGW_STORE/secrets/mesh-external/nginx-server-certs/|" \
    -e "s|/etc/nginx-ca-certs/|$EGRESSGW_STORE/secrets/mesh-external/nginx-ca-certs/|" \
    ./nginx.conf > "$W/my-nginx/nginx.conf"
note "the lines that differ from the walkthrough's nginx.conf:"
diff -u ./nginx.conf "$W/my-nginx/nginx.conf" | sed -n '3,$p' | grep '^[-+]' | sed 's/^/    /' || true
nginx -p "$W/my-nginx" -c "$W/my-nginx/nginx.conf" \
    -g "daemon off; pid $W/my-nginx/pid;$( [ "$(id -u)" = 0 ] && echo " user root;" )" 2>/dev/null & PIDS+=($!)

step "Configure mutual TLS origination for egress traffic"
step "1. The client's certificates, in the egress gateway's namespace"
run egressctl create secret -n istio-system generic client-credential --from-file=tls.key=client.example.com.key \
  --from-file=tls.crt=client.example.com.crt --from-file=ca.crt=example.com.crt

step "2. An egress Gateway for my-nginx.mesh-external.svc.cluster.local, port 443, and a DestinationRule"
apply_file "$REPO/examples/04-gateway-destinationrule-nginx.yaml"

step "3. A VirtualService through the egress gateway"
apply_file "$REPO/examples/05-virtualservice-nginx.yaml"

step "4. A DestinationRule to perform mutual TLS origination"
apply_file "$REPO/examples/06-destinationrule-originate-mtls-nginx.yaml" "-n istio-system"
settle

step "5. The credential is supplied to the egress gateway and active"
note "istioctl ... deploy/istio-egressgateway reads the gateway's admin endpoint: \$EGRESSGW_ADMIN"
export EGRESSGW_ADMIN=$GW_ADMIN
run_sh "egressctl -n istio-system proxy-config secret deploy/istio-egressgateway | grep client-credential"

step "6. Send an HTTP request to http://my-nginx.mesh-external.svc.cluster.local"
run curl -sS http://my-nginx.mesh-external.svc.cluster.local

step "7. The egress gateway's log shows the request"
sleep 0.3
run_sh "cat $W/gateway.log | grep 'my-nginx.mesh-external.svc.cluster.local' | grep HTTP"

step "Cleanup the mutual TLS origination example"
run egressctl delete secret nginx-server-certs nginx-ca-certs -n mesh-external
run egressctl delete secret client-credential -n istio-system
note "kubectl delete configmap/service/deployment: stop the nginx process"
kill "${PIDS[-1]}" 2>/dev/null || true
run egressctl delete namespace mesh-external
run egressctl delete gateway istio-egressgateway
run egressctl delete virtualservice direct-nginx-through-egress-gateway
run egressctl delete destinationrule -n istio-system originate-mtls-for-nginx
run egressctl delete destinationrule egressgateway-for-nginx
run rm example.com.crt example.com.key my-nginx.mesh-external.svc.cluster.local.crt my-nginx.mesh-external.svc.cluster.local.key my-nginx.mesh-external.svc.cluster.local.csr client.example.com.crt client.example.com.csr client.example.com.key
run rm ./nginx.conf

step "Cleanup"
note "kubectl delete service sleep / deployment sleep: stop the sidecar; the gateway goes last"
echo
echo "demo: done"
