//! Running external commands (mostly `ip`) with errors that quote the command.

use std::ffi::OsStr;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::error::{HarnessError, Result};

/// `program arg arg …` as a person would type it, for error messages.
pub(crate) fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; a non-zero exit becomes [`HarnessError::Command`].
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let output = output(cmd)?;
    checked(cmd, output)
}

/// Runs `cmd` with `input` on its stdin, as [`run`] does.
pub(crate) fn run_with_input(cmd: &mut Command, input: &str) -> Result<String> {
    let output = output_with_input(cmd, input)?;
    checked(cmd, output)
}

/// Runs `cmd` with `input` on its stdin and hands back its output whatever
/// the exit status: for tests that expect a command to fail.
pub fn output_with_input(cmd: &mut Command, input: &str) -> Result<Output> {
    let spawn_error = |cmd: &Command, cause| HarnessError::Spawn {
        command: render(cmd),
        cause,
    };
    let mut child = (cmd.stdin(Stdio::piped()).stdout(Stdio::piped()))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|cause| spawn_error(cmd, cause))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A command that exits without reading all of it fails when checked.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    (child.wait_with_output()).map_err(|cause| spawn_error(cmd, cause))
}

fn checked(cmd: &Command, output: Output) -> Result<String> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(HarnessError::Command {
            command: render(cmd),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `cmd` and hands back its output whatever the exit status.
pub(crate) fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output().map_err(|cause| HarnessError::Spawn {
        command: render(cmd),
        cause,
    })
}

/// `ip ARGS` in the current (root) netns. `args` is split on whitespace, so
/// calls read like the command line they run; every name and address the
/// harness passes is validated to contain none.
pub(crate) fn ip(args: &str) -> Result<String> {
    run(Command::new("ip").args(args.split_whitespace()))
}

/// `ip -n NETNS ARGS`: iproute2 enters the namespace for this one call only.
pub(crate) fn ip_in(netns: &str, args: &str) -> Result<String> {
    run(Command::new("ip")
        .arg("-n")
        .arg(netns)
        .args(args.split_whitespace()))
}
