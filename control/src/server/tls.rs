//! rustls configurations. The server: our serving certificate, client
//! certificates verified against our CA but optional (bearer tokens need
//! connections without one), HTTP/2 and HTTP/1.1 by ALPN. The client
//! towards node agents: `kubelet_client_config`.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::pki::Pki;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the {what} PEM: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

pub fn server_config(pki: &Pki) -> Result<rustls::ServerConfig, TlsError> {
    let pem = |what| move |source| TlsError::Pem { what, source };
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).map_err(pem("CA"))?)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = CertificateDer::pem_slice_iter(pki.serving_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("serving certificate"))?;
    let key =
        PrivateKeyDer::from_pem_slice(pki.serving_key.as_bytes()).map_err(pem("serving key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// How the API server connects to node agents: with its kubelet-client
/// certificate. An agent's serving certificate is its own, self-signed, so
/// it is not checked, as kube-apiserver does not without
/// `--kubelet-certificate-authority`; the agent checks the API server.
pub fn kubelet_client_config(pki: &Pki) -> Result<rustls::ClientConfig, TlsError> {
    let pem = |what| move |source| TlsError::Pem { what, source };
    let provider = Arc::new(ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(pki.kubelet_client_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("kubelet client certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(pki.kubelet_client_key.as_bytes())
        .map_err(pem("kubelet client key"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyAgent(provider)))
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How a joining member first fetches `/cacerts`: the server's certificate
/// is not checked, the CA it sends is, by the hash in the join token.
pub fn unverified_client_config() -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyAgent(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client that trusts only `ca_pem` (the CA a joining member verified).
pub fn ca_client_config(ca_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let pem = |what| move |source| TlsError::Pem { what, source };
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(pem("CA"))?)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any serving certificate, checking only that the agent holds its
/// key (the handshake's signatures).
#[derive(Debug)]
struct AnyAgent(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyAgent {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
