//! Shared MQTT plumbing for the agent: connection options and async access to the TPM worker.

use crate::config::BrokerConfig;
use crate::tpm::worker::TpmClient;
use crate::tpm::{Tpm, TpmError};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;
use vouch_attest::protocol;

/// Largest MQTT packet the agent reads: the largest the protocol allows (remaining length
/// 268,435,455 plus a 5-byte fixed header). Every message a broker can deliver is read, then
/// acknowledged and refused by the protocol's size check ([`protocol::MAX_MESSAGE_BYTES`]); a
/// smaller client limit would drop the connection before the PUBACK, and the broker would
/// redeliver the message on every reconnect, cutting the device off for good. The broker's own
/// `max_packet_size` keeps such messages from being sent in the first place.
pub const MAX_INCOMING_PACKET: usize = 268_435_455 + 5;

/// Largest MQTT packet the agent sends: the largest message the fleet accepts plus room for the
/// header and topic (the broker disconnects a client that sends more).
pub const MAX_OUTGOING_PACKET: usize = protocol::MAX_MESSAGE_BYTES + 4096;

/// Size of a QoS 1 PUBLISH packet carrying `payload` on `topic` (MQTT 3.1.1: fixed header of at
/// most 5 bytes, topic with its 2-byte length, 2-byte packet id).
pub fn publish_packet_size(topic: &str, payload: usize) -> usize {
    5 + 2 + topic.len() + 2 + payload
}

/// Options for a TLS connection to the broker's listener on `port` with `client_id` (which must
/// start with [`vouch_attest::protocol::CLIENT_ID_PREFIX`]: the broker refuses any other).
pub fn options(
    broker: &BrokerConfig,
    port: u16,
    client_id: &str,
    tls: Arc<rustls::ClientConfig>,
    clean_session: bool,
) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, &broker.host, port);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    o.set_keep_alive(Duration::from_secs(broker.keep_alive_secs));
    o.set_clean_session(clean_session);
    o.set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
    o
}

/// Runs a TPM job without blocking the async runtime's worker threads.
pub async fn tpm_call<R, F>(tpm: &TpmClient, f: F) -> Result<R, TpmError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn Tpm) -> Result<R, TpmError> + Send + 'static,
{
    let tpm = tpm.clone();
    tokio::task::spawn_blocking(move || tpm.call(f))
        .await
        .map_err(|_| TpmError::WorkerGone)?
}
/// A signer for rustls / rcgen that signs SHA-256 digests with the TPM's TLS key.
pub fn tpm_signer(tpm: &TpmClient) -> Arc<super::tls::DigestSigner> {
    let tpm = tpm.clone();
    Arc::new(move |digest: &[u8]| {
        let d = digest.to_vec();
        tpm.call(move |t| t.sign_tls(&d))
            .map_err(|e| crate::exit::chain(&e))
    })
}
