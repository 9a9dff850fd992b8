//! Importing images from archives, as k3s's air-gapped images are: an OCI
//! archive (a tar of an OCI image layout, as skopeo and buildah write) or
//! a docker archive (`docker save`), plain or gzipped.
//!
//! Every file of the archive is copied once into a staging directory in
//! the store, hashed on the way; blobs named by their digest are refused
//! if the bytes differ. Only when the whole archive has been read and its
//! images make sense do blobs move into the store and names into
//! `index.json`, so a failed import leaves the store as it was.
use std::{
    collections::HashMap,
    fs,
    io::{self, BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifestBuilder, MediaType};
use serde::Deserialize;

use super::{
    digest::copy_hashing,
    reference,
    store::{REF_NAME, Recorded, Store},
};

/// One image an import named, and whether it was new.
pub struct Imported {
    pub reference: String,
    pub manifest: Digest,
    pub recorded: Recorded,
}

/// A file of the archive, copied into the staging directory.
struct Staged {
    path: PathBuf,
    digest: Digest,
    size: u64,
}

/// The archive's files by their path in it.
struct Staging {
    dir: tempfile::TempDir,
    files: HashMap<String, Staged>,
}

/// An image found in the archive, ready to be recorded.
struct Found {
    reference: String,
    manifest: Descriptor,
    blobs: Vec<Digest>,
}

/// One image of a docker archive's `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerImage {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

pub fn import(store: &Store, archive: &Path) -> anyhow::Result<Vec<Imported>> {
    let file = fs::File::open(archive)?;
    let mut staging = stage(store, file)?;
    let found = if staging.files.contains_key("manifest.json") {
        docker_images(&mut staging)?
    } else if staging.files.contains_key("index.json") {
        oci_images(&staging)?
    } else {
        bail!("neither an OCI archive (no index.json) nor a docker archive (no manifest.json)");
    };
    let mut by_digest: HashMap<&Digest, &Staged> = HashMap::new();
    for staged in staging.files.values() {
        by_digest.insert(&staged.digest, staged);
    }
    let mut imported = Vec::new();
    for image in found {
        for digest in &image.blobs {
            let staged = by_digest
                .get(digest)
                .with_context(|| format!("blob {digest} is missing from the archive"))?;
            store.add_blob(&staged.path, digest)?;
        }
        let recorded = store.record(&image.reference, &image.manifest)?;
        imported.push(Imported {
            reference: image.reference,
            manifest: image.manifest.digest().clone(),
            recorded,
        });
    }
    drop(staging.dir);
    Ok(imported)
}

fn stage(store: &Store, file: fs::File) -> anyhow::Result<Staging> {
    let mut reader = BufReader::new(file);
    let gzipped = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let stream: Box<dyn Read> = match gzipped {
        true => Box::new(flate2::read::GzDecoder::new(reader)),
        false => Box::new(reader),
    };
    let dir = store.staging()?;
    let mut files = HashMap::new();
    let mut archive = tar::Archive::new(stream);
    for (n, entry) in archive.entries()?.enumerate() {
        let mut entry = entry.context("not a tar archive")?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        let path = dir.path().join(n.to_string());
        let (digest, size) = copy_hashing(&mut entry, &mut fs::File::create(&path)?)?;
        if let Some(hex) = named_digest(&name)
            && digest != format!("sha256:{hex}")
        {
            bail!("blob {name} does not match its digest (its content is {digest})");
        }
        let digest = Digest::try_from(digest)?;
        files.insert(name, Staged { path, digest, size });
    }
    Ok(Staging { dir, files })
}

/// The digest a file's name claims: OCI blobs, and docker's
/// `<hex>.json` configs.
fn named_digest(name: &str) -> Option<&str> {
    name.strip_prefix("blobs/sha256/").or_else(|| {
        name.strip_suffix(".json")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

fn read_staged<T: serde::de::DeserializeOwned>(staging: &Staging, name: &str) -> anyhow::Result<T> {
    let staged = staging
        .files
        .get(name)
        .with_context(|| format!("{name} is missing from the archive"))?;
    let file = fs::File::open(&staged.path)?;
    serde_json::from_reader(io::BufReader::new(file)).with_context(|| format!("reading {name}"))
}

fn staged_blob<'a>(staging: &'a Staging, descriptor: &Descriptor) -> anyhow::Result<&'a Staged> {
    let digest = descriptor.digest();
    let staged = staging
        .files
        .get(&format!("blobs/{}/{}", digest.algorithm(), digest.digest()))
        .with_context(|| format!("blob {digest} is missing from the archive"))?;
    if staged.size != descriptor.size() {
        bail!(
            "blob {digest} is {} bytes, its descriptor says {}",
            staged.size,
            descriptor.size()
        );
    }
    Ok(staged)
}

fn oci_images(staging: &Staging) -> anyhow::Result<Vec<Found>> {
    let index: ImageIndex = read_staged(staging, "index.json")?;
    let mut found = Vec::new();
    for descriptor in index.manifests() {
        if *descriptor.media_type() != MediaType::ImageManifest {
            bail!(
                "{} is a {}: only single-platform image manifests can be imported",
                descriptor.digest(),
                descriptor.media_type()
            );
        }
        let name = descriptor
            .annotations()
            .as_ref()
            .and_then(|a| {
                a.get("io.containerd.image.name")
                    .or_else(|| a.get(REF_NAME))
            })
            .with_context(|| format!("image {} has no reference name", descriptor.digest()))?;
        let manifest_blob = staged_blob(staging, descriptor)?;
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_reader(BufReader::new(fs::File::open(&manifest_blob.path)?))
                .with_context(|| format!("reading manifest {}", descriptor.digest()))?;
        let mut blobs = vec![descriptor.digest().clone()];
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            staged_blob(staging, blob)?;
            blobs.push(blob.digest().clone());
        }
        let mut manifest_descriptor = descriptor.clone();
        manifest_descriptor.set_annotations(None);
        found.push(Found {
            reference: reference::normalise(name),
            manifest: manifest_descriptor,
            blobs,
        });
    }
    Ok(found)
}

/// Docker archives carry no manifest blob: write the OCI manifest their
/// `manifest.json` entry describes (docker's layer tars are uncompressed).
fn docker_images(staging: &mut Staging) -> anyhow::Result<Vec<Found>> {
    let images: Vec<DockerImage> = read_staged(staging, "manifest.json")?;
    let mut found = Vec::new();
    for (n, image) in images.into_iter().enumerate() {
        let file = |name: &str| {
            staging
                .files
                .get(name)
                .with_context(|| format!("{name} is missing from the archive"))
        };
        let config = file(&image.config)?;
        let layers = image
            .layers
            .iter()
            .map(|name| {
                let layer = file(name)?;
                Ok(Descriptor::new(
                    MediaType::ImageLayer,
                    layer.size,
                    layer.digest.clone(),
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config.size,
                config.digest.clone(),
            ))
            .layers(layers.clone())
            .build()?;
        let content = serde_json::to_vec(&manifest)?;
        let path = staging.dir.path().join(format!("manifest-{n}"));
        let (digest, size) = copy_hashing(content.as_slice(), &mut fs::File::create(&path)?)?;
        let digest = Digest::try_from(digest)?;
        let mut blobs = vec![digest.clone(), config.digest.clone()];
        blobs.extend(layers.iter().map(|l| l.digest().clone()));
        for tag in &image.repo_tags {
            found.push(Found {
                reference: reference::normalise(tag),
                manifest: Descriptor::new(MediaType::ImageManifest, size, digest.clone()),
                blobs: blobs.clone(),
            });
        }
        if image.repo_tags.is_empty() {
            bail!("image {} has no RepoTags to name it", image.config);
        }
        let manifest = Staged { path, digest, size };
        staging.files.insert(format!("manifest-{n}"), manifest);
    }
    Ok(found)
}
