//! Starting a single-member etcd (Debian's etcd-server): its command line,
//! free ports, waiting until it serves, and a throwaway instance in a
//! temporary directory for tests and benchmarks.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where `cargo xtask setup` (Debian's etcd-server) installs etcd.
pub const ETCD_BINARY: &str = "/usr/bin/etcd";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The member name every skiff etcd runs as (a restored snapshot must name it).
pub const MEMBER_NAME: &str = "skiff";
/// etcd's space quota: past it etcd raises the NOSPACE alarm and takes only
/// reads and deletes. 2 GiB, etcd's own default, said explicitly so that the
/// limit compaction and defragmentation keep the database under is visible.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    /// etcd exited or never became healthy; `log_tail` is the end of its log.
    #[error("etcd ({}) {reason}; log tail:\n{log_tail}", log.display())]
    Unhealthy {
        reason: String,
        log: PathBuf,
        log_tail: String,
    },
}

impl LaunchError {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// The PEM files an etcd member serves and dials with, and trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl MemberTls {
    /// etcd's flags serving clients and peers with these files, a client
    /// certificate from the CA required of both (with `--client-cert-auth`
    /// etcd takes the user of an authenticated request from its CN).
    pub fn etcd_flags(&self) -> Vec<std::ffi::OsString> {
        let mut flags = Vec::new();
        for (flag, file) in [
            ("--trusted-ca-file", &self.ca_file),
            ("--cert-file", &self.cert_file),
            ("--key-file", &self.key_file),
        ] {
            flags.push(flag.into());
            flags.push(file.into());
        }
        flags.push("--client-cert-auth".into());
        for (flag, file) in [
            ("--peer-trusted-ca-file", &self.ca_file),
            ("--peer-cert-file", &self.cert_file),
            ("--peer-key-file", &self.key_file),
        ] {
            flags.push(flag.into());
            flags.push(file.into());
        }
        flags.push("--peer-client-cert-auth".into());
        flags
    }
}

/// How to run one single-member etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    pub data_dir: PathBuf,
    pub client_port: u16,
    /// Only ever on 127.0.0.1: there are no other members.
    pub peer_port: u16,
    /// Addresses to serve clients on besides 127.0.0.1, e.g. the control
    /// plane's address so that agents in node network namespaces reach it.
    pub listen_ips: Vec<Ipv4Addr>,
    /// etcd's `--quota-backend-bytes`.
    pub quota_backend_bytes: u64,
    /// Clients and the peer port over TLS with client certificates
    /// (`https://` URLs); plain HTTP without.
    pub tls: Option<MemberTls>,
}

impl EtcdConfig {
    pub const CLIENT_PORT: u16 = 2379;
    pub const PEER_PORT: u16 = 2380;

    /// The standard ports 2379/2380.
    pub fn standard(data_dir: impl Into<PathBuf>, listen_ips: &[Ipv4Addr]) -> EtcdConfig {
        EtcdConfig {
            data_dir: data_dir.into(),
            client_port: Self::CLIENT_PORT,
            peer_port: Self::PEER_PORT,
            listen_ips: listen_ips.to_vec(),
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
            tls: None,
        }
    }

    /// This configuration serving over TLS with `tls`.
    pub fn with_tls(self, tls: MemberTls) -> EtcdConfig {
        EtcdConfig {
            tls: Some(tls),
            ..self
        }
    }

