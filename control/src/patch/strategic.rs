//! Strategic merge patch, the way kubectl builds them: maps merge
//! recursively, `null` deletes a key, lists follow the per-field strategy of
//! [`list_strategy`], and the `$`-directives steer the merge.

use serde_json::{Map, Value};

use super::error::PatchError;
use super::schema::{ListStrategy, list_strategy};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies the strategic merge patch `patch` to `doc` in place. Both must be
/// JSON objects. Directives never end up in the result; on error `doc` is
/// left as it was.
pub fn strategic_merge_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let (Value::Object(original), Value::Object(patch)) = (&*doc, patch) else {
        return Err(PatchError::NotAnObject);
    };
    // Merge into a copy: an error half-way must not leave a half-patched doc.
    let mut merged = original.clone();
    merge_map(&mut merged, patch, &mut Vec::new())?;
    *doc = Value::Object(merged);
    Ok(())
}

fn dotted(path: &[&str]) -> String {
    if path.is_empty() {
        ".".to_owned()
    } else {
        path.join(".")
    }
}

/// What a `$patch` directive in a map asks for.
enum MapDirective {
    Merge,
    Replace,
    Delete,
}

fn map_directive(patch: &Map<String, Value>, path: &[&str]) -> Result<MapDirective, PatchError> {
    match patch.get(PATCH) {
        None => Ok(MapDirective::Merge),
        Some(Value::String(s)) if s == "merge" => Ok(MapDirective::Merge),
        Some(Value::String(s)) if s == "replace" => Ok(MapDirective::Replace),
        Some(Value::String(s)) if s == "delete" => Ok(MapDirective::Delete),
        Some(other) => Err(PatchError::BadPatchType {
            value: other.to_string(),
            path: dotted(path),
        }),
    }
}

fn directive_list<'p>(
    value: &'p Value,
    directive: &str,
    path: &[&str],
) -> Result<&'p [Value], PatchError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| PatchError::DirectiveNotAList {
            directive: directive.to_owned(),
            path: dotted(path),
        })
}

fn merge_map<'p>(
    original: &mut Map<String, Value>,
    patch: &'p Map<String, Value>,
    path: &mut Vec<&'p str>,
) -> Result<(), PatchError> {
    for key in patch.keys().filter(|k| k.starts_with('$')) {
        let known = key == PATCH
            || key == RETAIN_KEYS
            || key.starts_with(SET_ELEMENT_ORDER)
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
        if !known {
            return Err(PatchError::UnknownDirective {
                directive: key.clone(),
                path: dotted(path),
            });
        }
    }

    match map_directive(patch, path)? {
        MapDirective::Delete => {
            original.clear();
            return Ok(());
        }
        // The patch's own fields become the whole map; merging them into an
        // empty map (rather than copying) also strips nested directives.
        MapDirective::Replace => original.clear(),
        MapDirective::Merge => {}
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let retain = directive_list(retain, RETAIN_KEYS, path)?;
        original.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k)));
    }

    for (key, values) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let values = directive_list(values, key, path)?;
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !values.contains(v));
            }
        }
    }

    for (key, value) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
        path.push(key);
        merge_field(original, key, value, path)?;
        path.pop();
    }

    for (key, order) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            path.push(field);
            let order = directive_list(order, key, path)?;
            if let Some(Value::Array(list)) = original.get_mut(field) {
                set_element_order(list, order, list_strategy(path));
            }
            path.pop();
        }
    }
    Ok(())
}

/// Merges `patch`'s value for `key` into `original`; `path` already ends
/// with `key`.
fn merge_field<'p>(
    original: &mut Map<String, Value>,
    key: &str,
    value: &'p Value,
    path: &mut Vec<&'p str>,
) -> Result<(), PatchError> {
    match (original.get_mut(key), value) {
        (_, Value::Null) => {
            original.remove(key);
        }
        (Some(Value::Object(o)), Value::Object(p)) => merge_map(o, p, path)?,
        (Some(Value::Array(o)), Value::Array(p)) => merge_list(o, p, path)?,
        (_, Value::Object(p)) => {
            // Deleting a map that is not there leaves nothing behind.
            if matches!(map_directive(p, path)?, MapDirective::Delete) {
                original.remove(key);
            } else {
                let mut fresh = Map::new();
                merge_map(&mut fresh, p, path)?;
                original.insert(key.to_owned(), Value::Object(fresh));
            }
        }
        (_, Value::Array(p)) => {
            let mut fresh = Vec::new();
            merge_list(&mut fresh, p, path)?;
            original.insert(key.to_owned(), Value::Array(fresh));
        }
        (_, scalar) => {
            original.insert(key.to_owned(), scalar.clone());
        }
    }
    Ok(())
}

