//! The store end to end: archives built here with the tar crate, imported,
//! resolved and unpacked. Unpacking writes whiteout devices and trusted
//! xattrs, so these run as root (as the agent does).
use std::{
    ffi::CString,
    fs,
    io::Write as _,
    os::unix::{ffi::OsStrExt as _, fs::FileTypeExt as _, fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::store::Store;

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    /// A name the tar crate's builder would refuse (`..`), written raw.
    RawName(&'a str, &'a [u8]),
}

fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match entry {
            Entry::File(path, content) => {
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, path, *content).unwrap();
            }
            Entry::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
            Entry::RawName(path, content) => {
                let name = &mut header.as_gnu_mut().unwrap().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                header.set_size(content.len() as u64);
                header.set_cksum();
                builder.append(&header, *content).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The first layer: files in etc/ and data/.
fn base_layer() -> Vec<u8> {
    tar(&[
        Entry::Dir("etc"),
        Entry::File("etc/hello", b"hi"),
        Entry::File("etc/gone", b"bye"),
        Entry::Dir("data"),
        Entry::File("data/old", b"old"),
    ])
}

/// The second layer deletes etc/gone and makes data/ opaque.
fn top_layer() -> Vec<u8> {
    tar(&[
        Entry::File("etc/.wh.gone", b""),
        Entry::File("data/.wh..wh..opq", b""),
        Entry::File("data/new", b"new"),
    ])
}

fn config(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|layer| format!("sha256:{}", sha256(layer)))
        .collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap()
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": format!("sha256:{}", sha256(blob)), "size": blob.len() })
}

/// An OCI archive of one image named `name`: the base layer gzipped, the
/// top one plain. `corrupt` changes a blob's bytes after naming it.
fn oci_archive(name: &str, layers: &[Vec<u8>], corrupt: bool) -> Vec<u8> {
    let layer_refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let config = config(&layer_refs);
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut layer_descriptors = Vec::new();
    for (n, layer) in layers.iter().enumerate() {
        let (media_type, blob) = match n {
            0 => ("application/vnd.oci.image.layer.v1.tar+gzip", gzip(layer)),
            _ => ("application/vnd.oci.image.layer.v1.tar", layer.clone()),
        };
        layer_descriptors.push(descriptor(media_type, &blob));
        blobs.push((sha256(&blob), blob));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layer_descriptors,
    }))
    .unwrap();
    let mut manifest_descriptor =
        descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    manifest_descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [manifest_descriptor],
    }))
    .unwrap();
    blobs.push((sha256(&config), config));
    blobs.push((sha256(&manifest), manifest));
    if corrupt {
        blobs[0].1.push(b'!');
    }
    let names: Vec<(String, Vec<u8>)> = blobs
        .into_iter()
        .map(|(hex, blob)| (format!("blobs/sha256/{hex}"), blob))
        .collect();
    let mut entries = vec![
        Entry::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        Entry::File("index.json", &index),
    ];
    entries.extend(names.iter().map(|(name, blob)| Entry::File(name, blob)));
    tar(&entries)
}

/// `docker save` of the same two layers, tagged `redis`.
fn docker_archive() -> Vec<u8> {
    let (base, top) = (base_layer(), top_layer());
    let config = config(&[&base, &top]);
    let config_name = format!("{}.json", sha256(&config));
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": ["redis"],
        "Layers": ["base/layer.tar", "top/layer.tar"],
    }]))
    .unwrap();
    tar(&[
        Entry::File("manifest.json", &manifest),
        Entry::File(&config_name, &config),
        Entry::File("base/layer.tar", &base),
        Entry::File("top/layer.tar", &top),
    ])
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn xattr(path: &Path, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut value = [0u8; 16];
    // SAFETY: valid NUL-terminated strings and a buffer of the length given.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    (n >= 0).then(|| value[..n as usize].to_vec())
}

