//! Property tests of the patch flavours over generated documents and
//! patches: none panics whatever it is sent, and the laws each one keeps.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

/// Keys from Kubernetes objects (so the strategic patch's list strategies
/// and directives are reached) and a few plain ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("spec".to_owned()),
        Just("metadata".to_owned()),
        Just("containers".to_owned()),
        Just("ports".to_owned()),
        Just("env".to_owned()),
        Just("name".to_owned()),
        Just("containerPort".to_owned()),
        Just("protocol".to_owned()),
        Just("finalizers".to_owned()),
        Just("$patch".to_owned()),
        Just("$retainKeys".to_owned()),
        Just("$setElementOrder/containers".to_owned()),
        Just("$deleteFromPrimitiveList/finalizers".to_owned()),
        "[a-z]{1,3}",
    ]
}

/// JSON documents, `null` included unless `nulls` is false.
fn value(nulls: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("merge".to_owned()),
            Just("replace".to_owned()),
            Just("delete".to_owned()),
            "[a-z0-9]{0,3}",
        ]
        .prop_map(Value::String),
    ];
    let leaf = if nulls {
        prop_oneof![leaf, Just(Value::Null)].boxed()
    } else {
        leaf.boxed()
    };
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn object(nulls: bool) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), value(nulls), 0..5)
        .prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// JSON patch operations, valid and not, on paths the documents may have.
fn json_patch_ops() -> impl Strategy<Value = Value> {
    let path = prop::collection::vec(prop_oneof![key(), "[0-3-]"], 0..4).prop_map(|steps| {
        steps
            .iter()
            .map(|step| format!("/{step}"))
            .collect::<String>()
    });
    let op = prop_oneof![
        Just("add"),
        Just("remove"),
        Just("replace"),
        Just("move"),
        Just("copy"),
        Just("test"),
        Just("bogus"),
    ];
    let operation = (op, path.clone(), path, value(true)).prop_map(
        |(op, path, from, value)| json!({ "op": op, "path": path, "from": from, "value": value }),
    );
    prop_oneof![
        prop::collection::vec(operation, 0..4).prop_map(Value::Array),
        value(true),
    ]
}

/// The merge patch that takes `patched` (`doc` after `patch`) back to
/// `doc`, for a `doc` without nulls (a merge patch cannot write a null).
fn merge_inverse(doc: &Map<String, Value>, patch: &Map<String, Value>) -> Value {
    let mut inverse = Map::new();
    for (key, change) in patch {
        let undo = match (doc.get(key), change) {
            (None, _) => Value::Null,
            (Some(Value::Object(before)), Value::Object(change)) => merge_inverse(before, change),
            (Some(before), _) => before.clone(),
        };
        inverse.insert(key.clone(), undo);
    }
    Value::Object(inverse)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_patch_flavour_answers_any_patch(doc in value(true), patch in value(true)) {
        for patch_type in [PatchType::Merge, PatchType::StrategicMerge, PatchType::Json] {
            let mut patched = doc.clone();
            if apply(patch_type, &mut patched, &patch).is_err() {
                prop_assert_eq!(&patched, &doc, "a failed {:?} patch changed the document", patch_type);
            }
        }
    }

    #[test]
    fn json_patch_operations_never_panic(doc in object(true), ops in json_patch_ops()) {
        let mut patched = doc.clone();
        if json_patch(&mut patched, &ops).is_err() {
            prop_assert_eq!(patched, doc);
        }
    }

    #[test]
    fn an_empty_json_patch_is_the_identity(doc in value(true)) {
        let mut patched = doc.clone();
        json_patch(&mut patched, &json!([])).unwrap();
        prop_assert_eq!(patched, doc);
    }

    #[test]
    fn a_merge_patch_then_its_inverse_is_the_identity(doc in object(false), patch in object(true)) {
        let mut patched = doc.clone();
        merge_patch(&mut patched, &patch);
        let inverse = merge_inverse(doc.as_object().unwrap(), patch.as_object().unwrap());
        merge_patch(&mut patched, &inverse);
        prop_assert_eq!(patched, doc);
    }

    #[test]
    fn an_empty_strategic_patch_is_the_identity(doc in object(true)) {
        let mut patched = doc.clone();
        strategic_merge_patch(&mut patched, &json!({})).unwrap();
        prop_assert_eq!(patched, doc);
    }
}
