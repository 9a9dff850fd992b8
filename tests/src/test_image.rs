//! A small image for pods in tests, made from what the machine has:
//! `skiff-test/box:1` holds Debian's static busybox (every applet linked
//! in /bin), `skiff-echo` at /usr/local/bin with the libraries it loads,
//! and an /etc/passwd with root and `app` (1000:1000). It is written as a
//! docker archive (`docker save`'s format) in the temporary directory,
//! once per name it is given, and imported into each node's image store with
//! `skiff-agent images import`.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::{
    binaries::{agent_binary, echo_binary},
    error::{HarnessError, Result},
};

/// The reference pods name the image by.
pub const TEST_IMAGE: &str = "skiff-test/box:1";
const BUSYBOX: &str = "/bin/busybox";
const ECHO_IN_IMAGE: &str = "/usr/local/bin/skiff-echo";

/// An archive of the test image named `reference`, built the first time
/// it is asked for.
pub fn test_image_archive(reference: &str) -> Result<PathBuf> {
    static ARCHIVES: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut archives = ARCHIVES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = archives.get(reference) {
        return Ok(path.clone());
    }
    let path = build(reference)?;
    archives.insert(reference.to_owned(), path.clone());
    Ok(path)
}

/// Imports the test image, named `reference`, into the image store of
/// the agent state directory `state_dir`.
pub fn import_test_image(state_dir: &Path, reference: &str) -> Result<()> {
    let archive = test_image_archive(reference)?;
    let output = Command::new(agent_binary()?)
        .args(["images", "import", "--state-dir"])
        .arg(state_dir)
        .arg(&archive)
        .output()
        .map_err(|e| HarnessError::io("running skiff-agent images import", e))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(HarnessError::Environment(format!(
            "skiff-agent images import {} failed: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr)
        ))),
    }
}

fn build(reference: &str) -> Result<PathBuf> {
    let layer = layer()?;
    let diff_id = format!("{:x}", Sha256::digest(&layer));
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
    }))
    .map_err(|e| HarnessError::Environment(e.to_string()))?;
    let config_hex = format!("{:x}", Sha256::digest(&config));
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [reference],
        "Layers": [format!("{diff_id}/layer.tar")],
    }]))
    .map_err(|e| HarnessError::Environment(e.to_string()))?;
    // Named by its content (the manifest names the config, which names
    // the layer): runs share one file per distinct image, and a file of
    // that name is complete, since it is renamed into place.
    let manifest_hex = format!("{:x}", Sha256::digest(&manifest));
    let path = std::env::temp_dir().join(format!("skiff-test-image-{manifest_hex}.tar"));
    if path.is_file() {
        return Ok(path);
    }
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let file = fs::File::create(&partial)
        .map_err(|e| HarnessError::io(format!("cannot create {}", partial.display()), e))?;
    let mut archive = tar::Builder::new(file);
    for (name, content) in [
        ("manifest.json".to_owned(), manifest),
        (format!("{config_hex}.json"), config),
        (format!("{diff_id}/layer.tar"), layer),
    ] {
        append_file(&mut archive, &name, &content, 0o644)?;
    }
    archive
        .into_inner()
        .map_err(|e| HarnessError::io("writing the test image archive", e))?;
    fs::rename(&partial, &path)
        .map_err(|e| HarnessError::io(format!("cannot rename {}", partial.display()), e))?;
    Ok(path)
}

/// The image's one layer, as an uncompressed tar.
fn layer() -> Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    for dir in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib64",
        "proc",
        "root",
        "run",
        "sys",
        "usr",
        "usr/local",
        "usr/local/bin",
    ] {
        append_dir(&mut layer, dir, 0o755)?;
    }
    append_dir(&mut layer, "tmp", 0o1777)?;
    let lib_dirs: BTreeSet<PathBuf> = libraries()?
        .iter()
        .filter_map(|lib| lib.parent().map(Path::to_owned))
        .collect();
    for dir in lib_dirs
        .iter()
        .filter(|d| !matches!(d.to_str(), Some("/lib" | "/lib64")))
    {
        let mut partial = PathBuf::new();
        for part in dir.strip_prefix("/").unwrap_or(dir).components() {
            partial.push(part);
            if !matches!(partial.to_str(), Some("lib" | "lib64")) {
                append_dir(&mut layer, &partial.to_string_lossy(), 0o755)?;
            }
        }
    }
    append_host_file(&mut layer, Path::new(BUSYBOX), BUSYBOX)?;
    for applet in busybox_applets()? {
        if applet != "busybox" {
            append_symlink(&mut layer, &format!("bin/{applet}"), "busybox")?;
        }
    }
    append_host_file(&mut layer, &echo_binary()?, ECHO_IN_IMAGE)?;
    for library in libraries()? {
        append_host_file(&mut layer, &library, &library.to_string_lossy())?;
    }
    append_file(
        &mut layer,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n",
        0o644,
    )?;
    append_file(&mut layer, "etc/group", b"root:x:0:\napp:x:1000:\n", 0o644)?;
    layer
        .into_inner()
        .map_err(|e| HarnessError::io("building the test image layer", e))
}

fn busybox_applets() -> Result<Vec<String>> {
    let output = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .map_err(|e| HarnessError::io("busybox --list (apt-get install busybox-static)", e))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// The shared libraries skiff-echo loads, as `ldd` names them.
fn libraries() -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(echo_binary()?)
        .output()
        .map_err(|e| HarnessError::io("running ldd", e))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn append_dir<W: std::io::Write>(tar: &mut tar::Builder<W>, path: &str, mode: u32) -> Result<()> {
    let mut header = header(tar::EntryType::Directory, mode, 0);
    tar.append_data(&mut header, format!("{path}/"), std::io::empty())
        .map_err(|e| HarnessError::io(format!("adding {path} to the test image"), e))
}

fn append_file<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    content: &[u8],
    mode: u32,
) -> Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, content.len() as u64);
    tar.append_data(&mut header, path, content)
        .map_err(|e| HarnessError::io(format!("adding {path} to the test image"), e))
}

/// A file of the machine (symlinks followed) at `path` in the image.
fn append_host_file<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    from: &Path,
    path: &str,
) -> Result<()> {
    let content = fs::read(from)
        .map_err(|e| HarnessError::io(format!("cannot read {}", from.display()), e))?;
    append_file(tar, path.trim_start_matches('/'), &content, 0o755)
}

fn append_symlink<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    target: &str,
) -> Result<()> {
    let mut header = header(tar::EntryType::Symlink, 0o777, 0);
    tar.append_link(&mut header, path, target)
        .map_err(|e| HarnessError::io(format!("adding {path} to the test image"), e))
}
