//! Enrollment: proving that a new device's AK and TLS key live in a TPM whose EK a trusted
//! vendor certified, then issuing the device's client certificate.
//!
//! Step 1, [`EnrollMessage::Request`]: the EK certificate whose SubjectPublicKeyInfo is that of
//! `ek_public` must chain to the trust roots; the device id is the hex SHA-256 of that SPKI
//! (DER); the AK must be a restricted, fixedTPM, fixedParent, sensitiveDataOrigin signing key.
//! The fleet answers a MakeCredential of 32 random bytes to (EK, AK Name).
//! Step 2, [`EnrollMessage::Proof`]: the activated secret must equal ours (constant-time); a
//! TPM2_Certify by the AK over SHA-256(secret) must certify the TLS key; the CSR's key must be
//! the TLS key. Then the certificate (CN = device id) is issued and the device stored.
//! Every refusal is answered with `Refused { reason }` (`<check>: <detail>`) and audited.
//!
//! Hostile claimants: every agent shares the claim certificate, but each enrolling connection
//! may use only `enroll/<its client id>/...` (the broker's ACL), and its request id is that
//! random client id. Still, nothing here trusts that: a pending enrollment is never replaced by
//! a request with other keys under the same id (an identical request gets the same challenge
//! again), and a wrong proof is refused without cancelling the pending enrollment, so only the
//! TPM that can activate the credential decides its outcome.

use super::trust::{ChainError, TrustError, TrustStore};
use super::{Outgoing, Server};
use crate::pki::device::{check_device_id, DeviceError};
use crate::pki::{issue_device_certificate, DevicePublicKey, Validity};
use crate::registry::{AuditKind, DeviceStatus, NewDevice, RegistryError};
use std::collections::HashMap;
use vouch_attest::credential::CredentialError;
use vouch_attest::credential::{make_credential, verify_certification, CertificationError};
use vouch_attest::errors::chain;
use vouch_attest::protocol::{self, EnrollMessage, EnrollProof, EnrollRequest, EnrollResponse};
use vouch_attest::tpm::{ObjectAttributes, PublicError, PublicKey, TpmPublic};
use x509_parser::prelude::FromDer;

/// Most EK certificates looked at in one request.
const MAX_EK_CERTS: usize = 8;
/// Most enrollments waiting for their proof.
const MAX_PENDING: usize = 1024;
/// Validity of device certificates, in days.
pub const DEVICE_CERT_DAYS: u16 = 365;

