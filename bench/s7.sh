# Scenario 7: access rules. Scenario 1's job (plain HTTP in, mutual TLS out to the keep-alive
# upstream, small response) with an egress allow-list of 1,000 destinations in front of it:
# each proxy without the rules and with them, interleaved, so the difference is what the
# rules cost per request. Sourced by bench/run.sh.
#
#   egressgw  100 ALLOW AuthorizationPolicies (istio-system: mesh-wide) of 10 rules each,
#             rule n allowing GET/HEAD to acl-n.bench.local; wrk asks for acl-1000, which
#             only the last rule of the last policy admits (Istio's worst case: every policy
#             is looked at before the last one matches).
#   HAProxy   the same allow-list as a map file of the 1,000 hosts, looked up in one ACL
#             (`req.hdr(host),map_str(FILE) -m found`, an ebtree) with METH_GET, the rest
#             denied (403); and, the literal transcription, 1,000 `http-request allow if`
#             lines (host and method each) before a final deny, tried in order.
#   nginx     a `map $host` of the 1,000 hosts (a hash) and `if` on it and on the method.
# There is no mesh identity in scenario 1 (plain HTTP in), so the rules name destinations
# and methods; the indexes for principals are measured by build/tests/test_authz.
#
# RPS, CPU, P99 and ERR are lib.sh's associative arrays.
# shellcheck disable=SC2034

S7_N=1000
declare -A S7_PORT=([egressgw]=18950 [egressgw-rules]=18951 [haproxy]=18952
	[haproxy-map]=18953 [haproxy-lines]=18954 [nginx]=18955 [nginx-map]=18956)
S7_SYSTEMS="egressgw egressgw-rules haproxy haproxy-map haproxy-lines nginx nginx-map"

s7_policies() {
	local i k n
	for i in $(seq 0 99); do
		printf -- '---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n'
		printf 'metadata: {name: acl-%03d, namespace: istio-system}\nspec:\n  action: ALLOW\n  rules:\n' "$i"
		for k in $(seq 1 10); do
			n=$((i * 10 + k))
			printf '  - to:\n    - operation: {hosts: ["acl-%d.bench.local"], methods: ["GET", "HEAD"]}\n' "$n"
		done
	done
}

s7_run() {
	local sys k r host="acl-$S7_N.bench.local" table base e ratios="" i
	make_store "$W/s7-store" "${S7_PORT[egressgw]}" 8443 0
	make_store "$W/s7-store-rules" "${S7_PORT[egressgw-rules]}" 8443 0
	s7_policies > "$W/s7-policies.yaml"
	"$BUILD/egressctl" --store "$W/s7-store-rules" apply -f "$W/s7-policies.yaml" >/dev/null
	start_egressgw s7-egressgw "$W/s7-store" "$WORKERS" 18960 "${S7_PORT[egressgw]}"
	start_egressgw s7-egressgw-rules "$W/s7-store-rules" "$WORKERS" 18961 "${S7_PORT[egressgw-rules]}"

	for i in $(seq "$S7_N"); do echo "acl-$i.bench.local 1"; done > "$W/s7-hosts.map"
	start_haproxy s7-haproxy "${S7_PORT[haproxy]}" 8443 "$WORKERS"
	HAP_FRONTEND_EXTRA="  http-request deny deny_status 403 unless METH_GET { req.hdr(host),map_str($W/s7-hosts.map) -m found }" \
		start_haproxy s7-haproxy-map "${S7_PORT[haproxy-map]}" 8443 "$WORKERS"
	HAP_FRONTEND_EXTRA="$(for i in $(seq "$S7_N"); do
		echo "  http-request allow if METH_GET { req.hdr(host) -m str acl-$i.bench.local }"
	done; echo "  http-request deny deny_status 403")" \
		start_haproxy s7-haproxy-lines "${S7_PORT[haproxy-lines]}" 8443 "$WORKERS"

	start_nginx s7-nginx "${S7_PORT[nginx]}" 8443 "$WORKERS"
	NGX_HTTP_EXTRA="  map_hash_max_size 4096; map_hash_bucket_size 64;
  map \$host \$s7_ok { default 0; $(for i in $(seq "$S7_N"); do printf 'acl-%d.bench.local 1; ' "$i"; done)}" \
	NGX_SERVER_EXTRA="    if (\$s7_ok = 0) { return 403; }
    if (\$request_method !~ ^(GET|HEAD)\$) { return 403; }" \
		start_nginx s7-nginx-map "${S7_PORT[nginx-map]}" 8443 "$WORKERS"

	for sys in $S7_SYSTEMS; do wait_ok "s7-$sys" /small "$host"; done
	# The rules must refuse what they do not list, or the comparison measures nothing.
	for sys in egressgw-rules haproxy-map haproxy-lines nginx-map; do
		e=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: acl-0.bench.local" \
			"http://$PX_IP:${S7_PORT[$sys]}/small")
		[ "$e" = 403 ] || die "s7-$sys answers $e, not 403, for a host its rules do not list"
	done
	for sys in $S7_SYSTEMS; do warm "s7-$sys" /small "$host"; done
	for _ in $(seq "$ROUNDS"); do
		for sys in $S7_SYSTEMS; do measure "s7/$sys" "s7-$sys" /small "$host"; done
	done
	# egressgw decided every measured request by the policies (and allowed it).
	[ "$(eg_stat s7-egressgw-rules rbac_allowed_total)" -gt "$(echo "${REQS[s7/egressgw-rules]}" | sum)" ] ||
		die "s7-egressgw-rules: fewer RBAC decisions than requests"
	[ "$(eg_stat s7-egressgw-rules rbac_denied_total)" = 1 ] ||
		die "s7-egressgw-rules: RBAC denied something other than the one unlisted host"
	# shellcheck disable=SC2046 # one word per instance
	stop_sys $(for sys in $S7_SYSTEMS; do echo "s7-$sys"; done)

	table="| proxy | rules | requests/s | p99 ms | CPU µs/request | CPU added by the rules, µs/request | errors |
