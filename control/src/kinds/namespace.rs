//! Namespaces: a DELETE only marks one Terminating; the namespace controller
//! deletes what is in it, then the namespace. The system namespaces stay.

use serde_json::{Value, json};

use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use crate::clock;

/// The namespaces a DELETE is refused for.
const UNDELETABLE: &[&str] = &["default", "kube-system", "kube-public"];

#[derive(Debug)]
pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
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
