//! Validation of CertificateSigningRequests as Kubernetes'
//! `pkg/apis/certificates/validation`: the request parses and its signature
//! holds, usages are given, known and unique, the signer is named, the
//! duration is at least ten minutes, the conditions are well formed, and an
//! issued certificate is PEM certificates. An update may not remove an
//! Approved, Denied or Failed condition nor change an issued certificate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::request;
use crate::validation::{FieldError, Rendered, index, is_dns1123_label, is_dns1123_subdomain};

/// Kubernetes' `allValidUsages`, sorted as its error lists them.
const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// Condition types that may only be True.
const TRUE_ONLY: &[&str] = &["Approved", "Denied", "Failed"];

/// The legacy signer v1 refuses.
const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// A new request.
pub fn validate(csr: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(message) = request::parse(csr) {
        errors.push(FieldError::invalid(
            "spec.request",
            Rendered(format!(
                "{:?}",
                csr["spec"]["request"].as_str().unwrap_or_default()
            )),
            message,
        ));
    }
    let usages = csr["spec"]["usages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if usages.is_empty() {
        errors.push(FieldError::required("spec.usages", ""));
    }
    let mut seen = Vec::new();
    for (i, usage) in usages.iter().enumerate() {
        let usage = usage.as_str().unwrap_or_default();
        let path = index("spec.usages", i);
        if !USAGES.contains(&usage) {
            errors.push(FieldError::not_supported(&path, usage, USAGES));
        }
        if seen.contains(&usage) {
            errors.push(FieldError::duplicate(&path, usage));
        }
        seen.push(usage);
    }
    let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
    if signer == LEGACY_UNKNOWN {
        errors.push(FieldError::invalid(
            "spec.signerName",
            signer,
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        errors.extend(signer_name(signer));
    }
    if let Some(seconds) = csr["spec"]["expirationSeconds"].as_i64()
        && seconds < 600
    {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            seconds,
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    errors.extend(conditions(csr));
    errors
}

/// An update of `old` to `new` (both prepared by the strategy).
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errors = validate(new);
    // The certificate is checked when it changes only (old data that does
    // not parse is tolerated).
    let same_certificate = new["status"]["certificate"] == old["status"]["certificate"];
    if same_certificate {
        errors.retain(|error| error.field != "status.certificate");
    }
    for kind in TRUE_ONLY {
        if count(new, kind) < count(old, kind) {
            errors.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {kind:?}"),
            ));
        }
    }
    if !same_certificate && request::issued(old) {
        errors.push(FieldError::forbidden(
            "status.certificate",
            "updates may not modify existing certificate content",
        ));
    }
    errors
}

fn count(csr: &Value, kind: &str) -> usize {
    csr["status"]["conditions"]
        .as_array()
        .map_or(0, |conditions| {
            conditions.iter().filter(|c| c["type"] == kind).count()
        })
}

