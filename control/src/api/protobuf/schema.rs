//! Generates proto/kubernetes.binpb, the descriptor set the protobuf layer
//! reads, from k8s-pb: its prost-generated types carry each message's fields
//! with their numbers and wire types, the k8s-openapi schemas the JSON name
//! of each field (Kubernetes' .proto field names are the JSON names; prost
//! snake-cases them). Only the messages reachable from the served kinds,
//! their lists and the meta types the API answers with are kept.
//!
//! `descriptor_set_is_current` fails when the committed file differs from
//! what k8s-pb gives; `SKIFF_UPDATE_PROTOBUF=1` rewrites it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use heck::{ToLowerCamelCase, ToUpperCamelCase};
use prost_reflect::prost::Message;
use prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
use prost_reflect::prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, MessageOptions,
};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::Value;
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, Meta, Token};

use super::json::INLINE;
use super::{META_V1, package};
use crate::api::registry::RESOURCES;

/// A module of k8s-pb, e.g. `["api", "core", "v1"]`; its proto package is
/// `k8s.io.` and the parts joined with dots.
type Module = Vec<String>;

/// A message: its module and k8s-pb's (Rust) name for it.
type Key = (Module, String);

#[derive(Debug)]
struct RustMessage {
    fields: Vec<RustField>,
}

#[derive(Debug)]
struct RustField {
    /// prost's snake-cased field name.
    name: String,
    tag: i32,
    repeated: bool,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Scalar(Type),
    Message(Key),
    /// Keys are strings in every Kubernetes map.
    Map(Box<Kind>),
}

fn scalar(word: &str) -> Option<Type> {
    Some(match word {
        "bool" => Type::Bool,
        "int32" => Type::Int32,
        "int64" => Type::Int64,
        "double" => Type::Double,
        "string" => Type::String,
        "bytes" => Type::Bytes,
        _ => return None,
    })
}

fn k8s_pb_source() -> PathBuf {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .exec()
        .expect("cargo metadata");
    let package = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "k8s-pb")
        .expect("k8s-pb is a dev-dependency");
    package
        .manifest_path
        .parent()
        .expect("a manifest is in a directory")
        .join("src")
        .into()
}

/// Every message of k8s-pb's generated modules.
fn read_messages(root: &Path) -> BTreeMap<Key, RustMessage> {
    let mut messages = BTreeMap::new();
    let mut directories = vec![root.to_path_buf()];
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(&directory).expect("k8s-pb's source") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                directories.push(path);
            } else if path.file_name().is_some_and(|name| name == "mod.rs") {
                let module: Module = path
                    .parent()
                    .and_then(|parent| parent.strip_prefix(root).ok())
                    .expect("under the source root")
                    .iter()
                    .map(|part| part.to_string_lossy().into_owned())
                    .collect();
                let source = std::fs::read_to_string(&path).expect("k8s-pb's source");
                let file = syn::parse_file(&source).expect("k8s-pb's source parses");
                for item in file.items {
                    if let syn::Item::Struct(item) = item
                        && derives_message(&item.attrs)
                    {
                        let fields = item
                            .fields
                            .iter()
                            .map(|field| read_field(field, &module))
                            .collect();
                        messages.insert(
                            (module.clone(), item.ident.to_string()),
                            RustMessage { fields },
                        );
                    }
                }
            }
        }
    }
    messages
}

fn derives_message(attributes: &[syn::Attribute]) -> bool {
    attributes.iter().any(|attribute| {
        attribute.path().is_ident("derive")
            && attribute
                .parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)
                .is_ok_and(|derived| {
                    derived.iter().any(|path| {
                        path.segments.len() == 2
                            && path.segments[0].ident == "prost"
                            && path.segments[1].ident == "Message"
                    })
                })
    })
}

