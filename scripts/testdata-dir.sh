#!/usr/bin/env bash
# Prints the shared test data directory for `make test`: $VOUCH_TESTDATA when set, else
# `shared/testdata` beside the repository or one of its parents, else (a clone made elsewhere,
# e.g. `git clone . /tmp/x`) beside the checkout its `origin` remote points to. Prints nothing
# when none is found; the tests then name the path they looked for.
set -euo pipefail
if [ -n "${VOUCH_TESTDATA:-}" ]; then echo "$VOUCH_TESTDATA"; exit 0; fi
root=$(cd "$(dirname "$0")/.." && pwd)
search() {
    local dir=$1
    while [ "$dir" != / ] && [ -n "$dir" ]; do
        if [ -d "$dir/../shared/testdata" ]; then (cd "$dir/../shared/testdata" && pwd); return 0; fi
        dir=$(dirname "$dir")
    done
    return 1
}
search "$root" && exit 0
origin=$(git -C "$root" remote get-url origin 2>/dev/null || true)
if [ -n "$origin" ] && [ -d "$origin" ]; then
    search "$(cd "$origin" && pwd)" && exit 0
fi
exit 0
