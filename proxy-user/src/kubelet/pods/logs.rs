//! Containers' output, one file per container under
//! `<state>/logs/<namespace>/<pod>/`: `<container>.log` for the running
//! instance, `<container>.previous.log` for the one before the last restart
//! (what `kubectl logs --previous` shows). The process writes its file
//! itself, so nothing is lost while the agent restarts.
use std::{
    collections::HashSet,
    fs, io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

#[derive(Debug, Clone)]
pub struct Logs {
    dir: PathBuf,
    /// Logs of containers that ended for good: following them ends.
    finished: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Logs {
    pub fn new(state_dir: &Path) -> Logs {
        Logs {
            dir: state_dir.join("logs"),
            finished: Arc::default(),
        }
    }

    fn finished(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The container will not run again (its restart policy says so, or
    /// its pod stopped).
    pub fn finish(&self, namespace: &str, pod: &str, container: &str) {
        let path = self.path(namespace, pod, container, false);
        self.finished().insert(path);
    }

    pub fn is_finished(&self, log: &Path) -> bool {
        self.finished().contains(log)
    }

    pub fn pod_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        self.dir.join(namespace).join(pod)
    }

    /// The log of the container's current instance, its directory created.
    pub fn prepare(&self, namespace: &str, pod: &str, container: &str) -> io::Result<PathBuf> {
        fs::create_dir_all(self.pod_dir(namespace, pod))?;
        let path = self.path(namespace, pod, container, false);
        self.finished().remove(&path);
        Ok(path)
    }

    pub fn path(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> PathBuf {
        let suffix = if previous { ".previous.log" } else { ".log" };
        self.pod_dir(namespace, pod)
            .join(format!("{container}{suffix}"))
    }

    /// Before a restart: the current log becomes the previous one.
    pub fn rotate(&self, namespace: &str, pod: &str, container: &str) {
        let _ = fs::rename(
            self.path(namespace, pod, container, false),
            self.path(namespace, pod, container, true),
        );
    }

    pub fn remove_pod(&self, namespace: &str, pod: &str) {
        let dir = self.pod_dir(namespace, pod);
        self.finished().retain(|log| !log.starts_with(&dir));
        let _ = fs::remove_dir_all(dir);
        let _ = fs::remove_dir(self.dir.join(namespace));
    }
}

/// The last `lines` lines of `text` (all of it for `None`).
pub fn tail(text: &[u8], lines: Option<usize>) -> &[u8] {
    let Some(lines) = lines else { return text };
    if lines == 0 {
        return &[];
    }
    // A final newline ends the last line; it does not start another.
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (at, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return &text[at + 1..];
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", Some(1)), b"c");
        assert_eq!(tail(b"a\n", Some(5)), b"a\n");
        assert_eq!(tail(b"a\n", Some(0)), b"");
        assert_eq!(tail(b"a\n", None), b"a\n");
    }
}
