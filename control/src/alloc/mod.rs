//! ClusterIP, NodePort and LoadBalancer IP allocation with the state in etcd,
//! so that several skiff-control instances never hand out the same value.
//!
//! Every allocated value is one key, `/registry/skiff/allocations/<kind>/<value>`,
//! whose value names the owner. A key is only ever created in a transaction
//! that requires it to be absent (`create_revision == 0`), which is what makes
//! concurrent allocators safe without any lock. Nodes' pod CIDRs are claimed
//! the same way (`pod_cidrs`).

mod pod_cidrs;
mod pool;
mod service_cidrs;

pub use pod_cidrs::{PodCidrClaims, claim_name};
pub use pool::{Pool, PortPool};
pub use service_cidrs::{
    CidrListError, IpFamily, IpPool, LoadBalancerPools, ServiceCidrs, parse_dual_stack,
};

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;
use rand::Rng;
use serde::{Deserialize, Serialize};
use skiff_etcd::keys::{ALLOCATIONS, collection_prefix, object_key};
use skiff_etcd::kv::{EtcdError, Kv, Written};
use tracing::info;

/// kube-apiserver's default `--service-cluster-ip-range`.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// kube-apiserver's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: RangeInclusive<u16> = 30000..=32767;

/// The pools' names under `ALLOCATIONS`.
pub const CLUSTER_IPS: &str = "clusterips";
pub const NODE_PORTS: &str = "nodeports";
pub const LOAD_BALANCER_IPS: &str = "loadbalancerips";

/// The key of the record that `value` of pool `kind` is allocated.
pub fn record_key(kind: &str, value: impl std::fmt::Display) -> String {
    let pool = collection_prefix(&object_key(ALLOCATIONS, None, kind), None);
    format!("{pool}{value}")
}

/// Random picks before falling back to scanning for a free value. With the
/// range at most half full, 16 misses in a row happen with p < 2^-16.
const RANDOM_ATTEMPTS: usize = 16;
/// Rounds of "claim, else read the holder" before giving up on a key that
/// keeps changing under us.
const CONTENDED_ATTEMPTS: usize = 5;

