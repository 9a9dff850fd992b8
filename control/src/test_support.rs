//! What tests against a real etcd share: a throwaway single-member etcd on
//! free loopback ports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::local_etcd::LocalEtcd;
use crate::store::Store;

pub fn free_port() -> u16 {
    crate::local_etcd::free_port().expect("bind a loopback port")
}

/// `/usr/bin/etcd` in a temporary directory, killed and removed on drop
/// (also when the test panics).
pub struct Etcd {
    etcd: LocalEtcd,
    dir: PathBuf,
    pub url: String,
}

impl Etcd {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "skiff-control-etcd-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create etcd's directory");
        let etcd = LocalEtcd::start(Path::new("/usr/bin/etcd"), &dir)
            .expect("start /usr/bin/etcd (cargo xtask setup installs it)");
        let url = etcd.url.clone();
        Self { etcd, dir, url }
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
        // Stop etcd before removing its directory.
        self.etcd.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