|---|---|---|---|---|---|---|"
	for sys in $S7_SYSTEMS; do
		k="s7/$sys"
		base=$(med CPU "s7/${sys%%-*}")
		e="-"
		[ "$sys" != "${sys%%-*}" ] && e=$(awk -v a="$(med CPU "$k")" -v b="$base" 'BEGIN {printf "%.1f", a - b}')
		case $sys in
		egressgw) r="none" ;; egressgw-rules) r="100 AuthorizationPolicies × 10 rules" ;;
		haproxy) r="none" ;; haproxy-map) r="map of 1,000 hosts, one ACL" ;;
		haproxy-lines) r="1,000 \`http-request allow if\` lines" ;;
		nginx) r="none" ;; nginx-map) r="\`map \$host\` of 1,000 hosts" ;;
		esac
		table+="
| ${sys%%-*} | $r | $(med_rps "$k") | $(med P99 "$k") | $(med CPU "$k") | $e | $(echo "${ERR[$k]}" | sum) |"
	done
	for sys in egressgw-rules haproxy-map haproxy-lines nginx-map; do
		ratios+="- ${sys}: requests/s with the rules / without $(ratio "$(med_rps "s7/$sys")" "$(med_rps "s7/${sys%%-*}")"); CPU per request $(ratio "$(med CPU "s7/$sys")" "$(med CPU "s7/${sys%%-*}")")
"
	done
	section 7 "## Scenario 7: access rules (1,000 allowed destinations), $WORKERS worker(s)

Scenario 1's job and small response, each proxy without and with an allow-list of 1,000
destinations, wrk asking for the last one (\`Host: $host\`), so that every request is
admitted after the whole list is considered. egressgw: 100 ALLOW AuthorizationPolicies of
10 rules (\`to: hosts, methods\`), which its index turns into one hash probe; HAProxy: the
hosts in a map file behind one ACL, and as 1,000 \`http-request allow if\` lines (the
literal transcription of 1,000 rules, tried in order); nginx: a \`map \$host\`. Every
system is checked to answer 403 for a host not listed before it is measured. The CPU a rule
set adds is the difference of the medians of the same proxy with and without it, and is
within the run-to-run noise when it is below about 1 µs.

$table

Ratios (same run):
${ratios}"
}
