//! The kubelet's atomic writer: a volume's files are written into a fresh
//! timestamped directory (`..2026_12_05_07_40_00.123456789`), then the
//! `..data` symlink is pointed at it with one rename, so a reader sees
//! either the whole old payload or the whole new one. The names users see
//! are symlinks through `..data` (`key -> ..data/key`), made once.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Component, Path},
};

use super::error::VolumeError;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's files by relative path.
pub type Payload = BTreeMap<String, FileProjection>;

/// Makes `dir` hold exactly `payload`; returns whether anything changed.
/// `volume` names the volume in errors.
pub fn write(dir: &Path, volume: &str, payload: &Payload) -> Result<bool, VolumeError> {
    for path in payload.keys() {
        check_path(volume, path)?;
    }
    fs::create_dir_all(dir).map_err(VolumeError::io(dir))?;
    let old = fs::read_link(dir.join(DATA)).ok();
    if let Some(old) = &old
        && current(&dir.join(old)).is_ok_and(|files| files == *payload)
    {
        return Ok(false);
    }
    let stamp = timestamp();
    let stamped = dir.join(&stamp);
    fs::create_dir(&stamped).map_err(VolumeError::io(&stamped))?;
    fs::set_permissions(&stamped, fs::Permissions::from_mode(0o755))
        .map_err(VolumeError::io(&stamped))?;
    for (path, file) in payload {
        write_file(&stamped, path, file)?;
    }
    let tmp = dir.join(DATA_TMP);
    remove_if_present(&tmp)?;
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(VolumeError::io(&tmp))?;
    fs::rename(&tmp, dir.join(DATA)).map_err(VolumeError::io(dir.join(DATA)))?;
    let visible: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    for name in &visible {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)
                .map_err(VolumeError::io(&link))?;
        }
    }
    for entry in fs::read_dir(dir).map_err(VolumeError::io(dir))? {
        let entry = entry.map_err(VolumeError::io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("..") && !visible.contains(name.as_ref()) {
            remove_if_present(&entry.path())?;
        }
    }
    if let Some(old) = old
        && old.as_os_str() != stamp.as_str()
    {
        let old = dir.join(old);
        // Only a directory of ours: `..data` pointing anywhere else is
        // never followed into.
        if old.parent() == Some(dir) && fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&old).map_err(VolumeError::io(&old))?;
        }
    }
    Ok(true)
}

/// A payload path is relative, with no `..` component and no component
/// starting with `..` (those names are the writer's own).
fn check_path(volume: &str, path: &str) -> Result<(), VolumeError> {
    let bad = |why| VolumeError::BadPath {
        volume: volume.to_owned(),
        path: path.to_owned(),
        why,
    };
    if path.is_empty() {
        return Err(bad("it is empty"));
    }
    if path.starts_with('/') {
        return Err(bad("it is absolute"));
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) if !name.to_string_lossy().starts_with("..") => {}
            Component::Normal(_) | Component::ParentDir => {
                return Err(bad("it must not contain '..'"));
            }
            _ => return Err(bad("it must be a plain relative path")),
        }
    }
    Ok(())
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

fn write_file(root: &Path, path: &str, file: &FileProjection) -> Result<(), VolumeError> {
    let target = root.join(path);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(VolumeError::io(parent))?;
    }
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&target)
        .map_err(VolumeError::io(&target))?;
    out.write_all(&file.data)
        .map_err(VolumeError::io(&target))?;
    // The umask trimmed the mode at creation: set it as asked.
    out.set_permissions(fs::Permissions::from_mode(file.mode))
        .map_err(VolumeError::io(&target))
}

/// The files a timestamped directory holds, to skip rewriting an unchanged
/// payload.
fn current(root: &Path) -> io::Result<Payload> {
    let mut files = Payload::new();
    let mut pending = vec![String::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(root.join(&relative))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                let data = fs::read(entry.path())?;
                let mode = meta.permissions().mode() & 0o7777;
                files.insert(path, FileProjection { data, mode });
            }
        }
    }
    Ok(files)
}

