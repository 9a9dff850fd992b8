//! `metadata.managedFields`: which manager owns which fields, kept on every
//! write as kube-apiserver's field manager does. An apply (server-side
//! apply) sets exactly the fields its configuration names, removes those it
//! named last time and no longer does (unless another manager owns them
//! too) and refuses to change fields other managers own unless forced; an
//! update takes over whatever it changed.

use std::fmt;

use serde_json::{Map, Value, json};

use super::error::PatchError;
use super::fieldset::{FieldSet, FieldSetError, display_path, field_element};
use super::structured::{applied_fields, changed_fields, merge, remove_fields, removed_fields};

/// The manager kube-apiserver makes up for the fields of an object that has
/// none recorded when it is first applied to.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The kind of write a managedFields entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who writes: the identity under which a managedFields entry is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub name: String,
    pub operation: Operation,
    /// `status`, `scale`, ...; `None` for the main resource.
    pub subresource: Option<String>,
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: Manager,
    api_version: String,
    time: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn read(value: &Value) -> Result<Self, ManagedFieldsError> {
        let text = |field: &str| value[field].as_str().map(str::to_owned);
        let operation = match value["operation"].as_str() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => {
                return Err(ManagedFieldsError::Operation(
                    other.unwrap_or_default().to_owned(),
                ));
            }
        };
        match value["fieldsType"].as_str() {
            Some("FieldsV1") | None => {}
            Some(other) => return Err(ManagedFieldsError::FieldsType(other.to_owned())),
        }
        let fields = match value.get("fieldsV1") {
            Some(fields) if !fields.is_null() => FieldSet::from_fields_v1(fields)?,
            _ => FieldSet::new(),
        };
        Ok(Self {
            manager: Manager {
                name: text("manager").unwrap_or_default(),
                operation,
                subresource: text("subresource").filter(|s| !s.is_empty()),
            },
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            fields,
        })
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager.name,
            "operation": self.manager.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(time) = &self.time {
            entry["time"] = json!(time);
        }
        if let Some(subresource) = &self.manager.subresource {
            entry["subresource"] = json!(subresource);
        }
        entry
    }

    /// kube-apiserver's order of entries: applies first, then by time,
    /// manager and subresource.
    fn order_key(&self) -> (Operation, &str, &str, &str) {
        (
            self.manager.operation,
            self.time.as_deref().unwrap_or_default(),
            &self.manager.name,
            self.manager.subresource.as_deref().unwrap_or_default(),
        )
    }
}

/// Why `metadata.managedFields` could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManagedFieldsError {
    #[error("metadata.managedFields must be a list")]
    NotAList,
    #[error("unknown managedFields operation {0:?}")]
    Operation(String),
    #[error("unknown managedFields fieldsType {0:?}")]
    FieldsType(String),
    #[error(transparent)]
    Fields(#[from] FieldSetError),
}

/// A field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owner as kube-apiserver prints it: `"kubectl" using apps/v1`.
    pub manager: String,
    /// The field as `.spec.replicas`.
    pub field: String,
}

