//! What the agent knows of a pod, and the `status` it renders from that:
//! phase, podIP, conditions and containerStatuses, as the kubelet reports
//! them (`status_writer` writes it back).
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::kubelet::store::now_rfc3339;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        message: Option<String>,
        started_at: String,
        finished_at: String,
    },
}

impl State {
    pub fn waiting(reason: &str, message: Option<String>) -> State {
        State::Waiting {
            reason: reason.to_owned(),
            message,
        }
    }

    fn render(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                json!({ "waiting": drop_nulls(json!({ "reason": reason, "message": message })) })
            }
            State::Running { started_at } => json!({ "running": { "startedAt": started_at } }),
            State::Terminated {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => json!({ "terminated": drop_nulls(json!({
                "exitCode": exit_code,
                "reason": reason,
                "message": message,
                "startedAt": started_at,
                "finishedAt": finished_at,
            })) }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last_state: Option<State>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: i64,
    /// `<image>@sha256:<manifest digest>` of the image it runs.
    pub image_id: String,
    /// `runc://<id>` once runc has run it.
    pub container_id: Option<String>,
    /// Terminated for good: the restart policy does not restart it.
    pub done: bool,
    /// When the instance an earlier agent started began: kept for a
    /// process this agent adopts.
    pub previous_start: Option<String>,
}

impl ContainerStatus {
    /// A container about to start. A restarted agent carries on the counts
    /// (and last state) its predecessor wrote.
    pub fn new(name: &str, image: &str, previous: Option<&Value>) -> ContainerStatus {
        ContainerStatus {
            name: name.to_owned(),
            image: image.to_owned(),
            state: State::waiting("ContainerCreating", None),
            last_state: previous.and_then(|p| terminated_of(&p["lastState"])),
            ready: false,
            started: false,
            restart_count: previous
                .and_then(|p| p["restartCount"].as_i64())
                .unwrap_or(0),
            image_id: previous
                .and_then(|p| p["imageID"].as_str())
                .unwrap_or("")
                .to_owned(),
            container_id: previous
                .and_then(|p| p["containerID"].as_str())
                .map(str::to_owned),
            done: false,
            previous_start: previous
                .and_then(|p| p["state"]["running"]["startedAt"].as_str())
                .map(str::to_owned),
        }
    }

    fn ever_ran(&self) -> bool {
        !matches!(self.state, State::Waiting { .. }) || self.last_state.is_some()
    }

    fn render(&self) -> Value {
        let mut status = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "state": self.state.render(),
            "lastState": self.last_state.as_ref().map_or(json!({}), State::render),
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
        });
        if let Some(id) = &self.container_id
            && !matches!(self.state, State::Waiting { .. })
        {
            status["containerID"] = json!(id);
        }
        status
    }
}

fn terminated_of(state: &Value) -> Option<State> {
    let t = state.get("terminated")?;
    Some(State::Terminated {
        exit_code: t["exitCode"].as_i64().unwrap_or(0) as i32,
        reason: t["reason"].as_str().unwrap_or("").to_owned(),
        message: t["message"].as_str().map(str::to_owned),
        started_at: t["startedAt"].as_str().unwrap_or("").to_owned(),
        finished_at: t["finishedAt"].as_str().unwrap_or("").to_owned(),
    })
}

fn drop_nulls(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    value
}

#[derive(Debug, Clone)]
pub struct PodState {
    pub host_ip: Ipv4Addr,
    pub pod_ip: Option<Ipv4Addr>,
    pub start_time: String,
    /// Why the pod's sandbox (netns, address) is not there yet.
    pub sandbox_error: Option<String>,
    pub containers: Vec<ContainerStatus>,
}

