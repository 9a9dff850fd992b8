//! The node's Lease, `kube-node-lease/<node>`: the cheap heartbeat the
//! node lifecycle controller watches; renewed through the API server, or
//! straight in etcd (`/registry/leases/kube-node-lease/<node>`) for an
//! agent without an API credential.
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use serde_json::{Value, json};
use skiff_etcd::keys::{LEASES, object_key};

use super::register::{is_conflict, typed};
use crate::kubelet::store::{Store, StoreError, Written, new_uid, now_rfc3339, now_rfc3339_micro};

/// As the kubelet: the lease expires after 40 s without a renewal.
const LEASE_DURATION_SECONDS: u64 = 40;
const NAMESPACE: &str = "kube-node-lease";
const ATTEMPTS: usize = 5;

pub fn key(node: &str) -> String {
    object_key(LEASES, Some(NAMESPACE), node)
}

pub async fn renew(store: &Store, node: &str, interval: Duration) -> Result<(), StoreError> {
    let key = key(node);
    let duration = lease_duration(interval);
    for _ in 0..ATTEMPTS {
        let written = match store.get(&key).await? {
            None => store.create(&key, &new_lease(node, duration)).await?,
            Some(stored) => {
                let lease = renewed(stored.object, node, duration);
                store.update(&key, &lease, stored.mod_revision).await?
            }
        };
        if written == Written::Done {
            break;
        }
    }
    Ok(())
}

/// [`renew`] through the API server: the Lease replaced with the
/// resourceVersion read, created when missing.
pub async fn renew_through_api(
    client: &kube::Client,
    node: &str,
    interval: Duration,
) -> Result<(), kube::Error> {
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let duration = lease_duration(interval);
    let post = PostParams::default();
    for _ in 0..ATTEMPTS {
        let written = match leases.get_opt(node).await? {
            None => {
                let mut lease = new_lease(node, duration);
                let metadata = &mut lease["metadata"];
                metadata.as_object_mut().map(|m| m.remove("uid"));
                metadata
                    .as_object_mut()
                    .map(|m| m.remove("creationTimestamp"));
                leases.create(&post, &typed(lease)?).await
            }
            Some(stored) => {
                let stored = serde_json::to_value(stored).map_err(kube::Error::SerdeError)?;
                let lease = renewed(stored, node, duration);
                leases.replace(node, &post, &typed(lease)?).await
            }
        };
        match written {
            Ok(_) => break,
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// A lease must outlive several renewal periods, also when the agent
/// renews more often than the kubelet's 10 s (in tests).
fn lease_duration(interval: Duration) -> u64 {
    LEASE_DURATION_SECONDS.max(interval.as_secs() * 4)
}

fn new_lease(node: &str, duration: u64) -> Value {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": NAMESPACE,
            "uid": new_uid(),
            "creationTimestamp": now_rfc3339(),
        },
        "spec": {},
    });
    renewed(lease, node, duration)
}

fn renewed(mut lease: Value, node: &str, duration: u64) -> Value {
    let spec = &mut lease["spec"];
    spec["holderIdentity"] = json!(node);
    spec["leaseDurationSeconds"] = json!(duration);
    spec["renewTime"] = json!(now_rfc3339_micro());
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_names_its_holder_and_is_renewed_now() {
        let lease = new_lease("node1", 40);
        assert_eq!(lease["apiVersion"], "coordination.k8s.io/v1");
        assert_eq!(lease["spec"]["holderIdentity"], "node1");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        assert!(lease["spec"]["renewTime"].as_str().unwrap().contains('.'));
        assert_eq!(key("node1"), "/registry/leases/kube-node-lease/node1");
    }
}
