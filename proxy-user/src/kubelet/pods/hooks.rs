//! The container's lifecycle hooks, run as the kubelet runs them.
//! `postStart` runs once the container started, before its probes; if it
//! fails the container is killed. `preStop` runs before the SIGTERM of
//! every stop (the pod's deletion, a failed liveness or startup probe),
//! inside the grace period. Its usual job is a short `sleep`, so that every
//! node's datapath has dropped the terminating endpoint before the process
//! stops accepting connections.
use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;
use tokio::time::Instant;
use tracing::{info, warn};

use super::probes::{self, Action, Target};

/// What the process gets after a hook that used the whole grace period:
/// the kubelet's minimum, so SIGTERM still comes before SIGKILL.
const GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// Runs the container's postStart hook, if it has one; Err says why it
/// failed.
pub async fn post_start(target: &Target) -> Result<(), String> {
    let handler = target.container.lifecycle.as_ref();
    match handler.and_then(|l| l.post_start.as_ref()) {
        Some(handler) => run(handler, target).await,
        None => Ok(()),
    }
}

/// Runs the container's preStop hook, if it has one, within `grace`.
/// Returns the grace period left for SIGTERM.
pub async fn pre_stop(target: &Target, pod: &str, grace: Duration) -> Duration {
    let container = &target.container;
    let Some(handler) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return grace;
    };
    if grace.is_zero() {
        return grace;
    }
    let started = Instant::now();
    match tokio::time::timeout(grace, run(handler, target)).await {
        Ok(Ok(())) => {
            info!(pod, container = %container.name, took = ?started.elapsed(), "preStop hook done")
        }
        Ok(Err(why)) => warn!(pod, container = %container.name, why, "preStop hook failed"),
        Err(_) => {
            warn!(pod, container = %container.name, ?grace, "preStop hook outlived the grace period")
        }
    }
    match grace.checked_sub(started.elapsed()) {
        Some(left) if !left.is_zero() => left,
        _ => GRACE_AFTER_HOOK,
    }
}

async fn run(handler: &LifecycleHandler, target: &Target) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        let seconds = u64::try_from(sleep.seconds)
            .map_err(|_| format!("invalid sleep of {} seconds", sleep.seconds))?;
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        return Ok(());
    }
    let action = (handler.exec.as_ref().map(Action::Exec))
        .or_else(|| handler.http_get.as_ref().map(Action::Http))
        .ok_or("the hook has no sleep, exec or httpGet handler (tcpSocket is not supported)")?;
    probes::perform(action, target).await
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, path::Path};

    use k8s_openapi::api::core::v1::{Container, Lifecycle, SleepAction};

    use super::*;
    use crate::kubelet::pods::oci::runc::{ExecTarget, Runc};

    fn target(pre_stop: Option<LifecycleHandler>) -> Target {
        with_hooks(None, pre_stop)
    }

    fn with_hooks(
        post_start: Option<LifecycleHandler>,
        pre_stop: Option<LifecycleHandler>,
    ) -> Target {
        Target {
            pod_ip: Ipv4Addr::LOCALHOST,
            container: Container {
                name: "app".to_owned(),
                lifecycle: Some(Lifecycle {
                    post_start,
                    pre_stop,
                    ..Lifecycle::default()
                }),
                ..Container::default()
            },
            exec: ExecTarget {
                runc: Runc::new(Path::new("/nonexistent")),
                id: "default_p_app".to_owned(),
                env: Vec::new(),
                cwd: "/".to_owned(),
            },
        }
    }

    fn sleep(seconds: i64) -> LifecycleHandler {
        LifecycleHandler {
            sleep: Some(SleepAction { seconds }),
            ..LifecycleHandler::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_hook_takes_its_time_out_of_the_grace_period() {
        let left = pre_stop(&target(Some(sleep(3))), "p", Duration::from_secs(10)).await;
        assert_eq!(left, Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_longer_than_the_grace_period_is_cut_and_sigterm_still_comes() {
        let started = Instant::now();
        let left = pre_stop(&target(Some(sleep(60))), "p", Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(left, GRACE_AFTER_HOOK);
    }

    #[tokio::test(start_paused = true)]
    async fn no_hook_or_no_grace_runs_nothing() {
        let grace = Duration::from_secs(30);
        assert_eq!(pre_stop(&target(None), "p", grace).await, grace);
        let started = Instant::now();
        let left = pre_stop(&target(Some(sleep(3))), "p", Duration::ZERO).await;
        assert_eq!((started.elapsed(), left), (Duration::ZERO, Duration::ZERO));
    }

    #[tokio::test]
    async fn a_post_start_hook_says_why_it_failed() {
        assert_eq!(post_start(&target(None)).await, Ok(()));
        let closed = LifecycleHandler {
            tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
                port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1),
                ..Default::default()
            }),
            ..LifecycleHandler::default()
        };
        let failed = post_start(&with_hooks(Some(closed), None)).await;
        assert!(failed.unwrap_err().contains("tcpSocket is not supported"));
        let slept = post_start(&with_hooks(Some(sleep(0)), None)).await;
        assert_eq!(slept, Ok(()));
    }
}
