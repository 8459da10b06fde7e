#!/bin/sh
# Builds egressgw's images without any registry: a Debian 12 base made locally from
# Debian's archive with mmdebstrap and imported into podman, then the Containerfile's
# runtime and init targets. Needs root (or rootless podman), podman and mmdebstrap
# (Debian packages) and access to the Debian archive apt uses.
# Usage: deploy/container/build.sh [TAG]     (default: git describe, else latest)
set -eu
cd "$(dirname "$0")/../.."
tag=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo latest)}
if ! podman image exists localhost/debian:bookworm; then
    mmdebstrap --variant=apt --format=tar bookworm - | podman import - localhost/debian:bookworm
fi
podman build --network=host -f deploy/container/Containerfile --target runtime \
    --build-arg VERSION="$tag" -t "localhost/egressgw:$tag" -t localhost/egressgw:latest .
podman build --network=host -f deploy/container/Containerfile --target init \
    --build-arg VERSION="$tag" -t "localhost/egressgw-init:$tag" -t localhost/egressgw-init:latest .
