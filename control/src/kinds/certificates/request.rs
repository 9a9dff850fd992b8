//! What a CertificateSigningRequest asks for: its PKCS#10 request read from
//! `spec.request` (a PEM block, base64 in JSON) and its signature checked,
//! the signers skiff runs and the requests each accepts, and the
//! conditions that say where the request stands. The strategy validates
//! with it; the approving and signing controllers decide with it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Kubelets' client certificates (`CN=system:node:<name>, O=system:nodes`).
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Any client certificate for the API server.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

pub use crate::authz::user::{NODE_USER_PREFIX, NODES_GROUP};

/// A parsed, signature-checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The PEM text (what the signer hands to rcgen).
    pub pem: String,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: usize,
    pub emails: usize,
    pub ips: usize,
    pub uris: usize,
}

/// `spec.request` of `csr`, parsed as Kubernetes' `ParseCSR` and checked
/// as `CheckSignature`; the error is the validation message.
pub fn parse(csr: &Value) -> Result<Request, String> {
    let bytes = csr["spec"]["request"]
        .as_str()
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_default();
    parse_pem(&bytes)
}

fn parse_pem(bytes: &[u8]) -> Result<Request, String> {
    let block_error = || "PEM block type must be CERTIFICATE REQUEST".to_owned();
    let (_, pem) = x509_parser::pem::parse_x509_pem(bytes).map_err(|_| block_error())?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(block_error());
    }
    let (_, request) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|error| format!("x509: malformed certificate request: {error}"))?;
    request
        .verify_signature()
        .map_err(|error| format!("x509: the request's signature does not verify: {error}"))?;
    let subject = &request.certification_request_info.subject;
    let text = |value: &x509_parser::x509::AttributeTypeAndValue| {
        value.as_str().map(str::to_owned).unwrap_or_default()
    };
    let mut parsed = Request {
        pem: String::from_utf8_lossy(bytes).into_owned(),
        common_name: subject
            .iter_common_name()
            .next()
            .map(text)
            .unwrap_or_default(),
        organizations: subject.iter_organization().map(text).collect(),
        dns_names: 0,
        emails: 0,
        ips: 0,
        uris: 0,
    };
    for extension in request.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(names) = extension {
            for name in &names.general_names {
                match name {
                    GeneralName::DNSName(_) => parsed.dns_names += 1,
                    GeneralName::RFC822Name(_) => parsed.emails += 1,
                    GeneralName::IPAddress(_) => parsed.ips += 1,
                    GeneralName::URI(_) => parsed.uris += 1,
                    _ => {}
                }
            }
        }
    }
    Ok(parsed)
}

