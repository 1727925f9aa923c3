//! The enrolled agent's MQTT session: mutual TLS with the TPM-resident key, a persistent session
//! (QoS 1 commands queued while offline are delivered), challenge answers through the outbox,
//! escrow deposits and released recovery passphrases ([`super::escrow`]), and reconnects with
//! exponential backoff.

use super::answer::answer;
use super::enroll::Enrolled;
use super::escrow;
use super::mqtt::{options, tpm_signer};
use super::outbox::{Outbox, OutboxError};
use super::ratelimit::LogLimiter;
use super::tls;
use crate::config::AgentConfig;
use crate::tpm::worker::TpmClient;
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use vouch_attest::protocol::{self, AttestChallenge, BootAnnouncement, EscrowRelease};

/// Errors that end the session (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The device TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The MQTT client's request queue is closed.
    #[error("MQTT request failed: {0}")]
    Client(#[from] rumqttc::ClientError),
}

/// Publishes outbox entries and tracks them until the broker acknowledges them.
struct Delivery {
    outbox: Outbox,
    /// Entries handed to the client, waiting for their packet id.
    queued: VecDeque<u64>,
    /// Packet id -> outbox entry, waiting for PUBACK.
    inflight: HashMap<u16, u64>,
}

impl Delivery {
    async fn send(
        &mut self,
        client: &AsyncClient,
        seq: u64,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<(), SessionError> {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        self.queued.push_back(seq);
        Ok(())
    }

    async fn push(
        &mut self,
        client: &AsyncClient,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<(), SessionError> {
        let seq = self.outbox.push(topic, &payload)?;
        self.send(client, seq, topic, payload).await
    }

    /// After a (re)connect: publish what is on disk and not already in flight in the client.
    async fn resend(&mut self, client: &AsyncClient) -> Result<(), SessionError> {
        for e in self.outbox.pending()? {
            let known = self.queued.contains(&e.seq) || self.inflight.values().any(|s| *s == e.seq);
            if !known {
                self.send(client, e.seq, &e.topic, e.payload).await?;
            }
        }
        Ok(())
    }

    fn published(&mut self, pkid: u16) {
        // A retransmission after a reconnect reuses its packet id: already tracked.
        if self.inflight.contains_key(&pkid) {
            return;
        }
        if let Some(seq) = self.queued.pop_front() {
            self.inflight.insert(pkid, seq);
        }
    }

    fn acked(&mut self, pkid: u16) -> Result<(), SessionError> {
        if let Some(seq) = self.inflight.remove(&pkid) {
            self.outbox.remove(seq)?;
        }
        Ok(())
    }
}

/// This boot's id (the kernel's random boot id).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Publishes the boot announcement and the escrow deposits (through the outbox).
async fn announce(
    cfg: &AgentConfig,
    me: &Enrolled,
    client: &AsyncClient,
    delivery: &mut Delivery,
) -> Result<(), SessionError> {
    let boot = protocol::encode(&BootAnnouncement { boot_id: boot_id() });
    delivery
        .push(client, &format!("devices/{}/boot", me.device_id), boot)
        .await?;
    let deposit_topic = format!("devices/{}/escrow", me.device_id);
    let (state, id) = (cfg.state_dir.clone(), me.device_id.clone());
    let deposits = tokio::task::spawn_blocking(move || escrow::deposits(&state, &id))
        .await
        .unwrap_or_default();
    for d in deposits {
        delivery.push(client, &deposit_topic, d).await?;
    }
    Ok(())
}

/// Runs the session until a fatal error. Subscribes to its commands, then announces the boot.
pub async fn run(cfg: &AgentConfig, tpm: &TpmClient, me: &Enrolled) -> Result<(), SessionError> {
    let tls = tls::device_config(
        &cfg.broker.ca_file,
        &me.certificate_pem,
        &me.certificate_path,
        tpm_signer(tpm),
    )?;
    // The device listener replaces the client id with the certificate's CN (the device id), so
    // the persistent session is the device's whatever is sent; the prefix is what the broker
    // requires of every client id.
    let client_id = format!("{}{}", protocol::CLIENT_ID_PREFIX, me.device_id);
    let (client, mut events) = AsyncClient::new(
        options(&cfg.broker, cfg.broker.port, &client_id, tls, false),
        64,
    );
    // A report follows the PUBACK of its challenge within milliseconds: with Nagle's algorithm
    // it would wait for the broker's delayed ACK of that PUBACK (~40 ms on Linux).
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let cmd_topic = format!("devices/{}/cmd/#", me.device_id);
    let attest_cmd = format!("devices/{}/cmd/attest", me.device_id);
    let report_topic = format!("devices/{}/attestation", me.device_id);
    let mut delivery = Delivery {
        outbox: Outbox::open(&cfg.state_dir.join("outbox"))?,
        queued: VecDeque::new(),
        inflight: HashMap::new(),
    };
    let escrow_cmd = format!("devices/{}/cmd/escrow", me.device_id);
    let recovery_topic = format!("devices/{}/recovery", me.device_id);
    // Announced once the command subscription is in place: the fleet answers a boot
    // announcement with a challenge at once, and a new session has no subscription to queue
    // it for until the broker has processed SUBSCRIBE (it handles one client's packets in order).
    let mut announced = false;
    let mut backoff = Duration::from_secs(1);
    let max_backoff = Duration::from_secs(cfg.broker.max_backoff_secs);
    let mut limiter = LogLimiter::new(Duration::from_secs(30));
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_secs(1);
                tracing::info!(device = %me.device_id, "connected to the broker");
                client.subscribe(&cmd_topic, QoS::AtLeastOnce).await?;
                delivery.resend(&client).await?;
                if !announced {
                    announce(cfg, me, &client, &mut delivery).await?;
                    announced = true;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == attest_cmd => {
                let challenge = match protocol::decode::<AttestChallenge>("challenge", &p.payload) {
                    Ok(c) => c,
                    Err(e) => {
                        if let Some(n) = limiter.allow("bad-challenge") {
                            tracing::warn!(error = %e, suppressed = n, "ignoring a malformed challenge");
                        }
                        continue;
                    }
                };
                tracing::debug!(pcrs = %challenge.pcrs, "challenge received");
                match answer(tpm, &cfg.eventlog, &challenge).await {
                    Ok(report) => {
                        tracing::debug!("challenge answered");
                        delivery
                            .push(&client, &report_topic, protocol::encode(&report))
                            .await?
                    }
                    Err(e) => {
                        if let Some(n) = limiter.allow("answer") {
                            tracing::warn!(error = %e, suppressed = n, "cannot answer a challenge");
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == escrow_cmd => {
                match protocol::decode::<EscrowRelease>("escrow release", &p.payload) {
                    Ok(release) => {
                        let result =
                            escrow::recover(tpm, &cfg.state_dir, &me.device_id, release).await;
                        delivery
                            .push(&client, &recovery_topic, protocol::encode(&result))
                            .await?
                    }
                    Err(e) => {
                        if let Some(n) = limiter.allow("bad-escrow") {
                            tracing::warn!(error = %e, suppressed = n, "ignoring a malformed escrow release");
                        }
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => delivery.published(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => delivery.acked(ack.pkid)?,
            Ok(_) => {}
            Err(e) => {
                if let Some(n) = limiter.allow("connection") {
                    tracing::warn!(error = %e, suppressed = n, retry_in = ?backoff, "broker connection lost");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}
