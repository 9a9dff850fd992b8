//! A throwaway single-member etcd on free loopback ports, for the tests and
//! the benchmark: killed on drop.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct LocalEtcd {
    child: Child,
    /// The client URL, `http://127.0.0.1:<port>`.
    pub url: String,
}

impl LocalEtcd {
    /// Starts `binary` with its data in `dir/data` and its output in
    /// `dir/etcd.log`.
    pub fn start(binary: &Path, dir: &Path) -> io::Result<Self> {
        let url = format!("http://127.0.0.1:{}", free_port()?);
        let peer_url = format!("http://127.0.0.1:{}", free_port()?);
        let log = File::create(dir.join("etcd.log"))?;
        let child = Command::new(binary)
            .arg("--name=default")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Self { child, url })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills etcd and waits for it to exit; again is harmless.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nobody listens on (the OS's pick).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
