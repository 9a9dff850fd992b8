//! An object a pod refers to (a ConfigMap, Secret or claim) that is not
//! there, or lacks the key asked for: the kubelet's wording, shared by the
//! environment and the volumes that read them.

#[derive(Debug, thiserror::Error)]
pub enum MissingObject {
    #[error("{kind} {namespace}/{name} not found")]
    Object {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    Key {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
}

impl MissingObject {
    pub fn object(kind: &'static str, namespace: &str, name: &str) -> MissingObject {
        MissingObject::Object {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn key(kind: &'static str, namespace: &str, name: &str, key: &str) -> MissingObject {
        MissingObject::Key {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        }
    }
}