    /// Ports the kernel just reported free on 127.0.0.1, so that parallel
    /// tests and an etcd on the standard ports do not collide.
    pub fn on_free_ports(
        data_dir: impl Into<PathBuf>,
        listen_ips: &[Ipv4Addr],
    ) -> Result<EtcdConfig, LaunchError> {
        let bind = || {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| LaunchError::io("cannot bind 127.0.0.1:0 to find a free port", e))
        };
        // Both held at once, so the two ports differ.
        let (client, peer) = (bind()?, bind()?);
        let port = |listener: &TcpListener| {
            listener
                .local_addr()
                .map(|addr| addr.port())
                .map_err(|e| LaunchError::io("cannot read a bound port", e))
        };
        Ok(EtcdConfig {
            data_dir: data_dir.into(),
            client_port: port(&client)?,
            peer_port: port(&peer)?,
            listen_ips: listen_ips.to_vec(),
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
            tls: None,
        })
    }

    /// `http(s)://IP:PORT` for each of `listen_ips` (what agents in the
    /// cluster use), or the local endpoint if there are none.
    pub fn endpoints(&self) -> Vec<String> {
        if self.listen_ips.is_empty() {
            return vec![self.local_endpoint()];
        }
        self.listen_ips
            .iter()
            .map(|ip| self.url(*ip, self.client_port))
            .collect()
    }

    /// `http(s)://127.0.0.1:PORT`, for clients in the root network
    /// namespace.
    pub fn local_endpoint(&self) -> String {
        self.url(Ipv4Addr::LOCALHOST, self.client_port)
    }

    /// `http(s)://127.0.0.1:PEER_PORT`, the member's peer URL.
    pub fn peer_url(&self) -> String {
        self.url(Ipv4Addr::LOCALHOST, self.peer_port)
    }

    fn url(&self, ip: Ipv4Addr, port: u16) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{ip}:{port}")
    }

    /// The command line of [`ETCD_BINARY`] for this configuration.
    pub fn command(&self) -> Command {
        self.command_of(Path::new(ETCD_BINARY))
    }

    /// The command line of the etcd at `binary` for this configuration. It
    /// logs to standard error.
    pub fn command_of(&self, binary: &Path) -> Command {
        let mut client_urls = vec![self.local_endpoint()];
        client_urls.extend(
            self.listen_ips
                .iter()
                .map(|ip| self.url(*ip, self.client_port)),
        );
        let peer = self.peer_url();
        let mut cmd = Command::new(binary);
        cmd.arg("--name")
            .arg(MEMBER_NAME)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(client_urls.join(","))
            .arg("--advertise-client-urls")
            .arg(self.endpoints().join(","))
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("{MEMBER_NAME}={peer}"))
            .arg("--quota-backend-bytes")
            .arg(self.quota_backend_bytes.to_string())
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        if let Some(tls) = &self.tls {
            cmd.args(tls.etcd_flags());
        }
        cmd
    }

    /// Polls `GET /health` on the local endpoint until etcd reports healthy
    /// (it has a leader), `exited` reports the process gone, or the timeout.
    /// `log` is where etcd writes, quoted in the error.
    pub fn wait_healthy(
        &self,
        log: &Path,
        mut exited: impl FnMut() -> Option<String>,
    ) -> Result<(), LaunchError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
        loop {
            if is_healthy(addr) {
                return Ok(());
            }
            let reason = if let Some(status) = exited() {
                format!("exited ({status}) before it was healthy")
            } else if Instant::now() >= deadline {
                format!(
                    "not healthy on {addr} after {} ms",
                    STARTUP_TIMEOUT.as_millis()
                )
            } else {
                thread::sleep(Duration::from_millis(25));
                continue;
            };
            return Err(LaunchError::Unhealthy {
                reason,
                log: log.to_owned(),
                log_tail: tail(log, 15),
            });
        }
    }
}

/// An etcd this process started: killed when dropped.
#[derive(Debug)]
pub struct EtcdProcess {
    child: Child,
    config: EtcdConfig,
    log: PathBuf,
}

