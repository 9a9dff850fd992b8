//! Nodes' pod CIDRs: one key per claimed range,
//! `/registry/skiff/podcidrs/<network>-<prefix length>`, whose value is the
//! node's name. A claim is only created together with the Node update that
//! records the range, in one transaction that requires the claim to be
//! absent and the Node unchanged, so two nodes never get the same range.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use skiff_etcd::keys::{POD_CIDRS, collection_prefix, object_key};
use skiff_etcd::kv::Guarded;
use skiff_etcd::list_watch::LIST_PAGE_SIZE;

use crate::store::{Store, StoreError, resource_version_of};
use ipnet::IpNet;

/// The claims of pod CIDRs, next to the Nodes in `store`.
pub struct PodCidrClaims {
    store: Store,
}

impl PodCidrClaims {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The ranges claimed by the nodes in `nodes` (as `<network>-<size>`).
    /// The claims of other nodes are released: those nodes are gone.
    pub async fn held_by(&self, nodes: &BTreeSet<String>) -> Result<BTreeSet<String>, StoreError> {
        let kv = self.store.client();
        let prefix = collection_prefix(POD_CIDRS, None);
        let claims = kv.list(&prefix, LIST_PAGE_SIZE).await?;
        let mut held = BTreeSet::new();
        for claim in claims.entries {
            let key = claim.key_str();
            if nodes.contains(String::from_utf8_lossy(&claim.value).as_ref()) {
                held.insert(key.trim_start_matches(&prefix).to_owned());
            } else {
                // Only the claim as read: a conflict means another instance
                // released it (or someone claimed it again) meanwhile.
                kv.delete(&key, claim.mod_revision).await?;
            }
        }
        Ok(held)
    }

    /// Records `cidrs` (one per family, the primary first) as `node`'s pod
    /// CIDRs (at the node's stored key) and claims them, all or none:
    /// `false` when the node changed or another node claimed a range first
    /// (the next pass sees why).
    pub async fn assign(
        &self,
        key: &str,
        node: &Value,
        cidrs: &[IpNet],
    ) -> Result<bool, StoreError> {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let Some(primary) = cidrs.first() else {
            return Ok(false);
        };
        let mut updated = node.clone();
        updated["spec"]["podCIDR"] = json!(primary.to_string());
        updated["spec"]["podCIDRs"] = json!(cidrs.iter().map(IpNet::to_string).collect::<Vec<_>>());
        let mut also = Guarded::new();
        for cidr in cidrs {
            let claim = object_key(POD_CIDRS, None, &claim_name(*cidr));
            also = also.absent(&claim).put(&claim, name);
        }
        match self
            .store
            .update_with(key, &updated, resource_version_of(node), also)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// How a range is named in its claim's key (and in `held_by`).
pub fn claim_name(cidr: IpNet) -> String {
    cidr.to_string().replace('/', "-")
}
