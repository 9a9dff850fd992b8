//! A StatefulSet's history: one ControllerRevision per pod template
//! (`<set>-<hash>`, the template as upstream stores it: a strategic merge
//! patch that replaces `spec.template`), numbered in the order the
//! templates were last used, trimmed to `revisionHistoryLimit`.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::super::meta;

/// The label that carries a revision's hash, and a pod's revision name.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// A revision's `data` for `template`.
pub fn data(template: &Value) -> Value {
    let mut template = template.clone();
    if !template.is_object() {
        template = json!({});
    }
    template["$patch"] = json!("replace");
    json!({ "spec": { "template": template } })
}

/// The pod template a revision's `data` holds.
pub fn template(revision: &Value) -> Value {
    let mut template = revision["data"]["spec"]["template"].clone();
    if let Some(fields) = template.as_object_mut() {
        fields.remove("$patch");
    }
    template
}

/// The hash naming the revision of `data`; each collision of names with
/// different data (`collisions`, the set's `status.collisionCount`) moves
/// it on, as upstream's `HashControllerRevision` does.
pub fn hash(data: &Value, collisions: i64) -> String {
    if collisions == 0 {
        meta::template_hash(data)
    } else {
        meta::template_hash(&json!({ "data": data, "collisionCount": collisions }))
    }
}

pub fn number(revision: &Value) -> i64 {
    revision["revision"].as_i64().unwrap_or(0)
}

/// What the pass does to make `data` the update revision.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice<'a> {
    /// A revision holds it and is the newest.
    Existing(&'a Value),
    /// A revision holds it but is older (a rollback): it is renumbered.
    Renumber(&'a Value, i64),
    /// None holds it: a new revision with this number.
    New(i64),
}

pub fn choose<'a>(revisions: &'a [Value], data: &Value) -> Choice<'a> {
    let newest = revisions.iter().map(number).max().unwrap_or(0);
    match revisions.iter().find(|revision| revision["data"] == *data) {
        Some(revision) if number(revision) == newest => Choice::Existing(revision),
        Some(revision) => Choice::Renumber(revision, newest + 1),
        None => Choice::New(newest + 1),
    }
}

/// The revisions to delete: the oldest of those no pod uses and that are
/// neither current nor the update, beyond `limit`.
pub fn to_trim<'a>(revisions: &'a [Value], live: &HashSet<&str>, limit: usize) -> Vec<&'a Value> {
    let mut spare: Vec<&Value> = revisions
        .iter()
        .filter(|revision| !live.contains(meta::name(revision)))
        .collect();
    spare.sort_by_key(|revision| number(revision));
    let excess = spare.len().saturating_sub(limit);
    spare.truncate(excess);
    spare
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(name: &str, number: i64, image: &str) -> Value {
        json!({
            "metadata": { "name": name },
            "revision": number,
            "data": data(&json!({ "spec": { "containers": [{ "image": image }] } })),
        })
    }

    #[test]
    fn data_round_trips_the_template() {
        let pod_template = json!({ "metadata": { "labels": { "app": "web" } }, "spec": {} });
        let stored = json!({ "data": data(&pod_template) });
        assert_eq!(stored["data"]["spec"]["template"]["$patch"], "replace");
        assert_eq!(template(&stored), pod_template);
        let data = data(&pod_template);
        assert_eq!(hash(&data, 0), hash(&data, 0));
        assert_ne!(hash(&data, 0), hash(&data, 1));
    }

    #[test]
    fn the_update_revision_is_found_renumbered_or_new() {
        let revisions = [revision("w-a", 1, "a"), revision("w-b", 2, "b")];
        let b = data(&json!({ "spec": { "containers": [{ "image": "b" }] } }));
        assert_eq!(choose(&revisions, &b), Choice::Existing(&revisions[1]));
        let a = data(&json!({ "spec": { "containers": [{ "image": "a" }] } }));
        assert_eq!(choose(&revisions, &a), Choice::Renumber(&revisions[0], 3));
        let c = data(&json!({ "spec": { "containers": [{ "image": "c" }] } }));
        assert_eq!(choose(&revisions, &c), Choice::New(3));
        assert_eq!(choose(&[], &c), Choice::New(1));
    }

    #[test]
    fn history_keeps_the_live_and_the_newest() {
        let revisions: Vec<Value> = (1..=5)
            .map(|n| revision(&format!("w-{n}"), n, &n.to_string()))
            .collect();
        let live = HashSet::from(["w-1", "w-5"]);
        let trimmed: Vec<&str> = to_trim(&revisions, &live, 1)
            .into_iter()
            .map(meta::name)
            .collect();
        assert_eq!(trimmed, ["w-2", "w-3"]);
        assert!(to_trim(&revisions, &live, 10).is_empty());
    }
}
