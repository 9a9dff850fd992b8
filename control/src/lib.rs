//! skiff-control: a slim Kubernetes-compatible API server that keeps its
//! objects in etcd under Kubernetes' own key layout (see DESIGN.md).

pub mod alloc;
pub mod api;
pub mod controllers;
pub mod patch;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod validation;

#[cfg(test)]
mod test_support;
