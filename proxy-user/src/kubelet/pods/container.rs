//! One container's life: start (or adopt) its process, probe it, and on
//! exit restart it as `restartPolicy` says, after a CrashLoopBackOff delay
//! (the base, 10 s, doubling up to 5 min; reset once it ran 10 min), until
//! the pod is stopped: then the preStop hook, SIGTERM, the rest of the
//! grace period, and SIGKILL.
use std::{path::Path, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{info, warn};

use super::{
    cgroup::{self, Limits},
    env::{self, PodFacts},
    hooks,
    probes::{self, Target, Timing},
    process::{self, Exit, Process, Spec},
    runtime::PodRuntime,
    status::State,
    termination,
};
use crate::kubelet::store::now_rfc3339;

const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long starts over at the base delay.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// Tells a container to stop, with the grace period it gets.
pub type Stop = watch::Receiver<Option<Duration>>;

pub async fn run(runtime: Arc<PodRuntime>, index: usize, mut stop: Stop) {
    let container = runtime.containers()[index].clone();
    let name = container.name.clone();
    let pod = runtime.key.clone();
    let cgroup = match cgroup::create_container(
        &runtime.ctx.pods_root,
        &runtime.cgroup_name(),
        &name,
        &limits(&container),
    ) {
        Ok(dir) => dir,
        Err(error) => {
            warn!(%pod, container = %name, %error, "creating the container's cgroup failed");
            runtime.update(index, |c| {
                c.state = State::waiting("CreateContainerError", Some(error.to_string()))
            });
            stopped(&mut stop).await;
            return;
        }
    };
    let base = runtime.ctx.config.crashloop_base;
    let mut delay = base;
    let mut adopted = Process::adopt(&cgroup);
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let spec = match spec(&runtime, &container, &cgroup).await {
            Ok(spec) => spec,
            Err(message) if adopted.is_none() => {
                runtime.update(index, |c| {
                    c.state = State::waiting("CreateContainerConfigError", Some(message))
                });
                if wait_or_stop(&mut stop, base).await {
                    return;
                }
                continue;
            }
            // The process runs already; only exec probes miss its env.
            Err(_) => empty_spec(&runtime, &cgroup),
        };
        let mut started_at = now_rfc3339();
        let fresh = adopted.is_none();
        let mut process = match adopted.take() {
            Some(process) => {
                info!(%pod, container = %name, "adopted the running container");
                if let Some(start) = runtime.snapshot().containers[index].previous_start.clone() {
                    started_at = start;
                }
                process
            }
            None => {
                let log = runtime.ctx.logs.prepare(&pod.namespace, &pod.name, &name);
                let log = log.and_then(|log| termination::prepare(&runtime, &name).map(|_| log));
                match log.and_then(|log| process::spawn(&spec, &log)) {
                    Ok(process) => {
                        info!(%pod, container = %name, argv = ?spec.argv, "container started");
                        process
                    }
                    Err(error) => {
                        warn!(%pod, container = %name, %error, "starting the container failed");
                        let exit = Exit::Code(128);
                        let now = now_rfc3339();
                        let failed = terminated(exit, Some(error.to_string()), &now, &now);
                        match after_exit(&runtime, index, &container, failed, false) {
                            true if !wait_or_stop(&mut stop, next(&mut delay)).await => {
                                runtime.ctx.logs.rotate(&pod.namespace, &pod.name, &name);
                                runtime.update(index, |c| c.restart_count += 1);
                                continue;
                            }
                            _ => return,
                        }
                    }
                }
            }
        };
        let started = Instant::now();
        runtime.update(index, |c| {
            c.state = State::Running {
                started_at: started_at.clone(),
            }
        });
        let (kill_tx, mut kill_rx) = mpsc::channel(1);
        let target = Target {
            pod_ip: runtime.sandbox.ip,
            container: container.clone(),
            exec: spec,
        };
        let probing = tokio::spawn(probe(
            runtime.clone(),
            index,
            target.clone(),
            fresh,
            kill_tx,
        ));
        let mut stopping = false;
        let (grace, message) = tokio::select! {
            exit = process.wait() => (Err(exit), None),
            Some(why) = kill_rx.recv() => {
                info!(%pod, container = %name, why, "killing the container");
                (Ok(runtime.grace()), Some(why))
            }
            grace = stopped(&mut stop) => {
                stopping = true;
                (Ok(grace), None)
            }
        };
        probing.abort();
        let exit = match grace {
            Err(exit) => exit,
            Ok(grace) => {
                let grace = hooks::pre_stop(&target, &pod.to_string(), grace).await;
                terminate(&mut process, &cgroup, grace).await
            }
        };
        // Whatever the main process left behind goes with it, as when a
        // container's init exits.
        cgroup::kill(&cgroup).await;
        info!(%pod, container = %name, exit_code = exit.code(), "container exited");
        let message = termination::message(&runtime, &container, exit.code(), message);
        let state = terminated(exit, message, &started_at, &now_rfc3339());
        if !after_exit(&runtime, index, &container, state, stopping) {
            return;
        }
        if started.elapsed() >= BACKOFF_RESET_AFTER {
            delay = base;
        }
        let wait = next(&mut delay);
        let message = format!(
            "back-off {}s restarting failed container={name} pod={}",
            wait.as_secs_f64(),
            pod.name
        );
        runtime.update(index, |c| {
            c.state = State::waiting("CrashLoopBackOff", Some(message))
        });
        if wait_or_stop(&mut stop, wait).await {
            return;
        }
        runtime.ctx.logs.rotate(&pod.namespace, &pod.name, &name);
        runtime.update(index, |c| c.restart_count += 1);
    }
}