/// The `$patch` directive of a list element, if it is an object that has one.
fn element_directive(element: &Value) -> Option<&Value> {
    element.as_object().and_then(|m| m.get(PATCH))
}

fn merge_list<'p>(
    original: &mut Vec<Value>,
    patch: &'p [Value],
    path: &mut Vec<&'p str>,
) -> Result<(), PatchError> {
    let strategy = list_strategy(path);
    let replace = patch
        .iter()
        .any(|e| element_directive(e).and_then(Value::as_str) == Some("replace"));
    if replace || strategy == ListStrategy::Replace {
        // The list becomes the patch's elements. A bare `{"$patch": "replace"}`
        // only marks that and is dropped; deleting from a list that is
        // replaced anyway makes no sense.
        original.clear();
        for element in patch {
            let directive = element_directive(element);
            if let Some(d) = directive.filter(|d| *d == "delete") {
                return Err(PatchError::BadPatchType {
                    value: d.to_string(),
                    path: dotted(path),
                });
            }
            let bare_replace = directive.is_some_and(|d| *d == "replace")
                && element.as_object().is_some_and(|m| m.len() == 1);
            if !bare_replace {
                original.push(fresh_element(element, path)?);
            }
        }
        return Ok(());
    }
    match strategy {
        ListStrategy::MergeSet => {
            for element in patch {
                if !original.contains(element) {
                    original.push(element.clone());
                }
            }
        }
        ListStrategy::MergeByKey(key) => {
            for element in patch {
                merge_keyed_element(original, element, key, path)?;
            }
        }
        ListStrategy::Replace => unreachable!("replaced above"),
    }
    Ok(())
}

/// A patch value as it appears in the result when there is nothing to merge
/// it with: objects lose their directives, everything else is copied.
fn fresh_element<'p>(element: &'p Value, path: &mut Vec<&'p str>) -> Result<Value, PatchError> {
    match element {
        Value::Object(p) => {
            let mut fresh = Map::new();
            merge_map(&mut fresh, p, path)?;
            Ok(Value::Object(fresh))
        }
        other => Ok(other.clone()),
    }
}

fn merge_keyed_element<'p>(
    original: &mut Vec<Value>,
    element: &'p Value,
    key: &'static str,
    path: &mut Vec<&'p str>,
) -> Result<(), PatchError> {
    let Value::Object(patch) = element else {
        return Err(PatchError::ElementNotAnObject {
            key,
            path: dotted(path),
        });
    };
    let Some(id) = patch.get(key) else {
        return Err(PatchError::MissingMergeKey {
            key,
            path: dotted(path),
        });
    };
    let matches = |v: &Value| v.get(key) == Some(id);
    if matches!(map_directive(patch, path)?, MapDirective::Delete) {
        original.retain(|v| !matches(v));
        return Ok(());
    }
    match original.iter_mut().find(|v| matches(v)) {
        Some(Value::Object(existing)) => merge_map(existing, patch, path),
        Some(other) => {
            *other = fresh_element(element, path)?;
            Ok(())
        }
        None => {
            original.push(fresh_element(element, path)?);
            Ok(())
        }
    }
}

