//! Label and field selectors, as `kubectl -l` and kube-proxy send them.

use std::fmt;

use serde_json::Value;

use super::registry::Resource;
use super::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `labelSelector`; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part).ok_or_else(|| {
                ApiError::bad_request(format!("unable to parse requirement: {part:?}"))
            })?);
        }
        Ok(Self(requirements))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => label(key) == Some(value),
            Requirement::NotEquals(key, value) => label(key) != Some(value),
            Requirement::In(key, values) => {
                label(key).is_some_and(|v| values.iter().any(|x| x == v))
            }
            Requirement::NotIn(key, values) => {
                label(key).is_none_or(|v| values.iter().all(|x| x != v))
            }
            Requirement::Exists(key) => label(key).is_some(),
            Requirement::DoesNotExist(key) => label(key).is_none(),
        })
    }
}

/// The selector's canonical text, which [`LabelSelector::parse`] reads back
/// as the same selector. Equality is written `==`, so a value that begins
/// with `=` is not read as part of the operator.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match requirement {
                Requirement::Equals(key, value) => write!(f, "{key}=={value}")?,
                Requirement::NotEquals(key, value) => write!(f, "{key}!={value}")?,
                Requirement::In(key, values) => write!(f, "{key} in ({})", values.join(","))?,
                Requirement::NotIn(key, values) => write!(f, "{key} notin ({})", values.join(","))?,
                Requirement::Exists(key) => f.write_str(key)?,
                Requirement::DoesNotExist(key) => write!(f, "!{key}")?,
            }
        }
        Ok(())
    }
}

/// Splits at commas outside parentheses (`a in (x,y),b`).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        return valid_key(key.trim()).map(Requirement::DoesNotExist);
    }
    for (operator, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, set)) = part.split_once(operator) {
            let key = valid_key(key.trim())?;
            let set = set.trim().strip_prefix('(')?.strip_suffix(')')?;
            let values: Vec<String> = set.split(',').map(|v| v.trim().to_owned()).collect();
            return Some(if negated {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Some(Requirement::NotEquals(
            valid_key(key.trim())?,
            value.trim().to_owned(),
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Some(Requirement::Equals(
            valid_key(key.trim())?,
            value.trim().to_owned(),
        ));
    }
    valid_key(part).map(Requirement::Exists)
}

fn valid_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| key.to_owned())
}

/// A parsed `fieldSelector` over the fields `resource` supports.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(Vec<&'static str>, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str, resource: &Resource) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((field, value)) = part.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                (field, true, value)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let path = field_path(field.trim(), resource).ok_or_else(|| {
                ApiError::bad_request(format!("field label not supported: {}", field.trim()))
            })?;
            terms.push((path, equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, wanted)| {
            let actual = path
                .iter()
                .try_fold(object, |value, step| value.get(step))
                .map(|value| match value {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (actual == *wanted) == *equal
        })
    }
}

fn field_path(field: &str, resource: &Resource) -> Option<Vec<&'static str>> {
    match field {
        "metadata.name" => Some(vec!["metadata", "name"]),
        "metadata.namespace" if resource.namespaced => Some(vec!["metadata", "namespace"]),
        _ => resource
            .fields
            .iter()
            .find(|(label, _)| *label == field)
            .map(|(_, path)| path.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::api::registry::find;

    fn labelled(labels: Value) -> Value {
        json!({ "metadata": { "name": "x", "namespace": "default", "labels": labels } })
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let object = labelled(json!({ "app": "web", "tier": "front" }));
        let matches = |selector: &str| LabelSelector::parse(selector).unwrap().matches(&object);
        assert!(matches(""));
        assert!(matches("app=web"));
        assert!(matches("app==web,tier"));
        assert!(!matches("app!=web"));
        assert!(matches("tier in (back, front)"));
        assert!(!matches("tier notin (front)"));
        assert!(matches(
            "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"
        ));
        assert!(!matches("!app"));
        assert!(matches("missing notin (a),missing!=a"));
        assert!(!matches("missing in (a)"));
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors_use_the_kinds_fields() {
        let pods = find("", "v1", "pods").unwrap();
        let pod =
            json!({ "metadata": { "name": "p", "namespace": "a" }, "spec": { "nodeName": "n1" } });
        let matches = |selector: &str| FieldSelector::parse(selector, pods).unwrap().matches(&pod);
        assert!(matches("spec.nodeName=n1,metadata.name=p"));
        assert!(!matches("spec.nodeName!=n1"));
        assert!(matches("metadata.namespace==a"));
        assert!(matches("status.phase="));
        let nodes = find("", "v1", "nodes").unwrap();
        assert!(FieldSelector::parse("spec.nodeName=n1", nodes).is_err());
        assert!(FieldSelector::parse("metadata.namespace=a", nodes).is_err());
    }

    /// Requirements as clients write them, with the characters that make
    /// parsing hard (operators, parentheses, commas, spaces) in their parts.
    fn requirement_text() -> impl Strategy<Value = String> {
        let key = "[a-z0-9./_!-]{0,6}";
        let value = "[a-z0-9 =!(),.-]{0,6}";
        prop_oneof![
            (key, value).prop_map(|(k, v)| format!("{k}={v}")),
            (key, value).prop_map(|(k, v)| format!("{k} == {v}")),
            (key, value).prop_map(|(k, v)| format!("{k}!={v}")),
            (key, prop::collection::vec(value, 0..3))
                .prop_map(|(k, vs)| format!("{k} in ({})", vs.join(","))),
            (key, prop::collection::vec(value, 0..3))
                .prop_map(|(k, vs)| format!("{k} notin ({})", vs.join(", "))),
            key.prop_map(|k| format!("!{k}")),
            key.prop_map(String::from),
            "\\PC{0,8}",
        ]
    }

    fn selector_text() -> impl Strategy<Value = String> {
        prop::collection::vec(requirement_text(), 0..4).prop_map(|parts| parts.join(","))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever a client sends, parsing answers (a 400 at worst), and
        /// a parsed selector printed and parsed again is the same selector.
        #[test]
        fn label_selectors_round_trip_through_their_text(text in selector_text()) {
            if let Ok(selector) = LabelSelector::parse(&text) {
                let printed = selector.to_string();
                let reparsed = LabelSelector::parse(&printed);
                prop_assert_eq!(reparsed.ok(), Some(selector), "printed as {:?}", printed);
            }
        }

        #[test]
        fn field_selectors_parse_any_text(text in selector_text()) {
            let pods = find("", "v1", "pods").unwrap();
            if let Ok(selector) = FieldSelector::parse(&text, pods) {
                selector.matches(&json!({ "metadata": { "name": text } }));
            }
        }
    }
}
