//! vouch-fleet entry point.
fn main() {}
