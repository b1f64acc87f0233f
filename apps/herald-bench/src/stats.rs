//! Latency summaries: exact percentiles over every recorded sample.

use serde::Serialize;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// Summarizes `samples` (microseconds); sorts them in place. All zero when empty.
pub fn summarize(samples: &mut [u32]) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    samples.sort_unstable();
    let at = |q: f64| {
        // Nearest rank: the smallest sample with at least q of all at or below it.
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        f64::from(samples[rank - 1]) / 1000.0
    };
    Summary {
        n: samples.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: f64::from(samples[samples.len() - 1]) / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let s = summarize(&mut v);
        assert_eq!(s.n, 100);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p90, 90.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(summarize(&mut []), Summary::default());
    }
}
