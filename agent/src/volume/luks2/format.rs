//! Writing a new LUKS2 volume: aes-xts-plain64 with a random 512-bit volume key, and two
//! keyslots sharing one digest:
//!
//! * keyslot 0, opened by a high-entropy secret (the TPM-sealed secret, at least
//!   [`MIN_SECRET_LEN`] random bytes). Its KDF is PBKDF2-SHA256 with a small iteration
//!   count (default 1000, cryptsetup's minimum): stretching cannot make a 256-bit random
//!   secret any harder to guess, so a slow KDF would only slow down every boot.
//! * keyslot 1, opened by a recovery passphrase chosen by a person, with Argon2id at a
//!   configurable cost (default 4 passes, 1 GiB, 4 lanes; tests use cheap values).
//!
//! Layout as cryptsetup makes it: two header copies of `hdr_size` (default 16 KiB),
//! keyslot areas from `2 * hdr_size` on, each `key_size * 4000` rounded up to 4096
//! bytes, the keyslots area ending where the data segment starts (default 16 MiB). With
//! `data_offset` 0 the header device is a detached header and the data segment starts
//! at byte 0 of a separate data device; the keyslots area then keeps the default size.

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::super::device::{BlockDevice, DeviceError};
use super::digest::{self, DigestError};
use super::hash::LuksHash;
use super::header::{BinaryHeader, HDR_SIZES};
use super::json::{Config, Dec, Id, Metadata, MetadataError, Segment, SegmentSize};
use super::kdf::{Argon2Variant, Kdf};
use super::keyslot::{self, KeyslotError, STRIPES};
use super::{HeaderHealth, Luks2Error, Luks2Volume};

/// Minimum length of the high-entropy secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Volume key length (AES-256-XTS).
pub const VOLUME_KEY_LEN: usize = 64;
/// Default data offset and metadata+keyslots size: 16 MiB.
pub const DEFAULT_DATA_OFFSET: u64 = 16 << 20;
/// Keyslot holding the high-entropy secret.
pub const SECRET_KEYSLOT: u32 = 0;
/// Keyslot holding the recovery passphrase.
pub const RECOVERY_KEYSLOT: u32 = 1;

/// Errors of volume creation.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The secret is too short to be the high-entropy secret.
    #[error(
        "secret is {0} bytes; the PBKDF2 keyslot needs at least {MIN_SECRET_LEN} random bytes"
    )]
    SecretTooShort(usize),
    /// The recovery passphrase is empty.
    #[error("recovery passphrase is empty")]
    EmptyPassphrase,
    /// An option is out of range.
    #[error("invalid option {option}: {value}")]
    Option {
        /// Option name.
        option: &'static str,
        /// Its value.
        value: u64,
    },
    /// The keyslots do not fit in the keyslots area.
    #[error("keyslots need {needed} bytes but the keyslots area has {available}")]
    KeyslotsArea {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The device cannot hold header plus at least one data sector.
    #[error("device of {size} bytes is too small: the data segment starts at {data_offset}")]
    DeviceTooSmall {
        /// Device size.
        size: u64,
        /// Data offset.
        data_offset: u64,
    },
    /// Device access failed.
    #[error("device access failed")]
    Device(#[source] DeviceError),
    /// Creating a keyslot failed.
    #[error("creating keyslot {keyslot} failed")]
    Keyslot {
        /// Keyslot id.
        keyslot: u32,
        /// Cause.
        source: KeyslotError,
    },
    /// Creating the digest failed.
    #[error("creating the digest failed")]
    Digest(#[source] DigestError),
    /// The metadata is inconsistent (a bug, caught before writing).
    #[error("the metadata is not valid")]
    Metadata(#[source] MetadataError),
    /// Writing the headers failed.
    #[error("writing the headers failed")]
    Headers(#[source] Box<Luks2Error>),
    /// The random source failed.
    #[error("the random source failed")]
    Random(#[source] rand_core::Error),
}

/// Argon2id cost of the recovery keyslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    /// Passes.
    pub time: u32,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Lanes.
    pub lanes: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Argon2Cost {
            time: 4,
            memory_kib: 1 << 20,
            lanes: 4,
        }
    }
}

/// Options of [`format`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// Volume label (at most 47 bytes).
    pub label: String,
    /// Subsystem label (at most 47 bytes).
    pub subsystem: String,
    /// UUID; random when `None`.
    pub uuid: Option<String>,
    /// Data sector size: 512, 1024, 2048 or 4096.
    pub sector_size: u32,
    /// Header copy size (one of the sizes the format allows).
    pub hdr_size: u64,
    /// Data segment offset; 0 for a detached header.
    pub data_offset: u64,
    /// PBKDF2 iterations of the secret keyslot.
    pub secret_iterations: u32,
    /// Argon2id cost of the recovery keyslot.
    pub recovery_cost: Argon2Cost,
    /// PBKDF2 iterations of the volume key digest.
    pub digest_iterations: u32,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            label: String::new(),
            subsystem: String::new(),
            uuid: None,
            sector_size: 4096,
            hdr_size: 16384,
            data_offset: DEFAULT_DATA_OFFSET,
            secret_iterations: 1000,
            recovery_cost: Argon2Cost::default(),
            digest_iterations: 1000,
        }
    }
}

