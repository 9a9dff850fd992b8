//! The scale sweep: for N Services (2–10 endpoints each), how long skiff
//! takes to program them all and to apply one change, what the agent
//! holds in memory, and how connecting to the last Service compares with
//! connecting to its backend directly; and, at the same N, how long the
//! real kube-proxy (iptables mode) takes for its first full sync, by its
//! own measurement, and `nft -f` of kube-proxy's nftables rules, and what
//! connecting costs through them. At the largest N, what skiff costs
//! connections that go to no Service: against the same node without skiff.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    catalog::{CRR_PORT, Plane, Svc, endpoint_slice_object, etcd_objects, scale_service},
    etcd_bulk::EtcdBulk,
    load,
    metrics::{gauge, histogram_quantile},
    plan::Plan,
    progress::Progress,
    results::{
        BaselineAtScale, Connect, NoServiceConnects, ScalePoint, SkiffAtScale, median,
        still_running,
    },
    rig::{Rig, cpu_seconds, rss_mb, status_mb},
    rules::{Baseline, Loaded, NodeRules},
};

/// Between single-Service changes, so each is its own watch batch.
const CHANGE_GAP: Duration = Duration::from_millis(10);
/// For the last change to reach the maps before the histogram is read.
const SETTLE: Duration = Duration::from_millis(500);

/// How long an agent's programs may take to be hooked after its first full
/// sync, or released after its pins are removed.
const ATTACHMENT_LIMIT: Duration = Duration::from_secs(10);
/// A started agent goes on working after its programs are hooked (its
/// full sync's log, the DNS and Ingress indexes) on the cores the
/// connections use: it counts as settled once it takes at most
/// `SETTLED_SHARE` of a CPU over one `SETTLED_WINDOW`, within
/// `SETTLED_LIMIT`.
const SETTLED_SHARE: f64 = 0.05;
const SETTLED_WINDOW: Duration = Duration::from_millis(500);
const SETTLED_LIMIT: Duration = Duration::from_secs(60);

pub struct Sweep {
    pub points: Vec<ScalePoint>,
    pub no_service: Option<NoServiceConnects>,
}

pub fn run(
    rig: &mut Rig,
    plan: &Plan,
    bulk: &EtcdBulk,
    rules: &mut NodeRules,
    progress: &Progress,
) -> Sweep {
    // Node 2's agent would program every Service too and take CPU from
    // node 1's; its pinned programs keep serving without it.
    if let Err(error) = rig.stop_agent(2, false) {
        progress.step(format_args!("stopping node2's agent failed: {error:#}"));
    }
    let pool = rig.backend_endpoints();
    let mut points = Vec::new();
    let mut written = 0;
    let mut largest = Vec::new();
    for &n in plan.scales {
        let mut point = ScalePoint {
            services: n,
            ..ScalePoint::default()
        };
        let skiff: Vec<Svc> = (0..n)
            .map(|i| scale_service(Plane::Skiff, i, &pool))
            .collect();
        point.endpoints = skiff.iter().map(|svc| svc.endpoints.len()).sum();
        progress.step(format_args!(
            "scale N={n}: writing {} Services ({} endpoints in all) to etcd",
            n - written,
            point.endpoints
        ));
        let started = Instant::now();
        let objects = skiff[written..]
            .iter()
            .flat_map(etcd_objects)
            .map(|(key, value)| (key, value.to_string()));
        if let Err(error) = bulk.put_all(objects) {
            point
                .skiff
                .errors
                .push(format!("writing to etcd: {error:#}"));
            points.push(point);
            break;
        }
        written = n;
        point.etcd_write_seconds = started.elapsed().as_secs_f64();
        point.etcd_rss_mb = rss_mb(rig.etcd_pid()).ok();

        point.skiff = measure_skiff(rig, plan, bulk, &skiff, progress);
        for baseline in [Baseline::Iptables, Baseline::Nftables] {
            let earlier: Vec<&BaselineAtScale> = points
                .iter()
                .map(|p: &ScalePoint| match baseline {
                    Baseline::Iptables => &p.iptables,
                    Baseline::Nftables => &p.nftables,
                })
                .collect();
            let measured = match too_slow(&earlier, &points, n, plan.baseline_sync_timeout) {
                Some(why) => {
                    progress.step(format_args!(
                        "scale N={n}: {} skipped: {why}",
                        baseline.name()
                    ));
                    BaselineAtScale {
                        skipped: Some(why),
                        ..BaselineAtScale::default()
                    }
                }
                None => {
                    let plane = match baseline {
                        Baseline::Iptables => Plane::Iptables,
                        Baseline::Nftables => Plane::Nftables,
                    };
                    let services: Vec<Svc> =
                        (0..n).map(|i| scale_service(plane, i, &pool)).collect();
                    measure_baseline(rig, plan, rules, baseline, &services, progress)
                }
            };
            match baseline {
                Baseline::Iptables => point.iptables = measured,
                Baseline::Nftables => point.nftables = measured,
            }
        }
        points.push(point);
        largest = skiff;
    }
    let no_service =
        (!largest.is_empty()).then(|| no_service_connects(rig, plan, &largest, progress));
    Sweep { points, no_service }
}

