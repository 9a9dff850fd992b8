//! Sets of field paths, as server-side apply tracks ownership with them, and
//! their `FieldsV1` encoding (structured-merge-diff's): a tree of JSON
//! objects keyed by path elements — `f:<field>`, `k:<key fields as JSON>`
//! for an element of an associative list, `v:<JSON value>` for an element of
//! a set, `i:<index>` — where `{}` is a leaf and `"."` marks a node that is
//! itself in the set as well as having children.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Map, Value};

const SELF: &str = ".";

/// Why a `fieldsV1` value could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldSetError {
    #[error("fieldsV1 must be a JSON object at {0}")]
    NotAnObject(String),
    #[error("unknown path element {0:?} in fieldsV1")]
    UnknownElement(String),
}

/// A set of paths into an object: the node for the path that leads here,
/// whether that path is itself in the set, and the nodes below it keyed by
/// their encoded path element. Empty nodes are never kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// The path element of field `name` of an object.
pub fn field_element(name: &str) -> String {
    format!("f:{name}")
}

/// The path element of the element of an associative list whose key fields
/// are `key` (field name and value, in any order).
pub fn key_element<'v>(key: impl IntoIterator<Item = (&'v str, &'v Value)>) -> String {
    let sorted: BTreeMap<&str, &Value> = key.into_iter().collect();
    let fields: Vec<String> = sorted
        .iter()
        .map(|(name, value)| format!("{}:{value}", Value::from(*name)))
        .collect();
    format!("k:{{{}}}", fields.join(","))
}

/// The path element of `value` as an element of a set-like list.
pub fn value_element(value: &Value) -> String {
    format!("v:{value}")
}

/// The key fields an `k:` element names.
pub fn key_fields(element: &str) -> Option<Map<String, Value>> {
    let json = element.strip_prefix("k:")?;
    match serde_json::from_str(json) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    }
}

/// The value a `v:` element names.
pub fn element_value(element: &str) -> Option<Value> {
    serde_json::from_str(element.strip_prefix("v:")?).ok()
}

fn check_element(element: &str) -> Result<(), FieldSetError> {
    let well_formed = match element.get(..2) {
        Some("f:") => true,
        Some("k:") => key_fields(element).is_some(),
        Some("v:") => element_value(element).is_some(),
        Some("i:") => element[2..].parse::<usize>().is_ok(),
        _ => false,
    };
    if well_formed {
        Ok(())
    } else {
        Err(FieldSetError::UnknownElement(element.to_owned()))
    }
}

