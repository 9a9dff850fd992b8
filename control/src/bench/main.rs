//! skiff-control-bench: starts etcd and skiff-control on loopback, and
//! prints one JSON line per figure: idle RSS, create rate, RSS with the
//! Services loaded, list time, and watch fan-out delivery times.

mod processes;
mod runs;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use processes::Processes;
use skiff_api_client::ApiClient;

/// Measures skiff-control against a throwaway etcd (loopback only).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Small sizes (1,000 Services, 20 events) for a run of seconds.
    #[arg(long)]
    quick: bool,
    /// Services to create and list [default: 10000, or 1000 with --quick].
    #[arg(long)]
    services: Option<usize>,
    /// Concurrent watchers in the fan-out.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Connections creating Services at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The skiff-control binary [default: next to this one].
    #[arg(long, value_name = "PATH")]
    skiff_control: Option<PathBuf>,
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
}

/// How long the processes settle before the idle figure.
const SETTLE: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let control = match args.skiff_control {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("skiff-control"),
    };
    let services = args
        .services
        .unwrap_or(if args.quick { 1000 } else { 10_000 });
    let (events, list_runs) = if args.quick { (20, 3) } else { (100, 5) };

    let processes = Processes::start(&args.etcd, &control)?;
    let client = ApiClient::new(
        processes.addr.parse()?,
        &processes.token,
        &processes.ca_pem()?,
    )?;
    tokio::time::sleep(SETTLE).await;
    emit(runs::memory("idle", 0, processes.rss_mib()?));

    runs::create_namespace(&client).await?;
    emit(runs::create_rate(&client, services, args.concurrency).await?);
    emit(runs::memory("loaded", services, processes.rss_mib()?));
    emit(runs::list(&client, services, list_runs).await?);
    emit(runs::watch_fanout(&client, args.watchers, events).await?);
    Ok(())
}

fn emit(line: serde_json::Value) {
    println!("{line}");
}
