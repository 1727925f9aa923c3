//! In-place encryption of existing data (`encrypt-existing`), crash-safe and resumable.
//!
//! # Design
//!
//! The device holds `N` bytes of plaintext whose last `S` bytes (`S` = the data offset,
//! 16 MiB by default) are free: the caller shrank the filesystem first, as with
//! cryptsetup's `--reduce-device-size`. The result is a normal LUKS2 volume: header and
//! keyslots in `[0, S)`, and the plaintext `[0, N - S)` encrypted at `[S, N)`.
//!
//! Data moves forward by `S`, so it is processed from the end towards the start, in
//! chunks of at most `S` bytes: chunk `[o, o + c)` is read, encrypted and written at
//! `[o + S, o + S + c)`. With `c <= S` a chunk's destination never overlaps its own
//! source, and it only overwrites sources of chunks already done (higher offsets). So
//! the source of the chunk in progress is intact at any moment, and redoing a chunk
//! after a crash is harmless.
//!
//! Progress lives in a separate *journal* device (a file on another filesystem):
//!
//! 1. The journal first receives a complete detached LUKS2 header for the final volume
//!    ([`super::format`] layout, keyslots included), so the volume key survives a crash
//!    and is recovered on resume by opening the journal with the same secret.
//! 2. After it, two 4096-byte progress records are written alternately, each with a
//!    sequence number and a SHA-256 checksum: `done_from` (all plaintext at or above it
//!    is encrypted in place), the device size and a fingerprint of the device (SHA-256
//!    of the first [`FINGERPRINT_LEN`] bytes of ciphertext at `done_from + S`, written by
//!    this job and never rewritten by it). A torn record fails its checksum and the other
//!    (older) one is used: at worst one chunk is redone.
//! 3. Each step is: write chunk, sync device, write record, sync journal.
//! 4. When `done_from` reaches 0, the header area is copied from the journal to
//!    `[0, 2 * hdr_size + keyslots_size)` of the device (idempotent, redone after a
//!    crash), the device is synced and a final record marks completion. The caller may
//!    then delete the journal.
//!
//! Before the first record exists nothing on the device has been written, so a crash
//! there simply restarts (with a new volume key).
//!
//! A resume first checks that the journal belongs to the device: same size, and the
//! recorded fingerprint matches the device's bytes. Resuming another device's journal
//! would skip that device's unmoved data and destroy it.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::super::device::{BlockDevice, DeviceError};
use super::format::{format_impl, FormatError, FormatOptions};
use super::segment::SegmentError;
use super::{Luks2Error, Luks2Volume};

/// Size of one progress record slot.
const RECORD_SIZE: usize = 4096;
/// Magic of the progress records (version 2: with the device fingerprint).
const RECORD_MAGIC: &[u8; 8] = b"VOUCHEN2";
/// Magic of version-1 records (no fingerprint), refused rather than taken for no record.
const RECORD_MAGIC_V1: &[u8; 8] = b"VOUCHENC";
/// Bytes of ciphertext hashed into a record's device fingerprint (fewer while less than
/// this has been encrypted).
pub const FINGERPRINT_LEN: u64 = 4096;
/// Length of a record's checksummed body: magic, seq, size, done_from, complete, fingerprint.
const RECORD_BODY: usize = 8 + 3 * 8 + 1 + 32;