/// How kube-apiserver prints a path in conflict messages:
/// `.spec.containers[name="web"].image`, `.metadata.finalizers[="a"]`.
pub fn display_path(elements: &[&str]) -> String {
    let mut out = String::new();
    for element in elements {
        let (kind, rest) = element.split_at(element.len().min(2));
        match kind {
            "f:" => {
                out.push('.');
                out.push_str(rest);
            }
            "k:" => {
                let fields = key_fields(element).unwrap_or_default();
                let pairs: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                let _ = write!(out, "[{}]", pairs.join(","));
            }
            "v:" => {
                let _ = write!(out, "[={rest}]");
            }
            _ => {
                let _ = write!(out, "[{rest}]");
            }
        }
    }
    out
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a `fieldsV1` value.
    pub fn from_fields_v1(value: &Value) -> Result<Self, FieldSetError> {
        let mut set = Self::new();
        set.read(value, &mut Vec::new())?;
        Ok(set)
    }

    fn read<'v>(&mut self, value: &'v Value, path: &mut Vec<&'v str>) -> Result<(), FieldSetError> {
        let Value::Object(entries) = value else {
            return Err(FieldSetError::NotAnObject(display_path(path)));
        };
        for (element, below) in entries {
            if element == SELF {
                self.member = true;
                continue;
            }
            check_element(element)?;
            let child = self.children.entry(element.clone()).or_default();
            path.push(element);
            child.read(below, path)?;
            path.pop();
            if child.children.is_empty() {
                child.member = true;
            }
        }
        Ok(())
    }

    /// The `fieldsV1` encoding.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        if self.member && !self.children.is_empty() {
            out.insert(SELF.to_owned(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            out.insert(element.clone(), child.to_fields_v1());
        }
        Value::Object(out)
    }

    /// Whether the set holds no path at all.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Puts the path that leads to this node in the set.
    pub fn set_member(&mut self) {
        self.member = true;
    }

    /// The node below this one for `element`, created when missing. The
    /// caller must make it non-empty (see [`FieldSet::prune`]).
    pub fn child(&mut self, element: String) -> &mut FieldSet {
        self.children.entry(element).or_default()
    }

    /// Drops the nodes left empty below this one.
    pub fn prune(&mut self) {
        self.children.retain(|_, child| {
            child.prune();
            !child.is_empty()
        });
    }

    /// The children of this node with their path elements.
    pub fn children(&self) -> impl Iterator<Item = (&str, &FieldSet)> {
        self.children
            .iter()
            .map(|(element, child)| (element.as_str(), child))
    }

    /// Whether the path leading to this node is in the set.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// Adds every path of `other`.
    pub fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (element, child) in &other.children {
            self.child(element.clone()).union_with(child);
        }
    }

    /// The paths of `self` that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    /// The paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Removes the paths of `removed` and every path below them.
    pub fn remove_subtrees(&mut self, removed: &FieldSet) {
        for (element, gone) in &removed.children {
            if gone.member {
                self.children.remove(element);
            } else if let Some(child) = self.children.get_mut(element) {
                child.remove_subtrees(gone);
                if child.is_empty() {
                    self.children.remove(element);
                }
            }
        }
    }

    /// Removes the path `elements` and everything below it.
    pub fn remove_path(&mut self, elements: &[&str]) {
        match elements {
            [] => *self = FieldSet::new(),
            [last] => {
                self.children.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(child) = self.children.get_mut(*first) {
                    child.remove_path(rest);
                    if child.is_empty() {
                        self.children.remove(*first);
                    }
                }
            }
        }
    }

    /// Takes the path `elements` out of the set, keeping the paths below it.
    pub fn unset_path(&mut self, elements: &[&str]) {
        let Some((first, rest)) = elements.split_first() else {
            self.member = false;
            return;
        };
        if let Some(child) = self.children.get_mut(*first) {
            child.unset_path(rest);
            if child.is_empty() {
                self.children.remove(*first);
            }
        }
    }

    /// Every path in the set, as its elements, in order.
    pub fn paths(&self) -> Vec<Vec<&str>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect<'s>(&'s self, path: &mut Vec<&'s str>, out: &mut Vec<Vec<&'s str>>) {
        if self.member {
            out.push(path.clone());
        }
        for (element, child) in &self.children {
            path.push(element);
            child.collect(path, out);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The `fieldsV1` of `kubectl apply --server-side` of a Deployment, as
    /// kube-apiserver stores it.
    fn kubectl_fields() -> Value {
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:containers": {
                            "k:{\"name\":\"nginx\"}": {
                                ".": {},
                                "f:image": {},
                                "f:name": {},
                                "f:ports": {
                                    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                        ".": {},
                                        "f:containerPort": {}
                                    }
                                },
                                "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}}
                            }
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn kubectl_fields_v1_round_trips() {
        let fields = kubectl_fields();
        let set = FieldSet::from_fields_v1(&fields).unwrap();
        assert_eq!(set.to_fields_v1(), fields);
        let paths: Vec<String> = set.paths().iter().map(|p| display_path(p)).collect();
        assert!(paths.contains(&".spec.replicas".to_owned()), "{paths:?}");
        assert!(
            paths.contains(
                &".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"]"
                    .to_owned()
            ),
            "{paths:?}"
        );
        assert!(!paths.contains(&".spec".to_owned()), "{paths:?}");
    }

    #[test]
    fn elements_encode_as_structured_merge_diff_does() {
        let port = json!(80);
        let protocol = json!("TCP");
        assert_eq!(
            key_element([("protocol", &protocol), ("containerPort", &port)]),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
        assert_eq!(value_element(&json!("a")), "v:\"a\"");
        assert_eq!(
            display_path(&["f:metadata", "f:finalizers", "v:\"a\""]),
            ".metadata.finalizers[=\"a\"]"
        );
        assert_eq!(display_path(&["f:spec", "i:2"]), ".spec[2]");
    }

    #[test]
    fn malformed_fields_v1_is_refused() {
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"x:y": {}})),
            Err(FieldSetError::UnknownElement("x:y".into()))
        );
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"f:spec": {"f:a": 1}})),
            Err(FieldSetError::NotAnObject(".spec.a".into()))
        );
        assert!(FieldSet::from_fields_v1(&json!({"k:nope": {}})).is_err());
    }

    #[test]
    fn set_operations() {
        let a = FieldSet::from_fields_v1(&json!({"f:spec": {"f:a": {}, "f:b": {}}})).unwrap();
        let b = FieldSet::from_fields_v1(&json!({"f:spec": {"f:b": {}, "f:c": {}}})).unwrap();
        assert_eq!(
            a.difference(&b).to_fields_v1(),
            json!({"f:spec": {"f:a": {}}})
        );
        assert_eq!(
            a.intersection(&b).to_fields_v1(),
            json!({"f:spec": {"f:b": {}}})
        );
        let mut union = a.clone();
        union.union_with(&b);
        assert_eq!(
            union.to_fields_v1(),
            json!({"f:spec": {"f:a": {}, "f:b": {}, "f:c": {}}})
        );
        let gone = FieldSet::from_fields_v1(&json!({"f:spec": {}})).unwrap();
        union.remove_subtrees(&gone);
        assert!(union.is_empty());
    }
}
