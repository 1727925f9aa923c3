#!/usr/bin/env bash
# Installs a pinned cargo tool once per machine into the project's tool cache and prints the
# directory holding its binaries (put it on PATH). Later runs, CI's included, find it there.
#
# Usage: scripts/supply-tool.sh CRATE VERSION
# Cache: $VOUCH_TOOLS_CACHE, default /var/tmp/vouch-tools (a sibling of the VM tests' cache,
# /var/tmp/vouch-vm); each tool and version has its own root, CRATE-VERSION/, so bumping a pin
# installs the new version beside the old one. `rm -rf /var/tmp/vouch-tools` starts over.
# Installs are `cargo install --locked --version VERSION --root ...`: the tool's own Cargo.lock,
# built with this machine's toolchain; a half-finished install is never taken for a finished one.
set -euo pipefail
crate=$1 version=$2
cache="${VOUCH_TOOLS_CACHE:-/var/tmp/vouch-tools}"
root="$cache/$crate-$version"
if [ ! -e "$root/.installed" ]; then
  mkdir -p "$cache"
  # One install at a time per tool (two CI jobs on one machine would otherwise both build).
  exec 9>"$cache/$crate.lock"
  flock 9
  if [ ! -e "$root/.installed" ]; then
    echo "supply-tool.sh: installing $crate $version into $root (once per machine)" >&2
    start=$(date +%s)
    rm -rf "$root.part"
    cargo install --quiet --locked --version "$version" --root "$root.part" "$crate" >&2
    rm -rf "$root"
    mv "$root.part" "$root"
    touch "$root/.installed"
    echo "supply-tool.sh: $crate $version installed in $(($(date +%s) - start)) s" >&2
  fi
fi
echo "$root/bin"
