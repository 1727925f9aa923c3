#!/usr/bin/env bash
# Builds the images of Vouch's container workflow, each only when missing:
#  - the base image localhost/vouch-debian:<key>, from a Debian 12 tarball made by mmdebstrap
#    (no container registry is needed or reachable);
#  - the test image localhost/vouch-test:<key> from containers/Containerfile.
# Each <key> is a hash of that image's inputs (the mmdebstrap recipe; the base key plus the
# Containerfile), so editing the Containerfile rebuilds the test image and nothing else.
#
# Cache: $VOUCH_CONTAINER_CACHE (default /var/tmp/vouch-containers, beside the VM tests'
# /var/tmp/vouch-vm) keeps base-<key>.tar and vouch-test-<key>.tar (a `podman save` of the test
# image): when podman's own store has lost the image, it is loaded from there in seconds.
# Older keys are removed. --force rebuilds both.
#
# Prints the test image's name (localhost/vouch-test:<key>) as its last line of stdout; also
# tags it localhost/vouch-test:latest. Needs podman, mmdebstrap, runc and catatonit (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
force=0
[ "${1:-}" = --force ] && force=1
. containers/lib.sh

./scripts/install-deps.sh podman mmdebstrap runc catatonit >/dev/null
mkdir -p "$CACHE"

suite=bookworm
mirrors=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
base_key=$(printf '%s\n' v1 minbase "$suite" "${mirrors[@]}" | sha256sum | cut -c1-16)
test_key=$(cat <(echo "$base_key") containers/Containerfile | sha256sum | cut -c1-16)
base=localhost/vouch-debian:$base_key
image=localhost/vouch-test:$test_key

log() { echo "container: $*" >&2; }

if ((force)) || ! pm image exists "$image"; then
  if ((!force)) && [ -s "$CACHE/vouch-test-$test_key.tar" ]; then
    log "loading $image from $CACHE/vouch-test-$test_key.tar"
    pm load -q -i "$CACHE/vouch-test-$test_key.tar" >&2
  fi
fi
if ((force)) || ! pm image exists "$image"; then
  if ((force)) || ! pm image exists "$base"; then
    tar="$CACHE/base-$base_key.tar"
    if ((force)) || [ ! -s "$tar" ]; then
      log "making the Debian $suite base tarball with mmdebstrap (1-2 min)"
      rm -f "$CACHE"/base-*.tar
      mmdebstrap --variant=minbase --format=tar --quiet "$suite" "$tar.tmp" "${mirrors[@]}"
      mv "$tar.tmp" "$tar"
    fi
    pm import --change 'CMD ["/bin/bash"]' "$tar" "$base" >/dev/null
  fi
  log "building $image (apt inside the build, 2-4 min)"
  pm build --network=host "${LIMITS[@]}" --build-arg "BASE=$base" -t "$image" \
    -f containers/Containerfile containers >&2
  rm -f "$CACHE"/vouch-test-*.tar
  pm save -q -o "$CACHE/vouch-test-$test_key.tar.tmp" "$image" >&2
  mv "$CACHE/vouch-test-$test_key.tar.tmp" "$CACHE/vouch-test-$test_key.tar"
fi
pm tag "$image" localhost/vouch-test:latest
echo "$image"
