//! `skiff-etcd`: etcd chores that want the gRPC client, for tools that are
//! built without it (`cargo xtask` must compile on a machine with no
//! `protoc`).

mod fanout;
mod stamp;
mod watchers;

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use skiff_etcd::bulk::BulkWriter;

/// etcd chores for skiff's tools.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write keys read from standard input, in batched transactions.
    ///
    /// Each line is a JSON array `[KEY, VALUE]` (VALUE any JSON, written as
    /// its text). An empty line writes everything read since the last one
    /// and answers `ok N` on standard output, so a caller can time single
    /// writes; the end of input does the same.
    Put {
        /// The etcd client URL.
        #[arg(long)]
        endpoint: String,
    },
    /// Time one Service change from its write to its arrival at many
    /// simulated agents' watches (see `fanout.rs`).
    WatchFanout(fanout::Args),
    /// One process of `watch-fanout`'s watchers.
    #[command(hide = true)]
    Watchers {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        count: usize,
    },
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match Cli::parse().command {
        Command::Put { endpoint } => runtime.block_on(put(&endpoint)),
        Command::WatchFanout(args) => runtime.block_on(fanout::run(args)),
        Command::Watchers { endpoint, count } => runtime.block_on(watchers::run(endpoint, count)),
    }
}

async fn put(endpoint: &str) -> Result<()> {
    let writer = BulkWriter::connect(endpoint).await?;
    let mut pending = Vec::new();
    let stdin = std::io::stdin();
    for (number, line) in stdin.lock().lines().enumerate() {
        let line = line.context("reading standard input")?;
        if !line.is_empty() {
            pending.push(parse(&line).with_context(|| format!("line {}", number + 1))?);
            continue;
        }
        flush(&writer, &mut pending).await?;
    }
    if !pending.is_empty() {
        flush(&writer, &mut pending).await?;
    }
    Ok(())
}

fn parse(line: &str) -> Result<(String, String)> {
    let (key, value): (String, serde_json::Value) =
        serde_json::from_str(line).context("expected a JSON array [KEY, VALUE]")?;
    if key.is_empty() {
        bail!("the key is empty");
    }
    let value = match value {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    Ok((key, value))
}

async fn flush(writer: &BulkWriter, pending: &mut Vec<(String, String)>) -> Result<()> {
    let written = writer.put_all(pending.drain(..)).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ok {written}")?;
    stdout.flush().context("writing to standard output")
}
