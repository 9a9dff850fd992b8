//! A minimal HTTPS client for skiff-control's REST API: HTTP/1.1 over
//! rustls, a bearer token, the server verified against the CA that
//! skiff-control wrote. `skiff-control-bench` and `cargo xtask bench`
//! create, list and watch objects in bulk with it; nothing else needs more.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Incoming,
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where the API server is and how to trust and authenticate to it.
#[derive(Clone)]
pub struct ApiClient {
    addr: SocketAddr,
    token: String,
    tls: TlsConnector,
}

impl ApiClient {
    pub fn new(addr: SocketAddr, token: &str, ca_pem: &[u8]) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem).context("parsing the CA")?)?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            addr,
            token: token.to_owned(),
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Opens one keep-alive connection.
    pub async fn connect(&self) -> Result<Connection> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(ServerName::IpAddress(self.addr.ip().into()), tcp)
            .await
            .with_context(|| format!("TLS with {}", self.addr))?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(Connection {
            sender,
            token: self.token.clone(),
            host: self.addr.to_string(),
        })
    }
}

/// One keep-alive connection; requests on it go one at a time.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    token: String,
    host: String,
}

impl Connection {
    /// Sends a request with an optional JSON body; the response with its
    /// body unread (a watch streams it).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<hyper::Response<Incoming>> {
        self.send_with_content_type(method, path, body, "application/json")
            .await
    }

    /// [`Connection::send`] with a body of `content_type` (a patch's).
    pub async fn send_with_content_type(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> Result<hyper::Response<Incoming>> {
        let request = Request::builder()
            .method(&method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))?;
        self.sender.ready().await?;
        self.sender
            .send_request(request)
            .await
            .with_context(|| format!("{method} {path}"))
    }

    /// A request whose answer must have one of `expected` statuses: its body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        expected: &[StatusCode],
    ) -> Result<Bytes> {
        let response = self.send(method.clone(), path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !expected.contains(&status) {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(bytes)
    }
}
