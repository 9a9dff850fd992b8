//! etcd (Debian's etcd-server 3.4) in the root netns, for tests (a guard that
//! kills it and removes its data) and for `cargo xtask up` (a daemon on the
//! standard ports with a persistent data dir). How etcd is configured and
//! started is skiff-etcd's; this adds the harness's errors and daemons.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

pub use skiff_etcd::launcher::EtcdConfig;
use skiff_etcd::launcher::{ETCD_BINARY, LaunchError, TempEtcd};

use crate::daemon::{Daemon, DaemonSpec};
use crate::error::{HarnessError, Result};

/// A test etcd: killed, and its data and log removed, on drop.
#[derive(Debug)]
pub struct Etcd {
    etcd: TempEtcd,
}

impl Etcd {
    /// Starts etcd on free ports, serving 127.0.0.1 and `listen_ips` (pass
    /// [`crate::CONTROL_PLANE_IP`] when a cluster is up, so agents reach
    /// it), with its data and log in a fresh temporary directory. Returns
    /// once it answers `/health`.
    pub fn start(listen_ips: &[Ipv4Addr]) -> Result<Etcd> {
        Ok(Etcd {
            etcd: TempEtcd::start(listen_ips)?,
        })
    }

    /// As [`Etcd::start`], on data `restore` puts into the (not yet
    /// existing) data directory of the configuration it is given.
    pub fn start_restored(
        listen_ips: &[Ipv4Addr],
        restore: impl FnOnce(&EtcdConfig) -> io::Result<()>,
    ) -> Result<Etcd> {
        Ok(Etcd {
            etcd: TempEtcd::start_prepared(Path::new(ETCD_BINARY), listen_ips, restore)?,
        })
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
        self.etcd.config()
    }

    /// See [`EtcdConfig::endpoints`].
    pub fn endpoints(&self) -> Vec<String> {
        self.config().endpoints()
    }

    pub fn local_endpoint(&self) -> String {
        self.config().local_endpoint()
    }

    pub fn log_file(&self) -> &Path {
        self.etcd.process().log_file()
    }

    pub fn pid(&self) -> u32 {
        self.etcd.process().pid()
    }
}

impl From<LaunchError> for HarnessError {
    fn from(error: LaunchError) -> Self {
        match error {
            LaunchError::Io { what, source } => HarnessError::Io {
                what,
                cause: source,
            },
            LaunchError::Spawn { binary, source } => HarnessError::Spawn {
                command: binary.display().to_string(),
                cause: source,
            },
            LaunchError::Unhealthy {
                reason,
                log,
                log_tail,
            } => HarnessError::Etcd {
                reason,
                log,
                log_tail,
            },
        }
    }
}
