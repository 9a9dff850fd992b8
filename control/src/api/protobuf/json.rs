//! Kubernetes' JSON form of an object ⇄ its protobuf message, walking the
//! message descriptor. Field names are the JSON names; int64 is a JSON
//! number; `[]byte` is base64; maps are objects. The types whose JSON is a
//! scalar have their own rules: `Time` and `MicroTime` (RFC 3339),
//! `IntOrString`, `Quantity`, and `RawExtension` and `FieldsV1`, whose
//! message holds the JSON itself.
//!
//! Decoding follows what kube-apiserver's JSON of the decoded Go struct
//! holds: Go writes every non-pointer field, so empty strings and zero
//! times (Go's `omitempty` and `null`) are left out; other fields are kept
//! as sent.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage,
    Value as Proto,
};
use serde_json::{Map, Value};

use super::{META_V1, ProtobufError, RUNTIME};

/// The JSON name of a field whose message's fields are inlined in JSON (an
/// embedded Go struct), as Go's tag says it.
pub const INLINE: &str = ",inline";

const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";

/// The message of `descriptor` holding `value`. `apiVersion` and `kind`
/// of the top-level object are the envelope's, not the message's.
pub fn to_message(
    descriptor: &MessageDescriptor,
    value: &Value,
) -> Result<DynamicMessage, ProtobufError> {
    message_from_json(descriptor, value, "")
}

fn message_from_json(
    descriptor: &MessageDescriptor,
    value: &Value,
    path: &str,
) -> Result<DynamicMessage, ProtobufError> {
    let mut message = DynamicMessage::new(descriptor.clone());
    let invalid = |what: &str| ProtobufError::Field {
        path: display(path),
        message: format!("{what} for {}", descriptor.name()),
    };
    let name = descriptor.full_name();
    if name == format!("{META_V1}.Time") || name == format!("{META_V1}.MicroTime") {
        let time = serde_json::from_value::<Time>(value.clone())
            .map(|time| time.0)
            .or_else(|_| serde_json::from_value::<MicroTime>(value.clone()).map(|time| time.0))
            .map_err(|_| invalid("not an RFC 3339 time"))?;
        message.set_field_by_name("seconds", Proto::I64(time.as_second()));
        message.set_field_by_name("nanos", Proto::I32(time.subsec_nanosecond()));
        return Ok(message);
    }
    if name == INT_OR_STRING {
        match value {
            Value::Number(number) => {
                let number = number
                    .as_i64()
                    .and_then(|number| i32::try_from(number).ok())
                    .ok_or_else(|| invalid("not a 32-bit integer"))?;
                message.set_field_by_name("type", Proto::I64(0));
                message.set_field_by_name("intVal", Proto::I32(number));
            }
            Value::String(text) => {
                message.set_field_by_name("type", Proto::I64(1));
                message.set_field_by_name("strVal", Proto::String(text.clone()));
            }
            _ => return Err(invalid("neither a number nor a string")),
        }
        return Ok(message);
    }
    if name == QUANTITY {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return Err(invalid("not a quantity")),
        };
        message.set_field_by_name("string", Proto::String(text));
        return Ok(message);
    }
    if name == format!("{RUNTIME}.RawExtension") || name == format!("{META_V1}.FieldsV1") {
        let raw = serde_json::to_vec(value).expect("JSON values always serialize");
        let field = descriptor
            .fields()
            .next()
            .expect("one field: the raw bytes");
        message.set_field(&field, Proto::Bytes(raw.into()));
        return Ok(message);
    }
    let Value::Object(fields) = value else {
        return Err(invalid("not an object"));
    };
    for field in descriptor
        .fields()
        .filter(|field| field.json_name() == INLINE)
    {
        let Kind::Message(inline) = field.kind() else {
            unreachable!("inlined fields are messages");
        };
        let own: Map<String, Value> = fields
            .iter()
            .filter(|(key, _)| inline.get_field_by_json_name(key).is_some())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !own.is_empty() {
            let converted = message_from_json(&inline, &Value::Object(own), path)?;
            message.set_field(&field, Proto::Message(converted));
        }
    }
    let inlined = |key: &str| {
        descriptor.fields().any(|field| {
            field.json_name() == INLINE
                && field
                    .kind()
                    .as_message()
                    .is_some_and(|inline| inline.get_field_by_json_name(key).is_some())
        })
    };
    for (key, value) in fields {
        if value.is_null() || inlined(key) {
            continue;
        }
        let Some(field) = descriptor.get_field_by_json_name(key) else {
            // Every object's type is in its envelope (or its list's).
            if matches!(key.as_str(), "apiVersion" | "kind") {
                continue;
            }
            return Err(ProtobufError::Field {
                path: display(&format!("{path}.{key}")),
                message: format!("{} has no such field", descriptor.name()),
            });
        };
        let path = format!("{path}.{key}");
        let converted = if field.is_map() {
            map_from_json(&field, value, &path)?
        } else if field.is_list() {
            let Value::Array(items) = value else {
                return Err(ProtobufError::Field {
                    path: display(&path),
                    message: "not an array".to_owned(),
                });
            };
            Proto::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        single_from_json(&field.kind(), item, &format!("{path}[{index}]"))
                    })
                    .collect::<Result<_, _>>()?,
            )
        } else {
            single_from_json(&field.kind(), value, &path)?
        };
        message.set_field(&field, converted);
    }
    Ok(message)
}

