//! The Kubernetes REST API over the store: routing, discovery, the verbs,
//! and errors as `Status` objects. HTTP and TLS live in `server`.

mod aggregated_discovery;
mod bootstrap;
mod discovery;
mod field_validation;
mod handlers;
mod logs;
mod media;
mod objects;
mod openapi;
mod orphan;
mod path;
mod query;
mod registry;
mod scale;
mod selectors;
mod status;
mod table;
mod watch;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use tokio::sync::mpsc;

pub use registry::SYSTEM_NAMESPACES;

/// Every namespaced resource: its etcd root, its URL prefix (`/api/v1`,
/// `/apis/apps/v1`) and its plural (what namespace deletion empties).
pub fn namespaced_collections() -> Vec<(&'static str, String, &'static str)> {
    registry::RESOURCES
        .iter()
        .filter(|resource| resource.namespaced)
        .map(|resource| {
            let prefix = match resource.group {
                "" => format!("/api/{}", resource.version),
                group => format!("/apis/{group}/{}", resource.version),
            };
            (resource.storage, prefix, resource.plural)
        })
        .collect()
}
pub use crate::kinds::ServiceNetwork;
pub use status::ApiError;

use crate::kinds::Env;
use crate::store::Store;
use path::Route;
use query::Query;

/// The version `/version` and the OpenAPI documents report: the Kubernetes
/// API level served.
pub const GIT_VERSION: &str = "v1.37.0-skiff";

/// A request as the API layer sees it: the body already read (watches have
/// none).
#[derive(Debug)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    /// The `Accept` header: kubectl asks for server-side Tables.
    pub accept: Option<String>,
    pub body: Bytes,
}

/// What to send back.
#[derive(Debug)]
pub enum Reply {
    Json {
        code: u16,
        body: Value,
        /// `Warning` headers, e.g. for fields dropped from the object.
        warnings: Vec<String>,
    },
    /// A JSON document already serialized (OpenAPI's are once, for many
    /// requests), with its media type.
    Serialized {
        content_type: &'static str,
        body: Bytes,
    },
    /// A body streamed until the sender is dropped: a watch's
    /// newline-delimited JSON events, a container's log.
    Stream {
        content_type: &'static str,
        receiver: mpsc::Receiver<Bytes>,
    },
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        Reply::Json {
            code: error.code,
            body: error.status(),
            warnings: Vec::new(),
        }
    }
}

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
    /// The port node agents serve `/containerLogs` on (kubelet's).
    pub kubelet_port: u16,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(60),
            default_watch_timeout: Duration::from_secs(1800),
            network: ServiceNetwork::default(),
            kubelet_port: 10250,
        }
    }
}

/// The API: the store plus its configuration. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    store: Store,
    config: ApiConfig,
    /// What the kinds' strategies need: the pools and their configuration.
    env: Env,
}

impl Api {
    pub fn new(store: Store, config: ApiConfig) -> Self {
        let env = Env::new(store.client(), &config.network);
        Self { store, config, env }
    }

    pub async fn handle(&self, request: ApiRequest) -> Reply {
        match self.dispatch(request).await {
            Ok(reply) => reply,
            Err(error) => error.into(),
        }
    }

    async fn dispatch(&self, request: ApiRequest) -> Result<Reply, ApiError> {
        let route = path::route(&request.path).ok_or_else(ApiError::no_route)?;
        let target = match route {
            Route::Object(target) => target,
            Route::Discovery(document) => {
                if request.method != Method::GET {
                    return Err(ApiError::method_not_allowed(request.method.as_str()));
                }
                if aggregated_discovery::wanted(request.accept.as_deref())
                    && let Some(body) = aggregated_discovery::document(&document)
                {
                    return Ok(Reply::Serialized {
                        content_type: aggregated_discovery::CONTENT_TYPE,
                        body: Bytes::from(serde_json::to_vec(&body).expect("JSON serializes")),
                    });
                }
                return Ok(Reply::Json {
                    code: 200,
                    body: discovery::document(&document),
                    warnings: Vec::new(),
                });
            }
            Route::OpenApi(path) => {
                if request.method != Method::GET {
                    return Err(ApiError::method_not_allowed(request.method.as_str()));
                }
                let document = match path {
                    None => Some(openapi::index()),
                    Some(path) => openapi::group_version_document(&path),
                };
                return document
                    .map(|body| Reply::Serialized {
                        content_type: "application/json",
                        body,
                    })
                    .ok_or_else(ApiError::no_route);
            }
        };
        let query = Query::parse(request.query.as_deref())?;
        handlers::Handler {
            api: self,
            target,
            query,
            request,
        }
        .run()
        .await
    }
}
