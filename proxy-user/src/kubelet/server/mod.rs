//! The kubelet API on `--kubelet-bind` (port 10250): HTTPS that serves only
//! the API server's client certificate from the cluster CA (`tls`). It
//! answers `/containerLogs/<namespace>/<pod>/<container>` (`logs`),
//! `/exec/<namespace>/<pod>/<container>` (`exec`, over `channels`, with a
//! `terminal` for `-t`) and `/attach/...` (the container's output from the
//! log, through `exec`'s session) and `/portForward/<namespace>/<pod>`
//! (`port_forward`, over `spdy`, itself in a WebSocket's `tunnel` or not)
//! and `/stats/summary` (the node's and its pods' resource usage, `stats`).
mod channels;
mod exec;
mod logs;
mod port_forward;
mod spdy;
mod terminal;
pub mod tls;
mod tunnel;

use std::{convert::Infallible, path::PathBuf, sync::Arc, time::Duration};

use http_body_util::{BodyExt as _, Empty, Full, combinators::BoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::Bytes,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::pods::{Logs, exec::Containers, loopback::PodPorts, names, pod_key::PodKey};
use super::stats::Stats;

type Body = BoxBody<Bytes, Infallible>;

/// How often the server looks for a client CA file that is not there yet.
const CA_POLL: Duration = Duration::from_secs(1);

/// What the endpoints serve from.
#[derive(Clone)]
pub struct Served {
    pub stats: Arc<Stats>,
    pub logs: Logs,
    pub containers: Containers,
    pub ports: PodPorts,
}

/// Serves once the TLS settings can be made: the cluster CA may be written
/// after the agent starts (whichever of the two starts first).
pub async fn serve(
    listener: TcpListener,
    make_acceptor: impl Fn() -> Result<TlsAcceptor, tls::TlsError>,
    client_ca: PathBuf,
    served: Served,
) {
    let acceptor = loop {
        if client_ca.exists() {
            match make_acceptor() {
                Ok(acceptor) => break acceptor,
                Err(error) => warn!(%error, "the kubelet API cannot serve yet"),
            }
        } else {
            debug!(ca = %client_ca.display(), "waiting for the client CA file");
        }
        tokio::time::sleep(CA_POLL).await;
    };
    info!(ca = %client_ca.display(), "serving the kubelet API");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accepting a kubelet connection failed");
                continue;
            }
        };
        let (acceptor, served) = (acceptor.clone(), served.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(error) => {
                    debug!(%peer, %error, "kubelet TLS handshake refused");
                    return;
                }
            };
            let allowed = (tls.get_ref().1.peer_certificates())
                .and_then(|chain| chain.first())
                .is_some_and(tls::is_api_server);
            let service = service_fn(move |request| {
                let response = match allowed {
                    true => route(request, &served),
                    false => text(
                        StatusCode::FORBIDDEN,
                        format!("only {} may use the kubelet API\n", tls::API_SERVER_CLIENT),
                    ),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await
            {
                debug!(%error, "kubelet connection ended with an error");
            }
        });
    }
}

fn route(request: Request<hyper::body::Incoming>, served: &Served) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts == ["stats", "summary"] {
        return json(&served.stats.summary());
    }
    if let ["portForward", namespace, pod] = parts.as_slice() {
        if let Err(error) = names::check_request(namespace, pod, None) {
            return text(StatusCode::BAD_REQUEST, format!("{error}\n"));
        }
        return port_forward::upgrade(request, served.ports.clone(), pod_key(namespace, pod));
    }
    let [endpoint, namespace, pod, container] = parts.as_slice() else {
        return text(StatusCode::NOT_FOUND, format!("not found: {path}\n"));
    };
    if let Err(error) = names::check_request(namespace, pod, Some(container)) {
        return text(StatusCode::BAD_REQUEST, format!("{error}\n"));
    }
    let pod = pod_key(namespace, pod);
    match *endpoint {
        "containerLogs" => logs::respond(&request, &served.logs, &pod, container),
        "exec" => {
            let query = exec::parse_query(request.uri().query());
            let command = (served.containers)
                .exec(&pod, container, &query.argv, query.tty)
                .map_err(|error| error.to_string());
            exec::upgrade(request, query, exec::Source::Command(command))
        }
        "attach" => {
            let query = exec::parse_query(request.uri().query());
            let output = match query.stdin {
                // Containers run with stdin closed: there is nothing to
                // write to.
                true => Err(format!(
                    "container {container} does not take stdin: attach without -i"
                )),
                false => logs::attach(&served.logs, &pod, container),
            };
            exec::upgrade(request, query, exec::Source::Output(output))
        }
        _ => text(StatusCode::NOT_FOUND, format!("not found: {path}\n")),
    }
}

fn pod_key(namespace: &str, name: &str) -> PodKey {
    PodKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// The answer that switches the connection to `upgrade`.
fn switching_protocols(upgrade: &'static str) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(upgrade));
    response
}

/// The answer that switches the connection to a WebSocket speaking
/// `protocol`; `accept` answers the client's key.
fn websocket_accepted(protocol: &'static str, accept: &str) -> Response<Body> {
    let mut response = switching_protocols("websocket");
    let headers = response.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    if let Ok(accept) = HeaderValue::from_str(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn plain(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn json(value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("the summary serializes");
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut response = plain(Full::new(Bytes::from(message)).boxed());
    *response.status_mut() = status;
    response
}
