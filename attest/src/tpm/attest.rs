//! TPMS_ATTEST / TPM2B_ATTEST: the structure a TPM signs for quotes, certifications and creation
//! tickets, with a parser that also accepts the size-prefixed form and a bit-exact marshaller.

use super::selection::{PcrSelection, SelectionError};
use super::wire::{size_prefixed, strip_size_prefix, Reader, WireError, Writer};
use serde::Serialize;
use thiserror::Error;

/// TPM_GENERATED_VALUE: every TPMS_ATTEST made by a TPM starts with it.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_CERTIFY.
pub const ST_ATTEST_CERTIFY: u16 = 0x8017;
/// TPM_ST_ATTEST_QUOTE.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM_ST_ATTEST_CREATION.
pub const ST_ATTEST_CREATION: u16 = 0x801A;
/// Largest TPM2B_NAME / TPM2B_DATA payload (a TPMT_HA with SHA-512).
pub const MAX_NAME: usize = 66;
/// Largest TPM2B_DIGEST payload.
pub const MAX_DIGEST: usize = 64;

/// Errors reading a TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttestError {
    /// The bytes ended early, a size was out of range or bytes were left over.
    #[error("malformed TPMS_ATTEST")]
    Wire(#[from] WireError),
    /// The PCR selection of a quote is malformed.
    #[error("malformed PCR selection in TPMS_QUOTE_INFO")]
    Selection(#[from] SelectionError),
    /// Neither the magic nor the structure fit: probably not an attestation at all.
    #[error("not a TPMS_ATTEST: magic 0x{magic:08x} is not 0xff544347 and {cause}")]
    NotAttest {
        /// The first four bytes.
        magic: u32,
        /// The parse failure that followed.
        cause: Box<AttestError>,
    },
    /// clockInfo.safe is neither 0 nor 1.
    #[error("TPMS_CLOCK_INFO.safe at offset {offset} is {value}, expected 0 or 1")]
    InvalidSafe {
        /// The byte found.
        value: u8,
        /// Its offset.
        offset: usize,
    },
}

/// How the attestation bytes were framed on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AttestForm {
    /// A bare TPMS_ATTEST (what `tpm2_quote -m` writes).
    Bare,
    /// A TPM2B_ATTEST: u16 size, then the TPMS_ATTEST.
    SizePrefixed,
}

/// Returns the bare TPMS_ATTEST bytes (the signed message) and the framing that was found.
///
/// Input starting with the magic is bare; input whose u16 size prefix equals the rest of the
/// input and is followed by the magic is a TPM2B_ATTEST; anything else is treated as bare (its
/// magic check will then fail).
pub fn unwrap_attest(data: &[u8]) -> (&[u8], AttestForm) {
    let magic = TPM_GENERATED_VALUE.to_be_bytes();
    if data.starts_with(&magic) {
        return (data, AttestForm::Bare);
    }
    match strip_size_prefix(data) {
        Some(inner) if inner.starts_with(&magic) => (inner, AttestForm::SizePrefixed),
        _ => (data, AttestForm::Bare),
    }
}

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since it was last cleared.
    pub clock: u64,
    /// TPM Reset (reboot) count; obfuscated for keys outside the endorsement/platform hierarchy.
    pub reset_count: u32,
    /// TPM Restart / resume count since the last reset; obfuscated like `reset_count`.
    pub restart_count: u32,
    /// False when `clock` may have gone back after an unorderly shutdown.
    pub safe: bool,
}

/// TPMS_QUOTE_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteInfo {
    /// The PCRs covered.
    pub pcr_select: PcrSelection,
    /// Hash of the selected PCR values, with the signing scheme's hash.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub pcr_digest: Vec<u8>,
}

/// TPMS_CERTIFY_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertifyInfo {
    /// Name of the certified object.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub name: Vec<u8>,
    /// Qualified name of the certified object.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub qualified_name: Vec<u8>,
}

/// TPMS_CREATION_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreationInfo {
    /// Name of the object the creation data belongs to.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub object_name: Vec<u8>,
    /// Hash of its TPMS_CREATION_DATA.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub creation_hash: Vec<u8>,
}

