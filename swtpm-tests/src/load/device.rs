//! One simulated device's MQTT session: mutual TLS as the device (its certificate, the TLS key
//! in its `MemoryTpm` signing through the agent's `device_config` signer), subscribed to its
//! challenges, answering each with a `MemoryTpm` quote of the requested PCRs and the gzip event
//! log on `devices/<id>/attestation` (QoS 1), as `vouch-agent run` does.
//!
//! Counters are shared by all devices; the answer time (challenge received -> report handed to
//! the MQTT client) is recorded so the generator's own share of the latency is known.

use super::provision::SimDevice;
use super::stats::Samples;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vouch_agent::daemon::tls::{device_config, DigestSigner, TlsError};
use vouch_agent::tpm::{PcrSelection, Tpm};
use vouch_attest::errors::chain;
use vouch_attest::protocol::{self, AttestChallenge, AttestationReport};

/// Largest MQTT packet a simulated device sends or accepts.
const MAX_PACKET: usize = 2 << 20;
/// Error texts kept (the first ones) for the final report.
const KEEP_ERRORS: usize = 10;

/// Counters shared by all simulated devices.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted (CONNACK), reconnects included.
    pub connected: AtomicU64,
    /// Devices whose challenge subscription was acknowledged (first time only).
    pub subscribed: AtomicU64,
    /// Challenges received.
    pub challenges: AtomicU64,
    /// Reports handed to the MQTT client.
    pub reports: AtomicU64,
    /// Connection errors (each followed by a reconnect attempt).
    pub connection_errors: AtomicU64,
    /// Challenges that could not be answered (bad challenge, quote failure, full queue).
    pub answer_errors: AtomicU64,
    /// The first error texts.
    pub first_errors: Mutex<Vec<String>>,
    /// Challenge received -> report handed to the MQTT client.
    pub answer_time: Mutex<Samples>,
}

impl Counters {
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn note(&self, what: &str, device: &str, e: impl std::fmt::Display) {
        if let Ok(mut v) = self.first_errors.lock() {
            if v.len() < KEEP_ERRORS {
                v.push(format!("{what} ({device}): {e}"));
            }
        }
    }
}

/// Where the simulated devices connect.
#[derive(Debug, Clone)]
pub struct Broker {
    /// Broker host name (must match the broker certificate; not an IP literal).
    pub host: String,
    /// TLS port.
    pub port: u16,
    /// The fleet CA certificate (PEM file).
    pub ca: PathBuf,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
}

/// A session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device's TLS configuration could not be built.
    #[error("TLS configuration of device {id}")]
    Tls {
        id: String,
        #[source]
        source: TlsError,
    },
}

fn signer(dev: &SimDevice) -> Arc<DigestSigner> {
    let tpm = dev.tpm.clone();
    Arc::new(move |digest: &[u8]| {
        tpm.lock()
            .map_err(|_| "software TPM lock poisoned".to_string())?
            .sign_tls(digest)
            .map_err(|e| chain(&e))
    })
}

fn answer(dev: &SimDevice, gz: &[u8], payload: &[u8]) -> Result<Vec<u8>, String> {
    let ch: AttestChallenge = protocol::decode("challenge", payload).map_err(|e| chain(&e))?;
    let sel: PcrSelection = ch.pcrs.clone();
    let q = dev
        .tpm
        .lock()
        .map_err(|_| "software TPM lock poisoned".to_string())?
        .quote(&ch.nonce, &sel)
        .map_err(|e| chain(&e))?;
    Ok(protocol::encode(&AttestationReport {
        nonce: ch.nonce,
        quote: q.attest,
        signature: q.signature,
        pcrs: q.pcrs.to_json(),
        eventlog_gz: Some(gz.to_vec()),
        eventlog_from: None,
        ima: None,
    }))
}

/// Runs a device's session until the task is dropped. `ready` is a permit of the start-up
/// semaphore, given back once the challenge subscription is acknowledged or a connection attempt
/// failed, so that only a bounded number of TLS handshakes run at once.
pub async fn run(
    dev: Arc<SimDevice>,
    broker: Broker,
    eventlog_gz: Arc<Vec<u8>>,
    counters: Arc<Counters>,
    ready: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), DeviceError> {
    let tls = device_config(
        &broker.ca,
        dev.cert_pem.as_bytes(),
        std::path::Path::new("device.crt"),
        signer(&dev),
    )
    .map_err(|source| DeviceError::Tls {
        id: dev.id.clone(),
        source,
    })?;
    // The broker makes the client id the certificate's CN; it requires the prefix of what is sent.
    let client_id = format!("{}{}", vouch_attest::protocol::CLIENT_ID_PREFIX, dev.id);
    let mut o = MqttOptions::new(client_id, &broker.host, broker.port);
    o.set_keep_alive(broker.keep_alive)
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (client, mut events) = AsyncClient::new(o, 8);
    // As the agent: no Nagle delay for a report that follows the challenge's PUBACK.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let cmd = format!("devices/{}/cmd/attest", dev.id);
    let report_topic = format!("devices/{}/attestation", dev.id);
    let mut ready = Some(ready);
    let mut subscribed_once = false;
    let mut backoff = Duration::from_millis(500);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                counters.connected.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(500);
                if let Err(e) = client.try_subscribe(&cmd, QoS::AtLeastOnce) {
                    counters.note("subscribe", &dev.id, chain(&e));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if !subscribed_once {
                    subscribed_once = true;
                    counters.subscribed.fetch_add(1, Ordering::Relaxed);
                }
                // Connected and subscribed: let the next device start its handshake.
                drop(ready.take());
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd => {
                counters.challenges.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let sent = answer(&dev, &eventlog_gz, &p.payload).and_then(|report| {
                    client
                        .try_publish(&report_topic, QoS::AtLeastOnce, false, report)
                        .map_err(|e| chain(&e))
                });
                match sent {
                    Ok(()) => {
                        counters.reports.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut s) = counters.answer_time.lock() {
                            s.push(t.elapsed());
                        }
                    }
                    Err(e) => {
                        counters.answer_errors.fetch_add(1, Ordering::Relaxed);
                        counters.note("answer", &dev.id, e);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                counters.note("connection", &dev.id, chain(&e));
                drop(ready.take());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