/// The conflicts that refused an apply, in kube-apiserver's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Conflicts(pub Vec<Conflict>);

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.manager, only.field
            );
        }
        write!(f, "Apply failed with {} conflicts: ", self.0.len())?;
        let mut managers: Vec<&str> = self.0.iter().map(|c| c.manager.as_str()).collect();
        managers.sort_unstable();
        managers.dedup();
        let mut lines = Vec::new();
        for manager in managers {
            lines.push(format!("conflicts with {manager}:"));
            for conflict in self.0.iter().filter(|c| c.manager == manager) {
                lines.push(format!("- {}", conflict.field));
            }
        }
        f.write_str(&lines.join("\n"))
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Conflicts(#[from] Conflicts),
    #[error(transparent)]
    Config(#[from] PatchError),
    #[error("failed to decode managed fields: {0}")]
    ManagedFields(#[from] ManagedFieldsError),
}

/// The fields no manager owns: the object's identity and bookkeeping.
fn strip(set: &mut FieldSet) {
    set.remove_path(&["f:apiVersion"]);
    set.remove_path(&["f:kind"]);
    set.unset_path(&["f:metadata"]);
    for field in [
        "f:name",
        "f:namespace",
        "f:creationTimestamp",
        "f:selfLink",
        "f:uid",
        "f:generation",
        "f:managedFields",
        "f:resourceVersion",
    ] {
        set.remove_path(&["f:metadata", field]);
    }
}

/// The managedFields entries of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedFields {
    entries: Vec<Entry>,
}

impl ManagedFields {
    /// The entries of `object` (none when it has no `metadata.managedFields`).
    pub fn of(object: &Value) -> Result<Self, ManagedFieldsError> {
        let entries = match object["metadata"].get("managedFields") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => {
                entries.iter().map(Entry::read).collect::<Result<_, _>>()?
            }
            Some(_) => return Err(ManagedFieldsError::NotAList),
        };
        Ok(Self { entries })
    }

    /// Stores the entries in `object`'s metadata, in kube-apiserver's order;
    /// an object nobody manages has no `managedFields`.
    pub fn store(mut self, object: &mut Value) {
        self.entries.retain(|entry| !entry.fields.is_empty());
        self.entries
            .sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let Some(metadata) = object
            .as_object_mut()
            .map(|object| object.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        if self.entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            let entries = self.entries.iter().map(Entry::to_json).collect();
            metadata.insert("managedFields".into(), Value::Array(entries));
        }
    }

    fn position(&self, manager: &Manager) -> Option<usize> {
        self.entries
            .iter()
            .position(|entry| &entry.manager == manager)
    }

    /// The fields `manager` owns.
    pub fn fields_of(&self, manager: &Manager) -> Option<&FieldSet> {
        self.position(manager).map(|i| &self.entries[i].fields)
    }

    /// The entry of `manager`, created when missing.
    fn entry(&mut self, manager: &Manager, api_version: &str) -> &mut Entry {
        let index = self.position(manager).unwrap_or_else(|| {
            self.entries.push(Entry {
                manager: manager.clone(),
                api_version: api_version.to_owned(),
                time: None,
                fields: FieldSet::new(),
            });
            self.entries.len() - 1
        });
        &mut self.entries[index]
    }

    fn forget_removed(&mut self, removed: &FieldSet) {
        if removed.is_empty() {
            return;
        }
        for entry in &mut self.entries {
            entry.fields.remove_subtrees(removed);
        }
    }
}

/// What a write is: who makes it, in which API version, when.
#[derive(Debug, Clone)]
pub struct Write<'a> {
    pub manager: &'a Manager,
    pub api_version: &'a str,
    /// The time to record, as the API writes times.
    pub now: &'a str,
}

/// Records an update from `before` (`None` for a create) to `after` in the
/// managedFields `after` carries: the writer owns what it added or changed,
/// other managers lose it, and nobody owns what was removed.
pub fn record_update(
    before: Option<&Value>,
    after: &mut Value,
    write: &Write,
) -> Result<(), ManagedFieldsError> {
    let mut managed = ManagedFields::of(after)?;
    let mut changed = changed_fields(before, after);
    strip(&mut changed);
    let mut removed = before.map_or_else(FieldSet::new, |before| removed_fields(before, after));
    strip(&mut removed);
    if changed.is_empty() && removed.is_empty() {
        return Ok(());
    }
    managed.forget_removed(&removed);
    for entry in &mut managed.entries {
        if &entry.manager != write.manager {
            entry.fields = entry.fields.difference(&changed);
        }
    }
    let entry = managed.entry(write.manager, write.api_version);
    entry.fields.union_with(&changed);
    entry.api_version = write.api_version.to_owned();
    entry.time = Some(write.now.to_owned());
    managed.store(after);
    Ok(())
}

