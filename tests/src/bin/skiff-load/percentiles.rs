//! Percentiles of recorded durations, nearest-rank.

use std::time::Duration;

/// The `p`th percentile (0 < p ≤ 100) in microseconds; 0 for no samples.
pub fn micros(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(micros(&mut samples, 50.0), 50.0);
        assert_eq!(micros(&mut samples, 99.0), 99.0);
        assert_eq!(micros(&mut samples, 100.0), 100.0);
        assert_eq!(micros(&mut [], 99.0), 0.0);
    }
}
