//! The payloads of the volumes made of API data: a ConfigMap's or
//! Secret's keys (all, or the `items` asked for, each with its mode), the
//! downward API's fields, and projected volumes, which merge such sources
//! and the pod's ServiceAccount tokens.
//! A missing object is an error naming it unless the source is optional,
//! and then the volume is empty.
use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeFile, KeyToPath, Pod,
        ProjectedVolumeSource, Secret, SecretVolumeSource,
    },
    jiff::Timestamp,
};

use crate::kubelet::missing::MissingObject;
use crate::kubelet::objects::{Kind, Objects};

use super::{
    atomic_writer::{FileProjection, Payload},
    downward,
    error::VolumeError,
    token::{PodTokens, TokenIssuer},
};

/// The kubelet's mode for projected files when the pod sets none.
pub const DEFAULT_MODE: i32 = 0o644;

/// A ConfigMap or Secret a volume projects.
struct Reference<'a> {
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

pub async fn config_map(
    objects: &impl Objects,
    namespace: &str,
    source: &ConfigMapVolumeSource,
) -> Result<Payload, VolumeError> {
    let reference = Reference {
        kind: "configmap",
        namespace,
        name: &source.name,
        items: source.items.as_deref(),
        optional: source.optional == Some(true),
    };
    project(objects, &reference, source.default_mode).await
}

pub async fn secret(
    objects: &impl Objects,
    namespace: &str,
    source: &SecretVolumeSource,
) -> Result<Payload, VolumeError> {
    let reference = Reference {
        kind: "secret",
        namespace,
        name: source.secret_name.as_deref().unwrap_or_default(),
        items: source.items.as_deref(),
        optional: source.optional == Some(true),
    };
    project(objects, &reference, source.default_mode).await
}

pub fn downward_api(
    pod: &Pod,
    volume: &str,
    files: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    for file in files {
        let value = match (&file.field_ref, &file.resource_field_ref) {
            (Some(field), _) => downward::field(pod, volume, &field.field_path)?,
            (None, Some(resource)) => downward::resource(pod, volume, resource)?,
            (None, None) => {
                return Err(VolumeError::Unsupported {
                    volume: volume.to_owned(),
                    why: format!(
                        "downward API file {} has no fieldRef or resourceFieldRef",
                        file.path
                    ),
                });
            }
        };
        let mode = file.mode.or(default_mode).unwrap_or(DEFAULT_MODE);
        payload.insert(file.path.clone(), entry(value.into_bytes(), mode));
    }
    Ok(payload)
}

/// Where a projected volume's ServiceAccount tokens come from: the
/// issuer, and the pod's tokens held until they need refreshing.
pub struct Tokens<'a, I> {
    pub issuer: &'a I,
    pub held: &'a PodTokens,
}

/// A projected volume's payload, and what it left out (sources skiff does
/// not support: they are reported as events, the rest still mounts).
pub async fn projected(
    objects: &impl Objects,
    tokens: &Tokens<'_, impl TokenIssuer>,
    pod: &Pod,
    volume: &str,
    source: &ProjectedVolumeSource,
) -> Result<(Payload, Vec<String>), VolumeError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut payload = Payload::new();
    let mut skipped = Vec::new();
    for projection in source.sources.iter().flatten() {
        let part = if let Some(config_map) = &projection.config_map {
            let reference = Reference {
                kind: "configmap",
                namespace,
                name: &config_map.name,
                items: config_map.items.as_deref(),
                optional: config_map.optional == Some(true),
            };
            project(objects, &reference, source.default_mode).await?
        } else if let Some(secret) = &projection.secret {
            let reference = Reference {
                kind: "secret",
                namespace,
                name: &secret.name,
                items: secret.items.as_deref(),
                optional: secret.optional == Some(true),
            };
            project(objects, &reference, source.default_mode).await?
        } else if let Some(downward) = &projection.downward_api {
            let files = downward.items.as_deref().unwrap_or_default();
            downward_api(pod, volume, files, source.default_mode)?
        } else if let Some(token_source) = &projection.service_account_token {
            let now = Timestamp::now();
            let token = (tokens.held.token(tokens.issuer, pod, token_source, now)).await?;
            let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
            Payload::from([(token_source.path.clone(), entry(token.into_bytes(), mode))])
        } else {
            let what = if projection.cluster_trust_bundle.is_some() {
                "clusterTrustBundle"
            } else {
                "podCertificate"
            };
            skipped.push(format!(
                "projected volume {volume}: {what} sources are not supported by skiff and were left out"
            ));
            continue;
        };
        payload.extend(part);
    }
    Ok((payload, skipped))
}

async fn project(
    objects: &impl Objects,
    reference: &Reference<'_>,
    default_mode: Option<i32>,
) -> Result<Payload, VolumeError> {
    let Reference {
        kind,
        namespace,
        name,
        ..
    } = *reference;
    let api_kind = if kind == "secret" {
        Kind::Secret
    } else {
        Kind::ConfigMap
    };
    let stored = objects.get(api_kind, namespace, name).await?;
    let Some(data) = stored.and_then(|object| data_of(kind, object)) else {
        if reference.optional {
            return Ok(Payload::new());
        }
        return Err(MissingObject::object(kind, namespace, name).into());
    };
    let default_mode = default_mode.unwrap_or(DEFAULT_MODE);
    let Some(items) = reference.items else {
        return Ok((data.into_iter())
            .map(|(key, bytes)| (key, entry(bytes, default_mode)))
            .collect());
    };
    let mut payload = Payload::new();
    for item in items {
        match data.get(&item.key) {
            Some(bytes) => {
                let mode = item.mode.unwrap_or(default_mode);
                payload.insert(item.path.clone(), entry(bytes.clone(), mode));
            }
            None if reference.optional => {}
            None => {
                return Err(MissingObject::key(kind, namespace, name, &item.key).into());
            }
        }
    }
    Ok(payload)
}

fn entry(data: Vec<u8>, mode: i32) -> FileProjection {
    FileProjection {
        data,
        mode: (mode as u32) & 0o7777,
    }
}

/// The keys and bytes of a stored ConfigMap (`data` and `binaryData`) or
/// Secret (`data`, and `stringData` should a writer have left it).
fn data_of(kind: &str, object: serde_json::Value) -> Option<BTreeMap<String, Vec<u8>>> {
    if kind == "secret" {
        let secret: Secret = serde_json::from_value(object).ok()?;
        let strings = secret.string_data.unwrap_or_default().into_iter();
        let bytes = secret.data.unwrap_or_default().into_iter();
        Some(
            (strings.map(|(k, v)| (k, v.into_bytes())))
                .chain(bytes.map(|(k, v)| (k, v.0)))
                .collect(),
        )
    } else {
        let config_map: ConfigMap = serde_json::from_value(object).ok()?;
        let strings = config_map.data.unwrap_or_default().into_iter();
        let bytes = config_map.binary_data.unwrap_or_default().into_iter();
        Some(
            (strings.map(|(k, v)| (k, v.into_bytes())))
                .chain(bytes.map(|(k, v)| (k, v.0)))
                .collect(),
        )
    }
}