/// Errors of in-place encryption.
#[derive(Debug, thiserror::Error)]
pub enum InplaceError {
    /// The data offset is zero (a detached header cannot shift data).
    #[error("in-place encryption needs a non-zero data offset")]
    NoDataOffset,
    /// The chunk size is zero, larger than the data offset, or not whole sectors.
    #[error(
        "chunk size {chunk} must be 1..={max} bytes and a multiple of the {sector}-byte sector"
    )]
    Chunk {
        /// Requested chunk.
        chunk: u64,
        /// Data offset.
        max: u64,
        /// Sector size.
        sector: u32,
    },
    /// The device is too small or not a whole number of sectors after the offset.
    #[error("device of {size} bytes cannot hold a {offset}-byte header plus whole {sector}-byte sectors")]
    DeviceSize {
        /// Device size.
        size: u64,
        /// Data offset.
        offset: u64,
        /// Sector size.
        sector: u32,
    },
    /// The journal belongs to another device (sizes differ).
    #[error("journal belongs to another device: it records size {recorded}, device has {actual}")]
    ForeignJournal {
        /// Size in the journal.
        recorded: u64,
        /// Size of the device.
        actual: u64,
    },
    /// The journal belongs to another device of the same size: the ciphertext it recorded
    /// is not on this device.
    #[error(
        "journal belongs to another device: the {len} bytes of ciphertext it recorded at byte \
         {offset} are not on this device (nothing was written)"
    )]
    ForeignDevice {
        /// Device offset of the fingerprinted bytes.
        offset: u64,
        /// Number of fingerprinted bytes.
        len: u64,
    },
    /// The journal was written by an older version without device fingerprints.
    #[error("journal written by an older vouch-agent (record format 1): finish the job with that version")]
    OldJournal,
    /// Writing the journal's header failed.
    #[error("creating the journal header failed")]
    Format(#[source] FormatError),
    /// Reading or opening the journal's header failed (wrong secret on resume, ...).
    #[error("the journal header is unusable")]
    Journal(#[source] Luks2Error),
    /// Device access failed.
    #[error("data device access failed")]
    Device(#[source] DeviceError),
    /// Journal access failed.
    #[error("journal device access failed")]
    JournalDevice(#[source] DeviceError),
    /// Encrypting a chunk failed.
    #[error("encrypting failed")]
    Segment(#[source] SegmentError),
    /// Reading the finished volume failed.
    #[error("the finished volume is unusable")]
    Finished(#[source] Luks2Error),
}

/// Progress as stored in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    seq: u64,
    device_size: u64,
    done_from: u64,
    complete: bool,
    fingerprint: [u8; 32],
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; RECORD_SIZE];
        let body: Vec<u8> = RECORD_MAGIC
            .iter()
            .copied()
            .chain(self.seq.to_be_bytes())
            .chain(self.device_size.to_be_bytes())
            .chain(self.done_from.to_be_bytes())
            .chain([u8::from(self.complete)])
            .chain(self.fingerprint)
            .collect();
        let sum = Sha256::digest(&body);
        if let Some(dst) = b.get_mut(..body.len()) {
            dst.copy_from_slice(&body);
        }
        if let Some(dst) = b.get_mut(body.len()..body.len() + 32) {
            dst.copy_from_slice(&sum);
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Record> {
        let body = b.get(..RECORD_BODY)?;
        let sum = b.get(RECORD_BODY..RECORD_BODY + 32)?;
        if body.get(..8)? != RECORD_MAGIC || Sha256::digest(body)[..] != *sum {
            return None;
        }
        let num = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?))
        };
        Some(Record {
            seq: num(8)?,
            device_size: num(16)?,
            done_from: num(24)?,
            complete: *body.get(32)? == 1,
            fingerprint: body.get(33..65)?.try_into().ok()?,
        })
    }

    /// A version-1 record (33-byte body) with a valid checksum.
    fn is_v1(b: &[u8]) -> bool {
        match (b.get(..33), b.get(33..65)) {
            (Some(body), Some(sum)) => {
                body.get(..8) == Some(RECORD_MAGIC_V1) && Sha256::digest(body)[..] == *sum
            }
            _ => false,
        }
    }
}

/// The bytes a record at `done_from` fingerprints: ciphertext this job wrote at
/// `done_from + shift`, which later steps (lower chunks, the header area) never touch.
fn fingerprint_range(done_from: u64, plain_len: u64, shift: u64) -> (u64, u64) {
    let len = plain_len.saturating_sub(done_from).min(FINGERPRINT_LEN);
    (done_from.saturating_add(shift), len)
}

fn fingerprint<D: BlockDevice>(
    dev: &mut D,
    done_from: u64,
    plain_len: u64,
    shift: u64,
) -> Result<[u8; 32], InplaceError> {
    let (at, len) = fingerprint_range(done_from, plain_len, shift);
    let mut b = vec![0u8; len as usize];
    dev.read_at(at, &mut b).map_err(InplaceError::Device)?;
    Ok(Sha256::digest(&b).into())
}

/// Progress records sit in the journal right after the header area, which ends at the
/// data offset.
fn read_record<J: BlockDevice>(
    journal: &mut J,
    record_at: u64,
) -> Result<Option<Record>, InplaceError> {
    let mut best: Option<Record> = None;
    for slot in 0..2u64 {
        let mut b = vec![0u8; RECORD_SIZE];
        if journal
            .read_at(record_at + slot * RECORD_SIZE as u64, &mut b)
            .is_err()
        {
            continue;
        }
        if Record::is_v1(&b) {
            return Err(InplaceError::OldJournal);
        }
        if let Some(r) = Record::decode(&b) {
            match best {
                Some(x) if x.seq >= r.seq => {}
                _ => best = Some(r),
            }
        }
    }
    Ok(best)
}

fn write_record<J: BlockDevice>(
    journal: &mut J,
    record_at: u64,
    r: &Record,
) -> Result<(), InplaceError> {
    let at = record_at + (r.seq % 2) * RECORD_SIZE as u64;
    journal
        .write_at(at, &r.encode())
        .and_then(|_| journal.sync())
        .map_err(InplaceError::JournalDevice)
}

/// Encrypts the plaintext on `dev` in place (see the module documentation), or resumes
/// an interrupted run recorded in `journal`. `secret` and `recovery` are as for
/// [`super::format`] and must be the same on resume. `chunk` bytes move per step.
pub fn encrypt_existing<D: BlockDevice, J: BlockDevice>(
    dev: &mut D,
    journal: &mut J,
    secret: &Zeroizing<Vec<u8>>,
    recovery: &Zeroizing<Vec<u8>>,
    opts: &FormatOptions,
    chunk: u64,
) -> Result<(Luks2Volume, Zeroizing<Vec<u8>>), InplaceError> {
    let shift = opts.data_offset;
    if shift == 0 {
        return Err(InplaceError::NoDataOffset);
    }
    let sector = u64::from(opts.sector_size);
    if chunk == 0 || chunk > shift || !chunk.is_multiple_of(sector) {
        return Err(InplaceError::Chunk {
            chunk,
            max: shift,
            sector: opts.sector_size,
        });
    }
    let size = dev.size().map_err(InplaceError::Device)?;
    if size <= shift || !(size - shift).is_multiple_of(sector) {
        return Err(InplaceError::DeviceSize {
            size,
            offset: shift,
            sector: opts.sector_size,
        });
    }
    let plain_len = size - shift;

    // A record means data may have moved: never start over then.
    let mut record = match read_record(journal, shift)? {
        Some(r) => r,
        None => {
            format_impl(journal, secret, recovery, opts, false).map_err(InplaceError::Format)?;
            let r = Record {
                seq: 0,
                device_size: size,
                done_from: plain_len,
                complete: false,
                fingerprint: fingerprint(dev, plain_len, plain_len, shift)?,
            };
            write_record(journal, shift, &r)?;
            r
        }
    };
    if record.device_size != size {
        return Err(InplaceError::ForeignJournal {
            recorded: record.device_size,
            actual: size,
        });
    }
    if fingerprint(dev, record.done_from, plain_len, shift)? != record.fingerprint {
        let (offset, len) = fingerprint_range(record.done_from, plain_len, shift);
        return Err(InplaceError::ForeignDevice { offset, len });
    }
    let header = Luks2Volume::read(journal).map_err(InplaceError::Journal)?;
    let key = header
        .open(journal, secret, None)
        .map_err(InplaceError::Journal)?
        .volume_key;
    let seg = header.data_segment(&key).map_err(InplaceError::Journal)?;

    let mut buf = Zeroizing::new(vec![0u8; chunk as usize]);
    while record.done_from > 0 {
        let off = record.done_from.saturating_sub(chunk);
        let len = (record.done_from - off) as usize;
        let data = buf.get_mut(..len).unwrap_or_default();
        dev.read_at(off, data).map_err(InplaceError::Device)?;
        seg.encrypt(off / sector, data)
            .map_err(InplaceError::Segment)?;
        dev.write_at(off + shift, data)
            .and_then(|_| dev.sync())
            .map_err(InplaceError::Device)?;
        record.seq += 1;
        record.done_from = off;
        record.fingerprint = fingerprint(dev, off, plain_len, shift)?;
        write_record(journal, shift, &record)?;
    }

    if !record.complete {
        let meta_len = 2 * header.header.hdr_size + header.metadata.config.keyslots_size.0;
        let mut at = 0u64;
        while at < meta_len {
            let n = (meta_len - at).min(chunk) as usize;
            let part = buf.get_mut(..n).unwrap_or_default();
            journal
                .read_at(at, part)
                .map_err(InplaceError::JournalDevice)?;
            dev.write_at(at, part).map_err(InplaceError::Device)?;
            at += n as u64;
        }
        dev.sync().map_err(InplaceError::Device)?;
        record.seq += 1;
        record.complete = true;
        write_record(journal, shift, &record)?;
    }
    let volume = Luks2Volume::read(dev).map_err(InplaceError::Finished)?;
    Ok((volume, key))
}

#[cfg(test)]
mod tests;
