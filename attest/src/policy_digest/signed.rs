//! The signed policy file: an approved PCR policy the fleet hands to devices.
//!
//! It carries two ECDSA-SHA256 signatures by the fleet's P-256 policy key:
//! - the **approval** over `approvedPolicy || policyRef` (i.e. over `aHash`), which the device's
//!   TPM checks with TPM2_VerifySignature before TPM2_PolicyAuthorize: this is what unlocks;
//! - the **statement** over [`SignedPolicy::statement`], which binds the serial number, the PCR
//!   selection and values, the approved digest, the policyRef and the key's Name. The TPM never
//!   sees it: the agent checks it and refuses a file whose serial is lower than the newest one
//!   it holds, so an old (possibly vulnerable) boot state cannot be re-approved by replaying an
//!   old file. That ordering is enforced by the agent, not by the TPM.
//!
//! JSON form (hex strings, lower case):
//! ```json
//! { "format": "vouch-signed-pcr-policy/1", "serial": 1732363200000,
//!   "selection": "sha256:7", "pcrs": {"sha256": {"7": "<hex>"}},
//!   "approved_policy": "<hex>", "policy_ref": "<hex>",
//!   "key": "<hex TPM2B_PUBLIC>", "key_name": "<hex>",
//!   "approval_signature": "<hex TPMT_SIGNATURE>", "statement_signature": "<hex TPMT_SIGNATURE>" }
//! ```
//! Every constructor verifies: a [`SignedPolicy`] value is always internally consistent and
//! signed by its `key` (whether that key is the right one is the caller's decision).

use super::authorize::verify_ecdsa;
use super::pcr::policy_pcr;
use super::{approval_message, initial, PolicyDigestError, MAX_POLICY_REF, POLICY_ALG};
use crate::pcrfile::{read_json, PcrFileError};
use crate::pcrs::PcrBanks;
use crate::tpm::selection::PcrSelection;
use crate::tpm::wire::Writer;
use crate::tpm::{PublicError, Signature, SignatureError, TpmPublic};
use crate::HashAlg;
use thiserror::Error;

/// The `format` value of version 1 files.
pub const FORMAT: &str = "vouch-signed-pcr-policy/1";
/// Domain separation prefix of the statement signing input.
const STATEMENT_TAG: &[u8] = b"VOUCH-SIGNED-PCR-POLICY/1\0";

