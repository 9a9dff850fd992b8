//! `cargo xtask test`: build, then the test suite, clippy and rustfmt, so CI
//! enforces all three.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;

use crate::{
    build_cmd::{self, BuildArgs},
    sh,
};

#[derive(Args)]
pub struct TestArgs {
    /// Extra arguments for `cargo test`, after `--` (e.g. `-- -p skiff-tests
    /// -- --nocapture`).
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    pub cargo_test_args: Vec<String>,
}

pub fn test(args: &TestArgs) -> Result<()> {
    let start = Instant::now();
    let result = build_and_check(args);
    println!("test: total time {}", minutes_seconds(start.elapsed()));
    result
}

/// Stops if the build fails; otherwise runs every check and fails at the end
/// naming the ones that failed.
fn build_and_check(args: &TestArgs) -> Result<()> {
    build_cmd::build(&BuildArgs { release: false })?;
    let mut tests = sh::cargo();
    tests.arg("test").args(&args.cargo_test_args);
    let mut clippy = sh::cargo();
    clippy.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    let mut fmt = sh::cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);

    let mut failed = Vec::new();
    for mut check in [tests, clippy, fmt] {
        println!("test: running `{}`", sh::describe(&check));
        if let Err(err) = sh::run(&mut check) {
            eprintln!("test: {err:#}");
            failed.push(sh::describe(&check));
        }
    }
    if !failed.is_empty() {
        bail!("test: failed: {}", failed.join("; "));
    }
    Ok(())
}

fn minutes_seconds(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    format!("{}m{:02}s", seconds / 60, seconds % 60)
}
