//! The enrolled agent's MQTT session: mutual TLS with the TPM-resident key, a persistent session
//! (QoS 1 commands queued while offline are delivered), challenge answers through the outbox,
//! escrow deposits and released recovery passphrases ([`super::escrow`]), and reconnects with
//! exponential backoff.
//!
//! # Bounded work against a hostile fleet or broker
//! Two tasks. The *driver* (in [`run`]) does nothing but poll the MQTT event loop and react
//! without waiting: it never awaits the client's request queue (every publish and subscribe is
//! a `try_`), so keepalives and acknowledgements keep flowing whatever arrives. Each incoming
//! command is checked there and acknowledged by the client whatever its fate; one the agent
//! cannot take (over [`protocol::MAX_MESSAGE_BYTES`], undecodable, retained, on an unknown
//! `cmd/` sub-topic, a nonce the fleet never issues) is dropped with a rate-limited log line and
//! counted. A valid challenge replaces any pending one ([`gate`]); an escrow release goes into a
//! small bounded queue. The *worker* task makes the TPM calls: at most one quote per
//! [`QUOTE_INTERVAL`], always for the newest challenge, so a storm of challenges costs one quote
//! per interval. Reports go to the bounded outbox ([`super::outbox`]) and are published in a
//! window of [`WINDOW`] unacknowledged entries ([`delivery`]), refilled on each PUBACK, so a
//! backlog of any size drains after a restart or a long outage.

mod delivery;
mod gate;

use super::answer::{self, answer};
use super::enroll::Enrolled;
use super::escrow;
use super::mqtt::{options, publish_packet_size, tpm_signer, MAX_OUTGOING_PACKET};
use super::outbox::{Entry, Limits, Outbox, OutboxError};
use super::ratelimit::LogLimiter;
use super::tls;
use crate::config::AgentConfig;
use crate::tpm::worker::TpmClient;
use delivery::{Delivery, SendError, Skipped};
use gate::{Gate, Next};
use rumqttc::{AsyncClient, Event, Outgoing, Packet, Publish, QoS};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use vouch_attest::boot::BootId;
use vouch_attest::protocol::{
    self, AttestChallenge, BootAnnouncement, EscrowRelease, MAX_MESSAGE_BYTES,
};

/// Most outbox entries handed to the client and not yet acknowledged by the broker.
pub const WINDOW: usize = 32;

/// Least time between two quotes.
pub const QUOTE_INTERVAL: Duration = Duration::from_secs(1);

/// Escrow releases waiting for the worker; more are dropped (the fleet sends one per operator
/// action).
const ESCROW_QUEUE: usize = 4;

/// The client's request queue: the window, the subscription and room to spare, so a `try_`
/// request fails only when something is badly wrong (and is then retried).
const REQUEST_CAPACITY: usize = WINDOW + 16;

/// Longest part of a remote-chosen topic put in a log line.
const LOG_TOPIC: usize = 120;

/// Errors that end the session (everything else is retried or dropped).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The device TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The worker task ended (it runs for the whole session; a bug).
    #[error("the session's worker task ended")]
    WorkerGone,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// State shared by the driver and the worker; no lock is held across an await.
struct Shared {
    delivery: Mutex<Delivery>,
    gate: Mutex<Gate<AttestChallenge>>,
    /// The gate has a challenge.
    wake: Notify,
    limiter: Mutex<LogLimiter>,
    /// Outbox entries dropped (outbox full, or unsendable), for log lines.
    dropped: Mutex<u64>,
}

impl Shared {
    fn allow(&self, key: &'static str) -> Option<u64> {
        lock(&self.limiter).allow(key)
    }

    fn count_dropped(&self, n: usize) -> u64 {
        let mut d = lock(&self.dropped);
        *d += n as u64;
        *d
    }

