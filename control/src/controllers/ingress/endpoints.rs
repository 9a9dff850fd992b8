//! The EndpointSlice of `kube-system/skiff-ingress`: each Ready node's
//! InternalIP with ports 80 and 443, where the node's agent serves the
//! Ingresses. The Service has no selector, so the EndpointSlice controller
//! leaves it to this one (as k3s's servicelb fronts Traefik).

use serde_json::{Value, json};

use crate::controllers::client::written;
use crate::controllers::endpointslice::SERVICE_NAME_LABEL;
use crate::controllers::kind::Kind;
use crate::controllers::{Context, Controller, ControllerError, meta};
use crate::kinds::{INGRESS_SERVICE_NAME, INGRESS_SERVICE_NAMESPACE};

const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Who manages the slice: a label value, so without the class
/// controller's `/`.
const MANAGED_BY: &str = "skiff-ingress-controller";

pub struct IngressEndpoints;

impl Controller for IngressEndpoints {
    const NAME: &'static str = "ingress-endpoints";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let cache = &context.cache;
        let namespace = INGRESS_SERVICE_NAMESPACE;
        let Some(service) = cache.get(Kind::Service, Some(namespace), INGRESS_SERVICE_NAME) else {
            return Ok(vec![]);
        };
        let wanted = desired_slice(&service, &cache.list(Kind::Node));
        let wrote = match cache.get(Kind::EndpointSlice, Some(namespace), INGRESS_SERVICE_NAME) {
            None => {
                context
                    .client
                    .create(Kind::EndpointSlice, Some(namespace), &wanted)
                    .await?;
                true
            }
            Some(stored) => {
                let mut updated = stored.clone();
                for field in ["addressType", "ports", "endpoints"] {
                    updated[field] = wanted[field].clone();
                }
                updated["metadata"]["labels"] = wanted["metadata"]["labels"].clone();
                updated["metadata"]["ownerReferences"] =
                    wanted["metadata"]["ownerReferences"].clone();
                updated != stored
                    && written(context.client.update(Kind::EndpointSlice, &updated).await)?
            }
        };
        Ok(if wrote {
            vec![Kind::EndpointSlice]
        } else {
            vec![]
        })
    }
}

/// The slice the Service should have: every Ready node with an InternalIP,
/// by name, ready and serving on ports http 80 and https 443.
fn desired_slice(service: &Value, nodes: &[Value]) -> Value {
    let mut ready: Vec<(&str, &str)> = nodes
        .iter()
        .filter(|node| meta::condition(node, "Ready") == Some("True"))
        .filter_map(|node| Some((meta::name(node), internal_ip(node)?)))
        .collect();
    ready.sort_unstable();
    let endpoints: Vec<Value> = ready
        .into_iter()
        .map(|(name, ip)| {
            json!({
                "addresses": [ip],
                "conditions": { "ready": true, "serving": true, "terminating": false },
                "nodeName": name,
                "targetRef": { "kind": "Node", "name": name },
            })
        })
        .collect();
    let mut owner = service.clone();
    owner["apiVersion"] = json!("v1");
    owner["kind"] = json!("Service");
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": INGRESS_SERVICE_NAME,
            "namespace": INGRESS_SERVICE_NAMESPACE,
            "labels": {
                SERVICE_NAME_LABEL: INGRESS_SERVICE_NAME,
                MANAGED_BY_LABEL: MANAGED_BY,
            },
            "ownerReferences": [meta::controller_reference(&owner)],
        },
        "addressType": "IPv4",
        "ports": [
            { "name": "http", "port": 80, "protocol": "TCP" },
            { "name": "https", "port": 443, "protocol": "TCP" },
        ],
        "endpoints": endpoints,
    })
}

fn internal_ip(node: &Value) -> Option<&str> {
    node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|address| address["type"] == "InternalIP")?["address"]
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: Option<&str>, ready: &str) -> Value {
        let addresses: Vec<Value> = ip
            .map(|ip| json!({ "type": "InternalIP", "address": ip }))
            .into_iter()
            .chain([json!({ "type": "Hostname", "address": name })])
            .collect();
        json!({ "metadata": { "name": name }, "status": {
            "addresses": addresses,
            "conditions": [{ "type": "Ready", "status": ready }] } })
    }

    #[test]
    fn only_ready_nodes_with_an_internal_ip_are_listed() {
        let service = json!({ "metadata": { "name": INGRESS_SERVICE_NAME,
            "namespace": INGRESS_SERVICE_NAMESPACE, "uid": "u1" } });
        let nodes = [
            node("node2", Some("172.30.0.12"), "True"),
            node("node1", Some("172.30.0.11"), "True"),
            node("node3", Some("172.30.0.13"), "Unknown"),
            node("node4", None, "True"),
        ];
        let slice = desired_slice(&service, &nodes);
        let listed: Vec<(&str, &str)> = slice["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["nodeName"].as_str().unwrap(),
                    e["addresses"][0].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(listed, [("node1", "172.30.0.11"), ("node2", "172.30.0.12")]);
        assert_eq!(
            slice["metadata"]["labels"][SERVICE_NAME_LABEL],
            INGRESS_SERVICE_NAME
        );
        assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], "u1");
        let ports: Vec<u64> = slice["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        assert_eq!(ports, [80, 443]);
    }
}
