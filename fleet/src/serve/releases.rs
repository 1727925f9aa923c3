//! The approved releases policies reference: every `NAME.toml` in the configured releases
//! directory (format: `tpm-policies/README.md`), read together with the policies (at start and
//! on SIGHUP) and by the commands that load a policy. A policy is used only as its effective
//! policy (`vouch_attest::release::effective`): a referenced release that is missing or broken
//! makes the policy unusable, never silently empty.

use crate::config::valid_policy_name;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vouch_attest::errors::chain;
use vouch_attest::release::{Lookup, Release, MAX_RELEASE_BYTES};

/// Loaded releases by name, and the files that failed to load with why.
#[derive(Debug, Default)]
pub struct ReleaseStore {
    loaded: HashMap<String, Release>,
    broken: HashMap<String, String>,
}

/// Path of the release called `name` in `dir`.
pub fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml"))
}

/// Reads and parses one release file (bounded size); the message names the file.
pub fn load_file(path: &Path) -> Result<Release, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_RELEASE_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(|e| format!("{}: {}", path.display(), chain(&e)))?;
    Release::from_toml(&text).map_err(|e| format!("{}: {}", path.display(), chain(&e)))
}

/// The release names in `dir` (files `NAME.toml` with a valid name), sorted; a missing
/// directory has none.
pub fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".toml"))
                .filter(|n| valid_policy_name(n))
                .map(str::to_string)
        })
        .collect();
    out.sort_unstable();
    out
}

impl ReleaseStore {
    /// Loads every release in `dir` (a missing directory is an empty store).
    pub fn load(dir: &Path) -> ReleaseStore {
        let mut store = ReleaseStore::default();
        for name in names(dir) {
            match load_file(&path_of(dir, &name)) {
                Ok(r) => {
                    store.loaded.insert(name, r);
                }
                Err(e) => {
                    store.broken.insert(name, e);
                }
            }
        }
        store
    }

    /// What `name` resolves to.
    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        if let Some(r) = self.loaded.get(name) {
            return Lookup::Found(r);
        }
        match self.broken.get(name) {
            Some(why) => Lookup::Unusable(why),
            None => Lookup::Missing,
        }
    }
}