/// Records an exit; returns whether the container restarts.
fn after_exit(
    runtime: &PodRuntime,
    index: usize,
    container: &Container,
    state: State,
    stopping: bool,
) -> bool {
    let code = match &state {
        State::Terminated { exit_code, .. } => *exit_code,
        _ => 0,
    };
    let restart = !stopping
        && match runtime.restart_policy(index) {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
    runtime.update(index, |c| {
        c.ready = false;
        c.started = false;
        if restart {
            c.last_state = Some(state);
        } else {
            c.state = state;
            c.done = true;
        }
    });
    if !restart {
        let pod = &runtime.key;
        (runtime.ctx.logs).finish(&pod.namespace, &pod.name, &container.name);
        info!(%pod, container = %container.name, code, "container will not restart");
    }
    restart
}

fn terminated(exit: Exit, message: Option<String>, started_at: &str, finished_at: &str) -> State {
    State::Terminated {
        exit_code: exit.code(),
        reason: if exit.code() == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_owned(),
        message,
        started_at: started_at.to_owned(),
        finished_at: finished_at.to_owned(),
    }
}

/// The next CrashLoopBackOff delay, doubling for the one after.
fn next(delay: &mut Duration) -> Duration {
    let now = *delay;
    *delay = (now * 2).min(MAX_BACKOFF);
    now.min(MAX_BACKOFF)
}

/// SIGTERM to the container's processes, then SIGKILL after `grace`.
async fn terminate(process: &mut Process, cgroup: &Path, grace: Duration) -> Exit {
    cgroup::signal(cgroup, libc::SIGTERM);
    match tokio::time::timeout(grace, process.wait()).await {
        Ok(exit) => exit,
        Err(_) => {
            cgroup::kill(cgroup).await;
            process.wait().await
        }
    }
}

/// Waits for the stop order and returns its grace period. A dropped
/// sender is an order to stop at once.
pub async fn stopped(stop: &mut Stop) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow_and_update() {
            return grace;
        }
        if stop.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// Sleeps `delay`; true if told to stop meanwhile.
async fn wait_or_stop(stop: &mut Stop, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stopped(stop) => true,
    }
}

fn limits(container: &Container) -> Limits {
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let get = |name: &str| limits.and_then(|l| l.get(name)).map(|q| q.0.as_str());
    Limits {
        cpu_millis: get("cpu").and_then(cgroup::cpu_millis),
        memory_bytes: get("memory").and_then(cgroup::memory_bytes),
    }
}

