//! The real kube-proxy binary: Debian bookworm's `kubernetes` source
//! package (1.20.2, with its `vendor/` tree), fetched with `apt-get source`
//! through a private apt configuration and built with Debian's
//! golang-1.19-go in GOPATH mode (module mode fails on this tree). Built
//! once and cached under `~/.cache/skiff/kube-proxy/bin/` (shared by every
//! checkout on the machine); later runs reuse the binary.
//!
//! The system's apt configuration is never touched: the deb-src entry,
//! apt's state (package lists) and its cache live in the cache directory,
//! passed with `-o Dir::Etc=… -o Dir::State=… -o Dir::Cache=…`.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::sh;

/// Debian's Go 1.19, from the `golang-1.19-go` package (setup installs it).
const GO: &str = "/usr/lib/go-1.19/bin/go";
/// The deb-src entry, signed by the archive key the system already trusts.
const SOURCES: &str = "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                       http://deb.debian.org/debian bookworm main\n";
/// The Go build of kube-proxy takes a minute or two on two cores; a build
/// running far longer than that is stuck, and is killed.
const BUILD_TIMEOUT: &str = "30m";
/// apt's downloads give up instead of hanging on a dead connection.
const APT_TIMEOUT_SECONDS: &str = "30";

/// The cached kube-proxy, fetched and built first if it is not there.
/// Prints a line per step while it fetches and builds; on failure the error
/// is one line naming the step, with the full output in the step's log.
pub fn binary() -> Result<PathBuf> {
    let cache = cache_dir()?;
    let binary = cache.join("bin/kube-proxy");
    if sh::probe(sh::cmd(&binary).arg("--version")).is_some() {
        return Ok(binary);
    }
    let log = cache.join("build.log");
    fs::create_dir_all(&cache)
        .and_then(|()| fs::write(&log, ""))
        .with_context(|| format!("kube-proxy: creating {}", log.display()))?;
    println!(
        "kube-proxy: fetching Debian's kubernetes source package into {} (log: {})",
        cache.display(),
        log.display()
    );
    let tree =
        fetch_source(&cache, &log).context("kube-proxy: apt-get source kubernetes failed")?;
    println!("kube-proxy: building cmd/kube-proxy with Go 1.19 (GOPATH mode, a few minutes)");
    build(&cache, &tree, &binary, &log).context("kube-proxy: go build failed")?;
    println!("kube-proxy: built {}", binary.display());
    // About 700 MB that later runs do not need: they use the binary, and a
    // rebuild fetches the source again in seconds.
    for dir in ["src", "gopath", "gocache"] {
        let _ = fs::remove_dir_all(cache.join(dir));
    }
    Ok(binary)
}

/// `$XDG_CACHE_HOME/skiff/kube-proxy`, else `~/.cache/skiff/kube-proxy`.
fn cache_dir() -> Result<PathBuf> {
    let base = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .context("kube-proxy: neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(base.join("skiff/kube-proxy"))
}

/// Fetches and unpacks the source package (patches applied) under
/// `cache/src/`; returns the unpacked tree. A tree from an earlier,
/// interrupted run is reused.
fn fetch_source(cache: &Path, log: &Path) -> Result<PathBuf> {
    let src = cache.join("src");
    if let Some(tree) = unpacked_tree(&src)? {
        return Ok(tree);
    }
    let apt = cache.join("apt");
    for dir in [
        "etc/sources.list.d",
        "etc/preferences.d",
        "etc/apt.conf.d",
        "state/lists/partial",
        "cache/archives/partial",
    ] {
        fs::create_dir_all(apt.join(dir))
            .with_context(|| format!("creating {}", apt.join(dir).display()))?;
    }
    fs::write(apt.join("etc/sources.list"), SOURCES).context("writing the private sources.list")?;
    fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    let apt_get = || {
        let mut command = sh::cmd("apt-get");
        command
            .arg("-o")
            .arg(format!("Dir::Etc={}", apt.join("etc").display()))
            .arg("-o")
            .arg(format!("Dir::State={}", apt.join("state").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt.join("cache").display()))
            // The private lists are ours alone: no need for the system lock.
            .args(["-o", "Debug::NoLocking=1"])
            .args([
                "-o",
                &format!("Acquire::http::Timeout={APT_TIMEOUT_SECONDS}"),
            ])
            .args(["-o", "Acquire::Retries=1"])
            // The files land in our cache directory, not one `_apt` may write.
            .args(["-o", "APT::Sandbox::User=root"])
            .current_dir(&src);
        command
    };
    // A list that could not be fetched fails here, saying why, rather
    // than as "no deb-src URIs" in the next step.
    sh::run_logged(apt_get().args(["update", "-qq", "--error-on=any"]), log)?;
    sh::run_logged(apt_get().args(["source", "-qq", "kubernetes"]), log)?;
    unpacked_tree(&src)?.context("apt-get source left no kubernetes-* directory")
}

/// The `kubernetes-<version>` directory `apt-get source` unpacks, if any.
fn unpacked_tree(src: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(src) else {
        return Ok(None);
    };
    for entry in entries {
        let path = entry.context("reading the source directory")?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("kubernetes-") && path.join("cmd/kube-proxy").is_dir() {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// `go build k8s.io/kubernetes/cmd/kube-proxy` with the tree linked at
/// `$GOPATH/src/k8s.io/kubernetes`, offline (the tree vendors everything),
/// into a temporary file renamed into place only when complete.
fn build(cache: &Path, tree: &Path, binary: &Path, log: &Path) -> Result<()> {
    if !Path::new(GO).exists() {
        bail!("{GO} is missing (the golang-1.19-go package; cargo xtask setup installs it)");
    }
    let gopath = cache.join("gopath");
    let link = gopath.join("src/k8s.io/kubernetes");
    fs::create_dir_all(link.parent().expect("the link has a parent"))
        .context("creating the GOPATH")?;
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(tree, &link)
        .with_context(|| format!("linking {} to {}", link.display(), tree.display()))?;
    let bin_dir = binary.parent().expect("the binary has a directory");
    fs::create_dir_all(bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    let partial = bin_dir.join("kube-proxy.partial");
    // What `kube-proxy --version` prints (and the report shows); the
    // package's own build sets it the same way.
    let version = format!(
        "-X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitVersion=v{}",
        upstream_version(tree)
    );
    sh::run_logged(
        sh::cmd("timeout")
            .args([BUILD_TIMEOUT, GO, "build", "-ldflags", &version, "-o"])
            .arg(&partial)
            .arg("k8s.io/kubernetes/cmd/kube-proxy")
            .current_dir(&link)
            .env("GOPATH", &gopath)
            .env("GO111MODULE", "off")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", cache.join("gocache"))
            .env("CGO_ENABLED", "0"),
        log,
    )?;
    fs::rename(&partial, binary)
        .with_context(|| format!("moving the binary to {}", binary.display()))
}

/// The upstream version of an unpacked tree: `kubernetes-1.20.5+really1.20.2`
/// (Debian's way to go back to 1.20.2) is 1.20.2.
fn upstream_version(tree: &Path) -> String {
    let name = tree.file_name().unwrap_or_default().to_string_lossy();
    let version = name.strip_prefix("kubernetes-").unwrap_or(&name);
    version
        .rsplit_once("+really")
        .map_or(version, |(_, real)| real)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions() {
        let version = |dir: &str| upstream_version(Path::new(dir));
        assert_eq!(version("/c/src/kubernetes-1.20.5+really1.20.2"), "1.20.2");
        assert_eq!(version("/c/src/kubernetes-1.20.2"), "1.20.2");
    }
}