/// A field from its `#[prost(...)]` attribute and its Rust type.
fn read_field(field: &syn::Field, module: &Module) -> RustField {
    let attribute = field
        .attrs
        .iter()
        .find(|attribute| attribute.path().is_ident("prost"))
        .expect("every field of a prost message has #[prost]");
    let items = attribute
        .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .expect("#[prost] parses");
    let (mut word, mut repeated, mut tag, mut map) = (None, false, None, None);
    for item in items {
        match item {
            Meta::Path(path) => {
                let name = path.get_ident().expect("a word").to_string();
                match name.as_str() {
                    "optional" | "boxed" => {}
                    "repeated" => repeated = true,
                    _ => word = Some(name),
                }
            }
            Meta::NameValue(pair) => {
                let name = pair.path.get_ident().expect("a word").to_string();
                let Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(value),
                    ..
                }) = pair.value
                else {
                    panic!("#[prost({name} = …)] is a string");
                };
                match name.as_str() {
                    "tag" => tag = Some(value.value().parse().expect("a number")),
                    "bytes" => word = Some("bytes".to_owned()),
                    "btree_map" | "map" | "hash_map" => map = Some(value.value()),
                    "packed" => {}
                    other => panic!("unexpected #[prost({other} = …)]"),
                }
            }
            Meta::List(list) => panic!("unexpected #[prost({})]", list.path.get_ident().unwrap()),
        }
    }
    let name = field
        .ident
        .as_ref()
        .expect("named fields")
        .to_string()
        .trim_start_matches("r#")
        .to_owned();
    let kind = match (map, word) {
        (Some(map), _) => {
            let (key, value) = map.split_once(',').expect("a key and a value type");
            assert_eq!(key.trim(), "string", "{name}: maps have string keys");
            let value = value.trim();
            Kind::Map(Box::new(match scalar(value) {
                Some(scalar) => Kind::Scalar(scalar),
                None => Kind::Message(message_type(&field.ty, module)),
            }))
        }
        (None, Some(word)) if word == "message" => Kind::Message(message_type(&field.ty, module)),
        (None, Some(word)) => Kind::Scalar(scalar(&word).unwrap_or_else(|| panic!("type {word}"))),
        (None, None) => panic!("{name}: no type"),
    };
    RustField {
        name,
        tag: tag.expect("a tag"),
        repeated,
        kind,
    }
}

