//! Kubernetes' csrapproving controller for kubelet client certificates:
//! a request to `kubernetes.io/kube-apiserver-client-kubelet` for
//! `CN=system:node:<name>, O=system:nodes` with client usages only is
//! approved when a bootstrap token's user (`system:bootstrappers`) asks for
//! it (a node's first certificate), or when the node itself does (a
//! renewal: the requester is the CN, in `system:nodes`). Anything else is
//! left for a person (`kubectl certificate approve|deny`).

use serde_json::Value;
use tracing::info;

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta, written};
use crate::bootstrap_token;
use crate::kinds::certificates::request::{
    self, KUBE_APISERVER_CLIENT_KUBELET, NODES_GROUP, kubelet_client_problem,
};

pub struct CsrApproving;

impl Controller for CsrApproving {
    const NAME: &'static str = "csrapproving";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let mut wrote = false;
        for csr in context.cache.list(Kind::CertificateSigningRequest) {
            let Some(message) = auto_approval(&csr) else {
                continue;
            };
            let approved = request::with_condition(&csr, "Approved", "AutoApproved", message);
            let result = context
                .client
                .update_approval(Kind::CertificateSigningRequest, &approved)
                .await;
            if written(result)? {
                info!(csr = meta::name(&csr), requester = %csr["spec"]["username"], "approved a kubelet client certificate request");
                wrote = true;
            }
        }
        Ok(if wrote {
            vec![Kind::CertificateSigningRequest]
        } else {
            vec![]
        })
    }
}

/// The approval message when `csr` is approved automatically.
fn auto_approval(csr: &Value) -> Option<&'static str> {
    let decided = ["Approved", "Denied"]
        .iter()
        .any(|kind| request::has_condition(csr, kind));
    if decided || csr["spec"]["signerName"] != KUBE_APISERVER_CLIENT_KUBELET {
        return None;
    }
    let parsed = request::parse(csr).ok()?;
    if kubelet_client_problem(&parsed, &request::usages(csr)).is_some() {
        return None;
    }
    let requester = csr["spec"]["username"].as_str().unwrap_or_default();
    let in_group = |group: &str| {
        csr["spec"]["groups"]
            .as_array()
            .is_some_and(|groups| groups.iter().any(|g| g == group))
    };
    if requester == parsed.common_name && in_group(NODES_GROUP) {
        return Some("Auto approving self kubelet client certificate after SubjectAccessReview.");
    }
    in_group(bootstrap_token::GROUP)
        .then_some("Auto approving kubelet client certificate after SubjectAccessReview.")
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use serde_json::json;

    use super::*;
    use crate::kinds::certificates::request::tests::request_pem;

    fn csr(common_name: &str, username: &str, groups: &[&str]) -> Value {
        json!({
            "metadata": { "name": "x" },
            "spec": {
                "request": STANDARD.encode(request_pem(common_name, &["system:nodes"], &[])),
                "signerName": KUBE_APISERVER_CLIENT_KUBELET,
                "usages": ["digital signature", "key encipherment", "client auth"],
                "username": username,
                "groups": groups,
            },
        })
    }

    #[test]
    fn bootstrappers_and_renewing_nodes_are_approved() {
        let first = csr(
            "system:node:n1",
            "system:bootstrap:abcdef",
            &["system:bootstrappers", "system:authenticated"],
        );
        assert_eq!(
            auto_approval(&first),
            Some("Auto approving kubelet client certificate after SubjectAccessReview.")
        );
        let renewal = csr("system:node:n1", "system:node:n1", &["system:nodes"]);
        assert!(auto_approval(&renewal).unwrap().contains("self"));
    }

    #[test]
    fn everything_else_waits_for_a_person() {
        // Another node's name, asked for by a node.
        assert_eq!(
            auto_approval(&csr("system:node:n2", "system:node:n1", &["system:nodes"])),
            None
        );
        // Anyone else.
        assert_eq!(
            auto_approval(&csr("system:node:n1", "alice", &["dev"])),
            None
        );
        let mut other_signer = csr(
            "system:node:n1",
            "system:bootstrap:a",
            &["system:bootstrappers"],
        );
        other_signer["spec"]["signerName"] = json!("kubernetes.io/kube-apiserver-client");
        assert_eq!(auto_approval(&other_signer), None);
        let mut serving = csr(
            "system:node:n1",
            "system:bootstrap:a",
            &["system:bootstrappers"],
        );
        serving["spec"]["usages"] = json!(["digital signature", "server auth"]);
        assert_eq!(auto_approval(&serving), None);
        let mut denied = csr(
            "system:node:n1",
            "system:bootstrap:a",
            &["system:bootstrappers"],
        );
        denied["status"]["conditions"] = json!([{ "type": "Denied", "status": "True" }]);
        assert_eq!(auto_approval(&denied), None);
    }
}
