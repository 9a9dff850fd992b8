//! The schema-aware walks of server-side apply over JSON objects: the field
//! set a configuration names, the merge of a configuration into a live
//! object, what changed between two versions of an object, and removing a
//! field set from an object. Lists follow [`list_type`]: associative lists
//! are matched by their key fields, sets by value, everything else is
//! atomic. `null` in a configuration means the field is not given.

use serde_json::Value;

use super::error::PatchError;
use super::fieldset::{FieldSet, field_element, key_element, value_element};
use super::schema::{ListType, key_default, list_type};

/// The `k:` element of `item` in a list of type `list`; `None` when the item
/// is not an object or lacks a key field that has no default.
fn item_key(item: &Value, list: ListType) -> Option<String> {
    let object = item.as_object()?;
    let mut fields: Vec<(&str, Value)> = Vec::new();
    for key in list.keys() {
        match object.get(key).filter(|value| !value.is_null()) {
            Some(value) => fields.push((key, value.clone())),
            None => fields.push((key, Value::from(key_default(key)?))),
        }
    }
    Some(key_element(fields.iter().map(|(key, value)| (*key, value))))
}

fn dotted(names: &[&str]) -> String {
    names.join(".")
}

/// The paths `config` sets: its leaves (scalars, atomic lists, empty
/// objects) and the elements of its associative lists and sets.
pub fn applied_fields(config: &Value) -> Result<FieldSet, PatchError> {
    let mut set = FieldSet::new();
    fields_of(config, &mut Vec::new(), &mut set)?;
    set.prune();
    Ok(set)
}

fn fields_of<'v>(
    value: &'v Value,
    names: &mut Vec<&'v str>,
    set: &mut FieldSet,
) -> Result<(), PatchError> {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (name, field) in fields.iter().filter(|(_, field)| !field.is_null()) {
                names.push(name);
                fields_of(field, names, set.child(field_element(name)))?;
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_type(names) {
            list @ ListType::Map { key, .. } => {
                for item in items {
                    let element = item_key(item, list).ok_or_else(|| match item {
                        Value::Object(_) => PatchError::MissingMergeKey {
                            key,
                            path: dotted(names),
                        },
                        _ => PatchError::ElementNotAnObject {
                            key,
                            path: dotted(names),
                        },
                    })?;
                    let child = set.child(element);
                    child.set_member();
                    fields_of(item, names, child)?;
                }
            }
            ListType::Set => {
                for item in items {
                    set.child(value_element(item)).set_member();
                }
            }
            ListType::Atomic => set.set_member(),
        },
        _ => set.set_member(),
    }
    Ok(())
}

/// Merges `config` into `live`: objects field by field, associative lists
/// element by element (new elements appended), sets by value, anything
/// else replaced.
pub fn merge(live: &mut Value, config: &Value) {
    merge_at(live, config, &mut Vec::new());
}

fn merge_at<'v>(live: &mut Value, config: &'v Value, names: &mut Vec<&'v str>) {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) => {
            for (name, field) in config.iter().filter(|(_, field)| !field.is_null()) {
                names.push(name);
                match live.get_mut(name) {
                    Some(existing) => merge_at(existing, field, names),
                    None => {
                        live.insert(name.clone(), field.clone());
                    }
                }
                names.pop();
            }
        }
        (Value::Array(live), Value::Array(config)) => match list_type(names) {
            list @ ListType::Map { .. } => {
                for item in config {
                    let key = item_key(item, list);
                    let existing = key.as_ref().and_then(|key| {
                        live.iter_mut()
                            .find(|candidate| item_key(candidate, list).as_ref() == Some(key))
                    });
                    match existing {
                        Some(existing) => merge_at(existing, item, names),
                        None => live.push(item.clone()),
                    }
                }
            }
            ListType::Set => {
                for item in config {
                    if !live.contains(item) {
                        live.push(item.clone());
                    }
                }
            }
            ListType::Atomic => *live = config.clone(),
        },
        (live, config) => *live = config.clone(),
    }
}

/// The paths of `new` that were added or given another value since `old`.
pub fn changed_fields(old: Option<&Value>, new: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    changed_at(old, new, &mut Vec::new(), &mut set);
    set.prune();
    set
}