/// Who holds an allocation: the object it was allocated for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    /// The same object: uids are unique, names are reused after deletion.
    fn is(&self, other: &Owner) -> bool {
        self.uid == other.uid
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} (uid {})", self.namespace, self.name, self.uid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// The REST layer turns this into 422 `provided IP is already allocated`
    /// (or `provided port …`).
    #[error("provided {what} is already allocated")]
    AlreadyAllocated { what: &'static str, holder: Owner },
    #[error(
        "provided {what} {value} is not in the valid range. The range of valid {what}s is {range}"
    )]
    NotInRange {
        what: &'static str,
        value: String,
        range: String,
    },
    #[error("range {range} is exhausted: no free {what} left")]
    Exhausted { what: &'static str, range: String },
    #[error("{what} {value} is not allocated")]
    NotAllocated { what: &'static str, value: String },
    #[error("{what} {value} is allocated to {holder}, not to the releasing object")]
    NotOwner {
        what: &'static str,
        value: String,
        holder: Owner,
    },
    #[error("{family} is not configured on this cluster")]
    NotConfigured { family: IpFamily },
    #[error("{what} {value} is contended; try again")]
    Contended { what: &'static str, value: String },
    #[error("allocation record {key} is corrupt: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// Allocates values of one pool. Cheap to clone; clones share the etcd
/// connection.
#[derive(Clone)]
pub struct Allocator<P> {
    kv: Kv,
    /// The allocations of this pool: `<ALLOCATIONS>/<kind>/`.
    prefix: String,
    pool: P,
}

/// ClusterIPs of one family.
pub type ClusterIpAllocator = Allocator<IpPool>;
/// LoadBalancer ingress IPs of one family.
pub type IpAllocator = Allocator<IpPool>;
/// NodePorts.
pub type PortAllocator = Allocator<PortPool>;

impl ClusterIpAllocator {
    /// ClusterIPs from one service range. Its first address is reserved for
    /// the `kubernetes` Service: only an explicit request gets it. Both
    /// families' records live in one pool of keys: addresses never clash.
    pub fn cluster_ips(kv: Kv, cidr: IpNet) -> Self {
        let reserved = vec![kubernetes_service_ip(cidr)];
        Self::new(kv, CLUSTER_IPS, IpPool::new(cidr, reserved))
    }
}

impl IpAllocator {
    /// LoadBalancer ingress IPs from one configured pool. Both families'
    /// records live in one pool of keys: addresses never clash.
    pub fn load_balancer_ips(kv: Kv, cidr: IpNet) -> Self {
        Self::new(kv, LOAD_BALANCER_IPS, IpPool::new(cidr, vec![]))
    }
}

impl PortAllocator {
    /// NodePorts (and health check node ports) from `range`.
    pub fn node_ports(kv: Kv, range: PortPool) -> Self {
        Self::new(kv, NODE_PORTS, range)
    }
}

impl<P: Pool> Allocator<P> {
    fn new(kv: Kv, kind: &str, pool: P) -> Self {
        Self {
            kv,
            prefix: collection_prefix(&object_key(ALLOCATIONS, None, kind), None),
            pool,
        }
    }

    pub fn pool(&self) -> &P {
        &self.pool
    }

    fn key(&self, item: P::Item) -> String {
        format!("{}{item}", self.prefix)
    }

    /// A free value, chosen at random (and by scanning when the range is
    /// nearly full), now held by `owner`.
    pub async fn allocate(&self, owner: &Owner) -> Result<P::Item, AllocError> {
        let len = self.pool.size();
        for _ in 0..RANDOM_ATTEMPTS {
            let item = self.pool.nth(rand::rng().random_range(0..len));
            if !self.pool.is_reserved(item) && self.claim(item, owner).await? {
                return Ok(item);
            }
        }
        // Start the scan at a random point so that concurrent scanners do not
        // all race for the same first free value.
        let taken = self.taken().await?;
        let start = rand::rng().random_range(0..len);
        for step in 0..len {
            let item = self.pool.nth((start + step) % len);
            if self.pool.is_reserved(item) || taken.contains(&self.key(item)) {
                continue;
            }
            if self.claim(item, owner).await? {
                return Ok(item);
            }
        }
        Err(AllocError::Exhausted {
            what: P::WHAT,
            range: self.pool.describe(),
        })
    }

    /// Allocates exactly `item` to `owner`. Succeeds if `owner` already holds
    /// it, so retries and a NodePort shared by TCP and UDP ports are fine.
    pub async fn allocate_specific(&self, item: P::Item, owner: &Owner) -> Result<(), AllocError> {
        if !self.pool.contains(item) {
            return Err(AllocError::NotInRange {
                what: P::WHAT,
                value: item.to_string(),
                range: self.pool.describe(),
            });
        }
        for _ in 0..CONTENDED_ATTEMPTS {
            if self.claim(item, owner).await? {
                return Ok(());
            }
            // Released between our claim and this read: claim again.
            let Some(holder) = self.owner_of(item).await? else {
                continue;
            };
            return if holder.is(owner) {
                Ok(())
            } else {
                // The client's error names no holder (as kube-apiserver's
                // does not); the log says which object has the value.
                info!(
                    what = P::WHAT,
                    value = %item,
                    %holder,
                    requester = %owner,
                    "refused a requested value another object holds"
                );
                Err(AllocError::AlreadyAllocated {
                    what: P::WHAT,
                    holder,
                })
            };
        }
        Err(self.contended(item))
    }

    /// Frees `item` if `owner` holds it.
    pub async fn release(&self, item: P::Item, owner: &Owner) -> Result<(), AllocError> {
        let key = self.key(item);
        for _ in 0..CONTENDED_ATTEMPTS {
            let Some(record) = self.kv.get(&key).await? else {
                return Err(AllocError::NotAllocated {
                    what: P::WHAT,
                    value: item.to_string(),
                });
            };
            let holder = self.decode(item, &record.value)?;
            if !holder.is(owner) {
                return Err(AllocError::NotOwner {
                    what: P::WHAT,
                    value: item.to_string(),
                    holder,
                });
            }
            // Delete only the record we checked: if it changed meanwhile
            // (released and taken by someone else), look again.
            if let Written::Done { .. } = self.kv.delete(&key, record.mod_revision).await? {
                return Ok(());
            }
        }
        Err(self.contended(item))
    }

    /// Who holds `item`, if anyone.
    pub async fn owner_of(&self, item: P::Item) -> Result<Option<Owner>, AllocError> {
        let record = self.kv.get(&self.key(item)).await?;
        record
            .map(|record| self.decode(item, &record.value))
            .transpose()
    }

    /// Creates the key for `item` unless it exists; `false` if it did.
    async fn claim(&self, item: P::Item, owner: &Owner) -> Result<bool, AllocError> {
        let value = serde_json::to_vec(owner).expect("an Owner always serializes");
        let written = self.kv.create(&self.key(item), value).await?;
        Ok(matches!(written, Written::Done { .. }))
    }

    /// The keys of all current allocations of this pool.
    async fn taken(&self) -> Result<HashSet<String>, AllocError> {
        Ok(self.kv.keys(&self.prefix).await?.into_iter().collect())
    }

    fn decode(&self, item: P::Item, value: &[u8]) -> Result<Owner, AllocError> {
        serde_json::from_slice(value).map_err(|source| AllocError::Corrupt {
            key: self.key(item),
            source,
        })
    }

    fn contended(&self, item: P::Item) -> AllocError {
        AllocError::Contended {
            what: P::WHAT,
            value: item.to_string(),
        }
    }
}

/// The service CIDR's tenth address, `kube-system/kube-dns`'s; `None` when
/// the range is smaller.
pub fn kube_dns_service_ip(cidr: IpNet) -> Option<IpAddr> {
    let pool = IpPool::new(cidr, vec![]);
    (pool.size() >= 10).then(|| pool.nth(9))
}

/// The service CIDR's address reserved for `default/kubernetes`.
pub fn kubernetes_service_ip(cidr: IpNet) -> IpAddr {
    IpPool::new(cidr, vec![]).first_address()
}

#[cfg(test)]
mod tests;
