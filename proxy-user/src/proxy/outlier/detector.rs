//! Passive health of the frontends whose Service asks for it: one
//! `Outliers` (Envoy's policy, `ejection`) per frontend, fed with connect
//! outcomes, asked which backends the frontend keeps, and woken when an
//! ejection ends.
use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::ejection::{OutlierConfig, Outliers};

pub struct Detector<F> {
    frontends: HashMap<F, FrontendHealth>,
}

struct FrontendHealth {
    config: OutlierConfig,
    outliers: Outliers,
    /// How many backends the frontend had at its last sync.
    backends: usize,
}

impl<F> Default for Detector<F> {
    fn default() -> Self {
        Self {
            frontends: HashMap::new(),
        }
    }
}

impl<F: Copy + Eq + Hash> Detector<F> {
    /// Notes one connect of `frontend` to `backend`; returns how long the
    /// backend is ejected for, if this ejects it. Outcomes of frontends not
    /// `track`ed (no detection, or not synced yet) are ignored.
    pub fn observe(
        &mut self,
        frontend: F,
        backend: SocketAddr,
        failed: bool,
        now: Instant,
    ) -> Option<Duration> {
        let state = self.frontends.get_mut(&frontend)?;
        if !failed {
            state.outliers.success(&backend);
            return None;
        }
        state.outliers.failure(backend, state.backends, now)
    }

    /// Starts or keeps following `frontend` with `config`, and returns
    /// which of `backends` it balances to now. Health of
    /// backends it no longer has is forgotten; if every backend left is
    /// ejected (ejections made against a larger set), all of them serve.
    pub fn track(
        &mut self,
        frontend: F,
        config: OutlierConfig,
        backends: &[SocketAddr],
        now: Instant,
    ) -> HashSet<SocketAddr> {
        let state = self
            .frontends
            .entry(frontend)
            .or_insert_with(|| FrontendHealth {
                config,
                outliers: Outliers::new(config),
                backends: 0,
            });
        if state.config != config {
            // New thresholds start from a clean slate, as a new Envoy
            // cluster would.
            *state = FrontendHealth {
                config,
                outliers: Outliers::new(config),
                backends: 0,
            };
        }
        state.backends = backends.len();
        state.outliers.retain(backends);
        let kept: HashSet<SocketAddr> = backends
            .iter()
            .filter(|backend| !state.outliers.is_ejected(backend, now))
            .copied()
            .collect();
        match kept.is_empty() {
            true => backends.iter().copied().collect(),
            false => kept,
        }
    }

    /// Forgets a frontend that is gone or no longer asks for detection.
    pub fn forget(&mut self, frontend: &F) {
        self.frontends.remove(frontend);
    }

    /// When the next ejection ends.
    pub fn next_return(&self) -> Option<Instant> {
        self.frontends
            .values()
            .filter_map(|state| state.outliers.next_return())
            .min()
    }

    /// Ends the ejections due by `now`; returns the backends that came
    /// back, by frontend.
    pub fn end_ejections(&mut self, now: Instant) -> Vec<(F, SocketAddr)> {
        self.frontends
            .iter_mut()
            .flat_map(|(frontend, state)| {
                state
                    .outliers
                    .end_ejections(now)
                    .into_iter()
                    .map(|backend| (*frontend, backend))
            })
            .collect()
    }

    /// How many backends each frontend has ejected at `now`.
    pub fn ejected(&self, now: Instant) -> impl Iterator<Item = (F, usize)> + '_ {
        self.frontends
            .iter()
            .map(move |(frontend, state)| (*frontend, state.outliers.ejected(now)))
    }
}

#[cfg(test)]
mod tests;