async fn spec(runtime: &PodRuntime, container: &Container, cgroup: &Path) -> Result<Spec, String> {
    let facts = PodFacts {
        pod: &runtime.pod,
        pod_ip: runtime.sandbox.ip.to_string(),
        host_ip: runtime.ctx.config.node_ip.to_string(),
    };
    let env = env::build(&runtime.ctx.store, &facts, container)
        .await
        .map_err(|e| e.to_string())?;
    let argv = env::argv(container, &env);
    if argv.is_empty() {
        return Err("the container has no command or args: skiff runs commands from the node's filesystem and has no image entrypoint".to_owned());
    }
    Ok(Spec {
        argv,
        env,
        working_dir: container.working_dir.clone(),
        netns: runtime.sandbox.path(),
        cgroup: cgroup.to_owned(),
    })
}

fn empty_spec(runtime: &PodRuntime, cgroup: &Path) -> Spec {
    Spec {
        argv: Vec::new(),
        env: Vec::new(),
        working_dir: None,
        netns: runtime.sandbox.path(),
        cgroup: cgroup.to_owned(),
    }
}

/// Runs the container's postStart hook (for an instance this agent
/// started) and then its probes while it runs: the startup probe first,
/// then readiness (which sets `ready`) and liveness (whose failure kills
/// the container, as do the hook's and the startup probe's).
async fn probe(
    runtime: Arc<PodRuntime>,
    index: usize,
    target: Target,
    fresh: bool,
    kill: mpsc::Sender<String>,
) {
    let container = &target.container;
    if fresh && let Err(why) = hooks::post_start(&target).await {
        warn!(pod = %runtime.key, container = %container.name, why, "FailedPostStartHook");
        let _ = kill.send(format!("FailedPostStartHook: {why}")).await;
        return;
    }
    if let Some(startup) = &container.startup_probe
        && let Err(why) = until(startup, &target, true).await
    {
        let _ = kill.send(format!("startup probe failed: {why}")).await;
        return;
    }
    let has_readiness = container.readiness_probe.is_some();
    runtime.update(index, |c| {
        c.started = true;
        c.ready = !has_readiness;
    });
    let readiness = async {
        let Some(probe) = &container.readiness_probe else {
            return std::future::pending().await;
        };
        let timing = Timing::of(probe);
        tokio::time::sleep(timing.initial_delay).await;
        let (mut passes, mut fails, mut ready) = (0, 0, false);
        loop {
            match probes::check(probe, &target).await {
                Ok(()) => (passes, fails) = (passes + 1, 0),
                Err(_) => (passes, fails) = (0, fails + 1),
            }
            let now_ready = match (
                ready,
                passes >= timing.success_threshold,
                fails >= timing.failure_threshold,
            ) {
                (false, true, _) => true,
                (true, _, true) => false,
                (current, _, _) => current,
            };
            if now_ready != ready {
                ready = now_ready;
                info!(pod = %runtime.key, container = %container.name, ready, "readiness changed");
                runtime.update(index, |c| c.ready = ready);
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    let liveness = async {
        let Some(probe) = &container.liveness_probe else {
            return std::future::pending().await;
        };
        if let Err(why) = until(probe, &target, false).await {
            let _ = kill.send(format!("liveness probe failed: {why}")).await;
        }
    };
    tokio::select! {
        () = readiness => {}
        () = liveness => {}
    }
}

/// Probes every period. With `until_success`, returns Ok on the first
/// pass (the startup probe); otherwise runs until `failureThreshold`
/// failures in a row (liveness). Err carries the last failure.
async fn until(probe: &Probe, target: &Target, until_success: bool) -> Result<(), String> {
    let timing = Timing::of(probe);
    tokio::time::sleep(timing.initial_delay).await;
    let mut fails = 0;
    loop {
        match probes::check(probe, target).await {
            Ok(()) if until_success => return Ok(()),
            Ok(()) => fails = 0,
            Err(why) => {
                fails += 1;
                if fails >= timing.failure_threshold {
                    return Err(why);
                }
            }
        }
        tokio::time::sleep(timing.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let mut delay = Duration::from_secs(10);
        let delays: Vec<u64> = (0..7).map(|_| next(&mut delay).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
    }
}
