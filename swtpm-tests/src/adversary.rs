//! Tools of the adversarial suite (`tests/hostile.rs`): the identities an attacker may hold
//! (the claim certificate, certificates minted by the fleet CA for software keys, expired,
//! revoked and foreign certificates), a small MQTT client that reports exactly what the broker
//! answered (CONNACK code, PUBACK, SUBACK, disconnect), `mosquitto_pub -V mqttv5` for the broker's
//! named PUBACK refusals, and a claimant that enrolls with a software TPM (`MemoryTpm`) whose EK
//! certificate the test's fleet trusts, so enrollment can be driven step by step.

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, LastWill, MqttOptions, Packet, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vouch_agent::tpm::memory::MemoryTpm;
use vouch_agent::tpm::{EkAlg, EkCertificate, PcrSelection, Tpm};
use vouch_attest::errors::chain;
use vouch_attest::protocol::{
    self, AttestChallenge, AttestationReport, EnrollMessage, EnrollProof, EnrollRequest,
    EnrollResponse,
};
use vouch_attest::tpm::{PublicParams, TpmPublic};
use vouch_fleet::pki::{issue_device_certificate, load_ca, DevicePublicKey, Validity};

/// Largest packet the attacker's client sends or reads (far above any broker limit).
pub const ATTACKER_MAX_PACKET: usize = 16 << 20;

fn run_ok(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A TLS client identity: certificate and key files, and the CA the broker is checked against.
#[derive(Debug, Clone)]
pub struct Identity {
    /// What the attacker holds, for messages.
    pub name: String,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA certificate of the broker (PEM).
    pub ca: PathBuf,
    /// Serial (hex) of the certificate when the fleet CA issued it here.
    pub serial: Option<String>,
}

impl Identity {
    /// An identity from existing files.
    pub fn files(name: &str, cert: &Path, key: &Path, ca: &Path) -> Identity {
        Identity {
            name: name.to_string(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca: ca.to_path_buf(),
            serial: None,
        }
    }

    /// The claim certificate of the fleet directory.
    pub fn claim(fleet_dir: &Path) -> Identity {
        Identity::files(
            "claim certificate",
            &fleet_dir.join("claim.crt"),
            &fleet_dir.join("claim.key"),
            &fleet_dir.join("ca.crt"),
        )
    }

    /// The rustls configuration (ring) presenting this identity.
    pub fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.ca).map_err(|e| chain(&e))? {
            roots
                .add(c.map_err(|e| chain(&e))?)
                .map_err(|e| chain(&e))?;
        }
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| chain(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| chain(&e))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| chain(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| chain(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| chain(&e))?;
        Ok(Arc::new(cfg))
    }
}

/// Generates a P-256 key with openssl at `key`; returns its DER SubjectPublicKeyInfo.
fn new_key(key: &Path) -> Result<Vec<u8>, String> {
    run_ok(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(key),
    )?;
    let der = key.with_extension("spki.der");
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(key)
            .arg("-out")
            .arg(&der),
    )?;
    std::fs::read(&der).map_err(|e| chain(&e))
}

/// A client certificate with CN `cn` issued by the fleet CA of `fleet_dir` (recorded in its
/// `issued` index, as every certificate the CA signs) for a fresh software key: what an attacker
/// holds after extracting a device's identity, or the CA key, would hold.
pub fn mint(
    fleet_dir: &Path,
    out: &Path,
    name: &str,
    cn: &str,
    validity: Validity,
) -> Result<Identity, String> {
    std::fs::create_dir_all(out).map_err(|e| chain(&e))?;
    let stem = out.join(name);
    let key = stem.with_extension("key");
    let spki = new_key(&key)?;
    let ca = load_ca(fleet_dir).map_err(|e| chain(&e))?;
    let issued = issue_device_certificate(&ca, cn, DevicePublicKey::Spki(&spki), validity)
        .map_err(|e| chain(&e))?;
    let cert = stem.with_extension("crt");
    std::fs::write(&cert, issued.pem.as_bytes()).map_err(|e| chain(&e))?;
    Ok(Identity {
        name: name.to_string(),
        cert,
        key,
        ca: fleet_dir.join("ca.crt"),
        serial: Some(issued.serial.to_string()),
    })
}