fn map_from_json(
    field: &FieldDescriptor,
    value: &Value,
    path: &str,
) -> Result<Proto, ProtobufError> {
    let Value::Object(entries) = value else {
        return Err(ProtobufError::Field {
            path: display(path),
            message: "not an object".to_owned(),
        });
    };
    let Kind::Message(entry) = field.kind() else {
        unreachable!("a map field's kind is its entry message");
    };
    let value_kind = entry.map_entry_value_field().kind();
    let mut map = std::collections::HashMap::new();
    for (key, value) in entries {
        let converted = single_from_json(&value_kind, value, &format!("{path}[{key}]"))?;
        map.insert(MapKey::String(key.clone()), converted);
    }
    Ok(Proto::Map(map))
}

fn single_from_json(kind: &Kind, value: &Value, path: &str) -> Result<Proto, ProtobufError> {
    let wrong = |what: &str| ProtobufError::Field {
        path: display(path),
        message: format!("not {what}"),
    };
    Ok(match kind {
        Kind::Message(descriptor) => Proto::Message(message_from_json(descriptor, value, path)?),
        Kind::String => Proto::String(value.as_str().ok_or_else(|| wrong("a string"))?.to_owned()),
        Kind::Bool => Proto::Bool(value.as_bool().ok_or_else(|| wrong("a boolean"))?),
        Kind::Int32 => Proto::I32(
            value
                .as_i64()
                .and_then(|number| i32::try_from(number).ok())
                .ok_or_else(|| wrong("a 32-bit integer"))?,
        ),
        Kind::Int64 => Proto::I64(value.as_i64().ok_or_else(|| wrong("an integer"))?),
        Kind::Double => Proto::F64(value.as_f64().ok_or_else(|| wrong("a number"))?),
        Kind::Bytes => Proto::Bytes(
            BASE64
                .decode(value.as_str().ok_or_else(|| wrong("a base64 string"))?)
                .map_err(|_| wrong("valid base64"))?
                .into(),
        ),
        other => unreachable!("Kubernetes messages have no {other:?} fields"),
    })
}