    /// Hands unsent outbox entries to the client, as far as the window allows.
    fn fill(&self, client: &AsyncClient) {
        let skipped = lock(&self.delivery).fill(|e| try_publish(client, e));
        for s in skipped {
            match s {
                Skipped::Unreadable(e) => {
                    if let Some(n) = self.allow("outbox-read") {
                        tracing::warn!(error = %crate::exit::Chain(&e), suppressed = n, "skipping an outbox entry");
                    }
                }
                Skipped::Dropped { seq, reason } => {
                    let total = self.count_dropped(1);
                    if let Some(n) = self.allow("outbox-unsendable") {
                        tracing::warn!(entry = seq, %reason, dropped_total = total, suppressed = n, "dropping an outbox entry that can never be sent");
                    }
                }
            }
        }
    }

    /// Queues a message durably (off the async threads: it syncs to disk) and publishes what
    /// the window allows. A message that cannot be stored is logged and lost.
    async fn send(self: &Arc<Self>, client: &AsyncClient, topic: String, payload: Vec<u8>) {
        let shared = Arc::clone(self);
        let pushed =
            tokio::task::spawn_blocking(move || lock(&shared.delivery).push(&topic, &payload))
                .await;
        match pushed {
            Ok(Ok(dropped)) if !dropped.is_empty() => {
                let total = self.count_dropped(dropped.len());
                if let Some(n) = self.allow("outbox-full") {
                    tracing::warn!(
                        dropped = dropped.len(),
                        dropped_total = total,
                        suppressed = n,
                        "outbox full: dropped its oldest entries"
                    );
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if let Some(n) = self.allow("outbox-write") {
                    tracing::warn!(error = %crate::exit::Chain(&e), suppressed = n, "cannot queue a message");
                }
            }
            Err(e) => tracing::warn!(error = %crate::exit::Chain(&e), "the outbox writer failed"),
        }
        self.fill(client);
    }
}

/// Hands one entry to the client without waiting.
fn try_publish(client: &AsyncClient, e: &Entry) -> Result<(), SendError> {
    if e.payload.len() > MAX_MESSAGE_BYTES
        || publish_packet_size(&e.topic, e.payload.len()) > MAX_OUTGOING_PACKET
    {
        return Err(SendError::Unsendable(format!(
            "{} bytes exceed the {MAX_MESSAGE_BYTES}-byte message limit",
            e.payload.len()
        )));
    }
    if !rumqttc::valid_topic(&e.topic) || e.topic.is_empty() {
        return Err(SendError::Unsendable(format!(
            "invalid topic {:?}",
            clip(&e.topic)
        )));
    }
    client
        .try_publish(e.topic.clone(), QoS::AtLeastOnce, false, e.payload.clone())
        .map_err(|_| SendError::Busy)
}

/// At most [`LOG_TOPIC`] characters of a remote-chosen string.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(LOG_TOPIC) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// What the worker needs to know.
struct Work {
    eventlog: PathBuf,
    ima_log: PathBuf,
    state_dir: PathBuf,
    device_id: String,
    /// This boot's id, read once when the agent started ([`crate::boot`]).
    boot: BootId,
}

impl Work {
    fn topic(&self, sub: &str) -> String {
        format!("devices/{}/{sub}", self.device_id)
    }
}

/// How a challenge is named in the agent's log: the first 8 bytes of its single-use nonce, in
/// hex (enough to tell challenges apart; the nonce is public, not a secret).
fn challenge_id(nonce: &[u8]) -> String {
    hex::encode(&nonce[..nonce.len().min(8)])
}

/// Attempts at reading the escrow records to deposit before giving up until the next start.
const DEPOSIT_ATTEMPTS: u32 = 3;

/// Reads the escrow records to deposit with `read` (a blocking task), up to [`DEPOSIT_ATTEMPTS`]
/// times, waiting `pause` times the attempt number in between: a failed task (it panicked or
/// the runtime is shutting down) is logged and retried, never taken for "no records".
async fn read_deposits<F>(read: F, pause: Duration) -> Option<Vec<Vec<u8>>>
where
    F: Fn() -> tokio::task::JoinHandle<Vec<Vec<u8>>>,
{
    for attempt in 1..=DEPOSIT_ATTEMPTS {
        match read().await {
            Ok(d) => return Some(d),
            Err(e) => {
                tracing::warn!(error = %crate::exit::Chain(&e), attempt, "reading the escrow records to deposit failed");
                tokio::time::sleep(pause * attempt).await;
            }
        }
    }
    None
}

/// Publishes the boot announcement and the escrow deposits (through the outbox).
async fn announce(w: &Work, client: &AsyncClient, shared: &Arc<Shared>) {
    let boot = protocol::encode(&BootAnnouncement { boot_id: w.boot });
    shared.send(client, w.topic("boot"), boot).await;
    let (state, id) = (w.state_dir.clone(), w.device_id.clone());
    let read = move || {
        let (state, id) = (state.clone(), id.clone());
        tokio::task::spawn_blocking(move || escrow::deposits(&state, &id))
    };
    let Some(deposits) = read_deposits(read, Duration::from_secs(1)).await else {
        tracing::error!(
            attempts = DEPOSIT_ATTEMPTS,
            "escrow records were not deposited; they will be at the agent's next start"
        );
        return;
    };
    for d in deposits {
        shared.send(client, w.topic("escrow"), d).await;
    }
}

/// The worker: announces once the first subscription is in place, then answers challenges (one
/// quote per interval, the newest challenge) and escrow releases.
async fn work(
    w: Work,
    tpm: TpmClient,
    client: AsyncClient,
    shared: Arc<Shared>,
    connected: Arc<Notify>,
    mut releases: mpsc::Receiver<EscrowRelease>,
) {
    // Announced once the command subscription is in place: the fleet answers a boot
    // announcement with a challenge at once, and a new session has no subscription to queue
    // it for until the broker has processed SUBSCRIBE (it handles one client's packets in order).
    connected.notified().await;
    announce(&w, &client, &shared).await;
    loop {
        tokio::select! {
            _ = shared.wake.notified() => quote_pending(&w, &tpm, &client, &shared).await,
            r = releases.recv() => match r {
                Some(release) => {
                    let result =
                        escrow::recover(&tpm, &w.state_dir, &w.device_id, &w.boot, release).await;
                    shared.send(&client, w.topic("recovery"), protocol::encode(&result)).await;
                }
                None => return,
            },
        }
    }
}

/// Answers the pending challenge when the interval allows, until none is pending.
async fn quote_pending(w: &Work, tpm: &TpmClient, client: &AsyncClient, shared: &Arc<Shared>) {
    loop {
        let next = lock(&shared.gate).next(Instant::now());
        let challenge = match next {
            Next::Idle => return,
            Next::Wait(d) => {
                tokio::time::sleep(d).await;
                continue;
            }
            Next::Answer(c) => c,
        };
        match answer(tpm, &w.eventlog, &w.ima_log, &challenge).await {
            Ok(report) => {
                let c = lock(&shared.gate).counts();
                tracing::info!(
                    device = %w.device_id,
                    challenge = %challenge_id(&challenge.nonce),
                    pcrs = %challenge.pcrs,
                    quotes = c.answered,
                    challenges = c.received,
                    superseded = c.superseded,
                    "challenge answered"
                );
                shared
                    .send(client, w.topic("attestation"), protocol::encode(&report))
                    .await;
            }
            Err(e) => {
                if let Some(n) = shared.allow("answer") {
                    tracing::warn!(error = %crate::exit::Chain(&e), suppressed = n, "cannot answer a challenge");
                }
            }
        }
    }
}

/// Counts of incoming messages the driver dropped.
#[derive(Debug, Default)]
struct Refused {
    /// Messages refused (too large, undecodable, retained, invalid, queue full).
    refused: u64,
    /// Messages on a topic the agent does not know.
    unknown: u64,
}

/// The driver's handling of incoming publishes.
struct Inbox {
    cmd_prefix: String,
    shared: Arc<Shared>,
    releases: mpsc::Sender<EscrowRelease>,
    counts: Refused,
}

impl Inbox {
    fn refuse(&mut self, key: &'static str, topic: &str, size: usize, why: &dyn std::fmt::Display) {
        self.counts.refused += 1;
        if let Some(n) = self.shared.allow(key) {
            tracing::warn!(topic = clip(topic), size, error = %why, refused_total = self.counts.refused, suppressed = n, "dropping a command");
        }
    }

