//! Debian packages for images, fetched with `apt-get download` into a cache
//! (`~/.cache/skiff/images/debs`) keyed by package and version, so a build
//! downloads a package only when Debian publishes a new version of it.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// A package file in the cache.
#[derive(Debug, Clone)]
pub struct Deb {
    pub package: String,
    pub version: String,
    pub path: PathBuf,
}

pub struct DebCache {
    dir: PathBuf,
}

impl DebCache {
    /// `$XDG_CACHE_HOME/skiff/images/debs`, else `~/.cache/skiff/images/debs`.
    pub fn open() -> anyhow::Result<Self> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
            .context("neither XDG_CACHE_HOME nor HOME is set: no cache directory")?;
        let dir = cache.join("skiff/images/debs");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// The candidate versions of `packages` (what `apt-get install` would
    /// take), each downloaded unless the cache has it.
    pub fn fetch_all(&self, packages: &[&str]) -> anyhow::Result<HashMap<String, Deb>> {
        let versions = candidate_versions(packages)?;
        let mut debs = HashMap::new();
        for (package, version) in versions {
            let path = self.dir.join(format!("{package}_{version}.deb"));
            if !path.is_file() {
                self.download(&package, &version, &path)?;
            }
            let deb = Deb {
                package: package.clone(),
                version,
                path,
            };
            debs.insert(package, deb);
        }
        Ok(debs)
    }

    /// `apt-get download` in a directory of its own, then the one file it
    /// wrote renamed into place, so a failed download leaves no partial
    /// file under the cache's name.
    fn download(&self, package: &str, version: &str, path: &Path) -> anyhow::Result<()> {
        let work = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(&self.dir)
            .with_context(|| format!("creating a download directory in {}", self.dir.display()))?;
        let wanted = format!("{package}={version}");
        let output = Command::new("apt-get")
            .args(["download", "-qq", &wanted])
            .current_dir(work.path())
            .output()
            .context("running apt-get download")?;
        if !output.status.success() {
            bail!(
                "`apt-get download {wanted}` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let mut written = fs::read_dir(work.path())?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<Vec<_>, _>>()?;
        match written.as_mut_slice() {
            [deb] => fs::rename(&*deb, path)
                .with_context(|| format!("moving {} to {}", deb.display(), path.display())),
            _ => bail!(
                "`apt-get download {wanted}` wrote {} files, expected one .deb",
                written.len()
            ),
        }
    }
}

/// `apt-cache policy`'s candidates, read from one `apt-cache show` (each
/// call reads all of apt's lists, about a second).
fn candidate_versions(packages: &[&str]) -> anyhow::Result<HashMap<String, String>> {
    let output = Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(packages)
        .output()
        .context("running apt-cache show")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut versions = HashMap::new();
    for paragraph in text.split("\n\n") {
        let field = |name: &str| {
            paragraph
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_owned())
        };
        if let (Some(package), Some(version)) = (field("Package: "), field("Version: ")) {
            versions.insert(package, version);
        }
    }
    let unknown: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !versions.contains_key(*package))
        .collect();
    if !output.status.success() || !unknown.is_empty() {
        bail!(
            "Debian packages unknown to apt: {} ({}); run `apt-get update`",
            unknown.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(versions)
}
