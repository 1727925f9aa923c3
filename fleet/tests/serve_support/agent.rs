//! The test agent: the device side of enrollment and attestation, through the `vouch-agent`
//! library's `Tpm` trait on a private swtpm.
//!
//! EK choice: this agent exercises the ECC P-256 EK path (the real `vouch-agent run` in
//! swtpm-tests/tests/e2e.rs uses the RSA-2048 EK swtpm certifies). swtpm_setup
//! certifies only its RSA-2048 and P-384 EKs, so the test issues the P-256 EK a certificate
//! with the swtpm's own local CA (intermediate `issuercert`, root `swtpm-localca-rootca`), as a
//! manufacturer would at NV 0x01c0000a, and sends it first followed by the certificates the
//! swtpm holds in NV.

use super::mqtt::{self, Client};
use super::Fleet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swtpm_tests::Swtpm;
use vouch_agent::tpm::esapi::EsapiTpm;
use vouch_agent::tpm::{EkAlg, PcrSelection, Tpm};
use vouch_attest::protocol::{
    self, AttestChallenge, AttestationReport, EnrollMessage, EnrollProof, EnrollRequest,
    EnrollResponse,
};
use vouch_attest::tpm::{PublicParams, TpmPublic};

pub struct TestAgent {
    pub tpm: Arc<Mutex<EsapiTpm>>,
    pub ek_public: Vec<u8>,
    pub ek_certificates: Vec<Vec<u8>>,
}

