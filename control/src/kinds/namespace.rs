//! Namespaces: a DELETE only marks one Terminating; the namespace controller
//! deletes what is in it, then clears the `kubernetes` finalizer through
//! `/finalize`, which removes the namespace. The system namespaces stay.

use serde_json::{Value, json};

use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use crate::clock;

/// The finalizer that keeps a namespace until its contents are gone, as
/// kube-apiserver sets it.
const FINALIZER: &str = "kubernetes";

/// The namespaces a DELETE is refused for.
const UNDELETABLE: &[&str] = &["default", "kube-system", "kube-public"];

#[derive(Debug)]
pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status, Subresource::Finalize]
    }

    fn prepare_for_create(&self, namespace: &mut Value) {
        if namespace["spec"]["finalizers"].is_null() {
            namespace["spec"]["finalizers"] = json!([FINALIZER]);
        }
    }

    /// Only `/finalize` changes the finalizers.
    fn prepare_for_update(&self, namespace: &mut Value, old: &Value) {
        let kept = old["spec"]["finalizers"].clone();
        match namespace["spec"].as_object_mut() {
            Some(spec) if kept.is_null() => {
                spec.remove("finalizers");
            }
            _ => namespace["spec"]["finalizers"] = kept,
        }
    }

    fn initial_status(&self) -> Option<Value> {
        Some(json!({ "phase": "Active" }))
    }

    fn check_delete(&self, name: &str) -> Result<(), Refusal> {
        if UNDELETABLE.contains(&name) {
            return Err(Refusal::Forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        Ok(())
    }

    fn graceful_deletion(&self, _namespace: &Value, _requested: Option<i64>) -> Option<i64> {
        Some(0)
    }

    fn mark_deleting(&self, mut namespace: Value, _grace: i64) -> Value {
        if namespace["metadata"]["deletionTimestamp"].is_null() {
            namespace["metadata"]["deletionTimestamp"] = clock::now();
        }
        namespace["status"]["phase"] = json!("Terminating");
        namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_namespaces_stay_and_others_turn_terminating() {
        assert_eq!(
            NamespaceStrategy.check_delete("kube-system"),
            Err(Refusal::Forbidden(
                "namespaces \"kube-system\" is forbidden: this namespace may not be deleted"
                    .to_owned()
            ))
        );
        assert_eq!(NamespaceStrategy.check_delete("kube-node-lease"), Ok(()));
        let namespace = json!({ "metadata": { "name": "a" }, "status": { "phase": "Active" } });
        let grace = NamespaceStrategy
            .graceful_deletion(&namespace, None)
            .unwrap();
        let marked = NamespaceStrategy.mark_deleting(namespace, grace);
        assert_eq!(marked["status"]["phase"], "Terminating");
        let since = marked["metadata"]["deletionTimestamp"].clone();
        assert!(since.as_str().unwrap().ends_with('Z'));
        let again = NamespaceStrategy.mark_deleting(marked, grace);
        assert_eq!(again["metadata"]["deletionTimestamp"], since);
    }
}
