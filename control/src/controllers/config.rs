//! The controllers' tunables.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::leader::LeaderElection;
use ipnet::IpNet;

/// Where the local-path provisioner puts volumes unless told otherwise.
pub const DEFAULT_LOCAL_PATH_ROOT: &str = "/var/lib/skiff/storage";
/// The image the local-path provisioner's helper pods run unless told
/// otherwise (`cargo xtask images` builds it).
pub const DEFAULT_LOCAL_PATH_HELPER_IMAGE: &str = "skiff/busybox";

/// Tunables of the controllers.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Take the lease `kube-system/skiff-control` before acting, so that
    /// only one of several instances does.
    pub leader_election: Option<LeaderElection>,
    /// Each controller looks at everything at least this often, also when
    /// nothing changed (time-based decisions such as node heartbeats).
    pub resync: Duration,
    /// A node whose heartbeats stop for this long becomes Ready=Unknown.
    pub node_monitor_grace_period: Duration,
    /// The pods of a node not Ready for this long are deleted and replaced
    /// elsewhere.
    pub pod_eviction_timeout: Duration,
    /// Where nodes without a podCIDR get theirs, one range per family (the
    /// primary first); none assigns none.
    pub cluster_cidrs: Vec<IpNet>,
    /// The prefix length of each node's IPv4 pod CIDR.
    pub node_cidr_mask_size: u8,
    /// The prefix length of each node's IPv6 pod CIDR.
    pub node_cidr_mask_size_ipv6: u8,
    /// Where on each node the local-path provisioner's volumes live, one
    /// directory per volume.
    pub local_path_root: PathBuf,
    /// The image of the pods that delete those directories (it needs `rm`).
    pub local_path_helper_image: String,
    /// The cluster CA the root-ca-cert-publisher puts in every namespace
    /// (the API server sets it from its PKI); `None` publishes nothing.
    pub root_ca_cert: Option<String>,
    /// The CA the CertificateSigningRequest signer signs with; `None` signs
    /// nothing (the server sets the cluster CA).
    pub signing_ca: Option<SigningCa>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            leader_election: Some(LeaderElection::default()),
            resync: Duration::from_secs(1),
            // kube-controller-manager's --node-monitor-grace-period.
            node_monitor_grace_period: Duration::from_secs(40),
            // The default toleration of the unreachable and not-ready
            // taints: a node cut off may still run its pods, and evicting
            // them early can leave two copies running. Tests shorten it.
            pod_eviction_timeout: Duration::from_secs(300),
            cluster_cidrs: vec!["10.244.0.0/16".parse().expect("a valid CIDR")],
            node_cidr_mask_size: 24,
            // kube-controller-manager's --node-cidr-mask-size-ipv6.
            node_cidr_mask_size_ipv6: 64,
            local_path_root: PathBuf::from(DEFAULT_LOCAL_PATH_ROOT),
            local_path_helper_image: DEFAULT_LOCAL_PATH_HELPER_IMAGE.to_owned(),
            root_ca_cert: None,
            signing_ca: None,
        }
    }
}

impl ControllerConfig {
    /// The prefix length of the node pod CIDRs cut from `cluster`.
    pub fn node_cidr_mask_size_of(&self, cluster: IpNet) -> u8 {
        match cluster {
            IpNet::V4(_) => self.node_cidr_mask_size,
            IpNet::V6(_) => self.node_cidr_mask_size_ipv6,
        }
    }
}

/// The cluster CA the signer signs with (PEM).
#[derive(Clone)]
pub struct SigningCa {
    pub cert: String,
    pub key: String,
}

/// The key stays out of logs.
impl fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCa").finish_non_exhaustive()
    }
}