impl EtcdProcess {
    /// Starts the etcd at `binary` with `config`, its output appended to
    /// `log`, and returns once it answers `/health`.
    pub fn start(binary: &Path, config: EtcdConfig, log: &Path) -> Result<Self, LaunchError> {
        fs::create_dir_all(&config.data_dir).map_err(|e| {
            LaunchError::io(format!("cannot create {}", config.data_dir.display()), e)
        })?;
        let log_file = fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| LaunchError::io(format!("cannot open {}", log.display()), e))?;
        let child = config
            .command_of(binary)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        let mut process = Self {
            child,
            config,
            log: log.to_owned(),
        };
        let Self { child, config, log } = &mut process;
        config.wait_healthy(log, || {
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| status.to_string())
        })?;
        Ok(process)
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    pub fn log_file(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills etcd and waits for it to exit; again is harmless.
    pub fn stop(&mut self) {
        // Failures mean it is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway etcd on free ports with its data and log in a fresh
/// temporary directory: killed, and the directory removed, on drop (also
/// when a test panics).
#[derive(Debug)]
pub struct TempEtcd {
    process: EtcdProcess,
    dir: PathBuf,
}

impl TempEtcd {
    /// [`ETCD_BINARY`] serving 127.0.0.1 and `listen_ips`.
    pub fn start(listen_ips: &[Ipv4Addr]) -> Result<Self, LaunchError> {
        Self::start_binary(Path::new(ETCD_BINARY), listen_ips)
    }

    pub fn start_binary(binary: &Path, listen_ips: &[Ipv4Addr]) -> Result<Self, LaunchError> {
        Self::start_prepared(binary, listen_ips, |_| Ok(()))
    }

    /// As [`TempEtcd::start_binary`], with `prepare` run on the chosen
    /// configuration before etcd starts: it may fill the data directory
    /// (a restored snapshot, which must name the member's peer URL).
    pub fn start_prepared(
        binary: &Path,
        listen_ips: &[Ipv4Addr],
        prepare: impl FnOnce(&EtcdConfig) -> io::Result<()>,
    ) -> Result<Self, LaunchError> {
        let dir = std::env::temp_dir().join(format!(
            "skiff-etcd-{}-{:08x}",
            std::process::id(),
            unique()
        ));
        fs::create_dir(&dir)
            .map_err(|e| LaunchError::io(format!("cannot create {}", dir.display()), e))?;
        let started = EtcdConfig::on_free_ports(dir.join("data"), listen_ips)
            .and_then(|config| {
                prepare(&config)
                    .map_err(|e| LaunchError::io("preparing etcd's data directory", e))?;
                Ok(config)
            })
            .and_then(|config| EtcdProcess::start(binary, config, &dir.join("etcd.log")));
        match started {
            Ok(process) => Ok(Self { process, dir }),
            Err(error) => {
                let _ = fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    pub fn process(&self) -> &EtcdProcess {
        &self.process
    }

    pub fn config(&self) -> &EtcdConfig {
        self.process.config()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn local_endpoint(&self) -> String {
        self.config().local_endpoint()
    }

    /// The client address on loopback.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.config().client_port))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempEtcd {
    fn drop(&mut self) {
        // Stop etcd before removing its directory.
        self.process.stop();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("skiff: cannot remove etcd dir {}: {e}", self.dir.display());
        }
    }
}

/// A number that differs between the temporary etcds of one process.
fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    nanos ^ NEXT.fetch_add(1, Ordering::Relaxed).rotate_left(16)
}

/// A loopback port nobody listens on (the kernel's pick).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One `GET /health` over plain HTTP/1.0; etcd answers `{"health":"true"}`
/// once the member has a leader.
fn is_healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).is_ok()
        && response
            .lines()
            .next()
            .is_some_and(|status| status.contains(" 200 "))
        && response.contains(r#""health":"true""#)
}

/// The last `n` lines of a log, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A command line's arguments, for tests of the command lines built here.
#[cfg(test)]
pub(crate) struct CommandArgs(Vec<String>);

#[cfg(test)]
impl CommandArgs {
    pub(crate) fn of(command: &Command) -> Self {
        Self(
            command
                .get_args()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect(),
        )
    }

    /// The argument after `flag`.
    pub(crate) fn after(&self, flag: &str) -> String {
        let at = self.0.iter().position(|arg| arg == flag).unwrap();
        self.0[at + 1].clone()
    }

    pub(crate) fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|arg| arg == flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_serves_loopback_and_listen_ips() {
        let config = EtcdConfig {
            data_dir: "/tmp/d".into(),
            client_port: 1111,
            peer_port: 2222,
            listen_ips: vec![Ipv4Addr::new(10, 0, 0, 1)],
            quota_backend_bytes: 1 << 30,
            tls: None,
        };
        assert_eq!(config.endpoints(), ["http://10.0.0.1:1111"]);
        assert_eq!(config.local_endpoint(), "http://127.0.0.1:1111");
        let args = CommandArgs::of(&config.command());
        let after = |flag: &str| args.after(flag);
        assert_eq!(
            after("--listen-client-urls"),
            "http://127.0.0.1:1111,http://10.0.0.1:1111"
        );
        assert_eq!(after("--advertise-client-urls"), "http://10.0.0.1:1111");
        assert_eq!(after("--initial-cluster"), "skiff=http://127.0.0.1:2222");
        assert_eq!(after("--data-dir"), "/tmp/d");
        assert_eq!(after("--quota-backend-bytes"), "1073741824");
        let local = EtcdConfig::standard("/tmp/d", &[]);
        assert_eq!(local.endpoints(), ["http://127.0.0.1:2379"]);
    }

    #[test]
    fn with_tls_it_serves_https_and_asks_clients_and_peers_for_certificates() {
        let config =
            EtcdConfig::standard("/tmp/d", &[Ipv4Addr::new(10, 0, 0, 1)]).with_tls(MemberTls {
                ca_file: "/ca".into(),
                cert_file: "/crt".into(),
                key_file: "/key".into(),
            });
        assert_eq!(config.endpoints(), ["https://10.0.0.1:2379"]);
        assert_eq!(config.peer_url(), "https://127.0.0.1:2380");
        let args = CommandArgs::of(&config.command());
        let after = |flag: &str| args.after(flag);
        assert_eq!(
            after("--listen-client-urls"),
            "https://127.0.0.1:2379,https://10.0.0.1:2379"
        );
        assert_eq!(after("--trusted-ca-file"), "/ca");
        assert_eq!(after("--peer-cert-file"), "/crt");
        assert!(args.has("--client-cert-auth"));
        assert!(args.has("--peer-client-cert-auth"));
    }

    #[test]
    fn free_ports_differ() {
        let config = EtcdConfig::on_free_ports("/tmp/d", &[]).unwrap();
        assert_ne!(config.client_port, config.peer_port);
        assert_ne!(config.client_port, 0);
    }

    #[test]
    fn temp_etcd_serves_and_cleans_up() {
        let etcd = TempEtcd::start(&[]).unwrap();
        let dir = etcd.dir().to_owned();
        assert!(is_healthy(etcd.client_addr()));
        assert!(etcd.process().log_file().starts_with(&dir));
        let addr = etcd.client_addr();
        drop(etcd);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(!is_healthy(addr));
    }

    #[test]
    fn a_missing_binary_is_reported_and_leaves_nothing() {
        let error = TempEtcd::start_binary(Path::new("/nonexistent/etcd"), &[]).unwrap_err();
        assert!(matches!(error, LaunchError::Spawn { .. }), "{error}");
    }

    #[test]
    fn an_etcd_that_exits_is_reported_with_its_log() {
        let dir = std::env::temp_dir().join(format!("skiff-etcd-exit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut config = EtcdConfig::on_free_ports(dir.join("data"), &[]).unwrap();
        // Both ports the same: etcd cannot bind the second and exits.
        config.peer_port = config.client_port;
        let error =
            EtcdProcess::start(Path::new(ETCD_BINARY), config, &dir.join("etcd.log")).unwrap_err();
        let _ = fs::remove_dir_all(&dir);
        match error {
            LaunchError::Unhealthy { reason, .. } => assert!(reason.contains("exited"), "{reason}"),
            other => panic!("expected an exit, got {other}"),
        }
    }
}
