//! The sealed blob file format (version 1). All integers big-endian, TPM2B = u16 size + bytes.
//!
//! ```text
//! magic        8 bytes  "VCHSEAL\0"
//! version      u16      1
//! kind         u8       1 = PolicyPCR, 2 = PolicyAuthorize
//! kind 1:      TPML_PCR_SELECTION        the bound PCRs (PolicyPCR order)
//!              u32 count                 = number of selected PCRs
//!              count x TPM2B_DIGEST      their bound values, in selection order
//! kind 2:      TPM2B policyRef           at most 64 bytes
//!              TPM2B_PUBLIC              the fleet policy key (ECC P-256, loaded with
//!                                        TPM2_LoadExternal; its Name is in the policy)
//! TPM2B        authPolicy                the sealed object's policy digest (SHA-256)
//! TPM2B_PUBLIC                           the sealed data object (KEYEDHASH)
//! TPM2B_PRIVATE                          the sealed data object, wrapped by the SRK 0x81000001
//! ```
//! Nothing follows. The PCR values are public (a quote reveals them too); they let the agent
//! say which bound PCR changed when unsealing fails. The TPM2B_PUBLIC / TPM2B_PRIVATE are what
//! `tpm2_load -u -r` takes (tpm2-tools "tss" format).

use super::{Binding, SealedObject};
use thiserror::Error;
use vouch_attest::tpm::selection::SelectionError;
use vouch_attest::tpm::wire::{size_prefixed, Reader, WireError, Writer};
use vouch_attest::tpm::{PcrSelection, PublicError, TpmPublic};
use vouch_attest::{HashAlg, PcrBanks};

/// First bytes of every sealed blob.
pub const MAGIC: [u8; 8] = *b"VCHSEAL\0";
/// The version this code writes and reads.
pub const VERSION: u16 = 1;
const KIND_PCR: u8 = 1;
const KIND_AUTHORIZED: u8 = 2;
/// Largest TPM2B_PUBLIC / TPM2B_PRIVATE accepted.
const MAX_TPM_BLOB: usize = 2048;

/// Why a sealed blob could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlobError {
    /// It does not start with the magic.
    #[error("not a Vouch sealed blob (bad magic)")]
    Magic,
    /// Another version.
    #[error("sealed blob version {0} is not supported (this agent reads version {VERSION})")]
    Version(u16),
    /// Unknown policy kind.
    #[error("unknown policy kind {kind} at offset {offset}")]
    Kind { kind: u8, offset: usize },
    /// Truncated, oversized field or trailing bytes.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The PCR selection is malformed.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// The value count does not match the selection.
    #[error("{count} PCR values at offset {offset} for {selected} selected PCRs")]
    ValueCount {
        count: u32,
        selected: usize,
        offset: usize,
    },
    /// A PCR value has the wrong length for its bank.
    #[error("value of PCR {bank}:{pcr} at offset {offset} is {len} bytes")]
    ValueLength {
        bank: HashAlg,
        pcr: u32,
        len: usize,
        offset: usize,
    },
    /// The fleet key is not a valid public area.
    #[error("the fleet policy key is unusable")]
    FleetKey(#[from] PublicError),
}

/// Encodes a sealed object.
pub fn encode(sealed: &SealedObject) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(&MAGIC);
    w.u16(VERSION);
    match &sealed.binding {
        Binding::Pcr { selection, values } => {
            w.u8(KIND_PCR);
            selection.write(&mut w);
            w.u32(selection.len() as u32);
            for (bank, pcr) in selection.iter() {
                w.tpm2b(values.get(bank, pcr).unwrap_or_default());
            }
        }
        Binding::Authorized { key, policy_ref } => {
            w.u8(KIND_AUTHORIZED);
            w.tpm2b(policy_ref);
            w.bytes(&key.marshal_tpm2b());
        }
    }
    w.tpm2b(&sealed.auth_policy);
    w.bytes(&sealed.public);
    w.bytes(&sealed.private);
    w.into_bytes()
}

/// Decodes a sealed blob.
pub fn decode(data: &[u8]) -> Result<SealedObject, BlobError> {
    let mut r = Reader::new(data);
    if r.bytes(MAGIC.len(), "magic").ok() != Some(&MAGIC[..]) {
        return Err(BlobError::Magic);
    }
    let version = r.u16("version")?;
    if version != VERSION {
        return Err(BlobError::Version(version));
    }
    let offset = r.offset();
    let binding = match r.u8("kind")? {
        KIND_PCR => read_pcr(&mut r)?,
        KIND_AUTHORIZED => {
            let policy_ref = r.tpm2b(64, "policyRef")?.to_vec();
            let key = TpmPublic::parse_bare(r.tpm2b(MAX_TPM_BLOB, "fleet key TPM2B_PUBLIC")?)?;
            Binding::Authorized { key, policy_ref }
        }
        kind => return Err(BlobError::Kind { kind, offset }),
    };
    let auth_policy = r.tpm2b(64, "authPolicy")?.to_vec();
    let public = size_prefixed(r.tpm2b(MAX_TPM_BLOB, "sealed object TPM2B_PUBLIC")?);
    let private = size_prefixed(r.tpm2b(MAX_TPM_BLOB, "sealed object TPM2B_PRIVATE")?);
    r.finish("sealed blob")?;
    Ok(SealedObject {
        binding,
        auth_policy,
        public,
        private,
    })
}

fn read_pcr(r: &mut Reader<'_>) -> Result<Binding, BlobError> {
    let selection = PcrSelection::read(r)?;
    let offset = r.offset();
    let count = r.u32("PCR value count")?;
    let selected = selection.len();
    if usize::try_from(count).ok() != Some(selected) {
        return Err(BlobError::ValueCount {
            count,
            selected,
            offset,
        });
    }
    let mut values = PcrBanks::new();
    for (bank, pcr) in selection.iter() {
        let offset = r.offset();
        let v = r.tpm2b(64, "PCR value")?;
        if bank.digest_len() != Some(v.len()) {
            return Err(BlobError::ValueLength {
                bank,
                pcr,
                len: v.len(),
                offset,
            });
        }
        values.insert(bank, pcr, v.to_vec());
    }
    Ok(Binding::Pcr { selection, values })
}
