//! The certificates the Ingresses of the proxy's class ask for, read from
//! the `kubernetes.io/tls` Secrets their `tls` sections name. A Secret
//! that is missing, lacks `tls.crt` or `tls.key`, or does not parse is
//! logged with the Ingress and the Secret, and its hosts get the default
//! certificate over TLS; their routes serve as before over HTTP.
use std::collections::BTreeSet;

use tracing::{info, warn};

use super::objects::ObjectRef;
use super::table::served;
use super::tls::{Certificates, certified_key};
use super::watch::Objects;

pub fn certificates(objects: &Objects, class: &str) -> Certificates {
    let mut certificates = Certificates::default();
    let mut loaded = BTreeSet::new();
    for (id, ingress) in served(objects, class) {
        for tls in &ingress.tls {
            let Some(name) = &tls.secret else { continue };
            let secret_id = ObjectRef {
                namespace: id.namespace.clone(),
                name: name.clone(),
            };
            let Some(secret) = objects.secrets.get(&secret_id) else {
                warn!(ingress = %id, secret = %secret_id, hosts = ?tls.hosts, "TLS Secret not found; its hosts get the default certificate");
                continue;
            };
            let (Some(cert), Some(key)) = (&secret.cert, &secret.key) else {
                let missing = if secret.cert.is_none() {
                    "tls.crt"
                } else {
                    "tls.key"
                };
                warn!(ingress = %id, secret = %secret_id, missing, hosts = ?tls.hosts, "TLS Secret has no {missing}; its hosts are served over HTTP only");
                continue;
            };
            match certified_key(cert, key) {
                Ok(certified) => {
                    for host in &tls.hosts {
                        certificates.add(host, certified.clone());
                        loaded.insert(format!("{host}={secret_id}"));
                    }
                }
                Err(error) => {
                    warn!(ingress = %id, secret = %secret_id, %error, "TLS Secret unusable; its hosts get the default certificate")
                }
            }
        }
    }
    info!(
        certificates = certificates.len(),
        ?loaded,
        "Ingress TLS certificates loaded"
    );
    certificates
}