/// A client certificate with CN `cn` from a CA the fleet never heard of.
pub fn foreign(fleet_dir: &Path, out: &Path, cn: &str) -> Result<Identity, String> {
    std::fs::create_dir_all(out).map_err(|e| chain(&e))?;
    let (ca_key, ca_crt) = (out.join("foreign-ca.key"), out.join("foreign-ca.crt"));
    new_key(&ca_key)?;
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-new", "-key"])
            .arg(&ca_key)
            .args(["-subj", "/CN=vouch-fleet-ca", "-days", "2", "-out"])
            .arg(&ca_crt),
    )?;
    let (key, csr, crt) = (
        out.join("foreign.key"),
        out.join("foreign.csr"),
        out.join("foreign.crt"),
    );
    new_key(&key)?;
    run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-key"])
            .arg(&key)
            .args(["-subj", &format!("/CN={cn}"), "-out"])
            .arg(&csr),
    )?;
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_crt)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-CAcreateserial", "-days", "2", "-out"])
            .arg(&crt),
    )?;
    Ok(Identity::files(
        "foreign CA certificate",
        &crt,
        &key,
        &fleet_dir.join("ca.crt"),
    ))
}

/// What the broker did, as one MQTT client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// CONNACK accepted.
    Connected,
    /// A message delivered to this client.
    Message { topic: String, payload: Vec<u8> },
    /// PUBACK for packet id.
    PubAck(u16),
    /// SUBACK with its return codes.
    SubAck(Vec<SubscribeReasonCode>),
    /// The connection ended (refused CONNACK, TLS alert, closed by the broker...).
    Closed(String),
}

/// A one-shot MQTT 3.1.1 client (no reconnect): every event the broker caused is kept.
pub struct Conn {
    client: AsyncClient,
    rx: mpsc::Receiver<Seen>,
    seen: Mutex<Vec<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The client id sent in CONNECT.
    pub client_id: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// Options of an attacker connection.
#[derive(Debug, Clone)]
pub struct ConnOpts {
    /// Clean session.
    pub clean: bool,
    /// Last will.
    pub will: Option<(String, Vec<u8>, bool)>,
    /// Keep-alive.
    pub keep_alive: Duration,
}

impl Default for ConnOpts {
    fn default() -> Self {
        ConnOpts {
            clean: true,
            will: None,
            keep_alive: Duration::from_secs(30),
        }
    }
}

impl Conn {
    /// Connects `id` to `localhost:port` with `client_id` (clean session).
    pub fn open(id: &Identity, port: u16, client_id: &str) -> Conn {
        Conn::open_with(id, port, client_id, ConnOpts::default())
    }