/// Below this N a sync's time is mostly fixed cost (starting kube-proxy's
/// iptables-restore, a whole-table dump), so scaling it linearly to a
/// larger N would overestimate by orders of magnitude.
const MIN_N_TO_EXTRAPOLATE: usize = 1000;

/// Why a baseline is not worth loading at `n` Services: it timed out at a
/// smaller N, or its time at the previous N (of at least
/// `MIN_N_TO_EXTRAPOLATE`), scaled linearly (syncs grow at least that
/// fast), already exceeds the timeout. A load killed at the timeout may
/// only die once the kernel has worked through its whole batch, which at
/// 100 000 Services could take hours.
fn too_slow(
    earlier: &[&BaselineAtScale],
    points: &[ScalePoint],
    n: usize,
    timeout: Duration,
) -> Option<String> {
    for (baseline, point) in earlier.iter().zip(points).rev() {
        if baseline.timed_out_after_seconds.is_some() {
            return Some(format!("it timed out at N={}", point.services));
        }
        if let Some(why) = &baseline.skipped {
            return Some(why.clone());
        }
        if let Some(took) = baseline.sync_seconds {
            if point.services < MIN_N_TO_EXTRAPOLATE {
                return None;
            }
            let predicted = took * n as f64 / point.services as f64;
            if predicted > timeout.as_secs_f64() {
                return Some(format!(
                    "{took:.1} s at N={} predicts at least {predicted:.0} s, over the {} s timeout",
                    point.services,
                    timeout.as_secs()
                ));
            }
            return None;
        }
    }
    None
}

fn measure_skiff(
    rig: &mut Rig,
    plan: &Plan,
    bulk: &EtcdBulk,
    services: &[Svc],
    progress: &Progress,
) -> SkiffAtScale {
    let n = services.len();
    let mut skiff = SkiffAtScale::default();
    progress.step(format_args!(
        "scale N={n}: skiff-agent on node1 programs everything from empty maps"
    ));
    let restarted = rig
        .stop_agent(1, true)
        .and_then(|()| rig.start_agent(1, plan.sync_timeout));
    if let Err(error) = restarted {
        skiff.errors.push(format!("agent full sync: {error:#}"));
        return skiff;
    }
    match rig.metrics(1) {
        Ok(text) => skiff.full_sync_seconds = gauge(&text, "skiff_last_full_sync_seconds"),
        Err(error) => skiff.errors.push(format!("{error:#}")),
    }
    progress.step(format_args!(
        "scale N={n}: skiff full sync {}; now {} single-Service changes",
        seconds(skiff.full_sync_seconds),
        plan.changes
    ));

    let pool = rig.backend_endpoints();
    for k in 0..plan.changes {
        // Spread over the Services; each gets another endpoint set.
        let index = (k * 7919) % n;
        let svc = &services[index];
        let other = scale_service(Plane::Skiff, index + 1 + k, &pool).endpoints;
        let (key, value) = endpoint_slice_object(svc, &other);
        if let Err(error) = bulk.put(key, value.to_string()) {
            skiff.errors.push(format!("writing a change: {error:#}"));
            break;
        }
        thread::sleep(CHANGE_GAP);
    }
    thread::sleep(SETTLE);
    match rig.metrics(1) {
        Ok(text) => {
            let name = "skiff_change_to_datapath_seconds";
            skiff.change_p99_seconds = histogram_quantile(&text, name, 0.99);
            skiff.changes = gauge(&text, &format!("{name}_count")).unwrap_or(0.0) as usize;
        }
        Err(error) => skiff.errors.push(format!("{error:#}")),
    }
    let agent = rig.agent_pid(1);
    skiff.agent_rss_mb = agent.and_then(|pid| rss_mb(pid).ok());
    skiff.agent_rss_anon_mb = agent.and_then(|pid| status_mb(pid, "RssAnon").ok());
    progress.step(format_args!(
        "scale N={n}: change→datapath p99 {} over {} batches, agent RSS {:.1} MB ({:.1} MB anonymous)",
        seconds(skiff.change_p99_seconds),
        skiff.changes,
        skiff.agent_rss_mb.unwrap_or(f64::NAN),
        skiff.agent_rss_anon_mb.unwrap_or(f64::NAN)
    ));
    match connect(rig, plan, services, progress, "skiff") {
        Ok(connect) => skiff.connect = Some(connect),
        Err(error) => skiff.errors.push(format!("connecting: {error:#}")),
    }
    skiff
}