fn changed_at<'v>(
    old: Option<&Value>,
    new: &'v Value,
    names: &mut Vec<&'v str>,
    set: &mut FieldSet,
) {
    if old == Some(new) {
        return;
    }
    match new {
        Value::Object(fields) if !fields.is_empty() => {
            let old = old.and_then(Value::as_object);
            for (name, field) in fields {
                names.push(name);
                let before = old.and_then(|old| old.get(name));
                changed_at(before, field, names, set.child(field_element(name)));
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let old = old.and_then(Value::as_array);
            match list_type(names) {
                list @ ListType::Map { .. } => {
                    for item in items {
                        let Some(key) = item_key(item, list) else {
                            set.set_member();
                            continue;
                        };
                        let before = old.and_then(|old| {
                            old.iter()
                                .find(|candidate| item_key(candidate, list).as_ref() == Some(&key))
                        });
                        let child = set.child(key);
                        if before.is_none() {
                            child.set_member();
                        }
                        changed_at(before, item, names, child);
                    }
                }
                ListType::Set => {
                    for item in items {
                        if !old.is_some_and(|old| old.contains(item)) {
                            set.child(value_element(item)).set_member();
                        }
                    }
                }
                ListType::Atomic => set.set_member(),
            }
        }
        _ => set.set_member(),
    }
}

/// The paths of `old` that `new` no longer has (the top of each removed
/// subtree).
pub fn removed_fields(old: &Value, new: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    removed_at(old, new, &mut Vec::new(), &mut set);
    set.prune();
    set
}

fn removed_at<'v>(old: &'v Value, new: &Value, names: &mut Vec<&'v str>, set: &mut FieldSet) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (name, field) in old {
                let child = set.child(field_element(name));
                match new.get(name) {
                    Some(now) => {
                        names.push(name);
                        removed_at(field, now, names, child);
                        names.pop();
                    }
                    None => child.set_member(),
                }
            }
        }
        (Value::Array(old), Value::Array(new)) => match list_type(names) {
            list @ ListType::Map { .. } => {
                for item in old {
                    let Some(key) = item_key(item, list) else {
                        continue;
                    };
                    let now = new
                        .iter()
                        .find(|candidate| item_key(candidate, list).as_ref() == Some(&key));
                    let child = set.child(key);
                    match now {
                        Some(now) => removed_at(item, now, names, child),
                        None => child.set_member(),
                    }
                }
            }
            ListType::Set => {
                for item in old.iter().filter(|item| !new.contains(item)) {
                    set.child(value_element(item)).set_member();
                }
            }
            ListType::Atomic => {}
        },
        _ => {}
    }
}

/// Removes the paths of `set` (with everything below them) from `object`.
pub fn remove_fields(object: &mut Value, set: &FieldSet) {
    remove_at(object, set, &mut Vec::new());
}

fn remove_at<'s>(value: &mut Value, set: &'s FieldSet, names: &mut Vec<&'s str>) {
    match value {
        Value::Object(fields) => {
            for (element, child) in set.children() {
                let Some(name) = element.strip_prefix("f:") else {
                    continue;
                };
                if child.is_member() {
                    fields.remove(name);
                } else if let Some(field) = fields.get_mut(name) {
                    names.push(name);
                    remove_at(field, child, names);
                    names.pop();
                }
            }
        }
        Value::Array(items) => {
            let list = list_type(names);
            for (element, child) in set.children() {
                let position = items.iter().position(|item| match list {
                    ListType::Map { .. } => item_key(item, list).as_deref() == Some(element),
                    ListType::Set | ListType::Atomic => value_element(item) == element,
                });
                let Some(position) = position else {
                    continue;
                };
                if child.is_member() {
                    items.remove(position);
                } else {
                    remove_at(&mut items[position], child, names);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web",
                        "image": image,
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "A", "value": "1"}]
                    }]}
                }
            }
        })
    }

    #[test]
    fn applied_fields_key_lists_and_default_protocol() {
        let set = applied_fields(&deployment("nginx", 2)).unwrap();
        let fields = set.to_fields_v1();
        let container =
            &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(
            container["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
        assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
        assert!(fields["f:spec"].get(".").is_none());
    }

    #[test]
    fn applied_fields_need_merge_keys() {
        let config = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(matches!(
            applied_fields(&config),
            Err(PatchError::MissingMergeKey { key: "name", .. })
        ));
    }

    #[test]
    fn merge_matches_list_elements_by_key() {
        let mut live = deployment("nginx", 2);
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        let config = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "busybox"}
        ]}}}});
        merge(&mut live, &config);
        let containers = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["image"], "nginx:2");
        assert_eq!(containers[0]["imagePullPolicy"], "Always");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(containers[1]["name"], "sidecar");
        // An atomic list is replaced.
        let mut live = json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}});
        merge(
            &mut live,
            &json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
        );
        assert_eq!(live["spec"]["containers"][0]["args"], json!(["z"]));
    }

    #[test]
    fn changed_and_removed_fields() {
        let old = deployment("nginx", 2);
        let mut new = deployment("nginx:2", 3);
        // The labels left empty are a changed leaf, the label gone is removed.
        new["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        let changed = changed_fields(Some(&old), &new);
        let paths: Vec<String> = changed
            .paths()
            .iter()
            .map(|p| super::super::fieldset::display_path(p))
            .collect();
        assert_eq!(
            paths,
            [
                ".metadata.labels",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"web\"].image"
            ]
        );
        let removed = removed_fields(&old, &new);
        assert_eq!(
            removed.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:app": {}}}})
        );
        assert!(changed_fields(Some(&old), &old).is_empty());
    }

    #[test]
    fn remove_fields_drops_paths_and_list_elements() {
        let mut live = deployment("nginx", 2);
        let set = FieldSet::from_fields_v1(&json!({
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                    "f:env": {"k:{\"name\":\"A\"}": {}}
                }}}}
            }
        }))
        .unwrap();
        remove_fields(&mut live, &set);
        assert!(live["spec"].get("replicas").is_none());
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([])
        );
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx"
        );
    }
}
