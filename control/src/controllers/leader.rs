//! Leader election through the Lease `kube-system/skiff-control`, as
//! client-go's leaderelection does it: whoever renews the lease within its
//! duration leads; a lease not renewed for that long may be taken over.
//! Each new leader also moves a fence key (`LEADER_FENCES`) that its
//! controllers' writes compare, so a deposed leader's writes fail.

use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;
use serde_json::{Value, json};
use skiff_etcd::keys::LEADER_FENCES;
use skiff_etcd::kv::{Fence, Guarded, Written};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::client::Client;
use super::error::ControllerError;
use super::kind::Kind;
use super::meta;
use crate::store::{Store, StoreError, object_key, resource_version_of};

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

/// A term of leadership: when its lease was last renewed, and the fence
/// its controllers write under.
pub struct Term {
    /// When the last successful renewal started: the lease's `renewTime`
    /// was set no earlier, so the lease lasts at least until this plus its
    /// duration, as others see it.
    renewed: Instant,
    pub fence: Fence,
}

impl LeaderElection {
    /// How long after its last renewal a leader stops acting: well within
    /// the lease, so that it has stopped before another may take over.
    fn renew_deadline(&self) -> Duration {
        self.lease_duration.mul_f64(2.0 / 3.0)
    }

    /// Waits until this instance holds the lease and has set the fence.
    pub async fn acquire(&self, client: &Client, store: &Store) -> Term {
        loop {
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.renew_deadline(), async {
                match self.try_take(client, store).await? {
                    Some(lease_revision) => self.fence(store, lease_revision).await,
                    None => Ok(None),
                }
            });
            match attempt.await {
                Ok(Ok(Some(fence))) => {
                    return Term {
                        renewed: started,
                        fence,
                    };
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => debug!(%error, "leader election attempt failed"),
                Err(_) => debug!("leader election attempt timed out"),
            }
            tokio::time::sleep(self.retry_period).await;
        }
    }

    /// Renews the lease until someone else holds it or no renewal has
    /// succeeded within the renew deadline. Each attempt is cut off at
    /// that deadline, so a blocked etcd call cannot keep a stale leader
    /// acting.
    pub async fn hold(&self, client: &Client, store: &Store, mut term: Term) {
        loop {
            tokio::time::sleep(self.retry_period).await;
            let started = Instant::now();
            let stop_at = term.renewed + self.renew_deadline();
            match tokio::time::timeout_at(stop_at, self.try_take(client, store)).await {
                Ok(Ok(Some(_))) => term.renewed = started,
                Ok(Ok(None)) => return,
                Ok(Err(error)) => debug!(%error, "lease renewal failed"),
                Err(_) => warn!("lease renewal timed out"),
            }
            if Instant::now() >= term.renewed + self.renew_deadline() {
                return;
            }
        }
    }

    /// Moves the fence to this term: only while the lease is still at
    /// `lease_revision` (as this instance took it). The fence's new
    /// revision is the term's token; `None` when the lease moved on.
    async fn fence(
        &self,
        store: &Store,
        lease_revision: i64,
    ) -> Result<Option<Fence>, ControllerError> {
        let lease = lease_key();
        let key = object_key(LEADER_FENCES, Some(NAMESPACE), LEASE);
        let claim = Guarded::new()
            .unchanged(&lease, lease_revision)
            .put(&key, self.identity.as_str());
        match store
            .client()
            .commit(claim)
            .await
            .map_err(StoreError::from)?
        {
            Written::Done { revision } => Ok(Some(Fence {
                key,
                mod_revision: revision,
            })),
            Written::Conflict | Written::Missing => Ok(None),
        }
    }

    /// Takes or renews the lease when it is ours or has expired: the
    /// lease's revision when this instance holds it now.
    async fn try_take(
        &self,
        client: &Client,
        store: &Store,
    ) -> Result<Option<i64>, ControllerError> {
        let key = lease_key();
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
                    Ok(created) => Ok(Some(resource_version_of(&created))),
                    Err(error) if error.is_conflict() => Ok(None),
                    Err(error) => Err(error.into()),
                };
            }
            Err(error) => return Err(error.into()),
        };
        let spec = &current["spec"];
        let ours = spec["holderIdentity"].as_str() == Some(&self.identity);
        if !ours && !expired(spec) {
            return Ok(None);
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
        match client.update(Kind::Lease, &lease).await {
            Ok(updated) => Ok(Some(resource_version_of(&updated))),
            Err(error) if error.is_conflict() || error.is_not_found() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

fn lease_key() -> String {
    object_key(Kind::Lease.storage(), Some(NAMESPACE), LEASE)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Api, ApiConfig};
    use crate::test_support::Etcd;

    fn election(identity: &str) -> LeaderElection {
        LeaderElection {
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(1),
            retry_period: Duration::from_millis(100),
        }
    }

    fn namespace(name: &str) -> Value {
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
    }

    #[tokio::test]
    async fn a_deposed_leaders_writes_are_refused() {
        let etcd = Etcd::start();
        let store = etcd.store().await;
        let api = Api::new(store.clone(), ApiConfig::default());
        let client = Client::new(api.clone());
        let first = election("first").acquire(&client, &store).await;
        let deposed = Client::new(api.fenced(first.fence.clone()));
        deposed
            .create(Kind::Namespace, None, &namespace("first-term"))
            .await
            .expect("the leader writes within its term");

        // "first" renews no more (as when its etcd calls block); once its
        // lease has expired, "second" takes over and moves the fence.
        let second = election("second").acquire(&client, &store).await;
        assert!(second.fence.mod_revision > first.fence.mod_revision);
        let refused = deposed
            .create(Kind::Namespace, None, &namespace("late"))
            .await
            .expect_err("the deposed leader's write is refused");
        assert!(refused.message.contains("leadership lost"), "{refused}");
        assert!(matches!(
            store
                .get(&object_key(Kind::Namespace.storage(), None, "late"))
                .await,
            Err(StoreError::NotFound { .. })
        ));
        Client::new(api.fenced(second.fence))
            .create(Kind::Namespace, None, &namespace("second-term"))
            .await
            .expect("the new leader writes");
    }

    #[tokio::test]
    async fn a_leader_that_cannot_renew_stops_within_the_lease() {
        let etcd = Etcd::start();
        let store = etcd.store().await;
        let client = Client::new(Api::new(store.clone(), ApiConfig::default()));
        let election = election("only");
        let term = election.acquire(&client, &store).await;
        let acquired = Instant::now();
        // etcd stops answering: each renewal blocks until cut off.
        signal(&etcd, "-STOP");
        election.hold(&client, &store, term).await;
        let held = acquired.elapsed();
        signal(&etcd, "-CONT");
        assert!(
            held < election.lease_duration,
            "stopped {held:?} after the last renewal, lease {:?}",
            election.lease_duration
        );
    }

    fn signal(etcd: &Etcd, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &etcd.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}
