//! Webhooks: event notifications POSTed to the `[[webhooks]]` URLs of `fleet.toml` on verdict
//! changes, revocations and stale devices.
//!
//! Each body is one JSON event; the header `X-Vouch-Signature: sha256=<hex>` carries the
//! HMAC-SHA256 of the exact body bytes under the webhook's key (read at start from its
//! `secret_file`, kept in `Zeroizing`), and `X-Vouch-Event` the event name. A delivery that
//! fails (no connection, timeout, a non-2xx answer) is retried after 1 s, doubling up to 5 min,
//! [`ATTEMPTS`] attempts in all; the outcome is counted in `/metrics`. Events wait in a bounded
//! queue; when it is full, new events are dropped and counted.

use super::metrics::Delivery;
use crate::config::WebhookConfig;
use crate::registry::{rfc3339_ms, AuditEntry, StoredVerdict};
use crate::serve::Server;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vouch_attest::errors::chain;
use zeroize::Zeroizing;

/// Attempts per event and webhook.
pub const ATTEMPTS: u32 = 8;
/// First retry delay.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// Events waiting for delivery before new ones are dropped.
pub const QUEUE: usize = 1000;
/// Largest key file read.
const SECRET_LIMIT: u64 = 4096;

/// A webhook could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The key file could not be read.
    #[error("cannot read the webhook key {path}")]
    Secret {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file is empty (or only a newline) or larger than 4 KiB.
    #[error("the webhook key {0} must hold 1 to 4096 bytes")]
    SecretSize(PathBuf),
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `verdict_changed`, `revoked` or `stale`.
    pub event: &'static str,
    /// A unique id (for receivers to drop duplicates): `verdict-<id>`, `audit-<seq>`,
    /// `stale-<device>-<ms>`.
    pub id: String,
    /// The device.
    pub device_id: String,
    /// When it happened (RFC 3339 UTC).
    pub at: String,
    /// The same in ms since the epoch.
    pub at_ms: i64,
    /// `verdict_changed`: the new verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted: Option<bool>,
    /// `verdict_changed`: the previous verdict (`null`: the device's first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_trusted: Option<Option<bool>>,
    /// `verdict_changed`: the verdict's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_id: Option<i64>,
    /// Why: the verdict's reasons, the revocation's audit detail, the stale finding.
    pub reasons: Vec<String>,
}

impl Event {
    /// A verdict that differs from the device's previous one.
    pub fn verdict_changed(v: &StoredVerdict, before: Option<bool>) -> Event {
        Event {
            event: "verdict_changed",
            id: format!("verdict-{}", v.id),
            device_id: v.device_id.clone(),
            at: rfc3339_ms(v.stored_ms),
            at_ms: v.stored_ms,
            trusted: Some(v.trusted),
            previous_trusted: Some(before),
            verdict_id: Some(v.id),
            reasons: v.reasons.clone(),
        }
    }

    /// A revocation or deletion (an audit row).
    pub fn revoked(row: &AuditEntry) -> Event {
        Event {
            event: "revoked",
            id: format!("audit-{}", row.seq),
            device_id: row.device_id.clone().unwrap_or_default(),
            at: rfc3339_ms(row.at_ms),
            at_ms: row.at_ms,
            trusted: None,
            previous_trusted: None,
            verdict_id: None,
            reasons: vec![row.detail.clone()],
        }
    }

    /// A device found stale.
    pub fn stale(device_id: &str, why: &str, now_ms: i64) -> Event {
        Event {
            event: "stale",
            id: format!("stale-{device_id}-{now_ms}"),
            device_id: device_id.to_owned(),
            at: rfc3339_ms(now_ms),
            at_ms: now_ms,
            trusted: None,
            previous_trusted: None,
            verdict_id: None,
            reasons: vec![why.to_owned()],
        }
    }
}

/// A configured webhook with its key.
struct Hook {
    url: String,
    events: Vec<String>,
    key: Zeroizing<Vec<u8>>,
}

/// The `X-Vouch-Signature` value of `body` under `key`: `sha256=<hex HMAC-SHA256>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&k, body).as_ref())
    )
}

fn load(cfg: &WebhookConfig) -> Result<Hook, WebhookError> {
    use std::io::Read;
    let err = |source| WebhookError::Secret {
        path: cfg.secret_file.clone(),
        source,
    };
    let mut key = Zeroizing::new(Vec::new());
    std::fs::File::open(&cfg.secret_file)
        .map_err(err)?
        .take(SECRET_LIMIT + 1)
        .read_to_end(&mut key)
        .map_err(err)?;
    if key.last() == Some(&b'\n') {
        key.pop();
    }
    if key.is_empty() || key.len() as u64 > SECRET_LIMIT {
        return Err(WebhookError::SecretSize(cfg.secret_file.clone()));
    }
    Ok(Hook {
        url: cfg.url.clone(),
        events: cfg.events.clone(),
        key,
    })
}

/// Loads the webhooks' keys and starts the deliverer; events from [`super::observe`] then go
/// out. Nothing starts when no webhook is configured.
pub fn start(srv: &Arc<Server>) -> Result<(), WebhookError> {
    if srv.cfg.webhooks.is_empty() {
        return Ok(());
    }
    let hooks: Vec<Arc<Hook>> = srv
        .cfg
        .webhooks
        .iter()
        .map(|c| load(c).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vouch-fleet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(WebhookError::Client)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(QUEUE);
    srv.observer.send_events_to(tx);
    let srv = srv.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let body = Arc::new(serde_json::to_vec(&event).unwrap_or_default());
            for hook in hooks
                .iter()
                .filter(|h| h.events.iter().any(|e| e == event.event))
            {
                let (srv, client, hook, body) =
                    (srv.clone(), client.clone(), hook.clone(), body.clone());
                tokio::spawn(async move {
                    let d = deliver(&srv, &client, &hook, event.event, &body).await;
                    srv.observer.metrics.webhook(d);
                });
            }
        }
    });
    Ok(())
}

async fn deliver(
    srv: &Server,
    client: &reqwest::Client,
    hook: &Hook,
    event: &str,
    body: &[u8],
) -> Delivery {
    let sig = signature(&hook.key, body);
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-vouch-event", event)
            .header("x-vouch-signature", &sig)
            .body(body.to_vec())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => return Delivery::Ok,
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => chain(&e),
        };
        srv.log(&format!(
            "webhook {}: {event} attempt {attempt}/{ATTEMPTS} failed: {why}",
            hook.url
        ));
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RETRY);
        }
    }
    Delivery::Failed
}
