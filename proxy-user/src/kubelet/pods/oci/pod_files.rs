//! What a pod's containers share besides the netns, under
//! `<state-dir>/pods/<namespace>.<name>/`: `/etc/hosts`, `/etc/hostname`
//! and `/etc/resolv.conf` (bind-mounted into each container), and the
//! pod's IPC and UTS namespaces, pinned by bind mounts at `ns/ipc` and
//! `ns/uts` so every container joins the same ones without a pause
//! process.
use std::{
    fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use super::{rootfs::unmount, spec::BindMount};
use crate::kubelet::pods::statfs;

#[derive(Debug, Clone)]
pub struct PodFiles {
    dir: PathBuf,
}

impl PodFiles {
    pub fn new(state_dir: &Path, slug: &str) -> PodFiles {
        PodFiles {
            dir: state_dir.join("pods").join(slug),
        }
    }

    pub fn ipc_ns(&self) -> PathBuf {
        self.dir.join("ns/ipc")
    }

    pub fn uts_ns(&self) -> PathBuf {
        self.dir.join("ns/uts")
    }

    /// Writes the files and pins the namespaces; an agent restart finds
    /// them made and keeps them (the running containers use them).
    pub fn ensure(&self, name: &str, ip: Ipv4Addr, resolv_conf: &str) -> io::Result<()> {
        fs::create_dir_all(self.dir.join("ns"))?;
        fs::write(self.dir.join("hostname"), format!("{name}\n"))?;
        fs::write(self.dir.join("hosts"), hosts(name, ip))?;
        fs::write(self.dir.join("resolv.conf"), resolv_conf)?;
        if is_nsfs(&self.ipc_ns()) && is_nsfs(&self.uts_ns()) {
            return Ok(());
        }
        for pin in [self.ipc_ns(), self.uts_ns()] {
            unmount(&pin)?;
            fs::write(&pin, "")?;
        }
        // unshare(1) creates both namespaces and bind-mounts them on the
        // files, which keeps them after `true` exits.
        let status = Command::new("unshare")
            .arg(format!("--ipc={}", self.ipc_ns().display()))
            .arg(format!("--uts={}", self.uts_ns().display()))
            .arg("true")
            .status()?;
        match status.success() {
            true => Ok(()),
            false => Err(io::Error::other(format!(
                "unshare --ipc --uts for the pod's namespaces failed: {status}"
            ))),
        }
    }

    /// The /etc files each container gets.
    pub fn mounts(&self) -> Vec<BindMount> {
        ["hosts", "hostname", "resolv.conf"]
            .into_iter()
            .map(|file| BindMount {
                source: self.dir.join(file),
                destination: Path::new("/etc").join(file),
                read_only: false,
            })
            .collect()
    }

    /// Unpins the namespaces and removes the directory.
    pub fn remove(&self) -> io::Result<()> {
        for pin in [self.ipc_ns(), self.uts_ns()] {
            unmount(&pin)?;
        }
        match fs::remove_dir_all(&self.dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

fn is_nsfs(path: &Path) -> bool {
    statfs::fs_type(path) == Some(statfs::NSFS_MAGIC)
}

/// The kubelet's /etc/hosts of a pod without hostAliases.
fn hosts(name: &str, ip: Ipv4Addr) -> String {
    format!(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n\
         {ip}\t{name}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_the_pod_at_its_address() {
        let hosts = hosts("web-1", Ipv4Addr::new(10, 244, 1, 5));
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("10.244.1.5\tweb-1\n"));
    }
}