/// Server-side apply of `config` by `write.manager` to `live` (`None` when
/// the object does not exist yet): the object to store, with its
/// managedFields. `ignored` are top-level fields of `config` this write
/// cannot set (`status` on the main resource): they are left as they are.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    write: &Write,
    force: bool,
    ignored: &[&str],
) -> Result<Value, ApplyError> {
    let mut applied = applied_fields(config)?;
    strip(&mut applied);
    for field in ignored {
        applied.remove_path(&[&field_element(field)]);
    }
    let mut managed = match live {
        Some(live) => ManagedFields::of(live)?,
        None => ManagedFields::default(),
    };
    if let Some(live) = live
        && managed.entries.is_empty()
    {
        let mut everything = changed_fields(None, live);
        strip(&mut everything);
        let before = Manager {
            name: BEFORE_FIRST_APPLY.into(),
            operation: Operation::Update,
            subresource: None,
        };
        managed.entry(&before, write.api_version).fields = everything;
    }
    let mut config = config.clone();
    if let Some(fields) = config.as_object_mut() {
        for field in ignored {
            fields.remove(*field);
        }
    }
    let mut object = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    merge(&mut object, &config);

    // What this manager applied before and no longer does goes, unless
    // another manager owns it too.
    let mut others = FieldSet::new();
    for entry in managed
        .entries
        .iter()
        .filter(|e| &e.manager != write.manager)
    {
        others.union_with(&entry.fields);
    }
    if let Some(before) = managed.fields_of(write.manager) {
        let dropped = before.difference(&applied).difference(&others);
        remove_fields(&mut object, &dropped);
    }

    let mut changed = match live {
        Some(live) => changed_fields(Some(live), &object),
        None => FieldSet::new(),
    };
    strip(&mut changed);
    let mut conflicts = Vec::new();
    for entry in managed
        .entries
        .iter_mut()
        .filter(|e| &e.manager != write.manager)
    {
        let taken = entry.fields.intersection(&changed);
        if taken.is_empty() {
            continue;
        }
        if force {
            entry.fields = entry.fields.difference(&taken);
        } else {
            let owner = print_manager(entry);
            conflicts.extend(taken.paths().iter().map(|path| Conflict {
                manager: owner.clone(),
                field: display_path(path),
            }));
        }
    }
    if !conflicts.is_empty() {
        return Err(Conflicts(conflicts).into());
    }
    if let Some(live) = live {
        let mut removed = removed_fields(live, &object);
        strip(&mut removed);
        managed.forget_removed(&removed);
    }

    let content_changed = live.is_none_or(|live| {
        let mut without = object.clone();
        without["metadata"]["managedFields"] = live["metadata"]["managedFields"].clone();
        &without != live
    });
    let entry = managed.entry(write.manager, write.api_version);
    if content_changed || entry.time.is_none() || entry.fields != applied {
        entry.time = Some(write.now.to_owned());
    }
    entry.fields = applied;
    entry.api_version = write.api_version.to_owned();
    managed.store(&mut object);
    Ok(object)
}

