//! `skiff-etcd`: etcd chores that want the gRPC client, for tools that are
//! built without it (`cargo xtask` must compile on a machine with no
//! `protoc`).

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
}

fn main() -> Result<()> {
    let Command::Put { endpoint } = Cli::parse().command;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(put(&endpoint))
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
