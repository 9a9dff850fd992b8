//! `spec.podFailurePolicy`: the first rule that matches a failed pod (by a
//! container's non-zero exit code or by a pod condition) decides whether
//! the failure fails the job, is ignored, or counts towards backoffLimit.

use serde_json::Value;

use crate::controllers::meta;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fail the job at once, with this message.
    FailJob(String),
    /// Not counted as a failure.
    Ignore,
    /// Counted towards backoffLimit (also when no rule matches).
    Count,
}

/// What the job's policy says about the failed `pod`.
pub fn action(job: &Value, pod: &Value) -> Action {
    let rules = job["spec"]["podFailurePolicy"]["rules"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for (index, rule) in rules.iter().enumerate() {
        let Some(why) = matches(rule, pod) else {
            continue;
        };
        return match rule["action"].as_str() {
            Some("FailJob") => {
                Action::FailJob(format!("{why} matching FailJob rule at index {index}"))
            }
            Some("Ignore") => Action::Ignore,
            _ => Action::Count,
        };
    }
    Action::Count
}

/// Why `rule` matches `pod`, worded as upstream's FailJob message.
fn matches(rule: &Value, pod: &Value) -> Option<String> {
    let pod_name = format!("{}/{}", meta::namespace(pod), meta::name(pod));
    if let Some(patterns) = rule["onPodConditions"].as_array() {
        let conditions = pod["status"]["conditions"].as_array()?;
        return patterns.iter().find_map(|pattern| {
            conditions
                .iter()
                .find(|condition| {
                    condition["type"] == pattern["type"] && condition["status"] == pattern["status"]
                })
                .map(|condition| {
                    format!(
                        "Pod {pod_name} has condition {}",
                        condition["type"].as_str().unwrap_or_default()
                    )
                })
        });
    }
    let requirement = &rule["onExitCodes"];
    let values: Vec<i64> = requirement["values"]
        .as_array()?
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let wanted_in = requirement["operator"] == "In";
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|list| pod["status"][*list].as_array().into_iter().flatten())
        .filter(|status| {
            requirement["containerName"]
                .as_str()
                .is_none_or(|name| status["name"] == name)
        })
        .find_map(|status| {
            let code = status["state"]["terminated"]["exitCode"].as_i64()?;
            (code != 0 && values.contains(&code) == wanted_in).then(|| {
                format!(
                    "Container {} for pod {pod_name} failed with exit code {code}",
                    status["name"].as_str().unwrap_or_default()
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn failed_pod(exit_code: i64) -> Value {
        json!({
            "metadata": { "name": "p", "namespace": "ns" },
            "status": {
                "phase": "Failed",
                "conditions": [{ "type": "DisruptionTarget", "status": "True" }],
                "containerStatuses": [{ "name": "main", "state": { "terminated": { "exitCode": exit_code } } }],
            },
        })
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let job = json!({ "spec": { "podFailurePolicy": { "rules": [
            { "action": "FailJob", "onExitCodes": { "operator": "In", "values": [42] } },
            { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }] },
        ] } } });
        assert_eq!(
            action(&job, &failed_pod(42)),
            Action::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0"
                    .to_owned()
            )
        );
        assert_eq!(action(&job, &failed_pod(1)), Action::Ignore);
        let counting = json!({ "spec": { "podFailurePolicy": { "rules": [
            { "action": "FailJob", "onExitCodes": { "operator": "NotIn", "values": [1] } },
        ] } } });
        assert_eq!(action(&counting, &failed_pod(1)), Action::Count);
        assert!(matches!(
            action(&counting, &failed_pod(2)),
            Action::FailJob(_)
        ));
    }
}
