//! A container's directory, `<state-dir>/containers/<id>/`: the OCI bundle
//! (`config.json`, `rootfs/` where the overlay is mounted), the overlay's
//! `upper/` and `work/` directories, and what its monitor leaves (`exit`,
//! `monitor.pid`, `monitor.log`).
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    pub fn new(state_dir: &Path, id: &str) -> Bundle {
        Bundle::at(containers_dir(state_dir).join(id))
    }

    pub fn at(dir: PathBuf) -> Bundle {
        Bundle { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// runc's exit status, written by the monitor when the container ends.
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit")
    }

    pub fn monitor_pid(&self) -> PathBuf {
        self.dir.join("monitor.pid")
    }

    pub fn monitor_log(&self) -> PathBuf {
        self.dir.join("monitor.log")
    }
}

pub fn containers_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("containers")
}
