//! `pods/<name>/exec`, `pods/<name>/attach` and `pods/<name>/portforward`:
//! the request goes on to the pod's node agent (its kubelet API's
//! `/exec/<namespace>/<pod>/<container>`, `/attach/...`,
//! `/portForward/<namespace>/<pod>`) with its query and upgrade headers;
//! once the agent switches protocols, the two connections are joined and
//! copied both ways, whatever the protocol (WebSocket channels or SPDY).

use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::body::Body;
use super::limits::Admission;
use crate::api::{Api, ApiError};

/// The subresources joined to the agent, and the agent's endpoint for each.
const ENDPOINTS: [(&str, &str); 3] = [
    ("exec", "exec"),
    ("attach", "attach"),
    ("portforward", "portForward"),
];

/// A pod's streaming subresource: `(namespace, pod, endpoint)` of
/// `/api/v1/namespaces/<namespace>/pods/<pod>/<subresource>`.
pub fn streaming_target(path: &str) -> Option<(&str, &str, &'static str)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let [
        "api",
        "v1",
        "namespaces",
        namespace,
        "pods",
        pod,
        subresource,
    ] = parts.as_slice()
    else {
        return None;
    };
    let (_, endpoint) = ENDPOINTS.iter().find(|(name, _)| name == subresource)?;
    Some((namespace, pod, endpoint))
}

/// The headers that go on to the agent: the upgrade's, not the client's
/// credentials.
fn passed_on(
    headers: &HeaderMap,
) -> impl Iterator<Item = (&header::HeaderName, &header::HeaderValue)> {
    headers.iter().filter(|(name, _)| {
        *name == header::UPGRADE
            || *name == header::CONNECTION
            || name.as_str().starts_with("sec-websocket-")
            || name.as_str().starts_with("x-stream-protocol-")
    })
}

pub async fn join(
    api: &Api,
    mut request: Request<Incoming>,
    (namespace, pod, endpoint): (&str, &str, &str),
    admission: Admission,
) -> Result<Response<Body>, ApiError> {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let container = form_value(&query, "container");
    let kubelet = api
        .connect_kubelet(namespace, pod, container.as_deref())
        .await?;
    let path = match endpoint {
        "portForward" => format!("/{endpoint}/{namespace}/{pod}?{query}"),
        _ => format!(
            "/{endpoint}/{namespace}/{pod}/{}?{query}",
            kubelet.container
        ),
    };
    let host = kubelet.host.clone();
    let unreachable = |error: &dyn std::fmt::Display| {
        ApiError::internal(format!("the node agent at {host}: {error}"))
    };
    let mut onward = Request::builder().method(request.method()).uri(path);
    for (name, value) in passed_on(request.headers()) {
        onward = onward.header(name, value);
    }
    let mut answer = kubelet.send(onward).await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(|error| unreachable(&error))?
            .to_bytes();
        return response
            .body(Body::Full(Some(body)))
            .map_err(|error| unreachable(&error));
    }
    let from_client = hyper::upgrade::on(&mut request);
    let from_agent = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        match tokio::try_join!(from_client, from_agent) {
            Ok((client, agent)) => {
                let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
                if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
                    debug!(%error, "a streaming connection ended with an error");
                }
            }
            Err(error) => debug!(%error, "joining a streaming connection failed"),
        }
        drop(admission);
    });
    response
        .body(Body::Full(None))
        .map_err(|error| unreachable(&error))
}

/// The first value of `key` in a query.
fn form_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == key).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_streaming_subresources() {
        assert_eq!(
            streaming_target("/api/v1/namespaces/default/pods/web/exec"),
            Some(("default", "web", "exec"))
        );
        assert_eq!(
            streaming_target("/api/v1/namespaces/ns/pods/web/portforward"),
            Some(("ns", "web", "portForward"))
        );
        assert_eq!(streaming_target("/api/v1/namespaces/ns/pods/web/log"), None);
        assert_eq!(streaming_target("/api/v1/namespaces/ns/pods/web"), None);
        assert_eq!(
            form_value("command=ls&container=app", "container").as_deref(),
            Some("app")
        );
    }
}
