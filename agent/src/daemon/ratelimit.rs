//! Rate-limited logging for events a remote peer can trigger (connection errors, bad messages):
//! at most one line per interval per key, with a count of what was suppressed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Remembers when each kind of message was last logged.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    last: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimiter {
    /// At most one line per `every` for each key.
    pub fn new(every: Duration) -> LogLimiter {
        LogLimiter {
            every,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when a line for `key` may be logged now.
    pub fn allow(&mut self, key: &'static str) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.every => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppresses_within_the_interval_and_counts() {
        let mut l = LogLimiter::new(Duration::from_millis(50));
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.allow("a"), Some(2));
    }
}
