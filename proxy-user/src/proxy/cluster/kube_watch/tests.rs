use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::{Mirror, Update, WatchedNode, WatchedService, WatchedSlice};
use crate::proxy::cluster::{etcd_watch::ClusterEvent, state::ObjectChange};

/// `json` as the watcher hands it over, decoded as from the API server.
fn watched<T: serde::de::DeserializeOwned>(json: Value) -> T {
    serde_json::from_value(json).unwrap()
}

fn service(name: &str, version: u32) -> WatchedService {
    watched(json!({
        "metadata": {"namespace": "default", "name": name, "resourceVersion": version.to_string()},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "TCP"}]},
    }))
}

fn slice(name: &str, service: &str) -> WatchedSlice {
    watched(json!({
        "metadata": {"namespace": "default", "name": name, "resourceVersion": "3",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.1.2"]}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }))
}

fn node(zone: &str) -> WatchedNode {
    watched(json!({
        "metadata": {"name": "n1", "resourceVersion": "1",
                     "labels": {"topology.kubernetes.io/zone": zone}},
    }))
}

/// Lists the agent's Node: `node`, or none registered.
fn list_node(mirror: &mut Mirror, node: Option<WatchedNode>) -> Option<ClusterEvent> {
    assert!(mirror.apply(Update::Node(Box::new(Event::Init))).is_none());
    if let Some(node) = node {
        assert!(
            mirror
                .apply(Update::Node(Box::new(Event::InitApply(node))))
                .is_none()
        );
    }
    mirror.apply(Update::Node(Box::new(Event::InitDone)))
}

/// The Services' names a resync holds, sorted.
fn resynced_services(event: Option<ClusterEvent>) -> Vec<String> {
    match event {
        Some(ClusterEvent::Resync { services, .. }) => {
            let mut names: Vec<String> =
                services.iter().map(|(name, _)| name.to_string()).collect();
            names.sort();
            names
        }
        other => panic!("expected a resync, got {other:?}"),
    }
}

fn list(mirror: &mut Mirror, services: Vec<WatchedService>) -> Option<ClusterEvent> {
    assert!(
        mirror
            .apply(Update::Service(Box::new(Event::Init)))
            .is_none()
    );
    for service in services {
        assert!(
            mirror
                .apply(Update::Service(Box::new(Event::InitApply(service))))
                .is_none()
        );
    }
    mirror.apply(Update::Service(Box::new(Event::InitDone)))
}

#[test]
fn nothing_is_reported_until_all_three_kinds_are_listed() {
    let mut mirror = Mirror::default();
    assert!(list(&mut mirror, vec![service("a", 2)]).is_none());
    assert!(
        mirror
            .apply(Update::Service(Box::new(Event::Apply(service("b", 4)))))
            .is_none()
    );
    assert!(mirror.apply(Update::Slice(Box::new(Event::Init))).is_none());
    assert!(
        mirror
            .apply(Update::Slice(Box::new(Event::InitApply(slice("a-1", "a")))))
            .is_none()
    );
    assert!(
        mirror
            .apply(Update::Slice(Box::new(Event::InitDone)))
            .is_none()
    );
    let resync = list_node(&mut mirror, Some(node("a")));
    match &resync {
        Some(ClusterEvent::Resync {
            slices,
            node,
            revision,
            ..
        }) => {
            assert_eq!(slices.len(), 1);
            assert_eq!(
                node.as_ref().and_then(|node| node.zone.as_deref()),
                Some("a")
            );
            assert_eq!(*revision, 4);
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    assert_eq!(resynced_services(resync), ["default/a", "default/b"]);
}

#[test]
fn changes_follow_and_a_relist_drops_what_was_deleted_meanwhile() {
    let mut mirror = Mirror::default();
    list(&mut mirror, vec![service("a", 2), service("b", 3)]);
    mirror.apply(Update::Slice(Box::new(Event::Init)));
    mirror.apply(Update::Slice(Box::new(Event::InitDone)));
    list_node(&mut mirror, None).unwrap();
    match mirror.apply(Update::Service(Box::new(Event::Delete(service("a", 5))))) {
        Some(ClusterEvent::Changes {
            changes, revision, ..
        }) => {
            assert_eq!(revision, 5);
            assert!(
                matches!(&changes[..], [ObjectChange::ServiceDelete(name)] if &*name.name == "a")
            );
        }
        other => panic!("expected a change, got {other:?}"),
    }
    // b is deleted while the watch is down: the relist no longer has it.
    assert_eq!(
        resynced_services(list(&mut mirror, vec![service("c", 7)])),
        ["default/c"]
    );
}

#[test]
fn the_node_s_zone_changes_and_deletion_are_reported() {
    let mut mirror = Mirror::default();
    list(&mut mirror, Vec::new());
    mirror.apply(Update::Slice(Box::new(Event::Init)));
    mirror.apply(Update::Slice(Box::new(Event::InitDone)));
    list_node(&mut mirror, Some(node("a"))).unwrap();
    let changes = |event| match event {
        Some(ClusterEvent::Changes { changes, .. }) => changes,
        other => panic!("expected a change, got {other:?}"),
    };
    let moved = changes(mirror.apply(Update::Node(Box::new(Event::Apply(node("b"))))));
    assert!(
        matches!(&moved[..], [ObjectChange::NodeUpsert(node)] if node.zone.as_deref() == Some("b")),
        "{moved:?}"
    );
    let gone = changes(mirror.apply(Update::Node(Box::new(Event::Delete(node("b"))))));
    assert!(matches!(&gone[..], [ObjectChange::NodeDelete]), "{gone:?}");
}

#[test]
fn records_are_read_from_the_api_server_s_json_with_their_identity() {
    let web = service("web", 9);
    assert_eq!(web.meta.namespace.as_deref(), Some("default"));
    assert_eq!(web.meta.name.as_deref(), Some("web"));
    assert_eq!(web.meta.resource_version.as_deref(), Some("9"));
    let record = web.record.unwrap();
    assert_eq!(
        record.cluster_ips[..],
        [std::net::Ipv4Addr::new(10, 96, 0, 10)]
    );
    let node1 = node("a");
    assert_eq!(node1.meta.namespace, None);
    assert_eq!(node1.record.unwrap().zone.as_deref(), Some("a"));
    let tainted: WatchedNode = watched(json!({
        "metadata": {"name": "n1"},
        "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]},
    }));
    assert!(!tainted.record.unwrap().eligible);
    // Another kind under the watched one's name is kept as unreadable
    // (skipped with a warning), not an error that stops the watch.
    let pod: WatchedService = watched(json!({"kind": "Pod", "metadata": {"name": "p"}}));
    assert!(pod.record.is_err());
}

#[test]
fn an_unreadable_object_is_skipped() {
    let mut mirror = Mirror::default();
    list(&mut mirror, Vec::new());
    mirror.apply(Update::Slice(Box::new(Event::Init)));
    mirror.apply(Update::Slice(Box::new(Event::InitDone)));
    list_node(&mut mirror, None).unwrap();
    let pod: WatchedService = watched(json!({"kind": "Pod", "metadata": {"name": "p"}}));
    assert!(
        mirror
            .apply(Update::Service(Box::new(Event::Apply(pod))))
            .is_none()
    );
}
