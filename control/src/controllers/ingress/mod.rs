//! The control plane's side of Ingress (the agents' proxies route the
//! requests): the EndpointSlice that puts every Ready node's ports 80 and
//! 443 behind `kube-system/skiff-ingress`, and the status and Events of
//! the Ingresses of skiff's classes.

mod classes;
mod endpoints;
mod status;

pub use endpoints::IngressEndpoints;
pub use status::IngressStatus;
