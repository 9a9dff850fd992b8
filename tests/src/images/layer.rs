//! A layer: Debian packages unpacked with `dpkg-deb -x`, files added on
//! top, written as a reproducible gzipped tar. Entries are sorted, owned by
//! root, dated 1970 and carry only their mode, so the same inputs give the
//! same bytes.
use std::{
    collections::HashMap,
    fs,
    io::Write,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use flate2::{Compression, write::GzEncoder};

use super::{
    catalogue::{Content, LayerSpec},
    debs::Deb,
    digest::HashingWriter,
};

/// Documentation nobody reads inside a container.
const LEFT_OUT: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/lintian",
];

/// A layer blob written to disk.
#[derive(Debug)]
pub struct Layer {
    pub path: PathBuf,
    /// Of the gzipped blob.
    pub digest: String,
    pub size: u64,
    /// Of the uncompressed tar (the config's rootfs.diff_ids).
    pub diff_id: String,
}

/// Builds a layer in `work`, named `name` there.
pub fn build_layer(
    spec: &LayerSpec,
    debs: &HashMap<String, Deb>,
    work: &Path,
    name: &str,
) -> anyhow::Result<Layer> {
    let root = work.join(name);
    fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    for package in &spec.packages {
        let deb = debs
            .get(*package)
            .with_context(|| format!("package {package} was not fetched"))?;
        unpack_deb(&deb.path, &root)?;
    }
    for file in &spec.files {
        add_file(&root, &file.path, &file.content)
            .with_context(|| format!("adding /{}", file.path))?;
    }
    let path = work.join(format!("{name}.tar.gz"));
    let blob = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let gzip = GzEncoder::new(HashingWriter::new(blob), Compression::default());
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));
    append_tree(&mut tar, &root, Path::new(""))?;
    let (gzip, diff_id, _) = tar.into_inner()?.finish();
    let (mut blob, digest, size) = gzip.finish()?.finish();
    blob.flush()?;
    Ok(Layer {
        path,
        digest,
        size,
        diff_id,
    })
}

fn unpack_deb(deb: &Path, root: &Path) -> anyhow::Result<()> {
    let output = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(root)
        .output()
        .context("running dpkg-deb")?;
    if !output.status.success() {
        bail!(
            "`dpkg-deb -x {}` failed ({}): {}",
            deb.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Writes `content` at `relative` under `root`, replacing what a package
/// put there; missing parents are made 0755.
fn add_file(root: &Path, relative: &str, content: &Content) -> anyhow::Result<()> {
    let path = root.join(relative);
    let parent = path.parent().context("a file needs a parent directory")?;
    make_dirs(root, parent)?;
    if let Ok(meta) = fs::symlink_metadata(&path)
        && !meta.is_dir()
    {
        fs::remove_file(&path)?;
    }
    match content {
        Content::Text { text, mode } => {
            fs::write(&path, text)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
        }
        Content::Symlink(target) => symlink(target, &path)?,
        Content::Dir { mode } => {
            fs::create_dir_all(&path)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
        }
        Content::Host(source) => {
            fs::copy(source, &path).with_context(|| format!("copying {}", source.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// `create_dir_all` with mode 0755 whatever the umask.
fn make_dirs(root: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir == root || dir.is_dir() {
        return Ok(());
    }
    make_dirs(root, dir.parent().context("outside the layer")?)?;
    fs::create_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Appends the entries under `root.join(relative)`, sorted by name,
/// directories before what they hold.
fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    relative: &Path,
) -> anyhow::Result<()> {
    let dir = root.join(relative);
    let mut names = fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    for name in names {
        let entry = relative.join(name);
        if LEFT_OUT.iter().any(|left_out| entry == Path::new(left_out)) {
            continue;
        }
        append_entry(tar, root, &entry)?;
    }
    Ok(())
}

fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    entry: &Path,
) -> anyhow::Result<()> {
    let path = root.join(entry);
    let meta =
        fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.permissions().mode() & 0o7777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let kind = meta.file_type();
    if kind.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        tar.append_data(&mut header, entry, std::io::empty())?;
        append_tree(tar, root, entry)
    } else if kind.is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        let target = fs::read_link(&path)?;
        tar.append_link(&mut header, entry, target)?;
        Ok(())
    } else if kind.is_file() {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        tar.append_data(&mut header, entry, file)?;
        Ok(())
    } else {
        bail!(
            "{} is neither a file, a directory nor a symlink",
            path.display()
        )
    }
}
