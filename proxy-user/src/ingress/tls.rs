//! The TLS certificates served by SNI: each host of an Ingress's `tls`
//! section gets the `kubernetes.io/tls` Secret it names (a `*.foo.com`
//! host covers one label, as in routing). A client naming no such host
//! gets a self-signed certificate made at start, as ingress-nginx serves
//! its fake one. The set is swapped whole when a Secret or Ingress changes.
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("tls.crt holds no PEM certificate: {0}")]
    Certificate(String),
    #[error("tls.key holds no PEM private key: {0}")]
    Key(String),
    #[error("tls.key is not a key rustls can sign with: {0}")]
    Unsupported(rustls::Error),
    #[error("tls.key does not belong to tls.crt: {0}")]
    Mismatch(rustls::Error),
    #[error("making the default certificate: {0}")]
    Default(#[from] rcgen::Error),
}

/// A certificate chain and key from PEM, checked to belong together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::Certificate("empty".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Key(e.to_string()))?;
    let signer = any_supported_type(&key).map_err(CertError::Unsupported)?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(CertError::Mismatch)?;
    Ok(Arc::new(certified))
}

/// The self-signed certificate for clients that name no served host.
pub fn default_certificate() -> Result<Arc<CertifiedKey>, CertError> {
    let generated = rcgen::generate_simple_self_signed(vec!["skiff-ingress-default".to_owned()])?;
    certified_key(
        generated.cert.pem().as_bytes(),
        generated.signing_key.serialize_pem().as_bytes(),
    )
}

/// Certificates by host name.
#[derive(Debug, Default)]
pub struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    /// Serves `cert` for `host`, unless an earlier Ingress gave it one.
    pub fn add(&mut self, host: &str, cert: Arc<CertifiedKey>) {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.entry(suffix.to_owned()).or_insert(cert),
            None => self.exact.entry(host).or_insert(cert),
        };
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    fn find(&self, server_name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = server_name.to_ascii_lowercase();
        self.exact.get(&name).or_else(|| {
            let (_, suffix) = name.split_once('.')?;
            self.wildcard.get(suffix)
        })
    }
}

/// rustls' certificate choice: by SNI from the current set.
#[derive(Debug)]
pub struct SniResolver {
    current: RwLock<Arc<Certificates>>,
    fallback: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(fallback: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::default(),
            fallback,
        }
    }

    pub fn replace(&self, certificates: Certificates) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certificates);
    }

    fn lookup(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        server_name
            .and_then(|name| current.find(name).cloned())
            .unwrap_or_else(|| self.fallback.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(name: &str) -> (String, String) {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (generated.cert.pem(), generated.signing_key.serialize_pem())
    }

    #[test]
    fn pem_pairs_are_checked() {
        let (cert, key) = cert_for("a.example.com");
        assert!(certified_key(cert.as_bytes(), key.as_bytes()).is_ok());
        let (_, other_key) = cert_for("b.example.com");
        assert!(matches!(
            certified_key(cert.as_bytes(), other_key.as_bytes()),
            Err(CertError::Mismatch(_))
        ));
        assert!(matches!(
            certified_key(b"garbage", key.as_bytes()),
            Err(CertError::Certificate(_))
        ));
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_fallback() {
        let fallback = default_certificate().unwrap();
        let resolver = SniResolver::new(fallback.clone());
        let (cert, key) = cert_for("a.example.com");
        let a = certified_key(cert.as_bytes(), key.as_bytes()).unwrap();
        let (cert, key) = cert_for("*.example.com");
        let wild = certified_key(cert.as_bytes(), key.as_bytes()).unwrap();
        let mut certificates = Certificates::default();
        certificates.add("a.example.com", a.clone());
        certificates.add("*.example.com", wild.clone());
        resolver.replace(certificates);
        assert!(Arc::ptr_eq(&resolver.lookup(Some("A.example.com")), &a));
        assert!(Arc::ptr_eq(&resolver.lookup(Some("b.example.com")), &wild));
        assert!(Arc::ptr_eq(
            &resolver.lookup(Some("c.b.example.com")),
            &fallback
        ));
        assert!(Arc::ptr_eq(&resolver.lookup(None), &fallback));
    }
}
