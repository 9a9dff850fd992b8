//! The proxy service: picks a request's route by host and path, and
//! forwards it to an endpoint of the route's backend over a keep-alive
//! pool (HTTP/1.1 to backends, whatever the client spoke). A request
//! without a body that failed on the way to an endpoint (connect failure,
//! a connection the endpoint closed) is retried on another endpoint when
//! it is idempotent, or when it was never sent: an endpoint that is going
//! away then costs the client nothing. WebSocket upgrades get a connection
//! of their own, relayed both ways once the backend switches protocols.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::http::uri::Authority;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::debug;

use super::headers::{add_forwarded, is_upgrade, strip_hop_by_hop};
use super::pool::Unavailable;
use super::table::{Routes, Target};

/// What clients get: a backend's body or the proxy's own answer.
pub type Body = Either<Incoming, Full<Bytes>>;
/// What backends get: the client's body, or none.
type Upstream = Either<Incoming, Empty<Bytes>>;

/// Endpoints tried for one request, at most.
const MAX_ATTEMPTS: usize = 3;
/// ingress-nginx's `proxy-connect-timeout` is 5 s; a pod that is gone
/// should cost a retry less than that.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// ingress-nginx's `proxy-read-timeout`: how long an endpoint may take to
/// start its answer before the client gets 504.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle keep-alive connections kept per endpoint.
const IDLE_PER_ENDPOINT: usize = 256;

pub struct Proxy {
    routes: Arc<Routes>,
    client: Client<HttpConnector, Upstream>,
}

/// How the client reached the proxy.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    pub client: IpAddr,
    /// `http` or `https`.
    pub proto: &'static str,
}

impl Proxy {
    pub fn new(routes: Arc<Routes>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_ENDPOINT)
            .build(connector);
        Self { routes, client }
    }

    pub async fn handle(&self, mut request: Request<Incoming>, origin: Origin) -> Response<Body> {
        let version = request.version();
        let Some(host) = host_of(&request) else {
            return answer(
                version,
                StatusCode::BAD_REQUEST,
                "skiff ingress: the request names no host\n".into(),
            );
        };
        let hostname = host
            .parse::<Authority>()
            .map(|a| a.host().trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_default();
        let routes = self.routes.current();
        let Some(target) = routes.lookup(&hostname, request.uri().path()) else {
            return answer(
                version,
                StatusCode::NOT_FOUND,
                format!(
                    "skiff ingress: no Ingress serves host {hostname:?} path {:?}\n",
                    request.uri().path()
                ),
            );
        };
        if let Some(why) = target.pool.unavailable() {
            return answer(
                version,
                StatusCode::SERVICE_UNAVAILABLE,
                unavailable_body(target, &why),
            );
        }
        let upgrade = version == Version::HTTP_11 && is_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers, upgrade);
        add_forwarded(&mut headers, origin.client, origin.proto, &host);
        if !headers.contains_key(header::HOST)
            && let Ok(value) = HeaderValue::from_str(&host)
        {
            headers.insert(header::HOST, value);
        }
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let outgoing = Outgoing {
            method: parts.method,
            path,
            headers,
        };
        let mut response = match client_upgrade {
            Some(client_upgrade) => self.upgrade(target, outgoing, client_upgrade).await,
            None => self.forward(target, outgoing, body).await,
        };
        if !upgrade {
            *response.version_mut() = version;
        }
        response
    }

    async fn forward(&self, target: &Target, outgoing: Outgoing, body: Incoming) -> Response<Body> {
        let bodiless = body.is_end_stream();
        let mut body = (!bodiless).then_some(body);
        let mut tried = Vec::new();
        loop {
            let Some(endpoint) = target.pool.pick(&tried) else {
                return answer(
                    Version::HTTP_11,
                    StatusCode::SERVICE_UNAVAILABLE,
                    unavailable_body(target, &Unavailable::NoReadyEndpoints),
                );
            };
            let upstream = body
                .take()
                .map_or_else(|| Either::Right(Empty::new()), Either::Left);
            let request = match outgoing.request(endpoint, upstream) {
                Ok(request) => request,
                Err(error) => {
                    return answer(
                        Version::HTTP_11,
                        StatusCode::BAD_REQUEST,
                        format!("skiff ingress: {error}\n"),
                    );
                }
            };
            let Ok(result) =
                tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(request)).await
            else {
                target.pool.failure(endpoint);
                debug!(ingress = %target.ingress, backend = %target.pool.name, %endpoint, "an endpoint did not answer in time");
                return answer(
                    Version::HTTP_11,
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "skiff ingress {}: {} endpoint {endpoint} did not answer within {} s\n",
                        target.ingress,
                        target.pool.name,
                        RESPONSE_TIMEOUT.as_secs()
                    ),
                );
            };
            match result {
                Ok(response) => {
                    match response.status().is_server_error() {
                        true => target.pool.failure(endpoint),
                        false => target.pool.success(&endpoint),
                    }
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers, false);
                    return Response::from_parts(parts, Either::Left(body));
                }
                Err(error) => {
                    target.pool.failure(endpoint);
                    tried.push(endpoint);
                    let retry = bodiless
                        && (is_idempotent(&outgoing.method) || error.is_connect())
                        && tried.len() < MAX_ATTEMPTS;
                    debug!(ingress = %target.ingress, backend = %target.pool.name, %endpoint, error = %chain(&error), retry, "request to an endpoint failed");
                    if !retry {
                        return answer(
                            Version::HTTP_11,
                            StatusCode::BAD_GATEWAY,
                            format!(
                                "skiff ingress {}: {} endpoint {endpoint} failed: {}\n",
                                target.ingress,
                                target.pool.name,
                                chain(&error)
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Relays an upgrade (WebSocket) over a connection of its own.
    async fn upgrade(
        &self,
        target: &Target,
        outgoing: Outgoing,
        client: hyper::upgrade::OnUpgrade,
    ) -> Response<Body> {
        let Some(endpoint) = target.pool.pick(&[]) else {
            return answer(
                Version::HTTP_11,
                StatusCode::SERVICE_UNAVAILABLE,
                unavailable_body(target, &Unavailable::NoReadyEndpoints),
            );
        };
        match upgrade_to(endpoint, outgoing, client).await {
            Ok(response) => {
                target.pool.success(&endpoint);
                response
            }
            Err(error) => {
                target.pool.failure(endpoint);
                answer(
                    Version::HTTP_11,
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "skiff ingress {}: {} endpoint {endpoint} failed the upgrade: {error}\n",
                        target.ingress, target.pool.name
                    ),
                )
            }
        }
    }
}

/// The request as it goes to every endpoint tried.
struct Outgoing {
    method: Method,
    /// Path and query.
    path: String,
    headers: hyper::HeaderMap,
}

impl Outgoing {
    /// The request to `endpoint`, in absolute form: the client pools
    /// connections by the URI's authority.
    fn request<B>(&self, endpoint: SocketAddr, body: B) -> hyper::http::Result<Request<B>> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(format!("http://{endpoint}{}", self.path))
            .version(Version::HTTP_11)
            .body(body)?;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }
}

async fn upgrade_to(
    endpoint: SocketAddr,
    outgoing: Outgoing,
    client: hyper::upgrade::OnUpgrade,
) -> anyhow::Result<Response<Body>> {
    let stream =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(endpoint)).await??;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            debug!(%endpoint, %error, "upgraded backend connection ended");
        }
    });
    let mut request = Request::builder()
        .method(outgoing.method)
        .uri(outgoing.path)
        .body(Empty::<Bytes>::new())?;
    *request.headers_mut() = outgoing.headers;
    let mut response = sender.send_request(request).await?;
    let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switched {
        let backend = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (Ok(client), Ok(backend)) = tokio::join!(client, backend) else {
                return;
            };
            let result = tokio::io::copy_bidirectional(
                &mut TokioIo::new(client),
                &mut TokioIo::new(backend),
            )
            .await;
            debug!(%endpoint, ?result, "upgraded connection closed");
        });
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, switched);
    Ok(Response::from_parts(parts, Either::Left(body)))
}

