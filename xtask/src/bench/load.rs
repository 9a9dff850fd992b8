//! Running the load generators (`skiff-load`, `iperf3`) where a figure
//! needs them and reading what they report.

use std::{
    io::{BufRead, BufReader, Lines},
    net::SocketAddr,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use skiff_tests::{Host, Pod, load_binary};

use super::catalog::SINK_PORT;

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Crr {
    pub per_second: f64,
    /// Connections that failed (each counts against the rate).
    pub errors: u64,
    pub connect_p50_us: f64,
    pub connect_p99_us: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Rr {
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Deserialize)]
struct Sunk {
    per_second: f64,
}

fn seconds_arg(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64())
}

/// New connections per second from `pod` to `target`.
pub fn crr(pod: &Pod, target: SocketAddr, duration: Duration) -> Result<Crr> {
    let mut command = pod.command(load_binary()?);
    command.args([
        "crr",
        &target.to_string(),
        "--seconds",
        &seconds_arg(duration),
    ]);
    json_report(&mut command)
}

/// Ping-pong latency from `pod` to `target`.
pub fn rr(pod: &Pod, target: SocketAddr, duration: Duration) -> Result<Rr> {
    let mut command = pod.command(load_binary()?);
    command.args([
        "rr",
        &target.to_string(),
        "--seconds",
        &seconds_arg(duration),
    ]);
    json_report(&mut command)
}

/// TCP throughput from `pod` to an `iperf3 -s` at `target`, in Gbit/s.
pub fn iperf(pod: &Pod, target: SocketAddr, duration: Duration) -> Result<f64> {
    let mut command = pod.command("iperf3");
    command.args([
        "-c",
        &target.ip().to_string(),
        "-p",
        &target.port().to_string(),
        "-t",
        &duration.as_secs().max(1).to_string(),
        "-J",
    ]);
    let report: serde_json::Value = json_report(&mut command)?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bits| bits / 1e9)
        .with_context(|| format!("iperf3 reported no throughput: {}", report["error"]))
}

/// Delivered UDP packets per second: a sink in `sink` (pinned to CPU 1)
/// counts what a blaster in `from` (pinned to CPU 0) sends to `target`.
pub fn udp_pps(from: &Host, sink: &Pod, target: SocketAddr, duration: Duration) -> Result<f64> {
    let mut receiver = Sink::start(sink)?;
    udp_blast_pinned(from, target, duration)?;
    let sunk: Sunk = receiver.finish()?;
    Ok(sunk.per_second)
}

/// What a blast reports.
#[derive(Deserialize)]
pub struct Blast {
    /// How long it sent, in seconds.
    pub seconds: f64,
}

/// The NodePort figure's blast: from the host `from`, pinned to CPU 0, at
/// `target` for `duration`.
pub fn udp_blast_pinned(from: &Host, target: SocketAddr, duration: Duration) -> Result<Blast> {
    let mut blast = from.command("taskset");
    blast.args(["-c", "0"]).arg(load_binary()?).args([
        "udp-blast",
        &target.to_string(),
        "--seconds",
        &seconds_arg(duration),
    ]);
    json_report(&mut blast)
}

/// Blasts UDP from the pod `from` at `target` for `duration`, counting
/// nothing: for what the packets cost on the way.
pub fn udp_blast(from: &Pod, target: SocketAddr, duration: Duration) -> Result<()> {
    let mut blast = from.command(load_binary()?);
    blast.args([
        "udp-blast",
        &target.to_string(),
        "--seconds",
        &seconds_arg(duration),
    ]);
    let _: serde_json::Value = json_report(&mut blast)?;
    Ok(())
}

/// Runs `command` and parses the last line of its stdout as JSON.
fn json_report<T: for<'de> Deserialize<'de>>(command: &mut Command) -> Result<T> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = stderr
            .lines()
            .last()
            .or(stdout.lines().last())
            .unwrap_or("");
        bail!("{program} failed ({}): {why}", output.status);
    }
    // skiff-load prints one JSON line, iperf3 -J one multi-line object.
    let text = stdout.trim();
    serde_json::from_str(text).with_context(|| format!("reading {program}'s report: {text}"))
}

/// A running `skiff-load udp-sink`; killed if dropped before it finished.
struct Sink {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Sink {
    fn start(pod: &Pod) -> Result<Self> {
        let mut command = pod.command("taskset");
        command
            .args(["-c", "1"])
            .arg(load_binary()?)
            .args(["udp-sink", "--port", &SINK_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = command.spawn().context("starting skiff-load udp-sink")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut sink = Sink {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        match sink.lines.next() {
            Some(Ok(line)) if line == "ready" => Ok(sink),
            other => bail!("udp-sink did not get ready: {other:?}"),
        }
    }

    fn finish(&mut self) -> Result<Sunk> {
        let line = self
            .lines
            .next()
            .context("udp-sink ended without a report")?
            .context("reading udp-sink's report")?;
        self.child.wait().context("waiting for udp-sink")?;
        serde_json::from_str(&line).with_context(|| format!("reading udp-sink's report: {line}"))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Gone already when it finished; otherwise it must not linger.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
