#!/usr/bin/env bash
# Installs the Debian 12 packages a make target needs, only those missing.
# Usage: scripts/deps.sh GROUP...   (groups: build test demo bench fuzz)
set -euo pipefail
declare -A group=(
  [build]="gcc make pkg-config libssl-dev libnghttp2-dev libyaml-dev libc-ares-dev"
  [test]="libcmocka-dev python3 python3-pytest python3-h2 python3-grpcio curl openssl nginx-light iproute2 iptables libhttp-parser-dev nghttp2-client wrk haproxy logrotate systemd groff-base python3-yaml nodejs npm prometheus valgrind g++ libre2-dev"
  [demo]="curl openssl nginx-light"
  [bench]="wrk nghttp2-client nginx-light libnginx-mod-stream haproxy curl openssl iproute2 python3 gnuplot-nox valgrind linux-perf strace"
  [fuzz]="clang libclang-rt-14-dev"
)
want=()
for g in "$@"; do
  for p in ${group[$g]}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
    # A machine whose Node.js came from another build (NodeSource's nodejs carries npm)
    # has the commands without Debian's npm package, which conflicts with it: the
    # commands are what the tests need.
    case "$p" in nodejs) command -v node >/dev/null && continue ;; npm) command -v npm >/dev/null && continue ;; esac
    want+=("$p")
  done
done
[ ${#want[@]} -eq 0 ] && exit 0
echo "deps: installing ${want[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
# nginx-light's package starts a system nginx on port 80; our tests start their own.
if [[ " ${want[*]} " == *" nginx-light "* ]]; then
  $SUDO systemctl stop nginx 2>/dev/null || $SUDO service nginx stop 2>/dev/null || true
  $SUDO systemctl disable nginx 2>/dev/null || true
fi
