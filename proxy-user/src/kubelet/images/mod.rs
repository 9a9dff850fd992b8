//! The node image store (`skiff-agent images`): images imported from
//! archives without a registry, kept as an OCI image layout under
//! `<state-dir>/images/` (`store`), found by reference or digest, and
//! unpacked one directory per layer for overlayfs (`unpack`), which
//! pods' containers run from (`runnable`).
mod digest;
mod import;
mod reference;
mod store;
#[cfg(test)]
mod tests;
mod unpack;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use tracing::{info, warn};

use oci_spec::image::ImageConfiguration;

use self::store::{Image, Recorded, Store};

/// `images import`: one line per image the archive holds.
pub fn import(state_dir: &Path, archive: &Path) -> anyhow::Result<String> {
    let store = Store::open(state_dir)?;
    let imported = import::import(&store, archive)
        .with_context(|| format!("importing {}", archive.display()))?;
    let mut out = String::new();
    for image in imported {
        let what = match image.recorded {
            Recorded::Added => "imported",
            Recorded::AlreadyPresent => "already in the store, unchanged:",
        };
        writeln!(out, "{what} {} ({})", image.reference, image.manifest)?;
    }
    Ok(out)
}

/// `--image-dir`: imports every `*.tar` archive of `dir`, in name order,
/// logging each image as imported or unchanged. An archive that cannot be
/// imported is logged and skipped (the store keeps what it had), so its
/// pods wait with ErrImageNeverPull instead of the node going down.
pub fn import_dir(state_dir: &Path, dir: &Path) -> anyhow::Result<()> {
    let store = Store::open(state_dir)?;
    let mut archives = std::fs::read_dir(dir)
        .with_context(|| format!("listing --image-dir {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("listing --image-dir {}", dir.display()))?;
    archives.retain(|path| path.extension().is_some_and(|ext| ext == "tar") && path.is_file());
    archives.sort();
    for archive in archives {
        match import::import(&store, &archive) {
            Ok(imported) => {
                for image in imported {
                    let what = match image.recorded {
                        Recorded::Added => "image imported",
                        Recorded::AlreadyPresent => "image already in the store, unchanged",
                    };
                    info!(reference = %image.reference, manifest = %image.manifest, archive = %archive.display(), "{what}");
                }
            }
            Err(err) => {
                warn!(archive = %archive.display(), "could not import the archive, skipped: {err:#}");
            }
        }
    }
    Ok(())
}

/// `images list`: the store's images as `crictl images` shows them.
pub fn list(state_dir: &Path) -> anyhow::Result<String> {
    let store = Store::open(state_dir)?;
    let rows: Vec<[String; 3]> = store
        .images()?
        .iter()
        .map(|image| {
            [
                image.reference.clone().unwrap_or_else(|| "<none>".into()),
                image.manifest.config().digest().to_string(),
                human_size(image.size()),
            ]
        })
        .collect();
    let width = rows
        .iter()
        .map(|row| row[0].len())
        .chain([9])
        .max()
        .unwrap_or(9);
    let mut out = format!("{:width$}  {:71}  SIZE\n", "REFERENCE", "IMAGE ID");
    for [reference, id, size] in rows {
        writeln!(out, "{reference:width$}  {id:71}  {size}")?;
    }
    Ok(out)
}

/// `images unpack`: the image's layers extracted, bottom first, one
/// directory a line (overlayfs lowerdir order is the reverse).
pub fn unpack(state_dir: &Path, wanted: &str) -> anyhow::Result<String> {
    let store = Store::open(state_dir)?;
    let image = store.resolve(wanted)?;
    let mut out = String::new();
    for dir in unpacked_layers(&store, &image, wanted)? {
        writeln!(out, "{}", std::path::absolute(dir)?.display())?;
    }
    Ok(out)
}

/// An image ready to run a container from.
pub struct Runnable {
    /// `<name>@sha256:<manifest digest>`, the status' `imageID`.
    pub id: String,
    pub config: ImageConfiguration,
    /// Unpacked, bottom first.
    pub layers: Vec<PathBuf>,
}

/// The image `wanted` names, its layers unpacked; `None` if the store
/// does not hold it.
pub fn runnable(state_dir: &Path, wanted: &str) -> anyhow::Result<Option<Runnable>> {
    let store = Store::open(state_dir)?;
    let Some(image) = store.find(wanted)? else {
        return Ok(None);
    };
    let layers = unpacked_layers(&store, &image, wanted)?;
    let name = image.reference.as_deref().map_or_else(
        || wanted.to_owned(),
        |reference| reference::without_tag(reference).to_owned(),
    );
    Ok(Some(Runnable {
        id: format!("{name}@{}", image.manifest_digest),
        config: image.config,
        layers,
    }))
}

fn unpacked_layers(store: &Store, image: &Image, wanted: &str) -> anyhow::Result<Vec<PathBuf>> {
    let layers = image.manifest.layers();
    let diff_ids = image.config.rootfs().diff_ids();
    if layers.len() != diff_ids.len() {
        bail!(
            "{wanted}: the manifest has {} layers, the config {} diff_ids",
            layers.len(),
            diff_ids.len()
        );
    }
    layers
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| unpack::unpack(store, layer, diff_id))
        .collect()
}

/// Sizes in decimal units with three significant digits, as crictl
/// prints them.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < units.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    let decimals = match size {
        _ if unit == 0 || size >= 100.0 => 0,
        _ if size >= 10.0 => 1,
        _ => 2,
    };
    format!("{size:.decimals$}{}", units[unit])
}
