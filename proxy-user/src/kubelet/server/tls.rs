//! The kubelet API's TLS: a serving certificate of the node's own, made
//! once with rcgen under `<state-dir>/pki/` (self-signed: the API server,
//! like kube-apiserver without `--kubelet-certificate-authority`, does not
//! check it), and client certificates required, verified against the
//! cluster CA and held to the API server's kubelet-client name.
use std::{
    fs, io,
    net::Ipv4Addr,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use tokio_rustls::TlsAcceptor;

/// The common name of the API server's client certificate for kubelets
/// (kube-apiserver's `apiserver-kubelet-client`).
pub const API_SERVER_CLIENT: &str = "kube-apiserver-kubelet-client";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating the kubelet's serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("reading the PEM of {path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The acceptor for the kubelet port: the node's serving certificate,
/// creating it when missing, and client certificates from `client_ca`.
pub fn acceptor(
    state_dir: &Path,
    node_name: &str,
    node_ip: Ipv4Addr,
    client_ca: &Path,
) -> Result<TlsAcceptor, TlsError> {
    let (cert, key) = serving_certificate(&state_dir.join("pki"), node_name, node_ip)?;
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(client_ca).map_err(pem(client_ca))? {
        roots.add(ca.map_err(pem(client_ca))?)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(Path::new("kubelet.crt")))?;
    let key =
        PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(pem(Path::new("kubelet.key")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    // Upgrades (exec's WebSocket) are HTTP/1.1's.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn pem(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    }
}

/// Whether a verified client certificate is the API server's.
pub fn is_api_server(leaf: &CertificateDer<'_>) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return false;
    };
    cert.subject()
        .iter_common_name()
        .any(|name| name.as_str() == Ok(API_SERVER_CLIENT))
}

/// `kubelet.crt` and `kubelet.key` in `dir`, made when missing.
fn serving_certificate(
    dir: &Path,
    node_name: &str,
    node_ip: Ipv4Addr,
) -> Result<(String, String), TlsError> {
    let (cert_path, key_path) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if let (Ok(cert), Ok(key)) = (
        fs::read_to_string(&cert_path),
        fs::read_to_string(&key_path),
    ) {
        return Ok((cert, key));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(vec![node_name.to_owned(), node_ip.to_string()])?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{node_name}@skiff-agent"),
    );
    let cert = params.self_signed(&key)?;
    let (cert, key) = (cert.pem(), key.serialize_pem());
    for (path, contents) in [(&cert_path, &cert), (&key_path, &key)] {
        // The key must not leak: owner-only, as the cluster's are.
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| io::Write::write_all(&mut file, contents.as_bytes()))
            .map_err(io(path))?;
    }
    Ok((cert, key))
}
