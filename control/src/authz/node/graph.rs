//! What each node's pods use (kube's node authorizer graph, flattened to
//! one set per node): the pods bound to it and the Secrets, ConfigMaps,
//! PersistentVolumeClaims (and their bound PersistentVolumes) and
//! ServiceAccounts they reference; and the Secrets Ingresses name for TLS.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use skiff_etcd::keys::{self, collection_prefix};

use crate::authz::follow::Objects;

/// The kinds a node reaches through its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    PersistentVolume,
    ServiceAccount,
}

/// An object a node reaches; the namespace is empty for PersistentVolumes.
type Reached = (Kind, String, String);

/// Every node's reach, built from the stored pods, claims and Ingresses.
#[derive(Debug, Default)]
pub struct NodeGraph {
    reach: HashMap<String, HashSet<Reached>>,
    /// `(namespace, name)` of every Secret an Ingress names in `spec.tls`.
    ingress_tls: HashSet<(String, String)>,
}

/// The etcd roots the graph is built from.
pub const ROOTS: [&str; 3] = [keys::PODS, keys::PERSISTENT_VOLUME_CLAIMS, keys::INGRESSES];

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

impl NodeGraph {
    /// The graph of the stored objects, under their etcd keys.
    pub fn from_objects(objects: &Objects) -> Self {
        let under = |root: &str| {
            let prefix = collection_prefix(root, None);
            objects
                .iter()
                .filter(move |(key, _)| key.starts_with(&prefix))
                .map(|(_, object)| object)
        };
        let volumes: HashMap<(&str, &str), &str> = under(keys::PERSISTENT_VOLUME_CLAIMS)
            .map(|claim| {
                let metadata = &claim["metadata"];
                (
                    (text(&metadata["namespace"]), text(&metadata["name"])),
                    text(&claim["spec"]["volumeName"]),
                )
            })
            .filter(|(_, volume)| !volume.is_empty())
            .collect();
        let mut graph = Self::default();
        for pod in under(keys::PODS) {
            graph.add_pod(pod, &volumes);
        }
        for ingress in under(keys::INGRESSES) {
            let namespace = text(&ingress["metadata"]["namespace"]);
            for tls in items(&ingress["spec"]["tls"]) {
                let secret = text(&tls["secretName"]);
                if !secret.is_empty() {
                    graph
                        .ingress_tls
                        .insert((namespace.to_owned(), secret.to_owned()));
                }
            }
        }
        graph
    }

    /// Adds what `pod` uses to its node's reach, if it is bound to one;
    /// `volumes` are the claims' bound volumes.
    fn add_pod(&mut self, pod: &Value, volumes: &HashMap<(&str, &str), &str>) {
        let node = text(&pod["spec"]["nodeName"]);
        if node.is_empty() {
            return;
        }
        let namespace = text(&pod["metadata"]["namespace"]);
        let reach = self.reach.entry(node.to_owned()).or_default();
        let mut add = |kind: Kind, name: &str| {
            if !name.is_empty() {
                reach.insert((kind, namespace.to_owned(), name.to_owned()));
            }
        };
        add(Kind::Pod, text(&pod["metadata"]["name"]));
        let mut claims = Vec::new();
        references(pod, &mut |kind, name| {
            add(kind, name);
            if kind == Kind::PersistentVolumeClaim {
                claims.push(name.to_owned());
            }
        });
        for claim in claims {
            if let Some(volume) = volumes.get(&(namespace, claim.as_str())) {
                reach.insert((Kind::PersistentVolume, String::new(), (*volume).to_owned()));
            }
        }
    }

    /// Whether a pod bound to `node` is, or uses, the object.
    pub fn reaches(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.reach
            .get(node)
            .is_some_and(|reach| reach.contains(&(kind, namespace.to_owned(), name.to_owned())))
    }

    /// Whether an Ingress names the Secret for TLS.
    pub fn is_ingress_tls(&self, namespace: &str, name: &str) -> bool {
        self.ingress_tls
            .contains(&(namespace.to_owned(), name.to_owned()))
    }
}

/// Visits the objects `pod` references by name in its namespace: its
/// service account, image pull secrets, the sources of its volumes and of
/// its containers' environment (kube's `VisitPodSecretNames` and
/// `VisitPodConfigmapNames`, and the claims of `AddPod`).
fn references(pod: &Value, visit: &mut dyn FnMut(Kind, &str)) {
    let spec = &pod["spec"];
    visit(Kind::ServiceAccount, text(&spec["serviceAccountName"]));
    for secret in items(&spec["imagePullSecrets"]) {
        visit(Kind::Secret, text(&secret["name"]));
    }
    for volume in items(&spec["volumes"]) {
        visit(Kind::Secret, text(&volume["secret"]["secretName"]));
        visit(Kind::ConfigMap, text(&volume["configMap"]["name"]));
        for source in items(&volume["projected"]["sources"]) {
            visit(Kind::Secret, text(&source["secret"]["name"]));
            visit(Kind::ConfigMap, text(&source["configMap"]["name"]));
        }
        visit(
            Kind::PersistentVolumeClaim,
            text(&volume["persistentVolumeClaim"]["claimName"]),
        );
        // A generic ephemeral volume's claim is named after the pod and
        // the volume.
        if volume["ephemeral"].is_object() {
            let claim = format!(
                "{}-{}",
                text(&pod["metadata"]["name"]),
                text(&volume["name"])
            );
            visit(Kind::PersistentVolumeClaim, &claim);
        }
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| items(&spec[*field]));
    for container in containers {
        for env in items(&container["env"]) {
            let from = &env["valueFrom"];
            visit(Kind::Secret, text(&from["secretKeyRef"]["name"]));
            visit(Kind::ConfigMap, text(&from["configMapKeyRef"]["name"]));
        }
        for source in items(&container["envFrom"]) {
            visit(Kind::Secret, text(&source["secretRef"]["name"]));
            visit(Kind::ConfigMap, text(&source["configMapRef"]["name"]));
        }
    }
}
