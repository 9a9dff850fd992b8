//! `skiff-etcd watch-fanout`: what one Service change costs when every
//! agent holds its own etcd watch. Starts `--processes` child processes
//! (`skiff-etcd watchers`) sharing `--watchers` simulated agents, waits
//! until all have listed, then writes the probe Service `--changes` times,
//! one at a time, each once the previous one has reached every watcher.
//! Prints `{"phase":"watching"}` when the watchers are up (a caller
//! sampling etcd's CPU starts its clock there) and one JSON summary once
//! the last change has arrived: milliseconds from the write to each watcher's receipt, p50 and
//! p99, and to the last watcher's.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use skiff_etcd::kv::Kv;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::stamp::{now_unix_nanos, probe_key, probe_service};

#[derive(clap::Args)]
pub struct Args {
    /// Where the watchers connect: etcd, or a grpc-proxy in front of it.
    #[arg(long)]
    watch_endpoint: String,
    /// Where the probe Service is written: etcd itself, as skiff-control
    /// writes.
    #[arg(long)]
    write_endpoint: String,
    /// Simulated agents, each with its own connection and watch.
    #[arg(long)]
    watchers: usize,
    /// Processes the watchers are spread over.
    #[arg(long, default_value_t = 4)]
    processes: usize,
    /// Timed changes (one untimed change before them makes sure every
    /// watch is live).
    #[arg(long)]
    changes: usize,
    /// Pause after a change has reached every watcher, in milliseconds.
    #[arg(long, default_value_t = 200)]
    gap_ms: u64,
    /// Longest wait for the watchers to list, or for one change to reach
    /// all of them, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

/// A line from worker `.0`, or `None` when its output ended.
type WorkerLine = (usize, Option<String>);

pub async fn run(args: Args) -> Result<()> {
    let mut workers = Vec::new();
    let outcome = measure(&args, &mut workers).await;
    // Closing their standard input ends the workers; each reports a change
    // still on its way (on standard error) before it exits.
    for worker in &mut workers {
        drop(worker.stdin.take());
    }
    for mut worker in workers {
        let exited = tokio::time::timeout(WORKER_EXIT, worker.wait()).await;
        if !matches!(exited, Ok(Ok(status)) if status.success()) {
            eprintln!("skiff-etcd watch-fanout: a watcher process did not end cleanly: {exited:?}");
        }
    }
    outcome
}

/// How long a worker may take to close its connections and exit.
const WORKER_EXIT: Duration = Duration::from_secs(30);

async fn measure(args: &Args, workers: &mut Vec<Child>) -> Result<()> {
    ensure!(
        args.processes > 0 && args.watchers >= args.processes,
        "--watchers must be at least --processes, which must be positive"
    );
    let timeout = Duration::from_secs(args.timeout_s);
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    for index in 0..args.processes {
        let count = share(args.watchers, args.processes, index);
        workers.push(spawn_worker(&args.watch_endpoint, count, index, &lines_tx)?);
    }
    drop(lines_tx);
    for ready in 0..args.processes {
        let (index, line) = next_line(&mut lines, timeout).await.with_context(|| {
            format!("{ready} of {} watcher processes were ready", args.processes)
        })?;
        match line.as_deref() {
            Some("ready") => {}
            other => bail!("watcher process {index} said {other:?} instead of ready"),
        }
    }
    println!(
        "{}",
        json!({ "phase": "watching", "watchers": args.watchers })
    );

    let writer = Kv::connect(std::slice::from_ref(&args.write_endpoint))
        .await
        .with_context(|| format!("connecting to {}", args.write_endpoint))?;
    let mut arrivals_us: Vec<u64> = Vec::with_capacity(args.watchers * args.changes);
    let mut last_arrivals_us = Vec::with_capacity(args.changes);
    let mut writes_us = Vec::with_capacity(args.changes);
    let mut relists = 0;
    for change in 0..=args.changes {
        let sent = now_unix_nanos();
        let write_start = Instant::now();
        writer
            .client()
            .put(probe_key(), probe_service(sent), None)
            .await
            .context("writing the probe Service")?;
        let write_us = micros(write_start.elapsed());
        let mut delays = Vec::with_capacity(args.watchers);
        for reported in 0..args.processes {
            let (index, line) = next_line(&mut lines, timeout).await.with_context(|| {
                format!(
                    "change {change}: {reported} of {} processes reported all their watchers",
                    args.processes
                )
            })?;
            let report = parse_report(line.as_deref(), sent)
                .with_context(|| format!("watcher process {index}, change {change}"))?;
            relists = relists.max(report.relists);
            delays.extend(report.delays_us);
        }
        // The first change only proves that every watch is live.
        if change > 0 {
            writes_us.push(write_us);
            last_arrivals_us.push(delays.iter().copied().max().unwrap_or(0));
            arrivals_us.extend(delays);
        }
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    let ms = |samples: &mut [u64], p: f64| percentile_us(samples, p) as f64 / 1000.0;
    let summary = json!({
        "watchers": args.watchers,
        "processes": args.processes,
        "changes": args.changes,
        "arrival_p50_ms": ms(&mut arrivals_us, 50.0),
        "arrival_p99_ms": ms(&mut arrivals_us, 99.0),
        "all_arrived_p50_ms": ms(&mut last_arrivals_us, 50.0),
        "all_arrived_p99_ms": ms(&mut last_arrivals_us, 99.0),
        "write_p50_ms": ms(&mut writes_us, 50.0),
        "relists": relists,
    });
    // Printed before the watchers close, so that a caller reading etcd's
    // CPU at this line does not count 5 000 disconnects.
    println!("{summary}");
    Ok(())
}

/// Worker `index`'s share of `total` watchers.
fn share(total: usize, processes: usize, index: usize) -> usize {
    total / processes + usize::from(index < total % processes)
}

fn spawn_worker(
    endpoint: &str,
    count: usize,
    index: usize,
    lines: &mpsc::UnboundedSender<WorkerLine>,
) -> Result<Child> {
    let exe = std::env::current_exe().context("finding skiff-etcd's own binary")?;
    let mut child = Command::new(exe)
        .args(["watchers", "--endpoint", endpoint, "--count"])
        .arg(count.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting a watcher process")?;
    let stdout = child
        .stdout
        .take()
        .context("the worker's stdout is piped")?;
    let lines = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines.send((index, Some(line))).is_err() {
                return;
            }
        }
        let _ = lines.send((index, None));
    });
    Ok(child)
}

