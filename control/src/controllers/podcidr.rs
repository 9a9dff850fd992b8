//! Pod CIDRs: a Node without `spec.podCIDR` gets the next free /24 (the
//! configured size) of the cluster CIDR. The claim and the Node update are
//! one write (see `alloc::PodCidrClaims`), so two nodes never get the same
//! range; a podCIDR a node registered with (the local cluster's agents set
//! their own) is kept and counted as taken.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;
use tracing::{info, warn};

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta};
use crate::alloc::{Ipv4Cidr, PodCidrClaims, claim_name};
use crate::store::object_key;

#[derive(Default)]
pub struct PodCidrs {
    /// The nodes at the last look at the claims: claims are only read when
    /// a node waits for a range or the nodes changed.
    known: BTreeSet<String>,
}

impl Controller for PodCidrs {
    const NAME: &'static str = "podcidr";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let Some(cluster) = context.config.cluster_cidr else {
            return Ok(vec![]);
        };
        let nodes = context.cache.list(Kind::Node);
        let waiting: Vec<&Value> = nodes
            .iter()
            .filter(|node| node["spec"]["podCIDR"].as_str().is_none_or(str::is_empty))
            .collect();
        let names: BTreeSet<String> = nodes
            .iter()
            .map(|node| meta::name(node).to_owned())
            .collect();
        if waiting.is_empty() && names == self.known {
            return Ok(vec![]);
        }
        let claims = PodCidrClaims::new(context.cache.store().clone());
        let mut taken = claims.held_by(&names).await?;
        self.known = names;
        for node in &nodes {
            if let Some(cidr) = node["spec"]["podCIDR"].as_str() {
                taken.insert(cidr.replace('/', "-"));
            }
        }
        let size = context.config.node_cidr_mask_size;
        let mut wrote = false;
        for node in waiting {
            let Some(cidr) = next_free(cluster, size, &taken) else {
                warn!(node = meta::name(node), %cluster, "no pod CIDR left");
                break;
            };
            taken.insert(claim_name(cidr));
            let key = object_key(Kind::Node.storage(), None, meta::name(node));
            if claims.assign(&key, node, cidr).await? {
                info!(node = meta::name(node), %cidr, "pod CIDR assigned");
                wrote = true;
            }
        }
        Ok(if wrote { vec![Kind::Node] } else { vec![] })
    }
}

/// The first `/size` of `cluster` not in `taken` (as `<network>-<size>`).
fn next_free(cluster: Ipv4Cidr, size: u8, taken: &BTreeSet<String>) -> Option<Ipv4Cidr> {
    if size < cluster.prefix() || size > 32 {
        return None;
    }
    let count = 1u64 << (size - cluster.prefix());
    let step = 1u64 << (32 - size);
    let base = u64::from(u32::from(cluster.network()));
    (0..count)
        .map(|index| Ipv4Addr::from((base + index * step) as u32))
        .filter_map(|network| Ipv4Cidr::new(network, size).ok())
        .find(|cidr| !taken.contains(&claim_name(*cidr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_first_free_range() {
        let cluster: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
        let taken = BTreeSet::from(["10.244.0.0-24".to_owned(), "10.244.2.0-24".to_owned()]);
        assert_eq!(
            next_free(cluster, 24, &taken).unwrap().to_string(),
            "10.244.1.0/24"
        );
        let tiny: Ipv4Cidr = "10.244.0.0/24".parse().unwrap();
        assert!(next_free(tiny, 24, &BTreeSet::from(["10.244.0.0-24".to_owned()])).is_none());
    }
}
