//! Leader election through the Lease `kube-system/skiff-control`, as
//! client-go's leaderelection does it: whoever renews the lease within its
//! duration leads; a lease not renewed for that long may be taken over.

use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::debug;

use super::client::{Client, written};
use super::error::ControllerError;
use super::kind::Kind;
use super::meta;
use crate::store::{Store, object_key};

const NAMESPACE: &str = "kube-system";
const LEASE: &str = "skiff-control";

/// Who this instance is and how the lease is kept.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// The lease's `holderIdentity` while this instance leads.
    pub identity: String,
    /// How long a lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// How often the leader renews (and others try to take over).
    pub retry_period: Duration,
}

impl Default for LeaderElection {
    fn default() -> Self {
        // kube-controller-manager's defaults are 15 s and 2 s.
        Self {
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `<hostname>_<pid>`: unique among the instances on one machine too.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}_{}", host.trim(), std::process::id())
}

/// A term of leadership: when it was last renewed.
pub struct Term {
    renewed: Instant,
}

impl LeaderElection {
    /// Waits until this instance holds the lease.
    pub async fn acquire(&self, client: &Client, store: &Store) -> Term {
        loop {
            match self.try_take(client, store).await {
                Ok(true) => {
                    return Term {
                        renewed: Instant::now(),
                    };
                }
                Ok(false) => {}
                Err(error) => debug!(%error, "leader election attempt failed"),
            }
            tokio::time::sleep(self.retry_period).await;
        }
    }

    /// Renews the lease until that fails for longer than the lease lasts
    /// (less a margin, so the old leader stops before a new one starts) or
    /// someone else holds it.
    pub async fn hold(&self, client: &Client, store: &Store, mut term: Term) {
        let deadline = self.lease_duration.mul_f64(2.0 / 3.0);
        loop {
            tokio::time::sleep(self.retry_period).await;
            match self.try_take(client, store).await {
                Ok(true) => term.renewed = Instant::now(),
                Ok(false) => return,
                Err(error) => debug!(%error, "lease renewal failed"),
            }
            if term.renewed.elapsed() > deadline {
                return;
            }
        }
    }

    /// Takes or renews the lease when it is ours or has expired; whether
    /// this instance holds it now.
    async fn try_take(&self, client: &Client, store: &Store) -> Result<bool, ControllerError> {
        let key = object_key(Kind::Lease.storage(), Some(NAMESPACE), LEASE);
        let now = meta::now_micro();
        let seconds = self.lease_duration.as_secs().max(1);
        let current = match store.get(&key).await {
            Ok(lease) => lease,
            Err(crate::store::StoreError::NotFound { .. }) => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": { "name": LEASE, "namespace": NAMESPACE },
                    "spec": {
                        "holderIdentity": self.identity,
                        "leaseDurationSeconds": seconds,
                        "acquireTime": now,
                        "renewTime": now,
                        "leaseTransitions": 0,
                    },
                });
                return match client.create(Kind::Lease, Some(NAMESPACE), &lease).await {
                    Ok(_) => Ok(true),
                    Err(error) if error.is_conflict() => Ok(false),
                    Err(error) => Err(error.into()),
                };
            }
            Err(error) => return Err(error.into()),
        };
        let spec = &current["spec"];
        let ours = spec["holderIdentity"].as_str() == Some(&self.identity);
        if !ours && !expired(spec) {
            return Ok(false);
        }
        let mut lease: Value = current.clone();
        lease["spec"]["renewTime"] = now.clone();
        lease["spec"]["leaseDurationSeconds"] = json!(seconds);
        if !ours {
            lease["spec"]["holderIdentity"] = json!(self.identity);
            lease["spec"]["acquireTime"] = now;
            lease["spec"]["leaseTransitions"] =
                json!(spec["leaseTransitions"].as_i64().unwrap_or(0) + 1);
        }
        // The resourceVersion read makes this a compare-and-swap: of two
        // instances taking over at once, one wins.
        Ok(written(client.update(Kind::Lease, &lease).await)?)
    }
}

/// Whether the lease was last renewed longer ago than it lasts. Wall-clock
/// time: the instances of one cluster share this machine's clock.
fn expired(spec: &Value) -> bool {
    let Some(renewed) = meta::parse_time(&spec["renewTime"]) else {
        return true;
    };
    let lasts = SignedDuration::from_secs(spec["leaseDurationSeconds"].as_i64().unwrap_or(0));
    renewed
        .checked_add(lasts)
        .is_ok_and(|until| until < meta::timestamp_now())
}
