//! The control plane of an HA cluster: members `cp1` … `cpN`, each a
//! netns on the fabric ([`Cluster::add_control_plane`]) running an etcd
//! member (client and peer TLS) and a skiff-control. The first member makes
//! the CAs and the join token; each other one joins with the token (`--join
//! https://172.30.0.1:6443 --token …`, as `k3s server --token`), is added
//! to etcd with `etcdctl member add` and starts its etcd as `existing`.
//! Every skiff-control knows every etcd member and serves on its own
//! address, port 6443.

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_etcd::member::{self, ClusterState, MemberConfig, MemberTls};

use crate::agent::{agent_command, wait_for_sync};
use crate::binaries::control_binary;
use crate::cluster::Cluster;
use crate::cmd::{self, render};
use crate::control::{kubeconfig_path, wait_for_api};
use crate::error::{HarnessError, Result};
use crate::hosts::{Host, Node};
use crate::process::ProcessGuard;

/// Where every member's API server listens, on its own address.
pub const API_PORT: u16 = 6443;
/// The NodePort of `kube-system/skiff-apiserver`, the Service in front of
/// the API servers: every node's address on this port is the one address
/// that survives the loss of any member.
pub const API_NODE_PORT: u16 = 30443;
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(20);
const CONTROL_READY_TIMEOUT: Duration = Duration::from_secs(30);
const AGENT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Member `i`'s name, `cp<i>`: its netns's, its etcd member's.
pub fn member_name(i: usize) -> String {
    format!("cp{i}")
}

/// Member `i`'s data directory under `dir`: PKI, token, kubeconfig, etcd.
pub fn member_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(member_name(i))
}

/// The etcd certificates `skiff-control --pki-only` issued for a member,
/// which its etcd serves with and its skiff-control (and etcdctl) dial with.
pub fn member_tls(member_dir: &Path) -> MemberTls {
    etcd_client_tls(member_dir, "member")
}

/// `--etcd-cafile/--etcd-certfile/--etcd-keyfile` of a member's
/// skiff-control: its API server client certificate (etcd user `root`).
pub fn control_etcd_tls_args(member_dir: &Path) -> Vec<String> {
    etcd_client_tls_args(member_dir, "apiserver-etcd-client")
}

/// The agents' etcd client flags: the certificate of etcd user
/// `skiff-agent` a member's PKI holds, shared by every agent.
pub fn agent_etcd_tls_args(member_dir: &Path) -> Vec<String> {
    etcd_client_tls_args(member_dir, "agent-etcd-client")
}

fn etcd_client_tls_args(member_dir: &Path, client: &str) -> Vec<String> {
    let tls = etcd_client_tls(member_dir, client);
    let flag = |name: &str, file: &Path| format!("--{name}={}", file.display());
    vec![
        flag("etcd-cafile", &tls.ca_file),
        flag("etcd-certfile", &tls.cert_file),
        flag("etcd-keyfile", &tls.key_file),
    ]
}

/// The etcd client identity (`root`) of [`control_etcd_tls_args`], for
/// etcdctl.
pub fn root_etcd_tls(member_dir: &Path) -> MemberTls {
    etcd_client_tls(member_dir, "apiserver-etcd-client")
}

/// The etcd client identity (`skiff-agent`) of [`agent_etcd_tls_args`].
pub fn agent_etcd_tls(member_dir: &Path) -> MemberTls {
    etcd_client_tls(member_dir, "agent-etcd-client")
}

/// The CA and `<client>.crt`/`.key` of a member's etcd PKI.
fn etcd_client_tls(member_dir: &Path, client: &str) -> MemberTls {
    let etcd = member_dir.join("pki").join("etcd");
    MemberTls {
        ca_file: etcd.join("ca.crt"),
        cert_file: etcd.join(format!("{client}.crt")),
        key_file: etcd.join(format!("{client}.key")),
    }
}

