//! vouch-agent entry point.
fn main() {}
