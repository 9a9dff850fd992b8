//! What the tests against a real etcd share.

use std::time::{Duration, Instant};

use crate::kv::Kv;
use crate::launcher::TempEtcd;

/// A throwaway etcd (see [`TempEtcd`]) and a client of it.
pub async fn etcd() -> (TempEtcd, Kv) {
    init_logs();
    let etcd = TempEtcd::start(&[]).expect("start etcd (cargo xtask setup installs it)");
    let endpoints = [etcd.local_endpoint()];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(kv) = Kv::connect(&endpoints).await
            && kv.revision().await.is_ok()
        {
            return (etcd, kv);
        }
        assert!(Instant::now() < deadline, "etcd does not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Shows the crate's logs in a failing test's output.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("skiff_etcd=debug")
        .with_test_writer()
        .try_init();
}
