//! The resource metrics API, `metrics.k8s.io/v1beta1`, as metrics-server
//! serves it behind its APIService: NodeMetrics and PodMetrics (get and
//! list, label and field selectors), read when asked from each node
//! agent's `/stats/summary` (`kubelet`) and never stored. What `kubectl
//! top nodes` and `kubectl top pods` show.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tracing::warn;

use super::Reply;
use super::query::Query;
use super::registry;
use super::selectors::{FieldSelector, LabelSelector};
use super::state::Api;
use super::status::ApiError;
use crate::store::{ListRequest, collection_prefix};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// The span the agents' CPU rates are measured over: their sampling period.
const WINDOW: &str = "2s";

/// How long an agent gets to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a metrics path names.
#[derive(Debug, PartialEq)]
pub enum Target {
    Nodes {
        name: Option<String>,
    },
    Pods {
        namespace: Option<String>,
        name: Option<String>,
    },
}

/// The target of a path below `/apis/metrics.k8s.io/v1beta1/`.
pub fn route(rest: &[&str]) -> Option<Target> {
    let owned = |name: &&str| Some((*name).to_owned());
    match rest {
        ["nodes"] => Some(Target::Nodes { name: None }),
        ["nodes", name] => Some(Target::Nodes { name: owned(name) }),
        ["pods"] => Some(Target::Pods {
            namespace: None,
            name: None,
        }),
        ["namespaces", namespace, "pods"] => Some(Target::Pods {
            namespace: owned(namespace),
            name: None,
        }),
        ["namespaces", namespace, "pods", name] => Some(Target::Pods {
            namespace: owned(namespace),
            name: owned(name),
        }),
        _ => None,
    }
}

/// The group's resources, as `/apis/metrics.k8s.io/v1beta1` lists them.
pub fn resources() -> Value {
    let resource = |name: &str, kind: &str, namespaced: bool| {
        json!({
            "name": name,
            "singularName": "",
            "namespaced": namespaced,
            "kind": kind,
            "verbs": ["get", "list"],
        })
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [
            resource("nodes", "NodeMetrics", false),
            resource("pods", "PodMetrics", true),
        ],
    })
}

/// The group in `/apis`.
pub fn group() -> Value {
    let version = json!({ "groupVersion": API_VERSION, "version": VERSION });
    json!({ "name": GROUP, "versions": [version.clone()], "preferredVersion": version })
}

/// The group in aggregated discovery.
pub fn aggregated_group() -> Value {
    let resource = |name: &str, kind: &str, scope: &str| {
        json!({
            "resource": name,
            "responseKind": { "group": GROUP, "version": VERSION, "kind": kind },
            "scope": scope,
            "singularResource": "",
            "verbs": ["get", "list"],
        })
    };
    json!({
        "metadata": { "name": GROUP },
        "versions": [{
            "version": VERSION,
            "resources": [
                resource("nodes", "NodeMetrics", "Cluster"),
                resource("pods", "PodMetrics", "Namespaced"),
            ],
            "freshness": "Current",
        }],
    })
}

/// A CPU rate in nanocores as a quantity.
fn cpu_quantity(nano_cores: u64) -> String {
    format!("{nano_cores}n")
}

/// Bytes as a quantity, in Ki when whole.
fn memory_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// The `usage` of a summary entry with `cpu` and `memory`: both a rate and
/// a working set, or nothing (a cgroup read once so far).
fn usage(stats: &Value) -> Option<(Value, String)> {
    let cpu = stats["cpu"]["usageNanoCores"].as_u64()?;
    let memory = stats["memory"]["workingSetBytes"].as_u64()?;
    let time = stats["cpu"]["time"].as_str()?.to_owned();
    Some((
        json!({ "cpu": cpu_quantity(cpu), "memory": memory_quantity(memory) }),
        time,
    ))
}

/// A node's NodeMetrics from its agent's summary.
pub fn node_metrics(node: &Value, summary: &Value, now: &Value) -> Option<Value> {
    let (usage, time) = usage(&summary["node"])?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": node["metadata"]["name"],
            "labels": node["metadata"]["labels"],
            "creationTimestamp": now,
        },
        "timestamp": time,
        "window": WINDOW,
        "usage": usage,
    }))
}

