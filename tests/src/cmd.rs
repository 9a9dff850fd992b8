//! Running external commands (mostly `ip`) with errors that quote the command.

use std::ffi::OsStr;
use std::process::{Command, Output};

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
