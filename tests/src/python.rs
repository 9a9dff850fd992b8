//! The scripts of `tests/python/`, run with the Python `kubernetes` client
//! of the venv `cargo xtask test` makes (`target/kubectl-venv`).
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// Runs `tests/python/<script>` with `args`, panicking with its output
/// unless it exits 0; what it printed.
pub fn run_python_script<S: AsRef<OsStr>>(script: &str, args: &[S]) -> String {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = manifest_dir.join("../target/kubectl-venv/bin/python");
    let script = manifest_dir.join("python").join(script);
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