/// A random version-4 UUID in text form.
fn random_uuid(rng: &mut impl RngCore) -> Result<String, FormatError> {
    let mut b = [0u8; 16];
    rng.try_fill_bytes(&mut b).map_err(FormatError::Random)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or_default(),
        h.get(8..12).unwrap_or_default(),
        h.get(12..16).unwrap_or_default(),
        h.get(16..20).unwrap_or_default(),
        h.get(20..32).unwrap_or_default()
    ))
}

fn check_options(o: &FormatOptions) -> Result<u64, FormatError> {
    let bad = |option, value| Err(FormatError::Option { option, value });
    if ![512, 1024, 2048, 4096].contains(&o.sector_size) {
        return bad("sector_size", u64::from(o.sector_size));
    }
    if !HDR_SIZES.contains(&o.hdr_size) {
        return bad("hdr_size", o.hdr_size);
    }
    if !o.data_offset.is_multiple_of(4096)
        || !o.data_offset.is_multiple_of(u64::from(o.sector_size))
    {
        return bad("data_offset", o.data_offset);
    }
    if o.secret_iterations == 0 {
        return bad("secret_iterations", 0);
    }
    if o.digest_iterations == 0 {
        return bad("digest_iterations", 0);
    }
    let meta = 2 * o.hdr_size;
    let keyslots_size = if o.data_offset == 0 {
        DEFAULT_DATA_OFFSET - meta
    } else if o.data_offset > meta {
        o.data_offset - meta
    } else {
        return bad("data_offset", o.data_offset);
    };
    let needed = 2 * keyslot::area_size(VOLUME_KEY_LEN, STRIPES);
    if needed > keyslots_size {
        return Err(FormatError::KeyslotsArea {
            needed,
            available: keyslots_size,
        });
    }
    Ok(keyslots_size)
}

/// Writes a new LUKS2 volume on `dev` (the header device when `data_offset` is 0) and
/// returns it with its volume key. Data already on the device is not encrypted; the
/// metadata and keyslots area is zeroed first.
pub fn format<D: BlockDevice>(
    dev: &mut D,
    secret: &Zeroizing<Vec<u8>>,
    recovery: &Zeroizing<Vec<u8>>,
    opts: &FormatOptions,
) -> Result<(Luks2Volume, Zeroizing<Vec<u8>>), FormatError> {
    format_impl(dev, secret, recovery, opts, opts.data_offset > 0)
}

