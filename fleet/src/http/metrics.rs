//! The server's counters and gauges, and `/metrics` in the Prometheus text exposition format
//! (version 0.0.4; checked by `promtool check metrics` in `fleet/tests/http_api.rs`).
//!
//! Counters count since the server started: attestations by verdict and by failing check (fed
//! from the verdicts the server stores, see [`super::observe`]), enrollments and revocations
//! (from the audit log, so a `vouch-fleet revoke` from the command line counts too), webhook
//! deliveries. Appraisal latency is a histogram of the appraisal itself. Devices by status and
//! stale devices are read from the registry at scrape time; broker connection state and
//! work-queue depth come from the MQTT side.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the appraisal latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// At most this many distinct failing checks are counted (each a label value); later ones go
/// under `other`.
const MAX_CHECK_LABELS: usize = 128;

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    trusted: AtomicU64,
    untrusted: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    latency: Mutex<Histogram>,
    enrollments: AtomicU64,
    revocations: AtomicU64,
    broker_connected: AtomicBool,
    queue_depth: AtomicI64,
    webhook_ok: AtomicU64,
    webhook_failed: AtomicU64,
    webhook_dropped: AtomicU64,
}

/// What the registry says at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Devices by status name.
    pub devices: BTreeMap<&'static str, u64>,
    /// Stale devices.
    pub stale: u64,
    /// Refused messages by reason (the server's own count).
    pub refusals: BTreeMap<String, u64>,
}

/// How a webhook delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Ok,
    /// Every attempt failed.
    Failed,
    /// The queue was full; the event was not sent.
    Dropped,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one stored verdict with the checks that failed (`check` names, e.g.
    /// `policy.secure_boot`).
    pub fn attestation<'a>(&self, trusted: bool, failed_checks: impl IntoIterator<Item = &'a str>) {
        if trusted {
            self.trusted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.untrusted.fetch_add(1, Ordering::Relaxed);
        }
        let mut f = lock(&self.failures);
        for c in failed_checks {
            let key = if f.len() < MAX_CHECK_LABELS || f.contains_key(c) {
                c
            } else {
                "other"
            };
            *f.entry(key.to_string()).or_default() += 1;
        }
    }

    /// Records how long one appraisal took.
    pub fn appraisal_latency(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let mut h = lock(&self.latency);
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Counts an enrollment.
    pub fn enrollment(&self) {
        self.enrollments.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a revocation (or deletion).
    pub fn revocation(&self) {
        self.revocations.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets whether the broker connection is up.
    pub fn set_broker_connected(&self, up: bool) {
        self.broker_connected.store(up, Ordering::Relaxed);
    }

    /// True while the broker connection is up.
    pub fn broker_connected(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
    }

    /// One more (`+1`) or one fewer (`-1`) message in the work queue.
    pub fn queue_add(&self, delta: i64) {
        self.queue_depth.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts a webhook delivery's end.
    pub fn webhook(&self, d: Delivery) {
        match d {
            Delivery::Ok => &self.webhook_ok,
            Delivery::Failed => &self.webhook_failed,
            Delivery::Dropped => &self.webhook_dropped,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut o = String::new();
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut o,
            "vouch_attestations_total",
            "counter",
            "Verdicts stored since the server started, by verdict.",
        );
        for (v, n) in [("trusted", &self.trusted), ("untrusted", &self.untrusted)] {
            let _ = writeln!(
                o,
                "vouch_attestations_total{{verdict=\"{v}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        head(
            &mut o,
            "vouch_attestation_failures_total",
            "counter",
            "Failed checks in untrusted verdicts since the server started, by check (rule).",
        );
        for (c, n) in lock(&self.failures).iter() {
            let _ = writeln!(
                o,
                "vouch_attestation_failures_total{{check=\"{}\"}} {n}",
                label(c)
            );
        }
        head(
            &mut o,
            "vouch_appraisal_duration_seconds",
            "histogram",
            "Time the appraisal of one attestation report took.",
        );
        {
            let h = lock(&self.latency);
            for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
                let _ = writeln!(
                    o,
                    "vouch_appraisal_duration_seconds_bucket{{le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                o,
                "vouch_appraisal_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(o, "vouch_appraisal_duration_seconds_sum {}", h.sum);
            let _ = writeln!(o, "vouch_appraisal_duration_seconds_count {}", h.count);
        }
        head(
            &mut o,
            "vouch_devices",
            "gauge",
            "Devices in the registry, by status.",
        );
        for (s, n) in &snap.devices {
            let _ = writeln!(o, "vouch_devices{{status=\"{s}\"}} {n}");
        }
        head(
            &mut o,
            "vouch_devices_stale",
            "gauge",
            "Active devices without a trusted verdict for [liveness] stale_after_intervals challenge intervals.",
        );
        let _ = writeln!(o, "vouch_devices_stale {}", snap.stale);
        head(
            &mut o,
            "vouch_enrollments_total",
            "counter",
            "Devices enrolled since the server started.",
        );
        let _ = writeln!(
            o,
            "vouch_enrollments_total {}",
            self.enrollments.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "vouch_revocations_total",
            "counter",
            "Device certificates revoked (including deletions) since the server started.",
        );
        let _ = writeln!(
            o,
            "vouch_revocations_total {}",
            self.revocations.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "vouch_broker_connected",
            "gauge",
            "1 while the connection to the MQTT broker is up, else 0.",
        );
        let _ = writeln!(
            o,
            "vouch_broker_connected {}",
            u8::from(self.broker_connected())
        );
        head(
            &mut o,
            "vouch_work_queue_depth",
            "gauge",
            "Incoming messages waiting for a worker.",
        );
        let _ = writeln!(
            o,
            "vouch_work_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed).max(0)
        );
        head(
            &mut o,
            "vouch_messages_refused_total",
            "counter",
            "Messages and answers refused since the server started, by reason.",
        );
        for (r, n) in &snap.refusals {
            let _ = writeln!(
                o,
                "vouch_messages_refused_total{{reason=\"{}\"}} {n}",
                label(r)
            );
        }
        head(
            &mut o,
            "vouch_webhook_deliveries_total",
            "counter",
            "Webhook events since the server started, by how their delivery ended.",
        );
        for (r, n) in [
            ("ok", &self.webhook_ok),
            ("failed", &self.webhook_failed),
            ("dropped", &self.webhook_dropped),
        ] {
            let _ = writeln!(
                o,
                "vouch_webhook_deliveries_total{{result=\"{r}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_with_escaped_labels() {
        let m = Metrics::default();
        m.attestation(true, []);
        m.attestation(false, ["policy.secure_boot", "eventlog.pcr7"]);
        m.attestation(false, ["policy.secure_boot"]);
        m.appraisal_latency(std::time::Duration::from_millis(3));
        let mut snap = Snapshot::default();
        snap.refusals.insert("odd\"reason".into(), 2);
        let text = m.render(&snap);
        assert!(text.contains("vouch_attestations_total{verdict=\"untrusted\"} 2"));
        assert!(text.contains("vouch_attestation_failures_total{check=\"policy.secure_boot\"} 2"));
        assert!(text.contains("vouch_appraisal_duration_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("vouch_appraisal_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("vouch_messages_refused_total{reason=\"odd\\\"reason\"} 2"));
    }
}