impl PodState {
    pub fn phase(&self) -> &'static str {
        let all_done = self.containers.iter().all(|c| c.done);
        let failed = |c: &ContainerStatus| matches!(c.state, State::Terminated { exit_code, .. } if exit_code != 0);
        if all_done && !self.containers.is_empty() {
            return match self.containers.iter().any(failed) {
                true => "Failed",
                false => "Succeeded",
            };
        }
        if self.pod_ip.is_none() || self.containers.iter().any(|c| !c.ever_ran()) {
            return "Pending";
        }
        "Running"
    }

    /// The status to store, given the one stored (whose conditions keep
    /// their transition times while they hold).
    pub fn render(&self, stored: &Value) -> Value {
        let ready = !self.containers.is_empty() && self.containers.iter().all(|c| c.ready);
        let now = now_rfc3339();
        let previous = stored["conditions"].as_array().cloned().unwrap_or_default();
        let condition = |kind: &str, holds: bool, reason: Option<&str>| {
            let status = if holds { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c["type"] == kind && c["status"] == status)
                .and_then(|c| c["lastTransitionTime"].as_str())
                .unwrap_or(&now)
                .to_owned();
            drop_nulls(json!({
                "type": kind,
                "status": status,
                "reason": reason,
                "lastProbeTime": null,
                "lastTransitionTime": since,
            }))
        };
        let not_ready = (!ready).then_some("ContainersNotReady");
        let mut status = json!({
            "phase": self.phase(),
            "hostIP": self.host_ip.to_string(),
            "hostIPs": [{ "ip": self.host_ip.to_string() }],
            "startTime": self.start_time,
            "conditions": [
                condition("PodReadyToStartContainers", self.pod_ip.is_some(), None),
                condition("Initialized", true, None),
                condition("Ready", ready, not_ready),
                condition("ContainersReady", ready, not_ready),
                condition("PodScheduled", true, None),
            ],
            "containerStatuses": self.containers.iter().map(ContainerStatus::render).collect::<Vec<_>>(),
            "qosClass": stored.get("qosClass").cloned().unwrap_or(json!("BestEffort")),
        });
        if let Some(ip) = self.pod_ip {
            status["podIP"] = json!(ip.to_string());
            status["podIPs"] = json!([{ "ip": ip.to_string() }]);
        }
        if let Some(error) = &self.sandbox_error {
            status["message"] = json!(error);
            status["reason"] = json!("FailedCreatePodSandBox");
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(containers: Vec<ContainerStatus>) -> PodState {
        PodState {
            host_ip: Ipv4Addr::new(172, 30, 0, 11),
            pod_ip: Some(Ipv4Addr::new(10, 244, 1, 2)),
            start_time: "t".into(),
            sandbox_error: None,
            containers,
        }
    }

    fn running(ready: bool) -> ContainerStatus {
        let mut c = ContainerStatus::new("c", "img", None);
        c.state = State::Running {
            started_at: "t".into(),
        };
        c.ready = ready;
        c
    }

    #[test]
    fn phases_follow_the_containers() {
        assert_eq!(
            state(vec![ContainerStatus::new("c", "i", None)]).phase(),
            "Pending"
        );
        assert_eq!(state(vec![running(false)]).phase(), "Running");
        let mut failed = running(false);
        failed.done = true;
        failed.state = State::Terminated {
            exit_code: 1,
            reason: "Error".into(),
            message: None,
            started_at: "a".into(),
            finished_at: "b".into(),
        };
        assert_eq!(state(vec![failed]).phase(), "Failed");
    }

    #[test]
    fn ready_follows_every_container_and_keeps_its_transition_time() {
        let status = state(vec![running(true)]).render(&json!({}));
        assert_eq!(status["podIP"], "10.244.1.2");
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["status"], "True");
        let stored = json!({ "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": "long ago" }] });
        let again = state(vec![running(true)]).render(&stored);
        assert!(
            again["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["lastTransitionTime"] == "long ago")
        );
        let not_ready = state(vec![running(true), running(false)]).render(&stored);
        assert!(
            not_ready["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "False")
        );
    }
}
