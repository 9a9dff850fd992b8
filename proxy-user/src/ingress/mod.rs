//! The Ingress proxy: serves the networking.k8s.io/v1 Ingresses of one
//! IngressClass on this node's address, over HTTP and HTTPS, straight to
//! the ready endpoints of their Services. The Ingresses and IngressClasses
//! are watched in etcd (`watch`, read as `objects`); the class decides
//! which are served (`class`); their rules become a route table (`routes`,
//! built in `table`) and the TLS Secrets they name, read through the API
//! server as the node (`tls_secrets`), the certificates chosen by SNI
//! (`secrets`, `tls`); backends resolve against the
//! agent's Service and EndpointSlice cache (`backends`) into pools with
//! outlier ejection (`pool`, on `proxy::outlier`'s policy); `controller` keeps all of it
//! current; `server` accepts connections and `proxy` forwards requests,
//! with the forwarding headers of `headers`.
mod backends;
mod class;
mod controller;
mod headers;
mod objects;
mod pool;
mod proxy;
mod routes;
mod secrets;
mod server;
mod table;
mod tls;
mod tls_secrets;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::apiserver::Connection;
use crate::proxy::cluster::shared::SharedCluster;

/// What the proxy is started with (from the agent's flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd: Vec<String>,
    /// The node's client for the API server, which the TLS Secrets are
    /// read through.
    pub api: Option<Connection>,
    /// How long a TLS Secret read is trusted.
    pub secret_ttl: std::time::Duration,
    /// The IngressClass served.
    pub class: String,
    pub http: SocketAddr,
    pub https: SocketAddr,
}

/// Binds both ports and serves them in the background.
pub async fn start(config: Config, cluster: SharedCluster) -> anyhow::Result<()> {
    let resolver = Arc::new(tls::SniResolver::new(
        tls::default_certificate().context("making the Ingress default certificate")?,
    ));
    let acceptor = tls_acceptor(resolver.clone())?;
    let http = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("serving Ingresses over HTTP on {}", config.http))?;
    let https = TcpListener::bind(config.https)
        .await
        .with_context(|| format!("serving Ingresses over HTTPS on {}", config.https))?;
    info!(http = %config.http, https = %config.https, class = %config.class, "serving Ingresses");
    let routes = Arc::new(table::Routes::default());
    let proxy = Arc::new(proxy::Proxy::new(routes.clone()));
    tokio::spawn(server::serve_http(http, proxy.clone()));
    tokio::spawn(server::serve_https(https, acceptor, proxy));
    let controller = controller::Controller {
        etcd: config.etcd,
        api: config.api,
        secret_ttl: config.secret_ttl,
        class: config.class,
        cluster,
        routes,
        resolver,
    };
    tokio::spawn(controller.run());
    Ok(())
}

fn tls_acceptor(resolver: Arc<tls::SniResolver>) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
