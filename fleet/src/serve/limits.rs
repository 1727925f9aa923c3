//! Per-device rate limits (token buckets) and rate-limited logging.
//!
//! Each device may send [`DEVICE_PER_MINUTE`] messages a minute (bursts of [`DEVICE_BURST`]).
//! Enrollment comes from the shared claim identity, but each enrolling connection writes only
//! under its own client id (the broker's ACL), so each connection gets
//! [`ENROLL_CONNECTION_PER_MINUTE`] and all of them together [`ENROLL_PER_MINUTE`]: one
//! claimant flooding from one connection uses up its own bucket, not everyone's. Excess
//! messages are dropped before any parsing and counted. Log lines
//! are limited to [`LOG_LINES_PER_WINDOW`] per [`LOG_WINDOW`]; the number suppressed is printed
//! when the next window opens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sustained messages per minute per device.
pub const DEVICE_PER_MINUTE: f64 = 30.0;
/// Burst per device.
pub const DEVICE_BURST: f64 = 10.0;
/// Sustained enrollment messages per minute, all devices together.
pub const ENROLL_PER_MINUTE: f64 = 600.0;
/// Enrollment burst.
pub const ENROLL_BURST: f64 = 100.0;
/// Sustained enrollment messages per minute from one connection (an enrollment takes two).
pub const ENROLL_CONNECTION_PER_MINUTE: f64 = 12.0;
/// Burst from one enrolling connection.
pub const ENROLL_CONNECTION_BURST: f64 = 6.0;
/// Log window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);
/// Log lines per window.
pub const LOG_LINES_PER_WINDOW: u32 = 50;
/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, per_minute: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_minute / 60.0).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Which bucket a message draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// Enrollment traffic from the connection whose client id (= request id) is given.
    Enroll(&'a str),
    /// A device.
    Device(&'a str),
}

/// The buckets and drop counters.
#[derive(Debug)]
pub struct RateLimits {
    enroll: Bucket,
    enrollers: HashMap<String, Bucket>,
    devices: HashMap<String, Bucket>,
    dropped: HashMap<String, u64>,
    total_dropped: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enroll: Bucket::new(ENROLL_BURST, Instant::now()),
            enrollers: HashMap::new(),
            devices: HashMap::new(),
            dropped: HashMap::new(),
            total_dropped: 0,
        }
    }
}

impl RateLimits {
    /// Takes a token for `sender`; false (and counted) when the message must be dropped.
    pub fn allow(&mut self, sender: Sender<'_>, now: Instant) -> bool {
        let ok = match sender {
            Sender::Enroll(rid) => {
                // The connection's own bucket first: a flood from it must not drain the
                // shared one.
                take_keyed(
                    &mut self.enrollers,
                    rid,
                    ENROLL_CONNECTION_PER_MINUTE,
                    ENROLL_CONNECTION_BURST,
                    now,
                ) && self.enroll.take(ENROLL_PER_MINUTE, ENROLL_BURST, now)
            }
            Sender::Device(id) => {
                take_keyed(&mut self.devices, id, DEVICE_PER_MINUTE, DEVICE_BURST, now)
            }
        };
        if !ok {
            let key = match sender {
                Sender::Enroll(_) => "enroll".to_string(),
                Sender::Device(id) => id.to_string(),
            };
            if self.dropped.len() < MAX_BUCKETS || self.dropped.contains_key(&key) {
                *self.dropped.entry(key).or_default() += 1;
            }
            self.total_dropped += 1;
        }
        ok
    }

    /// Messages dropped for `key` (a device id, or `enroll`).
    pub fn dropped(&self, key: &str) -> u64 {
        self.dropped.get(key).copied().unwrap_or(0)
    }

    /// Messages dropped in total.
    pub fn total_dropped(&self) -> u64 {
        self.total_dropped
    }
}

/// Takes a token from `key`'s bucket in `buckets`, bounding the map at [`MAX_BUCKETS`].
fn take_keyed(
    buckets: &mut HashMap<String, Bucket>,
    key: &str,
    per_minute: f64,
    burst: f64,
    now: Instant,
) -> bool {
    if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
        // Idle buckets are full anyway: dropping them loses nothing.
        let full = Duration::from_secs_f64(burst * 60.0 / per_minute);
        buckets.retain(|_, b| now.saturating_duration_since(b.last) < full);
        if buckets.len() >= MAX_BUCKETS {
            return false;
        }
    }
    buckets
        .entry(key.to_string())
        .or_insert_with(|| Bucket::new(burst, now))
        .take(per_minute, burst, now)
}

/// Limits log lines per window.
#[derive(Debug)]
pub struct LogLimiter {
    window_start: Instant,
    lines: u32,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter {
            window_start: Instant::now(),
            lines: 0,
            suppressed: 0,
        }
    }
}

impl LogLimiter {
    /// Decides whether a line may be printed now; returns the lines to print (a note about
    /// suppressed lines first when a new window opened after suppression).
    pub fn admit(&mut self, line: &str, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        if now.saturating_duration_since(self.window_start) >= LOG_WINDOW {
            if self.suppressed > 0 {
                out.push(format!(
                    "{} log lines suppressed (more than {LOG_LINES_PER_WINDOW} per {}s)",
                    self.suppressed,
                    LOG_WINDOW.as_secs()
                ));
            }
            self.window_start = now;
            self.lines = 0;
            self.suppressed = 0;
        }
        if self.lines < LOG_LINES_PER_WINDOW {
            self.lines += 1;
            out.push(line.to_string());
        } else {
            self.suppressed += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_bucket_drops_excess_and_refills() {
        let mut l = RateLimits::default();
        let t0 = Instant::now();
        let burst = DEVICE_BURST as usize;
        for _ in 0..burst {
            assert!(l.allow(Sender::Device("a"), t0));
        }
        assert!(!l.allow(Sender::Device("a"), t0));
        assert!(!l.allow(Sender::Device("a"), t0));
        assert_eq!(l.dropped("a"), 2);
        // Another device is not affected.
        assert!(l.allow(Sender::Device("b"), t0));
        // Two seconds at 30/min refill one token.
        assert!(l.allow(Sender::Device("a"), t0 + Duration::from_secs(2)));
        assert!(!l.allow(Sender::Device("a"), t0 + Duration::from_secs(2)));
        assert_eq!(l.total_dropped(), 3);
    }

    #[test]
    fn one_enrolling_connection_cannot_use_everyone_s_bucket() {
        let mut l = RateLimits::default();
        let t0 = Instant::now();
        let own = (0..1000)
            .filter(|_| l.allow(Sender::Enroll("vouch-conn-flood"), t0))
            .count();
        assert_eq!(own, ENROLL_CONNECTION_BURST as usize);
        // Other connections still have the shared burst, less what the flood used.
        let others = (0..200)
            .filter(|i| l.allow(Sender::Enroll(&format!("vouch-conn-{i}")), t0))
            .count();
        assert_eq!(others, (ENROLL_BURST - ENROLL_CONNECTION_BURST) as usize);
    }

    #[test]
    fn log_lines_are_limited_and_suppression_reported() {
        let mut g = LogLimiter::default();
        let t0 = Instant::now();
        let printed: usize = (0..LOG_LINES_PER_WINDOW + 5)
            .map(|i| g.admit(&format!("line {i}"), t0).len())
            .sum();
        assert_eq!(printed, LOG_LINES_PER_WINDOW as usize);
        let next = g.admit("later", t0 + LOG_WINDOW);
        assert_eq!(next.len(), 2);
        assert!(next[0].starts_with("5 log lines suppressed"), "{next:?}");
        assert_eq!(next[1], "later");
    }
}
