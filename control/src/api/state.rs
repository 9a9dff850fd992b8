//! The API's state: the store, the configuration and what the kinds'
//! strategies need. The verbs and the routing are `impl Api` blocks in
//! their own modules.

use std::sync::Arc;
use std::time::Duration;

use crate::authz::AuthzCache;
use crate::kinds::{Env, ServiceNetwork};
use crate::store::Store;

/// Tunables of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// How long a watch without `timeoutSeconds` runs.
    pub default_watch_timeout: Duration,
    /// The pools Services get their ClusterIPs, NodePorts and LoadBalancer
    /// IPs from.
    pub network: ServiceNetwork,
    /// The port node agents serve their kubelet API on (kubelet's).
    pub kubelet_port: u16,
    /// How this server connects to node agents (its kubelet-client
    /// certificate); the server sets it from its PKI at start.
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
    /// The key service-account tokens are signed and verified with; the
    /// server sets it from its PKI at start.
    pub service_account_keys: Option<Arc<crate::serviceaccount::Keys>>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(60),
            default_watch_timeout: Duration::from_secs(1800),
            network: ServiceNetwork::default(),
            kubelet_port: 10250,
            kubelet_client: None,
            service_account_keys: None,
        }
    }
}

/// The API: the store plus its configuration. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    pub(super) store: Store,
    pub(super) config: ApiConfig,
    /// What the kinds' strategies need: the pools and their configuration.
    pub(super) env: Env,
    /// What requests are authorized against, for the escalation checks
    /// and the reviews; none for an API that authorizes nothing (tests,
    /// tools).
    pub(super) authz: Option<AuthzCache>,
}

impl Api {
    pub fn new(store: Store, config: ApiConfig) -> Self {
        let env = Env::new(store.clone(), &config.network);
        Self {
            store,
            config,
            env,
            authz: None,
        }
    }

    /// This API, judging RBAC writes and reviews against `authz`.
    pub fn authorizing(mut self, authz: AuthzCache) -> Self {
        self.authz = Some(authz);
        self
    }

    /// This API, with every write guarded by `fence`: what the leader's
    /// controllers write through.
    pub fn fenced(&self, fence: skiff_etcd::kv::Fence) -> Self {
        Self {
            authz: self.authz.clone(),
            ..Self::new(self.store.fenced(fence), self.config.clone())
        }
    }
}
