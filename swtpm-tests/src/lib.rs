//! Test harness: one swtpm per test.
#![forbid(unsafe_code)]