async fn next_line(
    lines: &mut mpsc::UnboundedReceiver<WorkerLine>,
    timeout: Duration,
) -> Result<WorkerLine> {
    match tokio::time::timeout(timeout, lines.recv()).await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => bail!("every watcher process has exited"),
        Err(_) => bail!("no word from the watcher processes in {timeout:?}"),
    }
}

struct Report {
    delays_us: Vec<u64>,
    relists: u64,
}

/// A worker's line for the change stamped `sent`.
fn parse_report(line: Option<&str>, sent: u64) -> Result<Report> {
    let line = line.context("the process exited (its error is above)")?;
    let report: Value = serde_json::from_str(line).with_context(|| format!("reading {line:?}"))?;
    ensure!(
        report["sent_unix_nanos"].as_u64() == Some(sent),
        "expected the change stamped {sent}, got {line}"
    );
    let delays_us = report["delays_us"]
        .as_array()
        .context("no delays_us")?
        .iter()
        .map(|delay| delay.as_u64().context("a delay is not a number"))
        .collect::<Result<_>>()?;
    Ok(Report {
        delays_us,
        relists: report["relists"].as_u64().unwrap_or(0),
    })
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Nearest-rank percentile `p` (0 < p ≤ 100) of `samples`; 0 for none.
fn percentile_us(samples: &mut [u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        let shares: Vec<usize> = (0..3).map(|index| share(5000, 3, index)).collect();
        assert_eq!(shares, [1667, 1667, 1666]);
    }

    #[test]
    fn nearest_rank() {
        let mut samples: Vec<u64> = (1..=200).rev().collect();
        assert_eq!(percentile_us(&mut samples, 50.0), 100);
        assert_eq!(percentile_us(&mut samples, 99.0), 198);
        assert_eq!(percentile_us(&mut [], 99.0), 0);
    }

    #[test]
    fn a_report_for_another_change_is_refused() {
        let line = r#"{"sent_unix_nanos":5,"delays_us":[1,2],"relists":0}"#;
        assert_eq!(parse_report(Some(line), 5).unwrap().delays_us, [1, 2]);
        assert!(parse_report(Some(line), 6).is_err());
        assert!(parse_report(None, 5).is_err());
    }
}