/// The JSON form of a message.
pub fn from_message(message: &DynamicMessage) -> Value {
    let descriptor = message.descriptor();
    let name = descriptor.full_name();
    let field = |field: &str| {
        message
            .get_field_by_name(field)
            .map(|value| value.into_owned())
    };
    if name == format!("{META_V1}.Time") || name == format!("{META_V1}.MicroTime") {
        let seconds = field("seconds").and_then(|v| v.as_i64()).unwrap_or(0);
        let nanos = field("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
        let Ok(time) = Timestamp::new(seconds, nanos) else {
            return Value::Null;
        };
        let json = if name.ends_with(".Time") {
            serde_json::to_value(Time(time))
        } else {
            serde_json::to_value(MicroTime(time))
        };
        return json.expect("a time always serializes");
    }
    if name == INT_OR_STRING {
        let is_string = field("type").and_then(|v| v.as_i64()) == Some(1);
        return if is_string {
            Value::from(field("strVal").and_then(|v| v.as_str().map(str::to_owned)))
        } else {
            Value::from(field("intVal").and_then(|v| v.as_i32()).unwrap_or(0))
        };
    }
    if name == QUANTITY {
        return Value::from(
            field("string")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        );
    }
    if name == format!("{RUNTIME}.RawExtension") || name == format!("{META_V1}.FieldsV1") {
        let raw = descriptor
            .fields()
            .next()
            .and_then(|raw| message.get_field(&raw).as_bytes().cloned())
            .unwrap_or_default();
        return raw_json(&raw);
    }
    let mut object = Map::new();
    for (field, value) in message.fields() {
        if field.json_name() == INLINE {
            if let Value::Object(fields) = single_to_json(value) {
                object.extend(fields);
            }
        } else if field.is_map() {
            let Proto::Map(entries) = value else { continue };
            let mut map = Map::new();
            for (key, value) in entries {
                if let MapKey::String(key) = key {
                    map.insert(key.clone(), single_to_json(value));
                }
            }
            object.insert(field.json_name().to_owned(), Value::Object(map));
        } else if let Proto::List(items) = value {
            object.insert(
                field.json_name().to_owned(),
                Value::Array(items.iter().map(single_to_json).collect()),
            );
        } else if !omitted(value) {
            object.insert(field.json_name().to_owned(), single_to_json(value));
        }
    }
    Value::Object(object)
}

/// Go's JSON leaves out empty strings (`omitempty`) and zero times (`null`).
fn omitted(value: &Proto) -> bool {
    match value {
        Proto::String(text) => text.is_empty(),
        Proto::Message(message) => {
            let name = message.descriptor().full_name().to_owned();
            (name == format!("{META_V1}.Time") || name == format!("{META_V1}.MicroTime"))
                && message
                    .fields()
                    .all(|(_, value)| matches!(value, Proto::I64(0) | Proto::I32(0)))
        }
        _ => false,
    }
}

fn single_to_json(value: &Proto) -> Value {
    match value {
        Proto::Bool(value) => Value::from(*value),
        Proto::I32(value) => Value::from(*value),
        Proto::I64(value) => Value::from(*value),
        Proto::U32(value) => Value::from(*value),
        Proto::U64(value) => Value::from(*value),
        Proto::F32(value) => Value::from(f64::from(*value)),
        Proto::F64(value) => Value::from(*value),
        Proto::String(value) => Value::from(value.clone()),
        Proto::Bytes(value) => Value::from(BASE64.encode(value)),
        Proto::EnumNumber(value) => Value::from(*value),
        Proto::Message(message) => from_message(message),
        Proto::List(items) => Value::Array(items.iter().map(single_to_json).collect()),
        Proto::Map(_) => unreachable!("maps are fields, not values"),
    }
}

/// A `RawExtension`'s bytes: JSON from JSON clients; an enveloped object
/// from protobuf ones.
fn raw_json(raw: &[u8]) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(raw)
        .ok()
        .or_else(|| super::decode_object(raw).ok())
        .unwrap_or(Value::Null)
}

/// A JSON path without its leading dot.
fn display(path: &str) -> String {
    path.trim_start_matches('.').to_owned()
}
