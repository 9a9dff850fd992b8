//! Reaching the node agent of a pod's node: its kubelet API on the node's
//! InternalIP at the kubelet port, over TLS with the API server's
//! kubelet-client certificate. `pods/log`, `pods/exec` and `pods/attach`
//! go there, and the metrics API reads its `/stats/summary`.

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header, request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};
use tracing::debug;

use super::Api;
use super::registry;
use super::status::ApiError;
use crate::store::object_key;

/// How long the agent gets to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a pod's node agent, for one of its containers.
pub struct Kubelet {
    stream: TlsStream<TcpStream>,
    /// `<ip>:<port>`, for the Host header.
    pub host: String,
    /// The container asked for, or the pod's only one.
    pub container: String,
}

impl Kubelet {
    /// Sends `request` (its Host set here, no body) over HTTP/1.1 and
    /// answers the agent's response. The connection allows upgrades:
    /// exec's, attach's and port-forward's switch protocols on it.
    pub async fn send(self, request: request::Builder) -> Result<Response<Incoming>, ApiError> {
        send(self.stream, &self.host, request).await
    }
}

/// Sends `request` (its Host set here, no body) on `stream` to the agent
/// at `host`.
async fn send(
    stream: TlsStream<TcpStream>,
    host: &str,
    request: request::Builder,
) -> Result<Response<Incoming>, ApiError> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| unreachable(host, error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            debug!(%error, "kubelet connection ended");
        }
    });
    let request = request
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|error| unreachable(host, error))?;
    sender
        .send_request(request)
        .await
        .map_err(|error| unreachable(host, error))
}

/// A failure talking to the agent at `host`.
pub fn unreachable(host: impl Display, error: impl Display) -> ApiError {
    ApiError::internal(format!("the node agent at {host}: {error}"))
}

/// The container asked for: the one named, or the pod's only one.
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

impl Api {
    /// Connects to the agent running pod `namespace/name`, for the
    /// container asked for.
    pub async fn connect_kubelet(
        &self,
        namespace: &str,
        name: &str,
        container_asked: Option<&str>,
    ) -> Result<Kubelet, ApiError> {
        let pods = registry::find("", "v1", "pods").expect("pods are in the table");
        let nodes = registry::find("", "v1", "nodes").expect("nodes are in the table");
        let pod = self
            .store
            .get(&object_key(pods.storage, Some(namespace), name))
            .await
            .map_err(|error| ApiError::from_store(error, pods, name))?;
        let container = container(&pod, container_asked)?.to_owned();
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
        let (stream, host) = self.connect_node(&node).await?;
        Ok(Kubelet {
            stream,
            host,
            container,
        })
    }

    /// A TLS connection to `node`'s agent, and its `<ip>:<port>`.
    async fn connect_node(&self, node: &Value) -> Result<(TlsStream<TcpStream>, String), ApiError> {
        let node_name = node["metadata"]["name"].as_str().unwrap_or_default();
        let ip = internal_ip(node).ok_or_else(|| {
            ApiError::internal(format!("node {node_name} has no InternalIP address"))
        })?;
        let address = SocketAddr::new(ip, self.config.kubelet_port);
        let config = (self.config.kubelet_client.clone())
            .ok_or_else(|| unreachable(address, "this server has no kubelet client certificate"))?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|error| unreachable(address, error))?
            .map_err(|error| unreachable(address, error))?;
        let stream = TlsConnector::from(config)
            .connect(ServerName::IpAddress(ip.into()), tcp)
            .await
            .map_err(|error| unreachable(address, error))?;
        Ok((stream, address.to_string()))
    }

    /// GET `path` from `node`'s agent, a JSON document.
    pub async fn node_json(&self, node: &Value, path: &str) -> Result<Value, ApiError> {
        let (stream, host) = self.connect_node(node).await?;
        let response = send(stream, &host, Request::get(path)).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| unreachable(&host, error))?
            .to_bytes();
        if !status.is_success() {
            return Err(unreachable(&host, format!("{path}: {status}")));
        }
        serde_json::from_slice(&body).map_err(|error| unreachable(&host, error))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn picks_the_container() {
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
    }
}
