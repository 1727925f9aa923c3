//! Coalescing and rate-limiting challenges: the newest pending challenge replaces older ones,
//! and at most one quote is made per interval. A storm of challenges costs one quote per
//! interval; the challenge answered is always the newest one received.

use std::time::{Duration, Instant};

/// What the quoting task should do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// Answer this challenge now.
    Answer(T),
    /// A challenge is pending; ask again after this long.
    Wait(Duration),
    /// Nothing pending.
    Idle,
}

/// Counters, for log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Challenges offered.
    pub received: u64,
    /// Challenges replaced by a newer one before they were answered.
    pub superseded: u64,
    /// Challenges handed out for answering.
    pub answered: u64,
}

/// The latest pending challenge and when the last one was answered.
#[derive(Debug)]
pub struct Gate<T> {
    interval: Duration,
    last: Option<Instant>,
    pending: Option<T>,
    counts: Counts,
}

impl<T> Gate<T> {
    /// At most one answer per `interval`.
    pub fn new(interval: Duration) -> Gate<T> {
        Gate {
            interval,
            last: None,
            pending: None,
            counts: Counts::default(),
        }
    }

    /// A new challenge: it replaces any pending one.
    pub fn offer(&mut self, challenge: T) {
        self.counts.received += 1;
        if self.pending.replace(challenge).is_some() {
            self.counts.superseded += 1;
        }
    }

    /// The pending challenge if one may be answered at `now`.
    pub fn next(&mut self, now: Instant) -> Next<T> {
        if self.pending.is_none() {
            return Next::Idle;
        }
        if let Some(last) = self.last {
            let ready = last + self.interval;
            if now < ready {
                return Next::Wait(ready - now);
            }
        }
        match self.pending.take() {
            Some(c) => {
                self.last = Some(now);
                self.counts.answered += 1;
                Next::Answer(c)
            }
            None => Next::Idle,
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_gets_one_answer_per_interval_and_the_newest_challenge() {
        let mut g = Gate::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(g.next(t0), Next::Idle);
        g.offer(1);
        assert_eq!(
            g.next(t0),
            Next::Answer(1),
            "the first one is answered at once"
        );
        for i in 2..=1000 {
            g.offer(i);
        }
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(g.next(t1), Next::Wait(Duration::from_millis(700)));
        let t2 = t0 + Duration::from_secs(1);
        assert_eq!(g.next(t2), Next::Answer(1000), "only the newest");
        assert_eq!(g.next(t2), Next::Idle);
        assert_eq!(
            g.counts(),
            Counts {
                received: 1000,
                superseded: 998,
                answered: 2
            }
        );
    }

    #[test]
    fn challenges_further_apart_than_the_interval_are_each_answered() {
        let mut g = Gate::new(Duration::from_millis(100));
        let mut t = Instant::now();
        for i in 0..5 {
            g.offer(i);
            assert_eq!(g.next(t), Next::Answer(i));
            t += Duration::from_millis(150);
        }
        assert_eq!(g.counts().superseded, 0);
    }
}
