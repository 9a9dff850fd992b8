//! JSON ⇄ protobuf round trips, checked against k8s-pb's prost-generated
//! types (an independent decoder and encoder of the same messages).

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost_reflect::prost::Message;
use serde_json::{Value, json};

use super::*;

fn round_trip(object: Value) -> Vec<u8> {
    let bytes = encode_object(&object).expect("encodes");
    assert_eq!(&bytes[..4], b"k8s\0");
    assert_eq!(decode_object(&bytes).expect("decodes"), object);
    bytes
}

/// The object's message inside the envelope, checking the envelope.
fn inner(bytes: &[u8], api_version: &str, kind: &str) -> Vec<u8> {
    let unknown = Unknown::decode(&bytes[4..]).expect("an Unknown");
    let type_meta = unknown.type_meta.expect("typeMeta");
    assert_eq!(type_meta.api_version.as_deref(), Some(api_version));
    assert_eq!(type_meta.kind.as_deref(), Some(kind));
    unknown.raw.expect("raw")
}

fn pod() -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": { "app": "web", "empty": "" },
            "creationTimestamp": "2026-12-05T13:04:05Z",
            "generation": 3_000_000_000_i64,
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u-1", "controller": true }],
            "managedFields": [{ "manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": { "f:metadata": {} } }],
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "skiff/busybox",
                "args": [],
                "ports": [{ "containerPort": 80, "name": "http" }],
                "resources": { "limits": { "cpu": "500m", "memory": "64Mi" } },
                "readinessProbe": { "httpGet": { "port": "http", "path": "/" } },
                "livenessProbe": { "tcpSocket": { "port": 80 } },
                "env": [{ "name": "A", "valueFrom": { "configMapKeyRef": { "name": "c", "key": "k" } } }],
            }],
            "envFrom": null,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
        },
        "status": { "phase": "Running", "startTime": "2026-12-05T13:04:06Z" },
    })
}

#[test]
fn pod_with_every_tricky_type() {
    let mut object = pod();
    let bytes = encode_object(&object).expect("encodes");
    let decoded = core::Pod::decode(inner(&bytes, "v1", "Pod").as_slice()).expect("a Pod");
    let metadata = decoded.metadata.as_ref().expect("metadata");
    assert_eq!(metadata.labels["app"], "web");
    assert_eq!(metadata.generation, Some(3_000_000_000));
    assert_eq!(
        metadata.creation_timestamp.as_ref().and_then(|t| t.seconds),
        Some(1_796_475_845)
    );
    let container = &decoded.spec.as_ref().expect("spec").containers[0];
    assert_eq!(
        container.resources.as_ref().unwrap().limits["cpu"]
            .string
            .as_deref(),
        Some("500m")
    );
    let named = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .handler
        .as_ref()
        .unwrap();
    let port = named.http_get.as_ref().unwrap().port.as_ref().unwrap();
    assert_eq!(
        (port.r#type, port.str_val.as_deref()),
        (Some(1), Some("http"))
    );
    let numbered = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .handler
        .as_ref()
        .unwrap();
    let port = numbered.tcp_socket.as_ref().unwrap().port.as_ref().unwrap();
    assert_eq!((port.r#type, port.int_val), (Some(0), Some(80)));
    // An embedded Go struct (LocalObjectReference) is inline in JSON.
    let reference = container.env[0]
        .value_from
        .as_ref()
        .unwrap()
        .config_map_key_ref
        .as_ref();
    assert_eq!(
        reference
            .unwrap()
            .local_object_reference
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("c")
    );

    // Back: nulls and empty lists are absent, as from Go; zero pointers
    // (gracePeriod 0, automount false) stay.
    object["spec"].as_object_mut().unwrap().remove("envFrom");
    object["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("args");
    assert_eq!(decode_object(&bytes).expect("decodes"), object);
}

#[test]
fn a_go_clients_pod_reads_as_its_json() {
    // As client-go sends it: every non-pointer field, empty ones too.
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            namespace: Some(String::new()),
            generate_name: Some(String::new()),
            creation_timestamp: Some(meta::Time {
                seconds: Some(0),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("p".into()),
                image: Some("skiff/busybox".into()),
                image_pull_policy: Some("Never".into()),
                termination_message_path: Some(String::new()),
                ..Default::default()
            }],
            restart_policy: Some(String::new()),
            ..Default::default()
        }),
        status: Some(core::PodStatus::default()),
    };
    let unknown = Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
        }),
        raw: Some(pod.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut bytes = b"k8s\0".to_vec();
    bytes.extend(unknown.encode_to_vec());
    assert_eq!(
        decode_object(&bytes).expect("decodes"),
        json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": { "name": "p" },
            "spec": { "containers": [{ "name": "p", "image": "skiff/busybox", "imagePullPolicy": "Never" }] },
            "status": {},
        })
    );
}