    /// Takes one incoming message; it is acknowledged whatever happens here.
    fn take(&mut self, p: Publish) {
        let size = p.payload.len();
        let sub = p.topic.strip_prefix(self.cmd_prefix.as_str());
        if p.retain && sub.is_some() {
            // Retained messages reach every new subscription: the fleet never retains a
            // command, so such a one is stale or hostile and would come back every session.
            return self.refuse(
                "retained",
                &p.topic,
                size,
                &"a retained command (the fleet never retains)",
            );
        }
        match sub {
            Some("attest") => {
                let checked = protocol::decode::<AttestChallenge>("challenge", &p.payload)
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        answer::check(&c)
                            .map(|_| c)
                            .map_err(|e| crate::exit::chain(&e))
                    });
                match checked {
                    Ok(c) => {
                        tracing::debug!(pcrs = %c.pcrs, "challenge received");
                        lock(&self.shared.gate).offer(c);
                        self.shared.wake.notify_one();
                    }
                    Err(e) => self.refuse("bad-challenge", &p.topic, size, &e),
                }
            }
            Some("escrow") => {
                match protocol::decode::<EscrowRelease>("escrow release", &p.payload) {
                    Ok(release) => {
                        if self.releases.try_send(release).is_err() {
                            self.refuse(
                                "escrow-full",
                                &p.topic,
                                size,
                                &"too many escrow releases waiting",
                            );
                        }
                    }
                    Err(e) => self.refuse("bad-escrow", &p.topic, size, &e),
                }
            }
            _ => {
                self.counts.unknown += 1;
                if let Some(n) = self.shared.allow("unknown-topic") {
                    tracing::warn!(
                        topic = clip(&p.topic),
                        size,
                        unknown_total = self.counts.unknown,
                        suppressed = n,
                        "ignoring a message on an unknown topic"
                    );
                }
            }
        }
    }
}