/// How kube-apiserver names a manager in a conflict.
fn print_manager(entry: &Entry) -> String {
    let mut out = format!("{:?}", entry.manager.name);
    if let Some(subresource) = &entry.manager.subresource {
        out.push_str(&format!(" with subresource {subresource:?}"));
    }
    out.push_str(&format!(" using {}", entry.api_version));
    if entry.manager.operation == Operation::Update
        && let Some(time) = &entry.time
    {
        out.push_str(&format!(" at {time}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(name: &str, operation: Operation) -> Manager {
        Manager {
            name: name.into(),
            operation,
            subresource: None,
        }
    }

    fn apply_as(
        live: Option<&Value>,
        config: &Value,
        name: &str,
        force: bool,
    ) -> Result<Value, ApplyError> {
        let manager = manager(name, Operation::Apply);
        let write = Write {
            manager: &manager,
            api_version: "apps/v1",
            now: "2026-12-05T13:00:00Z",
        };
        apply(live, config, &write, force, &["status"])
    }

    fn config(replicas: i64, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas},
            "status": {"replicas": 9}
        })
    }

    fn owners(object: &Value) -> Vec<(String, Value)> {
        object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap().to_owned(),
                    e["fieldsV1"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn apply_creates_and_records_the_applied_fields() {
        let created = apply_as(None, &config(2, json!({"a": "1"})), "kubectl", false).unwrap();
        assert_eq!(created["spec"]["replicas"], 2);
        let entries = created["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["operation"], "Apply");
        assert_eq!(entries[0]["apiVersion"], "apps/v1");
        assert_eq!(entries[0]["fieldsType"], "FieldsV1");
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:replicas": {}}})
        );
        // Applying the same again changes nothing.
        let again = apply_as(
            Some(&created),
            &config(2, json!({"a": "1"})),
            "kubectl",
            false,
        )
        .unwrap();
        assert_eq!(again, created);
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_shared() {
        let live = apply_as(None, &config(2, json!({"a": "1", "b": "2"})), "one", false).unwrap();
        let shared = apply_as(
            Some(&live),
            &json!({"metadata": {"labels": {"b": "2"}}}),
            "two",
            false,
        )
        .unwrap();
        let after = apply_as(Some(&shared), &config(2, json!({})), "one", false).unwrap();
        assert_eq!(after["metadata"]["labels"], json!({"b": "2"}));
        let owners = owners(&after);
        assert_eq!(owners.len(), 2, "{owners:?}");
    }

    #[test]
    fn conflicts_name_the_owner_and_field_and_force_takes_over() {
        let live = apply_as(None, &config(2, Value::Null), "one", false).unwrap();
        // The same value is shared, not a conflict.
        let shared = apply_as(Some(&live), &config(2, Value::Null), "two", false).unwrap();
        assert_eq!(owners(&shared).len(), 2);
        let err = apply_as(Some(&shared), &config(3, Value::Null), "two", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"one\" using apps/v1: .spec.replicas"
        );
        let ApplyError::Conflicts(conflicts) = err else {
            panic!("not a conflict")
        };
        assert_eq!(conflicts.0[0].field, ".spec.replicas");
        let forced = apply_as(Some(&shared), &config(3, Value::Null), "two", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let owners = owners(&forced);
        assert_eq!(
            owners,
            [("two".to_owned(), json!({"f:spec": {"f:replicas": {}}}))]
        );
    }

    #[test]
    fn several_conflicts_are_listed_by_manager() {
        let conflicts = Conflicts(vec![
            Conflict {
                manager: "\"b\" using v1".into(),
                field: ".data.x".into(),
            },
            Conflict {
                manager: "\"a\" using v1".into(),
                field: ".data.y".into(),
            },
        ]);
        assert_eq!(
            conflicts.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"a\" using v1:\n- .data.y\nconflicts with \"b\" using v1:\n- .data.x"
        );
    }

    #[test]
    fn updates_take_over_what_they_change() {
        let live = apply_as(None, &config(2, json!({"a": "1"})), "kubectl", false).unwrap();
        let mut updated = live.clone();
        updated["spec"]["replicas"] = json!(5);
        updated["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        let editor = manager("kubectl-edit", Operation::Update);
        let write = Write {
            manager: &editor,
            api_version: "apps/v1",
            now: "2026-12-05T13:01:00Z",
        };
        record_update(Some(&live), &mut updated, &write).unwrap();
        let entries = updated["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0]["manager"], "kubectl-edit");
        assert_eq!(entries[0]["operation"], "Update");
        assert_eq!(entries[0]["time"], "2026-12-05T13:01:00Z");
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
        // A conflict with an updater names the time of its update.
        let err = apply_as(Some(&updated), &config(2, Value::Null), "kubectl", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1 at 2026-12-05T13:01:00Z: .spec.replicas"
        );
        // An update that changes nothing records nothing.
        let mut same = updated.clone();
        record_update(Some(&updated), &mut same, &write).unwrap();
        assert_eq!(same, updated);
    }

    #[test]
    fn first_apply_to_an_unmanaged_object_respects_its_fields() {
        let live = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}});
        let err = apply_as(Some(&live), &config(2, json!({})), "kubectl", false).unwrap_err();
        assert!(
            err.to_string()
                .contains("conflict with \"before-first-apply\" using apps/v1"),
            "{err}"
        );
    }
}
