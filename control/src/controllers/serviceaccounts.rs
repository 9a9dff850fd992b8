//! What every namespace gets for its pods' API access, as
//! kube-controller-manager's `serviceaccount` and `root-ca-cert-publisher`
//! controllers: a `default` ServiceAccount and the ConfigMap
//! `kube-root-ca.crt` holding the cluster CA (what the projected
//! `kube-api-access-*` volume mounts as `ca.crt`).

use serde_json::{Value, json};
use tracing::info;

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta, written};
use crate::admission::serviceaccount::{DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIG_MAP, ROOT_CA_KEY};

/// kube's description of that ConfigMap.
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Namespaces that are not being deleted (kube creates nothing in those).
fn live_namespaces(context: &Context) -> Vec<String> {
    context
        .cache
        .list(Kind::Namespace)
        .iter()
        .filter(|namespace| !meta::is_terminating(namespace))
        .map(|namespace| meta::name(namespace).to_owned())
        .collect()
}

/// A create that lost to a namespace being deleted, or to someone else's
/// create, is no failure: the next pass looks again.
fn created(result: Result<Value, super::ClientError>) -> Result<bool, ControllerError> {
    match result {
        Err(error) if error.is_forbidden() || error.code == 409 => Ok(false),
        result => Ok(written(result)?),
    }
}

pub struct DefaultServiceAccounts;

impl Controller for DefaultServiceAccounts {
    const NAME: &'static str = "serviceaccount";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let mut wrote = Vec::new();
        for namespace in live_namespaces(context) {
            let existing = context.cache.get(
                Kind::ServiceAccount,
                Some(&namespace),
                DEFAULT_SERVICE_ACCOUNT,
            );
            if existing.is_some() {
                continue;
            }
            let account = json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": { "name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace },
            });
            let result = context
                .client
                .create(Kind::ServiceAccount, Some(&namespace), &account)
                .await;
            if created(result)? {
                info!(namespace, "created the default ServiceAccount");
                wrote.push(Kind::ServiceAccount);
            }
        }
        Ok(wrote)
    }
}

/// Publishes `ControllerConfig::root_ca_cert`.
pub struct RootCaPublisher;

impl Controller for RootCaPublisher {
    const NAME: &'static str = "root-ca-cert-publisher";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let Some(ca_cert) = context.config.root_ca_cert.as_deref() else {
            return Ok(Vec::new());
        };
        let data = json!({ ROOT_CA_KEY: ca_cert });
        let mut wrote = Vec::new();
        for namespace in live_namespaces(context) {
            let existing = context
                .cache
                .get(Kind::ConfigMap, Some(&namespace), ROOT_CA_CONFIG_MAP);
            let result = match existing {
                None => {
                    let config_map = json!({
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": ROOT_CA_CONFIG_MAP,
                            "namespace": namespace,
                            "annotations": { "kubernetes.io/description": ROOT_CA_DESCRIPTION },
                        },
                        "data": data,
                    });
                    context
                        .client
                        .create(Kind::ConfigMap, Some(&namespace), &config_map)
                        .await
                }
                Some(current) if current["data"] == data => {
                    continue;
                }
                Some(mut current) => {
                    // Someone changed it: kube's publisher puts the CA back.
                    current["data"] = data.clone();
                    context.client.update(Kind::ConfigMap, &current).await
                }
            };
            if created(result)? {
                info!(namespace, "published the cluster CA");
                wrote.push(Kind::ConfigMap);
            }
        }
        Ok(wrote)
    }
}