/// Reorders `list` as `$setElementOrder` asks: the elements it names come
/// first, in its order; elements it does not name (added by someone other than
/// the patch's author) follow in their current relative order. Keyed lists
/// name elements by `{key: value}`, other lists by the values themselves.
fn set_element_order(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let identity = |v: &Value| -> Option<Value> {
        match strategy {
            ListStrategy::MergeByKey(key) => v.get(key).cloned(),
            ListStrategy::Replace | ListStrategy::MergeSet => Some(v.clone()),
        }
    };
    let wanted: Vec<Option<Value>> = order.iter().map(identity).collect();
    let rank = |v: &Value| {
        let id = identity(v);
        id.as_ref()
            .and_then(|_| wanted.iter().position(|w| *w == id))
    };
    let mut ranked: Vec<(usize, Value)> = Vec::new();
    let mut rest = Vec::new();
    for v in list.drain(..) {
        match rank(&v) {
            Some(r) => ranked.push((r, v)),
            None => rest.push(v),
        }
    }
    ranked.sort_by_key(|(r, _)| *r);
    list.extend(ranked.into_iter().map(|(_, v)| v));
    list.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut doc: Value, patch: Value) -> Value {
        strategic_merge_patch(&mut doc, &patch).unwrap();
        doc
    }

    fn deployment(containers: Value) -> Value {
        json!({"spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "name": "web"}});
        let patch =
            json!({"metadata": {"labels": {"a": null, "c": "3"}, "annotations": {"x": "y"}}});
        assert_eq!(
            smp(doc, patch),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}, "name": "web", "annotations": {"x": "y"}}})
        );
    }

    #[test]
    fn null_for_a_missing_key_is_a_no_op() {
        assert_eq!(smp(json!({"a": 1}), json!({"b": null})), json!({"a": 1}));
    }

    #[test]
    fn containers_merge_by_name() {
        let doc = deployment(json!([
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "sidecar:1"}
        ]));
        let patch = deployment(json!([{"name": "app", "image": "app:2"}]));
        assert_eq!(
            smp(doc, patch),
            deployment(json!([
                {"name": "app", "image": "app:2", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "sidecar:1"}
            ]))
        );
    }

    #[test]
    fn new_keyed_elements_are_appended() {
        let doc = deployment(json!([{"name": "app", "image": "app:1"}]));
        let patch = deployment(json!([{"name": "log", "image": "log:1"}]));
        assert_eq!(
            smp(doc, patch),
            deployment(
                json!([{"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}])
            )
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let doc = json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443, "targetPort": 8443}
        ]}});
        let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            smp(doc, patch),
            json!({"spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "https", "port": 443, "targetPort": 9443},
                {"port": 53, "protocol": "UDP"}
            ]}})
        );
    }

    #[test]
    fn nested_keyed_lists_merge() {
        let doc = json!({"spec": {"containers": [{"name": "app", "ports": [
            {"containerPort": 80, "name": "http"},
            {"containerPort": 9090, "name": "metrics"}
        ]}]}});
        let patch = json!({"spec": {"containers": [{"name": "app", "ports": [
            {"containerPort": 80, "protocol": "TCP"}
        ]}]}});
        assert_eq!(
            smp(doc, patch),
            json!({"spec": {"containers": [{"name": "app", "ports": [
                {"containerPort": 80, "name": "http", "protocol": "TCP"},
                {"containerPort": 9090, "name": "metrics"}
            ]}]}})
        );
    }

    #[test]
    fn env_element_deleted_by_directive() {
        let doc = json!({"spec": {"containers": [{"name": "app", "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "2"}
        ]}]}});
        let patch = json!({"spec": {"containers": [{"name": "app", "env": [
            {"name": "A", "$patch": "delete"}
        ]}]}});
        assert_eq!(
            smp(doc, patch),
            json!({"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}})
        );
    }

    #[test]
    fn unknown_list_is_replaced() {
        let doc = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}], "externalIPs": ["1.2.3.4"]}});
        let patch = json!({"spec": {"tolerations": [{"key": "c"}], "externalIPs": ["5.6.7.8"]}});
        assert_eq!(
            smp(doc, patch),
            json!({"spec": {"tolerations": [{"key": "c"}], "externalIPs": ["5.6.7.8"]}})
        );
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
        assert_eq!(
            smp(doc, patch),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}})
        );
    }

    #[test]
    fn patch_replace_on_a_map() {
        let doc = json!({"spec": {"selector": {"app": "web", "tier": "front"}}});
        let patch = json!({"spec": {"selector": {"$patch": "replace", "app": "api"}}});
        assert_eq!(
            smp(doc, patch),
            json!({"spec": {"selector": {"app": "api"}}})
        );
    }

    #[test]
    fn patch_delete_on_a_map() {
        let doc = json!({"spec": {"selector": {"app": "web"}, "type": "ClusterIP"}});
        let patch =
            json!({"spec": {"selector": {"$patch": "delete"}, "missing": {"$patch": "delete"}}});
        assert_eq!(
            smp(doc, patch),
            json!({"spec": {"selector": {}, "type": "ClusterIP"}})
        );
    }

    #[test]
    fn patch_replace_on_a_list() {
        let doc = deployment(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
        let patch = deployment(json!([{"$patch": "replace"}, {"name": "c", "image": "c"}]));
        assert_eq!(
            smp(doc, patch),
            deployment(json!([{"name": "c", "image": "c"}]))
        );
    }

    #[test]
    fn patch_replace_on_a_list_keeps_marked_elements() {
        let doc = json!({"spec": {"externalIPs": ["1.1.1.1"], "containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "$patch": "replace"}]}});
        assert_eq!(
            smp(doc, patch),
            json!({"spec": {"externalIPs": ["1.1.1.1"], "containers": [{"name": "b"}]}})
        );
    }

    #[test]
    fn patch_delete_on_a_list_element() {
        let doc = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let patch = deployment(
            json!([{"name": "a", "$patch": "delete"}, {"name": "z", "$patch": "delete"}]),
        );
        assert_eq!(smp(doc, patch), deployment(json!([{"name": "b"}])));
    }

    #[test]
    fn set_element_order_on_keyed_list() {
        let doc = deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "server-added"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            "containers": [{"name": "c"}]
        }}}});
        assert_eq!(
            smp(doc, patch),
            deployment(
                json!([{"name": "c"}, {"name": "b"}, {"name": "a"}, {"name": "server-added"}])
            )
        );
    }

    #[test]
    fn set_element_order_on_primitive_list() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "b", "a"],
            "finalizers": ["c"]
        }});
        assert_eq!(
            smp(doc, patch),
            json!({"metadata": {"finalizers": ["c", "b", "a"]}})
        );
    }

    #[test]
    fn retain_keys_clears_other_fields() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(
            smp(doc, patch),
            json!({"spec": {"strategy": {"type": "Recreate"}}})
        );
    }

    #[test]
    fn delete_from_primitive_list() {
        let doc = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}});
        assert_eq!(
            smp(doc, patch),
            json!({"metadata": {"finalizers": ["a", "c"]}})
        );
    }

    #[test]
    fn directives_do_not_leak_into_new_fields() {
        let doc = json!({});
        let patch = deployment(
            json!([{"name": "a", "env": [{"name": "X", "$patch": "delete"}, {"name": "Y"}]}]),
        );
        assert_eq!(
            smp(doc, patch),
            deployment(json!([{"name": "a", "env": [{"name": "Y"}]}]))
        );
    }

    #[test]
    fn type_change_replaces() {
        assert_eq!(
            smp(json!({"a": {"b": 1}}), json!({"a": "s"})),
            json!({"a": "s"})
        );
        assert_eq!(
            smp(json!({"a": "s"}), json!({"a": {"b": 1}})),
            json!({"a": {"b": 1}})
        );
    }

    #[test]
    fn errors() {
        let mut doc = json!({});
        let mut unchanged = json!({"a": 1, "spec": {"containers": [{"name": "x"}]}});
        let half_valid = json!({"a": 2, "spec": {"containers": [{"image": "no-name"}]}});
        assert!(strategic_merge_patch(&mut unchanged, &half_valid).is_err());
        assert_eq!(
            unchanged,
            json!({"a": 1, "spec": {"containers": [{"name": "x"}]}})
        );
        let err = strategic_merge_patch(&mut doc, &json!([1])).unwrap_err();
        assert!(matches!(err, PatchError::NotAnObject), "{err}");
        let err = strategic_merge_patch(&mut doc, &json!({"$bogus": 1})).unwrap_err();
        assert!(matches!(err, PatchError::UnknownDirective { .. }), "{err}");
        let err =
            strategic_merge_patch(&mut doc, &json!({"a": {"$patch": "explode"}})).unwrap_err();
        assert!(matches!(err, PatchError::BadPatchType { .. }), "{err}");
        let err =
            strategic_merge_patch(&mut doc, &deployment(json!([{"image": "x"}]))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "an element of the list at spec.template.spec.containers does not contain declared merge key \"name\""
        );
        let err = strategic_merge_patch(&mut doc, &deployment(json!(["x"]))).unwrap_err();
        assert!(
            matches!(err, PatchError::ElementNotAnObject { .. }),
            "{err}"
        );
        let err =
            strategic_merge_patch(&mut doc, &json!({"spec": {"$retainKeys": "type"}})).unwrap_err();
        assert!(matches!(err, PatchError::DirectiveNotAList { .. }), "{err}");
        let err = strategic_merge_patch(
            &mut doc,
            &json!({"spec": {"tolerations": [{"$patch": "delete"}]}}),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::BadPatchType { .. }), "{err}");
    }
}
