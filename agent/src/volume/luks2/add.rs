//! Adding a keyslot to an existing volume (as `cryptsetup luksAddKey` does): the lowest free
//! keyslot id, the lowest free 4096-byte-aligned stretch of the keyslots area, and the digest
//! that verifies the volume key gets the new keyslot. Only the metadata passed in changes; the
//! caller writes the headers (once, with any tokens it adds alongside).

use super::super::device::BlockDevice;
use super::digest::{self, DigestError};
use super::json::{Id, Metadata};
use super::kdf::Kdf;
use super::keyslot::{self, KeyslotError, STRIPES};

/// Keyslot ids cryptsetup uses (LUKS2_KEYSLOTS_MAX).
pub const MAX_KEYSLOTS: u32 = 32;
const ALIGN: u64 = 4096;

/// Errors of adding a keyslot.
#[derive(Debug, thiserror::Error)]
pub enum AddKeyslotError {
    /// All keyslot ids are in use.
    #[error("all {MAX_KEYSLOTS} keyslot ids are in use")]
    NoFreeId,
    /// No stretch of the keyslots area is free for the new keyslot.
    #[error("the keyslots area has no free {needed} bytes for another keyslot")]
    NoSpace { needed: u64 },
    /// No digest verifies this volume key.
    #[error("no digest of the volume verifies the volume key")]
    NoDigest,
    /// Checking a digest failed.
    #[error("digest {0} is unusable")]
    Digest(u32, #[source] DigestError),
    /// Creating the keyslot failed.
    #[error("creating keyslot {0} failed")]
    Keyslot(u32, #[source] KeyslotError),
}

/// The lowest aligned offset where `size` bytes fit in the keyslots area without touching an
/// existing keyslot area.
pub fn free_area(md: &Metadata, hdr_size: u64, size: u64) -> Option<u64> {
    let start = hdr_size.checked_mul(2)?;
    let end = start.checked_add(md.config.keyslots_size.0)?;
    let mut used: Vec<(u64, u64)> = md
        .keyslots
        .values()
        .map(|k| {
            (
                k.area.offset.0,
                k.area.offset.0.saturating_add(k.area.size.0),
            )
        })
        .collect();
    used.sort_unstable();
    let mut candidate = start;
    for (a, b) in used {
        if candidate.checked_add(size)? <= a {
            break;
        }
        if b > candidate {
            candidate = b.div_ceil(ALIGN).checked_mul(ALIGN)?;
        }
    }
    (candidate.checked_add(size)? <= end).then_some(candidate)
}

/// Adds a keyslot for `volume_key` opened by `secret` with `kdf` to `md` (writing its area on
/// `dev`) and returns its id.
pub fn add_keyslot<D: BlockDevice>(
    md: &mut Metadata,
    dev: &mut D,
    hdr_size: u64,
    volume_key: &[u8],
    secret: &[u8],
    kdf: Kdf,
) -> Result<u32, AddKeyslotError> {
    let id = (0..MAX_KEYSLOTS)
        .find(|i| !md.keyslots.contains_key(&Id(*i)))
        .ok_or(AddKeyslotError::NoFreeId)?;
    let mut digest_id = None;
    for (did, d) in &md.digests {
        if digest::verify(d, volume_key).map_err(|e| AddKeyslotError::Digest(did.0, e))? {
            digest_id = Some(*did);
            break;
        }
    }
    let digest_id = digest_id.ok_or(AddKeyslotError::NoDigest)?;
    let size = keyslot::area_size(volume_key.len(), STRIPES);
    let offset = free_area(md, hdr_size, size).ok_or(AddKeyslotError::NoSpace { needed: size })?;
    let ks = keyslot::create(
        dev,
        volume_key,
        secret,
        kdf,
        offset,
        None,
        &mut rand_core::OsRng,
    )
    .map_err(|e| AddKeyslotError::Keyslot(id, e))?;
    md.keyslots.insert(Id(id), ks);
    if let Some(d) = md.digests.get_mut(&digest_id) {
        d.keyslots.push(Id(id));
        d.keyslots.sort();
    }
    Ok(id)
}
