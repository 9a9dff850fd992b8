//! What tests against a real etcd share: a throwaway single-member etcd on
//! free loopback ports.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::store::Store;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("local address")
        .port()
}

/// `/usr/bin/etcd` in a temporary directory, killed and removed on drop
/// (also when the test panics).
pub struct Etcd {
    child: Child,
    dir: PathBuf,
    pub url: String,
}

impl Etcd {
    pub fn start() -> Self {
        let client_port = free_port();
        let peer_port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "skiff-control-etcd-{}-{client_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create etcd's directory");
        let log = File::create(dir.join("etcd.log")).expect("create etcd.log");
        let url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=default")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/etcd (cargo xtask setup installs it)");
        Self { child, dir, url }
    }

    /// A store, once etcd answers.
    pub async fn store(&self) -> Store {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(store) = Store::connect(std::slice::from_ref(&self.url)).await
                && store.current_revision().await.is_ok()
            {
                return store;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start; see {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A raw etcd client, for what the store deliberately cannot do
    /// (compaction).
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([&self.url], None)
            .await
            .expect("connect to etcd")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
