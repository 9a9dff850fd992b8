//! proptest strategies over JSON documents: arbitrary values, and a
//! mutation that writes one at a place chosen inside a real object. The API
//! server's and the agent's decoders are both tested by mutating valid
//! examples this way, so a case reaches deep fields instead of failing at
//! the first byte.
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value: scalars, strings that look like names, paths and
/// addresses, and small arrays and objects of those.
pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "\\PC{0,12}".prop_map(Value::String),
        "[a-z0-9./-]{0,70}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..3)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Writes `new` at the place `choices` picks in `object`: descending into
/// objects and arrays while there are choices left.
pub fn mutate(object: &mut Value, choices: &[usize], new: Value) {
    let Some((&choice, rest)) = choices.split_first() else {
        *object = new;
        return;
    };
    match object {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(choice % map.len())
                .cloned()
                .expect("in range");
            mutate(map.get_mut(&key).expect("present"), rest, new);
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[choice % len], rest, new);
        }
        _ => *object = new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutation_writes_where_the_choices_lead() {
        let mut object = json!({ "a": { "b": [1, 2] } });
        mutate(&mut object, &[0, 0, 1], json!("x"));
        assert_eq!(object, json!({ "a": { "b": [1, "x"] } }));
        mutate(&mut object, &[], json!(null));
        assert_eq!(object, json!(null));
    }
}
