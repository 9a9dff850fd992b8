//! kube-apiserver's LimitRanger plugin: a new pod's containers get the
//! namespace's LimitRange defaults for the requests and limits they leave
//! out (and an annotation saying so), then pods and claims are checked
//! against the ranges' min, max and maxLimitRequestRatio.

use serde_json::{Map, Value, json};

use crate::quantity::Quantity;

/// The annotation naming what the plugin filled in.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The `limits` items of `ranges` of `kind` (Container, Pod,
/// PersistentVolumeClaim).
fn items<'a>(ranges: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .flat_map(|range| range["spec"]["limits"].as_array().into_iter().flatten())
        .filter(move |item| item["type"] == kind)
}

fn list(value: &Value) -> impl Iterator<Item = (&String, Quantity)> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, amount)| Some((name, Quantity::of(amount)?)))
}

/// Fills the containers' missing requests and limits from the Container
/// ranges' `defaultRequest` and `default` (the first range that has one
/// wins) and annotates the pod with what was set.
pub fn default_pod(pod: &mut Value, ranges: &[Value]) {
    let mut requests = Map::new();
    let mut limits = Map::new();
    for item in items(ranges, "Container") {
        for (field, defaults) in [("defaultRequest", &mut requests), ("default", &mut limits)] {
            for (name, amount) in item[field].as_object().into_iter().flatten() {
                defaults.entry(name.clone()).or_insert(amount.clone());
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (field, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = pod["spec"][field].as_array_mut() else {
            continue;
        };
        for container in containers {
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            for (part, defaults, noun) in [
                ("limits", &limits, "limit"),
                ("requests", &requests, "request"),
            ] {
                let set = fill(&mut container["resources"][part], defaults);
                if !set.is_empty() {
                    notes.push(format!("{} {noun} for {what} {name}", set.join(", ")));
                }
            }
        }
    }
    if !notes.is_empty() {
        pod["metadata"]["annotations"][ANNOTATION] =
            json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

/// Sets in `list` what `defaults` has and it lacks; returns the names set.
fn fill(list: &mut Value, defaults: &Map<String, Value>) -> Vec<String> {
    if !list.is_object() {
        *list = json!({});
    }
    let mut set = Vec::new();
    for (name, amount) in defaults {
        if list.get(name).is_none() {
            list[name] = amount.clone();
            set.push(name.clone());
        }
    }
    set
}

/// Why the pod breaks the ranges, in upstream's words; empty when it fits.
pub fn check_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    for item in items(ranges, "Container") {
        for field in ["containers", "initContainers"] {
            for container in pod["spec"][field].as_array().into_iter().flatten() {
                let resources = &container["resources"];
                check(
                    item,
                    "Container",
                    &resources["requests"],
                    &resources["limits"],
                    &mut errors,
                );
            }
        }
    }
    for item in items(ranges, "Pod") {
        let (requests, limits) = pod_totals(pod);
        check(item, "Pod", &requests, &limits, &mut errors);
    }
    errors
}

/// Why the claim breaks the ranges; empty when it fits.
pub fn check_claim(claim: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let requests = &claim["spec"]["resources"]["requests"];
    for item in items(ranges, "PersistentVolumeClaim") {
        for (name, min) in list(&item["min"]) {
            errors.extend(below_min(
                "PersistentVolumeClaim",
                name,
                min,
                requests,
                &json!({}),
            ));
        }
        for (name, max) in list(&item["max"]) {
            let kind = "PersistentVolumeClaim";
            match Quantity::of(&requests[name]) {
                None => errors.push(format!(
                    "maximum {name} usage per {kind} is {max}.  No request is specified"
                )),
                Some(request) if request > max => errors.push(format!(
                    "maximum {name} usage per {kind} is {max}, but request is {request}"
                )),
                Some(_) => {}
            }
        }
    }
    errors
}

/// The pod's requests and limits as one: the containers' sum, or the
/// largest init container's when more.
fn pod_totals(pod: &Value) -> (Value, Value) {
    let usage = super::usage::usage("", "pods", pod);
    let mut requests = json!({});
    let mut limits = json!({});
    for (name, amount) in usage {
        if let Some(resource) = name.strip_prefix("requests.") {
            requests[resource] = json!(amount.to_string());
        } else if let Some(resource) = name.strip_prefix("limits.") {
            limits[resource] = json!(amount.to_string());
        }
    }
    (requests, limits)
}

fn check(item: &Value, kind: &str, requests: &Value, limits: &Value, errors: &mut Vec<String>) {
    for (name, min) in list(&item["min"]) {
        errors.extend(below_min(kind, name, min, requests, limits));
    }
    for (name, max) in list(&item["max"]) {
        let request = Quantity::of(&requests[name]);
        match Quantity::of(&limits[name]) {
            None => errors.push(format!(
                "maximum {name} usage per {kind} is {max}.  No limit is specified"
            )),
            Some(limit) if limit > max => errors.push(format!(
                "maximum {name} usage per {kind} is {max}, but limit is {limit}"
            )),
            Some(_) => match request {
                Some(request) if request > max => errors.push(format!(
                    "maximum {name} usage per {kind} is {max}, but request is {request}"
                )),
                _ => {}
            },
        }
    }
    for (name, ratio) in list(&item["maxLimitRequestRatio"]) {
        let request = Quantity::of(&requests[name]).filter(|q| !q.is_zero());
        let limit = Quantity::of(&limits[name]).filter(|q| !q.is_zero());
        match (request, limit) {
            (None, _) => errors.push(format!(
                "{name} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"
            )),
            (_, None) => errors.push(format!(
                "{name} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0"
            )),
            (Some(request), Some(limit)) => {
                let observed = limit.ratio(request);
                if observed > ratio.as_f64() {
                    errors.push(format!(
                        "{name} max limit to request ratio per {kind} is {ratio}, but provided ratio is {observed:.6}"
                    ));
                }
            }
        }
    }
}

fn below_min(
    kind: &str,
    name: &str,
    min: Quantity,
    requests: &Value,
    limits: &Value,
) -> Option<String> {
    let Some(request) = Quantity::of(&requests[name]) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {min}.  No request is specified"
        ));
    };
    if request < min {
        return Some(format!(
            "minimum {name} usage per {kind} is {min}, but request is {request}"
        ));
    }
    match Quantity::of(&limits[name]) {
        Some(limit) if limit < min => Some(format!(
            "minimum {name} usage per {kind} is {min}, but limit is {limit}"
        )),
        _ => None,
    }
}

/// Errors as apimachinery's aggregate prints them: one alone, several in
/// brackets, each once.
pub fn aggregate(errors: &[String]) -> String {
    let mut unique: Vec<&String> = Vec::new();
    for error in errors {
        if !unique.contains(&error) {
            unique.push(error);
        }
    }
    match unique.as_slice() {
        [one] => (*one).clone(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Vec<Value> {
        vec![json!({ "spec": { "limits": limits } })]
    }

    #[test]
    fn defaults_fill_what_containers_leave_out() {
        let ranges = range(json!([{
            "type": "Container",
            "default": { "cpu": "500m", "memory": "256Mi" },
            "defaultRequest": { "cpu": "100m", "memory": "128Mi" },
        }]));
        let mut pod = json!({ "metadata": {}, "spec": { "containers": [
            { "name": "app" },
            { "name": "side", "resources": { "requests": { "cpu": "50m" } } },
        ] } });
        default_pod(&mut pod, &ranges);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "100m"
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["requests"]["cpu"],
            "50m"
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory limit for container app; cpu, memory request for container app; \
             cpu, memory limit for container side; memory request for container side"
        );
    }

    #[test]
    fn min_max_and_ratio_in_upstream_words() {
        let ranges = range(json!([{
            "type": "Container",
            "min": { "cpu": "100m" },
            "max": { "memory": "1Gi" },
            "maxLimitRequestRatio": { "cpu": "4" },
        }]));
        let pod = json!({ "spec": { "containers": [{ "name": "app", "resources": {
            "requests": { "cpu": "50m", "memory": "1Gi" },
            "limits": { "cpu": "1", "memory": "2Gi" },
        } }] } });
        let errors = check_pod(&pod, &ranges);
        assert_eq!(
            aggregate(&errors),
            "[minimum cpu usage per Container is 100m, but request is 50m, \
             maximum memory usage per Container is 1Gi, but limit is 2Gi, \
             cpu max limit to request ratio per Container is 4, but provided ratio is 20.000000]"
        );
        let claims =
            range(json!([{ "type": "PersistentVolumeClaim", "max": { "storage": "1Gi" } }]));
        let claim = json!({ "spec": { "resources": { "requests": { "storage": "2Gi" } } } });
        assert_eq!(
            check_claim(&claim, &claims),
            ["maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"]
        );
    }
}
