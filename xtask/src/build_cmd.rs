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

/// Where the agent's build script left the eBPF objects it built (its
/// `OUT_DIR`): besides the agent's own `proxy-ebpf`, the benchmark's
/// `skiff-xdp-drop`. Cargo reports the directory even when nothing was
/// rebuilt.
pub fn ebpf_objects_dir(release: bool) -> Result<PathBuf> {
    let mut out_dir = None;
    cargo_build_each(release, &["--package", "proxy-user"], |message| {
        if message["reason"] == "build-script-executed"
            && message["package_id"]
                .as_str()
                .is_some_and(|id| id.contains("/proxy-user#") || id.contains("proxy-user "))
        {
            out_dir = message["out_dir"].as_str().map(PathBuf::from);
        }
    })?;
    out_dir.context("build: cargo did not report where proxy-user's build script wrote")
}

fn cargo_build(release: bool, selection: &[&str]) -> Result<Vec<PathBuf>> {
    let mut binaries = Vec::new();
    cargo_build_each(release, selection, |message| {
        if let Some(binary) = built_binary(message) {
            binaries.push(binary);
        }
    })?;
    binaries.sort();
    binaries.dedup();
    Ok(binaries)
}

/// `cargo build --bins` of `selection`, each JSON message cargo prints
/// handed to `each`.
fn cargo_build_each(
    release: bool,
    selection: &[&str],
    mut each: impl FnMut(&serde_json::Value),
) -> Result<()> {
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
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("build: reading the output of `{description}`"))?;
        if let Ok(message) = serde_json::from_str(&line) {
            each(&message);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("build: waiting for `{description}`"))?;
    if !status.success() {
        bail!("build: `{description}` failed ({status})");
    }
    Ok(())
}

/// The executable of a `compiler-artifact` message for a bin target.
fn built_binary(message: &serde_json::Value) -> Option<PathBuf> {
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let kinds = message["target"]["kind"].as_array()?;
    if !kinds.iter().any(|kind| kind == "bin") {
        return None;
    }
    message["executable"].as_str().map(PathBuf::from)
}
