//! The agent's own client for the API server (kube-rs), from its
//! kubeconfig (`--kubeconfig`): the node's credential, a client certificate
//! for `system:node:<name>` in `system:nodes`. When that kubeconfig is
//! missing or its certificate is in the last fifth of its life, the agent
//! first bootstraps a new one with `--bootstrap-kubeconfig`, as the kubelet
//! does (`credentials`). The kubelet writes its Node and Lease through it.

mod credentials;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Where the agent's API credential comes from (its flags).
#[derive(Debug, Clone)]
pub struct ApiCredentials {
    /// The node's kubeconfig; written by the bootstrap when missing.
    pub kubeconfig: PathBuf,
    /// A kubeconfig with a bootstrap token, for the first certificate.
    pub bootstrap_kubeconfig: Option<PathBuf>,
}

/// A client for the API server as node `node`, bootstrapping the node's
/// credential under `state_dir/pki` first when it needs one.
pub async fn connect(
    credentials: &ApiCredentials,
    state_dir: &Path,
    node: &str,
) -> anyhow::Result<kube::Client> {
    credentials::ensure(credentials, &state_dir.join("pki"), node).await?;
    client(&credentials.kubeconfig).await
}

/// A client from the kubeconfig at `path`.
async fn client(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading the kubeconfig {}", path.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("a client from the kubeconfig {}", path.display()))
}