/// The type-specific part of a TPMS_ATTEST (TPMU_ATTEST with its TPMI_ST_ATTEST tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AttestBody {
    /// TPM_ST_ATTEST_QUOTE.
    Quote(QuoteInfo),
    /// TPM_ST_ATTEST_CERTIFY.
    Certify(CertifyInfo),
    /// TPM_ST_ATTEST_CREATION.
    Creation(CreationInfo),
    /// Any other attestation type, body kept as bytes.
    Other {
        /// The TPM_ST value.
        tag: u16,
        /// The raw body.
        #[serde(serialize_with = "crate::tpm::ser_hex")]
        body: Vec<u8>,
    },
}

impl AttestBody {
    /// The TPM_ST_ATTEST_* tag of this body.
    pub fn tag(&self) -> u16 {
        match self {
            AttestBody::Quote(_) => ST_ATTEST_QUOTE,
            AttestBody::Certify(_) => ST_ATTEST_CERTIFY,
            AttestBody::Creation(_) => ST_ATTEST_CREATION,
            AttestBody::Other { tag, .. } => *tag,
        }
    }
}

/// A parsed TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attest {
    /// Should be [`TPM_GENERATED_VALUE`]; kept as found so verification can report it.
    pub magic: u32,
    /// Qualified name of the signing key.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub qualified_signer: Vec<u8>,
    /// Caller-supplied qualifying data (the nonce).
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub extra_data: Vec<u8>,
    /// TPM clock and boot counters.
    pub clock_info: ClockInfo,
    /// Vendor firmware version (obfuscated for keys outside endorsement/platform hierarchy).
    pub firmware_version: u64,
    /// Type-specific body.
    pub body: AttestBody,
}

impl Attest {
    /// Parses a TPMS_ATTEST or a TPM2B_ATTEST (see [`unwrap_attest`]).
    pub fn parse(data: &[u8]) -> Result<Attest, AttestError> {
        Attest::parse_bare(unwrap_attest(data).0)
    }

    /// Parses exactly one bare TPMS_ATTEST. A wrong magic alone is not an error (verification
    /// reports it); a wrong magic followed by a parse failure is [`AttestError::NotAttest`].
    pub fn parse_bare(data: &[u8]) -> Result<Attest, AttestError> {
        Attest::parse_fields(data).map_err(|cause| match data.first_chunk::<4>() {
            Some(m) if u32::from_be_bytes(*m) != TPM_GENERATED_VALUE => AttestError::NotAttest {
                magic: u32::from_be_bytes(*m),
                cause: Box::new(cause),
            },
            _ => cause,
        })
    }

    fn parse_fields(data: &[u8]) -> Result<Attest, AttestError> {
        let mut r = Reader::new(data);
        let magic = r.u32("TPMS_ATTEST.magic")?;
        let tag = r.u16("TPMS_ATTEST.type")?;
        let qualified_signer = r.tpm2b(MAX_NAME, "TPMS_ATTEST.qualifiedSigner")?.to_vec();
        let extra_data = r.tpm2b(MAX_NAME, "TPMS_ATTEST.extraData")?.to_vec();
        let clock = r.u64("TPMS_CLOCK_INFO.clock")?;
        let reset_count = r.u32("TPMS_CLOCK_INFO.resetCount")?;
        let restart_count = r.u32("TPMS_CLOCK_INFO.restartCount")?;
        let offset = r.offset();
        let safe = match r.u8("TPMS_CLOCK_INFO.safe")? {
            0 => false,
            1 => true,
            value => return Err(AttestError::InvalidSafe { value, offset }),
        };
        let firmware_version = r.u64("TPMS_ATTEST.firmwareVersion")?;
        let body = match tag {
            ST_ATTEST_QUOTE => AttestBody::Quote(QuoteInfo {
                pcr_select: PcrSelection::read(&mut r)?,
                pcr_digest: r.tpm2b(MAX_DIGEST, "TPMS_QUOTE_INFO.pcrDigest")?.to_vec(),
            }),
            ST_ATTEST_CERTIFY => AttestBody::Certify(CertifyInfo {
                name: r.tpm2b(MAX_NAME, "TPMS_CERTIFY_INFO.name")?.to_vec(),
                qualified_name: r
                    .tpm2b(MAX_NAME, "TPMS_CERTIFY_INFO.qualifiedName")?
                    .to_vec(),
            }),
            ST_ATTEST_CREATION => AttestBody::Creation(CreationInfo {
                object_name: r.tpm2b(MAX_NAME, "TPMS_CREATION_INFO.objectName")?.to_vec(),
                creation_hash: r
                    .tpm2b(MAX_DIGEST, "TPMS_CREATION_INFO.creationHash")?
                    .to_vec(),
            }),
            other => AttestBody::Other {
                tag: other,
                body: r.bytes(r.remaining(), "TPMS_ATTEST.attested")?.to_vec(),
            },
        };
        r.finish("TPMS_ATTEST")?;
        Ok(Attest {
            magic,
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            body,
        })
    }

