//! The `healthCheckNodePort`s of `externalTrafficPolicy: Local` load
//! balancer Services, served as kube-proxy serves them: on this node's
//! address, `200` with the number of local endpoints when there is one,
//! `503` when there is none, so the load balancer sends traffic only to
//! nodes that can keep it local.
use std::{
    collections::HashMap,
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use http_body_util::Full;
use hyper::{
    Response, StatusCode, body::Bytes, header::CONTENT_TYPE, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, error, info, warn};

use super::cluster::{frontends::HealthCheck, service_ref::ServiceRef};

/// One port being served.
struct Served {
    port: u16,
    local_endpoints: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// The health check ports of this node, by the Service they answer for.
pub struct HealthChecks {
    node_ip: Option<Ipv4Addr>,
    served: HashMap<ServiceRef, Served>,
}

impl HealthChecks {
    /// Health checks are served on `node_ip`; without one, none are.
    pub fn new(node_ip: Option<Ipv4Addr>) -> Self {
        Self {
            node_ip,
            served: HashMap::new(),
        }
    }

    /// Makes `service`'s health check port answer as `check` says, or
    /// closes it when `None`.
    pub fn set(&mut self, service: &ServiceRef, check: Option<HealthCheck>) {
        let current = self.served.get(service);
        match (current, check) {
            (Some(served), Some(check)) if served.port == check.port => {
                let before = served
                    .local_endpoints
                    .swap(check.local_endpoints, Ordering::Relaxed);
                if before != check.local_endpoints {
                    debug!(%service, port = check.port, local_endpoints = check.local_endpoints, "health check updated");
                }
            }
            (_, Some(check)) => {
                self.close(service);
                let Some(node_ip) = self.node_ip else { return };
                let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
                let address = SocketAddr::from((node_ip, check.port));
                let task = tokio::spawn(serve(address, service.clone(), local_endpoints.clone()));
                self.served.insert(
                    service.clone(),
                    Served {
                        port: check.port,
                        local_endpoints,
                        task,
                    },
                );
            }
            (_, None) => self.close(service),
        }
    }

    fn close(&mut self, service: &ServiceRef) {
        if let Some(served) = self.served.remove(service) {
            served.task.abort();
            info!(%service, port = served.port, "health check port closed");
        }
    }
}

async fn serve(address: SocketAddr, service: ServiceRef, local_endpoints: Arc<AtomicUsize>) {
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(bind_error) => {
            error!(%service, %address, error = %bind_error, "cannot serve the health check port");
            return;
        }
    };
    info!(%service, %address, "serving the health check port");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(accept_error) => {
                warn!(%service, error = %accept_error, "accepting a health check failed");
                continue;
            }
        };
        let (service, local_endpoints) = (service.clone(), local_endpoints.clone());
        tokio::spawn(async move {
            let respond = service_fn(move |_request| {
                let response = respond(&service, local_endpoints.load(Ordering::Relaxed));
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), respond)
                .await
            {
                debug!(%error, "health check connection ended with an error");
            }
        });
    }
}

/// kube-proxy's answer: the Service, its local endpoint count, and 200
/// only when there is at least one.
fn respond(service: &ServiceRef, local_endpoints: usize) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "service": { "namespace": &*service.namespace, "name": &*service.name },
        "localEndpoints": local_endpoints,
        "serviceProxyHealthy": true,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = match local_endpoints {
        0 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
