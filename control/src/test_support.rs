//! What tests against a real etcd share: a throwaway single-member etcd on
//! free loopback ports (skiff-etcd's launcher).

use std::time::{Duration, Instant};

use skiff_etcd::etcd_client::Client;
use skiff_etcd::launcher::TempEtcd;

use crate::store::Store;

pub fn free_port() -> u16 {
    skiff_etcd::launcher::free_port().expect("bind a loopback port")
}

/// `/usr/bin/etcd` in a temporary directory, killed and removed on drop
/// (also when the test panics).
pub struct Etcd {
    etcd: TempEtcd,
    pub url: String,
}

impl Etcd {
    pub fn start() -> Self {
        let etcd =
            TempEtcd::start(&[]).expect("start /usr/bin/etcd (cargo xtask setup installs it)");
        let url = etcd.local_endpoint();
        Self { etcd, url }
    }

    /// etcd's process id, for tests that stop it.
    pub fn pid(&self) -> u32 {
        self.etcd.process().pid()
    }

    /// A store, once etcd answers.
    pub async fn store(&self) -> Store {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(store) = Store::connect(std::slice::from_ref(&self.url), None).await
                && store.current_revision().await.is_ok()
            {
                return store;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start; see {}",
                self.etcd.dir().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills etcd (SIGKILL), as a crash would; its directory stays until
    /// drop.
    pub fn kill(&self) {
        let status = std::process::Command::new("kill")
            .arg("-KILL")
            .arg(self.etcd.process().pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill etcd: {status}");
    }

    /// A raw etcd client, for what the store deliberately cannot do
    /// (compaction).
    pub async fn client(&self) -> Client {
        Client::connect([&self.url], None)
            .await
            .expect("connect to etcd")
    }
}
