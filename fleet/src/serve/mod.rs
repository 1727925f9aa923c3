//! `vouch-fleet serve`: the fleet server. It enrolls devices, challenges them, appraises their
//! answers, keeps the registry and revokes untrusted devices, talking to agents through the
//! MQTT broker over mutual TLS.
//!
//! - [`mqtt`]: the broker connection (persistent session, QoS 1, reconnect with backoff), the
//!   bounded work queue and the worker tasks that run handlers off the event loop.
//! - [`enroll`], [`attest`]: the message handlers (synchronous; run on blocking threads).
//! - [`verifier`]: the appraisal of a report, with a seam for further checks (policies).
//! - [`trust`]: EK certificate chains against the trust-roots directory.
//! - [`evidence`]: PCR selections, PCR values JSON, bounded gunzip of event logs.
//! - [`limits`], [`schedule`], [`revoke`]: rate limits, challenge schedule, revocation.
//! - [`liveness`]: the one rule whether a device is stale.
//! - [`ondemand`], [`release`]: on-demand attestation requests and escrow release approval, the
//!   library functions the command line and the HTTP API ([`crate::http`]) share.
//!
//! On-demand attestation (`vouch-fleet attest ID`) goes through the registry: the command
//! queues a row in `attest_requests`, the server polls the table every second, challenges the
//! device and the command waits for the verdict to appear. No extra broker identity is needed
//! and a request made while the server is down is served when it starts.

pub mod attest;
pub mod enroll;
pub mod escrow;
pub mod evidence;
pub mod ima;
pub mod limits;
pub mod liveness;
pub mod mqtt;
pub mod ondemand;
pub mod policies;
pub mod release;
pub mod releases;
pub mod revoke;
pub mod schedule;
pub mod trust;
pub mod verifier;

use crate::config::FleetConfig;
use crate::pki::ca::CaError;
use crate::pki::device::check_device_id;
use crate::pki::{load_ca, FleetCa};
use crate::registry::{now_ms, AuditKind, Registry, RegistryError};
use enroll::PendingEnrollments;
use limits::{LogLimiter, RateLimits, Sender};
use schedule::Schedule;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use verifier::Verifier;
use vouch_attest::errors::chain;

/// The server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The registry could not be opened.
    #[error(transparent)]
    Registry(RegistryError),
    /// The CA could not be loaded.
    #[error("cannot load the fleet CA")]
    Ca(#[source] CaError),
    /// The CA certificate path has no parent directory.
    #[error("the CA certificate path {0} has no directory")]
    CaDir(std::path::PathBuf),
    /// The TLS identity could not be loaded.
    #[error(transparent)]
    Tls(mqtt::TlsError),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The HTTP API, its EAR key or the webhooks could not start.
    #[error(transparent)]
    Http(crate::http::HttpError),
}

