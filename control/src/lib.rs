//! skiff-control: a slim Kubernetes-compatible API server that keeps its
//! objects in etcd under Kubernetes' own key layout, with the scheduler and
//! the controllers.
//!
//! A request goes [`server`] (HTTPS, authentication) → [`api`] (routing,
//! discovery, the verbs, generic over the resource table `api::registry`) →
//! the kind's strategy in [`kinds`] (defaults, validation, allocations from
//! [`alloc`], status and deletion rules) → [`store`] (etcd). [`manager`]
//! runs the [`scheduler`] and the [`controllers`] while this instance leads;
//! they write through the API like any client. docs/ARCHITECTURE.md has
//! the whole picture.

pub mod admission;
pub mod alloc;
pub mod api;
pub mod authz;
pub mod bootstrap_token;
pub mod clock;
pub mod controllers;
pub mod etcd_auth_cli;
pub mod etcd_flags;
pub mod kinds;
pub mod maintenance;
pub mod manager;
pub mod patch;
pub mod quantity;
pub mod scheduler;
pub mod secrets_cli;
pub mod server;
pub mod serviceaccount;
pub mod snapshot;
pub mod store;
pub mod validation;

#[cfg(test)]
mod test_support;
