//! An object as stored: JSON without its resourceVersion, which is the
//! key's `mod_revision` and is set on every read.

use super::encryption::Encryption;
use super::error::StoreError;
use serde_json::Value;

/// An object's `metadata.resourceVersion` as a revision (0 when absent).
pub fn resource_version_of(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|version| version.parse().ok())
        .unwrap_or(0)
}

pub fn with_resource_version(mut object: Value, revision: i64) -> Value {
    if let Some(metadata) = object
        .as_object_mut()
        .map(|object| {
            object
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
    {
        metadata.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    object
}

/// Whether two versions of an object are the same apart from their
/// resourceVersion (an update that changes nothing is not written).
pub fn same_object(a: &Value, b: &Value) -> bool {
    without_resource_version(a) == without_resource_version(b)
}

fn without_resource_version(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
    }
    object
}

/// The stored form: the object without its resourceVersion (that is the
/// key's revision, and would be stale the moment it was written), sealed
/// when `key`'s resource is encrypted.
pub(super) fn encode(encryption: &Encryption, key: &str, object: &Value) -> Vec<u8> {
    let json = serde_json::to_vec(&without_resource_version(object))
        .expect("JSON values always serialize");
    encryption.seal(key, json)
}

/// The object stored at `key`, opened when encrypted, with `revision` as
/// its resourceVersion.
pub(super) fn decode(
    encryption: &Encryption,
    key: &[u8],
    stored: &[u8],
    revision: i64,
) -> Result<Value, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let json = encryption.open(key, stored)?;
    let object: Value =
        serde_json::from_slice(&json).map_err(|error| corrupt(error.to_string()))?;
    if !object.is_object() {
        return Err(corrupt("not an object".into()));
    }
    Ok(with_resource_version(object, revision))
}
