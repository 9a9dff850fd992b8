//! Layers extracted one directory each, to be stacked as overlayfs lower
//! directories. Because layers stay separate, OCI whiteouts become
//! overlayfs ones: `.wh.<name>` a 0:0 character device `<name>`, and
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
//!
//! This runs as root on archives from elsewhere: an entry whose path would
//! leave the layer directory (`..`, an absolute path, a symlinked parent)
//! fails the unpack.
use std::{
    ffi::CString,
    fs,
    io::{self, BufReader, Read},
    os::unix::ffi::OsStrExt as _,
    path::{Component, Path, PathBuf},
};

use anyhow::{Context as _, bail};
use oci_spec::image::{Descriptor, MediaType};

use super::{digest::HashingReader, store::Store};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// The directory holding `layer` extracted, unpacking it the first time.
/// `diff_id` (from the image config) is checked against the uncompressed
/// tar, so a layer whose content is not what the image says is refused.
pub fn unpack(store: &Store, layer: &Descriptor, diff_id: &str) -> anyhow::Result<PathBuf> {
    let layers = store.root().join("layers");
    let done = layers.join(layer.digest().digest());
    if done.is_dir() {
        return Ok(done);
    }
    fs::create_dir_all(&layers)?;
    let blob = fs::File::open(store.blob_path(layer.digest()))
        .with_context(|| format!("layer {} is not in the store", layer.digest()))?;
    let blob = BufReader::new(blob);
    let tar: Box<dyn Read> = match layer.media_type() {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Box::new(blob),
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
            Box::new(flate2::read::GzDecoder::new(blob))
        }
        MediaType::Other(other) if other == "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Box::new(flate2::read::GzDecoder::new(blob))
        }
        other => bail!(
            "layer {}: media type {other} is not supported",
            layer.digest()
        ),
    };
    let partial = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&layers)?;
    let mut hashing = HashingReader::new(tar);
    extract(&mut hashing, partial.path())
        .with_context(|| format!("unpacking layer {}", layer.digest()))?;
    let (digest, _) = hashing.finish()?;
    if digest != diff_id {
        bail!(
            "layer {} uncompresses to {digest}, the image config says {diff_id}",
            layer.digest()
        );
    }
    match fs::rename(partial.path(), &done) {
        Ok(()) => Ok(done),
        // Another unpack of the same layer finished first.
        Err(_) if done.is_dir() => Ok(done),
        Err(error) => Err(error.into()),
    }
}

fn extract(tar: impl Read, dir: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        let target = inside(dir, &name)
            .with_context(|| format!("entry {} escapes the layer", name.display()))?;
        let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned());
        let parent = target.parent().unwrap_or(dir);
        match file_name.as_deref() {
            Some(OPAQUE) => {
                fs::create_dir_all(parent)?;
                set_opaque(parent)
                    .with_context(|| format!("marking {} opaque", parent.display()))?;
            }
            Some(hidden) if hidden.starts_with(WHITEOUT) => {
                fs::create_dir_all(parent)?;
                let deleted = match &hidden[WHITEOUT.len()..] {
                    "" | "." | ".." => bail!("whiteout {} names no entry", name.display()),
                    deleted => parent.join(deleted),
                };
                remove(&deleted)?;
                whiteout(&deleted)
                    .with_context(|| format!("writing the whiteout {}", deleted.display()))?;
            }
            _ => {
                fs::create_dir_all(parent)?;
                // Only a real directory stays: anything else, a symlink
                // above all, would have the entry written through it.
                let is_dir = fs::symlink_metadata(&target).is_ok_and(|meta| meta.is_dir());
                if !(entry.header().entry_type().is_dir() && is_dir) {
                    remove(&target)?;
                }
                if entry.header().entry_type().is_hard_link() {
                    let link = entry
                        .link_name()?
                        .context("a hard link without a target")?
                        .into_owned();
                    let source = inside(dir, &link).with_context(|| {
                        format!("hard link {} escapes the layer", name.display())
                    })?;
                    fs::hard_link(source, &target)?;
                } else {
                    entry
                        .unpack(&target)
                        .with_context(|| format!("writing {}", name.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// `dir/name`, if `name` is relative, has no `..` and no part of it below
/// `dir` already there is a symlink (which a later write would follow).
fn inside(dir: &Path, name: &Path) -> anyhow::Result<PathBuf> {
    let mut path = dir.to_path_buf();
    let mut parts = name.components().peekable();
    while let Some(part) = parts.next() {
        match part {
            Component::CurDir => continue,
            Component::Normal(part) => path.push(part),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                bail!("not a path inside the layer")
            }
        }
        let is_parent = parts.peek().is_some();
        if is_parent && fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink())
        {
            bail!("{} is a symlink", path.display());
        }
    }
    if path == dir {
        bail!("names the layer directory itself");
    }
    Ok(path)
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn whiteout(path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: a valid NUL-terminated path; mknod does not keep it.
    let rc = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn set_opaque(dir: &Path) -> io::Result<()> {
    let path = c_path(dir)?;
    let value = b"y";
    // SAFETY: valid NUL-terminated name and path, and a value of the length given.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
