//! One member of a multi-member etcd cluster that serves clients and peers
//! over TLS only, with client certificates required on both: its command
//! line, and the etcdctl command lines that add it to a running cluster and
//! read the members' status (the maintenance API's Status call). The
//! certificates are the control plane's (`skiff-control --pki-only`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::launcher::MemberTls;
use crate::launcher::{ETCD_BINARY, EtcdConfig};

/// Where Debian's etcd-client package installs etcdctl.
pub const ETCDCTL_BINARY: &str = "/usr/bin/etcdctl";

/// Whether the member starts a cluster or joins a running one (after
/// [`MemberConfig::member_add`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// How to run one TLS member on the standard ports of its own address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    pub name: String,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    pub tls: MemberTls,
    /// Every member's name and address, this one's included.
    pub initial_cluster: Vec<(String, Ipv4Addr)>,
    pub state: ClusterState,
}

impl MemberConfig {
    /// `https://IP:2379`.
    pub fn client_url(ip: Ipv4Addr) -> String {
        format!("https://{ip}:{}", EtcdConfig::CLIENT_PORT)
    }

    /// `https://IP:2380`.
    pub fn peer_url(ip: Ipv4Addr) -> String {
        format!("https://{ip}:{}", EtcdConfig::PEER_PORT)
    }

    /// The command line of [`ETCD_BINARY`]; it logs to standard error.
    pub fn command(&self) -> Command {
        let client = Self::client_url(self.ip);
        let peer = Self::peer_url(self.ip);
        let initial_cluster: Vec<String> = self
            .initial_cluster
            .iter()
            .map(|(name, ip)| format!("{name}={}", Self::peer_url(*ip)))
            .collect();
        let state = match self.state {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        };
        let mut cmd = Command::new(ETCD_BINARY);
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster.join(",")])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "skiff"])
            .args(self.tls.etcd_flags())
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        cmd
    }

    /// `etcdctl member add` of this member, run against `endpoints` (the
    /// running members) as `client` (etcd user `root` once authentication
    /// is on: membership changes are the administrator's).
    pub fn member_add(&self, client: &MemberTls, endpoints: &[String]) -> Command {
        let mut cmd = etcdctl(client, endpoints);
        cmd.args(["member", "add", &self.name, "--peer-urls"])
            .arg(Self::peer_url(self.ip));
        cmd
    }
}

/// etcdctl (API v3) against `endpoints` with `tls`.
pub fn etcdctl(tls: &MemberTls, endpoints: &[String]) -> Command {
    let mut cmd = Command::new(ETCDCTL_BINARY);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--cacert")
        .arg(&tls.ca_file)
        .arg("--cert")
        .arg(&tls.cert_file)
        .arg("--key")
        .arg(&tls.key_file)
        .args(["--dial-timeout", "2s", "--command-timeout", "3s"]);
    cmd
}

/// `etcdctl endpoint status -w json` of `endpoints`: each member's Status
/// (maintenance API), whose `leader` names the member the cluster follows.
pub fn endpoint_status(tls: &MemberTls, endpoints: &[String]) -> Command {
    let mut cmd = etcdctl(tls, endpoints);
    cmd.args(["endpoint", "status", "-w", "json"]);
    cmd
}

/// `etcdctl endpoint health` of `endpoints`.
pub fn endpoint_health(tls: &MemberTls, endpoints: &[String]) -> Command {
    let mut cmd = etcdctl(tls, endpoints);
    cmd.args(["endpoint", "health"]);
    cmd
}

/// The data directory of member `name` under `dir`.
pub fn data_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.etcd"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::CommandArgs;

    #[test]
    fn a_member_serves_tls_on_its_address_and_names_its_peers() {
        let ip = |last| Ipv4Addr::new(172, 30, 0, last);
        let config = MemberConfig {
            name: "cp2".into(),
            ip: ip(2),
            data_dir: "/d".into(),
            tls: MemberTls {
                ca_file: "/ca".into(),
                cert_file: "/crt".into(),
                key_file: "/key".into(),
            },
            initial_cluster: vec![("cp1".into(), ip(1)), ("cp2".into(), ip(2))],
            state: ClusterState::Existing,
        };
        let args = CommandArgs::of(&config.command());
        let after = |flag: &str| args.after(flag);
        assert_eq!(after("--listen-client-urls"), "https://172.30.0.2:2379");
        assert_eq!(after("--listen-peer-urls"), "https://172.30.0.2:2380");
        assert_eq!(
            after("--initial-cluster"),
            "cp1=https://172.30.0.1:2380,cp2=https://172.30.0.2:2380"
        );
        assert_eq!(after("--initial-cluster-state"), "existing");
        assert!(args.has("--client-cert-auth"));
        assert!(args.has("--peer-client-cert-auth"));
    }
}