    /// Connects with options.
    pub fn open_with(id: &Identity, port: u16, client_id: &str, opts: ConnOpts) -> Conn {
        let (tx, rx) = mpsc::channel();
        let mut o = MqttOptions::new(client_id, "localhost", port);
        o.set_keep_alive(opts.keep_alive)
            .set_clean_session(opts.clean)
            .set_max_packet_size(ATTACKER_MAX_PACKET, ATTACKER_MAX_PACKET);
        if let Some((topic, payload, retain)) = opts.will {
            o.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, retain));
        }
        let tls = id.tls();
        if let Ok(tls) = &tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        let (client, mut events) = AsyncClient::new(o, 64);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(e) = tls {
                let _ = tx.send(Seen::Closed(format!("TLS configuration: {e}")));
                return;
            }
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                let _ = tx.send(Seen::Closed("no runtime".into()));
                return;
            };
            rt.block_on(async move {
                loop {
                    let ev = tokio::select! {
                        e = events.poll() => e,
                        _ = &mut stopped => return,
                    };
                    let seen = match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => Seen::Connected,
                        Ok(Event::Incoming(Packet::Publish(p))) => Seen::Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        },
                        Ok(Event::Incoming(Packet::PubAck(a))) => Seen::PubAck(a.pkid),
                        Ok(Event::Incoming(Packet::SubAck(s))) => Seen::SubAck(s.return_codes),
                        Ok(Event::Incoming(Packet::Disconnect)) => {
                            Seen::Closed("DISCONNECT from the broker".into())
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            let _ = tx.send(Seen::Closed(chain(&e)));
                            return;
                        }
                    };
                    if tx.send(seen).is_err() {
                        return;
                    }
                }
            });
        });
        Conn {
            client,
            rx,
            seen: Mutex::new(Vec::new()),
            stop: Some(stop),
            thread: Some(thread),
            client_id: client_id.to_string(),
        }
    }

    fn pump(&self, until: Instant) {
        let left = until.saturating_duration_since(Instant::now());
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match self.rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(s) => seen.push(s),
            Err(_) => std::thread::sleep(Duration::from_millis(5).min(left)),
        }
        while let Ok(s) = self.rx.try_recv() {
            seen.push(s);
        }
    }

    /// Everything seen so far (waits `d` for more first).
    pub fn seen_after(&self, d: Duration) -> Vec<Seen> {
        let until = Instant::now() + d;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            while let Ok(s) = self.rx.try_recv() {
                seen.push(s);
            }
        }
        while Instant::now() < until {
            self.pump(until);
        }
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to `d` for an event matching `ok`; returns it.
    pub fn wait(&self, d: Duration, ok: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let until = Instant::now() + d;
        loop {
            if let Some(s) = self
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|s| ok(s))
            {
                return Some(s.clone());
            }
            if Instant::now() >= until {
                return None;
            }
            self.pump(until);
        }
    }

    /// The CONNACK outcome within 10 s: `Ok` when accepted, else why the connection ended.
    pub fn connack(&self) -> Result<(), String> {
        match self.wait(Duration::from_secs(10), |s| {
            matches!(s, Seen::Connected | Seen::Closed(_))
        }) {
            Some(Seen::Connected) => Ok(()),
            Some(Seen::Closed(why)) => Err(why),
            _ => Err("no CONNACK within 10 s".into()),
        }
    }

    /// Why the connection ended, if it did within `d`.
    pub fn closed_within(&self, d: Duration) -> Option<String> {
        match self.wait(d, |s| matches!(s, Seen::Closed(_))) {
            Some(Seen::Closed(why)) => Some(why),
            _ => None,
        }
    }

    /// Publishes (QoS 1 unless `qos` says otherwise).
    pub fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: Vec<u8>) {
        let _ = self.client.try_publish(topic, qos, retain, payload);
    }

    /// Subscribes.
    pub fn subscribe(&self, filter: &str, qos: QoS) {
        let _ = self.client.try_subscribe(filter, qos);
    }

    /// Waits for the next SUBACK.
    pub fn suback(&self, d: Duration) -> Option<Vec<SubscribeReasonCode>> {
        match self.wait(d, |s| matches!(s, Seen::SubAck(_))) {
            Some(Seen::SubAck(c)) => Some(c),
            _ => None,
        }
    }

    /// Messages delivered so far (waits `d` first).
    pub fn messages(&self, d: Duration) -> Vec<(String, Vec<u8>)> {
        self.seen_after(d)
            .into_iter()
            .filter_map(|s| match s {
                Seen::Message { topic, payload } => Some((topic, payload)),
                _ => None,
            })
            .collect()
    }

    /// Number of PUBACKs so far.
    pub fn pubacks(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| matches!(s, Seen::PubAck(_)))
            .count()
    }

    /// True when the connection ended.
    pub fn is_closed(&self) -> bool {
        self.closed_within(Duration::from_millis(1)).is_some()
    }

    /// Sends DISCONNECT (a clean end: no will).
    pub fn disconnect(mut self) {
        let _ = self.client.try_disconnect();
        std::thread::sleep(Duration::from_millis(100));
        self.shut();
    }

    /// Drops the TCP connection without DISCONNECT (the will is published).
    pub fn abort(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A CONNACK refusal named as a broker refusal, e.g. "`NotAuthorized`".
pub fn refused_code(why: &str) -> Option<ConnectReturnCode> {
    [
        ConnectReturnCode::NotAuthorized,
        ConnectReturnCode::BadClientId,
        ConnectReturnCode::BadUserNamePassword,
        ConnectReturnCode::ServiceUnavailable,
        ConnectReturnCode::RefusedProtocolVersion,
    ]
    .into_iter()
    .find(|c| why.contains(&format!("`{c:?}`")))
}

/// What `mosquitto_pub -V mqttv5 -q 1 -d` reported for one publish.
#[derive(Debug, Clone)]
pub struct PubV5 {
    /// Exit code.
    pub code: i32,
    /// stdout and stderr.
    pub text: String,
}

impl PubV5 {
    /// The PUBACK reason code, if one came.
    pub fn puback_rc(&self) -> Option<u8> {
        let at = self.text.find("received PUBACK")?;
        let rest = &self.text[at..];
        let rc = rest.find("RC:")?;
        rest[rc + 3..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    }
}

/// Publishes `payload` once with `mosquitto_pub` over MQTT 5 (QoS 1), so the broker answers an
/// unauthorized publish with a PUBACK reason code (135) instead of dropping it silently.
pub fn pub_v5(id: &Identity, port: u16, client_id: &str, topic: &str, payload: &[u8]) -> PubV5 {
    let child = Command::new("mosquitto_pub")
        .args(["-V", "mqttv5", "-q", "1", "-d", "-h", "localhost"])
        .args(["-p", &port.to_string(), "-i", client_id, "-t", topic, "-s"])
        .arg("--cafile")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .arg("--key")
        .arg(&id.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return PubV5 {
                code: -1,
                text: e.to_string(),
            }
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = std::io::Write::write_all(&mut stdin, payload);
    }
    match child.wait_with_output() {
        Ok(o) => PubV5 {
            code: o.status.code().unwrap_or(-1),
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        },
        Err(e) => PubV5 {
            code: -1,
            text: e.to_string(),
        },
    }
}

/// A random client id with the required prefix.
pub fn conn_id() -> String {
    format!("{}{}", protocol::CLIENT_ID_PREFIX, random_hex(16))
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// The gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = std::io::Write::write_all(&mut gz, data);
    gz.finish().unwrap_or_default()
}

/// Answers `challenge` (a payload from `devices/<id>/cmd/attest`) with `tpm`'s quote.
pub fn answer(
    tpm: &Mutex<MemoryTpm>,
    challenge: &[u8],
    eventlog_gz: &[u8],
) -> Result<AttestationReport, String> {
    let ch: AttestChallenge = protocol::decode("challenge", challenge).map_err(|e| chain(&e))?;
    let sel: PcrSelection = ch.pcrs.clone();
    let q = tpm
        .lock()
        .map_err(|_| "poisoned".to_string())?
        .quote(&ch.nonce, &sel)
        .map_err(|e| chain(&e))?;
    Ok(AttestationReport {
        nonce: ch.nonce,
        quote: q.attest,
        signature: q.signature,
        pcrs: q.pcrs.to_json(),
        eventlog_gz: Some(eventlog_gz.to_vec()),
        eventlog_from: None,
        ima: None,
    })
}

/// An enrolling device driven step by step: a `MemoryTpm` whose P-256 EK certificate is issued
/// by the fleet CA of the test (the test copies `ca.crt` into the trust roots, so this software
/// TPM counts as a vendor-certified one: a stand-in for an attacker who owns a real TPM).
pub struct Claimant {
    tpm: Arc<Mutex<MemoryTpm>>,
    ek_public: Vec<u8>,
    ek_cert: Vec<u8>,
    /// The device id enrollment gives it.
    pub device_id: String,
}

impl std::fmt::Debug for Claimant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimant")
            .field("device_id", &self.device_id)
            .finish()
    }
}