#[test]
fn secret_bytes_and_maps() {
    let bytes = round_trip(json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": { "name": "s" },
        "type": "Opaque",
        "data": { "p": "cQ==", "empty": "" },
    }));
    let secret = core::Secret::decode(inner(&bytes, "v1", "Secret").as_slice()).unwrap();
    assert_eq!(secret.data["p"], b"q");
    assert_eq!(secret.data["empty"], b"");
}

#[test]
fn raw_extensions_hold_json() {
    let bytes = round_trip(json!({
        "kind": "ControllerRevision",
        "apiVersion": "apps/v1",
        "metadata": { "name": "web-1" },
        "data": { "spec": { "template": { "metadata": { "labels": { "a": "b" } } } } },
        "revision": 2,
    }));
    let revision = k8s_pb::api::apps::v1::ControllerRevision::decode(
        inner(&bytes, "apps/v1", "ControllerRevision").as_slice(),
    )
    .unwrap();
    let raw = revision.data.unwrap().raw.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&raw).unwrap()["spec"]["template"]["metadata"]["labels"]["a"],
        "b"
    );
}

#[test]
fn events_with_micro_time() {
    round_trip(json!({
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": { "name": "e", "namespace": "default" },
        "eventTime": "2026-12-05T13:04:05.123456Z",
        "reportingController": "kube-proxy",
        "reportingInstance": "kube-proxy-n1",
        "action": "StartKubeProxy",
        "reason": "Starting",
        "regarding": { "kind": "Node", "name": "n1" },
        "type": "Normal",
    }));
}

#[test]
fn lists_and_status() {
    round_trip(json!({
        "kind": "ConfigMapList",
        "apiVersion": "v1",
        "metadata": { "resourceVersion": "12" },
        "items": [{ "metadata": { "name": "c" }, "data": { "a": "b" } }],
    }));
    let bytes = round_trip(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "pods \"x\" not found",
        "reason": "NotFound",
        "details": { "name": "x", "kind": "pods" },
        "code": 404,
    }));
    let status = meta::Status::decode(inner(&bytes, "v1", "Status").as_slice()).unwrap();
    assert_eq!(status.code, Some(404));
}

#[test]
fn watch_events_are_length_prefixed() {
    let object = json!({ "kind": "Namespace", "apiVersion": "v1", "metadata": { "name": "x" } });
    let frame = watch_frame("ADDED", &object).expect("encodes");
    let length = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(length, frame.len() - 4);
    let event = meta::WatchEvent::decode(&frame[4..]).expect("a WatchEvent");
    assert_eq!(event.r#type.as_deref(), Some("ADDED"));
    let raw = event.object.unwrap().raw.unwrap();
    assert_eq!(decode_object(&raw).unwrap(), object);
}

#[test]
fn every_served_kind_has_a_message() {
    for resource in crate::api::registry::RESOURCES {
        let api_version = resource.api_version();
        message_for(&api_version, resource.kind).expect("a message");
        message_for(&api_version, &format!("{}List", resource.kind)).expect("a list message");
    }
}

#[test]
fn bad_bodies_are_named() {
    assert!(matches!(decode_object(b"{}"), Err(ProtobufError::NoPrefix)));
    let error = encode_object(&json!({ "kind": "Pod", "apiVersion": "v1", "spec": { "nope": 1 } }))
        .unwrap_err();
    assert_eq!(error.to_string(), "spec.nope: PodSpec has no such field");
}
