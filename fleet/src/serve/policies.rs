//! The reference-value policies the fleet appraises devices against: every `NAME.toml` in the
//! configured policies directory (format: `tpm-policies/README.md`), loaded at start and again on
//! SIGHUP. A device uses the policy assigned to it (`vouch-fleet device set-policy`) or the
//! configured default. A policy that is assigned but missing or invalid makes the verdict
//! untrusted with a named reason: appraisal fails closed. A policy that references releases
//! (`releases = [...]`) is stored as its effective policy, with the releases read from the
//! releases directory ([`super::releases`]); a missing or broken release makes it unusable.

use super::releases::ReleaseStore;
use crate::config::valid_policy_name;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vouch_attest::errors::chain;
use vouch_attest::policy::Policy;
use vouch_attest::release::effective;

/// Largest policy file read.
const POLICY_LIMIT: u64 = 1 << 20;

/// Loaded policies by name, and the files that failed to load.
#[derive(Debug, Default)]
pub struct PolicyStore {
    loaded: HashMap<String, Policy>,
    /// `vouch_attest::appraisal::policy_identity` of each loaded policy.
    identities: HashMap<String, String>,
    broken: HashMap<String, String>,
}

/// What an assigned policy name resolves to.
#[derive(Debug, Clone, Copy)]
pub enum Resolved<'a> {
    /// No policy applies (none assigned and no default).
    None,
    /// The policy to evaluate.
    Policy(&'a str, &'a Policy),
    /// Assigned but not usable, with why.
    Unusable(&'a str, &'a str),
}

/// Path of the policy called `name` in `dir`.
pub fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml"))
}

/// Reads and parses one policy file (bounded size) and makes it effective with `releases`.
pub fn load_file(path: &Path, releases: &ReleaseStore) -> Result<Policy, String> {
    let policy = read_file(path)?;
    effective(&policy, |name| releases.lookup(name))
        .map_err(|e| format!("{}: {}", path.display(), chain(&e)))
}

/// Reads and parses one policy file (bounded size), as written (releases not applied).
pub fn read_file(path: &Path) -> Result<Policy, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(POLICY_LIMIT + 1).read_to_string(&mut text))
        .map_err(|e| format!("{}: {}", path.display(), chain(&e)))?;
    if text.len() as u64 > POLICY_LIMIT {
        return Err(format!(
            "{}: larger than {POLICY_LIMIT} bytes",
            path.display()
        ));
    }
    Policy::from_toml(&text).map_err(|e| format!("{}: {}", path.display(), chain(&e)))
}

impl PolicyStore {
    /// Loads every `*.toml` in `dir`, each made effective with the releases in `releases_dir`
    /// (a missing directory is an empty store).
    pub fn load(dir: &Path, releases_dir: &Path) -> PolicyStore {
        let mut store = PolicyStore::default();
        let releases = ReleaseStore::load(releases_dir);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return store;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".toml"))
                .filter(|n| valid_policy_name(n))
                .map(str::to_string)
            else {
                continue;
            };
            match load_file(&path, &releases) {
                Ok(p) => {
                    let id = vouch_attest::appraisal::policy_identity(&name, &p);
                    store.identities.insert(name.clone(), id);
                    store.loaded.insert(name, p);
                }
                Err(e) => {
                    store.broken.insert(name, e);
                }
            }
        }
        store
    }

    /// Names of the loaded policies and of the ones that failed, with why.
    pub fn summary(&self) -> (Vec<&str>, Vec<(&str, &str)>) {
        let mut ok: Vec<&str> = self.loaded.keys().map(String::as_str).collect();
        ok.sort_unstable();
        let mut bad: Vec<(&str, &str)> = self
            .broken
            .iter()
            .map(|(n, e)| (n.as_str(), e.as_str()))
            .collect();
        bad.sort_unstable();
        (ok, bad)
    }

    /// The identity of a loaded policy (its name and a digest of its contents), under which a
    /// steady-state appraisal keeps its verdict.
    pub fn identity(&self, name: &str) -> Option<&str> {
        self.identities.get(name).map(String::as_str)
    }

    /// Resolves a device's policy: its assignment, else `default`.
    pub fn resolve<'a>(
        &'a self,
        assigned: Option<&'a str>,
        default: Option<&'a str>,
    ) -> Resolved<'a> {
        let Some(name) = assigned.or(default) else {
            return Resolved::None;
        };
        if let Some(p) = self.loaded.get(name) {
            return Resolved::Policy(name, p);
        }
        match self.broken.get(name) {
            Some(why) => Resolved::Unusable(name, why),
            None => Resolved::Unusable(name, "no such policy in the policies directory"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_valid_files_and_remembers_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tpm-policies");
        let example = std::fs::read_dir(&repo)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "toml"))
            .unwrap();
        std::fs::copy(&example, dir.path().join("good.toml")).unwrap();
        std::fs::write(dir.path().join("bad.toml"), "version = 1\nbogus = 2\n").unwrap();
        std::fs::write(dir.path().join(".hidden.toml"), "x").unwrap();
        let store = PolicyStore::load(dir.path(), &dir.path().join("releases"));
        let (ok, bad) = store.summary();
        assert_eq!(ok, ["good"]);
        assert_eq!(bad.len(), 1);
        assert!(matches!(
            store.resolve(None, Some("good")),
            Resolved::Policy("good", _)
        ));
        assert!(matches!(
            store.resolve(Some("bad"), Some("good")),
            Resolved::Unusable("bad", _)
        ));
        assert!(matches!(
            store.resolve(Some("gone"), None),
            Resolved::Unusable("gone", _)
        ));
        assert!(matches!(store.resolve(None, None), Resolved::None));
        assert!(
            !valid_policy_name("../x") && !valid_policy_name("") && valid_policy_name("rhel9-sb")
        );
    }

    /// The server's store: a policy referencing a release is stored as its effective policy; one
    /// referencing a release that does not exist, or does not load, is unusable with the name.
    #[test]
    fn policies_referencing_releases_are_effective_or_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let (policies, releases) = (dir.path().join("policies"), dir.path().join("releases"));
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::create_dir_all(&releases).unwrap();
        let digest = "ab".repeat(32);
        std::fs::write(
            releases.join("r1.toml"),
            format!("version = 1\n[[initrds]]\nsha256 = \"{digest}\"\n"),
        )
        .unwrap();
        std::fs::write(releases.join("broken.toml"), "version = 1\nx = 1\n").unwrap();
        for (name, refs) in [("uses", "r1"), ("missing", "r2"), ("bad", "broken")] {
            std::fs::write(
                policies.join(format!("{name}.toml")),
                format!("version = 1\nreleases = [\"{refs}\"]\n"),
            )
            .unwrap();
        }
        let store = PolicyStore::load(&policies, &releases);
        let Resolved::Policy(_, p) = store.resolve(Some("uses"), None) else {
            panic!("{:?}", store.summary());
        };
        assert_eq!(p.initrd.as_ref().unwrap().sha256[0].to_string(), digest);
        let Resolved::Unusable(_, why) = store.resolve(Some("missing"), None) else {
            panic!("missing release accepted");
        };
        assert!(why.contains("\"r2\" is not an approved release"), "{why}");
        let Resolved::Unusable(_, why) = store.resolve(Some("bad"), None) else {
            panic!("broken release accepted");
        };
        assert!(
            why.contains("broken") && why.contains("does not load"),
            "{why}"
        );
    }
}
