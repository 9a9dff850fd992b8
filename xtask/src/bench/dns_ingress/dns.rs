//! Cluster DNS from a pod: queries per second and latency of skiff's agent
//! (reached as pods reach it, at the kube-dns ClusterIP) against dnsmasq
//! serving the same records on node 1, alternating in every round; and how
//! long a Service created through the API takes to resolve, beside how
//! long its ClusterIP takes to accept a connection.
//!
//! The records: `plan.dns_services` ClusterIP Services
//! `svc-<i>.default.svc.cluster.local` and one headless Service whose name
//! holds the backend pods' addresses. The load generator (`skiff-load dns`,
//! hickory-proto messages over UDP, 64 in flight) cycles through all of
//! them, by absolute name.

use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use skiff_tests::{Pod, load_binary};

use super::{Rig, dnsmasq, endpoint_slice, figure, rounds, service};
use crate::bench::{
    plan::Plan,
    progress::Progress,
    results::{Figure, Latency, Measured, Propagation},
};

/// The kube-dns Service skiff-control makes: the service range's `.10`.
const KUBE_DNS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)), 53);
/// ClusterIPs the bench chooses: the load's Services, then the timed ones.
const LOAD_IPS: u32 = u32::from_be_bytes([10, 96, 16, 0]);
const TIMED_IPS: u32 = u32::from_be_bytes([10, 96, 32, 0]);
const PORT: u16 = 80;
const IN_FLIGHT: usize = 64;
/// How long a fresh cluster's agent may take to serve every record.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// One timed Service's deadline to resolve and accept.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Timed changes: at most this many, however many the plan's sweep makes.
const MAX_TIMED_CHANGES: usize = 100;

const SKIFF: &str = "skiff-agent";
const BASELINE: &str = "dnsmasq";

#[derive(Deserialize)]
struct Report {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    failed: u64,
    lost: u64,
}

pub fn run(rig: &mut Rig, plan: &Plan, progress: &Progress) -> Result<(Vec<Figure>, Propagation)> {
    let records = records(plan.dns_services, &rig.backend_ips());
    progress.step(format_args!(
        "DNS: creating {} Services and a headless one through the API",
        plan.dns_services
    ));
    let mut objects: Vec<_> = (0..plan.dns_services)
        .map(|i| service(&format!("svc-{i}"), Some(load_ip(i)), PORT))
        .collect();
    objects.push(service("headless", None, PORT));
    objects.push(endpoint_slice("headless", &rig.backend_ips(), PORT));
    rig.create_all(objects)?;

    let (server, baseline) = dnsmasq::start(rig.node(1), &records, rig.state_dir())?;
    rig.keep(server);
    // The last Service written and the headless name: once both answer,
    // every record is there.
    let probes = [
        fqdn(&format!("svc-{}", plan.dns_services - 1)),
        fqdn("headless"),
    ];
    wait_answering(&rig.client, baseline, &probes).context("dnsmasq does not answer")?;
    let skiff_unavailable = wait_answering(&rig.client, KUBE_DNS, &probes)
        .err()
        .map(|error| format!("kube-dns ({KUBE_DNS}) does not answer from a pod: {error:#}"));
    if let Some(why) = &skiff_unavailable {
        progress.step(format_args!("DNS: {SKIFF} not measured: {why}"));
    }

    let variants = [(BASELINE, None), (SKIFF, skiff_unavailable.clone())];
    let mut figures = [
        (
            "dns_qps",
            "DNS queries per second from a pod",
            "queries/s",
            true,
        ),
        ("dns_p50_us", "DNS query latency p50", "µs", false),
        ("dns_p99_us", "DNS query latency p99", "µs", false),
    ]
    .map(|head| figure(head, BASELINE, &variants))
    .to_vec();
    let names: Vec<String> = unique_names(&records);
    let targets = [(BASELINE, baseline), (SKIFF, KUBE_DNS)];
    rounds(
        plan,
        &mut figures,
        &targets,
        |server| {
            let report = query_load(&rig.client, *server, &names, plan.figure_time)?;
            Ok(vec![
                ("dns_qps", report.per_second),
                ("dns_p50_us", report.p50_us),
                ("dns_p99_us", report.p99_us),
            ])
        },
        progress,
    );

    let changes = plan.changes.min(MAX_TIMED_CHANGES);
    progress.step(format_args!(
        "DNS: {changes} Services created through the API, each timed until it resolves and accepts"
    ));
    let dns = skiff_unavailable.is_none().then_some(KUBE_DNS);
    let mut propagation = propagation(rig, changes, dns);
    propagation.dns_unavailable = skiff_unavailable;
    Ok((figures, propagation))
}

/// The FQDN of Service `name` in `default`, absolute.
fn fqdn(name: &str) -> String {
    format!("{name}.default.svc.cluster.local.")
}

fn load_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(LOAD_IPS + index as u32)
}

/// Every (name, address) both servers hold: the ClusterIP Services', then
/// the headless Service's one per backend.
fn records(services: usize, backends: &[Ipv4Addr]) -> Vec<(String, Ipv4Addr)> {
    let mut records: Vec<(String, Ipv4Addr)> = (0..services)
        .map(|i| (fqdn(&format!("svc-{i}")), load_ip(i)))
        .collect();
    records.extend(backends.iter().map(|ip| (fqdn("headless"), *ip)));
    records
}

