//! The node's Lease, `kube-node-lease/<node>`: the cheap heartbeat the
//! node lifecycle controller watches; renewed through the API server.
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};

use crate::apiserver::{is_conflict, post_params, typed};
use crate::kubelet::store::now_rfc3339_micro;

/// As the kubelet: the lease expires after 40 s without a renewal.
const LEASE_DURATION_SECONDS: u64 = 40;
const NAMESPACE: &str = "kube-node-lease";
const ATTEMPTS: usize = 5;

/// The Lease replaced with the resourceVersion read, created when missing.
pub async fn renew(
    client: &kube::Client,
    node: &str,
    interval: Duration,
) -> Result<(), kube::Error> {
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let duration = lease_duration(interval);
    let post = post_params();
    for _ in 0..ATTEMPTS {
        let written = match leases.get_opt(node).await? {
            None => {
                leases
                    .create(&post, &typed(new_lease(node, duration))?)
                    .await
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
    }
}
