//! Server-side printing: `kubectl get` asks for a `meta.k8s.io/v1` Table
//! and shows the columns the server chooses, so the common kinds get the
//! columns people know from Kubernetes.

use serde_json::{Value, json};

use super::{pod_row::pod_row, registry::Resource};

/// Whether an `Accept` header asks for a Table (kubectl offers Table first,
/// then plain JSON).
pub fn wanted(accept: Option<&str>) -> bool {
    super::media::offers(accept, &["as=Table", "g=meta.k8s.io", "v=v1"])
}

/// A column: its header and how a cell is computed.
struct Column {
    name: &'static str,
    /// Shown only with `-o wide`.
    wide: bool,
    cell: fn(&Value, i64) -> Value,
}

const fn column(name: &'static str, cell: fn(&Value, i64) -> Value) -> Column {
    Column {
        name,
        wide: false,
        cell,
    }
}

const fn wide(name: &'static str, cell: fn(&Value, i64) -> Value) -> Column {
    Column {
        name,
        wide: true,
        cell,
    }
}

/// A Table of `objects` with `resource`'s columns; `now` is the current
/// Unix time, for the ages.
pub fn table(resource: &Resource, objects: Vec<Value>, list_metadata: Value, now: i64) -> Value {
    let columns = columns(resource);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|column| {
            json!({
                "name": column.name,
                "type": "string",
                "format": if column.name == "Name" { "name" } else { "" },
                "description": "",
                "priority": if column.wide { 1 } else { 0 },
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|object| {
            let cells: Vec<Value> = columns
                .iter()
                .map(|column| (column.cell)(&object, now))
                .collect();
            json!({ "cells": cells, "object": object })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn columns(resource: &Resource) -> Vec<Column> {
    let mut columns = vec![column("Name", |o, _| json!(text(&o["metadata"]["name"])))];
    match (resource.group, resource.kind) {
        ("", "Service") => columns.extend([
            column("Type", |o, _| json!(text(&o["spec"]["type"]))),
            column("Cluster-IP", |o, _| {
                json!(or_none(text(&o["spec"]["clusterIP"])))
            }),
            column("External-IP", |o, _| json!(external_ips(o))),
            column("Port(s)", |o, _| json!(service_ports(o))),
        ]),
        ("", "Pod") => columns.extend([
            column("Ready", |o, _| json!(pod_row(o).ready)),
            column("Status", |o, _| json!(pod_row(o).status)),
            column("Restarts", |o, _| json!(pod_row(o).restarts)),
        ]),
        ("", "Node") => columns.extend([
            column("Status", |o, _| json!(node_status(o))),
            column("Version", |o, _| {
                json!(text(&o["status"]["nodeInfo"]["kubeletVersion"]))
            }),
        ]),
        ("", "Namespace") => {
            columns.push(column("Status", |o, _| json!(text(&o["status"]["phase"]))))
        }
        ("", "ConfigMap") => columns.push(column("Data", |o, _| {
            json!(count(&o["data"]) + count(&o["binaryData"]))
        })),
        ("", "ServiceAccount") => {
            columns.push(column("Secrets", |o, _| json!(items(&o["secrets"]).len())))
        }
        ("", "Secret") => columns.extend([
            column("Type", |o, _| json!(text(&o["type"]))),
            column("Data", |o, _| json!(count(&o["data"]))),
        ]),
        ("apps", "Deployment" | "StatefulSet") => columns.extend([
            column("Ready", |o, _| {
                json!(format!(
                    "{}/{}",
                    number(&o["status"]["readyReplicas"]),
                    number(&o["spec"]["replicas"])
                ))
            }),
            column("Up-to-date", |o, _| {
                json!(number(&o["status"]["updatedReplicas"]))
            }),
            column("Available", |o, _| {
                json!(number(&o["status"]["availableReplicas"]))
            }),
        ]),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => columns.extend([
            column("Desired", |o, _| json!(number(&o["spec"]["replicas"]))),
            column("Current", |o, _| json!(number(&o["status"]["replicas"]))),
            column("Ready", |o, _| json!(number(&o["status"]["readyReplicas"]))),
        ]),
        ("", "PersistentVolume") => columns.extend([
            column("Capacity", |o, _| {
                json!(text(&o["spec"]["capacity"]["storage"]))
            }),
            column("Access Modes", |o, _| json!(access_modes(&o["spec"]))),
            column("Reclaim Policy", |o, _| {
                json!(text(&o["spec"]["persistentVolumeReclaimPolicy"]))
            }),
            column("Status", |o, _| json!(storage_phase(o))),
            column("Claim", |o, _| json!(claim(&o["spec"]["claimRef"]))),
            column("StorageClass", |o, _| {
                json!(text(&o["spec"]["storageClassName"]))
            }),
            column("VolumeAttributesClass", |_, _| json!("<unset>")),
            column("Reason", |o, _| json!(text(&o["status"]["reason"]))),
        ]),
        ("", "PersistentVolumeClaim") => columns.extend([
            column("Status", |o, _| json!(storage_phase(o))),
            column("Volume", |o, _| json!(text(&o["spec"]["volumeName"]))),
            column("Capacity", |o, _| {
                json!(text(&o["status"]["capacity"]["storage"]))
            }),
            column("Access Modes", |o, _| json!(access_modes(&o["status"]))),
            column("StorageClass", |o, _| {
                json!(text(&o["spec"]["storageClassName"]))
            }),
            column("VolumeAttributesClass", |_, _| json!("<unset>")),
        ]),
        ("storage.k8s.io", "StorageClass") => {
            columns[0] = column("Name", |o, _| json!(class_name(o)));
            columns.extend([
                column("Provisioner", |o, _| json!(text(&o["provisioner"]))),
                column("ReclaimPolicy", |o, _| json!(text(&o["reclaimPolicy"]))),
                column("VolumeBindingMode", |o, _| {
                    json!(text(&o["volumeBindingMode"]))
                }),
                column("AllowVolumeExpansion", |o, _| {
                    json!(o["allowVolumeExpansion"] == json!(true))
                }),
            ]);
        }
        ("networking.k8s.io", "Ingress") => columns.extend([
            column("Class", |o, _| {
                json!(or_none(text(&o["spec"]["ingressClassName"])))
            }),
            column("Hosts", |o, _| json!(ingress_hosts(o))),
            column("Address", |o, _| json!(ingress_address(o))),
            column("Ports", |o, _| {
                json!(if items(&o["spec"]["tls"]).is_empty() {
                    "80"
                } else {
                    "80, 443"
                })
            }),
        ]),
        ("networking.k8s.io", "IngressClass") => columns.extend([
            column("Controller", |o, _| json!(text(&o["spec"]["controller"]))),
            column("Parameters", |o, _| {
                json!(ingress_class_parameters(&o["spec"]["parameters"]))
            }),
        ]),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            columns.push(column("Created At", |o, _| {
                json!(text(&o["metadata"]["creationTimestamp"]))
            }));
            return columns;
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            columns.push(column("Role", |o, _| {
                json!(format!(
                    "{}/{}",
                    text(&o["roleRef"]["kind"]),
                    text(&o["roleRef"]["name"])
                ))
            }))
        }
        ("discovery.k8s.io", "EndpointSlice") => columns.extend([
            column("AddressType", |o, _| json!(text(&o["addressType"]))),
            column("Endpoints", |o, _| json!(slice_endpoints(o))),
        ]),
        _ => {}
    }
    columns.push(column("Age", |o, now| {
        json!(age(&o["metadata"]["creationTimestamp"], now))
    }));
    match (resource.group, resource.kind) {
        ("certificates.k8s.io", "CertificateSigningRequest") => columns.extend([
            column("SignerName", |o, _| json!(text(&o["spec"]["signerName"]))),
            column("Requestor", |o, _| json!(text(&o["spec"]["username"]))),
            column("RequestedDuration", |o, _| {
                json!(match o["spec"]["expirationSeconds"].as_i64() {
                    Some(seconds) => human_duration(seconds),
                    None => "<none>".to_owned(),
                })
            }),
            column("Condition", |o, _| json!(csr_condition(o))),
        ]),
        ("", "Service") => columns.push(wide("Selector", |o, _| json!(selector(o)))),
        ("", "Pod") => columns.extend([
            wide("IP", |o, _| json!(or_none(text(&o["status"]["podIP"])))),
            wide("Node", |o, _| json!(or_none(text(&o["spec"]["nodeName"])))),
        ]),
        ("", "PersistentVolume" | "PersistentVolumeClaim") => columns
            .push(wide("VolumeMode", |o, _| {
                json!(text(&o["spec"]["volumeMode"]))
            })),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => columns.extend([
            wide("Users", |o, _| json!(subjects(o, "User"))),
            wide("Groups", |o, _| json!(subjects(o, "Group"))),
            wide("ServiceAccounts", |o, _| {
                json!(subjects(o, "ServiceAccount"))
            }),
        ]),
        _ => {}
    }
    columns
}

/// A binding's subjects of `kind`, comma-separated; service accounts as
/// `namespace/name`.
fn subjects(binding: &Value, kind: &str) -> String {
    let names: Vec<String> = binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|subject| subject["kind"] == kind)
        .map(|subject| match kind {
            "ServiceAccount" => {
                format!("{}/{}", text(&subject["namespace"]), text(&subject["name"]))
            }
            _ => text(&subject["name"]),
        })
        .collect();
    names.join(", ")
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

fn number(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn count(value: &Value) -> usize {
    value.as_object().map_or(0, |map| map.len())
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn external_ips(service: &Value) -> String {
    let mut ips: Vec<String> = items(&service["spec"]["externalIPs"])
        .iter()
        .map(text)
        .collect();
    ips.extend(
        items(&service["status"]["loadBalancer"]["ingress"])
            .iter()
            .map(|ingress| text(&ingress["ip"])),
    );
    match text(&service["spec"]["type"]).as_str() {
        "ExternalName" => text(&service["spec"]["externalName"]),
        "LoadBalancer" if ips.is_empty() => "<pending>".into(),
        _ => or_none(ips.join(",")),
    }
}

fn service_ports(service: &Value) -> String {
    let ports: Vec<String> = items(&service["spec"]["ports"])
        .iter()
        .map(|port| {
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            match port["nodePort"].as_i64() {
                Some(node_port) => format!("{}:{node_port}/{protocol}", number(&port["port"])),
                None => format!("{}/{protocol}", number(&port["port"])),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn selector(service: &Value) -> String {
    let pairs: Vec<String> = service["spec"]["selector"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(key, value)| format!("{key}={}", text(value)))
                .collect()
        })
        .unwrap_or_default();
    or_none(pairs.join(","))
}

fn node_status(node: &Value) -> String {
    let ready = items(&node["status"]["conditions"])
        .iter()
        .find(|condition| condition["type"] == "Ready")
        .is_some_and(|condition| condition["status"] == "True");
    let mut status = if ready { "Ready" } else { "NotReady" }.to_owned();
    if node["spec"]["unschedulable"] == json!(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// Access modes as kubectl abbreviates them: `RWO,ROX`.
fn access_modes(holder: &Value) -> String {
    let modes: Vec<&str> = items(&holder["accessModes"])
        .iter()
        .filter_map(|mode| match mode.as_str()? {
            "ReadWriteOnce" => Some("RWO"),
            "ReadOnlyMany" => Some("ROX"),
            "ReadWriteMany" => Some("RWX"),
            "ReadWriteOncePod" => Some("RWOP"),
            _ => None,
        })
        .collect();
    modes.join(",")
}

/// A volume's or claim's phase; Terminating while its finalizers hold it.
fn storage_phase(object: &Value) -> String {
    if object["metadata"]["deletionTimestamp"].is_string() {
        "Terminating".into()
    } else {
        text(&object["status"]["phase"])
    }
}

/// A PersistentVolume's claim, `namespace/name`.
fn claim(reference: &Value) -> String {
    match (reference["namespace"].as_str(), reference["name"].as_str()) {
        (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
        _ => String::new(),
    }
}

/// A StorageClass's name, marked `(default)` as kubectl shows it.
fn class_name(class: &Value) -> String {
    let name = text(&class["metadata"]["name"]);
    if class["metadata"]["annotations"][crate::kinds::DEFAULT_CLASS_ANNOTATION] == "true" {
        format!("{name} (default)")
    } else {
        name
    }
}

/// An Ingress's rule hosts, `*` when none names one, the first three then
/// `+ N more...`.
fn ingress_hosts(ingress: &Value) -> String {
    let hosts: Vec<String> = items(&ingress["spec"]["rules"])
        .iter()
        .map(|rule| text(&rule["host"]))
        .filter(|host| !host.is_empty())
        .collect();
    match hosts.len() {
        0 => "*".into(),
        1..=3 => hosts.join(","),
        n => format!("{} + {} more...", hosts[..3].join(","), n - 3),
    }
}

/// The load balancer's IPs and hostnames, cut at 16 characters as kubectl
/// shows them without `-o wide`.
fn ingress_address(ingress: &Value) -> String {
    const WIDTH: usize = 16;
    let addresses: Vec<String> = items(&ingress["status"]["loadBalancer"]["ingress"])
        .iter()
        .flat_map(|entry| [text(&entry["ip"]), text(&entry["hostname"])])
        .filter(|address| !address.is_empty())
        .collect();
    let joined = addresses.join(",");
    if joined.len() > WIDTH {
        format!("{}...", &joined[..WIDTH - 3])
    } else {
        joined
    }
}

/// An IngressClass's parameters as `group/kind/name`.
fn ingress_class_parameters(parameters: &Value) -> String {
    if parameters.is_null() {
        return "<none>".into();
    }
    let group = match text(&parameters["apiGroup"]) {
        group if group.is_empty() => "<core>".to_owned(),
        group => group,
    };
    format!(
        "{group}/{}/{}",
        text(&parameters["kind"]),
        text(&parameters["name"])
    )
}

fn slice_endpoints(slice: &Value) -> String {
    let addresses: Vec<String> = items(&slice["endpoints"])
        .iter()
        .flat_map(|endpoint| items(&endpoint["addresses"]).iter().map(text))
        .collect();
    if addresses.len() > 3 {
        format!(
            "{} + {} more...",
            addresses[..3].join(","),
            addresses.len() - 3
        )
    } else {
        or_none(addresses.join(","))
    }
}

/// The age of an RFC 3339 timestamp, shortened as kubectl shows ages.
/// A request's conditions, then `Issued` once signed; `Pending` without
/// either (kubectl's CONDITION column).
fn csr_condition(csr: &Value) -> String {
    let mut states: Vec<String> = items(&csr["status"]["conditions"])
        .iter()
        .map(|condition| text(&condition["type"]))
        .collect();
    if !text(&csr["status"]["certificate"]).is_empty() {
        states.push("Issued".to_owned());
    }
    if states.is_empty() {
        "Pending".to_owned()
    } else {
        states.join(",")
    }
}

fn age(timestamp: &Value, now: i64) -> String {
    let Some(created) = timestamp
        .as_str()
        .and_then(|text| text.parse::<k8s_openapi::jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    human_duration((now - created.as_second()).max(0))
}

/// Go's `duration.HumanDuration`: two units while the larger is small.
fn human_duration(seconds: i64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86400);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 600 && s % 60 != 0 => format!("{minutes}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{minutes}m"),
        s if s < 8 * 3600 && minutes % 60 != 0 => format!("{hours}h{}m", minutes % 60),
        s if s < 48 * 3600 => format!("{hours}h"),
        s if s < 8 * 86400 && hours % 24 != 0 => format!("{days}d{}h", hours % 24),
        s if s < 2 * 365 * 86400 => format!("{days}d"),
        s if s < 8 * 365 * 86400 && days % 365 != 0 => format!("{}y{}d", days / 365, days % 365),
        _ => format!("{}y", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::find;

    #[test]
    fn accept_header_selects_tables() {
        assert!(wanted(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        assert!(!wanted(Some("application/json")));
        assert!(!wanted(None));
    }

    #[test]
    fn service_rows_read_like_kubectl() {
        let services = find("", "v1", "services").unwrap();
        let service = json!({
            "metadata": { "name": "web", "creationTimestamp": "2026-01-01T00:00:00Z" },
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.10",
                "selector": { "app": "web" },
                "ports": [{ "port": 80, "nodePort": 30080, "protocol": "TCP" }, { "port": 53, "protocol": "UDP" }],
            },
        });
        let now = 1_767_225_600 + 3 * 60 + 5;
        let table = table(
            services,
            vec![service],
            json!({ "resourceVersion": "9" }),
            now,
        );
        let header: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            header,
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        assert_eq!(
            table["rows"][0]["cells"],
            json!([
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP,53/UDP",
                "3m5s",
                "app=web"
            ])
        );
        assert_eq!(table["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn durations_shorten_like_go() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(40 * 86400), "40d");
    }
}
