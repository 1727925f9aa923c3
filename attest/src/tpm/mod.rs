//! TPM 2.0 structures on the wire: parsing and bit-exact marshalling of TPMS_ATTEST,
//! TPMT_SIGNATURE, TPMT_PUBLIC / TPM2B_PUBLIC and TPML_PCR_SELECTION, plus plain public keys with
//! SubjectPublicKeyInfo DER / PEM import and export.
//!
//! Everything here is pure: bytes in, typed values out. Parsers never panic and never allocate
//! more than the input they were given.

pub mod attest;
pub mod attrs;
pub mod keys;
pub mod params;
pub mod public;
pub mod selection;
pub mod signature;
pub mod wire;

pub use attest::{Attest, AttestBody, AttestError, AttestForm, ClockInfo, QuoteInfo};
pub use attrs::ObjectAttributes;
pub use keys::{KeyError, PublicKey};
pub use params::{AsymScheme, EccCurve, KdfScheme, SymDef};
pub use public::{PublicError, PublicForm, PublicParams, TpmPublic};
pub use selection::{PcrSelect, PcrSelection, SelectionError};
pub use signature::{Signature, SignatureError};

/// Serializes bytes as lower-case hex (used by the `Serialize` impls of this module tree).
pub(crate) fn ser_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}
