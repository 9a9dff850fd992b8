//! The busybox image built from the real Debian package: twice the same
//! bytes, and an OCI layout an importer can read.
use std::{collections::HashMap, fs, io::Read, path::Path};

use flate2::read::GzDecoder;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use super::{ImageSpec, build, catalogue};

fn busybox() -> ImageSpec {
    catalogue(Path::new("/nonexistent/skiff-echo"))
        .into_iter()
        .find(|spec| spec.file_stem == "busybox")
        .expect("the catalogue has busybox")
}

/// The archive's regular files by path.
fn files(archive: &Path) -> HashMap<String, Vec<u8>> {
    let mut tar = tar::Archive::new(fs::File::open(archive).expect("archive opens"));
    tar.entries()
        .expect("a tar")
        .map(|entry| {
            let mut entry = entry.expect("an entry");
            let path = entry.path().expect("a path").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("entry reads");
            (path, bytes)
        })
        .collect()
}

fn blob<'a>(files: &'a HashMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
    let hex = digest.trim_start_matches("sha256:");
    files
        .get(&format!("blobs/sha256/{hex}"))
        .unwrap_or_else(|| panic!("blob {digest} is in the archive"))
}

#[test]
fn the_same_inputs_give_the_same_archive() {
    let spec = busybox();
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let a = build(std::slice::from_ref(&spec), first.path()).expect("first build");
    let b = build(std::slice::from_ref(&spec), second.path()).expect("second build");
    assert!(a[0].rebuilt && b[0].rebuilt);
    assert_eq!(a[0].digest, b[0].digest);
    assert_eq!(
        fs::read(&a[0].archive).expect("first archive"),
        fs::read(&b[0].archive).expect("second archive"),
        "two builds of {} differ",
        spec.reference
    );
    let again = build(std::slice::from_ref(&spec), first.path()).expect("third build");
    assert!(!again[0].rebuilt, "unchanged inputs are built again");
    assert_eq!(again[0].digest, a[0].digest);
}

#[test]
fn the_archive_is_an_oci_layout_of_a_busybox_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let built = build(&[busybox()], dir.path()).expect("build");
    let files = files(&built[0].archive);
    assert_eq!(
        files["oci-layout"].as_slice(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: ImageIndex = serde_json::from_slice(&files["index.json"]).expect("index.json");
    let [descriptor] = index.manifests().as_slice() else {
        panic!("one manifest in {index:?}");
    };
    assert_eq!(descriptor.digest().to_string(), built[0].digest);
    let name = descriptor.annotations().as_ref().expect("annotations")
        ["org.opencontainers.image.ref.name"]
        .clone();
    assert_eq!(name, "docker.io/skiff/busybox:latest");
    let manifest: ImageManifest =
        serde_json::from_slice(blob(&files, &built[0].digest)).expect("manifest");
    let config: ImageConfiguration =
        serde_json::from_slice(blob(&files, manifest.config().digest().as_ref())).expect("config");
    let cmd = config.config().as_ref().and_then(|c| c.cmd().clone());
    assert_eq!(cmd, Some(vec!["sh".to_owned()]));
    let [layer] = manifest.layers().as_slice() else {
        panic!("one layer in {manifest:?}");
    };
    let gzipped = blob(&files, layer.digest().as_ref());
    let mut tar = tar::Archive::new(GzDecoder::new(gzipped));
    let mut paths = Vec::new();
    let mut links = HashMap::new();
    for entry in tar.entries().expect("layer is a tar") {
        let entry = entry.expect("an entry");
        let header = entry.header();
        let path = entry.path().expect("a path").to_string_lossy().into_owned();
        assert_eq!(
            (header.mtime().ok(), header.uid().ok(), header.gid().ok()),
            (Some(0), Some(0), Some(0)),
            "{path}"
        );
        if let Some(target) = entry.link_name().expect("link name") {
            links.insert(path.clone(), target.to_string_lossy().into_owned());
        }
        paths.push(path);
    }
    assert!(paths.contains(&"bin/busybox".to_owned()), "{paths:?}");
    for applet in ["sh", "tar", "nc", "id", "sleep"] {
        assert_eq!(
            links.get(&format!("bin/{applet}")).map(String::as_str),
            Some("busybox")
        );
    }
    assert!(paths.contains(&"etc/passwd".to_owned()));
    assert!(!paths.iter().any(|path| path.starts_with("usr/share/doc")));
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "entries are in name order");
}