    /// Marshals the bare TPMS_ATTEST (the bytes a TPM signs).
    pub fn marshal(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.magic);
        w.u16(self.body.tag());
        w.tpm2b(&self.qualified_signer);
        w.tpm2b(&self.extra_data);
        w.u64(self.clock_info.clock);
        w.u32(self.clock_info.reset_count);
        w.u32(self.clock_info.restart_count);
        w.u8(u8::from(self.clock_info.safe));
        w.u64(self.firmware_version);
        match &self.body {
            AttestBody::Quote(q) => {
                q.pcr_select.write(&mut w);
                w.tpm2b(&q.pcr_digest);
            }
            AttestBody::Certify(c) => {
                w.tpm2b(&c.name);
                w.tpm2b(&c.qualified_name);
            }
            AttestBody::Creation(c) => {
                w.tpm2b(&c.object_name);
                w.tpm2b(&c.creation_hash);
            }
            AttestBody::Other { body, .. } => w.bytes(body),
        }
        w.into_bytes()
    }

    /// Marshals a TPM2B_ATTEST (u16 size, then the TPMS_ATTEST).
    pub fn marshal_tpm2b(&self) -> Vec<u8> {
        size_prefixed(&self.marshal())
    }

    /// The quote body, if this is a quote.
    pub fn quote(&self) -> Option<&QuoteInfo> {
        match &self.body {
            AttestBody::Quote(q) => Some(q),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::HashAlg;
    use crate::tpm::selection::PcrSelect;

    fn sample(body: AttestBody) -> Attest {
        Attest {
            magic: TPM_GENERATED_VALUE,
            qualified_signer: vec![0, 0x0b, 1, 2, 3],
            extra_data: vec![9; 16],
            clock_info: ClockInfo {
                clock: 123_456,
                reset_count: 7,
                restart_count: 2,
                safe: true,
            },
            firmware_version: 0x0102_0304_0506_0708,
            body,
        }
    }

    #[test]
    fn round_trips_all_bodies_in_both_forms() {
        let bodies = [
            AttestBody::Quote(QuoteInfo {
                pcr_select: PcrSelection {
                    banks: vec![PcrSelect::new(HashAlg::Sha256, &[0, 7]).unwrap()],
                },
                pcr_digest: vec![5; 32],
            }),
            AttestBody::Certify(CertifyInfo {
                name: vec![0, 0x0b, 4, 4],
                qualified_name: vec![0, 0x0b, 5, 5],
            }),
            AttestBody::Creation(CreationInfo {
                object_name: vec![0, 0x0b, 6],
                creation_hash: vec![7; 32],
            }),
            AttestBody::Other {
                tag: 0x8019,
                body: vec![1, 2, 3],
            },
        ];
        for body in bodies {
            let a = sample(body);
            assert_eq!(Attest::parse(&a.marshal()).unwrap(), a);
            assert_eq!(Attest::parse(&a.marshal_tpm2b()).unwrap(), a);
            assert_eq!(
                unwrap_attest(&a.marshal_tpm2b()).1,
                AttestForm::SizePrefixed
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let a = sample(AttestBody::Certify(CertifyInfo {
            name: vec![1; 34],
            qualified_name: vec![2; 34],
        }));
        let bytes = a.marshal();
        for n in 0..bytes.len() {
            assert!(
                Attest::parse_bare(&bytes[..n]).is_err(),
                "prefix {n} parsed"
            );
        }
        let mut alien = bytes.clone();
        alien[0] = 0;
        alien.truncate(20);
        assert!(matches!(
            Attest::parse_bare(&alien),
            Err(AttestError::NotAttest {
                magic: 0x0054_4347,
                ..
            })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Attest::parse_bare(&long),
            Err(AttestError::Wire(WireError::Trailing { .. }))
        ));
    }
}