fn unique_names(records: &[(String, Ipv4Addr)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in records {
        if names.last() != Some(name) {
            names.push(name.clone());
        }
    }
    names
}

/// `skiff-load dns` from `pod` to `server`: every query must be answered
/// with an address.
fn query_load(pod: &Pod, server: SocketAddr, names: &[String], time: Duration) -> Result<Report> {
    let mut command = pod.command(load_binary()?);
    command
        .args(["dns", &server.to_string()])
        .arg(format!("--seconds={:.3}", time.as_secs_f64()))
        .arg(format!("--in-flight={IN_FLIGHT}"))
        .args(names);
    let stdout = super::output_of(&mut command)?;
    let line = stdout.lines().last().unwrap_or_default();
    let report: Report = serde_json::from_str(line)
        .with_context(|| format!("reading skiff-load dns's report: {line}"))?;
    if report.failed > 0 {
        bail!("{server}: {} answers without the address", report.failed);
    }
    if report.lost > 0 {
        bail!("{server}: {} queries lost", report.lost);
    }
    Ok(report)
}

/// Until each of `names` resolves at `server` from `pod`.
fn wait_answering(pod: &Pod, server: SocketAddr, names: &[String]) -> Result<()> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    for name in names {
        loop {
            let mut command = pod.command(load_binary()?);
            command
                .args([
                    "dns",
                    &server.to_string(),
                    "--seconds=0.05",
                    "--in-flight=1",
                ])
                .arg(name);
            match super::output_of(&mut command) {
                Ok(_) => break,
                Err(error) if Instant::now() > deadline => {
                    return Err(error.context(format!("{name} after {ANSWER_TIMEOUT:?}")));
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    Ok(())
}

/// `changes` Services `timed-<k>` created one at a time through the API,
/// each with its EndpointSlice (a backend on port 80) written first: the
/// milliseconds until its name resolves (when `dns` is given) and until
/// its ClusterIP accepts a connection, both from the client pod.
fn propagation(rig: &Rig, changes: usize, dns: Option<SocketAddr>) -> Propagation {
    let mut dns_ms = Vec::new();
    let mut datapath_ms = Vec::new();
    let mut error = None;
    let result = (|| -> Result<()> {
        let mut connection = rig.connect()?;
        let backend = rig.backend_ips()[0];
        for k in 0..changes {
            let name = format!("timed-{k}");
            let ip = Ipv4Addr::from(TIMED_IPS + k as u32);
            rig.create_all(vec![endpoint_slice(&name, &[backend], PORT)])?;
            let mut probe =
                Probe::start(&rig.client, &fqdn(&name), SocketAddr::from((ip, PORT)), dns)?;
            probe.go()?;
            let (path, object) = service(&name, Some(ip), PORT);
            rig.create_on(&mut connection, &path, &object)?;
            let timed = probe.finish()?;
            if let Some(ms) = timed.dns_ms {
                dns_ms.push(ms);
            }
            datapath_ms.push(timed.datapath_ms.context("no datapath time")?);
        }
        Ok(())
    })();
    if let Err(failure) = result {
        error = Some(format!("{failure:#}"));
    }
    let measured = |samples: Vec<f64>, error: Option<String>| Measured {
        latency: Latency::of(samples),
        error,
    };
    Propagation {
        changes,
        dns: match dns {
            Some(_) => measured(dns_ms, error.clone()),
            None => measured(
                Vec::new(),
                Some("kube-dns does not answer from a pod".into()),
            ),
        },
        datapath: measured(datapath_ms, error),
        dns_unavailable: None,
    }
}

#[derive(Deserialize)]
struct Timed {
    dns_ms: Option<f64>,
    datapath_ms: Option<f64>,
}

/// A running `skiff-load propagation`, ready for its start line.
struct Probe {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Probe {
    fn start(pod: &Pod, name: &str, service: SocketAddr, dns: Option<SocketAddr>) -> Result<Self> {
        let mut command: Command = pod.command(load_binary()?);
        command
            .args(["propagation", name, &service.to_string()])
            .arg(format!("--timeout={}", PROPAGATION_TIMEOUT.as_secs()));
        if let Some(dns) = dns {
            command.arg(format!("--dns={dns}"));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting skiff-load propagation")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut probe = Probe {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        match probe.lines.next() {
            Some(Ok(line)) if line == "ready" => Ok(probe),
            other => bail!("skiff-load propagation did not get ready: {other:?}"),
        }
    }

    fn go(&mut self) -> Result<()> {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .context("starting skiff-load propagation's clock")
    }

    fn finish(&mut self) -> Result<Timed> {
        let line = self.lines.next();
        let status = self
            .child
            .wait()
            .context("waiting for skiff-load propagation")?;
        match line {
            Some(Ok(line)) if status.success() => serde_json::from_str(&line)
                .with_context(|| format!("reading skiff-load propagation's report: {line}")),
            _ => bail!("skiff-load propagation failed ({status}); see its stderr above"),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Gone already when it finished; otherwise it must not linger.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_each_service_and_each_headless_backend() {
        let backends = [Ipv4Addr::new(10, 244, 2, 2), Ipv4Addr::new(10, 244, 2, 3)];
        let records = records(2, &backends);
        assert_eq!(
            records,
            [
                (
                    "svc-0.default.svc.cluster.local.".to_owned(),
                    Ipv4Addr::new(10, 96, 16, 0)
                ),
                (
                    "svc-1.default.svc.cluster.local.".to_owned(),
                    Ipv4Addr::new(10, 96, 16, 1)
                ),
                (
                    "headless.default.svc.cluster.local.".to_owned(),
                    backends[0]
                ),
                (
                    "headless.default.svc.cluster.local.".to_owned(),
                    backends[1]
                ),
            ]
        );
        assert_eq!(unique_names(&records).len(), 3);
    }
}