/// Runs the session until a fatal error. Subscribes to its commands, then announces the boot.
pub async fn run(
    cfg: &AgentConfig,
    tpm: &TpmClient,
    me: &Enrolled,
    boot: BootId,
) -> Result<(), SessionError> {
    let tls = tls::device_config(
        &cfg.broker.ca_file,
        &me.certificate_pem,
        &me.certificate_path,
        tpm_signer(tpm),
    )?;
    let (outbox, dropped) = Outbox::open(&cfg.state_dir.join("outbox"), Limits::DEFAULT)?;
    if dropped > 0 {
        tracing::warn!(
            dropped,
            kept = outbox.len(),
            "outbox over its limit: dropped its oldest entries"
        );
    }
    if !outbox.is_empty() {
        tracing::info!(entries = outbox.len(), "outbox backlog to deliver");
    }
    // The device listener replaces the client id with the certificate's CN (the device id), so
    // the persistent session is the device's whatever is sent; the prefix is what the broker
    // requires of every client id.
    let client_id = format!("{}{}", protocol::CLIENT_ID_PREFIX, me.device_id);
    let (client, mut events) = AsyncClient::new(
        options(&cfg.broker, cfg.broker.port, &client_id, tls, false),
        REQUEST_CAPACITY,
    );
    // A report follows the PUBACK of its challenge within milliseconds: with Nagle's algorithm
    // it would wait for the broker's delayed ACK of that PUBACK (~40 ms on Linux).
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let cmd_topic = format!("devices/{}/cmd/#", me.device_id);

    let shared = Arc::new(Shared {
        delivery: Mutex::new(Delivery::new(outbox, WINDOW)),
        gate: Mutex::new(Gate::new(QUOTE_INTERVAL)),
        wake: Notify::new(),
        limiter: Mutex::new(LogLimiter::new(Duration::from_secs(30))),
        dropped: Mutex::new(0),
    });
    let (release_tx, release_rx) = mpsc::channel(ESCROW_QUEUE);
    let connected = Arc::new(Notify::new());
    // Aborted when the session is dropped (SIGHUP restarts it).
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(work(
        Work {
            eventlog: cfg.eventlog.clone(),
            ima_log: cfg.ima_log.clone(),
            state_dir: cfg.state_dir.clone(),
            device_id: me.device_id.clone(),
            boot,
        },
        tpm.clone(),
        client.clone(),
        Arc::clone(&shared),
        Arc::clone(&connected),
        release_rx,
    ));
    let mut inbox = Inbox {
        cmd_prefix: format!("devices/{}/cmd/", me.device_id),
        shared: Arc::clone(&shared),
        releases: release_tx,
        counts: Refused::default(),
    };

    // A backlog from before this start (a crash, a long outage): say when it is delivered.
    let mut draining = lock(&shared.delivery).backlog() > WINDOW;
    let mut subscribe = false;
    let mut announced = false;
    let mut backoff = Duration::from_secs(1);
    let max_backoff = Duration::from_secs(cfg.broker.max_backoff_secs);
    loop {
        if tasks.try_join_next().is_some() {
            return Err(SessionError::WorkerGone);
        }
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_secs(1);
                tracing::info!(device = %me.device_id, session_present = ack.session_present, "connected to the broker");
                if !ack.session_present {
                    // The client dropped what it had not delivered: send it all again.
                    lock(&shared.delivery).session_lost();
                }
                subscribe = true;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => inbox.take(p),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => lock(&shared.delivery).published(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let mut delivery = lock(&shared.delivery);
                if let Err(e) = delivery.acked(ack.pkid) {
                    if let Some(n) = shared.allow("outbox-remove") {
                        tracing::warn!(error = %crate::exit::Chain(&e), suppressed = n, "cannot remove a delivered entry");
                    }
                }
                if draining && delivery.backlog() == 0 {
                    draining = false;
                    tracing::info!("outbox backlog delivered");
                }
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(n) = shared.allow("connection") {
                    tracing::warn!(error = %crate::exit::Chain(&e), suppressed = n, retry_in = ?backoff, "broker connection lost");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
                continue;
            }
        }
        if subscribe {
            // Before anything else goes into the request queue after a connect.
            if client.try_subscribe(&cmd_topic, QoS::AtLeastOnce).is_ok() {
                subscribe = false;
                if !announced {
                    announced = true;
                    connected.notify_one();
                }
            } else {
                continue;
            }
        }
        shared.fill(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Issue 11, defect 5: a reading task that failed was taken for "no records"
    /// (`.await.unwrap_or_default()`) and every deposit was dropped without a trace.
    #[tokio::test]
    async fn a_failed_read_of_the_deposits_is_retried_not_taken_for_none() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        let read = move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            tokio::task::spawn_blocking(move || {
                if n == 0 {
                    panic!("the first read fails");
                }
                vec![b"record".to_vec()]
            })
        };
        let got = read_deposits(read, Duration::from_millis(1)).await;
        assert_eq!(got, Some(vec![b"record".to_vec()]));
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Failing every time: None (logged as not deposited), after every attempt.
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        let always = move || {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::task::spawn_blocking(|| -> Vec<Vec<u8>> { panic!("always fails") })
        };
        assert_eq!(read_deposits(always, Duration::from_millis(1)).await, None);
        assert_eq!(calls.load(Ordering::SeqCst), DEPOSIT_ATTEMPTS);
    }
}
