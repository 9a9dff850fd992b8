//! The v1 Endpoints of each Service with a selector, for the clients that
//! still read them: ready addresses, not-ready addresses, and no
//! terminating pods (unless the Service publishes addresses not ready).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::client::written;
use super::kind::Kind;
use super::services::{self, Backend};
use super::{Context, Controller, ControllerError, meta};

/// What kube's Endpoints controller puts on its Endpoints so that the
/// EndpointSlice mirroring controller leaves them alone; here it also
/// tells this controller's Endpoints from hand-made ones.
const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

pub struct Endpoints;

impl Controller for Endpoints {
    const NAME: &'static str = "endpoints";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let cache = &context.cache;
        let mut wanted = BTreeSet::new();
        let mut wrote = false;
        for service in cache.list(Kind::Service) {
            if !services::selects(&service) {
                continue;
            }
            let (namespace, name) = (meta::namespace(&service), meta::name(&service));
            wanted.insert((namespace.to_owned(), name.to_owned()));
            let pods = cache.list_in(Kind::Pod, namespace);
            let publish = service["spec"]["publishNotReadyAddresses"].as_bool() == Some(true);
            // Endpoints list the Service's primary family only.
            let family = services::address_families(&service)[0];
            let backends = services::backends(&service, &pods, family);
            let subsets = subsets(&backends, publish);
            let mut labels = service["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels[SKIP_MIRROR_LABEL] = json!("true");
            match cache.get(Kind::Endpoints, Some(namespace), name) {
                Some(current) => {
                    let mut updated = current.clone();
                    updated["metadata"]["labels"] = labels;
                    updated["subsets"] = subsets;
                    if updated != current {
                        written(context.client.update(Kind::Endpoints, &updated).await)?;
                        wrote = true;
                    }
                }
                None => {
                    let endpoints = json!({
                        "apiVersion": "v1",
                        "kind": "Endpoints",
                        "metadata": { "name": name, "namespace": namespace, "labels": labels },
                        "subsets": subsets,
                    });
                    match context
                        .client
                        .create(Kind::Endpoints, Some(namespace), &endpoints)
                        .await
                    {
                        Err(error) if error.is_conflict() => {}
                        other => {
                            other?;
                        }
                    }
                    wrote = true;
                }
            }
        }
        for endpoints in cache.list(Kind::Endpoints) {
            let ours = endpoints["metadata"]["labels"][SKIP_MIRROR_LABEL].as_str() == Some("true");
            let key = (
                meta::namespace(&endpoints).to_owned(),
                meta::name(&endpoints).to_owned(),
            );
            if ours && !wanted.contains(&key) {
                context
                    .client
                    .delete(Kind::Endpoints, &endpoints, None)
                    .await?;
                wrote = true;
            }
        }
        Ok(if wrote { vec![Kind::Endpoints] } else { vec![] })
    }
}

/// One subset per distinct set of ports.
fn subsets(backends: &[Backend], publish: bool) -> Value {
    let mut groups: BTreeMap<String, (Value, Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for backend in backends {
        if backend.terminating && !publish {
            continue;
        }
        let ports: Vec<Value> = backend
            .ports
            .iter()
            .map(|port| {
                let mut port = port.clone();
                if port["name"] == "" {
                    port.as_object_mut().map(|port| port.remove("name"));
                }
                port
            })
            .collect();
        let ports = json!(ports);
        let group = groups
            .entry(ports.to_string())
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        let pod = backend.pod;
        let mut address = json!({
            "ip": backend.ip,
            "targetRef": {
                "kind": "Pod",
                "namespace": pod["metadata"]["namespace"],
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        });
        let node = meta::node_name(pod);
        if !node.is_empty() {
            address["nodeName"] = json!(node);
        }
        if backend.ready {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    let subsets: Vec<Value> = groups
        .into_values()
        .map(|(ports, ready, not_ready)| {
            let mut subset = json!({ "ports": ports });
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subset
        })
        .collect();
    json!(subsets)
}
