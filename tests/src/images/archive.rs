//! An OCI archive: a tar of an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/<hex>`), as `skopeo copy oci-archive:`
//! writes it, with the config, manifest and index from `oci-spec`.
use std::{collections::HashMap, fs, io::Write, os::unix::fs::PermissionsExt as _, path::Path};

use anyhow::Context as _;
use oci_spec::image::{
    ANNOTATION_REF_NAME, Arch, ConfigBuilder, Descriptor, Digest, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, RootFsBuilder,
};

use super::{catalogue::ImageSpec, digest::sha256, layer::Layer};

/// A blob of the archive: its bytes, or the file holding them.
enum Blob<'a> {
    Bytes(Vec<u8>),
    File(&'a Path),
}

/// Writes `spec`'s image with `layers` to `archive` (through a temporary
/// file beside it, so a failed write leaves the old archive) and returns
/// the manifest's digest.
pub fn write_archive(spec: &ImageSpec, layers: &[Layer], archive: &Path) -> anyhow::Result<String> {
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(image_config(spec)?)
        .rootfs(
            RootFsBuilder::default()
                .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
                .build()?,
        )
        .build()?;
    let config = serde_json::to_vec(&config)?;
    let mut blobs = vec![(sha256(&config), Blob::Bytes(config.clone()))];
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        layer_descriptors.push(Descriptor::new(
            MediaType::ImageLayerGzip,
            layer.size,
            Digest::try_from(layer.digest.as_str())?,
        ));
        blobs.push((layer.digest.clone(), Blob::File(&layer.path)));
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config.len() as u64,
            Digest::try_from(sha256(&config))?,
        ))
        .layers(layer_descriptors)
        .build()?;
    let manifest = serde_json::to_vec(&manifest)?;
    let manifest_digest = sha256(&manifest);
    let mut manifest_descriptor = Descriptor::new(
        MediaType::ImageManifest,
        manifest.len() as u64,
        Digest::try_from(manifest_digest.as_str())?,
    );
    // One annotation, so index.json (a map) is the same bytes every time.
    manifest_descriptor.set_annotations(Some(HashMap::from([(
        ANNOTATION_REF_NAME.to_owned(),
        spec.reference.to_owned(),
    )])));
    blobs.push((manifest_digest.clone(), Blob::Bytes(manifest)));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor])
        .build()?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()?;

    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    blobs.dedup_by(|a, b| a.0 == b.0);
    let dir = archive.parent().context("the archive needs a directory")?;
    let temporary = tempfile::NamedTempFile::new_in(dir)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(temporary));
    append(
        &mut tar,
        "oci-layout",
        Blob::Bytes(serde_json::to_vec(&layout)?),
    )?;
    append(
        &mut tar,
        "index.json",
        Blob::Bytes(serde_json::to_vec(&index)?),
    )?;
    for (digest, blob) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        append(&mut tar, &format!("blobs/sha256/{hex}"), blob)?;
    }
    let mut file = tar.into_inner()?;
    file.flush()?;
    let file = file.into_inner()?;
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    file.persist(archive)
        .with_context(|| format!("moving the archive to {}", archive.display()))?;
    Ok(manifest_digest)
}

fn image_config(spec: &ImageSpec) -> anyhow::Result<oci_spec::image::Config> {
    let mut config = ConfigBuilder::default()
        .env(spec.env.clone())
        .exposed_ports(
            spec.exposed_ports
                .iter()
                .map(|&port| port.to_owned())
                .collect::<Vec<_>>(),
        );
    if !spec.entrypoint.is_empty() {
        config = config.entrypoint(spec.entrypoint.clone());
    }
    if !spec.cmd.is_empty() {
        config = config.cmd(spec.cmd.clone());
    }
    if let Some(dir) = spec.working_dir {
        config = config.working_dir(dir);
    }
    Ok(config.build()?)
}

/// A regular file owned by root, dated 1970, mode 0644.
fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, blob: Blob) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    match blob {
        Blob::Bytes(bytes) => {
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, path, bytes.as_slice())?;
        }
        Blob::File(file) => {
            let source =
                fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            header.set_size(source.metadata()?.len());
            tar.append_data(&mut header, path, source)?;
        }
    }
    Ok(())
}
