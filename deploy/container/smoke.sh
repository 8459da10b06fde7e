#!/bin/sh
# Runs the walkthrough with the gateway from the image (make image): the image's file
# system is exported and each gateway the tests start runs chrooted into it (its own
# egressgw, libraries and CA bundle, nothing of the host's; EGRESSGW_ROOTFS in
# tests/integration/gwlib.py), as uid 0 without a shell. `podman run` is not used
# because on some hosts (this project's CI sandbox) the OCI runtime cannot start a
# container (crun: setrlimit not permitted, cgroups v1/v2 hybrid); where it can:
#   podman run --rm --read-only --user 1337:1337 --cap-drop=ALL IMAGE --version
# Usage: deploy/container/smoke.sh [IMAGE]   (default localhost/egressgw:latest; root)
set -eu
img=${1:-localhost/egressgw:latest}
cd "$(dirname "$0")/../.."
rootfs=$(mktemp -d /tmp/egressgw-rootfs.XXXXXX)
chmod 755 "$rootfs"
trap 'rm -rf "$rootfs"' EXIT
c=$(podman create "$img")
podman export "$c" | tar -x -C "$rootfs"
podman rm "$c" >/dev/null
echo "== $img: $(du -sh "$rootfs" | cut -f1), files:"
(cd "$rootfs" && find . -type f | sort)
chroot --userspec=1337:1337 "$rootfs" /usr/bin/egressgw --version
chroot --userspec=1337:1337 "$rootfs" /usr/bin/egressctl version --client
if chroot "$rootfs" /bin/sh -c true 2>/dev/null; then
    echo "smoke: the image has a shell" >&2; exit 1
fi
echo "== the walkthrough, the drain and rotation with the image's egressgw"
EGRESSGW_ROOTFS=$rootfs EGRESSGW_BUILD=${EGRESSGW_BUILD:-$PWD/build} \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    tests/integration/test_gateway.py tests/integration/test_mtls.py \
    tests/integration/test_lifecycle.py tests/integration/test_identity_rotation.py
