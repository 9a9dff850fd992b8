//! What the agent knows of a pod, and the `status` it renders from that:
//! phase, podIP, conditions, initContainerStatuses and containerStatuses,
//! as the kubelet reports them (`status_writer` writes it back).
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Container;
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

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            State::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
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

/// Where a container stands in its pod's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An init container: runs to success before the next one starts.
    Init,
    /// An init container with `restartPolicy: Always`: started in the
    /// init order, kept running beside the app containers.
    Sidecar,
    App,
}

impl Kind {
    pub fn of_init(container: &Container) -> Kind {
        match container.restart_policy.as_deref() {
            Some("Always") => Kind::Sidecar,
            _ => Kind::Init,
        }
    }

    fn is_init(self) -> bool {
        self != Kind::App
    }
}

#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub name: String,
    pub kind: Kind,
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
    /// A container about to start, waiting for `reason`. A restarted agent
    /// carries on the counts (and last state) its predecessor wrote, and an
    /// init container that completed stays completed.
    pub fn new(
        container: &Container,
        kind: Kind,
        reason: &str,
        previous: Option<&Value>,
    ) -> ContainerStatus {
        let completed = previous
            .and_then(|p| terminated_of(&p["state"]))
            .filter(|state| kind == Kind::Init && state.exit_code() == Some(0));
        ContainerStatus {
            name: container.name.clone(),
            kind,
            image: container.image.clone().unwrap_or_default(),
            done: completed.is_some(),
            state: completed.unwrap_or_else(|| State::waiting(reason, None)),
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
    /// On a dual-stack node, the pod's IPv6 address (listed second).
    pub pod_ip6: Option<Ipv6Addr>,
    pub start_time: String,
    /// Why the pod's sandbox (netns, address) is not there yet.
    pub sandbox_error: Option<String>,
    /// Every init container completed and every sidecar started once.
    pub initialized: bool,
    /// Init containers and sidecars in their order, then app containers.
    pub containers: Vec<ContainerStatus>,
}

impl PodState {
    pub fn phase(&self) -> &'static str {
        let failed = |c: &ContainerStatus| c.state.exit_code().is_some_and(|code| code != 0);
        if (self.containers.iter()).any(|c| c.kind == Kind::Init && c.done && failed(c)) {
            return "Failed";
        }
        let mut apps = self.containers.iter().filter(|c| c.kind == Kind::App);
        if apps.clone().all(|c| c.done) && apps.clone().next().is_some() {
            return match apps.any(failed) {
                true => "Failed",
                false => "Succeeded",
            };
        }
        if self.pod_ip.is_none() || !self.initialized || apps.any(|c| !c.ever_ran()) {
            return "Pending";
        }
        "Running"
    }

    /// The status to store, given the one stored (whose conditions keep
    /// their transition times while they hold).
    pub fn render(&self, stored: &Value) -> Value {
        let running = self.containers.iter().filter(|c| c.kind != Kind::Init);
        let ready =
            running.clone().any(|c| c.kind == Kind::App) && running.clone().all(|c| c.ready);
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
                condition(
                    "Initialized",
                    self.initialized,
                    (!self.initialized).then_some("ContainersNotInitialized"),
                ),
                condition("Ready", ready, not_ready),
                condition("ContainersReady", ready, not_ready),
                condition("PodScheduled", true, None),
            ],
            "containerStatuses": self.render_containers(false),
            "qosClass": stored.get("qosClass").cloned().unwrap_or(json!("BestEffort")),
        });
        if self.containers.iter().any(|c| c.kind.is_init()) {
            status["initContainerStatuses"] = self.render_containers(true);
        }
        if let Some(ip) = self.pod_ip {
            status["podIP"] = json!(ip.to_string());
            let ipv6 = self.pod_ip6.map(|ip| json!({ "ip": ip.to_string() }));
            let ips: Vec<Value> = std::iter::once(json!({ "ip": ip.to_string() }))
                .chain(ipv6)
                .collect();
            status["podIPs"] = json!(ips);
        }
        if let Some(error) = &self.sandbox_error {
            status["message"] = json!(error);
            status["reason"] = json!("FailedCreatePodSandBox");
        }
        status
    }

    fn render_containers(&self, init: bool) -> Value {
        (self.containers.iter())
            .filter(|c| c.kind.is_init() == init)
            .map(ContainerStatus::render)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(containers: Vec<ContainerStatus>) -> PodState {
        PodState {
            host_ip: Ipv4Addr::new(172, 30, 0, 11),
            pod_ip: Some(Ipv4Addr::new(10, 244, 1, 2)),
            pod_ip6: None,
            start_time: "t".into(),
            sandbox_error: None,
            initialized: true,
            containers,
        }
    }

    fn waiting(name: &str, kind: Kind) -> ContainerStatus {
        let container = Container {
            name: name.to_owned(),
            ..Container::default()
        };
        ContainerStatus::new(&container, kind, "PodInitializing", None)
    }

    fn exited(mut c: ContainerStatus, exit_code: i32) -> ContainerStatus {
        c.done = true;
        c.state = State::Terminated {
            exit_code,
            reason: "r".into(),
            message: None,
            started_at: "a".into(),
            finished_at: "b".into(),
        };
        c
    }

    fn running(ready: bool) -> ContainerStatus {
        let mut c = waiting("c", Kind::App);
        c.state = State::Running {
            started_at: "t".into(),
        };
        c.ready = ready;
        c
    }

    #[test]
    fn phases_follow_the_containers() {
        assert_eq!(state(vec![waiting("c", Kind::App)]).phase(), "Pending");
        assert_eq!(state(vec![running(false)]).phase(), "Running");
        assert_eq!(state(vec![exited(running(false), 1)]).phase(), "Failed");
    }

    #[test]
    fn init_containers_hold_the_pod_pending_and_fail_it_for_good() {
        let mut initializing = state(vec![running(false), waiting("app", Kind::App)]);
        initializing.containers[0].kind = Kind::Init;
        initializing.initialized = false;
        assert_eq!(initializing.phase(), "Pending");
        let status = initializing.render(&json!({}));
        assert_eq!(status["initContainerStatuses"][0]["name"], "c");
        assert_eq!(status["containerStatuses"][0]["name"], "app");
        assert_eq!(
            status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        let initialized = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Initialized")
            .unwrap()
            .clone();
        assert_eq!(initialized["status"], "False");
        initializing.containers[0] = exited(initializing.containers[0].clone(), 2);
        assert_eq!(initializing.phase(), "Failed");
    }

    #[test]
    fn a_restarted_agent_keeps_completed_init_containers_completed() {
        let container = Container {
            name: "setup".to_owned(),
            ..Container::default()
        };
        let stored = json!({ "state": { "terminated": { "exitCode": 0, "reason": "Completed" } }, "restartCount": 1 });
        let init = ContainerStatus::new(&container, Kind::Init, "PodInitializing", Some(&stored));
        assert!(init.done);
        assert_eq!(init.state.exit_code(), Some(0));
        let sidecar =
            ContainerStatus::new(&container, Kind::Sidecar, "PodInitializing", Some(&stored));
        assert!(!sidecar.done);
        assert_eq!(sidecar.restart_count, 1);
    }

    #[test]
    fn sidecars_count_for_readiness_but_not_for_the_phase() {
        let mut sidecar = running(false);
        sidecar.kind = Kind::Sidecar;
        let pod = state(vec![sidecar.clone(), exited(running(true), 0)]);
        assert_eq!(pod.phase(), "Succeeded");
        let not_ready = state(vec![sidecar.clone(), running(true)]).render(&json!({}));
        assert!(
            (not_ready["conditions"].as_array().unwrap().iter())
                .any(|c| c["type"] == "Ready" && c["status"] == "False")
        );
        sidecar.ready = true;
        let ready = state(vec![sidecar, running(true)]).render(&json!({}));
        assert!(
            (ready["conditions"].as_array().unwrap().iter())
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        );
    }

    #[test]
    fn ready_follows_every_container_and_keeps_its_transition_time() {
        let status = state(vec![running(true)]).render(&json!({}));
        assert_eq!(status["podIP"], "10.244.1.2");
        assert_eq!(status["podIPs"], json!([{ "ip": "10.244.1.2" }]));
        let mut dual = state(vec![running(true)]);
        dual.pod_ip6 = Some("fd00:10:244:1::2".parse().unwrap());
        assert_eq!(
            dual.render(&json!({}))["podIPs"],
            json!([{ "ip": "10.244.1.2" }, { "ip": "fd00:10:244:1::2" }]),
            "IPv4 first"
        );
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
