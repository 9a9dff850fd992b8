//! A backend's endpoints as the proxy balances them: round robin over the
//! endpoints outlier detection has not ejected, skipping those a request
//! already tried. A pool lives as long as some Ingress routes to its
//! backend; its endpoints are replaced in place when the EndpointSlices
//! change, so the endpoints' health outlives those changes.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use tracing::warn;

use crate::proxy::outlier::{OutlierConfig, Outliers};

/// Why a backend has nothing to send requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    NoService,
    NoSuchPort,
    NoReadyEndpoints,
    /// A `resource` backend (kind/name): not something the proxy reaches.
    Resource(String),
}

#[derive(Debug)]
pub struct Pool {
    /// `<namespace>/<service>:<port>`, for log lines and error bodies.
    pub name: String,
    state: RwLock<PoolState>,
    next: AtomicUsize,
    outliers: Mutex<Outliers>,
}

#[derive(Clone, Debug)]
struct PoolState {
    endpoints: Arc<[SocketAddr]>,
    unavailable: Option<Unavailable>,
}

impl Pool {
    pub fn new(name: String, config: OutlierConfig) -> Self {
        Self {
            name,
            state: RwLock::new(PoolState {
                endpoints: Arc::from([]),
                unavailable: Some(Unavailable::NoReadyEndpoints),
            }),
            next: AtomicUsize::new(0),
            outliers: Mutex::new(Outliers::new(config)),
        }
    }

    /// Sets what the backend resolves to. Returns whether that changed.
    pub fn set(&self, resolved: Result<Vec<SocketAddr>, Unavailable>) -> bool {
        let (endpoints, unavailable) = match resolved {
            Ok(endpoints) if endpoints.is_empty() => {
                (endpoints, Some(Unavailable::NoReadyEndpoints))
            }
            Ok(endpoints) => (endpoints, None),
            Err(why) => (Vec::new(), Some(why)),
        };
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if *state.endpoints == *endpoints && state.unavailable == unavailable {
            return false;
        }
        self.outliers().retain(&endpoints);
        *state = PoolState {
            endpoints: endpoints.into(),
            unavailable,
        };
        true
    }

    /// Why the backend cannot be reached now, if it cannot.
    pub fn unavailable(&self) -> Option<Unavailable> {
        self.read().unavailable
    }

    pub fn endpoints(&self) -> Arc<[SocketAddr]> {
        self.read().endpoints
    }

    fn read(&self) -> PoolState {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn outliers(&self) -> std::sync::MutexGuard<'_, Outliers> {
        self.outliers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next endpoint not in `tried`: one not ejected if there is one.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let endpoints = self.endpoints();
        let count = endpoints.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let untried = (0..count)
            .map(|i| endpoints[(start + i) % count])
            .filter(|addr| !tried.contains(addr));
        let now = Instant::now();
        let outliers = self.outliers();
        untried
            .clone()
            .find(|addr| !outliers.is_ejected(addr, now))
            .or_else(|| untried.clone().next())
    }

    pub fn success(&self, addr: &SocketAddr) {
        self.outliers().success(addr);
    }

    /// A connect failure or 5xx of `addr`.
    pub fn failure(&self, addr: SocketAddr) {
        let total = self.endpoints().len();
        if let Some(time) = self.outliers().failure(addr, total, Instant::now()) {
            warn!(backend = %self.name, endpoint = %addr, ejected_for = ?time, "endpoint ejected after consecutive failures");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 244, 1, last], 8080))
    }

    #[test]
    fn round_robin_skips_tried_and_ejected() {
        let pool = Pool::new("default/web:80".into(), OutlierConfig::default());
        assert_eq!(pool.pick(&[]), None);
        assert!(pool.set(Ok(vec![addr(1), addr(2), addr(3)])));
        assert!(!pool.set(Ok(vec![addr(1), addr(2), addr(3)])));
        let picks: Vec<_> = (0..3).filter_map(|_| pool.pick(&[])).collect();
        assert_eq!(picks, [addr(1), addr(2), addr(3)]);
        assert_eq!(pool.pick(&[addr(1), addr(2), addr(3)]), None);
        for _ in 0..5 {
            pool.failure(addr(2));
        }
        let picks: Vec<_> = (0..6).filter_map(|_| pool.pick(&[])).collect();
        assert!(!picks.contains(&addr(2)), "{picks:?}");
        // Ejected is still better than nothing.
        assert_eq!(pool.pick(&[addr(1), addr(3)]), Some(addr(2)));
    }

    #[test]
    fn empty_or_missing_backends_say_why() {
        let pool = Pool::new("default/web:80".into(), OutlierConfig::default());
        pool.set(Ok(vec![]));
        assert_eq!(pool.unavailable(), Some(Unavailable::NoReadyEndpoints));
        pool.set(Err(Unavailable::NoService));
        assert_eq!(pool.unavailable(), Some(Unavailable::NoService));
        pool.set(Ok(vec![addr(1)]));
        assert_eq!(pool.unavailable(), None);
    }
}
