//! The API servers' own endpoints, kept as kube-apiserver's lease endpoint
//! reconciler keeps them: each server holds `/registry/masterleases/<ip>`
//! under an etcd lease of [`LEASE_TTL`] that it renews every [`PERIOD`],
//! and as often each server writes the leased addresses into the
//! EndpointSlices of the Services that front the API servers
//! (`default/kubernetes`, and `kube-system/skiff-apiserver` when a NodePort
//! is asked for). The agents' datapath balances those Services over the
//! live servers: one that dies is out of them within the lease's TTL, and
//! sooner when its port refuses connections (each server probes the
//! others' as it writes).

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use skiff_etcd::etcd_client::{GetOptions, PutOptions};
use tracing::{info, warn};

use crate::api::{Api, ApiRequest, Reply};
use crate::store::Store;

/// The etcd prefix of the servers' leased addresses (kube-apiserver's).
const PREFIX: &str = "/registry/masterleases/";
/// How long a server's address outlives its last renewal, in seconds:
/// etcd's shortest lease with its default election timeout.
pub const LEASE_TTL: i64 = 2;
/// How often the lease is renewed and the slices are written.
const PERIOD: Duration = Duration::from_millis(500);
/// How long a server's API port may take to accept a probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service whose EndpointSlice (of the same name) lists the API servers.
#[derive(Debug, Clone)]
pub struct Fronting {
    pub namespace: &'static str,
    pub name: &'static str,
}

/// The NodePort Service in front of the API servers, for clients outside
/// the cluster's pods: port 443 on every node's `node_port`, no selector
/// (its slice is written here). Created when missing.
pub async fn ensure_node_port_service(
    api: &Api,
    store: &Store,
    node_port: u16,
) -> Result<(), String> {
    let key = format!(
        "{}/{NODE_PORT_SERVICE_NAMESPACE}/{NODE_PORT_SERVICE_NAME}",
        skiff_etcd::keys::SERVICES
    );
    if store.get(&key).await.is_ok() {
        return Ok(());
    }
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NODE_PORT_SERVICE_NAME,
            "namespace": NODE_PORT_SERVICE_NAMESPACE,
            "labels": { "component": "apiserver", "provider": "skiff" },
        },
        "spec": {
            "type": "NodePort",
            "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "nodePort": node_port }],
        },
    });
    let path = format!("/api/v1/namespaces/{NODE_PORT_SERVICE_NAMESPACE}/services");
    match call(api, Method::POST, path, &service).await {
        // Another server created it first.
        Err(message) if message.starts_with("409") => Ok(()),
        other => other,
    }
}

/// The NodePort Service's name and namespace.
pub const NODE_PORT_SERVICE_NAMESPACE: &str = "kube-system";
pub const NODE_PORT_SERVICE_NAME: &str = "skiff-apiserver";

/// Keeps `ip` (the API server on `port`) leased and the `fronting`
/// Services' slices up to date, until the server stops.
pub async fn run(api: Api, store: Store, ip: Ipv4Addr, port: u16, fronting: Vec<Fronting>) {
    let client = store.client().client();
    let key = format!("{PREFIX}{ip}");
    let mut lease = None;
    let mut interval = tokio::time::interval(PERIOD);
    loop {
        interval.tick().await;
        lease = match renew(&client, lease, &key, ip).await {
            Ok(lease) => Some(lease),
            Err(error) => {
                warn!(%error, key, "renewing this API server's endpoint lease failed");
                None
            }
        };
        let addresses = match leased(&client).await {
            Ok(addresses) => serving(addresses, port).await,
            Err(error) => {
                warn!(%error, "listing the API servers' endpoint leases failed");
                continue;
            }
        };
        for service in &fronting {
            if let Err(message) = write_slice(&api, &store, service, &addresses, port).await {
                warn!(
                    namespace = service.namespace,
                    name = service.name,
                    message,
                    "writing the API servers' EndpointSlice failed"
                );
            }
        }
    }
}

