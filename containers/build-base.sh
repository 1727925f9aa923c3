#!/usr/bin/env bash
# Builds the local base image localhost/vouch-debian:bookworm with mmdebstrap (no registry
# needed) and the test image localhost/vouch-test from containers/Containerfile. Idempotent:
# skips what exists unless --force.
set -euo pipefail
cd "$(dirname "$0")/.."
force=0
[ "${1:-}" = --force ] && force=1

./scripts/install-deps.sh podman mmdebstrap runc >&2

# On this kind of machine (cgroup v1/v2 hybrid, open-files hard limit 20000) crun refuses to
# start containers ("cgroups in hybrid mode not supported", "setrlimit RLIMIT_NOFILE"): use
# runc and limits the host allows. Override with PODMAN_FLAGS.
read -r -a flags <<<"${PODMAN_FLAGS:---runtime runc}"
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

if ((force)) || ! podman "${flags[@]}" image exists localhost/vouch-debian:bookworm; then
  tar="$(mktemp -d)/base.tar"
  mmdebstrap --variant=minbase --quiet bookworm "$tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  podman "${flags[@]}" import --change 'CMD ["/bin/bash"]' "$tar" localhost/vouch-debian:bookworm
  rm -rf "$(dirname "$tar")"
fi
if ((force)) || ! podman "${flags[@]}" image exists localhost/vouch-test; then
  podman "${flags[@]}" build --network=host "${limits[@]}" -t localhost/vouch-test -f containers/Containerfile containers
fi
