//! When each device is challenged next: every `interval` plus a random 0..=`jitter`, the first
//! time at a random point within one interval (so a restarted server does not challenge the
//! whole fleet at once).

use rand::Rng;
use std::collections::{HashMap, HashSet};

/// Next challenge time per device (ms since the epoch).
#[derive(Debug, Default)]
pub struct Schedule {
    next: HashMap<String, i64>,
}

impl Schedule {
    /// Given the active devices, returns those due now and plans their next challenge;
    /// forgets devices no longer active.
    pub fn due(
        &mut self,
        active: &[String],
        now_ms: i64,
        interval_ms: i64,
        jitter_ms: i64,
        rng: &mut impl Rng,
    ) -> Vec<String> {
        let interval = interval_ms.max(1);
        // A set, not `active.contains`: that was quadratic (10^8 comparisons a second at 10,000
        // devices, the whole scheduler tick).
        let keep: HashSet<&str> = active.iter().map(String::as_str).collect();
        self.next.retain(|id, _| keep.contains(id.as_str()));
        let mut due = Vec::new();
        for id in active {
            let next = self
                .next
                .entry(id.clone())
                .or_insert_with(|| now_ms.saturating_add(rng.gen_range(0..interval)));
            if *next <= now_ms {
                due.push(id.clone());
                *next = now_ms
                    .saturating_add(interval)
                    .saturating_add(rng.gen_range(0..=jitter_ms.max(0)));
            }
        }
        due
    }

    /// Plans the next scheduled challenge of `id` one interval (plus jitter) from now, after an
    /// on-demand or boot-triggered one.
    pub fn postpone(&mut self, id: &str, at_ms: i64) {
        self.next.insert(id.to_string(), at_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_then_repeats_with_jitter() {
        let mut s = Schedule::default();
        let mut rng = rand::thread_rng();
        let ids: Vec<String> = (0..50).map(|i| format!("d{i}")).collect();
        let first = s.due(&ids, 0, 1000, 100, &mut rng);
        assert!(first.len() < 50, "first round spread over the interval");
        // Those due at once count as seen: they are not due again within this interval.
        let mut seen: std::collections::HashSet<String> = first.into_iter().collect();
        for t in (0..=1000).step_by(10) {
            for id in s.due(&ids, t, 1000, 100, &mut rng) {
                seen.insert(id);
            }
        }
        assert_eq!(seen.len(), 50);
        // Nobody is due again before a full interval has passed.
        let mut counts = HashMap::new();
        for t in (1000..=2000).step_by(10) {
            for id in s.due(&ids, t, 1000, 100, &mut rng) {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
        assert!(counts.values().all(|&c| c <= 1));
        // Devices that left are forgotten.
        assert!(s.due(&[], 5000, 1000, 100, &mut rng).is_empty());
        assert!(s.next.is_empty());
    }
}
