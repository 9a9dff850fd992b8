//! `cargo xtask build`: setup, then build every binary of the workspace.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::Stdio,
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{setup, sh};

#[derive(Args)]
pub struct BuildArgs {
    /// Build with the release profile (optimised) instead of dev.
    #[arg(long)]
    pub release: bool,
}

pub fn build(args: &BuildArgs) -> Result<()> {
    setup::setup()?;
    let binaries = compile(args.release)?;
    println!("build: binaries:");
    for binary in binaries {
        println!("  {}", binary.display());
    }
    Ok(())
}

/// `cargo build --bins` over the default members (everything but the eBPF
/// crate, which the agent's build script builds for the BPF target with
/// nightly). Returns the binaries' paths, as cargo reports them.
pub fn compile(release: bool) -> Result<Vec<PathBuf>> {
    cargo_build(release, &[])
}

/// `cargo build --bins` of one package.
pub fn compile_package(release: bool, package: &str) -> Result<Vec<PathBuf>> {
    cargo_build(release, &["--package", package])
}

fn cargo_build(release: bool, selection: &[&str]) -> Result<Vec<PathBuf>> {
    let mut cargo = sh::cargo();
    cargo.args([
        "build",
        "--bins",
        "--message-format=json-render-diagnostics",
    ]);
    cargo.args(selection);
    if release {
        cargo.arg("--release");
    }
    let description = sh::describe(&cargo);
    let mut child = cargo
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("build: could not start `{description}`"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut binaries = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("build: reading the output of `{description}`"))?;
        if let Some(binary) = built_binary(&line) {
            binaries.push(binary);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("build: waiting for `{description}`"))?;
    if !status.success() {
        bail!("build: `{description}` failed ({status})");
    }
    binaries.sort();
    binaries.dedup();
    Ok(binaries)
}

/// The executable of a `compiler-artifact` message for a bin target.
fn built_binary(message: &str) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(message).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let kinds = message["target"]["kind"].as_array()?;
    if !kinds.iter().any(|kind| kind == "bin") {
        return None;
    }
    message["executable"].as_str().map(PathBuf::from)
}
