//! The API's error window while a control-plane member is lost, on an HA
//! cluster of its own (three members, one node whose agent serves the
//! NodePort in front of the API servers). A client calls the API at that
//! one address back to back on a thread of its own while a member's
//! process is SIGKILLed: the window runs from the start of the first call
//! that failed after the kill to the end of the last one.
//!
//! - etcd leader killed (found through the maintenance API's Status):
//!   ConfigMap creates on one kept connection; the baseline is etcd's own
//!   leader election, from the kill until a surviving member reports a new
//!   leader.
//! - an API server killed: GETs, each on a new connection (so each is
//!   balanced anew); the bound is the endpoint lease's TTL, after which the
//!   killed server leaves the Service.

use std::{
    fs,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use http::{Method, StatusCode};
use serde_json::json;
use skiff_api_client::ApiClient;
use skiff_tests::{Cluster, ClusterSpec, ControlPlanes};

use super::results::{HaWindow, HaWindows};

const TOKEN: &str = "bench-ha-token";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Successful calls before a kill: the client is in its stride.
const WARM_CALLS: usize = 50;
/// A window ends once calls have succeeded this long in a row.
const SETTLED: Duration = Duration::from_secs(3);
const GIVE_UP: Duration = Duration::from_secs(60);
/// The endpoint lease's TTL (skiff-control's `endpoint_leases::LEASE_TTL`).
const ENDPOINT_LEASE_TTL_MS: f64 = 2000.0;

pub fn measure(state_dir: &Path) -> HaWindows {
    match measure_both(state_dir) {
        Ok(windows) => windows,
        Err(error) => HaWindows {
            error: Some(format!("{error:#}")),
            ..HaWindows::default()
        },
    }
}

fn measure_both(state_dir: &Path) -> Result<HaWindows> {
    let mut cluster = Cluster::create(ClusterSpec::random(1))?;
    fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let tokens = state_dir.join("tokens.csv");
    fs::write(&tokens, format!("{TOKEN},admin,1,\"system:masters\"\n"))?;
    let token_flag = format!("--token-file={}", tokens.display());
    let mut planes =
        ControlPlanes::start(&mut cluster, 3, &state_dir.join("members"), &[&token_flag])?;
    let api = ApiClient::new(planes.front(), TOKEN, &planes.ca_pem()?)?;

    let leader = planes.etcd_leader()?;
    let mut election_ms = None;
    let etcd_leader = window(&api, Call::Create, || {
        let killed = Instant::now();
        planes.kill_etcd(leader);
        while Instant::now() < killed + GIVE_UP {
            if planes.etcd_leader_without(leader).is_ok() {
                election_ms = Some(killed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    })?;
    // Another member's server than the killed etcd's: both faults at once
    // would be a member lost, not one process.
    let member = if leader == 1 { 2 } else { 1 };
    let api_server = window(&api, Call::FreshGet, || planes.kill_control(member))?;
    Ok(HaWindows {
        etcd_leader: Some(HaWindow {
            window_ms: etcd_leader.0,
            failed_calls: etcd_leader.1,
            baseline_ms: election_ms,
        }),
        api_server: Some(HaWindow {
            window_ms: api_server.0,
            failed_calls: api_server.1,
            baseline_ms: Some(ENDPOINT_LEASE_TTL_MS),
        }),
        error: None,
    })
}

#[derive(Clone, Copy)]
enum Call {
    /// A ConfigMap create on the kept connection (a new one after a failure).
    Create,
    /// A GET on a connection of its own.
    FreshGet,
}

/// One call's start, end and outcome.
type Outcome = (Instant, Instant, bool);

/// Runs `kill` while a client calls the API; returns the error window
/// (ms) and the number of failed calls.
fn window(api: &ApiClient, call: Call, kill: impl FnOnce()) -> Result<(f64, usize)> {
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = thread::spawn({
        let (api, outcomes, stop) = (api.clone(), outcomes.clone(), stop.clone());
        move || calls(&api, call, &outcomes, &stop)
    });
    let warm = Instant::now();
    while outcomes
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|o| o.2)
        .count()
        < WARM_CALLS
    {
        if warm.elapsed() > GIVE_UP || client.is_finished() {
            stop.store(true, Ordering::Relaxed);
            bail!("the API at its one address did not answer before the kill");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let killed_at = Instant::now();
    kill();
    loop {
        let settled = {
            let outcomes = outcomes.lock().expect("not poisoned");
            let last_failure = outcomes.iter().filter(|o| !o.2).map(|o| o.1).max();
            let since = last_failure.unwrap_or(killed_at).max(killed_at);
            outcomes.last().is_some_and(|o| o.1 > since + SETTLED)
        };
        if settled || killed_at.elapsed() > GIVE_UP {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    client.join().expect("the client thread does not panic");
    let outcomes = outcomes.lock().expect("not poisoned");
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.2 && o.1 >= killed_at)
        .collect();
    let window = match (failed.first(), failed.last()) {
        (Some(first), Some(last)) => (last.1 - first.0).as_secs_f64() * 1000.0,
        _ => 0.0,
    };
    Ok((window, failed.len()))
}

/// Calls until `stop`, recording each outcome.
fn calls(api: &ApiClient, call: Call, outcomes: &Mutex<Vec<Outcome>>, stop: &AtomicBool) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let mut kept = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let started = Instant::now();
        let ok = runtime.block_on(async {
            let attempt = async {
                match call {
                    Call::Create => {
                        if kept.is_none() {
                            kept = Some(api.connect().await.ok()?);
                        }
                        let body = json!({
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": { "name": format!("ha-{seq}") },
                        })
                        .to_string();
                        let path = "/api/v1/namespaces/default/configmaps";
                        let connection = kept.as_mut()?;
                        let created = [StatusCode::CREATED];
                        connection
                            .call(Method::POST, path, Some(body.as_bytes()), &created)
                            .await
                            .ok()
                    }
                    Call::FreshGet => {
                        let mut connection = api.connect().await.ok()?;
                        let path = "/api/v1/namespaces/default";
                        connection
                            .call(Method::GET, path, None, &[StatusCode::OK])
                            .await
                            .ok()
                    }
                }
            };
            let ok = matches!(
                tokio::time::timeout(CALL_TIMEOUT, attempt).await,
                Ok(Some(_))
            );
            if !ok {
                kept = None;
            }
            ok
        });
        outcomes
            .lock()
            .expect("not poisoned")
            .push((started, Instant::now(), ok));
    }
}
