//! kube-apiserver's `--encryption-provider-config` file: an
//! `apiserver.config.k8s.io/v1` EncryptionConfiguration, in YAML or JSON.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use super::provider::Provider;

const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const KIND: &str = "EncryptionConfiguration";

/// A resource the server stores: its API group, plural and etcd base.
#[derive(Debug, Clone, Copy)]
pub struct StoredResource {
    pub group: &'static str,
    pub plural: &'static str,
    pub storage: &'static str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfiguration {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfiguration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfiguration {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderConfiguration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfiguration {
    aesgcm: Option<KeysConfiguration>,
    secretbox: Option<KeysConfiguration>,
    identity: Option<Value>,
    aescbc: Option<Value>,
    kms: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfiguration {
    #[serde(default)]
    keys: Vec<KeyConfiguration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfiguration {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

/// Each configured etcd base (with its trailing `/`) and its providers,
/// the first of which writes. A resource named by several entries takes
/// the first, as kube-apiserver does.
pub fn parse(
    text: &str,
    stored: &[StoredResource],
) -> Result<Vec<(String, Vec<Provider>)>, String> {
    let config: EncryptionConfiguration =
        serde_yaml_ng::from_str(text).map_err(|error| error.to_string())?;
    if config.api_version != API_VERSION || config.kind != KIND {
        return Err(format!(
            "apiVersion/kind must be {API_VERSION}/{KIND}, not {:?}/{:?}",
            config.api_version, config.kind
        ));
    }
    if config.resources.is_empty() {
        return Err("resources: Required value: at least one resource is required".into());
    }
    let mut chains: Vec<(String, Vec<Provider>)> = Vec::new();
    for (i, entry) in config.resources.iter().enumerate() {
        let field = format!("resources[{i}]");
        if entry.resources.is_empty() {
            return Err(format!(
                "{field}.resources: Required value: at least one resource is required"
            ));
        }
        if entry.providers.is_empty() {
            return Err(format!(
                "{field}.providers: Required value: at least one provider is required"
            ));
        }
        let mut bases = Vec::new();
        for (j, name) in entry.resources.iter().enumerate() {
            let matched = matching(name, stored);
            if matched.is_empty() {
                return Err(format!(
                    "{field}.resources[{j}]: Invalid value: {name:?}: not a resource skiff-control stores"
                ));
            }
            bases.extend(matched);
        }
        for base in bases {
            let prefix = format!("{base}/");
            if chains.iter().any(|(known, _)| *known == prefix) {
                continue;
            }
            let providers = entry
                .providers
                .iter()
                .enumerate()
                .map(|(k, provider)| build(&format!("{field}.providers[{k}]"), provider))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect();
            chains.push((prefix, providers));
        }
    }
    Ok(chains)
}

/// The etcd bases `name` stands for: `secrets`, `deployments.apps`, or
/// kube's wildcards `*.*` (everything), `*.apps` (a group) and `*.` (the
/// core group).
fn matching(name: &str, stored: &[StoredResource]) -> Vec<&'static str> {
    let (plural, group) = name.split_once('.').unwrap_or((name, ""));
    stored
        .iter()
        .filter(|resource| {
            let group_matches = group == "*" || resource.group == group;
            group_matches && (plural == "*" || resource.plural == plural)
        })
        .map(|resource| resource.storage)
        .collect()
}

/// One provider entry's providers, one per key (a key's order is its
/// rank: the first key of the first provider writes).
fn build(field: &str, config: &ProviderConfiguration) -> Result<Vec<Provider>, String> {
    let named = [
        ("aesgcm", config.aesgcm.is_some()),
        ("secretbox", config.secretbox.is_some()),
        ("identity", config.identity.is_some()),
        ("aescbc", config.aescbc.is_some()),
        ("kms", config.kms.is_some()),
    ];
    let present: Vec<&str> = named
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    match present.as_slice() {
        [] => Err(format!(
            "{field}: Invalid value: provider does not contain any of the expected providers: aesgcm, secretbox, identity"
        )),
        [_, _, ..] => Err(format!(
            "{field}: Invalid value: more than one provider specified in a single element ({}), should split into different list elements",
            present.join(", ")
        )),
        ["identity"] => Ok(vec![Provider::identity()]),
        ["aesgcm"] => keyed(
            &format!("{field}.aesgcm"),
            config.aesgcm.as_ref(),
            Provider::aes_gcm,
        ),
        ["secretbox"] => keyed(
            &format!("{field}.secretbox"),
            config.secretbox.as_ref(),
            Provider::secretbox,
        ),
        [other] => Err(format!(
            "{field}.{other}: Unsupported value: skiff-control supports the aesgcm, secretbox and identity providers, not {other}"
        )),
    }
}

fn keyed(
    field: &str,
    config: Option<&KeysConfiguration>,
    make: fn(&str, &[u8]) -> Result<Provider, String>,
) -> Result<Vec<Provider>, String> {
    let keys = config
        .map(|config| config.keys.as_slice())
        .unwrap_or_default();
    if keys.is_empty() {
        return Err(format!(
            "{field}.keys: Required value: at least one key is required"
        ));
    }
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let field = format!("{field}.keys[{i}]");
            if key.name.is_empty() {
                return Err(format!(
                    "{field}.name: Required value: key name is required"
                ));
            }
            if key.name.contains(':') {
                return Err(format!(
                    "{field}.name: Invalid value: {:?}: key name must not contain \":\"",
                    key.name
                ));
            }
            let secret = STANDARD.decode(&key.secret).map_err(|error| {
                format!("{field}.secret: Invalid value: secret is not base64: {error}")
            })?;
            make(&key.name, &secret)
                .map_err(|reason| format!("{field}.secret: Invalid value: {reason}"))
        })
        .collect()
}
