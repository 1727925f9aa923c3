#!/usr/bin/env bash
# Builds the vouch-agent and vouch-fleet Debian packages with cargo-deb (installed if missing).
#
# Usage: scripts/deb-build.sh [--out DIR] [--profile release|dev] [--no-build]
#                             [--target TRIPLE] [--package vouch-agent|vouch-fleet]...
#                             [--deb-revision N]
#   --out DIR      where the .deb files go (default: $CARGO_TARGET_DIR/debian or target/debian)
#   --profile P    cargo profile to package (default release; `dev` packages the debug build,
#                  which the packaging test uses because `make test` has built it already)
#   --no-build     package binaries that are already built
#   --target T     cross-compile (e.g. aarch64-unknown-linux-gnu; run scripts/cross-build.sh
#                  once first so the toolchain and the foreign libtss2-dev are there);
#                  only vouch-agent is packaged then unless --package says otherwise
#   --package P    package only P (repeatable)
#   --deb-revision N  the Debian revision (default 1): the VM upgrade test packages the same
#                  build as 0.1.0-1 and 0.1.0-2 to upgrade one with the other
# Prints the paths of the packages it wrote, one a line, on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
out=""
profile=release
no_build=0
target=""
packages=()
revision=""

while (($#)); do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --no-build) no_build=1; shift ;;
    --target) target="$2"; shift 2 ;;
    --package) packages+=("$2"); shift 2 ;;
    --deb-revision) revision="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "deb-build.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

if ((${#packages[@]} == 0)); then
  if [ -n "$target" ]; then packages=(vouch-agent); else packages=(vouch-agent vouch-fleet); fi
fi

# dpkg-shlibdeps (dpkg-dev) computes Depends from what the binaries link.
if ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
  ./scripts/install-deps.sh dpkg-dev >&2
fi

if ! cargo deb --version >/dev/null 2>&1; then
  echo "deb-build.sh: installing cargo-deb $CARGO_DEB_VERSION (about 2.5 minutes)" >&2
  cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb >&2
fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
out="${out:-$target_dir/debian}"
mkdir -p "$out"

args=(--output "$out" --profile "$profile" --quiet)
if ((no_build)); then args+=(--no-build); fi
if [ -n "$target" ]; then args+=(--target "$target"); fi
if [ -n "$revision" ]; then args+=(--deb-revision "$revision"); fi
if [ "$profile" != release ]; then
  # A debug build is only packaged to check the packaging: skip stripping and compress fast.
  args+=(--no-strip --no-dbgsym --fast)
fi

# Each package ships a CycloneDX SBOM (scripts/supply-sbom.sh) as
# /usr/share/doc/<package>/sbom.cdx.json: its crates first, then, once cargo-deb has worked out
# Depends (dpkg-shlibdeps), the Debian packages too, and the package is written again with it.
case "$profile" in release) profile_dir=release ;; dev) profile_dir=debug ;; *) profile_dir=$profile ;; esac
triple="${target:-$(rustc -vV | sed -n 's/^host: //p')}"
sbom_dir="$target_dir/${target:+$target/}$profile_dir/sbom"
again=("${args[@]}")
if ((no_build == 0)); then again+=(--no-build); fi

for p in "${packages[@]}"; do
  ./scripts/supply-sbom.sh crates "$p" "$triple" "$sbom_dir/$p.cdx.json" >&2
  first=$(cargo deb -p "$p" "${args[@]}")
  ./scripts/supply-sbom.sh debian "$sbom_dir/$p.cdx.json" "$first" >&2
  # cargo-deb prints the path of the package it wrote.
  cargo deb -p "$p" "${again[@]}"
done