/// The message a field's Rust type names, under `Option`, `Box`, `Vec` or
/// as a map's value, with `super::` resolved from `module`.
fn message_type(ty: &syn::Type, module: &Module) -> Key {
    let syn::Type::Path(path) = ty else {
        panic!("a path type");
    };
    let last = path.path.segments.last().expect("a segment");
    if matches!(
        last.ident.to_string().as_str(),
        "Option" | "Box" | "Vec" | "BTreeMap" | "HashMap"
    ) {
        let syn::PathArguments::AngleBracketed(arguments) = &last.arguments else {
            panic!("a generic wrapper");
        };
        let inner = arguments
            .args
            .iter()
            .filter_map(|argument| match argument {
                syn::GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .next_back()
            .expect("a type argument");
        return message_type(inner, module);
    }
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    let (name, prefix) = segments.split_last().expect("a segment");
    let mut resolved = module.clone();
    for segment in prefix {
        if segment == "super" {
            resolved.pop();
        } else {
            resolved.push(segment.clone());
        }
    }
    (resolved, name.clone())
}

/// A name without case or underscores: prost's snake case of `hostIPs` is
/// `host_ips`, heck's `host_i_ps`.
fn squash(name: &str) -> String {
    name.replace('_', "").to_lowercase()
}

fn module_of(package: &str) -> Module {
    package
        .strip_prefix("k8s.io.")
        .expect("a Kubernetes package")
        .split('.')
        .map(str::to_owned)
        .collect()
}

/// The k8s-openapi schemas of everything served, by definition name
/// (`io.k8s.api.core.v1.Pod`).
fn definitions() -> serde_json::Map<String, Value> {
    use k8s_openapi::api::{authentication, authorization, autoscaling, core};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut generator: SchemaGenerator = SchemaSettings::openapi3().into_generator();
    for resource in RESOURCES {
        (resource.typed.schema)(&mut generator);
    }
    fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
        generator.subschema_for::<T>();
    }
    add::<meta::Status>(&mut generator);
    add::<meta::DeleteOptions>(&mut generator);
    add::<meta::APIVersions>(&mut generator);
    add::<meta::APIGroupList>(&mut generator);
    add::<meta::APIResourceList>(&mut generator);
    add::<core::v1::Binding>(&mut generator);
    add::<autoscaling::v1::Scale>(&mut generator);
    add::<authorization::v1::SubjectAccessReview>(&mut generator);
    add::<authorization::v1::LocalSubjectAccessReview>(&mut generator);
    add::<authorization::v1::SelfSubjectAccessReview>(&mut generator);
    add::<authorization::v1::SelfSubjectRulesReview>(&mut generator);
    add::<authentication::v1::SelfSubjectReview>(&mut generator);
    add::<authentication::v1::TokenRequest>(&mut generator);
    add::<authentication::v1::TokenReview>(&mut generator);
    generator.take_definitions(true)
}

/// The messages the API encodes and decodes at the top level, by proto
/// package and Kubernetes name.
fn roots() -> Vec<(String, String)> {
    let mut roots = Vec::new();
    for resource in RESOURCES {
        let package = package(resource.group, resource.version);
        roots.push((package.clone(), resource.kind.to_owned()));
        roots.push((package, format!("{}List", resource.kind)));
    }
    for kind in [
        "Status",
        "WatchEvent",
        "DeleteOptions",
        "APIVersions",
        "APIGroupList",
        "APIGroup",
        "APIResourceList",
    ] {
        roots.push((META_V1.to_owned(), kind.to_owned()));
    }
    roots.push((package("", "v1"), "Binding".to_owned()));
    roots.push((package("autoscaling", "v1"), "Scale".to_owned()));
    for kind in [
        "SubjectAccessReview",
        "LocalSubjectAccessReview",
        "SelfSubjectAccessReview",
        "SelfSubjectRulesReview",
    ] {
        roots.push((package("authorization.k8s.io", "v1"), kind.to_owned()));
    }
    roots.push((
        package("authentication.k8s.io", "v1"),
        "SelfSubjectReview".to_owned(),
    ));
    for kind in ["TokenRequest", "TokenReview"] {
        roots.push((package("authentication.k8s.io", "v1"), kind.to_owned()));
    }
    roots.push((super::RUNTIME.to_owned(), "Unknown".to_owned()));
    roots
}

/// The descriptor set, files in dependency order.
fn generate() -> FileDescriptorSet {
    let messages = read_messages(&k8s_pb_source());
    let definitions = definitions();

    // Kubernetes' own names (k8s-pb renames `CSIDriver` to `CsiDriver`):
    // those of the schemas and of the roots, found case-insensitively.
    let mut kubernetes_names: BTreeMap<(Module, String), String> = BTreeMap::new();
    let mut remember = |module: Module, name: &str| {
        kubernetes_names.insert((module, name.to_lowercase()), name.to_owned());
    };
    for definition in definitions.keys() {
        let (path, name) = definition.rsplit_once('.').expect("a qualified name");
        if let Some(module) = path.strip_prefix("io.k8s.") {
            remember(module.split('.').map(str::to_owned).collect(), name);
        }
    }
    let roots = roots();
    for (package, name) in &roots {
        remember(module_of(package), name);
    }
    let kubernetes_name = |(module, rust): &Key| -> String {
        kubernetes_names
            .get(&(module.clone(), rust.to_lowercase()))
            .cloned()
            .unwrap_or_else(|| rust.clone())
    };

    // The messages reachable from the roots.
    let by_kubernetes_name: BTreeMap<(Module, String), Key> = messages
        .keys()
        .map(|key| ((key.0.clone(), kubernetes_name(key)), key.clone()))
        .collect();
    let mut reachable: BTreeSet<Key> = BTreeSet::new();
    let mut queue: VecDeque<Key> = roots
        .iter()
        .map(|(package, name)| {
            by_kubernetes_name
                .get(&(module_of(package), name.clone()))
                .unwrap_or_else(|| panic!("k8s-pb has no message {package}.{name}"))
                .clone()
        })
        .collect();
    while let Some(key) = queue.pop_front() {
        if !reachable.insert(key.clone()) {
            continue;
        }
        let message = messages
            .get(&key)
            .unwrap_or_else(|| panic!("k8s-pb has no message {key:?}"));
        for field in &message.fields {
            let mut kind = &field.kind;
            if let Kind::Map(value) = kind {
                kind = value;
            }
            if let Kind::Message(target) = kind {
                queue.push_back(target.clone());
            }
        }
    }

    let mut files: BTreeMap<Module, FileDescriptorProto> = BTreeMap::new();
    let mut dependencies: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for key in &reachable {
        let (module, _) = key;
        let name = kubernetes_name(key);
        let package = format!("k8s.io.{}", module.join("."));
        let properties = definitions
            .get(&format!("io.k8s.{}.{name}", module.join(".")))
            .and_then(|schema| schema.get("properties"))
            .and_then(Value::as_object);
        let mut message = DescriptorProto {
            name: Some(name.clone()),
            ..Default::default()
        };
        for field in &messages[key].fields {
            let json_name = match properties {
                Some(properties) => properties
                    .keys()
                    .find(|property| squash(property) == squash(&field.name))
                    .cloned()
                    .unwrap_or_else(|| {
                        // An embedded Go struct: a message field in proto,
                        // its fields inlined in JSON.
                        assert!(
                            matches!(field.kind, Kind::Message(_)) && !field.repeated,
                            "{package}.{name}: no JSON name for {}",
                            field.name
                        );
                        INLINE.to_owned()
                    }),
                // Lists, the envelope and the messages whose JSON form is a
                // string or a number (Time, Quantity, IntOrString).
                None => field.name.to_lower_camel_case(),
            };
            let mut descriptor = FieldDescriptorProto {
                name: Some(if json_name == INLINE {
                    field.name.to_lower_camel_case()
                } else {
                    json_name.clone()
                }),
                json_name: Some(json_name.clone()),
                number: Some(field.tag),
                label: Some(if field.repeated || matches!(field.kind, Kind::Map(_)) {
                    Label::Repeated as i32
                } else {
                    Label::Optional as i32
                }),
                ..Default::default()
            };
            let mut type_of = |kind: &Kind, descriptor: &mut FieldDescriptorProto| match kind {
                Kind::Scalar(scalar) => descriptor.r#type = Some(*scalar as i32),
                Kind::Message(target) => {
                    if target.0 != *module {
                        dependencies
                            .entry(module.clone())
                            .or_default()
                            .insert(target.0.clone());
                    }
                    descriptor.r#type = Some(Type::Message as i32);
                    descriptor.type_name = Some(format!(
                        ".k8s.io.{}.{}",
                        target.0.join("."),
                        kubernetes_name(target)
                    ));
                }
                Kind::Map(_) => unreachable!("maps do not nest"),
            };
            match &field.kind {
                Kind::Map(value) => {
                    let entry = format!("{}Entry", json_name.to_upper_camel_case());
                    let mut key = FieldDescriptorProto {
                        name: Some("key".to_owned()),
                        json_name: Some("key".to_owned()),
                        number: Some(1),
                        label: Some(Label::Optional as i32),
                        r#type: Some(Type::String as i32),
                        ..Default::default()
                    };
                    let mut value_field = FieldDescriptorProto {
                        name: Some("value".to_owned()),
                        json_name: Some("value".to_owned()),
                        number: Some(2),
                        label: Some(Label::Optional as i32),
                        ..Default::default()
                    };
                    type_of(value, &mut value_field);
                    key.json_name = Some("key".to_owned());
                    message.nested_type.push(DescriptorProto {
                        name: Some(entry.clone()),
                        field: vec![key, value_field],
                        options: Some(MessageOptions {
                            map_entry: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                    descriptor.r#type = Some(Type::Message as i32);
                    descriptor.type_name = Some(format!(".{package}.{name}.{entry}"));
                }
                kind => type_of(kind, &mut descriptor),
            }
            message.field.push(descriptor);
        }
        files
            .entry(module.clone())
            .or_insert_with(|| FileDescriptorProto {
                name: Some(format!("k8s.io/{}/generated.proto", module.join("/"))),
                package: Some(package.clone()),
                syntax: Some("proto2".to_owned()),
                ..Default::default()
            })
            .message_type
            .push(message);
    }

    // Dependencies first.
    let mut ordered = Vec::new();
    let mut done: BTreeSet<Module> = BTreeSet::new();
    while done.len() < files.len() {
        for (module, file) in &files {
            let needs = dependencies.get(module).cloned().unwrap_or_default();
            if !done.contains(module) && needs.iter().all(|need| done.contains(need)) {
                let mut file = file.clone();
                file.dependency = needs
                    .iter()
                    .map(|need| format!("k8s.io/{}/generated.proto", need.join("/")))
                    .collect();
                ordered.push(file);
                done.insert(module.clone());
            }
        }
    }
    FileDescriptorSet { file: ordered }
}

#[test]
fn descriptor_set_is_current() {
    let generated = generate().encode_to_vec();
    prost_reflect::DescriptorPool::decode(generated.as_slice()).expect("a valid descriptor set");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/kubernetes.binpb");
    if std::env::var_os("SKIFF_UPDATE_PROTOBUF").is_some() {
        std::fs::write(path, &generated).expect("writing the descriptor set");
    }
    assert!(
        generated == super::DESCRIPTORS,
        "{path} is not what k8s-pb gives: run SKIFF_UPDATE_PROTOBUF=1 cargo test -p control descriptor_set_is_current"
    );
}
