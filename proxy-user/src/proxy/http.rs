//! The agent's metrics endpoint: `/metrics` (Prometheus text) and `/healthz`,
//! as kube-proxy's metrics port serves them; and the HTTP serving the
//! health port (`healthz`) shares.
use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Bytes, header::CONTENT_TYPE, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::{
    datapath::{Observer, chain},
    telemetry::Telemetry,
};

/// Serves `/metrics` and `/healthz` on `listener`.
pub async fn serve(listener: TcpListener, telemetry: Telemetry, observer: Observer) {
    let observer = Arc::new(Mutex::new(observer));
    serve_with(listener, move |request| {
        respond(request, &telemetry, &observer)
    })
    .await
}

/// Answers each request on `listener` with `respond`, one HTTP/1
/// connection per task.
pub async fn serve_with<F>(listener: TcpListener, respond: F)
where
    F: Fn(&Request<hyper::body::Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                warn!(%error, "accepting a connection failed");
                continue;
            }
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%error, "connection ended with an error");
            }
        });
    }
}

fn respond<B>(
    request: &Request<B>,
    telemetry: &Telemetry,
    observer: &Mutex<Observer>,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let observer = observer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match observer
                .frontends()
                .and_then(|frontends| Ok((frontends, observer.drops()?)))
            {
                Ok((frontends, drops)) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    telemetry.render_metrics(&frontends, &drops),
                ),
                Err(error) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("reading the datapath maps: {}\n", chain(&error)),
                ),
            }
        }
        (&Method::GET, "/healthz") => {
            let health = telemetry.health();
            let status = match health.healthy {
                true => StatusCode::OK,
                false => StatusCode::SERVICE_UNAVAILABLE,
            };
            reply(status, "application/json", health.body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /healthz\n".to_owned(),
        ),
    }
}

pub fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
