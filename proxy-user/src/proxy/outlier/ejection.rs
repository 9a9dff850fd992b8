//! Per-endpoint outlier ejection, as Envoy's outlier detection does it, for
//! the Ingress proxy's pools and the Services' passive health alike:
//! after `consecutive_failures` connect failures or 5xx answers in a row,
//! an endpoint is left out for `base_ejection` × the times it was ejected
//! (at most `max_ejection`), then tried again; the multiplier drops by one
//! for every `base_ejection` the endpoint stays in. No more than
//! `max_ejection_percent` of a backend's endpoints are out at once (at
//! least one may be), and never all of them.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proxy_common::outlier_annotation::OutlierAnnotation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejection_percent: usize,
}

impl Default for OutlierConfig {
    /// Envoy's defaults, but for the share: with Envoy's 10 % a backend
    /// of two endpoints could never eject its broken one.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// A Service's `skiff.io/outlier-detection` annotation.
impl From<OutlierAnnotation> for OutlierConfig {
    fn from(annotation: OutlierAnnotation) -> Self {
        Self {
            consecutive_failures: annotation.consecutive_failures,
            base_ejection: annotation.base_ejection,
            max_ejection: annotation.max_ejection,
            max_ejection_percent: annotation.max_ejection_percent,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct EndpointHealth {
    consecutive_failures: u32,
    times_ejected: u32,
    ejected_until: Option<Instant>,
    /// When its last ejection ended, once `end_ejections` said so.
    back_since: Option<Instant>,
}

/// The health of one backend's endpoints.
#[derive(Debug, Default)]
pub struct Outliers {
    config: OutlierConfig,
    endpoints: HashMap<SocketAddr, EndpointHealth>,
}

impl Outliers {
    pub fn new(config: OutlierConfig) -> Self {
        Self {
            config,
            endpoints: HashMap::new(),
        }
    }

    /// Forgets endpoints the backend no longer has.
    pub fn retain(&mut self, endpoints: &[SocketAddr]) {
        self.endpoints.retain(|addr, _| endpoints.contains(addr));
    }

    pub fn is_ejected(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.endpoints
            .get(addr)
            .and_then(|health| health.ejected_until)
            .is_some_and(|until| until > now)
    }

    pub fn success(&mut self, addr: &SocketAddr) {
        if let Some(health) = self.endpoints.get_mut(addr) {
            health.consecutive_failures = 0;
        }
    }

    /// When the next ejection ends.
    pub fn next_return(&self) -> Option<Instant> {
        self.endpoints
            .values()
            .filter_map(|health| health.ejected_until)
            .min()
    }

    /// Ends the ejections due by `now`; returns the endpoints that came
    /// back.
    pub fn end_ejections(&mut self, now: Instant) -> Vec<SocketAddr> {
        let mut returned = Vec::new();
        for (addr, health) in &mut self.endpoints {
            if health.ejected_until.is_some_and(|until| until <= now) {
                health.back_since = health.ejected_until.take();
                returned.push(*addr);
            }
        }
        returned
    }

    /// How many endpoints are ejected at `now`.
    pub fn ejected(&self, now: Instant) -> usize {
        self.endpoints
            .keys()
            .filter(|addr| self.is_ejected(addr, now))
            .count()
    }

    /// Counts a connect failure or 5xx of `addr`, one of `total`
    /// endpoints. Returns how long it is ejected for, if this ejects it.
    pub fn failure(&mut self, addr: SocketAddr, total: usize, now: Instant) -> Option<Duration> {
        let ejected = self
            .endpoints
            .iter()
            .filter(|(other, health)| {
                **other != addr && health.ejected_until.is_some_and(|until| until > now)
            })
            .count();
        let config = self.config;
        let health = self.endpoints.entry(addr).or_default();
        if health.ejected_until.is_some_and(|until| until > now) {
            return None;
        }
        health.consecutive_failures += 1;
        if health.consecutive_failures < config.consecutive_failures {
            return None;
        }
        let allowed = (total * config.max_ejection_percent / 100).max(1);
        if ejected + 1 > allowed || ejected + 1 >= total {
            return None;
        }
        health.consecutive_failures = 0;
        // An ejection that has run out ended when it was due, whether or
        // not `end_ejections` was asked.
        if let Some(back) = health.ejected_until.take().or(health.back_since) {
            let stayed = now.saturating_duration_since(back);
            let decay = stayed.as_nanos() / config.base_ejection.as_nanos().max(1);
            health.times_ejected = health
                .times_ejected
                .saturating_sub(u32::try_from(decay).unwrap_or(u32::MAX));
        }
        health.back_since = None;
        health.times_ejected += 1;
        let time = config
            .base_ejection
            .saturating_mul(health.times_ejected)
            .min(config.max_ejection);
        health.ejected_until = Some(now + time);
        Some(time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 244, 1, last], 8080))
    }

    fn fail(
        outliers: &mut Outliers,
        a: SocketAddr,
        total: usize,
        now: Instant,
        times: u32,
    ) -> Option<Duration> {
        (0..times)
            .map(|_| outliers.failure(a, total, now))
            .last()
            .flatten()
    }

    #[test]
    fn consecutive_failures_eject_for_growing_times() {
        let mut outliers = Outliers::default();
        let now = Instant::now();
        assert_eq!(fail(&mut outliers, addr(1), 4, now, 4), None);
        assert!(!outliers.is_ejected(&addr(1), now));
        assert_eq!(
            outliers.failure(addr(1), 4, now),
            Some(Duration::from_secs(30))
        );
        assert!(outliers.is_ejected(&addr(1), now));
        assert!(!outliers.is_ejected(&addr(2), now));
        // Back after the ejection time; the next ejection lasts twice as long.
        let later = now + Duration::from_secs(31);
        assert!(!outliers.is_ejected(&addr(1), later));
        assert_eq!(
            fail(&mut outliers, addr(1), 4, later, 5),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut outliers = Outliers::default();
        let now = Instant::now();
        fail(&mut outliers, addr(1), 4, now, 4);
        outliers.success(&addr(1));
        assert_eq!(fail(&mut outliers, addr(1), 4, now, 4), None);
        assert!(!outliers.is_ejected(&addr(1), now));
    }

    #[test]
    fn never_more_than_the_share_nor_all() {
        let now = Instant::now();
        let mut outliers = Outliers::default();
        // One of one: never ejected.
        assert_eq!(fail(&mut outliers, addr(1), 1, now, 20), None);
        // Two endpoints: one may go, not both.
        let mut outliers = Outliers::default();
        assert!(fail(&mut outliers, addr(1), 2, now, 5).is_some());
        assert_eq!(fail(&mut outliers, addr(2), 2, now, 20), None);
        assert!(!outliers.is_ejected(&addr(2), now));
        // Four endpoints at 50 %: two.
        let mut outliers = Outliers::default();
        assert!(fail(&mut outliers, addr(1), 4, now, 5).is_some());
        assert!(fail(&mut outliers, addr(2), 4, now, 5).is_some());
        assert_eq!(fail(&mut outliers, addr(3), 4, now, 20), None);
    }

    /// Ejects at the first failure.
    fn eager() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 1,
            ..OutlierConfig::default()
        }
    }

