//! The Ingresses of skiff's classes: `status.loadBalancer.ingress` is the
//! load balancer IPs of `kube-system/skiff-ingress` (what `kubectl get
//! ingress` shows as ADDRESS), and a Warning Event tells of a backend
//! Service or a TLS Secret that does not exist, or a TLS Secret without a
//! certificate or key. Each problem is recorded once while it lasts.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::classes::{is_served, skiff_classes};
use crate::controllers::client::written;
use crate::controllers::kind::Kind;
use crate::controllers::{Cache, Context, Controller, ControllerError, events, meta};
use crate::kinds::{INGRESS_SERVICE_NAME, INGRESS_SERVICE_NAMESPACE};

const COMPONENT: &str = "skiff-ingress-controller";

/// A problem of one Ingress, as its Event says it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Problem {
    reason: &'static str,
    message: String,
}

#[derive(Default)]
pub struct IngressStatus {
    /// The problems already recorded, by Ingress uid: an Event is written
    /// when a problem appears, not on every pass while it lasts.
    recorded: BTreeSet<(String, Problem)>,
}

impl Controller for IngressStatus {
    const NAME: &'static str = "ingress-status";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let cache = &context.cache;
        let classes = skiff_classes(cache);
        let wanted_status = load_balancer_status(cache);
        let mut wrote = false;
        let mut current = BTreeSet::new();
        for ingress in cache.list(Kind::Ingress) {
            if !is_served(&ingress, &classes) {
                continue;
            }
            let uid = meta::uid(&ingress).to_owned();
            for problem in problems(cache, &ingress) {
                let key = (uid.clone(), problem);
                if !self.recorded.contains(&key) {
                    let Problem { reason, message } = &key.1;
                    events::record(
                        context, &ingress, "Ingress", "Warning", reason, message, COMPONENT,
                    )
                    .await;
                }
                current.insert(key);
            }
            if ingress["status"]["loadBalancer"] != wanted_status {
                let mut updated = ingress.clone();
                updated["status"] = json!({ "loadBalancer": wanted_status });
                wrote |= written(context.client.update_status(Kind::Ingress, &updated).await)?;
            }
        }
        self.recorded = current;
        Ok(if wrote { vec![Kind::Ingress] } else { vec![] })
    }
}

/// `status.loadBalancer` of a served Ingress: the Service's load balancer
/// IPs and hostnames.
fn load_balancer_status(cache: &Cache) -> Value {
    let service = cache.get(
        Kind::Service,
        Some(INGRESS_SERVICE_NAMESPACE),
        INGRESS_SERVICE_NAME,
    );
    let entries: Vec<Value> = service
        .as_ref()
        .and_then(|service| service["status"]["loadBalancer"]["ingress"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let mut address = serde_json::Map::new();
            for field in ["ip", "hostname"] {
                if let Some(value) = entry[field].as_str().filter(|v| !v.is_empty()) {
                    address.insert(field.to_owned(), json!(value));
                }
            }
            (!address.is_empty()).then_some(Value::Object(address))
        })
        .collect();
    if entries.is_empty() {
        json!({})
    } else {
        json!({ "ingress": entries })
    }
}

/// What is wrong with what `ingress` refers to, in the order of its spec.
fn problems(cache: &Cache, ingress: &Value) -> Vec<Problem> {
    let namespace = meta::namespace(ingress);
    let spec = &ingress["spec"];
    let paths = spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["http"]["paths"].as_array().into_iter().flatten());
    let backends =
        std::iter::once(&spec["defaultBackend"]).chain(paths.map(|path| &path["backend"]));
    let mut services: Vec<&str> = Vec::new();
    for name in backends.filter_map(|backend| backend["service"]["name"].as_str()) {
        if !services.contains(&name) {
            services.push(name);
        }
    }
    let mut problems: Vec<Problem> = services
        .into_iter()
        .filter(|name| cache.get(Kind::Service, Some(namespace), name).is_none())
        .map(|name| Problem {
            reason: "ServiceNotFound",
            message: format!(
                "Service \"{namespace}/{name}\" not found: requests routed to it are answered 503"
            ),
        })
        .collect();
    let secrets = spec["tls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tls| tls["secretName"].as_str().filter(|name| !name.is_empty()));
    let mut seen = Vec::new();
    for name in secrets {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        problems.extend(secret_problem(
            namespace,
            name,
            cache.get(Kind::Secret, Some(namespace), name).as_ref(),
        ));
    }
    problems
}

/// What is wrong with the TLS Secret `name` (`secret`, if it exists).
fn secret_problem(namespace: &str, name: &str, secret: Option<&Value>) -> Option<Problem> {
    let Some(secret) = secret else {
        return Some(Problem {
            reason: "SecretNotFound",
            message: format!(
                "TLS Secret \"{namespace}/{name}\" not found: its hosts are served without it"
            ),
        });
    };
    let missing: Vec<&str> = ["tls.crt", "tls.key"]
        .into_iter()
        .filter(|key| {
            secret["data"][*key]
                .as_str()
                .is_none_or(|value| value.is_empty())
        })
        .collect();
    (!missing.is_empty()).then(|| Problem {
        reason: "InvalidTLSSecret",
        message: format!(
            "TLS Secret \"{namespace}/{name}\" has no {}: its hosts are served without it",
            missing
                .iter()
                .map(|key| format!("\"{key}\""))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_secrets_need_a_certificate_and_a_key() {
        assert_eq!(
            secret_problem("default", "web-tls", None).unwrap().message,
            "TLS Secret \"default/web-tls\" not found: its hosts are served without it"
        );
        let no_key = json!({ "data": { "tls.crt": "Y2VydA==" } });
        let problem = secret_problem("default", "web-tls", Some(&no_key)).unwrap();
        assert_eq!(problem.reason, "InvalidTLSSecret");
        assert_eq!(
            problem.message,
            "TLS Secret \"default/web-tls\" has no \"tls.key\": its hosts are served without it"
        );
        let empty = json!({ "data": { "tls.crt": "", "tls.key": "" } });
        assert_eq!(
            secret_problem("default", "web-tls", Some(&empty))
                .unwrap()
                .message,
            "TLS Secret \"default/web-tls\" has no \"tls.crt\" or \"tls.key\": its hosts are served without it"
        );
        let good = json!({ "data": { "tls.crt": "Y2VydA==", "tls.key": "a2V5" } });
        assert_eq!(secret_problem("default", "web-tls", Some(&good)), None);
    }
}
