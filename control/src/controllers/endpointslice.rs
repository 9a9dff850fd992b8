//! The EndpointSlice controller: for each Service with a selector and each
//! of its address families, slices (at most 100 endpoints each, one set of
//! ports per slice, `addressType` the family) listing the selected pods'
//! addresses of that family with their conditions, node and zone, and the
//! topology hints the Service's `trafficDistribution` asks for (`hints`).

mod hints;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::client::written;
use super::kind::Kind;
use super::services::{self, Backend};
use super::{Context, Controller, ControllerError, meta};
use crate::alloc::IpFamily;
use hints::Hinting;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Kubernetes' `--max-endpoints-per-slice` default.
const MAX_ENDPOINTS: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

pub struct EndpointSlices;

impl Controller for EndpointSlices {
    const NAME: &'static str = "endpointslice";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let cache = &context.cache;
        let services = cache.list(Kind::Service);
        let nodes = cache.list(Kind::Node);
        let mut wanted_services = BTreeSet::new();
        let mut wrote = false;
        for service in services.iter().filter(|service| services::selects(service)) {
            let (namespace, name) = (meta::namespace(service), meta::name(service));
            wanted_services.insert((namespace.to_owned(), name.to_owned()));
            let pods = cache.list_in(Kind::Pod, namespace);
            let mut existing: Vec<Value> = cache
                .list_in(Kind::EndpointSlice, namespace)
                .into_iter()
                .filter(|slice| managed_for(slice) == Some(name))
                .collect();
            existing.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
            let families = services::address_families(service);
            for &family in &families {
                let backends = services::backends(service, &pods, family);
                let desired = desired_slices(service, &backends, &nodes);
                let of_family = existing
                    .iter()
                    .filter(|slice| slice["addressType"] == family.as_str())
                    .cloned()
                    .collect();
                wrote |= sync_service(context, service, family, desired, of_family).await?;
            }
            // Slices of a family the Service no longer has (a downgrade).
            let dropped = existing.iter().filter(|slice| {
                !families
                    .iter()
                    .any(|family| slice["addressType"] == family.as_str())
            });
            for slice in dropped {
                context
                    .client
                    .delete(Kind::EndpointSlice, slice, None)
                    .await?;
                wrote = true;
            }
        }
        // Slices of Services that are gone or lost their selector.
        for slice in cache.list(Kind::EndpointSlice) {
            if let Some(service) = managed_for(&slice) {
                let key = (meta::namespace(&slice).to_owned(), service.to_owned());
                if !wanted_services.contains(&key) {
                    context
                        .client
                        .delete(Kind::EndpointSlice, &slice, None)
                        .await?;
                    wrote = true;
                }
            }
        }
        Ok(if wrote {
            vec![Kind::EndpointSlice]
        } else {
            vec![]
        })
    }
}

/// The Service a slice of this controller is for.
fn managed_for(slice: &Value) -> Option<&str> {
    let labels = &slice["metadata"]["labels"];
    if labels[MANAGED_BY_LABEL].as_str() != Some(MANAGED_BY) {
        return None;
    }
    labels[SERVICE_NAME_LABEL].as_str()
}

/// The `(ports, endpoints)` of each slice the Service should have: pods
/// grouped by their resolved ports, 100 to a slice; one empty slice when
/// no pod is selected.
fn desired_slices(
    service: &Value,
    backends: &[Backend],
    nodes: &[Value],
) -> Vec<(Value, Vec<Value>)> {
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    let hinting = Hinting::of(service);
    for backend in backends {
        let ports = json!(backend.ports);
        let group = groups
            .entry(ports.to_string())
            .or_insert_with(|| (ports, Vec::new()));
        let mut endpoint = endpoint(service, backend, nodes);
        hinting.apply(&mut endpoint);
        group.1.push(endpoint);
    }
    let mut slices = Vec::new();
    for (_, (ports, endpoints)) in groups {
        for chunk in endpoints.chunks(MAX_ENDPOINTS) {
            slices.push((ports.clone(), chunk.to_vec()));
        }
    }
    if slices.is_empty() {
        slices.push((json!([]), Vec::new()));
    }
    slices
}