/// A pod's PodMetrics from its node's summary; none unless every container
/// the summary has of it has usage.
pub fn pod_metrics(pod: &Value, summary: &Value, now: &Value) -> Option<Value> {
    let metadata = &pod["metadata"];
    let stats = summary["pods"].as_array()?.iter().find(|stats| {
        stats["podRef"]["namespace"] == metadata["namespace"]
            && stats["podRef"]["name"] == metadata["name"]
    })?;
    let mut time = None;
    let containers: Vec<Value> = stats["containers"]
        .as_array()?
        .iter()
        .map(|container| {
            let (usage, at) = usage(container)?;
            time.get_or_insert(at);
            Some(json!({ "name": container["name"], "usage": usage }))
        })
        .collect::<Option<_>>()?;
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": metadata["labels"],
            "creationTimestamp": now,
        },
        "timestamp": time?,
        "window": WINDOW,
        "containers": containers,
    }))
}

impl Api {
    /// GET of a metrics path.
    pub(super) async fn metrics(&self, target: Target, query: &Query) -> Result<Reply, ApiError> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
        let body = match target {
            Target::Nodes { name } => self.node_metrics(name, &labels, query).await?,
            Target::Pods { namespace, name } => {
                self.pod_metrics(namespace, name, &labels, query).await?
            }
        };
        Ok(Reply::Json {
            code: 200,
            body,
            warnings: Vec::new(),
        })
    }

    /// The stored objects of `plural` (core v1) in `namespace` that the
    /// selectors and `name` select.
    async fn selected(
        &self,
        plural: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        labels: &LabelSelector,
        query: &Query,
    ) -> Result<Vec<Value>, ApiError> {
        let resource = registry::find("", "v1", plural).expect("in the table");
        let fields =
            FieldSelector::parse(query.get("fieldSelector").unwrap_or_default(), resource)?;
        let page = self
            .store
            .list(
                &collection_prefix(resource.storage, namespace),
                ListRequest::default(),
                |object| {
                    labels.matches(object)
                        && fields.matches(object)
                        && name.is_none_or(|name| object["metadata"]["name"] == name)
                },
            )
            .await
            .map_err(|error| ApiError::from_store(error, resource, name.unwrap_or_default()))?;
        Ok(page.items)
    }

    /// Each of `nodes`' summaries, asked for all at once; a node whose
    /// agent does not answer is left out.
    async fn summaries(&self, nodes: Vec<Value>) -> BTreeMap<String, Value> {
        let mut asked = JoinSet::new();
        for node in nodes {
            let api = self.clone();
            asked.spawn(async move {
                let name = node["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let summary =
                    tokio::time::timeout(SCRAPE_TIMEOUT, api.node_json(&node, "/stats/summary"))
                        .await;
                (name, summary)
            });
        }
        let mut summaries = BTreeMap::new();
        while let Some(answer) = asked.join_next().await {
            match answer {
                Ok((name, Ok(Ok(summary)))) => {
                    summaries.insert(name, summary);
                }
                Ok((name, Ok(Err(error)))) => warn!(node = name, %error, "no summary"),
                Ok((name, Err(_))) => warn!(node = name, "the summary took too long"),
                Err(error) => warn!(%error, "asking for a summary failed"),
            }
        }
        summaries
    }

    async fn node_metrics(
        &self,
        name: Option<String>,
        labels: &LabelSelector,
        query: &Query,
    ) -> Result<Value, ApiError> {
        let nodes = self
            .selected("nodes", None, name.as_deref(), labels, query)
            .await?;
        let summaries = self.summaries(nodes.clone()).await;
        let items = measure(
            &nodes,
            &summaries,
            |node| &node["metadata"]["name"],
            node_metrics,
        );
        one_or_list("NodeMetrics", name, items)
    }

    async fn pod_metrics(
        &self,
        namespace: Option<String>,
        name: Option<String>,
        labels: &LabelSelector,
        query: &Query,
    ) -> Result<Value, ApiError> {
        let pods = self
            .selected("pods", namespace.as_deref(), name.as_deref(), labels, query)
            .await?;
        let hosts: BTreeSet<&str> = pods
            .iter()
            .filter_map(|pod| pod["spec"]["nodeName"].as_str())
            .collect();
        let nodes = self
            .selected(
                "nodes",
                None,
                None,
                &LabelSelector::default(),
                &Query::default(),
            )
            .await?
            .into_iter()
            .filter(|node| {
                node["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| hosts.contains(name))
            })
            .collect();
        let summaries = self.summaries(nodes).await;
        let items = measure(
            &pods,
            &summaries,
            |pod| &pod["spec"]["nodeName"],
            pod_metrics,
        );
        let name = name.map(|name| format!("{}/{name}", namespace.unwrap_or_default()));
        one_or_list("PodMetrics", name, items)
    }
}

/// The metrics of each of `objects` that its node's summary has.
fn measure(
    objects: &[Value],
    summaries: &BTreeMap<String, Value>,
    node_of: fn(&Value) -> &Value,
    metrics: fn(&Value, &Value, &Value) -> Option<Value>,
) -> Vec<Value> {
    let now = crate::controllers::meta::now();
    objects
        .iter()
        .filter_map(|object| {
            let summary = summaries.get(node_of(object).as_str()?)?;
            metrics(object, summary, &now)
        })
        .collect()
}

/// The one object asked for by `name` (a 404 without it), or the list.
fn one_or_list(kind: &str, name: Option<String>, items: Vec<Value>) -> Result<Value, ApiError> {
    let Some(name) = name else {
        return Ok(json!({
            "kind": format!("{kind}List"),
            "apiVersion": API_VERSION,
            "metadata": {},
            "items": items,
        }));
    };
    items.into_iter().next().ok_or_else(|| {
        let resource = kind.to_lowercase();
        let mut error = ApiError::no_route();
        error.message = format!("{resource}.{GROUP} \"{name}\" not found");
        error.details = Some(json!({ "name": name, "group": GROUP, "kind": resource }));
        error
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_metrics_paths() {
        assert_eq!(route(&["nodes"]), Some(Target::Nodes { name: None }));
        assert_eq!(
            route(&["namespaces", "default", "pods", "web"]),
            Some(Target::Pods {
                namespace: Some("default".into()),
                name: Some("web".into())
            })
        );
        assert_eq!(
            route(&["pods"]),
            Some(Target::Pods {
                namespace: None,
                name: None
            })
        );
        assert_eq!(route(&["services"]), None);
        assert_eq!(route(&["nodes", "n1", "status"]), None);
    }

    fn summary() -> Value {
        let stats = |nano: Option<u64>, bytes: u64| {
            let mut cpu = json!({ "time": "2026-01-01T00:00:00Z", "usageCoreNanoSeconds": 5 });
            if let Some(nano) = nano {
                cpu["usageNanoCores"] = json!(nano);
            }
            json!({ "cpu": cpu, "memory": { "time": "2026-01-01T00:00:00Z", "workingSetBytes": bytes } })
        };
        let mut node = stats(Some(1_500_000_000), 2 * 1024 * 1024);
        node["nodeName"] = json!("n1");
        let mut app = stats(Some(250_000_000), 1000);
        app["name"] = json!("app");
        let mut fresh = stats(None, 4096);
        fresh["name"] = json!("app");
        json!({
            "node": node,
            "pods": [
                { "podRef": { "namespace": "default", "name": "web" }, "containers": [app] },
                { "podRef": { "namespace": "default", "name": "new" }, "containers": [fresh] },
            ],
        })
    }

    #[test]
    fn node_metrics_from_a_summary() {
        let node = json!({ "metadata": { "name": "n1", "labels": { "a": "b" } } });
        let metrics = node_metrics(&node, &summary(), &json!("now")).unwrap();
        assert_eq!(metrics["kind"], "NodeMetrics");
        assert_eq!(metrics["metadata"]["labels"]["a"], "b");
        assert_eq!(metrics["timestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(
            metrics["usage"],
            json!({ "cpu": "1500000000n", "memory": "2048Ki" })
        );
    }

    #[test]
    fn pod_metrics_need_a_rate_for_every_container() {
        let pod = |name: &str| json!({ "metadata": { "namespace": "default", "name": name } });
        let web = pod_metrics(&pod("web"), &summary(), &json!("now")).unwrap();
        assert_eq!(web["metadata"]["name"], "web");
        assert_eq!(
            web["containers"],
            json!([{ "name": "app", "usage": { "cpu": "250000000n", "memory": "1000" } }])
        );
        assert!(pod_metrics(&pod("new"), &summary(), &json!("now")).is_none());
        assert!(pod_metrics(&pod("gone"), &summary(), &json!("now")).is_none());
    }

    #[test]
    fn discovery_lists_both_kinds() {
        let list = resources();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["NodeMetrics", "PodMetrics"]);
        assert_eq!(group()["preferredVersion"]["groupVersion"], API_VERSION);
        assert_eq!(aggregated_group()["metadata"]["name"], GROUP);
    }
}
