//! Fields a typed decode would silently drop. kubectl asks for strict field
//! validation, so a misspelt field must be an error rather than vanish.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A field of the input that the schema does not declare, e.g. `spec.foo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// The field's path, e.g. `spec.ports[0].foo`.
    pub path: String,
}

impl fmt::Display for UnknownField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ".{}: field not declared in schema", self.path)
    }
}

/// Removes from `raw` the fields that do not survive a round trip through
/// `T` (e.g. `k8s_openapi::api::core::v1::Service`) and returns their
/// paths, in document order. Explicit `null`s stay and are not reported,
/// since they mean "unset" and decode to nothing. Fails only when `raw` does
/// not decode into `T` at all.
pub fn strip_unknown_fields<T: DeserializeOwned + Serialize>(
    raw: &mut Value,
) -> Result<Vec<UnknownField>, serde_json::Error> {
    let typed: T = serde_json::from_value(raw.clone())?;
    let round_tripped = serde_json::to_value(&typed)?;
    let mut unknown = Vec::new();
    strip_missing(raw, &round_tripped, &mut String::new(), &mut unknown);
    Ok(unknown)
}

fn strip_missing(raw: &mut Value, kept: &Value, path: &mut String, out: &mut Vec<UnknownField>) {
    match (raw, kept) {
        (Value::Object(raw), Value::Object(kept)) => {
            raw.retain(|key, value| {
                if value.is_null() {
                    return true;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let known = match kept.get(key) {
                    Some(kept_value) => {
                        strip_missing(value, kept_value, path, out);
                        true
                    }
                    None => {
                        out.push(UnknownField { path: path.clone() });
                        false
                    }
                };
                path.truncate(len);
                known
            });
        }
        (Value::Array(raw), Value::Array(kept)) => {
            for (i, (value, kept_value)) in raw.iter_mut().zip(kept).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                strip_missing(value, kept_value, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// kube-apiserver's wording when strict decoding finds unknown fields, e.g.
/// `strict decoding error: unknown field "spec.foo"`; the REST layer prefixes
/// it (`Service in version "v1" cannot be handled as a Service: …`).
pub fn strict_decoding_message(fields: &[UnknownField]) -> String {
    let list: Vec<String> = fields
        .iter()
        .map(|f| format!("unknown field \"{}\"", f.path))
        .collect();
    format!("strict decoding error: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    fn paths(raw: &Value) -> Vec<String> {
        strip_unknown_fields::<Service>(&mut raw.clone())
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect()
    }

    #[test]
    fn known_service_has_no_unknown_fields() {
        let raw = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"Any.Key/x": "y"},
                         "annotations": {"a": "b"}, "creationTimestamp": null},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}],
                "clusterIP": "",
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
                "externalIPs": [],
                "ipFamilies": ["IPv4"]
            },
            "status": {"loadBalancer": {}}
        });
        assert!(paths(&raw).is_empty(), "{:?}", paths(&raw));
    }

    #[test]
    fn unknown_fields_are_reported_with_paths() {
        let raw = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "nmae": "typo"},
            "spec": {"foo": 1, "ports": [{"port": 80}, {"port": 81, "bar": {"x": 1}}]}
        });
        let mut stripped = raw.clone();
        let unknown = strip_unknown_fields::<Service>(&mut stripped).unwrap();
        let found: Vec<&str> = unknown.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(found, ["metadata.nmae", "spec.foo", "spec.ports[1].bar"]);
        assert_eq!(
            stripped,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80}, {"port": 81}]}
            })
        );
        assert_eq!(
            unknown[1].to_string(),
            ".spec.foo: field not declared in schema"
        );
        assert_eq!(
            strict_decoding_message(&unknown[1..]),
            "strict decoding error: unknown field \"spec.foo\", unknown field \"spec.ports[1].bar\""
        );
    }

    #[test]
    fn undecodable_input_is_an_error() {
        assert!(
            strip_unknown_fields::<Service>(&mut json!({"spec": {"ports": [{"port": "eighty"}]}}))
                .is_err()
        );
    }
}
