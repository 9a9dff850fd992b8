//! What an image is built from, summed up in one digest kept beside its
//! archive (`<name>.tar.inputs`), so an unchanged image is not built again.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    catalogue::{Content, ImageSpec},
    debs::Deb,
    digest::sha256,
};

/// Changes whenever the builder writes different bytes for the same
/// inputs, so archives of an older builder are rebuilt.
const BUILDER_FORMAT: &str = "skiff-images 1";

pub struct Inputs {
    /// The image's packages by name.
    pub debs: HashMap<String, Deb>,
    /// Each layer's inputs summed up, bottom first: the name of its blob
    /// in the layer cache.
    pub layers: Vec<String>,
    key: String,
}

/// The file beside an archive.
#[derive(Serialize, Deserialize)]
struct Recorded {
    inputs: String,
    digest: String,
}

impl Inputs {
    /// The image's packages out of `fetched`, and its files hashed.
    pub fn of(spec: &ImageSpec, fetched: &HashMap<String, Deb>) -> anyhow::Result<Self> {
        let mut debs = HashMap::new();
        let mut layers = Vec::new();
        for layer in &spec.layers {
            let mut summary = format!("{BUILDER_FORMAT}\n{layer:?}\n");
            for package in &layer.packages {
                let deb = fetched
                    .get(*package)
                    .with_context(|| format!("package {package} was not fetched"))?;
                summary.push_str(&format!("{}={}\n", deb.package, deb.version));
                debs.insert(deb.package.clone(), deb.clone());
            }
            for file in &layer.files {
                if let Content::Host(source) = &file.content {
                    let bytes = fs::read(source)
                        .with_context(|| format!("reading {}", source.display()))?;
                    summary.push_str(&sha256(&bytes));
                }
            }
            layers.push(sha256(summary.as_bytes()));
        }
        let summary = format!(
            "{BUILDER_FORMAT}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{layers:?}",
            spec.reference,
            spec.entrypoint,
            spec.cmd,
            spec.env,
            spec.working_dir,
            spec.exposed_ports
        );
        Ok(Self {
            debs,
            key: sha256(summary.as_bytes()),
            layers,
        })
    }

    /// The digest of `archive` if it was built from these inputs.
    pub fn up_to_date(&self, archive: &Path) -> Option<String> {
        let recorded: Recorded =
            serde_json::from_slice(&fs::read(recorded_path(archive)).ok()?).ok()?;
        (archive.is_file() && recorded.inputs == self.key).then_some(recorded.digest)
    }

    pub fn record(&self, archive: &Path, digest: &str) -> anyhow::Result<()> {
        let path = recorded_path(archive);
        let recorded = Recorded {
            inputs: self.key.clone(),
            digest: digest.to_owned(),
        };
        fs::write(&path, serde_json::to_vec_pretty(&recorded)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

fn recorded_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".inputs");
    PathBuf::from(name)
}
