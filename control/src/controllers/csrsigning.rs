//! Kubernetes' csrsigning controller for the API server's client signers:
//! an approved, unissued request to `kubernetes.io/kube-apiserver-client-
//! kubelet` or `kubernetes.io/kube-apiserver-client` is checked against the
//! signer's rules and then signed with the cluster CA (the subject, SANs
//! and public key the request holds, the usages it was approved with),
//! valid for a year or its `expirationSeconds` if shorter, never past the
//! CA; a request the signer refuses gets a Failed condition.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::{info, warn};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::config::SigningCa;
use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta, written};
use crate::kinds::certificates::request::{
    self, KUBE_APISERVER_CLIENT, KUBE_APISERVER_CLIENT_KUBELET, Request, client_usage_problem,
    kubelet_client_problem,
};

/// kube-controller-manager's `--cluster-signing-duration`.
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest lifetime a request may ask for.
const MIN_LIFETIME: Duration = Duration::from_secs(600);
/// Certificates start a little in the past, for clocks that lag.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

pub struct CsrSigning;

impl Controller for CsrSigning {
    const NAME: &'static str = "csrsigning";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let Some(ca) = &context.config.signing_ca else {
            return Ok(vec![]);
        };
        let mut wrote = false;
        for csr in context.cache.list(Kind::CertificateSigningRequest) {
            let waiting = request::has_condition(&csr, "Approved")
                && !request::has_condition(&csr, "Failed")
                && !request::issued(&csr);
            let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
            if !waiting || ![KUBE_APISERVER_CLIENT_KUBELET, KUBE_APISERVER_CLIENT].contains(&signer)
            {
                continue;
            }
            let mut updated = csr.clone();
            match request::parse(&csr)
                .and_then(|parsed| refusal(signer, &parsed, &csr).map_or(Ok(parsed), Err))
            {
                Ok(parsed) => match sign(ca, &parsed, &csr) {
                    Ok(pem) => updated["status"]["certificate"] = json!(STANDARD.encode(pem)),
                    Err(error) => {
                        warn!(csr = meta::name(&csr), %error, "signing failed");
                        continue;
                    }
                },
                Err(message) => {
                    updated = request::with_condition(
                        &csr,
                        "Failed",
                        "SignerValidationFailure",
                        &message,
                    );
                }
            }
            let result = context
                .client
                .update_status(Kind::CertificateSigningRequest, &updated)
                .await;
            if written(result)? {
                info!(
                    csr = meta::name(&csr),
                    signer,
                    issued = request::issued(&updated),
                    "signer handled a request"
                );
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

/// Why `signer` will not sign `parsed` as `csr` asks.
fn refusal(signer: &str, parsed: &Request, csr: &Value) -> Option<String> {
    let usages = request::usages(csr);
    if signer == KUBE_APISERVER_CLIENT_KUBELET {
        kubelet_client_problem(parsed, &usages)
    } else {
        client_usage_problem(&usages)
    }
}

/// How long the certificate for `csr` is valid.
fn lifetime(csr: &Value) -> Duration {
    csr["spec"]["expirationSeconds"]
        .as_u64()
        .map(Duration::from_secs)
        .map_or(LEAF_LIFETIME, |asked| {
            asked.max(MIN_LIFETIME).min(LEAF_LIFETIME)
        })
}

/// The certificate (PEM) for `parsed`, signed by `ca`.
fn sign(ca: &SigningCa, parsed: &Request, csr: &Value) -> Result<String, String> {
    let key = KeyPair::from_pem(&ca.key).map_err(|error| format!("the CA key: {error}"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert, key).map_err(|error| format!("the CA: {error}"))?;
    let mut request = CertificateSigningRequestParams::from_pem(&parsed.pem)
        .map_err(|error| format!("the request: {error}"))?;
    let now = OffsetDateTime::now_utc();
    let params = &mut request.params;
    params.not_before = now - BACKDATE;
    params.not_after = (now + lifetime(csr)).min(ca_not_after(&ca.cert)?);
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from(serial.to_vec()));
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    let usages = request::usages(csr);
    params.key_usages = usages
        .iter()
        .filter_map(|usage| match *usage {
            "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            _ => None,
        })
        .collect();
    params.extended_key_usages = usages
        .iter()
        .filter(|usage| **usage == "client auth")
        .map(|_| ExtendedKeyUsagePurpose::ClientAuth)
        .collect();
    request
        .signed_by(&issuer)
        .map(|certificate| certificate.pem())
        .map_err(|error| format!("signing: {error}"))
}

/// When the CA certificate stops being valid.
fn ca_not_after(cert: &str) -> Result<OffsetDateTime, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes())
        .map_err(|error| format!("the CA certificate: {error}"))?;
    let (_, parsed) = X509Certificate::from_der(&pem.contents)
        .map_err(|error| format!("the CA certificate: {error}"))?;
    Ok(parsed.validity().not_after.to_datetime())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::certificates::request::tests::request_pem;

    fn ca() -> SigningCa {
        let key = KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        SigningCa {
            cert: params.self_signed(&key).unwrap().pem(),
            key: key.serialize_pem(),
        }
    }

    #[test]
    fn a_kubelet_request_is_signed_for_a_year_as_a_client_certificate() {
        let pem = request_pem("system:node:n1", &["system:nodes"], &[]);
        let csr = json!({ "spec": {
            "request": STANDARD.encode(&pem),
            "usages": ["digital signature", "client auth"],
        } });
        let parsed = request::parse(&csr).unwrap();
        let issued = sign(&ca(), &parsed, &csr).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(issued.as_bytes()).unwrap();
        let (_, certificate) = X509Certificate::from_der(&block.contents).unwrap();
        let subject = certificate.subject();
        assert_eq!(
            subject.iter_common_name().next().unwrap().as_str().unwrap(),
            "system:node:n1"
        );
        assert_eq!(
            subject
                .iter_organization()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:nodes"
        );
        let validity = certificate.validity();
        let seconds = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert_eq!(
            seconds as u64,
            (LEAF_LIFETIME + BACKDATE).as_secs(),
            "a year, backdated five minutes"
        );
        let usage = certificate.extended_key_usage().unwrap().unwrap().value;
        assert!(usage.client_auth && !usage.server_auth);
    }

    #[test]
    fn lifetimes_are_clamped_and_refusals_name_the_rule() {
        assert_eq!(lifetime(&json!({ "spec": {} })), LEAF_LIFETIME);
        assert_eq!(
            lifetime(&json!({ "spec": { "expirationSeconds": 3600 } })),
            Duration::from_secs(3600)
        );
        assert_eq!(
            lifetime(&json!({ "spec": { "expirationSeconds": 10_u64.pow(10) } })),
            LEAF_LIFETIME
        );
        let pem = request_pem("alice", &["dev"], &[]);
        let csr = json!({ "spec": {
            "request": STANDARD.encode(&pem),
            "usages": ["client auth", "server auth"],
        } });
        let parsed = request::parse(&csr).unwrap();
        assert_eq!(
            refusal(KUBE_APISERVER_CLIENT, &parsed, &csr),
            Some("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            refusal(KUBE_APISERVER_CLIENT_KUBELET, &parsed, &csr),
            Some("subject organization is not system:nodes".into())
        );
    }
}
