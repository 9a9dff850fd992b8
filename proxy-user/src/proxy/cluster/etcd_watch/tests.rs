//! The mapping of etcd's Services and EndpointSlices to the agent's
//! records, unit by unit and through a real etcd (the list-then-watch
//! mechanism itself is tested in skiff-etcd).

use std::time::Duration;

use serde_json::{Value, json};
use skiff_etcd::etcd_client::Client;
use skiff_etcd::keys::object_key;
use skiff_etcd::launcher::TempEtcd;
use tokio::sync::mpsc;

use super::*;
use crate::proxy::cluster::frontends::{BackendAddr, NodeRef};
use crate::proxy::cluster::records::{SERVICE_NAME_LABEL, ZONE_LABEL};
use crate::proxy::cluster::state::ClusterState;

#[test]
fn keys_name_the_kind_namespace_and_name() {
    assert_eq!(
        Records::for_node("node1").key(b"/registry/services/specs/default/web"),
        Some(Name::Service(svc("web")))
    );
    assert_eq!(
        Records::for_node("node1").key(b"/registry/endpointslices/default/web-a"),
        Some(Name::Slice(svc("web-a")))
    );
    assert_eq!(
        Records::for_node("node1").key(b"/registry/minions/node1"),
        Some(Name::Node)
    );
    for bad in [
        "/registry/minions/node10",
        "/registry/minions/node2",
        "/registry/services/specs/default",
        "/registry/services/specs/default/web/extra",
        "/registry/services/endpoints/default/web",
        "/registry/endpointslices/web-a",
    ] {
        assert_eq!(
            Records::for_node("node1").key(bad.as_bytes()),
            None,
            "{bad}"
        );
    }
}

#[test]
fn decode_takes_identity_from_key_and_keeps_only_what_it_reads() {
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "other",
            "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
        },
        "spec": { "clusterIP": "10.96.0.10" },
    });
    let record = Records::for_node("node1")
        .value(&Name::Service(svc("web")), value.to_string().as_bytes(), 7)
        .unwrap();
    let Record::Service(name, service) = record else {
        panic!("a Service key decodes as a Service")
    };
    assert_eq!(name, svc("web"));
    assert_eq!(
        *service.cluster_ips,
        [std::net::Ipv4Addr::new(10, 96, 0, 10)]
    );
}

#[test]
fn undecodable_values_are_errors() {
    let web = Name::Service(svc("web"));
    assert!(
        Records::for_node("node1")
            .value(&web, b"k8s\0protobuf", 1)
            .is_err()
    );

    // A valid object of another kind is not silently taken for a Service.
    let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": {} });
    assert!(
        Records::for_node("node1")
            .value(&web, pod.to_string().as_bytes(), 1)
            .is_err()
    );
}

#[test]
fn watch_events_become_changes() {
    let decode = |name: Name, value: serde_json::Value| {
        Records::for_node("node1")
            .value(&name, value.to_string().as_bytes(), 1)
            .unwrap()
    };
    let web = Name::Service(svc("web"));
    let upsert = change_of(Change::Put(
        web.clone(),
        decode(web.clone(), service_json("web", "10.96.0.10")),
    ));
    assert!(matches!(upsert, ObjectChange::ServiceUpsert(s, _) if s == svc("web")));

    let delete = change_of(Change::Delete(web));
    assert!(matches!(delete, ObjectChange::ServiceDelete(r) if r == svc("web")));

    let web_a = Name::Slice(svc("web-a"));
    let upsert = change_of(Change::Put(
        web_a.clone(),
        decode(web_a.clone(), slice_json("web-a", "web", "10.244.1.1")),
    ));
    assert!(matches!(upsert, ObjectChange::SliceUpsert(..)));

    let delete = change_of(Change::Delete(web_a));
    assert!(matches!(
        delete,
        ObjectChange::SliceDelete(slice) if slice == svc("web-a")
    ));
}

/// The agent's whole watch on a real etcd: the list becomes a `Resync` the
/// cluster state takes, undecodable values are skipped, and live changes
/// arrive as changes, not re-lists.
#[tokio::test]
async fn run_lists_and_watches_into_the_cluster_state() {
    init_logs();
    let etcd = TempEtcd::start(&[]).unwrap();
    let mut client = Client::connect([etcd.local_endpoint()], None)
        .await
        .unwrap();
    put_service(&mut client, "web", "10.96.0.10").await;
    put_slice(&mut client, "web-a", "web", "10.244.1.1").await;
    client
        .put(
            "/registry/services/specs/default/garbage",
            "k8s\0not json",
            None,
        )
        .await
        .unwrap();

    let (tx, mut rx) = mpsc::channel(16);
    let runner = tokio::spawn(run(vec![etcd.local_endpoint()], "node1", tx));

    let mut state = ClusterState::default();
    let mut resyncs = 0;
    let first = next_event(&mut rx).await;
    let ClusterEvent::Resync {
        services, slices, ..
    } = &first
    else {
        panic!("the first event is a Resync")
    };
    let names: Vec<_> = services.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(names, [svc("web")]);
    assert_eq!(slices.len(), 1);
    apply(&mut state, first, &mut resyncs);
    assert_eq!(backend_ips(&state, "web"), ["10.244.1.1"]);

    put_slice(&mut client, "web-b", "web", "10.244.1.2").await;
    put_service(&mut client, "api", "10.96.0.11").await;
    client
        .delete("/registry/endpointslices/default/web-a", None)
        .await
        .unwrap();
    wait_until(&mut rx, &mut state, &mut resyncs, |state| {
        backend_ips(state, "web") == ["10.244.1.2"]
            && state
                .desired(
                    &svc("api"),
                    NodeRef {
                        name: "node1",
                        ip: None,
                        ip6: None,
                        local_dns: None,
                        zone: None,
                    },
                )
                .len()
                == 1
    })
    .await;
    assert_eq!(resyncs, 1);

    client
        .delete("/registry/services/specs/default/api", None)
        .await
        .unwrap();
    wait_until(&mut rx, &mut state, &mut resyncs, |state| {
        state.services().cloned().collect::<Vec<_>>() == [svc("web")]
    })
    .await;

    // Dropping the receiver stops the loop.
    drop(rx);
    tokio::time::timeout(Duration::from_secs(2), runner)
        .await
        .expect("run must return once its receiver is gone")
        .unwrap();
}

