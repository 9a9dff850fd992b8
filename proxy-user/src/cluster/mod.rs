//! The agent's view of the cluster: Services and EndpointSlices listed and
//! watched straight from etcd (`etcd_watch`), cached (`state`), and turned
//! into the frontends the datapath serves (`frontends`).

pub mod etcd_watch;
pub mod frontends;
pub mod state;