/// The host the client asked for, with its port if it gave one: the
/// authority of an HTTP/2 (or absolute-form) request, else `Host`.
fn host_of<B>(request: &Request<B>) -> Option<String> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str().to_owned());
    }
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    (!host.is_empty()).then(|| host.to_owned())
}

/// RFC 9110's idempotent methods.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn unavailable_body(target: &Target, why: &Unavailable) -> String {
    let ingress = &target.ingress;
    let backend = &target.pool.name;
    match why {
        Unavailable::NoService => {
            format!("skiff ingress {ingress}: {backend}: the Service does not exist\n")
        }
        Unavailable::NoSuchPort => {
            format!("skiff ingress {ingress}: {backend}: the Service has no such TCP port\n")
        }
        Unavailable::NoReadyEndpoints => {
            format!("skiff ingress {ingress}: {backend}: no ready endpoints\n")
        }
        Unavailable::Resource(_) => {
            format!("skiff ingress {ingress}: {backend}: resource backends are not served\n")
        }
    }
}

/// The proxy's own answer.
fn answer(version: Version, status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    *response.version_mut() = version;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An error with its causes, for log lines and error bodies.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_comes_from_the_authority_or_the_header() {
        let request = Request::builder()
            .uri("https://a.example.com:8443/x")
            .body(())
            .unwrap();
        assert_eq!(host_of(&request).as_deref(), Some("a.example.com:8443"));
        let request = Request::builder()
            .uri("/x")
            .header("host", "b.example.com")
            .body(())
            .unwrap();
        assert_eq!(host_of(&request).as_deref(), Some("b.example.com"));
        let request = Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(host_of(&request), None);
    }

    #[test]
    fn only_idempotent_methods_are_retried_after_sending() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
