//! Pod CIDRs: a Node without `spec.podCIDR` gets the next free /24 (the
//! configured size) of the cluster CIDR, and on a dual-stack cluster
//! (`--cluster-cidr=v4,v6`, as kube-controller-manager's) the next free /64
//! of the IPv6 one too, in `spec.podCIDRs`. The claims and the Node update
//! are one write (see `alloc::PodCidrClaims`), so two nodes never get the
//! same range; the podCIDRs a node registered with (the local cluster's
//! agents set their own) are kept and counted as taken.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde_json::Value;
use tracing::{info, warn};

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta};
use crate::alloc::{PodCidrClaims, claim_name};
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
        let clusters = &context.config.cluster_cidrs;
        if clusters.is_empty() {
            return Ok(vec![]);
        }
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
            let spec = &node["spec"];
            let listed = spec["podCIDRs"].as_array().into_iter().flatten();
            for cidr in listed.chain([&spec["podCIDR"]]).filter_map(Value::as_str) {
                taken.insert(cidr.replace('/', "-"));
            }
        }
        let mut wrote = false;
        'nodes: for node in waiting {
            let mut cidrs = Vec::new();
            for &cluster in clusters {
                let size = context.config.node_cidr_mask_size_of(cluster);
                let Some(cidr) = next_free(cluster, size, &taken) else {
                    warn!(node = meta::name(node), %cluster, "no pod CIDR left");
                    break 'nodes;
                };
                cidrs.push(cidr);
            }
            taken.extend(cidrs.iter().map(|cidr| claim_name(*cidr)));
            let key = object_key(Kind::Node.storage(), None, meta::name(node));
            if claims.assign(&key, node, &cidrs).await? {
                info!(node = meta::name(node), ?cidrs, "pod CIDRs assigned");
                wrote = true;
            }
        }
        Ok(if wrote { vec![Kind::Node] } else { vec![] })
    }
}

/// The first `/size` of `cluster` not in `taken` (as `<network>-<size>`).
fn next_free(cluster: IpNet, size: u8, taken: &BTreeSet<String>) -> Option<IpNet> {
    cluster
        .subnets(size)
        .ok()?
        .find(|cidr| !taken.contains(&claim_name(*cidr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_first_free_range() {
        let cluster: IpNet = "10.244.0.0/16".parse().unwrap();
        let taken = BTreeSet::from(["10.244.0.0-24".to_owned(), "10.244.2.0-24".to_owned()]);
        assert_eq!(
            next_free(cluster, 24, &taken).unwrap().to_string(),
            "10.244.1.0/24"
        );
        let tiny: IpNet = "10.244.0.0/24".parse().unwrap();
        assert!(next_free(tiny, 24, &BTreeSet::from(["10.244.0.0-24".to_owned()])).is_none());
        assert!(
            next_free(tiny, 23, &BTreeSet::new()).is_none(),
            "larger than the cluster"
        );
    }

    #[test]
    fn ipv6_ranges_of_the_node_size() {
        let cluster: IpNet = "fd00:10:244::/56".parse().unwrap();
        let taken = BTreeSet::from(["fd00:10:244::-64".to_owned()]);
        assert_eq!(
            next_free(cluster, 64, &taken).unwrap().to_string(),
            "fd00:10:244:1::/64"
        );
    }
}
