//! `networking.k8s.io/v1` Ingresses and IngressClasses, with
//! kube-apiserver's validation (`pkg/apis/networking/validation`). An
//! Ingress created without a class gets the default IngressClass, as the
//! `DefaultIngressClass` admission plugin does; skiff's own class `skiff`
//! is created at start and is the default.

mod class;
mod spec;

use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{BoxFuture, Strategy, Subresource};

/// The IngressClass skiff serves, the controller it names and the
/// annotation that makes a class the default one.
pub const SKIFF_INGRESS_CLASS: &str = "skiff";
pub const SKIFF_INGRESS_CONTROLLER: &str = "skiff.io/ingress-controller";
pub const DEFAULT_INGRESS_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The LoadBalancer Service in front of every node's Ingress listeners
/// (ports 80 and 443); its EndpointSlice lists the Ready nodes.
pub const INGRESS_SERVICE_NAMESPACE: &str = "kube-system";
pub const INGRESS_SERVICE_NAME: &str = "skiff-ingress";
/// The class annotation older Ingresses carry instead of `ingressClassName`.
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

#[derive(Debug)]
pub struct IngressStrategy;

impl Strategy for IngressStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn admit<'a>(
        &'a self,
        env: &'a Env,
        ingress: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            // The plugin leaves alone an Ingress that names a class either way.
            let named = !ingress["spec"]["ingressClassName"].is_null()
                || !ingress["metadata"]["annotations"][INGRESS_CLASS_ANNOTATION].is_null();
            if named {
                return Ok(());
            }
            let classes = env.list(skiff_etcd::keys::INGRESS_CLASSES).await?;
            if let Some(class) = default_ingress_class(&classes) {
                if !ingress["spec"].is_object() {
                    ingress["spec"] = json!({});
                }
                ingress["spec"]["ingressClassName"] = json!(class);
            }
            Ok(())
        })
    }

    fn validate(&self, _env: &Env, ingress: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(spec::validate_create(ingress))
    }

    fn validate_update(&self, _env: &Env, ingress: &Value, _old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(spec::validate(ingress))
    }
}

#[derive(Debug)]
pub struct IngressClassStrategy;

impl Strategy for IngressClassStrategy {
    fn prepare_for_create(&self, class: &mut Value) {
        class::default_parameters_scope(class);
    }

    fn prepare_for_update(&self, class: &mut Value, _old: &Value) {
        class::default_parameters_scope(class);
    }

    fn validate(&self, _env: &Env, class: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(class::validate(class))
    }

    fn validate_update(&self, _env: &Env, class: &Value, old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(class::validate_update(class, old))
    }
}

/// The default class among `classes`, by the DEFAULT_INGRESS_CLASS_ANNOTATION annotation.
pub fn default_ingress_class(classes: &[Value]) -> Option<&str> {
    super::default_class::default_class(classes, DEFAULT_INGRESS_CLASS_ANNOTATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, default: bool, created: &str) -> Value {
        json!({ "metadata": { "name": name, "creationTimestamp": created,
            "annotations": { DEFAULT_INGRESS_CLASS_ANNOTATION: default.to_string() } } })
    }

    #[test]
    fn the_newest_default_class_wins() {
        let classes = [
            class("old", true, "2026-01-01T00:00:00Z"),
            class("new", true, "2026-02-01T00:00:00Z"),
            class("newest", false, "2026-03-01T00:00:00Z"),
        ];
        assert_eq!(default_ingress_class(&classes), Some("new"));
        assert_eq!(default_ingress_class(&classes[2..]), None);
    }
}
