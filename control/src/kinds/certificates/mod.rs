//! certificates.k8s.io/v1 CertificateSigningRequests, as Kubernetes'
//! registry strategies: the requester (`spec.username`, `uid`, `groups`)
//! is recorded from the authenticated user and the status starts empty; the
//! spec never changes after creation; `/status` writes the certificate and
//! conditions other than Approved and Denied, `/approval` only the
//! conditions; condition timestamps are filled in.

pub mod request;
mod validation;

use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use crate::authz::User;
use crate::clock;

/// The conditions only `/approval` decides.
const APPROVAL_TYPES: &[&str] = &["Approved", "Denied"];

#[derive(Debug)]
pub struct CertificateSigningRequestStrategy;

impl Strategy for CertificateSigningRequestStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status, Subresource::Approval]
    }

    fn record_requester(&self, object: &mut Value, user: &User) {
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        spec.insert("username".into(), json!(user.name));
        spec.insert("uid".into(), json!(user.uid));
        spec.insert("groups".into(), json!(user.groups));
        if user.extra.is_empty() {
            spec.remove("extra");
        } else {
            spec.insert("extra".into(), json!(user.extra));
        }
    }

    fn prepare_for_update(&self, object: &mut Value, old: &Value) {
        object["spec"] = old["spec"].clone();
    }

    fn status_update(&self, sent: &Value, current: &Value) -> Value {
        let mut updated = current.clone();
        let mut status = sent.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut conditions: Vec<Value> = conditions(&status)
            .into_iter()
            .filter(|c| !is_approval(c))
            .collect();
        conditions.extend(conditions_of(current).into_iter().filter(is_approval));
        if status.is_object() {
            status["conditions"] = json!(conditions);
        }
        updated["status"] = status;
        stamp_conditions(&mut updated, current);
        updated
    }

    fn approval_update(&self, sent: &Value, current: &Value) -> Value {
        let mut updated = current.clone();
        if !updated["status"].is_object() {
            updated["status"] = json!({});
        }
        updated["status"]["conditions"] = json!(conditions(&sent["status"]));
        stamp_conditions(&mut updated, current);
        updated
    }

    fn validate(&self, _env: &Env, object: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validation::validate(object))
    }

    fn validate_update(&self, _env: &Env, object: &Value, old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validation::validate_update(object, old))
    }
}

fn conditions(status: &Value) -> Vec<Value> {
    status["conditions"].as_array().cloned().unwrap_or_default()
}

fn conditions_of(csr: &Value) -> Vec<Value> {
    conditions(&csr["status"])
}

fn is_approval(condition: &Value) -> bool {
    APPROVAL_TYPES.iter().any(|kind| condition["type"] == *kind)
}

/// Kubernetes' `populateConditionTimestamps`: a condition without
/// `lastUpdateTime` is updated now; one without `lastTransitionTime` keeps
/// the transition time of the old condition of the same type and status,
/// else transitions now.
fn stamp_conditions(updated: &mut Value, old: &Value) {
    let old = conditions_of(old);
    let Some(conditions) = updated["status"]["conditions"].as_array_mut() else {
        return;
    };
    let now = clock::now();
    for condition in conditions.iter_mut().filter(|c| c.is_object()) {
        if condition["lastUpdateTime"].is_null() {
            condition["lastUpdateTime"] = now.clone();
        }
        if condition["lastTransitionTime"].is_null() {
            condition["lastTransitionTime"] = old
                .iter()
                .find(|o| {
                    o["type"] == condition["type"]
                        && o["status"] == condition["status"]
                        && !o["lastTransitionTime"].is_null()
                })
                .map_or_else(|| now.clone(), |o| o["lastTransitionTime"].clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved() -> Value {
        json!({
            "spec": { "request": "x", "username": "u" },
            "status": { "conditions": [{
                "type": "Approved", "status": "True", "reason": "AutoApproved",
                "lastUpdateTime": "t0", "lastTransitionTime": "t0",
            }] },
        })
    }

    #[test]
    fn the_requester_is_recorded_over_what_was_sent() {
        let mut csr = json!({ "spec": { "username": "mallory", "groups": ["system:masters"], "extra": { "a": ["b"] } } });
        let user = User {
            name: "system:bootstrap:abcdef".into(),
            uid: String::new(),
            groups: vec!["system:bootstrappers".into()],
            extra: Default::default(),
        };
        CertificateSigningRequestStrategy.record_requester(&mut csr, &user);
        assert_eq!(
            csr["spec"],
            json!({ "username": "system:bootstrap:abcdef", "uid": "", "groups": ["system:bootstrappers"] })
        );
        let mut no_spec = json!({ "spec": "nonsense" });
        CertificateSigningRequestStrategy.record_requester(&mut no_spec, &user);
        assert_eq!(no_spec["spec"], "nonsense");
    }

    #[test]
    fn status_keeps_the_approval_and_approval_keeps_the_certificate() {
        let sent = json!({ "status": {
            "certificate": "Y2VydA==",
            "conditions": [{ "type": "Denied", "status": "True" }, { "type": "Failed", "status": "True" }],
        } });
        let updated = CertificateSigningRequestStrategy.status_update(&sent, &approved());
        assert_eq!(updated["status"]["certificate"], "Y2VydA==");
        let types: Vec<&Value> = updated["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["type"])
            .collect();
        assert_eq!(types, [&json!("Failed"), &json!("Approved")]);
        assert_eq!(updated["status"]["conditions"][1]["lastUpdateTime"], "t0");
        assert!(updated["status"]["conditions"][0]["lastTransitionTime"].is_string());

        let mut issued = approved();
        issued["status"]["certificate"] = json!("Y2VydA==");
        let sent = json!({ "status": { "certificate": "b3RoZXI=", "conditions": [
            { "type": "Approved", "status": "True" },
        ] } });
        let updated = CertificateSigningRequestStrategy.approval_update(&sent, &issued);
        assert_eq!(updated["status"]["certificate"], "Y2VydA==");
        // Same type and status: the old transition time is kept.
        assert_eq!(
            updated["status"]["conditions"][0]["lastTransitionTime"],
            "t0"
        );
    }
}
