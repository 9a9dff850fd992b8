//! What the Ingress proxy keeps of the Ingresses and IngressClasses it
//! watches and the TLS Secrets it reads: the routing and TLS fields, read
//! from networking.k8s.io/v1 and core v1 JSON through k8s-openapi's types.
//! A path the API should have refused (an unknown `pathType`, a backend
//! without a port) is dropped here with a log line naming the Ingress.
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::warn;

/// The annotation that picked an Ingress's class before
/// `spec.ingressClassName` existed.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The annotation that makes an IngressClass the cluster's default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// A namespaced object's identity, from its etcd key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An Ingress, as routing needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngressRecord {
    /// Older Ingresses win conflicting paths, as in ingress-nginx.
    pub created: Option<Time>,
    pub class: ClassChoice,
    pub default_backend: Option<BackendRef>,
    pub rules: Vec<Rule>,
    pub tls: Vec<TlsEntry>,
}

/// How an Ingress names its class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClassChoice {
    /// `spec.ingressClassName`.
    Named(String),
    /// The `kubernetes.io/ingress.class` annotation.
    Annotated(String),
    /// Neither: the default class serves it.
    #[default]
    Unset,
}

/// One `spec.rules[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `None` matches every host.
    pub host: Option<String>,
    pub paths: Vec<PathRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRule {
    pub kind: PathKind,
    pub path: String,
    pub backend: BackendRef,
}

/// `pathType`; ImplementationSpecific is read as Prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    Exact,
    Prefix,
}

/// Where an Ingress sends a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendRef {
    /// A Service of the Ingress's namespace.
    Service { name: String, port: PortRef },
    /// A `resource` backend (`<kind>/<name>`): nothing the proxy can reach.
    Resource(String),
}

/// A Service port, by number or by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(number) => write!(f, "{number}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

/// One `spec.tls[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsEntry {
    pub hosts: Vec<String>,
    pub secret: Option<String>,
}

/// An IngressClass, as class selection needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassRecord {
    pub is_default: bool,
}

/// A Secret's TLS fields, PEM as stored (decoded from base64).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretRecord {
    pub type_: Option<String>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

impl IngressRecord {
    pub fn from_json(id: &ObjectRef, json: &[u8]) -> Result<Self, serde_json::Error> {
        let ingress: Ingress = serde_json::from_slice(json)?;
        let class = match (
            ingress
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.clone()),
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION).cloned()),
        ) {
            (Some(name), _) => ClassChoice::Named(name),
            (None, Some(name)) => ClassChoice::Annotated(name),
            (None, None) => ClassChoice::Unset,
        };
        let spec = ingress.spec.unwrap_or_default();
        let rules = spec
            .rules
            .unwrap_or_default()
            .into_iter()
            .map(|rule| Rule {
                host: rule.host.filter(|host| !host.is_empty()),
                paths: rule
                    .http
                    .map(|http| http.paths)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|path| {
                        let kind = match path.path_type.as_str() {
                            "Exact" => PathKind::Exact,
                            "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
                            other => {
                                warn!(ingress = %id, path_type = other, "skipping a path with an unknown pathType");
                                return None;
                            }
                        };
                        Some(PathRule {
                            kind,
                            path: path.path.filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into()),
                            backend: backend_ref(id, path.backend)?,
                        })
                    })
                    .collect(),
            })
            .collect();
        Ok(Self {
            created: ingress.metadata.creation_timestamp,
            class,
            default_backend: spec.default_backend.and_then(|b| backend_ref(id, b)),
            rules,
            tls: spec
                .tls
                .unwrap_or_default()
                .into_iter()
                .map(|tls| TlsEntry {
                    hosts: tls.hosts.unwrap_or_default(),
                    secret: tls.secret_name.filter(|s| !s.is_empty()),
                })
                .collect(),
        })
    }
}

