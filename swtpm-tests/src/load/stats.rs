//! Latency figures for the benchmarks: nearest-rank percentiles over collected samples, and a
//! one-line summary (count, p50, p99, max) in milliseconds.

use std::time::Duration;

/// Collected latency samples in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    micros: Vec<u64>,
}

/// The summary of a sample set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest sample, ms.
    pub max_ms: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
            self.count, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

impl Samples {
    /// No samples.
    pub fn new() -> Samples {
        Samples::default()
    }

    /// Adds a duration.
    pub fn push(&mut self, d: Duration) {
        self.micros
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds a whole number of milliseconds (negative values, from clock steps, count as 0).
    pub fn push_ms(&mut self, ms: i64) {
        self.micros
            .push(u64::try_from(ms).unwrap_or(0).saturating_mul(1000));
    }

    /// Adds a number of microseconds (negative values, from clock resolution, count as 0).
    pub fn push_us(&mut self, us: i64) {
        self.micros.push(u64::try_from(us).unwrap_or(0));
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.micros.extend_from_slice(&other.micros);
    }

    /// The `q`-quantile (0.0..=1.0) by the nearest-rank method, in microseconds; `None` when
    /// there is no sample.
    pub fn quantile_micros(&self, q: f64) -> Option<u64> {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        nearest_rank(&sorted, q)
    }

    /// Count, p50, p90, p99 and max; `None` when there is no sample.
    pub fn summary(&self) -> Option<Summary> {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let ms = |q: f64| nearest_rank(&sorted, q).map(|us| us as f64 / 1000.0);
        Some(Summary {
            count: sorted.len(),
            p50_ms: ms(0.50)?,
            p90_ms: ms(0.90)?,
            p99_ms: ms(0.99)?,
            max_ms: ms(1.0)?,
        })
    }
}

/// Nearest rank: the smallest sample with at least `q` of the samples at or below it.
fn nearest_rank(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::new();
        assert!(s.summary().is_none());
        // 1..=100 ms, shuffled order must not matter.
        for ms in (1..=100).rev() {
            s.push_ms(ms);
        }
        let sum = s.summary().unwrap();
        assert_eq!(sum.count, 100);
        assert_eq!(sum.p50_ms, 50.0);
        assert_eq!(sum.p90_ms, 90.0);
        assert_eq!(sum.p99_ms, 99.0);
        assert_eq!(sum.max_ms, 100.0);
        assert_eq!(s.quantile_micros(0.0), Some(1000));
        // One sample: every percentile is it; negative clock steps count as zero.
        let mut one = Samples::new();
        one.push_ms(-5);
        assert_eq!(one.quantile_micros(0.99), Some(0));
        let mut two = Samples::new();
        two.push(Duration::from_micros(1500));
        two.push(Duration::from_micros(2500));
        assert_eq!(two.quantile_micros(0.5), Some(1500));
        assert_eq!(two.quantile_micros(0.51), Some(2500));
    }
}