/// Why a signed policy file was refused.
#[derive(Debug, Error)]
pub enum SignedPolicyError {
    /// Not JSON of the expected shape.
    #[error("signed policy: not valid JSON of the expected shape")]
    Json(#[source] serde_json::Error),
    /// The `format` field names another format or version.
    #[error("signed policy: format {0:?}, expected {FORMAT:?}")]
    Format(String),
    /// A hex field is not hex.
    #[error("signed policy: field {field} is not hex")]
    Hex {
        /// The field.
        field: &'static str,
    },
    /// The `pcrs` object is malformed.
    #[error("signed policy: malformed field pcrs")]
    Pcrs(#[source] PcrFileError),
    /// The selection, values or policyRef do not give a policy digest.
    #[error(
        "signed policy: cannot compute the policy digest of its selection, values and policyRef"
    )]
    Policy(#[source] PolicyDigestError),
    /// A PCR value is listed that the selection does not select.
    #[error("signed policy: value for PCR {bank}:{pcr}, which the selection does not select")]
    ExtraPcr {
        /// Bank.
        bank: HashAlg,
        /// PCR.
        pcr: u32,
    },
    /// The key is not a TPM2B_PUBLIC.
    #[error("signed policy: field key is not a TPM2B_PUBLIC")]
    Key(#[source] PublicError),
    /// A signature is not a TPMT_SIGNATURE.
    #[error("signed policy: field {field} is not a TPMT_SIGNATURE")]
    Signature {
        /// The field.
        field: &'static str,
        /// Why.
        #[source]
        source: SignatureError,
    },
    /// `approved_policy` is not the PolicyPCR digest of the listed selection and values.
    #[error("signed policy: approved_policy is not the PolicyPCR digest of its PCR values")]
    ApprovedMismatch,
    /// `key_name` is not the Name of `key`.
    #[error("signed policy: key_name is not the Name of key")]
    KeyNameMismatch,
    /// The approval signature does not verify.
    #[error("signed policy: the approval signature does not verify")]
    Approval(#[source] PolicyDigestError),
    /// The statement signature does not verify.
    #[error("signed policy: the statement signature (serial, PCRs) does not verify")]
    Statement(#[source] PolicyDigestError),
}

/// The unsigned content of a signed policy: what the fleet signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDraft {
    /// Monotonic serial number (the fleet uses Unix milliseconds by default).
    pub serial: u64,
    /// PCRs the approved policy binds, in PolicyPCR order.
    pub selection: PcrSelection,
    /// Their approved values (exactly the selected PCRs).
    pub values: PcrBanks,
    /// `PolicyPCR(selection, values)` from a fresh SHA-256 session.
    pub approved_policy: Vec<u8>,
    /// The policyRef sealed objects name.
    pub policy_ref: Vec<u8>,
    /// The fleet key's public area (see [`super::fleet_key_public`]).
    pub key: TpmPublic,
}

/// A verified signed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    /// The signed content.
    pub draft: PolicyDraft,
    /// ECDSA-SHA256 over `approvedPolicy || policyRef` (checked by the TPM).
    pub approval_signature: Signature,
    /// ECDSA-SHA256 over [`SignedPolicy::statement`] (checked by the agent).
    pub statement_signature: Signature,
}

impl PolicyDraft {
    /// The draft for `values` of `selection` (values of other PCRs are ignored).
    pub fn new(
        serial: u64,
        selection: PcrSelection,
        values: &PcrBanks,
        policy_ref: Vec<u8>,
        key: TpmPublic,
    ) -> Result<PolicyDraft, SignedPolicyError> {
        if policy_ref.len() > MAX_POLICY_REF {
            return Err(SignedPolicyError::Policy(
                PolicyDigestError::PolicyRefLength(policy_ref.len()),
            ));
        }
        let mut selected = PcrBanks::new();
        for (bank, pcr) in selection.iter() {
            if let Some(v) = values.get(bank, pcr) {
                selected.insert(bank, pcr, v.to_vec());
            }
        }
        let start = initial(POLICY_ALG).map_err(SignedPolicyError::Policy)?;
        let approved_policy = policy_pcr(POLICY_ALG, &start, &selection, &selected)
            .map_err(SignedPolicyError::Policy)?;
        Ok(PolicyDraft {
            serial,
            selection,
            values: selected,
            approved_policy,
            policy_ref,
            key,
        })
    }

    /// The message of the approval signature: `approvedPolicy || policyRef`.
    pub fn approval_message(&self) -> Vec<u8> {
        approval_message(&self.approved_policy, &self.policy_ref)
    }

    /// The message of the statement signature: a tag, then serial (u64), TPML_PCR_SELECTION,
    /// the values as a u32 count and TPM2B_DIGESTs in selection order, approvedPolicy,
    /// policyRef and the key's Name as TPM2Bs.
    pub fn statement(&self) -> Result<Vec<u8>, SignedPolicyError> {
        let name = self.key.name().map_err(SignedPolicyError::Key)?;
        let mut w = Writer::new();
        w.bytes(STATEMENT_TAG);
        w.u64(self.serial);
        self.selection.write(&mut w);
        w.u32(self.selection.len() as u32);
        for (bank, pcr) in self.selection.iter() {
            w.tpm2b(self.values.get(bank, pcr).unwrap_or_default());
        }
        w.tpm2b(&self.approved_policy);
        w.tpm2b(&self.policy_ref);
        w.tpm2b(&name);
        Ok(w.into_bytes())
    }

    /// Attaches the two signatures, verifying both.
    pub fn finish(
        self,
        approval_signature: Signature,
        statement_signature: Signature,
    ) -> Result<SignedPolicy, SignedPolicyError> {
        verify_ecdsa(&self.key, &self.approval_message(), &approval_signature)
            .map_err(SignedPolicyError::Approval)?;
        verify_ecdsa(&self.key, &self.statement()?, &statement_signature)
            .map_err(SignedPolicyError::Statement)?;
        Ok(SignedPolicy {
            draft: self,
            approval_signature,
            statement_signature,
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Json {
    format: String,
    serial: u64,
    selection: String,
    pcrs: serde_json::Value,
    approved_policy: String,
    policy_ref: String,
    key: String,
    key_name: String,
    approval_signature: String,
    statement_signature: String,
}

fn unhex(field: &'static str, text: &str) -> Result<Vec<u8>, SignedPolicyError> {
    hex::decode(text).map_err(|_| SignedPolicyError::Hex { field })
}

fn signature(field: &'static str, text: &str) -> Result<Signature, SignedPolicyError> {
    Signature::parse(&unhex(field, text)?)
        .map_err(|source| SignedPolicyError::Signature { field, source })
}

impl SignedPolicy {
    /// Parses and verifies a signed policy file.
    pub fn from_json(data: &[u8]) -> Result<SignedPolicy, SignedPolicyError> {
        let j: Json = serde_json::from_slice(data).map_err(SignedPolicyError::Json)?;
        if j.format != FORMAT {
            return Err(SignedPolicyError::Format(j.format));
        }
        let selection: crate::tpm::PcrSelection = j
            .selection
            .parse()
            .map_err(|e| SignedPolicyError::Policy(PolicyDigestError::Selection(e)))?;
        let pcr_text = serde_json::to_vec(&j.pcrs).map_err(SignedPolicyError::Json)?;
        let values = read_json(&pcr_text).map_err(SignedPolicyError::Pcrs)?;
        for (bank, pcrs) in values.banks() {
            for pcr in pcrs.keys() {
                if !selection.iter().any(|s| s == (bank, *pcr)) {
                    return Err(SignedPolicyError::ExtraPcr { bank, pcr: *pcr });
                }
            }
        }
        let (key, _) = TpmPublic::parse(&unhex("key", &j.key)?).map_err(SignedPolicyError::Key)?;
        let draft = PolicyDraft::new(
            j.serial,
            selection,
            &values,
            unhex("policy_ref", &j.policy_ref)?,
            key,
        )?;
        if draft.approved_policy != unhex("approved_policy", &j.approved_policy)? {
            return Err(SignedPolicyError::ApprovedMismatch);
        }
        if draft.key.name().map_err(SignedPolicyError::Key)? != unhex("key_name", &j.key_name)? {
            return Err(SignedPolicyError::KeyNameMismatch);
        }
        draft.finish(
            signature("approval_signature", &j.approval_signature)?,
            signature("statement_signature", &j.statement_signature)?,
        )
    }

    /// The JSON file, pretty-printed with a trailing newline.
    pub fn to_json(&self) -> Result<String, SignedPolicyError> {
        let d = &self.draft;
        let j = Json {
            format: FORMAT.to_string(),
            serial: d.serial,
            selection: d.selection.to_string(),
            pcrs: d.values.to_json(),
            approved_policy: hex::encode(&d.approved_policy),
            policy_ref: hex::encode(&d.policy_ref),
            key: hex::encode(d.key.marshal_tpm2b()),
            key_name: hex::encode(d.key.name().map_err(SignedPolicyError::Key)?),
            approval_signature: hex::encode(self.approval_signature.marshal()),
            statement_signature: hex::encode(self.statement_signature.marshal()),
        };
        let mut s = serde_json::to_string_pretty(&j).map_err(SignedPolicyError::Json)?;
        s.push('\n');
        Ok(s)
    }

    /// The Name of the signing key.
    pub fn key_name(&self) -> Result<Vec<u8>, SignedPolicyError> {
        self.draft.key.name().map_err(SignedPolicyError::Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_digest::fleet_key_public;
    use crate::tpm::keys::PublicKey;
    use crate::tpm::params::EccCurve;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature as P256Signature, SigningKey};

    fn sign(sk: &SigningKey, message: &[u8]) -> Signature {
        let sig: P256Signature = sk.sign(message);
        let (r, s) = sig.split_bytes();
        Signature::Ecdsa {
            hash: HashAlg::Sha256,
            r: r.to_vec(),
            s: s.to_vec(),
        }
    }

    fn fleet(seed: u8) -> (SigningKey, TpmPublic) {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        let key = PublicKey::from_sec1(
            EccCurve::NistP256,
            sk.verifying_key().to_encoded_point(false).as_bytes(),
        )
        .unwrap();
        (sk, fleet_key_public(&key).unwrap())
    }

    fn signed(sk: &SigningKey, draft: PolicyDraft) -> SignedPolicy {
        let a = sign(sk, &draft.approval_message());
        let s = sign(sk, &draft.statement().unwrap());
        draft.finish(a, s).unwrap()
    }

    fn draft(serial: u64, key: TpmPublic) -> PolicyDraft {
        let mut values = PcrBanks::new();
        values.insert(HashAlg::Sha256, 7, vec![0xab; 32]);
        values.insert(HashAlg::Sha256, 8, vec![0xcd; 32]);
        let sel: crate::tpm::PcrSelection = "sha256:7".parse().unwrap();
        PolicyDraft::new(serial, sel, &values, b"vouch".to_vec(), key).unwrap()
    }

    #[test]
    fn round_trips_through_json_and_keeps_only_selected_values() {
        let (sk, key) = fleet(1);
        let p = signed(&sk, draft(42, key));
        assert_eq!(p.draft.values.get(HashAlg::Sha256, 8), None);
        let json = p.to_json().unwrap();
        let back = SignedPolicy::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.draft.serial, 42);
    }

    #[test]
    fn tampering_with_any_signed_field_is_refused() {
        let (sk, key) = fleet(1);
        let json = signed(&sk, draft(42, key.clone())).to_json().unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        // A raised serial: the statement signature no longer verifies.
        v["serial"] = 43.into();
        assert!(matches!(
            SignedPolicy::from_json(v.to_string().as_bytes()),
            Err(SignedPolicyError::Statement(
                PolicyDigestError::SignatureInvalid
            ))
        ));
        // Other PCR values: approved_policy no longer matches them.
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["pcrs"]["sha256"]["7"] = hex::encode([0xac; 32]).into();
        assert!(matches!(
            SignedPolicy::from_json(v.to_string().as_bytes()),
            Err(SignedPolicyError::ApprovedMismatch)
        ));
        // Another key swapped in: its Name differs, then its signatures fail.
        let (_, other) = fleet(2);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["key"] = hex::encode(other.marshal_tpm2b()).into();
        assert!(matches!(
            SignedPolicy::from_json(v.to_string().as_bytes()),
            Err(SignedPolicyError::KeyNameMismatch)
        ));
        v["key_name"] = hex::encode(other.name().unwrap()).into();
        assert!(matches!(
            SignedPolicy::from_json(v.to_string().as_bytes()),
            Err(SignedPolicyError::Approval(
                PolicyDigestError::SignatureInvalid
            ))
        ));
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["pcrs"]["sha256"]["9"] = hex::encode([0; 32]).into();
        assert!(matches!(
            SignedPolicy::from_json(v.to_string().as_bytes()),
            Err(SignedPolicyError::ExtraPcr { pcr: 9, .. })
        ));
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["format"] = "vouch-signed-pcr-policy/2".into();
        assert!(matches!(
            SignedPolicy::from_json(v.to_string().as_bytes()),
            Err(SignedPolicyError::Format(_))
        ));
        for junk in [&b""[..], b"{}", b"[1,2]", b"\xff\xfe"] {
            assert!(SignedPolicy::from_json(junk).is_err());
        }
    }

    #[test]
    fn signatures_by_another_key_are_refused_at_finish() {
        let (_, key) = fleet(1);
        let (other, _) = fleet(2);
        let d = draft(1, key);
        let a = sign(&other, &d.approval_message());
        let s = sign(&other, &d.statement().unwrap());
        assert!(matches!(
            d.finish(a, s),
            Err(SignedPolicyError::Approval(
                PolicyDigestError::SignatureInvalid
            ))
        ));
    }
}
