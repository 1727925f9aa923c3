#!/usr/bin/env bash
# Writes the CycloneDX SBOM shipped in a Debian package (/usr/share/doc/PACKAGE/sbom.cdx.json).
#
# Usage: scripts/supply-sbom.sh crates PACKAGE TARGET OUT
#          the crates compiled into PACKAGE's binary for TARGET (cargo-cyclonedx, CycloneDX 1.5
#          JSON: names, versions, licences, purls, the dependency graph), build-only
#          dependencies left out
#        scripts/supply-sbom.sh debian OUT FILE.deb
#          adds (again: replaces) the Debian packages FILE.deb Depends on, as pkg:deb components
#          with the version constraint as the property debian:depends
# scripts/deb-build.sh runs `crates`, packages, runs `debian` with the Depends dpkg-shlibdeps
# found, and packages again. cargo-cyclonedx is installed once per machine into the tool cache
# (scripts/supply-tool.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_CYCLONEDX_VERSION=0.5.9
command -v jq >/dev/null 2>&1 || ./scripts/install-deps.sh jq >&2

crates() {
  local package=$1 target=$2 out=$3 manifest keep
  PATH="$(./scripts/supply-tool.sh cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION"):$PATH"
  manifest=$(cargo metadata --no-deps --format-version 1 |
    jq -r --arg p "$package" '.packages[] | select(.name == $p) | .manifest_path')
  [ -n "$manifest" ] || { echo "supply-sbom.sh: no package $package" >&2; exit 2; }
  # cargo-cyclonedx writes one SBOM beside every workspace member's manifest (it has no way to
  # pick one); a unique name keeps concurrent runs apart, and all of them are removed on exit.
  name=".sbom-$$"
  bom="$(dirname "$manifest")/$name.json"
  trap 'find . -maxdepth 2 -name ".sbom-$$.json" -delete' EXIT
  cargo cyclonedx --quiet --manifest-path "$manifest" --format json --spec-version 1.5 \
    --target "$target" --no-build-deps --all --override-filename "$name"

  # cargo-cyclonedx reads `cargo metadata`, whose resolution unifies features across the whole
  # workspace (swtpm-tests and dev-dependencies included), so it lists crates that
  # `cargo build -p PACKAGE` (what cargo-deb runs) never compiles, e.g. x509-parser for the
  # agent. Keep exactly the crates cargo's own resolver picks for PACKAGE alone.
  keep=$(cargo tree -q -e normal -p "$package" --target "$target" --prefix none -f '{p}' |
    awk '{ print $1 " " substr($2, 2) }' | sort -u | jq -R . | jq -s .)
  mkdir -p "$(dirname "$out")"
  # Build paths (file:// URLs of the workspace crates) say nothing about the package: made
  # relative to the workspace.
  jq --argjson keep "$keep" --arg root "$(pwd)" '
    ([ .components[] | select(((.name + " " + .version) as $k | $keep | index($k)) == null)
       | ."bom-ref" ]) as $drop
    | .components = [ .components[] | select(."bom-ref" as $r | $drop | index($r) | not) ]
    | .dependencies = [ (.dependencies // [])[] | select(.ref as $r | $drop | index($r) | not)
        | .dependsOn = [ (.dependsOn // [])[] | select(. as $r | $drop | index($r) | not) ] ]
    | walk(if type == "string" then (split("file://" + $root) | join("file://.")) else . end)
  ' "$bom" >"$out.tmp"
  mv "$out.tmp" "$out"
}

debian() {
  local out=$1 deb=$2 debs
  # "libc6 (>= 2.34), libgcc-s1, adduser" -> one component each.
  debs=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/^ *//; s/ *$//' | grep -v '^$' |
    jq -R '
      (split(" ") | .[0] | split(":") | .[0]) as $n
      | { type: "library", "bom-ref": ("pkg:deb/debian/" + $n), name: $n,
          purl: ("pkg:deb/debian/" + $n), scope: "required",
          properties: [ { name: "debian:depends", value: . } ] }' | jq -s .)
  jq --argjson debs "$debs" '
    .metadata.component."bom-ref" as $root
    | def debian: startswith("pkg:deb/");
    .components = ([ .components[] | select(.purl | debian | not) ] + $debs)
    | .dependencies = [ .dependencies[]
        | .dependsOn = [ .dependsOn[] | select(debian | not) ]
        | if .ref == $root then .dependsOn += [ $debs[] | ."bom-ref" ] else . end ]
  ' "$out" >"$out.tmp"
  mv "$out.tmp" "$out"
}

case "${1:-}" in
  crates) shift; crates "$@" ;;
  debian) shift; debian "$@" ;;
  *) sed -n '4,12p' "$0" >&2; exit 2 ;;
esac