fn backend_ref(id: &ObjectRef, backend: IngressBackend) -> Option<BackendRef> {
    if let Some(resource) = backend.resource {
        return Some(BackendRef::Resource(format!(
            "{}/{}",
            resource.kind, resource.name
        )));
    }
    let Some(service) = backend.service else {
        warn!(ingress = %id, "skipping a backend with neither service nor resource");
        return None;
    };
    let port = service.port.unwrap_or_default();
    let port = match (port.number, port.name) {
        (Some(number), _) => match u16::try_from(number) {
            Ok(number) if number > 0 => PortRef::Number(number),
            _ => {
                warn!(ingress = %id, service = %service.name, number, "skipping a backend port out of range");
                return None;
            }
        },
        (None, Some(name)) if !name.is_empty() => PortRef::Name(name),
        _ => {
            warn!(ingress = %id, service = %service.name, "skipping a backend without a port");
            return None;
        }
    };
    Some(BackendRef::Service {
        name: service.name,
        port,
    })
}

impl ClassRecord {
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let class: IngressClass = serde_json::from_slice(json)?;
        Ok(Self {
            is_default: class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|value| value == "true"),
        })
    }
}

impl From<Secret> for SecretRecord {
    fn from(secret: Secret) -> Self {
        let mut data = secret.data.unwrap_or_default();
        Self {
            type_: secret.type_,
            cert: data.remove("tls.crt").map(|bytes| bytes.0),
            key: data.remove("tls.key").map(|bytes| bytes.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> ObjectRef {
        ObjectRef {
            namespace: "default".into(),
            name: "web".into(),
        }
    }

    #[test]
    fn reads_rules_class_and_tls() {
        let json = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": { "name": "web", "namespace": "default",
                "annotations": { LEGACY_CLASS_ANNOTATION: "skiff" } },
            "spec": {
                "defaultBackend": { "service": { "name": "fallback", "port": { "name": "http" } } },
                "rules": [{ "host": "a.example.com", "http": { "paths": [
                    { "path": "/api", "pathType": "Exact", "backend": { "service": { "name": "api", "port": { "number": 8080 } } } },
                    { "pathType": "ImplementationSpecific", "backend": { "service": { "name": "web", "port": { "number": 80 } } } },
                    { "path": "/x", "pathType": "Regex", "backend": { "service": { "name": "web", "port": { "number": 80 } } } },
                ] } }, { "http": { "paths": [] } }],
                "tls": [{ "hosts": ["a.example.com"], "secretName": "a-tls" }],
            },
        });
        let record = IngressRecord::from_json(&id(), json.to_string().as_bytes()).unwrap();
        assert_eq!(record.class, ClassChoice::Annotated("skiff".into()));
        assert_eq!(
            record.default_backend,
            Some(BackendRef::Service {
                name: "fallback".into(),
                port: PortRef::Name("http".into())
            })
        );
        assert_eq!(record.rules.len(), 2);
        assert_eq!(record.rules[0].host.as_deref(), Some("a.example.com"));
        let paths: Vec<(PathKind, &str)> = record.rules[0]
            .paths
            .iter()
            .map(|p| (p.kind, p.path.as_str()))
            .collect();
        assert_eq!(paths, [(PathKind::Exact, "/api"), (PathKind::Prefix, "/")]);
        assert_eq!(record.rules[1].host, None);
        assert_eq!(record.tls[0].secret.as_deref(), Some("a-tls"));
    }

    #[test]
    fn class_name_beats_the_annotation() {
        let json = json!({
            "metadata": { "name": "web", "annotations": { LEGACY_CLASS_ANNOTATION: "other" } },
            "spec": { "ingressClassName": "skiff" },
        });
        let record = IngressRecord::from_json(&id(), json.to_string().as_bytes()).unwrap();
        assert_eq!(record.class, ClassChoice::Named("skiff".into()));
    }

    #[test]
    fn secret_fields_are_decoded() {
        let json = json!({
            "type": "kubernetes.io/tls",
            "data": { "tls.crt": "Y2VydA==", "ca.crt": "eA==" },
        });
        let secret = SecretRecord::from(serde_json::from_value::<Secret>(json).unwrap());
        assert_eq!(secret.cert.as_deref(), Some(&b"cert"[..]));
        assert_eq!(secret.key, None);
    }
}
