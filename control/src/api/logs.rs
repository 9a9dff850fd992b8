//! `pods/<name>/log`: proxied to the agent of the pod's node, at
//! `http://<node InternalIP>:<kubelet port>/containerLogs/<namespace>/<pod>/<container>`
//! with the query (follow, tailLines, sinceSeconds, timestamps, previous,
//! limitBytes) passed on, the body streamed back as it comes.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

use super::registry;
use super::status::ApiError;
use super::{Api, Reply};
use crate::store::object_key;

/// How long the agent gets to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The container whose log is wanted: the one named in the query, or the
/// pod's only one.
fn container<'a>(pod: &'a Value, asked: Option<&'a str>) -> Result<&'a str, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|container| container["name"].as_str())
        .collect();
    match asked {
        Some(asked) if containers.contains(&asked) => Ok(asked),
        Some(asked) => Err(ApiError::bad_request(format!(
            "container {asked} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0]),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// The node's InternalIP.
fn internal_ip(node: &Value) -> Option<IpAddr> {
    node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|address| address["type"] == "InternalIP")?["address"]
        .as_str()?
        .parse()
        .ok()
}

/// The query without `container` (that is in the path).
fn passed_on(query: Option<&str>) -> String {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("container="))
        .collect::<Vec<_>>()
        .join("&")
}

impl Api {
    /// GET `pods/<name>/log`.
    pub(super) async fn pod_log(
        &self,
        namespace: &str,
        name: &str,
        container_asked: Option<&str>,
        raw_query: Option<&str>,
    ) -> Result<Reply, ApiError> {
        let pods = registry::find("", "v1", "pods").expect("pods are in the table");
        let nodes = registry::find("", "v1", "nodes").expect("nodes are in the table");
        let pod = self
            .store
            .get(&object_key(pods.storage, Some(namespace), name))
            .await
            .map_err(|error| ApiError::from_store(error, pods, name))?;
        let container = container(&pod, container_asked)?;
        let node_name = pod["spec"]["nodeName"]
            .as_str()
            .filter(|node| !node.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {name} does not have a host assigned"))
            })?;
        let node = self
            .store
            .get(&object_key(nodes.storage, None, node_name))
            .await
            .map_err(|error| ApiError::from_store(error, nodes, node_name))?;
        let ip = internal_ip(&node).ok_or_else(|| {
            ApiError::internal(format!("node {node_name} has no InternalIP address"))
        })?;
        let mut path = format!("/containerLogs/{namespace}/{name}/{container}");
        let query = passed_on(raw_query);
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        stream_from_agent(ip, self.config.kubelet_port, &path).await
    }
}

async fn stream_from_agent(ip: IpAddr, port: u16, path: &str) -> Result<Reply, ApiError> {
    let unreachable = |error: &dyn std::fmt::Display| {
        ApiError::internal(format!("the node agent at {ip}:{port}: {error}"))
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port)))
        .await
        .map_err(|error| unreachable(&error))?
        .map_err(|error| unreachable(&error))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| unreachable(&error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(%error, "log connection ended");
        }
    });
    let host = std::net::SocketAddr::new(ip, port).to_string();
    let request = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|error| unreachable(&error))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| unreachable(&error))?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|collected| String::from_utf8_lossy(&collected.to_bytes()).into_owned())
            .unwrap_or_default();
        let mut error = ApiError::internal(text.trim().to_owned());
        error.code = status.as_u16();
        return Err(error);
    }
    let (chunks, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data()
                && chunks.send(data).await.is_err()
            {
                break;
            }
        }
    });
    Ok(Reply::Stream {
        content_type: "text/plain",
        receiver,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn picks_the_container_and_passes_the_query_on() {
        let one =
            json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "app" }] } });
        assert_eq!(container(&one, None).unwrap(), "app");
        assert!(container(&one, Some("other")).is_err());
        let two = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "a" }, { "name": "b" }] } });
        assert!(
            container(&two, None)
                .unwrap_err()
                .message
                .contains("choose one of: [a b]")
        );
        assert_eq!(
            passed_on(Some("container=app&follow=true&tailLines=5")),
            "follow=true&tailLines=5"
        );
        assert_eq!(passed_on(None), "");
    }
}