/// Runs `skiff-control etcd enable-auth` against `endpoints` as `root`
/// with the PKI of `member_dir` (in `host`'s netns, else the root netns):
/// users `root` and `skiff-agent`, then etcd's authentication on
/// (idempotent).
pub fn enable_etcd_auth(
    member_dir: &Path,
    endpoints: &[String],
    host: Option<&Host>,
) -> Result<()> {
    let mut command = Command::new(control_binary()?);
    command
        .args(["etcd", "enable-auth"])
        .arg(format!("--etcd={}", endpoints.join(",")))
        .args(control_etcd_tls_args(member_dir))
        .env("NO_COLOR", "1");
    if let Some(host) = host {
        command = in_host(host, &command);
    }
    cmd::run(&mut command).map(drop)
}

/// Runs [`pki_only_command`]: the PKI of `dir` and the etcd certificates
/// of the member at `member_ip`, in the root netns.
pub fn issue_etcd_certificates(dir: &Path, member_ip: Ipv4Addr) -> Result<()> {
    cmd::run(&mut pki_only_command(dir, member_ip)?).map(drop)
}

/// The etcd client URLs of `hosts`.
pub fn etcd_endpoints(hosts: &[Host]) -> Vec<String> {
    hosts
        .iter()
        .map(|host| MemberConfig::client_url(host.ip()))
        .collect()
}

/// `https://<member 1>:6443`, where the others join.
pub fn join_url(first: &Host) -> String {
    format!("https://{}:{API_PORT}", first.ip())
}

/// `skiff-control --pki-only` in the root netns: creates the PKI in
/// `dir` (or completes it) and issues the etcd certificates, the
/// member's for `member_ip` (and 127.0.0.1). Every start of an etcd runs
/// it, so that a certificate is never older than its member's start.
pub fn pki_only_command(dir: &Path, member_ip: Ipv4Addr) -> Result<Command> {
    let mut command = Command::new(control_binary()?);
    command
        .arg("--pki-only")
        .arg("--data-dir")
        .arg(dir)
        .arg(format!("--etcd-member-ip={member_ip}"))
        .env("NO_COLOR", "1");
    Ok(command)
}

/// [`pki_only_command`] for member `host`, in its netns: creates the PKI
/// (the first member) or fetches it with `join` (URL, token), issues its
/// etcd certificates and its serving certificate, which names the member
/// and the nodes (`node_ips`, which serve the NodePort in front).
pub fn pki_command(
    host: &Host,
    dir: &Path,
    node_ips: &[Ipv4Addr],
    join: Option<(&str, &str)>,
) -> Result<Command> {
    let mut command = in_host(host, &pki_only_command(dir, host.ip())?);
    command
        .arg(format!("--advertise-address={}", host.ip()))
        .args(
            node_ips
                .iter()
                .map(|ip| format!("--advertise-address={ip}")),
        );
    if let Some((url, token)) = join {
        command.args(["--join", url, "--token", token]);
    }
    Ok(command)
}

/// The etcd member of `host`, given the members started before it (empty
/// for the first: it starts the cluster).
pub fn etcd_member(host: &Host, dir: &Path, earlier: &[Host]) -> MemberConfig {
    let initial_cluster = earlier
        .iter()
        .chain([host])
        .map(|h| (h.name().to_owned(), h.ip()))
        .collect();
    MemberConfig {
        name: host.name().to_owned(),
        ip: host.ip(),
        data_dir: dir.join("etcd"),
        tls: member_tls(dir),
        initial_cluster,
        state: if earlier.is_empty() {
            ClusterState::New
        } else {
            ClusterState::Existing
        },
    }
}

/// `command` (built for the root netns) run in `host`'s netns.
pub fn in_host(host: &Host, command: &Command) -> Command {
    let mut inside = host.command(command.get_program());
    inside.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => inside.env(key, value),
            None => inside.env_remove(key),
        };
    }
    inside
}

