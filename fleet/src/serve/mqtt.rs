//! The broker side of the server: a mutual-TLS MQTT connection as `vouch-fleet` (fixed client
//! id, persistent session, QoS 1 subscriptions), reconnecting with exponential backoff.
//!
//! The event loop only routes, rate-limits and enqueues: incoming messages go into a bounded
//! queue (full: dropped and counted) served by [`WORKERS`] tasks, each running the synchronous
//! handler on a blocking thread (SQLite, crypto) and then publishing the answers. A scheduler
//! task runs [`Server::tick`] every second the same way.
//!
//! After a revocation the device is cut off: the broker reloads its CRL, which refuses new
//! connections, and the server connects once with the device's id as client id (as the agent
//! uses), which makes the broker drop the device's current connection.

use super::{Outgoing, Route, ServeError, Server};
use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, SubscribeFilter,
    TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use vouch_attest::protocol::MAX_MESSAGE_BYTES;

/// Topics the fleet subscribes to.
pub const SUBSCRIPTIONS: [&str; 5] = [
    "enroll/+/request",
    "devices/+/attestation",
    "devices/+/boot",
    "devices/+/escrow",
    "devices/+/recovery",
];
/// Worker tasks running handlers.
pub const WORKERS: usize = 4;
/// Messages waiting for a worker before new ones are dropped.
pub const QUEUE: usize = 1024;
/// Largest packet read from the broker: above the protocol limit, so an oversized message is
/// refused by the protocol check (and audited) rather than breaking the connection.
pub const MAX_INCOMING_PACKET: usize = 2 * MAX_MESSAGE_BYTES;
/// First reconnect delay; doubled per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The fleet's TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The CA certificate is not usable as a root.
    #[error("{path}: unusable CA certificate: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the certificate and key.
    #[error("fleet certificate {cert} / key {key}: {source}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the protocol versions.
    #[error("TLS configuration: {0}")]
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
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    o
}

async fn publish_all(client: &AsyncClient, srv: &Server, out: Vec<Outgoing>) {
    for o in out {
        if let Err(e) = client
            .publish(o.topic.clone(), QoS::AtLeastOnce, false, o.payload)
            .await
        {
            srv.log(&format!("cannot publish to {}: {e}", o.topic));
        }
    }
}

/// Runs the server's MQTT side until SIGINT or SIGTERM.
pub async fn serve(srv: Arc<Server>) -> Result<(), ServeError> {
    let c = &srv.cfg;
    let tls = client_tls(&c.ca_cert, &c.client_cert, &c.client_key).map_err(ServeError::Tls)?;
    let (client, mut eventloop) = AsyncClient::new(
        options(&srv, crate::pki::FLEET_NAME, tls.clone(), false),
        256,
    );
    let (tx, rx) = mpsc::channel::<rumqttc::Publish>(QUEUE);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..WORKERS {
        let (srv, client, rx, tls) = (srv.clone(), client.clone(), rx.clone(), tls.clone());
        tokio::spawn(async move {
            loop {
                let Some(p) = rx.lock().await.recv().await else {
                    return;
                };
                let s = srv.clone();
                let out = tokio::task::spawn_blocking(move || s.handle(&p.topic, &p.payload))
                    .await
                    .unwrap_or_default();
                publish_all(&client, &srv, out).await;
                for id in srv.take_cut_off() {
                    tokio::spawn(cut_off(srv.clone(), tls.clone(), id));
                }
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
                let out = tokio::task::spawn_blocking(move || s.tick())
                    .await
                    .unwrap_or_default();
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
                let filters = SUBSCRIPTIONS
                    .iter()
                    .map(|t| SubscribeFilter::new((*t).to_string(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    srv.log(&format!("cannot subscribe: {e}"));
                }
                srv.log("connected to the broker");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(route) = Route::of(&p.topic) else {
                    continue;
                };
                if !srv.allow(route.sender()) {
                    continue;
                }
                if tx.try_send(p).is_err() {
                    srv.count_refusal("overloaded");
                    srv.log("work queue full: message dropped");
                }
            }
            Ok(_) => {}
            Err(e) => {
                srv.log(&format!(
                    "broker connection: {e}; retrying in {} ms",
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

/// Connects once with `device_id` as client id so the broker drops the device's connection.
pub async fn cut_off(srv: Arc<Server>, tls: Arc<rustls::ClientConfig>, device_id: String) {
    let (client, mut eventloop) = AsyncClient::new(options(&srv, &device_id, tls, true), 4);
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err::<(), ConnectionError>(e),
            }
        }
    })
    .await;
    match result {
        Ok(Ok(())) => {
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
            srv.log(&format!("device {device_id}: connection cut off"));
        }
        Ok(Err(e)) => srv.log(&format!("device {device_id}: cannot cut off: {e}")),
        Err(_) => srv.log(&format!("device {device_id}: cut-off timed out")),
    }
}
