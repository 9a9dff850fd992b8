//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`)
//! at the API's edge: skiff keeps objects as JSON, and converts a protobuf
//! request body to that JSON and a JSON reply to protobuf, as kube-apiserver
//! speaks it: the `k8s\0` prefix, then a `runtime.Unknown` envelope naming
//! the apiVersion and kind around the object's message. Watch events are
//! `metav1.WatchEvent` messages, each preceded by its length (4 bytes, big
//! endian), whose object is the enveloped object.
//!
//! The messages come from a descriptor set generated from k8s-pb
//! (proto/kubernetes.binpb, see `schema`), read through prost-reflect.

mod json;
#[cfg(test)]
mod schema;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use prost_reflect::prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::Value;

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// What a watch in protobuf is sent as.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// What every protobuf-encoded object starts with.
const PREFIX: &[u8] = b"k8s\0";

const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const RUNTIME: &str = "k8s.io.apimachinery.pkg.runtime";

/// Generated from k8s-pb by the `schema` test.
const DESCRIPTORS: &[u8] = include_bytes!("../../../proto/kubernetes.binpb");

#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    NoPrefix,
    #[error("decoding {what}: {source}")]
    Decode {
        what: String,
        source: prost_reflect::prost::DecodeError,
    },
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("no protobuf message for {kind} in {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("{path}: {message}")]
    Field { path: String, message: String },
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS).expect("the generated descriptor set is valid")
    })
}

fn message(name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("the descriptor set has {name}"))
}

/// The proto package of a group-version's types.
fn package(group: &str, version: &str) -> String {
    let name = match group {
        "" => "core",
        "apiextensions.k8s.io" => {
            return format!("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.{version}");
        }
        "apiregistration.k8s.io" => {
            return format!("k8s.io.kube_aggregator.pkg.apis.apiregistration.{version}");
        }
        group => group.split('.').next().unwrap_or(group),
    };
    format!("k8s.io.api.{name}.{version}")
}

/// The message of `kind` in `api_version`: the group's own, or one of
/// meta/v1 (`Status`, `DeleteOptions`, the discovery documents).
fn message_for(api_version: &str, kind: &str) -> Result<MessageDescriptor, ProtobufError> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    [package(group, version), META_V1.to_owned()]
        .iter()
        .find_map(|package| pool().get_message_by_name(&format!("{package}.{kind}")))
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })
}

/// An object (with `apiVersion` and `kind`) as kube-apiserver sends it.
pub fn encode_object(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let text = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let inner = json::to_message(&message_for(api_version, kind)?, object)?;
    let mut type_meta = DynamicMessage::new(message(&format!("{RUNTIME}.TypeMeta")));
    type_meta.set_field_by_name(
        "apiVersion",
        prost_reflect::Value::String(api_version.to_owned()),
    );
    type_meta.set_field_by_name("kind", prost_reflect::Value::String(kind.to_owned()));
    let mut unknown = DynamicMessage::new(message(&format!("{RUNTIME}.Unknown")));
    unknown.set_field_by_name("typeMeta", prost_reflect::Value::Message(type_meta));
    unknown.set_field_by_name(
        "raw",
        prost_reflect::Value::Bytes(inner.encode_to_vec().into()),
    );
    unknown.set_field_by_name(
        "contentEncoding",
        prost_reflect::Value::String("".to_owned()),
    );
    unknown.set_field_by_name("contentType", prost_reflect::Value::String("".to_owned()));
    let mut bytes = PREFIX.to_vec();
    unknown.encode(&mut bytes).expect("a Vec grows as needed");
    Ok(bytes)
}

/// A request body: the enveloped object, as JSON with its `apiVersion` and
/// `kind`.
pub fn decode_object(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let rest = bytes.strip_prefix(PREFIX).ok_or(ProtobufError::NoPrefix)?;
    let unknown =
        DynamicMessage::decode(message(&format!("{RUNTIME}.Unknown")), rest).map_err(|source| {
            ProtobufError::Decode {
                what: "the runtime.Unknown envelope".to_owned(),
                source,
            }
        })?;
    let encoding = string_field(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|value| value.as_message().cloned())
        .unwrap_or_else(|| DynamicMessage::new(message(&format!("{RUNTIME}.TypeMeta"))));
    let api_version = string_field(&type_meta, "apiVersion");
    let kind = string_field(&type_meta, "kind");
    let descriptor = message_for(&api_version, &kind)?;
    let raw = unknown
        .get_field_by_name("raw")
        .and_then(|value| value.as_bytes().cloned())
        .unwrap_or_default();
    let inner =
        DynamicMessage::decode(descriptor, raw).map_err(|source| ProtobufError::Decode {
            what: format!("{kind} {api_version}"),
            source,
        })?;
    let mut object = serde_json::Map::new();
    object.insert("kind".to_owned(), kind.into());
    object.insert("apiVersion".to_owned(), api_version.into());
    if let Value::Object(fields) = json::from_message(&inner) {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One watch event as a frame of a protobuf watch stream.
pub fn watch_frame(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let mut raw_extension = DynamicMessage::new(message(&format!("{RUNTIME}.RawExtension")));
    raw_extension.set_field_by_name(
        "raw",
        prost_reflect::Value::Bytes(encode_object(object)?.into()),
    );
    let mut event = DynamicMessage::new(message(&format!("{META_V1}.WatchEvent")));
    event.set_field_by_name("type", prost_reflect::Value::String(event_type.to_owned()));
    event.set_field_by_name("object", prost_reflect::Value::Message(raw_extension));
    let body = event.encode_to_vec();
    let length = u32::try_from(body.len()).expect("a watch event is under 4 GiB");
    let mut frame = length.to_be_bytes().to_vec();
    frame.extend(body);
    Ok(frame)
}
