//! etcd (Debian's etcd-server 3.4) in the root netns, for tests (a guard that
//! kills it and removes its data) and for `cargo xtask up` (a daemon on the
//! standard ports with a persistent data dir).

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::render;
use crate::daemon::{Daemon, DaemonSpec};
use crate::error::{HarnessError, Result};

const ETCD: &str = "/usr/bin/etcd";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const MEMBER_NAME: &str = "skiff";

/// How to run one single-member etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    pub data_dir: PathBuf,
    pub client_port: u16,
    /// Only ever on 127.0.0.1: there are no other members.
    pub peer_port: u16,
    /// Addresses to serve clients on besides 127.0.0.1, e.g.
    /// [`crate::CONTROL_PLANE_IP`] so agents in node netns reach it.
    pub listen_ips: Vec<Ipv4Addr>,
}

impl EtcdConfig {
    pub const CLIENT_PORT: u16 = 2379;
    pub const PEER_PORT: u16 = 2380;

    /// The standard ports 2379/2380, as `cargo xtask up` uses them.
    pub fn standard(data_dir: impl Into<PathBuf>, listen_ips: &[Ipv4Addr]) -> EtcdConfig {
        EtcdConfig {
            data_dir: data_dir.into(),
            client_port: Self::CLIENT_PORT,
            peer_port: Self::PEER_PORT,
            listen_ips: listen_ips.to_vec(),
        }
    }

    /// Ports the kernel just reported free on 127.0.0.1, so that parallel
    /// tests and a running `cargo xtask up` etcd do not collide.
    pub fn on_free_ports(
        data_dir: impl Into<PathBuf>,
        listen_ips: &[Ipv4Addr],
    ) -> Result<EtcdConfig> {
        let bind = || {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| HarnessError::io("cannot bind 127.0.0.1:0 to find a free port", e))
        };
        // Both held at once, so the two ports differ.
        let (client, peer) = (bind()?, bind()?);
        let port = |l: &TcpListener| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| HarnessError::io("cannot read a bound port", e))
        };
        Ok(EtcdConfig {
            data_dir: data_dir.into(),
            client_port: port(&client)?,
            peer_port: port(&peer)?,
            listen_ips: listen_ips.to_vec(),
        })
    }

    /// `http://IP:PORT` for each of `listen_ips` (what agents in the cluster
    /// use), or the local endpoint if there are none.
    pub fn endpoints(&self) -> Vec<String> {
        if self.listen_ips.is_empty() {
            return vec![self.local_endpoint()];
        }
        self.listen_ips
            .iter()
            .map(|ip| url(*ip, self.client_port))
            .collect()
    }

    /// `http://127.0.0.1:PORT`, for tools in the root netns (etcdctl).
    pub fn local_endpoint(&self) -> String {
        url(Ipv4Addr::LOCALHOST, self.client_port)
    }

    /// The etcd command line for this configuration.
    pub fn command(&self) -> Command {
        let mut client_urls = vec![self.local_endpoint()];
        client_urls.extend(self.listen_ips.iter().map(|ip| url(*ip, self.client_port)));
        let peer = url(Ipv4Addr::LOCALHOST, self.peer_port);
        let mut cmd = Command::new(ETCD);
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
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        cmd
    }

    /// Polls `GET /health` on the local endpoint until etcd reports healthy
    /// (it has a leader), `exited` reports the process gone, or the timeout.
    fn wait_healthy(&self, log: &Path, mut exited: impl FnMut() -> Option<String>) -> Result<()> {
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
            return Err(HarnessError::Etcd {
                reason,
                log: log.to_owned(),
                log_tail: tail(log, 15),
            });
        }
    }
}

/// A test etcd: killed, and its data and log removed, on drop.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    config: EtcdConfig,
    dir: PathBuf,
    log: PathBuf,
}

impl Etcd {
    /// Starts etcd on free ports, serving 127.0.0.1 and `listen_ips` (pass
    /// [`crate::CONTROL_PLANE_IP`] when a cluster is up, so agents reach
    /// it), with its data and log in a fresh temporary directory. Returns
    /// once it answers `/health`.
    pub fn start(listen_ips: &[Ipv4Addr]) -> Result<Etcd> {
        let dir = std::env::temp_dir().join(format!(
            "skiff-etcd-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir(&dir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", dir.display()), e))?;
        // Removes the directory if anything below fails.
        let cleanup = RemoveOnDrop(Some(dir.clone()));
        let config = EtcdConfig::on_free_ports(dir.join("data"), listen_ips)?;
        let log = dir.join("etcd.log");
        let log_file = fs::File::create(&log)
            .map_err(|e| HarnessError::io(format!("cannot create {}", log.display()), e))?;
        let mut cmd = config.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = cmd.spawn().map_err(|cause| HarnessError::Spawn {
            command: render(&cmd),
            cause,
        })?;
        let mut etcd = Etcd {
            child,
            config,
            dir: cleanup.disarm(),
            log,
        };
        let Etcd {
            child, config, log, ..
        } = &mut etcd;
        config.wait_healthy(log, || {
            child.try_wait().ok().flatten().map(|s| s.to_string())
        })?;
        Ok(etcd)
    }

    /// Starts etcd as a [`Daemon`] (for `cargo xtask up`), creating
    /// `config.data_dir` if needed, and returns once it answers `/health`.
    /// The log is the daemon's, `<state_dir>/<name>.log`.
    pub fn start_detached(config: &EtcdConfig, spec: DaemonSpec<'_>) -> Result<Daemon> {
        fs::create_dir_all(&config.data_dir).map_err(|e| {
            HarnessError::io(format!("cannot create {}", config.data_dir.display()), e)
        })?;
        let daemon = Daemon::spawn(config.command(), spec)?;
        config.wait_healthy(daemon.log_file(), || {
            (!daemon.is_running()).then(|| "gone".to_owned())
        })?;
        Ok(daemon)
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// See [`EtcdConfig::endpoints`].
    pub fn endpoints(&self) -> Vec<String> {
        self.config.endpoints()
    }

    pub fn local_endpoint(&self) -> String {
        self.config.local_endpoint()
    }

    pub fn log_file(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Failures mean it is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("skiff: cannot remove etcd dir {}: {e}", self.dir.display());
        }
    }
}

/// Removes a directory on drop unless disarmed: cleanup for early returns.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) -> PathBuf {
        self.0.take().expect("armed until disarmed")
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

fn url(ip: Ipv4Addr, port: u16) -> String {
    format!("http://{ip}:{port}")
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
