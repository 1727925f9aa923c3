//! Messages between agent and fleet over MQTT: typed, JSON-encoded, size-checked before parsing.
//!
//! Topics (the broker ACL from `vouch-fleet init` enforces who may use which):
//! - `enroll/<request-id>/request`  agent (claim identity) -> fleet: [`EnrollMessage`]
//! - `enroll/<request-id>/response` fleet -> agent: [`EnrollResponse`]
//! - `devices/<id>/cmd/attest`      fleet -> agent: [`AttestChallenge`]
//! - `devices/<id>/attestation`     agent -> fleet: [`AttestationReport`]
//! - `devices/<id>/boot`            agent -> fleet: [`BootAnnouncement`] (triggers a challenge)
//! - `devices/<id>/escrow`          agent -> fleet: [`EscrowDeposit`] (a volume's escrow record)
//! - `devices/<id>/cmd/escrow`      fleet -> agent: [`EscrowRelease`] (a released passphrase,
//!   readable only by the device's TPM; see [`crate::escrow_delivery`])
//! - `devices/<id>/recovery`        agent -> fleet: [`RecoveryResult`] (what the agent did with it)
//! - `fleet/alerts`                 fleet -> operators: [`Alert`]
//!
//! Byte strings travel as standard base64. Unknown fields are refused so that a confused peer is
//! noticed instead of silently half-understood.

use serde::{Deserialize, Serialize};

/// Prefix of every MQTT client id a Vouch client sends. The broker (`clientid_prefixes`) refuses
/// any other, so no client can name itself after a device (hex ids) or after `vouch-fleet`. On
/// the device listener the broker then replaces the id with the certificate's CN
/// (`use_username_as_clientid`), so a device's session is always its own; on the enrollment
/// listener the id stays as sent: a random `vouch-conn-<hex>` nobody else can see or guess.
pub const CLIENT_ID_PREFIX: &str = "vouch-conn-";

/// Largest message either side accepts; larger ones are refused before parsing.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The payload is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// The payload is not the expected JSON message.
    #[error("malformed {what} message")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes a message of type `T`, refusing oversized payloads before parsing.
pub fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    payload: &[u8],
) -> Result<T, ProtocolError> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge {
            size: payload.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    serde_json::from_slice(payload).map_err(|source| ProtocolError::Json { what, source })
}

/// Encodes a message as JSON bytes.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(msg).unwrap_or_default()
}

/// Serde helpers: `Vec<u8>` as standard base64.
pub mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as base64.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    /// Deserializes base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <&str>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Vec<u8>>`.
    pub mod opt {
        use super::*;

        /// Serializes optional bytes as base64 or null.
        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => super::serialize(b, s),
                None => s.serialize_none(),
            }
        }

        /// Deserializes optional base64.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            match Option::<&str>::deserialize(d)? {
                None => Ok(None),
                Some(s) => base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
            }
        }
    }
}

/// First enrollment message: who the device is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// Random id chosen by the agent; also the topic segment.
    pub request_id: String,
    /// The ECC P-256 EK, marshalled TPM2B_PUBLIC.
    #[serde(with = "b64")]
    pub ek_public: Vec<u8>,
    /// EK certificates from NV (DER), best first.
    #[serde(with = "b64_list")]
    pub ek_certificates: Vec<Vec<u8>>,
    /// The attestation key, marshalled TPM2B_PUBLIC.
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
    /// The TPM-resident TLS client key, marshalled TPM2B_PUBLIC.
    #[serde(with = "b64")]
    pub tls_public: Vec<u8>,
}

/// Second enrollment message: proof of the credential and certification of the TLS key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollProof {
    /// Same id as the request.
    pub request_id: String,
    /// The secret recovered by TPM2_ActivateCredential.
    #[serde(with = "b64")]
    pub activated_secret: Vec<u8>,
    /// TPM2_Certify of the TLS key by the AK (TPMS_ATTEST), qualifying data = SHA-256(secret).
    #[serde(with = "b64")]
    pub certify_attest: Vec<u8>,
    /// Its TPMT_SIGNATURE.
    #[serde(with = "b64")]
    pub certify_signature: Vec<u8>,
    /// A PKCS#10 request signed by the TLS key (DER); its public key must be the TLS key.
    #[serde(with = "b64")]
    pub csr: Vec<u8>,
}

