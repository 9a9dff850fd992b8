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

/// The pod's cluster DNS settings (the agent's `--cluster-dns`,
/// `--cluster-domain`).
#[derive(Debug, Clone)]
pub struct Dns {
    pub server: Option<Ipv4Addr>,
    pub domain: String,
}

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
    pub fn ensure(&self, namespace: &str, name: &str, ip: Ipv4Addr, dns: &Dns) -> io::Result<()> {
        fs::create_dir_all(self.dir.join("ns"))?;
        fs::write(self.dir.join("hostname"), format!("{name}\n"))?;
        fs::write(self.dir.join("hosts"), hosts(name, ip))?;
        fs::write(self.dir.join("resolv.conf"), resolv_conf(namespace, dns))?;
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

/// ClusterFirst DNS: the cluster's server, the namespace's search path
/// and ndots:5. Without `--cluster-dns` no nameserver line is written and
/// nothing is copied from the node: the node's resolvers are not reachable
/// from pods (no route out) and would only make lookups wait.
fn resolv_conf(namespace: &str, dns: &Dns) -> String {
    let domain = &dns.domain;
    let nameserver = dns
        .server
        .map_or_else(String::new, |server| format!("nameserver {server}\n"));
    format!("{nameserver}search {namespace}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_searches_the_namespace_first() {
        let dns = Dns {
            server: Some(Ipv4Addr::new(10, 96, 0, 10)),
            domain: "cluster.local".into(),
        };
        assert_eq!(
            resolv_conf("shop", &dns),
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        let none = Dns {
            server: None,
            ..dns
        };
        assert!(!resolv_conf("shop", &none).contains("nameserver"));
    }

    #[test]
    fn hosts_name_the_pod_at_its_address() {
        let hosts = hosts("web-1", Ipv4Addr::new(10, 244, 1, 5));
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("10.244.1.5\tweb-1\n"));
    }
}
