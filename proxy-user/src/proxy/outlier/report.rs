//! Where ejections are told: Events on the Service, through the API server
//! when the agent has a client (`--kubeconfig`); the log has them always.
use tracing::warn;

use crate::{apiserver::Connection, kubelet::events::Recorder};

use crate::proxy::cluster::service_ref::ServiceRef;

/// Event reasons.
pub const EJECTED: &str = "BackendEjected";
pub const RETURNED: &str = "BackendReturned";

#[derive(Clone)]
pub struct EventReporter {
    api: Option<Connection>,
    node: String,
}

impl EventReporter {
    pub fn new(api: Option<Connection>, node: String) -> Self {
        Self { api, node }
    }

    /// Records a Normal Event on `service` (whose uid is `uid`, when the
    /// agent still has its record), in the background: a slow or failing
    /// API server never holds the sync loop.
    pub fn record(
        &self,
        service: &ServiceRef,
        uid: Option<Box<str>>,
        reason: &'static str,
        message: String,
    ) {
        let Some(api) = self.api.clone() else {
            return;
        };
        let node = self.node.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let recorder = Recorder::for_service(
                api.client().await,
                &node,
                (&service.namespace, &service.name),
                uid.as_deref(),
            );
            if let Err(error) = recorder.normal(reason, &message).await {
                warn!(%service, reason, %error, "recording an Event failed");
            }
        });
    }
}
