//! `vouch-agent run`: the long-running agent. Enrolls when it has no device certificate, then
//! keeps a mutual-TLS MQTT session with the broker and answers the fleet's challenges.

pub mod answer;
pub mod csr;
pub mod enroll;
pub mod escrow;
pub mod mqtt;
pub mod notify;
pub mod outbox;
pub mod ratelimit;
pub mod session;
pub mod tls;

use crate::config::AgentConfig;
use crate::tpm::esapi::EsapiTpm;
use crate::tpm::worker::TpmClient;
use crate::tpm::{Tcti, TpmError};
use std::time::Duration;

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configured TCTI is not valid.
    #[error("tcti {0:?}: {1}")]
    Tcti(String, crate::tpm::tcti::TctiParseError),
    /// The TPM could not be opened.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The session failed fatally.
    #[error(transparent)]
    Session(#[from] session::SessionError),
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Running as root without `--allow-root`.
    #[error(
        "refusing to run as root (the unit runs as user vouch); pass --allow-root to override"
    )]
    Root,
    /// This boot's id could not be read.
    #[error("cannot tell which boot this is")]
    BootId(#[from] crate::boot::BootError),
    /// The async runtime could not start.
    #[error("starting the async runtime failed")]
    Runtime(#[source] std::io::Error),
}

/// Runs the agent until a fatal error: enroll if needed (retrying with backoff), then serve.
/// SIGHUP re-reads the configuration file and restarts the broker session with it.
pub fn run(config_path: &std::path::Path) -> Result<(), DaemonError> {
    let mut cfg = AgentConfig::load(config_path)?;
    // Read once: every announcement and every escrow release check uses this value.
    let boot = crate::boot::current()?;
    tracing::info!(boot = %boot, "this boot");
    let tcti: Tcti = cfg
        .tcti
        .parse()
        .map_err(|e| DaemonError::Tcti(cfg.tcti.clone(), e))?;
    let state = cfg.state_dir.clone();
    let tpm = TpmClient::spawn(move || EsapiTpm::open(&tcti, &state))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let notifier = notify::Notifier::from_env();
    rt.block_on(async move {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(DaemonError::Runtime)?;
        if let Some(every) = notifier.watchdog_interval() {
            tokio::spawn(async move {
                let n = notify::Notifier::from_env();
                loop {
                    n.notify("WATCHDOG=1");
                    tokio::time::sleep(every).await;
                }
            });
        }
        notifier.notify("READY=1\nSTATUS=TPM open, connecting to the fleet");
        loop {
            let me = loop_enroll(&cfg, &tpm).await;
            notifier.notify(&format!("STATUS=enrolled as {}", me.device_id));
            tokio::select! {
                r = session::run(&cfg, &tpm, &me, boot) => return r.map_err(DaemonError::from),
                _ = hangup.recv() => {
                    notifier.notify("RELOADING=1");
                    match AgentConfig::load(config_path) {
                        Ok(new) if new.tcti == cfg.tcti && new.state_dir == cfg.state_dir => {
                            tracing::info!("configuration reloaded");
                            cfg = new;
                        }
                        Ok(mut new) => {
                            tracing::warn!(
                                "tcti and state_dir changes need a restart; other changes applied"
                            );
                            new.tcti = cfg.tcti.clone();
                            new.state_dir = cfg.state_dir.clone();
                            cfg = new;
                        }
                        Err(e) => tracing::warn!(error = %crate::exit::Chain(&e), "reload failed; keeping the old configuration"),
                    }
                    notifier.notify("READY=1");
                }
            }
        }
    })
}

async fn loop_enroll(cfg: &AgentConfig, tpm: &TpmClient) -> enroll::Enrolled {
    let mut backoff = Duration::from_secs(1);
    loop {
        if let Some(me) = enroll::load(&cfg.state_dir) {
            return me;
        }
        match enroll::enroll(cfg, tpm).await {
            Ok(me) => {
                tracing::info!(device = %me.device_id, "enrolled");
                return me;
            }
            Err(e) => {
                tracing::warn!(error = %crate::exit::Chain(&e), retry_in = ?backoff, "enrollment failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(cfg.broker.max_backoff_secs));
            }
        }
    }
}