    #[test]
    fn ejection_time_is_capped() {
        let mut outliers = Outliers::new(eager());
        let mut now = Instant::now();
        let mut last = None;
        // Failing again the moment each ejection ends.
        for _ in 0..20 {
            last = outliers.failure(addr(1), 4, now);
            now += last.unwrap();
        }
        assert_eq!(last, Some(Duration::from_secs(300)));
    }

    #[test]
    fn the_multiplier_decays_while_the_endpoint_stays_in() {
        let mut outliers = Outliers::new(eager());
        let now = Instant::now();
        assert_eq!(
            outliers.failure(addr(1), 4, now),
            Some(Duration::from_secs(30))
        );
        let back = now + Duration::from_secs(30);
        assert_eq!(outliers.end_ejections(back), vec![addr(1)]);
        // In for one base time: the second ejection counts as the first.
        let later = back + Duration::from_secs(30);
        assert_eq!(
            outliers.failure(addr(1), 4, later),
            Some(Duration::from_secs(30))
        );
        // Failing again at once: the multiplier grows.
        let back = later + Duration::from_secs(30);
        assert_eq!(
            outliers.failure(addr(1), 4, back),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn ended_ejections_are_reported_once() {
        let mut outliers = Outliers::default();
        let now = Instant::now();
        fail(&mut outliers, addr(1), 4, now, 5);
        let until = now + Duration::from_secs(30);
        assert_eq!(outliers.next_return(), Some(until));
        assert_eq!(outliers.ejected(now), 1);
        assert!(
            outliers
                .end_ejections(until - Duration::from_secs(1))
                .is_empty()
        );
        assert_eq!(outliers.end_ejections(until), vec![addr(1)]);
        assert_eq!(outliers.end_ejections(until), vec![]);
        assert_eq!(outliers.next_return(), None);
        assert_eq!(outliers.ejected(until), 0);
    }

    #[test]
    fn removed_endpoints_are_forgotten() {
        let mut outliers = Outliers::default();
        let now = Instant::now();
        fail(&mut outliers, addr(1), 4, now, 5);
        outliers.retain(&[addr(2)]);
        assert!(!outliers.is_ejected(&addr(1), now));
    }
}
