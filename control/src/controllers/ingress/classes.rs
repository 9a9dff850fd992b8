//! Which Ingresses are skiff's: those naming an IngressClass whose
//! controller is skiff's.

use serde_json::Value;

use crate::controllers::kind::Kind;
use crate::controllers::{Cache, meta};
use crate::kinds::{INGRESS_CLASS_ANNOTATION, SKIFF_INGRESS_CONTROLLER};

/// The names of the IngressClasses whose controller is skiff's.
pub fn skiff_classes(cache: &Cache) -> Vec<String> {
    cache
        .list(Kind::IngressClass)
        .iter()
        .filter(|class| class["spec"]["controller"] == SKIFF_INGRESS_CONTROLLER)
        .map(|class| meta::name(class).to_owned())
        .collect()
}

/// Whether `ingress` names one of `classes`, in `ingressClassName` or in
/// the older annotation.
pub fn is_served(ingress: &Value, classes: &[String]) -> bool {
    let class = ingress["spec"]["ingressClassName"]
        .as_str()
        .or_else(|| ingress["metadata"]["annotations"][INGRESS_CLASS_ANNOTATION].as_str());
    class.is_some_and(|class| classes.iter().any(|served| served == class))
}
