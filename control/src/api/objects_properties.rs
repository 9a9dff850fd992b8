//! Property tests of what a create does with its body before anything is
//! stored (`objects::check_new_object`): whatever the bytes, and whatever
//! is changed in a real object, it answers with an object or an error,
//! never a panic.

use std::sync::LazyLock;

use json_strategies::{mutate, value};
use proptest::prelude::*;
use serde::Deserialize as _;
use serde_json::Value;

use super::objects::check_new_object;
use super::protobuf;
use super::registry::{RESOURCES, Resource};
use crate::kinds::{Env, ServiceNetwork};

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/json"),
    Some(protobuf::MEDIA_TYPE),
    Some("text/plain"),
];

/// The environment validation reads; its store is never reached.
static ENV: LazyLock<Env> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(Env::unconnected(&ServiceNetwork::default()))
});

/// The objects of the repository's examples, as the API receives them.
static EXAMPLES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut objects = Vec::new();
    for file in [
        "echo.yaml",
        "guestbook-redis-master.yaml",
        "ingress.yaml",
        "iperf3.yaml",
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("read an example");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let object = Value::deserialize(document).expect("an example is YAML");
            if object.is_object() {
                objects.push(object);
            }
        }
    }
    assert!(objects.len() > 5, "the examples hold objects");
    objects
});

fn resource_of(object: &Value) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|resource| {
            resource.kind == object["kind"] && resource.api_version() == object["apiVersion"]
        })
        .expect("the examples' kinds are served")
}

fn check(resource: &Resource, content_type: Option<&str>, body: &[u8]) -> Result<Value, u16> {
    let namespace = resource.namespaced.then_some("default");
    check_new_object(&ENV, resource, namespace, content_type, body).map_err(|error| error.code)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_body_of_any_kind_is_answered(
        index in any::<prop::sample::Index>(),
        content_type in prop::sample::select(&CONTENT_TYPES[..]),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let resource = &RESOURCES[index.index(RESOURCES.len())];
        if let Err(code) = check(resource, content_type, &body) {
            prop_assert!((400..500).contains(&code), "{code}");
        }
    }

    #[test]
    fn a_changed_example_is_answered(
        example in any::<prop::sample::Index>(),
        choices in prop::collection::vec(any::<usize>(), 1..7),
        new in value(),
    ) {
        let mut object = EXAMPLES[example.index(EXAMPLES.len())].clone();
        let resource = resource_of(&object);
        mutate(&mut object, &choices, new);
        let body = serde_json::to_vec(&object).unwrap();
        if let Err(code) = check(resource, None, &body) {
            prop_assert!((400..500).contains(&code), "{code}");
        }
        if let Ok(encoded) = protobuf::encode_object(&object) {
            prop_assert!(check(resource, Some(protobuf::MEDIA_TYPE), &encoded).is_ok()
                || check(resource, None, &body).is_err());
        }
    }

    #[test]
    fn a_corrupted_protobuf_body_is_answered(
        example in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let object = &EXAMPLES[example.index(EXAMPLES.len())];
        let mut bytes = protobuf::encode_object(object).unwrap();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Err(code) = check(resource_of(object), Some(protobuf::MEDIA_TYPE), &bytes) {
            prop_assert!((400..500).contains(&code), "{code}");
        }
    }
}

#[test]
fn the_examples_pass_as_json_and_as_protobuf() {
    for object in EXAMPLES.iter() {
        let resource = resource_of(object);
        let json = serde_json::to_vec(object).unwrap();
        let created =
            check(resource, None, &json).unwrap_or_else(|code| panic!("{code}: {object}"));
        assert_eq!(created["metadata"]["name"], object["metadata"]["name"]);
        let encoded = protobuf::encode_object(object).unwrap();
        check(resource, Some(protobuf::MEDIA_TYPE), &encoded)
            .unwrap_or_else(|code| panic!("{code}: protobuf {object}"));
    }
}
