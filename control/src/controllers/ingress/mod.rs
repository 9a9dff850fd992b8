//! The control plane's side of Ingress (the agents' proxies route the
//! requests): the EndpointSlice that puts every Ready node's ports 80 and
//! 443 behind `kube-system/skiff-ingress`, and the status and Events of
//! the Ingresses of skiff's classes.

mod endpoints;
mod status;

pub use endpoints::IngressEndpoints;
pub use status::IngressStatus;

use serde_json::Value;

use super::kind::Kind;
use super::{Cache, meta};
use crate::kinds::{INGRESS_CLASS_ANNOTATION, SKIFF_INGRESS_CONTROLLER};

/// The names of the IngressClasses whose controller is skiff's.
fn skiff_classes(cache: &Cache) -> Vec<String> {
    cache
        .list(Kind::IngressClass)
        .iter()
        .filter(|class| class["spec"]["controller"] == SKIFF_INGRESS_CONTROLLER)
        .map(|class| meta::name(class).to_owned())
        .collect()
}

/// Whether `ingress` names one of `classes`, in `ingressClassName` or in
/// the older annotation.
fn is_served(ingress: &Value, classes: &[String]) -> bool {
    let class = ingress["spec"]["ingressClassName"]
        .as_str()
        .or_else(|| ingress["metadata"]["annotations"][INGRESS_CLASS_ANNOTATION].as_str());
    class.is_some_and(|class| classes.iter().any(|served| served == class))
}
