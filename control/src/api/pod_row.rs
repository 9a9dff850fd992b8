//! A pod's READY, STATUS and RESTARTS cells as `kubectl get pods` shows
//! them, following upstream's `printPod`: init containers first (`Init:1/2`,
//! `Init:Error`, `Init:CrashLoopBackOff`), sidecars (init containers with
//! `restartPolicy: Always`) counted with the app containers once started,
//! then the app containers' reasons, and `Terminating` last.

use serde_json::Value;

/// The cells of one pod's row.
#[derive(Debug, PartialEq, Eq)]
pub struct PodRow {
    pub ready: String,
    pub status: String,
    pub restarts: i64,
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn number(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// Whether the init container called `name` is a sidecar.
fn is_sidecar(pod: &Value, name: &str) -> bool {
    items(&pod["spec"]["initContainers"])
        .iter()
        .any(|c| c["name"] == name && c["restartPolicy"] == "Always")
}

/// The STATUS of a terminated container without a reason.
fn exit_reason(terminated: &Value) -> String {
    match number(&terminated["signal"]) {
        0 => format!("ExitCode:{}", number(&terminated["exitCode"])),
        signal => format!("Signal:{signal}"),
    }
}

fn condition_true(pod: &Value, kind: &str) -> bool {
    items(&pod["status"]["conditions"])
        .iter()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

pub fn pod_row(pod: &Value) -> PodRow {
    let status = &pod["status"];
    let init_specs = items(&pod["spec"]["initContainers"]);
    let sidecars = init_specs
        .iter()
        .filter(|c| c["restartPolicy"] == "Always")
        .count();
    let total = items(&pod["spec"]["containers"]).len() + sidecars;
    let phase = text(&status["phase"]);
    let mut reason = match text(&status["reason"]) {
        "" => phase.to_owned(),
        given => given.to_owned(),
    };
    if items(&status["conditions"])
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".to_owned();
    }
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut initializing = false;
    for (index, container) in items(&status["initContainerStatuses"]).iter().enumerate() {
        let count = number(&container["restartCount"]);
        restarts += count;
        let sidecar = is_sidecar(pod, text(&container["name"]));
        if sidecar {
            sidecar_restarts += count;
        }
        let state = &container["state"];
        let terminated = &state["terminated"];
        let waiting = text(&state["waiting"]["reason"]);
        if terminated.is_object() && number(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && container["started"] == true {
            if container["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            match text(&terminated["reason"]) {
                "" => format!("Init:{}", exit_reason(terminated)),
                why => format!("Init:{why}"),
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{index}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }
    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for container in items(&status["containerStatuses"]).iter().rev() {
            restarts += number(&container["restartCount"]);
            let state = &container["state"];
            let waiting = text(&state["waiting"]["reason"]);
            let terminated = &state["terminated"];
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if terminated.is_object() {
                reason = match text(&terminated["reason"]) {
                    "" => exit_reason(terminated),
                    why => why.to_owned(),
                };
            } else if container["ready"] == true && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_owned();
        }
    }
    let terminal = matches!(phase, "Succeeded" | "Failed");
    if pod["metadata"]["deletionTimestamp"].is_string() {
        if text(&status["reason"]) == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if !terminal {
            reason = "Terminating".to_owned();
        }
    }
    PodRow {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn waiting(name: &str, reason: &str) -> Value {
        json!({ "name": name, "state": { "waiting": { "reason": reason } }, "ready": false, "restartCount": 0 })
    }

    fn done(name: &str, code: i64, reason: &str) -> Value {
        json!({ "name": name, "state": { "terminated": { "exitCode": code, "reason": reason } }, "ready": false, "restartCount": 0 })
    }

    fn running(name: &str, ready: bool) -> Value {
        json!({ "name": name, "state": { "running": { "startedAt": "t" } }, "ready": ready, "started": true, "restartCount": 0 })
    }

    fn pod(inits: Value, init_statuses: Value, statuses: Value, initialized: bool) -> Value {
        json!({
            "metadata": { "name": "p" },
            "spec": {
                "initContainers": inits,
                "containers": [{ "name": "app" }],
            },
            "status": {
                "phase": "Pending",
                "conditions": [{ "type": "Initialized", "status": if initialized { "True" } else { "False" } }],
                "initContainerStatuses": init_statuses,
                "containerStatuses": statuses,
            },
        })
    }

    fn two_inits() -> Value {
        json!([{ "name": "one" }, { "name": "two" }])
    }

    #[test]
    fn init_containers_show_how_far_they_got() {
        let app = json!([waiting("app", "PodInitializing")]);
        let first = pod(
            two_inits(),
            json!([running("one", false), waiting("two", "PodInitializing")]),
            app.clone(),
            false,
        );
        assert_eq!(pod_row(&first).status, "Init:0/2");
        let second = pod(
            two_inits(),
            json!([done("one", 0, "Completed"), running("two", false)]),
            app.clone(),
            false,
        );
        assert_eq!(pod_row(&second).status, "Init:1/2");
        let after = pod(
            two_inits(),
            json!([done("one", 0, "Completed"), done("two", 0, "Completed")]),
            app,
            true,
        );
        assert_eq!(pod_row(&after).status, "PodInitializing");
        assert_eq!(pod_row(&after).ready, "0/1");
    }

    #[test]
    fn failed_init_containers_name_why() {
        let app = json!([waiting("app", "PodInitializing")]);
        let error = pod(
            two_inits(),
            json!([done("one", 1, "Error"), waiting("two", "PodInitializing")]),
            app.clone(),
            false,
        );
        assert_eq!(pod_row(&error).status, "Init:Error");
        let bare = pod(
            two_inits(),
            json!([done("one", 3, ""), waiting("two", "PodInitializing")]),
            app.clone(),
            false,
        );
        assert_eq!(pod_row(&bare).status, "Init:ExitCode:3");
        let mut looping = waiting("one", "CrashLoopBackOff");
        looping["restartCount"] = json!(4);
        let backoff = pod(
            two_inits(),
            json!([looping, waiting("two", "PodInitializing")]),
            app,
            false,
        );
        let row = pod_row(&backoff);
        assert_eq!(
            (row.status.as_str(), row.restarts),
            ("Init:CrashLoopBackOff", 4)
        );
    }

    #[test]
    fn started_sidecars_count_with_the_app_containers() {
        let inits = json!([{ "name": "proxy", "restartPolicy": "Always" }, { "name": "setup" }]);
        let mut sidecar = running("proxy", true);
        sidecar["restartCount"] = json!(2);
        let initializing = pod(
            inits.clone(),
            json!([sidecar.clone(), running("setup", false)]),
            json!([waiting("app", "PodInitializing")]),
            false,
        );
        let row = pod_row(&initializing);
        assert_eq!(
            (row.ready.as_str(), row.status.as_str()),
            ("1/2", "Init:1/2")
        );
        let mut up = pod(
            inits,
            json!([sidecar, done("setup", 0, "Completed")]),
            json!([running("app", true)]),
            true,
        );
        up["status"]["phase"] = json!("Running");
        assert_eq!(
            pod_row(&up),
            PodRow {
                ready: "2/2".into(),
                status: "Running".into(),
                restarts: 2
            }
        );
    }

    #[test]
    fn app_containers_and_deletion_decide_last() {
        let plain = |statuses: Value, phase: &str| {
            json!({
                "metadata": { "name": "p" },
                "spec": { "containers": [{ "name": "app" }] },
                "status": { "phase": phase, "containerStatuses": statuses },
            })
        };
        let crash = plain(json!([waiting("app", "CrashLoopBackOff")]), "Running");
        assert_eq!(pod_row(&crash).status, "CrashLoopBackOff");
        let completed = plain(json!([done("app", 0, "Completed")]), "Succeeded");
        assert_eq!(pod_row(&completed).status, "Completed");
        let mut deleting = plain(json!([running("app", true)]), "Running");
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(
            pod_row(&deleting),
            PodRow {
                ready: "1/1".into(),
                status: "Terminating".into(),
                restarts: 0
            }
        );
        let mut finished = completed.clone();
        finished["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(pod_row(&finished).status, "Completed");
    }
}