/// Checks the two layers of an unpacked image: files of the base, the
/// whiteout device and the opaque directory of the top.
fn check_unpacked(lower_dirs: &str) {
    let dirs: Vec<&Path> = lower_dirs.lines().map(Path::new).collect();
    assert_eq!(dirs.len(), 2, "{lower_dirs}");
    let (base, top) = (dirs[0], dirs[1]);
    assert_eq!(fs::read(base.join("etc/hello")).unwrap(), b"hi");
    assert_eq!(fs::read(base.join("etc/gone")).unwrap(), b"bye");
    assert_eq!(fs::read(base.join("data/old")).unwrap(), b"old");
    let whiteout = fs::symlink_metadata(top.join("etc/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(!top.join("etc/.wh.gone").exists());
    assert!(!top.join("data/.wh..wh..opq").exists());
    assert_eq!(
        xattr(&top.join("data"), c"trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(xattr(&base.join("data"), c"trusted.overlay.opaque"), None);
    assert_eq!(fs::read(top.join("data/new")).unwrap(), b"new");
}

#[test]
fn oci_archive_imports_resolves_and_unpacks() {
    let dir = tempfile::tempdir().unwrap();
    let archive = oci_archive("busybox:1.35", &[base_layer(), top_layer()], false);
    let archive = write(dir.path(), "busybox.tar", &archive);
    let state = dir.path().join("state");

    let out = super::import(&state, &archive).unwrap();
    assert!(
        out.starts_with("imported docker.io/library/busybox:1.35 (sha256:"),
        "{out}"
    );

    let store = Store::open(&state).unwrap();
    let image = store.resolve("busybox:1.35").unwrap();
    assert_eq!(
        image.reference.as_deref(),
        Some("docker.io/library/busybox:1.35")
    );
    let config_digest = image.manifest.config().digest().to_string();
    let by_config = store.resolve(&config_digest).unwrap();
    assert_eq!(by_config.manifest_digest, image.manifest_digest);
    let by_manifest = store.resolve(image.manifest_digest.as_ref()).unwrap();
    assert_eq!(by_manifest.reference, image.reference);
    assert!(store.resolve("busybox:1.36").is_err());

    let list = super::list(&state).unwrap();
    assert!(list.starts_with("REFERENCE"), "{list}");
    assert!(list.contains("docker.io/library/busybox:1.35"), "{list}");
    assert!(list.contains(&config_digest), "{list}");

    check_unpacked(&super::unpack(&state, "busybox:1.35").unwrap());
}

#[test]
fn docker_archive_imports_resolves_and_unpacks() {
    let dir = tempfile::tempdir().unwrap();
    let archive = write(dir.path(), "redis.tar", &docker_archive());
    let state = dir.path().join("state");

    let out = super::import(&state, &archive).unwrap();
    assert!(
        out.starts_with("imported docker.io/library/redis:latest"),
        "{out}"
    );
    let store = Store::open(&state).unwrap();
    let image = store.resolve("redis").unwrap();
    assert_eq!(
        store
            .resolve("docker.io/library/redis:latest")
            .unwrap()
            .manifest_digest,
        image.manifest_digest
    );
    assert!(store.blob_path(&image.manifest_digest).is_file());
    check_unpacked(&super::unpack(&state, "redis:latest").unwrap());
}

#[test]
fn a_second_import_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let archive = write(dir.path(), "redis.tar", &docker_archive());
    let state = dir.path().join("state");
    super::import(&state, &archive).unwrap();
    let index = fs::read(state.join("images/index.json")).unwrap();

    let out = super::import(&state, &archive).unwrap();
    assert!(
        out.starts_with("already in the store, unchanged: docker.io/library/redis:latest"),
        "{out}"
    );
    assert_eq!(fs::read(state.join("images/index.json")).unwrap(), index);
}

/// The store directory's entries other than the empty layout.
fn store_leftovers(state: &Path) -> Vec<String> {
    let images = state.join("images");
    let mut left: Vec<String> = fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "blobs" && name != "oci-layout")
        .collect();
    left.extend(
        fs::read_dir(images.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned()),
    );
    left
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let archive = oci_archive("busybox", &[base_layer(), top_layer()], true);
    let archive = write(dir.path(), "bad.tar", &archive);
    let state = dir.path().join("state");

    let error = format!("{:#}", super::import(&state, &archive).unwrap_err());
    assert!(error.contains("bad.tar"), "{error}");
    assert!(error.contains("does not match its digest"), "{error}");
    assert!(error.contains("blobs/sha256/"), "{error}");
    assert_eq!(store_leftovers(&state), Vec::<String>::new());
}

#[test]
fn missing_files_and_non_archives_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let missing = dir.path().join("missing.tar");
    let error = format!("{:#}", super::import(&state, &missing).unwrap_err());
    assert!(
        error.contains("missing.tar") && error.contains("No such file"),
        "{error}"
    );

    let text = write(dir.path(), "notes.txt", b"not an archive at all\n");
    let error = format!("{:#}", super::import(&state, &text).unwrap_err());
    assert!(error.contains("notes.txt"), "{error}");
    assert!(!error.contains('\n'), "{error}");
    assert_eq!(store_leftovers(&state), Vec::<String>::new());
}

/// Imports an image of one layer and unpacks it, returning the error.
fn unpack_error(layer: Vec<u8>, dir: &Path) -> String {
    let archive = write(dir, "evil.tar", &oci_archive("evil", &[layer], false));
    let state = dir.join("state");
    super::import(&state, &archive).unwrap();
    format!("{:#}", super::unpack(&state, "evil").unwrap_err())
}

#[test]
fn an_entry_escaping_the_layer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layer = tar(&[
        Entry::File("ok", b"ok"),
        Entry::RawName("../escape", b"out"),
    ]);
    let error = unpack_error(layer, dir.path());
    assert!(error.contains("../escape"), "{error}");
    let layers = dir.path().join("state/images/layers");
    assert!(!layers.join("escape").exists());
    assert!(!dir.path().join("state/images/escape").exists());
    assert_eq!(
        fs::read_dir(&layers).unwrap().count(),
        0,
        "a partial layer was kept"
    );
}