/// What the agent publishes on `enroll/<id>/request`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnrollMessage {
    /// Step 1.
    Request(EnrollRequest),
    /// Step 2.
    Proof(EnrollProof),
}

/// What the fleet answers on `enroll/<id>/response`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnrollResponse {
    /// MakeCredential output for the EK and AK name.
    Challenge {
        /// TPM2B_ID_OBJECT.
        #[serde(with = "b64")]
        credential_blob: Vec<u8>,
        /// TPM2B_ENCRYPTED_SECRET.
        #[serde(with = "b64")]
        encrypted_secret: Vec<u8>,
    },
    /// Enrolled: the device certificate for the TLS key.
    Accepted {
        /// The device id (CN of the certificate).
        device_id: String,
        /// PEM certificate chain: device certificate.
        certificate_pem: String,
    },
    /// Refused, with the reason.
    Refused {
        /// What check failed.
        reason: String,
    },
}

/// A challenge from the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestChallenge {
    /// Single-use nonce; also identifies the challenge.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// The PCRs to quote: a typed selection, checked when the message is decoded
    /// ([`crate::tpm::selection::wire`]).
    #[serde(with = "crate::tpm::selection::wire")]
    pub pcrs: crate::tpm::PcrSelection,
    /// When the fleet appraises IMA: the byte offset in the device's IMA measurement list where
    /// the last accepted report ended; the report carries the entries from there on
    /// ([`AttestationReport::ima`]). Absent when the fleet does not appraise IMA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_offset: Option<u64>,
    /// The part of the device's UEFI event log the fleet holds from earlier reports: a device
    /// whose log still starts with it sends only what was appended since
    /// ([`AttestationReport::eventlog_from`]). Absent: send the whole log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventlog_known: Option<KnownLog>,
}

/// The first `len` bytes of a device's event log, as the fleet holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownLog {
    /// How many bytes.
    pub len: u64,
    /// Their SHA-256.
    #[serde(with = "crate::hex_serde")]
    pub sha256: Vec<u8>,
}

/// The agent's answer to a challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationReport {
    /// The nonce of the challenge answered.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// TPMS_ATTEST.
    #[serde(with = "b64")]
    pub quote: Vec<u8>,
    /// TPMT_SIGNATURE.
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
    /// PCR values as `{"sha256": {"0": "<hex>", ...}}`.
    pub pcrs: serde_json::Value,
    /// The UEFI event log, gzip-compressed: the whole log, or with
    /// [`Self::eventlog_from`] the bytes from that offset on.
    #[serde(with = "b64::opt", default)]
    pub eventlog_gz: Option<Vec<u8>>,
    /// Where in the log [`Self::eventlog_gz`] starts: 0 for the whole log, or the length of the
    /// part the challenge said the fleet holds ([`AttestChallenge::eventlog_known`]), which the
    /// device's log still starts with. Sent by every agent that can send appended parts (the
    /// fleet offers [`AttestChallenge::eventlog_known`] only to those); absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventlog_from: Option<u64>,
    /// IMA measurement list entries, when the challenge asked for them
    /// ([`AttestChallenge::ima_offset`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima: Option<ImaEvidence>,
}

/// Entries of a device's IMA measurement list (binary form), from the offset the challenge
/// named: whole entries only, at most a chunk per report (the rest follows with the next).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaEvidence {
    /// The byte offset of the first entry.
    pub offset: u64,
    /// The template hash size of the list (20 for `binary_runtime_measurements`); 0 when no
    /// entry was read.
    pub hash_len: u8,
    /// The entries, gzip-compressed.
    #[serde(with = "b64")]
    pub entries_gz: Vec<u8>,
    /// True when the list holds more entries than this report carries.
    pub more: bool,
}

/// Sent by the agent when it starts after a boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootAnnouncement {
    /// The kernel's boot id (a malformed one is refused when the message is decoded).
    pub boot_id: crate::boot::BootId,
}

