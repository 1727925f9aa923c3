//! LUKS2 keyslots of type `luks2`: the volume key, split by the AF splitter, encrypted
//! with a key derived from a secret or passphrase, stored in a raw area of the header
//! device. The area cipher uses 512-byte sectors numbered from 0 within the area.

use zeroize::Zeroizing;

use super::super::device::{check_range, BlockDevice, DeviceError};
use super::super::xts::{Xts, XtsError};
use super::af::{self, AfError};
use super::cipher::{CipherError, IvMode};
use super::hash::{HashError, LuksHash};
use super::json::{Af, Area, Dec, Keyslot};
use super::kdf::{Kdf, KdfError};

/// Stripes of new keyslots.
pub const STRIPES: u32 = 4000;
/// Salt length of new keyslots.
pub const SALT_LEN: usize = 32;
/// Sector size of keyslot area encryption.
const AREA_SECTOR: u64 = 512;

/// Errors of keyslot creation and unlocking.
#[derive(Debug, thiserror::Error)]
pub enum KeyslotError {
    /// The keyslot is not of type `luks2` (e.g. a reencryption keyslot).
    #[error("keyslot type {0:?} does not store a key")]
    Kind(String),
    /// The keyslot lacks its `kdf` or `af` object.
    #[error("keyslot has no {0} object")]
    Missing(&'static str),
    /// The AF type is not `luks1`.
    #[error("unsupported AF type {0:?}")]
    AfKind(String),
    /// The area is not `raw` or has no cipher.
    #[error("unsupported keyslot area type {0:?} or missing encryption")]
    AreaKind(String),
    /// The AF hash is not supported.
    #[error("the AF hash is unusable")]
    AfHash(#[source] HashError),
    /// The area cipher is not supported.
    #[error("the keyslot area cipher is unusable")]
    Cipher(#[source] CipherError),
    /// The split key does not fit in the area.
    #[error("keyslot area of {area} bytes cannot hold {needed} bytes of key material")]
    AreaTooSmall {
        /// Area size.
        area: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// Key derivation failed.
    #[error("key derivation failed")]
    Kdf(#[source] KdfError),
    /// The derived key does not suit the area cipher.
    #[error("the keyslot area key is unusable")]
    AreaKey(#[source] XtsError),
    /// The AF splitter failed.
    #[error("the anti-forensic splitter failed")]
    Af(#[source] AfError),
    /// Reading the area failed.
    #[error("reading the keyslot area failed")]
    Read(#[source] DeviceError),
    /// Writing the area failed.
    #[error("writing the keyslot area failed")]
    Write(#[source] DeviceError),
    /// The random source failed.
    #[error("the random source failed")]
    Random(#[source] rand_core::Error),
}

/// Size of the area of a keyslot holding a `key_len`-byte key, rounded up to 4096
/// bytes (as cryptsetup lays keyslots out).
pub fn area_size(key_len: usize, stripes: u32) -> u64 {
    let material = key_len as u64 * u64::from(stripes);
    material.div_ceil(4096) * 4096
}

fn material_len(key_len: u32, stripes: u32) -> u64 {
    (u64::from(key_len) * u64::from(stripes)).div_ceil(AREA_SECTOR) * AREA_SECTOR
}

/// Creates a keyslot for `volume_key` opened by `secret` with `kdf`, writing its area
/// (aes-xts-plain64, 512-bit area key) at `area_offset` on `dev`.
pub fn create<D: BlockDevice>(
    dev: &mut D,
    volume_key: &[u8],
    secret: &[u8],
    kdf: Kdf,
    area_offset: u64,
    priority: Option<u32>,
    rng: &mut impl rand_core::RngCore,
) -> Result<Keyslot, KeyslotError> {
    let area_key_len = 64u32;
    let mut salt = [0u8; SALT_LEN];
    rng.try_fill_bytes(&mut salt)
        .map_err(KeyslotError::Random)?;
    let derived = kdf
        .derive(secret, &salt, area_key_len as usize)
        .map_err(KeyslotError::Kdf)?;
    let xts = Xts::new(&derived).map_err(KeyslotError::AreaKey)?;
    let split = af::split(volume_key, STRIPES, LuksHash::Sha256, rng).map_err(KeyslotError::Af)?;
    let size = area_size(volume_key.len(), STRIPES);
    let padded = material_len(volume_key.len() as u32, STRIPES) as usize;
    let mut material = Zeroizing::new(vec![0u8; padded]);
    if let Some(dst) = material.get_mut(..split.len()) {
        dst.copy_from_slice(&split);
    }
    xts.encrypt_sectors(&mut material, AREA_SECTOR as usize, 0, 1)
        .map_err(KeyslotError::AreaKey)?;
    dev.write_at(area_offset, &material)
        .map_err(KeyslotError::Write)?;
    Ok(Keyslot {
        kind: "luks2".into(),
        key_size: volume_key.len() as u32,
        af: Some(Af {
            kind: "luks1".into(),
            stripes: STRIPES,
            hash: LuksHash::Sha256.name().into(),
        }),
        area: Area {
            kind: "raw".into(),
            offset: Dec(area_offset),
            size: Dec(size),
            encryption: Some("aes-xts-plain64".into()),
            key_size: Some(area_key_len),
            extra: Default::default(),
        },
        kdf: Some(kdf.to_json(&salt)),
        priority,
        extra: Default::default(),
    })
}

/// Derives the area key from `secret` and returns the key the keyslot stores (not yet
/// verified: check it against the keyslot's digest).
pub fn unlock<D: BlockDevice>(
    dev: &mut D,
    ks: &Keyslot,
    secret: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyslotError> {
    if ks.kind != "luks2" {
        return Err(KeyslotError::Kind(ks.kind.clone()));
    }
    let af_json = ks.af.as_ref().ok_or(KeyslotError::Missing("af"))?;
    if af_json.kind != "luks1" {
        return Err(KeyslotError::AfKind(af_json.kind.clone()));
    }
    let af_hash = LuksHash::from_name(&af_json.hash).map_err(KeyslotError::AfHash)?;
    let kdf_json = ks.kdf.as_ref().ok_or(KeyslotError::Missing("kdf"))?;
    let (kdf, salt) = Kdf::from_json(kdf_json).map_err(KeyslotError::Kdf)?;
    let (enc, area_key_len) = match (&ks.area.encryption, ks.area.key_size) {
        (Some(e), Some(k)) if ks.area.kind == "raw" => (e, k),
        _ => return Err(KeyslotError::AreaKind(ks.area.kind.clone())),
    };
    let iv_mode = IvMode::parse(enc).map_err(KeyslotError::Cipher)?;
    let needed = material_len(ks.key_size, af_json.stripes);
    if needed > ks.area.size.0 {
        return Err(KeyslotError::AreaTooSmall {
            area: ks.area.size.0,
            needed,
        });
    }
    // Bound the allocation by the device before reading.
    let dev_size = dev.size().map_err(KeyslotError::Read)?;
    check_range(ks.area.offset.0, needed, dev_size).map_err(KeyslotError::Read)?;
    let mut material = Zeroizing::new(vec![0u8; needed as usize]);
    dev.read_at(ks.area.offset.0, &mut material)
        .map_err(KeyslotError::Read)?;
    let derived = kdf
        .derive(secret, &salt, area_key_len as usize)
        .map_err(KeyslotError::Kdf)?;
    let xts = Xts::new(&derived).map_err(KeyslotError::AreaKey)?;
    for (n, sector) in material.chunks_exact_mut(AREA_SECTOR as usize).enumerate() {
        xts.decrypt_sectors(sector, AREA_SECTOR as usize, iv_mode.iv(n as u64), 1)
            .map_err(KeyslotError::AreaKey)?;
    }
    let split_len = ks.key_size as usize * af_json.stripes as usize;
    af::merge(
        material.get(..split_len).unwrap_or_default(),
        ks.key_size as usize,
        af_json.stripes,
        af_hash,
    )
    .map_err(KeyslotError::Af)
}
