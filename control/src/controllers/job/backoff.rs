//! The delay before a job replaces failed pods, after upstream's
//! backoff record: 10 s after the first failure since the last success,
//! doubling with each further one, at most six minutes.

use std::time::{Duration, Instant};

const BASE: Duration = Duration::from_secs(10);
const CAP: Duration = Duration::from_secs(6 * 60);

/// The delay after `failures` consecutive failures.
pub fn delay(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => BASE
            .checked_mul(1 << (n - 1).min(16))
            .map_or(CAP, |delay| delay.min(CAP)),
    }
}

/// One job's failures since its last success (kept in memory, as upstream).
#[derive(Debug, Default, Clone, Copy)]
pub struct Record {
    failures: u32,
    last_failure: Option<Instant>,
}

impl Record {
    pub fn failed(&mut self, count: u32, at: Instant) {
        self.failures += count;
        self.last_failure = Some(at);
    }

    pub fn succeeded(&mut self) {
        *self = Self::default();
    }

    /// How long pods must still wait at `now`; `None` when they need not.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        let ends = self.last_failure? + delay(self.failures);
        (ends > now).then(|| ends - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_six_minutes() {
        let seconds: Vec<u64> = (0..8).map(|n| delay(n).as_secs()).collect();
        assert_eq!(seconds, [0, 10, 20, 40, 80, 160, 320, 360]);
        assert_eq!(delay(40), CAP);
    }

    #[test]
    fn a_success_clears_the_record() {
        let start = Instant::now();
        let mut record = Record::default();
        assert_eq!(record.remaining(start), None);
        record.failed(2, start);
        assert_eq!(record.remaining(start), Some(Duration::from_secs(20)));
        assert_eq!(record.remaining(start + Duration::from_secs(25)), None);
        record.succeeded();
        assert_eq!(record.remaining(start), None);
    }
}
