//! The controllers of skiff-control. Every controller is level-triggered:
//! on any change to the cached objects (and at least every `resync`) it
//! compares the whole cluster with what it wants and writes the difference
//! through the API's own code paths. After writing it waits until the cache
//! shows its writes, so a pass never acts twice on the same state. The loop
//! that runs them (and the scheduler) is `crate::manager`.

mod cache;
mod client;
pub mod clusterroleaggregation;
mod config;
mod controller;
pub mod cronjob;
pub mod csrapproving;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
mod error;
pub mod events;
pub mod gc;
pub mod ingress;
pub mod job;
mod kind;
mod leader;
pub mod localpath;
pub mod meta;
pub mod namespace;
pub mod nodelifecycle;
pub mod podcidr;
pub mod protection;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccounts;
mod services;
pub mod statefulset;
pub mod storage;
pub mod tokencleaner;
pub mod volumebinder;

pub use cache::Cache;
pub use client::{Client, ClientError, written};
pub use config::{
    ControllerConfig, DEFAULT_LOCAL_PATH_HELPER_IMAGE, DEFAULT_LOCAL_PATH_ROOT, SigningCa,
};
pub use controller::{Context, Controller};
pub use error::ControllerError;
pub use kind::Kind;
pub use leader::{LeaderElection, default_identity};