/// Kubernetes' `ValidateSignerName`: `<domain>/<path>`.
fn signer_name(signer: &str) -> Vec<FieldError> {
    const PATH: &str = "spec.signerName";
    if signer.is_empty() {
        return vec![FieldError::required(PATH, "")];
    }
    let Some((domain, path)) = signer
        .split_once('/')
        .filter(|(_, path)| !path.contains('/'))
    else {
        return vec![FieldError::invalid(
            PATH,
            signer,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )];
    };
    let mut errors = Vec::new();
    if domain.len() > 253 {
        errors.push(FieldError::too_long(PATH, 253));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some((label, problems)) = labels
        .iter()
        .map(|label| (label, is_dns1123_label(label)))
        .find(|(_, problems)| !problems.is_empty())
    {
        for problem in problems {
            errors.push(FieldError::invalid(
                PATH,
                domain,
                format!("validating label {label:?}: {problem}"),
            ));
        }
    }
    if labels.len() < 2 {
        errors.push(FieldError::invalid(
            PATH,
            domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if path.len() > 253 + 63 + 1 {
        errors.push(FieldError::too_long(PATH, 253 + 63 + 1));
    }
    if let Some((component, problems)) = path
        .split('.')
        .map(|component| (component, is_dns1123_subdomain(component)))
        .find(|(_, problems)| !problems.is_empty())
    {
        for problem in problems {
            errors.push(FieldError::invalid(
                PATH,
                path,
                format!("validating component {component:?}: {problem}"),
            ));
        }
    }
    errors
}

fn conditions(csr: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let conditions = csr["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (mut approved, mut denied) = (false, false);
    let mut seen = Vec::new();
    for (i, condition) in conditions.iter().enumerate() {
        let path = index("status.conditions", i);
        let kind = condition["type"].as_str().unwrap_or_default();
        if kind.is_empty() {
            errors.push(FieldError::required(format!("{path}.type"), ""));
        }
        let allowed: &[&str] = if TRUE_ONLY.contains(&kind) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        match condition["status"].as_str().unwrap_or_default() {
            "" => errors.push(FieldError::required(format!("{path}.status"), "")),
            status if !allowed.contains(&status) => errors.push(FieldError::not_supported(
                format!("{path}.status"),
                status,
                allowed,
            )),
            _ => {}
        }
        let exclusive = match kind {
            "Approved" => {
                approved = true;
                denied
            }
            "Denied" => {
                denied = true;
                approved
            }
            _ => false,
        };
        if exclusive {
            errors.push(FieldError::invalid(
                format!("{path}.type"),
                kind,
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        if seen.contains(&kind) {
            errors.push(FieldError::duplicate(format!("{path}.type"), kind));
        }
        seen.push(kind);
    }
    if let Err(message) = certificate(csr) {
        errors.push(FieldError::invalid(
            "status.certificate",
            Rendered("\"<certificate data>\"".to_owned()),
            message,
        ));
    }
    errors
}

/// An issued certificate: one or more PEM CERTIFICATE blocks, no headers.
fn certificate(csr: &Value) -> Result<(), String> {
    let Some(encoded) = csr["status"]["certificate"]
        .as_str()
        .filter(|c| !c.is_empty())
    else {
        return Ok(());
    };
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|error| format!("not base64: {error}"))?;
    let mut blocks = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let pem = pem.map_err(|error| error.to_string())?;
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                pem.label
            ));
        }
        X509Certificate::from_der(&pem.contents).map_err(|error| error.to_string())?;
        blocks += 1;
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::certificates::request::tests::request_pem;

    fn csr() -> Value {
        let pem = request_pem("system:node:n1", &["system:nodes"], &[]);
        json!({
            "metadata": { "name": "n1" },
            "spec": {
                "request": STANDARD.encode(pem),
                "signerName": request::KUBE_APISERVER_CLIENT_KUBELET,
                "usages": ["digital signature", "client auth"],
            },
        })
    }

    fn fields(errors: &[FieldError]) -> Vec<String> {
        errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.body()))
            .collect()
    }

    #[test]
    fn a_good_request_is_valid() {
        assert_eq!(fields(&validate(&csr())), Vec::<String>::new());
    }

    #[test]
    fn request_usages_signer_and_duration_are_checked() {
        let mut bad = csr();
        bad["spec"]["request"] = json!(STANDARD.encode("not a PEM"));
        bad["spec"]["usages"] = json!(["client auth", "flying", "client auth"]);
        bad["spec"]["signerName"] = json!("example");
        bad["spec"]["expirationSeconds"] = json!(60);
        let errors = fields(&validate(&bad));
        assert!(errors[0].starts_with("spec.request: Invalid value"));
        assert!(errors[0].ends_with("PEM block type must be CERTIFICATE REQUEST"));
        assert!(errors[1].starts_with(
            "spec.usages[1]: Unsupported value: \"flying\": supported values: \"any\""
        ));
        assert_eq!(
            errors[2],
            "spec.usages[2]: Duplicate value: \"client auth\""
        );
        assert_eq!(
            errors[3],
            "spec.signerName: Invalid value: \"example\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
        );
        assert_eq!(
            errors[4],
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)"
        );
        let mut none = csr();
        none["spec"]["usages"] = json!([]);
        none["spec"]["signerName"] = json!("");
        assert_eq!(
            fields(&validate(&none)),
            [
                "spec.usages: Required value",
                "spec.signerName: Required value"
            ]
        );
        let mut short = csr();
        short["spec"]["signerName"] = json!("example/signer");
        assert_eq!(
            fields(&validate(&short)),
            [
                "spec.signerName: Invalid value: \"example\": should be a domain with at least two segments separated by dots"
            ]
        );
    }

    #[test]
    fn conditions_and_updates_follow_kubernetes() {
        let mut both = csr();
        both["status"]["conditions"] = json!([
            { "type": "Approved", "status": "True" },
            { "type": "Denied", "status": "False" },
        ]);
        assert_eq!(
            fields(&validate(&both)),
            [
                "status.conditions[1].status: Unsupported value: \"False\": supported values: \"True\"",
                "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
            ]
        );
        let mut approved = csr();
        approved["status"]["conditions"] = json!([{ "type": "Approved", "status": "True" }]);
        assert_eq!(
            fields(&validate_update(&csr(), &approved)),
            [
                "status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""
            ]
        );
        let mut garbage = csr();
        garbage["status"]["certificate"] = json!(STANDARD.encode("junk"));
        assert_eq!(
            fields(&validate_update(&garbage, &csr())),
            [
                "status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block"
            ]
        );
    }
}
