//! The agent's view of the cluster: Services and EndpointSlices listed and
//! watched straight from etcd (`etcd_watch`), kept as compact records of
//! what the agent reads of them (`records`) in a cache (`state`), and turned
//! into the frontends the datapath serves (`frontends`).

pub mod etcd_watch;
pub mod frontends;
pub mod records;
pub mod state;