#[test]
fn an_entry_below_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = outside.to_str().unwrap().to_owned();
    let layer = tar(&[
        Entry::Symlink("link", &target),
        Entry::File("link/planted", b"x"),
    ]);
    let error = unpack_error(layer, dir.path());
    assert!(error.contains("link/planted"), "{error}");
    assert!(!outside.join("planted").exists());
}

#[test]
fn a_whiteout_of_the_parent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layer = tar(&[
        Entry::Dir("a"),
        Entry::File("a/keep", b"k"),
        Entry::File("a/.wh...", b""),
    ]);
    let error = unpack_error(layer, dir.path());
    assert!(error.contains("a/.wh..."), "{error}");
    assert!(dir.path().join("state/images").is_dir());
}

#[test]
fn an_absolute_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("absolute");
    let name = outside.to_str().unwrap().to_owned();
    let error = unpack_error(tar(&[Entry::RawName(&name, b"out")]), dir.path());
    assert!(error.contains(&name), "{error}");
    assert!(!outside.exists());
}

#[test]
fn a_directory_entry_over_a_symlink_replaces_the_symlink() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
    let layer = tar(&[
        Entry::Symlink("d", outside.to_str().unwrap()),
        Entry::Dir("d"),
    ]);
    let archive = write(dir.path(), "d.tar", &oci_archive("d", &[layer], false));
    let state = dir.path().join("state");
    super::import(&state, &archive).unwrap();
    let lower = super::unpack(&state, "d").unwrap();
    let unpacked = Path::new(lower.trim_end()).join("d");
    assert!(fs::symlink_metadata(&unpacked).unwrap().is_dir());
    assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o7777, 0o700);
}

#[test]
fn a_gzipped_archive_imports() {
    let dir = tempfile::tempdir().unwrap();
    let archive = write(dir.path(), "redis.tar.gz", &gzip(&docker_archive()));
    let state = dir.path().join("state");
    let out = super::import(&state, &archive).unwrap();
    assert!(
        out.starts_with("imported docker.io/library/redis:latest"),
        "{out}"
    );
}

#[test]
fn an_image_dir_imports_its_archives_and_skips_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let archives = dir.path().join("archives");
    fs::create_dir(&archives).unwrap();
    let good = oci_archive("skiff/busybox", &[base_layer(), top_layer()], false);
    write(
        &archives,
        "a-bad.tar",
        &oci_archive("broken", &[base_layer()], true),
    );
    write(&archives, "busybox.tar", &good);
    write(&archives, "redis.tar.inputs", b"not an archive");
    let state = dir.path().join("state");

    super::import_dir(&state, &archives).unwrap();
    let store = Store::open(&state).unwrap();
    let image = store.resolve("skiff/busybox:latest").unwrap();
    assert!(store.resolve("broken").is_err());
    let index = fs::read(state.join("images/index.json")).unwrap();

    super::import_dir(&state, &archives).unwrap();
    assert_eq!(fs::read(state.join("images/index.json")).unwrap(), index);
    assert_eq!(
        store.resolve("skiff/busybox").unwrap().manifest_digest,
        image.manifest_digest
    );

    let missing = dir.path().join("no-such-dir");
    let error = format!("{:#}", super::import_dir(&state, &missing).unwrap_err());
    assert!(error.contains("no-such-dir"), "{error}");
}