fn endpoint(service: &Value, backend: &Backend, nodes: &[Value]) -> Value {
    let pod = backend.pod;
    let node_name = meta::node_name(pod);
    let mut endpoint = json!({
        "addresses": [backend.ip],
        "conditions": {
            "ready": backend.ready,
            "serving": backend.serving,
            "terminating": backend.terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
    });
    // A pod names itself under the Service its subdomain names (as a
    // StatefulSet's pods do under their governing Service): cluster DNS
    // serves `<hostname>.<service>.<namespace>.svc.<domain>` from this.
    let hostname = pod["spec"]["hostname"].as_str().unwrap_or("");
    if !hostname.is_empty() && pod["spec"]["subdomain"].as_str() == Some(meta::name(service)) {
        endpoint["hostname"] = json!(hostname);
    }
    if !node_name.is_empty() {
        endpoint["nodeName"] = json!(node_name);
        let zone = nodes
            .iter()
            .find(|node| meta::name(node) == node_name)
            .and_then(|node| node["metadata"]["labels"][ZONE_LABEL].as_str());
        if let Some(zone) = zone {
            endpoint["zone"] = json!(zone);
        }
    }
    endpoint
}

/// The labels of the Service's slices: the Service's own, and the two that
/// say whose they are.
fn slice_labels(service: &Value) -> Value {
    let mut labels = service["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[SERVICE_NAME_LABEL] = json!(meta::name(service));
    labels[MANAGED_BY_LABEL] = json!(MANAGED_BY);
    labels
}

/// Makes the Service's slices of `family` the desired ones, reusing its
/// existing slices of that family in name order; whether anything was
/// written.
async fn sync_service(
    context: &Context,
    service: &Value,
    family: IpFamily,
    desired: Vec<(Value, Vec<Value>)>,
    existing: Vec<Value>,
) -> Result<bool, ControllerError> {
    let namespace = meta::namespace(service);
    let labels = slice_labels(service);
    let owners = json!([meta::controller_reference(&with_type(service))]);
    let mut wrote = false;
    let mut existing = existing.into_iter();
    for (ports, endpoints) in desired {
        match existing.next() {
            Some(slice) => {
                let mut updated = slice.clone();
                updated["metadata"]["labels"] = labels.clone();
                updated["metadata"]["ownerReferences"] = owners.clone();
                updated["addressType"] = json!(family.as_str());
                updated["ports"] = ports;
                updated["endpoints"] = json!(endpoints);
                if updated != slice {
                    written(context.client.update(Kind::EndpointSlice, &updated).await)?;
                    wrote = true;
                }
            }
            None => {
                let slice = json!({
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": format!("{}-", meta::name(service)),
                        "namespace": namespace,
                        "labels": labels,
                        "ownerReferences": owners,
                    },
                    "addressType": family.as_str(),
                    "ports": ports,
                    "endpoints": endpoints,
                });
                context
                    .client
                    .create(Kind::EndpointSlice, Some(namespace), &slice)
                    .await?;
                wrote = true;
            }
        }
    }
    for surplus in existing {
        context
            .client
            .delete(Kind::EndpointSlice, &surplus, None)
            .await?;
        wrote = true;
    }
    Ok(wrote)
}

/// The object with its `apiVersion` and `kind` (stored objects have them;
/// this makes sure for the owner reference).
fn with_type(service: &Value) -> Value {
    let mut service = service.clone();
    service["apiVersion"] = json!("v1");
    service["kind"] = json!("Service");
    service
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(index: usize, ready: bool, terminating: bool) -> Value {
        let mut pod = json!({
            "metadata": { "name": format!("p{index}"), "namespace": "a", "labels": { "app": "web" } },
            "spec": { "nodeName": "n1", "containers": [{ "ports": [{ "name": "http", "containerPort": 8080 }] }] },
            "status": {
                "podIP": format!("10.244.{}.{}", index / 200, index % 200 + 2),
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            },
        });
        if terminating {
            pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        pod
    }

    fn service(publish: bool) -> Value {
        json!({ "metadata": { "name": "web" }, "spec": {
            "selector": { "app": "web" },
            "publishNotReadyAddresses": publish,
            "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
        } })
    }

    fn slices_of(service: &Value, pods: &[Value]) -> Vec<(Value, Vec<Value>)> {
        let nodes = [json!({ "metadata": { "name": "n1", "labels": { ZONE_LABEL: "z1" } } })];
        desired_slices(
            service,
            &services::backends(service, pods, IpFamily::Ipv4),
            &nodes,
        )
    }

    #[test]
    fn at_most_100_endpoints_a_slice() {
        let pods: Vec<Value> = (0..250).map(|index| pod(index, true, false)).collect();
        let sizes: Vec<usize> = slices_of(&service(false), &pods)
            .iter()
            .map(|s| s.1.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        let empty = slices_of(&service(false), &[]);
        assert_eq!(empty, [(json!([]), vec![])]);
    }

    #[test]
    fn conditions_follow_readiness_and_termination() {
        let pods = [
            pod(0, true, false),
            pod(1, false, false),
            pod(2, true, true),
        ];
        let slices = slices_of(&service(false), &pods);
        let conditions: Vec<&Value> = slices[0].1.iter().map(|e| &e["conditions"]).collect();
        assert_eq!(
            conditions[0],
            &json!({ "ready": true, "serving": true, "terminating": false })
        );
        assert_eq!(
            conditions[1],
            &json!({ "ready": false, "serving": false, "terminating": false })
        );
        assert_eq!(
            conditions[2],
            &json!({ "ready": false, "serving": true, "terminating": true })
        );
        assert_eq!(slices[0].1[0]["zone"], "z1");
        assert_eq!(
            slices[0].0,
            json!([{ "name": "http", "port": 8080, "protocol": "TCP" }])
        );

        let published = slices_of(&service(true), &pods);
        assert!(
            published[0]
                .1
                .iter()
                .all(|e| e["conditions"]["ready"] == true)
        );
    }

    #[test]
    fn hostname_is_published_under_the_subdomain_service_only() {
        let mut named = pod(0, true, false);
        named["spec"]["hostname"] = json!("web-0");
        named["spec"]["subdomain"] = json!("web");
        let mut elsewhere = pod(1, true, false);
        elsewhere["spec"]["hostname"] = json!("web-1");
        elsewhere["spec"]["subdomain"] = json!("other");
        let slices = slices_of(&service(false), &[named, elsewhere]);
        let hostnames: Vec<&Value> = slices[0].1.iter().map(|e| &e["hostname"]).collect();
        assert_eq!(hostnames, [&json!("web-0"), &Value::Null]);
    }

    #[test]
    fn ready_endpoints_are_hinted_for_their_node_and_zone() {
        let mut same_node = service(false);
        same_node["spec"]["trafficDistribution"] = json!("PreferSameNode");
        let slices = slices_of(&same_node, &[pod(0, true, false), pod(1, false, false)]);
        let hints: Vec<&Value> = slices[0].1.iter().map(|e| &e["hints"]).collect();
        assert_eq!(
            hints,
            [
                &json!({ "forZones": [{ "name": "z1" }], "forNodes": [{ "name": "n1" }] }),
                &Value::Null,
            ]
        );
        // Without the field the same endpoints carry no hints.
        let plain = slices_of(&service(false), &[pod(0, true, false)]);
        assert_eq!(plain[0].1[0]["hints"], Value::Null);
    }
}
