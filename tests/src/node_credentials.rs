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
    std::fs::create_dir_all(state_dir)
        .map_err(|e| failed(format!("creating {}", state_dir.display()), e))?;
    let bootstrap = bootstrap_kubeconfig(state_dir);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&bootstrap)
        .and_then(|mut file| file.write_all(document.to_string().as_bytes()))
        .map_err(|e| failed(format!("writing {}", bootstrap.display()), e))?;
    Ok(())
}
