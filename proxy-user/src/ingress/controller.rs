//! The loop that keeps what the proxy serves current: it applies the
//! Ingress watch's events, rebuilds the routes when Ingresses or classes
//! change and the certificates when they or their Secrets do, and
//! re-resolves the backends whenever the agent's Service and EndpointSlice
//! cache changes.
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::proxy::cluster::shared::SharedCluster;

use super::secrets::certificates;
use super::table::{Pools, Routes, rebuild};
use super::tls::SniResolver;
use super::watch::{self, Objects};

pub struct Controller {
    pub etcd: Vec<String>,
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
        let mut cluster_changes = self.cluster.subscribe();
        let mut objects = Objects::default();
        let mut pools = Pools::default();
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { return };
                    let changed = objects.apply(event);
                    if changed.routes {
                        rebuild(&objects, &self.class, &mut pools, &self.routes);
                        pools.refresh(&self.cluster.read());
                    }
                    if changed.certificates {
                        self.resolver.replace(certificates(&objects, &self.class));
                    }
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