fn measure_baseline(
    rig: &Rig,
    plan: &Plan,
    rules: &mut NodeRules,
    baseline: Baseline,
    services: &[Svc],
    progress: &Progress,
) -> BaselineAtScale {
    let n = services.len();
    let name = baseline.name();
    let mut measured = BaselineAtScale::default();
    progress.step(format_args!("scale N={n}: {}", baseline.loading()));
    match rules.load(baseline, services, plan.baseline_sync_timeout) {
        Ok(Loaded::Took(took)) => {
            measured.sync_seconds = Some(took.as_secs_f64());
            progress.step(format_args!(
                "scale N={n}: {} {:.3} s",
                baseline.sync_figure(),
                took.as_secs_f64()
            ));
            match connect(rig, plan, services, progress, name) {
                Ok(connect) => measured.connect = Some(connect),
                Err(error) => measured.error = Some(format!("connecting: {error:#}")),
            }
        }
        Ok(Loaded::TimedOut(after, running)) => {
            measured.timed_out_after_seconds = Some(after.as_secs_f64());
            progress.step(format_args!(
                "scale N={n}: {name} sync timed out after {:.0} s{}",
                after.as_secs_f64(),
                still_running(&running)
            ));
            measured.still_running = running;
        }
        Err(error) => {
            progress.step(format_args!("scale N={n}: {name} load failed: {error:#}"));
            measured.error = Some(format!("{error:#}"));
        }
    }
    if let Err(error) = rules.clear() {
        measured.error.get_or_insert(format!("clearing: {error:#}"));
    }
    measured
}

/// Connections from the client pod to a backend's own address, which no
/// Service has, while node 1's agent holds every Service of `services`,
/// against the same connections with its programs detached and its maps
/// freed (the node as it was before skiff), alternating which goes first.
/// Both pass node 2's pinned programs on the way, so only node 1 differs.
/// Node 1's agent is attached again at the end.
fn no_service_connects(
    rig: &mut Rig,
    plan: &Plan,
    services: &[Svc],
    progress: &Progress,
) -> NoServiceConnects {
    let n = services.len();
    let svc = services.last().expect("a scale has at least one Service");
    let direct = SocketAddr::from((svc.endpoints[0].ip, CRR_PORT));
    let mut measured = NoServiceConnects {
        services: n,
        ..NoServiceConnects::default()
    };
    progress.step(format_args!(
        "scale N={n}: connects to {direct} (no Service) with skiff loaded, against a pristine node1"
    ));
    let rounds = plan.scale_rounds.max(2);
    for round in 0..rounds {
        for pristine in [round % 2 == 0, round % 2 == 1] {
            let sample = set_skiff_on_node1(rig, plan, !pristine)
                .and_then(|()| load::crr(&rig.client, direct, plan.scale_connect_time));
            let sample = match sample {
                Ok(sample) => sample,
                Err(error) => {
                    measured.error = Some(format!("{error:#}"));
                    break;
                }
            };
            let (rate, p50) = if pristine {
                (
                    &mut measured.pristine_per_second,
                    &mut measured.pristine_connect_p50_us,
                )
            } else {
                (
                    &mut measured.loaded_per_second,
                    &mut measured.loaded_connect_p50_us,
                )
            };
            rate.push(sample.per_second);
            p50.push(sample.connect_p50_us);
        }
        if measured.error.is_some() {
            break;
        }
    }
    if let Err(error) = set_skiff_on_node1(rig, plan, true) {
        measured
            .error
            .get_or_insert(format!("attaching node1's agent again: {error:#}"));
    }
    progress.step(format_args!(
        "scale N={n}: no-Service connects {} a pristine node1",
        measured
            .ratio()
            .map_or_else(|| "not measured against".into(), |r| format!("{r:.3}× of"))
    ));
    measured
}

/// Node 1 with its agent running and its programs hooked (`loaded`), or
/// with neither its programs nor its maps.
fn set_skiff_on_node1(rig: &mut Rig, plan: &Plan, loaded: bool) -> Result<()> {
    let started = loaded && rig.agent_pid(1).is_none();
    if started {
        rig.start_agent(1, plan.sync_timeout)?;
    } else if !loaded {
        rig.stop_agent(1, true)?;
    }
    rig.wait_attachment(1, loaded, ATTACHMENT_LIMIT)?;
    match rig.agent_pid(1) {
        Some(pid) if started => wait_settled(pid),
        _ => Ok(()),
    }
}