// ---- helpers ----

/// Shows the module's logs in a failing test's output.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("skiff_agent=debug")
        .with_test_writer()
        .try_init();
}

fn svc(name: &str) -> ServiceRef {
    ServiceRef {
        namespace: "default".into(),
        name: name.into(),
    }
}

fn service_json(name: &str, cluster_ip: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "namespace": "default", "name": name },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": [{ "port": 80, "protocol": "TCP", "targetPort": 8080 }],
        },
    })
}

fn slice_json(name: &str, service: &str, ip: &str) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": { SERVICE_NAME_LABEL: service },
        },
        "addressType": "IPv4",
        "ports": [{ "port": 8080, "protocol": "TCP" }],
        "endpoints": [{ "addresses": [ip], "conditions": { "ready": true } }],
    })
}

/// Writes a Service; returns the revision of the write.
async fn put_service(client: &mut Client, name: &str, cluster_ip: &str) -> i64 {
    let key = object_key(SERVICES, Some("default"), name);
    let value = service_json(name, cluster_ip).to_string();
    let response = client.put(key, value, None).await.unwrap();
    response.header().unwrap().revision()
}

/// Writes an EndpointSlice; returns the revision of the write.
async fn put_slice(client: &mut Client, name: &str, service: &str, ip: &str) -> i64 {
    let key = object_key(ENDPOINT_SLICES, Some("default"), name);
    let value = slice_json(name, service, ip).to_string();
    let response = client.put(key, value, None).await.unwrap();
    response.header().unwrap().revision()
}

fn apply(state: &mut ClusterState, event: ClusterEvent, resyncs: &mut usize) {
    match event {
        ClusterEvent::Resync {
            services,
            slices,
            node,
            ..
        } => {
            *resyncs += 1;
            state.replace_all(services, slices, node);
        }
        ClusterEvent::Changes { changes, .. } => {
            for change in changes {
                state.apply(change);
            }
        }
    }
}

async fn next_event(rx: &mut mpsc::Receiver<ClusterEvent>) -> ClusterEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no cluster event within 5 s")
        .expect("run stopped")
}

async fn wait_until(
    rx: &mut mpsc::Receiver<ClusterEvent>,
    state: &mut ClusterState,
    resyncs: &mut usize,
    done: impl Fn(&ClusterState) -> bool,
) {
    while !done(state) {
        let event = next_event(rx).await;
        apply(state, event, resyncs);
    }
}

fn backend_ips(state: &ClusterState, name: &str) -> Vec<String> {
    state
        .desired(
            &svc(name),
            NodeRef {
                name: "node1",
                ip: None,
                ip6: None,
                local_dns: None,
                zone: None,
            },
        )
        .iter()
        .flat_map(|d| &d.backends)
        .map(|BackendAddr { ip, .. }| ip.to_string())
        .collect()
}

#[test]
fn the_node_is_read_for_its_zone_label() {
    let read = |json: Value| match Records::for_node("node1").value(
        &Name::Node,
        json.to_string().as_bytes(),
        1,
    ) {
        Ok(Record::Node(node)) => Ok(node.zone),
        Ok(other) => panic!("not a Node record: {other:?}"),
        Err(error) => Err(error),
    };
    let labelled = json!({ "kind": "Node", "metadata": { "labels": { ZONE_LABEL: "a" } } });
    assert_eq!(read(labelled).unwrap().as_deref(), Some("a"));
    let empty = json!({ "metadata": { "labels": { ZONE_LABEL: "" } } });
    assert_eq!(read(empty).unwrap(), None);
    assert!(read(json!({ "kind": "Pod" })).is_err());
}

#[test]
fn a_node_being_deleted_or_tainted_for_deletion_is_not_eligible() {
    let eligible = |json: Value| match Records::for_node("node1").value(
        &Name::Node,
        json.to_string().as_bytes(),
        1,
    ) {
        Ok(Record::Node(node)) => node.eligible,
        other => panic!("not a Node record: {other:?}"),
    };
    assert!(eligible(json!({"metadata": {"name": "n"}})));
    assert!(eligible(json!({
        "metadata": {"name": "n"},
        "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
    })));
    assert!(!eligible(json!({
        "metadata": {"name": "n"},
        "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"}]},
    })));
    assert!(!eligible(json!({
        "metadata": {"name": "n", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["x"]},
    })));
}

#[test]
fn a_service_with_outlier_detection_keeps_its_uid_for_its_events() {
    let read = |annotations: Value| match Records::for_node("node1").value(
        &Name::Service(svc("web")),
        json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-web",
                         "annotations": annotations},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
        })
        .to_string()
        .as_bytes(),
        1,
    ) {
        Ok(Record::Service(_, service)) => service,
        other => panic!("not a Service record: {other:?}"),
    };
    let detected = read(json!({"skiff.io/outlier-detection": "true"}));
    assert!(detected.outlier_detection.is_some());
    assert_eq!(detected.uid.as_deref(), Some("u-web"));
    // Others send no Events: the record stays without it.
    assert_eq!(read(json!({})).uid, None);
}
