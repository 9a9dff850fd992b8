//! A create's body, decoded as JSON or protobuf and validated by its kind's
//! strategy (`control::api::check_new_object`). The first byte picks the
//! resource and the content type; the rest is the body.
#![no_main]

use std::sync::LazyLock;

use control::kinds::{Env, ServiceNetwork};
use libfuzzer_sys::fuzz_target;

const RESOURCES: &[(&str, &str, &str)] = &[
    ("", "v1", "services"),
    ("", "v1", "pods"),
    ("", "v1", "configmaps"),
    ("", "v1", "namespaces"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("batch", "v1", "jobs"),
    ("networking.k8s.io", "v1", "ingresses"),
];

const CONTENT_TYPES: [Option<&str>; 2] = [
    Some("application/json"),
    Some("application/vnd.kubernetes.protobuf"),
];

static ENV: LazyLock<Env> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(Env::unconnected(&ServiceNetwork::default()))
});

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let (group, version, plural) = RESOURCES[usize::from(choice >> 1) % RESOURCES.len()];
    let resource = control::api::find_resource(group, version, plural).expect("served");
    let namespace = resource.namespaced.then_some("default");
    let content_type = CONTENT_TYPES[usize::from(choice & 1)];
    let _ = control::api::check_new_object(&ENV, resource, namespace, content_type, body);
});