impl Claimant {
    /// A fresh software TPM with an EK certificate from the fleet CA of `fleet_dir`.
    pub fn new(fleet_dir: &Path, label: &str) -> Result<Claimant, String> {
        let mut tpm = MemoryTpm::new();
        let ek = tpm.endorsement_key(EkAlg::EccP256).map_err(|e| chain(&e))?;
        let (public, _) = TpmPublic::parse(&ek.public).map_err(|e| chain(&e))?;
        let spki = public
            .key()
            .map_err(|e| chain(&e))?
            .to_spki_der()
            .map_err(|e| chain(&e))?;
        let ca = load_ca(fleet_dir).map_err(|e| chain(&e))?;
        let cert = issue_device_certificate(
            &ca,
            &format!("test-ek-{label}"),
            DevicePublicKey::Spki(&spki),
            Validity::days_from_now(2),
        )
        .map_err(|e| chain(&e))?;
        let tpm = tpm.with_ek_certificate(EkCertificate {
            nv_index: 0x01c0_000a,
            der: cert.der.clone(),
        });
        Ok(Claimant {
            tpm: Arc::new(Mutex::new(tpm)),
            ek_public: ek.public,
            ek_cert: cert.der,
            device_id: vouch_fleet::serve::enroll::device_id_of_spki(&spki),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut MemoryTpm) -> Result<T, vouch_agent::tpm::TpmError>,
    ) -> Result<T, String> {
        let mut t = self.tpm.lock().map_err(|_| "poisoned".to_string())?;
        f(&mut t).map_err(|e| chain(&e))
    }

    /// Step 1 for request id `rid`.
    pub fn request(&self, rid: &str) -> Result<Vec<u8>, String> {
        let ak = self.with(|t| t.attestation_key())?.public;
        let tls = self.with(|t| t.tls_key())?.public;
        Ok(protocol::encode(&EnrollMessage::Request(EnrollRequest {
            request_id: rid.to_string(),
            ek_public: self.ek_public.clone(),
            ek_certificates: vec![self.ek_cert.clone()],
            ak_public: ak,
            tls_public: tls,
        })))
    }

    /// Step 2: the proof for the challenge `response` (an `enroll/<rid>/response` payload).
    /// With `wrong_secret`, the secret is altered (what a saboteur without the TPM sends).
    pub fn proof(&self, rid: &str, response: &[u8], wrong_secret: bool) -> Result<Vec<u8>, String> {
        let EnrollResponse::Challenge {
            credential_blob,
            encrypted_secret,
        } = protocol::decode::<EnrollResponse>("response", response).map_err(|e| chain(&e))?
        else {
            return Err(format!(
                "not a challenge: {}",
                String::from_utf8_lossy(response)
            ));
        };
        let mut secret = self
            .with(|t| t.activate_credential(EkAlg::EccP256, &credential_blob, &encrypted_secret))?
            .to_vec();
        let qualifying = ring_sha256(&secret);
        let cert = self.with(|t| t.certify_tls_key(&qualifying))?;
        let tls = self.with(|t| t.tls_key())?.public;
        let (public, _) = TpmPublic::parse(&tls).map_err(|e| chain(&e))?;
        let PublicParams::Ecc(ecc) = &public.params else {
            return Err("TLS key is not ECC".into());
        };
        let tpm = self.tpm.clone();
        let signer: Arc<vouch_agent::daemon::tls::DigestSigner> = Arc::new(move |d: &[u8]| {
            tpm.lock()
                .map_err(|_| "poisoned".to_string())?
                .sign_tls(d)
                .map_err(|e| chain(&e))
        });
        let csr = vouch_agent::daemon::csr::build(&self.device_id, &ecc.x, &ecc.y, signer)
            .map_err(|e| chain(&e))?;
        if wrong_secret {
            secret[0] ^= 0xff;
        }
        Ok(protocol::encode(&EnrollMessage::Proof(EnrollProof {
            request_id: rid.to_string(),
            activated_secret: secret,
            certify_attest: cert.attest,
            certify_signature: cert.signature,
            csr,
        })))
    }
}

fn ring_sha256(data: &[u8]) -> Vec<u8> {
    vouch_attest::HashAlg::Sha256.hash(data).unwrap_or_default()
}

/// The response kind of an `enroll/<rid>/response` payload: `challenge`, `accepted`, or the
/// refusal reason.
pub fn response_kind(payload: &[u8]) -> String {
    match protocol::decode::<EnrollResponse>("response", payload) {
        Ok(EnrollResponse::Challenge { .. }) => "challenge".into(),
        Ok(EnrollResponse::Accepted { device_id, .. }) => format!("accepted {device_id}"),
        Ok(EnrollResponse::Refused { reason }) => format!("refused: {reason}"),
        Err(e) => format!("undecodable: {}", chain(&e)),
    }
}
