//! `cargo xtask test`: build, then the test suite (and the datapath tests
//! once more with the agents reading the API server), clippy, rustfmt, a
//! check that the fuzz targets compile, and a quick benchmark run, so CI
//! enforces all five.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    bench::{self, BenchArgs},
    build_cmd::{self, BuildArgs},
    fuzz_cmd, images_cmd, sh,
};

/// The end-to-end datapath tests, which run a second time with the agents
/// on `--source kube-api`: both sources must program the same datapath.
const DATAPATH_TESTS: [&str; 5] = [
    "cluster_ip",
    "nodeport",
    "external",
    "selection",
    "udp_reset",
];

#[derive(Args)]
pub struct TestArgs {
    /// Extra arguments for `cargo test`, after `--` (e.g. `-- -p skiff-tests
    /// -- --nocapture`). Given, the datapath tests' second run (agents on
    /// the API server) is left out.
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
    images_cmd::build(&skiff_tests::image_dir())?;
    let mut tests = sh::cargo();
    tests.arg("test").args(&args.cargo_test_args);
    let mut clippy = sh::cargo();
    clippy.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    let mut fmt = sh::cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);

    let mut failed = Vec::new();
    let mut runs = vec![("tests", tests)];
    if args.cargo_test_args.is_empty() {
        runs.push(("tests with kube-api agents", kube_api_datapath_tests()));
    }
    for (name, mut tests) in runs {
        println!("test: running `{}`", sh::describe(&tests));
        match run_counting(&mut tests) {
            Ok(tally) => println!("{name}: {} passed, {} failed", tally.passed, tally.failed),
            Err(err) => {
                eprintln!("test: {err:#}");
                failed.push(format!("{} ({name})", sh::describe(&tests)));
            }
        }
    }
    for mut check in [clippy, fmt, fuzz_cmd::check_command()] {
        println!("test: running `{}`", sh::describe(&check));
        if let Err(err) = sh::run(&mut check) {
            eprintln!("test: {err:#}");
            failed.push(sh::describe(&check));
        }
    }
    // A smoke test of the benchmark: it fails when any figure was not
    // produced; the figures' values are never judged here.
    println!("test: running `cargo xtask bench --quick`");
    if let Err(err) = bench::bench(&BenchArgs {
        quick: true,
        only: Vec::new(),
    }) {
        eprintln!("test: {err:#}");
        failed.push("cargo xtask bench --quick".to_owned());
    }
    if !failed.is_empty() {
        bail!("test: failed: {}", failed.join("; "));
    }
    Ok(())
}

/// `cargo test` of [`DATAPATH_TESTS`] with the testbed's agents reading
/// skiff-control as `system:kube-proxy`.
fn kube_api_datapath_tests() -> Command {
    let mut tests = sh::cargo();
    tests.args(["test", "-p", "skiff-tests"]);
    for test in DATAPATH_TESTS {
        tests.args(["--test", test]);
    }
    tests.env(skiff_tests::AGENT_SOURCE_ENV, "kube-api");
    tests
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
}

/// Runs `cargo test`, passing its output through, and adds up the
/// `test result:` line of every test binary into one overall count.
fn run_counting(tests: &mut Command) -> Result<Tally> {
    let description = sh::describe(tests);
    let mut child = tests
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{description}`"))?;
    let mut tally = Tally::default();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("reading the output of `{description}`"))?;
        println!("{line}");
        if let Some((passed, failed)) = result_counts(&line) {
            tally.passed += passed;
            tally.failed += failed;
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{description}`"))?;
    if !status.success() {
        bail!(
            "`{description}` failed ({status}); {} passed, {} failed",
            tally.passed,
            tally.failed
        );
    }
    Ok(tally)
}

/// `test result: ok. 8 passed; 1 failed; 0 ignored; …` -> (8, 1).
fn result_counts(line: &str) -> Option<(u64, u64)> {
    let counts = line.strip_prefix("test result: ")?.split_once(". ")?.1;
    let count = |what: &str| {
        counts
            .split("; ")
            .find_map(|part| part.strip_suffix(what)?.trim().parse::<u64>().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

fn minutes_seconds(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    format!("{}m{:02}s", seconds / 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_test_result_lines() {
        let ok = "test result: ok. 8 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 17.39s";
        assert_eq!(result_counts(ok), Some((8, 0)));
        let failed =
            "test result: FAILED. 7 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(result_counts(failed), Some((7, 1)));
        assert_eq!(result_counts("test foo ... ok"), None);
    }
}
