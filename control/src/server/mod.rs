//! The HTTPS server: TLS with client-certificate and bearer-token
//! authentication, health and version endpoints, and the API.

mod auth;
mod authorize;
mod body;
mod endpoint_leases;
mod join;
mod kubeconfig;
mod limits;
mod pki;
mod tls;
mod upgrade;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

pub use crate::authz::User;
pub use auth::{TokenFileError, Tokens};
pub use join::{JoinError, JoinToken, token_path};
pub use limits::{ConnectionLimits, RequestLimits};
pub use pki::{DEFAULT_SANS, EtcdFiles, PkiError};
pub use skiff_etcd::kv::ClientTls;
pub use tls::TlsError;

use crate::api::{Api, ApiConfig, ApiError, ApiRequest, GIT_VERSION, Reply};
use crate::authz::AuthzCache;
use crate::controllers::ControllerConfig;
use crate::maintenance::MaintenanceConfig;
use crate::store::encryption::Encryption;
use crate::store::{Store, StoreError};
use body::Body;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub binds: Vec<SocketAddr>,
    pub etcd: Vec<String>,
    /// For `https://` etcd endpoints.
    pub etcd_tls: Option<ClientTls>,
    pub data_dir: PathBuf,
    /// Join the control plane of the member at this URL with this token
    /// instead of creating a CA.
    pub join: Option<(String, JoinToken)>,
    /// Issue the etcd member certificate for this address (and the etcd
    /// CA, when this member is the first) under `<data-dir>/pki/etcd/`.
    pub etcd_member_ip: Option<IpAddr>,
    /// Keep this server's address leased and in the EndpointSlices of the
    /// Services in front of the API servers (kube-apiserver's
    /// `--endpoint-reconciler-type=lease`).
    pub endpoint_leases: bool,
    /// Also a NodePort Service `kube-system/skiff-apiserver` on this port.
    pub apiserver_node_port: Option<u16>,
    /// Extra names/addresses for the serving certificate.
    pub advertise_addresses: Vec<String>,
    /// The server URL in the kubeconfig; default `https://<first bind>`.
    pub advertise_url: Option<String>,
    /// Where the admin kubeconfig goes; default `<data-dir>/admin.kubeconfig`.
    pub kubeconfig_out: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    /// Keep a bootstrap token for nodes in this file and its Secret in
    /// `kube-system`.
    pub bootstrap_token_file: Option<PathBuf>,
    pub api: ApiConfig,
    /// Run the scheduler and the controllers (leader-elected when the
    /// config says so); `None` serves the API only.
    pub controllers: Option<ControllerConfig>,
    /// etcd compaction and defragmentation, allocation repair.
    pub maintenance: MaintenanceConfig,
    /// Timeouts and the connection cap of each listener.
    pub connections: ConnectionLimits,
    /// How many requests are served at once.
    pub requests: RequestLimits,
    /// Which resources are encrypted at rest, and how
    /// (`--encryption-provider-config`).
    pub encryption: Arc<Encryption>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("joining the control plane: {0}")]
    Join(#[from] JoinError),
    #[error("creating the Service in front of the API servers: {0}")]
    ApiServerService(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    #[error(transparent)]
    ServiceAccountKey(#[from] crate::serviceaccount::KeyError),
    #[error("the bootstrap token: {0}")]
    BootstrapToken(#[from] crate::bootstrap_token::TokenFileError),
    #[error("connecting to etcd: {0}")]
    Store(#[from] StoreError),
    #[error("creating the system namespaces and the kubernetes Service: {0}")]
    Bootstrap(#[from] ApiError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A started server; it stops when this is dropped.
pub struct RunningServer {
    pub addrs: Vec<SocketAddr>,
    pub kubeconfig: PathBuf,
    /// The listeners and the controllers.
    _listeners: JoinSet<()>,
}

/// Shared by every connection.
struct State {
    api: Api,
    store: Store,
    /// What every request is authorized against.
    authz: AuthzCache,
    tokens: Tokens,
    /// Verifies bearer tokens the service-account key signed.
    service_accounts: crate::serviceaccount::Authenticator,
    join_token: JoinToken,
    pki_dir: PathBuf,
    in_flight: limits::InFlight,
}

/// The PKI in `<data-dir>/pki`: fetched from the member `config.join`
/// names, or created; the etcd member certificate when asked for; and the
/// join token. `skiff-control --pki-only` stops here, so that etcd can be
/// started with its certificate before the API server.
pub async fn prepare_pki(config: &ServerConfig) -> Result<(), ServerError> {
    prepared_pki(config).await.map(drop)
}

async fn prepared_pki(config: &ServerConfig) -> Result<(pki::Pki, JoinToken), ServerError> {
    let pki_dir = pki_dir(&config.data_dir);
    if let Some((url, token)) = &config.join {
        join::join(url, token, &config.data_dir, &pki_dir).await?;
    }
    let pki = pki::load_or_create(&pki_dir, &config.advertise_addresses)?;
    if let Some(ip) = config.etcd_member_ip {
        pki::issue_etcd(&pki_dir, ip)?;
    }
    let token = join::local_token(&config.data_dir, &pki.ca_cert)?;
    Ok((pki, token))
}

fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

/// Sets everything up (PKI, etcd, system namespaces, listeners, the
/// kubeconfig) and starts serving in the background.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let (pki, join_token) = prepared_pki(&config).await?;
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(&pki)?));
    let mut api_config = config.api.clone();
    let mut controllers = config.controllers.clone();
    if let Some(controllers) = &mut controllers {
        controllers.signing_ca = Some(crate::controllers::SigningCa {
            cert: pki.ca_cert.clone(),
            key: pki.ca_key.clone(),
        });
    }
    api_config.kubelet_client = Some(Arc::new(tls::kubelet_client_config(&pki)?));
    let service_account_keys = Arc::new(crate::serviceaccount::Keys::from_pem(
        &pki.service_account_key,
        &pki.service_account_public_key,
    )?);
    api_config.service_account_keys = Some(service_account_keys.clone());
    let tokens = match &config.token_file {
        Some(path) => Tokens::load(path)?,
        None => Tokens::default(),
    };
    let store = Store::connect(&config.etcd, config.etcd_tls.as_ref())
        .await?
        .encrypted(config.encryption.clone());
    wait_for_etcd(&store).await?;
    let mut listeners = JoinSet::new();
    let authz = AuthzCache::start(&store, &mut listeners);
    let api = Api::new(store.clone(), api_config).authorizing(authz.clone());
    api.ensure_system_namespaces().await?;
    api.ensure_default_storage_class().await?;
    api.ensure_default_ingress_class().await?;
    api.ensure_bootstrap_policy().await?;
    if let Some(path) = &config.bootstrap_token_file {
        let token = crate::bootstrap_token::load_or_create(path)?;
        api.ensure_bootstrap_token(&token).await?;
        info!(path = %path.display(), id = token.id, "the nodes' bootstrap token");
    }

    let mut bound = Vec::new();
    for &addr in &config.binds {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        bound.push((listener, local));
    }
    let addrs: Vec<SocketAddr> = bound.iter().map(|(_, local)| *local).collect();
    api.ensure_kubernetes_service(addrs[0].port()).await?;
    // kube-dns before any Service that takes a random address, which
    // could be the tenth. An older cluster may have given the tenth
    // address away: the server still starts, without cluster DNS's Service.
    if let Err(error) = api.ensure_kube_dns_service().await {
        tracing::warn!(%error, "creating kube-system/kube-dns failed; pods' cluster DNS has no Service");
    }
    api.ensure_ingress_service().await?;
    authz.wait_synced(ETCD_WAIT).await;

    crate::maintenance::start(&store, &config.etcd, &config.maintenance, &mut listeners);
    if config.endpoint_leases {
        let mut fronting = vec![endpoint_leases::Fronting {
            namespace: "default",
            name: "kubernetes",
        }];
        if let Some(node_port) = config.apiserver_node_port {
            endpoint_leases::ensure_node_port_service(&api, &store, node_port)
                .await
                .map_err(ServerError::ApiServerService)?;
            fronting.push(endpoint_leases::Fronting {
                namespace: endpoint_leases::NODE_PORT_SERVICE_NAMESPACE,
                name: endpoint_leases::NODE_PORT_SERVICE_NAME,
            });
        }
        let addr = addrs[0];
        match addr.ip() {
            IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
                listeners.spawn(endpoint_leases::run(
                    api.clone(),
                    store.clone(),
                    ip,
                    addr.port(),
                    fronting,
                ));
            }
            _ => {
                warn!(%addr, "not leasing an endpoint: the first --bind is no routable IPv4 address")
            }
        }
    }
    if let Some(mut controllers) = controllers {
        controllers.root_ca_cert = Some(pki.ca_cert.clone());
        listeners.spawn(crate::manager::run(api.clone(), store.clone(), controllers));
    }
    let state = Arc::new(State {
        service_accounts: crate::serviceaccount::Authenticator::new(
            service_account_keys,
            store.clone(),
        ),
        api,
        store,
        authz,
        tokens,
        join_token,
        pki_dir: pki_dir(&config.data_dir),
        in_flight: limits::InFlight::new(config.requests),
    });
    for (listener, local) in bound {
        info!(%local, "serving the Kubernetes API");
        listeners.spawn(accept_loop(
            listener,
            acceptor.clone(),
            config.connections,
            state.clone(),
        ));
    }

    let kubeconfig = config
        .kubeconfig_out
        .clone()
        .unwrap_or_else(|| config.data_dir.join("admin.kubeconfig"));
    let url = config
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", addrs[0]));
    let document = serde_json::to_string_pretty(&kubeconfig::admin(&pki, &url))
        .expect("JSON values always serialize");
    // It holds the admin's private key.
    pki::write(&kubeconfig, &document)?;
    Ok(RunningServer {
        addrs,
        kubeconfig,
        _listeners: listeners,
    })
}

/// How long start-up waits for etcd: the two are often started together.
const ETCD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn wait_for_etcd(store: &Store) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + ETCD_WAIT;
    loop {
        match store.current_revision().await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() < deadline => {
                warn!(%error, "waiting for etcd");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: ConnectionLimits,
    state: Arc<State>,
) {
    let mut connections = JoinSet::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // At the cap, stop accepting: new connections wait in the kernel's
        // backlog until one of ours closes.
        let permit = open
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        match listener.accept().await {
            Ok((stream, peer)) => {
                let acceptor = acceptor.clone();
                let state = state.clone();
                connections.spawn(async move {
                    serve_connection(stream, peer, acceptor, limits, state).await;
                    drop(permit);
                });
            }
            // Out of file descriptors and the like: keep serving the open
            // connections and try again.
            Err(error) => {
                warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        // Reap finished connections so the set does not grow forever.
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    limits: ConnectionLimits,
    state: Arc<State>,
) {
    let tls =
        match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
    let certificate_user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| auth::certificate_user(leaf));
    let service = service_fn(move |request| {
        let state = state.clone();
        let user = certificate_user.clone();
        async move { Ok::<_, Infallible>(handle(&state, user.as_ref(), request).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // HTTP/1 only: an HTTP/2 connection has its own flow control and pings.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        debug!(%peer, %error, "connection ended with an error");
    }
}

async fn handle(
    state: &State,
    certificate_user: Option<&User>,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    // Probes and version are public, as with kube-apiserver's default
    // `system:public-info-viewer` role.
    match path.as_str() {
        "/healthz" | "/livez" => return text(StatusCode::OK, "ok"),
        "/readyz" => {
            return match state.store.current_revision().await {
                Ok(_) => text(StatusCode::OK, "ok"),
                Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("etcd: {error}")),
            };
        }
        "/version" => return json_response(200, &version()),
        _ => {}
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if let Some(response) = join::serve(&path, authorization, &state.join_token, &state.pki_dir) {
        return response;
    }
    let Some(user) = auth::authenticate(
        certificate_user,
        authorization,
        &state.tokens,
        &state.service_accounts,
        &state.store,
    )
    .await
    else {
        return reply(ApiError::unauthorized().into());
    };
    let user = match authorize::authorize(
        &state.authz.authorizer(),
        user,
        request.method().as_str(),
        &path,
        request.uri().query(),
        request.headers(),
    ) {
        Ok(user) => user,
        Err(error) => return reply(error.into()),
    };
    let kind = limits::RequestKind::of(request.method(), &path, request.uri().query());
    let admission = match state.in_flight.admit(kind, &user.name) {
        Ok(admission) => admission,
        Err(error) => return reply(error.into()),
    };
    if let Some(target) = upgrade::streaming_target(&path) {
        debug!(user = user.name, path, "streaming request");
        return match upgrade::join(&state.api, request, target, admission).await {
            Ok(response) => response,
            Err(error) => reply(error.into()),
        };
    }
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_owned);
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match limits::read_body(request.into_body()).await {
        Ok(body) => body,
        Err(error) => return reply(error.into()),
    };
    debug!(user = user.name, %method, path, "request");
    let protobuf = crate::api::prefers_protobuf(accept.as_deref());
    let response = reply_as(
        protobuf,
        state
            .api
            .handle(ApiRequest {
                method,
                path,
                query,
                content_type,
                accept,
                user_agent,
                body,
                user: Some(user),
            })
            .await,
    );
    response.map(|body| body.holding(admission))
}

fn reply(reply: Reply) -> Response<Body> {
    reply_as(false, reply)
}

/// The reply, its object in protobuf when the client prefers that and the
/// object has a protobuf message (Tables do not: those stay JSON, which
/// every client accepts too).
fn reply_as(protobuf: bool, reply: Reply) -> Response<Body> {
    match reply {
        Reply::Json {
            code,
            body,
            warnings,
        } => {
            let encoded = protobuf
                .then(|| crate::api::protobuf::encode_object(&body))
                .and_then(|encoded| {
                    encoded
                        .inspect_err(|error| debug!(%error, "answering in JSON"))
                        .ok()
                });
            let mut response = match encoded {
                Some(bytes) => encoded_response(code, crate::api::protobuf::MEDIA_TYPE, bytes),
                None => json_response(code, &body),
            };
            if let Some(seconds) = retry_after(code, &body) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
            }
            for warning in warnings {
                // RFC 7234's form, as kube-apiserver sends it: code 299, no
                // agent, the text quoted.
                let value = format!("299 - {}", crate::validation::go_quote(&warning));
                if let Ok(value) = header::HeaderValue::from_str(&value) {
                    response.headers_mut().append(header::WARNING, value);
                }
            }
            response
        }
        Reply::Serialized { content_type, body } => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::Full(Some(body)))
            .expect("a valid response"),
        Reply::Stream {
            content_type,
            receiver,
        } => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::Stream(receiver))
            .expect("a valid response"),
    }
}

/// `Retry-After` for a 429 or 5xx `Status` that says when to retry
/// (`details.retryAfterSeconds`), as kube-apiserver sends it.
fn retry_after(code: u16, body: &Value) -> Option<u64> {
    (code == 429 || code >= 500)
        .then(|| body["details"]["retryAfterSeconds"].as_u64())
        .flatten()
        .filter(|&seconds| seconds > 0)
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("JSON values always serialize");
    encoded_response(code, "application/json", bytes)
}

fn encoded_response(code: u16, content_type: &str, bytes: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::Full(Some(Bytes::from(bytes))))
        .expect("a valid response")
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::Full(Some(Bytes::from(message.to_owned()))))
        .expect("a valid response")
}

/// What `/version` answers, shaped like kube-apiserver's `version.Info`.
fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// The machine architecture as Go names it (kubectl compares platforms).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests;
