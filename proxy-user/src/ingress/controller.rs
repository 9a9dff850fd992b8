//! The loop that keeps what the proxy serves current: it applies the
//! Ingress watch's events, rebuilds the routes when Ingresses or classes
//! change, has the TLS Secrets they name read again (`tls_secrets`), and
//! rebuilds the certificates when either changes; it re-resolves the
//! backends whenever the agent's Service and EndpointSlice cache changes.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch as channel};
use tracing::warn;

use crate::apiserver::Connection;
use crate::proxy::cluster::shared::SharedCluster;

use super::secrets::certificates;
use super::table::{Pools, Routes, rebuild};
use super::tls::SniResolver;
use super::tls_secrets::{self, Wanted};
use super::watch::{self, Objects};

pub struct Controller {
    pub etcd: Vec<String>,
    /// Where the TLS Secrets are read; without it HTTPS has only the
    /// default certificate.
    pub api: Option<Connection>,
    pub secret_ttl: Duration,
    pub class: String,
    pub cluster: SharedCluster,
    pub routes: Arc<Routes>,
    pub resolver: Arc<SniResolver>,
}

impl Controller {
    /// Runs until the watch ends.
    pub async fn run(self) {
        let (tx, mut events) = mpsc::channel(16);
        tokio::spawn(watch::run(self.etcd.clone(), tx));
        let (wanted, wanted_rx) = channel::channel(Wanted::new());
        // The sender stays here too, so `read` never closes.
        let (read_tx, mut read) = channel::channel(HashMap::new());
        match self.api.clone() {
            Some(api) => {
                tokio::spawn(tls_secrets::run(
                    api,
                    self.secret_ttl,
                    wanted_rx,
                    read_tx.clone(),
                ));
            }
            None => {
                warn!(
                    "no --kubeconfig: the Ingresses' TLS Secrets cannot be read; HTTPS serves the default certificate"
                )
            }
        }
        let mut cluster_changes = self.cluster.subscribe();
        let mut objects = Objects::default();
        let mut pools = Pools::default();
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { return };
                    if objects.apply(event).routes {
                        rebuild(&objects, &self.class, &mut pools, &self.routes);
                        pools.refresh(&self.cluster.read());
                        wanted.send_replace(tls_secrets::wanted(&objects, &self.class));
                        self.resolver.replace(certificates(&objects, &self.class));
                    }
                }
                _ = read.changed() => {
                    objects.secrets = read.borrow_and_update().clone();
                    self.resolver.replace(certificates(&objects, &self.class));
                }
                changed = cluster_changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    pools.refresh(&self.cluster.read());
                }
            }
        }
    }
}