/// A message to publish (QoS 1, not retained).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Which handler an incoming topic goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `enroll/<rid>/request`.
    Enroll(&'a str),
    /// `devices/<id>/attestation`.
    Attestation(&'a str),
    /// `devices/<id>/boot`.
    Boot(&'a str),
    /// `devices/<id>/escrow`.
    EscrowDeposit(&'a str),
    /// `devices/<id>/recovery`.
    Recovery(&'a str),
}

impl<'a> Route<'a> {
    /// Routes a topic; `None` for anything else (including ids outside the safe alphabet and
    /// the reserved `vouch-fleet` / `vouch-claim` names).
    pub fn of(topic: &'a str) -> Option<Route<'a>> {
        let mut parts = topic.split('/');
        let (a, b, c, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
        if rest.is_some() || check_device_id(b).is_err() {
            return None;
        }
        match (a, c) {
            ("enroll", "request") => Some(Route::Enroll(b)),
            ("devices", "attestation") => Some(Route::Attestation(b)),
            ("devices", "boot") => Some(Route::Boot(b)),
            ("devices", "escrow") => Some(Route::EscrowDeposit(b)),
            ("devices", "recovery") => Some(Route::Recovery(b)),
            _ => None,
        }
    }

    /// The device that sent it (as the broker's ACL guarantees), `None` for enrollment.
    pub fn device(self) -> Option<&'a str> {
        match self {
            Route::Enroll(_) => None,
            Route::Attestation(id)
            | Route::Boot(id)
            | Route::EscrowDeposit(id)
            | Route::Recovery(id) => Some(id),
        }
    }

    /// The rate-limit bucket: the device, or the enrolling connection (its request id is its
    /// client id, which the broker's ACL binds to the topic).
    pub fn sender(self) -> Sender<'a> {
        match self {
            Route::Enroll(rid) => Sender::Enroll(rid),
            Route::Attestation(id)
            | Route::Boot(id)
            | Route::EscrowDeposit(id)
            | Route::Recovery(id) => Sender::Device(id),
        }
    }
}

/// The server's shared state. Handlers take `&Server` on blocking threads.
pub struct Server {
    /// The configuration.
    pub cfg: FleetConfig,
    /// The appraisal.
    pub verifier: Verifier,
    registry: Mutex<Registry>,
    ca: Mutex<FleetCa>,
    pending: Mutex<PendingEnrollments>,
    limits: Mutex<RateLimits>,
    logger: Mutex<LogLimiter>,
    refusals: Mutex<HashMap<String, u64>>,
    schedule: Mutex<Schedule>,
    policies: std::sync::RwLock<policies::PolicyStore>,
    /// Metrics, stale detection and events (the HTTP side, [`crate::http::observe`]).
    pub observer: crate::http::observe::Observer,
    /// The IMA runtime policy, when `[ima] runtime_policy` is set.
    pub ima: Option<ima::ImaSetup>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("cfg", &self.cfg.source)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked cannot leave these structures half-updated in a way that matters
    // more than stopping the server would: keep going with the inner value.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Server {
    /// Opens the registry and the CA named by `cfg`.
    pub fn new(cfg: FleetConfig, verifier: Verifier) -> Result<Server, ServeError> {
        let registry = Registry::for_config(&cfg).map_err(ServeError::Registry)?;
        // The location: a file, or a PostgreSQL URL without its password.
        let registry_line = format!(
            "registry: {} ({:?})",
            registry.location(),
            registry.dialect()
        );
        let ca = load_fleet_ca(&cfg)?;
        let cfg_ima = cfg.ima_runtime_policy.as_deref().map(ima::ImaSetup::load);
        Ok(Server {
            cfg,
            verifier,
            registry: Mutex::new(registry),
            ca: Mutex::new(ca),
            pending: Mutex::new(PendingEnrollments::default()),
            limits: Mutex::new(RateLimits::default()),
            logger: Mutex::new(LogLimiter::default()),
            refusals: Mutex::new(HashMap::new()),
            schedule: Mutex::new(Schedule::default()),
            policies: std::sync::RwLock::new(policies::PolicyStore::default()),
            observer: crate::http::observe::Observer::default(),
            ima: cfg_ima,
        }
        .with_registry_logged(&registry_line)
        .with_policies_loaded())
    }

    fn with_registry_logged(self, line: &str) -> Server {
        self.log(line);
        self
    }

    fn with_policies_loaded(self) -> Server {
        self.reload_policies();
        self
    }

    /// (Re)loads the policies directory (with the releases they reference); logs what loaded and what did not.
    pub fn reload_policies(&self) {
        let store = policies::PolicyStore::load(&self.cfg.policies_dir, &self.cfg.releases_dir);
        {
            let (ok, bad) = store.summary();
            self.log(&format!("policies loaded: [{}]", ok.join(", ")));
            for (name, why) in bad {
                self.log(&format!("policy {name} is unusable: {why}"));
            }
        }
        *self
            .policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = store;
    }

    /// Runs `f` with the loaded policies.
    pub fn with_policies<T>(&self, f: impl FnOnce(&policies::PolicyStore) -> T) -> T {
        f(&self
            .policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Runs `f` with the registry locked.
    pub fn with_registry<T>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        f(&mut lock(&self.registry))
    }

    /// Runs `f` with the CA locked.
    pub fn with_ca<T>(&self, f: impl FnOnce(&FleetCa) -> T) -> T {
        f(&lock(&self.ca))
    }

    pub(crate) fn pending(&self) -> MutexGuard<'_, PendingEnrollments> {
        lock(&self.pending)
    }

    /// Prints a log line (rate-limited).
    pub fn log(&self, line: &str) {
        let lines = lock(&self.logger).admit(line, Instant::now());
        for l in lines {
            tracing::info!(target: "vouch_fleet::serve", "{l}");
        }
    }

    /// Appends to the audit log; a failure is logged (the action itself already happened).
    pub fn audit(&self, kind: AuditKind, device_id: Option<&str>, detail: &str, now_ms: i64) {
        if let Err(e) = self.with_registry(|r| r.audit(kind, device_id, detail, now_ms)) {
            self.log(&format!("cannot write the audit log: {}", chain(&e)));
        }
    }

    /// Drops a message that no handler takes (its sender is not active, it does not decode,
    /// its handler failed): counted under `reason`, logged (rate-limited) and audited. It was
    /// acknowledged on arrival, so it is never delivered again.
    pub fn refuse_message(
        &self,
        device_id: Option<&str>,
        reason: &str,
        topic: &str,
        why: &str,
        now_ms: i64,
    ) {
        self.count_refusal(reason);
        let line = format!("message on {topic} refused: {why}");
        self.log(&line);
        self.audit(AuditKind::MessageRefused, device_id, &line, now_ms);
    }

    /// Counts a refused answer by reason name (the text before the first `:`).
    pub fn count_refusal(&self, reason: &str) {
        let key = reason.split(':').next().unwrap_or(reason).to_string();
        let mut r = lock(&self.refusals);
        if r.len() < 64 || r.contains_key(&key) {
            *r.entry(key).or_default() += 1;
        }
    }

    /// Refused answers so far, by reason.
    pub fn refusals(&self) -> HashMap<String, u64> {
        lock(&self.refusals).clone()
    }

    /// Rate limit check for an incoming message.
    pub fn allow(&self, sender: Sender<'_>) -> bool {
        let ok = lock(&self.limits).allow(sender, Instant::now());
        if !ok {
            self.log(&format!("rate limit: dropped a message from {sender:?}"));
        }
        ok
    }

    /// Handles one incoming message; returns what to publish.
    pub fn handle(&self, topic: &str, payload: &[u8]) -> Vec<Outgoing> {
        self.handle_at(topic, payload, now_ms())
    }

    /// [`Server::handle`] at `now` (ms since the epoch). A message from a device that is not
    /// active (revoked, deleted, unknown) is refused before any handler sees it: until the
    /// broker has closed its connection, nothing it sends has an effect.
    pub fn handle_at(&self, topic: &str, payload: &[u8], now: i64) -> Vec<Outgoing> {
        let route = Route::of(topic);
        if let Some(id) = route.and_then(Route::device) {
            if let Err(why) = self.active_sender(id) {
                self.refuse_message(Some(id), "device_not_active", topic, &why, now);
                return Vec::new();
            }
        }
        match route {
            Some(Route::Enroll(rid)) => enroll::handle(self, rid, payload, now),
            Some(Route::Attestation(id)) => attest::handle_report(self, id, payload, now),
            Some(Route::Boot(id)) => {
                let out = attest::handle_boot(self, id, payload, now);
                self.postpone(id, now);
                out
            }
            Some(Route::EscrowDeposit(id)) => {
                escrow::handle_deposit(self, id, payload, now);
                Vec::new()
            }
            Some(Route::Recovery(id)) => {
                escrow::handle_result(self, id, payload, now);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// `Ok` when `id` is an active device (enrolled, trusted or untrusted); else why not.
    fn active_sender(&self, id: &str) -> Result<(), String> {
        match self.with_registry(|r| r.device(id)) {
            Ok(Some(d)) if d.status.is_active() => Ok(()),
            Ok(Some(d)) => Err(format!("device {id} is {}", d.status.as_str())),
            Ok(None) => Err(format!("device {id} is not enrolled")),
            Err(e) => Err(format!("device {id}: registry: {}", chain(&e))),
        }
    }

    /// Logs what the broker answered to a disconnect request (only failures).
    pub fn broker_control_response(&self, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Responses {
            responses: Vec<Response>,
        }
        #[derive(serde::Deserialize)]
        struct Response {
            command: String,
            error: Option<String>,
        }
        match serde_json::from_slice::<Responses>(payload) {
            Ok(r) => {
                for r in r.responses.into_iter().filter(|r| r.error.is_some()) {
                    self.log(&format!(
                        "broker refused {}: {}",
                        r.command,
                        r.error.unwrap_or_default()
                    ));
                }
            }
            Err(e) => self.log(&format!(
                "unreadable broker control response: {}",
                chain(&e)
            )),
        }
    }

    fn postpone(&self, id: &str, now: i64) {
        let interval = i64::try_from(self.cfg.challenge_interval.as_millis()).unwrap_or(i64::MAX);
        lock(&self.schedule).postpone(id, now.saturating_add(interval));
    }

    /// One scheduler round: scheduled and requested challenges, and housekeeping.
    pub fn tick(&self) -> Vec<Outgoing> {
        let now = now_ms();
        lock(&self.pending).purge(now);
        let listed = self.with_registry(|r| {
            let _ = r.purge_nonces(now)?;
            let active: Vec<String> = r
                .devices()?
                .into_iter()
                .filter(|d| d.status.is_active())
                .map(|d| d.id)
                .collect();
            let requested = r.take_attest_requests(now)?;
            let disconnect = r.take_disconnect_requests(now)?;
            Ok((active, requested, disconnect))
        });
        let (active, requested, disconnect) = match listed {
            Ok(v) => v,
            Err(e) => {
                self.log(&format!("scheduler: {}", chain(&e)));
                return Vec::new();
            }
        };
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut due = lock(&self.schedule).due(
            &active,
            now,
            ms(self.cfg.challenge_interval),
            ms(self.cfg.challenge_jitter),
            &mut rand::thread_rng(),
        );
        for r in requested {
            if !due.contains(&r.device_id) {
                self.postpone(
                    &r.device_id,
                    now.saturating_add(ms(self.cfg.challenge_interval)),
                );
                due.push(r.device_id);
            }
        }
        let mut out: Vec<Outgoing> = disconnect
            .into_iter()
            .map(|r| self.disconnect(&r.device_id, now))
            .collect();
        out.extend(escrow::send_pending(self, now));
        out.extend(self.observer.round(self, now));
        for id in due {
            match attest::challenge(self, &id, now) {
                Ok(Some(o)) => out.push(o),
                Ok(None) => self.log(&format!("device {id}: not active, not challenged")),
                Err(e) => self.log(&format!("device {id}: cannot challenge: {}", chain(&e))),
            }
        }
        out
    }

    /// The message that has the broker close `device_id`'s connections (see
    /// [`crate::pki::broker::kick_command`]); audited.
    fn disconnect(&self, device_id: &str, now: i64) -> Outgoing {
        self.log(&format!(
            "device {device_id}: asking the broker to close its connection"
        ));
        self.audit(
            AuditKind::Disconnected,
            Some(device_id),
            "the broker was asked to close the device's connection (revoked)",
            now,
        );
        Outgoing {
            topic: crate::pki::broker::DYNSEC_CONTROL_TOPIC.to_string(),
            payload: crate::pki::broker::kick_command(device_id),
        }
    }

    /// Revokes a device (verdict with `revoke_on_untrusted`); the next scheduler round has the
    /// broker close its connection (the revocation queued that).
    pub fn revoke(
        &self,
        device_id: &str,
        why: &str,
        now_ms: i64,
    ) -> Result<(), revoke::RevokeError> {
        let mut reg = lock(&self.registry);
        let ca = lock(&self.ca);
        revoke::revoke_device(
            &mut reg,
            &ca,
            self.cfg.broker_reload_pid_file.as_deref(),
            device_id,
            why,
            false,
            now_ms,
        )?;
        self.log(&format!("device {device_id} revoked ({why})"));
        Ok(())
    }

    /// Revokes the certificate a re-enrolled device no longer uses.
    pub(crate) fn revoke_replaced_certificate(&self, device_id: &str, serial: &str, now_ms: i64) {
        let result = serial
            .parse::<crate::pki::Serial>()
            .map_err(|e| chain(&e))
            .and_then(|s| {
                self.with_ca(|ca| crate::pki::revoke(ca, &s))
                    .map_err(|e| chain(&e))
            })
            .and_then(|_| match &self.cfg.broker_reload_pid_file {
                Some(p) => crate::pki::broker::reload_broker(p).map_err(|e| chain(&e)),
                None => Ok(()),
            });
        match result {
            Ok(()) => self.audit(
                AuditKind::Revoked,
                Some(device_id),
                &format!("certificate {serial} revoked (replaced by re-enrollment)"),
                now_ms,
            ),
            Err(e) => self.log(&format!(
                "device {device_id}: cannot revoke replaced certificate {serial}: {e}"
            )),
        }
    }
}

/// Loads the CA of the fleet directory that holds `cfg.ca_cert`.
pub fn load_fleet_ca(cfg: &FleetConfig) -> Result<FleetCa, ServeError> {
    let dir = cfg
        .ca_cert
        .parent()
        .ok_or_else(|| ServeError::CaDir(cfg.ca_cert.clone()))?;
    load_ca(dir).map_err(ServeError::Ca)
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(cfg: FleetConfig) -> Result<(), ServeError> {
    let server = Server::new(cfg, Verifier::new())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let server = std::sync::Arc::new(server);
    rt.block_on(async move {
        crate::http::start(&server)
            .await
            .map_err(ServeError::Http)?;
        mqtt::serve(server).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("enroll/abc/request"), Some(Route::Enroll("abc")));
        assert_eq!(
            Route::of("devices/d1/attestation"),
            Some(Route::Attestation("d1"))
        );
        assert_eq!(Route::of("devices/d1/boot"), Some(Route::Boot("d1")));
        assert_eq!(
            Route::of("devices/d1/escrow"),
            Some(Route::EscrowDeposit("d1"))
        );
        assert_eq!(
            Route::of("devices/d1/recovery"),
            Some(Route::Recovery("d1"))
        );
        for t in [
            "devices/d1/cmd/attest",
            "devices/d1/cmd/escrow",
            "devices/vouch-claim/boot",
            "devices/+/boot",
            "enroll/x/response",
            "devices/d1/boot/x",
            "fleet/alerts",
        ] {
            assert_eq!(Route::of(t), None, "{t}");
        }
    }
}
