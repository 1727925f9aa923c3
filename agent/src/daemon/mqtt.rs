//! Shared MQTT plumbing for the agent: connection options and async access to the TPM worker.

use crate::config::BrokerConfig;
use crate::tpm::worker::TpmClient;
use crate::tpm::{Tpm, TpmError};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;

/// Largest MQTT packet the agent sends or accepts (attestation reports carry a compressed log).
pub const MAX_PACKET: usize = 2 << 20;

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
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
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
        tpm.call(move |t| t.sign_tls(&d)).map_err(|e| e.to_string())
    })
}