/// The skiff-control of member `host`, serving on its address, storing in
/// every member's etcd (`all`), keeping its address leased in the
/// Services in front of the API servers, its certificate also naming the
/// nodes (`node_ips`, which serve the NodePort), plus `extra` flags.
pub fn control_command(
    host: &Host,
    dir: &Path,
    all: &[Host],
    node_ips: &[Ipv4Addr],
    extra: &[&str],
) -> Result<Command> {
    let mut command = host.command(control_binary()?);
    command
        .arg(format!("--bind={}:{API_PORT}", host.ip()))
        .arg(format!("--etcd={}", etcd_endpoints(all).join(",")))
        .args(control_etcd_tls_args(dir))
        .arg("--data-dir")
        .arg(dir)
        .arg(format!("--advertise-address={}", host.ip()))
        .args(
            node_ips
                .iter()
                .map(|ip| format!("--advertise-address={ip}")),
        )
        .arg("--endpoint-reconciler-type=lease")
        .arg(format!("--apiserver-node-port={API_NODE_PORT}"))
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    Ok(command)
}

/// `<dir>/admin.kubeconfig`: the first member's, naming `front` (the
/// NodePort on a node) instead of the member's own address.
pub fn write_front_kubeconfig(dir: &Path, front: SocketAddr) -> Result<PathBuf> {
    let source = kubeconfig_path(&member_dir(dir, 1));
    let text = fs::read_to_string(&source)
        .map_err(|e| HarnessError::io(format!("cannot read {}", source.display()), e))?;
    let mut kubeconfig: Value = serde_json::from_str(&text).map_err(|e| {
        HarnessError::Environment(format!("{} is no JSON kubeconfig: {e}", source.display()))
    })?;
    for cluster in kubeconfig["clusters"].as_array_mut().into_iter().flatten() {
        cluster["cluster"]["server"] = Value::String(format!("https://{front}"));
    }
    let path = kubeconfig_path(dir);
    // It holds the admin's private key: 0600 from the start, as
    // skiff-control writes its own, never readable in between.
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        file.write_all(kubeconfig.to_string().as_bytes())
    };
    write().map_err(|e| HarnessError::io(format!("cannot write {}", path.display()), e))?;
    Ok(path)
}

