//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` for a bounded
//! time each, with the pinned nightly (cargo-fuzz needs `-Z` flags).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::setup::EBPF_TOOLCHAIN;
use crate::sh;

/// The targets in `fuzz/fuzz_targets/`, one per decoder a peer can reach.
const TARGETS: &[&str] = &["create_body", "patch", "selectors", "agent_records"];

#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Run only this target (create_body, patch, selectors, agent_records)
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
    /// Seconds of fuzzing per target (libFuzzer's -max_total_time)
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
}

pub fn fuzz(args: &FuzzArgs) -> Result<()> {
    install_cargo_fuzz()?;
    let root = sh::workspace_root();
    let targets: Vec<&str> = match &args.target {
        Some(target) => vec![target.as_str()],
        None => TARGETS.to_vec(),
    };
    let mut crashed = Vec::new();
    for target in &targets {
        let before = artifacts(root, target)?;
        eprintln!(
            "fuzz: {target}: building, then fuzzing for {} s",
            args.seconds
        );
        let started = Instant::now();
        let result = sh::run(&mut fuzz_run(root, target, args.seconds)?);
        let found: Vec<PathBuf> = artifacts(root, target)?
            .into_iter()
            .filter(|path| !before.contains(path))
            .collect();
        let elapsed = started.elapsed().as_secs();
        match (result, found.is_empty()) {
            (Ok(()), true) => eprintln!("fuzz: {target}: no crash in {elapsed} s"),
            (_, false) => {
                for path in &found {
                    eprintln!("fuzz: {target}: CRASH, reproducer {}", path.display());
                    eprintln!(
                        "fuzz: replay with: cargo +{} fuzz run {target} {}",
                        EBPF_TOOLCHAIN.trim(),
                        path.display()
                    );
                }
                crashed.push(*target);
            }
            (Err(error), true) => return Err(error.context(format!("fuzz target {target}"))),
        }
    }
    if !crashed.is_empty() {
        bail!("fuzzing found crashes in: {}", crashed.join(", "));
    }
    eprintln!("fuzz: {} target(s), no crash", targets.len());
    Ok(())
}

/// `cargo check` of every fuzz target as cargo-fuzz compiles it (`--cfg
/// fuzzing`, which exposes the crates' fuzzing entries) but without
/// libFuzzer's C++, so the suite catches a target that no longer compiles:
/// they are outside the workspace, and `agent_records` compiles the
/// agent's modules from their sources. Its own target directory keeps the
/// flag from rebuilding the workspace's.
pub fn check_command() -> std::process::Command {
    let root = sh::workspace_root();
    let mut command = sh::cargo();
    command
        .current_dir(root.join("fuzz"))
        .env("RUSTFLAGS", "--cfg fuzzing")
        .env("CARGO_TARGET_DIR", root.join("target/fuzz-check"))
        .args(["check", "--bins", "--no-default-features", "--locked"]);
    command
}

/// `cargo fuzz run TARGET <working corpus> fuzz/corpus/TARGET` with the
/// pinned nightly, stopping after `seconds`. libFuzzer writes new inputs
/// into the first directory only: that is a working copy under
/// `fuzz/target/` (ignored by git), so a run reads the seeds the repository
/// keeps without changing them. Crashes go to `fuzz/artifacts/TARGET/`.
fn fuzz_run(root: &Path, target: &str, seconds: u64) -> Result<std::process::Command> {
    let working = root.join("fuzz/target/corpus").join(target);
    std::fs::create_dir_all(&working).with_context(|| format!("create {}", working.display()))?;
    let seeds = root.join("fuzz/corpus").join(target);
    let mut command = sh::cmd("rustup");
    command
        .current_dir(root)
        .env("CARGO_INCREMENTAL", "0")
        .args(["run", EBPF_TOOLCHAIN.trim(), "cargo", "fuzz", "run", target])
        .arg(working)
        .arg(seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"));
    Ok(command)
}

/// The crash, leak and timeout reproducers of `target` so far.
fn artifacts(root: &Path, target: &str) -> Result<Vec<PathBuf>> {
    let dir = root.join("fuzz/artifacts").join(target);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        paths.push(entry?.path());
    }
    Ok(paths)
}

fn install_cargo_fuzz() -> Result<()> {
    if sh::probe(sh::cmd("cargo-fuzz").arg("--version")).is_some() {
        return Ok(());
    }
    eprintln!("fuzz: installing cargo-fuzz (cargo install, about a minute)");
    sh::run(sh::cargo().args(["install", "cargo-fuzz", "--locked"]))
}