/// A volume's escrow record, deposited with the fleet by the agent (the record is already
/// encrypted to the fleet's escrow key; see [`crate::escrow`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowDeposit {
    /// The escrow record JSON, as stored in the volume's `vouch-escrow` token.
    pub record: String,
}

/// A released recovery passphrase on its way to the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowRelease {
    /// The volume the passphrase opens.
    pub volume_uuid: String,
    /// The boot the fleet's verdict was for: the agent refuses the release in any other boot.
    pub boot_id: crate::boot::BootId,
    /// TPM2B_ID_OBJECT protecting the AES key (MakeCredential to the EK and AK name).
    #[serde(with = "b64")]
    pub credential_blob: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET.
    #[serde(with = "b64")]
    pub encrypted_secret: Vec<u8>,
    /// AES-256-GCM nonce.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// The passphrase, AES-256-GCM encrypted, tag included.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

/// What the agent did with a released passphrase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryResult {
    /// The volume.
    pub volume_uuid: String,
    /// True when the passphrase opened the recovery keyslot and was sealed for re-sealing.
    pub ok: bool,
    /// What happened, or why it failed.
    pub detail: String,
}

/// An alert for operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Device concerned.
    pub device_id: String,
    /// `untrusted`, `revoked`, ...
    pub kind: String,
    /// Human-readable reasons.
    pub reasons: Vec<String>,
}

/// Serde helpers: a list of byte strings as base64 strings.
mod b64_list {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let e = &base64::engine::general_purpose::STANDARD;
        v.iter()
            .map(|b| e.encode(b))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let e = &base64::engine::general_purpose::STANDARD;
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| e.decode(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_input() {
        let m = EnrollMessage::Request(EnrollRequest {
            request_id: "r1".into(),
            ek_public: vec![1, 2, 3],
            ek_certificates: vec![vec![4], vec![5, 6]],
            ak_public: vec![7],
            tls_public: vec![8],
        });
        let bytes = encode(&m);
        assert_eq!(decode::<EnrollMessage>("enroll", &bytes).unwrap(), m);
        let err = decode::<EnrollMessage>("enroll", b"{\"step\":\"request\",\"x\":1}").unwrap_err();
        assert!(err.to_string().contains("malformed enroll message"));
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode::<AttestChallenge>("challenge", &big),
            Err(ProtocolError::TooLarge { .. })
        ));
        let bad64 = br#"{"nonce":"!!","pcrs":[{"bank":"sha256","pcrs":[0]}]}"#;
        assert!(decode::<AttestChallenge>("challenge", bad64).is_err());
    }

    /// Issue 11, defect 2: the selection travels typed; what one side can send, the other
    /// decodes, and a malformed one is refused when the message is decoded.
    #[test]
    fn challenge_selections_are_typed_on_the_wire() {
        let c = AttestChallenge {
            nonce: vec![7; 32],
            pcrs: "sha256:0-9+sha1:7".parse().unwrap(),
            ima_offset: None,
            eventlog_known: None,
        };
        let bytes = encode(&c);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""pcrs":[{"bank":"sha256","pcrs":[0,1,2,3,4,5,6,7,8,9]},{"bank":"sha1","pcrs":[7]}]"#),
            "{text}"
        );
        assert_eq!(decode::<AttestChallenge>("challenge", &bytes).unwrap(), c);
        for pcrs in [
            r#""sha256:0, 7""#,
            r#""sha256:0-9""#,
            r#"[]"#,
            r#"[{"bank":"sha256","pcrs":[24]}]"#,
            r#"[{"bank":"sha256","pcrs":[]}]"#,
            r#"[{"bank":"md5","pcrs":[0]}]"#,
            r#"[{"bank":"sha256","pcrs":[0]},{"bank":"sha256","pcrs":[1]}]"#,
            r#"[{"bank":"sha256","pcrs":[0],"x":1}]"#,
        ] {
            let msg = format!(r#"{{"nonce":"AAAA","pcrs":{pcrs}}}"#);
            assert!(
                decode::<AttestChallenge>("challenge", msg.as_bytes()).is_err(),
                "{pcrs}"
            );
        }
    }
}