/// Waits until etcd at `endpoint` answers health checks with a leader.
pub fn wait_for_etcd(
    tls: &MemberTls,
    endpoint: &str,
    mut running: impl FnMut() -> bool,
    log: &Path,
) -> Result<()> {
    let deadline = Instant::now() + ETCD_READY_TIMEOUT;
    loop {
        let healthy = member::endpoint_health(tls, &[endpoint.to_owned()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if healthy {
            return Ok(());
        }
        let tail = || fs::read_to_string(log).unwrap_or_default();
        if !running() {
            return Err(HarnessError::Etcd {
                reason: format!("{endpoint} exited before it was healthy"),
                log: log.to_owned(),
                log_tail: tail(),
            });
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Etcd {
                reason: format!("{endpoint} not healthy after {ETCD_READY_TIMEOUT:?}"),
                log: log.to_owned(),
                log_tail: tail(),
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Readies member `host` (its data in `member_dir`, the members before it
/// `earlier`, every member's directory under `dir`, the nodes serving the
/// NodePort in front at `node_ips`) for its etcd to start:
/// its PKI, created (the first) or fetched with the first member's token,
/// once; and, for a later member whose etcd has no data yet, its addition
/// to the running etcd. Returns its etcd's configuration.
pub fn prepare_member(
    host: &Host,
    member_dir: &Path,
    earlier: &[Host],
    dir: &Path,
    node_ips: &[Ipv4Addr],
) -> Result<MemberConfig> {
    fs::create_dir_all(member_dir)
        .map_err(|e| HarnessError::io(format!("cannot create {}", member_dir.display()), e))?;
    let mut config = etcd_member(host, member_dir, earlier);
    if !config.tls.cert_file.exists() {
        let join = match earlier.first() {
            Some(first) => {
                let path = self::member_dir(dir, 1).join("token");
                let token = fs::read_to_string(&path)
                    .map_err(|e| HarnessError::io(format!("cannot read {}", path.display()), e))?;
                Some((join_url(first), token.trim().to_owned()))
            }
            None => None,
        };
        let join = join
            .as_ref()
            .map(|(url, token)| (url.as_str(), token.as_str()));
        cmd::run(&mut pki_command(host, member_dir, node_ips, join)?)?;
    }
    if !earlier.is_empty() && !config.data_dir.exists() {
        // The members etcd has now, which need not be `earlier` (a member
        // replaced while later ones run).
        let added = member_add(&config, &root_etcd_tls(member_dir), earlier)?;
        config.initial_cluster = initial_cluster(&added).ok_or_else(|| {
            HarnessError::Environment(format!("etcdctl member add printed no cluster: {added}"))
        })?;
    }
    Ok(config)
}

/// Adds `config`'s member to the etcd of `running`. etcd refuses while a
/// member added before has been connected for less than 5 s (its strict
/// reconfiguration check): retried until then.
pub fn member_add(config: &MemberConfig, client: &MemberTls, running: &[Host]) -> Result<String> {
    let deadline = Instant::now() + ETCD_READY_TIMEOUT;
    loop {
        match cmd::run(&mut config.member_add(client, &etcd_endpoints(running))) {
            Ok(output) => return Ok(output),
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(HarnessError::Command { stderr, .. }) if stderr.contains("unhealthy cluster") => {
                thread::sleep(Duration::from_millis(500));
            }
            Err(error) => return Err(error),
        }
    }
}

/// The `ETCD_INITIAL_CLUSTER="name=https://ip:2380,…"` line of `etcdctl
/// member add`'s output, as names and addresses.
fn initial_cluster(member_add_output: &str) -> Option<Vec<(String, Ipv4Addr)>> {
    let line = member_add_output
        .lines()
        .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER="))?
        .trim_matches('"');
    line.split(',')
        .map(|entry| {
            let (name, url) = entry.split_once('=')?;
            let address = url.strip_prefix("https://")?.split(':').next()?;
            Some((name.to_owned(), address.parse().ok()?))
        })
        .collect()
}

/// The member (1-based, by address among `hosts`) that etcd's members
/// report as their leader, from the maintenance API's Status of each.
pub fn etcd_leader(tls: &MemberTls, hosts: &[Host]) -> Result<usize> {
    let mut command = member::endpoint_status(tls, &etcd_endpoints(hosts));
    let output = cmd::output(&mut command)?;
    // A dead member makes etcdctl exit non-zero but print the others.
    let statuses: Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| HarnessError::Environment(format!("{}: {error}", render(&command))))?;
    let leader_endpoint = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|status| {
            let member = &status["Status"]["header"]["member_id"];
            !member.is_null() && *member == status["Status"]["leader"]
        })
        .and_then(|status| status["Endpoint"].as_str())
        .ok_or_else(|| HarnessError::NotFound(format!("no etcd leader among {statuses}")))?;
    etcd_endpoints(hosts)
        .iter()
        .position(|endpoint| endpoint == leader_endpoint)
        .map(|at| at + 1)
        .ok_or_else(|| HarnessError::NotFound(format!("leader {leader_endpoint} is no member")))
}

/// One member's processes.
#[derive(Debug)]
struct Member {
    host: Host,
    etcd: Option<ProcessGuard>,
    control: Option<ProcessGuard>,
}

/// A test's HA control plane on a cluster, with a proxy-only agent on
/// each node (which programs the NodePort in front of the API servers):
/// killed (SIGKILL) with its guards, its directory removed on drop.
#[derive(Debug)]
pub struct ControlPlanes {
    dir: PathBuf,
    members: Vec<Member>,
    node_ips: Vec<Ipv4Addr>,
    extra: Vec<String>,
    agents: Vec<ProcessGuard>,
}

impl ControlPlanes {
    /// Starts `count` members in `cluster`, each skiff-control with
    /// `extra` flags, and an agent on each node, keeping everything under
    /// `dir`. Returns once the API answers at the one address
    /// ([`ControlPlanes::front`]).
    pub fn start(
        cluster: &mut Cluster,
        count: usize,
        dir: &Path,
        extra: &[&str],
    ) -> Result<ControlPlanes> {
        let hosts = (1..=count)
            .map(|i| cluster.add_control_plane(i))
            .collect::<Result<Vec<_>>>()?;
        let mut planes = ControlPlanes {
            dir: dir.to_owned(),
            members: Vec::new(),
            node_ips: cluster.nodes().iter().map(|node| node.ip()).collect(),
            extra: extra.iter().map(|flag| (*flag).to_owned()).collect(),
            agents: Vec::new(),
        };
        for (at, host) in hosts.iter().enumerate() {
            let member_dir = member_dir(dir, at + 1);
            let config = prepare_member(
                host,
                &member_dir,
                &hosts[..at],
                &planes.dir,
                &planes.node_ips,
            )?;
            let mut member = Member {
                host: host.clone(),
                etcd: None,
                control: None,
            };
            planes.spawn_etcd(&mut member, &config)?;
            planes.spawn_control(&mut member, &hosts)?;
            planes.members.push(member);
        }
        for node in cluster.nodes() {
            planes.spawn_agent(node, &hosts)?;
        }
        let kubeconfig = write_front_kubeconfig(dir, planes.front())?;
        wait_for_api(&kubeconfig, || true, CONTROL_READY_TIMEOUT)?;
        Ok(planes)
    }

    fn spawn_etcd(&self, member: &mut Member, config: &MemberConfig) -> Result<()> {
        let log = self.log_path(member.host.name(), "etcd");
        let mut command = in_host(&member.host, &config.command());
        command.stdin(Stdio::null()).stdout(Stdio::null());
        command.stderr(open_log(&log)?);
        let etcd = member.etcd.insert(ProcessGuard::spawn(&mut command)?);
        wait_for_etcd(
            &config.tls,
            &MemberConfig::client_url(config.ip),
            || etcd.is_running(),
            &log,
        )
    }

    fn spawn_control(&self, member: &mut Member, all: &[Host]) -> Result<()> {
        let index = member_index(&member.host);
        let member_dir = member_dir(&self.dir, index);
        let log = self.log_path(member.host.name(), "control");
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut command = control_command(&member.host, &member_dir, all, &self.node_ips, &extra)?;
        command.stdin(Stdio::null()).stdout(open_log(&log)?);
        command.stderr(open_log(&log)?);
        let control = member.control.insert(ProcessGuard::spawn(&mut command)?);
        wait_for_api(
            &kubeconfig_path(&member_dir),
            || control.is_running(),
            CONTROL_READY_TIMEOUT,
        )
        .map_err(|error| {
            let log_text = fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = log_text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            HarnessError::Environment(format!("{error}; {}:\n{tail}", log.display()))
        })
    }

    /// A proxy-only agent on `node` reaching every member's etcd over TLS.
    fn spawn_agent(&mut self, node: &Node, all: &[Host]) -> Result<()> {
        let log = self.log_path(node.name(), "agent");
        let mut command = agent_command(node, &etcd_endpoints(all))?;
        command.args(control_etcd_tls_args(&self.member_dir(1)));
        command.stdin(Stdio::null()).stdout(Stdio::null());
        command.stderr(open_log(&log)?);
        let mut agent = ProcessGuard::spawn(&mut command)?;
        wait_for_sync(&log, 0, || agent.is_running(), AGENT_SYNC_TIMEOUT)?;
        self.agents.push(agent);
        Ok(())
    }

    fn log_path(&self, name: &str, what: &str) -> PathBuf {
        self.dir.join(format!("{name}-{what}.log"))
    }

    /// The members' hosts, `cp1` first.
    pub fn hosts(&self) -> Vec<Host> {
        self.members.iter().map(|m| m.host.clone()).collect()
    }

    /// Member `i`'s (1-based) data directory.
    pub fn member_dir(&self, i: usize) -> PathBuf {
        member_dir(&self.dir, i)
    }

    /// Member `i`'s API server address.
    pub fn api_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.member(i).host.ip(), API_PORT))
    }

    /// The one address of the API: the NodePort in front of the API
    /// servers, on the first node.
    pub fn front(&self) -> SocketAddr {
        SocketAddr::from((self.node_ips[0], API_NODE_PORT))
    }

    /// The cluster CA every member shares.
    pub fn ca_pem(&self) -> Result<Vec<u8>> {
        let path = self.member_dir(1).join("pki").join("ca.crt");
        fs::read(&path).map_err(|e| HarnessError::io(format!("cannot read {}", path.display()), e))
    }

    /// Which member (1-based) etcd's members follow.
    pub fn etcd_leader(&self) -> Result<usize> {
        etcd_leader(&member_tls(&self.member_dir(1)), &self.hosts())
    }

    /// Which member the members other than `gone` follow: etcdctl asks
    /// only them, so a dead member costs no dial timeout.
    pub fn etcd_leader_without(&self, gone: usize) -> Result<usize> {
        let hosts = self.hosts();
        let others: Vec<Host> = hosts
            .iter()
            .enumerate()
            .filter(|(at, _)| at + 1 != gone)
            .map(|(_, host)| host.clone())
            .collect();
        let leader = &others[etcd_leader(&member_tls(&self.member_dir(1)), &others)? - 1];
        Ok(member_index(leader))
    }

    /// Member `i`'s etcd and skiff-control logs.
    pub fn logs(&self, i: usize) -> String {
        let name = member_name(i);
        ["etcd", "control"]
            .iter()
            .map(|what| {
                let path = self.log_path(&name, what);
                format!(
                    "--- {}\n{}",
                    path.display(),
                    fs::read_to_string(&path).unwrap_or_default()
                )
            })
            .collect()
    }

    /// SIGKILLs member `i`'s etcd.
    pub fn kill_etcd(&mut self, i: usize) {
        self.member_mut(i).etcd = None;
    }

    /// SIGKILLs member `i`'s skiff-control.
    pub fn kill_control(&mut self, i: usize) {
        self.member_mut(i).control = None;
    }

    fn member(&self, i: usize) -> &Member {
        &self.members[i - 1]
    }

    fn member_mut(&mut self, i: usize) -> &mut Member {
        &mut self.members[i - 1]
    }
}

impl Drop for ControlPlanes {
    fn drop(&mut self) {
        // Processes first: their guards kill them.
        self.agents.clear();
        self.members.clear();
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!("skiff: cannot remove {}: {error}", self.dir.display());
        }
    }
}

/// The number in a member's name, `cp<i>`.
fn member_index(host: &Host) -> usize {
    host.name()
        .trim_start_matches("cp")
        .parse()
        .expect("member hosts are named cp<i>")
}

fn open_log(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| HarnessError::io(format!("cannot open {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_cluster_is_read_from_member_add() {
        let output = "Member 1 added to cluster 2\n\nETCD_NAME=\"cp2\"\n\
            ETCD_INITIAL_CLUSTER=\"cp1=https://172.30.0.1:2380,cp2=https://172.30.0.2:2380\"\n\
            ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n";
        assert_eq!(
            initial_cluster(output),
            Some(vec![
                ("cp1".to_owned(), Ipv4Addr::new(172, 30, 0, 1)),
                ("cp2".to_owned(), Ipv4Addr::new(172, 30, 0, 2)),
            ])
        );
        assert_eq!(initial_cluster("nothing"), None);
    }
}
