#!/usr/bin/env bash
# The supply-chain gate (`make supply-chain`, run by .ci/run):
#   advisories  cargo-audit against the offline RustSec copy ../shared/advisory-db; any
#               advisory that applies (vulnerability, unmaintained, unsound, yanked) fails,
#               except the ones .cargo/audit.toml ignores, each with its reason
#   licenses    cargo-deny: every crate's licence is on deny.toml's allow-list
#   bans        cargo-deny: no two semver-incompatible versions of a crate, except deny.toml's
#               skip list (each with its reason); no wildcard versions
#   sources     cargo-deny: crates.io only
# The SBOM in each .deb is written by scripts/deb-build.sh and checked by
# swtpm-tests/tests/ops_deb.rs (make test).
#
# Usage: scripts/supply-check.sh [advisories|licenses|bans|sources]...   (default: all)
# Tools are pinned below and installed once per machine into the tool cache
# (scripts/supply-tool.sh; /var/tmp/vouch-tools). The advisory database: $VOUCH_ADVISORY_DB,
# else shared/advisory-db beside the repository or one of its parents, else beside the checkout
# the `origin` remote points to (as scripts/testdata-dir.sh finds shared/testdata).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_AUDIT_VERSION=0.22.2
CARGO_DENY_VERSION=0.20.2
CARGO_CYCLONEDX_VERSION=0.5.9

checks=("$@")
if ((${#checks[@]} == 0)); then checks=(advisories licenses bans sources); fi

advisory_db() {
  if [ -n "${VOUCH_ADVISORY_DB:-}" ]; then echo "$VOUCH_ADVISORY_DB"; return; fi
  local start dir
  for start in "$PWD" "$(git remote get-url origin 2>/dev/null || true)"; do
    [ -n "$start" ] && [ -d "$start" ] || continue
    dir=$(cd "$start" && pwd)
    while [ "$dir" != / ]; do
      if [ -d "$dir/../shared/advisory-db/crates" ]; then (cd "$dir/../shared/advisory-db" && pwd); return; fi
      dir=$(dirname "$dir")
    done
  done
  echo "supply-check.sh: no shared/advisory-db found (set VOUCH_ADVISORY_DB)" >&2
  return 1
}

deny=()
for c in "${checks[@]}"; do
  case "$c" in
    advisories)
      db=$(advisory_db)
      PATH="$(./scripts/supply-tool.sh cargo-audit "$CARGO_AUDIT_VERSION"):$PATH"
      echo "supply-check: advisories (cargo-audit, $db)" >&2
      # --deny warnings: unmaintained, unsound and yanked crates fail too, not only
      # vulnerabilities. Ignored advisories and their reasons: .cargo/audit.toml.
      cargo audit --db "$db" --no-fetch --deny warnings
      ;;
    licenses|bans|sources) deny+=("$c") ;;
    *) echo "supply-check.sh: unknown check $c" >&2; exit 2 ;;
  esac
done
if ((${#deny[@]})); then
  PATH="$(./scripts/supply-tool.sh cargo-deny "$CARGO_DENY_VERSION"):$PATH"
  echo "supply-check: ${deny[*]} (cargo-deny, deny.toml)" >&2
  cargo deny --log-level warn check --show-stats "${deny[@]}"
fi
# The SBOM generator (scripts/supply-sbom.sh), installed here so `make test` finds it ready.
./scripts/supply-tool.sh cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION" >/dev/null