/// The `spec.usages` of `csr`.
pub fn usages(csr: &Value) -> Vec<&str> {
    csr["spec"]["usages"]
        .as_array()
        .map(|usages| usages.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Why `request` with `usages` is not a kubelet client certificate
/// request (Kubernetes' `ValidateKubeletClientCSR`), if it is not.
pub fn kubelet_client_problem(request: &Request, usages: &[&str]) -> Option<String> {
    if request.organizations != [NODES_GROUP] {
        return Some("subject organization is not system:nodes".into());
    }
    if request.dns_names > 0 {
        return Some("DNS subjectAltNames are not allowed".into());
    }
    if request.emails > 0 {
        return Some("Email subjectAltNames are not allowed".into());
    }
    if request.ips > 0 {
        return Some("IP subjectAltNames are not allowed".into());
    }
    if request.uris > 0 {
        return Some("URI subjectAltNames are not allowed".into());
    }
    if !request.common_name.starts_with(NODE_USER_PREFIX) {
        return Some("subject common name does not begin with system:node:".into());
    }
    let mut set: Vec<&str> = usages.to_vec();
    set.sort_unstable();
    set.dedup();
    let with_rsa = ["client auth", "digital signature", "key encipherment"];
    let without_rsa = ["client auth", "digital signature"];
    if set != with_rsa && set != without_rsa {
        return Some(format!("usages did not match [{}]", with_rsa.join(" ")));
    }
    None
}

/// Why `usages` are not those of an API server client certificate
/// (client auth, optionally digital signature and key encipherment).
pub fn client_usage_problem(usages: &[&str]) -> Option<String> {
    for usage in usages {
        if !matches!(
            *usage,
            "client auth" | "digital signature" | "key encipherment"
        ) {
            return Some(format!("invalid usage for client certificate: {usage}"));
        }
    }
    (!usages.contains(&"client auth"))
        .then(|| "missing required usage for client certificate: client auth".to_owned())
}

/// The condition of `kind` (`Approved`, `Denied`, `Failed`) that is True.
pub fn has_condition(csr: &Value, kind: &str) -> bool {
    csr["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

/// `csr` with a True condition `kind` added, stamped now (what the
/// approving and signing controllers write).
pub fn with_condition(csr: &Value, kind: &str, reason: &str, message: &str) -> Value {
    let mut updated = csr.clone();
    let mut conditions = updated["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let now = crate::clock::now();
    conditions.push(serde_json::json!({
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }));
    updated["status"]["conditions"] = Value::Array(conditions);
    updated
}

/// The issued certificate (`status.certificate`, base64 in JSON), if any.
pub fn issued(csr: &Value) -> bool {
    csr["status"]["certificate"]
        .as_str()
        .is_some_and(|certificate| !certificate.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request for `common_name` in `organizations` with these DNS names,
    /// PEM.
    pub(crate) fn request_pem(common_name: &str, organizations: &[&str], dns: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        for organization in organizations {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *organization);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_request_is_read_and_its_signature_checked() {
        let pem = request_pem("system:node:n1", &["system:nodes"], &[]);
        let request = parse_pem(pem.as_bytes()).unwrap();
        assert_eq!(request.common_name, "system:node:n1");
        assert_eq!(request.organizations, ["system:nodes"]);
        assert_eq!(
            parse_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err("PEM block type must be CERTIFICATE REQUEST".into())
        );
        assert!(parse_pem(b"garbage").is_err());
        // One flipped bit in the signature (the last bytes of the DER).
        let block = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1;
        let mut der = block.contents.clone();
        *der.last_mut().unwrap() ^= 1;
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            STANDARD.encode(der)
        );
        assert!(
            parse_pem(tampered.as_bytes())
                .unwrap_err()
                .contains("signature")
        );
    }

    #[test]
    fn kubelet_client_requests_are_exactly_those_kubernetes_accepts() {
        let node =
            parse_pem(request_pem("system:node:n1", &["system:nodes"], &[]).as_bytes()).unwrap();
        let client = ["digital signature", "key encipherment", "client auth"];
        assert_eq!(kubelet_client_problem(&node, &client), None);
        assert_eq!(
            kubelet_client_problem(&node, &["digital signature", "client auth"]),
            None
        );
        assert!(kubelet_client_problem(&node, &["client auth", "server auth"]).is_some());
        let other = parse_pem(request_pem("alice", &["system:nodes"], &[]).as_bytes()).unwrap();
        assert!(kubelet_client_problem(&other, &client).is_some());
        let group = parse_pem(request_pem("system:node:n1", &["dev"], &[]).as_bytes()).unwrap();
        assert!(kubelet_client_problem(&group, &client).is_some());
        let named =
            parse_pem(request_pem("system:node:n1", &["system:nodes"], &["n1.example"]).as_bytes())
                .unwrap();
        assert_eq!(
            kubelet_client_problem(&named, &client),
            Some("DNS subjectAltNames are not allowed".into())
        );
        assert_eq!(client_usage_problem(&["client auth"]), None);
        assert_eq!(
            client_usage_problem(&["client auth", "server auth"]),
            Some("invalid usage for client certificate: server auth".into())
        );
        assert!(client_usage_problem(&["digital signature"]).is_some());
    }
}
