//! A test that fails only when asked to: `VOUCH_SELFTEST_FAIL=1`. scripts/container-test-selftest.sh
//! runs `scripts/container-test.sh --test container_selftest` with and without it, to show that a
//! test failing inside the container makes the container workflow (and so CI) fail.

#[test]
fn fails_when_vouch_selftest_fail_is_set() {
    let asked = std::env::var_os("VOUCH_SELFTEST_FAIL").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(!asked, "failing on purpose: VOUCH_SELFTEST_FAIL is set");
}

#[test]
fn passes_always() {
    // A second test in the same binary: with --no-fail-fast both are reported.
    assert_eq!(2 + 2, 4);
}
