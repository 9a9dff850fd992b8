//! The images the examples and tests run, built without a registry from
//! Debian packages (`cargo xtask images`): each one an OCI archive in
//! `target/skiff-images/` that `skiff-agent images import` (or the agent's
//! `--image-dir`) takes.
//!
//! The build is reproducible: the same packages and files give the same
//! bytes, so the same digests. An image whose inputs did not change since
//! its archive was written is not built again.
mod archive;
mod catalogue;
mod debs;
mod digest;
mod inputs;
mod layer;
mod layer_cache;
#[cfg(test)]
mod tests;

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::Context as _;

pub use self::catalogue::{ImageSpec, LayerSpec, catalogue};
use self::{archive::write_archive, debs::DebCache, inputs::Inputs, layer_cache::LayerCache};
use crate::binaries::{echo_binary, target_dir};

/// An image archive, and whether this call wrote it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The reference it is imported as (`docker.io/skiff/busybox:latest`).
    pub reference: String,
    /// The manifest's digest: the image's name in the store.
    pub digest: String,
    pub archive: PathBuf,
    /// `false` when the archive was already up to date.
    pub rebuilt: bool,
    pub took: Duration,
}

/// Where `cargo xtask images` and the tests put the archives.
pub fn image_dir() -> PathBuf {
    target_dir().join("skiff-images")
}

/// Builds (or finds up to date) every image of the catalogue in `out`,
/// with the echo server from `echo`.
pub fn build_all(out: &Path, echo: &Path) -> anyhow::Result<Vec<Built>> {
    build(&catalogue(echo), out)
}

/// Builds (or finds up to date) `catalogue`'s images in `out`, and drops
/// the cached layers none of them uses. Other processes building into
/// `out` at the same time wait for an exclusive lock on its lock file.
pub fn build(catalogue: &[ImageSpec], out: &Path) -> anyhow::Result<Vec<Built>> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let _lock = DirLock::acquire(out)?;
    let mut packages: Vec<&str> = catalogue
        .iter()
        .flat_map(|spec| &spec.layers)
        .flat_map(|layer| layer.packages.iter().copied())
        .collect();
    packages.sort_unstable();
    packages.dedup();
    let debs = DebCache::open()?.fetch_all(&packages)?;
    let layers = LayerCache::open(out)?;
    let mut used = HashSet::new();
    let mut built = Vec::new();
    for spec in catalogue {
        let start = Instant::now();
        let inputs = Inputs::of(spec, &debs)
            .with_context(|| format!("{}: resolving its inputs", spec.reference))?;
        used.extend(inputs.layers.iter().cloned());
        built.push(build_one(spec, &inputs, &layers, out, start)?);
    }
    layers.keep_only(&used)?;
    Ok(built)
}

/// [`image_dir`] with every image built from the workspace's skiff-echo,
/// once per process.
pub fn ensure_built() -> anyhow::Result<PathBuf> {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = image_dir();
    if !*done {
        build_all(&dir, &echo_binary()?)?;
        *done = true;
    }
    Ok(dir)
}

fn build_one(
    spec: &ImageSpec,
    inputs: &Inputs,
    cache: &LayerCache,
    out: &Path,
    start: Instant,
) -> anyhow::Result<Built> {
    let archive = out.join(format!("{}.tar", spec.file_stem));
    if let Some(digest) = inputs.up_to_date(&archive) {
        return Ok(Built {
            reference: spec.reference.to_owned(),
            digest,
            archive,
            rebuilt: false,
            took: start.elapsed(),
        });
    }
    let work = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(out)
        .with_context(|| format!("creating a build directory in {}", out.display()))?;
    let mut layers = Vec::new();
    for (n, (layer, key)) in spec.layers.iter().zip(&inputs.layers).enumerate() {
        let built = cache
            .get_or_build(key, layer, &inputs.debs, work.path())
            .with_context(|| format!("{}: building layer {n}", spec.reference))?;
        layers.push(built);
    }
    let digest = write_archive(spec, &layers, &archive)
        .with_context(|| format!("{}: writing {}", spec.reference, archive.display()))?;
    inputs.record(&archive, &digest)?;
    Ok(Built {
        reference: spec.reference.to_owned(),
        digest,
        archive,
        rebuilt: true,
        took: start.elapsed(),
    })
}

/// An exclusive flock on `<dir>/.lock`, released when dropped or when the
/// process dies.
struct DirLock {
    _file: fs::File,
}

impl DirLock {
    fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        crate::lock::flock(&file, &path, libc::LOCK_EX)?;
        Ok(Self { _file: file })
    }
}
