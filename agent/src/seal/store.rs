//! The newest signed policy the agent was given, per (fleet key, policyRef).
//!
//! The TPM only checks that a policy was approved by the fleet key; it cannot tell an old
//! approval from a new one. So the agent keeps the newest signed policy it accepted in
//! `<state-dir>/seal-policies/<id>.json` (`id` = first 16 bytes of SHA-256(keyName || 0x00 ||
//! policyRef), hex) and refuses any file with a lower serial, or the same serial with other
//! content. Files are verified again whenever they are read.

use super::SealError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use vouch_attest::policy_digest::SignedPolicy;

/// Largest signed policy file read.
pub const MAX_POLICY_FILE: u64 = 64 * 1024;

/// What [`PolicyStore::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The policy is newer than the one held (or none was held): it is now stored.
    Stored,
    /// The same policy is already held.
    AlreadyHeld,
}

/// Stored signed policies under a state directory.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    dir: PathBuf,
}

/// Reads a signed policy file (at most [`MAX_POLICY_FILE`] bytes) and verifies it.
pub fn read_signed_policy(path: &Path) -> Result<SignedPolicy, SealError> {
    let data = read_bounded(path, MAX_POLICY_FILE)?;
    SignedPolicy::from_json(&data).map_err(|source| SealError::SignedPolicy {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads at most `limit` bytes of a file; longer files are an error.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, SealError> {
    let err = |source| SealError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut data = Vec::new();
    file.take(limit + 1).read_to_end(&mut data).map_err(err)?;
    if data.len() as u64 > limit {
        return Err(SealError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(data)
}

impl PolicyStore {
    /// The store under `state_dir`.
    pub fn new(state_dir: &Path) -> PolicyStore {
        PolicyStore {
            dir: state_dir.join("seal-policies"),
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key_name: &[u8], policy_ref: &[u8]) -> PathBuf {
        let id = Sha256::new()
            .chain_update(key_name)
            .chain_update([0u8])
            .chain_update(policy_ref)
            .finalize();
        let id = hex::encode(id.get(..16).unwrap_or_default());
        self.dir.join(format!("{id}.json"))
    }

    /// The newest policy held for `key_name` and `policy_ref`, verified.
    pub fn newest(
        &self,
        key_name: &[u8],
        policy_ref: &[u8],
    ) -> Result<Option<SignedPolicy>, SealError> {
        let path = self.path(key_name, policy_ref);
        if !path.exists() {
            return Ok(None);
        }
        read_signed_policy(&path).map(Some)
    }

    /// Stores `policy` unless a newer one is held: refuses lower serials, and an equal serial
    /// with different content.
    pub fn offer(&self, policy: &SignedPolicy) -> Result<Offer, SealError> {
        let name = policy
            .key_name()
            .map_err(|source| SealError::SignedPolicy {
                path: self.dir.clone(),
                source,
            })?;
        let path = self.path(&name, &policy.draft.policy_ref);
        if let Some(held) = self.newest(&name, &policy.draft.policy_ref)? {
            let (given, held_serial) = (policy.draft.serial, held.draft.serial);
            if given < held_serial {
                return Err(SealError::OlderPolicy {
                    given,
                    held: held_serial,
                });
            }
            if given == held_serial {
                if held == *policy {
                    return Ok(Offer::AlreadyHeld);
                }
                return Err(SealError::SerialReused { serial: given });
            }
        }
        let json = policy.to_json().map_err(|source| SealError::SignedPolicy {
            path: path.clone(),
            source,
        })?;
        let err = |source| SealError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        vouch_durable::write(&path, json.as_bytes(), vouch_durable::MODE_PUBLIC)
            .map_err(|e| err(e.into()))?;
        Ok(Offer::Stored)
    }
}
