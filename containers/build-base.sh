#!/usr/bin/env bash
# Builds the local base image localhost/vouch-debian:bookworm with mmdebstrap (no registry
# needed) and the test image localhost/vouch-test from containers/Containerfile. Idempotent:
# skips what exists unless --force.
set -euo pipefail
cd "$(dirname "$0")/.."
force=0
[ "${1:-}" = --force ] && force=1

./scripts/install-deps.sh podman mmdebstrap >&2

if ((force)) || ! podman image exists localhost/vouch-debian:bookworm; then
  tar="$(mktemp -d)/base.tar"
  mmdebstrap --variant=minbase --quiet bookworm "$tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  podman import --change 'CMD ["/bin/bash"]' "$tar" localhost/vouch-debian:bookworm
  rm -rf "$(dirname "$tar")"
fi
if ((force)) || ! podman image exists localhost/vouch-test; then
  podman build --network=host -t localhost/vouch-test -f containers/Containerfile containers
fi
