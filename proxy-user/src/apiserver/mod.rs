//! The agent's own client for the API server (kube-rs), from its
//! kubeconfig (`--kubeconfig`): the node's credential, a client certificate
//! for `system:node:<name>` in `system:nodes`. When that kubeconfig is
//! missing or its certificate is in the last fifth of its life, the agent
//! first bootstraps a new one with `--bootstrap-kubeconfig`, as the kubelet
//! does (`credentials`). Everything the agent writes (its Node, its Lease,
//! pod status, Events) and every Secret, ConfigMap or claim it reads goes
//! through it, so the Node authorizer limits a node to its own objects.

mod credentials;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::OnceCell;

/// Where the agent's API credential comes from (its flags).
#[derive(Debug, Clone)]
pub struct ApiCredentials {
    /// The node's kubeconfig; written by the bootstrap when missing.
    pub kubeconfig: PathBuf,
    /// A kubeconfig with a bootstrap token, for the first certificate.
    pub bootstrap_kubeconfig: Option<PathBuf>,
}

/// How long a failed connection (or bootstrap) waits before trying again.
const RETRY: Duration = Duration::from_secs(2);

/// The node's client, made once on first use and shared by the kubelet and
/// the Ingress proxy: the first user waits for the API server (and the
/// credential's bootstrap) as the agent waits for etcd, the others for it.
#[derive(Clone)]
pub struct Connection {
    credentials: ApiCredentials,
    state_dir: PathBuf,
    node: String,
    client: Arc<OnceCell<kube::Client>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("credentials", &self.credentials)
            .field("node", &self.node)
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl Connection {
    /// The credential's key and certificate go under `state_dir/pki`.
    pub fn new(credentials: ApiCredentials, state_dir: PathBuf, node: String) -> Connection {
        Connection {
            credentials,
            state_dir,
            node,
            client: Arc::default(),
        }
    }

    /// The client, once the API server has answered.
    pub async fn client(&self) -> kube::Client {
        let connected = self.client.get_or_init(|| async {
            loop {
                match connect(&self.credentials, &self.state_dir, &self.node).await {
                    Ok(client) => return client,
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), retry_in = ?RETRY, "no client for the API server yet");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        });
        connected.await.clone()
    }
}

/// A client for the API server as node `node`, bootstrapping the node's
/// credential under `state_dir/pki` first when it needs one.
async fn connect(
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

/// The field manager of the agent's writes, in the objects' managedFields.
const FIELD_MANAGER: &str = "skiff-agent";

/// A create or replace as the agent.
pub fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..kube::api::PostParams::default()
    }
}

/// A patch as the agent.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..kube::api::PatchParams::default()
    }
}

/// `object` as the typed kind the API client sends.
pub fn typed<T: serde::de::DeserializeOwned>(object: serde_json::Value) -> Result<T, kube::Error> {
    serde_json::from_value(object).map_err(kube::Error::SerdeError)
}

/// 409: someone wrote in between (or created first); read again.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// 404: the object is not there.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
