//! The effective policy: a policy's own rules plus the components of every release it
//! references, computed by [`effective`], which every caller (the fleet server's policy
//! store, `policy check`, `quote verify`, the HTTP API) uses before appraisal.

use super::format::Release;
use crate::policy::{union, MergeError, Policy};
use thiserror::Error;

/// What a release name resolves to.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'r> {
    /// The release.
    Found(&'r Release),
    /// No release of that name exists.
    Missing,
    /// It exists but does not load (why).
    Unusable(&'r str),
}

/// Why a policy's releases cannot be applied: the policy is unusable (fails closed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EffectiveError {
    /// A referenced release does not exist.
    #[error("releases: {name:?} is not an approved release")]
    Missing {
        /// The name referenced.
        name: String,
    },
    /// A referenced release does not load.
    #[error("releases: {name:?} does not load: {why}")]
    Unusable {
        /// The name referenced.
        name: String,
        /// Why.
        why: String,
    },
    /// A release's components cannot be unioned with the policy's.
    #[error("releases: {name:?} cannot be combined with the policy")]
    Merge {
        /// The release.
        name: String,
        /// Why.
        source: MergeError,
    },
}

/// The policy `policy` stands for: its own rules, with the components of every release in
/// `policy.releases` added ([`crate::policy::union`]). A name `lookup` cannot resolve is an
/// error, never an empty release. A policy without releases is returned unchanged.
pub fn effective<'r>(
    policy: &Policy,
    lookup: impl Fn(&str) -> Lookup<'r>,
) -> Result<Policy, EffectiveError> {
    let mut out = policy.clone();
    for name in &policy.releases {
        let release = match lookup(name) {
            Lookup::Found(r) => r,
            Lookup::Missing => return Err(EffectiveError::Missing { name: name.clone() }),
            Lookup::Unusable(why) => {
                return Err(EffectiveError::Unusable {
                    name: name.clone(),
                    why: why.to_owned(),
                })
            }
        };
        union(&mut out, &release.to_policy()).map_err(|source| EffectiveError::Merge {
            name: name.clone(),
            source,
        })?;
    }
    Ok(out)
}