/// Renews `lease`, or (none yet, or expired) grants a new one and puts the
/// address under it. Returns the lease's id.
async fn renew(
    client: &skiff_etcd::etcd_client::Client,
    lease: Option<i64>,
    key: &str,
    ip: Ipv4Addr,
) -> Result<i64, skiff_etcd::etcd_client::Error> {
    let mut client = client.clone();
    if let Some(id) = lease {
        let (mut keeper, mut responses) = client.lease_keep_alive(id).await?;
        keeper.keep_alive().await?;
        if responses.message().await?.is_some_and(|r| r.ttl() > 0) {
            return Ok(id);
        }
    }
    let id = client.lease_grant(LEASE_TTL, None).await?.id();
    client
        .put(key, ip.to_string(), Some(PutOptions::new().with_lease(id)))
        .await?;
    info!(key, lease = id, "leased this API server's endpoint");
    Ok(id)
}

/// The leased addresses, sorted.
async fn leased(
    client: &skiff_etcd::etcd_client::Client,
) -> Result<Vec<String>, skiff_etcd::etcd_client::Error> {
    let response = client
        .clone()
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await?;
    let mut addresses: Vec<String> = response
        .kvs()
        .iter()
        .filter_map(|kv| kv.value_str().ok().map(str::to_owned))
        .collect();
    addresses.sort();
    Ok(addresses)
}

/// Of the leased `addresses`, those whose API port accepts a connection
/// within [`PROBE_TIMEOUT`]; all of them when none does (a probe says
/// nothing then).
async fn serving(addresses: Vec<String>, port: u16) -> Vec<String> {
    let mut serving = Vec::new();
    for address in &addresses {
        let connect = tokio::net::TcpStream::connect((address.as_str(), port));
        if matches!(
            tokio::time::timeout(PROBE_TIMEOUT, connect).await,
            Ok(Ok(_))
        ) {
            serving.push(address.clone());
        }
    }
    if serving.is_empty() {
        addresses
    } else {
        serving
    }
}

/// The EndpointSlice of `service` listing `addresses` on `port`.
fn slice(service: &Fronting, addresses: &[String], port: u16) -> Value {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|address| json!({ "addresses": [address], "conditions": { "ready": true } }))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": service.name,
            "namespace": service.namespace,
            "labels": { SERVICE_NAME_LABEL: service.name },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
    })
}

/// Creates the slice, or replaces it when its endpoints differ.
async fn write_slice(
    api: &Api,
    store: &Store,
    service: &Fronting,
    addresses: &[String],
    port: u16,
) -> Result<(), String> {
    let mut wanted = slice(service, addresses, port);
    let key = format!(
        "{}/{}/{}",
        skiff_etcd::keys::ENDPOINT_SLICES,
        service.namespace,
        service.name
    );
    let collection = format!(
        "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices",
        service.namespace
    );
    let (method, path) = match store.get(&key).await {
        Ok(current) => {
            if current["endpoints"] == wanted["endpoints"] && current["ports"] == wanted["ports"] {
                return Ok(());
            }
            wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            (Method::PUT, format!("{collection}/{}", service.name))
        }
        Err(_) => (Method::POST, collection),
    };
    call(api, method, path, &wanted).await
}

/// One write through the API's own code paths, in-process.
async fn call(api: &Api, method: Method, path: String, body: &Value) -> Result<(), String> {
    let reply = api
        .handle(ApiRequest {
            method,
            path,
            query: None,
            content_type: Some("application/json".to_owned()),
            accept: None,
            user_agent: Some(crate::api::SERVER_MANAGER.to_owned()),
            body: Bytes::from(body.to_string()),
            user: None,
        })
        .await;
    match reply {
        Reply::Json { code, .. } if code < 300 => Ok(()),
        Reply::Json { code, body, .. } => Err(format!("{code} {}", body["message"])),
        _ => Err("unexpected streaming reply".to_owned()),
    }
}