/// Issues a certificate for the public key `ek_pem` with `ca_cert`/`ca_key` (openssl).
pub fn issue_ek_certificate(dir: &Path, ek_pem: &str, ca_cert: &Path, ca_key: &Path) -> Vec<u8> {
    let pubkey = dir.join("ek-pub.pem");
    std::fs::write(&pubkey, ek_pem).unwrap();
    let out = dir.join("ek-cert.der");
    let status = Command::new("openssl")
        .args(["x509", "-new", "-force_pubkey"])
        .arg(&pubkey)
        .args(["-subj", "/CN=vouch test ECC EK", "-days", "30", "-CA"])
        .arg(ca_cert)
        .arg("-CAkey")
        .arg(ca_key)
        .args(["-outform", "DER", "-out"])
        .arg(&out)
        .status()
        .expect("openssl must be installed");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// A self-signed CA unknown to the fleet: (cert, key).
pub fn unknown_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("rogue-ca.pem"), dir.join("rogue-ca.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=rogue EK CA",
            "-days",
            "30",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (cert, key)
}

impl TestAgent {
    /// Opens the swtpm; the P-256 EK gets a certificate from `ca_cert`/`ca_key`.
    pub fn new(swtpm: &Swtpm, ca_cert: &Path, ca_key: &Path) -> TestAgent {
        let tcti = swtpm.tcti().parse().unwrap();
        let mut tpm = EsapiTpm::open(&tcti, &swtpm.dir().join("agent-state")).unwrap();
        let ek = tpm.endorsement_key(EkAlg::EccP256).unwrap();
        let (public, _) = TpmPublic::parse(&ek.public).unwrap();
        let pem = public.key().unwrap().to_pem().unwrap();
        let mut certs = vec![issue_ek_certificate(swtpm.dir(), &pem, ca_cert, ca_key)];
        certs.extend(tpm.ek_certificates().unwrap().into_iter().map(|c| c.der));
        TestAgent {
            tpm: Arc::new(Mutex::new(tpm)),
            ek_public: ek.public,
            ek_certificates: certs,
        }
    }

    /// The swtpm's local CA as the fleet's trust roots (root + intermediate).
    pub fn swtpm_trust(swtpm: &Swtpm) -> Vec<std::path::PathBuf> {
        vec![swtpm.ca_root_cert(), swtpm.ca_dir().join("issuercert.pem")]
    }

    fn csr(&self) -> Vec<u8> {
        let tls = self.tpm.lock().unwrap().tls_key().unwrap();
        let (public, _) = TpmPublic::parse(&tls.public).unwrap();
        let PublicParams::Ecc(p) = &public.params else {
            panic!("TLS key is not ECC")
        };
        let mut point = vec![4u8];
        point.extend_from_slice(&p.x);
        point.extend_from_slice(&p.y);
        let key = rcgen::KeyPair::from_remote(Box::new(TpmCsrKey {
            tpm: self.tpm.clone(),
            point,
        }))
        .unwrap();
        rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    /// Runs both enrollment steps as the claim identity; returns the final answer.
    pub async fn enroll(&self, fleet: &Fleet) -> EnrollResponse {
        self.enroll_with(fleet, |_| async { 0 }).await.1
    }

    /// Like [`TestAgent::enroll`], running `between(request id)` after the challenge arrived
    /// and before the proof is sent; it returns how many answers its doings caused on this
    /// enrollment's response topic, which are returned first.
    pub async fn enroll_with<F, Fut>(
        &self,
        fleet: &Fleet,
        between: F,
    ) -> (Vec<EnrollResponse>, EnrollResponse)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = usize>,
    {
        // The request id is the client id on the enrollment listener (the ACL allows only
        // enroll/<own client id>/...).
        let rid = format!("vouch-conn-r{}", rand::random::<u64>());
        let tls = vouch_agent::daemon::tls::claim_config(
            &fleet.ca(),
            &fleet.dir.join("claim.crt"),
            &fleet.dir.join("claim.key"),
        )
        .unwrap();
        let resp_topic = format!("enroll/{rid}/response");
        let req_topic = format!("enroll/{rid}/request");
        let mut c = mqtt::connect(
            fleet.enroll_port,
            tls,
            &rid,
            std::slice::from_ref(&resp_topic),
        )
        .await
        .unwrap();
        let request = {
            let mut t = self.tpm.lock().unwrap();
            EnrollMessage::Request(EnrollRequest {
                request_id: rid.clone(),
                ek_public: self.ek_public.clone(),
                ek_certificates: self.ek_certificates.clone(),
                ak_public: t.attestation_key().unwrap().public,
                tls_public: t.tls_key().unwrap().public,
            })
        };
        c.publish(&req_topic, protocol::encode(&request)).await;
        let answer = c.next_on(&resp_topic, Duration::from_secs(5)).await;
        let (blob, secret) = match protocol::decode("enroll response", &answer).unwrap() {
            EnrollResponse::Challenge {
                credential_blob,
                encrypted_secret,
            } => (credential_blob, encrypted_secret),
            other => return (Vec::new(), other),
        };
        let caused = between(rid.clone()).await;
        let mut interfering = Vec::new();
        for _ in 0..caused {
            let answer = c.next_on(&resp_topic, Duration::from_secs(5)).await;
            interfering.push(protocol::decode("enroll response", &answer).unwrap());
        }
        let proof = {
            let mut t = self.tpm.lock().unwrap();
            let secret = t
                .activate_credential(EkAlg::EccP256, &blob, &secret)
                .unwrap();
            let qd = ring::digest::digest(&ring::digest::SHA256, &secret);
            let cert = t.certify_tls_key(qd.as_ref()).unwrap();
            drop(t);
            EnrollMessage::Proof(EnrollProof {
                request_id: rid.clone(),
                activated_secret: secret.to_vec(),
                certify_attest: cert.attest,
                certify_signature: cert.signature,
                csr: self.csr(),
            })
        };
        c.publish(&req_topic, protocol::encode(&proof)).await;
        let answer = c.next_on(&resp_topic, Duration::from_secs(5)).await;
        (
            interfering,
            protocol::decode("enroll response", &answer).unwrap(),
        )
    }

    /// This agent's enrollment request under `rid` (its keys).
    pub fn request(&self, rid: &str) -> EnrollMessage {
        let mut t = self.tpm.lock().unwrap();
        EnrollMessage::Request(EnrollRequest {
            request_id: rid.to_string(),
            ek_public: self.ek_public.clone(),
            ek_certificates: self.ek_certificates.clone(),
            ak_public: t.attestation_key().unwrap().public,
            tls_public: t.tls_key().unwrap().public,
        })
    }

    /// Connects with the device certificate (key in the TPM) to the device listener (client id
    /// `device_id`, as the broker makes it), subscribed to its challenges.
    pub async fn connect_device(
        &self,
        fleet: &Fleet,
        device_id: &str,
        cert_pem: &str,
    ) -> Result<Client, String> {
        let tpm = self.tpm.clone();
        let signer: Arc<vouch_agent::daemon::tls::DigestSigner> = Arc::new(move |d: &[u8]| {
            tpm.lock()
                .map_err(|e| e.to_string())?
                .sign_tls(d)
                .map_err(|e| e.to_string())
        });
        let tls = vouch_agent::daemon::tls::device_config(
            &fleet.ca(),
            cert_pem.as_bytes(),
            Path::new("device.crt"),
            signer,
        )
        .unwrap();
        mqtt::connect(
            fleet.port,
            tls,
            &format!("vouch-conn-{device_id}"),
            &[format!("devices/{device_id}/cmd/attest")],
        )
        .await
    }

    /// Measures something into `pcr` (sha256 and sha1 banks) that no event log shows.
    pub fn measure_unlogged(&self, pcr: u32) {
        use vouch_agent::tpm::Tpm;
        self.tpm
            .lock()
            .unwrap()
            .pcr_extend(
                pcr,
                &[
                    (vouch_attest::HashAlg::Sha256, vec![0x42; 32]),
                    (vouch_attest::HashAlg::Sha1, vec![0x42; 20]),
                ],
            )
            .unwrap();
    }

    /// Answers a challenge as the agent does: a quote of the asked PCRs and the gzip event log,
    /// only its appended part when the challenge names a part the fleet holds that `log` starts
    /// with (`vouch_agent::daemon::answer::log_part`).
    pub fn answer(&self, challenge: &[u8], log: &[u8]) -> AttestationReport {
        let ch: AttestChallenge = protocol::decode("challenge", challenge).unwrap();
        let part = vouch_agent::daemon::answer::log_part(log, ch.eventlog_known.as_ref()).unwrap();
        let mut report = self.answer_as_older_agent(challenge, log);
        report.eventlog_gz = part.gz;
        report.eventlog_from = part.from;
        report
    }

    /// Answers a challenge as agents before steady state did: always the whole log, no
    /// `eventlog_from`.
    pub fn answer_as_older_agent(&self, challenge: &[u8], log: &[u8]) -> AttestationReport {
        let ch: AttestChallenge = protocol::decode("challenge", challenge).unwrap();
        let sel: PcrSelection = ch.pcrs.clone();
        let q = self.tpm.lock().unwrap().quote(&ch.nonce, &sel).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(log).unwrap();
        AttestationReport {
            nonce: ch.nonce,
            quote: q.attest,
            signature: q.signature,
            pcrs: q.pcrs.to_json(),
            eventlog_gz: Some(gz.finish().unwrap()),
            eventlog_from: None,
            ima: None,
        }
    }
}

struct TpmCsrKey {
    tpm: Arc<Mutex<EsapiTpm>>,
    point: Vec<u8>,
}

impl rcgen::RemoteKeyPair for TpmCsrKey {
    fn public_key(&self) -> &[u8] {
        &self.point
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, msg);
        self.tpm
            .lock()
            .map_err(|_| rcgen::Error::RemoteKeyError)?
            .sign_tls(digest.as_ref())
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}
