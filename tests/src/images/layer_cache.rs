//! Layers already built, by the digest of their inputs
//! (`<image-dir>/.layers/<key>.tar.gz` and `.json`): images sharing the
//! busybox base or the C library build it once, and a changed echo server
//! rebuilds only its own layer.
use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    catalogue::LayerSpec,
    debs::Deb,
    layer::{Layer, build_layer},
};

pub struct LayerCache {
    dir: PathBuf,
}

/// What `<key>.json` records of `<key>.tar.gz`.
#[derive(Serialize, Deserialize)]
struct Recorded {
    digest: String,
    size: u64,
    diff_id: String,
}

impl LayerCache {
    pub fn open(image_dir: &Path) -> anyhow::Result<Self> {
        let dir = image_dir.join(".layers");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// The layer built from `key`'s inputs, built now in `work` if the
    /// cache lacks it.
    pub fn get_or_build(
        &self,
        key: &str,
        spec: &LayerSpec,
        debs: &HashMap<String, Deb>,
        work: &Path,
    ) -> anyhow::Result<Layer> {
        let name = key.trim_start_matches("sha256:");
        let blob = self.dir.join(format!("{name}.tar.gz"));
        let record = self.dir.join(format!("{name}.json"));
        let cached = fs::read(&record)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Recorded>(&bytes).ok())
            .filter(|recorded| fs::metadata(&blob).is_ok_and(|meta| meta.len() == recorded.size));
        if let Some(recorded) = cached {
            return Ok(Layer {
                path: blob,
                digest: recorded.digest,
                size: recorded.size,
                diff_id: recorded.diff_id,
            });
        }
        let built = build_layer(spec, debs, work, name)?;
        fs::rename(&built.path, &blob)
            .with_context(|| format!("moving the layer to {}", blob.display()))?;
        let recorded = Recorded {
            digest: built.digest,
            size: built.size,
            diff_id: built.diff_id,
        };
        fs::write(&record, serde_json::to_vec_pretty(&recorded)?)
            .with_context(|| format!("writing {}", record.display()))?;
        Ok(Layer {
            path: blob,
            digest: recorded.digest,
            size: recorded.size,
            diff_id: recorded.diff_id,
        })
    }

    /// Removes the layers no key of `used` names.
    pub fn keep_only(&self, used: &HashSet<String>) -> anyhow::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            let key = name.split('.').next().unwrap_or("");
            if !used.contains(&format!("sha256:{key}")) {
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }
}
