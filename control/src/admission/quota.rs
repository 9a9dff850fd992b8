//! kube-apiserver's ResourceQuota plugin: a new (or changed) object's
//! usage is charged to every quota of its namespace that covers it,
//! refused when one would go over `hard`. The charge is written into the
//! quotas' `status.used` with one compare-and-swap over all of them before
//! the object itself is written, so two creates at once cannot both take
//! the last room; the quota controller later corrects what was charged
//! for writes that then failed.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::usage::{COMPUTE, Usage, charged_by, container_usage, pretty, usage};
use crate::quantity::Quantity;

/// The scopes a quota may have; all are about pods.
pub const SCOPES: &[&str] = &[
    "BestEffort",
    "NotBestEffort",
    "NotTerminating",
    "Terminating",
];

/// A quantity list (`hard`, `used`) as a usage.
pub fn quantities(list: &Value) -> Usage {
    list.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, amount)| Some((name.clone(), Quantity::of(amount)?)))
        .collect()
}

/// A usage as a quantity list.
pub fn to_list(usage: &Usage) -> Value {
    usage
        .iter()
        .map(|(name, amount)| (name.clone(), json!(amount.to_string())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Whether the quota's scopes select `object` of `plural` in `group`.
pub fn selects(quota: &Value, group: &str, plural: &str, object: &Value) -> bool {
    let scopes: Vec<&str> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if scopes.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    let terminating = !object["spec"]["activeDeadlineSeconds"].is_null();
    let best_effort = ["containers", "initContainers"].iter().all(|field| {
        object["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .all(|container| container_usage(container).is_empty())
    });
    scopes.iter().all(|scope| match *scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        _ => false,
    })
}

/// The quota resource names of `hard` that objects of `plural` in `group`
/// charge.
fn covered(hard: &Usage, group: &str, plural: &str) -> Vec<String> {
    hard.keys()
        .filter(|name| charged_by(name).is_some_and(|(g, p)| g == group && p == plural))
        .cloned()
        .collect()
}

/// "must specify" for the compute resources `required` that some
/// container of the pod does not set.
fn missing_compute(pod: &Value, required: &[String]) -> Option<String> {
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for field in ["containers", "initContainers"] {
        for container in pod["spec"][field].as_array().into_iter().flatten() {
            let set = container_usage(container);
            for name in required.iter().filter(|name| !set.contains_key(*name)) {
                missing
                    .entry(name)
                    .or_default()
                    .push(container["name"].as_str().unwrap_or_default());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .into_iter()
        .map(|(name, mut containers)| {
            containers.sort_unstable();
            containers.dedup();
            format!("{name} for: {}", containers.join(","))
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// What an admission of `object` (replacing `old`) does to the quotas.
#[derive(Debug, PartialEq)]
pub enum Charge {
    /// The quotas to write back, with their new `status.used`.
    Write(Vec<Value>),
    /// Refused, with upstream's reason.
    Refuse(String),
}

/// Charges `object` (of `plural` in `group`, replacing `old` on an update)
/// to `quotas`, as kube's quota admission: the containers' constraints,
/// then each quota's known usage, then room for the increase.
pub fn charge(
    quotas: &[Value],
    group: &str,
    plural: &str,
    old: Option<&Value>,
    object: &Value,
) -> Charge {
    let mut interesting = Vec::new();
    for quota in quotas {
        if !selects(quota, group, plural, object) {
            continue;
        }
        let name = quota["metadata"]["name"].as_str().unwrap_or_default();
        let hard = quantities(&quota["status"]["hard"]);
        let covered = covered(&hard, group, plural);
        if group.is_empty() && plural == "pods" && old.is_none() {
            let required: Vec<String> = covered
                .iter()
                .filter(|name| COMPUTE.contains(&name.as_str()))
                .cloned()
                .collect();
            if let Some(why) = missing_compute(object, &required) {
                return Charge::Refuse(format!("failed quota: {name}: {why}"));
            }
        }
        if !covered.is_empty() {
            interesting.push((quota, name, hard, covered));
        }
    }
    for (quota, name, _, covered) in &interesting {
        let used = &quota["status"]["used"];
        let unknown: Vec<&str> = covered
            .iter()
            .filter(|resource| used.get(resource.as_str()).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Charge::Refuse(format!(
                "status unknown for quota: {name}, resources: {}",
                unknown.join(",")
            ));
        }
    }
    let before = old.map(|old| usage(group, plural, old)).unwrap_or_default();
    let delta: Usage = usage(group, plural, object)
        .into_iter()
        .map(|(name, amount)| {
            let was = before.get(&name).copied().unwrap_or(Quantity::ZERO);
            (name, amount - was)
        })
        .filter(|(_, amount)| amount > &Quantity::ZERO)
        .collect();
    let mut writes = Vec::new();
    for (quota, name, hard, covered) in interesting {
        let requested: Usage = delta
            .iter()
            .filter(|(resource, _)| covered.contains(resource))
            .map(|(resource, amount)| (resource.clone(), *amount))
            .collect();
        if requested.is_empty() {
            continue;
        }
        let mut used = quantities(&quota["status"]["used"]);
        let mut exceeded = Vec::new();
        for (resource, amount) in &requested {
            let total = used.get(resource).copied().unwrap_or(Quantity::ZERO) + *amount;
            if hard.get(resource).is_some_and(|limit| total > *limit) {
                exceeded.push(resource.clone());
            }
            used.insert(resource.clone(), total);
        }
        if !exceeded.is_empty() {
            let mask = |usage: &Usage| -> Usage {
                usage
                    .iter()
                    .filter(|(resource, _)| exceeded.contains(resource))
                    .map(|(resource, amount)| (resource.clone(), *amount))
                    .collect()
            };
            return Charge::Refuse(format!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                pretty(&mask(&requested)),
                pretty(&mask(&quantities(&quota["status"]["used"]))),
                pretty(&mask(&hard)),
            ));
        }
        let mut charged = quota.clone();
        charged["status"]["used"] = to_list(&used);
        writes.push(charged);
    }
    Charge::Write(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(name: &str, hard: Value, used: Value) -> Value {
        json!({ "metadata": { "name": name }, "spec": { "hard": hard }, "status": { "hard": hard, "used": used } })
    }

    fn pod(resources: Value) -> Value {
        json!({ "spec": { "containers": [{ "name": "app", "resources": resources }] }, "status": { "phase": "Pending" } })
    }

    #[test]
    fn counts_and_refuses_over_hard() {
        let full = quota("q", json!({ "pods": "1" }), json!({ "pods": "1" }));
        assert_eq!(
            charge(&[full], "", "pods", None, &pod(json!({}))),
            Charge::Refuse(
                "exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1".into()
            )
        );
        let room = quota(
            "q",
            json!({ "pods": "2", "configmaps": "1" }),
            json!({ "pods": "1", "configmaps": "0" }),
        );
        let Charge::Write(written) = charge(&[room], "", "pods", None, &pod(json!({}))) else {
            panic!("refused");
        };
        assert_eq!(
            written[0]["status"]["used"],
            json!({ "pods": "2", "configmaps": "0" })
        );
    }

    #[test]
    fn compute_quota_needs_every_container_to_set_it() {
        let cpu = quota(
            "compute",
            json!({ "requests.cpu": "1", "limits.memory": "1Gi" }),
            json!({ "requests.cpu": "0", "limits.memory": "0" }),
        );
        assert_eq!(
            charge(
                std::slice::from_ref(&cpu),
                "",
                "pods",
                None,
                &pod(json!({}))
            ),
            Charge::Refuse(
                "failed quota: compute: must specify limits.memory for: app; requests.cpu for: app"
                    .into()
            )
        );
        let big = pod(json!({ "requests": { "cpu": "2" }, "limits": { "memory": "512Mi" } }));
        assert_eq!(
            charge(std::slice::from_ref(&cpu), "", "pods", None, &big),
            Charge::Refuse(
                "exceeded quota: compute, requested: requests.cpu=2, used: requests.cpu=0, limited: requests.cpu=1".into()
            )
        );
        let unknown =
            json!({ "metadata": { "name": "new" }, "status": { "hard": { "pods": "3" } } });
        assert_eq!(
            charge(&[unknown], "", "pods", None, &pod(json!({}))),
            Charge::Refuse("status unknown for quota: new, resources: pods".into())
        );
    }

    #[test]
    fn scopes_select_pods() {
        let best_effort = json!({ "spec": { "scopes": ["BestEffort"] } });
        assert!(selects(&best_effort, "", "pods", &pod(json!({}))));
        assert!(!selects(
            &best_effort,
            "",
            "pods",
            &pod(json!({ "requests": { "cpu": "1" } }))
        ));
        assert!(!selects(&best_effort, "", "services", &json!({})));
    }
}
