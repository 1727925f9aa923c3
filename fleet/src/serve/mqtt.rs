//! The broker side of the server: a mutual-TLS MQTT connection as `vouch-fleet` (fixed client
//! id, persistent session, QoS 1 subscriptions), reconnecting with exponential backoff.
//!
//! The event loop only routes, rate-limits and enqueues: incoming messages go into a bounded
//! queue (full: dropped and counted) served by [`WORKERS`] tasks, each running the synchronous
//! handler on a blocking thread (SQLite, crypto) and then publishing the answers. A scheduler
//! task runs [`Server::tick`] every second the same way.
//!
//! No message can wedge the connection: every packet the broker can deliver is read (the
//! client's limit is MQTT's own maximum) and acknowledged by the client as it arrives (QoS 1),
//! before any check; the protocol check then refuses what is too large or malformed, and a
//! handler that fails is logged and counted. So a poison message is dropped once, never
//! redelivered on every reconnect. The broker's `max_packet_size` refuses oversized messages
//! before they are queued at all.
//!
//! After a revocation the device is cut off: the broker reloads its CRL, which refuses new
//! connections, and the scheduler publishes a kick to the broker's dynamic-security plugin,
//! which closes the device's current connection (see [`crate::pki::broker`]).

use super::{Outgoing, Route, ServeError, Server};
use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter, TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use vouch_attest::errors::chain;

/// Topics the fleet subscribes to (the last: the broker's answers to disconnect requests).
pub const SUBSCRIPTIONS: [&str; 6] = [
    "enroll/+/request",
    "devices/+/attestation",
    "devices/+/boot",
    "devices/+/escrow",
    "devices/+/recovery",
    "$CONTROL/dynamic-security/v1/response",
];
/// Worker tasks running handlers.
pub const WORKERS: usize = 4;
/// Messages waiting for a worker before new ones are dropped.
pub const QUEUE: usize = 1024;
/// Largest packet read from the broker: MQTT's own maximum (a remaining length of 268,435,455
/// bytes plus the fixed header), so every message the broker can deliver is read and
/// acknowledged, and one above [`vouch_attest::protocol::MAX_MESSAGE_BYTES`] is refused by the protocol check (and
/// audited). A lower limit would make the client drop the connection on such a message and the
/// persistent session would redeliver it forever.
pub const MAX_INCOMING_PACKET: usize = 268_435_455 + 5;
/// Largest packet the fleet sends (its messages are small; the broker refuses larger anyway).
pub const MAX_OUTGOING_PACKET: usize = crate::pki::broker::BROKER_MAX_PACKET;
/// The client id the fleet sends; on the device listener the broker replaces it with the
/// certificate's CN, `vouch-fleet`.
pub const CLIENT_ID: &str = "vouch-conn-fleet";
/// First reconnect delay; doubled per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The fleet's TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read or parse {path}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The CA certificate is not usable as a root.
    #[error("{path}: unusable CA certificate")]
    Root {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the certificate and key.
    #[error("unusable fleet certificate {cert} / key {key}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the protocol versions.
    #[error("cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// The rustls client configuration: roots = the fleet CA, client identity = fleet.crt/key.
pub fn client_tls(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let pem = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { path, source }
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(pem(ca))? {
        roots
            .add(c.map_err(pem(ca))?)
            .map_err(|source| TlsError::Root {
                path: ca.to_path_buf(),
                source,
            })?;
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(cert))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem(key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|source| TlsError::Identity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(config))
}

fn options(
    srv: &Server,
    client_id: &str,
    tls: Arc<rustls::ClientConfig>,
    clean: bool,
) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, &srv.cfg.broker_host, srv.cfg.broker_port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(clean)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    o
}

async fn publish_all(client: &AsyncClient, srv: &Server, out: Vec<Outgoing>) {
    for o in out {
        if let Err(e) = client
            .publish(o.topic.clone(), QoS::AtLeastOnce, false, o.payload)
            .await
        {
            srv.log(&format!("cannot publish to {}: {}", o.topic, chain(&e)));
        }
    }
}

/// Runs the server's MQTT side until SIGINT or SIGTERM.
pub async fn serve(srv: Arc<Server>) -> Result<(), ServeError> {
    let c = &srv.cfg;
    let tls = client_tls(&c.ca_cert, &c.client_cert, &c.client_key).map_err(ServeError::Tls)?;
    let (client, mut eventloop) = AsyncClient::new(options(&srv, CLIENT_ID, tls, false), 256);
    let (tx, rx) = mpsc::channel::<rumqttc::Publish>(QUEUE);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..WORKERS {
        let (srv, client, rx) = (srv.clone(), client.clone(), rx.clone());
        tokio::spawn(async move {
            loop {
                let Some(p) = rx.lock().await.recv().await else {
                    return;
                };
                srv.observer.metrics.queue_add(-1);
                let s = srv.clone();
                let topic = p.topic.clone();
                let out = match tokio::task::spawn_blocking(move || s.handle(&p.topic, &p.payload))
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        // A handler that panicked: the message is dropped (it was already
                        // acknowledged), counted and logged; the worker goes on.
                        srv.count_refusal("handler_failed");
                        srv.log(&format!(
                            "handler for {topic} failed: {}; message dropped",
                            chain(&e)
                        ));
                        Vec::new()
                    }
                };
                publish_all(&client, &srv, out).await;
            }
        });
    }
    {
        let (srv, client) = (srv.clone(), client.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let s = srv.clone();
                let out = match tokio::task::spawn_blocking(move || s.tick()).await {
                    Ok(out) => out,
                    Err(e) => {
                        srv.log(&format!("scheduler round failed: {}", chain(&e)));
                        Vec::new()
                    }
                };
                publish_all(&client, &srv, out).await;
            }
        });
    }
    srv.log(&format!(
        "connecting to {}:{} as {}",
        c.broker_host,
        c.broker_port,
        crate::pki::FLEET_NAME
    ));
    let mut backoff = MIN_BACKOFF;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Runtime)?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(ServeError::Runtime)?;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => {
                // SIGHUP: re-read the policies directory (new or changed reference values).
                let s = srv.clone();
                let _ = tokio::task::spawn_blocking(move || s.reload_policies()).await;
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = MIN_BACKOFF;
                srv.observer.metrics.set_broker_connected(true);
                let filters = SUBSCRIPTIONS
                    .iter()
                    .map(|t| SubscribeFilter::new((*t).to_string(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    srv.log(&format!("cannot subscribe: {}", chain(&e)));
                }
                srv.log("connected to the broker");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(route) = Route::of(&p.topic) else {
                    if p.topic == SUBSCRIPTIONS[5] {
                        srv.broker_control_response(&p.payload);
                    } else {
                        // On a subscribed pattern but no handler's (a reserved name such as
                        // devices/vouch-claim/...): named and audited, not silently skipped.
                        let why = "no handler takes this topic (reserved or invalid id)";
                        let now = crate::registry::now_ms();
                        srv.refuse_message(None, "unroutable", &p.topic, why, now);
                    }
                    continue;
                };
                if !srv.allow(route.sender()) {
                    continue;
                }
                if tx.try_send(p).is_ok() {
                    srv.observer.metrics.queue_add(1);
                } else {
                    srv.count_refusal("overloaded");
                    srv.log("work queue full: message dropped");
                }
            }
            Ok(_) => {}
            Err(e) => {
                srv.observer.metrics.set_broker_connected(false);
                srv.log(&format!(
                    "broker connection: {}; retrying in {} ms",
                    chain(&e),
                    backoff.as_millis()
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    srv.log("shutting down");
    let _ = client.try_disconnect();
    Ok(())
}