/// Waits until the agent `pid` takes at most `SETTLED_SHARE` of a CPU
/// over a `SETTLED_WINDOW` (a rate needs a window to be measured over).
fn wait_settled(pid: u32) -> Result<()> {
    let deadline = Instant::now() + SETTLED_LIMIT;
    let mut before = cpu_seconds(pid)?;
    loop {
        thread::sleep(SETTLED_WINDOW);
        let now = cpu_seconds(pid)?;
        let share = (now - before) / SETTLED_WINDOW.as_secs_f64();
        if share <= SETTLED_SHARE {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "node1's agent still took {:.0} % of a CPU {} s after its programs were hooked",
                share * 100.0,
                SETTLED_LIMIT.as_secs()
            );
        }
        before = now;
    }
}

/// Waits until connections through `through` complete. A plane's own word
/// that it has synced (kube-proxy's sync metric, `nft -f` returning) can
/// come before its first connection gets through, and one lost SYN costs a
/// whole short measuring window its every connection: the measured rounds
/// start once the path works, and a path that never works within
/// `limit` is an error.
fn reachable(rig: &Rig, through: SocketAddr, window: Duration, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match load::crr(&rig.client, through, window) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context(format!(
                    "no connection through {through} within {} s",
                    limit.as_secs()
                )));
            }
            Err(_) => {}
        }
    }
}

/// Connection rate to `svc` (through whatever serves its VIP now) against
/// direct connections to its first endpoint, alternating.
fn connect(
    rig: &Rig,
    plan: &Plan,
    services: &[Svc],
    progress: &Progress,
    name: &str,
) -> Result<Connect> {
    let svc = services.last().expect("a scale has at least one Service");
    let services = services.len();
    let through = SocketAddr::from((svc.vip, svc.ports[0].port));
    let direct = SocketAddr::from((svc.endpoints[0].ip, CRR_PORT));
    let (mut via, mut straight): (Vec<load::Crr>, Vec<load::Crr>) = (Vec::new(), Vec::new());
    let time = plan.scale_connect_time;
    reachable(rig, through, time, plan.sync_timeout)?;
    for round in 0..plan.scale_rounds {
        // Alternate which goes first, so neither always runs warm.
        if round % 2 == 0 {
            straight.push(load::crr(&rig.client, direct, time).context("direct")?);
        }
        via.push(load::crr(&rig.client, through, time).with_context(|| format!("to {through}"))?);
        if round % 2 == 1 {
            straight.push(load::crr(&rig.client, direct, time).context("direct")?);
        }
    }
    let med = |samples: &[load::Crr], field: fn(&load::Crr) -> f64| {
        median(&samples.iter().map(field).collect::<Vec<_>>()).unwrap_or(0.0)
    };
    let connect = Connect {
        per_second: med(&via, |c| c.per_second),
        direct_per_second: med(&straight, |c| c.per_second),
        connect_p50_us: med(&via, |c| c.connect_p50_us),
        connect_p99_us: med(&via, |c| c.connect_p99_us),
        direct_connect_p50_us: med(&straight, |c| c.connect_p50_us),
    };
    progress.step(format_args!(
        "scale N={}: {name} to the last Service {:.0} conn/s (direct {:.0}), connect p50 {:.0} µs, {} failed",
        services,
        connect.per_second,
        connect.direct_per_second,
        connect.connect_p50_us,
        via.iter().map(|c| c.errors).sum::<u64>()
    ));
    Ok(connect)
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".into(), |s| format!("{:.4} s", s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(services: usize, baseline: BaselineAtScale) -> (ScalePoint, BaselineAtScale) {
        let point = ScalePoint {
            services,
            ..ScalePoint::default()
        };
        (point, baseline)
    }

    #[test]
    fn slow_or_timed_out_baselines_are_not_loaded_at_larger_scales() {
        let timeout = Duration::from_secs(120);
        let took = |s| BaselineAtScale {
            sync_seconds: Some(s),
            ..BaselineAtScale::default()
        };
        let (points, baselines): (Vec<_>, Vec<_>) =
            [at(1, took(0.2)), at(1000, took(0.9))].into_iter().unzip();
        let earlier: Vec<&BaselineAtScale> = baselines.iter().collect();
        assert_eq!(too_slow(&earlier, &points, 10_000, timeout), None);
        assert_eq!(
            too_slow(&earlier[..1], &points[..1], 1000, timeout),
            None,
            "0.2 s at N=1 is fixed cost, not 200 s at N=1000"
        );
        let why = too_slow(&earlier, &points, 1_000_000, timeout).unwrap();
        assert!(why.contains("predicts at least 900 s"), "{why}");

        let timed_out = BaselineAtScale {
            timed_out_after_seconds: Some(120.0),
            ..BaselineAtScale::default()
        };
        let (points, baselines): (Vec<_>, Vec<_>) = [at(1000, took(0.9)), at(10_000, timed_out)]
            .into_iter()
            .unzip();
        let earlier: Vec<&BaselineAtScale> = baselines.iter().collect();
        assert_eq!(
            too_slow(&earlier, &points, 100_000, timeout).as_deref(),
            Some("it timed out at N=10000")
        );
    }
}
