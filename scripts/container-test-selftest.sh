#!/usr/bin/env bash
# Shows that the container workflow reports a failure: runs scripts/container-test.sh on the
# swtpm-tests test binary `container_selftest`, once as is (must exit 0) and once with
# VOUCH_SELFTEST_FAIL=1, which makes one of its tests fail inside the container (must exit
# non-zero, and the failing test must be named in the output). Exits 0 when both hold.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "container-test-selftest: the passing run" >&2
VOUCH_SELFTEST_FAIL= scripts/container-test.sh --test container_selftest

echo "container-test-selftest: the run with a test failing on purpose" >&2
status=0
VOUCH_SELFTEST_FAIL=1 scripts/container-test.sh --test container_selftest >"$log" 2>&1 || status=$?
cat "$log"
if [ "$status" = 0 ]; then
  echo "container-test-selftest: FAILED: a failing test inside the container gave exit status 0" >&2
  exit 1
fi
if ! grep -q "fails_when_vouch_selftest_fail_is_set" "$log" || ! grep -q "1 passed; 1 failed" "$log"; then
  echo "container-test-selftest: FAILED: the failing test was not reported (exit status $status)" >&2
  exit 1
fi
echo "container-test-selftest: ok (a failing test gave exit status $status)" >&2
