//! Test harness for Vouch's integration tests: one private swtpm per test, and helpers to run the
//! workspace's binaries.
//!
//! Each [`Swtpm`] gets its own absolute temporary state directory, its own loopback port pair and a
//! copy of a prepared TPM state with EK certificates issued by a local CA that lives inside the
//! same temporary directory. The prepared state is made once per machine by `swtpm_setup`
//! (~0.6 s) and cached; copying it is far cheaper than running `swtpm_setup` for every test.
//! The process is killed and the directory removed on drop, also when the test panics.
#![forbid(unsafe_code)]

pub mod adversary;
mod bins;
mod boot;
pub mod cli_env;
pub mod load;
pub mod postgres;
pub mod stack;
mod swtpm;
mod template;
pub mod tpm_dev;
pub mod vm;

pub use bins::{bin_path, run, Output};
pub use swtpm::{HarnessError, Swtpm};

/// Root of the shared real-world test data (`../shared/testdata` from the repository root).
pub fn testdata() -> std::path::PathBuf {
    testdata_dir::testdata_dir()
}

#[path = "../../testsupport/testdata.rs"]
mod testdata_dir;