/// [`format`], checking the device size against the data offset only when
/// `data_on_dev` (the header device also holds the data).
pub(super) fn format_impl<D: BlockDevice>(
    dev: &mut D,
    secret: &Zeroizing<Vec<u8>>,
    recovery: &Zeroizing<Vec<u8>>,
    opts: &FormatOptions,
    data_on_dev: bool,
) -> Result<(Luks2Volume, Zeroizing<Vec<u8>>), FormatError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(FormatError::SecretTooShort(secret.len()));
    }
    if recovery.is_empty() {
        return Err(FormatError::EmptyPassphrase);
    }
    let keyslots_size = check_options(opts)?;
    let meta = 2 * opts.hdr_size;
    if data_on_dev {
        let size = dev.size().map_err(FormatError::Device)?;
        if size < opts.data_offset + u64::from(opts.sector_size) {
            return Err(FormatError::DeviceTooSmall {
                size,
                data_offset: opts.data_offset,
            });
        }
    }
    let rng = &mut OsRng;
    let mut volume_key = Zeroizing::new(vec![0u8; VOLUME_KEY_LEN]);
    rng.try_fill_bytes(&mut volume_key)
        .map_err(FormatError::Random)?;
    let uuid = match &opts.uuid {
        Some(u) => u.clone(),
        None => random_uuid(rng)?,
    };

    // Zero the metadata and keyslots area.
    let zeros = vec![0u8; 1 << 20];
    let end = meta + keyslots_size;
    let mut at = 0u64;
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        dev.write_at(at, zeros.get(..n).unwrap_or_default())
            .map_err(FormatError::Device)?;
        at += n as u64;
    }

    let area = keyslot::area_size(VOLUME_KEY_LEN, STRIPES);
    let secret_kdf = Kdf::Pbkdf2 {
        hash: LuksHash::Sha256,
        iterations: opts.secret_iterations,
    };
    let c = opts.recovery_cost;
    let recovery_kdf = Kdf::Argon2 {
        variant: Argon2Variant::Id,
        time: c.time,
        memory_kib: c.memory_kib,
        lanes: c.lanes,
    };
    let mut md = Metadata {
        keyslots: Default::default(),
        tokens: Default::default(),
        segments: Default::default(),
        digests: Default::default(),
        config: Config {
            json_size: Dec(opts.hdr_size - 4096),
            keyslots_size: Dec(keyslots_size),
            extra: Default::default(),
        },
    };
    for (id, pw, kdf, offset) in [
        (SECRET_KEYSLOT, secret, secret_kdf, meta),
        (RECOVERY_KEYSLOT, recovery, recovery_kdf, meta + area),
    ] {
        let ks =
            keyslot::create(dev, &volume_key, pw, kdf, offset, None, rng).map_err(|source| {
                FormatError::Keyslot {
                    keyslot: id,
                    source,
                }
            })?;
        md.keyslots.insert(Id(id), ks);
    }
    md.segments.insert(
        Id(0),
        Segment {
            kind: "crypt".into(),
            offset: Dec(opts.data_offset),
            size: SegmentSize::Dynamic,
            iv_tweak: Some(Dec(0)),
            encryption: Some("aes-xts-plain64".into()),
            sector_size: Some(opts.sector_size),
            extra: Default::default(),
        },
    );
    let d = digest::create(
        &volume_key,
        vec![Id(SECRET_KEYSLOT), Id(RECOVERY_KEYSLOT)],
        vec![Id(0)],
        opts.digest_iterations,
        rng,
    )
    .map_err(FormatError::Digest)?;
    md.digests.insert(Id(0), d);
    md.validate(opts.hdr_size).map_err(FormatError::Metadata)?;

    let mut volume = Luks2Volume {
        header: BinaryHeader {
            hdr_size: opts.hdr_size,
            seqid: 0,
            label: opts.label.clone(),
            checksum_alg: "sha256".into(),
            salt: [0u8; 64],
            uuid,
            subsystem: opts.subsystem.clone(),
            hdr_offset: 0,
        },
        metadata: md,
        health: HeaderHealth::BothValid,
    };
    volume
        .write_headers(dev)
        .map_err(|e| FormatError::Headers(Box::new(e)))?;
    Ok((volume, volume_key))
}
