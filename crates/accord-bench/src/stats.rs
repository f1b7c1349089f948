//! Small statistics helpers: percentiles of latencies and medians of runs.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of per-operation latencies, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Summarises latencies given in nanoseconds (sorted in place).
    pub fn of(nanos: &mut [u64]) -> Latency {
        if nanos.is_empty() {
            return Latency::default();
        }
        nanos.sort_unstable();
        let us = |ns: u64| ns as f64 / 1_000.0;
        let sum: u128 = nanos.iter().map(|&n| u128::from(n)).sum();
        Latency {
            count: nanos.len(),
            mean_us: sum as f64 / nanos.len() as f64 / 1_000.0,
            p50_us: us(percentile(nanos, 50.0)),
            p90_us: us(percentile(nanos, 90.0)),
            p99_us: us(percentile(nanos, 99.0)),
            p999_us: us(percentile(nanos, 99.9)),
            max_us: us(nanos[nanos.len() - 1]),
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of durations (mean of the middle two for an even count).
pub fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).map(|n| n * 1_000).collect();
        let l = Latency::of(&mut v);
        assert_eq!(l.p50_us, 50.0);
        assert_eq!(l.p99_us, 99.0);
        assert_eq!(l.max_us, 100.0);
        assert_eq!(
            median(&[
                Duration::from_millis(3),
                Duration::from_millis(1),
                Duration::from_millis(2)
            ]),
            Duration::from_millis(2)
        );
    }
}
