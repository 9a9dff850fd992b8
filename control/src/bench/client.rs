//! A minimal HTTPS client for the benchmark: one HTTP/1.1 connection per
//! `Conn`, a bearer token, the server verified against its CA.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Clone)]
pub struct Client {
    addr: String,
    token: String,
    tls: TlsConnector,
}

impl Client {
    pub fn new(addr: &str, token: &str, ca_pem: &[u8]) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem).context("parsing the CA")?)?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            addr: addr.to_owned(),
            token: token.to_owned(),
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    pub async fn connect(&self) -> Result<Conn> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("127.0.0.1")?;
        let tls = self.tls.connect(name, tcp).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(Conn {
            sender,
            token: self.token.clone(),
        })
    }
}

pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    token: String,
}

impl Conn {
    /// Sends a request and returns the response with its body unread.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<hyper::Response<Incoming>> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// A request whose answer must have `expected` status: its body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        expected: StatusCode,
    ) -> Result<Bytes> {
        let response = self.send(method.clone(), path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if status != expected {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(bytes)
    }
}
