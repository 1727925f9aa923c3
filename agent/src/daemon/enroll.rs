//! Enrollment: prove to the fleet that this AK and this TLS key live in the TPM whose EK the
//! manufacturer certified, and receive the device certificate.
//!
//! 1. Connect as the claim identity; publish [`EnrollRequest`] (device EK + certificates, AK, TLS key).
//! 2. The fleet answers with MakeCredential output for the EK and the AK's name; only this TPM can
//!    recover the secret (TPM2_ActivateCredential).
//! 3. Publish [`EnrollProof`]: the secret, a TPM2_Certify of the TLS key by the AK over
//!    SHA-256(secret), and a CSR signed by the TLS key.
//! 4. The fleet answers with the device certificate, which is stored in the state directory.

use super::mqtt::{options, tpm_call, tpm_signer};
use super::{csr, tls};
use crate::config::AgentConfig;
use crate::identity::{device_identity, DeviceIdentity, IdentityError};
use crate::tpm::worker::TpmClient;
use crate::tpm::TpmError;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vouch_attest::protocol::{self, EnrollMessage, EnrollProof, EnrollRequest, EnrollResponse};
use vouch_attest::tpm::{PublicParams, TpmPublic};

/// How long one enrollment attempt may take.
const ENROLL_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of enrollment.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// A TPM operation failed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The identity could not be read.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The claim TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The CSR could not be built.
    #[error(transparent)]
    Csr(#[from] csr::CsrError),
    /// The MQTT client refused a request.
    #[error("MQTT request failed")]
    Client(#[from] rumqttc::ClientError),
    /// The connection to the broker failed.
    #[error("broker connection failed")]
    Connection(#[from] Box<rumqttc::ConnectionError>),
    /// The fleet sent something that is not an enrollment response.
    #[error(transparent)]
    Protocol(#[from] protocol::ProtocolError),
    /// The fleet refused the enrollment.
    #[error("the fleet refused enrollment: {0}")]
    Refused(String),
    /// The TLS key the TPM returned is not an ECC P-256 key.
    #[error("the TPM's TLS key is not ECC P-256")]
    TlsKeyType,
    /// The fleet did not answer in time.
    #[error("no answer from the fleet within {0:?}")]
    Timeout(Duration),
    /// The certificate or id could not be stored.
    #[error("storing {path} failed")]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The device's enrolled identity as stored in the state directory.
#[derive(Clone, Debug)]
pub struct Enrolled {
    /// Device id (CN of the certificate).
    pub device_id: String,
    /// The device certificate, PEM.
    pub certificate_pem: Vec<u8>,
    /// Where it is stored.
    pub certificate_path: PathBuf,
}

/// Paths of the stored enrollment.
fn paths(state: &Path) -> (PathBuf, PathBuf) {
    (state.join("device.crt"), state.join("device.id"))
}

/// The stored enrollment, if the agent has one.
pub fn load(state: &Path) -> Option<Enrolled> {
    let (crt, id) = paths(state);
    let device_id = std::fs::read_to_string(&id).ok()?.trim().to_string();
    let certificate_pem = std::fs::read(&crt).ok()?;
    Some(Enrolled {
        device_id,
        certificate_pem,
        certificate_path: crt,
    })
}

fn store(state: &Path, device_id: &str, pem: &str) -> Result<Enrolled, EnrollError> {
    let (crt, id) = paths(state);
    let write = |p: &Path, data: &[u8]| {
        std::fs::create_dir_all(state)
            .and_then(|_| Ok(vouch_durable::write(p, data, vouch_durable::MODE_PUBLIC)?))
            .map_err(|source| EnrollError::Store {
                path: p.to_path_buf(),
                source,
            })
    };
    write(&crt, pem.as_bytes())?;
    write(&id, device_id.as_bytes())?;
    Ok(Enrolled {
        device_id: device_id.to_string(),
        certificate_pem: pem.as_bytes().to_vec(),
        certificate_path: crt,
    })
}

/// Runs one enrollment against the fleet and stores the result.
pub async fn enroll(cfg: &AgentConfig, tpm: &TpmClient) -> Result<Enrolled, EnrollError> {
    match tokio::time::timeout(ENROLL_TIMEOUT, attempt(cfg, tpm)).await {
        Ok(r) => r,
        Err(_) => Err(EnrollError::Timeout(ENROLL_TIMEOUT)),
    }
}

async fn attempt(cfg: &AgentConfig, tpm: &TpmClient) -> Result<Enrolled, EnrollError> {
    let id: DeviceIdentity = tpm_call(tpm, |t| Ok(device_identity(t))).await??;
    let (ak, tls_key) = tpm_call(tpm, |t| Ok((t.attestation_key()?, t.tls_key()?))).await?;
    // The request id is also the client id on the enrollment listener, where the ACL lets a
    // connection use only `enroll/<its client id>/...`: random, never shown to other claimants.
    let request_id = format!(
        "{}{}",
        protocol::CLIENT_ID_PREFIX,
        hex::encode(rand::random::<[u8; 16]>())
    );
    let claim = tls::claim_config(
        &cfg.broker.ca_file,
        &cfg.broker.claim_cert,
        &cfg.broker.claim_key,
    )?;
    let opts = options(
        &cfg.broker,
        cfg.broker.enroll_port,
        &request_id,
        claim,
        true,
    );
    let (client, mut events) = AsyncClient::new(opts, 16);
    let response_topic = format!("enroll/{request_id}/response");
    let request_topic = format!("enroll/{request_id}/request");
    client.subscribe(&response_topic, QoS::AtLeastOnce).await?;
    let request = EnrollMessage::Request(EnrollRequest {
        request_id: request_id.clone(),
        ek_public: id.ek.public.clone(),
        ek_certificates: id.certificates.iter().map(|c| c.der.clone()).collect(),
        ak_public: ak.public,
        tls_public: tls_key.public.clone(),
    });
    let mut sent_request = false;
    loop {
        let event = events.poll().await.map_err(Box::new)?;
        let Event::Incoming(packet) = event else {
            continue;
        };
        match packet {
            Packet::SubAck(_) if !sent_request => {
                sent_request = true;
                client
                    .publish(
                        &request_topic,
                        QoS::AtLeastOnce,
                        false,
                        protocol::encode(&request),
                    )
                    .await?;
            }
            Packet::Publish(p) if p.topic == response_topic => {
                match protocol::decode::<EnrollResponse>("enrollment response", &p.payload)? {
                    EnrollResponse::Challenge {
                        credential_blob,
                        encrypted_secret,
                    } => {
                        let proof = prove(
                            tpm,
                            &id,
                            &request_id,
                            &tls_key.public,
                            credential_blob,
                            encrypted_secret,
                        )
                        .await?;
                        client
                            .publish(
                                &request_topic,
                                QoS::AtLeastOnce,
                                false,
                                protocol::encode(&proof),
                            )
                            .await?;
                    }
                    EnrollResponse::Accepted {
                        device_id,
                        certificate_pem,
                    } => {
                        let _ = client.disconnect().await;
                        return store(&cfg.state_dir, &device_id, &certificate_pem);
                    }
                    EnrollResponse::Refused { reason } => {
                        let _ = client.disconnect().await;
                        return Err(EnrollError::Refused(reason));
                    }
                }
            }
            _ => {}
        }
    }
}

async fn prove(
    tpm: &TpmClient,
    id: &DeviceIdentity,
    request_id: &str,
    tls_public: &[u8],
    credential_blob: Vec<u8>,
    encrypted_secret: Vec<u8>,
) -> Result<EnrollMessage, EnrollError> {
    let alg = id.ek.alg;
    let secret = tpm_call(tpm, move |t| {
        t.activate_credential(alg, &credential_blob, &encrypted_secret)
    })
    .await?;
    let qualifying = Sha256::digest(secret.as_slice()).to_vec();
    let certification = tpm_call(tpm, move |t| t.certify_tls_key(&qualifying)).await?;
    let (public, _) = TpmPublic::parse(tls_public).map_err(|_| EnrollError::TlsKeyType)?;
    let PublicParams::Ecc(ecc) = &public.params else {
        return Err(EnrollError::TlsKeyType);
    };
    let (device_id, x, y, signer) = (
        id.device_id.clone(),
        ecc.x.clone(),
        ecc.y.clone(),
        tpm_signer(tpm),
    );
    // The CSR is signed through the TPM: build it off the async workers.
    let csr = tokio::task::spawn_blocking(move || csr::build(&device_id, &x, &y, signer))
        .await
        .map_err(|_| TpmError::WorkerGone)??;
    Ok(EnrollMessage::Proof(EnrollProof {
        request_id: request_id.to_string(),
        activated_secret: secret.to_vec(),
        certify_attest: certification.attest,
        certify_signature: certification.signature,
        csr,
    }))
}