fn remove_if_present(path: &Path) -> Result<(), VolumeError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    };
    result.map_err(VolumeError::io(path))
}

/// `..YYYY_MM_DD_HH_MM_SS.nnnnnnnnn`, in UTC, as the kubelet names them.
fn timestamp() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = k8s_openapi::jiff::Timestamp::from_second(since.as_secs() as i64)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    format!(
        "{}.{:09}",
        seconds.strftime("..%Y_%m_%d_%H_%M_%S"),
        since.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        (files.iter())
            .map(|(path, data, mode)| {
                let data = data.as_bytes().to_vec();
                (path.to_string(), FileProjection { data, mode: *mode })
            })
            .collect()
    }

    fn stamped_dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = (fs::read_dir(dir).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_through_a_data_symlink_and_swaps_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let first = payload(&[
            ("game.properties", "lives=3", 0o644),
            ("ui/theme", "dark", 0o400),
        ]);
        assert!(write(&dir, "cfg", &first).unwrap());
        let link = fs::read_link(dir.join(DATA)).unwrap();
        assert!(link.to_string_lossy().starts_with("..20"), "{link:?}");
        assert_eq!(
            fs::read_link(dir.join("ui")).unwrap(),
            Path::new("..data/ui")
        );
        assert_eq!(
            fs::read_to_string(dir.join("game.properties")).unwrap(),
            "lives=3"
        );
        let mode = fs::metadata(dir.join("ui/theme"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o400);
        assert_eq!(stamped_dirs(&dir), [link.to_string_lossy()]);

        assert!(
            !write(&dir, "cfg", &first).unwrap(),
            "an unchanged payload is not rewritten"
        );
        assert_eq!(fs::read_link(dir.join(DATA)).unwrap(), link);

        let second = payload(&[("game.properties", "lives=5", 0o644)]);
        assert!(write(&dir, "cfg", &second).unwrap());
        assert_eq!(
            fs::read_to_string(dir.join("game.properties")).unwrap(),
            "lives=5"
        );
        assert!(
            fs::symlink_metadata(dir.join("ui")).is_err(),
            "a dropped key's link goes"
        );
        let swapped = fs::read_link(dir.join(DATA)).unwrap();
        assert_ne!(swapped, link);
        assert_eq!(
            stamped_dirs(&dir),
            [swapped.to_string_lossy()],
            "the old directory goes"
        );
    }

    #[test]
    fn readers_see_a_whole_payload_while_it_swaps() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let size = 64 * 1024;
        let (a, b) = ("a".repeat(size), "b".repeat(size));
        write(&dir, "cfg", &payload(&[("key", &a, 0o644)])).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (dir, done) = (dir.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    // A reader that resolved `..data` just before a swap
                    // can find the old directory gone (as with the
                    // kubelet's writer) and reads again; what it reads
                    // is never part old, part new.
                    let text = match fs::read_to_string(dir.join("key")) {
                        Ok(text) => text,
                        Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                        Err(error) => panic!("reading: {error}"),
                    };
                    assert_eq!(text.len(), size);
                    let first = text.as_bytes()[0];
                    assert!(text.bytes().all(|c| c == first), "a mixed read");
                    reads += 1;
                }
                reads
            })
        };
        for round in 0..200 {
            let data = if round % 2 == 0 { &b } else { &a };
            assert!(write(&dir, "cfg", &payload(&[("key", data, 0o644)])).unwrap());
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }

    #[test]
    fn paths_that_could_escape_are_refused_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "..data",
            "a/..b",
            "",
            "./a",
        ] {
            let error = write(&dir, "cfg", &payload(&[(bad, "x", 0o644)])).unwrap_err();
            assert!(
                matches!(error, VolumeError::BadPath { .. }),
                "{bad}: {error}"
            );
        }
        assert!(!dir.exists(), "nothing was written");
    }
}
