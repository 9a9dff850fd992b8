//! The node image store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) whose index names each image with the
//! `org.opencontainers.image.ref.name` annotation.
use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, MediaType, OciLayoutBuilder,
};

use super::reference;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub struct Store {
    root: PathBuf,
}

/// An image in the store, resolved to what running it needs.
pub struct Image {
    pub reference: Option<String>,
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

/// What recording an image in the index did.
pub enum Recorded {
    Added,
    AlreadyPresent,
}

impl Store {
    /// Opens the store under `<state-dir>/images`, creating an empty layout.
    pub fn open(state_dir: &Path) -> anyhow::Result<Store> {
        let root = state_dir.join("images");
        fs::create_dir_all(root.join("blobs/sha256"))
            .with_context(|| format!("creating the image store {}", root.display()))?;
        let store = Store { root };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            let content = serde_json::to_vec(
                &OciLayoutBuilder::default()
                    .image_layout_version("1.0.0")
                    .build()?,
            )?;
            store.write_atomically(&layout, &content)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(digest.digest())
    }

    /// A scratch directory on the store's filesystem (so its files rename
    /// into place), removed when dropped.
    pub fn staging(&self) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(".import-")
            .tempdir_in(&self.root)
    }

    /// Moves a verified blob into place; a blob already there is kept.
    pub fn add_blob(&self, staged: &Path, digest: &Digest) -> io::Result<()> {
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        fs::rename(staged, path)
    }

    fn read_index(&self) -> anyhow::Result<ImageIndex> {
        let path = self.root.join("index.json");
        match fs::File::open(&path) {
            Ok(file) => {
                ImageIndex::from_reader(file).with_context(|| format!("reading {}", path.display()))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(ImageIndex::default()),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn write_atomically(&self, path: &Path, content: &[u8]) -> anyhow::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(&self.root)?;
        io::Write::write_all(&mut file, content)?;
        file.as_file().sync_all()?;
        file.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Names `manifest` `reference` in the index, replacing what the name
    /// named before.
    pub fn record(&self, reference: &str, manifest: &Descriptor) -> anyhow::Result<Recorded> {
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let named = |descriptor: &Descriptor| ref_name(descriptor) == Some(reference);
        if manifests
            .iter()
            .any(|d| named(d) && d.digest() == manifest.digest())
        {
            return Ok(Recorded::AlreadyPresent);
        }
        manifests.retain(|d| !named(d));
        let mut entry = manifest.clone();
        entry.set_annotations(Some(HashMap::from([(
            REF_NAME.to_owned(),
            reference.to_owned(),
        )])));
        manifests.push(entry);
        index.set_manifests(manifests);
        let content = serde_json::to_vec_pretty(&index)?;
        self.write_atomically(&self.root.join("index.json"), &content)?;
        Ok(Recorded::Added)
    }

    pub fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest) -> anyhow::Result<T> {
        let path = self.blob_path(digest);
        let file =
            fs::File::open(&path).with_context(|| format!("blob {digest} is not in the store"))?;
        serde_json::from_reader(io::BufReader::new(file))
            .with_context(|| format!("blob {digest} is not valid JSON of its kind"))
    }

    /// Every image in the index.
    pub fn images(&self) -> anyhow::Result<Vec<Image>> {
        self.read_index()?
            .manifests()
            .iter()
            .map(|descriptor| self.image(descriptor))
            .collect()
    }

    fn image(&self, descriptor: &Descriptor) -> anyhow::Result<Image> {
        if *descriptor.media_type() != MediaType::ImageManifest {
            bail!(
                "{} is a {}, not an image manifest",
                descriptor.digest(),
                descriptor.media_type()
            );
        }
        let manifest: ImageManifest = self.read_json(descriptor.digest())?;
        let config = self.read_json(manifest.config().digest())?;
        Ok(Image {
            reference: ref_name(descriptor).map(str::to_owned),
            manifest_digest: descriptor.digest().clone(),
            manifest,
            config,
        })
    }

    /// The image a reference (`redis`, `busybox:1.35`) or a `sha256:`
    /// digest of its manifest or config names.
    pub fn resolve(&self, wanted: &str) -> anyhow::Result<Image> {
        self.find(wanted)?
            .with_context(|| format!("no image {wanted} in the store"))
    }

    /// [`Store::resolve`], with `None` for an image the store lacks.
    pub fn find(&self, wanted: &str) -> anyhow::Result<Option<Image>> {
        let matches: Box<dyn Fn(&Image) -> bool> = if wanted.starts_with("sha256:") {
            Box::new(|image: &Image| {
                image.manifest_digest.as_ref() == wanted
                    || image.manifest.config().digest().as_ref() == wanted
            })
        } else {
            let normalised = reference::normalise(wanted);
            Box::new(move |image: &Image| image.reference.as_deref() == Some(normalised.as_str()))
        };
        Ok(self.images()?.into_iter().find(|image| matches(image)))
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(REF_NAME)
        .map(String::as_str)
}

impl Image {
    /// Compressed size of the config and layers, as `crictl images` shows.
    pub fn size(&self) -> u64 {
        self.manifest.config().size()
            + self
                .manifest
                .layers()
                .iter()
                .map(Descriptor::size)
                .sum::<u64>()
    }
}
