//! The admin kubeconfig: the CA and the admin client identity embedded, so
//! `kubectl --kubeconfig <file>` works from any directory.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::pki::Pki;

/// The kubeconfig document (JSON, which kubectl reads as YAML).
pub fn admin(pki: &Pki, server_url: &str) -> Value {
    let b64 = |pem: &str| STANDARD.encode(pem);
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "skiff",
            "cluster": {
                "server": server_url,
                "certificate-authority-data": b64(&pki.ca_cert),
            },
        }],
        "users": [{
            "name": "admin",
            "user": {
                "client-certificate-data": b64(&pki.admin_cert),
                "client-key-data": b64(&pki.admin_key),
            },
        }],
        "contexts": [{
            "name": "skiff",
            "context": { "cluster": "skiff", "user": "admin" },
        }],
        "current-context": "skiff",
        "preferences": {},
    })
}
