//! Native LUKS2 volumes (LUKS2 On-Disk Format Specification): reading both header
//! copies with fallback, opening keyslots with a secret or passphrase, verifying the
//! volume key by its digest, tokens, and writing new volumes ([`format`]).
//!
//! Reading checks both header copies. When one is damaged the other is used and the
//! damage is reported in [`Luks2Volume::health`] (and logged): nothing is written while
//! reading or opening. The next header update ([`Luks2Volume::write_headers`], e.g. when
//! adding a token) rewrites both copies from the good one.

pub mod add;
pub mod af;
pub mod cipher;
pub mod digest;
pub mod format;
pub mod hash;
pub mod header;
pub mod inplace;
pub mod json;
pub mod kdf;
pub mod keyslot;
pub mod read;
pub mod segment;
pub mod token;

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::device::{BlockDevice, DeviceError};
use digest::DigestError;
use header::{BinaryHeader, HeaderCopy, HeaderError};
use json::{Id, Metadata, MetadataError};
use keyslot::KeyslotError;
use read::ReadError;
use segment::{DataSegment, SegmentError};
use token::{Token, TokenError};

pub use format::{format, Argon2Cost, FormatError, FormatOptions};

/// Errors of LUKS2 volume operations.
#[derive(Debug, thiserror::Error)]
pub enum Luks2Error {
    /// Neither header copy is usable.
    #[error("both LUKS2 headers are unusable: primary: {primary}; secondary: {secondary}")]
    BothHeadersCorrupt {
        /// Why the primary failed.
        primary: ReadError,
        /// Why the secondary failed.
        secondary: ReadError,
    },
    /// The requested keyslot does not exist.
    #[error("keyslot {0} does not exist")]
    NoSuchKeyslot(u32),
    /// No digest covers the keyslot, so its key cannot be verified.
    #[error("keyslot {0} is not assigned to any digest")]
    NoDigest(u32),
    /// The secret does not open the requested keyslot.
    #[error("the secret does not open keyslot {0}")]
    WrongSecret(u32),
    /// The secret opens none of the keyslots.
    #[error("the secret opens none of the keyslots {0:?}")]
    NoKeyslotOpened(Vec<u32>),
    /// Unlocking a keyslot failed for a reason other than a wrong secret.
    #[error("keyslot {keyslot} does not open")]
    Unlock {
        /// Keyslot id.
        keyslot: u32,
        /// Cause.
        source: KeyslotError,
    },
    /// Checking a digest failed.
    #[error("digest {digest} is unusable")]
    Digest {
        /// Digest id.
        digest: u32,
        /// Cause.
        source: DigestError,
    },
    /// The volume has no data segment.
    #[error("the volume has no crypt segment")]
    NoSegment,
    /// Opening the data segment failed.
    #[error("the data segment is unusable")]
    Segment(#[source] SegmentError),
    /// A token operation was refused.
    #[error("the token is refused")]
    Token(#[source] TokenError),
    /// The metadata failed validation or serialisation before writing.
    #[error("the metadata is not valid")]
    Metadata(#[source] MetadataError),
    /// A header copy could not be serialised.
    #[error("serialising the header failed")]
    SerializeHeader(#[source] HeaderError),
    /// Writing a header copy failed.
    #[error("writing the {copy:?} header failed")]
    WriteHeader {
        /// Which copy.
        copy: HeaderCopy,
        /// Cause.
        source: DeviceError,
    },
    /// The random source failed.
    #[error("the random source failed")]
    Random(#[source] rand_core::Error),
}

/// State of the two header copies when the volume was read.
#[derive(Debug)]
pub enum HeaderHealth {
    /// Both copies valid and identical in sequence.
    BothValid,
    /// The primary is damaged; the secondary is in use.
    PrimaryCorrupt(ReadError),
    /// The secondary is damaged; the primary is in use.
    SecondaryCorrupt(ReadError),
    /// Both valid, different sequence ids (an interrupted update); the newer is in use.
    Diverged {
        /// Primary seqid.
        primary_seqid: u64,
        /// Secondary seqid.
        secondary_seqid: u64,
    },
}

/// A key taken from a keyslot and verified by its digest.
#[derive(Debug)]
pub struct Unlocked {
    /// The keyslot that opened.
    pub keyslot: u32,
    /// The volume key.
    pub volume_key: Zeroizing<Vec<u8>>,
}

/// A LUKS2 volume's header, as read from (or written to) its header device.
#[derive(Debug)]
pub struct Luks2Volume {
    /// Binary header of the copy in use.
    pub header: BinaryHeader,
    /// Metadata.
    pub metadata: Metadata,
    /// State of the header copies.
    pub health: HeaderHealth,
}

impl Luks2Volume {
    /// Reads the volume header from `dev` (a device with an attached header, or a
    /// detached header file).
    pub fn read<D: BlockDevice>(dev: &mut D) -> Result<Self, Luks2Error> {
        let primary = read::read_copy(dev, HeaderCopy::Primary, 0);
        let hint = match &primary {
            Ok(p) => Some(p.header.hdr_size),
            Err(_) => read::primary_size_hint(dev),
        };
        let secondary = read::read_secondary(dev, hint);
        let (chosen, health) = match (primary, secondary) {
            (Ok(p), Ok(s)) => {
                if p.header.seqid == s.header.seqid {
                    (p, HeaderHealth::BothValid)
                } else {
                    let health = HeaderHealth::Diverged {
                        primary_seqid: p.header.seqid,
                        secondary_seqid: s.header.seqid,
                    };
                    tracing::warn!(?health, "LUKS2 header copies differ; using the newer");
                    (
                        if s.header.seqid > p.header.seqid {
                            s
                        } else {
                            p
                        },
                        health,
                    )
                }
            }
            (Ok(p), Err(e)) => {
                tracing::warn!(error = %e, "LUKS2 secondary header unusable; using the primary");
                (p, HeaderHealth::SecondaryCorrupt(e))
            }
            (Err(e), Ok(s)) => {
                tracing::warn!(error = %e, "LUKS2 primary header unusable; using the secondary");
                (s, HeaderHealth::PrimaryCorrupt(e))
            }
            (Err(primary), Err(secondary)) => {
                return Err(Luks2Error::BothHeadersCorrupt { primary, secondary })
            }
        };
        Ok(Luks2Volume {
            header: chosen.header,
            metadata: chosen.metadata,
            health,
        })
    }

    /// Volume UUID.
    pub fn uuid(&self) -> &str {
        &self.header.uuid
    }

    /// Opens keyslot `keyslot`, or when `None` every keyslot in priority order until
    /// one opens, with `secret`; returns the verified volume key.
    pub fn open<D: BlockDevice>(
        &self,
        dev: &mut D,
        secret: &Zeroizing<Vec<u8>>,
        keyslot: Option<u32>,
    ) -> Result<Unlocked, Luks2Error> {
        if let Some(id) = keyslot {
            if !self.metadata.keyslots.contains_key(&Id(id)) {
                return Err(Luks2Error::NoSuchKeyslot(id));
            }
            return self
                .try_keyslot(dev, secret, id)?
                .ok_or(Luks2Error::WrongSecret(id));
        }
        let mut order: Vec<(u32, u32)> = self
            .metadata
            .keyslots
            .iter()
            .filter(|(_, ks)| ks.kind == "luks2" && ks.priority != Some(0))
            .map(|(id, ks)| (ks.priority.unwrap_or(1), id.0))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut first_error = None;
        for &(_, id) in &order {
            match self.try_keyslot(dev, secret, id) {
                Ok(Some(u)) => return Ok(u),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(keyslot = id, error = %e, "keyslot did not open");
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(Luks2Error::NoKeyslotOpened(
            order.iter().map(|(_, id)| *id).collect(),
        )))
    }

    /// `Ok(None)` when the secret is wrong for keyslot `id`.
    fn try_keyslot<D: BlockDevice>(
        &self,
        dev: &mut D,
        secret: &[u8],
        id: u32,
    ) -> Result<Option<Unlocked>, Luks2Error> {
        let ks = self
            .metadata
            .keyslots
            .get(&Id(id))
            .ok_or(Luks2Error::NoSuchKeyslot(id))?;
        let (digest_id, d) = self
            .metadata
            .digest_for_keyslot(Id(id))
            .ok_or(Luks2Error::NoDigest(id))?;
        let candidate = keyslot::unlock(dev, ks, secret).map_err(|source| Luks2Error::Unlock {
            keyslot: id,
            source,
        })?;
        let ok = digest::verify(d, &candidate).map_err(|source| Luks2Error::Digest {
            digest: digest_id.0,
            source,
        })?;
        Ok(ok.then_some(Unlocked {
            keyslot: id,
            volume_key: candidate,
        }))
    }

    /// The data segment (the lowest-numbered `crypt` segment) opened with `volume_key`.
    pub fn data_segment(&self, volume_key: &Zeroizing<Vec<u8>>) -> Result<DataSegment, Luks2Error> {
        let seg = self
            .metadata
            .segments
            .values()
            .find(|s| s.kind == "crypt")
            .ok_or(Luks2Error::NoSegment)?;
        DataSegment::new(seg, volume_key).map_err(Luks2Error::Segment)
    }

    /// Tokens by id.
    pub fn tokens(&self) -> Vec<(u32, Token)> {
        self.metadata
            .tokens
            .iter()
            .map(|(id, t)| (id.0, Token::from_json(t)))
            .collect()
    }

    /// Adds `token` and writes both headers; returns the token id.
    pub fn add_token<D: BlockDevice>(
        &mut self,
        dev: &mut D,
        token: &Token,
    ) -> Result<u32, Luks2Error> {
        let mut md = self.metadata.clone();
        let id = token::add(&mut md, token).map_err(Luks2Error::Token)?;
        self.commit(dev, md)?;
        Ok(id)
    }

    /// Removes token `id` and writes both headers; returns the removed token.
    pub fn remove_token<D: BlockDevice>(
        &mut self,
        dev: &mut D,
        id: u32,
    ) -> Result<Token, Luks2Error> {
        let mut md = self.metadata.clone();
        let t = token::remove(&mut md, id).map_err(Luks2Error::Token)?;
        self.commit(dev, md)?;
        Ok(t)
    }

    /// Replaces the metadata with `md` and writes both headers; on failure the old metadata
    /// stays in memory.
    pub fn commit<D: BlockDevice>(&mut self, dev: &mut D, md: Metadata) -> Result<(), Luks2Error> {
        let old = std::mem::replace(&mut self.metadata, md);
        if let Err(e) = self.write_headers(dev) {
            self.metadata = old;
            return Err(e);
        }
        Ok(())
    }

    /// Writes both header copies from the metadata held here with the next sequence id
    /// (secondary first, then primary, then sync), repairing a damaged copy.
    pub fn write_headers<D: BlockDevice>(&mut self, dev: &mut D) -> Result<(), Luks2Error> {
        self.metadata
            .validate(self.header.hdr_size)
            .map_err(Luks2Error::Metadata)?;
        let json = self.metadata.to_json().map_err(Luks2Error::Metadata)?;
        let mut hdr = self.header.clone();
        hdr.seqid = hdr.seqid.wrapping_add(1);
        let mut images = Vec::new();
        for (copy, offset) in [
            (HeaderCopy::Secondary, hdr.hdr_size),
            (HeaderCopy::Primary, 0),
        ] {
            hdr.hdr_offset = offset;
            OsRng
                .try_fill_bytes(&mut hdr.salt)
                .map_err(Luks2Error::Random)?;
            let bytes =
                header::serialize(&hdr, copy, &json).map_err(Luks2Error::SerializeHeader)?;
            images.push((copy, offset, bytes));
        }
        for (copy, offset, bytes) in &images {
            dev.write_at(*offset, bytes)
                .and_then(|_| dev.sync())
                .map_err(|source| Luks2Error::WriteHeader {
                    copy: *copy,
                    source,
                })?;
        }
        hdr.hdr_offset = 0;
        self.header = hdr;
        self.health = HeaderHealth::BothValid;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
