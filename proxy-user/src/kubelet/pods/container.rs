//! One container's life: start it with runc from its image (or adopt the
//! one an earlier agent started), probe it, and on exit restart it as
//! `restartPolicy` says, after a CrashLoopBackOff delay (the base, 10 s,
//! doubling up to 5 min; reset once it ran 10 min), until the pod is
//! stopped: then the preStop hook, SIGTERM, the rest of the grace period,
//! and SIGKILL. A missing image waits as `ErrImageNeverPull`, looked for
//! again every 2 s.
use std::{path::Path, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{info, warn};

use super::{
    cgroup,
    env::{self, PodFacts},
    hooks,
    oci::{
        self, ImageDefaults, Launch, StartError, Started,
        monitor::Exit,
        spec::{BindMount, Limits},
    },
    probes::{self, Target, Timing},
    runtime::PodRuntime,
    security,
    status::State,
    termination,
};
use crate::kubelet::{store::now_rfc3339, volumes::Mount};

const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often a container waiting for its image looks for it again, so
/// that importing the image starts it.
const IMAGE_RETRY: Duration = Duration::from_secs(2);
/// A container that ran this long starts over at the base delay.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// Tells a container to stop, with the grace period it gets.
pub type Stop = watch::Receiver<Option<Duration>>;

pub async fn run(runtime: Arc<PodRuntime>, index: usize, mut stop: Stop) {
    let container = runtime.containers()[index].clone();
    let name = container.name.clone();
    let pod = runtime.key.clone();
    let id = oci::container_id(&pod.namespace, &pod.name, &name);
    let containers = runtime.ctx.containers.clone();
    let cgroup =
        match cgroup::create_container(&runtime.ctx.pods_root, &runtime.cgroup_name(), &name) {
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
    let mut adopted = containers.adopt(&id);
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let mut started_at = now_rfc3339();
        let fresh = adopted.is_none();
        let started = match adopted.take() {
            Some(started) => {
                info!(%pod, container = %name, "adopted the running container");
                if let Some(start) = runtime.snapshot().containers[index].previous_start.clone() {
                    started_at = start;
                }
                started
            }
            None => match start(&runtime, index, &container, &id, &cgroup).await {
                Ok(started) => {
                    info!(%pod, container = %name, id, "container started");
                    started
                }
                Err(error @ StartError::ImageMissing(_)) => {
                    let message = error.to_string();
                    runtime.update(index, |c| {
                        c.state = State::waiting("ErrImageNeverPull", Some(message))
                    });
                    if wait_or_stop(&mut stop, IMAGE_RETRY).await {
                        return;
                    }
                    continue;
                }
                Err(error @ (StartError::Config(_) | StartError::Volume { .. })) => {
                    let reason = match &error {
                        StartError::Volume { reason, .. } => reason,
                        _ => "CreateContainerConfigError",
                    };
                    let message = error.to_string();
                    warn!(%pod, container = %name, message, "the container cannot be configured");
                    runtime.update(index, |c| c.state = State::waiting(reason, Some(message)));
                    if wait_or_stop(&mut stop, base).await {
                        return;
                    }
                    continue;
                }
                Err(StartError::Create(message)) => {
                    warn!(%pod, container = %name, message, "starting the container failed");
                    containers.clean(&id).await;
                    let now = now_rfc3339();
                    let failed = terminated(Exit::Code(128), Some(message), &now, &now);
                    match after_exit(&runtime, index, &container, failed, false) {
                        true if !wait_or_stop(&mut stop, next(&mut delay)).await => {
                            runtime.ctx.logs.rotate(&pod.namespace, &pod.name, &name);
                            runtime.update(index, |c| c.restart_count += 1);
                            continue;
                        }
                        _ => return,
                    }
                }
            },
        };
        let Started { mut monitor, exec } = started;
        let started = Instant::now();
        runtime.update(index, |c| {
            c.state = State::Running {
                started_at: started_at.clone(),
            };
            c.container_id = Some(format!("runc://{id}"));
        });
        let (kill_tx, mut kill_rx) = mpsc::channel(1);
        let target = Target {
            pod_ip: runtime.sandbox.ip,
            container: container.clone(),
            exec,
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
            exit = containers.wait(&id, &mut monitor) => (Err(exit), None),
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
                containers.terminate(&id, &mut monitor, grace).await
            }
        };
        // The container's mounts, runc state and cgroup go with its end;
        // a restart starts from a fresh writable layer.
        containers.clean(&id).await;
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
    let code = state.exit_code().unwrap_or(0);
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

/// Starts the container from its image, as the pod and image together
/// say; records the image's ID.
async fn start(
    runtime: &PodRuntime,
    index: usize,
    container: &Container,
    id: &str,
    cgroup: &Path,
) -> Result<Started, StartError> {
    let pod = &runtime.pod;
    security::refuse_unsupported(pod).map_err(StartError::Config)?;
    let reference = container.image.as_deref().unwrap_or("");
    if reference.is_empty() {
        return Err(StartError::Config("the container has no image".to_owned()));
    }
    let containers = &runtime.ctx.containers;
    let image = containers.image(reference).await?;
    runtime.update(index, |c| c.image_id = image.id.clone());
    let defaults = ImageDefaults::of(&image.config);
    let facts = PodFacts {
        pod,
        pod_ip: runtime.sandbox.ip.to_string(),
        pod_ips: std::iter::once(runtime.sandbox.ip.to_string())
            .chain(runtime.sandbox.ip6.map(|ip| ip.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        host_ip: runtime.ctx.config.node_ip.to_string(),
    };
    let env = env::build(
        &runtime.ctx.store,
        &runtime.ctx.api,
        &facts,
        container,
        &defaults.env,
    )
    .await
    .map_err(|e| StartError::Config(e.to_string()))?;
    let argv = env::argv(container, &env, &defaults.entrypoint, &defaults.cmd);
    if argv.is_empty() {
        return Err(StartError::Config(format!(
            "no command: neither the container nor image {reference} gives one"
        )));
    }
    let (mounts, notices) = (runtime.volumes)
        .mounts_for(&runtime.ctx.api, &runtime.ctx.api, container)
        .await
        .map_err(|e| StartError::Volume {
            reason: e.reason(),
            message: e.to_string(),
        })?;
    for notice in notices {
        if let Err(error) = runtime.events.warning(notice.reason, &notice.message).await {
            warn!(pod = %runtime.key, %error, "recording a volume event failed");
        }
    }
    let key = &runtime.key;
    let log = (runtime.ctx.logs)
        .prepare(&key.namespace, &key.name, &container.name)
        .map_err(|e| StartError::Create(format!("creating the log file: {e}")))?;
    let termination_log = termination::prepare(runtime, &container.name)
        .map_err(|e| StartError::Create(format!("creating the termination log: {e}")))?;
    let mut mounts: Vec<BindMount> = mounts.into_iter().map(bind_mount).collect();
    mounts.push(BindMount {
        source: termination_log,
        destination: container
            .termination_message_path
            .as_deref()
            .unwrap_or(termination::DEFAULT_PATH)
            .into(),
        read_only: false,
    });
    let pod_files = containers.pod_files(&key.slug());
    let cwd = (container.working_dir.clone())
        .or(defaults.working_dir)
        .unwrap_or_else(|| "/".to_owned());
    containers
        .start(Launch {
            id,
            image: &image,
            image_user: &defaults.user,
            argv,
            env,
            cwd,
            // spec.hostname (an Indexed job's `<job>-<index>`), else the name.
            hostname: (pod.spec.as_ref())
                .and_then(|spec| spec.hostname.clone())
                .unwrap_or_else(|| key.name.clone()),
            pod_files: &pod_files,
            netns: runtime.sandbox.path(),
            cgroup,
            log: &log,
            wanted: security::wanted(pod, container),
            security: security::of(container),
            limits: limits(container),
            mounts,
        })
        .await
}

fn bind_mount(mount: Mount) -> BindMount {
    BindMount {
        source: mount.source,
        destination: mount.destination.into(),
        read_only: mount.read_only,
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
