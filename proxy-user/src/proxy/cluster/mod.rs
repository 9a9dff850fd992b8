//! The agent's view of the cluster: Services and EndpointSlices listed and
//! watched straight from etcd (`etcd_watch`) or through an API server
//! (`kube_watch`), kept as compact records of
//! what the agent reads of them (`records`) in a cache (`state`), and turned
//! into the frontends the cluster wants served (`frontends`), in the
//! cluster's own terms: nothing here knows the datapath's maps. The cache
//! is shared with the agent's other readers (`shared`). Cluster-wide
//! traffic follows topology hints and this node's zone (`topology`).

pub mod etcd_watch;
pub mod frontends;
pub mod kube_watch;
pub mod protocol;
pub mod records;
pub mod service_ref;
pub mod shared;
pub mod state;
pub mod topology;
