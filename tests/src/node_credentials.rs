//! The agents' credentials for the API server, in the local cluster and
//! the tests' clusters: skiff-control keeps a bootstrap token
//! (`--bootstrap-token-file`), and each agent gets a bootstrap kubeconfig
//! with it, the cluster CA and the API server's address on the fabric, from
//! which it gets its own client certificate (`--bootstrap-kubeconfig`,
//! `--kubeconfig`). An agent started before its bootstrap kubeconfig is
//! written waits for it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{HarnessError, Result};

/// An I/O failure as the supervisor reports it.
fn failed(what: String, error: std::io::Error) -> HarnessError {
    HarnessError::Environment(format!("{what}: {error}"))
}

/// Where skiff-control keeps the nodes' bootstrap token.
pub fn token_file(control_data_dir: &Path) -> PathBuf {
    control_data_dir.join("bootstrap-token")
}

/// skiff-control's flag for [`token_file`].
pub fn control_args(control_data_dir: &Path) -> Vec<String> {
    vec![
        "--bootstrap-token-file".to_owned(),
        token_file(control_data_dir).display().to_string(),
    ]
}

/// The agent's flags for its own kubeconfig and its bootstrap kubeconfig,
/// both in `state_dir`.
pub fn agent_args(state_dir: &Path) -> Vec<String> {
    vec![
        "--kubeconfig".to_owned(),
        state_dir.join("kubeconfig").display().to_string(),
        "--bootstrap-kubeconfig".to_owned(),
        bootstrap_kubeconfig(state_dir).display().to_string(),
    ]
}

/// Writes a kubeconfig for `system:kube-proxy` (what kube-proxy runs as,
/// bound to `system:node-proxier`) into `state_dir`: a client certificate
/// signed by the cluster CA (`ca_dir`'s `ca.crt` and `ca.key`), for the API
/// server at `server`. A `--source kube-api` agent reads the cluster with
/// it. Returns its path.
pub fn write_kube_proxy_kubeconfig(
    state_dir: &Path,
    ca_dir: &Path,
    server: &str,
) -> Result<PathBuf> {
    let read = |file: &str| {
        let path = ca_dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| failed(format!("reading {}", path.display()), e))
    };
    let invalid = |error: rcgen::Error| {
        HarnessError::Environment(format!("signing system:kube-proxy's certificate: {error}"))
    };
    let ca_key = rcgen::KeyPair::from_pem(&read("ca.key")?).map_err(invalid)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca.crt")?, ca_key).map_err(invalid)?;
    let key = rcgen::KeyPair::generate().map_err(invalid)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:kube-proxy");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = params.signed_by(&key, &issuer).map_err(invalid)?;
    let cert_file = state_dir.join("kube-proxy.crt");
    let key_file = state_dir.join("kube-proxy.key");
    write_private(&cert_file, &certificate.pem())?;
    write_private(&key_file, &key.serialize_pem())?;
    let document = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "skiff", "cluster": { "server": server, "certificate-authority": ca_dir.join("ca.crt") } }],
        "users": [{ "name": "kube-proxy", "user": { "client-certificate": cert_file, "client-key": key_file } }],
        "contexts": [{ "name": "skiff", "context": { "cluster": "skiff", "user": "kube-proxy" } }],
        "current-context": "skiff",
    });
    let kubeconfig = state_dir.join("kube-proxy.kubeconfig");
    write_private(&kubeconfig, &document.to_string())?;
    Ok(kubeconfig)
}

/// Writes `text` to `path` (and its directory), readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("creating {}", dir.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| failed(format!("writing {}", path.display()), e))
}

fn bootstrap_kubeconfig(state_dir: &Path) -> PathBuf {
    state_dir.join("bootstrap.kubeconfig")
}

/// Writes the bootstrap kubeconfig of the agent keeping its state in
/// `state_dir`: the token in `token_file`, the CA `ca`, the API server at
/// `server`.
pub fn write_bootstrap_kubeconfig(
    state_dir: &Path,
    token_file: &Path,
    ca: &Path,
    server: &str,
) -> Result<()> {
    let token = std::fs::read_to_string(token_file).map_err(|e| {
        failed(
            format!("reading the bootstrap token {}", token_file.display()),
            e,
        )
    })?;
    let document = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "skiff", "cluster": { "server": server, "certificate-authority": ca } }],
        "users": [{ "name": "bootstrap", "user": { "token": token.trim() } }],
        "contexts": [{ "name": "skiff", "context": { "cluster": "skiff", "user": "bootstrap" } }],
        "current-context": "skiff",
    });
    write_private(&bootstrap_kubeconfig(state_dir), &document.to_string())
}
