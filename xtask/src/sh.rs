//! Running the tools xtask drives, with errors that name the command.

use std::{
    env,
    ffi::{OsStr, OsString},
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// The workspace root (the directory above `xtask/`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
fn cargo_bin_dir() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|dir| dir.join("bin"))
}

/// This process's PATH with cargo's bin directory in front: on a fresh machine
/// bpf-linker and rustup live there even when the shell does not know it.
fn path_with_cargo_bin() -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&current).collect();
    if let Some(bin) = cargo_bin_dir()
        && !dirs.contains(&bin)
    {
        dirs.insert(0, bin);
    }
    env::join_paths(dirs).unwrap_or(current)
}

/// A command for `program`, found and run with cargo's bin directory on PATH.
pub fn cmd(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env("PATH", path_with_cargo_bin());
    command
}

/// `cargo` (the one running xtask, so the same toolchain) in the workspace root.
pub fn cargo() -> Command {
    let mut command = cmd(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    // `cargo run` gave xtask the variables of its own package. Passed on,
    // they would differ from a plain `cargo build`'s, and build scripts that
    // watch them (ring's watches CARGO_MANIFEST_DIR) would rerun each time,
    // rebuilding ring and everything above it on every `cargo xtask up`.
    for (name, _) in env::vars_os() {
        let set_by_cargo_run = name.to_str().is_some_and(|name| {
            matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            ) || name.starts_with("CARGO_PKG_")
        });
        if set_by_cargo_run {
            command.env_remove(name);
        }
    }
    command
}

/// The command line, for messages: `cargo build --bins`.
pub fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program())
        .file_name()
        .unwrap_or(command.get_program());
    std::iter::once(program)
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` with the terminal as its stdio; fails unless it exits 0.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// Runs `command` quietly and returns its stdout, or `None` when it cannot be
/// started or exits non-zero. For checks whose failure means "not there".
pub fn probe(command: &mut Command) -> Option<String> {
    let output = command.stdin(Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` quietly and returns its stdout; fails unless it exits 0.
pub fn stdout(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed: {}",
            describe(command),
            error_line(&output.stderr, output.status)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` quietly, appending its command line and output to `log`.
/// On failure the error is the line of stderr that best says why, and where
/// the log is.
pub fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not open the log {}", log.display()))?;
    writeln!(file, "$ {}", describe(command))
        .and_then(|()| file.write_all(&output.stdout))
        .and_then(|()| file.write_all(&output.stderr))
        .and_then(|()| writeln!(file, "({})\n", output.status))
        .with_context(|| format!("could not write the log {}", log.display()))?;
    if !output.status.success() {
        bail!(
            "{} (log: {})",
            error_line(&output.stderr, output.status),
            log.display()
        );
    }
    Ok(())
}

/// The last line of `stderr` that reads like an error (`error: …`, apt's
/// `E: …`), else its last non-empty line, else the exit status.
fn error_line(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|line| line.starts_with("error") || line.starts_with("E:"))
        .or(lines.last())
        .map_or_else(|| status.to_string(), |line| (*line).to_owned())
}