/// Why an enrollment was refused; [`EnrollError::check`] names the failed check.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The message is not a valid enrollment message (or is too large).
    #[error(transparent)]
    Malformed(protocol::ProtocolError),
    /// The request id in the message differs from the topic's.
    #[error("request id {found:?} does not match the topic's {topic:?}")]
    RequestId { topic: String, found: String },
    /// The EK public area does not parse.
    #[error("EK public area does not parse")]
    EkPublic(#[source] PublicError),
    /// The EK's SPKI cannot be formed.
    #[error("EK public key: {0}")]
    EkKey(String),
    /// More EK certificates than looked at.
    #[error("{0} EK certificates sent; at most {MAX_EK_CERTS} are accepted")]
    TooManyCertificates(usize),
    /// No certificate for the EK.
    #[error("no EK certificate has the SubjectPublicKeyInfo of ek_public")]
    NoEkCertificate,
    /// The trust directory could not be read.
    #[error(transparent)]
    TrustStore(TrustError),
    /// The EK certificate does not chain to the trust roots.
    #[error(transparent)]
    EkChain(ChainError),
    /// The AK public area does not parse.
    #[error("AK public area does not parse")]
    AkPublic(#[source] PublicError),
    /// The AK lacks required attributes.
    #[error("AK attributes 0x{attributes:08x} lack {missing:?}")]
    AkAttributes {
        attributes: u32,
        missing: Vec<&'static str>,
    },
    /// The TLS public area does not parse.
    #[error("TLS key public area does not parse")]
    TlsPublic(#[source] PublicError),
    /// The device's certificate was revoked; it must be deleted before it can enroll again.
    #[error("device {0} is revoked; delete it before enrolling it again")]
    DeviceRevoked(String),
    /// MakeCredential failed.
    #[error(transparent)]
    Credential(CredentialError),
    /// Too many enrollments are waiting for their proof.
    #[error("too many enrollments in progress ({MAX_PENDING})")]
    Busy,
    /// A request under a request id that is pending with other keys.
    #[error("request id {0:?} is already pending for other keys")]
    RequestIdInUse(String),
    /// A proof for no request (unknown, expired or already answered).
    #[error("no enrollment request {0:?} is waiting for a proof (unknown or expired)")]
    UnknownRequest(String),
    /// The activated secret is wrong.
    #[error("the activated secret does not match: the EK and AK are not on one TPM")]
    SecretMismatch,
    /// The TPM2_Certify of the TLS key does not verify.
    #[error(transparent)]
    Certification(CertificationError),
    /// The CSR does not parse.
    #[error("the CSR is not a DER PKCS#10 request")]
    Csr,
    /// The CSR's key is not the certified TLS key.
    #[error("the CSR's public key is not the certified TLS key")]
    CsrKeyMismatch,
    /// Issuing the certificate failed.
    #[error(transparent)]
    Issue(DeviceError),
    /// The registry failed.
    #[error(transparent)]
    Registry(RegistryError),
}

impl EnrollError {
    /// Short name of the failed check, the first word of the refusal reason.
    pub fn check(&self) -> &'static str {
        match self {
            EnrollError::Malformed(_) => "malformed",
            EnrollError::RequestId { .. } => "request_id",
            EnrollError::EkPublic(_) | EnrollError::EkKey(_) => "ek_public",
            EnrollError::TooManyCertificates(_) => "ek_certificates",
            EnrollError::NoEkCertificate => "ek_certificate_missing",
            EnrollError::TrustStore(_) => "trust_roots",
            EnrollError::EkChain(_) => "ek_chain",
            EnrollError::AkPublic(_) => "ak_public",
            EnrollError::AkAttributes { .. } => "ak_attributes",
            EnrollError::TlsPublic(_) => "tls_public",
            EnrollError::DeviceRevoked(_) => "device_revoked",
            EnrollError::Credential(_) => "make_credential",
            EnrollError::Busy => "busy",
            EnrollError::RequestIdInUse(_) => "request_id_in_use",
            EnrollError::UnknownRequest(_) => "request_unknown",
            EnrollError::SecretMismatch => "secret_mismatch",
            EnrollError::Certification(_) => "tls_certification",
            EnrollError::Csr => "csr",
            EnrollError::CsrKeyMismatch => "csr_key_mismatch",
            EnrollError::Issue(_) => "issue_certificate",
            EnrollError::Registry(_) => "registry",
        }
    }
}

/// An enrollment waiting for its proof.
pub struct Pending {
    device_id: String,
    ek_public: Vec<u8>,
    ak: TpmPublic,
    ak_public: Vec<u8>,
    tls: TpmPublic,
    tls_public: Vec<u8>,
    secret: [u8; 32],
    /// The challenge sent, sent again for an identical request.
    credential_blob: Vec<u8>,
    encrypted_secret: Vec<u8>,
    expires_ms: i64,
}

impl Pending {
    fn same_keys(&self, r: &EnrollRequest) -> bool {
        self.ek_public == r.ek_public
            && self.ak_public == r.ak_public
            && self.tls_public == r.tls_public
    }

    fn challenge(&self) -> EnrollResponse {
        EnrollResponse::Challenge {
            credential_blob: self.credential_blob.clone(),
            encrypted_secret: self.encrypted_secret.clone(),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.secret = [0; 32];
        std::hint::black_box(&self.secret);
    }
}

/// Enrollments in progress, by request id.
#[derive(Default)]
pub struct PendingEnrollments {
    map: HashMap<String, Pending>,
}

impl PendingEnrollments {
    /// Drops the expired ones.
    pub fn purge(&mut self, now_ms: i64) {
        self.map.retain(|_, p| p.expires_ms >= now_ms);
    }
}

/// AK attributes required, with their names.
const AK_REQUIRED: [(u32, &str); 5] = [
    (ObjectAttributes::RESTRICTED, "restricted"),
    (ObjectAttributes::SIGN, "sign"),
    (ObjectAttributes::FIXED_TPM, "fixedTPM"),
    (ObjectAttributes::FIXED_PARENT, "fixedParent"),
    (
        ObjectAttributes::SENSITIVE_DATA_ORIGIN,
        "sensitiveDataOrigin",
    ),
];

fn spki_of(public: &TpmPublic) -> Result<(PublicKey, Vec<u8>), EnrollError> {
    let key = public.key().map_err(EnrollError::EkPublic)?;
    let der = key
        .to_spki_der()
        .map_err(|e| EnrollError::EkKey(chain(&e)))?;
    Ok((key, der))
}

/// The device id of the EK with this DER SubjectPublicKeyInfo
/// ([`vouch_attest::identity::DeviceId`], the agent's function too).
pub fn device_id_of_spki(spki_der: &[u8]) -> String {
    vouch_attest::identity::DeviceId::of_ek_spki(spki_der).to_string()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Handles a message on `enroll/<rid>/request`; returns the answer to publish.
pub fn handle(srv: &Server, rid: &str, payload: &[u8], now_ms: i64) -> Vec<Outgoing> {
    let result = protocol::decode::<EnrollMessage>("enroll", payload)
        .map_err(EnrollError::Malformed)
        .and_then(|msg| match msg {
            EnrollMessage::Request(r) => request(srv, rid, &r, now_ms),
            EnrollMessage::Proof(p) => proof(srv, rid, &p, now_ms),
        });
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            let reason = format!("{}: {}", e.check(), chain(&e));
            srv.log(&format!("enrollment {rid} refused: {reason}"));
            srv.audit(
                AuditKind::EnrollRefused,
                None,
                &format!("request {rid}: {reason}"),
                now_ms,
            );
            EnrollResponse::Refused { reason }
        }
    };
    vec![Outgoing {
        topic: format!("enroll/{rid}/response"),
        payload: protocol::encode(&response),
    }]
}

fn request(
    srv: &Server,
    rid: &str,
    r: &EnrollRequest,
    now_ms: i64,
) -> Result<EnrollResponse, EnrollError> {
    if r.request_id != rid {
        return Err(EnrollError::RequestId {
            topic: rid.to_string(),
            found: r.request_id.clone(),
        });
    }
    {
        let mut map = srv.pending();
        map.purge(now_ms);
        match map.map.get(rid) {
            // A retransmission (or a replay of it): the same challenge, nothing replaced.
            Some(p) if p.same_keys(r) => return Ok(p.challenge()),
            Some(_) => return Err(EnrollError::RequestIdInUse(rid.to_string())),
            None => {}
        }
    }
    let (ek, _) = TpmPublic::parse(&r.ek_public).map_err(EnrollError::EkPublic)?;
    let (ek_key, ek_spki) = spki_of(&ek)?;
    if r.ek_certificates.len() > MAX_EK_CERTS {
        return Err(EnrollError::TooManyCertificates(r.ek_certificates.len()));
    }
    let cert = r
        .ek_certificates
        .iter()
        .find(|der| {
            x509_parser::certificate::X509Certificate::from_der(der)
                .ok()
                .and_then(|(_, c)| PublicKey::from_spki_der(c.public_key().raw).ok())
                .is_some_and(|k| k == ek_key)
        })
        .ok_or(EnrollError::NoEkCertificate)?;
    let trust = TrustStore::load(&srv.cfg.trust_roots_dir).map_err(EnrollError::TrustStore)?;
    trust
        .verify(cert, now_ms / 1000)
        .map_err(EnrollError::EkChain)?;
    let device_id = device_id_of_spki(&ek_spki);
    let (ak, _) = TpmPublic::parse(&r.ak_public).map_err(EnrollError::AkPublic)?;
    let missing: Vec<&'static str> = AK_REQUIRED
        .iter()
        .filter(|(bit, _)| ak.attributes.0 & bit == 0)
        .map(|(_, n)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(EnrollError::AkAttributes {
            attributes: ak.attributes.0,
            missing,
        });
    }
    let ak_name = ak.name().map_err(EnrollError::AkPublic)?;
    let (tls, _) = TpmPublic::parse(&r.tls_public).map_err(EnrollError::TlsPublic)?;
    let existing = srv
        .with_registry(|reg| reg.device(&device_id))
        .map_err(EnrollError::Registry)?;
    if existing.is_some_and(|d| d.status == DeviceStatus::Revoked) {
        return Err(EnrollError::DeviceRevoked(device_id));
    }
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let (credential_blob, encrypted_secret) =
        make_credential(&ek, &ak_name, &secret, &mut rand::rngs::OsRng)
            .map_err(EnrollError::Credential)?;
    let pending = Pending {
        device_id,
        ek_public: r.ek_public.clone(),
        ak,
        ak_public: r.ak_public.clone(),
        tls,
        tls_public: r.tls_public.clone(),
        secret,
        credential_blob,
        encrypted_secret,
        expires_ms: now_ms.saturating_add(lifetime_ms(srv)),
    };
    secret = [0; 32];
    std::hint::black_box(&secret);
    let mut map = srv.pending();
    map.purge(now_ms);
    let full = map.map.len() >= MAX_PENDING;
    match map.map.entry(rid.to_string()) {
        // Another request under this id arrived while we worked: the first one stands.
        std::collections::hash_map::Entry::Occupied(o) if o.get().same_keys(r) => {
            Ok(o.get().challenge())
        }
        std::collections::hash_map::Entry::Occupied(_) => {
            Err(EnrollError::RequestIdInUse(rid.to_string()))
        }
        std::collections::hash_map::Entry::Vacant(_) if full => Err(EnrollError::Busy),
        std::collections::hash_map::Entry::Vacant(v) => Ok(v.insert(pending).challenge()),
    }
}

fn lifetime_ms(srv: &Server) -> i64 {
    i64::try_from(srv.cfg.nonce_lifetime.as_millis()).unwrap_or(i64::MAX)
}

fn proof(
    srv: &Server,
    rid: &str,
    p: &EnrollProof,
    now_ms: i64,
) -> Result<EnrollResponse, EnrollError> {
    if p.request_id != rid {
        return Err(EnrollError::RequestId {
            topic: rid.to_string(),
            found: p.request_id.clone(),
        });
    }
    // A wrong secret leaves the enrollment pending (whoever sent it cannot decide another
    // device's enrollment); the right one consumes it, whatever follows.
    let pending = {
        let mut map = srv.pending();
        map.purge(now_ms);
        match map.map.get(rid) {
            None => return Err(EnrollError::UnknownRequest(rid.to_string())),
            Some(pending) if !constant_time_eq(&p.activated_secret, &pending.secret) => {
                return Err(EnrollError::SecretMismatch)
            }
            Some(_) => map.map.remove(rid),
        }
    }
    .ok_or_else(|| EnrollError::UnknownRequest(rid.to_string()))?;
    let qualifying = ring::digest::digest(&ring::digest::SHA256, &pending.secret);
    verify_certification(
        &pending.ak,
        &pending.tls,
        &p.certify_attest,
        &p.certify_signature,
        qualifying.as_ref(),
    )
    .map_err(EnrollError::Certification)?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&p.csr)
        .map_err(|_| EnrollError::Csr)?;
    let csr_key = PublicKey::from_spki_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|_| EnrollError::Csr)?;
    let tls_key = pending.tls.key().map_err(EnrollError::TlsPublic)?;
    if csr_key != tls_key {
        return Err(EnrollError::CsrKeyMismatch);
    }
    check_device_id(&pending.device_id).map_err(|problem| {
        EnrollError::Issue(DeviceError::DeviceId {
            id: pending.device_id.clone(),
            problem,
        })
    })?;
    let issued = srv
        .with_ca(|ca| {
            issue_device_certificate(
                ca,
                &pending.device_id,
                DevicePublicKey::Csr(&p.csr),
                Validity::days_from_now(DEVICE_CERT_DAYS),
            )
        })
        .map_err(EnrollError::Issue)?;
    let serial = issued.serial.to_string();
    let previous = srv
        .with_registry(|reg| {
            let prev = reg.device(&pending.device_id)?;
            reg.upsert_device(
                &NewDevice {
                    id: &pending.device_id,
                    ek_public: &pending.ek_public,
                    ak_public: &pending.ak_public,
                    tls_public: &pending.tls_public,
                    cert_serial: &serial,
                },
                now_ms,
            )?;
            Ok(prev.and_then(|d| d.cert_serial))
        })
        .map_err(EnrollError::Registry)?;
    srv.audit(
        AuditKind::Enrolled,
        Some(&pending.device_id),
        &format!("enrolled with certificate serial {serial} (request {rid})"),
        now_ms,
    );
    srv.log(&format!("device {} enrolled", pending.device_id));
    if let Some(old) = previous.filter(|s| *s != serial) {
        srv.revoke_replaced_certificate(&pending.device_id, &old, now_ms);
    }
    Ok(EnrollResponse::Accepted {
        device_id: pending.device_id.clone(),
        certificate_pem: issued.pem,
    })
}
