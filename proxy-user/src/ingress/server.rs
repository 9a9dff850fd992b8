//! The listeners: plain HTTP and TLS (ALPN `h2` and `http/1.1`), each
//! connection served by hyper-util's automatic HTTP/1.1-or-HTTP/2
//! server, with upgrades for WebSocket.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::proxy::{Origin, Proxy};

/// A pause after a failed accept (out of file descriptors, say), so the
/// loop does not spin while the cause lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// nginx's `client_header_timeout` and `ssl_handshake_timeout` (60 s): a
/// client that opens a connection and sends nothing is closed after this,
/// so idle sockets cannot pile up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn serve_http(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        let Some((stream, peer)) = accept(&listener).await else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(serve_connection(stream, peer, "http", proxy));
    }
}

pub async fn serve_https(listener: TcpListener, acceptor: TlsAcceptor, proxy: Arc<Proxy>) {
    loop {
        let Some((stream, peer)) = accept(&listener).await else {
            continue;
        };
        let proxy = proxy.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_connection(tls, peer, "https", proxy).await,
                Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn accept(listener: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok((stream, peer)) => {
            // Small requests and answers should not wait for Nagle.
            let _ = stream.set_nodelay(true);
            Some((stream, peer))
        }
        Err(error) => {
            warn!(%error, "accepting an Ingress connection failed");
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            None
        }
    }
}

async fn serve_connection<I>(io: I, peer: SocketAddr, proto: &'static str, proxy: Arc<Proxy>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let origin = Origin {
        client: peer.ip(),
        proto,
    };
    let service = service_fn(move |request| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(request, origin).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(CLIENT_TIMEOUT);
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        debug!(%peer, %error, "Ingress connection ended with an error");
    }
}
